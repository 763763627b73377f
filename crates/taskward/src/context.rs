//! The context each tracked task receives, and the ambient "current scope" that lets code
//! running inside a task spawn with [`spawn`] and still be owned.
//!
//! Read [`TaskContext`] first.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use crate::error::SpawnError;
use crate::registry::Slot;
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
    slot: Slot,
}

impl TaskContext {
    pub(crate) fn new(scope: Arc<ScopeInner>, id: TaskId, slot: Slot) -> Self {
        Self { scope, id, slot }
    }

    pub(crate) fn slot(&self) -> Slot {
        self.slot
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

    /// Whether the task has been asked to stop: by its scope, or on its own with
    /// [`TaskHandle::cancel`].
    #[must_use]
    pub fn is_cancelled(&self) -> bool {
        self.scope.token.is_cancelled()
            || self
                .scope
                .registry
                .update(self.slot, self.id, |e| e.cancel_requested())
                .unwrap_or(false)
    }

    /// Completes when the task is asked to stop: by its scope, or on its own with
    /// [`TaskHandle::cancel`]. Select on it next to the task's work.
    ///
    /// # Cancel safety
    ///
    /// This method is cancel safe.
    pub fn cancelled(&self) -> CancelledFuture<'_> {
        CancelledFuture {
            scope: self.scope.token.cancelled(),
            ctx: self,
        }
    }

    /// A token cancelled when this task is asked to stop (by its scope or on its own).
    /// Cancelling it affects only its holders, never the task or the scope.
    #[must_use]
    pub fn token(&self) -> CancellationToken {
        let own = self.scope.registry.update(self.slot, self.id, |e| {
            let cancel = e.cancel.get_or_insert_with(Box::default);
            let token = cancel
                .token
                .get_or_insert_with(|| self.scope.token.child_token());
            if cancel.requested {
                token.cancel();
            }
            token.child_token()
        });
        // A task that ended has no entry: its scope's token is all that is left to watch.
        own.unwrap_or_else(|| self.scope.token.child_token())
    }

    /// Asks this task alone to stop. Returns whether it was live and not asked before.
    pub(crate) fn cancel(&self) -> bool {
        let asked = self.scope.registry.update(self.slot, self.id, |e| {
            let cancel = e.cancel.get_or_insert_with(Box::default);
            if cancel.requested {
                return None;
            }
            cancel.requested = true;
            Some((cancel.waker.take(), cancel.token.clone()))
        });
        let Some(Some((waker, token))) = asked else {
            return false;
        };
        // Outside the shard lock: waking and cancelling may take other locks.
        if let Some(waker) = waker {
            waker.wake();
        }
        if let Some(token) = token {
            token.cancel();
        }
        true
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

pin_project! {
    /// Completes when a task is asked to stop: by its scope, or on its own. Returned by
    /// [`TaskContext::cancelled`].
    ///
    /// # Cancel safety
    ///
    /// This future is cancel safe.
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct CancelledFuture<'a> {
        #[pin]
        scope: WaitForCancellationFuture<'a>,
        ctx: &'a TaskContext,
    }
}

impl Future for CancelledFuture<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        if this.scope.poll(cx).is_ready() {
            return Poll::Ready(());
        }
        let ctx = *this.ctx;
        // The waker is stored under the lock that `cancel` takes to read it: no request
        // can slip between the check and the registration.
        let asked = ctx.scope.registry.update(ctx.slot, ctx.id, |e| {
            let cancel = e.cancel.get_or_insert_with(Box::default);
            if cancel.requested {
                return true;
            }
            match &cancel.waker {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                _ => cancel.waker = Some(cx.waker().clone()),
            }
            false
        });
        if asked == Some(true) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl fmt::Debug for CancelledFuture<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelledFuture")
            .field("task", &self.ctx.id)
            .finish_non_exhaustive()
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

/// Spawns the future that `make` builds from the new task's own [`TaskContext`], owned by
/// the scope of the tracked task this is called from: [`spawn`] for a body that watches
/// for cancellation.
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
///     taskward::spawn_with("library-poller", |ctx| async move { ctx.cancelled().await })
///         .expect("called inside a tracked task");
/// }
///
/// let app = taskward::Scope::root("app");
/// app.spawn("app-task", library_code()).expect("app is open").await.expect("ran");
/// let report = app.shutdown(std::time::Duration::from_secs(1)).await;
/// assert_eq!(report.counts.cancelled, 1, "the poller stopped when asked");
/// # }
/// ```
#[track_caller]
pub fn spawn_with<F, Fut>(
    name: impl Into<TaskName>,
    make: F,
) -> Result<TaskHandle<Fut::Output>, SpawnError>
where
    F: FnOnce(TaskContext) -> Fut + Send + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: TaskOutput,
{
    let name = name.into();
    match CURRENT.try_with(|guard| guard.ctx.scope.clone()) {
        Ok(scope) => TaskBuilder::new(&scope, name).spawn_with(make),
        Err(_) => Err(SpawnError::NoCurrentScope {
            task: name.to_string(),
        }),
    }
}
