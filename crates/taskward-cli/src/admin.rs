//! The master's admin socket, `taskward status` and `taskward top`: the workers (pid,
//! age, state, requests, last heartbeat) and the recent restarts with their reasons.
//!
//! Read [`Status`]. The protocol is as small as it gets: connect, read one JSON document
//! until the master closes the connection. Both ends are bounded in time: a reader that
//! does not take its reply within [`REPLY_TIMEOUT`] is dropped by the master, and
//! `taskward status` gives up on a master that does not answer within its timeout
//! ([`DEFAULT_QUERY_TIMEOUT`]; a stopped master still accepts connections).

use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

/// How long `taskward status` and `top` wait for a master's answer, connect to last byte,
/// unless told otherwise.
pub const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the master gives a reader to take its reply: a reader that never reads must
/// not hold a descriptor of the master's for ever.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest status a query reads: far past a real one (its worker count is bounded,
/// each `STATUS=` is at most a datagram), so that a forged socket cannot fill memory.
const MAX_STATUS: u64 = 64 * 1024 * 1024;

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

/// Binds the admin socket at `path`, removing a stale one that nobody answers on. The
/// socket is created with mode 0600 whatever the umask: the status is the master's
/// owner's business.
///
/// # Errors
///
/// If another process accepts there (kind `AddrInUse`), or binding fails.
pub(crate) fn bind(path: &Path) -> io::Result<UnixListener> {
    crate::listen::remove_stale_socket(path)
        .and_then(|()| crate::listen::bind_private(path))
        .and_then(UnixListener::from_std)
        .map_err(|error| {
            io::Error::new(
                error.kind(),
                format!("admin socket {}: {error}", path.display()),
            )
        })
}

/// How many replies the master writes at once. Each holds a descriptor for up to
/// [`REPLY_TIMEOUT`]: without a bound, readers arriving faster than that could still
/// use up the descriptors the master needs to start workers.
pub const MAX_READERS: usize = 64;

/// The replies being written.
static READERS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_READERS);

/// Writes `status` to a connected `taskward status`, then closes; gives up after
/// [`REPLY_TIMEOUT`] on a reader that does not take it, and closes at once when
/// [`MAX_READERS`] replies are being written already.
pub(crate) async fn reply(stream: UnixStream, status: Status) {
    reply_within(stream, status, REPLY_TIMEOUT, &READERS).await;
}

async fn reply_within(
    mut stream: UnixStream,
    status: Status,
    timeout: Duration,
    readers: &tokio::sync::Semaphore,
) {
    let Ok(_permit) = readers.try_acquire() else {
        tracing::debug!(
            readers = MAX_READERS,
            "status reader refused: as many replies are being written"
        );
        return;
    };
    let body = match serde_json::to_vec(&status) {
        Ok(body) => body,
        Err(error) => {
            tracing::error!(%error, "cannot encode the status");
            return;
        }
    };
    match tokio::time::timeout(timeout, stream.write_all(&body)).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::debug!(%error, "status reader went away"),
        Err(_) => tracing::debug!(?timeout, "status reader too slow: dropped"),
    }
}

/// Asks the master at `path` for its status, waiting at most
/// [`DEFAULT_QUERY_TIMEOUT`].
///
/// # Errors
///
/// If nobody answers at `path` in time, or the answer is not a status.
pub async fn query(path: &Path) -> io::Result<Status> {
    query_within(path, DEFAULT_QUERY_TIMEOUT).await
}

/// Asks the master at `path` for its status, waiting at most `timeout` from connect to
/// the last byte.
///
/// # Errors
///
/// If nobody answers at `path`, the answer does not end within `timeout` (kind
/// `TimedOut`), or it is not a status.
pub async fn query_within(path: &Path, timeout: Duration) -> io::Result<Status> {
    let asked = async {
        let stream = UnixStream::connect(path).await.map_err(|error| {
            io::Error::new(
                error.kind(),
                format!("no taskward serve answers at {}: {error}", path.display()),
            )
        })?;
        let mut body = Vec::new();
        stream.take(MAX_STATUS).read_to_end(&mut body).await?;
        Ok::<_, io::Error>(body)
    };
    let body = tokio::time::timeout(timeout, asked).await.map_err(|_| {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "no answer from {} within {} s (is the master stopped?)",
                path.display(),
                timeout.as_secs_f64()
            ),
        )
    })??;
    if body.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "{} closed the connection without a status (is the master busy with other readers?)",
                path.display()
            ),
        ));
    }
    serde_json::from_slice(&body).map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))
}

