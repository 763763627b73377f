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
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::context::TaskContext;
use crate::report::{OutcomeCounts, Phase, ShutdownReport, TaskReport};
use crate::scope::ScopeInner;
use crate::task::{TaskId, TaskOutcome, TaskState};

/// How long a shutdown may take, and how that time is shared out.
///
/// The timeline, from the moment [`Scope::shutdown_with`](crate::Scope::shutdown_with) is
/// called (`t0`):
///
/// 1. **signal**: the subtree is closed to new tasks and cancelled, at `t0`;
/// 2. **grace**: wait for every task to end, until `t0 + deadline - hook_reserve` (by
///    default, a quarter of the deadline is kept for hooks when the subtree has any);
/// 3. **abort**: abort what is left and wait for the aborts to land, until every task
///    ended, until none ended for a whole `abort_wait`, or until
///    [`ShutdownPolicy::ABORT_ROUNDS`] `× abort_wait` after the abort began, whichever
///    comes first. The aborts are sent in batches, one task first, a batch growing while
///    its drops are quick (a scope of 100,000 tasks gets through in a few dozen batches),
///    so that tasks whose `Drop` blocks never queue more than a batch of drops ahead of
///    the shutdown; those not sent by then are sent, paced the same way, after the
///    report;
/// 4. **stuck**: whatever still runs (it blocks its thread, or its drop does) is reported
///    stuck;
/// 5. **hooks** run, each bounded by `t0 + deadline`.
///
/// So a shutdown returns by `t0 + deadline + ABORT_ROUNDS * abort_wait` (with the
/// defaults, one second past the deadline; plus one poll of each hook whose turn comes
/// after the deadline), whatever the tasks' drops do, give or take the one drop that is
/// running when that time comes: a runtime cannot interrupt a drop, and on a
/// current-thread runtime the drops run on the thread that drives the shutdown. When only
/// blocked tasks are left, it returns by `t0 + deadline + abort_wait`. That holds even
/// when a task never yields, as long as the shutdown itself can run: on a multi-thread
/// runtime with a worker that is not blocked, or from `block_on`. On a current-thread
/// runtime, a task that blocks the thread blocks everything. A zero deadline is valid: it
/// means "abort now".
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
    hook_reserve: Option<Duration>,
}

impl ShutdownPolicy {
    /// The default wait for aborts to land.
    pub const DEFAULT_ABORT_WAIT: Duration = Duration::from_millis(100);

    /// The deadline of the shutdown a task's escalation starts.
    pub const ESCALATION_DEADLINE: Duration = Duration::from_secs(30);

    /// The abort phase lasts at most this many abort waits: the margin past the deadline.
    pub const ABORT_ROUNDS: u32 = 10;

    /// A shutdown that ends within `deadline`, plus at most `ABORT_ROUNDS` abort waits
    /// (see the timeline).
    /// `Duration::MAX` means no deadline.
    #[must_use]
    pub fn new(deadline: Duration) -> Self {
        Self {
            deadline,
            abort_wait: Self::DEFAULT_ABORT_WAIT,
            hook_reserve: None,
        }
    }

    /// How long to wait, with no aborted task ending, before reporting the rest stuck;
    /// the abort phase lasts at most `ABORT_ROUNDS` times this.
    #[must_use]
    pub fn abort_wait(mut self, wait: Duration) -> Self {
        self.abort_wait = wait;
        self
    }

