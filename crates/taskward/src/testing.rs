//! Test support: run an async test body on its own runtime, in its own root scope, and
//! fail — naming the tasks — if anything is still alive when the body returns.
//!
//! Read [`Harness`] first. It catches tracked tasks the test forgot to shut down,
//! untracked `tokio::spawn` tasks (counted with tokio's `RuntimeMetrics::num_alive_tasks`
//! on the test's own runtime), `spawn_blocking` work still running (counted with the
//! runtime's thread hooks), and child scopes of the test's scope dropped with live tasks.
//! All of it is per runtime or per scope, so tests running in parallel threads (`cargo
//! test`) or in separate processes (`cargo nextest`) never see each other's tasks.
//!
//! Enable it for tests only, in `Cargo.toml`:
//!
//! ```toml
//! [dev-dependencies]
//! taskward = { version = "*", features = ["testing"] }
//! ```

use std::fmt;
use std::future::Future;
use std::ops::Not;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::scope::Scope;
use crate::snapshot::Snapshot;

/// Runs `body` with [`Harness::current_thread`]. Panics if the body leaves tasks alive.
///
/// # Panics
///
/// If tasks are alive after the body returned (the panic message names them), or if the
/// runtime cannot be built.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// taskward::testing::run(|scope| async move {
///     scope.spawn("work", async {}).expect("scope is open");
///     assert!(scope.shutdown(Duration::from_secs(1)).await.is_clean());
/// });
/// ```
#[track_caller]
pub fn run<F, Fut>(body: F) -> Fut::Output
where
    F: FnOnce(Scope) -> Fut,
    Fut: Future,
{
    Harness::current_thread().run(body)
}

/// Which runtime a test runs on, and how its end is checked.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use taskward::testing::Harness;
///
/// // Paused time: sleeps complete at once, in order.
/// Harness::current_thread().start_paused(true).run(|scope| async move {
///     scope.spawn("nap", tokio::time::sleep(Duration::from_secs(3600))).expect("open");
///     scope.wait().await;
///     scope.shutdown(Duration::ZERO).await;
/// });
///
/// // A deliberately leaked `tokio::spawn` is caught.
/// let leak = Harness::multi_thread(2)
///     .try_run(|_scope| async {
///         tokio::spawn(std::future::pending::<()>());
///     })
///     .expect_err("the leak is found");
/// assert_eq!(leak.untracked, 1);
/// ```
#[derive(Debug, Clone)]
pub struct Harness {
    workers: Option<usize>,
    start_paused: bool,
    allow_dropped_scopes: bool,
}

/// What a test body left alive.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Leak {
    /// Tasks of the test's scope that were still live.
    pub tracked: Snapshot,
    /// Other tasks alive on the test's runtime: `tokio::spawn` outside any scope, or
    /// tasks of another root scope.
    pub untracked: usize,
    /// `spawn_blocking` work still running on the test's runtime.
    pub blocking: usize,
    /// Tasks of child scopes of the test's scope that were dropped while the tasks were
    /// live (aborted by the drop), as `name (scope, spawned at file:line:col)`.
    pub abandoned: Vec<String>,
}

