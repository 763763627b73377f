//! What a tracked task is: its id, name, state, how its output is judged, and the handle
//! returned by every `spawn*`.
//!
//! Read [`TaskHandle`] first; [`TaskOutput`] says which outputs count as a failure.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use serde::{Deserialize, Serialize};

use crate::context::TaskContext;
use crate::error::{JoinError, TaskError};

/// A process-wide unique task identifier, assigned at spawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskId(u64);

impl TaskId {
    pub(crate) fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        // Relaxed: the id only has to be unique, it orders nothing else.
        Self(NEXT.fetch_add(1, Ordering::Relaxed))
    }

    /// The number behind the id.
    #[must_use]
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for TaskId {
    /// Honours width, fill and alignment, as a number does (`{:>6}`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// The human name of a task, as it appears in logs, snapshots and reports.
///
/// Built from a `&'static str` (no allocation) or a `String` (e.g. `format!("conn-{n}")`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct TaskName(Cow<'static, str>);

impl TaskName {
    /// The name as a string slice.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&'static str> for TaskName {
    fn from(name: &'static str) -> Self {
        Self(Cow::Borrowed(name))
    }
}

impl From<String> for TaskName {
    fn from(name: String) -> Self {
        Self(Cow::Owned(name))
    }
}

impl fmt::Display for TaskName {
    /// Honours width, fill and alignment, as a string does (`{:<24}`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

/// Where a live task is in its life, as shown by a [`Snapshot`](crate::Snapshot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TaskState {
    /// Running normally.
    Running,
    /// Its scope asked it to stop; it has not stopped yet.
    Cancelling,
    /// It failed and waits out its backoff before the next attempt.
    Restarting,
    /// The grace period passed and it was aborted; the abort has not landed yet.
    Aborting,
    /// It ignored the abort too (it blocks its thread); shutdown gave up on it.
    Stuck,
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Running => "running",
            Self::Cancelling => "cancelling",
            Self::Restarting => "restarting",
            Self::Aborting => "aborting",
            Self::Stuck => "stuck",
        })
    }
}

/// How a task ended, as counted by a [`ShutdownReport`](crate::ShutdownReport).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TaskOutcome {
    /// Returned successfully before its scope asked it to stop.
    Completed,
    /// Returned successfully after its scope asked it to stop: a clean, cooperative stop.
    Cancelled,
    /// Returned an error (see [`TaskOutput`]).
    Failed,
    /// Panicked.
    Panicked,
    /// Was aborted: it did not stop within the grace period, or its scope was dropped
    /// without a shutdown.
    Aborted,
    /// Did not end even after the abort: it blocks the thread it runs on, or its drop
    /// does.
    Stuck,
    /// Not an end: an attempt of a restartable task failed, and the task was started
    /// again. Listed among a report's recent failures (one row per restart) and counted
    /// in [`OutcomeCounts::restarted`](crate::OutcomeCounts::restarted).
    Restarted,
}

impl TaskOutcome {
    /// Whether this outcome is a clean end (completed or cancelled).
    #[must_use]
    pub fn is_clean(self) -> bool {
        matches!(self, Self::Completed | Self::Cancelled)
    }
}

impl fmt::Display for TaskOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
            Self::Failed => "failed",
            Self::Panicked => "panicked",
            Self::Aborted => "aborted",
            Self::Stuck => "stuck",
            Self::Restarted => "restarted",
        })
    }
}

/// The output of a tracked task: `()`, `Infallible`, or a `Result` whose `Err` counts as
/// a failure.
///
/// A task that produces a value returns it in `Ok` (with `std::convert::Infallible` as
/// the error type if it cannot fail), so that taskward never has to guess whether an
/// output means failure. A task returning a bare value does not compile, with a message
/// saying so:
///
/// ```compile_fail,E0277
/// # async fn f(scope: taskward::Scope) {
/// // error: a tracked task returns `()` or a `Result`, not `u32`
/// scope.spawn("count", async { 1000u32 });
/// # }
/// ```
///
/// ```
/// # async fn f(scope: taskward::Scope) {
/// scope.spawn("count", async { Ok::<u32, std::convert::Infallible>(1000) });
/// # }
/// ```
///
/// A failure is logged with the task's name and spawn site, counted in the report, and
/// handed to the task's failure policy. The error is rendered with `{:#}`, so an
/// `anyhow::Error` shows its whole chain.
///
/// # Examples
///
/// ```
/// use taskward::TaskOutput;
///
/// assert_eq!(().failure(), None);
/// let failed: Result<(), &str> = Err("disk full");
/// assert_eq!(failed.failure().as_deref(), Some("disk full"));
/// ```
#[diagnostic::on_unimplemented(
    message = "a tracked task returns `()` or a `Result`, not `{Self}`",
    label = "this task's output is `{Self}`",
    note = "return `()`, or the value in `Ok`: `Ok::<_, std::convert::Infallible>(value)` if it cannot fail",
    note = "taskward counts an `Err` as a failure: it needs to know which outputs are failures"
)]
pub trait TaskOutput: Send + 'static {
    /// A description of the failure, or `None` when the output is a success.
    fn failure(&self) -> Option<String>;
}

impl TaskOutput for () {
    fn failure(&self) -> Option<String> {
        None
    }
}

