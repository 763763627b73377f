//! What a shutdown found: counts per outcome, every task that did not end cleanly, the
//! hooks and the escalation that started it.
//!
//! Read [`ShutdownReport`] first. It prints as a table (`Display`) and serializes with
//! serde for tooling.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::task::{TaskId, TaskOutcome};

/// The result of [`Scope::shutdown`](crate::Scope::shutdown).
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use std::time::Duration;
///
/// let scope = taskward::Scope::root("app");
/// scope.spawn("idle", std::future::pending::<()>()).expect("scope is open");
/// let report = scope.shutdown(Duration::from_secs(1)).await;
/// assert_eq!(report.counts.aborted, 1);
/// assert!(!report.is_clean());
/// println!("{report}");
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Path of the scope that was shut down.
    pub scope: String,
    /// How far the shutdown had to go.
    pub phase: Phase,
    /// Time from the shutdown request to the report.
    #[serde(rename = "elapsed_ms", with = "millis")]
    pub elapsed: Duration,
    /// How many tasks of the scope's subtree ended each way, over the scope's life.
    pub counts: OutcomeCounts,
    /// The stragglers, then the recent failures.
    ///
    /// First, every task that did not stop when asked, never capped (there are at most as
    /// many as the tasks that were live): the stuck ones, then, scope by scope (parents
    /// first), those this shutdown aborted, in the order they ended. Their number is
    /// [`stragglers`](Self::stragglers).
    ///
    /// Then the recent failures of the scope's life, newest first: tasks that failed or
    /// panicked, were aborted earlier (by their handle, with a dropped child scope, with
    /// their runtime), and the failed attempts of restarted tasks
    /// ([`TaskOutcome::Restarted`]); at most [`ShutdownReport::MAX_LISTED`], older ones
    /// counted in [`omitted`](Self::omitted) only.
    pub tasks: Vec<TaskReport>,
    /// How many of the leading rows of `tasks` are stragglers (stuck, or aborted by this
    /// shutdown).
    #[serde(default)]
    pub stragglers: usize,
    /// How many past failures were left out of `tasks` to bound memory.
    pub omitted: u64,
    /// The shutdown hooks, in the order they ran.
    pub hooks: Vec<HookReport>,
    /// The failure that escalated and shut the scope down, if one did: the first of
    /// [`escalations`](Self::escalations).
    pub cause: Option<Escalation>,
    /// One escalation per scope of the subtree that escalated (its first), parents first,
    /// including child scopes dropped since.
    #[serde(default)]
    pub escalations: Vec<Escalation>,
}

impl ShutdownReport {
    /// At most this many past failures are listed (and kept per scope while it runs, the
    /// most recent); the rest are counted in [`omitted`](Self::omitted). Stragglers are
    /// never capped.
    pub const MAX_LISTED: usize = 256;

    /// True when every task ended cleanly, every hook succeeded and nothing escalated.
    #[must_use]
    pub fn is_clean(&self) -> bool {
        self.counts.non_clean() == 0
            && self
                .hooks
                .iter()
                .all(|h| h.outcome == HookOutcome::Completed)
            && self.cause.is_none()
    }

    /// The process exit code this report calls for: success when it is clean, failure
    /// (1) otherwise, a stuck task included.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let app = taskward::Scope::root("app");
    /// app.spawn("idle", std::future::pending::<()>()).expect("app is open");
    /// let report = app.shutdown(std::time::Duration::from_secs(1)).await;
    /// assert_eq!(report.exit_code(), std::process::ExitCode::FAILURE);
    /// # }
    /// ```
    #[must_use]
    pub fn exit_code(&self) -> std::process::ExitCode {
        if self.is_clean() {
            std::process::ExitCode::SUCCESS
        } else {
            std::process::ExitCode::FAILURE
        }
    }

    /// The listed tasks that ended with `outcome`.
    pub fn tasks_with(&self, outcome: TaskOutcome) -> impl Iterator<Item = &TaskReport> {
        self.tasks.iter().filter(move |t| t.outcome == outcome)
    }

    /// Every task that did not stop when asked: stuck, or aborted by this shutdown.
    #[must_use]
    pub fn straggler_tasks(&self) -> &[TaskReport] {
        &self.tasks[..self.stragglers.min(self.tasks.len())]
    }

    /// The recent failures listed after the stragglers, newest first.
    #[must_use]
    pub fn recent_failures(&self) -> &[TaskReport] {
        &self.tasks[self.stragglers.min(self.tasks.len())..]
    }
}

/// The furthest phase a shutdown reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Phase {
    /// Every task stopped within the grace period.
    Grace,
    /// Some tasks had to be aborted; all of them ended.
    Abort,
    /// Some tasks did not end even after the abort and are reported stuck.
    Stuck,
}

