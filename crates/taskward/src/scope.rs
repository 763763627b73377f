//! Scopes: the owners of tasks, arranged as a tree (`app/http/conn-42`).
//!
//! Read [`Scope`] first. A scope owns the tasks spawned into it and its child scopes;
//! cancelling a scope cancels its subtree; shutting it down signals, waits, aborts and
//! reports on the whole subtree; dropping its last handle without a shutdown aborts what
//! it still owns and says so in a warning.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::Duration;

use slab::Slab;
use tokio::sync::Notify;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use crate::error::SpawnError;
use crate::hooks::{Hook, HookList};
use crate::registry::{Registry, Slot};
use crate::report::{Escalation, FailureLog, TaskReport};
use crate::shutdown::{Request, ShutdownFuture, ShutdownPolicy, ShutdownSlot};
use crate::snapshot::Snapshot;
use crate::spawn::TaskBuilder;
use crate::task::{TaskHandle, TaskId, TaskName, TaskOutcome, TaskOutput, TaskState};

/// Lowest bit of [`ScopeInner::state`]: the scope accepts no new tasks or children.
const CLOSED: usize = 1;
/// One live task, in [`ScopeInner::state`] (the count lives above the closed bit).
const TASK: usize = 2;

/// Every root scope of the process, for process-wide snapshots. Taken only when a root
/// scope is created or dropped and when a process snapshot is made.
static ROOTS: Mutex<Slab<Weak<ScopeInner>>> = Mutex::new(Slab::new());

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while these locks are held; poison would carry no information.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An owner of tasks and child scopes.
///
/// Every task has an owner: it is spawned through a scope (or, from inside a tracked
/// task, through [`taskward::spawn`](crate::spawn), which uses the caller's scope). The
/// scope records the task's name, spawn site, start time and state, hands it a
/// cancellation signal, applies its failure policy, and stops it at shutdown.
///
/// `Scope` is a cheap `Clone` handle. When the last handle is dropped while tasks are
/// still running and no shutdown was started, the scope aborts them and logs one warning
/// naming them: the Rust face of Python's "Task was destroyed but it is pending!", except
/// that nothing keeps running unseen. Tasks themselves do not hold a `Scope` handle (they
/// get a [`TaskContext`](crate::TaskContext)), so a scope is not kept alive by the tasks
/// it owns, unless one is given a `Scope` clone: prefer the context, which can spawn,
/// create child scopes and watch for cancellation too.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use std::time::Duration;
///
/// let app = taskward::Scope::root("app");
/// let http = app.child("http").expect("app is open");
/// http.task("accept")
///     .spawn_with(|ctx| async move { ctx.cancelled().await })
///     .expect("http is open");
///
/// let report = app.shutdown(Duration::from_secs(5)).await;
/// assert!(report.is_clean());
/// assert_eq!(report.counts.cancelled, 1);
/// # }
/// ```
pub struct Scope {
    inner: Arc<ScopeInner>,
}

impl Scope {
    /// Creates a root scope named `name`.
    ///
    /// A root scope does not need a runtime to exist; its tasks are spawned on the tokio
    /// runtime current at each spawn.
    #[must_use]
    pub fn root(name: impl Into<String>) -> Self {
        let name = name.into();
        let mut roots = lock(&ROOTS);
        let inner = ScopeInner::new(None, name, &mut roots);
        drop(roots);
        Self::from_arc(inner)
    }

    /// Creates a child scope named `name` (path `parent/name`).
    ///
    /// The child is cancelled and shut down with its parent, and its tasks appear in the
    /// parent's snapshots and reports.
    ///
    /// # Errors
    ///
    /// [`SpawnError::ShuttingDown`] if this scope is shutting down.
    pub fn child(&self, name: impl Into<String>) -> Result<Scope, SpawnError> {
        self.inner.child(name.into()).map(Self::from_arc)
    }

