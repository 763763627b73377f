//! The client's TLS settings: which certificate authorities it trusts and which
//! certificate it presents, turned into a rustls configuration (ring provider, HTTP/2 and
//! HTTP/1.1 offered by ALPN).
//!
//! Read [`Certificate`] and [`Identity`] first; they are given to
//! [`ClientBuilder`](crate::ClientBuilder).

use std::fmt;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::ClientBuildError;

/// A certificate authority to trust, beside (or instead of) the built-in roots: an
/// internal PKI's root, or a test's.
///
/// # Examples
///
/// ```
/// use taskward_http::Certificate;
///
/// let pem = b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n";
/// assert!(Certificate::from_pem(pem).is_err());
/// assert!(Certificate::from_pem(b"").is_err(), "no certificate at all");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Certificate(CertificateDer<'static>);

impl Certificate {
    /// The first certificate of a PEM document.
    ///
    /// # Errors
    ///
    /// [`ClientBuildError::Pem`] if the document holds no readable certificate.
    pub fn from_pem(pem: &[u8]) -> Result<Self, ClientBuildError> {
        Self::from_pem_bundle(pem)?
            .into_iter()
            .next()
            .ok_or_else(|| ClientBuildError::pem("certificate", "no CERTIFICATE block"))
    }

    /// Every certificate of a PEM document (a CA bundle).
    ///
    /// # Errors
    ///
    /// [`ClientBuildError::Pem`] if a block cannot be read, or there is none.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use taskward_http::{Certificate, Client};
    ///
    /// let mut builder = Client::builder();
    /// for ca in Certificate::from_pem_bundle(&std::fs::read("/etc/pki/bundle.pem")?)? {
    ///     builder = builder.add_root_certificate(ca);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn from_pem_bundle(pem: &[u8]) -> Result<Vec<Self>, ClientBuildError> {
        let certs = CertificateDer::pem_slice_iter(pem)
            .map(|cert| cert.map(Self))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| ClientBuildError::pem("certificate", error))?;
        if certs.is_empty() {
            return Err(ClientBuildError::pem("certificate", "no CERTIFICATE block"));
        }
        Ok(certs)
    }

    /// A certificate in DER form; checked when the client is built.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use taskward_http::{Certificate, Client};
    ///
    /// let garbage = Certificate::from_der(vec![0x30, 0x00]);
    /// let app = taskward::Scope::root("app");
    /// assert!(Client::builder().add_root_certificate(garbage).build(&app).is_err());
    /// # }
    /// ```
    #[must_use]
    pub fn from_der(der: impl Into<Vec<u8>>) -> Self {
        Self(CertificateDer::from(der.into()))
    }
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("der_len", &self.0.len())
            .finish()
    }
}

/// The certificate chain and private key a client presents when a server asks for one
/// (mutual TLS).
///
/// # Examples
///
/// ```
/// use taskward_http::Identity;
///
/// // A PEM document with the chain (leaf first) and the key, as most tools write it;
/// // here one without a key:
/// let error = Identity::from_pem(b"").unwrap_err();
/// assert!(error.to_string().contains("client identity"), "{error}");
/// ```
#[derive(Clone)]
pub struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
}

impl Identity {
    /// The chain (leaf first) and the private key (PKCS#8, PKCS#1 or SEC1) from one PEM
    /// document.
    ///
    /// # Errors
    ///
    /// [`ClientBuildError::Pem`] if there is no certificate or no private key.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let me = taskward_http::Identity::from_pem(&std::fs::read("/etc/pki/me.pem")?)?;
    /// # Ok(()) }
    /// ```
    pub fn from_pem(pem: &[u8]) -> Result<Self, ClientBuildError> {
        let chain = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| ClientBuildError::pem("client identity", error))?;
        if chain.is_empty() {
            return Err(ClientBuildError::pem(
                "client identity",
                "no CERTIFICATE block",
            ));
        }
        let key = PrivateKeyDer::from_pem_slice(pem)
            .map_err(|error| ClientBuildError::pem("client identity", error))?;
        Ok(Self {
            chain,
            key: Arc::new(key),
        })
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        f.debug_struct("Identity")
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

/// What the builder was told about TLS.
#[derive(Debug, Clone)]
pub(crate) struct TlsSettings {
    pub(crate) webpki_roots: bool,
    pub(crate) native_roots: bool,
    pub(crate) extra_roots: Vec<Certificate>,
    pub(crate) identity: Option<Identity>,
    pub(crate) http1_only: bool,
}

impl Default for TlsSettings {
    fn default() -> Self {
        Self {
            webpki_roots: true,
            native_roots: false,
            extra_roots: Vec::new(),
            identity: None,
            http1_only: false,
        }
    }
}

impl TlsSettings {
    /// The rustls configuration, with the ring provider.
    pub(crate) fn client_config(&self) -> Result<rustls::ClientConfig, ClientBuildError> {
        let mut roots = RootCertStore::empty();
        if self.webpki_roots {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        if self.native_roots {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                let why = found
                    .errors
                    .first()
                    .map_or_else(|| "no certificate found".to_owned(), ToString::to_string);
                return Err(ClientBuildError::NativeRoots(why));
            }
        }
        for Certificate(der) in &self.extra_roots {
            roots
                .add(der.clone())
                .map_err(|error| ClientBuildError::pem("certificate", error))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(ClientBuildError::tls)?
            .with_root_certificates(roots);
        let mut config = match &self.identity {
            Some(identity) => builder
                .with_client_auth_cert(identity.chain.clone(), identity.key.clone_key())
                .map_err(ClientBuildError::tls)?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = if self.http1_only {
            vec![b"http/1.1".to_vec()]
        } else {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        };
        Ok(config)
    }
}
