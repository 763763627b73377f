//! The worker's side of systemd's notify protocol: one datagram socket, opened once and
//! kept, to `NOTIFY_SOCKET`.
//!
//! Read [`Notifier`]. Opening a socket per message (as `sd_notify::notify` does) needs a
//! free descriptor for every heartbeat: a worker whose descriptors are all taken by
//! clients then misses its heartbeats, and its supervisor kills it with requests in
//! flight.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;
use std::sync::Arc;

use crate::throttle::{Throttle, WARN_EVERY};

/// The variable naming the supervisor's socket.
const NOTIFY_SOCKET_ENV: &str = "NOTIFY_SOCKET";

/// A connection to the supervisor's notify socket, opened once: sending never needs a
/// new descriptor. Without a supervisor (no `NOTIFY_SOCKET`) every send does nothing.
///
/// A cheap `Clone` handle; clones share the socket.
///
/// # Examples
///
/// ```
/// let notifier = taskward_http::Notifier::from_env();
/// // Under systemd or `taskward serve` this reaches the supervisor; alone, nothing.
/// notifier.send("STATUS=warming up\n").expect("sent or nowhere to send");
/// ```
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    inner: Option<Arc<Inner>>,
}

#[derive(Debug)]
struct Inner {
    socket: UnixDatagram,
    peer: SocketAddr,
    failing: std::sync::Mutex<Throttle>,
}

impl Notifier {
    /// The supervisor named by `NOTIFY_SOCKET` (a path, or `@name` in Linux's abstract
    /// namespace), or none. Call it early: it opens the socket it will keep.
    ///
    /// The variable is left set (a library does not own the process's environment). A
    /// socket that cannot be opened, or a value that names no socket, is logged once and
    /// leaves a notifier that sends nothing: the supervisor's watchdog acts on it.
    #[must_use]
    pub fn from_env() -> Self {
        let Some(value) = std::env::var_os(NOTIFY_SOCKET_ENV) else {
            return Self::default();
        };
        let peer = match peer_address(value.as_encoded_bytes()) {
            Ok(peer) => peer,
            Err(error) => {
                tracing::warn!(%error, value = ?value, "{NOTIFY_SOCKET_ENV}: not a socket address; not notifying");
                return Self::default();
            }
        };
        match Self::open(peer) {
            Ok(notifier) => notifier,
            Err(error) => {
                tracing::warn!(%error, value = ?value, "cannot open a socket to {NOTIFY_SOCKET_ENV}; not notifying");
                Self::default()
            }
        }
    }

    /// The supervisor listening on the datagram socket at `path`.
    ///
    /// # Errors
    ///
    /// What the operating system says when the socket is created or the path is too
    /// long. The peer need not exist yet: a send that finds it missing says so.
    pub fn connect(path: impl AsRef<Path>) -> io::Result<Self> {
        Self::open(SocketAddr::from_pathname(path)?)
    }

    fn open(peer: SocketAddr) -> io::Result<Self> {
        let socket = UnixDatagram::unbound()?;
        // Connected when it can be: the kernel then checks the peer once, not per send.
        // A peer not there yet is tried again at the next send.
        let _ = socket.connect_addr(&peer);
        Ok(Self {
            inner: Some(Arc::new(Inner {
                socket,
                peer,
                failing: std::sync::Mutex::new(Throttle::new(WARN_EVERY)),
            })),
        })
    }

    /// Whether a supervisor listens (`NOTIFY_SOCKET` was set and usable).
    #[must_use]
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Sends one datagram of `KEY=value` lines (`READY=1\n`, `WATCHDOG=1\n`, …).
    ///
    /// # Errors
    ///
    /// What the operating system says when the datagram cannot be sent, after one
    /// reconnection (on the same socket: no new descriptor).
    pub fn send(&self, message: &str) -> io::Result<()> {
        let Some(inner) = &self.inner else {
            return Ok(());
        };
        let sent = match inner.socket.send(message.as_bytes()) {
            Ok(sent) => sent,
            Err(_) => {
                // Not connected yet, or the supervisor's socket was recreated: connecting
                // a datagram socket again re-targets it.
                inner.socket.connect_addr(&inner.peer)?;
                inner.socket.send(message.as_bytes())?
            }
        };
        if sent == message.len() {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "datagram truncated",
            ))
        }
    }

    /// [`send`](Self::send), with a failure logged as a warning (once per interval when
    /// it repeats), not returned: the supervisor acts on missing heartbeats itself.
    pub(crate) fn send_or_warn(&self, message: &str) {
        let Err(error) = self.send(message) else {
            return;
        };
        let Some(inner) = &self.inner else { return };
        let logged = inner
            .failing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .hit(tokio::time::Instant::now());
        if let Some(more) = logged {
            tracing::warn!(%error, more, "cannot notify the supervisor");
        }
    }
}

/// `NOTIFY_SOCKET`'s value as an address: a path, or `@name` (abstract namespace).
fn peer_address(value: &[u8]) -> io::Result<SocketAddr> {
    if let Some(name) = value.strip_prefix(b"@") {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            #[cfg(target_os = "android")]
            use std::os::android::net::SocketAddrExt;
            #[cfg(target_os = "linux")]
            use std::os::linux::net::SocketAddrExt;
            return SocketAddr::from_abstract_name(name);
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        {
            let _ = name;
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "abstract sockets are Linux's",
            ));
        }
    }
    if value.first() != Some(&b'/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "expected an absolute path or @name",
        ));
    }
    SocketAddr::from_pathname(Path::new(
        <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(value),
    ))
}
