//! The protocol between a process manager (`taskward serve`, or systemd) and its workers:
//! the environment variables a worker is started with, the fields of the notifications it
//! sends back, how each is parsed and written, and the exit code of a worker that cannot
//! use its environment. Read [`WorkerEnv`] first; the names are in [`env`](mod@env) and
//! [`notify`].
//!
//! # Version
//!
//! This is version **1** of the protocol ([`VERSION`]): systemd's socket activation
//! (`sd_listen_fds(3)`) and readiness notification (`sd_notify(3)`), plus the `TASKWARD_*`
//! variables and the `X_TASKWARD_REQUESTS` field below. A change that an older worker or
//! master would misread (a variable's unit, a field's meaning) takes a new version; a new
//! optional variable or field does not, as both sides ignore what they do not know.
//!
//! # Master → worker: the environment
//!
//! | variable | value | meaning |
//! |---|---|---|
//! | `LISTEN_FDS` | 0 to [`MAX_LISTEN_FDS`] | listening sockets passed, at fd 3 on |
//! | `LISTEN_PID` | a positive pid | the process the sockets are for; others ignore them |
//! | `NOTIFY_SOCKET` | a path, or `@` and an abstract name | where notifications go |
//! | `WATCHDOG_USEC` | 1 to [`MAX_SECONDS`] seconds, in µs | heartbeats (`WATCHDOG=1`) are due within this |
//! | `WATCHDOG_PID` | a positive pid | the process `WATCHDOG_USEC` is for |
//! | `TASKWARD_WORKER_ID` | an integer | the master's number for this worker; set only by `taskward serve` |
//! | `TASKWARD_MASTER_PID` | a positive pid | the master's pid; optional, informative |
//! | `TASKWARD_GRACEFUL_TIMEOUT` | seconds, 0 to [`MAX_SECONDS`] | the master kills a stopping worker after this |
//! | `TASKWARD_MAX_REQUESTS` | an integer, 0 for none | this worker's recycling threshold, jitter included |
//! | `TASKWARD_DRAIN_DELAY` | seconds, 0 to [`MAX_SECONDS`] | set by the deployment, inherited through the master: how long to keep accepting once not ready |
//!
//! Seconds are a decimal number (`30`, `2.5`); integers are plain decimal digits. A value
//! that does not parse is an error naming the variable and the value ([`EnvError`]),
//! never a default: a worker that finds one exits with [`EX_CONFIG`].
//!
//! # Worker → master: notifications
//!
//! One datagram of newline-separated `KEY=VALUE` fields, at most [`MAX_DATAGRAM`] bytes:
//!
//! | field | value | meaning |
//! |---|---|---|
//! | `READY` | `1` | startup is done: the worker serves |
//! | `STOPPING` | `1` | the worker is shutting down |
//! | `RELOADING` | `1` | the worker reloads its own configuration |
//! | `WATCHDOG` | `1` or `trigger` | a heartbeat, or a request to be treated as hung |
//! | `STATUS` | text | a line for `taskward status` (control characters are escaped there) |
//! | `MAINPID` | a positive pid | the worker's main process is another pid |
//! | `ERRNO` | a non-negative integer | the worker failed with this errno |
//! | `X_TASKWARD_REQUESTS` | a non-negative integer | requests begun so far ([`requests_field`]) |

use std::ffi::{OsStr, OsString};
use std::num::NonZeroU64;
use std::time::Duration;

/// The version of the protocol this module describes (see the [module docs](self)).
///
/// ```
/// assert_eq!(taskward_http::protocol::VERSION, 1);
/// ```
pub const VERSION: u32 = 1;

/// The exit code of a worker whose environment holds a bad setting: `EX_CONFIG` of
/// `sysexits.h`, "configuration error". Restarting such a worker cannot help: a process
/// manager should stop rather than start it again.
///
/// ```
/// assert_eq!(taskward_http::protocol::EX_CONFIG, 78);
/// ```
pub const EX_CONFIG: u8 = 78;

