//! The batching writer: `POST /items` hands its item to one task, which commits items in
//! transactions and answers each request only after the commit that holds it.
//!
//! Batches form by group commit: the writer takes whatever is queued, commits it, answers
//! it, and again; the writes that arrive while one batch commits form the next. No write
//! waits for company, and the busier the service, the larger the batches.
//!
//! Read [`Writer`] and [`run_writer`]. On shutdown the writer stops taking new items only
//! once the server has drained (the app scope is cancelled after it), then commits what
//! is queued before it ends: an acknowledged write is never lost, and a queued one is
//! either committed and acknowledged or answered with an error.

use std::time::Duration;

use taskward::TaskContext;
use tokio::sync::{mpsc, oneshot};

use crate::cache::Cache;
use crate::db::{Db, DbError, Item, SharedDb, off_thread};

/// Items per transaction, at most: the writes queued while the previous batch committed,
/// up to this many.
const BATCH: usize = 64;
/// How long the first write of a batch waits for company in fire-and-forget mode (the
/// seed's timer). The safe mode never waits: see [`group_commit`].
const FIRE_AND_FORGET_EVERY: Duration = Duration::from_millis(200);

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

/// Where the writer's batches go: the database, or a test's stand-in.
pub(crate) trait Store: Clone + Send + 'static {
    /// Stores `names` in one transaction; their items, in order, once committed. Blocks
    /// (it runs on the blocking pool).
    ///
    /// # Errors
    ///
    /// [`DbError`]: nothing of the batch is stored.
    fn commit(&self, names: &[String]) -> Result<Vec<Item>, DbError>;
}

impl Store for Db {
    fn commit(&self, names: &[String]) -> Result<Vec<Item>, DbError> {
        self.insert_batch(names)
    }
}

/// The writer task: waits for the database, then commits batches until cancelled, then
/// drains the queue.
pub(crate) async fn run_writer(
    ctx: TaskContext,
    db: SharedDb,
    cache: Cache,
    jobs: mpsc::Receiver<Job>,
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
    match mode {
        Mode::Safe => group_commit(ctx, db, cache, jobs).await,
        Mode::FireAndForget => fire_and_forget(ctx, db, cache, jobs).await,
    }
}

/// Group commit: takes whatever is queued (up to [`BATCH`]), commits it, answers it, and
/// again. Nothing waits for company: a lone write commits at once, and under load the
/// writes that queue while one batch commits form the next one (the queue holds them;
/// its bound, larger than a batch, makes the handlers wait when the database cannot keep
/// up). Once cancelled, commits what is queued, then ends.
async fn group_commit<S: Store>(
    ctx: TaskContext,
    store: S,
    cache: Cache,
    mut jobs: mpsc::Receiver<Job>,
) {
    loop {
        let mut batch = Vec::with_capacity(BATCH);
        let received = tokio::select! {
            // Cancelled: straight to the drain, even with writes queued.
            biased;
            () = ctx.cancelled() => break,
            received = jobs.recv_many(&mut batch, BATCH) => received,
        };
        if received == 0 {
            // Every `Writer` is gone: nothing more can come.
            return;
        }
        commit(&store, &cache, batch).await;
    }
    // Cancelled: no new request reaches a handler any more (the server drained first),
    // so what is queued is all there will be.
    jobs.close();
    let mut drained = 0;
    loop {
        let mut batch = Vec::with_capacity(BATCH);
        if jobs.recv_many(&mut batch, BATCH).await == 0 {
            break;
        }
        drained += batch.len();
        commit(&store, &cache, batch).await;
    }
    tracing::info!(drained, "writer drained its queue");
}

