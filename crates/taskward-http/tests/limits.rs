//! The cap on open connections: at it, the server stops accepting (connections wait in
//! the listen queue) and takes the next one as soon as one closes.

mod common;

use std::sync::Arc;
use std::time::Duration;

use taskward::testing::Harness;
use taskward_http::limits::ConnectionLimit;
use taskward_http::{Server, Timeouts};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

async fn hello(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .expect("sent");
    let mut response = Vec::new();
    while !response.ends_with(b"hello") {
        let mut buf = [0u8; 256];
        let n = stream.read(&mut buf).await.expect("readable");
        assert!(n > 0, "closed before the response");
        response.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(response).expect("text")
}

// Asserts: with a cap of 2, a third connection is not served while two are open (under
// paused time a minute passes without an answer), and is served as soon as one closes;
// the limit counts what is open.
#[test]
fn at_the_cap_accepting_waits_for_a_connection_to_close() {
    Harness::current_thread()
        .start_paused(true)
        .run(|app| async move {
            let limit = ConnectionLimit::new(2);
            let (gate, entered) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
            let server = Server::bind("127.0.0.1:0")
                .await
                .expect("loopback port")
                .timeouts(Timeouts::none())
                .connection_limit(limit.clone())
                .serve(&app, common::router(gate, entered))
                .expect("open");
            let addr = server.local_addr();
            let mut first = TcpStream::connect(addr).await.expect("connect");
            assert!(hello(&mut first).await.starts_with("HTTP/1.1 200"));
            assert_eq!(
                limit.open(),
                1,
                "the accept loop's waiting place is not a connection"
            );
            let mut second = TcpStream::connect(addr).await.expect("connect");
            assert!(hello(&mut second).await.starts_with("HTTP/1.1 200"));
            assert_eq!(limit.open(), 2);

            let mut third = TcpStream::connect(addr)
                .await
                .expect("queued by the kernel");
            let waiting = tokio::time::timeout(Duration::from_secs(60), hello(&mut third)).await;
            assert!(waiting.is_err(), "served past the cap: {waiting:?}");
            assert_eq!(server.scope().live_tasks(), 3, "accept and two connections");

            drop(first);
            let served = tokio::time::timeout(Duration::from_secs(3600), hello(&mut third))
                .await
                .expect("served once a connection closed");
            assert!(served.starts_with("HTTP/1.1 200"), "{served}");
            assert_eq!(limit.open(), 2);

            drop((second, third));
            let report = server.shutdown(Duration::from_secs(1)).await;
            assert!(report.is_clean(), "{report}");
            assert_eq!(limit.open(), 0, "every place is given back");
        });
}

/// Reads until the server closes `stream`; what it sent meanwhile is ignored.
async fn closed(stream: &mut TcpStream) {
    let mut buf = [0u8; 256];
    while stream.read(&mut buf).await.map(|n| n > 0).unwrap_or(false) {}
}

// Asserts: at the cap, with the default timeouts (header read 30 s), a new client is not
// held for the header read timeout by connections that are only waiting for a request
// head: an idle keep-alive connection and one that never sent a byte give their places
// up (they are closed) once they have waited a second while the new one waited, and the
// new one is served within seconds (paused time; red without the reclaim: the third
// request waits the whole 30 s). A connection serving a request keeps its place.
#[test]
fn at_the_cap_connections_waiting_for_a_head_make_room() {
    Harness::current_thread()
        .start_paused(true)
        .run(|app| async move {
            let limit = ConnectionLimit::new(2);
            let (gate, entered) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
            let server = Server::bind("127.0.0.1:0")
                .await
                .expect("loopback port")
                .connection_limit(limit.clone())
                .serve(&app, common::router(gate, entered))
                .expect("open");
            let addr = server.local_addr();
            let mut keep_alive = TcpStream::connect(addr).await.expect("connect");
            assert!(hello(&mut keep_alive).await.starts_with("HTTP/1.1 200"));
            let mut silent = TcpStream::connect(addr).await.expect("connect");
            while limit.open() < 2 {
                tokio::task::yield_now().await;
            }

            let started = tokio::time::Instant::now();
            let mut newcomer = TcpStream::connect(addr)
                .await
                .expect("queued by the kernel");
            let served = tokio::time::timeout(Duration::from_secs(10), hello(&mut newcomer))
                .await
                .expect("served within seconds, not after the header read timeout");
            assert!(served.starts_with("HTTP/1.1 200"), "{served}");
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{:?} (paused time)",
                started.elapsed()
            );
            tokio::time::timeout(Duration::from_secs(10), closed(&mut keep_alive))
                .await
                .expect("the idle keep-alive connection was closed");
            tokio::time::timeout(Duration::from_secs(10), closed(&mut silent))
                .await
                .expect("the silent connection was closed");

            drop(newcomer);
            let report = server.shutdown(Duration::from_secs(1)).await;
            assert!(report.is_clean(), "{report}");
        });
}
