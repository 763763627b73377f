//! Name lookups belong to the client: each is a task of its scope, which `close()` awaits.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::server;
use taskward::Scope;
use taskward::testing::Harness;
use taskward_http::{Body, Client};
use tokio::sync::Notify;

// Asserts: a request to `localhost` runs its lookup as a task of the client's scope, so
// its close report counts one more task ended than the same request to `127.0.0.1`
// (connection and pool reaper in both); with hyper-util's own resolver, on the blocking
// pool, the two counts would be equal.
#[test]
fn a_lookup_is_a_task_of_the_client() {
    Harness::multi_thread(2).run(|app| async move {
        let server = server(&app, Arc::new(Notify::new()), Arc::new(Notify::new())).await;
        let port = server.local_addr().port();
        let literal = tasks_ended(&app, &format!("http://127.0.0.1:{port}/")).await;
        let named = tasks_ended(&app, &format!("http://localhost:{port}/")).await;
        assert_eq!(named, literal + 1, "the lookup is one task more");

        let _ = server.shutdown(Duration::from_secs(1)).await;
        let _ = app.shutdown(Duration::from_secs(1)).await;
    });
}

/// Makes one request with a new client, closes it, and counts the tasks that ended.
async fn tasks_ended(app: &Scope, url: &str) -> u64 {
    let client = Client::new(app, Duration::from_secs(10)).expect("open");
    let request = http::Request::get(url)
        .body(Body::empty())
        .expect("request");
    let response = client.request(request).await.expect("served");
    assert_eq!(response.status(), 200);
    let report = client.close(Duration::from_secs(10)).await;
    assert!(report.is_clean(), "{report}");
    report.counts.completed + report.counts.cancelled
}
