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
//! Every setting is described once, in one table (`config/settings.rs`: its file key,
//! flag, variable, type, default, range and help); `config/sources.rs` reads each source
//! through it and merges them in one place.
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
//! The table of settings, with their flags, defaults and ranges, is in the docs of
//! [`ServeFlags`], made from the same table as the code that reads them.
//!
//! `bind` host names are not resolved here but where the sockets are bound: loading never
//! waits on DNS.
//!
//! Durations are seconds, as an integer or a float (`2.5`), at most 31536000 (a year,
//! [`MAX_SECONDS`](taskward_http::protocol::MAX_SECONDS): what the worker protocol
//! carries). The config file must be a regular file of at most 1 MiB
//! ([`MAX_CONFIG_FILE`]). In the environment, `bind` is
//! comma-separated (so a unix socket path given there cannot contain a comma) and blanks
//! around each address are ignored. An empty variable is a bad value, not an unset one.
//! `max_requests_jitter` without `max_requests` is accepted and has no effect, as in
//! Gunicorn: jitter only spreads out a limit that exists.
//!
//! `TASKWARD_DRAIN_DELAY` is not a setting of the master but of its workers, which
//! inherit it (see [`taskward_http::protocol`]); the master checks it with the workers'
//! parser, so that a bad value stops the master at start instead of every worker.

mod bind;
mod config_error;
mod declare;
mod serve_config;
mod settings;
mod sources;
#[cfg(test)]
mod tests;
mod values;

pub use bind::BindAddr;
pub use config_error::{ConfigError, Origin};
pub use serve_config::{MaxRequests, ServeConfig};
pub use settings::{MAX_WORKERS, MIN_TIMEOUT, ServeFlags};
pub use sources::{DEFAULT_CONFIG_FILE, ENV_PREFIX, MAX_CONFIG_FILE};
