//! `taskward exec-worker -- PROGRAM ARGS`: the step between the master and a worker that
//! sets `LISTEN_PID` to the worker's own pid, then becomes the worker.
//!
//! The master cannot know a child's pid before the child exists, and setting the variable
//! between `fork` and `exec` is not allowed (it allocates). This process already has the
//! sockets at fd 3 on and `LISTEN_FDS`; `exec` keeps both, and its pid.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Replaces this process with `program`; returns only the error if that failed.
///
/// The worker is also asked to get SIGTERM should the master die (`PR_SET_PDEATHSIG`,
/// kept across `exec`), so that a killed master leaves no worker serving unsupervised:
/// it drains and stops.
pub fn exec_worker(program: &OsString, args: &[OsString]) -> std::io::Error {
    use rustix::process::{Signal, getppid, set_parent_process_death_signal};
    let master = getppid();
    if let Err(error) = set_parent_process_death_signal(Some(Signal::TERM)) {
        return error.into();
    }
    // The master may have died before the request was in place.
    if getppid() != master {
        return std::io::Error::other("the master exited before the worker started");
    }
    Command::new(program)
        .args(args)
        .env("LISTEN_PID", std::process::id().to_string())
        .exec()
}
