//! Errors of the HTTP layer, one per operation.

use std::io;

use taskward::SpawnError;

use crate::protocol::{EX_CONFIG, EnvError};

/// The server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address as given.
        addr: String,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// The listener is unusable.
    #[error("the listener is unusable")]
    Io(#[source] io::Error),
    /// The owning scope refused the server's tasks (it is shutting down).
    #[error(transparent)]
    Spawn(#[from] SpawnError),
}

/// A request of the [`Client`](crate::Client) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The client was closed (before the request, or before its response arrived).
    #[error("the client is closed")]
    Closed,
    /// No response headers within the client's timeout.
    #[error("no response within {0:?}")]
    Timeout(std::time::Duration),
    /// What hyper reported: connect, protocol or I/O errors.
    #[error("request failed")]
    Request(#[source] hyper_util::client::legacy::Error),
}

/// A [`Worker`](crate::Worker) could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// A socket passed by the supervisor (`LISTEN_FDS`) is neither a TCP listener nor a
    /// unix stream listener.
    #[error(
        "the socket passed as fd {fd} (LISTEN_FDS) is neither a TCP nor a unix stream listener"
    )]
    Inherit {
        /// The file descriptor.
        fd: usize,
        /// What checking it as a TCP listener said.
        #[source]
        source: io::Error,
    },
    /// Started by `taskward serve` (`TASKWARD_WORKER_ID` is set) but no socket arrived:
    /// `LISTEN_PID` is not this process's pid, as when a wrapper script starts the
    /// service without `exec`. Workers never bind on their own.
    #[error(
        "started by taskward serve but no socket was passed to this process (LISTEN_PID is another pid: does a wrapper start it without exec?)"
    )]
    NotPassed,
    /// No socket was passed, and the fallback address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address as given.
        addr: String,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// A variable of the [protocol](crate::protocol) holds a value the worker cannot
    /// use. Exit with [`exit_code`](Self::exit_code): [`EX_CONFIG`].
    #[error(transparent)]
    Env(#[from] EnvError),
    /// A signal handler could not be installed (or no tokio runtime with signal support
    /// is running).
    #[error("could not install the {signal} handler")]
    Signal {
        /// The signal, e.g. `SIGTERM`.
        signal: &'static str,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// A server could not start.
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// The app scope refused the worker's tasks (it is shutting down).
    #[error(transparent)]
    Spawn(#[from] SpawnError),
}

impl WorkerError {
    /// The exit code for a worker that could not start: [`EX_CONFIG`] (78) when its
    /// settings are bad ([`Env`](Self::Env), [`NotPassed`](Self::NotPassed)), which a
    /// restart cannot fix and a process manager should stop on; 1 otherwise.
    ///
    /// ```
    /// use taskward_http::WorkerError;
    /// use taskward_http::protocol::EX_CONFIG;
    ///
    /// assert_eq!(WorkerError::NotPassed.exit_code(), EX_CONFIG);
    /// ```
    #[must_use]
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Env(_) | Self::NotPassed => EX_CONFIG,
            _ => 1,
        }
    }
}
