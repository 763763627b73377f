//! A server under a benchmark (`taskward serve` or Gunicorn, the two compared): started
//! in a process group of its own with its stderr captured, killed with its workers when
//! dropped or when the bench gets SIGINT/SIGTERM; and the peer's whereabouts.
//!
//! Read [`Server`]. Shared by `benches/serve_reload.rs` and taskward-demo's
//! `benches/side_by_side.rs` (both include this file with `#[path]`).

#![allow(dead_code, reason = "each bench uses a different subset")]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process, kill_process_group};

use super::ansi::strip_ansi;

/// How long a bench waits for something that should happen (a server ready, a request
/// answered) before it gives up rather than hang. Not a performance bound.
pub(crate) const PATIENCE: Duration = Duration::from_secs(60);

/// Process groups of the servers running now, for [`kill_groups_on_signal`]. A cold
/// path: touched when a server starts or stops, and at the signal.
static GROUPS: Mutex<Vec<i32>> = Mutex::new(Vec::new());

/// The two process managers compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Taskward,
    Gunicorn,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Taskward => "taskward",
            Kind::Gunicorn => "gunicorn",
        }
    }

    /// A log line saying a worker is ready to serve (its pid is in the line).
    pub(crate) fn ready_line(self) -> &'static str {
        match self {
            Kind::Taskward => "worker ready",
            Kind::Gunicorn => "Application startup complete.",
        }
    }

    /// A log line saying a worker is being recycled for `--max-requests`.
    pub(crate) fn recycle_line(self) -> &'static str {
        match self {
            Kind::Taskward => "recycling a worker",
            Kind::Gunicorn => "Maximum request limit",
        }
    }

    /// The pid a log line is about, for [`ready_line`](Self::ready_line).
    pub(crate) fn line_pid(self, line: &str) -> Option<u32> {
        match self {
            // `... worker ready pid=123 startup=...`
            Kind::Taskward => line
                .split("pid=")
                .nth(1)?
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok(),
            // `[2026-01-01 00:00:00 +0000] [123] [INFO] ...`
            Kind::Gunicorn => line.split('[').nth(2)?.split(']').next()?.parse().ok(),
        }
    }

    /// The log line naming the listening address, and what precedes the address in it.
    fn listening(self) -> (&'static str, &'static str) {
        match self {
            Kind::Taskward => ("listening", "addr="),
            Kind::Gunicorn => ("Listening at:", "http://"),
        }
    }
}

/// Where Gunicorn and the FastAPI app are: `TASKWARD_BENCH_GUNICORN` and
/// `TASKWARD_BENCH_APP_DIR` (default `default_app_dir`); `None` when the first is unset.
pub(crate) struct Peer {
    pub(crate) gunicorn: PathBuf,
    pub(crate) app_dir: PathBuf,
}

impl Peer {
    pub(crate) fn from_env(default_app_dir: PathBuf) -> Option<Self> {
        std::env::var_os("TASKWARD_BENCH_GUNICORN").map(|gunicorn| Peer {
            gunicorn: PathBuf::from(gunicorn),
            app_dir: std::env::var_os("TASKWARD_BENCH_APP_DIR")
                .map_or(default_app_dir, PathBuf::from),
        })
    }
}

/// A fresh, empty temp directory named after `name` (the server's working directory).
pub(crate) fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("taskward-bench-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temp dir");
    dir
}

/// A running server in a process group of its own, killed with its workers on drop.
pub(crate) struct Server {
    pub(crate) kind: Kind,
    pub(crate) child: Child,
    pub(crate) dir: PathBuf,
    log: Arc<(Mutex<Vec<String>>, Condvar)>,
    pub(crate) addr: SocketAddr,
}

