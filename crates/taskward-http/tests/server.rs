//! The draining server, over real sockets on 127.0.0.1, with HTTP/1.1 written by hand so
//! that keep-alive and half-sent requests are exactly what each test says.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use taskward::testing::Harness;
use taskward::{Phase, Scope, TaskOutcome};
use taskward_http::{Health, Server, ServerHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// A response as the client saw it.
struct Seen {
    status: u16,
    headers: String,
    body: String,
}

/// Sends one keep-alive GET on `stream`.
async fn send_get(stream: &mut TcpStream, path: &str) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("request written");
}

/// Reads one response (headers, then a `content-length` body) from `stream`.
async fn read_response(stream: &mut TcpStream) -> Seen {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).await.expect("response readable");
        assert_eq!(n, 1, "connection closed before the response headers ended");
        raw.push(byte[0]);
    }
    let headers = String::from_utf8(raw)
        .expect("ascii headers")
        .to_ascii_lowercase();
    let status = headers[9..12].parse().expect("status code");
    let length: usize = headers
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map_or(0, |v| v.trim().parse().expect("content-length"));
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await.expect("body readable");
    Seen {
        status,
        headers,
        body: String::from_utf8(body).expect("utf-8 body"),
    }
}

/// True once the server has closed `stream` (EOF or reset), without sending anything.
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(stream.read(&mut buf).await, Ok(0) | Err(_))
}

/// A server on 127.0.0.1:0 in `scope` serving the shared test router and the health
/// endpoints.
async fn start(
    scope: &Scope,
    health: &Health,
    gate: Arc<Notify>,
    entered: Arc<Notify>,
    configure: impl FnOnce(Server) -> Server,
) -> ServerHandle {
    let router = common::router(gate, entered).merge(health.router());
    let server = Server::bind("127.0.0.1:0")
        .await
        .expect("loopback port")
        .health(health.clone());
    configure(server).serve(scope, router).expect("scope open")
}

/// A gate nobody opens, for tests that never call `/slow`.
fn ungated() -> Arc<Notify> {
    Arc::new(Notify::new())
}

fn harness() -> Harness {
    Harness::multi_thread(2)
}

// Asserts: a request in flight when shutdown starts completes with 200 (and is told to
// close); the connection ends cleanly; afterwards new connections are refused.
#[test]
fn in_flight_request_completes_then_new_connections_are_refused() {
    harness().run(|app| async move {
        let (gate, entered) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let health = Health::new();
        health.set_started();
        let server = start(&app, &health, gate.clone(), entered.clone(), |s| s).await;
        let addr = server.local_addr();

        let mut client = TcpStream::connect(addr).await.expect("connect");
        send_get(&mut client, "/slow").await;
        entered.notified().await;

        // Both at once: the shutdown must wait for the handler, which is released only
        // once the drain has begun; had the connection been cut, the read would fail.
        let (report, response) = tokio::join!(server.shutdown(Duration::from_secs(30)), async {
            while !health.is_draining() {
                tokio::task::yield_now().await;
            }
            gate.notify_one();
            read_response(&mut client).await
        });
        assert_eq!((response.status, response.body.as_str()), (200, "late"));
        assert!(
            response.headers.contains("connection: close"),
            "{}",
            response.headers
        );
        assert!(closed_by_server(&mut client).await);
        assert!(report.is_clean(), "{report}");
        assert_eq!(report.phase, Phase::Grace);
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "accepting has stopped"
        );
        let _ = app.shutdown(Duration::from_secs(1)).await;
    });
}

// Asserts: readiness turns 503 as soon as the shutdown starts, while the drain delay
// still accepts and serves new connections.
#[test]
fn readiness_flips_first_and_drain_delay_keeps_accepting() {
    harness().run(|app| async move {
        let (gate, entered) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let health = Health::new();
        health.set_started();
        let server = start(&app, &health, gate, entered, |s| {
            s.drain_delay(Duration::from_secs(1))
        })
        .await;
        let addr = server.local_addr();

        let mut before = TcpStream::connect(addr).await.expect("connect");
        send_get(&mut before, "/readyz").await;
        assert_eq!(read_response(&mut before).await.status, 200);

        let shutdown = tokio::spawn(server.shutdown(Duration::from_secs(30)));
        while !health.is_draining() {
            tokio::task::yield_now().await;
        }
        let mut during = TcpStream::connect(addr).await.expect("still accepting");
        send_get(&mut during, "/readyz").await;
        let seen = read_response(&mut during).await;
        assert_eq!(seen.status, 503, "not ready while draining");
        assert!(seen.headers.contains("connection: close"));

        let report = shutdown.await.expect("shutdown task");
        assert!(report.is_clean(), "{report}");
        assert!(TcpStream::connect(addr).await.is_err());
        let _ = app.shutdown(Duration::from_secs(1)).await;
    });
}

