//! The client's connector: TCP through hyper-util's `HttpConnector` (its name lookups are
//! tasks of the client's scope, see `resolve.rs`), then, for `https://`, a TLS handshake
//! that is a task of the client's scope too.
//!
//! Read [`Connector`] first. hyper-rustls would run the handshake inside its own connector
//! future, where hyper-util may move it into a background task of its pool; here it is a
//! task named `tls handshake <host>`, so `close()` waits for it, cuts it at the deadline
//! and names it in the report, and dropping the client aborts it.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use taskward::{Scope, TaskContext};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::resolve::ScopeResolver;
use crate::retry::Exchanges;

type BoxError = Box<dyn StdError + Send + Sync>;

/// hyper-util's connector `Service`: `http://` over TCP, `https://` over TLS, with the
/// handshake spawned into the client's scope.
#[derive(Clone)]
pub(crate) struct Connector {
    pub(crate) http: HttpConnector<ScopeResolver>,
    pub(crate) tls: TlsConnector,
    pub(crate) scope: Scope,
    /// Bounds the lookup, the TCP connect and the handshake together.
    pub(crate) connect_timeout: Option<Duration>,
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector")
            .field("scope", &self.scope.path())
            .field("connect_timeout", &self.connect_timeout)
            .finish_non_exhaustive()
    }
}

impl tower::Service<Uri> for Connector {
    type Response = TokioIo<Conn>;
    type Error = BoxError;
    // Boxed: one allocation per new connection is nothing beside the connect itself.
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let connect_timeout = this.connect_timeout;
            let connecting = this.connect(uri);
            let conn = match connect_timeout {
                Some(limit) => tokio::time::timeout(limit, connecting)
                    .await
                    .map_err(|_| ConnectTimedOut(limit))??,
                None => connecting.await?,
            };
            Ok(TokioIo::new(conn))
        })
    }
}

impl Connector {
    async fn connect(mut self, uri: Uri) -> Result<Conn, BoxError> {
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            other => return Err(UnsupportedScheme(other.map(str::to_owned)).into()),
        };
        let host = uri.host().unwrap_or_default().to_owned();
        let tcp = tower::Service::call(&mut self.http, uri)
            .await?
            .into_inner();
        if !https {
            return Ok(Conn::new(Stream::Plain(tcp)));
        }
        let name = ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']'))
            .map_err(|_| HandshakeFailed(format!("{host:?} is not a valid server name").into()))?
            .to_owned();
        let tls = handshake(&self.scope, &self.tls, &host, name, tcp).await?;
        Ok(Conn::new(Stream::Tls(Box::new(tls))))
    }
}

/// Runs the handshake as the task `tls handshake <host>` and waits for its stream.
async fn handshake(
    scope: &Scope,
    tls: &TlsConnector,
    host: &str,
    name: ServerName<'static>,
    tcp: TcpStream,
) -> Result<TlsStream<TcpStream>, BoxError> {
    let (answer, answered) = oneshot::channel();
    let connecting = tls.connect(name, tcp);
    scope
        .task(format!("tls handshake {host}"))
        .spawn_with(move |ctx| async move {
            let mut answer = answer;
            tokio::select! {
                done = connecting => {
                    // The requester may have gone meanwhile: the stream is dropped, closed.
                    let _ = answer.send(done);
                }
                () = abandoned(&mut answer, &ctx) => {}
            }
        })
        .map_err(|refused| HandshakeFailed(format!("no handshake: {refused}").into()))?;
    match answered.await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(error)) => Err(HandshakeFailed(unwrap_rustls(error)).into()),
        Err(_) => Err(HandshakeFailed("aborted: the client was closed".into()).into()),
    }
}

/// Ends when nobody waits for the handshake any more (the request was dropped, or timed
/// out), while the client is open. Once the client's scope is cancelled it never ends: a
/// handshake still running then is the client's to cut at its deadline, and to name in
/// its report, not to let go quietly as the requests it served are cut.
async fn abandoned<T>(answer: &mut oneshot::Sender<T>, ctx: &TaskContext) {
    answer.closed().await;
    if ctx.is_cancelled() {
        std::future::pending::<()>().await;
    }
}

/// The rustls error itself when the I/O error carries one (it is what says why), so that
/// it is the next link in the error's chain.
fn unwrap_rustls(error: io::Error) -> BoxError {
    if error
        .get_ref()
        .is_some_and(|inner| inner.is::<rustls::Error>())
    {
        if let Some(inner) = error.into_inner() {
            return inner;
        }
        // `get_ref` said there is an inner error; `into_inner` cannot disagree.
        return "TLS error".into();
    }
    error.into()
}