/// What the seed's service did ([`Mode::FireAndForget`]): the first write of a batch
/// waits [`FIRE_AND_FORGET_EVERY`] for company, and a cancellation drops the batch in
/// hand and the queue.
async fn fire_and_forget<S: Store>(
    ctx: TaskContext,
    store: S,
    cache: Cache,
    mut jobs: mpsc::Receiver<Job>,
) {
    loop {
        let first = tokio::select! {
            biased;
            () = ctx.cancelled() => break,
            first = jobs.recv() => first,
        };
        let Some(first) = first else { return };
        let mut batch = vec![first];
        tokio::select! {
            biased;
            () = ctx.cancelled() => break,
            () = tokio::time::sleep(FIRE_AND_FORGET_EVERY) => {}
        }
        while let Ok(job) = jobs.try_recv() {
            batch.push(job);
        }
        commit(&store, &cache, batch).await;
    }
    jobs.close();
    tracing::warn!("fire-and-forget writer: dropping the queued writes");
}

/// Commits one batch on the blocking pool and answers each of its requests.
async fn commit<S: Store>(store: &S, cache: &Cache, batch: Vec<Job>) {
    let names: Vec<String> = batch.iter().map(|(name, _)| name.clone()).collect();
    let store = store.clone();
    let stored = off_thread(move || store.commit(&names)).await;
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
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::sync::{Arc, Mutex, PoisonError};
    use std::time::Duration;

    use taskward::Scope;
    use taskward::testing::Harness;
    use tokio::sync::mpsc;

    use super::{Mode, Store, channel, group_commit, run_writer};
    use crate::cache::Cache;
    use crate::db::{Db, DbError, Item, SharedDb};

    /// How long a test waits for what should happen before it fails rather than hangs.
    const PATIENCE: Duration = Duration::from_secs(30);

    /// A store that tells the test each batch it is given, then holds the commit until
    /// the test releases it (or drops its end of `release`).
    #[derive(Clone)]
    struct Gate {
        entered: mpsc::UnboundedSender<Vec<String>>,
        release: Arc<Mutex<std::sync::mpsc::Receiver<()>>>,
        next_id: Arc<AtomicI64>,
    }

    impl Gate {
        /// The store, the batches it is given, and the switch that lets one commit end.
        fn new() -> (
            Self,
            mpsc::UnboundedReceiver<Vec<String>>,
            std::sync::mpsc::Sender<()>,
        ) {
            let (entered, batches) = mpsc::unbounded_channel();
            let (release, released) = std::sync::mpsc::channel();
            let gate = Self {
                entered,
                release: Arc::new(Mutex::new(released)),
                next_id: Arc::new(AtomicI64::new(1)),
            };
            (gate, batches, release)
        }
    }

    impl Store for Gate {
        fn commit(&self, names: &[String]) -> Result<Vec<Item>, DbError> {
            let _ = self.entered.send(names.to_vec());
            // On the blocking pool: waiting here holds the writer as a slow commit would.
            let _ = self
                .release
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .recv();
            Ok(names
                .iter()
                .map(|name| Item {
                    // Relaxed: only uniqueness matters, and the writer commits one batch
                    // at a time.
                    id: self.next_id.fetch_add(1, Ordering::Relaxed),
                    name: name.clone(),
                })
                .collect())
        }
    }

    /// The next batch the gate is given (panics after `PATIENCE`).
    async fn next_batch(batches: &mut mpsc::UnboundedReceiver<Vec<String>>) -> Vec<String> {
        tokio::time::timeout(PATIENCE, batches.recv())
            .await
            .expect("a commit within the patience")
            .expect("the writer holds the gate")
    }

    // Asserts: the writes that queue while a batch commits are committed together, in the
    // next transaction (group commit). Red when the writer commits one write at a time
    // (BATCH = 1): the second commit then holds one write, not all of them.
    #[test]
    fn a_batch_forms_from_what_queued_during_the_previous_commit() {
        const QUEUED: usize = 10;
        Harness::current_thread().run(|scope| async move {
            let (gate, mut batches, release) = Gate::new();
            let (writer, jobs) = channel(Mode::Safe);
            scope
                .task("writer")
                .spawn_with(move |ctx| group_commit(ctx, gate, Cache::default(), jobs))
                .expect("spawned");
            let w = writer.clone();
            let first = scope
                .spawn("first write", async move { w.write("first".into()).await })
                .expect("spawned");
            assert_eq!(next_batch(&mut batches).await, ["first"]);

            // The first commit is held: these writes queue meanwhile.
            let names: Vec<String> = (0..QUEUED).map(|i| format!("queued {i}")).collect();
            let queued: Vec<_> = names
                .iter()
                .map(|name| {
                    let (w, name) = (writer.clone(), name.clone());
                    scope
                        .spawn("queued write", async move { w.write(name).await })
                        .expect("spawned")
                })
                .collect();
            let all_queued = async {
                while writer.queue.capacity() + QUEUED > writer.queue.max_capacity() {
                    tokio::task::yield_now().await;
                }
            };
            tokio::time::timeout(PATIENCE, all_queued)
                .await
                .expect("the writes queue");

            release.send(()).expect("the gate waits");
            let mut second = next_batch(&mut batches).await;
            second.sort();
            let mut expected = names.clone();
            expected.sort();
            assert_eq!(
                second, expected,
                "the second commit holds every queued write"
            );
            release.send(()).expect("the gate waits");

            assert_eq!(first.await.expect("joined").expect("stored").name, "first");
            for (write, name) in queued.into_iter().zip(&names) {
                assert_eq!(&write.await.expect("joined").expect("stored").name, name);
            }
            drop(release);
            assert!(scope.shutdown(PATIENCE).await.is_clean());
        });
    }

    // Asserts: a lone write is committed at once, not after a wait for company: with time
    // paused, no time passes between the write and its commit. Red with a linger before
    // each commit (the writer's former 2 ms): the clock jumps by the linger.
    #[test]
    fn a_lone_write_commits_without_waiting_for_company() {
        Harness::current_thread()
            .start_paused(true)
            .run(|scope| async move {
                let (gate, mut batches, release) = Gate::new();
                // Every commit goes through at once.
                drop(release);
                let (writer, jobs) = channel(Mode::Safe);
                scope
                    .task("writer")
                    .spawn_with(move |ctx| group_commit(ctx, gate, Cache::default(), jobs))
                    .expect("spawned");
                for round in 0..3 {
                    let asked = tokio::time::Instant::now();
                    let item = writer
                        .write(format!("alone {round}"))
                        .await
                        .expect("stored");
                    assert_eq!(item.name, format!("alone {round}"));
                    assert_eq!(asked.elapsed(), Duration::ZERO, "round {round}");
                    assert_eq!(next_batch(&mut batches).await.len(), 1);
                }
                assert!(scope.shutdown(PATIENCE).await.is_clean());
            });
    }

    // Asserts: a write is not acknowledged while its commit is under way, only after it.
    // Red when `write` answers once the item is queued (what fire-and-forget does).
    #[test]
    fn nothing_is_acknowledged_before_its_commit() {
        Harness::current_thread().run(|scope| async move {
            let (gate, mut batches, release) = Gate::new();
            let (writer, jobs) = channel(Mode::Safe);
            scope
                .task("writer")
                .spawn_with(move |ctx| group_commit(ctx, gate, Cache::default(), jobs))
                .expect("spawned");
            let write = scope
                .spawn("write", async move { writer.write("held".into()).await })
                .expect("spawned");
            assert_eq!(next_batch(&mut batches).await, ["held"]);
            // The commit is held; give the write every chance to finish anyway.
            for _ in 0..100 {
                tokio::task::yield_now().await;
            }
            assert!(!write.is_finished(), "acknowledged before its commit ended");
            release.send(()).expect("the gate waits");
            assert_eq!(write.await.expect("joined").expect("stored").name, "held");
            assert!(scope.shutdown(PATIENCE).await.is_clean());
        });
    }

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
