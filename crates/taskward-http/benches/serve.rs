//! Throughput and latency of a small JSON handler served by taskward-http, next to the
//! same router on plain `axum::serve`; and the shutdown time with 1,000 idle keep-alive
//! connections open.
//!
//! A bounded load generator, loopback only: `CONNECTIONS` keep-alive connections each send
//! `GET /json` one after another for `SECONDS`, with HTTP/1.1 written by hand, and every
//! latency is kept. Both servers run on the same 2-worker runtime, one after the other,
//! under the same load. Prints one table (and a `serve-json:` line for tools).
//!
//! Besides requests/s, the table gives the process's CPU time per request (server and
//! load generator together, from `/proc/self/stat`): on a shared machine throughput
//! follows whatever else runs, while the CPU a request costs barely does.
//!
//! ```text
//! cargo bench -p taskward-http --bench serve
//! ```
#![expect(clippy::print_stdout, reason = "a benchmark prints its table")]

#[path = "../tests/common/http1.rs"]
mod http1;

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::{Json, Router};
use taskward::Scope;
use taskward_http::Server;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use http1::{Reply, read_reply};

/// Keep-alive connections of the load generator.
const CONNECTIONS: usize = 32;
/// How long each load run lasts.
const SECONDS: u64 = 5;
/// Idle keep-alive connections open during the shutdown measurement.
const IDLE: usize = 1_000;

fn router() -> Router {
    Router::new().route(
        "/json",
        get(|| async { Json(serde_json::json!({ "ok": true, "items": [1, 2, 3] })) }),
    )
}

/// Load figures of one run.
struct Load {
    requests: usize,
    failed: usize,
    elapsed: Duration,
    /// CPU time of the whole process (server and load generator) during the run.
    cpu: Duration,
    p50: Duration,
    p99: Duration,
}

impl Load {
    fn per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    fn cpu_per_request(&self) -> Duration {
        self.cpu / u32::try_from(self.requests.max(1)).unwrap_or(u32::MAX)
    }
}

/// CPU time used by this process so far (user and system), from `/proc/self/stat`, in
/// clock ticks of 10 ms (`USER_HZ` is 100 on Linux whatever the kernel's own `HZ`).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat is readable");
    // The command name may hold spaces: the fields that follow start after its `)`.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("a stat line has the command in parentheses")
        .1
        .split_whitespace()
        .collect();
    let ticks = |i: usize| -> u64 { fields[i].parse().expect("utime and stime are numbers") };
    // Fields 14 and 15 of proc(5), counted from the state (field 3) here.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// Reads one response; whether it was a complete 200.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    matches!(
        read_reply(stream, buf).await,
        Reply::Done { status: 200, .. }
    )
}

/// One keep-alive connection sending requests until `stop`; its latencies.
async fn client(addr: SocketAddr, stop: Instant) -> (Vec<Duration>, usize) {
    let mut latencies = Vec::new();
    let mut failed = 0;
    let mut buf = Vec::with_capacity(4096);
    let mut stream = TcpStream::connect(addr).await.expect("connect to loopback");
    stream.set_nodelay(true).expect("nodelay");
    while Instant::now() < stop {
        let start = Instant::now();
        if stream
            .write_all(b"GET /json HTTP/1.1\r\nHost: bench\r\n\r\n")
            .await
            .is_err()
            || !read_response(&mut stream, &mut buf).await
        {
            failed += 1;
            stream = TcpStream::connect(addr).await.expect("reconnect");
            continue;
        }
        latencies.push(start.elapsed());
    }
    (latencies, failed)
}

async fn load(addr: SocketAddr) -> Load {
    let cpu = cpu_time();
    let started = Instant::now();
    let stop = started + Duration::from_secs(SECONDS);
    let clients: Vec<_> = (0..CONNECTIONS)
        .map(|_| tokio::spawn(client(addr, stop)))
        .collect();
    let mut all = Vec::new();
    let mut failed = 0;
    for c in clients {
        let (latencies, f) = c.await.expect("client task");
        all.extend(latencies);
        failed += f;
    }
    let elapsed = started.elapsed();
    let cpu = cpu_time().saturating_sub(cpu);
    all.sort_unstable();
    let at = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    Load {
        requests: all.len(),
        failed,
        elapsed,
        cpu,
        p50: at(0.50),
        p99: at(0.99),
    }
}

