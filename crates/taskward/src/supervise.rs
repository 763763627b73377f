//! How one tracked task runs: its future under `catch_unwind`, its output judged, a
//! failure logged and handed to the policy, and its end recorded exactly once.
//!
//! Read [`Supervised`] first (every one-shot task), then [`restarting`] (tasks with a
//! restart policy); [`TaskGuard`] is what records an abort.

use std::any::Any;
use std::cell::Cell;
use std::future::Future;
use std::panic::{AssertUnwindSafe, Location};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures_util::FutureExt;
use futures_util::future::CatchUnwind;
use pin_project_lite::pin_project;

use crate::context::{CURRENT, TaskContext};
use crate::error::JoinError;
use crate::policy::{FailurePolicy, Restarts};
use crate::report::Escalation;
use crate::task::{TaskName, TaskOutcome, TaskOutput, TaskState};

/// A task's own record of itself, held as the task-local value around its future: it is
/// the context `taskward::spawn` and [`TaskContext::current`] read, and it counts the task
/// out of its scope exactly once. By [`finish`](Self::finish) when the task ends on its
/// own, or by `Drop` when tokio drops the task unfinished (an abort, the runtime going
/// away, even before the first poll), which is recorded as aborted.
///
/// Living in the task-local slot, it is the task's only reference to its scope.
pub(crate) struct TaskGuard {
    pub(crate) ctx: TaskContext,
    finished: Cell<bool>,
}

impl TaskGuard {
    pub(crate) fn new(ctx: TaskContext) -> Self {
        Self {
            ctx,
            finished: Cell::new(false),
        }
    }

    fn finish(&self, outcome: TaskOutcome, detail: Option<String>) {
        self.finished.set(true);
        self.ctx
            .scope()
            .task_ended(self.ctx.slot(), self.ctx.id(), outcome, detail);
    }

    /// Records that the task's future could not even be built: its builder panicked.
    pub(crate) fn building_panicked(self, payload: &(dyn Any + Send)) {
        let message = crate::panic::message(payload);
        let failure = Failure::Panic(match crate::panic::take_location() {
            Some(location) => format!("{message} (at {location}, while building the task)"),
            None => format!("{message} (while building the task)"),
        });
        log_failure(&self, &failure);
        self.finish(failure.outcome(), Some(failure.detail().to_owned()));
    }

    /// Records a failed attempt that will be started again, for the report.
    fn restarted(&self, failure: &Failure, restarts: u32) {
        let detail = match failure {
            Failure::Error(error) => format!("failed: {error}"),
            Failure::Panic(panic) => format!("panicked: {panic}"),
        };
        self.ctx
            .scope()
            .task_restarted(self.ctx.slot(), self.ctx.id(), detail, restarts);
    }

    fn set_state(&self, state: TaskState, restarts: u32) {
        self.ctx
            .scope()
            .set_task_state(self.ctx.slot(), self.ctx.id(), state, restarts);
    }

    /// The task's name and spawn site, read from its registry entry (a cold path).
    fn record(&self) -> Option<(TaskName, &'static Location<'static>)> {
        self.ctx
            .scope()
            .registry
            .update(self.ctx.slot(), self.ctx.id(), |e| {
                (e.name.clone(), e.spawned_at)
            })
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if !self.finished.get() {
            self.ctx
                .scope()
                .task_ended(self.ctx.slot(), self.ctx.id(), TaskOutcome::Aborted, None);
        }
    }
}

pin_project! {
    /// The future of a one-shot task: the user's future, polled in place under
    /// `catch_unwind`, judged and recorded when it ends.
    ///
    /// Written by hand rather than as an `async` block, so that it adds one byte to the
    /// user's future: tokio allocates each task in a cell sized in 128-byte steps, and a
    /// larger cell is both memory and a slower, lock-taking free in the allocator.
    pub(crate) struct Supervised<F> {
        #[pin]
        future: CatchUnwind<AssertUnwindSafe<F>>,
        policy: FailurePolicy,
    }
}

impl<F> Supervised<F>
where
    F: Future,
{
    pub(crate) fn new(future: F, policy: FailurePolicy) -> Self {
        Self {
            // AssertUnwindSafe: after a panic the future is dropped, never polled again,
            // so no broken invariant inside it can be observed.
            future: AssertUnwindSafe(future).catch_unwind(),
            policy,
        }
    }
}

impl<F> Future for Supervised<F>
where
    F: Future,
    F::Output: TaskOutput,
{
    type Output = Result<F::Output, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let caught = ready!(this.future.poll(cx));
        let (result, failure) = judge(caught);
        CURRENT.with(|guard| match failure {
            None => guard.finish(TaskOutcome::Completed, None),
            Some(failure) => {
                let escalation = match this.policy {
                    FailurePolicy::Log => None,
                    FailurePolicy::Escalate => Some(failure.detail().to_owned()),
                };
                end_failed(guard, &failure, escalation);
            }
        });
        Poll::Ready(result)
    }
}

