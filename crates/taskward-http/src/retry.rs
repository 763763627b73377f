//! When a request that failed may be sent again: once, on a new connection, if it failed
//! on a reused HTTP/1.1 keep-alive connection before any byte of its response arrived and
//! it is idempotent (RFC 9110 §9.2.2).
//!
//! Read [`may_retry`] first. That failure is the race every keep-alive client loses now
//! and then: the server closes an idle connection (its keep-alive timeout, a reload) just
//! as the client sends the next request on it. hyper-util retries by itself only a request
//! not yet written when the connection was found closed; a request written into the
//! closing connection fails with it. [`Exchanges`] is what the connection records so that
//! the client can tell that case from a failure after the server began to answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use http::Method;
use hyper_util::client::legacy::Error as HyperError;

/// What an HTTP/1.1 connection has carried, updated by its reads and writes.
///
/// HTTP/1.1 here never pipelines: a request is written only once the previous response
/// was read, so a write that follows a read begins the next request, and the bytes read
/// since then belong to its response.
#[derive(Debug, Default)]
pub(crate) struct Exchanges {
    /// Requests begun on the connection.
    begun: AtomicU64,
    /// Bytes read since the current request began.
    answered: AtomicU64,
    /// The last I/O was a read: the next write begins a request.
    reading: AtomicBool,
}

// Relaxed throughout: only the connection's task writes these, and the requester reads
// them after the failure reached it through hyper's channel, which orders the two.
impl Exchanges {
    pub(crate) fn wrote(&self) {
        if self.reading.swap(false, Ordering::Relaxed) || self.begun.load(Ordering::Relaxed) == 0 {
            self.begun.fetch_add(1, Ordering::Relaxed);
            self.answered.store(0, Ordering::Relaxed);
        }
    }

    pub(crate) fn read(&self, bytes: usize) {
        self.answered.fetch_add(bytes as u64, Ordering::Relaxed);
        self.reading.store(true, Ordering::Relaxed);
    }

    fn seen(&self) -> ConnectionUse {
        ConnectionUse {
            reused: self.begun.load(Ordering::Relaxed) > 1,
            answered: self.answered.load(Ordering::Relaxed) > 0,
        }
    }
}

/// What the connection a request failed on had seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConnectionUse {
    /// The request was not the connection's first.
    pub(crate) reused: bool,
    /// Some of its response had arrived.
    pub(crate) answered: bool,
}

impl ConnectionUse {
    /// What the HTTP/1.1 connection of a failed request had seen; `None` for a failure
    /// to connect (never retried: hyper-util already tried a new connection) and for
    /// HTTP/2, whose streams share the connection (a refused stream is hyper-util's).
    pub(crate) fn of(error: &HyperError) -> Option<Self> {
        if error.is_connect() {
            return None;
        }
        let connected = error.connect_info()?;
        if connected.is_negotiated_h2() {
            return None;
        }
        let mut extensions = http::Extensions::new();
        connected.get_extras(&mut extensions);
        extensions
            .get::<Arc<Exchanges>>()
            .map(|exchanges| exchanges.seen())
    }
}

/// Whether a failed request may be sent once more, on a new connection: it is idempotent
/// by its method (GET, HEAD, PUT, DELETE, OPTIONS, TRACE) or declared so by the caller,
/// and it failed on a reused connection before any byte of its response.
pub(crate) fn may_retry(
    method: &Method,
    declared_idempotent: bool,
    failed: Option<ConnectionUse>,
) -> bool {
    let idempotent = declared_idempotent
        || matches!(
            *method,
            Method::GET
                | Method::HEAD
                | Method::PUT
                | Method::DELETE
                | Method::OPTIONS
                | Method::TRACE
        );
    idempotent && failed.is_some_and(|conn| conn.reused && !conn.answered)
}

#[cfg(test)]
mod tests {
    use http::Method;

    use super::{ConnectionUse, Exchanges, may_retry};

    const STALE: Option<ConnectionUse> = Some(ConnectionUse {
        reused: true,
        answered: false,
    });

    // Asserts: a request and its response, then a second request: the second is on a
    // reused connection, unanswered until its first byte arrives.
    #[test]
    fn exchanges_tell_a_reused_connection_and_an_answer() {
        let exchanges = Exchanges::default();
        exchanges.wrote();
        exchanges.wrote(); // the rest of the first request
        assert_eq!(
            exchanges.seen(),
            ConnectionUse {
                reused: false,
                answered: false
            }
        );
        exchanges.read(100);
        assert!(exchanges.seen().answered);
        exchanges.wrote(); // the second request
        assert_eq!(exchanges.seen(), STALE.expect("some"));
        exchanges.read(1);
        assert!(exchanges.seen().answered);
    }

    // Asserts: only idempotent methods, or requests declared so, are retried, and only
    // after failing on a reused connection with no byte of their response.
    #[test]
    fn only_idempotent_requests_unanswered_on_a_reused_connection() {
        for method in [
            Method::GET,
            Method::HEAD,
            Method::PUT,
            Method::DELETE,
            Method::OPTIONS,
        ] {
            assert!(may_retry(&method, false, STALE), "{method}");
        }
        assert!(!may_retry(&Method::POST, false, STALE));
        assert!(!may_retry(&Method::PATCH, false, STALE));
        assert!(may_retry(&Method::POST, true, STALE));
        let fresh = ConnectionUse {
            reused: false,
            answered: false,
        };
        assert!(!may_retry(&Method::GET, false, Some(fresh)));
        let answered = ConnectionUse {
            reused: true,
            answered: true,
        };
        assert!(!may_retry(&Method::GET, false, Some(answered)));
        assert!(!may_retry(&Method::GET, true, None));
    }
}
