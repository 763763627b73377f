//! The in-memory cache of items, filled by `warm_cache` at startup and by the writer
//! after each commit, and its statistics.
//!
//! Read [`Cache`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use serde::Serialize;

use crate::db::Item;

/// Items kept at most: past it the oldest (lowest ids) are dropped, so that a worker's
/// memory does not grow with every item written (it holds what `warm_cache` loads).
pub(crate) const CAPACITY: usize = 50_000;

/// Items by id, shared by the request handlers, the writer and the jobs.
#[derive(Debug, Clone, Default)]
pub(crate) struct Cache {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// By id, so that the oldest (lowest ids) go first when it is full.
    items: RwLock<BTreeMap<i64, Item>>,
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
        while map.len() > CAPACITY {
            map.pop_first();
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

#[cfg(test)]
mod tests {
    use super::{CAPACITY, Cache};
    use crate::db::Item;

    // Asserts: the cache never holds more than CAPACITY items, dropping the oldest ids.
    #[test]
    fn a_full_cache_drops_its_oldest_items() {
        let cache = Cache::default();
        let extra = 10;
        let count = i64::try_from(CAPACITY).expect("fits") + extra;
        cache.put((1..=count).map(|id| Item {
            id,
            name: format!("item {id}"),
        }));
        cache.refresh_stats();
        assert_eq!(cache.stats().items, CAPACITY);
        assert!(cache.get(extra).is_none(), "the oldest went first");
        assert!(cache.get(extra + 1).is_some());
        assert!(cache.get(count).is_some(), "the newest stayed");
    }
}
