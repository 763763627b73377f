//! The demo next to the seed's service, as the seed wrote it and as it fixed it: three rows
//! under the identical bounded scenario, each with a fresh SQLite file in a temp dir of its
//! own.
//!
//! - the seed's unsafe pattern: `gunicorn -w 2 -k uvicorn.workers.UvicornWorker
//!   unsafe_app:app` serving `bench/peer/demo/unsafe_app.py` (untracked `create_task` in the
//!   lifespan, nothing cancelled or awaited at shutdown, writes acknowledged when queued);
//! - the seed's safe pattern: the same Gunicorn serving `app:app`, `bench/peer/demo/app.py`
//!   (tracked tasks, cancel + gather with a 5 s timeout at shutdown, writes acknowledged
//!   after their commit), SQLite through the stdlib;
//! - taskward: `taskward serve -w 2 -- taskward-demo`.
//!
//! Both writers that acknowledge after the commit group-commit (a batch is what queued
//! during the previous commit); the unsafe one flushes 200 ms after its first item, as
//! the seed's service did.
//!
//! The scenario: `CONNECTIONS` keep-alive connections, each sending one `POST /items` (a
//! unique name) then three reads (`GET /items/{id}` of its last acknowledged item, `GET
//! /items?limit=10`, `GET /items/{id}` again) round after round for `TASKWARD_BENCH_SECONDS`
//! (20 by default), a SIGHUP every `HUP_EVERY` (none in the last interval), every worker
//! recycled after `MAX_REQUESTS` requests (plus up to `MAX_REQUESTS_JITTER`), and at the
//! end SIGTERM to the master at the instant the load is told to stop: requests in flight
//! then must still be answered. (The unsafe pattern's 201 carries no id: its connections
//! read the newest item's id from `GET /items?limit=10` instead.) Then, per server: requests/s and p99 of the 2xx answers, failed
//! requests (any request without a 2xx answer, classified as in `load.rs`), acknowledged
//! writes (201) whose name is not in the database file after the master exited, the time
//! from SIGTERM to the master's exit, and the lines of the server's stderr saying a task
//! "was destroyed" (asyncio's "Task was destroyed but it is pending!").
//!
//! Prints one table, and a `side-by-side:` line per server for tools. Gunicorn's rows are
//! skipped unless `TASKWARD_BENCH_GUNICORN` names its executable (`scripts/bench-demo`
//! installs it in a venv and sets it, with `TASKWARD_BENCH_APP_DIR`). `taskward` must be
//! built beside `taskward-demo` (`cargo build --release -p taskward-cli`; the script does).
//!
//! Every wait is bounded, and the servers run in process groups of their own that are
//! killed when a run ends, panics, or the bench gets SIGINT or SIGTERM.
//!
//! ```text
//! scripts/bench-demo
//! ```
#![expect(clippy::print_stdout, reason = "a benchmark prints its table")]

#[path = "../../taskward-cli/tests/common/ansi.rs"]
mod ansi;
#[path = "../../taskward-cli/tests/common/bench_server.rs"]
mod bench_server;
#[path = "../../taskward-http/tests/common/http1.rs"]
mod http1;
#[path = "../../taskward-cli/tests/common/load.rs"]
#[expect(
    dead_code,
    reason = "the end-to-end tests' load generator; this bench uses its counts"
)]
mod load;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bench_server::{
    Kind, PATIENCE, Peer, Server, env_number, fresh_dir, kill_groups_on_signal, quantile,
};
use http1::{Reply, read_reply};
use rustix::process::Signal;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use load::Counts;

/// Keep-alive connections of the load.
const CONNECTIONS: usize = 16;
/// Worker processes of each server.
const WORKERS: usize = 2;
/// Seconds of load per run, unless `TASKWARD_BENCH_SECONDS` says otherwise.
const SECONDS: u64 = 20;
/// Time between two SIGHUPs; none is sent in the last interval, so 20 s get 3 reloads.
const HUP_EVERY: Duration = Duration::from_secs(5);
/// `--graceful-timeout` of both servers, in seconds.
const GRACEFUL_TIMEOUT: u64 = 30;
/// `--max-requests` of both servers: recycling goes on during the run.
const MAX_REQUESTS: u64 = 5_000;
/// `--max-requests-jitter` of both servers, so the two workers do not recycle together.
const MAX_REQUESTS_JITTER: u64 = 500;
/// Consecutive `/readyz` 200s, each on a new connection, before the load starts.
const READY_IN_A_ROW: usize = 20;