/// The first descriptor of passed sockets (systemd's `SD_LISTEN_FDS_START`).
///
/// ```
/// assert_eq!(taskward_http::protocol::LISTEN_FDS_START, 3);
/// ```
pub const LISTEN_FDS_START: i32 = 3;

/// The most sockets `LISTEN_FDS` may announce. Each is a descriptor the worker must
/// already hold, so no real value comes near it; a larger one is a corrupt variable, not
/// a request to look at billions of descriptors.
pub const MAX_LISTEN_FDS: usize = 65_536;

/// The longest duration the protocol carries, in seconds: a year. Far past any sane
/// timeout, and small enough that adding it to any clock reading cannot overflow.
pub const MAX_SECONDS: u64 = 365 * 24 * 60 * 60;

/// The largest notification, in bytes: far more than any real notification needs.
pub const MAX_DATAGRAM: usize = 4096;

/// How much of a bad value an error quotes, in bytes.
const EXCERPT: usize = 64;

/// The names of the environment variables (see the [module docs](self) for their values).
pub mod env {
    /// How many sockets were passed, at fd [`LISTEN_FDS_START`](super::LISTEN_FDS_START)
    /// on.
    pub const LISTEN_FDS: &str = "LISTEN_FDS";
    /// The pid the passed sockets are meant for.
    pub const LISTEN_PID: &str = "LISTEN_PID";
    /// systemd's names of the passed sockets; not set by `taskward serve`.
    pub const LISTEN_FDNAMES: &str = "LISTEN_FDNAMES";
    /// The notify socket's path (or `@name`, an abstract socket).
    pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";
    /// The heartbeat interval, in microseconds.
    pub const WATCHDOG_USEC: &str = "WATCHDOG_USEC";
    /// The pid `WATCHDOG_USEC` is meant for.
    pub const WATCHDOG_PID: &str = "WATCHDOG_PID";
    /// The master's own number for the worker; its presence says "started by
    /// `taskward serve`".
    pub const WORKER_ID: &str = "TASKWARD_WORKER_ID";
    /// The master's pid.
    pub const MASTER_PID: &str = "TASKWARD_MASTER_PID";
    /// The master's graceful timeout, in seconds: a stopping worker is killed after it.
    pub const GRACEFUL_TIMEOUT: &str = "TASKWARD_GRACEFUL_TIMEOUT";
    /// This worker's recycling threshold: the master's `max_requests` with this worker's
    /// jitter added (the master's own setting of the same name has no jitter).
    pub const MAX_REQUESTS: &str = "TASKWARD_MAX_REQUESTS";
    /// Seconds to keep accepting after readiness turns not-ready; set by the deployment
    /// and passed through the master unchanged.
    pub const DRAIN_DELAY: &str = "TASKWARD_DRAIN_DELAY";
}

/// The fields of a notification (see the [module docs](self) for their values).
pub mod notify {
    /// `READY=1`.
    pub const READY: &str = "READY";
    /// `STOPPING=1`.
    pub const STOPPING: &str = "STOPPING";
    /// `RELOADING=1`.
    pub const RELOADING: &str = "RELOADING";
    /// `WATCHDOG=1` or `WATCHDOG=trigger`.
    pub const WATCHDOG: &str = "WATCHDOG";
    /// The value of `WATCHDOG` that asks to be treated as hung.
    pub const WATCHDOG_TRIGGER: &str = "trigger";
    /// `STATUS=…`.
    pub const STATUS: &str = "STATUS";
    /// `MAINPID=…`.
    pub const MAINPID: &str = "MAINPID";
    /// `ERRNO=…`.
    pub const ERRNO: &str = "ERRNO";
    /// `X_TASKWARD_REQUESTS=…`: requests begun so far (taskward's extension).
    pub const REQUESTS: &str = "X_TASKWARD_REQUESTS";
}

