//! A bounded loopback load generator: keep-alive HTTP/1.1 connections, each sending
//! `GET` after `GET` until stopped, counting what every request got.
//!
//! HTTP/1.1 is written by hand so that every failure is seen as it happened: a request
//! on a keep-alive connection that closed before a response byte (`dropped`: the server
//! lost a request it had accepted) is told apart from a new connection refused or reset
//! before its first response (`unaccepted`: no worker ever accepted it), from a response
//! cut midway, and from an error status.
//!
//! [`Load::start_timed`] also keeps the latency of every request answered with 200 (the
//! `serve_reload` benchmark includes this file).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::http1::{Reply, read_reply};

/// What the requests got.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Answered with 200.
    pub(crate) ok: u64,
    /// Not answered with 200, for any reason: the sum of the four below.
    pub(crate) failed: u64,
    /// Sent on a connection that had been answered before, which closed before any byte
    /// of this response.
    pub(crate) dropped: u64,
    /// A new connection refused, or closed before any byte of its first response.
    pub(crate) unaccepted: u64,
    /// The response began and was cut.
    pub(crate) cut: u64,
    /// Answered with a status other than 200.
    pub(crate) status: u64,
    /// Connections opened.
    pub(crate) connections: u64,
}

impl Counts {
    /// Adds `other`'s counts to these (one connection's to the totals).
    pub(crate) fn add(&mut self, other: Counts) {
        self.ok += other.ok;
        self.failed += other.failed;
        self.dropped += other.dropped;
        self.unaccepted += other.unaccepted;
        self.cut += other.cut;
        self.status += other.status;
        self.connections += other.connections;
    }
}

/// Load in progress.
pub(crate) struct Load {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    tasks: Vec<JoinHandle<(Counts, Vec<Duration>)>>,
}

impl Load {
    /// Starts `connections` keep-alive connections sending `GET path` to `addr`.
    pub(crate) fn start(addr: SocketAddr, connections: usize, path: &'static str) -> Self {
        Self::spawn(addr, connections, path, Mode::default())
    }

    /// Like [`start`](Self::start), but each request asks for `Connection: close`: every
    /// request comes on a new connection, taken from the listen queue by whichever worker
    /// accepts first.
    pub(crate) fn start_closing(addr: SocketAddr, connections: usize, path: &'static str) -> Self {
        let mode = Mode {
            close: true,
            ..Mode::default()
        };
        Self::spawn(addr, connections, path, mode)
    }

    /// Like [`start`](Self::start), and keeps the latency of each request answered with
    /// 200 (from writing the request to the last byte of the response), for
    /// [`stop_timed`](Self::stop_timed).
    pub(crate) fn start_timed(addr: SocketAddr, connections: usize, path: &'static str) -> Self {
        let mode = Mode {
            timed: true,
            ..Mode::default()
        };
        Self::spawn(addr, connections, path, mode)
    }

    /// Like [`start_timed`](Self::start_timed), but each connection sends a request at
    /// most every `pace` (a fixed offered rate: a server that falls behind gets fewer; a
    /// late request does not make the next one early).
    pub(crate) fn start_paced(
        addr: SocketAddr,
        connections: usize,
        path: &'static str,
        pace: Duration,
    ) -> Self {
        let mode = Mode {
            timed: true,
            pace: Some(pace),
            ..Mode::default()
        };
        Self::spawn(addr, connections, path, mode)
    }

    fn spawn(addr: SocketAddr, connections: usize, path: &'static str, mode: Mode) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let tasks = (0..connections)
            .map(|_| tokio::spawn(connection(addr, path, stop.clone(), done.clone(), mode)))
            .collect();
        Self { stop, done, tasks }
    }

