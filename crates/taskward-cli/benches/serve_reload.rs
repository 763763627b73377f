//! `taskward serve` next to Gunicorn + Uvicorn workers under the same bounded load: steady,
//! with a SIGHUP rolling reload every few seconds, and with `--max-requests 200`.
//!
//! Each server runs 2 workers on one loopback socket: `taskward serve -w 2 --
//! taskward-hello`, and `gunicorn -w 2 -k uvicorn.workers.UvicornWorker app:app` serving
//! the FastAPI twin in `bench/peer/app.py`, both with `--graceful-timeout 30`. The load is
//! the end-to-end tests' generator (`tests/common/load.rs`): `CONNECTIONS` keep-alive
//! connections sending `GET /` one after another for `TASKWARD_BENCH_SECONDS` (20 by
//! default), every failure classified and every latency kept. Beside it, a probe opens a
//! new connection every `PROBE_EVERY` and times its first response byte: a new connection
//! waits in the listen backlog while no worker accepts, so its longest wait bounds the time
//! with no worker accepting from above (it also holds the probe's own service time, so
//! read it next to the steady run's).
//!
//! A rolling reload is timed from the SIGHUP until no worker present at the HUP is left and
//! `WORKERS` newer ones are ready: for taskward from its admin socket, for Gunicorn from the
//! master's children in `/proc` and the workers' "Application startup complete." lines.
//!
//! The steady and recycling scenarios run twice: with the load as fast as each server
//! answers, and at a fixed offered rate (`RATE`) that both servers can answer, so that
//! they recycle equally often; latencies of paced requests are measured from their send
//! (a request delayed by a slow answer to the one before is not counted as late).
//!
//! Every scenario runs `TASKWARD_BENCH_ROUNDS` times (3 by default), interleaved, and the
//! recycling ratios compare a round's run with the steady run of the same round. The
//! recycling table also shows the requests answered per worker that served (200 would be
//! exact recycling).
//!
//! Prints one table per scenario and a `serve-reload:` line per row for tools. Gunicorn's
//! rows are skipped unless `TASKWARD_BENCH_GUNICORN` names its executable (`scripts/
//! bench-serve` installs it in a venv and sets it, with `TASKWARD_BENCH_APP_DIR`).
//!
//! Every wait is bounded, and the servers run in process groups of their own that are
//! killed when a run ends, panics, or the bench gets SIGINT or SIGTERM.
//!
//! ```text
//! scripts/bench-serve
//! ```
#![expect(clippy::print_stdout, reason = "a benchmark prints its tables")]

#[path = "../tests/common/ansi.rs"]
mod ansi;
#[path = "../tests/common/bench_server.rs"]
mod bench_server;
#[path = "../../taskward-http/tests/common/http1.rs"]
mod http1;
#[path = "../tests/common/load.rs"]
#[expect(
    dead_code,
    reason = "the end-to-end tests' load generator; the bench uses its timed half"
)]
mod load;

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bench_server::{
    Kind, PATIENCE, Peer, Server, env_number, fresh_dir, kill_groups_on_signal, quantile,
};
use rustix::process::Signal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use load::{Counts, Load};

/// Keep-alive connections of the load.
const CONNECTIONS: usize = 16;
/// Worker processes of each server.
const WORKERS: usize = 2;
/// Seconds of load per run, unless `TASKWARD_BENCH_SECONDS` says otherwise.
const SECONDS: u64 = 20;
/// Rounds of every scenario, unless `TASKWARD_BENCH_ROUNDS` says otherwise. Each ratio
/// to steady compares runs of the same round, minutes apart rather than a whole bench
/// apart: on a shared machine the background load moves more than that.
const ROUNDS: usize = 3;
/// Time between two SIGHUPs in the reload scenario; none is sent in the last interval, so
/// a 20 s run gets 5 reloads.
const HUP_EVERY: Duration = Duration::from_secs(3);
/// `--graceful-timeout` of both servers, in seconds.
const GRACEFUL_TIMEOUT: u64 = 30;
/// Requests per second offered in the `-at-rate` scenarios, unless `TASKWARD_BENCH_RATE`
/// says otherwise: below what either server answers at most, so that both recycle
/// equally often (25 workers a second with `--max-requests 200`).
const RATE: u32 = 5_000;
/// `--max-requests` of the recycling scenarios.
const MAX_REQUESTS: &str = "200";
/// How often a reload in progress is checked on.
const POLL: Duration = Duration::from_millis(10);
/// Pause between two new-connection probes.
const PROBE_EVERY: Duration = Duration::from_millis(10);

