//! How long a connection may hold a descriptor without doing its share: reading a request
//! head, sitting idle, answering pings.
//!
//! Read [`Timeouts`].

use std::time::Duration;

/// The timeouts every connection of a [`Server`](crate::Server) is held to. On by
/// default; each can be turned off with `None`.
///
/// - **Header read** (30 s, hyper's default; nginx's `client_header_timeout` is 60 s): a
///   connection must send a complete request head within it, counted from its accept
///   and, on an HTTP/1 keep-alive connection, from the previous response (its head being
///   ready). So it is also HTTP/1's idle keep-alive timeout: a connection that sends
///   nothing, half a head (slowloris) or nothing more after a response is closed when it
///   runs out (one whose last response body is still being sent then is closed after
///   it). An HTTP/2 connection must open its first stream within it. A request being
///   answered is never cut by it; the wait after a response that took longer than the
///   timeout may last up to twice the timeout.
/// - **HTTP/2 idle** (60 s): an HTTP/2 connection with no stream open for that long is
///   sent GOAWAY and closed.
/// - **HTTP/2 keep-alive** (a ping every 20 s, closed if not acknowledged within 20 s):
///   finds HTTP/2 peers that went away without closing.
///
/// Behind a load balancer that keeps idle connections to the backend open longer than
/// the header read timeout (AWS ALB: 60 s), raise it above the balancer's, or the
/// balancer may send a request on a connection the server is closing.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use taskward_http::Timeouts;
///
/// let timeouts = Timeouts::default()
///     .header_read(Some(Duration::from_secs(75)))
///     .http2_idle(None);
/// assert_eq!(timeouts.header_read_timeout(), Some(Duration::from_secs(75)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    header_read: Option<Duration>,
    http2_idle: Option<Duration>,
    http2_keep_alive_interval: Option<Duration>,
    http2_keep_alive_timeout: Duration,
}

impl Timeouts {
    /// The header read timeout by default.
    pub const HEADER_READ: Duration = Duration::from_secs(30);
    /// The HTTP/2 idle timeout by default.
    pub const HTTP2_IDLE: Duration = Duration::from_secs(60);
    /// The HTTP/2 ping interval, and the time a ping has to be acknowledged, by default.
    pub const HTTP2_KEEP_ALIVE: Duration = Duration::from_secs(20);

    /// No timeout at all: every connection may stay open for ever, as before hyper had a
    /// timer. For tests and for trusted peers only.
    #[must_use]
    pub const fn none() -> Self {
        Self {
            header_read: None,
            http2_idle: None,
            http2_keep_alive_interval: None,
            http2_keep_alive_timeout: Self::HTTP2_KEEP_ALIVE,
        }
    }

    /// The time to send a complete request head (see [`Timeouts`]).
    #[must_use]
    pub const fn header_read(mut self, timeout: Option<Duration>) -> Self {
        self.header_read = timeout;
        self
    }

    /// The time an HTTP/2 connection may stay open with no stream.
    #[must_use]
    pub const fn http2_idle(mut self, timeout: Option<Duration>) -> Self {
        self.http2_idle = timeout;
        self
    }

    /// How often an HTTP/2 connection is pinged, and how long the peer has to answer
    /// before it is closed; `None` sends no ping.
    #[must_use]
    pub const fn http2_keep_alive(mut self, every: Option<Duration>, timeout: Duration) -> Self {
        self.http2_keep_alive_interval = every;
        self.http2_keep_alive_timeout = timeout;
        self
    }

    /// The header read timeout.
    #[must_use]
    pub const fn header_read_timeout(&self) -> Option<Duration> {
        self.header_read
    }

    /// The HTTP/2 idle timeout.
    #[must_use]
    pub const fn http2_idle_timeout(&self) -> Option<Duration> {
        self.http2_idle
    }

    /// The HTTP/2 ping interval and the time to answer it.
    #[must_use]
    pub const fn http2_keep_alive_interval(&self) -> (Option<Duration>, Duration) {
        (
            self.http2_keep_alive_interval,
            self.http2_keep_alive_timeout,
        )
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            header_read: Some(Self::HEADER_READ),
            http2_idle: Some(Self::HTTP2_IDLE),
            http2_keep_alive_interval: Some(Self::HTTP2_KEEP_ALIVE),
            http2_keep_alive_timeout: Self::HTTP2_KEEP_ALIVE,
        }
    }
}
