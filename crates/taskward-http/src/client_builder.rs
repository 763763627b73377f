//! The settings of a [`Client`]: timeouts, the pool, TLS, the user agent and the body
//! limit.
//!
//! Read [`ClientBuilder`].

use std::sync::Arc;
use std::time::Duration;

use http::header::HeaderValue;
use hyper_util::client::legacy::Client as Pooled;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioTimer;
use taskward::Scope;
use tokio_rustls::TlsConnector;

use crate::client::{Client, Parts, Pools, ScopeExecutor};
use crate::connector::Connector;
use crate::error::ClientBuildError;
use crate::resolve::ScopeResolver;
use crate::tls::{Certificate, Identity, TlsSettings};

/// Settings for a [`Client`], from [`Client::builder`]; [`build`](Self::build) makes the
/// client in a scope.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use taskward_http::{Certificate, Client};
///
/// # let internal_ca_pem = b"";
/// let app = taskward::Scope::root("app");
/// let mut builder = Client::builder()
///     .timeout(Duration::from_secs(10))
///     .connect_timeout(Duration::from_secs(2))
///     .pool_idle_timeout(Duration::from_secs(60))
///     .user_agent("billing/2.1")
///     .body_limit(1024 * 1024);
/// if let Ok(ca) = Certificate::from_pem(internal_ca_pem) {
///     builder = builder.add_root_certificate(ca);
/// }
/// let client = builder.build(&app)?;
/// # client.close(Duration::from_secs(1)).await;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
#[must_use = "a builder does nothing until built"]
pub struct ClientBuilder {
    timeout: Duration,
    connect_timeout: Option<Duration>,
    pool_idle_timeout: Option<Duration>,
    pool_max_idle_per_host: usize,
    user_agent: Result<HeaderValue, http::header::InvalidHeaderValue>,
    body_limit: usize,
    tls: TlsSettings,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ClientBuilder {
    /// The default timeout per request.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
    /// The default connect timeout (lookup, TCP connect and TLS handshake together): it
    /// also bounds a connect hyper-util finishes in the background for the pool.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
    /// The default limit of a response body read whole: 10 MiB.
    pub const DEFAULT_BODY_LIMIT: usize = 10 * 1024 * 1024;

    /// The defaults: 30 s per request, 10 s to connect, idle connections kept 30 s and
    /// unbounded in number, user agent `taskward-http/<version>`, bodies up to 10 MiB,
    /// Mozilla's trust roots (`webpki-roots`), HTTP/2 offered by ALPN.
    ///
    /// # Examples
    ///
    /// ```
    /// let builder = taskward_http::ClientBuilder::new(); // the same as `Client::builder()`
    /// # drop(builder);
    /// ```
    pub fn new() -> Self {
        Self {
            timeout: Self::DEFAULT_TIMEOUT,
            connect_timeout: Some(Self::DEFAULT_CONNECT_TIMEOUT),
            pool_idle_timeout: Some(Client::POOL_IDLE_TIMEOUT),
            pool_max_idle_per_host: usize::MAX,
            user_agent: Ok(HeaderValue::from_static(concat!(
                "taskward-http/",
                env!("CARGO_PKG_VERSION")
            ))),
            body_limit: Self::DEFAULT_BODY_LIMIT,
            tls: TlsSettings::default(),
        }
    }

    /// The time a request may take, until its response headers with
    /// [`Client::request`], until its body is read with [`Response`](crate::Response)'s
    /// methods.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// let builder = taskward_http::Client::builder().timeout(Duration::from_secs(5));
    /// # drop(builder);
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The time a new connection may take: lookup, TCP connect and TLS handshake.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// let builder = taskward_http::Client::builder().connect_timeout(Duration::from_secs(1));
    /// # drop(builder);
    /// ```
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// How long an idle connection stays in the pool; `None`: until the server closes it.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// let short = taskward_http::Client::builder().pool_idle_timeout(Duration::from_secs(5));
    /// let never = taskward_http::Client::builder().pool_idle_timeout(None);
    /// # drop((short, never));
    /// ```
    pub fn pool_idle_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.pool_idle_timeout = timeout.into();
        self
    }

    /// How many idle connections the pool keeps per host; 0 keeps none.
    ///
    /// # Examples
    ///
    /// ```
    /// let builder = taskward_http::Client::builder().pool_max_idle_per_host(4);
    /// # drop(builder);
    /// ```
    pub fn pool_max_idle_per_host(mut self, max: usize) -> Self {
        self.pool_max_idle_per_host = max;
        self
    }

