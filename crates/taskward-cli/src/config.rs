//! The configuration of `taskward serve`, with Gunicorn's setting names, read from flags,
//! a TOML file and `TASKWARD_*` environment variables. Read [`ServeConfig::load`] first.
//!
//! # Sources and precedence
//!
//! For each setting the first of these that sets it wins:
//!
//! 1. a command-line flag ([`ServeFlags`]);
//! 2. the TOML file given by `-c/--config`, or else `taskward.toml` in the working
//!    directory if that file exists;
//! 3. the environment variable `TASKWARD_<KEY>` (`TASKWARD_WORKERS=4`,
//!    `TASKWARD_BIND="127.0.0.1:8000,unix:/run/app.sock"`);
//! 4. the default.
//!
//! A layer replaces a lower one; nothing is merged. In particular `bind` from the flags
//! replaces the whole `bind` list of the file, as in Gunicorn.
//!
//! Every source is checked in full, even where a higher layer overrides it: a typo in the
//! file or a stale environment variable is an error, not a value that silently stops
//! mattering the day the flag is dropped. Each error is a [`ConfigError`] naming the key,
//! where the value came from ([`Origin`]: flag, file and line, or variable) and what was
//! wrong, for example `taskward.toml:3: workers: expected an integer from 1 to 512, found "two"`.
//!
//! # Settings
//!
//! | key | flag | default | meaning |
//! |---|---|---|---|
//! | `bind` | `-b/--bind` (repeatable) | `127.0.0.1:8000` | `HOST:PORT` or `unix:PATH` |
//! | `workers` | `-w/--workers` | 1 | worker processes, 1 to 512 ([`MAX_WORKERS`]) |
//! | `timeout` | `-t/--timeout` | 30 | seconds without a heartbeat before a worker is killed, at least 0.001; 0 disables |
//! | `graceful_timeout` | `--graceful-timeout` | 30 | seconds a stopping worker has before SIGKILL |
//! | `max_requests` | `--max-requests` | 0 | recycle a worker after this many requests (its replacement starts at 3/4 of them); 0 disables |
//! | `max_requests_jitter` | `--max-requests-jitter` | 0 | add up to this many to `max_requests`, per worker |
//! | `backlog` | `--backlog` | 2048 | `listen(2)` backlog |
//! | `admin_socket` | `--admin-socket` | `taskward.sock` | path of the admin socket (mode 0600); unset, `./taskward.sock` if it can be bound, else none; another process accepting there is an error |
//! | `reload_timeout` | `--reload-timeout` | 60 | seconds a new worker has to report `READY=1` |
//!
//! Durations are seconds, as an integer or a float (`2.5`), at most 31536000 (a year,
//! [`MAX_SECONDS`]: what the worker protocol carries). The config file must be a regular
//! file of at most 1 MiB ([`MAX_CONFIG_FILE`]). In the environment, `bind` is
//! comma-separated (so a unix socket path given there cannot contain a comma) and blanks
//! around each address are ignored. An empty variable is a bad value, not an unset one.
//! `max_requests_jitter` without `max_requests` is accepted and has no effect, as in
//! Gunicorn: jitter only spreads out a limit that exists.
//!
//! `TASKWARD_DRAIN_DELAY` is not a setting of the master but of its workers, which
//! inherit it (see [`taskward_http::protocol`]); the master checks it with the workers'
//! parser, so that a bad value stops the master at start instead of every worker.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::num::{NonZeroU64, NonZeroUsize};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use taskward_http::protocol::{self, EnvError, MAX_SECONDS};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// The file read when `-c/--config` is not given, if it exists in the working directory.
pub const DEFAULT_CONFIG_FILE: &str = "taskward.toml";

/// The prefix of the environment variables: `TASKWARD_WORKERS` sets `workers`.
pub const ENV_PREFIX: &str = "TASKWARD_";

/// The longest unix socket path, in bytes: `sun_path` is 108 bytes on Linux, including
/// the terminating NUL.
const MAX_UNIX_PATH: usize = 107;

/// The flags of `taskward serve`, as clap parsed them.
///
/// Values stay text here so that a bad flag gets the same [`ConfigError`] as a bad value
/// in the file or the environment; [`ServeConfig::load`] checks them.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct ServeFlags {
    /// Address to listen on, `HOST:PORT` or `unix:PATH`; repeat for several
    /// [default: 127.0.0.1:8000].
    #[arg(short = 'b', long = "bind", value_name = "ADDRESS")]
    pub bind: Vec<OsString>,
    /// Number of worker processes, 1 to 512 [default: 1].
    #[arg(short = 'w', long, value_name = "INT")]
    pub workers: Option<String>,
    /// Seconds without a heartbeat before a worker is killed, at least 0.001; 0 disables
    /// [default: 30].
    #[arg(short = 't', long, value_name = "SECONDS")]
    pub timeout: Option<String>,
    /// Seconds a stopping worker has before it is killed [default: 30].
    #[arg(long, value_name = "SECONDS")]
    pub graceful_timeout: Option<String>,
    /// Recycle a worker after this many requests; 0 disables [default: 0].
    #[arg(long, value_name = "INT")]
    pub max_requests: Option<String>,
    /// Add a random 0..=N to each worker's max-requests [default: 0].
    #[arg(long, value_name = "INT")]
    pub max_requests_jitter: Option<String>,
    /// The listen(2) backlog [default: 2048].
    #[arg(long, value_name = "INT")]
    pub backlog: Option<String>,
    /// The TOML config file, a regular file of at most 1 MiB [default: taskward.toml, if
    /// it exists].
    #[arg(short = 'c', long = "config", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Path of the admin socket read by `taskward status`.
    #[arg(long, value_name = "PATH")]
    pub admin_socket: Option<PathBuf>,
    /// Seconds a new worker has to report READY=1 [default: 60].
    #[arg(long, value_name = "SECONDS")]
    pub reload_timeout: Option<String>,
    /// The worker program and its arguments.
    #[arg(last = true, required = true, value_name = "PROGRAM [ARGS]")]
    pub program: Vec<OsString>,
}

/// The checked configuration of `taskward serve`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServeConfig {
    /// Where to listen, in the order given, each address once.
    pub bind: Vec<BindAddr>,
    /// How many workers to keep running.
    pub workers: NonZeroUsize,
    /// How long a worker may go without a `WATCHDOG=1` heartbeat; `None` if disabled.
    pub timeout: Option<Duration>,
    /// How long a stopping worker has before SIGKILL.
    pub graceful_timeout: Duration,
    /// When to recycle a worker; `None` if `max_requests` is 0.
    pub max_requests: Option<MaxRequests>,
    /// The `listen(2)` backlog, at most `i32::MAX`.
    pub backlog: u32,
    /// The admin socket's path, if one was configured.
    pub admin_socket: Option<PathBuf>,
    /// How long a new worker has to report `READY=1`; never zero.
    pub reload_timeout: Duration,
    /// The worker program.
    pub program: OsString,
    /// The worker program's arguments.
    pub args: Vec<OsString>,
}

/// An address the master listens on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BindAddr {
    /// A TCP address; a host name was resolved when the config was loaded.
    Tcp(SocketAddr),
    /// A unix stream socket at this path.
    Unix(PathBuf),
}

/// Worker recycling: `max_requests` with its jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct MaxRequests {
    /// `max_requests`.
    pub limit: NonZeroU64,
    /// `max_requests_jitter`.
    pub jitter: u64,
}

/// Where a configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Origin {
    /// A command-line flag, by its long name (`--workers`).
    Flag(&'static str),
    /// A line of the config file; the path is shown as it was given.
    File {
        /// The config file.
        path: PathBuf,
        /// The line of the value, from 1.
        line: usize,
    },
    /// An environment variable (`TASKWARD_WORKERS`).
    Env(String),
}

