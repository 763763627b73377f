//! The batching writer: `POST /items` hands its item to one task, which commits items in
//! transactions and answers each request only after the commit that holds it.
//!
//! Read [`Writer`] and [`run_writer`]. On shutdown the writer stops taking new items only
//! once the server has drained (the app scope is cancelled after it), then commits what
//! is queued before it ends: an acknowledged write is never lost, and a queued one is
//! either committed and acknowledged or answered with an error.

use std::time::Duration;

use taskward::TaskContext;
use tokio::sync::{mpsc, oneshot};

use crate::cache::Cache;
use crate::db::{Db, Item, SharedDb, off_thread};

/// Items per transaction, at most.
const BATCH: usize = 64;
/// How long the first item of a batch waits for company.
const LINGER: Duration = Duration::from_millis(2);

/// One write and who waits for its commit.
type Job = (String, oneshot::Sender<Result<Item, String>>);

/// The handlers' side of the writer.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    queue: mpsc::Sender<Job>,
    mode: Mode,
}

/// How writes are acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// After the commit that stores them; what is queued at shutdown is committed.
    Safe,
    /// Test switch (`--unsafe-fire-and-forget`): what the seed's service did. A write is
    /// acknowledged as soon as it is queued, the writer commits every 200 ms, and at
    /// shutdown what is queued is dropped, not drained. It exists only to show that the
    /// end-to-end test of lost writes can fail; never use it otherwise.
    FireAndForget,
}

/// Why a write was not stored.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WriteError {
    /// The writer has stopped (the service is shutting down).
    #[error("the writer has stopped")]
    Stopped,
    /// The transaction failed.
    #[error("{0}")]
    Failed(String),
}

impl Writer {
    /// Queues `name` and waits for the commit that stores it.
    ///
    /// # Errors
    ///
    /// [`WriteError`]: the item is not stored.
    ///
    /// # Cancel safety
    ///
    /// Dropped, the item may still be committed; nobody hears of it.
    pub(crate) async fn write(&self, name: String) -> Result<Item, WriteError> {
        let (done, committed) = oneshot::channel();
        // Fire-and-forget answers with what it queued, id unknown.
        let queued = (self.mode == Mode::FireAndForget).then(|| Item {
            id: 0,
            name: name.clone(),
        });
        self.queue
            .send((name, done))
            .await
            .map_err(|_| WriteError::Stopped)?;
        if let Some(item) = queued {
            return Ok(item);
        }
        match committed.await {
            Ok(Ok(item)) => Ok(item),
            Ok(Err(error)) => Err(WriteError::Failed(error)),
            Err(_) => Err(WriteError::Stopped),
        }
    }
}

/// The writer's queue and its receiving end, for [`run_writer`] with the same `mode`.
#[must_use]
pub(crate) fn channel(mode: Mode) -> (Writer, mpsc::Receiver<Job>) {
    let (queue, jobs) = mpsc::channel(4 * BATCH);
    (Writer { queue, mode }, jobs)
}

/// The writer task: waits for the database, then commits batches until cancelled, then
/// drains the queue.
pub(crate) async fn run_writer(
    ctx: TaskContext,
    db: SharedDb,
    cache: Cache,
    mut jobs: mpsc::Receiver<Job>,
    mode: Mode,
) {
    let db = tokio::select! {
        // An open database is used even when cancelled already: the queue is drained.
        biased;
        db = db.wait() => db,
        () = ctx.cancelled() => {
            // Never ready: whatever was queued is answered with an error by the drop.
            return;
        }
    };
    let drain = mode == Mode::Safe;
    let linger = if drain {
        LINGER
    } else {
        Duration::from_millis(200)
    };
    loop {
        let first = tokio::select! {
            // Cancelled: straight to the drain (or, fire-and-forget, the drop).
            biased;
            () = ctx.cancelled() => break,
            job = jobs.recv() => job,
        };
        let Some(first) = first else { return };
        let mut batch = vec![first];
        let lingering = tokio::time::sleep(linger);
        tokio::pin!(lingering);
        while batch.len() < BATCH || !drain {
            tokio::select! {
                Some(job) = jobs.recv() => batch.push(job),
                () = &mut lingering => break,
                // Fire-and-forget: the batch in hand is dropped with the task.
                () = ctx.cancelled(), if !drain => return,
            }
        }
        commit(&db, &cache, batch).await;
    }
    // Cancelled: no new request reaches a handler any more (the server drained first),
    // so what is queued is all there will be.
    jobs.close();
    if !drain {
        tracing::warn!("fire-and-forget writer: dropping the queued writes");
        return;
    }
    let mut drained = 0;
    loop {
        let mut batch = Vec::with_capacity(BATCH);
        if jobs.recv_many(&mut batch, BATCH).await == 0 {
            break;
        }
        drained += batch.len();
        commit(&db, &cache, batch).await;
    }
    tracing::info!(drained, "writer drained its queue");
}

/// Commits one batch on the blocking pool and answers each of its requests.
async fn commit(db: &Db, cache: &Cache, batch: Vec<Job>) {
    let names: Vec<String> = batch.iter().map(|(name, _)| name.clone()).collect();
    let db = db.clone();
    let stored = off_thread(move || db.insert_batch(&names)).await;
    match stored {
        Ok(items) => {
            cache.put(items.iter().cloned());
            for ((_, done), item) in batch.into_iter().zip(items) {
                let _ = done.send(Ok(item));
            }
        }
        Err(error) => {
            tracing::error!(%error, items = batch.len(), "batch not stored");
            for (_, done) in batch {
                let _ = done.send(Err(error.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use taskward::Scope;

    use super::{Mode, channel, run_writer};
    use crate::cache::Cache;
    use crate::db::{Db, SharedDb};

    // Asserts: every write still queued when the writer is cancelled is committed and
    // acknowledged (the drain), and the writer's stop is clean; without the drain the
    // writes would be answered with errors and their rows missing.
    #[tokio::test]
    async fn what_is_queued_at_cancellation_is_committed() {
        const WRITES: usize = 200;
        let dir = std::env::temp_dir().join(format!("taskward-demo-writer-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let db = Db::open(&dir.join("writer.sqlite3")).expect("database");
        let shared = SharedDb::default();
        shared.set(db.clone());
        let (writer, jobs) = channel(Mode::Safe);
        let writes: Vec<_> = (0..WRITES)
            .map(|i| {
                let writer = writer.clone();
                tokio::spawn(async move { writer.write(format!("item {i}")).await })
            })
            .collect();
        // This runtime has one thread: the writes run, and queue, while this task yields.
        while jobs.len() < WRITES {
            tokio::task::yield_now().await;
        }

        let app = Scope::root("test");
        app.task("writer")
            .spawn_with(move |ctx| run_writer(ctx, shared, Cache::default(), jobs, Mode::Safe))
            .expect("spawned");
        // Cancelled before the writer first runs: all it does is the drain.
        let report = app.shutdown(Duration::from_secs(10)).await;
        assert!(report.is_clean(), "{report}");
        for write in writes {
            let stored = write.await.expect("joined");
            assert!(stored.is_ok(), "{stored:?}");
        }
        let rows = db.latest(1_000).expect("rows");
        assert_eq!(rows.len(), WRITES);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
