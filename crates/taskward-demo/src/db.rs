//! The SQLite database: opening it (created if missing), migrating its schema, and the
//! few statements the service runs.
//!
//! Read [`Db`]. Every call blocks (SQLite is a library, not a server): callers run them
//! on tokio's blocking pool, awaited by a tracked task.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

/// One stored item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Item {
    /// Its row id.
    pub(crate) id: i64,
    /// What the client sent.
    pub(crate) name: String,
}

/// The schema, one migration per entry, applied in order; `PRAGMA user_version` counts
/// those applied.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)",
    "CREATE TABLE stats (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
];

/// The database could not be used.
#[derive(Debug, thiserror::Error)]
#[error("database {path}: {what}")]
pub(crate) struct DbError {
    path: String,
    what: String,
    #[source]
    source: rusqlite::Error,
}

/// The service's database: one connection for the writer, one for readers (WAL mode lets
/// them run side by side).
#[derive(Debug, Clone)]
pub(crate) struct Db {
    path: PathBuf,
    writer: Arc<Mutex<Connection>>,
    reader: Arc<Mutex<Connection>>,
}

impl Db {
    /// Opens (creating if missing) the database at `path` and applies the migrations not
    /// yet applied.
    ///
    /// # Errors
    ///
    /// [`DbError`] naming the file and the step that failed.
    pub(crate) fn open(path: &Path) -> Result<Self, DbError> {
        let failed = |what: &str| {
            let path = path.display().to_string();
            let what = what.to_owned();
            move |source| DbError { path, what, source }
        };
        let mut writer = Connection::open(path).map_err(failed("cannot open"))?;
        // WAL: readers do not wait for the writer; NORMAL sync is durable across a
        // process crash (the case here), not a power cut.
        writer
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(failed("cannot switch to WAL"))?;
        writer
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(failed("cannot set synchronous"))?;
        // Several workers share the file: wait for a lock rather than fail at once.
        writer
            .busy_timeout(std::time::Duration::from_secs(5))
            .map_err(failed("cannot set the busy timeout"))?;
        migrate(&mut writer).map_err(failed("migration failed"))?;
        let reader = Connection::open(path).map_err(failed("cannot open for reading"))?;
        reader
            .busy_timeout(std::time::Duration::from_secs(5))
            .map_err(failed("cannot set the busy timeout"))?;
        Ok(Self {
            path: path.to_owned(),
            writer: Arc::new(Mutex::new(writer)),
            reader: Arc::new(Mutex::new(reader)),
        })
    }

    /// Inserts `names` in one transaction; returns their items, in order, once committed.
    ///
    /// # Errors
    ///
    /// [`DbError`]: nothing of the batch is stored.
    pub(crate) fn insert_batch(&self, names: &[String]) -> Result<Vec<Item>, DbError> {
        let failed = |source| DbError {
            path: self.path.display().to_string(),
            what: "insert failed".into(),
            source,
        };
        let mut conn = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let tx = conn.transaction().map_err(failed)?;
        let mut items = Vec::with_capacity(names.len());
        {
            let mut insert = tx
                .prepare_cached("INSERT INTO items (name) VALUES (?1)")
                .map_err(failed)?;
            for name in names {
                insert.execute(params![name]).map_err(failed)?;
                items.push(Item {
                    id: tx.last_insert_rowid(),
                    name: name.clone(),
                });
            }
        }
        tx.commit().map_err(failed)?;
        Ok(items)
    }

    /// The item with `id`, if stored.
    ///
    /// # Errors
    ///
    /// [`DbError`] if the query fails.
    pub(crate) fn get(&self, id: i64) -> Result<Option<Item>, DbError> {
        let conn = self.reader.lock().unwrap_or_else(PoisonError::into_inner);
        conn.query_row(
            "SELECT id, name FROM items WHERE id = ?1",
            params![id],
            |row| {
                Ok(Item {
                    id: row.get(0)?,
                    name: row.get(1)?,
                })
            },
        )
        .optional()
        .map_err(|source| self.error("read failed", source))
    }

    /// The newest `limit` items, newest first.
    ///
    /// # Errors
    ///
    /// [`DbError`] if the query fails.
    pub(crate) fn latest(&self, limit: usize) -> Result<Vec<Item>, DbError> {
        let conn = self.reader.lock().unwrap_or_else(PoisonError::into_inner);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut query = conn
            .prepare_cached("SELECT id, name FROM items ORDER BY id DESC LIMIT ?1")
            .map_err(|source| self.error("read failed", source))?;
        let rows = query
            .query_map(params![limit], |row| {
                Ok(Item {
                    id: row.get(0)?,
                    name: row.get(1)?,
                })
            })
            .map_err(|source| self.error("read failed", source))?;
        rows.collect::<Result<_, _>>()
            .map_err(|source| self.error("read failed", source))
    }

    fn error(&self, what: &str, source: rusqlite::Error) -> DbError {
        DbError {
            path: self.path.display().to_string(),
            what: what.into(),
            source,
        }
    }
}

/// Runs `call` (SQLite blocks) on the blocking pool; its error, or the pool's, as one
/// line with its causes.
pub(crate) async fn off_thread<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, DbError> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(call).await {
        Ok(done) => done.map_err(|error| crate::error_chain(&error)),
        Err(joined) => Err(format!("the database call did not finish: {joined}")),
    }
}

/// Applies the migrations after the one `user_version` records, each in its own
/// transaction with the version bump. The version is read inside the (immediate, so
/// exclusive) transaction: workers starting together migrate once, not twice.
fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    loop {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let applied: i64 = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
        let Some(sql) = usize::try_from(applied)
            .ok()
            .and_then(|n| MIGRATIONS.get(n))
        else {
            return tx.commit();
        };
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", applied + 1)?;
        tx.commit()?;
        tracing::info!(version = applied + 1, "database migrated");
    }
}

/// The database once `init_db` has opened it: handlers ask, the writer and `warm_cache`
/// wait.
#[derive(Debug, Clone)]
pub(crate) struct SharedDb(Arc<tokio::sync::watch::Sender<Option<Db>>>);

impl Default for SharedDb {
    fn default() -> Self {
        Self(Arc::new(tokio::sync::watch::Sender::new(None)))
    }
}

impl SharedDb {
    /// Publishes the opened database.
    pub(crate) fn set(&self, db: Db) {
        self.0.send_replace(Some(db));
    }

    /// The database, if open yet.
    pub(crate) fn get(&self) -> Option<Db> {
        self.0.borrow().clone()
    }

    /// Waits until the database is open.
    ///
    /// # Cancel safety
    ///
    /// This method is cancel safe.
    pub(crate) async fn wait(&self) -> Db {
        let mut changes = self.0.subscribe();
        let ready = changes.wait_for(Option::is_some).await;
        // The sender lives in `self`: the channel cannot close while we wait.
        ready
            .ok()
            .and_then(|db| db.clone())
            .expect("the sender is held by self")
    }
}
