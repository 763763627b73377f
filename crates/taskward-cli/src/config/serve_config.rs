//! The checked configuration of `taskward serve`: [`ServeConfig`], what the master is
//! told, and [`ServeConfig::load`], which builds it from the merged settings.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::num::{NonZeroU64, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::bind::BindAddr;
use super::config_error::ConfigError;
use super::settings::ServeFlags;
use super::sources;

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

/// Worker recycling: `max_requests` with its jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct MaxRequests {
    /// `max_requests`.
    pub limit: NonZeroU64,
    /// `max_requests_jitter`.
    pub jitter: u64,
}

impl ServeConfig {
    /// The default `bind`.
    pub const DEFAULT_BIND: SocketAddr =
        SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8000);

    /// Loads the configuration from `flags`, the config file and the environment, as the
    /// [module docs](super) describe.
    ///
    /// `env` looks up an environment variable (`std::env::var_os` in the binary; a map in
    /// tests). `cwd` is where relative `-c` paths and the default `taskward.toml` are
    /// looked up. Nothing here waits on the network: host names in `bind` are kept as
    /// names ([`BindAddr::Host`]) and resolved when the sockets are bound; relative unix
    /// socket paths are kept as given.
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
        let settings = sources::merged(&flags, &env, cwd)?;

        let mut program = flags.program.into_iter();
        let program_name = program
            .next()
            .filter(|name| !name.is_empty())
            .ok_or(ConfigError::MissingProgram)?;

        let max_requests = NonZeroU64::new(settings.max_requests).map(|limit| MaxRequests {
            limit,
            jitter: settings.max_requests_jitter,
        });
        Ok(Self {
            bind: settings.bind,
            workers: settings.workers,
            timeout: settings.timeout,
            graceful_timeout: settings.graceful_timeout,
            max_requests,
            backlog: settings.backlog,
            admin_socket: settings.admin_socket,
            reload_timeout: settings.reload_timeout,
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
