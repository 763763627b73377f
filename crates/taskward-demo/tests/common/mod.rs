//! What the demo's end-to-end tests share: how long to wait, and a child's captured log.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::io::{BufRead, BufReader};
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a test waits for something that should happen, before it fails rather than
/// hangs. Not a performance bound: these machines are shared and noisy.
pub(crate) const PATIENCE: Duration = Duration::from_secs(60);

/// The lines a child writes to its stderr (which must be piped), read as they come.
#[derive(Clone, Default)]
pub(crate) struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    /// Starts reading `child`'s stderr.
    pub(crate) fn capture(child: &mut Child) -> Self {
        let log = Self::default();
        let sink = log.0.clone();
        let stderr = child.stderr.take().expect("stderr is piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().expect("log").push(line);
            }
        });
        log
    }

    /// The first line containing `needle`, waiting for it (at most [`PATIENCE`]).
    pub(crate) fn wait_for(&self, needle: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(line) = self
                .0
                .lock()
                .expect("log")
                .iter()
                .find(|l| l.contains(needle))
            {
                return line.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// How many lines so far contain `needle`.
    pub(crate) fn count(&self, needle: &str) -> usize {
        self.0
            .lock()
            .expect("log")
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// The whole log so far.
    pub(crate) fn text(&self) -> String {
        self.0.lock().expect("log").join("\n")
    }
}