// Asserts: an idle keep-alive connection is closed by the server after the idle window,
// without waiting for the deadline and without an abort.
#[test]
fn idle_keep_alive_connection_is_closed_after_the_window() {
    harness().run(|app| async move {
        let health = Health::new();
        let server = start(&app, &health, ungated(), ungated(), |s| {
            s.idle_window(Duration::from_millis(50))
        })
        .await;
        let mut client = TcpStream::connect(server.local_addr())
            .await
            .expect("connect");
        send_get(&mut client, "/").await;
        assert_eq!(read_response(&mut client).await.body, "hello");

        let report = server.shutdown(Duration::from_secs(60)).await;

        assert!(
            closed_by_server(&mut client).await,
            "the idle connection was closed"
        );
        assert_eq!(report.phase, Phase::Grace, "{report}");
        assert_eq!(report.counts.aborted, 0);
        let _ = app.shutdown(Duration::from_secs(1)).await;
    });
}

// Asserts: a request an idle keep-alive client sends after its connection began to drain,
// inside the idle window, is answered (with `Connection: close`) rather than reset.
#[test]
fn request_inside_the_idle_window_is_answered() {
    // Current-thread, so that "the connection task has seen the cancellation" is a fact:
    // once the scope is cancelled, one yield lets every woken task run.
    Harness::current_thread().run(|app| async move {
        let health = Health::new();
        let server = start(&app, &health, ungated(), ungated(), |s| {
            s.idle_window(Duration::from_secs(20))
        })
        .await;
        let http = server.scope().clone();
        let mut client = TcpStream::connect(server.local_addr())
            .await
            .expect("connect");
        send_get(&mut client, "/").await;
        read_response(&mut client).await;

        let shutdown = tokio::spawn(server.shutdown(Duration::from_secs(60)));
        while !http.is_cancelled() {
            tokio::task::yield_now().await;
        }
        tokio::task::yield_now().await;
        send_get(&mut client, "/").await;
        let seen = read_response(&mut client).await;
        assert_eq!((seen.status, seen.body.as_str()), (200, "hello"));
        assert!(
            seen.headers.contains("connection: close"),
            "{}",
            seen.headers
        );
        assert!(closed_by_server(&mut client).await);

        let report = shutdown.await.expect("shutdown task");
        assert!(report.is_clean(), "{report}");
        drop(http);
        let _ = app.shutdown(Duration::from_secs(1)).await;
    });
}

// Asserts: at the drain, connections that have not completed a request head (half a
// head on a fresh connection, as a slowloris sends; half of the next head on a keep-alive
// connection; nothing at all) are not in flight: they are closed once the idle window is
// over, the report is clean, and nothing waits for the deadline. (Before, hyper waited for
// the rest of the first head, and the connection was aborted at the deadline.)
#[test]
fn half_sent_heads_are_closed_at_the_drain_not_aborted() {
    harness().run(|app| async move {
        let health = Health::new();
        let server = start(&app, &health, ungated(), ungated(), |s| {
            s.idle_window(Duration::from_millis(20))
        })
        .await;
        let addr = server.local_addr();
        let mut fresh = TcpStream::connect(addr).await.expect("connect");
        fresh
            .write_all(b"GET / HTTP/1.1\r\nHost: te")
            .await
            .expect("half a request");
        let mut kept = TcpStream::connect(addr).await.expect("connect");
        send_get(&mut kept, "/").await;
        assert_eq!(read_response(&mut kept).await.body, "hello");
        kept.write_all(b"GET / HTTP/1.1\r\nHo")
            .await
            .expect("half the next request");
        let silent = TcpStream::connect(addr).await.expect("connect");
        let names: Vec<String> = [&fresh, &kept, &silent]
            .iter()
            .map(|c| format!("conn {}", c.local_addr().expect("client address")))
            .collect();
        while !names
            .iter()
            .all(|name| server.scope().snapshot().names().contains(&name.as_str()))
        {
            tokio::task::yield_now().await;
        }

        // A deadline the test would notice: without the fix, `fresh` is aborted at it.
        let report = server.shutdown(Duration::from_secs(2)).await;

        assert!(report.is_clean(), "{report}");
        assert_eq!(report.counts.aborted, 0, "{report}");
        assert_eq!(report.phase, Phase::Grace, "{report}");
        assert!(closed_by_server(&mut fresh).await);
        assert!(closed_by_server(&mut kept).await);
        drop(silent);
        let _ = app.shutdown(Duration::from_secs(1)).await;
    });
}

// Asserts: a request that never ends is aborted at the deadline, and the report names its
// connection.
#[test]
fn a_request_in_flight_past_the_deadline_is_aborted_and_named() {
    harness().run(|app| async move {
        let (gate, entered) = (ungated(), ungated());
        let health = Health::new();
        let server = start(&app, &health, gate, entered.clone(), |s| s).await;
        let mut slow = TcpStream::connect(server.local_addr())
            .await
            .expect("connect");
        send_get(&mut slow, "/slow").await;
        entered.notified().await;
        let conn_name = format!("conn {}", slow.local_addr().expect("client address"));

        let report = server.shutdown(Duration::from_millis(300)).await;

        assert_eq!(report.counts.aborted, 1, "{report}");
        let aborted: Vec<_> = report.tasks_with(TaskOutcome::Aborted).collect();
        assert_eq!(aborted[0].name, conn_name);
        assert!(closed_by_server(&mut slow).await);
        let _ = app.shutdown(Duration::from_secs(1)).await;
    });
}

