//! The one retry of an idempotent request that failed on a reused keep-alive connection
//! before any byte of its response (RFC 9110 §9.2.2), and none for a POST unless the
//! caller declares it idempotent. Real sockets on 127.0.0.1, against a server that closes
//! each connection after reading its second request, without answering it: the race a
//! keep-alive client loses when a server closes an idle connection as the next request
//! goes out (hyper-util retries only a request it had not yet written).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::client_tasks;
use taskward::Scope;
use taskward::testing::Harness;
use taskward_http::{Client, ClientError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const PATIENCE: Duration = Duration::from_secs(30);

/// What the server saw.
#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    answered: AtomicUsize,
    dropped: AtomicUsize,
}

/// Reads one request (head and `Content-Length` body); false if the connection ended.
async fn read_request(conn: &mut TcpStream) -> bool {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return true;
            }
        }
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A server on 127.0.0.1:0 in `app` that answers the first request of each connection
/// (keep-alive) and closes the connection once it has read the second.
async fn stale_after_one(app: &Scope) -> (u16, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("loopback port");
    let port = listener.local_addr().expect("bound").port();
    let seen = Arc::new(Seen::default());
    let counts = seen.clone();
    app.task("stale server")
        .spawn_with(move |ctx| async move {
            loop {
                let mut conn = tokio::select! {
                    () = ctx.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok((conn, _)) => conn,
                        Err(_) => continue,
                    },
                };
                counts.connections.fetch_add(1, Ordering::SeqCst);
                let counts = counts.clone();
                let _ = taskward::spawn("stale connection", async move {
                    if !read_request(&mut conn).await {
                        return;
                    }
                    let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";
                    if conn.write_all(answer).await.is_err() {
                        return;
                    }
                    counts.answered.fetch_add(1, Ordering::SeqCst);
                    if read_request(&mut conn).await {
                        counts.dropped.fetch_add(1, Ordering::SeqCst);
                    }
                    // Dropped: closed without a byte of an answer.
                });
            }
        })
        .expect("app is open");
    (port, seen)
}

/// Waits until the client has `n` tasks. The tests build it without a pool idle timeout,
/// so it has no idle reaper: 1 once the connection that answered last is back in the
/// pool (so the next request reuses it), 0 once no connection is left (so the next
/// request opens one).
async fn settled(n: usize) {
    tokio::time::timeout(PATIENCE, async {
        while client_tasks() != n {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{n} client tasks: {:?}", taskward::snapshot().tasks));
}

// Asserts: a GET that fails on the reused connection is sent again on a new one and
// succeeds (one connection more, the dropped request counted by the server); a POST in
// the same place fails with no new connection; a POST declared idempotent is retried as
// the GET was.
#[test]
fn a_get_is_retried_once_on_a_new_connection_a_post_is_not() {
    Harness::multi_thread(2).run(|app| async move {
        let (port, seen) = stale_after_one(&app).await;
        let url = format!("http://127.0.0.1:{port}/");
        let client = Client::builder()
            .pool_idle_timeout(None)
            .build(&app)
            .expect("open");

        let first = client.get(&url).send().await.expect("answered");
        assert_eq!(first.text().await.expect("body"), "hello");
        settled(1).await;
        let retried = client.get(&url).send().await.expect("retried");
        assert_eq!(retried.text().await.expect("body"), "hello");
        assert_eq!(
            seen.dropped.load(Ordering::SeqCst),
            1,
            "the reused one dropped it"
        );
        assert_eq!(
            seen.connections.load(Ordering::SeqCst),
            2,
            "one new connection"
        );
        assert_eq!(seen.answered.load(Ordering::SeqCst), 2);

        // The retry's connection is not pooled, and the stale one is gone.
        settled(0).await;
        let created = client
            .post(&url)
            .body("one")
            .send()
            .await
            .expect("answered");
        assert_eq!(created.text().await.expect("body"), "hello");
        settled(1).await;
        let failed = client.post(&url).body("two").send().await;
        assert!(matches!(failed, Err(ClientError::Request(_))), "{failed:?}");
        assert_eq!(seen.dropped.load(Ordering::SeqCst), 2);
        assert_eq!(seen.connections.load(Ordering::SeqCst), 3, "no retry");

        settled(0).await;
        let created = client
            .post(&url)
            .body("three")
            .send()
            .await
            .expect("answered");
        assert_eq!(created.text().await.expect("body"), "hello");
        settled(1).await;
        let retried = client
            .post(&url)
            .body("four")
            .idempotent(true)
            .send()
            .await
            .expect("retried: declared idempotent");
        assert_eq!(retried.text().await.expect("body"), "hello");
        assert_eq!(seen.dropped.load(Ordering::SeqCst), 3);
        assert_eq!(seen.connections.load(Ordering::SeqCst), 5);

        let report = client.close(Duration::from_secs(10)).await;
        assert!(report.is_clean(), "{report}");
        let _ = app.shutdown(Duration::from_secs(1)).await;
    });
}
