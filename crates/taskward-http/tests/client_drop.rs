//! What dropping a client without `close()` leaves behind. Real sockets on 127.0.0.1.

mod common;

use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use common::{client_tasks, get_request, server, server_connections_gone};
use taskward::testing::Harness;
use taskward_http::Client;
use tokio::sync::Notify;

/// Every warning logged in this process (this binary has one test), one per line.
fn warnings() -> Vec<String> {
    static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(|| Sink(&LOGS))
            .init();
    });
    let logs = LOGS.lock().expect("log lock");
    String::from_utf8_lossy(&logs)
        .lines()
        .filter(|line| line.contains("WARN"))
        .map(str::to_owned)
        .collect()
}

struct Sink(&'static Mutex<Vec<u8>>);

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log lock").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// Asserts: without `close()`, dropping a handle while a clone is held leaves the client's
// connection task running; dropping the last handle aborts it and warns exactly once,
// naming the scope and the task it aborted.
#[test]
#[ignore = "known bug, about 1 run in 10: when hyper-util opens a second connection in the \
            background, something keeps a handle of the client's scope alive and the last \
            drop never warns (one warning: []); run with --ignored; see issue 14's note"]
fn drop_alone_leaves_tasks_while_a_clone_is_held() {
    warnings(); // installs the capture before anything is logged
    let harness = Harness::multi_thread(2).allow_dropped_scopes(); // the drop is the subject
    harness.run(|app| async move {
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

        assert!(warnings().is_empty(), "no warning while a handle is held");
        drop(clone);
        let warned = warnings();
        assert_eq!(warned.len(), 1, "one warning: {warned:?}");
        assert!(
            warned[0].contains("test/client") && warned[0].contains("http connection"),
            "{}",
            warned[0]
        );
        while client_tasks() > 0 {
            tokio::task::yield_now().await;
        }
        server_connections_gone(&server).await;
        let _ = server.shutdown(Duration::from_secs(1)).await;
        let _ = app.shutdown(Duration::from_secs(1)).await;
    });
}