    /// Spawns `future` as a task named `name`, with the default failure policy (log).
    ///
    /// The task runs on the current tokio runtime, inside a `tracing` span carrying its
    /// name and scope path. Its spawn site is the caller of this method.
    ///
    /// # Errors
    ///
    /// [`SpawnError::ShuttingDown`] if the scope is shutting down; [`SpawnError::NoRuntime`]
    /// outside a tokio runtime.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let scope = taskward::Scope::root("app");
    /// let task = scope.spawn("greet", async { println!("hello") }).expect("scope is open");
    /// assert_eq!(task.await, Ok(()));
    /// # let _ = scope.shutdown(std::time::Duration::ZERO).await;
    /// # }
    /// ```
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
        TaskBuilder::new(&self.inner, name.into()).spawn(future)
    }

    /// Starts building a task named `name`: choose its failure policy or restart policy,
    /// and whether it receives its [`TaskContext`](crate::TaskContext) as an argument.
    pub fn task(&self, name: impl Into<TaskName>) -> TaskBuilder<'_> {
        TaskBuilder::new(&self.inner, name.into())
    }

    /// Registers a shutdown hook: `hook` runs once, during this scope's shutdown, after
    /// every task of the scope's subtree has stopped.
    ///
    /// Hooks run in reverse order of registration, children's before their parent's,
    /// inside the shutdown deadline. A hook that fails, panics or outlives the deadline
    /// is reported in the [`ShutdownReport`](crate::ShutdownReport), not propagated.
    ///
    /// # Errors
    ///
    /// [`SpawnError::ShuttingDown`] if the scope is shutting down.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let scope = taskward::Scope::root("app");
    /// scope.on_shutdown("flush", || async { Ok::<_, std::io::Error>(()) }).expect("open");
    /// let report = scope.shutdown(std::time::Duration::from_secs(1)).await;
    /// assert_eq!(report.hooks[0].name, "flush");
    /// # }
    /// ```
    pub fn on_shutdown<F, Fut>(&self, name: impl Into<TaskName>, hook: F) -> Result<(), SpawnError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: TaskOutput,
    {
        self.inner.add_hook(Hook::new(name.into(), hook))
    }

    /// Shuts the scope's subtree down within `deadline` and reports what happened.
    ///
    /// Same as [`shutdown_with`](Self::shutdown_with) with [`ShutdownPolicy::new`].
    #[must_use = "futures must be awaited or polled"]
    pub fn shutdown(&self, deadline: Duration) -> ShutdownFuture {
        self.shutdown_with(ShutdownPolicy::new(deadline))
    }

    /// Shuts the scope's subtree down and reports what happened.
    ///
    /// Cancellation is signalled to the whole subtree when this method is called, and
    /// the deadline starts then; the remaining phases run while the returned future is
    /// polled: wait for tasks to stop (grace), abort those left and wait briefly for the
    /// aborts to land, report as stuck whatever still runs, then run the shutdown hooks.
    /// See [`ShutdownPolicy`] for the timeline.
    ///
    /// Calling it again while a shutdown is running joins that shutdown (its policy
    /// stands) and returns the same report; calling it after a shutdown finished returns
    /// the first report. To hurry a running shutdown, call [`abort_now`](Self::abort_now).
    /// A task may shut down the scope it belongs to: it is neither waited for nor aborted
    /// by that shutdown, and is not counted in its report.
    ///
    /// # Return Value
    ///
    /// The [`ShutdownReport`](crate::ShutdownReport) of the subtree.
    ///
    /// # Cancel safety
    ///
    /// See [`ShutdownFuture`]: dropping it does not stop the shutdown.
    #[must_use = "futures must be awaited or polled"]
    pub fn shutdown_with(&self, policy: ShutdownPolicy) -> ShutdownFuture {
        crate::shutdown::start(&self.inner, policy, Request::Join)
    }

    /// Stops the subtree now: skips a running shutdown to its abort phase (the second
    /// Ctrl-C), or starts one with a zero deadline.
    ///
    /// # Return Value
    ///
    /// The shutdown's [`ShutdownReport`](crate::ShutdownReport), shared with every other
    /// request.
    ///
    /// # Cancel safety
    ///
    /// See [`ShutdownFuture`].
    #[must_use = "futures must be awaited or polled"]
    pub fn abort_now(&self) -> ShutdownFuture {
        crate::shutdown::start(
            &self.inner,
            ShutdownPolicy::new(Duration::ZERO),
            Request::Now,
        )
    }

    /// Whether the scope has been asked to stop (shutdown, escalation, or its parent's).
    #[must_use]
    pub fn is_cancelled(&self) -> bool {
        self.inner.token.is_cancelled()
    }

    /// Completes when the scope is asked to stop.
    ///
    /// # Cancel safety
    ///
    /// This method is cancel safe.
    pub fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.inner.token.cancelled()
    }

    /// A token cancelled when this scope is, for code that takes a `CancellationToken`.
    ///
    /// It is a child of the scope's own token: cancelling it affects only its holders,
    /// never the scope (use [`shutdown`](Self::shutdown) for that).
    #[must_use]
    pub fn token(&self) -> CancellationToken {
        self.inner.token.child_token()
    }

    /// The scope's path, e.g. `app/http`.
    #[must_use]
    pub fn path(&self) -> &str {
        &self.inner.path
    }

    /// The live tasks of this scope's subtree.
    #[must_use]
    pub fn snapshot(&self) -> Snapshot {
        crate::snapshot::of_scopes(&self.inner.subtree())
    }

    /// How many tasks of this scope's subtree are live.
    #[must_use]
    pub fn live_tasks(&self) -> usize {
        self.inner.subtree().iter().map(|s| s.live()).sum()
    }

    /// Waits until no task of the subtree is live, without asking any to stop.
    ///
    /// The subtree is taken as it is at the call; its scopes are waited for one after the
    /// other, each until it has been seen with no live task. Tasks spawned meanwhile into
    /// a scope already waited for, and child scopes created meanwhile, are not waited for.
    ///
    /// # Cancel safety
    ///
    /// This method is cancel safe.
    pub async fn wait(&self) {
        for scope in self.inner.subtree() {
            scope.wait_idle().await;
        }
    }

    /// The escalation that shut this scope down, if a task escalated.
    #[must_use]
    pub fn escalation(&self) -> Option<Escalation> {
        self.inner.cause.get().cloned()
    }

    /// Tasks of descendant scopes dropped while they were live (see `ScopeInner::abandon`).
    #[cfg(feature = "testing")]
    pub(crate) fn abandoned(&self) -> Vec<String> {
        self.inner.failures.abandoned()
    }

    pub(crate) fn from_arc(inner: Arc<ScopeInner>) -> Self {
        // Relaxed: a new handle publishes nothing; the drop side does the ordering.
        inner.handles.fetch_add(1, Ordering::Relaxed);
        Self { inner }
    }
}