    /// Ends the grace period this much before the deadline, so that hooks have at least
    /// this long even when tasks use all of their grace. Default: a quarter of the
    /// deadline when the subtree has hooks, nothing otherwise.
    #[must_use]
    pub fn reserve_for_hooks(mut self, reserve: Duration) -> Self {
        self.hook_reserve = Some(reserve);
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
/// Every request for the same scope shares one shutdown. Started inside a tokio runtime,
/// it also runs on a task of its own, so it completes (and its hooks run) even if every
/// caller stops waiting, and even if the caller is a task of the scope being shut down.
///
/// # Cancel safety
///
/// Dropping this future does not stop the shutdown nor undo its signal phase. If it was
/// started outside a runtime and nothing else drives it, dropping its last future while
/// no `Scope` handle is left aborts the subtree's tasks with a warning, as dropping the
/// scope would have.
#[must_use = "futures must be awaited or polled"]
pub struct ShutdownFuture {
    inner: Shared<BoxFuture<'static, ShutdownReport>>,
    scope: Arc<ScopeInner>,
}

impl Drop for ShutdownFuture {
    fn drop(&mut self) {
        // The last holder of a shutdown nobody else drives, for a scope nobody holds:
        // without this, tasks that ignore cancellation would run on unseen.
        if self.inner.peek().is_none()
            && self.inner.strong_count() == Some(1)
            && self.scope.handles() == 0
        {
            self.scope.abandon();
        }
    }
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
    /// Cancelled by [`Scope::abort_now`](crate::Scope::abort_now): skip the rest of the
    /// grace period.
    skip: CancellationToken,
    /// The first finished shutdown's report.
    report: Option<ShutdownReport>,
    /// The aborts the abort phase had no time to send, for the runner task to send once
    /// the report is out.
    left: Vec<AbortHandle>,
}

fn slot(inner: &ScopeInner) -> std::sync::MutexGuard<'_, ShutdownSlot> {
    inner
        .shutdown
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// How a request treats a shutdown that is already running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Request {
    /// Join it (and its report).
    Join,
    /// Skip it to its abort phase (a second Ctrl-C).
    Now,
}

/// Starts (or joins) the shutdown of `inner`'s subtree.
pub(crate) fn start(
    inner: &Arc<ScopeInner>,
    policy: ShutdownPolicy,
    request: Request,
) -> ShutdownFuture {
    let future = {
        let mut slot = slot(inner);
        if let Some(report) = &slot.report {
            let report = report.clone();
            drop(slot);
            return ShutdownFuture {
                inner: futures_util::future::ready(report).boxed().shared(),
                scope: inner.clone(),
            };
        }
        let running = slot.running.as_ref().and_then(WeakShared::upgrade);
        if let Some(running) = running {
            if request == Request::Now {
                tracing::warn!(scope = %inner.path, "shutdown requested again: skipping to the abort phase");
                slot.skip.cancel();
            }
            drop(slot);
            return ShutdownFuture {
                inner: running,
                scope: inner.clone(),
            };
        }
        let started = Instant::now();
        tracing::info!(scope = %inner.path, deadline = ?policy.deadline, "shutdown requested");
        let skip = CancellationToken::new();
        if request == Request::Now {
            skip.cancel();
        }
        let caller = calling_task_within(inner);
        let reaper = tokio::runtime::Handle::try_current().is_ok();
        let future = drive(inner.clone(), policy, started, skip.clone(), caller, reaper)
            .boxed()
            .shared();
        slot.running = future.downgrade();
        slot.skip = skip;
        future
    };
    // Outside the slot lock: cancelling wakes tasks, and nothing here may run under it.
    inner.close_and_cancel();
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        // Driven by a task of its own too: it finishes even if every caller stops polling.
        // After the report, it sends the aborts the abort phase had no time for.
        let scope = inner.clone();
        let abort_wait = policy.abort_wait;
        runtime.spawn(future.clone().then(move |_| {
            let left = std::mem::take(&mut slot(&scope).left);
            crate::abort::reap(left, abort_wait)
        }));
    }
    ShutdownFuture {
        inner: future,
        scope: inner.clone(),
    }
}

/// The tracked task this is called from, if it belongs to `inner`'s subtree: a task that
/// shuts down its own scope is neither waited for nor aborted by that shutdown.
fn calling_task_within(inner: &Arc<ScopeInner>) -> Option<(Arc<ScopeInner>, TaskId)> {
    let ctx = TaskContext::current()?;
    let own = ctx.scope().clone();
    let mut scope = Some(&own);
    while let Some(s) = scope {
        if Arc::ptr_eq(s, inner) {
            return Some((own.clone(), ctx.id()));
        }
        scope = s.parent();
    }
    None
}

/// Whether a shutdown of `inner` or of one of its ancestors finished, or is running and
/// still held by someone: that shutdown owns the ending of `inner`'s tasks.
pub(crate) fn is_started_or_held(inner: &ScopeInner) -> bool {
    let mut scope = Some(inner);
    while let Some(s) = scope {
        let running = {
            let slot = slot(s);
            if slot.report.is_some() {
                return true;
            }
            slot.running.as_ref().and_then(WeakShared::upgrade)
        };
        // Dropped outside the lock: it may be the last strong reference.
        if running.is_some() {
            return true;
        }
        scope = s.parent().map(|p| &**p);
    }
    false
}