/// `taskward top` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TopError {
    /// The master did not answer the first time.
    #[error(transparent)]
    Query(io::Error),
    /// The output could not be written (closed early: `BrokenPipe`; full).
    #[error("cannot write the output")]
    Write(#[source] io::Error),
}

/// `taskward top`: the status of the master at `path` every `every`, `iterations` times
/// (or until the master goes away), written to `out`; on a terminal each frame replaces
/// the last. Each frame after the first also says how many requests per second the
/// workers served since the one before. Each query waits at most `timeout`.
///
/// # Errors
///
/// [`TopError::Query`] if nobody answers at `path` the first time, [`TopError::Write`]
/// if `out` cannot be written. A master that stops answering later ends the loop with a
/// last line saying so.
pub async fn top(
    path: &Path,
    every: Duration,
    iterations: Option<u64>,
    terminal: bool,
    timeout: Duration,
    out: &mut impl io::Write,
) -> Result<(), TopError> {
    let mut last: Option<(std::time::Instant, Status)> = None;
    let mut frame = 0;
    while iterations.is_none_or(|n| frame < n) {
        if frame > 0 {
            tokio::time::sleep(every).await;
        }
        let status = match query_within(path, timeout).await {
            Ok(status) => status,
            Err(error) if last.is_some() => {
                writeln!(out, "the master stopped answering: {error}")
                    .and_then(|()| out.flush())
                    .map_err(TopError::Write)?;
                return Ok(());
            }
            Err(error) => return Err(TopError::Query(error)),
        };
        let now = std::time::Instant::now();
        write_frame(out, &status, last.as_ref(), now, terminal, frame > 0)
            .map_err(TopError::Write)?;
        last = Some((now, status));
        frame += 1;
    }
    Ok(())
}

