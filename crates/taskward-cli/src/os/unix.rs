//! The one place the CLI needs `unsafe`: what a worker's process does between `fork` and
//! `exec`, and marking descriptors the master did not open.

use std::ffi::{OsStr, OsString, c_char};
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::OsStrExt;

use rustix::io::{FdFlags, fcntl_getfd, fcntl_setfd};
use rustix::process::{Signal, getpid, getppid, set_parent_process_death_signal};
use taskward_http::protocol::env;

/// Marks every open descriptor from `first` on close-on-exec, so that descriptors the
/// master inherited without the flag (a parent's pipe, say) do not reach the workers.
///
/// Call it only while the process is single threaded (the master, before its runtime
/// starts), so that nothing closes a listed descriptor before its flags are changed.
pub(crate) fn close_on_exec_from(first: i32) {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let numbers: Vec<i32> = dir
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd >= first)
        .collect();
    for fd in numbers {
        // SAFETY: `fd` was listed as open in /proc/self/fd, and this process is single
        // threaded (see above), so nothing closes it before the flags are changed. The
        // descriptor the listing itself used is closed by now; for that number the calls
        // below fail with EBADF, which is ignored.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        if let Ok(flags) = fcntl_getfd(borrowed) {
            let _ = fcntl_setfd(borrowed, flags | FdFlags::CLOEXEC);
        }
    }
}

unsafe extern "C" {
    /// The C library's environment, which `execvp` passes to the new program.
    static mut environ: *const *const c_char;
}

/// A worker's whole environment, laid out in the parent, with room for `LISTEN_PID`: the
/// child's own pid, which is known only in the child, where nothing may allocate.
struct WorkerEnv {
    /// `KEY=VALUE\0` entries; their heap buffers do not move when this struct does.
    _entries: Vec<Box<[u8]>>,
    /// `LISTEN_PID=` followed by room for any pid and its `\0`.
    listen_pid: Box<[u8]>,
    /// Pointers to the entries and `listen_pid`, then null: the `environ` of the child.
    pointers: Vec<*const c_char>,
}

// SAFETY: the raw pointers point into buffers this struct owns and never changes in the
// parent; they are written and read only in the forked child, which has its own copy.
unsafe impl Send for WorkerEnv {}
// SAFETY: as above: nothing is read or written through a shared reference.
unsafe impl Sync for WorkerEnv {}

/// `LISTEN_PID=`, the start of the entry the child completes with its own pid: a byte
/// literal the child can use after `fork`, checked when compiling against the protocol's
/// name of the variable.
const LISTEN_PID: &[u8] = b"LISTEN_PID=";
const _: () = assert!(is_entry_prefix(LISTEN_PID, env::LISTEN_PID));

/// Whether `prefix` is `name=`.
const fn is_entry_prefix(prefix: &[u8], name: &str) -> bool {
    let name = name.as_bytes();
    if prefix.len() != name.len() + 1 || prefix[name.len()] != b'=' {
        return false;
    }
    let mut i = 0;
    while i < name.len() {
        if prefix[i] != name[i] {
            return false;
        }
        i += 1;
    }
    true
}

impl WorkerEnv {
    fn new(vars: &[(OsString, OsString)]) -> Self {
        let entries: Vec<Box<[u8]>> = vars
            .iter()
            .filter(|(key, _)| key.as_bytes() != env::LISTEN_PID.as_bytes())
            .map(|(key, value)| entry(key, value))
            .collect();
        // A pid is at most 10 digits (i32); the rest stays `\0`.
        let mut listen_pid = vec![0u8; LISTEN_PID.len() + 11].into_boxed_slice();
        listen_pid[..LISTEN_PID.len()].copy_from_slice(LISTEN_PID);
        let mut pointers: Vec<*const c_char> = entries
            .iter()
            .map(|e| e.as_ptr().cast::<c_char>())
            .collect();
        pointers.push(listen_pid.as_ptr().cast());
        pointers.push(std::ptr::null());
        Self {
            _entries: entries,
            listen_pid,
            pointers,
        }
    }

    /// Writes this process's pid into `LISTEN_PID` and makes this the environment `exec`
    /// passes on. Allocates nothing and takes no lock: safe between `fork` and `exec`.
    fn install(&mut self) {
        let mut pid = getpid().as_raw_nonzero().get().unsigned_abs();
        let mut digits = [0u8; 10];
        let mut start = digits.len();
        loop {
            start -= 1;
            // `pid % 10` is a single digit.
            digits[start] = b'0' + (pid % 10) as u8;
            pid /= 10;
            if pid == 0 {
                break;
            }
        }
        let value = &mut self.listen_pid[LISTEN_PID.len()..];
        value[..digits.len() - start].copy_from_slice(&digits[start..]);
        value[digits.len() - start] = 0;
        // SAFETY: only the forked child calls this, single threaded, just before `exec`;
        // `pointers` is null-terminated and points into buffers `self` owns, alive until
        // `exec` replaces the process (the closure holding `self` lives until then).
        unsafe {
            environ = self.pointers.as_ptr();
        }
    }
}

fn entry(key: &OsStr, value: &OsStr) -> Box<[u8]> {
    let mut bytes = Vec::with_capacity(key.len() + value.len() + 2);
    bytes.extend_from_slice(key.as_bytes());
    bytes.push(b'=');
    bytes.extend_from_slice(value.as_bytes());
    bytes.push(0);
    bytes.into_boxed_slice()
}

/// Makes `command` start its program as a worker of the master (this process): with
/// exactly `vars` as its environment plus `LISTEN_PID` set to its own pid, as socket
/// activation requires, and a SIGTERM should the master die (`PR_SET_PDEATHSIG`, kept
/// across `exec`), so that a killed master leaves no worker serving unsupervised.
///
/// `command` must not be given environment variables itself: the standard library would
/// then install its own environment after this one (checked in debug builds at spawn).
///
/// Call it, and spawn, from a thread that lives as long as the master: the parent-death
/// signal fires when the *thread* that forked exits, not the process (the master runs a
/// current-thread runtime on its main thread for this reason).
pub(crate) fn exec_as_worker(command: &mut tokio::process::Command, vars: &[(OsString, OsString)]) {
    let mut env = WorkerEnv::new(vars);
    let master = getpid();
    let child = move || {
        set_parent_process_death_signal(Some(Signal::TERM))?;
        // The master may have died before the request was in place: the child was then
        // handed to another parent.
        // (An errno, not a message: nothing may allocate here.)
        if getppid() != Some(master) {
            return Err(rustix::io::Errno::SRCH.into());
        }
        env.install();
        Ok(())
    };
    // SAFETY: `child` runs between `fork` and `exec`: it makes only async-signal-safe
    // system calls (prctl, getppid, getpid), writes into memory it owns, sets `environ`,
    // and allocates nothing (its errors are errno values).
    unsafe {
        command.pre_exec(child);
    }
}