impl Clone for Scope {
    fn clone(&self) -> Self {
        Self::from_arc(self.inner.clone())
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        // AcqRel: the last handle's drop must see what every other handle did before it
        // let go (the same reasoning as `Arc`'s drop).
        if self.inner.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.inner.last_handle_dropped();
        }
    }
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope")
            .field("path", &self.inner.path)
            .field("live_tasks", &self.inner.live())
            .field("cancelled", &self.inner.token.is_cancelled())
            .finish()
    }
}

/// The shared state of a scope, owned by its handles, its tasks and its children.
pub(crate) struct ScopeInner {
    pub(crate) path: String,
    parent: Option<Arc<ScopeInner>>,
    /// This scope's key in its parent's `children`, or in `ROOTS` for a root.
    key: usize,
    children: Mutex<Slab<Weak<ScopeInner>>>,
    pub(crate) token: CancellationToken,
    /// Lowest bit: closed. The rest: live tasks, counted in units of `TASK`. One word,
    /// so that "admit a task" and "close" are ordered against each other by the atomic
    /// itself (the design of tokio-util's `TaskTracker`).
    state: AtomicUsize,
    /// Notified when the live count drops to zero.
    idle: Notify,
    /// Live `Scope` handles (not tasks, not children).
    handles: AtomicUsize,
    pub(crate) registry: Registry,
    pub(crate) failures: FailureLog,
    cause: OnceLock<Escalation>,
    pub(crate) hooks: HookList,
    pub(crate) shutdown: Mutex<ShutdownSlot>,
    /// Set when this scope's tasks are being aborted, so that a spawn racing with the
    /// abort walk aborts its own task.
    aborting: AtomicBool,
    /// Notified by every task that ends while a shutdown's abort phase waits on it.
    abort_watch: Mutex<Option<Arc<crate::abort::Watch>>>,
}

