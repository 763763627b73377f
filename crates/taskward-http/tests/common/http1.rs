//! One HTTP/1.1 response read by hand (`Content-Length` bodies, as every server here
//! sends), so that a load generator sees each failure as it happened: no response at
//! all, a response cut midway, or a complete one with its status.
//!
//! Also `GET /` over a unix socket, whole response. Shared with the benches and the
//! process manager's tests through `#[path]`.

#![allow(dead_code, reason = "not every includer reads the body")]

use std::ops::Range;
use std::path::Path;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

/// How one response went.
pub(crate) enum Reply {
    /// Complete: its status, where its body is in the buffer, and whether the server
    /// said `Connection: close`.
    Done {
        status: u16,
        body: Range<usize>,
        close: bool,
    },
    /// The connection closed (or failed) before any byte of a response.
    NoResponse,
    /// The response began and was cut.
    Cut,
}

/// Reads one response from `conn` into `buf` (cleared first).
pub(crate) async fn read_reply(conn: &mut TcpStream, buf: &mut Vec<u8>) -> Reply {
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        let n = match conn.read(&mut chunk).await {
            Ok(0) | Err(_) if buf.is_empty() => return Reply::NoResponse,
            Ok(0) | Err(_) => return Reply::Cut,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if buf.len() < end + 4 + length {
            continue;
        }
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let close = head
            .lines()
            .any(|l| l.starts_with("connection:") && l.contains("close"));
        return Reply::Done {
            status,
            body: end + 4..end + 4 + length,
            close,
        };
    }
}

/// `GET /` with `Connection: close` on the unix socket at `path`; the whole response,
/// head and body, as text.
pub(crate) async fn get_over_unix(path: &Path) -> String {
    let mut stream = UnixStream::connect(path).await.expect("connects");
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .expect("request written");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("response read");
    response
}