/// A TLS handshake failed, or could not run: the error's chain goes on with why.
#[derive(Debug)]
pub(crate) struct HandshakeFailed(BoxError);

impl fmt::Display for HandshakeFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TLS handshake failed")
    }
}

impl StdError for HandshakeFailed {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&*self.0)
    }
}

/// The lookup, connect and handshake took longer than the client's connect timeout.
#[derive(Debug)]
pub(crate) struct ConnectTimedOut(Duration);

impl fmt::Display for ConnectTimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not connected within {:?}", self.0)
    }
}

impl StdError for ConnectTimedOut {}

/// The URL's scheme is neither `http` nor `https`.
#[derive(Debug)]
struct UnsupportedScheme(Option<String>);

impl fmt::Display for UnsupportedScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(scheme) => write!(f, "unsupported scheme {scheme:?} (http or https)"),
            None => f.write_str("the URL has no scheme (http or https)"),
        }
    }
}

impl StdError for UnsupportedScheme {}

enum Stream {
    Plain(TcpStream),
    // Boxed: a TLS stream is ten times the size of a TCP stream.
    Tls(Box<TlsStream<TcpStream>>),
}

/// The TLS error a connection's reads or writes met after its handshake (a server that
/// refuses the client's certificate says so then, in TLS 1.3). hyper's HTTP/2 connection
/// keeps its I/O error to itself and fails its requests as "channel closed": the client
/// finds the cause here, through the connection's `Connected` extras.
#[derive(Debug, Default)]
pub(crate) struct TlsFailure(OnceLock<rustls::Error>);

impl TlsFailure {
    pub(crate) fn get(&self) -> Option<&rustls::Error> {
        self.0.get()
    }

    fn note<T>(&self, polled: &Poll<io::Result<T>>) {
        if let Poll::Ready(Err(error)) = polled {
            if let Some(tls) = error
                .get_ref()
                .and_then(|e| e.downcast_ref::<rustls::Error>())
            {
                // The first one is the cause; what follows is its consequence.
                let _ = self.0.set(tls.clone());
            }
        }
    }
}

/// A connection of the client: TCP or TLS, with a log of its exchanges for the retry
/// decision (see `retry.rs`) and, for TLS, the error that ended the session.
pub(crate) struct Conn {
    stream: Stream,
    exchanges: Arc<Exchanges>,
    tls_failure: Arc<TlsFailure>,
}

impl Conn {
    fn new(stream: Stream) -> Self {
        Self {
            stream,
            exchanges: Arc::default(),
            tls_failure: Arc::default(),
        }
    }
}

impl Connection for Conn {
    fn connected(&self) -> Connected {
        let connected = match &self.stream {
            Stream::Plain(tcp) => tcp.connected(),
            Stream::Tls(tls) => {
                let (tcp, session) = tls.get_ref();
                let connected = tcp.connected().extra(Arc::clone(&self.tls_failure));
                if session.alpn_protocol() == Some(b"h2") {
                    connected.negotiated_h2()
                } else {
                    connected
                }
            }
        };
        connected.extra(Arc::clone(&self.exchanges))
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = match &mut this.stream {
            Stream::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Stream::Tls(tls) => Pin::new(&mut **tls).poll_read(cx, buf),
        };
        this.tls_failure.note(&polled);
        let read = buf.filled().len() - before;
        if read > 0 {
            this.exchanges.read(read);
        }
        polled
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = match &mut this.stream {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Stream::Tls(tls) => Pin::new(&mut **tls).poll_write(cx, buf),
        };
        this.tls_failure.note(&polled);
        if matches!(polled, Poll::Ready(Ok(written)) if written > 0) {
            this.exchanges.wrote();
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = match &mut this.stream {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            Stream::Tls(tls) => Pin::new(&mut **tls).poll_write_vectored(cx, bufs),
        };
        this.tls_failure.note(&polled);
        if matches!(polled, Poll::Ready(Ok(written)) if written > 0) {
            this.exchanges.wrote();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        match &self.stream {
            Stream::Plain(tcp) => tcp.is_write_vectored(),
            Stream::Tls(tls) => tls.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = match &mut this.stream {
            Stream::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Stream::Tls(tls) => Pin::new(&mut **tls).poll_flush(cx),
        };
        this.tls_failure.note(&polled);
        polled
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Stream::Tls(tls) => Pin::new(&mut **tls).poll_shutdown(cx),
        }
    }
}
