//! Connection timeouts, under paused time over real sockets on 127.0.0.1: a connection
//! that sends nothing, half a request head, nothing after a response, or an HTTP/2
//! preface and no stream, is closed when its timeout runs out, and not before.

mod common;

use std::sync::Arc;
use std::time::Duration;

use taskward::Scope;
use taskward::testing::Harness;
use taskward_http::{Server, ServerHandle, Timeouts};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;

const HEADER_READ: Duration = Duration::from_secs(5);
const HTTP2_IDLE: Duration = Duration::from_secs(7);
/// Far longer than any timeout here: only a connection nobody closes reaches it (paused
/// time gets there at once).
const PATIENCE: Duration = Duration::from_secs(3600);

fn paused() -> Harness {
    Harness::current_thread().start_paused(true)
}

async fn start(app: &Scope, timeouts: Timeouts) -> ServerHandle {
    start_gated(
        app,
        timeouts,
        Arc::new(Notify::new()),
        Arc::new(Notify::new()),
    )
    .await
}

async fn start_gated(
    app: &Scope,
    timeouts: Timeouts,
    gate: Arc<Notify>,
    entered: Arc<Notify>,
) -> ServerHandle {
    Server::bind("127.0.0.1:0")
        .await
        .expect("loopback port")
        .timeouts(timeouts)
        .serve(app, common::router(gate, entered))
        .expect("open")
}

fn short() -> Timeouts {
    Timeouts::default()
        .header_read(Some(HEADER_READ))
        .http2_idle(Some(HTTP2_IDLE))
}

/// How long after `since` the server closed `stream` (reading and discarding whatever it
/// sends first); panics if it is still open after [`PATIENCE`].
async fn closed_after(stream: &mut TcpStream, since: Instant) -> Duration {
    let mut buf = [0u8; 1024];
    let read_until_closed = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return since.elapsed(),
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(PATIENCE, read_until_closed)
        .await
        .expect("the server never closed the connection")
}

/// Asserts the connection lived `timeout` and was closed right then (paused time: the
/// clock moves only to the next timer, so "right then" is exact up to the timer wheel's
/// millisecond).
fn assert_closed_at(lived: Duration, timeout: Duration) {
    assert!(
        lived >= timeout && lived < timeout + Duration::from_millis(100),
        "closed after {lived:?}, the timeout is {timeout:?}"
    );
}

// Asserts: a connection that sends nothing is closed after the header read timeout (hyper
// itself has no clock while it reads the protocol preface).
#[test]
fn a_silent_connection_is_closed_after_the_header_read_timeout() {
    paused().run(|app| async move {
        let server = start(&app, short()).await;
        let since = Instant::now();
        let mut silent = TcpStream::connect(server.local_addr())
            .await
            .expect("connect");
        assert_closed_at(closed_after(&mut silent, since).await, HEADER_READ);
        let report = server.shutdown(Duration::from_secs(1)).await;
        assert!(report.is_clean(), "{report}");
    });
}

// Asserts: half a request head (slowloris), trickled a byte at a time, is closed after the
// header read timeout counted from the accept, not from the last byte.
#[test]
fn a_half_sent_head_is_closed_after_the_header_read_timeout() {
    paused().run(|app| async move {
        let server = start(&app, short()).await;
        let since = Instant::now();
        let mut slow = TcpStream::connect(server.local_addr())
            .await
            .expect("connect");
        slow.write_all(b"GET / HTTP/1.1\r\n").await.expect("sent");
        for byte in b"Host: t" {
            tokio::time::sleep(Duration::from_millis(500)).await;
            slow.write_all(&[*byte]).await.expect("sent");
        }
        assert_closed_at(closed_after(&mut slow, since).await, HEADER_READ);
        let report = server.shutdown(Duration::from_secs(1)).await;
        assert!(report.is_clean(), "{report}");
    });
}

// Asserts: a keep-alive connection that sends nothing after its response is closed after
// the header read timeout counted from the response: HTTP/1's idle keep-alive timeout.
#[test]
fn an_idle_keep_alive_connection_is_closed_after_the_header_read_timeout() {
    paused().run(|app| async move {
        let server = start(&app, short()).await;
        let mut idle = TcpStream::connect(server.local_addr())
            .await
            .expect("connect");
        tokio::time::sleep(Duration::from_secs(2)).await;
        idle.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .expect("sent");
        read_until(&mut idle, b"hello").await;
        let answered = Instant::now();
        assert_closed_at(closed_after(&mut idle, answered).await, HEADER_READ);
        let report = server.shutdown(Duration::from_secs(1)).await;
        assert!(report.is_clean(), "{report}");
    });
}

/// Reads one response to `GET /` or `/slow` (its body ends the response) from `stream`.
async fn read_until(stream: &mut TcpStream, end: &[u8]) {
    let mut response = Vec::new();
    while !response.ends_with(end) {
        let mut buf = [0u8; 256];
        let n = stream.read(&mut buf).await.expect("response");
        assert!(n > 0, "closed before the response");
        response.extend_from_slice(&buf[..n]);
    }
}

