//! An HTTP client whose `close()` returns only when nothing of it is left running.
//!
//! Read [`Client`] first. It is hyper-util's pooled client with an executor that spawns
//! every connection task and the pool's idle reaper into a taskward scope, and a
//! connector (`connector.rs`) whose lookups and TLS handshakes are tasks of that scope
//! too, so the client can be stopped and reported on like any other part of the
//! application: the answer to seed 004, where `close()` left timer tasks behind. Its
//! settings are in `client_builder.rs`, the reqwest-like request and response in
//! `request_builder.rs` and `response.rs`, the retry rule in `retry.rs`.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::header::{HeaderValue, USER_AGENT};
use http::{Method, Request, Response as HttpResponse, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client as Pooled;
use hyper_util::client::legacy::Error as HyperError;
use taskward::{Scope, ShutdownReport, SpawnError};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::client_builder::ClientBuilder;
use crate::connector::{Connector, HandshakeFailed, TlsFailure};
use crate::error::{ClientBuildError, ClientError};
use crate::request_builder::{Outgoing, RequestBuilder};
use crate::response::Response;
use crate::retry::{ConnectionUse, may_retry};
use crate::server::Body;

/// A pooled HTTP client (HTTP/1.1, and HTTP/2 where TLS negotiates it; `http://` and
/// `https://` with rustls), all of whose tasks belong to a scope.
///
/// Build one with [`Client::builder`] (or [`Client::new`] for the defaults and a
/// timeout), then send requests the way reqwest does: `client.get(url).send().await?`,
/// then `.json::<T>().await?` on the response. [`request`](Self::request) takes an
/// `http::Request` as it is.
///
/// `Clone` handles share one pool. [`close`](Self::close) acts on the shared state, so it
/// works while clones are held elsewhere: after it, every handle's requests fail with
/// [`ClientError::Closed`]. Dropping the last handle without `close()` aborts the
/// client's tasks and logs one warning naming them.
///
/// Name lookups and TLS handshakes are tasks of the client's scope too (`lookup <host>`,
/// `tls handshake <host>`). `getaddrinfo` cannot be cancelled: `close()` waits for a
/// lookup in progress until its deadline, then aborts the task (it is named in the
/// report) and the blocking thread finishes the call on its own, dropping the answer. IP
/// literals are never looked up. A handshake still running at the deadline is aborted and
/// named the same way, and its socket closed.
///
/// # Examples
///
/// ```no_run
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use taskward::Scope;
/// use taskward_http::Client;
///
/// let app = Scope::root("app");
/// let client = Client::builder().timeout(Duration::from_secs(2)).build(&app)?;
/// let response = client.get("https://example.com/").send().await?;
/// println!("{}: {}", response.status(), response.text().await?);
/// let report = client.close(Duration::from_secs(5)).await;
/// assert_eq!(report.counts.stuck, 0);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    scope: Scope,
    /// `None` once closed: dropping the pools closes their idle connections.
    pools: Mutex<Option<Pools>>,
    closed: AtomicBool,
    in_flight: AtomicUsize,
    idle: Notify,
    /// Cancelled at the close deadline: requests still waiting fail with `Closed`.
    pub(crate) cut: CancellationToken,
    timeout: Duration,
    user_agent: HeaderValue,
    body_limit: usize,
}

/// The pool, and its twin that keeps no idle connection: a retry goes through the twin,
/// so it gets a new connection, never another idle one that may be just as stale.
#[derive(Debug, Clone)]
pub(crate) struct Pools {
    pub(crate) pooled: Pooled<Connector, Body>,
    pub(crate) fresh: Pooled<Connector, Body>,
}

/// What [`ClientBuilder::build`] hands over.
pub(crate) struct Parts {
    pub(crate) scope: Scope,
    pub(crate) pools: Pools,
    pub(crate) timeout: Duration,
    pub(crate) user_agent: HeaderValue,
    pub(crate) body_limit: usize,
}

impl Client {
    /// How long an idle pooled connection is kept, unless the builder says otherwise.
    pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

    /// A builder, to set timeouts, the pool, TLS and the user agent.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), taskward_http::ClientBuildError> {
    /// use std::time::Duration;
    /// use taskward_http::Client;
    ///
    /// let app = taskward::Scope::root("app");
    /// let client = Client::builder()
    ///     .timeout(Duration::from_secs(5))
    ///     .pool_max_idle_per_host(8)
    ///     .user_agent("inventory/1.4")
    ///     .build(&app)?;
    /// assert!(client.close(Duration::from_secs(1)).await.is_clean());
    /// # Ok(())
    /// # }
    /// ```
    pub fn builder() -> ClientBuilder {
        ClientBuilder::new()
    }

