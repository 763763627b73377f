//! A stuck task does not keep the process alive after the report: a real process, a real
//! SIGTERM.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Only catches a hang: the process exits about a second after the signal.
const PATIENCE: Duration = Duration::from_secs(30);

/// The example binary `name`, next to this test binary. Built (or found up to date) here,
/// as `cargo test --test exit` alone does not build the examples.
fn example(name: &str) -> PathBuf {
    let test_exe = std::env::current_exe().expect("the test binary has a path");
    let profile_dir = test_exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps/<test>");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut build = Command::new(cargo);
    build.args(["build", "-p", "taskward", "--example", name]);
    if profile_dir.file_name().is_some_and(|p| p == "release") {
        build.arg("--release");
    }
    let status = build.status().expect("cargo runs");
    assert!(status.success(), "building example {name}");
    profile_dir.join("examples").join(name)
}

/// Kills the child if the test fails before it exited.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

// Asserts: a service whose task blocks its worker thread for good, stopped by SIGTERM,
// prints its report naming the task stuck and exits with code 1 about a second later.
// Dropping the runtime instead (the `#[tokio::main]` way) waits for the blocked worker
// forever: the process would still be running at the patience.
#[test]
fn stuck_task_does_not_keep_the_process_alive() {
    let mut child = Reaped(
        Command::new(example("stuck_task"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the example starts"),
    );
    let stdout = child.0.stdout.take().expect("piped");
    let (ready_tx, ready_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let _ = ready_tx.send(lines.next().and_then(Result::ok));
        // Drain the rest, so the child never blocks on a full pipe.
        lines.for_each(drop);
    });
    let ready = ready_rx
        .recv_timeout(PATIENCE)
        .expect("the example says ready");
    assert_eq!(ready.as_deref(), Some("ready"));
    let mut stderr = child.0.stderr.take().expect("piped");
    let (err_tx, err_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        let _ = err_tx.send(text);
    });

    let pid = rustix::process::Pid::from_raw(i32::try_from(child.0.id()).expect("pid fits"))
        .expect("a child's pid is positive");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM sent");
    let sent = Instant::now();
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("waitpid") {
            break status;
        }
        assert!(
            sent.elapsed() < PATIENCE,
            "still running {PATIENCE:?} after SIGTERM: the runtime's drop waits for the \
             blocked worker"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = err_rx.recv_timeout(PATIENCE).expect("stderr closed");
    assert_eq!(status.code(), Some(1), "{stderr}");
    let stuck = stderr
        .lines()
        .find(|line| line.trim_start().starts_with("stuck"))
        .unwrap_or_else(|| panic!("no stuck row in the report:\n{stderr}"));
    assert!(stuck.contains("blocker"), "{stderr}");
    assert!(stderr.contains("stuck 1"), "{stderr}");
}
