//! `taskward exec-worker -- PROGRAM ARGS`: the step between the master and a worker that
//! sets `LISTEN_PID` to the worker's own pid, then becomes the worker.
//!
//! The master cannot know a child's pid before the child exists, and setting the variable
//! between `fork` and `exec` is not allowed (it allocates). This process already has the
//! sockets at fd 3 on and `LISTEN_FDS`; `exec` keeps both, and its pid.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// The master's pid, as the master passes it to `exec-worker`.
pub(crate) const MASTER_PID_ENV: &str = "TASKWARD_MASTER_PID";

/// Replaces this process with `program`; returns only the error if that failed.
///
/// The worker is also asked to get SIGTERM should the master die (`PR_SET_PDEATHSIG`,
/// kept across `exec`), so that a killed master leaves no worker serving unsupervised:
/// it drains and stops.
pub fn exec_worker(program: &OsString, args: &[OsString]) -> std::io::Error {
    use rustix::process::{Signal, getppid, set_parent_process_death_signal};
    if let Err(error) = set_parent_process_death_signal(Some(Signal::TERM)) {
        return error.into();
    }
    // The master may have died before the request was in place: then this process was
    // handed to another parent, which the master's pid (passed by the master itself)
    // tells apart.
    let master = std::env::var(MASTER_PID_ENV)
        .ok()
        .and_then(|pid| pid.parse::<i32>().ok());
    let parent = getppid().map(|pid| pid.as_raw_nonzero().get());
    if master.is_none() || parent != master {
        return std::io::Error::other("the master exited before the worker started");
    }
    let passed = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse::<i32>().ok())
        .unwrap_or(0);
    crate::os::close_on_exec_from(crate::worker::LISTEN_FDS_START + passed);
    Command::new(program)
        .args(args)
        .env("LISTEN_PID", std::process::id().to_string())
        .env_remove(MASTER_PID_ENV)
        .exec()
}
