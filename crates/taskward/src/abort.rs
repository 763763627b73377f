//! The abort phase of a shutdown: abort what is left in paced batches, and stop waiting
//! by a fixed time whatever the tasks' drops do.
//!
//! Read [`run`] first; [`Pacer`] is its policy, apart from the I/O so that a unit test
//! drives it with made-up durations.
//!
//! Why batches: an abort lands when the runtime next runs the task, and that is where
//! the task's future is dropped, on a runtime thread: on a current-thread runtime, the
//! very thread that drives the shutdown. Aborting everything at once queues every drop
//! ahead of the shutdown itself, and a runtime polls its timers and its `block_on`
//! future only between tasks, every few dozen of them: with drops that block, the
//! shutdown would get its turn only after seconds of them. Sent a batch at a time, the
//! drops never get far ahead: the shutdown looks at the clock after each batch, and a
//! batch grows only while its drops are quick.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::scope::ScopeInner;
use crate::shutdown::ShutdownPolicy;
use crate::task::TaskId;

/// The largest batch of aborts sent at once.
const MAX_BATCH: usize = 16_384;

/// What the tasks of a subtree being aborted report to the abort phase: it is woken
/// when `remaining` ends reach zero (and by every end after that), not by each one.
#[derive(Debug, Default)]
pub(crate) struct Watch {
    notify: Notify,
    remaining: AtomicUsize,
}

impl Watch {
    /// One task of the subtree ended.
    pub(crate) fn ended(&self) {
        // AcqRel/Acquire: orders this end's registry removal before the wakeup it may
        // cause. `Some` always: saturating, so the update cannot fail.
        let before = self
            .remaining
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |r| {
                Some(r.saturating_sub(1))
            })
            .unwrap_or(0);
        if before <= 1 {
            self.notify.notify_one();
        }
    }
}

/// How many aborts to send in the next batch, from how long the last batch took.
#[derive(Debug)]
pub(crate) struct Pacer {
    batch: usize,
    abort_wait: Duration,
}

impl Pacer {
    pub(crate) fn new(abort_wait: Duration) -> Self {
        Self {
            batch: 1,
            abort_wait,
        }
    }

    /// The size of the next batch.
    pub(crate) fn batch(&self) -> usize {
        self.batch
    }

    /// Learns that the last batch took `took` to end: a batch that ended within an
    /// eighth of the abort wait makes the next one four times larger (it should then take
    /// at most half of it), one that took over half of it halves the next.
    pub(crate) fn ended(&mut self, took: Duration) {
        if took <= self.abort_wait / 8 {
            self.batch = (self.batch * 4).min(MAX_BATCH);
        } else if took > self.abort_wait / 2 {
            self.batch = (self.batch / 2).max(1);
        }
    }
}

/// Aborts every live task of `scopes` but `exempt`, and waits for the aborts to land:
/// until every task ended, until none ended for a whole `abort_wait`, or until
/// `ABORT_ROUNDS × abort_wait` after the start, whichever comes first. Returns the
/// aborts not sent by then, for [`reap`] (after the report, so that their drops do not
/// delay it).
pub(crate) async fn run(
    scopes: &[Arc<ScopeInner>],
    exempt: Option<(&ScopeInner, TaskId)>,
    abort_wait: Duration,
) -> Vec<AbortHandle> {
    let start = Instant::now();
    let end = start
        .checked_add(abort_wait.saturating_mul(ShutdownPolicy::ABORT_ROUNDS))
        .unwrap_or_else(|| start + crate::shutdown::FAR_FUTURE);
    // Woken by the tasks of the subtree that end from now on.
    let progress = Arc::new(Watch::default());
    let mut queue: VecDeque<AbortHandle> = VecDeque::new();
    for scope in scopes {
        queue.extend(scope.begin_abort(exempt.map(|(_, id)| id), &progress));
    }
    let mut pacer = Pacer::new(abort_wait);
    let mut live = crate::shutdown::live_tasks(scopes, exempt);
    let mut last_progress = start;
    'batches: while live > 0 {
        let round = Instant::now();
        let count = pacer.batch().min(queue.len());
        // Set before `live` is read and the aborts are sent: an end counted in neither
        // only makes the wakeup come early, never late.
        progress.remaining.store(count, Ordering::Release);
        let now_live = crate::shutdown::live_tasks(scopes, exempt);
        if now_live < live {
            last_progress = Instant::now();
        }
        live = now_live;
        for abort in queue.drain(..count) {
            abort.abort();
        }
        // The batch is done when this many tasks are left (or fewer: others may end on
        // their own meanwhile).
        let goal = if queue.is_empty() {
            0
        } else {
            live.saturating_sub(count)
        };
        loop {
            let notified = progress.notify.notified();
            let now_live = crate::shutdown::live_tasks(scopes, exempt);
            let now = Instant::now();
            if now_live < live {
                live = now_live;
                last_progress = now;
            }
            if live <= goal {
                break;
            }
            // Nothing ended in a whole abort wait: what is left blocks its thread.
            let stalled = last_progress + abort_wait;
            if now >= end || now >= stalled {
                break 'batches;
            }
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep_until(end.min(stalled)) => {}
            }
        }
        if Instant::now() >= end {
            break;
        }
        pacer.ended(round.elapsed());
    }
    for scope in scopes {
        scope.end_abort();
    }
    queue.into()
}

/// Sends the aborts a shutdown's abort phase had no time for, paced as [`run`] does it,
/// so that the drops never keep the runtime from getting to the caller that waits for
/// the report for long.
pub(crate) async fn reap(left: Vec<AbortHandle>, abort_wait: Duration) {
    if left.is_empty() {
        return;
    }
    // The caller that waits for the report goes first: on a current-thread runtime it
    // would otherwise wait for this batch's drops. A yield is not enough there (the
    // runtime may poll this task again before its `block_on` future); a timer is, as the
    // runtime parks to fire it and polls its `block_on` future on the way.
    tokio::time::sleep(Duration::from_millis(1)).await;
    let mut pacer = Pacer::new(abort_wait);
    let mut left = VecDeque::from(left);
    while !left.is_empty() {
        let round = Instant::now();
        let count = pacer.batch().min(left.len());
        for abort in left.drain(..count) {
            abort.abort();
        }
        // On a current-thread runtime, the batch's drops run before this task's turn
        // comes again, and so does the caller's.
        tokio::task::yield_now().await;
        pacer.ended(round.elapsed());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_grow_while_quick_and_shrink_when_slow() {
        let wait = Duration::from_millis(100);
        let mut pacer = Pacer::new(wait);
        assert_eq!(pacer.batch(), 1, "one abort first: its drop may block");
        for _ in 0..2 {
            pacer.ended(Duration::from_millis(1));
        }
        assert_eq!(pacer.batch(), 16);
        pacer.ended(Duration::from_millis(30));
        assert_eq!(pacer.batch(), 16, "a moderate batch keeps its size");
        pacer.ended(Duration::from_millis(60));
        assert_eq!(pacer.batch(), 8, "a slow batch halves the next");
        for _ in 0..10 {
            pacer.ended(wait);
        }
        assert_eq!(pacer.batch(), 1, "never below one");
        for _ in 0..64 {
            pacer.ended(Duration::ZERO);
        }
        assert_eq!(pacer.batch(), MAX_BATCH, "capped");
    }
}
