//! The master's admin socket, `taskward status` and `taskward top`: the workers (pid,
//! age, state, requests, last heartbeat) and the recent restarts with their reasons.
//!
//! Read [`Status`]. The protocol is as small as it gets: connect, read one JSON document
//! until the master closes the connection.

use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

/// What `taskward status` shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    /// The master's pid.
    pub master_pid: u32,
    /// When the master started.
    pub started: SystemTime,
    /// How many workers it keeps.
    pub target: usize,
    /// Whether it is stopping.
    pub stopping: bool,
    /// Its workers, oldest first.
    pub workers: Vec<WorkerStatus>,
    /// Recent restarts and replacements, oldest first.
    pub restarts: Vec<RestartRecord>,
}

/// One worker, as the master knows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerStatus {
    /// Its pid.
    pub pid: u32,
    /// Time since it was started.
    pub age: Duration,
    /// `starting`, `ready`, `retiring` (its `max_requests` replacement is ready; it
    /// serves on to its limit) or `stopping`.
    pub state: String,
    /// Requests begun, as it last reported.
    pub requests: u64,
    /// Time since its last heartbeat (or its start).
    pub since_heartbeat: Duration,
    /// Its last `STATUS=`.
    pub status: String,
}

/// A worker restarted, replaced or killed, and why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestartRecord {
    /// When.
    pub at: SystemTime,
    /// The pid of the worker that went away.
    pub pid: u32,
    /// Why: `reload (SIGHUP)`, `max_requests (…)`, `crashed: exit code 1`, …
    pub reason: String,
}

/// Binds the admin socket at `path`, removing a stale one that nobody answers on.
///
/// # Errors
///
/// If another master answers there, or binding fails.
pub(crate) fn bind(path: &Path) -> io::Result<UnixListener> {
    crate::listen::remove_stale_socket(path)
        .and_then(|()| UnixListener::bind(path))
        .map_err(|error| {
            io::Error::new(
                error.kind(),
                format!("admin socket {}: {error}", path.display()),
            )
        })
}

/// Writes `status` to a connected `taskward status`, then closes.
pub(crate) async fn reply(mut stream: UnixStream, status: Status) {
    let body = match serde_json::to_vec(&status) {
        Ok(body) => body,
        Err(error) => {
            tracing::error!(%error, "cannot encode the status");
            return;
        }
    };
    if let Err(error) = stream.write_all(&body).await {
        tracing::debug!(%error, "status reader went away");
    }
}

/// Asks the master at `path` for its status.
///
/// # Errors
///
/// If nobody answers at `path`, or the answer is not a status.
pub async fn query(path: &Path) -> io::Result<Status> {
    let mut stream = UnixStream::connect(path).await.map_err(|error| {
        io::Error::new(
            error.kind(),
            format!("no taskward serve answers at {}: {error}", path.display()),
        )
    })?;
    let mut body = Vec::new();
    stream.read_to_end(&mut body).await?;
    serde_json::from_slice(&body).map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))
}

/// `taskward top`: the status of the master at `path` every `every`, `iterations` times
/// (or until the master goes away), written to `out`; on a terminal each frame replaces
/// the last. Each frame after the first also says how many requests per second the
/// workers served since the one before.
///
/// # Errors
///
/// If nobody answers at `path` the first time, or `out` cannot be written. A master
/// that stops answering later ends the loop with a last line saying so.
pub async fn top(
    path: &Path,
    every: Duration,
    iterations: Option<u64>,
    terminal: bool,
    out: &mut impl io::Write,
) -> io::Result<()> {
    let mut last: Option<(std::time::Instant, Status)> = None;
    let mut frame = 0;
    while iterations.is_none_or(|n| frame < n) {
        if frame > 0 {
            tokio::time::sleep(every).await;
        }
        let status = match query(path).await {
            Ok(status) => status,
            Err(error) if last.is_some() => {
                writeln!(out, "the master stopped answering: {error}")?;
                return out.flush();
            }
            Err(error) => return Err(error),
        };
        let now = std::time::Instant::now();
        if terminal {
            // Cursor home, clear the screen.
            write!(out, "\x1b[H\x1b[2J")?;
        } else if frame > 0 {
            writeln!(out)?;
        }
        if let Some((at, before)) = &last {
            let served: u64 = status
                .workers
                .iter()
                .map(|w| {
                    let earlier = before.workers.iter().find(|b| b.pid == w.pid);
                    w.requests.saturating_sub(earlier.map_or(0, |b| b.requests))
                })
                .sum();
            let seconds = now.duration_since(*at).as_secs_f64();
            writeln!(out, "{:.0} requests/s", served as f64 / seconds)?;
        }
        write!(out, "{status}")?;
        out.flush()?;
        last = Some((now, status));
        frame += 1;
    }
    Ok(())
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = if self.stopping { "stopping" } else { "running" };
        writeln!(
            f,
            "master {} {state}, {} worker(s) wanted, {} running",
            self.master_pid,
            self.target,
            self.workers.len()
        )?;
        writeln!(
            f,
            "{:>8}  {:<9} {:>9} {:>10} {:>10}  status",
            "pid", "state", "age", "requests", "heartbeat"
        )?;
        for w in &self.workers {
            writeln!(
                f,
                "{:>8}  {:<9} {:>8.1}s {:>10} {:>8.1}s ago  {}",
                w.pid,
                w.state,
                w.age.as_secs_f64(),
                w.requests,
                w.since_heartbeat.as_secs_f64(),
                w.status
            )?;
        }
        if !self.restarts.is_empty() {
            writeln!(f, "recent restarts:")?;
            let now = SystemTime::now();
            for r in &self.restarts {
                let ago = now.duration_since(r.at).unwrap_or_default();
                writeln!(
                    f,
                    "  {:>8.1}s ago  pid {:>8}  {}",
                    ago.as_secs_f64(),
                    r.pid,
                    r.reason
                )?;
            }
        }
        Ok(())
    }
}
