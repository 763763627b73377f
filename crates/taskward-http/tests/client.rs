//! The client's `close()`: nothing of it left, while a clone is held and a request is in
//! flight. Real sockets on 127.0.0.1; `client_drop.rs` shows what dropping leaves.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{client_tasks, get_request, open_fds, server, server_connections_gone};
use taskward::testing::Harness;
use taskward_http::{Client, ClientError};
use tokio::sync::Notify;

// Asserts, in one test because both count the process's open sockets: (1) `close()` on
// one handle while a clone is held closes the pooled connections cooperatively (a clean
// report, nothing aborted) and refuses new requests on every handle; (2) a request in
// flight at the deadline fails with `Closed` (no bogus response), nothing is left
// running, and the process's open sockets are back to their baseline.
#[test]
fn close_leaves_nothing_while_a_clone_is_held() {
    Harness::multi_thread(2).run(|app| async move {
        let (gate, entered) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let server = server(&app, gate.clone(), entered.clone()).await;
        let baseline = open_fds();

        // (1) Idle pooled connections only.
        let client = Client::new(&app, Duration::from_secs(10)).expect("open");
        let elsewhere = client.clone();
        for _ in 0..3 {
            let response = client
                .request(get_request(&server, "/"))
                .await
                .expect("served");
            assert_eq!(response.status(), 200);
        }
        assert!(client_tasks() > 0, "a pooled connection task exists");
        let report = client.close(Duration::from_secs(10)).await;
        assert!(
            report.is_clean(),
            "connections closed, none aborted: {report}"
        );
        assert_eq!(client_tasks(), 0, "{report}");
        assert!(matches!(
            elsewhere.request(get_request(&server, "/")).await,
            Err(ClientError::Closed)
        ));
        drop((client, elsewhere));
        server_connections_gone(&server).await;
        assert_eq!(open_fds(), baseline, "every client socket is closed");

        // (2) A request in flight when the deadline comes.
        let client = Client::new(&app, Duration::from_secs(10)).expect("open");
        let elsewhere = client.clone();
        let in_flight = elsewhere.request(get_request(&server, "/slow"));
        tokio::pin!(in_flight);
        tokio::select! {
            _ = &mut in_flight => panic!("the handler waits for the gate"),
            () = entered.notified() => {}
        }
        let (report, cut) = tokio::join!(client.close(Duration::from_millis(200)), in_flight);
        assert!(matches!(cut, Err(ClientError::Closed)), "{cut:?}");
        assert_eq!(report.counts.stuck, 0, "{report}");
        assert_eq!(client_tasks(), 0, "{report}");
        gate.notify_one();
        drop(client);
        server_connections_gone(&server).await;
        assert_eq!(open_fds(), baseline, "every client socket is closed");

        let _ = server.shutdown(Duration::from_secs(1)).await;
        let _ = app.shutdown(Duration::from_secs(1)).await;
    });
}
