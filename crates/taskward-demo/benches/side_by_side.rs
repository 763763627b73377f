//! The demo next to the seed's original: `taskward serve -w 2 -- taskward-demo` and
//! `gunicorn -w 2 -k uvicorn.workers.UvicornWorker app:app` serving the FastAPI twin in
//! `bench/peer/demo/app.py` (the seed's "safe pattern": tracked tasks, cancel + gather with
//! a 5 s timeout at shutdown, SQLite through the stdlib), under the identical bounded
//! scenario, each with a fresh SQLite file in a temp dir of its own.
//!
//! The scenario: `CONNECTIONS` keep-alive connections, each sending one `POST /items` (a
//! unique name) then three reads (`GET /items/{id}` of its last acknowledged item, `GET
//! /items?limit=10`, `GET /items/{id}` again) round after round for `TASKWARD_BENCH_SECONDS`
//! (20 by default), a SIGHUP every `HUP_EVERY` (none in the last interval), and at the end
//! SIGTERM to the master at the instant the load is told to stop: requests in flight then
//! must still be answered. Then, per server: requests/s and p99 of the 2xx answers, failed
//! requests (any request without a 2xx answer, classified as in `load.rs`), acknowledged
//! writes (201) whose name is not in the database file after the master exited, the time
//! from SIGTERM to the master's exit, and the lines of the server's stderr saying a task
//! "was destroyed" (asyncio's "Task was destroyed but it is pending!").
//!
//! Prints one table, and a `side-by-side:` line per server for tools. Gunicorn's row is
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
#[path = "../../taskward-cli/tests/common/load.rs"]
#[expect(
    dead_code,
    reason = "the end-to-end tests' load generator; this bench uses its counts"
)]
mod load;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process, kill_process_group};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use load::Counts;

/// How long the bench waits for something that should happen (a server ready, a request
/// answered) before it gives up rather than hang. Not a performance bound.
const PATIENCE: Duration = Duration::from_secs(60);
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
/// Consecutive `/readyz` 200s, each on a new connection, before the load starts.
const READY_IN_A_ROW: usize = 20;

const DEMO: &str = env!("CARGO_BIN_EXE_taskward-demo");

/// Process groups of the servers running now, for the SIGINT/SIGTERM handler.
static GROUPS: Mutex<Vec<i32>> = Mutex::new(Vec::new());

/// The two servers compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Taskward,
    Gunicorn,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Taskward => "taskward serve + taskward-demo",
            Kind::Gunicorn => "gunicorn + uvicorn + FastAPI",
        }
    }

    fn short(self) -> &'static str {
        match self {
            Kind::Taskward => "taskward",
            Kind::Gunicorn => "gunicorn",
        }
    }
}

