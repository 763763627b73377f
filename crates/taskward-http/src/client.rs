//! An HTTP client whose `close()` returns only when nothing of it is left running.
//!
//! Read [`Client`] first. It is hyper-util's pooled client with an executor that spawns
//! every connection task and the pool's idle reaper into a taskward scope, so the client
//! can be stopped and reported on like any other part of the application: the answer to
//! seed 004, where `close()` left timer tasks behind.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client as Pooled;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioTimer;
use taskward::{Scope, ShutdownReport, SpawnError};
use tokio::sync::Notify;

use crate::error::ClientError;
use crate::resolve::ScopeResolver;
use crate::server::Body;

/// A pooled HTTP/1.1 client (plain `http://`), all of whose tasks belong to a scope.
///
/// `Clone` handles share one pool. [`close`](Self::close) acts on the shared state, so it
/// works while clones are held elsewhere: after it, every handle's requests fail with
/// [`ClientError::Closed`]. Dropping the last handle without `close()` aborts the
/// client's tasks and logs one warning naming them.
///
/// Name lookups are tasks of the client's scope too (`lookup <host>`), each awaiting
/// `getaddrinfo` on tokio's blocking pool. `getaddrinfo` cannot be cancelled: `close()`
/// waits for a lookup in progress until its deadline, then aborts the task (it is named
/// in the report) and the blocking thread finishes the call on its own, dropping the
/// answer. IP literals are never looked up.
///
/// # Examples
///
/// ```no_run
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use taskward::Scope;
/// use taskward_http::{Body, Client};
///
/// let app = Scope::root("app");
/// let client = Client::new(&app, Duration::from_secs(2))?;
/// let response = client.request(http::Request::get("http://127.0.0.1:8080/").body(Body::empty())?).await?;
/// println!("{}", response.status());
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
struct Inner {
    scope: Scope,
    /// `None` once closed: dropping the pool closes its idle connections.
    pool: Mutex<Option<Pooled<HttpConnector<ScopeResolver>, Body>>>,
    closed: AtomicBool,
    in_flight: AtomicUsize,
    idle: Notify,
    /// Cancelled at the close deadline: requests still waiting fail with `Closed`.
    cut: tokio_util::sync::CancellationToken,
    timeout: Duration,
}

impl Client {
    /// How long an idle pooled connection is kept.
    pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

    /// A client whose tasks live in a child scope `client` of `scope`, with a timeout per
    /// request (up to the response headers).
    ///
    /// # Errors
    ///
    /// [`SpawnError`] if `scope` is shutting down.
    pub fn new(scope: &Scope, timeout: Duration) -> Result<Self, SpawnError> {
        let own = scope.child("client")?;
        let connector = HttpConnector::new_with_resolver(ScopeResolver(own.clone()));
        let pool = Pooled::builder(ScopeExecutor(own.clone()))
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Self::POOL_IDLE_TIMEOUT)
            .build(connector);
        Ok(Self {
            inner: Arc::new(Inner {
                scope: own,
                pool: Mutex::new(Some(pool)),
                closed: AtomicBool::new(false),
                in_flight: AtomicUsize::new(0),
                idle: Notify::new(),
                cut: tokio_util::sync::CancellationToken::new(),
                timeout,
            }),
        })
    }

    /// The client's scope: its connection tasks are its tasks.
    #[must_use]
    pub fn scope(&self) -> &Scope {
        &self.inner.scope
    }

    /// Sends `request` and waits for the response headers, at most the client's timeout
    /// (with `tokio::time::timeout`: no timer task per request).
    ///
    /// # Errors
    ///
    /// [`ClientError::Closed`] if the client is closed, or is closed before the response
    /// arrives; [`ClientError::Timeout`]; [`ClientError::Request`] for what hyper reports.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future abandons the request; its connection is not reused.
    pub async fn request(&self, request: Request<Body>) -> Result<Response<Incoming>, ClientError> {
        let inner = &self.inner;
        let pool = {
            let pool = inner.pool.lock().unwrap_or_else(PoisonError::into_inner);
            match (&*pool, inner.closed.load(Ordering::Acquire)) {
                (Some(pool), false) => pool.clone(),
                _ => return Err(ClientError::Closed),
            }
        };
        inner.in_flight.fetch_add(1, Ordering::AcqRel);
        let _done = InFlight(inner);
        tokio::select! {
            // Biased: at the close deadline the cut and the connection's end come
            // together; the request must fail as `Closed`, not as a dispatch error.
            biased;
            () = inner.cut.cancelled() => Err(ClientError::Closed),
            result = tokio::time::timeout(inner.timeout, pool.request(request)) => match result {
                Ok(Ok(response)) => Ok(response),
                // The connection went away because the client was closed under it.
                Ok(Err(_)) if inner.cut.is_cancelled() => Err(ClientError::Closed),
                Ok(Err(error)) => Err(ClientError::Request(error)),
                Err(_) => Err(ClientError::Timeout(inner.timeout)),
            },
        }
    }

    /// Closes the client, for every handle: new requests fail at once with
    /// [`ClientError::Closed`]; requests in flight may finish until `deadline` and then
    /// fail with it; the pool and its idle connections are closed; returns when the
    /// client's tasks are gone (aborted at the deadline if need be).
    ///
    /// # Return Value
    ///
    /// The report of the client's scope: `counts.stuck == 0` and an empty snapshot mean
    /// nothing of the client is left.
    ///
    /// # Cancel safety
    ///
    /// Dropped early, the client stays closed; call `close` again to finish.
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
        if tokio::time::timeout(deadline, in_flight_done)
            .await
            .is_err()
        {
            inner.cut.cancel();
        }
        // Dropping the pool drops the idle connections' senders: their tasks end.
        let pool = inner
            .pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(pool);
        inner
            .scope
            .shutdown(deadline.saturating_sub(started.elapsed()))
            .await
    }
}

/// Counts a request out of `in_flight` however it ends.
struct InFlight<'a>(&'a Inner);

impl Drop for InFlight<'_> {
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
struct ScopeExecutor(Scope);

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
