//! What the end-to-end tests share: a `taskward serve` process in a directory of its own,
//! its log, its status, and signals to it; and a bounded loopback load generator.

#![allow(dead_code, reason = "each test binary uses a different subset")]

pub(crate) mod ansi;
#[path = "../../../taskward-http/tests/common/http1.rs"]
pub(crate) mod http1;
pub(crate) mod load;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};
use taskward_cli::admin::Status;

/// How long a test waits for something that should happen, before it fails rather than
/// hangs. Not a performance bound: these machines are shared and noisy.
pub(crate) const PATIENCE: Duration = Duration::from_secs(60);

pub(crate) const TASKWARD: &str = env!("CARGO_BIN_EXE_taskward");
pub(crate) const HELLO: &str = env!("CARGO_BIN_EXE_taskward-hello");

/// A running `taskward serve`, killed (with its workers) if the test ends early.
pub(crate) struct Serve {
    child: Child,
    dir: PathBuf,
    log: Arc<(Mutex<Vec<String>>, Condvar)>,
    pub(crate) addr: SocketAddr,
}

/// The one error line `taskward` printed (`taskward: …`); fails the test unless there is
/// exactly one.
pub(crate) fn the_error_line(stderr: &str) -> &str {
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("taskward:"))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    errors[0]
}