/// Where Gunicorn and the FastAPI app are.
struct Peer {
    gunicorn: PathBuf,
    app_dir: PathBuf,
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

type Log = Arc<(Mutex<Vec<String>>, Condvar)>;

/// A running server in a process group of its own, killed with its workers on drop.
struct Server {
    kind: Kind,
    child: Child,
    dir: PathBuf,
    log: Log,
    addr: SocketAddr,
}

impl Server {
    /// Starts `kind` with `WORKERS` workers on `127.0.0.1:0` and a fresh database, and
    /// waits until it answers `/readyz`.
    async fn start(kind: Kind, peer: Option<&Peer>) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "taskward-bench-demo-{}-{}",
            std::process::id(),
            kind.short()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temp dir");
        let graceful = GRACEFUL_TIMEOUT.to_string();
        let workers = WORKERS.to_string();
        let mut command = match kind {
            Kind::Taskward => {
                let mut c = Command::new(taskward());
                c.args(["serve", "-w", &workers, "-b", "127.0.0.1:0"])
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
                    "app:app",
                ])
                .arg("--chdir")
                .arg(&peer.app_dir)
                .args(["--bind", "127.0.0.1:0", "--graceful-timeout", &graceful])
                // Gunicorn 27 opens a control socket in $HOME by default.
                .arg("--no-control-socket")
                .env("DEMO_DB", dir.join("demo.sqlite3"))
                .env("PYTHONDONTWRITEBYTECODE", "1");
                c
            }
        };
        command
            .current_dir(&dir)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("the server starts");
        let pgid = i32::try_from(child.id()).expect("a pid fits an i32");
        GROUPS.lock().expect("groups lock").push(pgid);
        let log: Log = Arc::default();
        let stderr = child.stderr.take().expect("stderr is piped");
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let (lines, changed) = &*sink;
                lines
                    .lock()
                    .expect("log lock")
                    .push(ansi::strip_ansi(&line));
                changed.notify_all();
            }
        });
        let mut server = Self {
            kind,
            child,
            dir,
            log,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let (needle, prefix) = match kind {
            Kind::Taskward => ("listening", "addr="),
            Kind::Gunicorn => ("Listening at:", "http://"),
        };
        let line = server.wait_log(needle);
        server.addr = line
            .split(prefix)
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        server.wait_ready().await;
        server
    }

    /// The first log line containing `needle` (panics after `PATIENCE`).
    fn wait_log(&self, needle: &str) -> String {
        let (lines, changed) = &*self.log;
        let deadline = Instant::now() + PATIENCE;
        let mut guard = lines.lock().expect("log lock");
        loop {
            if let Some(line) = guard.iter().find(|l| l.contains(needle)) {
                return line.clone();
            }
            let left = deadline
                .checked_duration_since(Instant::now())
                .unwrap_or_else(|| {
                    panic!(
                        "no {needle:?} from {}:\n{}",
                        self.kind.short(),
                        guard.join("\n")
                    )
                });
            guard = changed.wait_timeout(guard, left).expect("log lock").0;
        }
    }

    /// Waits for `READY_IN_A_ROW` `/readyz` 200s in a row, each on a new connection, so
    /// that both workers are likely past their startup (panics after `PATIENCE`).
    async fn wait_ready(&self) {
        let deadline = Instant::now() + PATIENCE;
        let mut in_a_row = 0;
        while in_a_row < READY_IN_A_ROW {
            assert!(
                Instant::now() < deadline,
                "{} never answered /readyz:\n{}",
                self.kind.short(),
                self.log_text()
            );
            let ready = async {
                let mut conn = TcpStream::connect(self.addr).await.ok()?;
                let mut buf = Vec::new();
                match exchange(&mut conn, self.addr, &Step::Ready, &mut buf).await {
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

    fn log_text(&self) -> String {
        self.log.0.lock().expect("log lock").join("\n")
    }

    /// Log lines containing `needle`.
    fn count_lines(&self, needle: &str) -> usize {
        let lines = self.log.0.lock().expect("log lock");
        lines.iter().filter(|l| l.contains(needle)).count()
    }

    fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(i32::try_from(self.child.id()).expect("a pid fits an i32"))
            .expect("a child's pid is not 0");
        if let Err(error) = kill_process(pid, signal) {
            panic!("cannot signal {}: {error}", self.kind.short());
        }
    }

    /// Waits (bounded) for the master to exit; the time it took, `None` if it did not.
    async fn wait_exit(&mut self, since: Instant) -> Option<Duration> {
        let deadline = since + Duration::from_secs(GRACEFUL_TIMEOUT) + PATIENCE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Some(since.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let pgid = i32::try_from(self.child.id()).expect("a pid fits an i32");
        kill_group(pgid);
        let _ = self.child.kill();
        let _ = self.child.wait();
        GROUPS.lock().expect("groups lock").retain(|g| *g != pgid);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// SIGKILL to a process group; one that is gone already is fine.
fn kill_group(pgid: i32) {
    if let Some(pid) = Pid::from_raw(pgid) {
        let _ = kill_process_group(pid, Signal::KILL);
    }
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
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        let n = match conn.read(&mut chunk).await {
            Ok(0) | Err(_) if buf.is_empty() => return Answer::NoResponse,
            Ok(0) | Err(_) => return Answer::Cut,
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
        return Answer::Done {
            status,
            body: buf[end + 4..end + 4 + length].to_vec(),
            close,
        };
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
                    if let Step::Post(name) = step {
                        last_id = item_id(&body).or(last_id);
                        seen.acked.push(name);
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
    kind: Kind,
    elapsed: Duration,
    counts: Counts,
    p50: Duration,
    p99: Duration,
    hups: usize,
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
             hups={} acked={} rows={} lost={} shutdown_ms={} destroyed={} statuses={}",
            self.kind.short(),
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

/// `q`-quantile of sorted latencies (zero when there are none).
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 * q) as usize).min(sorted.len() - 1);
    sorted[index]
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
async fn run(kind: Kind, peer: Option<&Peer>, seconds: u64) -> Run {
    let mut server = Server::start(kind, peer).await;
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
    let shutdown = server.wait_exit(term).await;
    let elapsed = term - started;
    let mut seen = Seen::default();
    for task in tasks {
        // A connection waits for its current request's answer: bounded, the drop kills
        // the server if one never comes.
        let one = tokio::time::timeout(PATIENCE, task)
            .await
            .unwrap_or_else(|_| panic!("{} left a request unanswered", kind.short()))
            .expect("a load task");
        let (total, c) = (&mut seen.counts, one.counts);
        total.ok += c.ok;
        total.failed += c.failed;
        total.dropped += c.dropped;
        total.unaccepted += c.unaccepted;
        total.cut += c.cut;
        total.status += c.status;
        total.connections += c.connections;
        seen.latencies.extend(one.latencies);
        seen.acked.extend(one.acked);
        seen.statuses.extend(one.statuses);
    }
    // Whatever the master left behind goes before the file is read.
    kill_group(i32::try_from(server.child.id()).expect("a pid fits an i32"));
    let stored = stored_names(&server.dir.join("demo.sqlite3"));
    let lost = seen.acked.iter().filter(|n| !stored.contains(*n)).count();
    let destroyed = server.count_lines("was destroyed");
    seen.latencies.sort_unstable();
    seen.statuses.sort_unstable();
    Run {
        kind,
        elapsed,
        counts: seen.counts,
        p50: quantile(&seen.latencies, 0.50),
        p99: quantile(&seen.latencies, 0.99),
        hups,
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

/// On SIGINT or SIGTERM, kills every server's process group before exiting.
async fn kill_groups_on_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    for pgid in GROUPS.lock().expect("groups lock").iter() {
        kill_group(*pgid);
    }
    std::process::exit(130);
}

fn main() {
    let seconds = std::env::var("TASKWARD_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SECONDS);
    let peer = std::env::var_os("TASKWARD_BENCH_GUNICORN").map(|gunicorn| Peer {
        gunicorn: PathBuf::from(gunicorn),
        app_dir: std::env::var_os("TASKWARD_BENCH_APP_DIR").map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/peer/demo"),
            PathBuf::from,
        ),
    });
    let mut kinds = vec![Kind::Taskward];
    match &peer {
        Some(peer) => {
            println!("gunicorn: {}", peer.gunicorn.display());
            kinds.push(Kind::Gunicorn);
        }
        None => println!(
            "TASKWARD_BENCH_GUNICORN is unset: the gunicorn row is skipped \
             (scripts/bench-demo installs Gunicorn + Uvicorn and sets it)"
        ),
    }
    // The load shares two threads, as the end-to-end tests' does.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        tokio::spawn(kill_groups_on_signal());
        let mut runs = Vec::new();
        for &kind in &kinds {
            let r = run(kind, peer.as_ref(), seconds).await;
            println!("{}", r.machine_line());
            runs.push(r);
        }
        println!();
        println!(
            "side by side: {WORKERS} workers each, {CONNECTIONS} keep-alive connections \
             (1 POST /items : 3 GET), {seconds} s, SIGHUP every {} s, then SIGTERM, loopback",
            HUP_EVERY.as_secs()
        );
        println!(
            "| server | requests/s | p50 | p99 | failed (dropped / unaccepted / cut / status) \
             | acked writes | lost acked writes | SIGTERM → master exit | \"was destroyed\" warnings |"
        );
        println!("|---|---|---|---|---|---|---|---|---|");
        for r in &runs {
            println!(
                "| {} | {:.0} | {} | {} | {} ({} / {} / {} / {}) | {} | {} | {} | {} |",
                r.kind.name(),
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
                r.shutdown.map_or_else(|| "never".to_owned(), ms),
                r.destroyed,
            );
        }
    });
}
