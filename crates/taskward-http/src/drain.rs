//! A connection's view of the drain: how many of its requests are in flight, and the
//! `Connection: close` its HTTP/1 responses carry once the server drains.
//!
//! Read [`DrainAware`] first: the service wrapper every connection serves through.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};

use http::header::{CONNECTION, HeaderValue};
use http::{Request, Response, Version};
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use tower::Service;

use crate::health::Health;
use crate::requests::RequestCount;
use crate::server::Body;

/// What a connection's service tells its task, and the task tells its service.
#[derive(Debug)]
pub(crate) struct ConnState {
    in_flight: AtomicUsize,
    /// Requests begun on this connection: zero until a first request head is complete.
    begun: AtomicUsize,
    /// When the connection was accepted: the origin of `ready_at`.
    born: tokio::time::Instant,
    /// When the last HTTP/1 response was ready, in nanoseconds since `born`: where the
    /// wait for the next request head starts.
    ready_at: AtomicU64,
    draining: AtomicBool,
    http2: AtomicBool,
    health: Health,
    requests: RequestCount,
}

impl ConnState {
    pub(crate) fn new(health: Health, requests: RequestCount) -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            begun: AtomicUsize::new(0),
            born: tokio::time::Instant::now(),
            ready_at: AtomicU64::new(0),
            draining: AtomicBool::new(false),
            http2: AtomicBool::new(false),
            health,
            requests,
        }
    }

    /// The connection's task has seen the cancellation.
    pub(crate) fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// No request of this connection is being answered.
    pub(crate) fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
    }

    /// The connection has begun a request: it sent a complete request head (HTTP/1) or
    /// opened a stream (HTTP/2). Until then nothing is in flight on it, and closing it
    /// loses nothing.
    pub(crate) fn has_begun(&self) -> bool {
        self.begun.load(Ordering::Acquire) > 0
    }

    /// Since when the connection has been waiting for a request head: the end of its
    /// last HTTP/1 response (its head ready), or its accept.
    pub(crate) fn waiting_since(&self) -> tokio::time::Instant {
        // Relaxed: read by the connection's own task, which wrote it (the service runs
        // inside the connection's future); no other memory hangs on it.
        self.born + std::time::Duration::from_nanos(self.ready_at.load(Ordering::Relaxed))
    }

    /// The connection has spoken HTTP/2.
    pub(crate) fn is_http2(&self) -> bool {
        self.http2.load(Ordering::Acquire)
    }

    /// Whether a response should ask the client to close: the server-wide flag is set
    /// first thing in a shutdown, the connection's own once its task has seen it.
    fn closing(&self) -> bool {
        self.health.is_draining() || self.draining.load(Ordering::Acquire)
    }
}

/// Wraps the application's service to count in-flight requests and, once the server
/// drains, to ask HTTP/1 clients to close after the response.
#[derive(Clone)]
pub(crate) struct DrainAware<S> {
    inner: S,
    state: Arc<ConnState>,
}

impl<S> DrainAware<S> {
    pub(crate) fn new(inner: S, state: Arc<ConnState>) -> Self {
        Self { inner, state }
    }
}

impl<S> Service<Request<Incoming>> for DrainAware<S>
where
    S: Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Answer<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Incoming>) -> Self::Future {
        let http2 = request.version() == Version::HTTP_2;
        if http2 {
            self.state.http2.store(true, Ordering::Release);
        }
        self.state.in_flight.fetch_add(1, Ordering::AcqRel);
        // Release: pairs with the Acquire in `has_begun`, read by the connection's task.
        self.state.begun.fetch_add(1, Ordering::Release);
        self.state.requests.add_one();
        Answer {
            inner: self.inner.call(request),
            state: self.state.clone(),
            http2,
        }
    }
}

pin_project! {
    /// One request being answered. Written by hand (not a boxed `async` block) so that a
    /// request costs no allocation of its own, and counted out of `in_flight` however it
    /// ends, including when the client goes away and hyper drops it.
    pub(crate) struct Answer<F> {
        #[pin]
        inner: F,
        state: Arc<ConnState>,
        http2: bool,
    }

    impl<F> PinnedDrop for Answer<F> {
        fn drop(this: Pin<&mut Self>) {
            this.state.in_flight.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl<F> Future for Answer<F>
where
    F: Future<Output = Result<Response<Body>, Infallible>>,
{
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(mut response) = ready!(this.inner.poll(cx));
        // HTTP/2 has no `Connection` header: its GOAWAY says the same.
        if !*this.http2 {
            if this.state.closing() {
                response
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
            // One clock read per response instead of a timer per request head: the
            // connection's single header read clock is re-armed from it lazily.
            let since = this.state.born.elapsed().as_nanos();
            this.state
                .ready_at
                .store(u64::try_from(since).unwrap_or(u64::MAX), Ordering::Relaxed);
        }
        Poll::Ready(Ok(response))
    }
}
