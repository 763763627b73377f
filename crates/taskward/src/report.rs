//! What a shutdown found: counts per outcome, every task that did not end cleanly, the
//! hooks and the escalation that started it.
//!
//! Read [`ShutdownReport`] first. It prints as a table (`Display`) and serializes with
//! serde for tooling.

use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

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
    /// Every task that did not end cleanly: the stuck ones first, then, scope by scope
    /// (parents first), those that failed, panicked or were aborted, in the order they
    /// ended; at most [`ShutdownReport::MAX_LISTED`].
    pub tasks: Vec<TaskReport>,
    /// How many non-clean tasks were left out of `tasks` to bound memory.
    pub omitted: u64,
    /// The shutdown hooks, in the order they ran.
    pub hooks: Vec<HookReport>,
    /// The failure that escalated and shut the scope down, if one did.
    pub cause: Option<Escalation>,
}

impl ShutdownReport {
    /// At most this many non-clean tasks are listed (and kept per scope while it runs);
    /// the rest are counted in [`omitted`](Self::omitted).
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

    /// The listed tasks that ended with `outcome`.
    pub fn tasks_with(&self, outcome: TaskOutcome) -> impl Iterator<Item = &TaskReport> {
        self.tasks.iter().filter(move |t| t.outcome == outcome)
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
        }
    }

    pub(crate) fn add(&mut self, other: &Self) {
        self.completed += other.completed;
        self.cancelled += other.cancelled;
        self.failed += other.failed;
        self.panicked += other.panicked;
        self.aborted += other.aborted;
        self.stuck += other.stuck;
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
        if let Some(cause) = &self.cause {
            writeln!(f, "  escalated by {cause}")?;
        }
        if !self.tasks.is_empty() {
            writeln!(
                f,
                "  {:<10} {:<24} {:<24} {:>10}  {:<32} detail",
                "outcome", "task", "scope", "age", "spawned at"
            )?;
            for t in &self.tasks {
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
            writeln!(f, "  ... and {} more not listed", self.omitted)?;
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

/// The bounded list of a scope's non-clean tasks.
#[derive(Debug, Default)]
pub(crate) struct FailureLog(Mutex<FailureList>);

#[derive(Debug, Default)]
struct FailureList {
    tasks: Vec<TaskReport>,
    omitted: u64,
}

impl FailureLog {
    pub(crate) fn push(&self, report: TaskReport) {
        let mut list = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if list.tasks.len() < ShutdownReport::MAX_LISTED {
            list.tasks.push(report);
        } else {
            list.omitted += 1;
        }
    }

    /// Copies this log into `tasks` / `omitted`.
    pub(crate) fn copy_into(&self, tasks: &mut Vec<TaskReport>, omitted: &mut u64) {
        let list = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        tasks.extend(list.tasks.iter().cloned());
        *omitted += list.omitted;
    }

    /// Moves this log's entries into `parent` (a child scope folding into its parent).
    pub(crate) fn drain_into(&self, parent: &Self) {
        let mut list = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let omitted = std::mem::take(&mut list.omitted);
        for report in list.tasks.drain(..) {
            parent.push(report);
        }
        parent
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .omitted += omitted;
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