/// How many tasks ended each way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct OutcomeCounts {
    /// Returned successfully before being asked to stop.
    pub completed: u64,
    /// Returned successfully after being asked to stop.
    pub cancelled: u64,
    /// Returned an error.
    pub failed: u64,
    /// Panicked.
    pub panicked: u64,
    /// Aborted.
    pub aborted: u64,
    /// Still running after the abort.
    pub stuck: u64,
    /// Failed attempts of restartable tasks that were started again (not tasks: a task
    /// that restarts is counted once more by how it finally ends).
    #[serde(default)]
    pub restarted: u64,
}

impl OutcomeCounts {
    /// Tasks that did not end cleanly.
    #[must_use]
    pub fn non_clean(&self) -> u64 {
        self.failed + self.panicked + self.aborted + self.stuck
    }

    /// Counts one task that ended with `outcome`.
    pub(crate) fn record(&mut self, outcome: TaskOutcome) {
        match outcome {
            TaskOutcome::Completed => self.completed += 1,
            TaskOutcome::Cancelled => self.cancelled += 1,
            TaskOutcome::Failed => self.failed += 1,
            TaskOutcome::Panicked => self.panicked += 1,
            TaskOutcome::Aborted => self.aborted += 1,
            TaskOutcome::Stuck => self.stuck += 1,
            TaskOutcome::Restarted => self.restarted += 1,
        }
    }

    pub(crate) fn add(&mut self, other: &Self) {
        self.completed += other.completed;
        self.cancelled += other.cancelled;
        self.failed += other.failed;
        self.panicked += other.panicked;
        self.aborted += other.aborted;
        self.stuck += other.stuck;
        self.restarted += other.restarted;
    }
}

/// One task that did not end cleanly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TaskReport {
    /// The task's id.
    pub id: TaskId,
    /// The task's name.
    pub name: String,
    /// Path of the scope that owned it.
    pub scope: String,
    /// Where it was spawned (`file:line:column`).
    pub spawned_at: String,
    /// Time from spawn to its end (or to the report, for a stuck task).
    #[serde(rename = "age_ms", with = "millis")]
    pub age: Duration,
    /// How it ended.
    pub outcome: TaskOutcome,
    /// The error, or the panic message and location.
    pub detail: Option<String>,
    /// How many times it was restarted.
    pub restarts: u32,
}

/// A shutdown hook and how it went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HookReport {
    /// The hook's name.
    pub name: String,
    /// Path of the scope it was registered on.
    pub scope: String,
    /// How it ended.
    pub outcome: HookOutcome,
    /// How long it ran.
    #[serde(rename = "elapsed_ms", with = "millis")]
    pub elapsed: Duration,
}

/// How a shutdown hook ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "detail")]
#[non_exhaustive]
pub enum HookOutcome {
    /// It returned successfully.
    Completed,
    /// It returned an error.
    Failed(String),
    /// It panicked.
    Panicked(String),
    /// The shutdown deadline passed first; it was dropped.
    TimedOut,
}

/// The failure that shut a scope down under [`FailurePolicy::Escalate`], or when a
/// restarting task went past its restart intensity.
///
/// [`FailurePolicy::Escalate`]: crate::FailurePolicy::Escalate
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Escalation {
    /// Name of the task that escalated.
    pub task: String,
    /// Path of its scope.
    pub scope: String,
    /// Where it was spawned.
    pub spawned_at: String,
    /// The failure, as logged.
    pub reason: String,
}

impl fmt::Display for Escalation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "task `{}` in `{}` (spawned at {}): {}",
            self.task, self.scope, self.spawned_at, self.reason
        )
    }
}

impl fmt::Display for ShutdownReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counts;
        writeln!(
            f,
            "shutdown of `{}`: {} in {:.1?} (phase reached: {:?})",
            self.scope,
            if self.is_clean() {
                "clean"
            } else {
                "NOT clean"
            },
            self.elapsed,
            self.phase
        )?;
        writeln!(
            f,
            "  completed {}  cancelled {}  failed {}  panicked {}  aborted {}  stuck {}",
            c.completed, c.cancelled, c.failed, c.panicked, c.aborted, c.stuck
        )?;
        for cause in &self.escalations {
            writeln!(f, "  escalated by {cause}")?;
        }
        if self.escalations.is_empty() {
            if let Some(cause) = &self.cause {
                writeln!(f, "  escalated by {cause}")?;
            }
        }
        if !self.tasks.is_empty() {
            writeln!(
                f,
                "  {:<10} {:<24} {:<24} {:>10}  {:<32} detail",
                "outcome", "task", "scope", "age", "spawned at"
            )?;
            for (row, t) in self.tasks.iter().enumerate() {
                if row == self.stragglers && row > 0 {
                    writeln!(f, "  recent failures, newest first:")?;
                }
                writeln!(
                    f,
                    "  {:<10} {:<24} {:<24} {:>10}  {:<32} {}",
                    t.outcome.to_string(),
                    t.name,
                    t.scope,
                    format!("{:.1?}", t.age),
                    t.spawned_at,
                    t.detail.as_deref().unwrap_or("")
                )?;
            }
        }
        if self.omitted > 0 {
            writeln!(f, "  ... and {} older failures not listed", self.omitted)?;
        }
        for h in &self.hooks {
            let outcome = match &h.outcome {
                HookOutcome::Completed => "ok".to_owned(),
                HookOutcome::Failed(e) => format!("failed: {e}"),
                HookOutcome::Panicked(p) => format!("panicked: {p}"),
                HookOutcome::TimedOut => "timed out".to_owned(),
            };
            writeln!(
                f,
                "  hook {} ({}) {:.1?}: {outcome}",
                h.name, h.scope, h.elapsed
            )?;
        }
        Ok(())
    }
}

