//! Spawning: the builder behind every `spawn*`, and the one function that admits a task
//! into its scope, records it and hands it to tokio.
//!
//! Read [`TaskBuilder`] first.

use std::future::Future;
use std::panic::{AssertUnwindSafe, Location};
use std::sync::Arc;

use tracing::Instrument;

use crate::context::{CURRENT, TaskContext};
use crate::error::JoinError;
use crate::error::SpawnError;
use crate::policy::{FailurePolicy, RestartPolicy, Restarts};
use crate::registry::TaskEntry;
use crate::scope::ScopeInner;
use crate::supervise::{Supervised, TaskGuard, restarting};
use crate::task::{TaskHandle, TaskId, TaskName, TaskOutput, TaskState};

/// Builds one task: its failure policy, and whether it gets its context as an argument.
///
/// Made by [`Scope::task`](crate::Scope::task) and
/// [`TaskContext::task`](crate::TaskContext::task).
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use taskward::{FailurePolicy, Scope};
///
/// let app = Scope::root("app");
/// app.task("ticker")
///     .on_failure(FailurePolicy::Escalate)
///     .spawn_with(|ctx| async move {
///         let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
///         loop {
///             tokio::select! {
///                 _ = ctx.cancelled() => return Ok::<_, std::io::Error>(()),
///                 _ = tick.tick() => {}
///             }
///         }
///     })
///     .expect("app is open");
/// assert!(app.shutdown(std::time::Duration::from_secs(1)).await.is_clean());
/// # }
/// ```
#[derive(Debug)]
#[must_use = "a TaskBuilder does nothing until one of its spawn methods is called"]
pub struct TaskBuilder<'a> {
    scope: &'a Arc<ScopeInner>,
    name: TaskName,
    policy: FailurePolicy,
}

impl<'a> TaskBuilder<'a> {
    pub(crate) fn new(scope: &'a Arc<ScopeInner>, name: TaskName) -> Self {
        Self {
            scope,
            name,
            policy: FailurePolicy::default(),
        }
    }

    /// Sets what happens when the task fails (returns `Err` or panics). Default: log.
    pub fn on_failure(mut self, policy: FailurePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Makes the task restartable: on failure it is started again, after a backoff,
    /// until it fails more often than `policy` allows; then it escalates.
    ///
    /// A restartable task is built by a factory called once per attempt, so it is
    /// spawned with [`RestartBuilder::spawn`].
    pub fn restart(self, policy: RestartPolicy) -> RestartBuilder<'a> {
        RestartBuilder {
            scope: self.scope,
            name: self.name,
            policy,
        }
    }

    /// Spawns `future` as the task.
    ///
    /// # Errors
    ///
    /// See [`Scope::spawn`](crate::Scope::spawn).
    #[track_caller]
    pub fn spawn<F>(self, future: F) -> Result<TaskHandle<F::Output>, SpawnError>
    where
        F: Future + Send + 'static,
        F::Output: TaskOutput,
    {
        let policy = self.policy;
        spawn_task(self.scope, self.name, Location::caller(), |_| {
            Supervised::new(future, policy)
        })
    }

    /// Spawns the future that `make` builds from the task's own [`TaskContext`].
    ///
    /// # Errors
    ///
    /// See [`Scope::spawn`](crate::Scope::spawn).
    #[track_caller]
    pub fn spawn_with<F, Fut>(self, make: F) -> Result<TaskHandle<Fut::Output>, SpawnError>
    where
        F: FnOnce(TaskContext) -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: TaskOutput,
    {
        let policy = self.policy;
        spawn_task(self.scope, self.name, Location::caller(), |ctx| {
            Supervised::new(make(ctx.clone()), policy)
        })
    }
}

/// Builds a restartable task. Made by [`TaskBuilder::restart`].
#[derive(Debug)]
#[must_use = "a RestartBuilder does nothing until `spawn` is called"]
pub struct RestartBuilder<'a> {
    scope: &'a Arc<ScopeInner>,
    name: TaskName,
    policy: RestartPolicy,
}

