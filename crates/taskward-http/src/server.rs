//! The HTTP server: every connection a task in the server's scope, and a shutdown that
//! flips readiness, drains, then lets in-flight requests finish within a deadline.
//!
//! HTTP/1.1 and HTTP/2 (h2c, prior knowledge) on the same port; HTTP/2 streams run inside
//! their connection's task (see `streams.rs`). The listener is a TCP socket or a unix
//! stream socket ([`ListenAddr`] says which).
//!
//! Read [`Server`] first, then [`ServerHandle::shutdown`] for the order of events.

use std::convert::Infallible;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use taskward::{Scope, ShutdownReport, TaskContext, TaskHandle};
use tokio::net::{TcpListener, ToSocketAddrs, UnixListener};
use tokio_util::sync::CancellationToken;
use tower::Service;

use crate::drain::{ConnState, DrainAware};
use crate::error::ServeError;
use crate::health::Health;
use crate::limits::{ConnectionLimit, Place};
use crate::listener::{ListenAddr, Listener, Stream};
use crate::requests::RequestCount;
use crate::streams::{ConnStreams, Running};
use crate::throttle::{Throttle, WARN_EVERY};
use crate::timeouts::Timeouts;

/// How long a connection waiting for a request head keeps its place while another waits
/// for one at the cap (or the header read timeout, if shorter): long enough for a client
/// that just connected to send its request, short enough that a flood holding the cap
/// delays normal clients by seconds, not by header read timeouts.
const RECLAIM_AFTER: Duration = Duration::from_secs(1);

/// The response body every served service must produce: axum's.
pub type Body = axum::body::Body;

/// What a [`Server`] serves: a cloneable tower service from hyper requests to axum
/// responses (an `axum::Router` is one), whose future can move between threads.
pub trait HttpService:
    Service<Request<Incoming>, Response = Response<Body>, Error = Infallible, Future: Send>
    + Clone
    + Send
    + 'static
{
}

impl<S> HttpService for S where
    S: Service<Request<Incoming>, Response = Response<Body>, Error = Infallible, Future: Send>
        + Clone
        + Send
        + 'static
{
}

/// An HTTP/1.1 and HTTP/2 (h2c) server whose connections are taskward tasks.
///
/// # Examples
///
/// ```no_run
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use axum::{Router, routing::get};
/// use taskward::Scope;
/// use taskward_http::{Health, Server};
///
/// let app = Scope::root("app");
/// let health = Health::new();
/// health.set_started();
/// let router = Router::new().route("/", get(|| async { "hello" })).merge(health.router());
/// let server = Server::bind("127.0.0.1:8080")
///     .await?
///     .health(health)
///     .drain_delay(Duration::from_secs(5))
///     .serve(&app, router)?;
/// // ... on SIGTERM:
/// let report = server.shutdown(Duration::from_secs(30)).await;
/// println!("{report}");
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Server {
    listener: Listener,
    health: Health,
    requests: RequestCount,
    drain_delay: Duration,
    idle_window: Duration,
    timeouts: Timeouts,
    limit: Option<ConnectionLimit>,
}

impl Server {
    /// How long an idle keep-alive connection may still send one more request once the
    /// drain has started, by default.
    pub const DEFAULT_IDLE_WINDOW: Duration = Duration::from_millis(500);

    /// Serves connections accepted from `listener` (one the process bound, or one it
    /// inherited from a supervisor).
    #[must_use]
    pub fn from_listener(listener: TcpListener) -> Self {
        Self::new(Listener::Tcp(listener))
    }

    /// Serves connections accepted from a unix stream socket `listener`. The socket file
    /// is left in place when the server stops: it belongs to whoever bound it.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use axum::{Router, routing::get};
    /// use taskward::Scope;
    /// use taskward_http::{ListenAddr, Server};
    ///
    /// let app = Scope::root("app");
    /// let listener = tokio::net::UnixListener::bind("/run/app/http.sock")?;
    /// let router = Router::new().route("/", get(|| async { "hello" }));
    /// let server = Server::from_unix(listener).serve(&app, router)?;
    /// assert!(matches!(server.listen_addr(), ListenAddr::Unix(Some(_))));
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn from_unix(listener: UnixListener) -> Self {
        Self::new(Listener::Unix(listener))
    }

