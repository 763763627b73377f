//! Errors of the HTTP layer, one per operation.

use std::io;

use taskward::SpawnError;

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
    /// A variable set by the process manager holds a value the worker cannot use.
    #[error("{var}: expected a non-negative number, found {value:?}")]
    Env {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
    },
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