/// A protocol variable holds a value that cannot be used.
///
/// ```
/// use std::ffi::OsStr;
/// use taskward_http::protocol::{env, parse_seconds};
///
/// let error = parse_seconds(env::DRAIN_DELAY, OsStr::new("5s")).expect_err("not a number");
/// assert_eq!(
///     error.to_string(),
///     r#"TASKWARD_DRAIN_DELAY: expected a number of seconds from 0 to 31536000, found "5s""#
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{var}: expected {expected}, found {found}")]
#[non_exhaustive]
pub struct EnvError {
    /// The variable.
    pub var: &'static str,
    /// What a good value looks like.
    pub expected: &'static str,
    /// The value, quoted and cut to 64 bytes.
    pub found: String,
}

impl EnvError {
    fn new(var: &'static str, expected: &'static str, value: &OsStr) -> Self {
        Self {
            var,
            expected,
            found: quote(value),
        }
    }
}

const SECONDS: &str = "a number of seconds from 0 to 31536000";
const WATCHDOG_MICROS: &str = "a number of microseconds from 1 to 31536000000000";
const INTEGER: &str = "a non-negative integer";
const PID: &str = "a positive pid";
const FD_COUNT: &str = "a number of sockets from 0 to 65536";

/// Parses seconds: a decimal number, integer or not, from 0 to [`MAX_SECONDS`]. No unit,
/// sign, blank, exponent, `inf` or `NaN`.
///
/// # Errors
///
/// An [`EnvError`] naming `var` and the value.
///
/// # Examples
///
/// ```
/// use std::ffi::OsStr;
/// use std::time::Duration;
/// use taskward_http::protocol::{env, parse_seconds};
///
/// assert_eq!(parse_seconds(env::GRACEFUL_TIMEOUT, OsStr::new("2.5")), Ok(Duration::from_millis(2500)));
/// for bad in ["1e300", "-1", "NaN", "inf", "", " 1", "31536001"] {
///     assert!(parse_seconds(env::GRACEFUL_TIMEOUT, OsStr::new(bad)).is_err(), "{bad}");
/// }
/// ```
pub fn parse_seconds(var: &'static str, value: &OsStr) -> Result<Duration, EnvError> {
    let invalid = || EnvError::new(var, SECONDS, value);
    let text = value.to_str().ok_or_else(invalid)?;
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    // Digits only around one optional point, at least one of them: what `f64` would also
    // take as an exponent, a sign, `inf` or `NaN` is refused here.
    let plain = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if whole.len() + fraction.len() == 0 || !plain(whole) || !plain(fraction) {
        return Err(invalid());
    }
    // `MAX_SECONDS` has 8 digits: more (leading zeros aside) is out of range, and the
    // parse below cannot overflow.
    let whole = whole.trim_start_matches('0');
    if whole.len() > 8 {
        return Err(invalid());
    }
    let secs: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| invalid())?
    };
    // Nanoseconds: the first nine digits of the fraction, the rest truncated.
    let mut nanos = 0_u32;
    for digit in fraction.bytes().chain(std::iter::repeat(b'0')).take(9) {
        nanos = nanos * 10 + u32::from(digit - b'0');
    }
    if secs > MAX_SECONDS || (secs == MAX_SECONDS && nanos > 0) {
        return Err(invalid());
    }
    Ok(Duration::new(secs, nanos))
}

/// Writes seconds as [`parse_seconds`] reads them back: `30`, `2.5`, `0.000000001`.
///
/// ```
/// use std::time::Duration;
/// use taskward_http::protocol::format_seconds;
///
/// assert_eq!(format_seconds(Duration::from_secs(30)), "30");
/// assert_eq!(format_seconds(Duration::from_millis(2500)), "2.5");
/// ```
#[must_use]
pub fn format_seconds(duration: Duration) -> String {
    let nanos = duration.subsec_nanos();
    if nanos == 0 {
        return duration.as_secs().to_string();
    }
    let fraction = format!("{nanos:09}");
    format!("{}.{}", duration.as_secs(), fraction.trim_end_matches('0'))
}