impl ScopeInner {
    fn new(
        parent: Option<&Arc<ScopeInner>>,
        name: String,
        siblings: &mut Slab<Weak<ScopeInner>>,
    ) -> Arc<Self> {
        let slot = siblings.vacant_entry();
        let (path, token) = match parent {
            Some(p) => (format!("{}/{name}", p.path), p.token.child_token()),
            None => (name, CancellationToken::new()),
        };
        let inner = Arc::new(Self {
            path,
            parent: parent.cloned(),
            key: slot.key(),
            children: Mutex::new(Slab::new()),
            token,
            state: AtomicUsize::new(0),
            idle: Notify::new(),
            handles: AtomicUsize::new(0),
            registry: Registry::new(),
            failures: FailureLog::default(),
            cause: OnceLock::new(),
            hooks: HookList::default(),
            shutdown: Mutex::new(ShutdownSlot::default()),
            aborting: AtomicBool::new(false),
            abort_watch: Mutex::new(None),
        });
        slot.insert(Arc::downgrade(&inner));
        inner
    }

    pub(crate) fn child(self: &Arc<Self>, name: String) -> Result<Arc<Self>, SpawnError> {
        let mut children = lock(&self.children);
        // Checked under the children lock: `close_subtree` sets the bit before it takes
        // this lock, so a child is either refused here or seen by the closing walk.
        if self.is_closed() {
            return Err(SpawnError::ShuttingDown {
                scope: self.path.clone(),
                task: name,
            });
        }
        Ok(Self::new(Some(self), name, &mut children))
    }

    pub(crate) fn is_closed(&self) -> bool {
        // Acquire: pairs with the AcqRel `fetch_or` in `close_subtree`.
        self.state.load(Ordering::Acquire) & CLOSED != 0
    }

    pub(crate) fn live(&self) -> usize {
        // Acquire: pairs with the Release decrement in `exit`, so a caller that sees a
        // count also sees the registry updates of the tasks that left.
        self.state.load(Ordering::Acquire) / TASK
    }

    /// Admits one task unless the scope is closed.
    pub(crate) fn try_enter(&self) -> bool {
        // Relaxed is enough to decide: the increment and `close_subtree`'s `fetch_or`
        // are read-modify-writes of one atomic, so one of them sees the other.
        let previous = self.state.fetch_add(TASK, Ordering::Relaxed);
        if previous & CLOSED != 0 {
            self.exit();
            return false;
        }
        true
    }

    /// Counts one task out, waking waiters when at most one is left (a shutdown called
    /// from a task of this scope waits for all but that one).
    pub(crate) fn exit(&self) {
        // Release: publishes the task's registry removal to `live()` readers.
        let previous = self.state.fetch_sub(TASK, Ordering::Release);
        if previous / TASK <= 2 {
            self.idle.notify_waiters();
        }
    }

    /// Waits until this scope (not its children) has no live task.
    pub(crate) async fn wait_idle(&self) {
        self.wait_until_only(None).await;
    }

    /// Waits until this scope (not its children) has no live task but `exempt`.
    pub(crate) async fn wait_until_only(&self, exempt: Option<TaskId>) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            // Register before checking: no wakeup can be lost between the check and the
            // await, because `notify_waiters` reaches every enabled `Notified`.
            notified.as_mut().enable();
            if self.live_except(exempt) == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Live tasks of this scope, not counting `exempt`.
    pub(crate) fn live_except(&self, exempt: Option<TaskId>) -> usize {
        let live = self.live();
        match exempt {
            // Only looked up when it can matter: `exit` wakes waiters at one task left.
            Some(id) if live == 1 => {
                let mut found = false;
                self.registry.for_each_mut(|entry| found |= entry.id == id);
                usize::from(!found)
            }
            _ => live,
        }
    }

