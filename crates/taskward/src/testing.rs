//! Test support: run an async test body on its own runtime, in its own root scope, and
//! fail — naming the tasks — if anything is still alive when the body returns.
//!
//! Read [`Harness`] first. It catches both tracked tasks the test forgot to shut down and
//! untracked `tokio::spawn` tasks, counted with tokio's `RuntimeMetrics::num_alive_tasks`
//! on the test's own runtime, so tests running in parallel threads (`cargo test`) or in
//! separate processes (`cargo nextest`) never see each other's tasks.

use std::fmt;
use std::future::Future;
use std::time::Duration;

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
        Ok(())
    }
}

impl std::error::Error for Leak {}

impl Harness {
    /// A current-thread runtime: the alive-task count is exact.
    #[must_use]
    pub fn current_thread() -> Self {
        Self {
            workers: None,
            start_paused: false,
        }
    }

    /// A multi-thread runtime with `workers` worker threads.
    #[must_use]
    pub fn multi_thread(workers: usize) -> Self {
        Self {
            workers: Some(workers.max(1)),
            start_paused: false,
        }
    }

    /// Starts the runtime with time paused (current-thread only; tokio's rule). Ignored on
    /// a multi-thread harness.
    #[must_use]
    pub fn start_paused(mut self, paused: bool) -> Self {
        self.start_paused = paused;
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
        let runtime = builder
            .enable_all()
            .build()
            .expect("the test runtime builds: threads and timers are available");
        let exact = self.workers.is_none();
        let root = Scope::root("test");
        runtime.block_on(async {
            let output = body(root.clone()).await;
            let leak = find_leak(&root, exact).await;
            // Abort what leaked, so that dropping the runtime does not hang on it and the
            // scope's drop does not warn a second time.
            let _ = root.shutdown(Duration::ZERO).await;
            match leak {
                Some(leak) => Err(leak),
                None => Ok(output),
            }
        })
    }
}

/// How many times to let the runtime settle before judging. On a multi-thread runtime a
/// task that has finished is counted alive until its worker releases it; on a loaded
/// machine that can take a while, so this allows up to about two seconds (spent only
/// when something is still alive).
const SETTLE_ROUNDS: u32 = 2_000;

async fn find_leak(root: &Scope, exact: bool) -> Option<Leak> {
    let metrics = tokio::runtime::Handle::current().metrics();
    let mut untracked = 0;
    for _ in 0..SETTLE_ROUNDS {
        // Tasks woken just before the body returned get to finish first.
        tokio::task::yield_now().await;
        untracked = metrics.num_alive_tasks().saturating_sub(root.live_tasks());
        if untracked == 0 {
            break;
        }
        if !exact {
            // Real time, not paused time: the count lags behind worker threads, which
            // only real time lets run.
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let tracked = root.snapshot();
    if tracked.is_empty() && untracked == 0 {
        None
    } else {
        Some(Leak { tracked, untracked })
    }
}
