//! The master's end of systemd's `sd_notify` protocol: the socket its workers find in
//! `NOTIFY_SOCKET`, and the parser of what they send. Read [`NotifySocket`] first.
//!
//! A notification is one datagram of newline-separated `KEY=VALUE` assignments, such as
//! `READY=1\nSTATUS=listening`. The kernel attaches the sender's credentials, so the
//! master learns which worker spoke without trusting the message. See
//! [`Notification`] for the keys understood; others are kept and otherwise ignored, as
//! systemd does.

use std::ffi::OsString;
use std::io;
use std::io::IoSliceMut;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags,
    SocketAddrUnix, SocketFlags, SocketType,
};
use rustix::process::Pid;
use taskward_http::protocol::notify as field;
use tokio::io::Interest;

/// The largest notification accepted, in bytes (the protocol's): a longer datagram is
/// refused with [`NotifyError::TooLong`], never parsed cut short.
pub use taskward_http::protocol::MAX_DATAGRAM;

/// How much of a bad line or value an error quotes, in bytes.
const EXCERPT: usize = 64;

/// The master's notify socket: a unix datagram socket that receives [`Datagram`]s
/// stamped with the sender's pid.
///
/// Bind it in a directory only the master can write to, and give its path to each
/// worker as `NOTIFY_SOCKET`. The socket file is removed when this is dropped.
///
/// # Examples
///
/// ```
/// use std::os::unix::net::UnixDatagram;
/// use taskward_cli::notify::NotifySocket;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = std::env::temp_dir().join(format!("taskward-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let socket = NotifySocket::bind(dir.join("notify.sock"))?;
///
/// // What a worker does with $NOTIFY_SOCKET.
/// UnixDatagram::unbound()?.send_to(b"READY=1\nSTATUS=serving", socket.path())?;
///
/// let datagram = socket.recv().await?;
/// assert_eq!(datagram.pid, rustix::process::Pid::from_raw(std::process::id() as i32));
/// assert!(datagram.message.ready);
/// assert_eq!(datagram.message.status.as_deref(), Some("serving"));
/// # drop(socket);
/// # std::fs::remove_dir(&dir)?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct NotifySocket {
    socket: tokio::net::UnixDatagram,
    path: PathBuf,
}

/// One notification and who sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Datagram {
    /// The sender's pid, from the kernel (`SCM_CREDENTIALS`), not from the message.
    /// `None` if the datagram carried no credentials; such a message cannot be
    /// attributed to a worker and should be ignored.
    pub pid: Option<Pid>,
    /// What it said.
    pub message: Notification,
}

/// The parsed content of a notification. Assignments that appear more than once count
/// the last time, as in systemd.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Notification {
    /// `READY=1`: startup is finished; the worker serves.
    pub ready: bool,
    /// `STOPPING=1`: the worker is shutting down.
    pub stopping: bool,
    /// `RELOADING=1`: the worker is reloading its own configuration.
    pub reloading: bool,
    /// `WATCHDOG=1` or `WATCHDOG=trigger`.
    pub watchdog: Option<Watchdog>,
    /// `STATUS=…`: free text for `taskward status`; may be empty (clears the status).
    pub status: Option<String>,
    /// `MAINPID=…`: the worker's main process is another pid.
    pub main_pid: Option<Pid>,
    /// `ERRNO=…`: the worker failed with this errno.
    pub errno: Option<i32>,
    /// `X_TASKWARD_REQUESTS=…`: requests the worker has served so far, for
    /// `max_requests` recycling and `taskward top`.
    pub requests: Option<u64>,
    /// Other assignments, in order, kept for logging; systemd ignores them too.
    pub unknown: Vec<(String, String)>,
    /// Lines that were not valid (not `KEY=VALUE`, a bad value for a known key, not
    /// UTF-8): skipped one by one, as systemd skips what it does not understand, so that
    /// a stray line cannot cost a worker its `READY=1`. The first one's error, and how
    /// many there were.
    pub rejected: Option<(NotifyError, usize)>,
}