impl RestartBuilder<'_> {
    /// Spawns the task; `factory` builds the future of each attempt.
    ///
    /// # Errors
    ///
    /// See [`Scope::spawn`](crate::Scope::spawn).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use std::sync::Arc;
    /// use taskward::{RestartPolicy, Scope};
    ///
    /// let app = Scope::root("app");
    /// let attempts = Arc::new(AtomicU32::new(0));
    /// let seen = attempts.clone();
    /// let task = app
    ///     .task("flaky")
    ///     .restart(RestartPolicy::default())
    ///     .spawn(move |_ctx| {
    ///         let attempt = seen.fetch_add(1, Ordering::SeqCst);
    ///         async move { if attempt < 2 { Err("not yet") } else { Ok(()) } }
    ///     })
    ///     .expect("app is open");
    /// assert_eq!(task.await, Ok(Ok(())));
    /// assert_eq!(attempts.load(Ordering::SeqCst), 3);
    /// # let _ = app.shutdown(std::time::Duration::ZERO).await;
    /// # }
    /// ```
    #[track_caller]
    pub fn spawn<F, Fut>(self, factory: F) -> Result<TaskHandle<Fut::Output>, SpawnError>
    where
        F: FnMut(TaskContext) -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: TaskOutput,
    {
        let restarts = Restarts::new(self.policy);
        spawn_task(self.scope, self.name, Location::caller(), |_| {
            restarting(restarts, factory)
        })
    }
}

/// Admits, records and spawns one task.
///
/// `make` builds the task's whole future from its context, on this thread, before the task
/// is handed to tokio.
pub(crate) fn spawn_task<T, Fut>(
    scope: &Arc<ScopeInner>,
    name: TaskName,
    spawned_at: &'static Location<'static>,
    make: impl FnOnce(&TaskContext) -> Fut,
) -> Result<TaskHandle<T>, SpawnError>
where
    T: Send + 'static,
    Fut: Future<Output = Result<T, JoinError>> + Send + 'static,
{
    // Inside a task there is a runtime, and `tokio::spawn` uses it without the reference
    // count traffic of `Handle::try_current`, which every worker's tasks share.
    let runtime = if tokio::task::try_id().is_some() {
        None
    } else {
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => Some(handle),
            Err(_) => {
                return Err(SpawnError::NoRuntime {
                    task: name.to_string(),
                });
            }
        }
    };
    if !scope.try_enter() {
        return Err(SpawnError::ShuttingDown {
            scope: scope.path.clone(),
            task: name.to_string(),
        });
    }
    crate::panic::install_hook();

    let id = TaskId::next();
    let span = tracing::info_span!("task", task = %name, scope = %scope.path, id = id.as_u64());
    let slot = scope.registry.insert(TaskEntry {
        id,
        name,
        spawned_at,
        started: tokio::time::Instant::now(),
        abort: None,
        restarts: 0,
        state: TaskState::Running,
        straggler: false,
        cancel: None,
    });
    // The guard is the task-local value: the context `taskward::spawn` and
    // `TaskContext::current` read, and the task's only reference to its scope.
    let guard = TaskGuard::new(TaskContext::new(scope.clone(), id, slot));
    let future = match std::panic::catch_unwind(AssertUnwindSafe(|| make(&guard.ctx))) {
        Ok(future) => future,
        Err(payload) => {
            // A `spawn_with` closure panicked while building the task: record that, so
            // the report does not show a task aborted for no reason, then let the panic
            // reach the caller, whose code it is.
            guard.building_panicked(payload.as_ref());
            std::panic::resume_unwind(payload);
        }
    };
    let task = CURRENT.scope(guard, future);
    // Spawned outside any lock: if the runtime is shutting down, tokio drops the future
    // right here, and its guard takes a shard lock to count the task out. A span nobody
    // listens to is left out: it would add 40 bytes to every task for nothing.
    let join = match (span.is_disabled(), runtime) {
        (true, None) => tokio::spawn(task),
        (true, Some(runtime)) => runtime.spawn(task),
        (false, None) => tokio::spawn(task.instrument(span)),
        (false, Some(runtime)) => runtime.spawn(task.instrument(span)),
    };
    scope.store_abort(slot, id, join.abort_handle());
    Ok(TaskHandle::new(
        TaskContext::new(scope.clone(), id, slot),
        join,
    ))
}