// Asserts: HTTP/2 with prior knowledge (h2c) is served on the same port, and a stream in
// flight when the shutdown starts completes with 200 after the GOAWAY; the connection
// then ends cleanly, without an abort.
#[test]
fn h2c_stream_in_flight_completes_after_goaway() {
    // Current-thread, so that the gate opens only after the connection task has seen the
    // cancellation and sent its GOAWAY.
    Harness::current_thread().run(|app| async move {
        use http_body_util::{BodyExt, Empty};
        use hyper_util::rt::{TokioExecutor, TokioIo};

        let (gate, entered) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let health = Health::new();
        let server = start(&app, &health, gate.clone(), entered.clone(), |s| s).await;
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

        let request = http::Request::get("http://test/slow")
            .body(Empty::new())
            .expect("request");
        let response = sender.send_request(request);
        tokio::pin!(response);
        tokio::select! {
            _ = &mut response => panic!("the handler waits for the gate"),
            () = entered.notified() => {}
        }
        let http = server.scope().clone();
        let shutdown = tokio::spawn(server.shutdown(Duration::from_secs(30)));
        while !http.is_cancelled() {
            tokio::task::yield_now().await;
        }
        tokio::task::yield_now().await;
        gate.notify_one();
        let response = response.await.expect("response after GOAWAY");
        assert_eq!(response.version(), http::Version::HTTP_2);
        assert_eq!(response.status(), 200);
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        assert_eq!(&body[..], b"late");

        let report = shutdown.await.expect("shutdown task");
        assert!(report.is_clean(), "{report}");
        assert_eq!(report.phase, Phase::Grace);
        drop((sender, http));
        client_conn
            .await
            .expect("client connection task")
            .expect("closed cleanly");
        let _ = app.shutdown(Duration::from_secs(1)).await;
    });
}

// Asserts: a listener bound outside tokio (as a supervisor hands one over) is served, and
// binding an address already in use is a clear error, not a panic.
#[test]
fn serves_a_standard_listener_and_reports_a_port_in_use() {
    harness().run(|app| async move {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("loopback port");
        let addr = std_listener.local_addr().expect("address");
        let router = Router::new().route("/", get(|| async { "from std" }));
        let server = Server::from_std(std_listener)
            .expect("registered")
            .serve(&app, router)
            .expect("open");
        let mut client = TcpStream::connect(addr).await.expect("connect");
        send_get(&mut client, "/").await;
        assert_eq!(read_response(&mut client).await.body, "from std");

        let taken = Server::bind(addr).await.expect_err("the port is taken");
        let message = format!(
            "{taken}: {}",
            std::error::Error::source(&taken).expect("cause")
        );
        assert!(message.contains(&addr.to_string()), "{message}");

        drop(client);
        let _ = server.shutdown(Duration::from_secs(1)).await;
        let _ = app.shutdown(Duration::from_secs(1)).await;
    });
}

// Asserts: `/healthz` answers 200 whatever the readiness, `/readyz` follows the startup
// scope (503 until its tasks are done), and the health router has no `/debug/tasks`.
#[test]
fn health_endpoints_report_liveness_and_readiness_only() {
    harness().run(|app| async move {
        let startup = app.child("startup").expect("open");
        let (release, wait) = tokio::sync::oneshot::channel::<()>();
        startup
            .spawn("warm_cache", async move {
                let _ = wait.await;
            })
            .expect("open");
        let health = Health::new();
        health.ready_after(&app, &startup).expect("open");
        let server = start(&app, &health, ungated(), ungated(), |s| s).await;
        let mut client = TcpStream::connect(server.local_addr())
            .await
            .expect("connect");

        send_get(&mut client, "/healthz").await;
        assert_eq!(read_response(&mut client).await.status, 200);
        send_get(&mut client, "/readyz").await;
        assert_eq!(
            read_response(&mut client).await.status,
            503,
            "startup not done"
        );

        release.send(()).expect("warm_cache waits");
        startup.wait().await;
        while !health.is_ready() {
            tokio::task::yield_now().await;
        }
        send_get(&mut client, "/readyz").await;
        assert_eq!(read_response(&mut client).await.status, 200);

        // The task list is not part of the health router: it would be public.
        send_get(&mut client, "/debug/tasks").await;
        assert_eq!(read_response(&mut client).await.status, 404);

        drop(client);
        let _ = server.shutdown(Duration::from_secs(1)).await;
        let _ = app.shutdown(Duration::from_secs(1)).await;
    });
}