const TASKWARD: &str = env!("CARGO_BIN_EXE_taskward");
const HELLO: &str = env!("CARGO_BIN_EXE_taskward-hello");

/// The three scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Steady,
    Reloads,
    MaxRequests,
    /// `Steady` at the fixed offered rate.
    SteadyAtRate,
    /// `MaxRequests` at the fixed offered rate.
    MaxRequestsAtRate,
}

impl Scenario {
    const ALL: [Scenario; 5] = [
        Scenario::Steady,
        Scenario::Reloads,
        Scenario::MaxRequests,
        Scenario::SteadyAtRate,
        Scenario::MaxRequestsAtRate,
    ];

    fn name(self) -> &'static str {
        match self {
            Scenario::Steady => "steady",
            Scenario::Reloads => "reloads",
            Scenario::MaxRequests => "max-requests",
            Scenario::SteadyAtRate => "steady-at-rate",
            Scenario::MaxRequestsAtRate => "max-requests-at-rate",
        }
    }

    fn recycles(self) -> bool {
        matches!(self, Scenario::MaxRequests | Scenario::MaxRequestsAtRate)
    }

    fn paced(self) -> bool {
        matches!(self, Scenario::SteadyAtRate | Scenario::MaxRequestsAtRate)
    }

    /// The steady scenario a recycling one is compared with.
    fn baseline(self) -> Scenario {
        if self.paced() {
            Scenario::SteadyAtRate
        } else {
            Scenario::Steady
        }
    }
}

/// Starts `kind` with `WORKERS` workers serving `/` on `127.0.0.1:0` for `scenario`, and
/// waits until every worker is ready.
fn start(kind: Kind, peer: Option<&Peer>, scenario: Scenario) -> Server {
    let dir = fresh_dir(&format!("{}-{}", kind.name(), scenario.name()));
    let graceful = GRACEFUL_TIMEOUT.to_string();
    let command = match kind {
        Kind::Taskward => {
            let mut c = Command::new(TASKWARD);
            c.args(["serve", "-w", "2", "-b", "127.0.0.1:0"])
                .args(["--graceful-timeout", &graceful]);
            if scenario.recycles() {
                c.args(["--max-requests", MAX_REQUESTS]);
            }
            c.args(["--", HELLO])
                .env("RUST_LOG", "info")
                .env("NO_COLOR", "1");
            c
        }
        Kind::Gunicorn => {
            let peer = peer.expect("gunicorn runs only with a peer");
            let mut c = Command::new(&peer.gunicorn);
            c.args(["-w", "2", "-k", "uvicorn.workers.UvicornWorker", "app:app"])
                .arg("--chdir")
                .arg(&peer.app_dir)
                .args(["--bind", "127.0.0.1:0", "--graceful-timeout", &graceful])
                // Gunicorn 27 opens a control socket in $HOME by default.
                .arg("--no-control-socket")
                .env("PYTHONDONTWRITEBYTECODE", "1");
            if scenario.recycles() {
                c.args(["--max-requests", MAX_REQUESTS]);
            }
            c
        }
    };
    let server = Server::start(kind, command, dir);
    let ready = server.kind.ready_line();
    server.wait_log(|lines| {
        let pids: HashSet<u32> = lines
            .iter()
            .filter(|l| l.contains(ready))
            .filter_map(|l| kind.line_pid(l))
            .collect();
        (pids.len() >= WORKERS).then_some(())
    });
    server
}

/// The workers now (all, and those ready), or `None` if the server did not answer.
async fn workers(server: &Server) -> Option<Workers> {
    match server.kind {
        Kind::Taskward => {
            let status = taskward_cli::admin::query(&server.dir.join("taskward.sock"))
                .await
                .ok()?;
            Some(Workers {
                all: status.workers.iter().map(|w| w.pid).collect(),
                ready: status
                    .workers
                    .iter()
                    .filter(|w| w.state == "ready")
                    .map(|w| w.pid)
                    .collect(),
            })
        }
        Kind::Gunicorn => {
            // Gunicorn's master is single-threaded: all its children are its main
            // thread's.
            let pid = server.pid();
            let children =
                std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
            let all: Vec<u32> = children
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect();
            let logged = server.ready_pids();
            let ready = all.iter().copied().filter(|p| logged.contains(p)).collect();
            Some(Workers { all, ready })
        }
    }
}

