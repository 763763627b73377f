//! A worker process as the master sees it: how it is started (sockets at fd 3 on, its
//! environment), and what the master knows of it since.
//!
//! Read [`Worker::spawn`]. `LISTEN_PID` must be the worker's own pid, which is known only
//! once it exists: the child writes it into an environment laid out beforehand, between
//! `fork` and `exec` (`os/unix.rs`), as systemd does. (An earlier version exec'd
//! `taskward exec-worker` first to set it, which made a worker's start and stop cost
//! 7.2 ms of CPU instead of 4.7 ms; see BENCHMARKS.md.)

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use command_fds::{CommandFdExt, FdMapping};
use rustix::process::{Pid, PidfdFlags, Signal, kill_process, pidfd_open, pidfd_send_signal};
use tokio::process::{Child, Command};

/// The first file descriptor of passed sockets (systemd's `SD_LISTEN_FDS_START`).
pub(crate) const LISTEN_FDS_START: i32 = 3;

/// Where a worker is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Started, not yet `READY=1`.
    Starting,
    /// Said `READY=1`: accepting.
    Ready,
    /// Asked to stop (`SIGTERM`, or `SIGQUIT` for a fast stop): killed at the deadline.
    Stopping { kill_at: Instant },
}

impl State {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Ready => "ready",
            Self::Stopping { .. } => "stopping",
        }
    }
}

/// Why the master started a worker: to keep the count, or to replace another one
/// (which is stopped only once this one is ready, so capacity never dips).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Regular,
    Replacing { old: u64 },
}

/// One worker process.
#[derive(Debug)]
pub(crate) struct Worker {
    /// The master's own number for it, never reused.
    pub(crate) id: u64,
    pub(crate) pid: u32,
    pub(crate) started: Instant,
    pub(crate) state: State,
    pub(crate) role: Role,
    /// The last `WATCHDOG=1` (or `READY=1`, or the start).
    pub(crate) last_beat: Instant,
    /// Requests begun, as last reported.
    pub(crate) requests: u64,
    /// Replaced once `requests` reaches it (`--max-requests` plus jitter).
    pub(crate) max_requests: Option<u64>,
    /// Queued or being replaced: not to be queued again.
    pub(crate) replacing: bool,
    /// Its `max_requests` replacement is ready since then: it serves on until its limit
    /// (or a bounded time), counted as one worker more than wanted, not as a regular one.
    pub(crate) retiring_since: Option<Instant>,
    /// `STATUS=` as last reported.
    pub(crate) status: String,
    /// A handle on the process itself (Linux `pidfd`): a signal sent through it cannot
    /// reach another process that reused the pid after this one was reaped.
    pidfd: Option<OwnedFd>,
}

/// What a worker is started with.
#[derive(Debug)]
pub(crate) struct Launch<'a> {
    pub(crate) program: &'a OsString,
    pub(crate) args: &'a [OsString],
    pub(crate) listeners: &'a [OwnedFd],
    pub(crate) notify_socket: &'a Path,
    /// `WATCHDOG_USEC`, when heartbeats are required.
    pub(crate) watchdog: Option<Duration>,
    pub(crate) graceful_timeout: Duration,
}

