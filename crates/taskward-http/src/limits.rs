//! The process's descriptor limit: raised to its hard maximum at start, and the share of
//! it a worker's connections may take.
//!
//! Read [`raise_nofile`] first, then [`ConnectionLimit`].

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

/// The soft descriptor limit before and after [`raise_nofile`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct NofileLimit {
    /// The soft limit found (`None`: unlimited).
    pub before: Option<u64>,
    /// The soft limit now in force.
    pub after: Option<u64>,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, as Go's runtime and nginx do: the
/// soft limit (1,024 under systemd's defaults) is a guard for old `select(2)` code, not a
/// budget, and a server that meets it fails `accept` and cannot even open a socket to say
/// so. Children inherit the raised limit.
///
/// ```
/// let limit = taskward_http::limits::raise_nofile().expect("the hard limit is allowed");
/// assert!(limit.after >= limit.before || limit.after.is_none());
/// ```
///
/// # Errors
///
/// What `setrlimit(2)` says (it does not fail when raising the soft limit to the hard one,
/// short of a seccomp filter or an exotic kernel).
pub fn raise_nofile() -> io::Result<NofileLimit> {
    let limit = getrlimit(Resource::Nofile);
    if limit.current == limit.maximum {
        return Ok(NofileLimit {
            before: limit.current,
            after: limit.current,
        });
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        },
    )?;
    Ok(NofileLimit {
        before: limit.current,
        after: limit.maximum,
    })
}

/// [`raise_nofile`], saying in the log what it did (INFO) or why it could not (WARN):
/// what a process calls once at start. Both `taskward serve` (whose workers inherit the
/// raised limit) and every [`Worker`](crate::Worker) call it.
///
/// ```
/// taskward_http::limits::raise_nofile_and_log();
/// assert_eq!(
///     taskward_http::limits::nofile(),
///     rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum,
/// );
/// ```
pub fn raise_nofile_and_log() {
    match raise_nofile() {
        Ok(raised) if raised.before != raised.after => tracing::info!(
            before = ?raised.before,
            after = ?raised.after,
            "raised the soft descriptor limit (RLIMIT_NOFILE) to the hard limit"
        ),
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "cannot raise the descriptor limit (RLIMIT_NOFILE)"),
    }
}

/// The soft descriptor limit now in force (`None`: unlimited).
#[must_use]
pub fn nofile() -> Option<u64> {
    getrlimit(Resource::Nofile).current
}

/// The connections a process with `nofile` descriptors may keep open: all of them but a
/// reserve for everything else it opens (listeners, the runtime's, log files, database
/// files, outgoing connections, the notify socket): 32 plus an eighth.
///
/// ```
/// use taskward_http::limits::connections_for;
/// assert_eq!(connections_for(Some(1024)), 864);
/// assert_eq!(connections_for(Some(128)), 80);
/// assert_eq!(connections_for(Some(16)), 1);
/// assert_eq!(connections_for(None), taskward_http::limits::ConnectionLimit::UNLIMITED);
/// ```
#[must_use]
pub fn connections_for(nofile: Option<u64>) -> usize {
    let Some(nofile) = nofile else {
        return ConnectionLimit::UNLIMITED;
    };
    let reserve = 32 + nofile / 8;
    let left = nofile.saturating_sub(reserve).max(1);
    usize::try_from(left).map_or(ConnectionLimit::UNLIMITED, |n| {
        n.min(ConnectionLimit::UNLIMITED)
    })
}

/// A cap on the connections open at once, shared by every server it is given to: at the
/// cap a server stops accepting (connections wait in the listen queue) until one closes.
///
/// A cheap `Clone` handle; clones share the count.
///
/// # Examples
///
/// ```
/// use taskward_http::limits::ConnectionLimit;
///
/// let limit = ConnectionLimit::new(2);
/// assert_eq!((limit.max(), limit.open()), (2, 0));
/// ```
#[derive(Debug, Clone)]
pub struct ConnectionLimit {
    permits: Arc<Semaphore>,
    /// Bumped while a connection accepted at the cap waits for a place: every connection
    /// that has been waiting for a request head a while gives its place up (see
    /// [`Place::pressed`]), so that idle and slow clients cannot hold the cap against new
    /// ones for a whole header read timeout (nginx reuses idle keep-alive connections the
    /// same way when it runs out).
    pressure: Arc<watch::Sender<u64>>,
    /// Connections accepted and not yet closed. (The semaphore's count also holds the
    /// place an accept loop takes before it waits for a connection.)
    open: Arc<AtomicUsize>,
    max: usize,
}

impl ConnectionLimit {
    /// The largest cap: more connections than any process can have descriptors for.
    pub const UNLIMITED: usize = Semaphore::MAX_PERMITS;

    /// At most `max` connections (at least one).
    #[must_use]
    pub fn new(max: usize) -> Self {
        let max = max.clamp(1, Self::UNLIMITED);
        Self {
            permits: Arc::new(Semaphore::new(max)),
            pressure: Arc::new(watch::channel(0).0),
            open: Arc::new(AtomicUsize::new(0)),
            max,
        }
    }

    /// The cap derived from the soft descriptor limit now in force (see
    /// [`connections_for`]): call it after [`raise_nofile`].
    #[must_use]
    pub fn from_nofile() -> Self {
        Self::new(connections_for(nofile()))
    }

    /// The cap.
    #[must_use]
    pub fn max(&self) -> usize {
        self.max
    }

    /// The connections open now.
    #[must_use]
    pub fn open(&self) -> usize {
        // Relaxed: a gauge; nothing is read on the strength of it.
        self.open.load(Ordering::Relaxed)
    }

    /// The place `permit` holds, now taken by an accepted connection until it is dropped.
    pub(crate) fn admit(&self, permit: OwnedSemaphorePermit) -> Place {
        self.open.fetch_add(1, Ordering::Relaxed);
        Place {
            _permit: permit,
            open: self.open.clone(),
            pressure: self.pressure.subscribe(),
        }
    }

    /// A connection is waiting for a place: asks the open ones to give theirs up if they
    /// are only waiting for a request head.
    pub(crate) fn press(&self) {
        self.pressure.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A place for one more connection, at once if there is one.
    pub(crate) fn try_acquire(&self) -> Option<OwnedSemaphorePermit> {
        self.permits.clone().try_acquire_owned().ok()
    }

    /// A place for one more connection, once one is free.
    ///
    /// # Cancel safety
    ///
    /// This method is cancel safe: tokio's semaphore keeps no place for a dropped waiter.
    pub(crate) async fn acquire(&self) -> OwnedSemaphorePermit {
        self.permits
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed")
    }
}

/// An accepted connection's place under a [`ConnectionLimit`], given back when dropped.
#[derive(Debug)]
pub(crate) struct Place {
    _permit: OwnedSemaphorePermit,
    open: Arc<AtomicUsize>,
    pressure: watch::Receiver<u64>,
}

impl Place {
    /// Resolves each time a connection waits for a place under this limit
    /// ([`ConnectionLimit::press`]); never once the limit is gone.
    ///
    /// # Cancel safety
    ///
    /// This method is cancel safe: a press not yet seen stays unseen.
    pub(crate) async fn pressed(&mut self) {
        if self.pressure.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Default for ConnectionLimit {
    /// [`ConnectionLimit::from_nofile`].
    fn default() -> Self {
        Self::from_nofile()
    }
}
