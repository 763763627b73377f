//! How many requests a server has begun to answer, and a wake-up at a threshold: what a
//! process manager's `max_requests` recycling reads.
//!
//! Read [`RequestCount`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Notify;

/// A count of the requests a server has begun to answer (HTTP/1 requests and HTTP/2
/// streams alike), shared by every clone.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use taskward_http::RequestCount;
///
/// let count = RequestCount::new();
/// assert_eq!(count.get(), 0);
/// // A server given this count (`Server::requests`) adds one per request; a watcher can
/// // wait for a threshold without polling:
/// tokio::select! {
///     () = count.reached(1) => unreachable!("nothing was served"),
///     () = std::future::ready(()) => {}
/// }
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct RequestCount {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    count: AtomicU64,
    /// The count whose arrival wakes `reached`; 0: nobody waits.
    threshold: AtomicU64,
    reached: Notify,
}

impl RequestCount {
    /// A count at zero.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests begun so far.
    #[must_use]
    pub fn get(&self) -> u64 {
        // Relaxed: a statistic; nothing else is published with it.
        self.inner.count.load(Ordering::Relaxed)
    }

    /// Counts one request: one atomic add, and one compare against the threshold.
    pub(crate) fn add_one(&self) {
        let now = self.inner.count.fetch_add(1, Ordering::AcqRel) + 1;
        // Acquire pairs with the Release in `reached`: a waiter that stored its threshold
        // before we counted sees our count when it checks, or we see its threshold here.
        if now == self.inner.threshold.load(Ordering::Acquire) {
            self.inner.reached.notify_waiters();
        }
    }

    /// Waits until at least `n` requests have begun. One waiter at a time: a later call
    /// replaces the threshold of an earlier one still waiting.
    ///
    /// # Cancel safety
    ///
    /// This method is cancel safe.
    pub async fn reached(&self, n: u64) {
        let inner = &self.inner;
        inner.threshold.store(n, Ordering::Release);
        loop {
            let notified = inner.reached.notified();
            tokio::pin!(notified);
            // Registered before the check, so a count reaching `n` between the check and
            // the await still wakes us.
            notified.as_mut().enable();
            if inner.count.load(Ordering::Acquire) >= n {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio_test::{assert_pending, assert_ready, task};

    use super::RequestCount;

    // Asserts: a waiter wakes exactly when the count reaches its threshold, not before,
    // and a threshold already passed is ready at once.
    #[test]
    fn reached_wakes_at_the_threshold() {
        let count = RequestCount::new();
        let mut waiting = task::spawn(count.reached(2));
        assert_pending!(waiting.poll());
        count.add_one();
        assert!(!waiting.is_woken(), "one request is not two");
        assert_pending!(waiting.poll());
        count.add_one();
        assert!(waiting.is_woken(), "the second request wakes the waiter");
        assert_ready!(waiting.poll());
        assert_eq!(count.get(), 2);
        assert_ready!(task::spawn(count.reached(1)).poll());
    }
}