/// Parses a non-negative integer: decimal digits only.
///
/// # Errors
///
/// An [`EnvError`] naming `var` and the value, also for a value past `u64::MAX`.
///
/// ```
/// use std::ffi::OsStr;
/// use taskward_http::protocol::{env, parse_integer};
///
/// assert_eq!(parse_integer(env::MAX_REQUESTS, OsStr::new("1000")), Ok(1000));
/// assert!(parse_integer(env::MAX_REQUESTS, OsStr::new("+5")).is_err());
/// ```
pub fn parse_integer(var: &'static str, value: &OsStr) -> Result<u64, EnvError> {
    digits(value).ok_or_else(|| EnvError::new(var, INTEGER, value))
}

/// Parses a pid: a positive integer that fits a `pid_t`.
///
/// # Errors
///
/// An [`EnvError`] naming `var` and the value.
///
/// ```
/// use std::ffi::OsStr;
/// use taskward_http::protocol::{env, parse_pid};
///
/// assert_eq!(parse_pid(env::LISTEN_PID, OsStr::new("42")), Ok(42));
/// assert!(parse_pid(env::LISTEN_PID, OsStr::new("0")).is_err());
/// ```
pub fn parse_pid(var: &'static str, value: &OsStr) -> Result<u32, EnvError> {
    digits::<u32>(value)
        .filter(|&pid| pid > 0 && i32::try_from(pid).is_ok())
        .ok_or_else(|| EnvError::new(var, PID, value))
}

/// Parses `LISTEN_FDS`: 0 to [`MAX_LISTEN_FDS`].
///
/// # Errors
///
/// An [`EnvError`] naming `LISTEN_FDS` and the value.
///
/// ```
/// use std::ffi::OsStr;
/// use taskward_http::protocol::parse_listen_fds;
///
/// assert_eq!(parse_listen_fds(OsStr::new("2")), Ok(2));
/// assert!(parse_listen_fds(OsStr::new("99999999999")).is_err());
/// ```
pub fn parse_listen_fds(value: &OsStr) -> Result<usize, EnvError> {
    digits::<usize>(value)
        .filter(|&n| n <= MAX_LISTEN_FDS)
        .ok_or_else(|| EnvError::new(env::LISTEN_FDS, FD_COUNT, value))
}

/// Parses `WATCHDOG_USEC`: microseconds, at least 1, at most [`MAX_SECONDS`]. Zero is
/// refused: it would ask for heartbeats infinitely often.
///
/// # Errors
///
/// An [`EnvError`] naming `WATCHDOG_USEC` and the value.
///
/// ```
/// use std::ffi::OsStr;
/// use std::time::Duration;
/// use taskward_http::protocol::parse_watchdog_usec;
///
/// assert_eq!(parse_watchdog_usec(OsStr::new("30000000")), Ok(Duration::from_secs(30)));
/// assert!(parse_watchdog_usec(OsStr::new("0")).is_err());
/// ```
pub fn parse_watchdog_usec(value: &OsStr) -> Result<Duration, EnvError> {
    digits::<u64>(value)
        .filter(|us| (1..=MAX_SECONDS * 1_000_000).contains(us))
        .map(Duration::from_micros)
        .ok_or_else(|| EnvError::new(env::WATCHDOG_USEC, WATCHDOG_MICROS, value))
}

/// Writes `WATCHDOG_USEC` for a heartbeat interval; `None` if the interval cannot be
/// carried (under a microsecond, or over [`MAX_SECONDS`]).
///
/// ```
/// use std::time::Duration;
/// use taskward_http::protocol::format_watchdog_usec;
///
/// assert_eq!(format_watchdog_usec(Duration::from_secs(30)).as_deref(), Some("30000000"));
/// assert_eq!(format_watchdog_usec(Duration::from_nanos(100)), None);
/// ```
#[must_use]
pub fn format_watchdog_usec(every: Duration) -> Option<String> {
    let micros = every.as_micros();
    (1..=u128::from(MAX_SECONDS) * 1_000_000)
        .contains(&micros)
        .then(|| micros.to_string())
}