    fn new(listener: Listener) -> Self {
        Self {
            listener,
            health: Health::new(),
            requests: RequestCount::new(),
            drain_delay: Duration::ZERO,
            idle_window: Self::DEFAULT_IDLE_WINDOW,
            timeouts: Timeouts::default(),
            limit: None,
        }
    }

    /// Serves connections accepted from a standard-library listener: one inherited from a
    /// supervisor (socket activation: fd 3 on, as `taskward serve` passes them) or bound
    /// before the runtime started.
    ///
    /// # Errors
    ///
    /// [`ServeError::Io`] if the socket cannot be made non-blocking or registered with
    /// the runtime (including when called outside a tokio runtime).
    pub fn from_std(listener: std::net::TcpListener) -> Result<Self, ServeError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(ServeError::Io(io::Error::other(
                "Server::from_std called outside a tokio runtime",
            )));
        }
        listener.set_nonblocking(true).map_err(ServeError::Io)?;
        let listener = TcpListener::from_std(listener).map_err(ServeError::Io)?;
        Ok(Self::from_listener(listener))
    }

    /// Serves connections accepted from a standard-library unix stream listener: one
    /// inherited from a supervisor (`taskward serve -b unix:/path`) or bound before the
    /// runtime started.
    ///
    /// # Errors
    ///
    /// [`ServeError::Io`] if the socket cannot be made non-blocking or registered with
    /// the runtime (including when called outside a tokio runtime).
    pub fn from_std_unix(listener: std::os::unix::net::UnixListener) -> Result<Self, ServeError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(ServeError::Io(io::Error::other(
                "Server::from_std_unix called outside a tokio runtime",
            )));
        }
        listener.set_nonblocking(true).map_err(ServeError::Io)?;
        let listener = UnixListener::from_std(listener).map_err(ServeError::Io)?;
        Ok(Self::from_unix(listener))
    }

    /// Binds `addr` and serves connections accepted there.
    ///
    /// # Errors
    ///
    /// [`ServeError::Bind`] if the address cannot be bound (in use, not local, refused).
    pub async fn bind(addr: impl ToSocketAddrs + std::fmt::Debug) -> Result<Self, ServeError> {
        let shown = format!("{addr:?}");
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind {
                addr: shown,
                source,
            })?;
        Ok(Self::from_listener(listener))
    }

    /// The readiness this server flips to "draining" when its shutdown starts.
    #[must_use]
    pub fn health(mut self, health: Health) -> Self {
        self.health = health;
        self
    }

    /// The count this server adds each request to (by default, one of its own; see
    /// [`ServerHandle::requests`]).
    #[must_use]
    pub fn requests(mut self, requests: RequestCount) -> Self {
        self.requests = requests;
        self
    }

    /// How long to keep accepting after readiness flipped, so that load balancers notice
    /// before connections are refused. Default: zero.
    #[must_use]
    pub fn drain_delay(mut self, delay: Duration) -> Self {
        self.drain_delay = delay;
        self
    }

    /// How long an idle keep-alive connection may still send one more request once the
    /// drain has started (it is answered with `Connection: close`) before it is closed.
    /// Closing it at once would reset a request the client may be sending at that moment.
    #[must_use]
    pub fn idle_window(mut self, window: Duration) -> Self {
        self.idle_window = window;
        self
    }

    /// The timeouts each connection is held to (see [`Timeouts`]; on by default).
    #[must_use]
    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// The cap on connections open at once, which may be shared with other servers of the
    /// process: at the cap, accepting pauses until a connection closes, and new ones wait
    /// in the listen queue. By default a cap of the server's own,
    /// [`ConnectionLimit::from_nofile`] when it starts serving.
    #[must_use]
    pub fn connection_limit(mut self, limit: ConnectionLimit) -> Self {
        self.limit = Some(limit);
        self
    }

    /// The TCP address the server listens on.
    ///
    /// # Errors
    ///
    /// What the operating system says when asked for the socket's address;
    /// [`io::ErrorKind::Unsupported`] for a unix socket, which has no such address (see
    /// [`listen_addr`](Self::listen_addr)).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self.listen_addr()? {
            ListenAddr::Tcp(addr) => Ok(addr),
            unix @ ListenAddr::Unix(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("{unix} has no TCP address"),
            )),
        }
    }

    /// Where the server listens: a TCP address or a unix socket path.
    ///
    /// # Errors
    ///
    /// What the operating system says when asked for the socket's address.
    pub fn listen_addr(&self) -> io::Result<ListenAddr> {
        self.listener.listen_addr()
    }

    /// Starts serving `service` in a child scope `http` of `scope`: an `accept` task, and
    /// one task per connection.
    ///
    /// # Errors
    ///
    /// [`ServeError::Spawn`] if `scope` is shutting down; [`ServeError::Io`] if the
    /// listener has no local address.
    pub fn serve<S>(self, scope: &Scope, service: S) -> Result<ServerHandle, ServeError>
    where
        S: HttpService,
    {
        let listen_addr = self.listener.listen_addr().map_err(ServeError::Io)?;
        let http = scope.child("http")?;
        let settings = Arc::new(Settings {
            idle_window: self.idle_window,
            timeouts: self.timeouts,
            health: self.health.clone(),
            requests: self.requests.clone(),
        });
        let limit = self.limit.unwrap_or_default();
        let listener = self.listener;
        let conns = http.clone();
        let stop_accepting = CancellationToken::new();
        let stop = stop_accepting.clone();
        let accept = http.task("accept").spawn_with(move |ctx| {
            accept_loop(ctx, stop, listener, limit, conns, service, settings)
        })?;
        Ok(ServerHandle {
            accept,
            stop_accepting,
            http,
            health: self.health,
            requests: self.requests,
            drain_delay: self.drain_delay,
            listen_addr,
        })
    }
}

