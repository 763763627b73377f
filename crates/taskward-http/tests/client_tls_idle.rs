//! The pool's idle reaper with TLS connections: an idle HTTPS connection past the pool's
//! idle timeout is closed by the reaper, a task of the client's scope. Alone in its
//! binary: it counts the process's open sockets.

mod common;
#[path = "tls_support/mod.rs"]
mod tls_support;

use std::time::Duration;

use common::{client_tasks, open_fds};
use taskward::testing::Harness;
use taskward_http::Client;
use tls_support::{Pki, https_server};

/// Patience for what must happen: only catches a hang, never times a step.
const PATIENCE: Duration = Duration::from_secs(30);

// Asserts: after one HTTPS request, with a short pool idle timeout, the reaper closes
// the idle connection by itself: the connection task ends (then the reaper too, the
// pool being empty) and the process's sockets are back to what they were before the
// request (the server's side closes when the client's does). With no idle timeout the
// connection would stay, and this would wait out its patience.
#[test]
fn the_idle_reaper_closes_an_idle_tls_connection() {
    Harness::multi_thread(2).run(|app| async move {
        let pki = Pki::new("test CA");
        let addr = https_server(&app, &pki.server(&["127.0.0.1"]), None).await;
        let client = Client::builder()
            .add_root_certificate(pki.root())
            .pool_idle_timeout(Duration::from_millis(100))
            .build(&app)
            .expect("open");
        let baseline = open_fds();
        let response = client
            .get(format!("https://127.0.0.1:{}/", addr.port()))
            .send()
            .await
            .expect("served");
        assert_eq!(response.text().await.expect("text"), "hello");
        assert!(open_fds() > baseline, "a connection is open");

        tokio::time::timeout(PATIENCE, async {
            while client_tasks() > 0 || open_fds() != baseline {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the reaper closes the idle connection: {:?}",
                taskward::snapshot().tasks
            )
        });
        let report = client.close(Duration::from_secs(10)).await;
        assert!(report.is_clean(), "{report}");
        assert_eq!(client_tasks(), 0, "{report}");
        let _ = app.shutdown(Duration::from_secs(1)).await;
    });
}
