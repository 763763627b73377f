//! Where the master listens: [`BindAddr`], parsed from `HOST:PORT` or `unix:PATH`.
//!
//! Parsing does no I/O: a host name stays a name here and is resolved where the sockets
//! are bound ([`crate::listen::bind_all`]), so that loading the configuration never waits
//! on DNS, and a master given inherited sockets never asks it.

use std::ffi::OsStr;
use std::fmt;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use super::values::Raw;

/// The longest unix socket path, in bytes: `sun_path` is 108 bytes on Linux, including
/// the terminating NUL.
const MAX_UNIX_PATH: usize = 107;

/// What a `bind` address looks like.
const EXPECTED: &str = "HOST:PORT or unix:PATH";

/// An address the master listens on.
///
/// # Examples
///
/// ```
/// use taskward_cli::config::BindAddr;
///
/// let addr = BindAddr::Host { host: "localhost".into(), port: 8000 };
/// assert_eq!(addr.to_string(), "localhost:8000");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BindAddr {
    /// A TCP address given as an IP literal.
    Tcp(SocketAddr),
    /// A TCP address given by host name, resolved when the socket is bound.
    Host {
        /// The host name, as given.
        host: String,
        /// The port.
        port: u16,
    },
    /// A unix stream socket at this path.
    Unix(PathBuf),
}

impl fmt::Display for BindAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(addr) => addr.fmt(f),
            Self::Host { host, port } => write!(f, "{host}:{port}"),
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// Parses one `bind` address; on error, what a good one looks like.
pub(crate) fn parse(raw: Raw<'_>) -> Result<BindAddr, &'static str> {
    let text = raw.text().ok_or(EXPECTED)?;
    if let Some(path) = text.as_bytes().strip_prefix(b"unix:") {
        if path.is_empty() {
            return Err(EXPECTED);
        }
        if path.len() > MAX_UNIX_PATH {
            return Err("a unix socket path of at most 107 bytes");
        }
        return Ok(BindAddr::Unix(PathBuf::from(OsStr::from_bytes(path))));
    }
    let text = text.to_str().ok_or(EXPECTED)?;
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
        .ok_or(EXPECTED)?;
    let port: u16 = port.parse().map_err(|_| "a port from 0 to 65535")?;
    Ok(BindAddr::Host {
        host: host.to_owned(),
        port,
    })
}
