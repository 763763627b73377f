//! Bad input to `taskward serve`: each is one clear line naming what was wrong, and a
//! non-zero exit code, before any worker starts.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

use common::{HELLO, TASKWARD, test_dir};

fn serve(name: &str, args: &[&str]) -> (Output, String) {
    let dir = test_dir(name);
    let output = Command::new(TASKWARD)
        .current_dir(&dir)
        .arg("serve")
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("taskward runs");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let _ = std::fs::remove_dir_all(&dir);
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
    let error: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("taskward:"))
        .collect();
    assert_eq!(error.len(), 1, "{stderr}");
    assert!(
        error[0].contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
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