/// What every connection task needs.
struct Settings {
    idle_window: Duration,
    timeouts: Timeouts,
    health: Health,
    requests: RequestCount,
}

/// A running [`Server`].
#[derive(Debug)]
pub struct ServerHandle {
    accept: TaskHandle<()>,
    stop_accepting: CancellationToken,
    http: Scope,
    health: Health,
    requests: RequestCount,
    drain_delay: Duration,
    listen_addr: ListenAddr,
}

impl ServerHandle {
    /// The TCP address the server listens on.
    ///
    /// A server on a unix socket has none: it returns the unspecified address
    /// `0.0.0.0:0`, which no client can connect to. Use
    /// [`listen_addr`](Self::listen_addr) when the server may be either.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        match self.listen_addr {
            ListenAddr::Tcp(addr) => addr,
            ListenAddr::Unix(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        }
    }

    /// Where the server listens: a TCP address or a unix socket path.
    #[must_use]
    pub fn listen_addr(&self) -> &ListenAddr {
        &self.listen_addr
    }

    /// The requests this server has begun to answer.
    #[must_use]
    pub fn requests(&self) -> &RequestCount {
        &self.requests
    }

    /// The server's scope (`<parent>/http`): its connections are its tasks.
    #[must_use]
    pub fn scope(&self) -> &Scope {
        &self.http
    }

    /// Stops the server, in this order: readiness turns not-ready at once; the drain
    /// delay passes while connections are still accepted; accepting stops (new
    /// connections are refused); every connection is asked to finish (HTTP/1: after its
    /// in-flight response, or after the idle window for an idle keep-alive connection;
    /// HTTP/2: GOAWAY, in-flight streams finish); within what is left of `deadline` those
    /// still open are aborted.
    ///
    /// # Return Value
    ///
    /// The report of the server's scope: one task per connection that was open.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future during the drain delay leaves the server accepting and not
    /// ready; dropped later, the shutdown continues on its own (see
    /// [`taskward::ShutdownFuture`]).
    pub async fn shutdown(self, deadline: Duration) -> ShutdownReport {
        self.health.set_draining();
        tracing::info!(addr = %self.listen_addr, drain_delay = ?self.drain_delay, "server draining: not ready");
        let started = tokio::time::Instant::now();
        tokio::time::sleep(self.drain_delay.min(deadline)).await;
        // Accepting stops first, and only then do the connections drain: a connection
        // accepted while the scope closes could not be given a task and would be reset.
        // The listener closes with the accept task, so new connections are refused (or,
        // when other processes share the socket, left queued for them).
        self.stop_accepting.cancel();
        let _ = tokio::time::timeout(deadline.saturating_sub(started.elapsed()), self.accept).await;
        self.http
            .shutdown(deadline.saturating_sub(started.elapsed()))
            .await
    }
}