    /// A client with the builder's defaults and `timeout` per request, whose tasks live
    /// in a child scope `client` of `scope`.
    ///
    /// # Errors
    ///
    /// [`SpawnError`] if `scope` is shutting down.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), taskward::SpawnError> {
    /// use std::time::Duration;
    ///
    /// let app = taskward::Scope::root("app");
    /// let client = taskward_http::Client::new(&app, Duration::from_secs(2))?;
    /// assert_eq!(client.scope().path(), "app/client");
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(scope: &Scope, timeout: Duration) -> Result<Self, SpawnError> {
        ClientBuilder::new()
            .timeout(timeout)
            .build(scope)
            .map_err(|error| match error {
                ClientBuildError::Spawn(refused) => refused,
                other => unreachable!("the default TLS settings are valid: {other}"),
            })
    }

    pub(crate) fn from_parts(parts: Parts) -> Self {
        Self {
            inner: Arc::new(Inner {
                scope: parts.scope,
                pools: Mutex::new(Some(parts.pools)),
                closed: AtomicBool::new(false),
                in_flight: AtomicUsize::new(0),
                idle: Notify::new(),
                cut: CancellationToken::new(),
                timeout: parts.timeout,
                user_agent: parts.user_agent,
                body_limit: parts.body_limit,
            }),
        }
    }

    /// The client's scope: its connection, lookup and handshake tasks are its tasks.
    #[must_use]
    pub fn scope(&self) -> &Scope {
        &self.inner.scope
    }

    /// A `GET` request to `url`, to finish and [`send`](RequestBuilder::send).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: taskward_http::Client) -> Result<(), taskward_http::ClientError> {
    /// let body = client.get("https://example.com/health").send().await?.text().await?;
    /// # Ok(()) }
    /// ```
    pub fn get<U>(&self, url: U) -> RequestBuilder
    where
        U: TryInto<Uri>,
        U::Error: Into<http::Error>,
    {
        self.method(Method::GET, url)
    }

    /// A `POST` request to `url`. Never retried unless declared
    /// [`idempotent`](RequestBuilder::idempotent).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: taskward_http::Client) -> Result<(), taskward_http::ClientError> {
    /// let created = client
    ///     .post("https://example.com/items")
    ///     .json(&serde_json::json!({"name": "lamp"}))
    ///     .send()
    ///     .await?;
    /// assert!(created.status().is_success());
    /// # Ok(()) }
    /// ```
    pub fn post<U>(&self, url: U) -> RequestBuilder
    where
        U: TryInto<Uri>,
        U::Error: Into<http::Error>,
    {
        self.method(Method::POST, url)
    }

    /// A `PUT` request to `url`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: taskward_http::Client) -> Result<(), taskward_http::ClientError> {
    /// client.put("https://example.com/items/7").body("lamp").send().await?;
    /// # Ok(()) }
    /// ```
    pub fn put<U>(&self, url: U) -> RequestBuilder
    where
        U: TryInto<Uri>,
        U::Error: Into<http::Error>,
    {
        self.method(Method::PUT, url)
    }

    /// A `DELETE` request to `url`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: taskward_http::Client) -> Result<(), taskward_http::ClientError> {
    /// client.delete("https://example.com/items/7").send().await?;
    /// # Ok(()) }
    /// ```
    pub fn delete<U>(&self, url: U) -> RequestBuilder
    where
        U: TryInto<Uri>,
        U::Error: Into<http::Error>,
    {
        self.method(Method::DELETE, url)
    }

    /// A `HEAD` request to `url`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: taskward_http::Client) -> Result<(), taskward_http::ClientError> {
    /// let found = client.head("https://example.com/items/7").send().await?.status();
    /// # Ok(()) }
    /// ```
    pub fn head<U>(&self, url: U) -> RequestBuilder
    where
        U: TryInto<Uri>,
        U::Error: Into<http::Error>,
    {
        self.method(Method::HEAD, url)
    }

    /// A request with any method to `url`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: taskward_http::Client) -> Result<(), taskward_http::ClientError> {
    /// client.method(http::Method::PATCH, "https://example.com/items/7").body("{}").send().await?;
    /// # Ok(()) }
    /// ```
    pub fn method<U>(&self, method: Method, url: U) -> RequestBuilder
    where
        U: TryInto<Uri>,
        U::Error: Into<http::Error>,
    {
        RequestBuilder::new(self.clone(), method, url.try_into().map_err(Into::into))
    }

