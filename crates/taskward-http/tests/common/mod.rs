//! What the client tests share: a gated test server, requests to it, and counts of what
//! is still alive.

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
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

pub(crate) async fn server(app: &Scope, gate: Arc<Notify>, entered: Arc<Notify>) -> ServerHandle {
    let router = Router::new().route("/", get(|| async { "hello" })).route(
        "/slow",
        get(move || async move {
            entered.notify_one();
            gate.notified().await;
            "late"
        }),
    );
    Server::bind("127.0.0.1:0")
        .await
        .expect("loopback port")
        .serve(app, router)
        .expect("open")
}

pub(crate) fn get_request(server: &ServerHandle, path: &str) -> http::Request<Body> {
    http::Request::get(format!("http://{}{path}", server.local_addr()))
        .body(Body::empty())
        .expect("request")
}

/// Waits until the server has no connection left (only its accept task).
pub(crate) async fn server_connections_gone(server: &ServerHandle) {
    while server.scope().live_tasks() > 1 {
        tokio::task::yield_now().await;
    }
}