/// Runs a restartable task: an attempt from `factory`, and after each failure a backoff
/// and another attempt, until one succeeds, the scope stops, or the failures exceed the
/// restart intensity (then it escalates).
pub(crate) async fn restarting<F, Fut>(
    mut restarts: Restarts,
    mut factory: F,
) -> Result<Fut::Output, JoinError>
where
    F: FnMut(TaskContext) -> Fut + Send + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: TaskOutput,
{
    loop {
        // A factory that panics is a failed attempt like any other.
        let build = AssertUnwindSafe(|| CURRENT.with(|guard| factory(guard.ctx.clone())));
        let caught = match std::panic::catch_unwind(build) {
            Ok(attempt) => AssertUnwindSafe(attempt).catch_unwind().await,
            Err(payload) => Err(payload),
        };
        let (result, failure) = judge(caught);
        let Some(failure) = failure else {
            CURRENT.with(|guard| guard.finish(TaskOutcome::Completed, None));
            return result;
        };
        let (closed, token) =
            CURRENT.with(|guard| (guard.ctx.scope().is_closed(), guard.ctx.token()));
        // A scope that is stopping does not restart its tasks.
        let escalation = match restarts.next_delay(tokio::time::Instant::now()) {
            _ if closed => None,
            Some(delay) => {
                let count = restarts.total();
                CURRENT.with(|guard| {
                    log_failure(guard, &failure);
                    guard.restarted(&failure, count);
                    guard.set_state(TaskState::Restarting, count);
                });
                tracing::info!(restarts = count, delay = ?delay, "restarting task after backoff");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {
                        CURRENT.with(|guard| guard.set_state(TaskState::Running, count));
                        continue;
                    }
                    () = token.cancelled() => {
                        CURRENT.with(|guard| guard.finish(failure.outcome(), Some(failure.detail().to_owned())));
                        return result;
                    }
                }
            }
            None => Some(format!(
                "restart intensity exceeded ({} restarts); last failure: {}",
                restarts.total(),
                failure.detail()
            )),
        };
        CURRENT.with(|guard| end_failed(guard, &failure, escalation));
        return result;
    }
}

/// One failed attempt.
enum Failure {
    Error(String),
    Panic(String),
}

impl Failure {
    fn outcome(&self) -> TaskOutcome {
        match self {
            Self::Error(_) => TaskOutcome::Failed,
            Self::Panic(_) => TaskOutcome::Panicked,
        }
    }

    fn detail(&self) -> &str {
        match self {
            Self::Error(e) | Self::Panic(e) => e,
        }
    }
}

/// Splits a caught attempt into what the task's handle returns and its failure, if any.
fn judge<T: TaskOutput>(
    caught: Result<T, Box<dyn Any + Send>>,
) -> (Result<T, JoinError>, Option<Failure>) {
    match caught {
        Ok(output) => {
            let failure = output.failure().map(Failure::Error);
            (Ok(output), failure)
        }
        Err(payload) => {
            let message = crate::panic::message(payload.as_ref());
            let detail = match crate::panic::take_location() {
                Some(location) => format!("{message} (at {location})"),
                None => message.clone(),
            };
            (
                Err(JoinError::Panicked(message)),
                Some(Failure::Panic(detail)),
            )
        }
    }
}

/// Logs a failure that ends the task, escalates it if `escalation` says why, and records
/// the task's end.
fn end_failed(guard: &TaskGuard, failure: &Failure, escalation: Option<String>) {
    log_failure(guard, failure);
    if let Some(reason) = escalation {
        guard.ctx.scope().escalate(describe(guard, reason));
    }
    guard.finish(failure.outcome(), Some(failure.detail().to_owned()));
}

fn log_failure(guard: &TaskGuard, failure: &Failure) {
    let Some((name, spawned_at)) = guard.record() else {
        return;
    };
    let scope = guard.ctx.scope_path();
    match failure {
        Failure::Error(error) => {
            tracing::error!(task = %name, scope = %scope, spawned_at = %spawned_at, error = %error, "task failed");
        }
        Failure::Panic(panic) => {
            tracing::error!(task = %name, scope = %scope, spawned_at = %spawned_at, panic = %panic, "task panicked");
        }
    }
}

fn describe(guard: &TaskGuard, reason: String) -> Escalation {
    let (task, spawned_at) = guard.record().map_or_else(
        || (guard.ctx.id().to_string(), "unknown".to_owned()),
        |(name, site)| (name.to_string(), site.to_string()),
    );
    Escalation {
        task,
        scope: guard.ctx.scope_path().to_owned(),
        spawned_at,
        reason,
    }
}
