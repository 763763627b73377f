//! What went wrong while loading the configuration: [`ConfigError`], and where a value
//! came from: [`Origin`].

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use taskward_http::protocol::EnvError;

use super::settings::Key;

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

impl ConfigError {
    /// A bad value of `key`.
    pub(crate) fn invalid(key: Key, origin: Origin, expected: &'static str, found: String) -> Self {
        Self::InvalidValue {
            key: key.name(),
            origin,
            expected,
            found,
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

/// The setting an unknown file key was probably meant to be: within two edits
/// (Levenshtein, by `strsim`), or the same once `-` is read as `_` (Gunicorn's flags use
/// dashes, its files underscores).
pub(crate) fn suggestion(unknown: &str) -> Option<&'static str> {
    let unknown = unknown.replace('-', "_");
    Key::ALL
        .iter()
        .map(|key| (strsim::levenshtein(&unknown, key.name()), key.name()))
        .filter(|&(distance, _)| distance <= 2)
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, name)| name)
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