/// A task that never returns, typed as such.
impl TaskOutput for std::convert::Infallible {
    fn failure(&self) -> Option<String> {
        match *self {}
    }
}

impl<T, E> TaskOutput for Result<T, E>
where
    T: Send + 'static,
    E: fmt::Display + Send + 'static,
{
    fn failure(&self) -> Option<String> {
        self.as_ref().err().map(|e| format!("{e:#}"))
    }
}

/// A task that loops forever has the output `!` (edition 2024 infers it for
/// `async { loop { .. } }`); it never returns, so it never fails.
#[expect(
    private_interfaces,
    reason = "the alias only names `!`, which is public; users never see `Returns`"
)]
impl TaskOutput for never::Never {
    fn failure(&self) -> Option<String> {
        match *self {}
    }
}

/// Names `!` on stable Rust, as the return type of a function pointer.
mod never {
    pub(crate) trait Returns {
        type Output;
    }

    impl<T> Returns for fn() -> T {
        type Output = T;
    }

    pub(crate) type Never = <fn() -> ! as Returns>::Output;
}

/// A handle to a tracked task, returned by every `spawn*`.
///
/// Awaiting it yields the task's output, or a [`JoinError`] if it panicked or was aborted.
/// Dropping it does **not** detach or abort the task: the task stays owned by its scope,
/// which stops it at shutdown.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let scope = taskward::Scope::root("app");
/// let handle = scope
///     .spawn("answer", async { Ok::<u32, std::num::ParseIntError>(42) })
///     .expect("scope is open");
/// assert_eq!(handle.await, Ok(Ok(42)));
/// # let _ = scope.shutdown(std::time::Duration::ZERO).await;
/// # }
/// ```
#[derive(Debug)]
pub struct TaskHandle<T> {
    ctx: TaskContext,
    join: tokio::task::JoinHandle<Result<T, JoinError>>,
}

impl<T> TaskHandle<T> {
    pub(crate) fn new(
        ctx: TaskContext,
        join: tokio::task::JoinHandle<Result<T, JoinError>>,
    ) -> Self {
        Self { ctx, join }
    }

    /// The task's id, as shown in snapshots and reports.
    #[must_use]
    pub fn id(&self) -> TaskId {
        self.ctx.id()
    }

    /// Asks this task alone to stop, cooperatively: its
    /// [`TaskContext::cancelled`](crate::TaskContext::cancelled) completes, its
    /// [`is_cancelled`](crate::TaskContext::is_cancelled) turns true, and its tokens are
    /// cancelled; its scope and siblings carry on. A task that then returns successfully
    /// is counted cancelled, not completed. Returns whether the task was live and not
    /// asked before.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let app = taskward::Scope::root("app");
    /// let worker = app
    ///     .task("worker")
    ///     .spawn_with(|ctx| async move { ctx.cancelled().await })
    ///     .expect("app is open");
    /// assert!(worker.cancel());
    /// assert_eq!(worker.await, Ok(()));
    /// assert!(!app.is_cancelled(), "the scope carries on");
    /// # assert_eq!(app.shutdown(std::time::Duration::ZERO).await.counts.cancelled, 1);
    /// # }
    /// ```
    pub fn cancel(&self) -> bool {
        self.ctx.cancel()
    }

    /// Aborts the task. It is reported as [`TaskOutcome::Aborted`].
    pub fn abort(&self) {
        self.join.abort();
    }

    /// Whether the task has ended.
    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.join.is_finished()
    }
}

impl<T, E> TaskHandle<Result<T, E>>
where
    T: Send + 'static,
    E: Send + 'static,
{
    /// Waits for the task, with its own `Err` and a panic or abort in one `Result`, not
    /// nested: `Ok(1000)` rather than `Ok(Ok(1000))`.
    ///
    /// # Cancel safety
    ///
    /// This method is cancel safe: dropping the future leaves the task running in its
    /// scope.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use taskward::TaskError;
    ///
    /// let app = taskward::Scope::root("app");
    /// let count = app.spawn("count", async { Ok::<_, String>(1000) }).expect("open");
    /// assert_eq!(count.flatten().await, Ok(1000));
    /// let fail = app.spawn("fail", async { Err::<u32, _>("no") }).expect("open");
    /// assert_eq!(fail.flatten().await, Err(TaskError::Failed("no")));
    /// # let _ = app.shutdown(std::time::Duration::ZERO).await;
    /// # }
    /// ```
    pub async fn flatten(self) -> Result<T, TaskError<E>> {
        match self.await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(TaskError::Failed(error)),
            Err(join) => Err(TaskError::Join(join)),
        }
    }
}

impl<T> Future for TaskHandle<T> {
    type Output = Result<T, JoinError>;

    /// # Cancel safety
    ///
    /// This future is cancel safe: dropping it leaves the task running in its scope.
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(match ready!(Pin::new(&mut self.join).poll(cx)) {
            Ok(result) => result,
            // Panics are caught inside the task, so a tokio join error is an abort, or the
            // runtime shutting down, which drops the task the same way.
            Err(err) if err.is_panic() => Err(JoinError::Panicked(crate::panic::message(
                err.into_panic().as_ref(),
            ))),
            Err(_) => Err(JoinError::Aborted),
        })
    }
}