async fn accept_loop<S>(
    ctx: TaskContext,
    stop: CancellationToken,
    listener: Listener,
    limit: ConnectionLimit,
    conns: Scope,
    service: S,
    settings: Arc<Settings>,
) where
    S: HttpService,
{
    let mut unix_seq = 0;
    let mut failing = Throttle::new(WARN_EVERY);
    let mut full = Throttle::new(WARN_EVERY);
    let reclaim_after = settings
        .timeouts
        .header_read_timeout()
        .map(|timeout| timeout.min(RECLAIM_AFTER));
    loop {
        // A place first when there is one. At the cap, the next connection is accepted
        // all the same and held here while the open connections that are only waiting
        // for a request head are asked to give their places up: a flood of idle or
        // slowloris connections then holds the cap for `RECLAIM_AFTER`, not for a whole
        // header read timeout, and normal clients queued behind it get through. Only a
        // connection actually waiting presses: at the cap with nobody queued, idle
        // keep-alive connections are left alone.
        let permit = limit.try_acquire();
        let accepted = tokio::select! {
            // Biased: once asked to stop, take no connection from the queue, where
            // another process sharing the socket may still accept it.
            biased;
            () = stop.cancelled() => break,
            () = ctx.cancelled() => break,
            accepted = listener.accept(&mut unix_seq) => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                if let Some(more) = failing.recovered(tokio::time::Instant::now()) {
                    tracing::info!(
                        more,
                        "accept works again (`more` failures since the last line)"
                    );
                }
                accepted
            }
            Err(error) => {
                // Per-connection errors (the peer reset before accept) and shortages (of
                // descriptors, memory) must not stop the server; a shortage lasts, so
                // back off long enough not to spin, and say so once per interval.
                if let Some(more) = failing.hit(tokio::time::Instant::now()) {
                    tracing::warn!(%error, more, "accept failed");
                }
                tokio::time::sleep(accept_backoff(&error)).await;
                continue;
            }
        };
        let permit = match permit {
            Some(permit) => {
                if let Some(more) = full.recovered(tokio::time::Instant::now()) {
                    tracing::info!(
                        max = limit.max(),
                        more,
                        "accepting again (the cap was reached `more` times since the last line)"
                    );
                }
                permit
            }
            None => {
                if let Some(more) = full.hit(tokio::time::Instant::now()) {
                    tracing::warn!(
                        max = limit.max(),
                        more,
                        "connection limit reached: idle connections give their places up"
                    );
                }
                match wait_for_place(&limit, &stop, &ctx, reclaim_after).await {
                    Some(permit) => permit,
                    // Stopping: this one connection, not begun, is closed unserved.
                    None => break,
                }
            }
        };
        let permit = limit.admit(permit);
        if ctx.is_cancelled() {
            // The scope was shut down from outside (not through `ServerHandle::shutdown`)
            // as this connection came in: serve it here, draining, rather than reset it.
            serve_connection(ctx, stream, service, settings, permit).await;
            break;
        }
        let service = service.clone();
        let settings = settings.clone();
        let spawned = conns
            .task(format!("conn {peer}"))
            .spawn_with(move |ctx| serve_connection(ctx, stream, service, settings, permit));
        if let Err(error) = spawned {
            tracing::debug!(%error, %peer, "connection refused: server shutting down");
            break;
        }
    }
    tracing::info!("stopped accepting");
}

/// A place for a connection accepted at the cap: presses the open connections every
/// `reclaim_after` (those waiting that long for a request head give theirs up) until one
/// is free; `None` if the server stops first. Without a header read timeout connections
/// are never closed for want of a request, and nothing is pressed.
async fn wait_for_place(
    limit: &ConnectionLimit,
    stop: &CancellationToken,
    ctx: &TaskContext,
    reclaim_after: Option<Duration>,
) -> Option<tokio::sync::OwnedSemaphorePermit> {
    loop {
        if reclaim_after.is_some() {
            limit.press();
        }
        let again = tokio::time::sleep_until(
            reclaim_after.map_or_else(far_future, |after| tokio::time::Instant::now() + after),
        );
        tokio::select! {
            biased;
            () = stop.cancelled() => return None,
            () = ctx.cancelled() => return None,
            permit = limit.acquire() => return Some(permit),
            // Those too young to give their place up at the last press may be old enough
            // now.
            () = again => {}
        }
    }
}

