//! What dropping a client without `close()` leaves behind. Real sockets on 127.0.0.1.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{client_tasks, get_request, server, server_connections_gone};
use taskward::testing::Harness;
use taskward_http::Client;
use tokio::sync::Notify;

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