/// The configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A value has the wrong type or is out of range.
    #[error("{origin}: {key}: expected {expected}, found {found}")]
    InvalidValue {
        /// The setting, as named in the file (`graceful_timeout`).
        key: &'static str,
        /// Where the value came from.
        origin: Origin,
        /// What a good value looks like.
        expected: &'static str,
        /// The value as given, quoted if it was text.
        found: String,
    },
    /// A `bind` host name could not be resolved.
    #[error("{origin}: {key}: cannot resolve {addr:?}")]
    Unresolvable {
        /// The setting (`bind`).
        key: &'static str,
        /// Where the value came from.
        origin: Origin,
        /// The address as given.
        addr: String,
        /// What the resolver said.
        #[source]
        source: io::Error,
    },
    /// The config file has a key that is not a setting.
    #[error("{path}:{line}: unknown key `{key}`{}", did_you_mean(*.suggestion))]
    UnknownKey {
        /// The config file, as given.
        path: PathBuf,
        /// The line of the key, from 1.
        line: usize,
        /// The key.
        key: String,
        /// The setting it is closest to, if one is close.
        suggestion: Option<&'static str>,
    },
    /// The config file is not valid TOML.
    #[error("{}: invalid TOML: {message}", at_line(.path, *.line))]
    Syntax {
        /// The config file, as given.
        path: PathBuf,
        /// The line of the error, from 1, if the parser located it.
        line: Option<usize>,
        /// What the parser said.
        message: String,
    },
    /// The config file could not be read (given with `-c` but missing, unreadable, or
    /// not UTF-8).
    #[error("cannot read config file {}", .path.display())]
    ReadFile {
        /// The config file, as given.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// A variable of the worker protocol in the master's environment, which every
    /// worker inherits, holds a value the workers would refuse (`TASKWARD_DRAIN_DELAY`).
    #[error(
        "environment variable {}, inherited by every worker: expected {}, found {}",
        .0.var, .0.expected, .0.found
    )]
    WorkerEnv(EnvError),
    /// No program was given after `--`.
    #[error("no program to run: give it after `--`, as in `taskward serve -- PROGRAM [ARGS]`")]
    MissingProgram,
}

impl ServeConfig {
    /// The default `bind`.
    pub const DEFAULT_BIND: SocketAddr =
        SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8000);

    /// Loads the configuration from `flags`, the config file and the environment, as the
    /// [module docs](self) describe.
    ///
    /// `env` looks up an environment variable (`std::env::var_os` in the binary; a map in
    /// tests). `cwd` is where relative `-c` paths and the default `taskward.toml` are
    /// looked up. Host names in `bind` are resolved here (blocking), preferring an IPv4
    /// address; relative unix socket paths are kept as given.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for the first bad value, looking at the flags, then the file,
    /// then the environment; for a file given with `-c` that cannot be read; for an
    /// unknown key or a syntax error in the file; and if `flags.program` is empty.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::ffi::OsString;
    /// use std::path::Path;
    /// use std::time::Duration;
    /// use taskward_cli::config::{ServeConfig, ServeFlags};
    ///
    /// let flags = ServeFlags {
    ///     workers: Some("4".into()),
    ///     program: vec!["my-server".into(), "--port-from-env".into()],
    ///     ..ServeFlags::default()
    /// };
    /// let env = |name: &str| (name == "TASKWARD_TIMEOUT").then(|| OsString::from("2.5"));
    /// // A directory without a taskward.toml.
    /// let config = ServeConfig::load(flags, env, Path::new("/nonexistent"))?;
    ///
    /// assert_eq!(config.workers.get(), 4);
    /// assert_eq!(config.timeout, Some(Duration::from_millis(2500)));
    /// assert_eq!(config.graceful_timeout, Duration::from_secs(30));
    /// assert_eq!(config.program, "my-server");
    /// # Ok::<(), taskward_cli::config::ConfigError>(())
    /// ```
    pub fn load(
        flags: ServeFlags,
        env: impl Fn(&str) -> Option<OsString>,
        cwd: &Path,
    ) -> Result<Self, ConfigError> {
        let from_flags = Layer::from_flags(&flags)?;
        let from_file = match read_config_file(flags.config.as_deref(), cwd)? {
            Some((path, text)) => Layer::from_file(&path, &text)?,
            None => Layer::default(),
        };
        let from_env = Layer::from_env(&env)?;
        check_inherited(&env)?;
        let layer = from_flags.or(from_file).or(from_env);

        let mut program = flags.program.into_iter();
        let program_name = program
            .next()
            .filter(|name| !name.is_empty())
            .ok_or(ConfigError::MissingProgram)?;

        let max_requests =
            NonZeroU64::new(layer.max_requests.unwrap_or(0)).map(|limit| MaxRequests {
                limit,
                jitter: layer.max_requests_jitter.unwrap_or(0),
            });
        Ok(Self {
            bind: layer
                .bind
                .unwrap_or_else(|| vec![BindAddr::Tcp(Self::DEFAULT_BIND)]),
            workers: layer.workers.unwrap_or(NonZeroUsize::MIN),
            timeout: Some(layer.timeout.unwrap_or(Duration::from_secs(30)))
                .filter(|timeout| !timeout.is_zero()),
            graceful_timeout: layer.graceful_timeout.unwrap_or(Duration::from_secs(30)),
            max_requests,
            backlog: layer.backlog.unwrap_or(2048),
            admin_socket: layer.admin_socket,
            reload_timeout: layer.reload_timeout.unwrap_or(Duration::from_secs(60)),
            program: program_name,
            args: program.collect(),
        })
    }
}

impl MaxRequests {
    /// The request count at which one worker is recycled: `limit` plus
    /// `sample % (jitter + 1)`, so that a uniform `sample` gives Gunicorn's
    /// `max_requests + randint(0, max_requests_jitter)`. Saturates at `u64::MAX`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::num::NonZeroU64;
    /// # use taskward_cli::config::{ServeConfig, ServeFlags};
    /// # let flags = ServeFlags {
    /// #     max_requests: Some("1000".into()),
    /// #     max_requests_jitter: Some("50".into()),
    /// #     program: vec!["app".into()],
    /// #     ..ServeFlags::default()
    /// # };
    /// # let config = ServeConfig::load(flags, |_| None, std::path::Path::new("/nonexistent"))?;
    /// let recycling = config.max_requests.expect("max_requests was set");
    /// assert_eq!(recycling.threshold(0), 1000);
    /// assert_eq!(recycling.threshold(50), 1050);
    /// assert_eq!(recycling.threshold(51), 1000);
    /// # Ok::<(), taskward_cli::config::ConfigError>(())
    /// ```
    #[must_use]
    pub fn threshold(&self, sample: u64) -> u64 {
        let extra = match self.jitter.checked_add(1) {
            Some(modulus) => sample % modulus,
            // jitter == u64::MAX: every u64 is in 0..=jitter.
            None => sample,
        };
        self.limit.get().saturating_add(extra)
    }
}

impl fmt::Display for BindAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(addr) => addr.fmt(f),
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Flag(flag) => write!(f, "flag {flag}"),
            Self::File { path, line } => write!(f, "{}:{line}", path.display()),
            Self::Env(name) => write!(f, "environment variable {name}"),
        }
    }
}

fn did_you_mean(suggestion: Option<&'static str>) -> String {
    suggestion.map_or_else(String::new, |key| format!(" (did you mean `{key}`?)"))
}

fn at_line(path: &Path, line: Option<usize>) -> String {
    match line {
        Some(line) => format!("{}:{line}", path.display()),
        None => path.display().to_string(),
    }
}

/// A setting, as named in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Bind,
    Workers,
    Timeout,
    GracefulTimeout,
    MaxRequests,
    MaxRequestsJitter,
    Backlog,
    AdminSocket,
    ReloadTimeout,
}

impl Key {
    const ALL: [Self; 9] = [
        Self::Bind,
        Self::Workers,
        Self::Timeout,
        Self::GracefulTimeout,
        Self::MaxRequests,
        Self::MaxRequestsJitter,
        Self::Backlog,
        Self::AdminSocket,
        Self::ReloadTimeout,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Bind => "bind",
            Self::Workers => "workers",
            Self::Timeout => "timeout",
            Self::GracefulTimeout => "graceful_timeout",
            Self::MaxRequests => "max_requests",
            Self::MaxRequestsJitter => "max_requests_jitter",
            Self::Backlog => "backlog",
            Self::AdminSocket => "admin_socket",
            Self::ReloadTimeout => "reload_timeout",
        }
    }

    /// The long flag, as clap derives it from the [`ServeFlags`] field.
    fn flag(self) -> &'static str {
        match self {
            Self::Bind => "--bind",
            Self::Workers => "--workers",
            Self::Timeout => "--timeout",
            Self::GracefulTimeout => "--graceful-timeout",
            Self::MaxRequests => "--max-requests",
            Self::MaxRequestsJitter => "--max-requests-jitter",
            Self::Backlog => "--backlog",
            Self::AdminSocket => "--admin-socket",
            Self::ReloadTimeout => "--reload-timeout",
        }
    }

    fn env_var(self) -> String {
        format!("{ENV_PREFIX}{}", self.name().to_ascii_uppercase())
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|key| key.name() == name)
    }

    /// The setting an unknown key was probably meant to be: within two edits, or the
    /// same once `-` is read as `_` (Gunicorn's flags use dashes, its files underscores).
    fn suggest(unknown: &str) -> Option<&'static str> {
        let unknown = unknown.replace('-', "_");
        Self::ALL
            .into_iter()
            .map(|key| (edit_distance(&unknown, key.name()), key.name()))
            .filter(|&(distance, _)| distance <= 2)
            .min_by_key(|&(distance, _)| distance)
            .map(|(_, name)| name)
    }
}