/// How long to wait before accepting again after `error`: a shortage of descriptors or
/// memory is not over in microseconds (nginx waits 500 ms); a connection the peer reset
/// before it was accepted says nothing about the next one.
fn accept_backoff(error: &io::Error) -> Duration {
    match error
        .raw_os_error()
        .map(rustix::io::Errno::from_raw_os_error)
    {
        Some(
            rustix::io::Errno::MFILE
            | rustix::io::Errno::NFILE
            | rustix::io::Errno::NOBUFS
            | rustix::io::Errno::NOMEM,
        ) => Duration::from_millis(100),
        _ => Duration::from_millis(1),
    }
}

/// One connection, from first byte to close, with the graceful end described in
/// [`ServerHandle::shutdown`].
async fn serve_connection<S>(
    ctx: TaskContext,
    stream: Stream,
    service: S,
    settings: Arc<Settings>,
    mut place: Place,
) where
    S: HttpService,
{
    let state = Arc::new(ConnState::new(
        settings.health.clone(),
        settings.requests.clone(),
    ));
    let service = DrainAware::new(service, state.clone());
    let streams = ConnStreams::default();
    let timeouts = settings.timeouts;
    let mut builder = auto::Builder::new(streams.clone());
    // HTTP/1's header read timeout is this task's clock below, not hyper's: hyper's
    // boxes and registers a timer for every request head and reads the socket once more
    // after every response to start it, which cost about 5 % of the CPU per request in
    // `benches/serve.rs` (server and load generator together).
    builder.http1().header_read_timeout(None);
    let (ping_every, ping_timeout) = timeouts.http2_keep_alive_interval();
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(ping_every)
        .keep_alive_timeout(ping_timeout);
    let conn = builder
        .serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service));
    tokio::pin!(conn);
    let mut running = Running::default();
    let window = tokio::time::sleep(Duration::MAX);
    tokio::pin!(window);
    // The header read clock: from the accept (hyper-util reads the protocol preface with
    // no clock of its own; an HTTP/2 handshake may open no stream), then for HTTP/1 from
    // the end of each response. Re-armed lazily when it goes off, so that a request costs
    // no timer of its own.
    let head = deadline_after(timeouts.header_read_timeout());
    tokio::pin!(head);
    let idle = deadline_after(timeouts.http2_idle_timeout());
    tokio::pin!(idle);
    let mut phase = Phase::Serving;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                log_end(result);
                break;
            }
            () = running.serve(&streams) => {
                // The last HTTP/2 stream has just ended: the idle clock starts again.
                if let Some(timeout) = timeouts.http2_idle_timeout() {
                    idle.as_mut().reset(tokio::time::Instant::now() + timeout);
                }
            }
            () = head.as_mut(), if phase == Phase::Serving => {
                match head_check(&state, timeouts.header_read_timeout()) {
                    Head::Wait(until) => head.as_mut().reset(until),
                    Head::CloseNow => {
                        tracing::debug!("no request within the header read timeout: closing");
                        break;
                    }
                    Head::Close => {
                        // Keep-alive and no request head in time: hyper closes an idle
                        // HTTP/1 connection at once (a response still being sent first).
                        tracing::debug!("no request head within the header read timeout: closing");
                        conn.as_mut().graceful_shutdown();
                        phase = Phase::Closing;
                    }
                }
            }
            () = place.pressed(), if phase == Phase::Serving => {
                match reclaim_check(&state, running.is_empty(), timeouts.header_read_timeout()) {
                    Reclaim::Keep => {}
                    Reclaim::CloseNow => {
                        tracing::debug!("at the connection cap, no request begun: closing");
                        break;
                    }
                    Reclaim::Close => {
                        tracing::debug!("at the connection cap, idle: closing");
                        conn.as_mut().graceful_shutdown();
                        phase = Phase::Closing;
                    }
                }
            }
            () = idle.as_mut(), if phase == Phase::Serving && state.is_http2() => {
                if running.is_empty() {
                    tracing::debug!("HTTP/2 connection idle: GOAWAY");
                    conn.as_mut().graceful_shutdown();
                    phase = Phase::Closing;
                } else {
                    // Busy: the clock restarts when the last stream ends.
                    idle.as_mut().reset(far_future());
                }
            }
            () = ctx.cancelled(), if phase == Phase::Serving => {
                state.start_draining();
                if state.is_idle() && !state.is_http2() {
                    // An idle HTTP/1 keep-alive connection, or one whose first request
                    // has not arrived yet: its client may be sending the request right
                    // now. Give it the window; that request is answered with
                    // `Connection: close`.
                    window.as_mut().reset(tokio::time::Instant::now() + settings.idle_window);
                    phase = Phase::Window;
                } else {
                    // HTTP/1: close after the in-flight response. HTTP/2: GOAWAY; the
                    // streams already open finish.
                    conn.as_mut().graceful_shutdown();
                    phase = Phase::Closing;
                }
            }
            () = window.as_mut(), if phase == Phase::Window => {
                if !state.has_begun() {
                    // Nothing was ever in flight here: not even a complete request head
                    // (hyper would wait for one), or an HTTP/2 preface and no stream.
                    // Closing loses nothing, and waiting would hold the drain to its
                    // deadline.
                    tracing::debug!("no request begun by the end of the window: closing");
                    break;
                }
                conn.as_mut().graceful_shutdown();
                phase = Phase::Closing;
            }
        }
    }
    drop(place);
    // Streams still pending here belong to a connection that is gone: dropping them is
    // all that is left to do.
}

