//! A request being put together, reqwest's way: `client.post(url).json(&v).send()`.
//!
//! Read [`RequestBuilder`].

use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Uri};
use serde::Serialize;

use crate::client::Client;
use crate::error::ClientError;
use crate::response::Response;
use crate::server::Body;

/// A request to finish and [`send`](Self::send); made by [`Client::get`],
/// [`Client::post`] and their siblings.
///
/// The body is held whole, so the request can be sent again: an idempotent request (GET,
/// HEAD, PUT, DELETE, OPTIONS) that fails on a reused keep-alive connection before any
/// byte of its response is retried once on a new connection (RFC 9110 §9.2.2); any other
/// only if declared [`idempotent`](Self::idempotent). A mistake (a header that does not
/// parse) is kept and reported by `send`.
///
/// # Examples
///
/// ```no_run
/// # async fn run(client: taskward_http::Client) -> Result<(), taskward_http::ClientError> {
/// use std::time::Duration;
///
/// let response = client
///     .post("https://example.com/orders")
///     .header("idempotency-key", "order-4711")
///     .idempotent(true)
///     .json(&serde_json::json!({"sku": "lamp", "count": 2}))
///     .timeout(Duration::from_secs(3))
///     .send()
///     .await?;
/// println!("{}", response.status());
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "a request does nothing until it is sent"]
pub struct RequestBuilder {
    client: Client,
    built: Result<Outgoing, ClientError>,
}

/// What is sent: everything needed to build the request again for a retry.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    pub(crate) timeout: Option<Duration>,
    pub(crate) idempotent: bool,
}

impl Outgoing {
    pub(crate) fn to_request(&self) -> Request<Body> {
        // `Bytes` clones share the buffer: a retry copies no body.
        let mut request = Request::new(Body::from(self.body.clone()));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        request
    }
}

impl RequestBuilder {
    pub(crate) fn new(client: Client, method: Method, uri: Result<Uri, http::Error>) -> Self {
        let built = uri
            .map_err(ClientError::Invalid)
            .and_then(checked)
            .map(|uri| Outgoing {
                method,
                uri,
                headers: HeaderMap::new(),
                body: Bytes::new(),
                timeout: None,
                idempotent: false,
            });
        Self { client, built }
    }

    /// Adds a header (to those of the same name already set).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: taskward_http::Client) -> Result<(), taskward_http::ClientError> {
    /// client.get("https://example.com/").header("accept", "text/plain").send().await?;
    /// # Ok(()) }
    /// ```
    pub fn header<K, V>(mut self, name: K, value: V) -> Self
    where
        K: TryInto<HeaderName>,
        K::Error: Into<http::Error>,
        V: TryInto<HeaderValue>,
        V::Error: Into<http::Error>,
    {
        if let Ok(outgoing) = &mut self.built {
            match (name.try_into(), value.try_into()) {
                (Ok(name), Ok(value)) => {
                    outgoing.headers.append(name, value);
                }
                (Err(error), _) => self.built = Err(ClientError::Invalid(error.into())),
                (_, Err(error)) => self.built = Err(ClientError::Invalid(error.into())),
            }
        }
        self
    }

    /// Adds every header of `headers`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: taskward_http::Client) -> Result<(), taskward_http::ClientError> {
    /// let mut headers = http::HeaderMap::new();
    /// headers.insert("accept", http::HeaderValue::from_static("application/json"));
    /// client.get("https://example.com/").headers(headers).send().await?;
    /// # Ok(()) }
    /// ```
    pub fn headers(mut self, headers: HeaderMap) -> Self {
        if let Ok(outgoing) = &mut self.built {
            outgoing.headers.extend(headers);
        }
        self
    }

