//! The client over HTTPS, through its reqwest-like API: JSON both ways, HTTP/2 by ALPN,
//! the TLS failures (wrong name, unknown CA, client certificate refused) as
//! `ClientError::Tls` naming the host, mutual TLS, and the body limit. Certificates are
//! made at test time; the server is a tokio-rustls acceptor in front of hyper.

mod common;
#[path = "tls_support/mod.rs"]
mod tls_support;

use std::error::Error as StdError;
use std::time::Duration;

use rustls::CertificateError;
use serde::Deserialize;
use taskward::testing::Harness;
use taskward_http::{Client, ClientError};
use tls_support::{Pki, https_server, https_server_with};

const DEADLINE: Duration = Duration::from_secs(10);

/// The rustls error in `error`'s chain, if there is one.
fn rustls_cause<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(error);
    while let Some(link) = next {
        if let Some(found) = link.downcast_ref::<rustls::Error>() {
            return Some(found);
        }
        // An I/O error hides the error it carries from `source()`.
        let carried = link
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
        if carried.is_some() {
            return carried;
        }
        next = link.source();
    }
    None
}

#[derive(Debug, Deserialize, PartialEq)]
struct Echo {
    received: serde_json::Value,
}

// Asserts: over HTTPS (HTTP/1.1 only, as asked), a GET's text and a POST's JSON body go
// through the new API and come back parsed, with the request's JSON content type and the
// client's user agent set.
#[test]
fn get_and_post_json_over_https() {
    Harness::multi_thread(2).run(|app| async move {
        let pki = Pki::new("test CA");
        let addr = https_server(&app, &pki.server(&["localhost"]), None).await;
        let client = Client::builder()
            .add_root_certificate(pki.root())
            .http1_only()
            .build(&app)
            .expect("open");
        let base = format!("https://localhost:{}", addr.port());

        let hello = client.get(format!("{base}/")).send().await.expect("served");
        assert_eq!(hello.status(), 200);
        assert_eq!(hello.version(), http::Version::HTTP_11);
        assert_eq!(hello.text().await.expect("text"), "hello");

        let sent = serde_json::json!({"name": "lamp", "count": 2});
        let echo: Echo = client
            .post(format!("{base}/echo"))
            .json(&sent)
            .send()
            .await
            .expect("served")
            .json()
            .await
            .expect("JSON");
        assert_eq!(
            echo.received, sent,
            "axum's Json extractor took it: content type set"
        );

        let report = client.close(DEADLINE).await;
        assert!(report.is_clean(), "{report}");
        let _ = app.shutdown(Duration::from_secs(1)).await;
    });
}

// Asserts: with both offered by ALPN, the client speaks HTTP/2 to a server that prefers
// it (the response's version and what the server saw), and several requests share it.
#[test]
fn h2_is_negotiated_by_alpn() {
    Harness::multi_thread(2).run(|app| async move {
        let pki = Pki::new("test CA");
        let addr = https_server(&app, &pki.server(&["localhost"]), None).await;
        let client = Client::builder()
            .add_root_certificate(pki.root())
            .build(&app)
            .expect("open");
        let url = format!("https://localhost:{}/version", addr.port());
        for _ in 0..3 {
            let response = client.get(&url).send().await.expect("served");
            assert_eq!(response.version(), http::Version::HTTP_2);
            assert_eq!(response.text().await.expect("text"), "HTTP/2.0");
        }
        let report = client.close(DEADLINE).await;
        assert_eq!(report.counts.stuck, 0, "{report}");
        let _ = app.shutdown(Duration::from_secs(1)).await;
    });
}

// Asserts: a certificate for another name fails as `Tls` naming the host asked for, and
// the cause is rustls's "not valid for name"; not as a connect error.
#[test]
fn a_wrong_host_name_fails_with_a_tls_error_naming_the_host() {
    Harness::multi_thread(2).run(|app| async move {
        let pki = Pki::new("test CA");
        let addr = https_server(&app, &pki.server(&["elsewhere.test"]), None).await;
        let client = Client::builder()
            .add_root_certificate(pki.root())
            .build(&app)
            .expect("open");
        let failed = client
            .get(format!("https://localhost:{}/", addr.port()))
            .send()
            .await
            .expect_err("the name does not match");
        let ClientError::Tls { host, .. } = &failed else {
            panic!("a TLS error: {failed:?}");
        };
        assert_eq!(host, "localhost");
        assert!(failed.to_string().contains("localhost"), "{failed}");
        assert!(
            matches!(
                rustls_cause(&failed),
                Some(rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName
                        | CertificateError::NotValidForNameContext { .. }
                ))
            ),
            "{:?}",
            rustls_cause(&failed)
        );
        let report = client.close(DEADLINE).await;
        assert_eq!(report.counts.stuck, 0, "{report}");
        let _ = app.shutdown(Duration::from_secs(1)).await;
    });
}

// Asserts: a server whose CA the client does not trust (only the built-in roots) fails
// as `Tls` naming the host, caused by an unknown issuer.
#[test]
fn an_unknown_ca_fails_with_a_tls_error_naming_the_host() {
    Harness::multi_thread(2).run(|app| async move {
        let pki = Pki::new("test CA");
        let addr = https_server(&app, &pki.server(&["127.0.0.1"]), None).await;
        let client = Client::builder().build(&app).expect("open");
        let failed = client
            .get(format!("https://127.0.0.1:{}/", addr.port()))
            .send()
            .await
            .expect_err("the CA is unknown");
        assert!(
            matches!(&failed, ClientError::Tls { host, .. } if host == "127.0.0.1"),
            "{failed:?}"
        );
        assert!(
            matches!(
                rustls_cause(&failed),
                Some(rustls::Error::InvalidCertificate(
                    CertificateError::UnknownIssuer
                ))
            ),
            "{:?}",
            rustls_cause(&failed)
        );
        let report = client.close(DEADLINE).await;
        assert_eq!(report.counts.stuck, 0, "{report}");
        let _ = app.shutdown(Duration::from_secs(1)).await;
    });
}

