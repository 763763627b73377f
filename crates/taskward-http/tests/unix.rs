//! The server on a unix stream socket, with HTTP/1.1 written by hand over
//! `tokio::net::UnixStream` (`tests/common/http1.rs`).

#[path = "common/http1.rs"]
mod http1;

use std::path::PathBuf;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use http1::get_over_unix;
use taskward::testing::Harness;
use taskward_http::{ListenAddr, Server};
use tokio::net::{UnixListener, UnixStream};

/// A fresh directory for this test's socket, under the system's temp dir.
fn socket_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("taskward-http-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temp dir");
    dir
}

// Asserts: a server made with `from_unix` answers an HTTP/1.1 request on the socket and
// names the path as its address; its shutdown is clean, and afterwards a connection to
// the path is refused.
#[test]
fn a_unix_socket_is_served_then_refused_after_shutdown() {
    Harness::multi_thread(2).run(|app| async move {
        let dir = socket_dir("unix");
        let path = dir.join("http.sock");
        let listener = UnixListener::bind(&path).expect("a unix socket");
        let router = Router::new().route("/", get(|| async { "hello over unix" }));
        let server = Server::from_unix(listener)
            .serve(&app, router)
            .expect("scope open");
        assert_eq!(server.listen_addr(), &ListenAddr::Unix(Some(path.clone())));
        assert_eq!(
            server.listen_addr().to_string(),
            format!("unix:{}", path.display())
        );
        assert!(server.local_addr().ip().is_unspecified());

        let response = get_over_unix(&path).await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.ends_with("\r\n\r\nhello over unix"), "{response}");

        let report = server.shutdown(Duration::from_secs(5)).await;
        assert!(report.is_clean(), "{report}");
        let refused = UnixStream::connect(&path).await;
        assert!(
            refused.is_err(),
            "a connection to {} was accepted after shutdown",
            path.display()
        );
        let _ = std::fs::remove_dir_all(&dir);
    });
}