/// Levenshtein distance, by chars; the inputs are short keys.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != *cb);
            current.push(substitute.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

/// A value before it is checked: text from a flag or a variable, or a TOML value.
#[derive(Clone, Copy)]
enum Raw<'a> {
    Text(&'a OsStr),
    Toml(&'a DeValue<'a>),
}

impl Raw<'_> {
    /// The value for an error message: text quoted, TOML numbers and booleans bare.
    fn found(self) -> String {
        match self {
            Self::Text(text) => format!("{text:?}"),
            Self::Toml(DeValue::String(text)) => format!("{text:?}"),
            Self::Toml(DeValue::Integer(int)) => int.to_string(),
            Self::Toml(DeValue::Float(float)) => float.to_string(),
            Self::Toml(DeValue::Boolean(bool)) => bool.to_string(),
            Self::Toml(DeValue::Datetime(datetime)) => datetime.to_string(),
            Self::Toml(DeValue::Array(_)) => "an array".to_owned(),
            Self::Toml(DeValue::Table(_)) => "a table".to_owned(),
        }
    }

    /// An unsigned integer: decimal digits only as text, a TOML integer otherwise.
    fn to_u64(self) -> Option<u64> {
        match self {
            Self::Text(text) => {
                let text = text.to_str()?;
                let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
                digits.then(|| text.parse().ok()).flatten()
            }
            Self::Toml(DeValue::Integer(int)) => {
                let value = i128::from_str_radix(int.as_str(), int.radix()).ok()?;
                u64::try_from(value).ok()
            }
            Self::Toml(_) => None,
        }
    }

    /// Seconds as an integer or a float: finite, not negative, at most [`MAX_SECONDS`]
    /// (what the worker protocol carries).
    fn to_duration(self) -> Option<Duration> {
        self.to_any_duration()
            .filter(|duration| *duration <= Duration::from_secs(MAX_SECONDS))
    }

    fn to_any_duration(self) -> Option<Duration> {
        if let Some(secs) = self.to_u64() {
            return Some(Duration::from_secs(secs));
        }
        let secs: f64 = match self {
            Self::Text(text) => text.to_str()?.parse().ok()?,
            Self::Toml(DeValue::Float(float)) => float.as_str().parse().ok()?,
            Self::Toml(_) => return None,
        };
        // Rejects NaN, infinities, negatives and values past Duration::MAX.
        Duration::try_from_secs_f64(secs).ok()
    }

    fn to_path(self) -> Option<PathBuf> {
        let path = match self {
            Self::Text(text) => PathBuf::from(text),
            Self::Toml(DeValue::String(text)) => PathBuf::from(text.as_ref()),
            Self::Toml(_) => return None,
        };
        (!path.as_os_str().is_empty()).then_some(path)
    }
}

/// Why a value is bad, before the key and origin are known.
enum Invalid {
    Value {
        expected: &'static str,
        found: String,
    },
    Unresolvable {
        addr: String,
        source: io::Error,
    },
}

impl Invalid {
    fn value(expected: &'static str, raw: Raw<'_>) -> Self {
        Self::Value {
            expected,
            found: raw.found(),
        }
    }

    fn at(self, key: Key, origin: Origin) -> ConfigError {
        match self {
            Self::Value { expected, found } => ConfigError::InvalidValue {
                key: key.name(),
                origin,
                expected,
                found,
            },
            Self::Unresolvable { addr, source } => ConfigError::Unresolvable {
                key: key.name(),
                origin,
                addr,
                source,
            },
        }
    }
}

const BIND_EXPECTED: &str = "HOST:PORT or unix:PATH";

/// Parses one `bind` address.
fn parse_bind(raw: Raw<'_>) -> Result<BindAddr, Invalid> {
    let text: &OsStr = match raw {
        Raw::Text(text) => text,
        Raw::Toml(DeValue::String(text)) => OsStr::new(text.as_ref()),
        Raw::Toml(_) => return Err(Invalid::value(BIND_EXPECTED, raw)),
    };
    if let Some(path) = text.as_bytes().strip_prefix(b"unix:") {
        if path.is_empty() {
            return Err(Invalid::value(BIND_EXPECTED, raw));
        }
        if path.len() > MAX_UNIX_PATH {
            return Err(Invalid::value(
                "a unix socket path of at most 107 bytes",
                raw,
            ));
        }
        return Ok(BindAddr::Unix(PathBuf::from(OsStr::from_bytes(path))));
    }
    let Some(text) = text.to_str() else {
        return Err(Invalid::value(BIND_EXPECTED, raw));
    };
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(BindAddr::Tcp(addr));
    }
    // Not an IP literal: a host name. An unbracketed IPv6 address ("::1:80") and an empty
    // host (":80") end up here too, and are refused rather than guessed at.
    let (host, port) = text
        .rsplit_once(':')
        .filter(|(host, port)| {
            !host.is_empty()
                && !host.contains([':', '[', ']'])
                && !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
        })
        .ok_or_else(|| Invalid::value(BIND_EXPECTED, raw))?;
    let port: u16 = port
        .parse()
        .map_err(|_| Invalid::value("a port from 0 to 65535", raw))?;
    let unresolvable = |source| Invalid::Unresolvable {
        addr: text.to_owned(),
        source,
    };
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(unresolvable)?
        .collect();
    let addr = addrs
        .iter()
        .find(|addr| addr.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| {
            unresolvable(io::Error::new(
                io::ErrorKind::NotFound,
                "the name has no addresses",
            ))
        })?;
    Ok(BindAddr::Tcp(addr))
}

/// The values one source set; `None` where it said nothing.
#[derive(Debug, Default)]
struct Layer {
    bind: Option<Vec<BindAddr>>,
    workers: Option<NonZeroUsize>,
    timeout: Option<Duration>,
    graceful_timeout: Option<Duration>,
    max_requests: Option<u64>,
    max_requests_jitter: Option<u64>,
    backlog: Option<u32>,
    admin_socket: Option<PathBuf>,
    reload_timeout: Option<Duration>,
}

impl Layer {
    fn from_flags(flags: &ServeFlags) -> Result<Self, ConfigError> {
        let mut layer = Self::default();
        if !flags.bind.is_empty() {
            let origin = || Origin::Flag(Key::Bind.flag());
            let addrs = flags
                .bind
                .iter()
                .map(|text| parse_bind(Raw::Text(text)).map_err(|e| e.at(Key::Bind, origin())));
            layer.bind = Some(distinct(addrs.collect::<Result<_, _>>()?, origin)?);
        }
        let scalars = [
            (Key::Workers, flags.workers.as_deref().map(OsStr::new)),
            (Key::Timeout, flags.timeout.as_deref().map(OsStr::new)),
            (
                Key::GracefulTimeout,
                flags.graceful_timeout.as_deref().map(OsStr::new),
            ),
            (
                Key::MaxRequests,
                flags.max_requests.as_deref().map(OsStr::new),
            ),
            (
                Key::MaxRequestsJitter,
                flags.max_requests_jitter.as_deref().map(OsStr::new),
            ),
            (Key::Backlog, flags.backlog.as_deref().map(OsStr::new)),
            (
                Key::AdminSocket,
                flags.admin_socket.as_deref().map(Path::as_os_str),
            ),
            (
                Key::ReloadTimeout,
                flags.reload_timeout.as_deref().map(OsStr::new),
            ),
        ];
        for (key, text) in scalars {
            if let Some(text) = text {
                layer.set(key, Raw::Text(text), || Origin::Flag(key.flag()))?;
            }
        }
        Ok(layer)
    }

    fn from_env(env: &impl Fn(&str) -> Option<OsString>) -> Result<Self, ConfigError> {
        let mut layer = Self::default();
        for key in Key::ALL {
            let name = key.env_var();
            let Some(value) = env(&name) else { continue };
            let origin = || Origin::Env(name.clone());
            if key == Key::Bind {
                let addrs = value.as_bytes().split(|&b| b == b',').map(|item| {
                    let item = OsStr::from_bytes(item.trim_ascii());
                    parse_bind(Raw::Text(item)).map_err(|e| e.at(key, origin()))
                });
                layer.bind = Some(distinct(addrs.collect::<Result<_, _>>()?, origin)?);
            } else {
                layer.set(key, Raw::Text(&value), origin)?;
            }
        }
        Ok(layer)
    }

