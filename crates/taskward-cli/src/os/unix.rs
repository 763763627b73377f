//! The one place the CLI needs `unsafe`: marking descriptors it did not open.

use std::os::fd::BorrowedFd;

use rustix::io::{FdFlags, fcntl_getfd, fcntl_setfd};

/// Marks every open descriptor from `first` on close-on-exec, so that descriptors the
/// master inherited without the flag (a parent's pipe, say) do not reach the worker.
///
/// Call it only in a single-threaded process that owns all its descriptors (the
/// `exec-worker` step, just before `exec`).
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