/// A `WATCHDOG=` assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Watchdog {
    /// `WATCHDOG=1`: a heartbeat; the worker is alive.
    Ping,
    /// `WATCHDOG=trigger`: the worker asks to be treated as if its heartbeat had stopped.
    Trigger,
}

/// [`NotifySocket::bind`] failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot bind the notify socket at {}", .path.display())]
#[non_exhaustive]
pub struct BindError {
    /// Where the socket was to be bound.
    pub path: PathBuf,
    /// What the operating system said.
    #[source]
    pub source: io::Error,
}

/// [`NotifySocket::recv`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecvError {
    /// A datagram arrived but is not a valid notification. The socket is fine: log this
    /// and call `recv` again.
    #[error("malformed notification from {}", sender(*.pid))]
    Malformed {
        /// The sender's pid, if the kernel supplied it.
        pid: Option<Pid>,
        /// What is wrong with the datagram.
        #[source]
        source: NotifyError,
    },
    /// Receiving failed.
    #[error("cannot receive from the notify socket")]
    Io(#[source] io::Error),
}

/// A datagram is not a valid notification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// The datagram is empty or has only empty lines.
    #[error("empty notification")]
    Empty,
    /// The datagram is longer than [`MAX_DATAGRAM`].
    #[error("notification of {len} bytes is over the limit of {MAX_DATAGRAM}")]
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The datagram is not UTF-8.
    #[error("notification is not UTF-8 (bad byte at offset {offset})")]
    NotUtf8 {
        /// Where the first bad byte is.
        offset: usize,
    },
    /// A line is not `KEY=VALUE` with a non-empty key.
    #[error("line {line}: expected KEY=VALUE, found {text:?}")]
    NotAnAssignment {
        /// The line, from 1.
        line: usize,
        /// The line, cut to 64 bytes.
        text: String,
    },
    /// A known key has a bad value.
    #[error("line {line}: {key}: expected {expected}, found {value:?}")]
    InvalidValue {
        /// The line, from 1.
        line: usize,
        /// The key (`READY`).
        key: &'static str,
        /// What a good value looks like.
        expected: &'static str,
        /// The value, cut to 64 bytes.
        value: String,
    },
}