impl fmt::Display for Leak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "the test left tasks alive after its body returned")?;
        if !self.tracked.is_empty() {
            writeln!(
                f,
                "{} tracked task(s) never shut down:\n{}",
                self.tracked.tasks.len(),
                self.tracked
            )?;
        }
        if self.untracked > 0 {
            writeln!(
                f,
                "{} untracked task(s) alive on the test's runtime (spawned with tokio::spawn \
                 or into another root scope)",
                self.untracked
            )?;
        }
        if self.blocking > 0 {
            writeln!(
                f,
                "{} spawn_blocking task(s) still running on the test's runtime",
                self.blocking
            )?;
        }
        if !self.abandoned.is_empty() {
            writeln!(
                f,
                "{} task(s) aborted because their scope was dropped without a shutdown: {}",
                self.abandoned.len(),
                self.abandoned.join(", ")
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for Leak {}

impl Leak {
    fn is_empty(&self) -> bool {
        self.tracked.is_empty()
            && self.untracked == 0
            && self.blocking == 0
            && self.abandoned.is_empty()
    }
}

impl Harness {
    /// A current-thread runtime: the alive-task count is exact.
    #[must_use]
    pub fn current_thread() -> Self {
        Self {
            workers: None,
            start_paused: false,
            allow_dropped_scopes: false,
        }
    }

    /// A multi-thread runtime with `workers` worker threads.
    #[must_use]
    pub fn multi_thread(workers: usize) -> Self {
        Self {
            workers: Some(workers.max(1)),
            start_paused: false,
            allow_dropped_scopes: false,
        }
    }

    /// Starts the runtime with time paused (current-thread only; tokio's rule). Ignored on
    /// a multi-thread harness.
    #[must_use]
    pub fn start_paused(mut self, paused: bool) -> Self {
        self.start_paused = paused;
        self
    }

    /// Does not count a child scope dropped with live tasks as a leak: for a test of what
    /// that drop does (its warning, its aborts). Everything else is still checked.
    #[must_use]
    pub fn allow_dropped_scopes(mut self) -> Self {
        self.allow_dropped_scopes = true;
        self
    }

    /// Runs `body` and panics, naming the tasks, if it left any alive.
    ///
    /// # Panics
    ///
    /// On a leak, or if the runtime cannot be built.
    #[track_caller]
    pub fn run<F, Fut>(self, body: F) -> Fut::Output
    where
        F: FnOnce(Scope) -> Fut,
        Fut: Future,
    {
        match self.try_run(body) {
            Ok(output) => output,
            Err(leak) => panic!("{leak}"),
        }
    }

    /// Runs `body`; returns its output, or the [`Leak`] it left behind. Leaked tasks are
    /// aborted before this returns.
    ///
    /// # Errors
    ///
    /// [`Leak`] if tasks were alive after the body returned.
    ///
    /// # Panics
    ///
    /// If the runtime cannot be built (the OS refused a thread or a timer).
    pub fn try_run<F, Fut>(self, body: F) -> Result<Fut::Output, Leak>
    where
        F: FnOnce(Scope) -> Fut,
        Fut: Future,
    {
        let mut builder = match self.workers {
            None => {
                let mut b = tokio::runtime::Builder::new_current_thread();
                b.start_paused(self.start_paused);
                b
            }
            Some(workers) => {
                let mut b = tokio::runtime::Builder::new_multi_thread();
                b.worker_threads(workers);
                b
            }
        };
        // Every thread of the runtime's blocking pool, counted in and out: with idle
        // threads let go at once, what is left once the count settles is blocking work
        // still running (plus the workers of a multi-thread runtime).
        let threads = Arc::new(AtomicUsize::new(0));
        let (up, down) = (threads.clone(), threads.clone());
        let runtime = builder
            .enable_all()
            .thread_keep_alive(Duration::from_millis(1))
            // Relaxed: a counter read only to judge, after the settling below.
            .on_thread_start(move || {
                up.fetch_add(1, Ordering::Relaxed);
            })
            .on_thread_stop(move || {
                down.fetch_sub(1, Ordering::Relaxed);
            })
            .build()
            .expect("the test runtime builds: threads and timers are available");
        let exact = self.workers.is_none();
        let workers = self.workers.unwrap_or(0);
        // The workers start on threads of their own, counted as they come up: wait for
        // them, or a blocking closure could hide behind a worker not yet counted.
        let started = Instant::now();
        while threads.load(Ordering::Relaxed) < workers && started.elapsed() < PATIENCE {
            std::thread::sleep(Duration::from_millis(1));
        }
        let root = Scope::root("test");
        let result = runtime.block_on(async {
            let output = body(root.clone()).await;
            let blocking = || threads.load(Ordering::Relaxed).saturating_sub(workers);
            let mut leak = find_leak(&root, exact, blocking).await;
            if self.allow_dropped_scopes {
                leak = leak.and_then(|mut leak| {
                    leak.abandoned.clear();
                    leak.is_empty().not().then_some(leak)
                });
            }
            // Abort what leaked, so that dropping the runtime does not hang on it and the
            // scope's drop does not warn a second time.
            let _ = root.shutdown(Duration::ZERO).await;
            match leak {
                Some(leak) => Err(leak),
                None => Ok(output),
            }
        });
        if matches!(&result, Err(leak) if leak.blocking > 0) {
            // Dropping the runtime would wait for the blocking work, maybe forever.
            runtime.shutdown_background();
        }
        result
    }
}

/// The longest the harness waits for anything, to catch hangs only.
const PATIENCE: Duration = Duration::from_secs(5);

/// When to judge what a test body left: as soon as what is alive stops changing, not
/// after a fixed wait, so that a failing test fails fast; at once when nothing is alive,
/// so that a passing test stays fast.
///
/// A policy apart from the runtime, fed what was seen and when.
#[derive(Debug)]
struct Settle {
    /// How long the same non-zero counts must be seen before they are judged a leak.
    stable_for: Duration,
    /// How long to wait at most for counts that keep changing.
    patience: Duration,
    started: Instant,
    last: Option<(Counts, Instant)>,
}

/// What is alive: tracked tasks, untracked tasks, running blocking work.
type Counts = (usize, usize, usize);

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Clean,
    Wait,
    Judge,
}

impl Settle {
    fn new(stable_for: Duration, now: Instant) -> Self {
        Self {
            stable_for,
            patience: PATIENCE,
            started: now,
            last: None,
        }
    }

    fn observe(&mut self, counts: Counts, now: Instant) -> Verdict {
        if counts == (0, 0, 0) {
            return Verdict::Clean;
        }
        if now.saturating_duration_since(self.started) >= self.patience {
            return Verdict::Judge;
        }
        match self.last {
            Some((last, since)) if last == counts => {
                if now.saturating_duration_since(since) >= self.stable_for {
                    Verdict::Judge
                } else {
                    Verdict::Wait
                }
            }
            _ => {
                self.last = Some((counts, now));
                Verdict::Wait
            }
        }
    }
}

/// How long the counts must hold still. A current-thread runtime with no blocking work
/// counts exactly, and needs only the yields that let woken tasks finish (about two
/// hundred of them in this window, one per round); threads (the workers of a
/// multi-thread runtime, the blocking pool) release a finished task a little after it
/// ends, and a loaded machine may not run them for a while.
const STABLE_EXACT: Duration = Duration::from_millis(20);
const STABLE_THREADS: Duration = Duration::from_millis(100);

async fn find_leak(root: &Scope, exact: bool, blocking: impl Fn() -> usize) -> Option<Leak> {
    let metrics = tokio::runtime::Handle::current().metrics();
    let mut settle = Settle::new(
        if exact { STABLE_EXACT } else { STABLE_THREADS },
        Instant::now(),
    );
    let abandoned = root.abandoned();
    let (untracked, running) = loop {
        // Tasks woken just before the body returned get to finish first.
        tokio::task::yield_now().await;
        let tracked = root.live_tasks();
        let untracked = metrics.num_alive_tasks().saturating_sub(tracked);
        let running = blocking();
        let counts = (tracked, untracked, running);
        match settle.observe(counts, Instant::now()) {
            Verdict::Clean | Verdict::Judge => break (untracked, running),
            Verdict::Wait => {}
        }
        if counts.2 > 0 || !exact {
            // Real time, not paused time: threads only real time lets run.
            std::thread::sleep(Duration::from_millis(1));
        } else {
            // Exact counts: a short real pause keeps the stability window meaningful.
            std::thread::sleep(Duration::from_micros(100));
        }
    };
    let leak = Leak {
        tracked: root.snapshot(),
        untracked,
        blocking: running,
        abandoned,
    };
    leak.is_empty().not().then_some(leak)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_alive_is_clean_at_once() {
        let t0 = Instant::now();
        let mut settle = Settle::new(STABLE_THREADS, t0);
        assert_eq!(settle.observe((0, 0, 0), t0), Verdict::Clean);
    }

    #[test]
    fn a_stable_leak_is_judged_after_the_window_not_the_patience() {
        let t0 = Instant::now();
        let mut settle = Settle::new(STABLE_THREADS, t0);
        let ms = |n| t0 + Duration::from_millis(n);
        assert_eq!(settle.observe((0, 3, 0), ms(0)), Verdict::Wait);
        assert_eq!(settle.observe((0, 3, 0), ms(50)), Verdict::Wait);
        assert_eq!(settle.observe((0, 3, 0), ms(100)), Verdict::Judge);
    }

    #[test]
    fn changing_counts_restart_the_window_until_clean_or_patience() {
        let t0 = Instant::now();
        let mut settle = Settle::new(STABLE_THREADS, t0);
        let ms = |n| t0 + Duration::from_millis(n);
        assert_eq!(settle.observe((0, 50, 0), ms(0)), Verdict::Wait);
        assert_eq!(settle.observe((0, 20, 0), ms(90)), Verdict::Wait);
        assert_eq!(settle.observe((0, 20, 1), ms(180)), Verdict::Wait);
        assert_eq!(settle.observe((0, 0, 0), ms(200)), Verdict::Clean);
        let mut endless = Settle::new(STABLE_THREADS, t0);
        for n in 0..100 {
            assert_eq!(
                endless.observe((0, n + 1, 0), ms(n as u64 * 50)),
                Verdict::Wait
            );
        }
        assert_eq!(endless.observe((0, 1, 0), ms(5_000)), Verdict::Judge);
    }
}
