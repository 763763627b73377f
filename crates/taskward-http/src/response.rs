//! A response of the [`Client`](crate::Client): status and headers at once, the body read
//! whole under a size limit and the request's deadline.
//!
//! Read [`Response`].

use std::sync::Weak;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use crate::client::{InFlight, Inner};
use crate::error::ClientError;

/// A response to a request sent with [`RequestBuilder::send`](crate::RequestBuilder::send).
///
/// The body is read by [`bytes`](Self::bytes), [`text`](Self::text) or
/// [`json`](Self::json), at most [`body_limit`](Self::body_limit) bytes (the client's
/// limit unless changed here), before the request's deadline (its timeout counts from
/// the send). A read in progress counts as a request in flight for
/// [`Client::close`](crate::Client::close). [`into_http`](Self::into_http) gives the
/// `http::Response` to stream the body yourself.
///
/// # Examples
///
/// ```no_run
/// # async fn run(client: taskward_http::Client) -> Result<(), taskward_http::ClientError> {
/// #[derive(serde::Deserialize)]
/// struct Item {
///     name: String,
/// }
///
/// let response = client.get("https://example.com/items/7").send().await?;
/// if response.status().is_success() {
///     let item: Item = response.body_limit(64 * 1024).json().await?;
///     println!("{}", item.name);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Response {
    response: http::Response<Incoming>,
    /// The client, not kept alive by a response someone holds on to.
    client: Weak<Inner>,
    limit: usize,
    deadline: Instant,
    timeout: Duration,
}

impl Response {
    pub(crate) fn new(
        response: http::Response<Incoming>,
        client: Weak<Inner>,
        limit: usize,
        deadline: Instant,
        timeout: Duration,
    ) -> Self {
        Self {
            response,
            client,
            limit,
            deadline,
            timeout,
        }
    }

    /// The status code.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: taskward_http::Client) -> Result<(), taskward_http::ClientError> {
    /// let found = client.get("https://example.com/").send().await?.status().is_success();
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn status(&self) -> StatusCode {
        self.response.status()
    }

    /// The HTTP version the response came in (`HTTP/2.0` when TLS negotiated it).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: taskward_http::Client) -> Result<(), taskward_http::ClientError> {
    /// let h2 = client.get("https://example.com/").send().await?.version() == http::Version::HTTP_2;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn version(&self) -> Version {
        self.response.version()
    }

    /// The response headers.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: taskward_http::Client) -> Result<(), taskward_http::ClientError> {
    /// let response = client.get("https://example.com/").send().await?;
    /// let etag = response.headers().get(http::header::ETAG).cloned();
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn headers(&self) -> &HeaderMap {
        self.response.headers()
    }

    /// The body's length as the server announced it (`Content-Length`), if it did.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: taskward_http::Client) -> Result<(), taskward_http::ClientError> {
    /// let length = client.head("https://example.com/big.iso").send().await?.content_length();
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn content_length(&self) -> Option<u64> {
        self.response
            .headers()
            .get(http::header::CONTENT_LENGTH)?
            .to_str()
            .ok()?
            .parse()
            .ok()
    }

    /// Reads at most `limit` bytes of body, instead of the client's limit.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: taskward_http::Client) -> Result<(), taskward_http::ClientError> {
    /// let page = client.get("https://example.com/").send().await?.body_limit(1 << 20).text().await?;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn body_limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// The whole body.
    ///
    /// # Errors
    ///
    /// [`ClientError::BodyTooLarge`] past the limit (at once if the announced length is
    /// past it); [`ClientError::Timeout`] at the request's deadline;
    /// [`ClientError::Closed`] if the client is closed and its deadline passes;
    /// [`ClientError::Body`] if the connection fails.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future drops the body; its connection is not reused.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: taskward_http::Client) -> Result<(), taskward_http::ClientError> {
    /// let logo = client.get("https://example.com/logo.png").send().await?.bytes().await?;
    /// # Ok(()) }
    /// ```
    pub async fn bytes(self) -> Result<Bytes, ClientError> {
        let limit = self.limit;
        if self
            .content_length()
            .is_some_and(|length| length > limit as u64)
        {
            return Err(ClientError::BodyTooLarge { limit });
        }
        let Some(client) = self.client.upgrade() else {
            return Err(ClientError::Closed);
        };
        let cut = client.cut.clone();
        let _in_flight = InFlight::enter(client);
        let mut body = self.response.into_body();
        let reading = async {
            let mut collected = BytesMut::new();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|error| {
                    if cut.is_cancelled() {
                        ClientError::Closed
                    } else {
                        ClientError::Body(error)
                    }
                })?;
                if let Ok(data) = frame.into_data() {
                    if collected.len() + data.len() > limit {
                        return Err(ClientError::BodyTooLarge { limit });
                    }
                    collected.extend_from_slice(&data);
                }
            }
            Ok(collected.freeze())
        };
        tokio::select! {
            // Biased, as for the request: at the close deadline a cut body is `Closed`.
            biased;
            () = cut.cancelled() => Err(ClientError::Closed),
            read = tokio::time::timeout_at(self.deadline, reading) => {
                read.unwrap_or(Err(ClientError::Timeout(self.timeout)))
            }
        }
    }

    /// The whole body as text; bytes that are not UTF-8 become U+FFFD.
    ///
    /// # Errors
    ///
    /// As [`bytes`](Self::bytes).
    ///
    /// # Cancel safety
    ///
    /// As [`bytes`](Self::bytes).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: taskward_http::Client) -> Result<(), taskward_http::ClientError> {
    /// let page = client.get("https://example.com/").send().await?.text().await?;
    /// # Ok(()) }
    /// ```
    pub async fn text(self) -> Result<String, ClientError> {
        let body = self.bytes().await?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// The whole body, parsed as JSON.
    ///
    /// # Errors
    ///
    /// As [`bytes`](Self::bytes), and [`ClientError::Json`] if it is not a `T`.
    ///
    /// # Cancel safety
    ///
    /// As [`bytes`](Self::bytes).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: taskward_http::Client) -> Result<(), taskward_http::ClientError> {
    /// let value: serde_json::Value = client.get("https://example.com/api").send().await?.json().await?;
    /// # Ok(()) }
    /// ```
    pub async fn json<T: DeserializeOwned>(self) -> Result<T, ClientError> {
        let body = self.bytes().await?;
        serde_json::from_slice(&body).map_err(ClientError::Json)
    }

    /// The `http::Response`, to read its body as a stream.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: taskward_http::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// use http_body_util::BodyExt;
    ///
    /// let mut body = client.get("https://example.com/feed").send().await?.into_http().into_body();
    /// while let Some(frame) = body.frame().await {
    ///     let _chunk = frame?;
    /// }
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn into_http(self) -> http::Response<Incoming> {
        self.response
    }
}