impl Worker {
    /// Starts a worker; the child's handle goes to the caller, which awaits its exit.
    pub(crate) fn spawn(
        launch: &Launch<'_>,
        id: u64,
        role: Role,
        max_requests: Option<u64>,
    ) -> std::io::Result<(Self, Child)> {
        let mut vars: BTreeMap<OsString, OsString> = std::env::vars_os()
            // The master's own (from a supervisor of its own, or stale), not the worker's;
            // the worker's are set below, `LISTEN_PID` in the child.
            .filter(|(key, _)| {
                !matches!(
                    key.to_str(),
                    Some(
                        "LISTEN_FDNAMES"
                            | "WATCHDOG_PID"
                            | "WATCHDOG_USEC"
                            | taskward_http::MAX_REQUESTS_ENV
                    )
                )
            })
            .collect();
        let mut set = |key: &str, value: String| {
            vars.insert(key.into(), value.into());
        };
        set("LISTEN_FDS", launch.listeners.len().to_string());
        set("TASKWARD_WORKER_ID", id.to_string());
        set(
            taskward_http::GRACEFUL_TIMEOUT_ENV,
            launch.graceful_timeout.as_secs_f64().to_string(),
        );
        if let Some(every) = launch.watchdog {
            set("WATCHDOG_USEC", every.as_micros().to_string());
        }
        if let Some(limit) = max_requests {
            set(taskward_http::MAX_REQUESTS_ENV, limit.to_string());
        }
        vars.insert("NOTIFY_SOCKET".into(), launch.notify_socket.into());
        let vars: Vec<(OsString, OsString)> = vars.into_iter().collect();

        let mut command = Command::new(launch.program);
        command
            .args(launch.args)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        crate::os::exec_as_worker(&mut command, &vars);
        let mut mappings = Vec::with_capacity(launch.listeners.len());
        for (fd, child_fd) in launch.listeners.iter().zip(LISTEN_FDS_START..) {
            mappings.push(FdMapping {
                parent_fd: fd.as_fd().try_clone_to_owned()?,
                child_fd,
            });
        }
        command
            .fd_mappings(mappings)
            .map_err(|_| std::io::Error::other("passed sockets collide with stdio"))?;
        debug_assert!(
            command.as_std().get_envs().next().is_none(),
            "the worker's environment is installed by os::exec_as_worker"
        );
        let child = command.spawn()?;
        let pid = child
            .id()
            .ok_or_else(|| std::io::Error::other("the worker exited before its pid was read"))?;
        // Opened before the exit can be reaped: the waiting task is not spawned yet.
        let pidfd = i32::try_from(pid)
            .ok()
            .and_then(Pid::from_raw)
            .and_then(|pid| pidfd_open(pid, PidfdFlags::empty()).ok());
        let now = Instant::now();
        let worker = Self {
            id,
            pid,
            started: now,
            state: State::Starting,
            role,
            last_beat: now,
            requests: 0,
            max_requests,
            replacing: false,
            retiring_since: None,
            status: String::new(),
            pidfd,
        };
        Ok((worker, child))
    }

    /// Sends `signal`; a process already gone is not an error (its exit is on the way).
    pub(crate) fn signal(&self, signal: Signal) {
        let sent = match &self.pidfd {
            Some(pidfd) => pidfd_send_signal(pidfd, signal),
            // Kernels before 5.3 have no pidfd: the pid it is.
            None => match i32::try_from(self.pid).ok().and_then(Pid::from_raw) {
                Some(pid) => kill_process(pid, signal),
                None => return,
            },
        };
        if let Err(error) = sent {
            tracing::debug!(%error, pid = self.pid, "signal not delivered");
        }
    }

    /// Counts for keeping the number of workers: not stopping.
    pub(crate) fn is_active(&self) -> bool {
        !matches!(self.state, State::Stopping { .. })
    }

    /// Active, and one of the workers counted against the target: neither a replacement
    /// still starting nor a worker retiring beside its ready replacement.
    pub(crate) fn is_regular(&self) -> bool {
        self.is_active() && self.role == Role::Regular && self.retiring_since.is_none()
    }

    /// The state `taskward status` shows.
    pub(crate) fn state_name(&self) -> &'static str {
        match self.retiring_since {
            Some(_) if self.is_active() => "retiring",
            _ => self.state.name(),
        }
    }
}

/// An exit status in words: `exit code 3`, or `killed by SIGKILL`.
pub(crate) fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        return format!("exit code {code}");
    }
    let name = match status.signal() {
        Some(1) => "SIGHUP",
        Some(2) => "SIGINT",
        Some(3) => "SIGQUIT",
        Some(6) => "SIGABRT",
        Some(9) => "SIGKILL",
        Some(11) => "SIGSEGV",
        Some(15) => "SIGTERM",
        Some(number) => return format!("killed by signal {number}"),
        None => return status.to_string(),
    };
    format!("killed by {name}")
}
