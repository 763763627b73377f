//! Shutdown in phases, never past the deadline: signal, grace, abort, report stuck, hooks.
//!
//! Read [`ShutdownPolicy`] for the timeline and [`ShutdownFuture`] for how concurrent and
//! repeated requests share one shutdown.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared, WeakShared};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::report::{OutcomeCounts, Phase, ShutdownReport, TaskReport};
use crate::scope::ScopeInner;
use crate::task::{TaskOutcome, TaskState};

/// How long a shutdown may take, and how that time is shared out.
///
/// The timeline, from the moment [`Scope::shutdown_with`](crate::Scope::shutdown_with) is
/// called (`t0`):
///
/// 1. **signal**: the subtree is closed to new tasks and cancelled, at `t0`;
/// 2. **grace**: wait for every task to end, until `t0 + deadline - hook_reserve`;
/// 3. **abort**: abort what is left and wait for the aborts to land: `abort_wait`, renewed
///    while tasks are still ending (a scope of 100,000 tasks takes a while to drop them
///    all), at most [`ShutdownPolicy::ABORT_ROUNDS`] times;
/// 4. **stuck**: whatever still runs (it blocks its thread) is reported stuck;
/// 5. **hooks** run, each bounded by `t0 + deadline`.
///
/// So a shutdown returns by `t0 + deadline + ABORT_ROUNDS * abort_wait` (plus one poll of
/// each hook whose turn comes after the deadline), even when a task never yields; when
/// only blocked tasks are left, by `t0 + deadline + abort_wait`. A zero deadline is valid:
/// it means "abort now".
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use taskward::ShutdownPolicy;
///
/// let policy = ShutdownPolicy::new(Duration::from_secs(30))
///     .abort_wait(Duration::from_millis(250))
///     .reserve_for_hooks(Duration::from_secs(5));
/// assert_eq!(policy.deadline(), Duration::from_secs(30));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownPolicy {
    deadline: Duration,
    abort_wait: Duration,
    hook_reserve: Duration,
}

impl ShutdownPolicy {
    /// The default wait for aborts to land.
    pub const DEFAULT_ABORT_WAIT: Duration = Duration::from_millis(100);

    /// How many times the abort wait is renewed while aborted tasks are still ending.
    pub const ABORT_ROUNDS: u32 = 10;

    /// A shutdown that ends within `deadline` (plus [`Self::DEFAULT_ABORT_WAIT`]).
    #[must_use]
    pub fn new(deadline: Duration) -> Self {
        Self {
            deadline,
            abort_wait: Self::DEFAULT_ABORT_WAIT,
            hook_reserve: Duration::ZERO,
        }
    }

    /// How long to wait for aborted tasks to end before reporting them stuck; renewed
    /// while they are still ending.
    #[must_use]
    pub fn abort_wait(mut self, wait: Duration) -> Self {
        self.abort_wait = wait;
        self
    }

    /// Ends the grace period this much before the deadline, so that hooks have at least
    /// this long even when tasks use all of their grace.
    #[must_use]
    pub fn reserve_for_hooks(mut self, reserve: Duration) -> Self {
        self.hook_reserve = reserve;
        self
    }

    /// The total budget.
    #[must_use]
    pub fn deadline(&self) -> Duration {
        self.deadline
    }
}

/// The report-producing half of a shutdown, returned by
/// [`Scope::shutdown`](crate::Scope::shutdown).
///
/// Every request for the same scope shares one shutdown: whichever request's future is
/// polled drives it, so dropping one of them does not stall the others.
///
/// # Cancel safety
///
/// Dropping this future does not undo the signal phase (the scope stays closed and
/// cancelled). If every future of a running shutdown is dropped, the next request starts
/// the remaining phases again with its own deadline.
#[must_use = "futures must be awaited or polled"]
pub struct ShutdownFuture {
    inner: Shared<BoxFuture<'static, ShutdownReport>>,
}

impl Future for ShutdownFuture {
    type Output = ShutdownReport;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<ShutdownReport> {
        Pin::new(&mut self.inner).poll(cx)
    }
}

impl fmt::Debug for ShutdownFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShutdownFuture")
            .field("finished", &self.inner.peek().is_some())
            .finish()
    }
}

/// A scope's shutdown bookkeeping, behind `ScopeInner::shutdown`.
#[derive(Default)]
pub(crate) struct ShutdownSlot {
    /// The running shutdown, if any future of it is still alive.
    running: Option<WeakShared<BoxFuture<'static, ShutdownReport>>>,
    /// Cancelled by a second request: skip the rest of the grace period.
    skip: CancellationToken,
    /// The first finished shutdown's report.
    report: Option<ShutdownReport>,
}

fn slot(inner: &ScopeInner) -> std::sync::MutexGuard<'_, ShutdownSlot> {
    inner
        .shutdown
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// Starts (or joins) the shutdown of `inner`'s subtree.
pub(crate) fn start(inner: &Arc<ScopeInner>, policy: ShutdownPolicy) -> ShutdownFuture {
    let mut slot = slot(inner);
    if let Some(report) = &slot.report {
        return ShutdownFuture {
            inner: futures_util::future::ready(report.clone()).boxed().shared(),
        };
    }
    if let Some(running) = slot.running.as_ref().and_then(WeakShared::upgrade) {
        tracing::warn!(scope = %inner.path, "second shutdown request: skipping to the abort phase");
        slot.skip.cancel();
        return ShutdownFuture { inner: running };
    }
    let started = Instant::now();
    inner.close_and_cancel();
    tracing::info!(scope = %inner.path, deadline = ?policy.deadline, "shutdown requested");
    let skip = CancellationToken::new();
    let future = drive(inner.clone(), policy, started, skip.clone())
        .boxed()
        .shared();
    slot.running = future.downgrade();
    slot.skip = skip;
    ShutdownFuture { inner: future }
}