    /// The `User-Agent` of requests that set none. An invalid value fails
    /// [`build`](Self::build).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let app = taskward::Scope::root("app");
    /// let refused = taskward_http::Client::builder().user_agent("bad\nagent").build(&app);
    /// assert!(matches!(refused, Err(taskward_http::ClientBuildError::UserAgent(_))));
    /// # }
    /// ```
    pub fn user_agent<V>(mut self, value: V) -> Self
    where
        V: TryInto<HeaderValue, Error = http::header::InvalidHeaderValue>,
    {
        self.user_agent = value.try_into();
        self
    }

    /// The most bytes of response body [`Response`](crate::Response)'s methods read.
    ///
    /// # Examples
    ///
    /// ```
    /// let builder = taskward_http::Client::builder().body_limit(64 * 1024);
    /// # drop(builder);
    /// ```
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// Whether to trust Mozilla's roots, compiled in (`webpki-roots`); on by default.
    ///
    /// # Examples
    ///
    /// ```
    /// // Only the platform's store:
    /// let builder = taskward_http::Client::builder()
    ///     .tls_built_in_webpki_certs(false)
    ///     .tls_built_in_native_certs(true);
    /// # drop(builder);
    /// ```
    pub fn tls_built_in_webpki_certs(mut self, trust: bool) -> Self {
        self.tls.webpki_roots = trust;
        self
    }

    /// Whether to trust the platform's store (`rustls-native-certs`: on Linux the
    /// system bundle, `SSL_CERT_FILE` and `SSL_CERT_DIR`); off by default. Read once, by
    /// [`build`](Self::build).
    ///
    /// # Examples
    ///
    /// ```
    /// let builder = taskward_http::Client::builder().tls_built_in_native_certs(true);
    /// # drop(builder);
    /// ```
    pub fn tls_built_in_native_certs(mut self, trust: bool) -> Self {
        self.tls.native_roots = trust;
        self
    }

    /// Trusts `certificate` as a root too (an internal PKI's, a test's).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use taskward_http::{Certificate, Client};
    ///
    /// let ca = Certificate::from_pem(&std::fs::read("/etc/pki/internal-ca.pem")?)?;
    /// let builder = Client::builder().add_root_certificate(ca);
    /// # Ok(()) }
    /// ```
    pub fn add_root_certificate(mut self, certificate: Certificate) -> Self {
        self.tls.extra_roots.push(certificate);
        self
    }

    /// The certificate and key to present to servers that ask for one (mutual TLS).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use taskward_http::{Client, Identity};
    ///
    /// let me = Identity::from_pem(&std::fs::read("/etc/pki/billing-client.pem")?)?;
    /// let builder = Client::builder().identity(me);
    /// # Ok(()) }
    /// ```
    pub fn identity(mut self, identity: Identity) -> Self {
        self.tls.identity = Some(identity);
        self
    }

    /// Offers only HTTP/1.1 in the TLS handshake; by default HTTP/2 is offered first.
    ///
    /// # Examples
    ///
    /// ```
    /// let builder = taskward_http::Client::builder().http1_only();
    /// # drop(builder);
    /// ```
    pub fn http1_only(mut self) -> Self {
        self.tls.http1_only = true;
        self
    }

    /// A client whose tasks live in a child scope `client` of `scope`.
    ///
    /// # Errors
    ///
    /// [`ClientBuildError`]: the TLS settings cannot be used (a key that does not match
    /// the certificate, an empty platform store), the user agent is invalid, or `scope`
    /// is shutting down.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), taskward_http::ClientBuildError> {
    /// let app = taskward::Scope::root("app");
    /// let client = taskward_http::Client::builder().build(&app)?;
    /// assert_eq!(client.scope().path(), "app/client");
    /// # Ok(())
    /// # }
    /// ```
    pub fn build(self, scope: &Scope) -> Result<Client, ClientBuildError> {
        let user_agent = self.user_agent.map_err(ClientBuildError::UserAgent)?;
        let tls = TlsConnector::from(Arc::new(self.tls.client_config()?));
        let own = scope.child("client")?;
        let mut http = HttpConnector::new_with_resolver(ScopeResolver(own.clone()));
        // The connector takes `https://` too; it runs the handshake itself.
        http.enforce_http(false);
        // Requests are small writes that should leave at once; as reqwest and curl do.
        http.set_nodelay(true);
        let connector = Connector {
            http,
            tls,
            scope: own.clone(),
            connect_timeout: self.connect_timeout,
        };
        let pool = |max_idle: usize| {
            Pooled::builder(ScopeExecutor(own.clone()))
                .pool_timer(TokioTimer::new())
                .timer(TokioTimer::new())
                .pool_idle_timeout(self.pool_idle_timeout)
                .pool_max_idle_per_host(max_idle)
                .build(connector.clone())
        };
        let pools = Pools {
            pooled: pool(self.pool_max_idle_per_host),
            fresh: pool(0),
        };
        Ok(Client::from_parts(Parts {
            scope: own,
            pools,
            timeout: self.timeout,
            user_agent,
            body_limit: self.body_limit,
        }))
    }
}