const DEMO: &str = env!("CARGO_BIN_EXE_taskward-demo");

/// The three rows of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Row {
    /// The seed's unsafe pattern under Gunicorn + Uvicorn.
    Unsafe,
    /// The seed's safe pattern under Gunicorn + Uvicorn.
    Safe,
    /// `taskward serve` + `taskward-demo`.
    Taskward,
}

impl Row {
    fn kind(self) -> Kind {
        match self {
            Row::Unsafe | Row::Safe => Kind::Gunicorn,
            Row::Taskward => Kind::Taskward,
        }
    }

    /// The short name, for the machine lines and temp dirs.
    fn name(self) -> &'static str {
        match self {
            Row::Unsafe => "seed-unsafe",
            Row::Safe => "seed-safe",
            Row::Taskward => "taskward",
        }
    }

    /// The long name, for the table.
    fn label(self) -> &'static str {
        match self {
            Row::Unsafe => "seed's unsafe pattern (gunicorn + uvicorn + FastAPI)",
            Row::Safe => "seed's safe pattern (gunicorn + uvicorn + FastAPI)",
            Row::Taskward => "taskward serve + taskward-demo",
        }
    }

    /// The ASGI app Gunicorn serves, from `bench/peer/demo`.
    fn asgi_app(self) -> &'static str {
        match self {
            Row::Unsafe => "unsafe_app:app",
            Row::Safe | Row::Taskward => "app:app",
        }
    }
}

/// `taskward`, built beside the demo (`cargo build --release -p taskward-cli`).
fn taskward() -> PathBuf {
    let path = Path::new(DEMO).with_file_name("taskward");
    assert!(
        path.exists(),
        "{} is missing: build it first (cargo build --release -p taskward-cli), or run \
         scripts/bench-demo",
        path.display()
    );
    path
}

/// Starts `row` with `WORKERS` workers on `127.0.0.1:0` and a fresh database, and
/// waits until it answers `/readyz`.
async fn start(row: Row, peer: Option<&Peer>) -> Server {
    let dir = fresh_dir(&format!("demo-{}", row.name()));
    let graceful = GRACEFUL_TIMEOUT.to_string();
    let workers = WORKERS.to_string();
    let max_requests = MAX_REQUESTS.to_string();
    let jitter = MAX_REQUESTS_JITTER.to_string();
    let kind = row.kind();
    let command = match kind {
        Kind::Taskward => {
            let mut c = Command::new(taskward());
            c.args(["serve", "-w", &workers, "-b", "127.0.0.1:0"])
                .args(["--max-requests", &max_requests])
                .args(["--max-requests-jitter", &jitter])
                .args(["--graceful-timeout", &graceful, "--"])
                .arg(DEMO)
                .args(["--db", "demo.sqlite3", "--report-dir", "reports"])
                .env("RUST_LOG", "info")
                .env("NO_COLOR", "1");
            c
        }
        Kind::Gunicorn => {
            let peer = peer.expect("gunicorn runs only with a peer");
            let mut c = Command::new(&peer.gunicorn);
            c.args([
                "-w",
                &workers,
                "-k",
                "uvicorn.workers.UvicornWorker",
                row.asgi_app(),
            ])
            .arg("--chdir")
            .arg(&peer.app_dir)
            .args(["--bind", "127.0.0.1:0", "--graceful-timeout", &graceful])
            .args(["--max-requests", &max_requests])
            .args(["--max-requests-jitter", &jitter])
            // Gunicorn 27 opens a control socket in $HOME by default.
            .arg("--no-control-socket")
            .env("DEMO_DB", dir.join("demo.sqlite3"))
            .env("PYTHONDONTWRITEBYTECODE", "1");
            c
        }
    };
    let server = Server::start(kind, command, dir);
    wait_ready(&server).await;
    server
}