// Asserts: half of the next request head on a keep-alive connection (slowloris after a
// first request) is closed after the header read timeout counted from the response.
#[test]
fn a_half_sent_next_head_is_closed_after_the_header_read_timeout() {
    paused().run(|app| async move {
        let server = start(&app, short()).await;
        let mut slow = TcpStream::connect(server.local_addr())
            .await
            .expect("connect");
        slow.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .expect("sent");
        read_until(&mut slow, b"hello").await;
        let answered = Instant::now();
        for byte in b"GET / HTTP/1.1\r\nHo" {
            tokio::time::sleep(Duration::from_millis(200)).await;
            slow.write_all(&[*byte]).await.expect("sent");
        }
        assert_closed_at(closed_after(&mut slow, answered).await, HEADER_READ);
        let report = server.shutdown(Duration::from_secs(1)).await;
        assert!(report.is_clean(), "{report}");
    });
}

// Asserts: a request answered for longer than the header read timeout is not cut by it,
// and the keep-alive wait after it starts at its response.
#[test]
fn a_slow_response_is_not_cut_by_the_header_read_timeout() {
    paused().run(|app| async move {
        let (gate, entered) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let server = start_gated(&app, short(), gate.clone(), entered.clone()).await;
        let mut client = TcpStream::connect(server.local_addr())
            .await
            .expect("connect");
        client
            .write_all(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .expect("sent");
        entered.notified().await;
        tokio::time::sleep(HEADER_READ * 3).await;
        gate.notify_one();
        read_until(&mut client, b"late").await;
        let answered = Instant::now();
        // The clock was re-armed while the request was in flight: the connection may
        // live up to twice the timeout past the response, never less than once.
        let lived = closed_after(&mut client, answered).await;
        assert!(
            lived >= HEADER_READ && lived <= HEADER_READ * 2,
            "closed {lived:?} after the response"
        );
        let report = server.shutdown(Duration::from_secs(1)).await;
        assert!(report.is_clean(), "{report}");
    });
}

// Asserts: an HTTP/2 connection that sent its preface and settings but never opens a
// stream is closed after the header read timeout.
#[test]
fn an_h2_preface_without_a_stream_is_closed_after_the_header_read_timeout() {
    paused().run(|app| async move {
        let server = start(&app, short()).await;
        let since = Instant::now();
        let mut preface = TcpStream::connect(server.local_addr())
            .await
            .expect("connect");
        preface
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .expect("sent");
        // An empty SETTINGS frame: length 0, type 4, no flags, stream 0.
        preface
            .write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0])
            .await
            .expect("sent");
        assert_closed_at(closed_after(&mut preface, since).await, HEADER_READ);
        let report = server.shutdown(Duration::from_secs(1)).await;
        assert!(report.is_clean(), "{report}");
    });
}

// Asserts: an HTTP/2 connection whose streams have all ended is sent GOAWAY and closed
// after the HTTP/2 idle timeout, counted from the end of its last stream.
#[test]
fn an_idle_h2_connection_is_closed_after_the_idle_timeout() {
    paused().run(|app| async move {
        use http_body_util::{BodyExt, Empty};
        use hyper_util::rt::{TokioExecutor, TokioIo};

        // No pings: the client's connection task would answer them anyway, and they
        // would keep the timer wheel busy in between.
        let server = start(&app, short().http2_keep_alive(None, Duration::from_secs(1))).await;
        let tcp = TcpStream::connect(server.local_addr())
            .await
            .expect("connect");
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake::<_, _, Empty<bytes::Bytes>>(
                TokioExecutor::new(),
                TokioIo::new(tcp),
            )
            .await
            .expect("h2c handshake");
        let client_conn = app.spawn("h2 client connection", conn).expect("open");
        let request = http::Request::get("http://test/")
            .body(Empty::new())
            .expect("request");
        let response = sender.send_request(request).await.expect("response");
        assert_eq!(response.version(), http::Version::HTTP_2);
        let body = response.into_body().collect().await.expect("body");
        assert_eq!(&body.to_bytes()[..], b"hello");
        let answered = Instant::now();

        let ended = tokio::time::timeout(PATIENCE, client_conn)
            .await
            .expect("the server never closed the idle HTTP/2 connection")
            .expect("client connection task");
        assert!(ended.is_ok(), "GOAWAY, not a reset: {ended:?}");
        assert_closed_at(answered.elapsed(), HTTP2_IDLE);
        drop(sender);
        let report = server.shutdown(Duration::from_secs(1)).await;
        assert!(report.is_clean(), "{report}");
    });
}

// Asserts: with the timeouts off, a silent connection stays open (the test above is red
// for the right reason: the timeout, not some other close).
#[test]
fn without_timeouts_a_silent_connection_stays_open() {
    paused().run(|app| async move {
        let server = start(&app, Timeouts::none()).await;
        let mut silent = TcpStream::connect(server.local_addr())
            .await
            .expect("connect");
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(600), silent.read(&mut buf)).await;
        assert!(read.is_err(), "closed or answered: {read:?}");
        let report = server.shutdown(Duration::from_secs(1)).await;
        assert!(report.is_clean(), "{report}");
    });
}