    /// Records the end of task `id` and counts it out.
    pub(crate) fn task_ended(
        &self,
        slot: Slot,
        id: TaskId,
        outcome: TaskOutcome,
        detail: Option<String>,
    ) {
        let outcome = match outcome {
            TaskOutcome::Completed if self.is_closed() => TaskOutcome::Cancelled,
            other => other,
        };
        let entry = self.registry.remove(slot, id, outcome);
        if !outcome.is_clean() {
            if let Some(entry) = entry {
                let report = TaskReport {
                    id,
                    name: entry.name.to_string(),
                    scope: self.path.clone(),
                    spawned_at: entry.spawned_at.to_string(),
                    age: entry.started.elapsed(),
                    outcome,
                    detail,
                    restarts: entry.restarts,
                };
                if outcome == TaskOutcome::Aborted && entry.straggler {
                    // A WARN naming it: a task a shutdown had to abort is work that was
                    // cut off.
                    tracing::warn!(
                        task = %entry.name,
                        scope = %self.path,
                        spawned_at = %entry.spawned_at,
                        age = ?report.age,
                        "task aborted"
                    );
                } else if outcome == TaskOutcome::Aborted {
                    // Aborted by its handle (asked for) or by the drop of its scope, whose
                    // one warning already names it: a second WARN per task would repeat it.
                    tracing::debug!(
                        task = %entry.name,
                        scope = %self.path,
                        spawned_at = %entry.spawned_at,
                        age = ?report.age,
                        "task aborted"
                    );
                }
                if outcome == TaskOutcome::Aborted && entry.straggler {
                    self.failures.push_straggler(report);
                } else {
                    self.failures.push_failure(report);
                }
            }
        }
        self.exit();
        // Relaxed: a notification missed here only leaves the abort phase to its timer.
        if self.aborting.load(Ordering::Relaxed) {
            if let Some(watch) = lock(&self.abort_watch).as_ref() {
                watch.ended();
            }
        }
    }

    /// Records that an attempt of restartable task `id` failed and it will be started
    /// again: counted, and listed among the recent failures.
    pub(crate) fn task_restarted(&self, slot: Slot, id: TaskId, detail: String, restarts: u32) {
        let Some((name, spawned_at, started)) = self
            .registry
            .update(slot, id, |e| (e.name.clone(), e.spawned_at, e.started))
        else {
            return;
        };
        self.registry.record(slot, TaskOutcome::Restarted);
        self.failures.push_failure(TaskReport {
            id,
            name: name.to_string(),
            scope: self.path.clone(),
            spawned_at: spawned_at.to_string(),
            age: started.elapsed(),
            outcome: TaskOutcome::Restarted,
            detail: Some(detail),
            restarts,
        });
    }

    /// Stores the abort handle of a task just spawned; aborts the task at once if the
    /// scope's abort phase already walked past its entry.
    pub(crate) fn store_abort(&self, slot: Slot, id: TaskId, abort: tokio::task::AbortHandle) {
        let stored = self.registry.update(slot, id, |entry| {
            entry.abort = Some(abort.clone());
        });
        // Acquire: pairs with the Release store in `abort_tasks`. If that walk locked
        // this entry's shard before us, the mutex hand-over makes the flag visible here.
        if stored.is_some() && self.aborting.load(Ordering::Acquire) {
            abort.abort();
        }
    }

    /// Sets a live task's state (and restart count), if it is still live.
    pub(crate) fn set_task_state(&self, slot: Slot, id: TaskId, state: TaskState, restarts: u32) {
        self.registry.update(slot, id, |entry| {
            entry.state = state;
            entry.restarts = restarts;
        });
    }

    /// This scope and every live descendant, each parent before its children.
    pub(crate) fn subtree(self: &Arc<Self>) -> Vec<Arc<ScopeInner>> {
        let mut out = Vec::new();
        let mut stack = vec![self.clone()];
        while let Some(scope) = stack.pop() {
            stack.extend(
                lock(&scope.children)
                    .iter()
                    .filter_map(|(_, c)| c.upgrade()),
            );
            out.push(scope);
        }
        out
    }

    /// Closes the whole subtree to new tasks and children, then cancels it. Returns the
    /// subtree, parents first.
    pub(crate) fn close_and_cancel(self: &Arc<Self>) -> Vec<Arc<ScopeInner>> {
        let out = self.close_subtree();
        // Closed before cancelled: a task that reacts to cancellation by spawning a
        // successor is refused rather than slipping in after the walk.
        self.token.cancel();
        out
    }

    /// Closes the whole subtree to new tasks and children, without cancelling it.
    /// Returns the subtree, parents first.
    fn close_subtree(self: &Arc<Self>) -> Vec<Arc<ScopeInner>> {
        let mut out = Vec::new();
        let mut stack = vec![self.clone()];
        while let Some(scope) = stack.pop() {
            // AcqRel: the bit must be set before the children lock is taken below (see
            // `child`), and spawns that read it must see it.
            scope.state.fetch_or(CLOSED, Ordering::AcqRel);
            stack.extend(
                lock(&scope.children)
                    .iter()
                    .filter_map(|(_, c)| c.upgrade()),
            );
            out.push(scope);
        }
        out
    }