/// What a scope keeps about its non-clean tasks: every straggler of its shutdown, a
/// bounded window of its most recent failures, and escalation causes of dropped children.
#[derive(Debug, Default)]
pub(crate) struct FailureLog(Mutex<FailureList>);

#[derive(Debug, Default)]
struct FailureList {
    /// Tasks a shutdown aborted: never capped, as there are at most as many as there
    /// were live tasks.
    stragglers: Vec<TaskReport>,
    /// The most recent past failures, oldest first, with the time each was recorded.
    recent: VecDeque<(Instant, TaskReport)>,
    /// Failures pushed out of `recent`.
    evicted: u64,
    /// Escalation causes of child scopes dropped since, at most `MAX_LISTED`.
    causes: Vec<Escalation>,
    /// Tasks of descendant scopes dropped while they were live (root scopes only), at
    /// most `MAX_LISTED`: what the test harness reports as a leak.
    abandoned: Vec<String>,
}

impl FailureLog {
    fn lock(&self) -> MutexGuard<'_, FailureList> {
        // Nothing panics while this lock is held; poison would carry no information.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a task that a shutdown had to abort.
    pub(crate) fn push_straggler(&self, report: TaskReport) {
        self.lock().stragglers.push(report);
    }

    /// Records a past failure, pushing the oldest one out if the window is full.
    pub(crate) fn push_failure(&self, report: TaskReport) {
        self.lock().push_recent(Instant::now(), report);
    }

    /// Keeps a dropped child's escalation cause.
    pub(crate) fn push_cause(&self, cause: Escalation) {
        let mut list = self.lock();
        if list.causes.len() < ShutdownReport::MAX_LISTED {
            list.causes.push(cause);
        }
    }

    /// Notes tasks of a descendant scope dropped while they were live.
    pub(crate) fn push_abandoned(&self, names: &[String]) {
        let mut list = self.lock();
        let room = ShutdownReport::MAX_LISTED.saturating_sub(list.abandoned.len());
        list.abandoned.extend(names.iter().take(room).cloned());
    }

    /// The tasks of descendant scopes dropped while they were live.
    #[cfg(feature = "testing")]
    pub(crate) fn abandoned(&self) -> Vec<String> {
        self.lock().abandoned.clone()
    }

    /// Copies the stragglers into `out`.
    pub(crate) fn copy_stragglers(&self, out: &mut Vec<TaskReport>) {
        out.extend(self.lock().stragglers.iter().cloned());
    }

    /// Copies the recent failures (with their time) into `out`, and adds the number of
    /// evicted ones to `omitted`.
    pub(crate) fn copy_recent(&self, out: &mut Vec<(Instant, TaskReport)>, omitted: &mut u64) {
        let list = self.lock();
        out.extend(list.recent.iter().cloned());
        *omitted += list.evicted;
    }

    /// Copies the escalation causes of dropped children into `out`.
    pub(crate) fn copy_causes(&self, out: &mut Vec<Escalation>) {
        out.extend(self.lock().causes.iter().cloned());
    }

    /// Moves this log's entries into `parent` (a child scope folding into its parent).
    /// The child's stragglers belong to a shutdown that is over: they become past
    /// failures of the parent.
    pub(crate) fn drain_into(&self, parent: &Self) {
        let mine = std::mem::take(&mut *self.lock());
        let mut theirs = parent.lock();
        let now = Instant::now();
        let mut entries: Vec<_> = mine.recent.into_iter().collect();
        entries.extend(mine.stragglers.into_iter().map(|r| (now, r)));
        entries.sort_by_key(|(at, _)| *at);
        for (at, report) in entries {
            theirs.push_recent(at, report);
        }
        theirs.evicted += mine.evicted;
        for cause in mine.causes {
            if theirs.causes.len() < ShutdownReport::MAX_LISTED {
                theirs.causes.push(cause);
            }
        }
    }
}

impl FailureList {
    fn push_recent(&mut self, at: Instant, report: TaskReport) {
        if self.recent.len() >= ShutdownReport::MAX_LISTED {
            self.recent.pop_front();
            self.evicted += 1;
        }
        self.recent.push_back((at, report));
    }
}

/// Durations as fractional milliseconds, readable in JSON.
pub(crate) mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64() * 1000.0)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let ms = f64::deserialize(d)?;
        Duration::try_from_secs_f64(ms / 1000.0).map_err(serde::de::Error::custom)
    }
}
