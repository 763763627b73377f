//! How one tracked task runs: each attempt under `catch_unwind`, failures logged and
//! handed to the policy, and the end of the task recorded exactly once.
//!
//! Read [`supervise`] first; [`TaskGuard`] is what records an abort.

use std::cell::Cell;
use std::future::Future;
use std::panic::{AssertUnwindSafe, Location};

use futures_util::FutureExt;

use crate::context::{CURRENT, TaskContext};
use crate::error::JoinError;
use crate::policy::Policy;
use crate::registry::Slot;
use crate::report::Escalation;
use crate::spawn::Body;
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
    slot: Slot,
    finished: Cell<bool>,
}

impl TaskGuard {
    pub(crate) fn new(ctx: TaskContext, slot: Slot) -> Self {
        Self {
            ctx,
            slot,
            finished: Cell::new(false),
        }
    }

    fn finish(&self, outcome: TaskOutcome, detail: Option<String>) {
        self.finished.set(true);
        self.ctx
            .scope()
            .task_ended(self.slot, self.ctx.id(), outcome, detail);
    }

    fn set_state(&self, state: TaskState, restarts: u32) {
        self.ctx
            .scope()
            .set_task_state(self.slot, self.ctx.id(), state, restarts);
    }

    /// The task's name and spawn site, read from its registry entry (a cold path).
    fn record(&self) -> Option<(TaskName, &'static Location<'static>)> {
        self.ctx
            .scope()
            .registry
            .update(self.slot, self.ctx.id(), |e| (e.name.clone(), e.spawned_at))
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if !self.finished.get() {
            self.ctx
                .scope()
                .task_ended(self.slot, self.ctx.id(), TaskOutcome::Aborted, None);
        }
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

/// Runs a task's attempts until one succeeds or the policy gives up, and records how it
/// ended. Runs inside the task-local scope of the task's [`TaskGuard`].
///
/// A plain `fn` returning an `async move` block, so that its arguments are stored once in
/// the future (an `async fn` keeps a second copy of them). Everything after a failure runs
/// in a boxed future: it is rare, and keeping it out of this state machine keeps every
/// task's future, and so tokio's task cell, small.
#[expect(
    clippy::manual_async_fn,
    reason = "an `async fn` would store its arguments twice in every task's future"
)]
pub(crate) fn supervise<B: Body>(
    mut policy: Policy,
    mut body: B,
) -> impl Future<Output = Result<B::Output, JoinError>> + Send + 'static {
    async move {
        loop {
            let attempt = CURRENT
                .with(|guard| body.start(&guard.ctx))
                .expect("only restartable bodies are started twice, and they always start");
            // AssertUnwindSafe: after a panic the attempt's future is dropped, never
            // polled again, so no broken invariant inside it can be observed.
            let (result, failure) = match AssertUnwindSafe(attempt).catch_unwind().await {
                Ok(output) => match output.failure() {
                    None => {
                        CURRENT.with(|guard| guard.finish(TaskOutcome::Completed, None));
                        return Ok(output);
                    }
                    Some(error) => (Ok(output), Failure::Error(error)),
                },
                Err(payload) => {
                    let message = crate::panic::message(payload.as_ref());
                    let detail = match crate::panic::take_location() {
                        Some(location) => format!("{message} (at {location})"),
                        None => message.clone(),
                    };
                    (Err(JoinError::Panicked(message)), Failure::Panic(detail))
                }
            };
            match Box::pin(after_failure(&mut policy, failure)).await {
                Next::Retry => {}
                Next::Stop => return result,
            }
        }
    }
}

/// What a task does after a failed attempt.
enum Next {
    Retry,
    Stop,
}

/// Logs a failure and applies the policy: escalate, give up, or wait out the backoff and
/// ask for another attempt. Records the task's end unless it retries.
async fn after_failure(policy: &mut Policy, failure: Failure) -> Next {
    CURRENT.with(|guard| log_failure(guard, &failure));
    let closed = CURRENT.with(|guard| guard.ctx.scope().is_closed());
    let escalation = match policy {
        Policy::Log => None,
        Policy::Escalate => Some(failure.detail().to_owned()),
        // A scope that is stopping does not restart its tasks.
        Policy::Restart(_) if closed => None,
        Policy::Restart(restart) => match restart.next_delay(tokio::time::Instant::now()) {
            Some(delay) => {
                let restarts = restart.total();
                CURRENT.with(|guard| guard.set_state(TaskState::Restarting, restarts));
                tracing::info!(restarts, delay = ?delay, "restarting task after backoff");
                let token = CURRENT.with(|guard| guard.ctx.token());
                tokio::select! {
                    () = tokio::time::sleep(delay) => {
                        CURRENT.with(|guard| guard.set_state(TaskState::Running, restarts));
                        return Next::Retry;
                    }
                    () = token.cancelled() => None,
                }
            }
            None => Some(format!(
                "restart intensity exceeded ({} restarts); last failure: {}",
                restart.total(),
                failure.detail()
            )),
        },
    };
    CURRENT.with(|guard| {
        if let Some(reason) = escalation {
            guard.ctx.scope().escalate(describe(guard, reason));
        }
        guard.finish(failure.outcome(), Some(failure.detail().to_owned()));
    });
    Next::Stop
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