    /// `path` is the file as given, for messages; `text` its contents.
    fn from_file(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let line_of = |offset: usize| {
            let before = text.get(..offset).unwrap_or(text);
            before.bytes().filter(|&b| b == b'\n').count() + 1
        };
        let origin = |span: std::ops::Range<usize>| Origin::File {
            path: path.to_owned(),
            line: line_of(span.start),
        };
        let table = DeTable::parse(text).map_err(|error| ConfigError::Syntax {
            path: path.to_owned(),
            line: error.span().map(|span| line_of(span.start)),
            message: error.message().trim_end().to_owned(),
        })?;

        // In file order, so that the first bad line is the one reported.
        let mut entries: Vec<(&Spanned<_>, &Spanned<DeValue<'_>>)> =
            table.get_ref().iter().collect();
        entries.sort_by_key(|(key, _)| key.span().start);

        let mut layer = Self::default();
        for (name, value) in entries {
            let Some(key) = Key::from_name(name.get_ref()) else {
                return Err(ConfigError::UnknownKey {
                    path: path.to_owned(),
                    line: line_of(name.span().start),
                    key: name.get_ref().to_string(),
                    suggestion: Key::suggest(name.get_ref()),
                });
            };
            if key == Key::Bind {
                layer.bind = Some(bind_from_toml(value, origin)?);
            } else {
                layer.set(key, Raw::Toml(value.get_ref()), || origin(value.span()))?;
            }
        }
        Ok(layer)
    }

    /// Checks and stores a setting other than `bind`.
    fn set(
        &mut self,
        key: Key,
        raw: Raw<'_>,
        origin: impl FnOnce() -> Origin,
    ) -> Result<(), ConfigError> {
        let invalid = |expected| Invalid::value(expected, raw).at(key, origin());
        match key {
            Key::Bind => unreachable!("bind is a list and parsed by the caller"),
            Key::Workers => {
                let workers = raw
                    .to_u64()
                    .filter(|&n| n <= MAX_WORKERS as u64)
                    .and_then(|n| usize::try_from(n).ok())
                    .and_then(NonZeroUsize::new);
                self.workers = Some(workers.ok_or_else(|| invalid(WORKERS))?);
            }
            Key::Timeout => {
                // WATCHDOG_USEC is whole microseconds and a worker beats at half of it:
                // below a millisecond it would be zero, or a busy loop.
                let timeout = raw
                    .to_duration()
                    .filter(|t| t.is_zero() || *t >= MIN_TIMEOUT);
                self.timeout = Some(timeout.ok_or_else(|| invalid(TIMEOUT))?);
            }
            Key::GracefulTimeout => {
                self.graceful_timeout = Some(raw.to_duration().ok_or_else(|| invalid(SECONDS))?);
            }
            Key::MaxRequests => {
                self.max_requests =
                    Some(raw.to_u64().ok_or_else(|| invalid(NON_NEGATIVE_INTEGER))?);
            }
            Key::MaxRequestsJitter => {
                self.max_requests_jitter =
                    Some(raw.to_u64().ok_or_else(|| invalid(NON_NEGATIVE_INTEGER))?);
            }
            Key::Backlog => {
                // listen(2) takes a C int.
                let backlog = raw
                    .to_u64()
                    .and_then(|n| i32::try_from(n).ok())
                    .and_then(|n| u32::try_from(n).ok());
                self.backlog =
                    Some(backlog.ok_or_else(|| invalid("an integer from 0 to 2147483647"))?);
            }
            Key::AdminSocket => {
                self.admin_socket = Some(raw.to_path().ok_or_else(|| invalid("a non-empty path"))?);
            }
            Key::ReloadTimeout => {
                let timeout = raw.to_duration().filter(|timeout| !timeout.is_zero());
                self.reload_timeout = Some(timeout.ok_or_else(|| invalid(POSITIVE_SECONDS))?);
            }
        }
        Ok(())
    }

    /// `self`, with the settings it lacks taken from `lower`.
    fn or(self, lower: Self) -> Self {
        Self {
            bind: self.bind.or(lower.bind),
            workers: self.workers.or(lower.workers),
            timeout: self.timeout.or(lower.timeout),
            graceful_timeout: self.graceful_timeout.or(lower.graceful_timeout),
            max_requests: self.max_requests.or(lower.max_requests),
            max_requests_jitter: self.max_requests_jitter.or(lower.max_requests_jitter),
            backlog: self.backlog.or(lower.backlog),
            admin_socket: self.admin_socket.or(lower.admin_socket),
            reload_timeout: self.reload_timeout.or(lower.reload_timeout),
        }
    }
}

const SECONDS: &str = "a number of seconds from 0 to 31536000";
const POSITIVE_SECONDS: &str = "a number of seconds above 0, at most 31536000";
const TIMEOUT: &str = "0 (off) or a number of seconds from 0.001 to 31536000";
const WORKERS: &str = "an integer from 1 to 512";

/// The most workers one master keeps: Gunicorn's advice, (2 × cores) + 1, up to 255
/// cores. Each worker costs the master descriptors (its pidfd, the child's handle) and a
/// process; without a bound, `-w 100000` forked until descriptors ran out.
pub const MAX_WORKERS: usize = 512;

/// The shortest heartbeat `timeout` other than 0 (off).
pub const MIN_TIMEOUT: Duration = Duration::from_millis(1);

/// The largest config file read: far past any real one; `-c /dev/zero` or a huge file
/// is refused rather than read without limit.
pub const MAX_CONFIG_FILE: u64 = 1024 * 1024;
const NON_NEGATIVE_INTEGER: &str = "a non-negative integer";

/// `bind = "ADDRESS"` or `bind = ["ADDRESS", ...]`; errors point at the element's line.
fn bind_from_toml(
    value: &Spanned<DeValue<'_>>,
    origin: impl Fn(std::ops::Range<usize>) -> Origin,
) -> Result<Vec<BindAddr>, ConfigError> {
    let whole = || origin(value.span());
    let addrs = match value.get_ref() {
        DeValue::Array(items) if items.is_empty() => {
            return Err(ConfigError::InvalidValue {
                key: Key::Bind.name(),
                origin: whole(),
                expected: "at least one address",
                found: "an empty array".to_owned(),
            });
        }
        DeValue::Array(items) => items
            .iter()
            .map(|item| {
                parse_bind(Raw::Toml(item.get_ref()))
                    .map_err(|e| e.at(Key::Bind, origin(item.span())))
            })
            .collect::<Result<_, _>>()?,
        DeValue::String(_) => {
            vec![parse_bind(Raw::Toml(value.get_ref())).map_err(|e| e.at(Key::Bind, whole()))?]
        }
        other => {
            return Err(
                Invalid::value("an address or an array of addresses", Raw::Toml(other))
                    .at(Key::Bind, whole()),
            );
        }
    };
    distinct(addrs, whole)
}

/// Refuses a list that names an address twice: the second bind would fail with
/// `EADDRINUSE` at startup, far from the typo.
fn distinct(
    addrs: Vec<BindAddr>,
    origin: impl FnOnce() -> Origin,
) -> Result<Vec<BindAddr>, ConfigError> {
    for (i, addr) in addrs.iter().enumerate() {
        if addrs[..i].contains(addr) {
            return Err(ConfigError::InvalidValue {
                key: Key::Bind.name(),
                origin: origin(),
                expected: "each address once",
                found: format!("{:?} twice", addr.to_string()),
            });
        }
    }
    Ok(addrs)
}

/// Checks the variables of the worker protocol that workers inherit from the master
/// unchanged, with the parsers the workers use: a bad one would make every worker exit at
/// start (or, before, panic), so it is the master's configuration error. The others are
/// the master's own settings (`TASKWARD_GRACEFUL_TIMEOUT`, `TASKWARD_MAX_REQUESTS`,
/// checked above) or set per worker.
fn check_inherited(env: &impl Fn(&str) -> Option<OsString>) -> Result<(), ConfigError> {
    for var in [protocol::env::DRAIN_DELAY] {
        if let Some(value) = env(var) {
            protocol::parse_seconds(var, &value).map_err(ConfigError::WorkerEnv)?;
        }
    }
    Ok(())
}

/// Reads the `-c` file, or the default file if it exists. Returns the path as given (for
/// messages) and the text.
fn read_config_file(
    explicit: Option<&Path>,
    cwd: &Path,
) -> Result<Option<(PathBuf, String)>, ConfigError> {
    let shown = explicit.unwrap_or(Path::new(DEFAULT_CONFIG_FILE));
    match read_bounded(&cwd.join(shown)) {
        Ok(text) => Ok(Some((shown.to_owned(), text))),
        Err(error) if explicit.is_none() && error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ConfigError::ReadFile {
            path: shown.to_owned(),
            source,
        }),
    }
}

