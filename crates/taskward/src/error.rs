//! Error values for misuse and for the operating system saying no.
//!
//! Read [`SpawnError`] first: it is what every `spawn*` and [`Scope::child`] returns when
//! the scope cannot take new work.
//!
//! [`Scope::child`]: crate::Scope::child

/// Why a task or child scope could not be started.
///
/// Spawning never panics: a scope that is shutting down, a call made outside a tokio
/// runtime, or a free [`spawn`](crate::spawn) outside any tracked task are all reported
/// here, naming the scope involved.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpawnError {
    /// The scope (or one of its ancestors) has started shutting down, escalated, or was
    /// dropped: it accepts no new work.
    #[error("scope `{scope}` is shutting down and accepts no new tasks (task `{task}`)")]
    ShuttingDown {
        /// Path of the scope that refused.
        scope: String,
        /// Name of the task or child scope that was refused.
        task: String,
    },
    /// The call was made outside a tokio runtime.
    #[error("no tokio runtime is running here: cannot spawn task `{task}`")]
    NoRuntime {
        /// Name of the task that was refused.
        task: String,
    },
    /// [`crate::spawn`] was called from code that is not running inside a tracked task, so
    /// there is no ambient scope to own the new task.
    #[error("`taskward::spawn` called outside a tracked task: no scope owns task `{task}`")]
    NoCurrentScope {
        /// Name of the task that was refused.
        task: String,
    },
}

/// The signal handlers could not be installed.
#[cfg(all(unix, feature = "signal"))]
#[derive(Debug, thiserror::Error)]
#[error("could not install the {signal} handler")]
#[non_exhaustive]
pub struct SignalError {
    /// The signal whose handler failed, e.g. `SIGTERM`.
    pub signal: &'static str,
    /// What the operating system said.
    #[source]
    pub source: std::io::Error,
}

/// A tracked task did not end normally: it was aborted or it panicked.
///
/// Returned by awaiting a [`TaskHandle`](crate::TaskHandle). A task that returned an
/// `Err` is not a `JoinError`: its `Err` is the task's output.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum JoinError {
    /// The task was aborted (its scope's shutdown passed the grace period, or
    /// [`TaskHandle::abort`](crate::TaskHandle::abort) was called) or the runtime went away.
    #[error("task was aborted")]
    Aborted,
    /// The task panicked; the message and location are also in the scope's report.
    #[error("task panicked: {0}")]
    Panicked(String),
}

/// Why a task that returns a `Result` did not produce its value: its own `Err`, or a
/// panic or abort. Returned by [`TaskHandle::flatten`](crate::TaskHandle::flatten).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError<E> {
    /// The task returned this error.
    #[error("task failed: {0}")]
    Failed(E),
    /// The task panicked or was aborted.
    #[error(transparent)]
    Join(JoinError),
}
