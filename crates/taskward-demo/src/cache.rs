//! The in-memory cache of items, filled by `warm_cache` at startup and by the writer
//! after each commit, and its statistics.
//!
//! Read [`Cache`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use serde::Serialize;

use crate::db::Item;

/// Items by id, shared by the request handlers, the writer and the jobs.
#[derive(Debug, Clone, Default)]
pub(crate) struct Cache {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    items: RwLock<HashMap<i64, Item>>,
    hits: AtomicU64,
    misses: AtomicU64,
    stats: RwLock<Stats>,
}

/// What the periodic job last computed.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct Stats {
    /// Items cached.
    pub(crate) items: usize,
    /// Lookups answered from the cache.
    pub(crate) hits: u64,
    /// Lookups that went to the database.
    pub(crate) misses: u64,
    /// How many times the job has run.
    pub(crate) refreshed: u64,
}

impl Cache {
    /// Adds or replaces `items`.
    pub(crate) fn put(&self, items: impl IntoIterator<Item = Item>) {
        let mut map = self
            .inner
            .items
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        for item in items {
            map.insert(item.id, item);
        }
    }

    /// The item with `id`, if cached; counts a hit or a miss.
    pub(crate) fn get(&self, id: i64) -> Option<Item> {
        let found = self
            .inner
            .items
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .cloned();
        // Relaxed: statistics, read only by the stats job.
        let counter = if found.is_some() {
            &self.inner.hits
        } else {
            &self.inner.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Recomputes the statistics (the periodic job's work).
    pub(crate) fn refresh_stats(&self) {
        let items = self
            .inner
            .items
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        let mut stats = self
            .inner
            .stats
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        *stats = Stats {
            items,
            hits: self.inner.hits.load(Ordering::Relaxed),
            misses: self.inner.misses.load(Ordering::Relaxed),
            refreshed: stats.refreshed + 1,
        };
    }

    /// The statistics as last refreshed.
    #[must_use]
    pub(crate) fn stats(&self) -> Stats {
        *self
            .inner
            .stats
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }
}
