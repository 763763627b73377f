//! The context each tracked task receives, and the ambient "current scope" that lets code
//! running inside a task spawn with [`spawn`] and still be owned.
//!
//! Read [`TaskContext`] first.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use crate::error::SpawnError;
use crate::scope::{Scope, ScopeInner};
use crate::spawn::TaskBuilder;
use crate::supervise::TaskGuard;
use crate::task::{TaskHandle, TaskId, TaskName, TaskOutput};

tokio::task_local! {
    /// The guard (and context) of the tracked task being polled, set around every task's
    /// future.
    pub(crate) static CURRENT: TaskGuard;
}

/// What a tracked task knows about itself: its id, its scope, and whether it was asked to
/// stop.
///
/// Handed to bodies spawned with [`TaskBuilder::spawn_with`] and to restart factories, and
/// available anywhere inside a tracked task through [`TaskContext::current`].
///
/// A context does not own its scope (it is not a [`Scope`] handle), so a task that keeps
/// its context never keeps its scope from being dropped.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use taskward::{Scope, TaskContext};
///
/// let app = Scope::root("app");
/// let path = app
///     .spawn("who-am-i", async {
///         let ctx = TaskContext::current().expect("inside a tracked task");
///         Ok::<_, std::convert::Infallible>(ctx.scope_path().to_owned())
///     })
///     .expect("app is open")
///     .await;
/// assert_eq!(path, Ok(Ok("app".to_owned())));
/// # let _ = app.shutdown(std::time::Duration::ZERO).await;
/// # }
/// ```
#[derive(Clone)]
pub struct TaskContext {
    scope: Arc<ScopeInner>,
    id: TaskId,
}

impl TaskContext {
    pub(crate) fn new(scope: Arc<ScopeInner>, id: TaskId) -> Self {
        Self { scope, id }
    }

    pub(crate) fn scope(&self) -> &Arc<ScopeInner> {
        &self.scope
    }

    /// The context of the tracked task this code runs in, or `None` outside one.
    #[must_use]
    pub fn current() -> Option<Self> {
        CURRENT.try_with(|guard| guard.ctx.clone()).ok()
    }

    /// This task's id.
    #[must_use]
    pub fn id(&self) -> TaskId {
        self.id
    }

    /// Path of the scope that owns this task.
    #[must_use]
    pub fn scope_path(&self) -> &str {
        &self.scope.path
    }

    /// Whether the task has been asked to stop.
    #[must_use]
    pub fn is_cancelled(&self) -> bool {
        self.scope.token.is_cancelled()
    }

    /// Completes when the task is asked to stop. Select on it next to the task's work.
    ///
    /// # Cancel safety
    ///
    /// This method is cancel safe.
    pub fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.scope.token.cancelled()
    }

    /// A token cancelled when this task is asked to stop. Cancelling it affects only its
    /// holders, never the scope.
    #[must_use]
    pub fn token(&self) -> CancellationToken {
        self.scope.token.child_token()
    }

    /// Spawns a sibling task into this task's scope. See [`Scope::spawn`].
    ///
    /// # Errors
    ///
    /// See [`Scope::spawn`].
    #[track_caller]
    pub fn spawn<F>(
        &self,
        name: impl Into<TaskName>,
        future: F,
    ) -> Result<TaskHandle<F::Output>, SpawnError>
    where
        F: Future + Send + 'static,
        F::Output: TaskOutput,
    {
        TaskBuilder::new(&self.scope, name.into()).spawn(future)
    }

    /// Starts building a sibling task. See [`Scope::task`].
    pub fn task(&self, name: impl Into<TaskName>) -> TaskBuilder<'_> {
        TaskBuilder::new(&self.scope, name.into())
    }

    /// Creates a child scope of this task's scope. See [`Scope::child`].
    ///
    /// # Errors
    ///
    /// See [`Scope::child`].
    pub fn child(&self, name: impl Into<String>) -> Result<Scope, SpawnError> {
        self.scope.child(name.into()).map(Scope::from_arc)
    }
}

impl fmt::Debug for TaskContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskContext")
            .field("id", &self.id)
            .field("scope", &self.scope.path)
            .finish()
    }
}

/// Spawns `future` as a task named `name`, owned by the scope of the tracked task this is
/// called from.
///
/// This is what library code calls instead of `tokio::spawn`: when the library runs inside
/// an application's tracked task, what it spawns is owned, named and stopped with the
/// application's scope.
///
/// # Errors
///
/// [`SpawnError::NoCurrentScope`] when called outside a tracked task; otherwise see
/// [`Scope::spawn`].
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// async fn library_code() {
///     // Owned by whichever scope runs us.
///     taskward::spawn("library-helper", async {}).expect("called inside a tracked task");
/// }
///
/// let app = taskward::Scope::root("app");
/// app.spawn("app-task", library_code()).expect("app is open");
/// app.wait().await;
/// assert_eq!(app.shutdown(std::time::Duration::ZERO).await.counts.completed, 2);
/// assert!(taskward::spawn("outside", async {}).is_err());
/// # }
/// ```
#[track_caller]
pub fn spawn<F>(name: impl Into<TaskName>, future: F) -> Result<TaskHandle<F::Output>, SpawnError>
where
    F: Future + Send + 'static,
    F::Output: TaskOutput,
{
    let name = name.into();
    match CURRENT.try_with(|guard| guard.ctx.scope.clone()) {
        Ok(scope) => TaskBuilder::new(&scope, name).spawn(future),
        Err(_) => Err(SpawnError::NoCurrentScope {
            task: name.to_string(),
        }),
    }
}