/// SIGTERM, a bounded wait for the master to exit; the drop kills what is left.
fn stop(mut server: Server) {
    server.signal(Signal::TERM);
    let deadline = Instant::now() + Duration::from_secs(GRACEFUL_TIMEOUT + 5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = server.child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A server's workers at one moment.
struct Workers {
    all: Vec<u32>,
    ready: Vec<u32>,
}

/// New connections opened one at a time during a run.
#[derive(Debug, Default, Clone, Copy)]
struct Probes {
    /// Probes answered with 200.
    ok: u64,
    /// Probes refused, reset, cut, answered with another status, or unanswered within
    /// `PATIENCE`.
    failed: u64,
    /// The longest wait of an answered probe for its first response byte.
    max_wait: Duration,
}

/// Opens a new connection every `PROBE_EVERY` until `end`, one at a time, timing each from
/// `connect` to the first byte of its response.
async fn probe(addr: SocketAddr, end: Instant) -> Probes {
    let mut probes = Probes::default();
    while Instant::now() < end {
        let started = Instant::now();
        let answer = tokio::time::timeout(PATIENCE, async {
            let mut stream = TcpStream::connect(addr).await.ok()?;
            stream
                .write_all(b"GET / HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")
                .await
                .ok()?;
            let mut response = vec![0u8; 1];
            if stream.read(&mut response).await.ok()? == 0 {
                return None;
            }
            let waited = started.elapsed();
            stream.read_to_end(&mut response).await.ok()?;
            response.starts_with(b"HTTP/1.1 200").then_some(waited)
        })
        .await;
        match answer {
            Ok(Some(waited)) => {
                probes.ok += 1;
                probes.max_wait = probes.max_wait.max(waited);
            }
            Ok(None) | Err(_) => probes.failed += 1,
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
    probes
}

/// A SIGHUP whose reload is not done yet.
struct Pending {
    /// Its place in the times returned.
    index: usize,
    sent: Instant,
    old: Vec<u32>,
}

/// Sends a SIGHUP every `HUP_EVERY` until `end` (none in the last interval) and times each
/// rolling reload; waits for the last ones at most the graceful timeout plus `PATIENCE`
/// after `end`. `None` for a reload not done by then.
async fn reloads(server: &Server, started: Instant, end: Instant) -> Vec<Option<Duration>> {
    let give_up = end + Duration::from_secs(GRACEFUL_TIMEOUT) + PATIENCE;
    let mut next = started + HUP_EVERY;
    let mut pending: Vec<Pending> = Vec::new();
    let mut times: Vec<Option<Duration>> = Vec::new();
    loop {
        let now = Instant::now();
        if next + HUP_EVERY <= end && now >= next {
            next += HUP_EVERY;
            if let Some(workers) = workers(server).await {
                pending.push(Pending {
                    index: times.len(),
                    sent: Instant::now(),
                    old: workers.all,
                });
                times.push(None);
                server.signal(Signal::HUP);
            }
        }
        if !pending.is_empty() {
            if let Some(workers) = workers(server).await {
                let at = Instant::now();
                pending.retain(|p| {
                    let done = !workers.all.iter().any(|pid| p.old.contains(pid))
                        && workers
                            .ready
                            .iter()
                            .filter(|pid| !p.old.contains(pid))
                            .count()
                            >= WORKERS;
                    if done {
                        times[p.index] = Some(at - p.sent);
                    }
                    !done
                });
            }
        }
        let hups_left = next + HUP_EVERY <= end;
        if (!hups_left && pending.is_empty()) || now >= give_up {
            return times;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Figures of one server in one scenario.
struct Run {
    kind: Kind,
    scenario: Scenario,
    round: usize,
    elapsed: Duration,
    counts: Counts,
    p50: Duration,
    p99: Duration,
    probes: Probes,
    /// Per SIGHUP: the time its rolling reload took, `None` if never done.
    reloads: Vec<Option<Duration>>,
    /// Workers recycled for `--max-requests`.
    recycled: usize,
}

impl Run {
    fn per_second(&self) -> f64 {
        self.counts.ok as f64 / self.elapsed.as_secs_f64()
    }

    /// Requests sent on an open keep-alive connection or a new one and closed before any
    /// byte of a response.
    fn resets(&self) -> u64 {
        self.counts.dropped + self.counts.unaccepted
    }

    /// Requests answered per worker that served in the run: the `WORKERS` there at the
    /// start and one more per recycling. With `--max-requests 200` the ideal is 200; a
    /// worker serving past its limit (its replacement not ready yet) raises it.
    fn per_worker(&self) -> f64 {
        self.counts.ok as f64 / (self.recycled + WORKERS) as f64
    }

    /// Done reload times, sorted.
    fn reload_times(&self) -> Vec<Duration> {
        let mut done: Vec<Duration> = self.reloads.iter().flatten().copied().collect();
        done.sort_unstable();
        done
    }

    /// One `serve-reload:` line for tools.
    fn machine_line(&self) -> String {
        let mut line = format!(
            "serve-reload: scenario={} server={} round={} seconds={:.3} ok={} requests_per_s={:.1} \
             p50_us={} p99_us={} failed={} dropped={} unaccepted={} cut={} status={} \
             connections={} probes_ok={} probes_failed={} probe_max_wait_us={}",
            self.scenario.name(),
            self.kind.name(),
            self.round,
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
            self.probes.ok,
            self.probes.failed,
            self.probes.max_wait.as_micros(),
        );
        if self.scenario == Scenario::Reloads {
            let times: Vec<String> = self
                .reloads
                .iter()
                .map(|t| t.map_or_else(|| "never".to_owned(), |t| t.as_millis().to_string()))
                .collect();
            let _ = write!(line, " reload_ms={}", times.join(","));
        }
        if self.scenario.recycles() {
            let _ = write!(line, " recycled={}", self.recycled);
            let _ = write!(line, " requests_per_worker={:.0}", self.per_worker());
        }
        line
    }
}

/// Runs one scenario against one server.
async fn run(
    kind: Kind,
    peer: Option<&Peer>,
    scenario: Scenario,
    round: usize,
    seconds: u64,
    rate: u32,
) -> Run {
    let server = start(kind, peer, scenario);
    let started = Instant::now();
    let end = started + Duration::from_secs(seconds);
    let load = if scenario.paced() {
        let pace = Duration::from_secs(CONNECTIONS as u64) / rate;
        Load::start_paced(server.addr, CONNECTIONS, "/", pace)
    } else {
        Load::start_timed(server.addr, CONNECTIONS, "/")
    };
    let stopped = tokio::spawn(async move {
        tokio::time::sleep_until(end.into()).await;
        let (counts, latencies) = load.stop_timed().await;
        (counts, latencies, started.elapsed())
    });
    let probes = tokio::spawn(probe(server.addr, end));
    let reload_times = if scenario == Scenario::Reloads {
        reloads(&server, started, end).await
    } else {
        Vec::new()
    };
    // A connection waits for its current request's answer: bounded, so that a server that
    // stops answering fails the run (and is killed by the drop) rather than hangs it.
    let (counts, mut latencies, elapsed) = tokio::time::timeout(PATIENCE, stopped)
        .await
        .unwrap_or_else(|_| panic!("{} left requests unanswered for {PATIENCE:?}", kind.name()))
        .expect("the load task");
    let probes = probes.await.expect("the probe task");
    let recycled = server.count_lines(kind.recycle_line());
    stop(server);
    latencies.sort_unstable();
    Run {
        kind,
        scenario,
        round,
        elapsed,
        counts,
        p50: quantile(&latencies, 0.50),
        p99: quantile(&latencies, 0.99),
        probes,
        reloads: reload_times,
        recycled,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// The baseline run of a recycling run: same server, same round, same kind of load.
fn steady_of<'a>(runs: &'a [Run], run: &Run) -> Option<&'a Run> {
    runs.iter().find(|r| {
        r.kind == run.kind && r.round == run.round && r.scenario == run.scenario.baseline()
    })
}

/// A row's name: the server, and its round when there are several.
fn row_name(r: &Run, rounds: usize) -> String {
    if rounds > 1 {
        format!("{} (round {})", r.kind.name(), r.round)
    } else {
        r.kind.name().to_owned()
    }
}

/// The median of `values` (NaN if empty).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_unstable_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

fn print_table(scenario: Scenario, runs: &[Run], seconds: u64, rounds: usize, rate: u32) {
    let load = if scenario.paced() {
        format!("{rate} requests/s offered")
    } else {
        format!("{CONNECTIONS} keep-alive connections as fast as answered")
    };
    let mut rows: Vec<&Run> = runs.iter().filter(|r| r.scenario == scenario).collect();
    rows.sort_by_key(|r| (r.kind.name(), r.round));
    println!();
    match scenario {
        Scenario::Steady | Scenario::SteadyAtRate => {
            println!("{}: {load}, {seconds} s, no signals", scenario.name());
            println!(
                "| server | requests/s | p50 | p99 | failed | reset before response | max new-connection wait |"
            );
            println!("|---|---|---|---|---|---|---|");
            for r in &rows {
                println!(
                    "| {} | {:.0} | {} | {} | {} | {} | {} |",
                    row_name(r, rounds),
                    r.per_second(),
                    ms(r.p50),
                    ms(r.p99),
                    r.counts.failed,
                    r.resets(),
                    ms(r.probes.max_wait),
                );
            }
        }
        Scenario::Reloads => {
            println!(
                "reloads: SIGHUP every {} s, {seconds} s of load",
                HUP_EVERY.as_secs()
            );
            println!(
                "| server | requests/s | p99 | failed | reset before response (dropped + unaccepted) | reloads done | time per reload min / median / max | max new-connection wait | probes failed |"
            );
            println!("|---|---|---|---|---|---|---|---|---|");
            for r in &rows {
                let times = r.reload_times();
                let spread = if times.is_empty() {
                    "-".to_owned()
                } else {
                    format!(
                        "{} / {} / {}",
                        ms(times[0]),
                        ms(times[times.len() / 2]),
                        ms(times[times.len() - 1])
                    )
                };
                println!(
                    "| {} | {:.0} | {} | {} | {} ({} + {}) | {} of {} | {} | {} | {} |",
                    row_name(r, rounds),
                    r.per_second(),
                    ms(r.p99),
                    r.counts.failed,
                    r.resets(),
                    r.counts.dropped,
                    r.counts.unaccepted,
                    times.len(),
                    r.reloads.len(),
                    spread,
                    ms(r.probes.max_wait),
                    r.probes.failed,
                );
            }
        }
        Scenario::MaxRequests | Scenario::MaxRequestsAtRate => {
            println!(
                "{}: --max-requests {MAX_REQUESTS}, {load}, {seconds} s",
                scenario.name()
            );
            println!(
                "| server | requests/s | vs steady | p99 | vs steady p99 | failed | reset before response | workers recycled | requests per worker | max new-connection wait |"
            );
            println!("|---|---|---|---|---|---|---|---|---|---|");
            let ratios = |r: &Run| {
                steady_of(runs, r).map_or((f64::NAN, f64::NAN), |s| {
                    (
                        r.per_second() / s.per_second(),
                        r.p99.as_secs_f64() / s.p99.as_secs_f64(),
                    )
                })
            };
            for r in &rows {
                let (ratio, p99_ratio) = ratios(r);
                println!(
                    "| {} | {:.0} | {ratio:.2}x | {} | {p99_ratio:.2}x | {} | {} | {} | {:.0} | {} |",
                    row_name(r, rounds),
                    r.per_second(),
                    ms(r.p99),
                    r.counts.failed,
                    r.resets(),
                    r.recycled,
                    r.per_worker(),
                    ms(r.probes.max_wait),
                );
            }
            if rounds > 1 {
                let mut kinds: Vec<Kind> = rows.iter().map(|r| r.kind).collect();
                kinds.dedup();
                for kind in kinds {
                    let (throughput, p99): (Vec<f64>, Vec<f64>) = rows
                        .iter()
                        .filter(|r| r.kind == kind)
                        .map(|r| ratios(r))
                        .unzip();
                    println!(
                        "{}: median over {rounds} rounds: {:.2}x steady requests/s, {:.2}x steady p99",
                        kind.name(),
                        median(throughput),
                        median(p99),
                    );
                }
            }
        }
    }
    for r in &rows {
        println!("{}", r.machine_line());
    }
}

fn main() {
    let seconds = env_number("TASKWARD_BENCH_SECONDS").unwrap_or(SECONDS);
    let rate = env_number("TASKWARD_BENCH_RATE")
        .filter(|&n| n > 0)
        .unwrap_or(RATE);
    let rounds = env_number("TASKWARD_BENCH_ROUNDS")
        .filter(|&n| n > 0)
        .unwrap_or(ROUNDS);
    let peer = Peer::from_env(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/peer"));
    let mut kinds = vec![Kind::Taskward];
    match &peer {
        Some(peer) => {
            println!("gunicorn: {}", peer.gunicorn.display());
            kinds.push(Kind::Gunicorn);
        }
        None => println!(
            "TASKWARD_BENCH_GUNICORN is unset: the gunicorn rows are skipped \
             (scripts/bench-serve installs Gunicorn + Uvicorn and sets it)"
        ),
    }
    // The load and the probe share two threads, as the end-to-end tests do.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        tokio::spawn(kill_groups_on_signal());
        let mut runs = Vec::new();
        for round in 1..=rounds {
            for scenario in Scenario::ALL {
                for &kind in &kinds {
                    let r = run(kind, peer.as_ref(), scenario, round, seconds, rate).await;
                    println!("{}", r.machine_line());
                    runs.push(r);
                }
            }
        }
        println!();
        println!(
            "taskward serve vs gunicorn: {WORKERS} workers each, {CONNECTIONS} keep-alive \
             connections, GET /, loopback"
        );
        for scenario in Scenario::ALL {
            print_table(scenario, &runs, seconds, rounds, rate);
        }
    });
}