/// The text of `path`, a regular file of at most [`MAX_CONFIG_FILE`] bytes: a device
/// (`/dev/zero`) or a FIFO is refused before it is opened, and the read stops past the
/// limit whatever the size said.
fn read_bounded(path: &Path) -> io::Result<String> {
    use std::io::Read;
    let too_large = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {MAX_CONFIG_FILE} bytes"),
        )
    };
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        let what = if meta.is_dir() {
            "a directory"
        } else {
            "not a regular file"
        };
        return Err(io::Error::new(io::ErrorKind::InvalidInput, what));
    }
    if meta.len() > MAX_CONFIG_FILE {
        return Err(too_large());
    }
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MAX_CONFIG_FILE + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > MAX_CONFIG_FILE {
        return Err(too_large());
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::error::Error as _;
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::temp_dir::TempDir;

    /// A temp dir holding one file.
    fn with_file(name: &str, text: &str) -> TempDir {
        let dir = TempDir::new("config");
        std::fs::write(dir.path().join(name), text).expect("the temp dir is writable");
        dir
    }

    fn flags() -> ServeFlags {
        ServeFlags {
            program: vec!["app".into(), "--flag".into()],
            ..ServeFlags::default()
        }
    }

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> + use<> {
        let vars: HashMap<String, OsString> = vars
            .iter()
            .map(|&(name, value)| (name.to_owned(), value.into()))
            .collect();
        move |name| vars.get(name).cloned()
    }

    fn no_env() -> impl Fn(&str) -> Option<OsString> {
        |_| None
    }

    /// The message of the error `load` returns.
    fn error(flags: ServeFlags, env: impl Fn(&str) -> Option<OsString>, cwd: &Path) -> String {
        ServeConfig::load(flags, env, cwd)
            .expect_err("the configuration is bad")
            .to_string()
    }

    fn tcp(addr: &str) -> BindAddr {
        BindAddr::Tcp(addr.parse().expect("a socket address literal"))
    }

    #[test]
    fn defaults() {
        let dir = TempDir::new("config");
        let config = ServeConfig::load(flags(), no_env(), dir.path()).expect("defaults are valid");
        assert_eq!(
            config,
            ServeConfig {
                bind: vec![BindAddr::Tcp(SocketAddr::new(
                    IpAddr::V4(Ipv4Addr::LOCALHOST),
                    8000
                ))],
                workers: NonZeroUsize::MIN,
                timeout: Some(Duration::from_secs(30)),
                graceful_timeout: Duration::from_secs(30),
                max_requests: None,
                backlog: 2048,
                admin_socket: None,
                reload_timeout: Duration::from_secs(60),
                program: "app".into(),
                args: vec!["--flag".into()],
            }
        );
    }

    #[test]
    fn flag_beats_file_beats_env_beats_default() {
        let dir = with_file(DEFAULT_CONFIG_FILE, "workers = 3\n");
        let empty = TempDir::new("config");
        let env = env(&[("TASKWARD_WORKERS", "2")]);
        let load = |flags, cwd: &Path| {
            ServeConfig::load(flags, &env, cwd)
                .expect("valid")
                .workers
                .get()
        };
        let with_flag = ServeFlags {
            workers: Some("4".into()),
            ..flags()
        };

        assert_eq!(load(with_flag, dir.path()), 4);
        assert_eq!(load(flags(), dir.path()), 3);
        assert_eq!(load(flags(), empty.path()), 2);
        let default = ServeConfig::load(flags(), no_env(), empty.path()).expect("valid");
        assert_eq!(default.workers.get(), 1);
    }

    #[test]
    fn layers_replace_per_key_and_bind_as_a_whole() {
        let dir = with_file(
            "serve.toml",
            "bind = [\"127.0.0.1:1\", \"unix:/tmp/a.sock\"]\ntimeout = 5\n",
        );
        let flags = ServeFlags {
            bind: vec!["127.0.0.1:2".into()],
            config: Some("serve.toml".into()),
            ..flags()
        };
        let env = env(&[
            ("TASKWARD_TIMEOUT", "7"),
            ("TASKWARD_GRACEFUL_TIMEOUT", "0.25"),
        ]);
        let config = ServeConfig::load(flags, env, dir.path()).expect("valid");
        assert_eq!(config.bind, vec![tcp("127.0.0.1:2")]);
        assert_eq!(config.timeout, Some(Duration::from_secs(5)));
        assert_eq!(config.graceful_timeout, Duration::from_millis(250));
    }

    #[test]
    fn every_setting_from_the_file() {
        let dir = with_file(
            DEFAULT_CONFIG_FILE,
            r#"
                bind = ["[::1]:8080", "unix:/run/app.sock"]
                workers = 8
                timeout = 0
                graceful_timeout = 2.5
                max_requests = 1_000
                max_requests_jitter = 0x10
                backlog = 64
                admin_socket = "/run/admin.sock"
                reload_timeout = 90
            "#,
        );
        let config = ServeConfig::load(flags(), no_env(), dir.path()).expect("valid");
        assert_eq!(
            config.bind,
            vec![tcp("[::1]:8080"), BindAddr::Unix("/run/app.sock".into())]
        );
        assert_eq!(config.workers.get(), 8);
        assert_eq!(config.timeout, None, "0 disables the heartbeat timeout");
        assert_eq!(config.graceful_timeout, Duration::from_millis(2500));
        assert_eq!(
            config.max_requests,
            Some(MaxRequests {
                limit: NonZeroU64::new(1000).expect("not zero"),
                jitter: 16,
            })
        );
        assert_eq!(config.backlog, 64);
        assert_eq!(config.admin_socket, Some("/run/admin.sock".into()));
        assert_eq!(config.reload_timeout, Duration::from_secs(90));
    }

    #[test]
    fn every_setting_from_the_environment() {
        let dir = TempDir::new("config");
        let env = env(&[
            ("TASKWARD_BIND", "127.0.0.1:8000, unix:/tmp/x.sock"),
            ("TASKWARD_WORKERS", "4"),
            ("TASKWARD_TIMEOUT", "1.5"),
            ("TASKWARD_GRACEFUL_TIMEOUT", "3"),
            ("TASKWARD_MAX_REQUESTS", "500"),
            ("TASKWARD_MAX_REQUESTS_JITTER", "20"),
            ("TASKWARD_BACKLOG", "0"),
            ("TASKWARD_ADMIN_SOCKET", "admin.sock"),
            ("TASKWARD_RELOAD_TIMEOUT", "10"),
        ]);
        let config = ServeConfig::load(flags(), env, dir.path()).expect("valid");
        assert_eq!(
            config.bind,
            vec![tcp("127.0.0.1:8000"), BindAddr::Unix("/tmp/x.sock".into())]
        );
        assert_eq!(config.workers.get(), 4);
        assert_eq!(config.timeout, Some(Duration::from_millis(1500)));
        assert_eq!(config.graceful_timeout, Duration::from_secs(3));
        let recycling = config.max_requests.expect("set");
        assert_eq!((recycling.limit.get(), recycling.jitter), (500, 20));
        assert_eq!(config.backlog, 0);
        assert_eq!(config.admin_socket, Some("admin.sock".into()));
        assert_eq!(config.reload_timeout, Duration::from_secs(10));
    }

    #[test]
    fn every_setting_from_flags() {
        let dir = TempDir::new("config");
        let flags = ServeFlags {
            bind: vec!["0.0.0.0:0".into(), "unix:rel.sock".into()],
            workers: Some("2".into()),
            timeout: Some("0".into()),
            graceful_timeout: Some("0".into()),
            max_requests: Some("0".into()),
            max_requests_jitter: Some("5".into()),
            backlog: Some("2147483647".into()),
            admin_socket: Some("/tmp/admin".into()),
            reload_timeout: Some("0.5".into()),
            ..flags()
        };
        let config = ServeConfig::load(flags, no_env(), dir.path()).expect("valid");
        assert_eq!(
            config.bind,
            vec![tcp("0.0.0.0:0"), BindAddr::Unix("rel.sock".into())]
        );
        assert_eq!(config.workers.get(), 2);
        assert_eq!(config.timeout, None);
        assert_eq!(config.graceful_timeout, Duration::ZERO);
        assert_eq!(
            config.max_requests, None,
            "jitter without max_requests is accepted and has no effect"
        );
        assert_eq!(config.backlog, 2_147_483_647);
        assert_eq!(config.admin_socket, Some("/tmp/admin".into()));
        assert_eq!(config.reload_timeout, Duration::from_millis(500));
    }

    #[test]
    fn clap_parses_the_documented_flags() {
        use clap::Parser as _;

        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            serve: ServeFlags,
        }

        let cli = Cli::try_parse_from([
            "taskward",
            "-b",
            "127.0.0.1:1",
            "--bind",
            "unix:/x",
            "-w",
            "3",
            "-t",
            "9",
            "-c",
            "x.toml",
            "--graceful-timeout",
            "1",
            "--max-requests",
            "10",
            "--max-requests-jitter",
            "2",
            "--backlog",
            "5",
            "--admin-socket",
            "/a",
            "--reload-timeout",
            "7",
            "--",
            "prog",
            "-w",
            "arg",
        ])
        .expect("the flags parse");
        assert_eq!(
            cli.serve,
            ServeFlags {
                bind: vec!["127.0.0.1:1".into(), "unix:/x".into()],
                workers: Some("3".into()),
                timeout: Some("9".into()),
                graceful_timeout: Some("1".into()),
                max_requests: Some("10".into()),
                max_requests_jitter: Some("2".into()),
                backlog: Some("5".into()),
                config: Some("x.toml".into()),
                admin_socket: Some("/a".into()),
                reload_timeout: Some("7".into()),
                program: vec!["prog".into(), "-w".into(), "arg".into()],
            }
        );
        assert!(
            Cli::try_parse_from(["taskward", "-w", "2"]).is_err(),
            "the program is required"
        );
    }

    #[test]
    fn bad_values_from_flags() {
        let dir = TempDir::new("config");
        let cases: [(ServeFlags, &str); 10] = [
            (
                ServeFlags {
                    workers: Some("two".into()),
                    ..flags()
                },
                r#"flag --workers: workers: expected an integer from 1 to 512, found "two""#,
            ),
            (
                ServeFlags {
                    workers: Some("0".into()),
                    ..flags()
                },
                r#"flag --workers: workers: expected an integer from 1 to 512, found "0""#,
            ),
            (
                ServeFlags {
                    timeout: Some("-1".into()),
                    ..flags()
                },
                r#"flag --timeout: timeout: expected 0 (off) or a number of seconds from 0.001 to 31536000, found "-1""#,
            ),
            (
                ServeFlags {
                    graceful_timeout: Some("inf".into()),
                    ..flags()
                },
                r#"flag --graceful-timeout: graceful_timeout: expected a number of seconds from 0 to 31536000, found "inf""#,
            ),
            (
                ServeFlags {
                    max_requests: Some("1e3".into()),
                    ..flags()
                },
                r#"flag --max-requests: max_requests: expected a non-negative integer, found "1e3""#,
            ),
            (
                ServeFlags {
                    max_requests_jitter: Some("-5".into()),
                    ..flags()
                },
                r#"flag --max-requests-jitter: max_requests_jitter: expected a non-negative integer, found "-5""#,
            ),
            (
                ServeFlags {
                    backlog: Some("2147483648".into()),
                    ..flags()
                },
                r#"flag --backlog: backlog: expected an integer from 0 to 2147483647, found "2147483648""#,
            ),
            (
                ServeFlags {
                    admin_socket: Some("".into()),
                    ..flags()
                },
                r#"flag --admin-socket: admin_socket: expected a non-empty path, found """#,
            ),
            (
                ServeFlags {
                    reload_timeout: Some("0".into()),
                    ..flags()
                },
                r#"flag --reload-timeout: reload_timeout: expected a number of seconds above 0, at most 31536000, found "0""#,
            ),
            (
                ServeFlags {
                    bind: vec!["8000".into()],
                    ..flags()
                },
                r#"flag --bind: bind: expected HOST:PORT or unix:PATH, found "8000""#,
            ),
        ];
        for (flags, message) in cases {
            assert_eq!(error(flags, no_env(), dir.path()), message);
        }
    }

    #[test]
    fn bad_values_from_the_file_name_the_line() {
        let cases = [
            (
                "# comment\n\nworkers = \"two\"\n",
                r#"taskward.toml:3: workers: expected an integer from 1 to 512, found "two""#,
            ),
            (
                "workers = 0",
                "taskward.toml:1: workers: expected an integer from 1 to 512, found 0",
            ),
            (
                "workers = 1.5",
                "taskward.toml:1: workers: expected an integer from 1 to 512, found 1.5",
            ),
            (
                "timeout = -1",
                "taskward.toml:1: timeout: expected 0 (off) or a number of seconds from 0.001 to 31536000, found -1",
            ),
            (
                "graceful_timeout = nan",
                "taskward.toml:1: graceful_timeout: expected a number of seconds from 0 to 31536000, found nan",
            ),
            (
                "timeout = \"30\"",
                r#"taskward.toml:1: timeout: expected 0 (off) or a number of seconds from 0.001 to 31536000, found "30""#,
            ),
            (
                "max_requests = true",
                "taskward.toml:1: max_requests: expected a non-negative integer, found true",
            ),
            (
                "max_requests_jitter = [1]",
                "taskward.toml:1: max_requests_jitter: expected a non-negative integer, found an array",
            ),
            (
                "backlog = -1",
                "taskward.toml:1: backlog: expected an integer from 0 to 2147483647, found -1",
            ),
            (
                "admin_socket = 5",
                "taskward.toml:1: admin_socket: expected a non-empty path, found 5",
            ),
            (
                "reload_timeout = 0.0",
                "taskward.toml:1: reload_timeout: expected a number of seconds above 0, at most 31536000, found 0.0",
            ),
            (
                "bind = [\n  \"127.0.0.1:1\",\n  \"nope\",\n]",
                r#"taskward.toml:3: bind: expected HOST:PORT or unix:PATH, found "nope""#,
            ),
            (
                "bind = [\n  \"127.0.0.1:1\",\n  8000,\n]",
                "taskward.toml:3: bind: expected HOST:PORT or unix:PATH, found 8000",
            ),
            (
                "bind = []",
                "taskward.toml:1: bind: expected at least one address, found an empty array",
            ),
            (
                "bind = { host = \"x\" }",
                "taskward.toml:1: bind: expected an address or an array of addresses, found a table",
            ),
        ];
        for (text, message) in cases {
            let dir = with_file(DEFAULT_CONFIG_FILE, text);
            assert_eq!(
                error(flags(), no_env(), dir.path()),
                message,
                "file: {text:?}"
            );
        }
    }

    #[test]
    fn bad_values_from_the_environment() {
        let dir = TempDir::new("config");
        let cases = [
            (
                ("TASKWARD_WORKERS", "two"),
                r#"environment variable TASKWARD_WORKERS: workers: expected an integer from 1 to 512, found "two""#,
            ),
            (
                ("TASKWARD_WORKERS", ""),
                r#"environment variable TASKWARD_WORKERS: workers: expected an integer from 1 to 512, found """#,
            ),
            (
                ("TASKWARD_TIMEOUT", "30s"),
                r#"environment variable TASKWARD_TIMEOUT: timeout: expected 0 (off) or a number of seconds from 0.001 to 31536000, found "30s""#,
            ),
            (
                ("TASKWARD_GRACEFUL_TIMEOUT", "-0.5"),
                r#"environment variable TASKWARD_GRACEFUL_TIMEOUT: graceful_timeout: expected a number of seconds from 0 to 31536000, found "-0.5""#,
            ),
            (
                ("TASKWARD_MAX_REQUESTS", "+5"),
                r#"environment variable TASKWARD_MAX_REQUESTS: max_requests: expected a non-negative integer, found "+5""#,
            ),
            (
                ("TASKWARD_MAX_REQUESTS_JITTER", "18446744073709551616"),
                r#"environment variable TASKWARD_MAX_REQUESTS_JITTER: max_requests_jitter: expected a non-negative integer, found "18446744073709551616""#,
            ),
            (
                ("TASKWARD_BACKLOG", "lots"),
                r#"environment variable TASKWARD_BACKLOG: backlog: expected an integer from 0 to 2147483647, found "lots""#,
            ),
            (
                ("TASKWARD_ADMIN_SOCKET", ""),
                r#"environment variable TASKWARD_ADMIN_SOCKET: admin_socket: expected a non-empty path, found """#,
            ),
            (
                ("TASKWARD_RELOAD_TIMEOUT", "soon"),
                r#"environment variable TASKWARD_RELOAD_TIMEOUT: reload_timeout: expected a number of seconds above 0, at most 31536000, found "soon""#,
            ),
            (
                ("TASKWARD_BIND", "127.0.0.1:8000,,unix:/x"),
                r#"environment variable TASKWARD_BIND: bind: expected HOST:PORT or unix:PATH, found """#,
            ),
        ];
        for ((name, value), message) in cases {
            assert_eq!(error(flags(), env(&[(name, value)]), dir.path()), message);
        }
    }

    #[test]
    fn non_utf8_environment_values_are_errors_not_ignored() {
        let dir = TempDir::new("config");
        let env = |name: &str| {
            (name == "TASKWARD_WORKERS").then(|| OsString::from(OsStr::from_bytes(b"\xff")))
        };
        assert_eq!(
            error(flags(), env, dir.path()),
            r#"environment variable TASKWARD_WORKERS: workers: expected an integer from 1 to 512, found "\xFF""#
        );
    }

    #[test]
    fn bind_addresses() {
        let ok = |text: &str| {
            parse_bind(Raw::Text(OsStr::new(text)))
                .ok()
                .unwrap_or_else(|| panic!("{text:?} is a valid address"))
        };
        assert_eq!(ok("127.0.0.1:8000"), tcp("127.0.0.1:8000"));
        assert_eq!(ok("[::]:0"), tcp("[::]:0"));
        assert_eq!(
            ok("unix:/tmp/a b.sock"),
            BindAddr::Unix("/tmp/a b.sock".into())
        );
        match ok("localhost:8000") {
            BindAddr::Tcp(addr) => {
                assert!(addr.ip().is_loopback(), "{addr}");
                assert_eq!(addr.port(), 8000);
            }
            other => panic!("localhost is TCP, got {other}"),
        }

        let bad = |text: &str| match parse_bind(Raw::Text(OsStr::new(text))) {
            Err(Invalid::Value { expected, found }) => format!("{expected}, found {found}"),
            Err(Invalid::Unresolvable { addr, .. }) => format!("unresolvable {addr}"),
            Ok(addr) => panic!("{text:?} parsed as {addr}"),
        };
        for text in [
            "", "unix:", "host", ":8000", "::1:8000", "[::1]", "host:", "host:x",
        ] {
            assert_eq!(
                bad(text),
                format!("HOST:PORT or unix:PATH, found {text:?}"),
                "{text:?}"
            );
        }
        assert_eq!(
            bad("localhost:65536"),
            r#"a port from 0 to 65535, found "localhost:65536""#
        );
        let long = format!("unix:/{}", "x".repeat(107));
        assert_eq!(
            bad(&long),
            format!("a unix socket path of at most 107 bytes, found {long:?}")
        );
        assert_eq!(
            ok(&format!("unix:/{}", "x".repeat(106))),
            BindAddr::Unix(format!("/{}", "x".repeat(106)).into())
        );
    }

    #[test]
    fn duplicate_bind_addresses_are_refused() {
        let dir = TempDir::new("config");
        let flags = ServeFlags {
            bind: vec!["127.0.0.1:9".into(), "127.0.0.1:9".into()],
            ..flags()
        };
        assert_eq!(
            error(flags, no_env(), dir.path()),
            r#"flag --bind: bind: expected each address once, found "127.0.0.1:9" twice"#
        );
    }

    #[test]
    fn a_bad_value_is_an_error_even_when_overridden() {
        let dir = TempDir::new("config");
        let flags = ServeFlags {
            workers: Some("4".into()),
            ..flags()
        };
        assert_eq!(
            error(flags, env(&[("TASKWARD_WORKERS", "four")]), dir.path()),
            r#"environment variable TASKWARD_WORKERS: workers: expected an integer from 1 to 512, found "four""#
        );
    }

    #[test]
    fn unknown_keys_name_the_line() {
        let cases = [
            (
                "workers = 2\nworker = 3\n",
                "taskward.toml:2: unknown key `worker` (did you mean `workers`?)",
            ),
            (
                "\n\ngraceful-timeout = 3\n",
                "taskward.toml:3: unknown key `graceful-timeout` (did you mean `graceful_timeout`?)",
            ),
            (
                "workers = 2\n\n[server]\nworkers = 3\n",
                "taskward.toml:3: unknown key `server`",
            ),
            // Sorted by position, not by name: `zzz` on line 1 is reported first.
            ("zzz = 1\naaa = 2\n", "taskward.toml:1: unknown key `zzz`"),
        ];
        for (text, message) in cases {
            let dir = with_file(DEFAULT_CONFIG_FILE, text);
            let error = ServeConfig::load(flags(), no_env(), dir.path()).expect_err("unknown key");
            assert_eq!(error.to_string(), message, "file: {text:?}");
            assert!(matches!(error, ConfigError::UnknownKey { .. }));
        }
    }

    #[test]
    fn toml_syntax_errors_name_the_line() {
        let dir = with_file("bad.toml", "workers = 2\ntimeout = \n");
        let flags = ServeFlags {
            config: Some("bad.toml".into()),
            ..flags()
        };
        let error = ServeConfig::load(flags, no_env(), dir.path()).expect_err("bad TOML");
        let ConfigError::Syntax { path, line, .. } = &error else {
            panic!("expected a syntax error, got {error:?}");
        };
        assert_eq!((path.as_path(), *line), (Path::new("bad.toml"), Some(2)));
        assert!(
            error.to_string().starts_with("bad.toml:2: invalid TOML: "),
            "{error}"
        );

        let dir = with_file(DEFAULT_CONFIG_FILE, "workers = 1\nworkers = 2\n");
        let message = error_of_dir(&dir);
        assert!(
            message.starts_with("taskward.toml:2: invalid TOML: "),
            "a duplicate key is a syntax error: {message}"
        );
    }

    fn error_of_dir(dir: &TempDir) -> String {
        error(flags(), no_env(), dir.path())
    }

    #[test]
    fn a_missing_explicit_config_file_is_an_error() {
        let dir = TempDir::new("config");
        let flags = ServeFlags {
            config: Some("missing.toml".into()),
            ..flags()
        };
        let error =
            ServeConfig::load(flags, no_env(), dir.path()).expect_err("the file is missing");
        assert_eq!(error.to_string(), "cannot read config file missing.toml");
        let source = error.source().expect("the io error is kept");
        let io = source.downcast_ref::<io::Error>().expect("an io::Error");
        assert_eq!(io.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn a_missing_default_config_file_is_fine_but_an_unreadable_one_is_not() {
        let dir = TempDir::new("config");
        assert!(ServeConfig::load(flags(), no_env(), dir.path()).is_ok());

        std::fs::create_dir(dir.path().join(DEFAULT_CONFIG_FILE))
            .expect("the temp dir is writable");
        assert_eq!(error_of_dir(&dir), "cannot read config file taskward.toml");
    }

    #[test]
    fn an_explicit_relative_config_file_is_read_from_cwd() {
        let dir = with_file("other.toml", "workers = 5\n");
        std::fs::write(dir.path().join(DEFAULT_CONFIG_FILE), "workers = 6\n").expect("writable");
        let flags = ServeFlags {
            config: Some("other.toml".into()),
            ..flags()
        };
        let config = ServeConfig::load(flags, no_env(), dir.path()).expect("valid");
        assert_eq!(config.workers.get(), 5, "-c replaces the default file");
    }

    #[test]
    fn a_program_is_required() {
        let dir = TempDir::new("config");
        for program in [vec![], vec![OsString::new()]] {
            let flags = ServeFlags {
                program,
                ..ServeFlags::default()
            };
            let error = ServeConfig::load(flags, no_env(), dir.path()).expect_err("no program");
            assert!(matches!(error, ConfigError::MissingProgram), "{error:?}");
        }
    }

    #[test]
    fn max_requests_threshold() {
        let recycling = |limit, jitter| MaxRequests {
            limit: NonZeroU64::new(limit).expect("not zero"),
            jitter,
        };
        assert_eq!(recycling(100, 0).threshold(12345), 100);
        assert_eq!(recycling(100, 9).threshold(9), 109);
        assert_eq!(recycling(100, 9).threshold(10), 100);
        assert_eq!(recycling(u64::MAX, 9).threshold(5), u64::MAX);
        assert_eq!(recycling(1, u64::MAX).threshold(u64::MAX), u64::MAX);
        assert_eq!(recycling(1, u64::MAX).threshold(7), 8);
    }

    // Asserts: the values of #11 item 3 that used to start a master (and then panic in
    // every worker, or fork without end) are refused at load, naming the setting and
    // where it came from.
    #[test]
    fn out_of_range_values_are_refused() {
        let dir = TempDir::new("config");
        let flag_cases = [
            (
                ServeFlags {
                    workers: Some("100000".into()),
                    ..flags()
                },
                r#"flag --workers: workers: expected an integer from 1 to 512, found "100000""#,
            ),
            (
                ServeFlags {
                    timeout: Some("0.0000001".into()),
                    ..flags()
                },
                r#"flag --timeout: timeout: expected 0 (off) or a number of seconds from 0.001 to 31536000, found "0.0000001""#,
            ),
            (
                ServeFlags {
                    graceful_timeout: Some("1e300".into()),
                    ..flags()
                },
                r#"flag --graceful-timeout: graceful_timeout: expected a number of seconds from 0 to 31536000, found "1e300""#,
            ),
            (
                ServeFlags {
                    reload_timeout: Some("31536001".into()),
                    ..flags()
                },
                r#"flag --reload-timeout: reload_timeout: expected a number of seconds above 0, at most 31536000, found "31536001""#,
            ),
        ];
        for (flags, message) in flag_cases {
            assert_eq!(error(flags, no_env(), dir.path()), message);
        }
        let file = with_file(
            DEFAULT_CONFIG_FILE,
            "workers = 9223372036854775807
",
        );
        assert_eq!(
            error_of_dir(&file),
            "taskward.toml:1: workers: expected an integer from 1 to 512, found 9223372036854775807"
        );
        let at_bounds = ServeFlags {
            workers: Some(MAX_WORKERS.to_string()),
            timeout: Some("0.001".into()),
            graceful_timeout: Some(MAX_SECONDS.to_string()),
            ..flags()
        };
        let config = ServeConfig::load(at_bounds, no_env(), dir.path()).expect("the bounds are in");
        assert_eq!(config.workers.get(), MAX_WORKERS);
        assert_eq!(config.timeout, Some(MIN_TIMEOUT));
    }

    // Asserts: TASKWARD_DRAIN_DELAY, which the master does not use but every worker
    // inherits, is checked with the workers' parser (before: every worker panicked on
    // 1e300, and 5s made them exit while the master respawned them forever).
    #[test]
    fn a_bad_drain_delay_for_the_workers_stops_the_master() {
        let dir = TempDir::new("config");
        for value in ["1e300", "5s", "-1", ""] {
            assert_eq!(
                error(flags(), env(&[("TASKWARD_DRAIN_DELAY", value)]), dir.path()),
                format!(
                    "environment variable TASKWARD_DRAIN_DELAY, inherited by every worker: \
                     expected a number of seconds from 0 to 31536000, found {value:?}"
                )
            );
        }
        assert!(
            ServeConfig::load(flags(), env(&[("TASKWARD_DRAIN_DELAY", "2.5")]), dir.path()).is_ok()
        );
    }

    // Asserts: only a regular file of at most 1 MiB is read as the config file: a device
    // (`-c /dev/zero` read 3.6 GB in 3 s before) and a larger file are refused, named.
    #[test]
    fn the_config_file_is_a_bounded_regular_file() {
        let dir = TempDir::new("config");
        let load = |path: &str| {
            let flags = ServeFlags {
                config: Some(path.into()),
                ..flags()
            };
            ServeConfig::load(flags, no_env(), dir.path()).map(|_| ())
        };
        let message = |path: &str| {
            let error = load(path).expect_err("refused");
            crate::error_line::error_line(&error)
        };
        assert_eq!(
            message("/dev/zero"),
            "cannot read config file /dev/zero: not a regular file"
        );
        let big = dir.path().join("big.toml");
        let mut text =
            "# padding\n".repeat(usize::try_from(MAX_CONFIG_FILE).expect("fits") / 10 + 1);
        std::fs::write(&big, &text).expect("writable");
        assert_eq!(
            message("big.toml"),
            "cannot read config file big.toml: larger than 1048576 bytes"
        );
        text.truncate(usize::try_from(MAX_CONFIG_FILE).expect("fits"));
        text.truncate(text.rfind('\n').expect("lines") + 1);
        std::fs::write(&big, &text).expect("writable");
        assert!(load("big.toml").is_ok(), "a file within the limit is read");
    }

    // Asserts: the settings the workers also read are named as the protocol names them
    // (config derives its variables from the keys; the protocol writes them once).
    #[test]
    fn shared_variables_are_the_protocols() {
        assert_eq!(
            Key::GracefulTimeout.env_var(),
            protocol::env::GRACEFUL_TIMEOUT
        );
        assert_eq!(Key::MaxRequests.env_var(), protocol::env::MAX_REQUESTS);
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        /// Settings other than `bind` (whose host names would be resolved, over DNS).
        const SCALARS: [Key; 8] = [
            Key::Workers,
            Key::Timeout,
            Key::GracefulTimeout,
            Key::MaxRequests,
            Key::MaxRequestsJitter,
            Key::Backlog,
            Key::AdminSocket,
            Key::ReloadTimeout,
        ];

        /// Text a value may be: numbers of every shape, words, anything.
        fn text() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<u64>().prop_map(|n| n.to_string()),
                any::<i64>().prop_map(|n| n.to_string()),
                any::<f64>().prop_map(|n| n.to_string()),
                "[0-9.eE+-]{0,12}",
                any::<String>().prop_map(|s| s.replace(['\0', ':'], "")),
            ]
        }

        /// A TOML value as it would be written in the file.
        fn toml_value() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<i64>().prop_map(|n| n.to_string()),
                any::<f64>().prop_map(|n| format!("{n:?}")),
                Just("nan".to_owned()),
                Just("-inf".to_owned()),
                Just("true".to_owned()),
                Just("[1, 2]".to_owned()),
                Just("{ a = 1 }".to_owned()),
                text().prop_map(|s| format!("{s:?}")),
                "[ -~]{0,10}",
            ]
        }

        fn file_line() -> impl Strategy<Value = String> {
            let key = prop_oneof![
                4 => proptest::sample::select(SCALARS.to_vec()).prop_map(|k| k.name().to_owned()),
                1 => "[a-z_-]{1,12}",
            ];
            prop_oneof![
                8 => (key, toml_value()).prop_map(|(k, v)| format!("{k} = {v}")),
                1 => Just("bind = [\"127.0.0.1:0\", \"unix:/x.sock\"]".to_owned()),
                1 => "[ -~]{0,20}",
            ]
        }

        fn check(
            result: Result<ServeConfig, ConfigError>,
            sources: &[&str],
        ) -> Result<(), TestCaseError> {
            match result {
                Ok(config) => {
                    prop_assert!(config.workers.get() <= MAX_WORKERS);
                    prop_assert!(config.timeout.is_none_or(|t| t >= MIN_TIMEOUT));
                    for duration in [config.graceful_timeout, config.reload_timeout]
                        .into_iter()
                        .chain(config.timeout)
                    {
                        prop_assert!(duration <= Duration::from_secs(MAX_SECONDS));
                    }
                }
                Err(error) => {
                    let message = error.to_string();
                    prop_assert!(
                        sources.iter().any(|source| message.starts_with(source)),
                        "{message} names none of {sources:?}"
                    );
                }
            }
            Ok(())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            // Asserts: any file text loads, or is refused naming the file (and its line
            // for a bad value); a loaded configuration is within the documented ranges.
            #[test]
            fn any_file_loads_or_names_the_file(lines in proptest::collection::vec(file_line(), 0..6)) {
                let dir = with_file(DEFAULT_CONFIG_FILE, &lines.join("\n"));
                check(ServeConfig::load(flags(), no_env(), dir.path()), &["taskward.toml"])?;
            }

            // Asserts: any flag values load, or are refused naming the flag.
            #[test]
            fn any_flags_load_or_name_the_flag(
                values in proptest::collection::vec((proptest::sample::select(SCALARS.to_vec()), text()), 0..4),
            ) {
                let dir = TempDir::new("config");
                let mut given = flags();
                for (key, value) in &values {
                    let value = Some(value.clone());
                    match key {
                        Key::Workers => given.workers = value,
                        Key::Timeout => given.timeout = value,
                        Key::GracefulTimeout => given.graceful_timeout = value,
                        Key::MaxRequests => given.max_requests = value,
                        Key::MaxRequestsJitter => given.max_requests_jitter = value,
                        Key::Backlog => given.backlog = value,
                        Key::AdminSocket => given.admin_socket = value.map(PathBuf::from),
                        Key::ReloadTimeout => given.reload_timeout = value,
                        Key::Bind => unreachable!("not generated"),
                    }
                }
                let sources: Vec<String> = values.iter().map(|(key, _)| format!("flag {}: {}", key.flag(), key.name())).collect();
                let sources: Vec<&str> = sources.iter().map(String::as_str).collect();
                check(ServeConfig::load(given, no_env(), dir.path()), &sources)?;
            }

            // Asserts: any environment loads, or is refused naming the variable
            // (TASKWARD_DRAIN_DELAY, the workers' setting, included).
            #[test]
            fn any_environment_loads_or_names_the_variable(
                values in proptest::collection::vec((proptest::sample::select(SCALARS.to_vec()), text()), 0..4),
                drain_delay in proptest::option::of(text()),
            ) {
                let dir = TempDir::new("config");
                let mut vars: Vec<(String, String)> =
                    values.iter().map(|(key, value)| (key.env_var(), value.clone())).collect();
                vars.extend(drain_delay.map(|value| (protocol::env::DRAIN_DELAY.to_owned(), value)));
                let pairs: Vec<(&str, &str)> = vars.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
                let sources: Vec<String> = vars.iter().map(|(name, _)| format!("environment variable {name}")).collect();
                let sources: Vec<&str> = sources.iter().map(String::as_str).collect();
                check(ServeConfig::load(flags(), env(&pairs), dir.path()), &sources)?;
            }
        }
    }

    #[test]
    fn env_var_names() {
        let names: Vec<String> = Key::ALL.into_iter().map(Key::env_var).collect();
        assert_eq!(
            names,
            [
                "TASKWARD_BIND",
                "TASKWARD_WORKERS",
                "TASKWARD_TIMEOUT",
                "TASKWARD_GRACEFUL_TIMEOUT",
                "TASKWARD_MAX_REQUESTS",
                "TASKWARD_MAX_REQUESTS_JITTER",
                "TASKWARD_BACKLOG",
                "TASKWARD_ADMIN_SOCKET",
                "TASKWARD_RELOAD_TIMEOUT",
            ]
        );
    }
}