    /// Sets `Authorization: Bearer <token>`, marked sensitive (not shown by `Debug`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: taskward_http::Client) -> Result<(), taskward_http::ClientError> {
    /// client.get("https://example.com/me").bearer_auth("s3cr3t").send().await?;
    /// # Ok(()) }
    /// ```
    pub fn bearer_auth(self, token: impl std::fmt::Display) -> Self {
        match HeaderValue::try_from(format!("Bearer {token}")) {
            Ok(mut value) => {
                value.set_sensitive(true);
                self.header(AUTHORIZATION, value)
            }
            Err(error) => self.fail(ClientError::Invalid(error.into())),
        }
    }

    /// Sets the body.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: taskward_http::Client) -> Result<(), taskward_http::ClientError> {
    /// client.put("https://example.com/notes/1").body("remember the milk").send().await?;
    /// # Ok(()) }
    /// ```
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        if let Ok(outgoing) = &mut self.built {
            outgoing.body = body.into();
        }
        self
    }

    /// Sets the body to `value` as JSON, and `Content-Type: application/json` unless a
    /// content type was set.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: taskward_http::Client) -> Result<(), taskward_http::ClientError> {
    /// client.post("https://example.com/items").json(&["lamp", "desk"]).send().await?;
    /// # Ok(()) }
    /// ```
    pub fn json<T: Serialize + ?Sized>(mut self, value: &T) -> Self {
        if let Ok(outgoing) = &mut self.built {
            match serde_json::to_vec(value) {
                Ok(body) => {
                    outgoing.body = body.into();
                    outgoing
                        .headers
                        .entry(CONTENT_TYPE)
                        .or_insert(HeaderValue::from_static("application/json"));
                }
                Err(error) => return self.fail(ClientError::Serialize(error)),
            }
        }
        self
    }

    /// The time this request may take, from `send` to the end of the body read by
    /// [`Response`]'s methods, instead of the client's timeout; a retry does not extend it.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: taskward_http::Client) -> Result<(), taskward_http::ClientError> {
    /// use std::time::Duration;
    ///
    /// client.get("https://example.com/").timeout(Duration::from_millis(300)).send().await?;
    /// # Ok(()) }
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        if let Ok(outgoing) = &mut self.built {
            outgoing.timeout = Some(timeout);
        }
        self
    }

    /// Declares the request idempotent whatever its method (a POST carrying an
    /// idempotency key the server honours): then it is retried, once, as a GET is, if it
    /// fails on a reused connection before any byte of its response. `false` (the
    /// default) leaves it to the method.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: taskward_http::Client) -> Result<(), taskward_http::ClientError> {
    /// client
    ///     .post("https://example.com/payments")
    ///     .header("idempotency-key", "pay-991")
    ///     .idempotent(true)
    ///     .send()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn idempotent(mut self, idempotent: bool) -> Self {
        if let Ok(outgoing) = &mut self.built {
            outgoing.idempotent = idempotent;
        }
        self
    }

    /// Sends the request and waits for the response headers.
    ///
    /// # Errors
    ///
    /// What [`Client::request`] returns, and [`ClientError::Invalid`],
    /// [`ClientError::Url`] or [`ClientError::Serialize`] for a request that could not
    /// be built.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future abandons the request; its connection is not reused.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: taskward_http::Client) -> Result<(), taskward_http::ClientError> {
    /// let response = client.get("https://example.com/").send().await?;
    /// assert!(response.status().is_success());
    /// # Ok(()) }
    /// ```
    pub async fn send(self) -> Result<Response, ClientError> {
        self.client.send(self.built?).await
    }

    fn fail(mut self, error: ClientError) -> Self {
        if self.built.is_ok() {
            self.built = Err(error);
        }
        self
    }
}

/// `uri`, if it can be requested: `http` or `https`, with a host.
fn checked(uri: Uri) -> Result<Uri, ClientError> {
    let reason = match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(host)) if !host.is_empty() => return Ok(uri),
        (None, _) => "no scheme (http or https)",
        (Some("http" | "https"), _) => "no host",
        (Some(_), _) => "the scheme is neither http nor https",
    };
    Err(ClientError::Url {
        url: uri.to_string(),
        reason,
    })
}
