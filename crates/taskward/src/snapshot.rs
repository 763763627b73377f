//! Snapshots: the live tasks of a scope subtree, or of the whole process, at any time.
//!
//! Read [`Snapshot`] first. Taking one locks each registry shard briefly, in turn; it
//! never stops tasks from spawning or ending for longer than one shard's copy.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::scope::ScopeInner;
use crate::task::{TaskId, TaskState};

/// The live tasks of a scope subtree ([`Scope::snapshot`](crate::Scope::snapshot)) or of
/// the process ([`snapshot`]).
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let app = taskward::Scope::root("app");
/// app.spawn("idle", std::future::pending::<()>()).expect("app is open");
/// let snapshot = app.snapshot();
/// assert_eq!(snapshot.tasks.len(), 1);
/// assert_eq!(snapshot.tasks[0].name, "idle");
/// println!("{}", serde_json::to_string(&snapshot).expect("serializable"));
/// # let _ = app.shutdown(std::time::Duration::ZERO).await;
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Snapshot {
    /// The live tasks, grouped by scope, parents first.
    pub tasks: Vec<TaskSnapshot>,
}

impl Snapshot {
    /// Whether no task is live.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// The names of the live tasks, for assertions and messages.
    #[must_use]
    pub fn names(&self) -> Vec<&str> {
        self.tasks.iter().map(|t| t.name.as_str()).collect()
    }
}

/// One live task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TaskSnapshot {
    /// The task's id.
    pub id: TaskId,
    /// The task's name.
    pub name: String,
    /// Path of the scope that owns it.
    pub scope: String,
    /// Where it was spawned (`file:line:column`).
    pub spawned_at: String,
    /// Time since it was spawned.
    #[serde(rename = "age_ms", with = "crate::report::millis")]
    pub age: Duration,
    /// What it is doing.
    pub state: TaskState,
    /// How many times it was restarted.
    pub restarts: u32,
}

impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:>6}  {:<24} {:<24} {:<11} {:>10}  spawned at",
            "id", "task", "scope", "state", "age"
        )?;
        for t in &self.tasks {
            writeln!(
                f,
                "{:>6}  {:<24} {:<24} {:<11} {:>10}  {}",
                t.id,
                t.name,
                t.scope,
                t.state.to_string(),
                format!("{:.1?}", t.age),
                t.spawned_at
            )?;
        }
        Ok(())
    }
}

/// The live tasks of every root scope in the process, and their subtrees.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let app = taskward::Scope::root("process-wide-example");
/// app.spawn("idle", std::future::pending::<()>()).expect("app is open");
/// assert!(taskward::snapshot().tasks.iter().any(|t| t.scope == "process-wide-example"));
/// # let _ = app.shutdown(std::time::Duration::ZERO).await;
/// # }
/// ```
#[must_use]
pub fn snapshot() -> Snapshot {
    let scopes: Vec<_> = crate::scope::roots()
        .iter()
        .flat_map(ScopeInner::subtree)
        .collect();
    of_scopes(&scopes)
}

pub(crate) fn of_scopes(scopes: &[Arc<ScopeInner>]) -> Snapshot {
    let mut tasks = Vec::new();
    for scope in scopes {
        let cancelling = scope.token.is_cancelled();
        scope.registry.for_each_mut(|entry| {
            let state = match entry.state {
                TaskState::Running if cancelling => TaskState::Cancelling,
                state => state,
            };
            tasks.push(TaskSnapshot {
                id: entry.id,
                name: entry.name.to_string(),
                scope: scope.path.clone(),
                spawned_at: entry.spawned_at.to_string(),
                age: entry.started.elapsed(),
                state,
                restarts: entry.restarts,
            });
        });
    }
    Snapshot { tasks }
}