/// The field that reports `served` requests: `X_TASKWARD_REQUESTS=<served>`.
///
/// ```
/// assert_eq!(taskward_http::protocol::requests_field(12), "X_TASKWARD_REQUESTS=12");
/// ```
#[must_use]
pub fn requests_field(served: u64) -> String {
    format!("{}={served}", notify::REQUESTS)
}

/// The count at which a worker with a [`MAX_REQUESTS`](env::MAX_REQUESTS) of `limit`
/// reports early: three quarters of the limit. The process manager starts the
/// replacement then, so that it is ready when the limit is reached: a worker serves close
/// to its limit, neither fewer (it is not stopped before) nor many more (its replacement
/// does not start only then). A quarter of the limit is the time a replacement has to
/// start. The worker reports again at the limit, when the manager stops it if the
/// replacement is ready.
///
/// ```
/// assert_eq!(taskward_http::protocol::early_report_at(1000), 750);
/// assert_eq!(taskward_http::protocol::early_report_at(1), 1);
/// ```
#[must_use]
pub const fn early_report_at(limit: u64) -> u64 {
    let early = limit - limit / 4;
    if early == 0 { limit } else { early }
}

/// What a worker reads from its environment, checked.
///
/// ```
/// use std::ffi::OsString;
/// use std::time::Duration;
/// use taskward_http::protocol::{WorkerEnv, env};
///
/// let vars = [(env::WORKER_ID, "3"), (env::GRACEFUL_TIMEOUT, "30"), (env::WATCHDOG_USEC, "2000000")];
/// let lookup = |name: &str| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| OsString::from(v));
/// let read = WorkerEnv::read(lookup, 4242)?;
/// assert_eq!(read.worker_id, Some(3));
/// assert_eq!(read.graceful_timeout, Some(Duration::from_secs(30)));
/// assert_eq!(read.watchdog, Some(Duration::from_secs(2)));
/// assert_eq!(read.listen_fds, 0);
/// # Ok::<(), taskward_http::protocol::EnvError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerEnv {
    /// How many sockets were passed to this process (0 when `LISTEN_PID` names another).
    pub listen_fds: usize,
    /// `TASKWARD_WORKER_ID`: set when started by `taskward serve`.
    pub worker_id: Option<u64>,
    /// `TASKWARD_GRACEFUL_TIMEOUT`.
    pub graceful_timeout: Option<Duration>,
    /// `TASKWARD_DRAIN_DELAY`.
    pub drain_delay: Option<Duration>,
    /// `TASKWARD_MAX_REQUESTS`; `None` when unset or 0.
    pub max_requests: Option<NonZeroU64>,
    /// `WATCHDOG_USEC`, when meant for this process (`WATCHDOG_PID` unset or `pid`).
    pub watchdog: Option<Duration>,
}

impl WorkerEnv {
    /// Reads and checks every variable of the protocol through `lookup`, as seen by the
    /// process `pid`. Variables meant for another pid (`LISTEN_PID`, `WATCHDOG_PID`) are
    /// ignored, as systemd's library does; their pid must still be a pid.
    ///
    /// # Errors
    ///
    /// An [`EnvError`] for the first variable holding a bad value.
    pub fn read(lookup: impl Fn(&str) -> Option<OsString>, pid: u32) -> Result<Self, EnvError> {
        let get = |var: &'static str| lookup(var).map(|value| (var, value));
        let seconds = |var| get(var).map(|(var, v)| parse_seconds(var, &v)).transpose();
        let listen_fds = listen_fds(&lookup, pid)?;
        let watchdog_for_me = match lookup(env::WATCHDOG_PID) {
            None => true,
            Some(value) => parse_pid(env::WATCHDOG_PID, &value)? == pid,
        };
        let watchdog = match lookup(env::WATCHDOG_USEC) {
            Some(value) if watchdog_for_me => Some(parse_watchdog_usec(&value)?),
            _ => None,
        };
        let max_requests = get(env::MAX_REQUESTS)
            .map(|(var, v)| parse_integer(var, &v))
            .transpose()?
            .and_then(NonZeroU64::new);
        Ok(Self {
            listen_fds,
            worker_id: get(env::WORKER_ID)
                .map(|(var, v)| parse_integer(var, &v))
                .transpose()?,
            graceful_timeout: seconds(env::GRACEFUL_TIMEOUT)?,
            drain_delay: seconds(env::DRAIN_DELAY)?,
            max_requests,
            watchdog,
        })
    }

