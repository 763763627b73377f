//! What dropping a client without `close()` leaves behind. Real sockets on 127.0.0.1.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use taskward::Scope;
use taskward::testing::Harness;
use taskward_http::{Body, Client, Server, ServerHandle};
use tokio::sync::Notify;

/// Live tasks of the client's scope, seen from outside (a `Scope` handle would keep it).
fn client_tasks() -> usize {
    taskward::snapshot()
        .tasks
        .iter()
        .filter(|t| t.scope == "test/client")
        .count()
}

async fn server(app: &Scope, gate: Arc<Notify>, entered: Arc<Notify>) -> ServerHandle {
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

fn get_request(server: &ServerHandle, path: &str) -> http::Request<Body> {
    http::Request::get(format!("http://{}{path}", server.local_addr()))
        .body(Body::empty())
        .expect("request")
}

/// Waits until the server has no connection left (only its accept task).
async fn server_connections_gone(server: &ServerHandle) {
    while server.scope().live_tasks() > 1 {
        tokio::task::yield_now().await;
    }
}

// Asserts: without `close()`, dropping a handle while a clone is held leaves the client's
// connection task running; dropping the last handle aborts it (and warns).
#[test]
fn drop_alone_leaves_tasks_while_a_clone_is_held() {
    Harness::multi_thread(2).run(|app| async move {
        let server = server(&app, Arc::new(Notify::new()), Arc::new(Notify::new())).await;
        let client = Client::new(&app, Duration::from_secs(10)).expect("open");
        let clone = client.clone();
        client
            .request(get_request(&server, "/"))
            .await
            .expect("served");

        drop(client);
        tokio::task::yield_now().await;
        assert!(
            client_tasks() > 0,
            "the pooled connection outlives the dropped handle"
        );

        drop(clone);
        while client_tasks() > 0 {
            tokio::task::yield_now().await;
        }
        server_connections_gone(&server).await;
        let _ = server.shutdown(Duration::from_secs(1)).await;
        let _ = app.shutdown(Duration::from_secs(1)).await;
    });
}
