//! Where a server listens and what it accepts from: a TCP or a unix stream socket.
//!
//! Read [`ListenAddr`]; `Listener` is the server's side of it.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio_util::either::Either;

/// Where a server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ListenAddr {
    /// A TCP socket's address. Displayed as `127.0.0.1:8080`.
    Tcp(SocketAddr),
    /// A unix stream socket's path, or `None` when the socket has none (unnamed, or in
    /// Linux's abstract namespace). Displayed as `unix:/run/app.sock`, or `unix:(unnamed)`.
    Unix(Option<PathBuf>),
}

impl ListenAddr {
    /// A unix socket's address, from its path if it has one.
    pub(crate) fn unix(path: Option<&Path>) -> Self {
        Self::Unix(path.map(Path::to_path_buf))
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(addr) => addr.fmt(f),
            Self::Unix(Some(path)) => write!(f, "unix:{}", path.display()),
            Self::Unix(None) => f.write_str("unix:(unnamed)"),
        }
    }
}

/// The socket a [`Server`](crate::Server) accepts from.
#[derive(Debug)]
pub(crate) enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// An accepted connection: TCP or unix, served alike.
pub(crate) type Stream = Either<TcpStream, UnixStream>;

impl Listener {
    pub(crate) fn listen_addr(&self) -> io::Result<ListenAddr> {
        match self {
            Self::Tcp(listener) => listener.local_addr().map(ListenAddr::Tcp),
            Self::Unix(listener) => listener
                .local_addr()
                .map(|a| ListenAddr::unix(a.as_pathname())),
        }
    }

    /// The next connection, and the name of its task's peer: the TCP peer's address, or
    /// `unix#<n>` counting from 1 (a unix client is almost always unnamed, so its address
    /// would not tell connections apart).
    ///
    /// # Cancel safety
    ///
    /// This method is cancel safe: both tokio `accept`s are, and `unix_seq` only moves
    /// once a connection was taken.
    pub(crate) async fn accept(&self, unix_seq: &mut u64) -> io::Result<(Stream, String)> {
        match self {
            Self::Tcp(listener) => {
                let (stream, peer) = listener.accept().await?;
                Ok((Either::Left(stream), peer.to_string()))
            }
            Self::Unix(listener) => {
                let (stream, _) = listener.accept().await?;
                *unix_seq += 1;
                Ok((Either::Right(stream), format!("unix#{unix_seq}")))
            }
        }
    }
}
