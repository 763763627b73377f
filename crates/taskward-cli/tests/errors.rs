//! Bad input to `taskward serve`: each is one clear line naming what was wrong, and a
//! non-zero exit code, before any worker starts.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use common::{HELLO, TASKWARD, test_dir, the_error_line};

fn serve(name: &str, args: &[&str]) -> (Output, String) {
    let dir = test_dir(name);
    let ran = serve_in(&dir, args);
    let _ = std::fs::remove_dir_all(&dir);
    ran
}

/// `taskward serve ARGS` run in `dir`: its output and its stderr as text.
fn serve_in(dir: &Path, args: &[&str]) -> (Output, String) {
    let output = Command::new(TASKWARD)
        .current_dir(dir)
        .arg("serve")
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("taskward runs");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output, stderr)
}

// Asserts: a bad flag value names the flag and the value, with exit code 2.
#[test]
fn a_bad_flag_is_named() {
    let (output, stderr) = serve("bad-flag", &["-w", "two", "--", HELLO]);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--workers") && stderr.contains("\"two\""),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
}

// Asserts: a bad value in taskward.toml names the file, the line and the key.
#[test]
fn a_bad_file_value_names_its_line() {
    let dir = test_dir("bad-file");
    std::fs::write(
        dir.join("taskward.toml"),
        "bind = [\"127.0.0.1:0\"]\nworkers = 0\n",
    )
    .expect("write");
    let output = Command::new(TASKWARD)
        .current_dir(&dir)
        .args(["serve", "--", HELLO])
        .output()
        .expect("taskward runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("taskward.toml:2") && stderr.contains("workers"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

// Asserts: a port in use is one line naming the address, exit code 1.
#[test]
fn a_port_in_use_is_named() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let addr = taken.local_addr().expect("its address").to_string();
    let (output, stderr) = serve("port-in-use", &["-b", &addr, "--", HELLO]);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        the_error_line(&stderr).contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
}

// Asserts: an admin socket path that is a regular file is refused in one line that says
// so once (red when the setup error printed its cause twice), exit code 1, and the file
// is left as it was.
#[test]
fn an_admin_socket_path_that_is_a_file_is_named_once() {
    // Relative: `serve` runs in its own directory, where this file is made first.
    let dir = test_dir("admin-file");
    std::fs::write(dir.join("important.txt"), "keep me").expect("a file");
    let (output, stderr) = serve_in(
        &dir,
        &[
            "-b",
            "127.0.0.1:0",
            "--admin-socket",
            "important.txt",
            "--",
            HELLO,
        ],
    );
    let kept = std::fs::read_to_string(dir.join("important.txt"));
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(
        the_error_line(&stderr)
            .matches("exists and is not a socket")
            .count(),
        1,
        "{stderr}"
    );
    assert_eq!(kept.as_deref().ok(), Some("keep me"));
}

// Asserts: a missing program, and one that is not executable, are named, exit code 1.
#[test]
fn a_missing_or_non_executable_program_is_named() {
    let (output, stderr) = serve(
        "missing",
        &["-b", "127.0.0.1:0", "--", "no-such-program-here"],
    );
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("program not found: no-such-program-here"),
        "{stderr}"
    );

    let dir = test_dir("not-executable");
    let script = dir.join("script.sh");
    std::fs::write(&script, "#!/bin/sh\n").expect("write");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let shown = script.to_string_lossy().into_owned();
    let (output, stderr) = serve("not-executable-run", &["-b", "127.0.0.1:0", "--", &shown]);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("program is not executable: {shown}")),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

// Asserts: a worker run alone with a graceful timeout it cannot use exits with EX_CONFIG
// (78) and one line naming the variable and the value, not a panic ("cannot convert
// float seconds to Duration", exit 101, before the protocol module).
#[test]
fn a_worker_with_a_bad_setting_exits_78_with_one_line() {
    for (var, value) in [
        ("TASKWARD_GRACEFUL_TIMEOUT", "1e300"),
        ("TASKWARD_DRAIN_DELAY", "5s"),
        ("WATCHDOG_USEC", "0"),
        ("LISTEN_FDS", "99999999999"),
    ] {
        let output = Command::new(HELLO)
            .env(var, value)
            .env_remove("LISTEN_PID")
            .env("NO_COLOR", "1")
            .output()
            .expect("the worker runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(i32::from(taskward_http::protocol::EX_CONFIG)),
            "{var}={value}: {stderr}"
        );
        assert_eq!(
            stderr.lines().count(),
            1,
            "{var}={value}: one line: {stderr}"
        );
        assert!(
            stderr.contains(var) && stderr.contains(&format!("{value:?}")),
            "{var}={value}: {stderr}"
        );
    }
}

/// Runs `taskward ARGS` in a fresh directory with `envs` and, if given, a
/// `taskward.toml`, bounded by PATIENCE (see `common::output_within`).
fn run_bounded(
    name: &str,
    args: &[&str],
    envs: &[(&str, &str)],
    file: Option<&str>,
) -> (Option<i32>, String) {
    let dir = test_dir(name);
    if let Some(text) = file {
        std::fs::write(dir.join("taskward.toml"), text).expect("write");
    }
    let mut command = Command::new(TASKWARD);
    command
        .current_dir(&dir)
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("LISTEN_PID")
        .env_remove("LISTEN_FDS")
        .env_remove("TASKWARD_DRAIN_DELAY");
    for (var, value) in envs {
        command.env(var, value);
    }
    let (code, stderr) = common::output_within(&mut command);
    let _ = std::fs::remove_dir_all(&dir);
    (code, stderr)
}