// Asserts: a server that requires a client certificate serves a client presenting one
// its CA issued, and refuses one presenting none. Over TLS 1.2 the refusal ends the
// handshake: a `Tls` error naming the host, caused by the server's alert. (TLS 1.3
// refuses after the client's side of the handshake is done, racing the first request's
// write: the request then fails with the alert, or with the reset that follows it, as
// asserted last.)
#[test]
fn mutual_tls_accepted_and_refused() {
    Harness::multi_thread(2).run(|app| async move {
        let pki = Pki::new("test CA");
        let leaf = pki.server(&["localhost"]);
        let tls12 = https_server_with(&app, &leaf, Some(&pki), &[&rustls::version::TLS12]).await;
        let tls13 = https_server_with(&app, &leaf, Some(&pki), &[&rustls::version::TLS13]).await;

        let with_cert = Client::builder()
            .add_root_certificate(pki.root())
            .identity(pki.client())
            .build(&app)
            .expect("open");
        for addr in [tls12, tls13] {
            let url = format!("https://localhost:{}/", addr.port());
            let served = with_cert.get(&url).send().await.expect("served");
            assert_eq!(served.text().await.expect("text"), "hello");
        }

        let without = Client::builder()
            .add_root_certificate(pki.root())
            .build(&app)
            .expect("open");
        let url = format!("https://localhost:{}/", tls12.port());
        let refused = without.get(&url).send().await.expect_err("no certificate");
        assert!(
            matches!(&refused, ClientError::Tls { host, .. } if host == "localhost"),
            "{refused:?}"
        );
        assert!(
            matches!(
                rustls_cause(&refused),
                Some(rustls::Error::AlertReceived(_))
            ),
            "{refused:?}"
        );
        let url = format!("https://localhost:{}/", tls13.port());
        let refused = without.get(&url).send().await;
        assert!(
            matches!(
                refused,
                Err(ClientError::Tls { .. } | ClientError::Request(_))
            ),
            "TLS 1.3 refuses too: {refused:?}"
        );

        for client in [with_cert, without] {
            let report = client.close(DEADLINE).await;
            assert_eq!(report.counts.stuck, 0, "{report}");
        }
        let _ = app.shutdown(Duration::from_secs(1)).await;
    });
}

// Asserts: a server that cannot be reached (connection refused) is `Connect` naming the
// host, not `Tls` though the URL is https.
#[test]
fn a_refused_connection_is_a_connect_error_naming_the_host() {
    Harness::multi_thread(2).run(|app| async move {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("loopback port");
        let port = closed.local_addr().expect("bound").port();
        drop(closed);
        let client = Client::builder().build(&app).expect("open");
        let failed = client
            .get(format!("https://127.0.0.1:{port}/"))
            .send()
            .await
            .expect_err("nobody listens");
        assert!(
            matches!(&failed, ClientError::Connect { host, .. } if host == "127.0.0.1"),
            "{failed:?}"
        );
        assert!(failed.to_string().contains("127.0.0.1"), "{failed}");
        let report = client.close(DEADLINE).await;
        assert!(report.is_clean(), "{report}");
        let _ = app.shutdown(Duration::from_secs(1)).await;
    });
}

// Asserts: a body longer than the limit is `BodyTooLarge` with the limit, whether the
// server announced its length or streamed it, for the client's limit and a response's;
// a body within the limit is read whole.
#[test]
fn a_body_past_the_limit_is_a_typed_error() {
    Harness::multi_thread(2).run(|app| async move {
        let pki = Pki::new("test CA");
        let addr = https_server(&app, &pki.server(&["localhost"]), None).await;
        let client = Client::builder()
            .add_root_certificate(pki.root())
            .body_limit(999)
            .build(&app)
            .expect("open");
        let base = format!("https://localhost:{}", addr.port());
        for path in ["/big", "/big-stream"] {
            let response = client
                .get(format!("{base}{path}"))
                .send()
                .await
                .expect("headers");
            let failed = response.bytes().await.expect_err("1,000 bytes > 999");
            assert!(
                matches!(failed, ClientError::BodyTooLarge { limit: 999 }),
                "{path}: {failed:?}"
            );
            let response = client
                .get(format!("{base}{path}"))
                .send()
                .await
                .expect("headers");
            let whole = response.body_limit(1000).bytes().await.expect("within");
            assert_eq!(whole.len(), 1000, "{path}");
            let response = client
                .get(format!("{base}{path}"))
                .send()
                .await
                .expect("headers");
            let failed = response.body_limit(10).text().await.expect_err("past 10");
            assert!(
                matches!(failed, ClientError::BodyTooLarge { limit: 10 }),
                "{path}: {failed:?}"
            );
        }
        let report = client.close(DEADLINE).await;
        assert_eq!(report.counts.stuck, 0, "{report}");
        let _ = app.shutdown(Duration::from_secs(1)).await;
    });
}
