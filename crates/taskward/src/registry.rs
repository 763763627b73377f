//! The per-scope table of live tasks, sharded so that spawns and exits on different
//! threads rarely meet on one lock.
//!
//! Read [`Registry`] first. Each task takes a shard lock three times in its life (insert,
//! store its abort handle, remove); snapshots and shutdown walk every shard. No lock is
//! held across an `.await` or while tokio runs user code. Each shard also counts how its
//! tasks ended, under the lock the removal takes anyway, so ending a task touches no
//! shared counter beyond the scope's live count.

use std::panic::Location;
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

use slab::Slab;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::report::OutcomeCounts;
use crate::task::{TaskId, TaskName, TaskOutcome, TaskState};

/// What the registry knows about one live task.
#[derive(Debug)]
pub(crate) struct TaskEntry {
    pub(crate) id: TaskId,
    pub(crate) name: TaskName,
    pub(crate) spawned_at: &'static Location<'static>,
    pub(crate) started: Instant,
    /// `None` only between the insert and the moment the spawner stores it.
    pub(crate) abort: Option<AbortHandle>,
    pub(crate) restarts: u32,
    pub(crate) state: TaskState,
    /// Aborted by a shutdown because it did not stop when asked: a straggler, which its
    /// report names whatever else the scope has seen.
    pub(crate) straggler: bool,
    /// Its own cancellation ([`TaskHandle::cancel`](crate::TaskHandle::cancel)), boxed
    /// and made only when used: a task that never waits on its context costs a pointer.
    pub(crate) cancel: Option<Box<TaskCancel>>,
}

impl TaskEntry {
    /// Whether the task was asked to stop on its own.
    pub(crate) fn cancel_requested(&self) -> bool {
        self.cancel.as_ref().is_some_and(|c| c.requested)
    }
}

/// A task's own cancellation, apart from its scope's.
#[derive(Debug, Default)]
pub(crate) struct TaskCancel {
    pub(crate) requested: bool,
    /// The task waiting in `TaskContext::cancelled`, to wake when it is requested.
    pub(crate) waker: Option<std::task::Waker>,
    /// Handed out by `TaskContext::token`: a child of the scope's token, cancelled too
    /// when this task is.
    pub(crate) token: Option<tokio_util::sync::CancellationToken>,
}

/// Where a task's entry lives; handed to the task so that its exit finds it directly.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slot {
    shard: u32,
    key: u32,
}

/// A cache line of its own per shard, so that two threads on two shards do not contend on
/// the line either.
#[repr(align(64))]
#[derive(Debug, Default)]
struct Shard(Mutex<ShardState>);

#[derive(Debug, Default)]
struct ShardState {
    live: Slab<TaskEntry>,
    ended: OutcomeCounts,
}

#[derive(Debug)]
pub(crate) struct Registry {
    shards: Box<[Shard]>,
}

fn shard_count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        // Twice the threads, so that an exit rarely finds its shard taken; capped because a
        // scope per connection must stay cheap.
        (threads * 2).next_power_of_two().min(16)
    })
}

impl Registry {
    pub(crate) fn new() -> Self {
        Self {
            shards: (0..shard_count()).map(|_| Shard::default()).collect(),
        }
    }

    fn lock(&self, shard: usize) -> MutexGuard<'_, ShardState> {
        // No code panics while holding a shard lock, so poison carries no meaning here.
        self.shards[shard]
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn insert(&self, entry: TaskEntry) -> Slot {
        // Consecutive ids land on different shards: a burst of spawns from one thread and
        // the exits of those tasks on the other workers spread out.
        let shard = (entry.id.as_u64() as usize) & (self.shards.len() - 1);
        let key = self.lock(shard).live.insert(entry);
        Slot {
            shard: shard as u32,
            key: u32::try_from(key).expect("fewer than 2^32 live tasks per shard"),
        }
    }

    /// Runs `f` on the entry of task `id`, if it is still live.
    pub(crate) fn update<R>(
        &self,
        slot: Slot,
        id: TaskId,
        f: impl FnOnce(&mut TaskEntry) -> R,
    ) -> Option<R> {
        let mut shard = self.lock(slot.shard as usize);
        // The id check guards against a reused key: the task may have ended and another
        // taken its place in the slab.
        match shard.live.get_mut(slot.key as usize) {
            Some(entry) if entry.id == id => Some(f(entry)),
            _ => None,
        }
    }

    /// Removes task `id` and counts how it ended (a task asked to stop on its own that
    /// returned successfully counts as cancelled); returns its entry if it was live.
    pub(crate) fn remove(&self, slot: Slot, id: TaskId, outcome: TaskOutcome) -> Option<TaskEntry> {
        let mut shard = self.lock(slot.shard as usize);
        let entry = match shard.live.get(slot.key as usize) {
            Some(entry) if entry.id == id => Some(shard.live.remove(slot.key as usize)),
            _ => None,
        };
        let outcome = match (&entry, outcome) {
            (Some(e), TaskOutcome::Completed) if e.cancel_requested() => TaskOutcome::Cancelled,
            _ => outcome,
        };
        shard.ended.record(outcome);
        entry
    }

    /// Counts one event that is not a task's end (a restart) in `slot`'s shard.
    pub(crate) fn record(&self, slot: Slot, outcome: TaskOutcome) {
        self.lock(slot.shard as usize).ended.record(outcome);
    }

    /// How the tasks of this registry ended, over its life.
    pub(crate) fn ended(&self) -> OutcomeCounts {
        let mut total = OutcomeCounts::default();
        for shard in 0..self.shards.len() {
            total.add(&self.lock(shard).ended);
        }
        total
    }

    /// Adds `counts` to this registry's (a dropped child scope folding into its parent).
    pub(crate) fn absorb(&self, counts: &OutcomeCounts) {
        self.lock(0).ended.add(counts);
    }

    /// Visits every live entry, one shard lock at a time.
    pub(crate) fn for_each_mut(&self, mut f: impl FnMut(&mut TaskEntry)) {
        for shard in 0..self.shards.len() {
            for (_, entry) in self.lock(shard).live.iter_mut() {
                f(entry);
            }
        }
    }
}
