//! A worker process as the master's loop handles it: how it is started (sockets at fd 3
//! on, its environment) and signalled. What the master knows of its life is in
//! `lifecycle.rs`.
//!
//! Read [`WorkerProcess::spawn`]. `LISTEN_PID` must be the worker's own pid, which is known only
//! once it exists: the child writes it into an environment laid out beforehand, between
//! `fork` and `exec` (`os/unix.rs`), as systemd does. (An earlier version exec'd
//! `taskward exec-worker` first to set it, which made a worker's start and stop cost
//! 7.2 ms of CPU instead of 4.7 ms; see BENCHMARKS.md.)

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use command_fds::{CommandFdExt, FdMapping};
use rustix::process::{Pid, PidfdFlags, Signal, kill_process, pidfd_open, pidfd_send_signal};
use taskward_http::protocol::{self, env};
use tokio::process::{Child, Command};

/// A worker process: its pid, and a handle to signal it by.
#[derive(Debug)]
pub(crate) struct WorkerProcess {
    pub(crate) pid: u32,
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

impl WorkerProcess {
    /// Starts worker number `id`, to be replaced at `max_requests`; the child's handle
    /// goes to the caller, which awaits its exit.
    pub(crate) fn spawn(
        launch: &Launch<'_>,
        id: u64,
        max_requests: Option<u64>,
    ) -> std::io::Result<(Self, Child)> {
        let mut vars: BTreeMap<OsString, OsString> = std::env::vars_os()
            // The master's own (from a supervisor of its own, or stale), not the worker's;
            // the worker's are set below, `LISTEN_PID` in the child.
            .filter(|(key, _)| {
                !key.to_str().is_some_and(|key| {
                    [
                        env::LISTEN_FDNAMES,
                        env::WATCHDOG_PID,
                        env::WATCHDOG_USEC,
                        env::MAX_REQUESTS,
                    ]
                    .contains(&key)
                })
            })
            .collect();
        let mut set = |key: &str, value: String| {
            vars.insert(key.into(), value.into());
        };
        set(env::LISTEN_FDS, launch.listeners.len().to_string());
        set(env::WORKER_ID, id.to_string());
        set(
            env::GRACEFUL_TIMEOUT,
            protocol::format_seconds(launch.graceful_timeout),
        );
        // The configuration keeps `timeout` within what the protocol can say (1 ms to a
        // year), so this is `None` only when heartbeats are off.
        if let Some(usec) = launch.watchdog.and_then(protocol::format_watchdog_usec) {
            set(env::WATCHDOG_USEC, usec);
        }
        if let Some(limit) = max_requests {
            set(env::MAX_REQUESTS, limit.to_string());
        }
        vars.insert(env::NOTIFY_SOCKET.into(), launch.notify_socket.into());
        let vars: Vec<(OsString, OsString)> = vars.into_iter().collect();

        let mut command = Command::new(launch.program);
        command
            .args(launch.args)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        crate::os::exec_as_worker(&mut command, &vars);
        let mut mappings = Vec::with_capacity(launch.listeners.len());
        for (fd, child_fd) in launch.listeners.iter().zip(protocol::LISTEN_FDS_START..) {
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
        let worker = Self { pid, pidfd };
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
}

/// An exit status in words: `exit code 3`, or `killed by SIGKILL`.
pub(crate) fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        if code == 78 {
            return "exit code 78 (EX_CONFIG)".to_owned();
        }
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