/// Waits for `READY_IN_A_ROW` `/readyz` 200s in a row, each on a new connection, so that
/// both workers are likely past their startup (panics after `PATIENCE`).
async fn wait_ready(server: &Server) {
    let deadline = Instant::now() + PATIENCE;
    let mut in_a_row = 0;
    while in_a_row < READY_IN_A_ROW {
        assert!(
            Instant::now() < deadline,
            "{} never answered /readyz:\n{}",
            server.kind.name(),
            server.log_text()
        );
        let ready = async {
            let mut conn = TcpStream::connect(server.addr).await.ok()?;
            let mut buf = Vec::new();
            match exchange(&mut conn, server.addr, &Step::Ready, &mut buf).await {
                Answer::Done { status: 200, .. } => Some(()),
                _ => None,
            }
        };
        match tokio::time::timeout(Duration::from_secs(5), ready).await {
            Ok(Some(())) => in_a_row += 1,
            _ => {
                in_a_row = 0;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Waits (bounded) for the master to exit; the time it took, `None` if it did not.
async fn wait_exit(server: &mut Server, since: Instant) -> Option<Duration> {
    let deadline = since + Duration::from_secs(GRACEFUL_TIMEOUT) + PATIENCE;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = server.child.try_wait() {
            return Some(since.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    None
}

/// One request of the mix.
enum Step {
    Post(String),
    Get(String),
    Ready,
}

/// What one request got.
enum Answer {
    Done {
        status: u16,
        body: Vec<u8>,
        close: bool,
    },
    /// Closed (or failed) before any byte of a response.
    NoResponse,
    /// The response began and was cut.
    Cut,
}

/// Writes `step` on `conn` and reads its answer (HTTP/1.1 by hand, `Content-Length`
/// bodies, as both servers send here).
async fn exchange(
    conn: &mut TcpStream,
    addr: SocketAddr,
    step: &Step,
    buf: &mut Vec<u8>,
) -> Answer {
    let request = match step {
        Step::Post(name) => {
            let body = format!("{{\"name\":\"{name}\"}}");
            format!(
                "POST /items HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
        }
        Step::Get(path) => format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
        Step::Ready => format!("GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    };
    if conn.write_all(request.as_bytes()).await.is_err() {
        return Answer::NoResponse;
    }
    match read_reply(conn, buf).await {
        Reply::Done {
            status,
            body,
            close,
        } => Answer::Done {
            status,
            body: buf[body].to_vec(),
            close,
        },
        Reply::NoResponse => Answer::NoResponse,
        Reply::Cut => Answer::Cut,
    }
}

/// The `"id"` of an item's JSON.
fn item_id(body: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(body).ok()?;
    let rest = text.split("\"id\":").nth(1)?.trim_start();
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// What one connection saw.
#[derive(Default)]
struct Seen {
    counts: Counts,
    latencies: Vec<Duration>,
    /// Names of the writes answered with 201.
    acked: Vec<String>,
    /// `METHOD STATUS` of each answer that was not 2xx, for the machine line.
    statuses: Vec<String>,
}

/// One keep-alive connection running the mix until `stop`, reconnecting when closed.
async fn connection(addr: SocketAddr, who: usize, stop: Arc<AtomicBool>) -> Seen {
    let mut seen = Seen::default();
    let mut stream: Option<TcpStream> = None;
    let mut answered = false;
    let mut last_id: Option<i64> = None;
    let mut buf = Vec::with_capacity(4096);
    let mut n: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let step = match (n % 4, last_id) {
            (0, _) => Step::Post(format!("c{who}-{n}")),
            (1 | 3, Some(id)) => Step::Get(format!("/items/{id}")),
            _ => Step::Get("/items?limit=10".to_owned()),
        };
        n += 1;
        let conn = match stream.as_mut() {
            Some(conn) => conn,
            None => match TcpStream::connect(addr).await {
                Ok(conn) => {
                    seen.counts.connections += 1;
                    answered = false;
                    stream.insert(conn)
                }
                Err(_) => {
                    seen.counts.failed += 1;
                    seen.counts.unaccepted += 1;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
            },
        };
        let sent = Instant::now();
        match exchange(conn, addr, &step, &mut buf).await {
            Answer::Done {
                status,
                body,
                close,
            } => {
                answered = true;
                if (200..300).contains(&status) {
                    seen.counts.ok += 1;
                    seen.latencies.push(sent.elapsed());
                    match step {
                        Step::Post(name) => {
                            // An answer without an id (the unsafe pattern's) leaves the
                            // next list to find one.
                            last_id = item_id(&body);
                            seen.acked.push(name);
                        }
                        Step::Get(_) if last_id.is_none() => last_id = item_id(&body),
                        Step::Get(_) | Step::Ready => {}
                    }
                } else {
                    seen.counts.failed += 1;
                    seen.counts.status += 1;
                    let method = if matches!(step, Step::Post(_)) {
                        "POST"
                    } else {
                        "GET"
                    };
                    seen.statuses.push(format!("{method}:{status}"));
                }
                if close {
                    stream = None;
                }
            }
            Answer::NoResponse => {
                seen.counts.failed += 1;
                if answered {
                    seen.counts.dropped += 1;
                } else {
                    seen.counts.unaccepted += 1;
                }
                stream = None;
            }
            Answer::Cut => {
                seen.counts.failed += 1;
                seen.counts.cut += 1;
                stream = None;
            }
        }
    }
    seen
}

/// Figures of one server.
struct Run {
    row: Row,
    elapsed: Duration,
    counts: Counts,
    p50: Duration,
    p99: Duration,
    hups: usize,
    /// Workers recycled for `--max-requests`, as the server's log says.
    recycled: usize,
    acked: usize,
    lost: usize,
    rows: usize,
    shutdown: Option<Duration>,
    destroyed: usize,
    /// `METHOD:STATUS` of the answers that were not 2xx, sorted.
    statuses: Vec<String>,
}

impl Run {
    fn per_second(&self) -> f64 {
        self.counts.ok as f64 / self.elapsed.as_secs_f64()
    }

    fn machine_line(&self) -> String {
        format!(
            "side-by-side: server={} seconds={:.3} ok={} requests_per_s={:.1} p50_us={} \
             p99_us={} failed={} dropped={} unaccepted={} cut={} status={} connections={} \
             hups={} recycled={} acked={} rows={} lost={} shutdown_ms={} destroyed={} \
             statuses={}",
            self.row.name(),
            self.elapsed.as_secs_f64(),
            self.counts.ok,
            self.per_second(),
            self.p50.as_micros(),
            self.p99.as_micros(),
            self.counts.failed,
            self.counts.dropped,
            self.counts.unaccepted,
            self.counts.cut,
            self.counts.status,
            self.counts.connections,
            self.hups,
            self.recycled,
            self.acked,
            self.rows,
            self.lost,
            self.shutdown
                .map_or_else(|| "never".to_owned(), |d| d.as_millis().to_string()),
            self.destroyed,
            self.statuses.join(","),
        )
    }
}

/// The names stored in the database file `path`.
fn stored_names(path: &Path) -> HashSet<String> {
    let conn = rusqlite::Connection::open(path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    let mut select = conn.prepare("SELECT name FROM items").expect("a select");
    select
        .query_map([], |row| row.get(0))
        .expect("the items")
        .collect::<Result<_, _>>()
        .expect("the names")
}

/// Runs the scenario against one server.
async fn run(row: Row, peer: Option<&Peer>, seconds: u64) -> Run {
    let kind = row.kind();
    let mut server = start(row, peer).await;
    let started = Instant::now();
    let end = started + Duration::from_secs(seconds);
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|who| tokio::spawn(connection(server.addr, who, stop.clone())))
        .collect();
    let mut hups = 0;
    let mut next = started + HUP_EVERY;
    while next + HUP_EVERY <= end {
        tokio::time::sleep_until(next.into()).await;
        server.signal(Signal::HUP);
        hups += 1;
        next += HUP_EVERY;
    }
    tokio::time::sleep_until(end.into()).await;
    // The load stops after each connection's current request, and the master is told to
    // stop at the same instant: requests in flight now must still be answered.
    stop.store(true, Ordering::Relaxed);
    let term = Instant::now();
    server.signal(Signal::TERM);
    let shutdown = wait_exit(&mut server, term).await;
    let elapsed = term - started;
    let mut seen = Seen::default();
    for task in tasks {
        // A connection waits for its current request's answer: bounded, the drop kills
        // the server if one never comes.
        let one = tokio::time::timeout(PATIENCE, task)
            .await
            .unwrap_or_else(|_| panic!("{} left a request unanswered", row.name()))
            .expect("a load task");
        seen.counts.add(one.counts);
        seen.latencies.extend(one.latencies);
        seen.acked.extend(one.acked);
        seen.statuses.extend(one.statuses);
    }
    // Whatever the master left behind goes before the file is read.
    server.kill_group();
    let stored = stored_names(&server.dir.join("demo.sqlite3"));
    let lost = seen.acked.iter().filter(|n| !stored.contains(*n)).count();
    let destroyed = server.count_lines("was destroyed");
    let recycled = server.count_lines(kind.recycle_line());
    seen.latencies.sort_unstable();
    seen.statuses.sort_unstable();
    Run {
        row,
        elapsed,
        counts: seen.counts,
        p50: quantile(&seen.latencies, 0.50),
        p99: quantile(&seen.latencies, 0.99),
        hups,
        recycled,
        acked: seen.acked.len(),
        lost,
        rows: stored.len(),
        shutdown,
        destroyed,
        statuses: seen.statuses,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let seconds = env_number("TASKWARD_BENCH_SECONDS").unwrap_or(SECONDS);
    let peer = Peer::from_env(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/peer/demo"));
    let rows = match &peer {
        Some(peer) => {
            println!("gunicorn: {}", peer.gunicorn.display());
            vec![Row::Unsafe, Row::Safe, Row::Taskward]
        }
        None => {
            println!(
                "TASKWARD_BENCH_GUNICORN is unset: the gunicorn rows are skipped \
                 (scripts/bench-demo installs Gunicorn + Uvicorn and sets it)"
            );
            vec![Row::Taskward]
        }
    };
    // The load shares two threads, as the end-to-end tests' does.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        tokio::spawn(kill_groups_on_signal());
        let mut runs = Vec::new();
        for &row in &rows {
            let r = run(row, peer.as_ref(), seconds).await;
            println!("{}", r.machine_line());
            runs.push(r);
        }
        println!();
        println!(
            "side by side: {WORKERS} workers each, {CONNECTIONS} keep-alive connections \
             (1 POST /items : 3 GET), {seconds} s, SIGHUP every {} s, --max-requests \
             {MAX_REQUESTS} (+ jitter up to {MAX_REQUESTS_JITTER}), then SIGTERM, loopback",
            HUP_EVERY.as_secs()
        );
        println!(
            "| server | requests/s | p50 | p99 | failed (dropped / unaccepted / cut / status) \
             | acknowledged writes | lost acknowledged writes | \"was destroyed\" warnings \
             | SIGTERM → master exit | SIGHUPs / workers recycled |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|");
        for r in &runs {
            println!(
                "| {} | {:.0} | {} | {} | {} ({} / {} / {} / {}) | {} | {} | {} | {} | {} / {} |",
                r.row.label(),
                r.per_second(),
                ms(r.p50),
                ms(r.p99),
                r.counts.failed,
                r.counts.dropped,
                r.counts.unaccepted,
                r.counts.cut,
                r.counts.status,
                r.acked,
                r.lost,
                r.destroyed,
                r.shutdown.map_or_else(|| "never".to_owned(), ms),
                r.hups,
                r.recycled,
            );
        }
        let by_row = |row: Row| runs.iter().find(|r| r.row == row);
        if let (Some(taskward), Some(safe)) = (by_row(Row::Taskward), by_row(Row::Safe)) {
            println!();
            println!(
                "taskward: {:.1}x the safe pattern's requests/s, p99 {} against {}",
                taskward.per_second() / safe.per_second(),
                ms(taskward.p99),
                ms(safe.p99),
            );
        }
    });
}
