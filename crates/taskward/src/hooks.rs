//! Shutdown hooks: work that runs once, after a scope's tasks have stopped (flush a
//! buffer, close a pool), inside the shutdown deadline.
//!
//! Read [`Hook`] first; [`run`] is the shutdown's last phase.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tokio::time::Instant;

use crate::report::{HookOutcome, HookReport};
use crate::scope::ScopeInner;
use crate::task::{TaskName, TaskOutput};

type Run = Box<dyn FnOnce() -> BoxFuture<'static, Option<String>> + Send>;

/// One registered shutdown hook.
pub(crate) struct Hook {
    name: TaskName,
    run: Run,
}

impl Hook {
    pub(crate) fn new<F, Fut>(name: TaskName, hook: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: TaskOutput,
    {
        Self {
            name,
            run: Box::new(move || Box::pin(async move { hook().await.failure() })),
        }
    }

    pub(crate) fn name(&self) -> &TaskName {
        &self.name
    }
}

/// A scope's hooks, in registration order. Locked only to register, to take them for a
/// shutdown, and when a dropped child scope hands its hooks to its parent.
#[derive(Default)]
pub(crate) struct HookList(Mutex<Hooks>);

#[derive(Default)]
struct Hooks {
    waiting: Vec<Hook>,
    /// Set when a shutdown took the hooks: a hook added later would never run.
    taken: bool,
}

impl HookList {
    /// Adds a hook, or hands it back if this list's shutdown already took the hooks.
    pub(crate) fn push(&self, hook: Hook) -> Result<(), Hook> {
        let mut hooks = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if hooks.taken {
            return Err(hook);
        }
        hooks.waiting.push(hook);
        Ok(())
    }

    pub(crate) fn has_any(&self) -> bool {
        !self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .waiting
            .is_empty()
    }

    /// Takes every hook: each runs at most once, whoever takes it.
    fn take(&self) -> Vec<Hook> {
        let mut hooks = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        hooks.taken = true;
        std::mem::take(&mut hooks.waiting)
    }

    /// Moves these hooks to the end of `parent`'s list, so they run before the parent's
    /// own (hooks run in reverse order). Hooks the parent can no longer run are named in
    /// a warning rather than dropped silently.
    pub(crate) fn drain_into(&self, parent: &Self, path: &str) {
        for hook in self.take() {
            if let Err(hook) = parent.push(hook) {
                tracing::warn!(hook = %hook.name, scope = %path, "shutdown hook never ran: its scope was dropped after its parent shut down");
            }
        }
    }
}

/// Runs the hooks of `scopes` (given parents first): children's before their parent's,
/// each scope's in reverse registration order, each bounded by `deadline`. A hook still
/// running at the deadline is dropped and reported as timed out; one whose turn comes
/// after the deadline is polled once, so a hook that needs no waiting still runs.
pub(crate) async fn run(scopes: &[Arc<ScopeInner>], deadline: Instant) -> Vec<HookReport> {
    let mut reports = Vec::new();
    for scope in scopes.iter().rev() {
        for hook in scope.hooks.take().into_iter().rev() {
            let started = Instant::now();
            let future = AssertUnwindSafe((hook.run)()).catch_unwind();
            let outcome = match tokio::time::timeout_at(deadline, future).await {
                Ok(Ok(None)) => HookOutcome::Completed,
                Ok(Ok(Some(error))) => HookOutcome::Failed(error),
                Ok(Err(panic)) => HookOutcome::Panicked(crate::panic::message(panic.as_ref())),
                Err(_) => HookOutcome::TimedOut,
            };
            if outcome != HookOutcome::Completed {
                tracing::warn!(hook = %hook.name, scope = %scope.path, outcome = ?outcome, "shutdown hook did not succeed");
            }
            reports.push(HookReport {
                name: hook.name.to_string(),
                scope: scope.path.clone(),
                outcome,
                elapsed: started.elapsed(),
            });
        }
    }
    reports
}