/// Flags, environment, `taskward.toml`, and what the error line must contain.
type Case<'a> = (
    &'a [&'a str],
    &'a [(&'a str, &'a str)],
    Option<&'a str>,
    &'a [&'a str],
);

// Asserts: each bad setting of #11 item 3 stops the master at start with exit code 2
// and one line naming the setting and its source, before any worker starts (before:
// accepted, then every worker panicked or exited and was respawned for ever, or the
// master forked until descriptors ran out, or read /dev/zero without end).
#[test]
fn bad_settings_stop_the_master_with_exit_2_and_one_line() {
    let cases: [Case<'_>; 9] = [
        (
            &["-w", "100000"],
            &[],
            None,
            &["flag --workers", "\"100000\""],
        ),
        (
            &["--timeout", "0.0000001"],
            &[],
            None,
            &["flag --timeout", "\"0.0000001\"", "0.001"],
        ),
        (
            &[],
            &[],
            Some("workers = 9223372036854775807\n"),
            &["taskward.toml:1", "workers", "9223372036854775807"],
        ),
        (
            &[],
            &[("TASKWARD_DRAIN_DELAY", "1e300")],
            None,
            &["environment variable TASKWARD_DRAIN_DELAY", "\"1e300\""],
        ),
        (
            &[],
            &[("TASKWARD_DRAIN_DELAY", "5s")],
            None,
            &["environment variable TASKWARD_DRAIN_DELAY", "\"5s\""],
        ),
        (
            &["-c", "/dev/zero"],
            &[],
            None,
            &["config file /dev/zero", "not a regular file"],
        ),
        (
            &["--graceful-timeout", "1e300"],
            &[],
            None,
            &["flag --graceful-timeout", "\"1e300\""],
        ),
        (
            &[],
            &[("LISTEN_FDS", "99999999999")],
            None,
            &["environment variable LISTEN_FDS", "\"99999999999\""],
        ),
        // Resolved where the sockets are bound, not while loading: still exit 2.
        (
            &["-b", "no-such-host.invalid:80"],
            &[],
            None,
            &["cannot resolve bind address \"no-such-host.invalid:80\""],
        ),
    ];
    for (index, (args, envs, file, needles)) in cases.into_iter().enumerate() {
        let mut all = vec!["serve", "-b", "127.0.0.1:0"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--", HELLO]);
        let (code, stderr) = run_bounded(&format!("bad-setting-{index}"), &all, envs, file);
        let case = format!("{args:?} {envs:?} {file:?}");
        assert_eq!(code, Some(2), "{case}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{case}: one line: {stderr}");
        assert!(stderr.starts_with("taskward: "), "{case}: {stderr}");
        for needle in needles {
            assert!(stderr.contains(needle), "{case}: no {needle:?} in {stderr}");
        }
    }
}

/// A stand-in for a master's admin socket: answers each connection with a status, once
/// told to go.
struct FakeAdmin {
    dir: std::path::PathBuf,
    path: std::path::PathBuf,
    go: std::sync::mpsc::Sender<()>,
}

impl FakeAdmin {
    fn start(name: &str, workers: usize, answers: usize) -> Self {
        use std::io::Write;
        let dir = test_dir(name);
        let path = dir.join("taskward.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind");
        let status = taskward_cli::admin::Status {
            master_pid: 1,
            started: std::time::SystemTime::now(),
            target: workers,
            stopping: false,
            workers: (0..workers)
                .map(|pid| taskward_cli::admin::WorkerStatus {
                    pid: u32::try_from(pid).expect("small"),
                    age: std::time::Duration::from_secs(1),
                    state: "ready".to_owned(),
                    requests: 0,
                    since_heartbeat: std::time::Duration::ZERO,
                    status: "serving".to_owned(),
                })
                .collect(),
            restarts: vec![],
        };
        let body = serde_json::to_vec(&status).expect("json");
        let (go, told) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(answers) {
                if told.recv().is_err() {
                    return;
                }
                let _ = stream.and_then(|mut s| s.write_all(&body));
            }
        });
        Self { dir, path, go }
    }
}

impl Drop for FakeAdmin {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// Asserts: `taskward status` and `top` whose output is closed before they write (`|
// head -1`, `| grep -q`) exit 0 with nothing on stderr, and on a full disk (`>/dev/full`)
// exit 1 with one line (before: a panic, "failed printing to stdout", exit 101).
#[test]
fn status_and_top_exit_quietly_on_a_closed_output() {
    // Many workers: the output is far larger than a pipe's buffer.
    let admin = FakeAdmin::start("closed-output", 2000, 3);
    let socket = admin.path.to_str().expect("utf-8 path");
    for args in [
        vec!["status", "--admin-socket", socket],
        vec!["top", "-n", "1", "--admin-socket", socket],
    ] {
        let mut child = Command::new(TASKWARD)
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("taskward runs");
        // The reader goes away before the status arrives, so the first write fails.
        drop(child.stdout.take());
        admin.go.send(()).expect("the fake admin answers");
        let output = child.wait_with_output().expect("waited");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {stderr}");
        assert_eq!(stderr, "", "{args:?}");
    }
    let full = std::fs::File::create("/dev/full").expect("/dev/full");
    admin.go.send(()).expect("the fake admin answers");
    let output = Command::new(TASKWARD)
        .args(["status", "--admin-socket", socket])
        .stdout(full)
        .output()
        .expect("taskward runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cannot write the output"), "{stderr}");
}
