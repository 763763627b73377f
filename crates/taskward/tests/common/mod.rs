//! Helpers shared by the integration tests: log capture, and flags that prove a future was
//! dropped.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::cell::RefCell;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once};

thread_local! {
    static CAPTURE: RefCell<Option<Logs>> = const { RefCell::new(None) };
}

/// Everything logged on this thread while the guard lives, as plain text lines.
///
/// One global subscriber (enabled for every level) writes each event to the capture of
/// the thread that emitted it. A per-test `set_default` subscriber would be simpler, but
/// `tracing` caches each call site's interest process-wide, and tests running in parallel
/// without a subscriber can make a call site look uninteresting to all of them.
#[derive(Clone, Default)]
pub(crate) struct Logs(Arc<Mutex<Vec<u8>>>);

/// Stops the capture when dropped.
pub(crate) struct CaptureGuard(());

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        CAPTURE.with(|c| c.borrow_mut().take());
    }
}

impl Logs {
    /// Captures logs (all levels) emitted on this thread until the guard is dropped.
    pub(crate) fn capture() -> (Self, CaptureGuard) {
        static INIT: Once = Once::new();
        INIT.call_once(|| {
            tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_ansi(false)
                .with_writer(|| ThreadWriter)
                .init();
        });
        let logs = Self::default();
        CAPTURE.with(|c| *c.borrow_mut() = Some(logs.clone()));
        (logs, CaptureGuard(()))
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log buffer lock")).into_owned()
    }

    /// The captured lines that contain `needle`.
    pub(crate) fn lines_with(&self, needle: &str) -> Vec<String> {
        self.text()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_owned)
            .collect()
    }
}

/// Writes to the emitting thread's capture, if it has one.
struct ThreadWriter;

impl io::Write for ThreadWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        CAPTURE.with(|c| {
            if let Some(logs) = &*c.borrow() {
                logs.0
                    .lock()
                    .expect("log buffer lock")
                    .extend_from_slice(buf);
            }
        });
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Set when dropped: moved into a task's future, it tells whether the future was dropped
/// (the task ended or was aborted) rather than left running.
#[derive(Clone, Default)]
pub(crate) struct DropFlag(Arc<AtomicBool>);

pub(crate) struct DropProbe(Arc<AtomicBool>);

impl DropFlag {
    pub(crate) fn probe(&self) -> DropProbe {
        DropProbe(self.0.clone())
    }

    pub(crate) fn dropped(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

impl Drop for DropProbe {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}
