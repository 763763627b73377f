//! How one tracked task runs: each attempt under `catch_unwind`, failures logged and
//! handed to the policy, and the end of the task recorded exactly once.
//!
//! Read [`supervise`] first; [`TaskGuard`] is what records an abort.

use std::panic::{AssertUnwindSafe, Location};

use futures_util::FutureExt;

use crate::context::TaskContext;
use crate::error::JoinError;
use crate::policy::{Policy, RestartWindow};
use crate::registry::Slot;
use crate::report::Escalation;
use crate::scope::ScopeInner;
use crate::spawn::Body;
use crate::task::{TaskName, TaskOutcome, TaskOutput, TaskState};

/// Counts a task out of its scope exactly once: by [`finish`](Self::finish) when the task
/// ends on its own, or by `Drop` when tokio drops it unfinished (an abort, or the runtime
/// going away), which is then recorded as aborted.
///
/// It is a parameter of [`supervise`], not a local, so that it exists (and counts the task
/// out) even if tokio drops the task before its first poll.
pub(crate) struct TaskGuard {
    ctx: TaskContext,
    slot: Slot,
    finished: bool,
}

impl TaskGuard {
    pub(crate) fn new(ctx: TaskContext, slot: Slot) -> Self {
        Self {
            ctx,
            slot,
            finished: false,
        }
    }

    fn scope(&self) -> &ScopeInner {
        self.ctx.scope()
    }

    fn finish(mut self, outcome: TaskOutcome, detail: Option<String>) {
        self.finished = true;
        self.scope()
            .task_ended(self.slot, self.ctx.id(), outcome, detail);
    }

    fn set_state(&self, state: TaskState, restarts: u32) {
        self.scope()
            .set_task_state(self.slot, self.ctx.id(), state, restarts);
    }

    /// The task's name and spawn site, read from its registry entry (a cold path).
    fn record(&self) -> Option<(TaskName, &'static Location<'static>)> {
        self.scope()
            .registry
            .update(self.slot, self.ctx.id(), |e| (e.name.clone(), e.spawned_at))
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if !self.finished {
            self.scope()
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
/// ended.
pub(crate) async fn supervise<B: Body>(
    guard: TaskGuard,
    policy: Policy,
    mut body: B,
) -> Result<B::Output, JoinError> {
    let mut window = RestartWindow::default();
    loop {
        let attempt = body
            .start(&guard.ctx)
            .expect("only restartable bodies are started twice, and they always start");
        // AssertUnwindSafe: after a panic the attempt's future is dropped, never polled
        // again, so no broken invariant inside it can be observed.
        let (result, failure) = match AssertUnwindSafe(attempt).catch_unwind().await {
            Ok(output) => match output.failure() {
                None => {
                    guard.finish(TaskOutcome::Completed, None);
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
        log_failure(&guard, &failure);

        let escalation = match policy {
            Policy::Log => None,
            Policy::Escalate => Some(failure.detail().to_owned()),
            // A scope that is stopping does not restart its tasks.
            Policy::Restart(_) if guard.scope().is_closed() => None,
            Policy::Restart(restart) => {
                match window.next_delay(&restart, tokio::time::Instant::now()) {
                    Some(delay) => {
                        let restarts = window.total();
                        guard.set_state(TaskState::Restarting, restarts);
                        tracing::info!(restarts, delay = ?delay, "restarting task after backoff");
                        tokio::select! {
                            () = tokio::time::sleep(delay) => {}
                            () = guard.ctx.cancelled() => {
                                guard.finish(failure.outcome(), Some(failure.detail().to_owned()));
                                return result;
                            }
                        }
                        guard.set_state(TaskState::Running, restarts);
                        continue;
                    }
                    None => Some(format!(
                        "restart intensity exceeded ({} restarts); last failure: {}",
                        window.total(),
                        failure.detail()
                    )),
                }
            }
        };
        if let Some(reason) = escalation {
            let cause = describe(&guard, reason);
            guard.ctx.scope().escalate(cause);
        }
        guard.finish(failure.outcome(), Some(failure.detail().to_owned()));
        return result;
    }
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
