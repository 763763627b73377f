//! What the client's TLS tests share: a certificate authority made at test time (rcgen),
//! and an HTTPS server on 127.0.0.1:0 (tokio-rustls acceptor + hyper, HTTP/1.1 and
//! HTTP/2 by ALPN) whose tasks are tasks of the test's scope.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::routing::{get, post};
use futures_util::StreamExt;
use hyper_util::rt::TokioIo;
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use taskward::Scope;
use taskward_http::{Body, Certificate, Identity};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// A certificate authority of the test's own.
pub(crate) struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate it issued, with its key.
pub(crate) struct Leaf {
    pub(crate) cert: CertificateDer<'static>,
    pub(crate) key: PrivateKeyDer<'static>,
    /// The certificate and the key, in one PEM document.
    pub(crate) pem: String,
}

impl Pki {
    pub(crate) fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("no names");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("a key");
        Self {
            ca: CertifiedIssuer::self_signed(params, key).expect("the CA signs itself"),
        }
    }

    /// The CA's certificate, for the client to trust.
    pub(crate) fn root(&self) -> Certificate {
        Certificate::from_pem(self.ca.pem().as_bytes()).expect("rcgen writes valid PEM")
    }

    /// A server certificate for `names` (host names or IP addresses).
    pub(crate) fn server(&self, names: &[&str]) -> Leaf {
        self.leaf(names, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate, as the client's identity.
    pub(crate) fn client(&self) -> Identity {
        let leaf = self.leaf(&["client.test"], ExtendedKeyUsagePurpose::ClientAuth);
        Identity::from_pem(leaf.pem.as_bytes()).expect("rcgen writes valid PEM")
    }

    fn leaf(&self, names: &[&str], usage: ExtendedKeyUsagePurpose) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).expect("valid names");
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().expect("a key");
        let cert = params.signed_by(&key, &self.ca).expect("the CA signs");
        Leaf {
            cert: cert.der().clone(),
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            pem: format!("{}{}", cert.pem(), key.serialize_pem()),
        }
    }

    fn root_store(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.der().clone()).expect("a valid CA");
        roots
    }
}

/// The test routes: `/` says hello, `/version` names the request's HTTP version, `/echo`
/// (POST) answers the JSON it got inside `{"received": …}`, `/big` is 1,000 bytes with a
/// `Content-Length` and `/big-stream` 1,000 bytes without one.
pub(crate) fn router() -> Router {
    Router::new()
        .route("/", get(|| async { "hello" }))
        .route(
            "/version",
            get(|request: Request| async move { format!("{:?}", request.version()) }),
        )
        .route(
            "/echo",
            post(
                |axum::Json(value): axum::Json<serde_json::Value>| async move {
                    axum::Json(serde_json::json!({ "received": value }))
                },
            ),
        )
        .route("/big", get(|| async { vec![b'x'; 1000] }))
        .route(
            "/big-stream",
            get(|| async {
                let chunks = futures_util::stream::iter(0..10).map(|_| {
                    Ok::<_, std::convert::Infallible>(bytes::Bytes::from(vec![b'x'; 100]))
                });
                Body::from_stream(chunks)
            }),
        )
}

/// An HTTPS server on 127.0.0.1:0 in `app`, presenting `leaf`; with `client_ca`, it
/// requires a client certificate issued by it.
pub(crate) async fn https_server(app: &Scope, leaf: &Leaf, client_ca: Option<&Pki>) -> SocketAddr {
    https_server_with(app, leaf, client_ca, rustls::DEFAULT_VERSIONS).await
}

/// [`https_server`], speaking only the TLS `versions`.
pub(crate) async fn https_server_with(
    app: &Scope,
    leaf: &Leaf,
    client_ca: Option<&Pki>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> SocketAddr {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .expect("ring supports both versions");
    let builder = match client_ca {
        Some(pki) => builder.with_client_cert_verifier(
            WebPkiClientVerifier::builder_with_provider(Arc::new(pki.root_store()), provider)
                .build()
                .expect("a verifier"),
        ),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(vec![leaf.cert.clone()], leaf.key.clone_key())
        .expect("the key matches");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("loopback port");
    let addr = listener.local_addr().expect("bound");
    let service = TowerToHyperService::new(router());
    let streams = InScope(app.clone());
    app.task("https server")
        .spawn_with(move |ctx| async move {
            loop {
                let tcp = tokio::select! {
                    () = ctx.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok((tcp, _)) => tcp,
                        Err(_) => continue,
                    },
                };
                let (acceptor, service, streams) =
                    (acceptor.clone(), service.clone(), streams.clone());
                let _ = taskward::spawn("https connection", async move {
                    // A refused handshake (a client certificate missing) ends here.
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let _ = auto::Builder::new(streams)
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        })
        .expect("app is open");
    addr
}

/// hyper's executor for the server's HTTP/2 streams: tasks of the test's scope, which
/// counts every task it did not spawn as a leak.
#[derive(Clone)]
struct InScope(Scope);

impl<F> hyper::rt::Executor<F> for InScope
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    fn execute(&self, future: F) {
        let _ = self.0.spawn("h2 stream", future);
    }
}