    /// Requests answered so far (any outcome).
    pub(crate) fn requests(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// Waits until at least `n` more requests than now have been answered (panics
    /// after [`PATIENCE`](super::PATIENCE): a test must end by itself).
    pub(crate) async fn run_for(&self, n: u64) {
        let target = self.requests() + n;
        let deadline = std::time::Instant::now() + super::PATIENCE;
        while self.requests() < target {
            assert!(
                std::time::Instant::now() < deadline,
                "{} of {n} requests answered",
                n - (target - self.requests())
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// Stops after each connection's current request; the totals.
    pub(crate) async fn stop(self) -> Counts {
        self.stop_timed().await.0
    }

    /// Stops after each connection's current request; the totals and the latencies kept
    /// (none unless started with [`start_timed`](Self::start_timed)), unsorted.
    pub(crate) async fn stop_timed(self) -> (Counts, Vec<Duration>) {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = Counts::default();
        let mut latencies = Vec::new();
        for task in self.tasks {
            let (c, l) = task.await.expect("load task");
            latencies.extend(l);
            total.add(c);
        }
        (total, latencies)
    }
}

/// How a connection sends its requests.
#[derive(Debug, Default, Clone, Copy)]
struct Mode {
    /// Keep the latency of each request answered with 200.
    timed: bool,
    /// Ask for `Connection: close`.
    close: bool,
    /// Send at most one request per this.
    pace: Option<Duration>,
}

async fn connection(
    addr: SocketAddr,
    path: &str,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    mode: Mode,
) -> (Counts, Vec<Duration>) {
    let Mode { timed, close, pace } = mode;
    let mut ticks = pace.map(|pace| {
        let mut ticks = tokio::time::interval(pace);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks
    });
    let mut counts = Counts::default();
    let mut latencies = Vec::new();
    let extra = if close { "Connection: close\r\n" } else { "" };
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}\r\n");
    let mut stream: Option<TcpStream> = None;
    // Whether the connection in `stream` has been answered at least once.
    let mut answered = false;
    let mut buf = Vec::with_capacity(4096);
    while !stop.load(Ordering::Relaxed) {
        if let Some(ticks) = ticks.as_mut() {
            ticks.tick().await;
        }
        let conn = match stream.as_mut() {
            Some(conn) => conn,
            None => match TcpStream::connect(addr).await {
                Ok(conn) => {
                    counts.connections += 1;
                    answered = false;
                    stream.insert(conn)
                }
                Err(_) => {
                    counts.failed += 1;
                    counts.unaccepted += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            },
        };
        let sent = Instant::now();
        let outcome = match conn.write_all(request.as_bytes()).await {
            Ok(()) => read_response(conn, &mut buf).await,
            Err(_) => Outcome::NoResponse,
        };
        done.fetch_add(1, Ordering::Relaxed);
        match outcome {
            Outcome::Ok { close } => {
                counts.ok += 1;
                if timed {
                    latencies.push(sent.elapsed());
                }
                answered = true;
                if close {
                    stream = None;
                }
            }
            Outcome::Status => {
                counts.failed += 1;
                counts.status += 1;
                answered = true;
                if close {
                    // Asked for `Connection: close`: the server closes it after answering.
                    stream = None;
                }
            }
            Outcome::NoResponse => {
                counts.failed += 1;
                if answered {
                    counts.dropped += 1;
                } else {
                    counts.unaccepted += 1;
                }
                stream = None;
            }
            Outcome::Cut => {
                counts.failed += 1;
                counts.cut += 1;
                stream = None;
            }
        }
    }
    (counts, latencies)
}

enum Outcome {
    Ok { close: bool },
    Status,
    NoResponse,
    Cut,
}

async fn read_response(conn: &mut TcpStream, buf: &mut Vec<u8>) -> Outcome {
    match read_reply(conn, buf).await {
        Reply::Done {
            status: 200, close, ..
        } => Outcome::Ok { close },
        Reply::Done { .. } => Outcome::Status,
        Reply::NoResponse => Outcome::NoResponse,
        Reply::Cut => Outcome::Cut,
    }
}
