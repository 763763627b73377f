//! Hostile clients against `taskward serve` with `taskward-hello` workers, on loopback:
//! a flood of idle and half-sent connections past the workers' descriptor limit, and a
//! reload with half-sent requests open. Bounded in count; every wait has a patience bound
//! that only catches hangs.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use common::{HELLO, PATIENCE, Serve, ready_pids};
use rustix::process::Signal;

/// `GET /` on a connection of its own; the whole response, or what went wrong.
fn get(addr: SocketAddr) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(PATIENCE))?;
    stream.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

/// `count` connections to `addr`, every other one having sent half a request head
/// (slowloris), the others nothing at all.
fn hostile(addr: SocketAddr, count: usize) -> Vec<TcpStream> {
    (0..count)
        .map(|n| {
            let mut stream = TcpStream::connect(addr).expect("queued by the kernel at least");
            if n % 2 == 1 {
                stream
                    .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: ")
                    .expect("half a head");
            }
            stream
        })
        .collect()
}

// Asserts: with each worker limited to 128 descriptors (`ulimit -n 128`), 600 idle and
// half-sent connections (more than both workers' descriptors together) leave the service
// up: the workers cap their connections below the limit ("connection limit reached")
// instead of failing accept, the flood is closed by the header read timeout, nine normal
// requests sent during the flood are answered, and no worker misses a heartbeat
// (`-t 2`): the same two workers serve at the end. (Issue #11: 0 of 9 answered, and the
// workers SIGKILLed for missed heartbeats.)
#[tokio::test]
async fn a_flood_past_the_descriptor_limit_leaves_the_service_up() {
    let _ = taskward_http::limits::raise_nofile();
    let wrapped = format!("ulimit -n 128 && exec {HELLO}");
    let serve = Serve::spawn(
        "flood",
        &["-w", "2", "-t", "2", "--", "sh", "-c", &wrapped],
        |command| {
            command.env("HELLO_HEADER_READ_MS", "1000");
        },
    );
    serve.wait_log("all workers ready");
    let lines = serve
        .wait_lines("max_connections=80", 2)
        .unwrap_or_else(|| panic!("both workers under ulimit -n 128:\n{}", serve.log()));
    assert_eq!(lines.len(), 2, "{lines:?}");
    let before = ready_pids(&serve.status().await);
    assert_eq!(before.len(), 2);

    let addr = serve.addr;
    let flood_started = std::time::Instant::now();
    let flood = std::thread::spawn(move || hostile(addr, 600));
    let flood = flood.join().expect("flood thread");
    let normal: Vec<_> = (0..9)
        .map(|_| std::thread::spawn(move || get(addr)))
        .collect();
    for (n, request) in normal.into_iter().enumerate() {
        let response = request.join().expect("request thread");
        let response = response.unwrap_or_else(|error| {
            panic!("request {n} during the flood: {error}\n{}", serve.log())
        });
        assert!(
            response.starts_with("HTTP/1.1 200"),
            "request {n}: {response}"
        );
    }
    serve.wait_log("connection limit reached");
    drop(flood);
    let started = std::time::Instant::now();
    // Rate-limited: one line per worker per 10 s, whether the cap is reached or left,
    // though it is reached and left again at nearly every accept during the flood.
    let cap_lines =
        serve.lines("connection limit reached").len() + serve.lines("accepting again").len();
    let intervals = 1 + usize::try_from(started.duration_since(flood_started).as_secs() / 10)
        .unwrap_or(usize::MAX);
    assert!(
        cap_lines <= 2 * intervals,
        "{cap_lines} lines about the cap in {intervals} intervals:\n{}",
        serve.log()
    );

    let after = ready_pids(&serve.status().await);
    assert_eq!(after, before, "workers were replaced:\n{}", serve.log());
    assert!(
        serve.lines("heartbeat").is_empty() && serve.lines("SIGKILL").is_empty(),
        "{}",
        serve.log()
    );
    let accept_failures = serve.lines("accept failed");
    assert!(accept_failures.is_empty(), "{accept_failures:?}");
    stop(serve);
}

/// Stops the master gracefully, so that it removes its runtime directory.
fn stop(mut serve: Serve) {
    serve.signal(Signal::TERM);
    let status = serve.wait();
    assert!(status.success(), "{status}\n{}", serve.log());
}

// Asserts: a rolling reload with 50 half-sent requests open on the old workers stops them
// without waiting for the graceful timeout: each old worker's server drain is clean,
// nothing aborted, and the half-sent connections are closed. (Issue #11: "aborted 48",
// the reload held to the full graceful timeout.)
#[tokio::test]
async fn a_reload_with_half_sent_requests_open_aborts_nothing() {
    let serve = Serve::start(
        "reload-slowloris",
        &["-w", "2", "--graceful-timeout", "10", "--", HELLO],
    );
    let addr = serve.addr;
    let mut slow: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut stream = TcpStream::connect(addr).expect("connect");
            stream
                .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: ")
                .expect("half a head");
            stream
        })
        .collect();
    // Accepted in order: once a later connection is answered, these were accepted.
    let answered = get(addr).expect("a normal request");
    assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");

    serve.signal(Signal::HUP);
    let stopped = serve
        .wait_lines("server stopped", 2)
        .unwrap_or_else(|| panic!("the old workers never drained:\n{}", serve.log()));
    for line in &stopped {
        assert!(
            line.contains(": clean in") && !line.contains("NOT clean"),
            "{line}\n{}",
            serve.log()
        );
    }
    assert!(
        serve
            .lines("aborted")
            .iter()
            .all(|l| l.contains("aborted 0")),
        "{}",
        serve.log()
    );
    for (n, stream) in slow.iter_mut().enumerate() {
        stream
            .set_read_timeout(Some(PATIENCE))
            .expect("timeout set");
        let mut buf = [0u8; 256];
        let read = stream.read(&mut buf);
        assert!(
            matches!(read, Ok(0) | Err(_)),
            "connection {n} still open or answered: {read:?}"
        );
    }
    serve
        .wait_status("two new workers ready", |s| ready_pids(s).len() == 2)
        .await;
}

// Asserts: a master started with a low soft descriptor limit (systemd's default is 1,024)
// raises it to the hard limit (red without the call in `serve::run`: the master keeps
// 256). Its log line cannot tell: a taskward-http worker raises its own limit and logs the
// same line.
#[tokio::test]
async fn the_master_raises_its_soft_descriptor_limit() {
    let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .maximum
        .expect("a finite hard limit on this machine");
    assert!(
        hard > 256,
        "the test needs a hard limit above 256, found {hard}"
    );
    let serve = Serve::spawn_under(
        &["prlimit", "--nofile=256:", "--"],
        "raise-nofile",
        &["-w", "1", "--", HELLO],
        |_| {},
    );
    serve.wait_log("all workers ready");
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", serve.pid()))
        .expect("the master's limits");
    let open_files = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .expect("a Max open files line");
    let soft: Vec<&str> = open_files.split_whitespace().skip(3).take(2).collect();
    assert_eq!(soft, [hard.to_string(), hard.to_string()], "{open_files}");
}