    /// Aborts every live task of this scope but `exempt`; `straggler` when a shutdown
    /// does it (the report must name them). Returns how many abort requests were sent.
    pub(crate) fn abort_tasks(&self, exempt: Option<TaskId>, straggler: bool) -> usize {
        // Release: pairs with the Acquire load in `store_abort`.
        self.aborting.store(true, Ordering::Release);
        let mut sent = 0;
        self.registry.for_each_mut(|entry| {
            if Some(entry.id) == exempt {
                return;
            }
            if let Some(abort) = &entry.abort {
                abort.abort();
                sent += 1;
            }
            entry.state = TaskState::Aborting;
            entry.straggler = straggler;
        });
        sent
    }

    /// Starts a shutdown's abort phase on this scope: marks every live task but `exempt`
    /// as a straggler being aborted, has every task that ends notify `watch`, and returns
    /// the abort handles for the caller to use, batch by batch.
    pub(crate) fn begin_abort(
        &self,
        exempt: Option<TaskId>,
        watch: &Arc<crate::abort::Watch>,
    ) -> Vec<tokio::task::AbortHandle> {
        *lock(&self.abort_watch) = Some(watch.clone());
        // Release: pairs with the Acquire load in `store_abort`.
        self.aborting.store(true, Ordering::Release);
        let mut handles = Vec::new();
        self.registry.for_each_mut(|entry| {
            if Some(entry.id) == exempt {
                return;
            }
            handles.extend(entry.abort.clone());
            entry.state = TaskState::Aborting;
            entry.straggler = true;
        });
        handles
    }

    /// Ends a shutdown's abort phase: tasks that end from now on notify nobody.
    pub(crate) fn end_abort(&self) {
        lock(&self.abort_watch).take();
    }

    /// Shuts the scope down because a task escalated `cause`. The first cause wins.
    pub(crate) fn escalate(self: &Arc<Self>, cause: Escalation) {
        tracing::error!(
            scope = %self.path,
            task = %cause.task,
            spawned_at = %cause.spawned_at,
            reason = %cause.reason,
            "task escalated: shutting its scope down"
        );
        let _ = self.cause.set(cause);
        // A shutdown of its own, driven by its own task: the escalating scope is stopped
        // and reported even if its owner never calls `shutdown` (which would join this one).
        drop(crate::shutdown::start(
            self,
            ShutdownPolicy::new(ShutdownPolicy::ESCALATION_DEADLINE),
            Request::Join,
        ));
    }

    pub(crate) fn cause(&self) -> Option<&Escalation> {
        self.cause.get()
    }

    fn add_hook(&self, hook: Hook) -> Result<(), SpawnError> {
        let refused = |hook: Hook| SpawnError::ShuttingDown {
            scope: self.path.clone(),
            task: hook.name().to_string(),
        };
        if self.is_closed() {
            return Err(refused(hook));
        }
        // The list refuses too once a shutdown took its hooks, which closes the gap
        // between the check above and the push.
        self.hooks.push(hook).map_err(refused)
    }

    fn last_handle_dropped(self: &Arc<Self>) {
        // A shutdown of this scope or of an ancestor owns the ending of these tasks; an
        // ancestor dropped just before us already aborted them and named them.
        if crate::shutdown::is_started_or_held(self) || self.aborting.load(Ordering::Acquire) {
            return;
        }
        self.abandon();
    }