    /// [`read`](Self::read) on this process's environment.
    ///
    /// # Errors
    ///
    /// An [`EnvError`] for the first variable holding a bad value.
    pub fn from_process() -> Result<Self, EnvError> {
        Self::read(|name| std::env::var_os(name), std::process::id())
    }
}

/// How many sockets `LISTEN_FDS` passes to the process `pid`: 0 when unset or when
/// `LISTEN_PID` names another process. As the `listenfd` crate, which takes the sockets,
/// an unset or empty `LISTEN_PID` does not say "another process's".
///
/// # Errors
///
/// An [`EnvError`] if `LISTEN_PID` is not a pid, or `LISTEN_FDS` (meant for `pid`) is not
/// a count of sockets.
///
/// ```
/// use std::ffi::OsString;
/// use taskward_http::protocol::listen_fds;
///
/// let vars = |name: &str| match name {
///     "LISTEN_PID" => Some(OsString::from("42")),
///     "LISTEN_FDS" => Some(OsString::from("2")),
///     _ => None,
/// };
/// assert_eq!(listen_fds(vars, 42), Ok(2));
/// assert_eq!(listen_fds(vars, 43), Ok(0));
/// ```
pub fn listen_fds(lookup: impl Fn(&str) -> Option<OsString>, pid: u32) -> Result<usize, EnvError> {
    let for_me = match lookup(env::LISTEN_PID) {
        None => true,
        Some(value) if value.is_empty() => true,
        Some(value) => parse_pid(env::LISTEN_PID, &value)? == pid,
    };
    match lookup(env::LISTEN_FDS) {
        Some(value) if for_me => parse_listen_fds(&value),
        _ => Ok(0),
    }
}

/// A decimal number with no sign, blank or other decoration.
fn digits<T: std::str::FromStr>(value: &OsStr) -> Option<T> {
    let text = value.to_str()?;
    let plain = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    plain.then(|| text.parse().ok()).flatten()
}