/// Whether a shutdown of `inner` finished, or is running and still held by someone.
pub(crate) fn is_started_or_held(inner: &ScopeInner) -> bool {
    let slot = slot(inner);
    slot.report.is_some()
        || slot
            .running
            .as_ref()
            .and_then(WeakShared::upgrade)
            .is_some()
}

/// Phases 2 to 5 (phase 1 ran in `start`).
async fn drive(
    inner: Arc<ScopeInner>,
    policy: ShutdownPolicy,
    started: Instant,
    skip: CancellationToken,
) -> ShutdownReport {
    let scopes = inner.subtree();
    let deadline = started + policy.deadline;
    let grace_end = deadline
        .checked_sub(policy.hook_reserve)
        .map_or(started, |end| end.max(started));

    let all_ended = wait_all(&scopes);
    tokio::pin!(all_ended);
    let mut phase = Phase::Grace;
    let ended_in_grace = tokio::select! {
        // Biased: with a zero deadline, tasks that have already ended still count as
        // ended in grace.
        biased;
        () = &mut all_ended => true,
        () = tokio::time::sleep_until(grace_end) => false,
        () = skip.cancelled() => false,
    };
    if !ended_in_grace {
        phase = Phase::Abort;
        let aborted: usize = scopes.iter().map(|s| s.abort_tasks()).sum();
        tracing::warn!(scope = %inner.path, aborted, "grace period over: aborting the remaining tasks");
        let mut live = live_tasks(&scopes);
        for _ in 0..ShutdownPolicy::ABORT_ROUNDS {
            if tokio::time::timeout(policy.abort_wait, &mut all_ended)
                .await
                .is_ok()
            {
                break;
            }
            // Still ending: an abort lands when the task is next scheduled, and a
            // runtime takes a while to get through a large scope. No progress in a whole
            // round means what is left blocks its thread.
            let now_live = live_tasks(&scopes);
            if now_live == live {
                break;
            }
            live = now_live;
        }
        if live_tasks(&scopes) > 0 {
            phase = Phase::Stuck;
        }
    }
    let stuck = collect_stuck(&scopes);
    let hooks = crate::hooks::run(&scopes, deadline).await;

    let mut counts = OutcomeCounts::default();
    for scope in &scopes {
        counts.add(&scope.registry.ended());
    }
    counts.stuck = stuck.len() as u64;
    let mut tasks = Vec::new();
    let mut omitted = 0;
    for scope in &scopes {
        scope.failures.copy_into(&mut tasks, &mut omitted);
    }
    tasks.extend(stuck);
    if tasks.len() > ShutdownReport::MAX_LISTED {
        omitted += (tasks.len() - ShutdownReport::MAX_LISTED) as u64;
        tasks.truncate(ShutdownReport::MAX_LISTED);
    }
    let cause = scopes.iter().find_map(|s| s.cause().cloned());
    let report = ShutdownReport {
        scope: inner.path.clone(),
        phase,
        elapsed: started.elapsed(),
        counts,
        tasks,
        omitted,
        hooks,
        cause,
    };
    if report.is_clean() {
        tracing::info!(scope = %inner.path, elapsed = ?report.elapsed, "shutdown complete: clean");
    } else {
        let c = &report.counts;
        let not_clean: Vec<_> = report
            .tasks
            .iter()
            .map(|t| {
                format!(
                    "{} {} ({}, spawned at {})",
                    t.outcome, t.name, t.scope, t.spawned_at
                )
            })
            .collect();
        tracing::warn!(
            scope = %inner.path,
            elapsed = ?report.elapsed,
            phase = ?report.phase,
            failed = c.failed,
            panicked = c.panicked,
            aborted = c.aborted,
            stuck = c.stuck,
            tasks = %not_clean.join(", "),
            "shutdown complete: not clean"
        );
    }
    self::slot(&inner).report = Some(report.clone());
    report
}

fn live_tasks(scopes: &[Arc<ScopeInner>]) -> usize {
    scopes.iter().map(|s| s.live()).sum()
}

async fn wait_all(scopes: &[Arc<ScopeInner>]) {
    for scope in scopes {
        scope.wait_idle().await;
    }
}

/// Marks every task still live as stuck, logs it, and lists it for the report.
fn collect_stuck(scopes: &[Arc<ScopeInner>]) -> Vec<TaskReport> {
    let mut stuck = Vec::new();
    for scope in scopes {
        scope.registry.for_each_mut(|entry| {
            entry.state = TaskState::Stuck;
            let age = entry.started.elapsed();
            tracing::warn!(task = %entry.name, scope = %scope.path, spawned_at = %entry.spawned_at, age = ?age, "stuck after abort");
            stuck.push(TaskReport {
                id: entry.id,
                name: entry.name.to_string(),
                scope: scope.path.clone(),
                spawned_at: entry.spawned_at.to_string(),
                age,
                outcome: TaskOutcome::Stuck,
                detail: Some("did not end after abort: it blocks its thread".to_owned()),
                restarts: entry.restarts,
            });
        });
    }
    stuck
}