/// Phases 2 to 5 (phase 1 ran in `start`).
async fn drive(
    inner: Arc<ScopeInner>,
    policy: ShutdownPolicy,
    started: Instant,
    skip: CancellationToken,
    caller: Option<(Arc<ScopeInner>, TaskId)>,
    reaper: bool,
) -> ShutdownReport {
    let scopes = inner.subtree();
    // `Duration::MAX` is "no deadline": a far future, as tokio's own timers do it.
    let deadline = started
        .checked_add(policy.deadline)
        .unwrap_or_else(|| started + FAR_FUTURE);
    let reserve = policy.hook_reserve.unwrap_or_else(|| {
        if scopes.iter().any(|s| s.hooks.has_any()) {
            policy.deadline.min(FAR_FUTURE) / 4
        } else {
            Duration::ZERO
        }
    });
    let grace_end = deadline
        .checked_sub(reserve)
        .map_or(started, |end| end.max(started));
    let exempt = caller.as_ref().map(|(scope, id)| (&**scope, *id));

    let all_ended = wait_all(&scopes, exempt);
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
        tracing::warn!(scope = %inner.path, live = live_tasks(&scopes, exempt), "grace period over: aborting the remaining tasks");
        let left = crate::abort::run(&scopes, exempt, policy.abort_wait).await;
        if reaper {
            self::slot(&inner).left = left;
        } else {
            // Nobody will send them later: now, at the cost of delaying this report.
            left.iter().for_each(AbortHandle::abort);
        }
        if live_tasks(&scopes, exempt) > 0 {
            phase = Phase::Stuck;
        }
    }
    let stuck = collect_stuck(&scopes, exempt.map(|(_, id)| id));
    let hooks = crate::hooks::run(&scopes, deadline).await;

    let mut counts = OutcomeCounts::default();
    for scope in &scopes {
        counts.add(&scope.registry.ended());
    }
    counts.stuck = stuck.len() as u64;
    // The stragglers first, all of them: they are what an operator must look at. Past
    // failures only get the slots of a bounded window, newest first.
    let mut tasks = stuck;
    for scope in &scopes {
        scope.failures.copy_stragglers(&mut tasks);
    }
    let stragglers = tasks.len();
    let mut recent = Vec::new();
    let mut omitted = 0;
    for scope in &scopes {
        scope.failures.copy_recent(&mut recent, &mut omitted);
    }
    // Stable: rows recorded at the same instant keep their order, reversed below.
    recent.sort_by_key(|(at, _)| *at);
    recent.reverse();
    if recent.len() > ShutdownReport::MAX_LISTED {
        omitted += (recent.len() - ShutdownReport::MAX_LISTED) as u64;
        recent.truncate(ShutdownReport::MAX_LISTED);
    }
    tasks.extend(recent.into_iter().map(|(_, report)| report));
    let mut escalations = Vec::new();
    for scope in &scopes {
        escalations.extend(scope.cause().cloned());
        scope.failures.copy_causes(&mut escalations);
    }
    let cause = escalations.first().cloned();
    let report = ShutdownReport {
        scope: inner.path.clone(),
        phase,
        elapsed: started.elapsed(),
        counts,
        tasks,
        stragglers,
        omitted,
        hooks,
        cause,
        escalations,
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

/// Roughly thirty years: "no deadline" without overflowing an `Instant`.
pub(crate) const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// A task left out of a shutdown's counts: the caller, when it is a task of the subtree.
type Exempt<'a> = Option<(&'a ScopeInner, TaskId)>;

/// The exempt task, if `scope` owns it.
fn exempt_in(scope: &ScopeInner, exempt: Exempt<'_>) -> Option<TaskId> {
    exempt.and_then(|(s, id)| std::ptr::eq(s, scope).then_some(id))
}

pub(crate) fn live_tasks(scopes: &[Arc<ScopeInner>], exempt: Exempt<'_>) -> usize {
    scopes
        .iter()
        .map(|s| s.live_except(exempt_in(s, exempt)))
        .sum()
}

async fn wait_all(scopes: &[Arc<ScopeInner>], exempt: Exempt<'_>) {
    for scope in scopes {
        scope.wait_until_only(exempt_in(scope, exempt)).await;
    }
}

/// Marks every task still live as stuck, logs it, and lists it for the report.
fn collect_stuck(scopes: &[Arc<ScopeInner>], exempt: Option<TaskId>) -> Vec<TaskReport> {
    let mut stuck = Vec::new();
    for scope in scopes {
        scope.registry.for_each_mut(|entry| {
            if Some(entry.id) == exempt {
                return;
            }
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
                detail: Some(
                    "did not end in the abort phase: it blocks its thread, or its drop does"
                        .to_owned(),
                ),
                restarts: entry.restarts,
            });
        });
    }
    stuck
}
