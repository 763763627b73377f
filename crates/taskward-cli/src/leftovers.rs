//! Processes the workers leave behind, as the master finds them. The master is a child
//! subreaper ([`become_subreaper`]; as PID 1 of a container it is one anyway), so a
//! worker's descendants are reparented to it when their parent exits, instead of to
//! init. [`children`] lists the master's children that are not workers: the exited ones
//! are reaped here, by pid (never `waitpid(-1)`, which would take the workers' statuses
//! from tokio), and the live ones are named (pid, command line, the worker they descend
//! from) for the policy (`lifecycle.rs`) to decide on.
//!
//! Linux only: it reads `/proc`.

use std::io;

use rustix::process::{Pid, WaitOptions, waitpid};
use taskward_http::protocol::env;

/// Longest command line kept for the log and the status.
const COMMAND_MAX: usize = 200;

/// One child of the master that is not a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Child {
    pub(crate) pid: u32,
    /// Exited, waiting to be reaped.
    pub(crate) zombie: bool,
}

/// Makes this process the reaper of its orphaned descendants (`PR_SET_CHILD_SUBREAPER`).
///
/// # Errors
///
/// If the kernel refuses (before Linux 3.4).
pub(crate) fn become_subreaper() -> io::Result<()> {
    rustix::process::set_child_subreaper(Some(rustix::process::getpid())).map_err(io::Error::from)
}

/// The children of process `parent` whose pids are not in `workers`, from `/proc`.
pub(crate) fn children(parent: u32, workers: &[u32]) -> Vec<Child> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| !workers.contains(pid))
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (state, ppid) = state_and_parent(&stat)?;
            (ppid == parent).then_some(Child {
                pid,
                zombie: state == 'Z',
            })
        })
        .collect()
}

/// The state letter and the parent pid in a `/proc/PID/stat` line: `PID (COMM) S PPID …`,
/// where COMM may hold spaces and parentheses (hence the last `)`).
fn state_and_parent(stat: &str) -> Option<(char, u32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Reaps child `pid` if it has exited; whether it had.
pub(crate) fn reap(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return false;
    };
    matches!(waitpid(Some(pid), WaitOptions::NOHANG), Ok(Some(_)))
}

/// The worker number in process `pid`'s environment (inherited from the worker it
/// descends from), if it can be read.
pub(crate) fn worker_of(pid: u32) -> Option<u64> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    environ
        .split(|&b| b == 0)
        .filter_map(|var| {
            var.strip_prefix(env::WORKER_ID.as_bytes())?
                .strip_prefix(b"=")
        })
        .next_back()
        .and_then(|value| std::str::from_utf8(value).ok()?.parse().ok())
}

/// Process `pid`'s command line, arguments separated by spaces, shortened; its name
/// when the command line is empty.
pub(crate) fn command_of(pid: u32) -> String {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let mut command = cmdline
        .split(|&b| b == 0)
        .filter(|arg| !arg.is_empty())
        .map(String::from_utf8_lossy)
        .collect::<Vec<_>>()
        .join(" ");
    if command.is_empty() {
        command = std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .map(|comm| format!("[{}]", comm.trim_end()))
            .unwrap_or_else(|_| "?".to_owned());
    }
    if let Some((cut, _)) = command.char_indices().nth(COMMAND_MAX) {
        command.truncate(cut);
        command.push('…');
    }
    // Shown in a terminal by `taskward status`: no escape sequence gets through.
    command
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_with_a_tricky_name_is_read() {
        let stat = "4242 (a) b (c)) S 17 4242 4242 0 -1";
        assert_eq!(state_and_parent(stat), Some(('S', 17)));
        assert_eq!(state_and_parent("1 (init) Z 0"), Some(('Z', 0)));
        assert_eq!(state_and_parent("garbage"), None);
    }

    #[test]
    fn this_process_is_named_and_is_not_a_child_of_itself() {
        let me = std::process::id();
        assert!(
            command_of(me).contains("taskward_cli"),
            "{}",
            command_of(me)
        );
        assert!(children(me, &[]).iter().all(|c| c.pid != me));
    }
}