impl NotifySocket {
    /// Binds a notify socket at `path`, with `SO_PASSCRED` on so that each datagram
    /// carries its sender's pid.
    ///
    /// The socket is close-on-exec: workers get the path, not the descriptor.
    ///
    /// # Errors
    ///
    /// A [`BindError`] if the socket cannot be created or bound: the path exists, its
    /// directory does not, or it is longer than a unix socket path can be.
    ///
    /// # Panics
    ///
    /// If called outside a Tokio runtime with I/O enabled.
    pub fn bind(path: impl Into<PathBuf>) -> Result<Self, BindError> {
        let path = path.into();
        let error = |source: io::Error| BindError {
            path: path.clone(),
            source,
        };
        let fd = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            None,
        )
        .map_err(|e| error(e.into()))?;
        // Before bind: no datagram can arrive without credentials.
        rustix::net::sockopt::set_socket_passcred(&fd, true).map_err(|e| error(e.into()))?;
        let addr = SocketAddrUnix::new(&path).map_err(|e| error(e.into()))?;
        rustix::net::bind(&fd, &addr).map_err(|e| error(e.into()))?;
        match tokio::net::UnixDatagram::from_std(std::os::unix::net::UnixDatagram::from(fd)) {
            Ok(socket) => Ok(Self { socket, path }),
            Err(source) => {
                // The file exists now, and no `Self` will remove it.
                let _ = std::fs::remove_file(&path);
                Err(error(source))
            }
        }
    }

    /// The socket's path, for the workers' `NOTIFY_SOCKET`.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The value to put in a worker's `NOTIFY_SOCKET`.
    #[must_use]
    pub fn env_value(&self) -> OsString {
        self.path.clone().into_os_string()
    }

    /// Receives the next datagram.
    ///
    /// A malformed datagram is returned as [`RecvError::Malformed`] and consumed; the
    /// socket stays usable, so log it and call `recv` again.
    ///
    /// # Errors
    ///
    /// [`RecvError::Malformed`] for a datagram that is not a valid notification (see
    /// [`Notification::parse`]), [`RecvError::Io`] if the socket itself failed.
    ///
    /// # Cancel safety
    ///
    /// This method is cancel safe: a datagram is taken off the socket only in the
    /// synchronous step that also returns it.
    pub async fn recv(&self) -> Result<Datagram, RecvError> {
        loop {
            self.socket.readable().await.map_err(RecvError::Io)?;
            match self
                .socket
                .try_io(Interest::READABLE, || receive(self.socket.as_fd()))
            {
                Ok((pid, Ok(message))) => {
                    tracing::trace!(pid = ?pid.map(Pid::as_raw_pid), ?message, "notification");
                    return Ok(Datagram { pid, message });
                }
                Ok((pid, Err(source))) => return Err(RecvError::Malformed { pid, source }),
                // Readiness was stale (another reader, or a spurious wakeup); try_io has
                // cleared it, so `readable` waits for the next datagram.
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => return Err(RecvError::Io(error)),
            }
        }
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        // Best effort: the master's private directory is removed after this anyway.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// One `recvmsg`: the sender's pid and the parsed datagram.
fn receive(fd: BorrowedFd<'_>) -> io::Result<(Option<Pid>, Result<Notification, NotifyError>)> {
    let mut buf = [0_u8; MAX_DATAGRAM];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmCredentials(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    // TRUNC: report a datagram's full length even when it does not fit, so that an
    // over-long one is refused rather than parsed cut short. CMSG_CLOEXEC: descriptors
    // a sender passes (SCM_RIGHTS) must not leak into workers; they are closed when
    // `control` is dropped.
    let msg = rustix::net::recvmsg(
        fd,
        &mut [IoSliceMut::new(&mut buf)],
        &mut control,
        RecvFlags::TRUNC | RecvFlags::CMSG_CLOEXEC,
    )?;
    let pid = control.drain().find_map(|message| match message {
        RecvAncillaryMessage::ScmCredentials(credentials) => Some(credentials.pid),
        _ => None,
    });
    let parsed = if msg.bytes > MAX_DATAGRAM || msg.flags.contains(ReturnFlags::TRUNC) {
        Err(NotifyError::TooLong {
            len: msg.bytes.max(MAX_DATAGRAM + 1),
        })
    } else {
        Notification::parse(&buf[..msg.bytes])
    };
    Ok((pid, parsed))
}

impl Notification {
    /// Parses a datagram: newline-separated `KEY=VALUE` assignments; empty lines are
    /// skipped.
    ///
    /// `READY`, `STOPPING` and `RELOADING` take only `1`; `WATCHDOG` takes `1` or
    /// `trigger`; `MAINPID` a positive pid; `ERRNO` a non-negative integer;
    /// `X_TASKWARD_REQUESTS` a non-negative integer; `STATUS` any text. Other keys are
    /// kept in [`unknown`](Self::unknown).
    ///
    /// # Errors
    ///
    /// A [`NotifyError`] if the datagram is longer than [`MAX_DATAGRAM`] or has no valid
    /// line: the first bad line says why (not UTF-8, no `=` or an empty key, a known key
    /// with a bad value), or it is empty. A datagram with at least one valid line is
    /// parsed: its bad lines are skipped, as systemd skips them, and the first is kept
    /// in [`rejected`](Self::rejected).
    ///
    /// # Examples
    ///
    /// ```
    /// use taskward_cli::notify::{Notification, NotifyError};
    ///
    /// let message = Notification::parse(b"READY=1\nX_TASKWARD_REQUESTS=12\n")?;
    /// assert!(message.ready);
    /// assert_eq!(message.requests, Some(12));
    ///
    /// let error = Notification::parse(b"READY=2").expect_err("READY takes only 1");
    /// assert_eq!(error.to_string(), r#"line 1: READY: expected 1, found "2""#);
    ///
    /// let message = Notification::parse(b"READY=1\nSTRAY LINE")?;
    /// assert!(message.ready, "a stray line costs only itself");
    /// assert_eq!(message.rejected.map(|(_, lines)| lines), Some(1));
    /// # Ok::<(), NotifyError>(())
    /// ```
    pub fn parse(datagram: &[u8]) -> Result<Self, NotifyError> {
        if datagram.len() > MAX_DATAGRAM {
            return Err(NotifyError::TooLong {
                len: datagram.len(),
            });
        }
        let mut notification = Self::default();
        let mut assignments = 0_usize;
        let mut offset = 0_usize;
        for (index, bytes) in datagram.split(|&b| b == b'\n').enumerate() {
            let line_start = offset;
            offset += bytes.len() + 1;
            if bytes.is_empty() {
                continue;
            }
            let line_number = index + 1;
            let parsed = std::str::from_utf8(bytes)
                .map_err(|error| NotifyError::NotUtf8 {
                    offset: line_start + error.valid_up_to(),
                })
                .and_then(|line| {
                    let (key, value) = line
                        .split_once('=')
                        .filter(|(key, _)| !key.is_empty())
                        .ok_or_else(|| NotifyError::NotAnAssignment {
                            line: line_number,
                            text: excerpt(line),
                        })?;
                    notification.assign(line_number, key, value)
                });
            match parsed {
                Ok(()) => assignments += 1,
                Err(error) => match &mut notification.rejected {
                    Some((_, count)) => *count += 1,
                    None => notification.rejected = Some((error, 1)),
                },
            }
        }
        if assignments == 0 {
            // Nothing usable: the first bad line says why.
            return Err(notification
                .rejected
                .map_or(NotifyError::Empty, |(error, _)| error));
        }
        Ok(notification)
    }

    fn assign(&mut self, line: usize, key: &str, value: &str) -> Result<(), NotifyError> {
        let invalid = |key, expected| NotifyError::InvalidValue {
            line,
            key,
            expected,
            value: excerpt(value),
        };
        match key {
            field::READY => self.ready = flag(value).ok_or_else(|| invalid(field::READY, "1"))?,
            field::STOPPING => {
                self.stopping = flag(value).ok_or_else(|| invalid(field::STOPPING, "1"))?;
            }
            field::RELOADING => {
                self.reloading = flag(value).ok_or_else(|| invalid(field::RELOADING, "1"))?;
            }
            field::WATCHDOG => {
                self.watchdog = Some(match value {
                    "1" => Watchdog::Ping,
                    field::WATCHDOG_TRIGGER => Watchdog::Trigger,
                    _ => return Err(invalid(field::WATCHDOG, "1 or trigger")),
                });
            }
            field::STATUS => self.status = Some(value.to_owned()),
            field::MAINPID => {
                let pid = digits::<i32>(value).and_then(Pid::from_raw);
                self.main_pid = Some(pid.ok_or_else(|| invalid(field::MAINPID, "a positive pid"))?);
            }
            field::ERRNO => {
                let errno = digits::<i32>(value);
                self.errno =
                    Some(errno.ok_or_else(|| invalid(field::ERRNO, "a non-negative integer"))?);
            }
            field::REQUESTS => {
                let requests = digits::<u64>(value);
                self.requests = Some(
                    requests.ok_or_else(|| invalid(field::REQUESTS, "a non-negative integer"))?,
                );
            }
            _ => self.unknown.push((key.to_owned(), value.to_owned())),
        }
        Ok(())
    }
}

/// `Some(true)` for `1`, the only value systemd acts on for `READY` and its kin.
fn flag(value: &str) -> Option<bool> {
    (value == "1").then_some(true)
}

/// A decimal number with no sign, blanks or other decoration.
fn digits<T: std::str::FromStr>(value: &str) -> Option<T> {
    let plain = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
    plain.then(|| value.parse().ok()).flatten()
}

/// `text` cut to [`EXCERPT`] bytes at a char boundary, so that a 4 KiB line of junk
/// does not end up whole in the logs.
fn excerpt(text: &str) -> String {
    if text.len() <= EXCERPT {
        return text.to_owned();
    }
    let end = (0..=EXCERPT)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    format!("{}…", &text[..end])
}

fn sender(pid: Option<Pid>) -> String {
    match pid {
        Some(pid) => format!("pid {}", pid.as_raw_pid()),
        None => "an unknown sender".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use crate::temp_dir::TempDir;
    use std::os::unix::net::UnixDatagram;

    use super::*;

    fn parse(text: &str) -> Result<Notification, NotifyError> {
        Notification::parse(text.as_bytes())
    }

    fn parse_err(text: &[u8]) -> String {
        Notification::parse(text)
            .expect_err("the datagram is malformed")
            .to_string()
    }

    #[test]
    fn parses_every_known_key() {
        let message = parse(
            "READY=1\nSTOPPING=1\nRELOADING=1\nWATCHDOG=1\nSTATUS=serving: 3 conns\n\
             MAINPID=4242\nERRNO=0\nX_TASKWARD_REQUESTS=18446744073709551615",
        )
        .expect("valid");
        assert_eq!(
            message,
            Notification {
                ready: true,
                stopping: true,
                reloading: true,
                watchdog: Some(Watchdog::Ping),
                status: Some("serving: 3 conns".to_owned()),
                main_pid: Pid::from_raw(4242),
                errno: Some(0),
                requests: Some(u64::MAX),
                unknown: vec![],
                rejected: None,
            }
        );
    }

    #[test]
    fn a_single_assignment_sets_only_its_field() {
        assert_eq!(
            parse("WATCHDOG=1").expect("valid"),
            Notification {
                watchdog: Some(Watchdog::Ping),
                ..Notification::default()
            }
        );
        assert_eq!(
            parse("WATCHDOG=trigger").expect("valid").watchdog,
            Some(Watchdog::Trigger)
        );
    }

    #[test]
    fn empty_lines_are_skipped_and_line_numbers_count_them() {
        let message = parse("\n\nREADY=1\n\n").expect("valid");
        assert!(message.ready);
        assert_eq!(
            parse("\n\nREADY=yes").expect_err("bad").to_string(),
            r#"line 3: READY: expected 1, found "yes""#
        );
    }

    // Asserts: a bad line costs only itself, as in systemd: the good lines of the same
    // datagram count, and the first bad one is kept (with how many) for the log (red when
    // one bad line dropped the datagram, READY=1 included).
    #[test]
    fn a_bad_line_costs_only_itself() {
        let cases: [(&[u8], &str, usize); 3] = [
            (
                b"READY=1\nSTATUS=a\r\nFAKE LINE\nREADY=yes",
                r#"line 3: expected KEY=VALUE, found "FAKE LINE""#,
                2,
            ),
            (
                b"READY=1\n\xff",
                "notification is not UTF-8 (bad byte at offset 8)",
                1,
            ),
            (
                b"READY=1\nhello world",
                r#"line 2: expected KEY=VALUE, found "hello world""#,
                1,
            ),
        ];
        for (datagram, first, count) in cases {
            let message = Notification::parse(datagram).expect("the good lines count");
            assert!(message.ready, "{datagram:?}");
            let (error, rejected) = message.rejected.expect("the bad lines are kept");
            assert_eq!((error.to_string().as_str(), rejected), (first, count));
        }
    }

    #[test]
    fn unknown_keys_are_kept_in_order() {
        let message =
            parse("FDSTORE=1\nREADY=1\nEXTEND_TIMEOUT_USEC=5000000\nX_OTHER=a=b").expect("valid");
        assert!(message.ready);
        assert_eq!(
            message.unknown,
            [
                ("FDSTORE".to_owned(), "1".to_owned()),
                ("EXTEND_TIMEOUT_USEC".to_owned(), "5000000".to_owned()),
                ("X_OTHER".to_owned(), "a=b".to_owned()),
            ]
        );
    }

    #[test]
    fn status_keeps_everything_after_the_first_equals_and_may_be_empty() {
        assert_eq!(
            parse("STATUS=a=b =c").expect("valid").status.as_deref(),
            Some("a=b =c")
        );
        assert_eq!(parse("STATUS=").expect("valid").status.as_deref(), Some(""));
    }

    #[test]
    fn the_last_assignment_wins() {
        let message = parse("STATUS=one\nX_TASKWARD_REQUESTS=1\nSTATUS=two\nX_TASKWARD_REQUESTS=2")
            .expect("valid");
        assert_eq!(message.status.as_deref(), Some("two"));
        assert_eq!(message.requests, Some(2));
    }

    #[test]
    fn malformed_datagrams_name_the_problem() {
        let cases: [(&[u8], &str); 17] = [
            (b"", "empty notification"),
            (b"\n\n", "empty notification"),
            (
                b"\n\xff",
                "notification is not UTF-8 (bad byte at offset 1)",
            ),
            (b"READY", r#"line 1: expected KEY=VALUE, found "READY""#),
            (
                b"hello world\nREADY=2",
                r#"line 1: expected KEY=VALUE, found "hello world""#,
            ),
            (b"=1", r#"line 1: expected KEY=VALUE, found "=1""#),
            (b"READY=2", r#"line 1: READY: expected 1, found "2""#),
            (b"READY=", r#"line 1: READY: expected 1, found """#),
            (b"READY=1 ", r#"line 1: READY: expected 1, found "1 ""#),
            (b"STOPPING=0", r#"line 1: STOPPING: expected 1, found "0""#),
            (
                b"RELOADING=true",
                r#"line 1: RELOADING: expected 1, found "true""#,
            ),
            (
                b"WATCHDOG=2",
                r#"line 1: WATCHDOG: expected 1 or trigger, found "2""#,
            ),
            (
                b"MAINPID=0",
                r#"line 1: MAINPID: expected a positive pid, found "0""#,
            ),
            (
                b"MAINPID=2147483648",
                r#"line 1: MAINPID: expected a positive pid, found "2147483648""#,
            ),
            (
                b"ERRNO=-1",
                r#"line 1: ERRNO: expected a non-negative integer, found "-1""#,
            ),
            (
                b"X_TASKWARD_REQUESTS=twelve",
                r#"line 1: X_TASKWARD_REQUESTS: expected a non-negative integer, found "twelve""#,
            ),
            (
                b"X_TASKWARD_REQUESTS=+12",
                r#"line 1: X_TASKWARD_REQUESTS: expected a non-negative integer, found "+12""#,
            ),
        ];
        for (datagram, message) in cases {
            assert_eq!(parse_err(datagram), message, "datagram: {datagram:?}");
        }
    }

    #[test]
    fn a_crlf_line_is_not_accepted_as_ready() {
        // systemd compares whole lines, so "READY=1\r" is not READY=1 there either.
        assert_eq!(
            parse_err(b"READY=1\r\n"),
            r#"line 1: READY: expected 1, found "1\r""#
        );
    }

    #[test]
    fn over_long_datagrams_are_refused() {
        let at_limit = format!("STATUS={}", "x".repeat(MAX_DATAGRAM - "STATUS=".len()));
        assert_eq!(at_limit.len(), MAX_DATAGRAM);
        assert!(parse(&at_limit).is_ok());

        let over = format!("{at_limit}y");
        assert_eq!(
            parse(&over),
            Err(NotifyError::TooLong {
                len: MAX_DATAGRAM + 1
            })
        );
        assert_eq!(
            parse_err(over.as_bytes()),
            "notification of 4097 bytes is over the limit of 4096"
        );
    }

    #[test]
    fn errors_quote_at_most_an_excerpt() {
        let junk = "é".repeat(100);
        let NotifyError::NotAnAssignment { text, .. } = parse(&junk).expect_err("no =") else {
            panic!("expected NotAnAssignment");
        };
        assert_eq!(text, format!("{}…", "é".repeat(32)));
        assert_eq!(excerpt("short"), "short");
    }

    mod properties {
        use proptest::prelude::*;
        use taskward_http::protocol::notify as field;

        use super::super::*;

        const KEYS: [&str; 9] = [
            field::READY,
            field::STOPPING,
            field::RELOADING,
            field::WATCHDOG,
            field::STATUS,
            field::MAINPID,
            field::ERRNO,
            field::REQUESTS,
            "X_OTHER",
        ];

        /// A line: a known key (or another) with a value that may or may not suit it,
        /// or junk.
        fn line() -> impl Strategy<Value = String> {
            let value = prop_oneof![
                Just("1".to_owned()),
                Just("trigger".to_owned()),
                any::<u64>().prop_map(|n| n.to_string()),
                any::<i64>().prop_map(|n| n.to_string()),
                "[ -~]{0,12}",
                any::<String>().prop_filter("one line", |s| !s.contains('\n')),
            ];
            prop_oneof![
                4 => (proptest::sample::select(KEYS.to_vec()), value)
                    .prop_map(|(key, value)| format!("{key}={value}")),
                1 => "[^\n]{0,20}",
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            // Asserts: any bytes at all are parsed or refused, never a panic, and a
            // refusal says what was wrong (where, which key, what length).
            #[test]
            fn any_bytes_parse_or_name_the_problem(
                bytes in proptest::collection::vec(any::<u8>(), 0..(MAX_DATAGRAM + 64)),
            ) {
                if let Err(error) = Notification::parse(&bytes) {
                    check_error(&error, &bytes)?;
                }
            }

            // Asserts: datagrams of plausible lines are parsed or refused naming the line
            // and, for a known key, the key; an accepted one holds what its lines said.
            #[test]
            fn plausible_datagrams_parse_or_name_the_line(
                lines in proptest::collection::vec(line(), 0..8),
            ) {
                let text = lines.join("\n");
                match Notification::parse(text.as_bytes()) {
                    Ok(message) => {
                        let last = |key: &str| {
                            lines.iter().rev().find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                        };
                        // A bad line is skipped, so each field is what its last good
                        // line said.
                        let ready = lines.iter().any(|l| l.as_str() == "READY=1");
                        prop_assert_eq!(message.ready, ready);
                        prop_assert_eq!(message.status.as_deref(), last(field::STATUS));
                        let count = lines.iter().rev().find_map(|l| {
                            let v = l.strip_prefix(field::REQUESTS)?.strip_prefix('=')?;
                            let plain = !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit());
                            plain.then(|| v.parse::<u64>().ok()).flatten()
                        });
                        prop_assert_eq!(message.requests, count);
                    }
                    Err(error) => check_error(&error, text.as_bytes())?,
                }
            }
        }

        fn check_error(error: &NotifyError, bytes: &[u8]) -> Result<(), TestCaseError> {
            let lines = bytes.split(|&b| b == b'\n').count();
            let message = error.to_string();
            prop_assert!(!message.is_empty());
            match error {
                NotifyError::Empty => {
                    prop_assert!(bytes.iter().all(|&b| b == b'\n'), "{message}");
                }
                NotifyError::TooLong { len } => prop_assert!(*len > MAX_DATAGRAM),
                NotifyError::NotUtf8 { offset } => {
                    prop_assert!(std::str::from_utf8(&bytes[..*offset]).is_ok());
                    prop_assert!(std::str::from_utf8(bytes).is_err());
                }
                NotifyError::NotAnAssignment { line, .. } => {
                    prop_assert!((1..=lines).contains(line), "{message}");
                    let prefix = format!("line {line}: ");
                    prop_assert!(message.starts_with(&prefix), "{message}");
                }
                NotifyError::InvalidValue { line, key, .. } => {
                    prop_assert!((1..=lines).contains(line), "{message}");
                    prop_assert!(KEYS.contains(key), "{message}");
                    let prefix = format!("line {line}: {key}: expected ");
                    prop_assert!(message.starts_with(&prefix), "{message}");
                }
            }
            Ok(())
        }
    }

    /// What a worker does: one datagram to `$NOTIFY_SOCKET`.
    fn send(socket: &NotifySocket, datagram: &[u8]) {
        let sent = UnixDatagram::unbound()
            .and_then(|sender| sender.send_to(datagram, socket.path()))
            .expect("the notify socket accepts datagrams");
        assert_eq!(sent, datagram.len());
    }

    fn own_pid() -> Option<Pid> {
        Pid::from_raw(i32::try_from(std::process::id()).expect("pids fit in i32"))
    }

    #[test]
    fn receives_a_notification_with_the_senders_pid() {
        taskward::testing::run(|_scope| async {
            let dir = TempDir::new("notify");
            let socket = NotifySocket::bind(dir.path().join("notify.sock")).expect("bind");
            send(&socket, b"READY=1\nSTATUS=hi\nX_TASKWARD_REQUESTS=12");

            let datagram = socket.recv().await.expect("a valid notification");
            assert_eq!(datagram.pid, own_pid());
            assert!(datagram.message.ready);
            assert_eq!(datagram.message.status.as_deref(), Some("hi"));
            assert_eq!(datagram.message.requests, Some(12));
        });
    }

    #[test]
    fn a_malformed_datagram_is_an_error_and_the_next_one_still_arrives() {
        taskward::testing::run(|_scope| async {
            let dir = TempDir::new("notify");
            let socket = NotifySocket::bind(dir.path().join("notify.sock")).expect("bind");
            send(&socket, b"\xff\xfegarbage");
            send(&socket, &[b'x'; MAX_DATAGRAM + 100]);
            send(&socket, b"WATCHDOG=1");

            match socket.recv().await {
                Err(RecvError::Malformed { pid, source }) => {
                    assert_eq!(pid, own_pid());
                    assert_eq!(source, NotifyError::NotUtf8 { offset: 0 });
                }
                other => panic!("expected a malformed datagram, got {other:?}"),
            }
            match socket.recv().await {
                Err(RecvError::Malformed { source, .. }) => assert_eq!(
                    source,
                    NotifyError::TooLong {
                        len: MAX_DATAGRAM + 100
                    }
                ),
                other => panic!("expected an over-long datagram, got {other:?}"),
            }
            let datagram = socket.recv().await.expect("the socket still works");
            assert_eq!(datagram.pid, own_pid());
            assert_eq!(datagram.message.watchdog, Some(Watchdog::Ping));
        });
    }

    #[test]
    fn bind_errors_name_the_path_and_drop_removes_the_file() {
        taskward::testing::run(|_scope| async {
            let dir = TempDir::new("notify");
            let path = dir.path().join("notify.sock");
            let socket = NotifySocket::bind(&path).expect("bind");
            assert!(path.exists());
            assert_eq!(socket.env_value(), path.as_os_str());

            let error = NotifySocket::bind(&path).expect_err("the path is taken");
            assert_eq!(
                error.to_string(),
                format!("cannot bind the notify socket at {}", path.display())
            );
            assert_eq!(error.source.kind(), io::ErrorKind::AddrInUse);

            drop(socket);
            assert!(!path.exists(), "the socket file is removed on drop");
        });
    }
}
