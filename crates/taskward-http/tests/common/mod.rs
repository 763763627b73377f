//! What the HTTP tests share: a test router and server (a gated `/slow`, an endless
//! `/stream`), requests to it, and counts of what is still alive.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use futures_util::StreamExt;
use taskward::Scope;
use taskward_http::{Body, Server, ServerHandle};
use tokio::sync::Notify;

/// Live tasks of the client's scope, seen from outside (a `Scope` handle would keep it).
pub(crate) fn client_tasks() -> usize {
    taskward::snapshot()
        .tasks
        .iter()
        .filter(|t| t.scope == "test/client")
        .count()
}

/// The test router: `/` answers at once, `/slow` signals `entered` then waits for `gate`,
/// `/stream` sends one chunk and never ends.
pub(crate) fn router(gate: Arc<Notify>, entered: Arc<Notify>) -> Router {
    Router::new()
        .route("/", get(|| async { "hello" }))
        .route(
            "/slow",
            get(move || async move {
                entered.notify_one();
                gate.notified().await;
                "late"
            }),
        )
        .route(
            "/stream",
            // One chunk, then a body that never ends.
            get(|| async {
                let first = futures_util::stream::once(async {
                    Ok::<_, std::convert::Infallible>(bytes::Bytes::from_static(b"first"))
                });
                Body::from_stream(first.chain(futures_util::stream::pending()))
            }),
        )
}

/// A server on 127.0.0.1:0 in `app` serving [`router`].
pub(crate) async fn server(app: &Scope, gate: Arc<Notify>, entered: Arc<Notify>) -> ServerHandle {
    Server::bind("127.0.0.1:0")
        .await
        .expect("loopback port")
        .serve(app, router(gate, entered))
        .expect("open")
}

pub(crate) fn get_request(server: &ServerHandle, path: &str) -> http::Request<Body> {
    http::Request::get(format!("http://{}{path}", server.local_addr()))
        .body(Body::empty())
        .expect("request")
}

/// Open file descriptors of this process (sockets included).
pub(crate) fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd is readable")
        .count()
}

/// Waits until the server has no connection left (only its accept task).
pub(crate) async fn server_connections_gone(server: &ServerHandle) {
    while server.scope().live_tasks() > 1 {
        tokio::task::yield_now().await;
    }
}
