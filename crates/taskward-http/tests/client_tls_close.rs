//! `close()` and drop with a TLS handshake in flight, to a server that accepts the TCP
//! connection and never answers the handshake. Alone in its binary: it counts the
//! process's open sockets.

mod common;

use std::time::Duration;

use common::{client_tasks, open_fds};
use taskward::TaskOutcome;
use taskward::testing::Harness;
use taskward_http::{Client, ClientError};
use tokio::net::{TcpListener, TcpStream};

/// Patience for what must happen: only catches a hang, never times a step.
const PATIENCE: Duration = Duration::from_secs(30);
const HANDSHAKE: &str = "tls handshake 127.0.0.1";

/// Whether the client's handshake task is running.
fn handshaking() -> bool {
    taskward::snapshot()
        .tasks
        .iter()
        .any(|t| t.scope == "test/client" && t.name == HANDSHAKE)
}

/// A server that accepts one connection and sits on it; the accepted socket is handed
/// back so the test decides when it closes.
async fn silent_server() -> (u16, tokio::task::JoinHandle<TcpStream>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("loopback port");
    let port = listener.local_addr().expect("bound").port();
    // A plain tokio task, not one of the test's scope: it must not show in any report.
    let accepted = tokio::spawn(async move {
        let (conn, _) = listener.accept().await.expect("the client connects");
        conn
    });
    (port, accepted)
}

// Asserts: (1) `close()` with a request waiting on a handshake that never completes
// returns (the deadline cuts it), fails the request as `Closed`, names the handshake task
// as aborted in its report, and leaves no task of the client and no socket; (2) dropping
// the client (every handle, and the request) mid-handshake aborts the handshake task and
// closes its socket too; (3) a handshake cut by the connect timeout, the client open,
// fails the request as `Connect` and its task ends by itself, its socket closed.
#[test]
fn close_cuts_a_handshake_that_never_completes() {
    // Part (2) drops the client mid-handshake on purpose: that drop is what it tests.
    Harness::multi_thread(2).allow_dropped_scopes().run(|app| async move {
        let baseline = open_fds();

        // (1) close().
        let (port, accepted) = silent_server().await;
        let client = Client::new(&app, Duration::from_secs(60)).expect("open");
        let request = client.get(format!("https://127.0.0.1:{port}/")).send();
        tokio::pin!(request);
        let started = async {
            while !handshaking() {
                tokio::task::yield_now().await;
            }
        };
        tokio::select! {
            done = &mut request => panic!("the server never answers: {done:?}"),
            started = tokio::time::timeout(PATIENCE, started) => started.expect("the handshake starts"),
        }
        let server_side = accepted.await.expect("accepted");
        let (report, cut) = tokio::time::timeout(PATIENCE, async {
            tokio::join!(client.close(Duration::from_millis(200)), request)
        })
        .await
        .expect("close() returns by its deadline");
        assert!(matches!(cut, Err(ClientError::Closed)), "{cut:?}");
        assert!(
            report
                .tasks_with(TaskOutcome::Aborted)
                .any(|task| task.name == HANDSHAKE),
            "the handshake is named: {report}"
        );
        assert_eq!(report.counts.stuck, 0, "{report}");
        assert_eq!(client_tasks(), 0, "{report}");
        drop((client, server_side));
        assert_eq!(open_fds(), baseline, "the client's socket is closed");

        // (2) drop.
        let (port, accepted) = silent_server().await;
        let client = Client::new(&app, Duration::from_secs(60)).expect("open");
        let elsewhere = client.clone();
        let request = Box::pin(elsewhere.get(format!("https://127.0.0.1:{port}/")).send());
        let mut request = request;
        let started = async {
            while !handshaking() {
                tokio::task::yield_now().await;
            }
        };
        tokio::select! {
            done = &mut request => panic!("the server never answers: {done:?}"),
            started = tokio::time::timeout(PATIENCE, started) => started.expect("the handshake starts"),
        }
        let server_side = accepted.await.expect("accepted");
        drop((request, elsewhere, client));
        tokio::time::timeout(PATIENCE, async {
            while client_tasks() > 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the dropped client's tasks are aborted");
        drop(server_side);
        assert_eq!(open_fds(), baseline, "the client's socket is closed");

        // (3) The connect timeout.
        let (port, accepted) = silent_server().await;
        let client = Client::builder()
            .connect_timeout(Duration::from_millis(100))
            .build(&app)
            .expect("open");
        let failed = tokio::time::timeout(
            PATIENCE,
            client.get(format!("https://127.0.0.1:{port}/")).send(),
        )
        .await
        .expect("the connect timeout ends it");
        assert!(
            matches!(&failed, Err(ClientError::Connect { host, .. }) if host == "127.0.0.1"),
            "{failed:?}"
        );
        tokio::time::timeout(PATIENCE, async {
            while client_tasks() > 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the abandoned handshake ends");
        drop(accepted.await.expect("accepted"));
        assert_eq!(open_fds(), baseline, "the client's socket is closed");
        let report = client.close(Duration::from_secs(10)).await;
        assert!(report.is_clean(), "{report}");

        let _ = app.shutdown(Duration::from_secs(1)).await;
    });
}