/// `value` quoted as Rust would, cut to [`EXCERPT`] bytes at a char boundary first, so
/// that a huge variable does not end up whole in a log line.
fn quote(value: &OsStr) -> String {
    let text = value.to_string_lossy();
    if text.len() <= EXCERPT {
        return format!("{value:?}");
    }
    let end = (0..=EXCERPT)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    format!("{:?}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> + use<> {
        let vars: HashMap<String, OsString> = vars
            .iter()
            .map(|&(name, value)| (name.to_owned(), value.into()))
            .collect();
        move |name| vars.get(name).cloned()
    }

    fn read_err(vars: &[(&str, &str)]) -> String {
        WorkerEnv::read(lookup(vars), 100)
            .expect_err("a bad variable")
            .to_string()
    }

    #[test]
    fn seconds() {
        let ok = |text: &str| parse_seconds(env::DRAIN_DELAY, OsStr::new(text));
        assert_eq!(ok("0"), Ok(Duration::ZERO));
        assert_eq!(ok("5"), Ok(Duration::from_secs(5)));
        assert_eq!(ok("2.5"), Ok(Duration::from_millis(2500)));
        assert_eq!(ok(".5"), Ok(Duration::from_millis(500)));
        assert_eq!(ok("5."), Ok(Duration::from_secs(5)));
        assert_eq!(ok("0.0000000019"), Ok(Duration::from_nanos(1)));
        assert_eq!(ok("00031536000"), Ok(Duration::from_secs(MAX_SECONDS)));
        assert_eq!(ok("31536000.000"), Ok(Duration::from_secs(MAX_SECONDS)));
        for bad in [
            "",
            ".",
            "1e300",
            "5s",
            "-1",
            "+1",
            "NaN",
            "inf",
            "-inf",
            " 1",
            "1 ",
            "1.2.3",
            "31536000.1",
            "31536001",
            "999999999999999999999999",
        ] {
            assert_eq!(
                ok(bad).expect_err(bad).to_string(),
                format!("TASKWARD_DRAIN_DELAY: expected {SECONDS}, found {bad:?}")
            );
        }
    }

    #[test]
    fn watchdog_usec_is_never_zero() {
        assert_eq!(
            parse_watchdog_usec(OsStr::new("0"))
                .expect_err("zero")
                .to_string(),
            format!("WATCHDOG_USEC: expected {WATCHDOG_MICROS}, found \"0\"")
        );
        assert_eq!(format_watchdog_usec(Duration::ZERO), None);
        assert_eq!(format_watchdog_usec(Duration::from_nanos(999)), None);
        assert_eq!(
            format_watchdog_usec(Duration::from_micros(1)).as_deref(),
            Some("1")
        );
        assert_eq!(
            format_watchdog_usec(Duration::from_secs(MAX_SECONDS + 1)),
            None
        );
    }

    #[test]
    fn worker_env_names_the_bad_variable() {
        let cases = [
            (
                (env::DRAIN_DELAY, "1e300"),
                format!(r#"TASKWARD_DRAIN_DELAY: expected {SECONDS}, found "1e300""#),
            ),
            (
                (env::GRACEFUL_TIMEOUT, "1e300"),
                format!(r#"TASKWARD_GRACEFUL_TIMEOUT: expected {SECONDS}, found "1e300""#),
            ),
            (
                (env::MAX_REQUESTS, "-1"),
                format!(r#"TASKWARD_MAX_REQUESTS: expected {INTEGER}, found "-1""#),
            ),
            (
                (env::WORKER_ID, "x"),
                format!(r#"TASKWARD_WORKER_ID: expected {INTEGER}, found "x""#),
            ),
            (
                (env::WATCHDOG_USEC, "0"),
                format!(r#"WATCHDOG_USEC: expected {WATCHDOG_MICROS}, found "0""#),
            ),
            (
                (env::LISTEN_FDS, "99999999999"),
                format!(r#"LISTEN_FDS: expected {FD_COUNT}, found "99999999999""#),
            ),
            (
                (env::LISTEN_PID, "-3"),
                format!(r#"LISTEN_PID: expected {PID}, found "-3""#),
            ),
        ];
        for ((var, value), message) in cases {
            assert_eq!(read_err(&[(var, value)]), message);
        }
    }

    #[test]
    fn variables_for_another_pid_are_ignored() {
        let read = WorkerEnv::read(
            lookup(&[
                (env::LISTEN_PID, "7"),
                (env::LISTEN_FDS, "junk"),
                (env::WATCHDOG_PID, "7"),
                (env::WATCHDOG_USEC, "0"),
            ]),
            100,
        )
        .expect("not this process's variables");
        assert_eq!((read.listen_fds, read.watchdog), (0, None));

        let read = WorkerEnv::read(
            lookup(&[
                (env::LISTEN_PID, "100"),
                (env::LISTEN_FDS, "2"),
                (env::WATCHDOG_PID, "100"),
                (env::WATCHDOG_USEC, "10"),
                (env::MAX_REQUESTS, "0"),
            ]),
            100,
        )
        .expect("valid");
        assert_eq!(read.listen_fds, 2);
        assert_eq!(read.watchdog, Some(Duration::from_micros(10)));
        assert_eq!(read.max_requests, None, "0 means no limit");
    }

    #[test]
    fn a_huge_value_is_quoted_in_part() {
        let long = "9".repeat(10_000);
        let message = parse_listen_fds(OsStr::new(&long))
            .expect_err("huge")
            .to_string();
        assert!(message.len() < 200, "{message}");
        assert!(message.ends_with('…'), "{message}");
    }

    /// The variables a worker reads, each with any text at all or none.
    fn any_env() -> impl Strategy<Value = Vec<(&'static str, String)>> {
        let names = vec![
            env::LISTEN_FDS,
            env::LISTEN_PID,
            env::WATCHDOG_USEC,
            env::WATCHDOG_PID,
            env::WORKER_ID,
            env::GRACEFUL_TIMEOUT,
            env::MAX_REQUESTS,
            env::DRAIN_DELAY,
        ];
        let value = prop_oneof![
            any::<String>(),
            "[0-9.eE+-]{0,24}",
            any::<u64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|n| n.to_string()),
        ];
        proptest::collection::vec((proptest::sample::select(names), value), 0..6)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        // Asserts: any environment either reads or is refused with an error that names
        // one of the variables set and quotes its value; nothing panics.
        #[test]
        fn any_environment_reads_or_names_what_was_wrong(vars in any_env(), pid in 1_u32..200) {
            let pairs: Vec<(&str, &str)> = vars.iter().map(|(n, v)| (*n, v.as_str())).collect();
            match WorkerEnv::read(lookup(&pairs), pid) {
                Ok(read) => {
                    prop_assert!(read.listen_fds <= MAX_LISTEN_FDS);
                    prop_assert!(read.watchdog.is_none_or(|w| !w.is_zero()));
                }
                Err(error) => {
                    prop_assert!(vars.iter().any(|(n, _)| *n == error.var), "{error}");
                    prop_assert!(error.to_string().starts_with(error.var));
                }
            }
        }

        // Asserts: every duration the protocol carries comes back as it was written.
        #[test]
        fn seconds_round_trip(secs in 0..=MAX_SECONDS - 1, nanos in 0_u32..1_000_000_000) {
            let duration = Duration::new(secs, nanos);
            prop_assert_eq!(parse_seconds(env::GRACEFUL_TIMEOUT, OsStr::new(&format_seconds(duration))), Ok(duration));
        }

        // Asserts: a float that parses as f64 is accepted only when in range, and then
        // close to the f64's value; never a panic (the old reader's `from_secs_f64`).
        #[test]
        fn float_text_never_panics(value in any::<f64>()) {
            let text = value.to_string();
            match parse_seconds(env::DRAIN_DELAY, OsStr::new(&text)) {
                Ok(duration) => prop_assert!((duration.as_secs_f64() - value).abs() < 1e-6),
                // Out of range, NaN, or negative zero ("-0": no sign is taken).
                Err(error) => prop_assert!(!(0.0..=MAX_SECONDS as f64).contains(&value) || text.starts_with('-'), "{error}"),
            }
        }

        // Asserts: WATCHDOG_USEC and LISTEN_FDS readers never panic, and accept exactly
        // the documented ranges.
        #[test]
        fn counters_accept_exactly_their_range(n in any::<u64>(), junk in any::<String>()) {
            let text = n.to_string();
            prop_assert_eq!(parse_watchdog_usec(OsStr::new(&text)).is_ok(), (1..=MAX_SECONDS * 1_000_000).contains(&n));
            prop_assert_eq!(parse_listen_fds(OsStr::new(&text)).is_ok(), n <= MAX_LISTEN_FDS as u64);
            let _ = parse_watchdog_usec(OsStr::new(&junk));
            let _ = parse_listen_fds(OsStr::new(&junk));
        }
    }
}