fn write_frame(
    out: &mut impl io::Write,
    status: &Status,
    last: Option<&(std::time::Instant, Status)>,
    now: std::time::Instant,
    terminal: bool,
    not_first: bool,
) -> io::Result<()> {
    if terminal {
        // Cursor home, clear the screen.
        write!(out, "\x1b[H\x1b[2J")?;
    } else if not_first {
        writeln!(out)?;
    }
    if let Some((at, before)) = last {
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
    out.flush()
}

/// Text from a worker (or a forged socket), made safe for a terminal: control
/// characters, and the bidirectional overrides that reorder what follows, written as
/// `\u{1b}`. An escape sequence in a `STATUS=` must not clear or repaint the operator's
/// terminal.
///
/// ```
/// assert_eq!(taskward_cli::admin::printable("ok\x1b[2J\n"), "ok\\u{1b}[2J\\u{a}");
/// ```
#[must_use]
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char =
        |c: char| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            shown.extend(c.escape_unicode());
        } else {
            shown.push(c);
        }
    }
    std::borrow::Cow::Owned(shown)
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
                printable(&w.state),
                w.age.as_secs_f64(),
                w.requests,
                w.since_heartbeat.as_secs_f64(),
                printable(&w.status)
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
                    printable(&r.reason)
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::temp_dir::TempDir;

    fn status_with(text: &str, workers: usize) -> Status {
        Status {
            master_pid: 1,
            started: SystemTime::now(),
            target: workers,
            stopping: false,
            workers: (0..workers)
                .map(|pid| WorkerStatus {
                    pid: u32::try_from(pid).expect("small"),
                    age: Duration::from_secs(1),
                    state: "ready".to_owned(),
                    requests: 0,
                    since_heartbeat: Duration::ZERO,
                    status: text.to_owned(),
                })
                .collect(),
            restarts: vec![RestartRecord {
                at: SystemTime::now(),
                pid: 7,
                reason: format!("crashed: {text}"),
            }],
        }
    }

    // Asserts: what a worker said in STATUS= reaches the terminal with its control
    // characters escaped (before: "\x1b[2J" cleared the operator's screen).
    #[test]
    fn worker_text_is_printed_with_control_characters_escaped() {
        let shown = status_with("serving\x1b[2J\x07\u{202e}evil\r", 1).to_string();
        assert!(
            !shown.contains(['\x1b', '\x07', '\u{202e}', '\r']),
            "{shown:?}"
        );
        assert!(
            shown.contains(r"serving\u{1b}[2J\u{7}\u{202e}evil\u{d}"),
            "{shown}"
        );
        assert_eq!(printable("plain: ünïcode"), "plain: ünïcode");
    }

    // Asserts: a reader that connects and never reads a large status is dropped after
    // the reply timeout (before: the reply waited for ever, holding a descriptor of the
    // master's), and the reader sees the reply cut short.
    #[tokio::test(start_paused = true)]
    async fn a_reader_that_never_reads_is_dropped() {
        let (master_end, mut reader) = UnixStream::pair().expect("a socket pair");
        // Far more than the socket buffers hold: 2,000 workers with 4 KiB statuses.
        let big = status_with(&"x".repeat(4096), 2000);
        let readers = tokio::sync::Semaphore::new(MAX_READERS);
        let replied = reply_within(master_end, big, Duration::from_secs(5), &readers);
        // Paused time moves on only when every task waits: the timeout is what ends it.
        tokio::time::timeout(Duration::from_secs(3600), replied)
            .await
            .expect("the reply gave up on the slow reader");
        let mut got = Vec::new();
        reader.read_to_end(&mut got).await.expect("read");
        assert!(
            serde_json::from_slice::<Status>(&got).is_err(),
            "the reply was cut short: {} bytes",
            got.len()
        );
    }

    // Asserts: `taskward status` against a socket that accepts and never answers (a
    // SIGSTOPped master) fails with a timeout naming the socket (before: hung for ever).
    #[tokio::test(start_paused = true)]
    async fn a_master_that_never_answers_times_out() {
        let dir = TempDir::new("admin");
        let path = dir.path().join("taskward.sock");
        let listener = UnixListener::bind(&path).expect("bind");
        let error = tokio::time::timeout(
            Duration::from_secs(3600),
            query_within(&path, Duration::from_secs(2)),
        )
        .await
        .expect("the query gave up by itself")
        .expect_err("no answer");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(
            error.to_string().contains(&path.display().to_string()),
            "{error}"
        );
        drop(listener);
    }

    // Asserts: while MAX_READERS replies are being written, another reader is closed at
    // once instead of holding a descriptor of the master's too; once one finishes, the
    // next reader gets its status.
    #[tokio::test(start_paused = true)]
    async fn readers_past_the_limit_are_closed_at_once() {
        let readers = tokio::sync::Semaphore::new(1);
        let (slow_end, _slow_reader) = UnixStream::pair().expect("a socket pair");
        let big = status_with(&"x".repeat(4096), 2000);
        let slow = reply_within(slow_end, big, Duration::from_secs(5), &readers);
        tokio::pin!(slow);
        // The slow reply fills the socket buffer and waits.
        assert!(
            tokio::time::timeout(Duration::from_millis(1), &mut slow)
                .await
                .is_err(),
            "the slow reply is still being written"
        );

        let (refused_end, mut refused) = UnixStream::pair().expect("a socket pair");
        reply_within(
            refused_end,
            status_with("ok", 1),
            Duration::from_secs(5),
            &readers,
        )
        .await;
        let mut got = Vec::new();
        refused.read_to_end(&mut got).await.expect("read");
        assert!(
            got.is_empty(),
            "closed without a reply: {} bytes",
            got.len()
        );

        slow.await;
        let (next_end, mut next) = UnixStream::pair().expect("a socket pair");
        reply_within(
            next_end,
            status_with("ok", 1),
            Duration::from_secs(5),
            &readers,
        )
        .await;
        let mut got = Vec::new();
        next.read_to_end(&mut got).await.expect("read");
        let status: Status = serde_json::from_slice(&got).expect("a whole status");
        assert_eq!(status.workers.len(), 1);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        // Asserts: whatever a worker writes in STATUS=, what reaches the terminal has no
        // control character or bidi override left, and plain text is shown unchanged.
        #[test]
        fn printable_leaves_no_control_characters(text in proptest::prelude::any::<String>()) {
            let shown = printable(&text);
            let unsafe_char = |c: char| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
            proptest::prop_assert!(!shown.chars().any(unsafe_char), "{shown:?}");
            if !text.chars().any(unsafe_char) {
                proptest::prop_assert_eq!(shown.as_ref(), text.as_str());
            }
        }
    }
}