/// Opens `IDLE` keep-alive connections, each after one request, and keeps them open.
async fn idle_connections(addr: SocketAddr) -> Vec<TcpStream> {
    let mut open = Vec::with_capacity(IDLE);
    let mut buf = Vec::new();
    for _ in 0..IDLE {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(b"GET /json HTTP/1.1\r\nHost: bench\r\n\r\n")
            .await
            .expect("request");
        assert!(read_response(&mut stream, &mut buf).await, "served");
        open.push(stream);
    }
    open
}

/// Runs the load against taskward-http, then measures its shutdown with idle connections.
async fn taskward_run() -> (Load, Duration, String) {
    let app = Scope::root("bench");
    let server = Server::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .serve(&app, router())
        .expect("open");
    let addr = server.local_addr();
    let figures = load(addr).await;
    let idle = idle_connections(addr).await;
    let started = Instant::now();
    let report = server.shutdown(Duration::from_secs(30)).await;
    let shutdown = started.elapsed();
    drop(idle);
    let _ = app.shutdown(Duration::from_secs(1)).await;
    let outcome = format!(
        "{} cancelled, {} aborted",
        report.counts.cancelled, report.counts.aborted
    );
    (figures, shutdown, outcome)
}

/// The same with `axum::serve` and its graceful shutdown.
async fn axum_run() -> (Load, Duration, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let stop = CancellationToken::new();
    let signal = stop.clone();
    let serve = tokio::spawn(async move {
        axum::serve(listener, router())
            .with_graceful_shutdown(async move { signal.cancelled().await })
            .await
    });
    let figures = load(addr).await;
    let idle = idle_connections(addr).await;
    let started = Instant::now();
    stop.cancel();
    serve
        .await
        .expect("serve task")
        .expect("axum::serve ends cleanly");
    let shutdown = started.elapsed();
    drop(idle);
    (figures, shutdown, "graceful".to_owned())
}

fn run<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a 2-worker runtime")
        .block_on(future)
}

fn main() {
    let (axum, axum_shutdown, axum_outcome) = run(axum_run());
    let (taskward, taskward_shutdown, taskward_outcome) = run(taskward_run());
    println!(
        "GET /json, {CONNECTIONS} keep-alive connections, {SECONDS} s each, 2-worker runtime, loopback"
    );
    println!(
        "{:<22} {:>10} {:>9} {:>9} {:>7} {:>12} {:>24}",
        "server", "requests/s", "p50", "p99", "failed", "CPU/request", "shutdown, 1,000 idle"
    );
    for (name, l, s, o) in [
        ("axum::serve", &axum, axum_shutdown, &axum_outcome),
        (
            "taskward-http",
            &taskward,
            taskward_shutdown,
            &taskward_outcome,
        ),
    ] {
        println!(
            "{:<22} {:>10.0} {:>9.2?} {:>9.2?} {:>7} {:>12.2?} {:>12.1?} ({o})",
            name,
            l.per_second(),
            l.p50,
            l.p99,
            l.failed,
            l.cpu_per_request(),
            s
        );
    }
    println!(
        "throughput ratio taskward-http / axum::serve: {:.3}",
        taskward.per_second() / axum.per_second()
    );
    let cpu_ratio = axum.cpu_per_request().as_secs_f64() / taskward.cpu_per_request().as_secs_f64();
    println!("CPU per request ratio axum::serve / taskward-http (1 = as cheap): {cpu_ratio:.3}");
    println!(
        "serve-json: {}",
        serde_json::json!({
            "axum_rps": axum.per_second(), "axum_p99_us": axum.p99.as_micros() as u64,
            "taskward_rps": taskward.per_second(), "taskward_p99_us": taskward.p99.as_micros() as u64,
            "ratio": taskward.per_second() / axum.per_second(),
            "axum_shutdown_ms": axum_shutdown.as_secs_f64() * 1000.0,
            "taskward_shutdown_ms": taskward_shutdown.as_secs_f64() * 1000.0,
            "requests": [axum.requests, taskward.requests],
            "cpu_per_request_us": [
                axum.cpu_per_request().as_secs_f64() * 1e6,
                taskward.cpu_per_request().as_secs_f64() * 1e6,
            ],
            "cpu_ratio": cpu_ratio,
        })
    );
}