/// A fresh directory for one test's master (its admin socket lives there).
pub(crate) fn test_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("taskward-e2e-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

impl Serve {
    /// Starts `taskward serve -b 127.0.0.1:0 ARGS` in a fresh directory and waits for
    /// "all workers ready".
    pub(crate) fn start(name: &str, args: &[&str]) -> Self {
        let serve = Self::spawn(name, args, |_| {});
        serve.wait_log("all workers ready");
        serve
    }

    /// Like [`start`](Self::start), with `HELLO_STARTUP_MS` set: `taskward-hello`
    /// workers that take `ms` to become ready.
    pub(crate) fn start_slow(name: &str, args: &[&str], ms: u64) -> Self {
        let serve = Self::spawn(name, args, |command| {
            command.env("HELLO_STARTUP_MS", ms.to_string());
        });
        serve.wait_log("all workers ready");
        serve
    }

    /// Starts it without waiting; `setup` may add to the command. Binds 127.0.0.1:0
    /// unless `args` bind something themselves.
    pub(crate) fn spawn(name: &str, args: &[&str], setup: impl FnOnce(&mut Command)) -> Self {
        Self::spawn_under(&[], name, args, setup)
    }

    /// Like [`spawn`](Self::spawn), run through `wrapper` (a program and its arguments
    /// that end by executing the command after them, e.g. `prlimit --nofile=256: --`):
    /// the master's pid is the wrapper's.
    pub(crate) fn spawn_under(
        wrapper: &[&str],
        name: &str,
        args: &[&str],
        setup: impl FnOnce(&mut Command),
    ) -> Self {
        let dir = test_dir(name);
        let mut command = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut command = Command::new(program);
                command.args(rest).arg(TASKWARD);
                command
            }
            None => Command::new(TASKWARD),
        };
        command
            .current_dir(&dir)
            .arg("serve")
            .args(if args.contains(&"-b") {
                &[][..]
            } else {
                &["-b", "127.0.0.1:0"][..]
            })
            .args(args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        setup(&mut command);
        let mut child = command.spawn().expect("taskward starts");
        let log: Arc<(Mutex<Vec<String>>, Condvar)> = Arc::default();
        let stderr = child.stderr.take().expect("piped");
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let (lines, changed) = &*sink;
                lines
                    .lock()
                    .expect("log lock")
                    .push(ansi::strip_ansi(&line));
                changed.notify_all();
            }
        });
        let mut serve = Self {
            child,
            dir,
            log,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        if let Some(line) = serve.try_wait_log("listening") {
            // A unix socket's address stays unparsed: such tests connect by path.
            if let Some(Ok(addr)) = line.split("addr=").nth(1).map(|a| a.trim().parse()) {
                serve.addr = addr;
            }
        }
        serve
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The first log line containing `needle`, waiting for it if need be.
    pub(crate) fn wait_log(&self, needle: &str) -> String {
        self.try_wait_log(needle)
            .unwrap_or_else(|| panic!("no log line with {needle:?}:\n{}", self.log()))
    }

    fn try_wait_log(&self, needle: &str) -> Option<String> {
        self.wait_lines(needle, 1).map(|mut l| l.remove(0))
    }

    /// Waits until `count` log lines contain `needle`; returns them.
    pub(crate) fn wait_lines(&self, needle: &str, count: usize) -> Option<Vec<String>> {
        let (lines, changed) = &*self.log;
        let deadline = Instant::now() + PATIENCE;
        let mut guard = lines.lock().expect("log lock");
        loop {
            let found: Vec<String> = guard
                .iter()
                .filter(|l| l.contains(needle))
                .cloned()
                .collect();
            if found.len() >= count {
                return Some(found);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            guard = changed.wait_timeout(guard, left).expect("log lock").0;
        }
    }

    /// Log lines so far containing `needle`.
    pub(crate) fn lines(&self, needle: &str) -> Vec<String> {
        let (lines, _) = &*self.log;
        let lines = lines.lock().expect("log lock");
        lines
            .iter()
            .filter(|l| l.contains(needle))
            .cloned()
            .collect()
    }

    /// The whole log so far.
    pub(crate) fn log(&self) -> String {
        let (lines, _) = &*self.log;
        lines.lock().expect("log lock").join("\n")
    }

    pub(crate) fn signal(&self, signal: Signal) {
        signal_pid(self.pid(), signal);
    }

    /// The master's status, from its admin socket.
    pub(crate) async fn status(&self) -> Status {
        // PATIENCE, not the command's default: a slow machine must not fail a test.
        taskward_cli::admin::query_within(&self.dir.join("taskward.sock"), PATIENCE)
            .await
            .expect("the master answers on its admin socket")
    }

    /// Waits until the status satisfies `done`; returns it.
    pub(crate) async fn wait_status(&self, what: &str, done: impl Fn(&Status) -> bool) -> Status {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let status = self.status().await;
            if done(&status) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "never: {what}; last status:\n{status}\nlog:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for the master to exit.
    pub(crate) fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the master did not exit:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            // Workers get SIGTERM from the kernel when the master dies (PDEATHSIG).
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        remove_runtime_dirs(self.pid());
    }
}

/// Removes the runtime directories of the master `pid` (`taskward-<pid>-*`, under the
/// temp dir or `$XDG_RUNTIME_DIR`): a master killed with SIGKILL leaves its own behind.
pub(crate) fn remove_runtime_dirs(pid: u32) {
    let prefix = format!("taskward-{pid}-");
    let bases = [
        Some(std::env::temp_dir()),
        std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from),
    ];
    for base in bases.into_iter().flatten() {
        let Ok(entries) = std::fs::read_dir(&base) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

pub(crate) fn signal_pid(pid: u32, signal: Signal) {
    let pid = Pid::from_raw(i32::try_from(pid).expect("pid fits")).expect("non-zero pid");
    kill_process(pid, signal).expect("signal delivered");
}

/// Pids of the ready workers in `status`.
pub(crate) fn ready_pids(status: &Status) -> Vec<u32> {
    status
        .workers
        .iter()
        .filter(|w| w.state == "ready")
        .map(|w| w.pid)
        .collect()
}

/// Runs `command` to its end with stdin closed, stdout discarded and stderr captured,
/// killing it if it still runs after PATIENCE (a mistake accepted may start a master
/// that never exits by itself). Returns the exit code (`None` if killed) and stderr.
pub(crate) fn output_within(command: &mut Command) -> (Option<i32>, String) {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the command starts");
    let stderr = child.stderr.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut { stderr }, &mut text);
        text
    });
    let deadline = Instant::now() + PATIENCE;
    let code = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            remove_runtime_dirs(child.id());
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    (code, reader.join().expect("stderr reader"))
}
