//! `close()` with a streaming response body left open by the caller. Alone in its binary:
//! it counts the process's open sockets.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{client_tasks, get_request, open_fds, server, server_connections_gone};
use http_body_util::BodyExt;
use taskward::testing::Harness;
use taskward_http::Client;
use tokio::sync::Notify;

// Asserts: a response body still streaming when `close()`'s deadline passes does not end
// as if it were complete (that would be a bogus, truncated response): reading it fails;
// nothing of the client is left and its socket is closed.
#[test]
fn close_fails_a_streaming_body_left_open() {
    Harness::multi_thread(2).run(|app| async move {
        let server = server(&app, Arc::new(Notify::new()), Arc::new(Notify::new())).await;
        let baseline = open_fds();
        let client = Client::new(&app, Duration::from_secs(10)).expect("open");
        let response = client
            .request(get_request(&server, "/stream"))
            .await
            .expect("headers");
        let mut body = response.into_body();
        let first = body
            .frame()
            .await
            .expect("a frame")
            .expect("readable")
            .into_data()
            .expect("data");
        assert_eq!(&first[..], b"first");

        let report = client.close(Duration::from_millis(100)).await;
        assert_eq!(report.counts.stuck, 0, "{report}");
        assert_eq!(client_tasks(), 0, "{report}");

        let next = body.frame().await;
        assert!(
            matches!(next, Some(Err(_))),
            "the cut body must fail, not end: {next:?}"
        );
        drop(body);
        server_connections_gone(&server).await;
        assert_eq!(open_fds(), baseline, "the client's socket is closed");
        let _ = server.shutdown(Duration::from_secs(1)).await;
        let _ = app.shutdown(Duration::from_secs(1)).await;
    });
}
