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
use crate::db::{Db, Item, SharedDb};

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
        if fire_and_forget() {
            let item = Item {
                id: 0,
                name: name.clone(),
            };
            self.queue
                .send((name, done))
                .await
                .map_err(|_| WriteError::Stopped)?;
            return Ok(item);
        }
        self.queue
            .send((name, done))
            .await
            .map_err(|_| WriteError::Stopped)?;
        match committed.await {
            Ok(Ok(item)) => Ok(item),
            Ok(Err(error)) => Err(WriteError::Failed(error)),
            Err(_) => Err(WriteError::Stopped),
        }
    }
}

/// The writer's queue and its receiving end, for [`run_writer`].
#[must_use]
pub(crate) fn channel() -> (Writer, mpsc::Receiver<Job>) {
    let (queue, jobs) = mpsc::channel(4 * BATCH);
    (Writer { queue }, jobs)
}

/// Test switch: with `DEMO_UNSAFE_FIRE_AND_FORGET=1` the service does what the seed's
/// service did: it acknowledges a write as soon as it is queued, the writer commits every
/// 200 ms, and at shutdown what is queued is dropped, not drained. It exists only to show
/// that the end-to-end test of lost writes can fail; never set it otherwise.
pub(crate) const FIRE_AND_FORGET_ENV: &str = "DEMO_UNSAFE_FIRE_AND_FORGET";

fn fire_and_forget() -> bool {
    std::env::var_os(FIRE_AND_FORGET_ENV).is_some()
}

/// The writer task: waits for the database, then commits batches until cancelled, then
/// drains the queue.
pub(crate) async fn run_writer(
    ctx: TaskContext,
    db: SharedDb,
    cache: Cache,
    mut jobs: mpsc::Receiver<Job>,
) {
    let db = tokio::select! {
        db = db.wait() => db,
        () = ctx.cancelled() => {
            // Never ready: whatever was queued is answered with an error by the drop.
            return;
        }
    };
    let drain = !fire_and_forget();
    let linger = if drain {
        LINGER
    } else {
        Duration::from_millis(200)
    };
    loop {
        let first = tokio::select! {
            job = jobs.recv() => job,
            () = ctx.cancelled() => break,
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
        tracing::warn!("{FIRE_AND_FORGET_ENV} set: dropping the queued writes");
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
    let stored = match tokio::task::spawn_blocking(move || db.insert_batch(&names)).await {
        Ok(stored) => stored.map_err(|error| error.to_string()),
        Err(joined) => Err(format!("the insert did not finish: {joined}")),
    };
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