    /// Nobody will shut this scope down any more: abort what it still owns and say so.
    ///
    /// The names are collected before anything is cancelled or aborted, so the warning
    /// names exactly the tasks that were live when the scope was let go, not whichever
    /// of them had not yet reacted to a cancellation. The tasks are aborted before the
    /// token is cancelled, for the same reason: each one named is aborted, rather than
    /// racing its abort to a clean stop.
    pub(crate) fn abandon(self: &Arc<Self>) {
        let scopes = self.close_subtree();
        let mut names = Vec::new();
        for scope in &scopes {
            scope.registry.for_each_mut(|entry| {
                names.push(format!(
                    "{} ({}, spawned at {})",
                    entry.name, scope.path, entry.spawned_at
                ));
            });
        }
        if !names.is_empty() {
            for scope in &scopes {
                scope.abort_tasks(None, false);
            }
        }
        self.token.cancel();
        if names.is_empty() {
            return;
        }
        // Noted at the root, which outlives this scope: a test harness holding the root
        // fails the test naming these tasks.
        let mut root = self.parent.as_ref();
        while let Some(parent) = root.and_then(|p| p.parent.as_ref()) {
            root = Some(parent);
        }
        if let Some(root) = root {
            root.failures.push_abandoned(&names);
        }
        tracing::warn!(
            scope = %self.path,
            count = names.len(),
            tasks = %names.join(", "),
            "scope dropped without shutdown: aborting the tasks it still owned"
        );
        if no_subscriber() {
            // Nobody would see the warning: say it on stderr, as asyncio does for
            // "Task was destroyed but it is pending!".
            #[expect(
                clippy::print_stderr,
                reason = "the one warning that must be seen even without a tracing subscriber"
            )]
            {
                eprintln!(
                    "taskward WARN: scope `{}` dropped without shutdown: aborting the {} task(s) it still owned: {}",
                    self.path,
                    names.len(),
                    names.join(", ")
                );
            }
        }
    }

    pub(crate) fn parent(&self) -> Option<&Arc<ScopeInner>> {
        self.parent.as_ref()
    }

    /// Live `Scope` handles.
    pub(crate) fn handles(&self) -> usize {
        // Acquire: pairs with the AcqRel decrement in `Scope::drop`.
        self.handles.load(Ordering::Acquire)
    }
}

impl fmt::Debug for ScopeInner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopeInner")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Drop for ScopeInner {
    fn drop(&mut self) {
        match &self.parent {
            Some(parent) => {
                // The parent outlives this scope (we hold it), so it can absorb what
                // this scope learned: its counts, its failures, and hooks that never ran.
                parent.registry.absorb(&self.registry.ended());
                if let Some(cause) = self.cause.get() {
                    parent.failures.push_cause(cause.clone());
                }
                self.failures.drain_into(&parent.failures);
                self.hooks.drain_into(&parent.hooks, &self.path);
                lock(&parent.children).try_remove(self.key);
            }
            None => {
                lock(&ROOTS).try_remove(self.key);
            }
        }
    }
}

/// Whether no `tracing` subscriber would see an event here (none global, none scoped).
fn no_subscriber() -> bool {
    tracing::dispatcher::get_default(|d| d.is::<tracing::subscriber::NoSubscriber>())
}

/// Every live root scope of the process.
pub(crate) fn roots() -> Vec<Arc<ScopeInner>> {
    lock(&ROOTS)
        .iter()
        .filter_map(|(_, r)| r.upgrade())
        .collect()
}

/// Whether `inner` has started shutting down (used by tests of the closed bit).
#[cfg(test)]
pub(crate) fn is_closed(scope: &Scope) -> bool {
    scope.inner.is_closed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_paths_join_with_slashes() {
        let app = Scope::root("app");
        let http = app.child("http").expect("open");
        let conn = http.child("conn-42").expect("open");
        assert_eq!(conn.path(), "app/http/conn-42");
    }

    #[test]
    fn closed_scope_refuses_children() {
        let app = Scope::root("app");
        app.inner.close_and_cancel();
        assert!(is_closed(&app));
        let err = app.child("late").expect_err("closed scope must refuse");
        assert!(matches!(err, SpawnError::ShuttingDown { ref scope, .. } if scope == "app"));
    }

    #[test]
    fn the_stderr_fallback_is_only_for_programs_without_a_subscriber() {
        // Unit tests install no global subscriber.
        assert!(no_subscriber());
        let subscriber = tracing_subscriber::fmt()
            .with_writer(std::io::sink)
            .finish();
        tracing::subscriber::with_default(subscriber, || assert!(!no_subscriber()));
    }

    #[test]
    fn cancelling_a_parent_cancels_children() {
        let app = Scope::root("app");
        let child = app.child("worker").expect("open");
        assert!(!child.is_cancelled());
        app.inner.close_and_cancel();
        assert!(child.is_cancelled());
        assert!(child.child("grandchild").is_err());
    }
}
