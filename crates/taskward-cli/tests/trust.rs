//! Local trust boundaries of `taskward serve` (#11 item 4): the runtime directory it
//! trusts, its admin socket's mode and owner, stale leftovers of dead masters, and a
//! `taskward status` that cannot be hung by a stopped master.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{HELLO, PATIENCE, Serve, TASKWARD, output_within, signal_pid, test_dir};
use rustix::process::Signal;

/// The names in `dir` that start with `taskward-` and a digit: masters' directories.
fn master_dirs(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("readable")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| {
            name.strip_prefix("taskward-")
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        })
        .collect()
}

fn chmod(dir: &Path, mode: u32) {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

// Asserts: an XDG_RUNTIME_DIR that others may write to (mode 0777), or that another
// user owns (when the test runs as root), is not used, with a warning naming why; a
// private one of this user is (before: any existing directory was used, so its owner
// could replace the notify socket and capture every READY and heartbeat).
#[test]
fn only_a_private_xdg_runtime_dir_is_trusted() {
    let xdg = test_dir("xdg-base");
    let with_xdg = |name: &str| {
        let serve = Serve::spawn(name, &["--", HELLO], |command| {
            command.env("XDG_RUNTIME_DIR", &xdg);
        });
        serve.wait_log("all workers ready");
        serve
    };

    chmod(&xdg, 0o777);
    let serve = with_xdg("xdg-open");
    let warning = serve.wait_log("XDG_RUNTIME_DIR not used");
    assert!(
        warning.contains("writable by its group or others"),
        "{warning}"
    );
    assert_eq!(master_dirs(&xdg), Vec::<String>::new());
    drop(serve);

    chmod(&xdg, 0o700);
    if rustix::process::geteuid().is_root() {
        std::os::unix::fs::chown(&xdg, Some(65534), Some(65534)).expect("chown");
        let serve = with_xdg("xdg-foreign");
        let warning = serve.wait_log("XDG_RUNTIME_DIR not used");
        assert!(warning.contains("owned by uid 65534"), "{warning}");
        assert_eq!(master_dirs(&xdg), Vec::<String>::new());
        drop(serve);
        std::os::unix::fs::chown(&xdg, Some(0), Some(0)).expect("chown back");
    }

    let serve = with_xdg("xdg-private");
    let dirs = master_dirs(&xdg);
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    assert!(
        dirs[0].starts_with(&format!("taskward-{}-", serve.pid())),
        "{dirs:?}"
    );
    assert!(serve.lines("XDG_RUNTIME_DIR not used").is_empty());
    drop(serve);
    let _ = std::fs::remove_dir_all(&xdg);
}

// Asserts: the directories of dead masters of this user (left by a SIGKILL) are removed
// at start; one whose pid is alive stays.
#[test]
fn stale_runtime_dirs_of_dead_masters_are_removed_at_start() {
    let xdg = test_dir("stale-base");
    chmod(&xdg, 0o700);
    let dead = {
        let mut child = Command::new("true").spawn().expect("true runs");
        child.wait().expect("reaped");
        child.id()
    };
    let dead_dir = xdg.join(format!("taskward-{dead}-0badf00d"));
    let live_dir = xdg.join(format!("taskward-{}-0badf00d", std::process::id()));
    for dir in [&dead_dir, &live_dir] {
        std::fs::create_dir(dir).expect("mkdir");
        std::fs::write(dir.join("notify.sock"), b"").expect("a leftover");
    }

    let serve = Serve::spawn("stale", &["--", HELLO], |command| {
        command.env("XDG_RUNTIME_DIR", &xdg);
    });
    serve.wait_log("all workers ready");
    assert!(!dead_dir.exists(), "the dead master's directory is removed");
    assert!(live_dir.exists(), "a live pid's directory stays");
    let removed = serve.wait_log("removed the runtime directory");
    assert!(
        removed.contains(&dead_dir.display().to_string()),
        "{removed}"
    );
    drop(serve);
    let _ = std::fs::remove_dir_all(&xdg);
}

// Asserts: the admin socket is created 0600 even under umask 000 (before: srwxrwxrwx,
// so any local user could read the status).
#[test]
fn the_admin_socket_is_0600_under_umask_000() {
    let dir = test_dir("umask");
    let mut master = Command::new("/bin/sh")
        .current_dir(&dir)
        .args(["-c", r#"umask 000 && exec "$0" "$@""#, TASKWARD])
        .args(["serve", "-b", "127.0.0.1:0", "--", HELLO])
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the master starts");
    let socket = dir.join("taskward.sock");
    let deadline = Instant::now() + PATIENCE;
    while !socket.exists() {
        assert!(Instant::now() < deadline, "no admin socket");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mode = std::fs::metadata(&socket)
        .expect("stat")
        .permissions()
        .mode();
    signal_pid(master.id(), Signal::TERM);
    let exit = master.wait().expect("the master exits");
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    assert_eq!(exit.code(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}

// Asserts: a master whose admin socket path is served by a live process refuses to
// start, exit 1, one line naming the socket (before: it ran without an admin socket and
// `taskward status` showed the other process's data).
#[test]
fn a_taken_admin_socket_is_an_error() {
    let dir = test_dir("admin-taken");
    let _other = std::os::unix::net::UnixListener::bind(dir.join("taskward.sock")).expect("bind");
    let (code, stderr) = output_within(
        Command::new(TASKWARD)
            .current_dir(&dir)
            .args(["serve", "-b", "127.0.0.1:0", "--", HELLO])
            .env("NO_COLOR", "1"),
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        common::the_error_line(&stderr)
            .contains("admin socket taskward.sock: another process accepts there"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

// Asserts: `taskward status` against a SIGSTOPped master (which still accepts
// connections: the kernel queues them) gives up after its timeout with one line, exit 1
// (before: it waited for ever).
#[test]
fn status_gives_up_on_a_stopped_master() {
    let serve = Serve::start("stopped", &["--", HELLO]);
    signal_pid(serve.pid(), Signal::STOP);
    let (code, stderr) = output_within(Command::new(TASKWARD).args([
        "status",
        "--timeout",
        "0.5",
        "--admin-socket",
        serve.dir().join("taskward.sock").to_str().expect("utf-8"),
    ]));
    signal_pid(serve.pid(), Signal::CONT);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("no answer from"), "{stderr}");
}