    /// Sends `request` and waits for the response headers, at most the client's timeout
    /// (with `tokio::time::timeout`: no timer task per request). Adds the client's user
    /// agent unless the request has one. Not retried by the client (hyper-util still
    /// retries a request that was never written because its pooled connection turned
    /// out closed): the body may be a stream, read only once.
    ///
    /// # Errors
    ///
    /// [`ClientError::Closed`] if the client is closed, or is closed before the response
    /// arrives; [`ClientError::Timeout`]; [`ClientError::Connect`] and
    /// [`ClientError::Tls`], naming the host; [`ClientError::Request`] for what else
    /// hyper reports.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future abandons the request; its connection is not reused.
    pub async fn request(
        &self,
        request: Request<Body>,
    ) -> Result<HttpResponse<Incoming>, ClientError> {
        let (pools, _in_flight) = self.enter()?;
        let host = host_of(request.uri());
        let timeout = self.inner.timeout;
        self.attempt(&pools.pooled, request, Instant::now() + timeout)
            .await
            .map_err(|failed| failed.into_error(&host, timeout))
    }

    /// Sends what a [`RequestBuilder`] built, retrying once on a new connection what may
    /// be retried (see `retry.rs`).
    pub(crate) async fn send(&self, outgoing: Outgoing) -> Result<Response, ClientError> {
        let (pools, _in_flight) = self.enter()?;
        let host = host_of(&outgoing.uri);
        let timeout = outgoing.timeout.unwrap_or(self.inner.timeout);
        let deadline = Instant::now() + timeout;
        let sent = match self
            .attempt(&pools.pooled, outgoing.to_request(), deadline)
            .await
        {
            Err(Failed::Hyper(error))
                if may_retry(
                    &outgoing.method,
                    outgoing.idempotent,
                    ConnectionUse::of(&error),
                ) =>
            {
                tracing::debug!(
                    method = %outgoing.method,
                    %host,
                    %error,
                    "retrying on a new connection: the reused one failed before any response byte"
                );
                self.attempt(&pools.fresh, outgoing.to_request(), deadline)
                    .await
            }
            sent => sent,
        };
        let response = sent.map_err(|failed| failed.into_error(&host, timeout))?;
        Ok(Response::new(
            response,
            Arc::downgrade(&self.inner),
            self.inner.body_limit,
            deadline,
            timeout,
        ))
    }

    /// Counts a request in, with the pools to send it through, unless the client is closed.
    fn enter(&self) -> Result<(Pools, InFlight), ClientError> {
        let inner = &self.inner;
        let pools = {
            let pools = inner.pools.lock().unwrap_or_else(PoisonError::into_inner);
            match (&*pools, inner.closed.load(Ordering::Acquire)) {
                (Some(pools), false) => pools.clone(),
                _ => return Err(ClientError::Closed),
            }
        };
        Ok((pools, InFlight::enter(Arc::clone(inner))))
    }

    /// One attempt through `pool`, until `deadline` or the close deadline's cut.
    async fn attempt(
        &self,
        pool: &Pooled<Connector, Body>,
        mut request: Request<Body>,
        deadline: Instant,
    ) -> Result<HttpResponse<Incoming>, Failed> {
        let inner = &self.inner;
        request
            .headers_mut()
            .entry(USER_AGENT)
            .or_insert_with(|| inner.user_agent.clone());
        tokio::select! {
            // Biased: at the close deadline the cut and the connection's end come
            // together; the request must fail as `Closed`, not as a dispatch error.
            biased;
            () = inner.cut.cancelled() => Err(Failed::Closed),
            result = tokio::time::timeout_at(deadline, pool.request(request)) => match result {
                Ok(Ok(response)) => Ok(response),
                // The connection went away because the client was closed under it.
                // (The scope is cancelled just before the cut, see `close`.)
                Ok(Err(_)) if inner.cut.is_cancelled() || inner.scope.is_cancelled() => {
                    Err(Failed::Closed)
                }
                Ok(Err(error)) => Err(Failed::Hyper(error)),
                Err(_) => Err(Failed::Timeout),
            },
        }
    }

