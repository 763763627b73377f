//! The listening sockets the master binds once and hands to every worker.
//!
//! Read [`bind_all`]. TCP sockets get `SO_REUSEADDR` (a restarted master binds again at
//! once, past connections in `TIME_WAIT`) and the configured backlog; a unix socket path
//! left by a master that died is removed first, but one that still answers is an error.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::net::{AddressFamily, SocketAddrUnix, SocketType, sockopt};

use crate::config::BindAddr;

/// A listening socket could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListenError {
    /// Binding or listening failed: in use, not local, no permission.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address, as configured.
        addr: String,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// A `bind` host name could not be resolved.
    #[error("cannot resolve bind address {addr:?}")]
    Resolve {
        /// The address, as configured.
        addr: String,
        /// What the resolver said.
        #[source]
        source: io::Error,
    },
    /// A unix socket path is served by a running process.
    #[error("cannot listen on unix:{}: another process is accepting there", path.display())]
    InUse {
        /// The path.
        path: PathBuf,
    },
}

/// Binds every address, in order.
///
/// # Errors
///
/// [`ListenError`] naming the first address that failed.
pub fn bind_all(addrs: &[BindAddr], backlog: i32) -> Result<Vec<OwnedFd>, ListenError> {
    addrs
        .iter()
        .map(|addr| match addr {
            BindAddr::Tcp(addr) => bind_tcp(*addr, backlog).map_err(|source| ListenError::Bind {
                addr: addr.to_string(),
                source,
            }),
            BindAddr::Host { host, port } => {
                let resolved = resolve(host, *port).map_err(|source| ListenError::Resolve {
                    addr: addr.to_string(),
                    source,
                })?;
                bind_tcp(resolved, backlog).map_err(|source| ListenError::Bind {
                    addr: format!("{addr} ({resolved})"),
                    source,
                })
            }
            BindAddr::Unix(path) => bind_unix(path, backlog),
        })
        .collect()
}

/// The address a host name is bound at: its first IPv4 address, else its first one.
/// Blocking (`getaddrinfo`): called once at start, before any runtime runs.
fn resolve(host: &str, port: u16) -> io::Result<SocketAddr> {
    let addrs: Vec<SocketAddr> = (host, port).to_socket_addrs()?.collect();
    addrs
        .iter()
        .find(|addr| addr.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "the name has no addresses"))
}

fn bind_tcp(addr: SocketAddr, backlog: i32) -> io::Result<OwnedFd> {
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::INET,
        SocketAddr::V6(_) => AddressFamily::INET6,
    };
    let socket = rustix::net::socket_with(
        family,
        SocketType::STREAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )?;
    sockopt::set_socket_reuseaddr(&socket, true)?;
    rustix::net::bind(&socket, &addr)?;
    rustix::net::listen(&socket, backlog)?;
    Ok(socket)
}

fn bind_unix(path: &Path, backlog: i32) -> Result<OwnedFd, ListenError> {
    let failed = |source: io::Error| ListenError::Bind {
        addr: format!("unix:{}", path.display()),
        source,
    };
    match remove_stale_socket(path) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::AddrInUse => {
            return Err(ListenError::InUse {
                path: path.to_owned(),
            });
        }
        Err(error) => return Err(failed(error)),
    }
    let address = SocketAddrUnix::new(path).map_err(|e| failed(e.into()))?;
    let socket = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| failed(e.into()))?;
    rustix::net::bind(&socket, &address).map_err(|e| failed(e.into()))?;
    rustix::net::listen(&socket, backlog).map_err(|e| failed(e.into()))?;
    Ok(socket)
}

/// Removes a unix socket file that nobody accepts on any more (left by a process that
/// died), so that the path can be bound again. Nothing to do if `path` does not exist.
///
/// # Errors
///
/// `AddrInUse` if a process accepts there; `AlreadyExists` if `path` is not a socket (a
/// regular file is never removed); what removing it said.
pub(crate) fn remove_stale_socket(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", path.display()),
        ));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("a process accepts on {}", path.display()),
        )),
        // Refused: the file stays, its listener is gone.
        Err(error) if error.kind() == io::ErrorKind::ConnectionRefused => {
            std::fs::remove_file(path)
        }
        Err(error) => Err(error),
    }
}

/// Binds a listening unix socket at `path` with mode 0600, whatever the umask.
///
/// A socket file's mode is fixed at `bind(2)` (0777 less the umask): a `chmod` after
/// would leave a window in which anyone may connect. So the umask is set for the bind
/// alone. It is process-wide: call this only while the master has one thread (it does
/// until its workers start; its runtime is single-threaded).
///
/// # Errors
///
/// What binding said.
pub(crate) fn bind_private(path: &Path) -> io::Result<std::os::unix::net::UnixListener> {
    let before = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o177));
    let bound = std::os::unix::net::UnixListener::bind(path);
    rustix::process::umask(before);
    let listener = bound?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// The sockets this master was itself handed (socket activation: `LISTEN_FDS`, checked
/// against `LISTEN_PID`), in order; empty when none were. Reads and unsets the variables;
/// call it before other threads start.
///
/// # Errors
///
/// What checking a passed descriptor said, if it is not a listening socket.
pub fn inherited() -> io::Result<Vec<OwnedFd>> {
    let mut passed = listenfd::ListenFd::from_env();
    let mut sockets = Vec::with_capacity(passed.len());
    for index in 0..passed.len() {
        // A socket of the wrong kind is left in place by `take_*`: try TCP, then unix.
        let socket = match passed.take_tcp_listener(index) {
            Ok(tcp) => tcp.map(OwnedFd::from),
            Err(_) => passed.take_unix_listener(index)?.map(OwnedFd::from),
        };
        sockets.extend(socket);
    }
    Ok(sockets)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Asserts: a host name from the configuration is resolved here, where the socket is
    // bound (config keeps it as a name); one that does not resolve is a Resolve error
    // naming the address as configured.
    #[test]
    fn host_names_are_resolved_when_bound() {
        let localhost = BindAddr::Host {
            host: "localhost".into(),
            port: 0,
        };
        let bound = bind_all(&[localhost], 1).expect("localhost binds");
        let addr = rustix::net::getsockname(&bound[0]).expect("a bound socket");
        let addr = SocketAddr::try_from(addr).expect("an IP address");
        assert!(addr.ip().is_loopback(), "{addr}");

        let nowhere = BindAddr::Host {
            host: "no-such-host.invalid".into(),
            port: 80,
        };
        let error = bind_all(&[nowhere], 1).expect_err("does not resolve");
        assert!(matches!(error, ListenError::Resolve { .. }), "{error:?}");
        assert_eq!(
            error.to_string(),
            r#"cannot resolve bind address "no-such-host.invalid:80""#
        );
    }
}