/// What the header read clock says when it goes off.
#[derive(Debug, PartialEq, Eq)]
enum Head {
    /// Not due (a request in flight, or one ended since): look again then.
    Wait(tokio::time::Instant),
    /// No request ever began: nothing is in flight, close the socket.
    CloseNow,
    /// No request head since the last response, for the whole timeout.
    Close,
}

/// The header read policy, apart from the I/O: `timeout` is `Some` (the clock is never
/// armed otherwise).
fn head_check(state: &ConnState, timeout: Option<Duration>) -> Head {
    let Some(timeout) = timeout else {
        return Head::Wait(far_future());
    };
    let now = tokio::time::Instant::now();
    if !state.has_begun() {
        return Head::CloseNow;
    }
    if state.is_http2() {
        // HTTP/2 has its idle timeout and pings instead.
        return Head::Wait(far_future());
    }
    if !state.is_idle() {
        // A request is being answered: its end restarts the clock.
        return Head::Wait(now + timeout);
    }
    let due = state.waiting_since() + timeout;
    if now >= due {
        Head::Close
    } else {
        Head::Wait(due)
    }
}

/// What a connection does when another waits for a place at the cap.
#[derive(Debug, PartialEq, Eq)]
enum Reclaim {
    /// It is serving a request, or began waiting for one less than `RECLAIM_AFTER` ago.
    Keep,
    /// It never began a request (nothing in flight, not even a complete head): close.
    CloseNow,
    /// Idle between requests (HTTP/1 keep-alive, or HTTP/2 with no stream open): close
    /// gracefully (hyper closes an idle HTTP/1 connection at once; HTTP/2 gets GOAWAY).
    Close,
}

/// The reclaim policy, apart from the I/O. `header_read_timeout`: `None` means
/// connections are never closed for want of a request, under pressure or not.
fn reclaim_check(
    state: &ConnState,
    no_stream_open: bool,
    header_read_timeout: Option<Duration>,
) -> Reclaim {
    let Some(timeout) = header_read_timeout else {
        return Reclaim::Keep;
    };
    let waited = tokio::time::Instant::now().saturating_duration_since(state.waiting_since());
    if waited < timeout.min(RECLAIM_AFTER) {
        return Reclaim::Keep;
    }
    if !state.has_begun() {
        Reclaim::CloseNow
    } else if state.is_http2() {
        if no_stream_open {
            Reclaim::Close
        } else {
            Reclaim::Keep
        }
    } else if state.is_idle() {
        Reclaim::Close
    } else {
        Reclaim::Keep
    }
}

/// A sleep that ends `after` from now, or never.
fn deadline_after(after: Option<Duration>) -> tokio::time::Sleep {
    tokio::time::sleep_until(after.map_or_else(far_future, |d| tokio::time::Instant::now() + d))
}

/// An instant no connection lives to see (`Instant + Duration::MAX` would overflow).
fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86400 * 365 * 30)
}

/// Where a connection is in its drain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Serving,
    /// Idle when the drain began: waiting out the idle window.
    Window,
    /// Asked to close (HTTP/1 after the response, HTTP/2 GOAWAY).
    Closing,
}

fn log_end(result: Result<(), Box<dyn std::error::Error + Send + Sync>>) {
    if let Err(error) = result {
        // A peer that goes away mid-request is the peer's business, not a server failure.
        tracing::debug!(%error, "connection ended with an error");
    }
}