    /// Closes the client, for every handle: new requests fail at once with
    /// [`ClientError::Closed`]; requests in flight (and response bodies being read by
    /// [`Response`]'s methods) may finish until `deadline` and then fail with it; the
    /// pool and its idle connections are closed; returns when the client's tasks are gone
    /// (aborted at the deadline if need be: lookups and handshakes still running then are
    /// named in the report).
    ///
    /// # Return Value
    ///
    /// The report of the client's scope: `counts.stuck == 0` and an empty snapshot mean
    /// nothing of the client is left.
    ///
    /// # Cancel safety
    ///
    /// Dropped early, the client stays closed; call `close` again to finish.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), taskward::SpawnError> {
    /// use std::time::Duration;
    /// use taskward_http::{Client, ClientError};
    ///
    /// let app = taskward::Scope::root("app");
    /// let client = Client::new(&app, Duration::from_secs(2))?;
    /// let elsewhere = client.clone();
    /// let report = client.close(Duration::from_secs(5)).await;
    /// assert!(report.is_clean(), "{report}");
    /// let refused = elsewhere.get("http://127.0.0.1:1/").send().await;
    /// assert!(matches!(refused, Err(ClientError::Closed)));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn close(&self, deadline: Duration) -> ShutdownReport {
        let inner = &self.inner;
        inner.closed.store(true, Ordering::Release);
        let started = tokio::time::Instant::now();
        let in_flight_done = async {
            loop {
                let notified = inner.idle.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if inner.in_flight.load(Ordering::Acquire) == 0 {
                    return;
                }
                notified.await;
            }
        };
        let finished = tokio::time::timeout(deadline, in_flight_done).await.is_ok();
        // The shutdown starts (and cancels the scope) before the cut: a handshake whose
        // request is cut must see the scope cancelled, so that it waits to be aborted and
        // named rather than ending quietly as an abandoned one (see `connector.rs`).
        let shutdown = inner
            .scope
            .shutdown(deadline.saturating_sub(started.elapsed()));
        if !finished {
            inner.cut.cancel();
        }
        // Dropping the pools drops the idle connections' senders: their tasks end.
        let pools = inner
            .pools
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(pools);
        shutdown.await
    }
}

/// Why an attempt failed, before the host and timeout are known to name it.
enum Failed {
    Closed,
    Timeout,
    Hyper(HyperError),
}

impl Failed {
    fn into_error(self, host: &str, timeout: Duration) -> ClientError {
        match self {
            Self::Closed => ClientError::Closed,
            Self::Timeout => ClientError::Timeout(timeout),
            Self::Hyper(source) => {
                let host = host.to_owned();
                if tls_caused(&source) {
                    ClientError::Tls {
                        host,
                        source: source.into(),
                    }
                } else if let Some(tls) = session_failure(&source) {
                    ClientError::Tls {
                        host,
                        source: Box::new(TlsSessionFailed(tls)),
                    }
                } else if source.is_connect() {
                    ClientError::Connect { host, source }
                } else {
                    ClientError::Request(source)
                }
            }
        }
    }
}

/// Whether `error`'s chain holds a failed handshake or a rustls error (which an I/O error
/// carries without showing it as its `source`).
fn tls_caused(error: &HyperError) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(link) = next {
        let carries_rustls = link
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            .is_some_and(|inner| inner.is::<rustls::Error>());
        if carries_rustls || link.is::<HandshakeFailed>() || link.is::<rustls::Error>() {
            return true;
        }
        next = link.source();
    }
    false
}

/// The TLS error that ended the connection `error` happened on, if one did.
fn session_failure(error: &HyperError) -> Option<rustls::Error> {
    let mut extensions = http::Extensions::new();
    error.connect_info()?.get_extras(&mut extensions);
    extensions.get::<Arc<TlsFailure>>()?.get().cloned()
}

/// The TLS session ended with an error after its handshake; the rustls error says why.
#[derive(Debug)]
struct TlsSessionFailed(rustls::Error);

impl std::fmt::Display for TlsSessionFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the TLS session failed after the handshake")
    }
}

impl std::error::Error for TlsSessionFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

fn host_of(uri: &Uri) -> String {
    uri.host().unwrap_or_default().to_owned()
}

/// A request (or a body read) counted in `in_flight`, counted out however it ends.
pub(crate) struct InFlight(Arc<Inner>);

impl InFlight {
    pub(crate) fn enter(inner: Arc<Inner>) -> Self {
        inner.in_flight.fetch_add(1, Ordering::AcqRel);
        Self(inner)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// hyper's executor for the pool: every connection task and the idle reaper become tasks
/// of the client's scope. Once the client is closed, hyper's new tasks are refused, and
/// their futures dropped: the connection they would drive is not used.
#[derive(Debug, Clone)]
pub(crate) struct ScopeExecutor(pub(crate) Scope);

impl<F> hyper::rt::Executor<F> for ScopeExecutor
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, future: F) {
        // A connection stops at the scope's cancellation: by then `close()` has let the
        // requests in flight finish (or cut them at its deadline), and when the app as a
        // whole shuts down nothing may wait on an idle pooled connection. Dropping the
        // future closes its socket; the task ends cancelled, not aborted.
        let spawned = self
            .0
            .task("http connection")
            .spawn_with(move |ctx| async move {
                tokio::select! {
                    () = future => {}
                    () = ctx.cancelled() => {}
                }
            });
        if let Err(error) = spawned {
            tracing::debug!(%error, "client task refused: client closed");
        }
    }
}