impl Server {
    /// Starts `command` (a `kind` server configured to bind `127.0.0.1:0`) in `dir`, and
    /// waits until it logs the address it listens on.
    pub(crate) fn start(kind: Kind, mut command: Command, dir: PathBuf) -> Self {
        command
            .current_dir(&dir)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            // A group of its own, so that the workers can be killed with the master
            // whatever the master does.
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("the server starts");
        let pgid = i32::try_from(child.id()).expect("a pid fits an i32");
        GROUPS.lock().expect("groups lock").push(pgid);
        let log: Arc<(Mutex<Vec<String>>, Condvar)> = Arc::default();
        let stderr = child.stderr.take().expect("stderr is piped");
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let (lines, changed) = &*sink;
                lines.lock().expect("log lock").push(strip_ansi(&line));
                changed.notify_all();
            }
        });
        let mut server = Self {
            kind,
            child,
            dir,
            log,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let (needle, prefix) = kind.listening();
        let line = server.wait_log(|lines| lines.iter().find(|l| l.contains(needle)).cloned());
        server.addr = line
            .split(prefix)
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        server
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until `found` finds something in the log lines (panics after `PATIENCE`).
    pub(crate) fn wait_log<T>(&self, found: impl Fn(&[String]) -> Option<T>) -> T {
        let (lines, changed) = &*self.log;
        let deadline = Instant::now() + PATIENCE;
        let mut guard = lines.lock().expect("log lock");
        loop {
            if let Some(t) = found(&guard) {
                return t;
            }
            let left = deadline
                .checked_duration_since(Instant::now())
                .unwrap_or_else(|| {
                    panic!(
                        "{} did not get there:\n{}",
                        self.kind.name(),
                        guard.join("\n")
                    )
                });
            guard = changed.wait_timeout(guard, left).expect("log lock").0;
        }
    }

    /// The pids the log has called ready so far.
    pub(crate) fn ready_pids(&self) -> Vec<u32> {
        let lines = self.log.0.lock().expect("log lock");
        let mut pids: Vec<u32> = lines
            .iter()
            .filter(|l| l.contains(self.kind.ready_line()))
            .filter_map(|l| self.kind.line_pid(l))
            .collect();
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// Log lines containing `needle`.
    pub(crate) fn count_lines(&self, needle: &str) -> usize {
        let lines = self.log.0.lock().expect("log lock");
        lines.iter().filter(|l| l.contains(needle)).count()
    }

    /// The whole log so far.
    pub(crate) fn log_text(&self) -> String {
        self.log.0.lock().expect("log lock").join("\n")
    }

    pub(crate) fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(i32::try_from(self.pid()).expect("a pid fits an i32"))
            .expect("a child's pid is not 0");
        if let Err(error) = kill_process(pid, signal) {
            panic!("cannot signal {}: {error}", self.kind.name());
        }
    }

    /// SIGKILL to the server's whole process group, now.
    pub(crate) fn kill_group(&self) {
        kill_group(i32::try_from(self.pid()).expect("a pid fits an i32"));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let pgid = i32::try_from(self.child.id()).expect("a pid fits an i32");
        kill_group(pgid);
        let _ = self.child.kill();
        let _ = self.child.wait();
        GROUPS.lock().expect("groups lock").retain(|g| *g != pgid);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// SIGKILL to a process group; one that is gone already is fine.
fn kill_group(pgid: i32) {
    if let Some(pid) = Pid::from_raw(pgid) {
        let _ = kill_process_group(pid, Signal::KILL);
    }
}

/// On SIGINT or SIGTERM, kills every server's process group before exiting.
pub(crate) async fn kill_groups_on_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    for pgid in GROUPS.lock().expect("groups lock").iter() {
        kill_group(*pgid);
    }
    std::process::exit(130);
}

/// The number in the environment variable `name`, if set and a number of that type.
pub(crate) fn env_number<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok()?.parse().ok()
}

/// `q`-quantile of sorted latencies (zero when there are none).
pub(crate) fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 * q) as usize).min(sorted.len() - 1);
    sorted[index]
}
