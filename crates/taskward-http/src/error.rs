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
///
/// A failure to reach the server is [`Connect`](Self::Connect), a failed TLS handshake
/// [`Tls`](Self::Tls), both naming the host; no answer in time is
/// [`Timeout`](Self::Timeout); what went wrong once connected is
/// [`Request`](Self::Request) (headers) or [`Body`](Self::Body).
///
/// # Examples
///
/// ```no_run
/// # async fn run(client: taskward_http::Client) {
/// use taskward_http::ClientError;
///
/// match client.get("https://inventory.internal/items").send().await {
///     Ok(response) => println!("{}", response.status()),
///     Err(ClientError::Tls { host, .. }) => eprintln!("check {host}'s certificate"),
///     Err(ClientError::Connect { host, .. }) => eprintln!("{host} is down"),
///     Err(ClientError::Timeout(after)) => eprintln!("no answer within {after:?}"),
///     Err(other) => eprintln!("{other}"),
/// }
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The client was closed (before the request, or before its response arrived).
    #[error("the client is closed")]
    Closed,
    /// No response (headers, or the body read with [`Response`](crate::Response)'s
    /// methods) within the request's timeout.
    #[error("no response within {0:?}")]
    Timeout(std::time::Duration),
    /// The server could not be reached: name lookup, TCP connect, or the client's connect
    /// timeout.
    #[error("cannot connect to {host}")]
    Connect {
        /// The host of the request's URL.
        host: String,
        /// What hyper reported, with the cause in its chain.
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    /// TLS failed: the server's certificate is not trusted or not valid for the host,
    /// the handshake failed or was cut, or the server ended the session with an error
    /// (as when it refuses the client's certificate: TLS 1.3 says so only after the
    /// handshake, on the first request).
    #[error("TLS with {host} failed")]
    Tls {
        /// The host of the request's URL.
        host: String,
        /// What went wrong; the rustls error, when there is one, is in its chain.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// What hyper reported once connected: protocol or I/O errors.
    #[error("request failed")]
    Request(#[source] hyper_util::client::legacy::Error),
    /// The request could not be built: a URL, header name or value that does not parse.
    #[error("invalid request")]
    Invalid(#[source] http::Error),
    /// The URL cannot be requested: no scheme or host, or a scheme other than `http` and
    /// `https`.
    #[error("cannot request {url:?}: {reason}")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The request body could not be serialized as JSON.
    #[error("the request body cannot be serialized as JSON")]
    Serialize(#[source] serde_json::Error),
    /// The response body is longer than the limit.
    #[error("the response body is longer than {limit} bytes")]
    BodyTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// Reading the response body failed.
    #[error("reading the response body failed")]
    Body(#[source] hyper::Error),
    /// The response body is not the JSON expected.
    #[error("the response body is not the JSON expected")]
    Json(#[source] serde_json::Error),
}

/// A [`Client`](crate::Client) could not be built.
///
/// # Examples
///
/// ```
/// use taskward_http::{Certificate, ClientBuildError};
///
/// let error = Certificate::from_pem(b"no PEM here").unwrap_err();
/// assert!(matches!(error, ClientBuildError::Pem { what: "certificate", .. }));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientBuildError {
    /// A PEM document given for TLS cannot be used.
    #[error("cannot read the {what} PEM: {reason}")]
    Pem {
        /// What the document was for: `certificate` or `client identity`.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The platform's trust store was asked for and yielded no certificate.
    #[error("no certificate from the platform's trust store: {0}")]
    NativeRoots(String),
    /// rustls refused the configuration (as a client certificate whose key does not
    /// match).
    #[error("invalid TLS configuration: {0}")]
    Tls(String),
    /// The user agent is not a valid header value.
    #[error("invalid user agent")]
    UserAgent(#[source] http::header::InvalidHeaderValue),
    /// The owning scope refused the client's scope (it is shutting down).
    #[error(transparent)]
    Spawn(#[from] SpawnError),
}

impl ClientBuildError {
    pub(crate) fn pem(what: &'static str, reason: impl std::fmt::Display) -> Self {
        Self::Pem {
            what,
            reason: reason.to_string(),
        }
    }

    pub(crate) fn tls(error: rustls::Error) -> Self {
        Self::Tls(error.to_string())
    }
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
