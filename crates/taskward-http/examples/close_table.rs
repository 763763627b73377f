//! Seed 004's table, in Rust: how often ending an HTTP client leaves nothing of it running.
//!
//! Each trial gets a fresh tokio runtime, so that `num_alive_tasks` counts only that
//! trial (baseline: the runtime's count before the client exists), and a fresh client
//! that makes three keep-alive requests, two requests that time out against a slow
//! endpoint, one request still in flight (on a task of the application's, holding a
//! clone), and one streaming response left open; a clone is held elsewhere too (except
//! in the rows marked otherwise). The client is then ended by one method and the trial
//! counts what is left: tasks of the runtime and sockets in `/proc/self/fd`, after
//! letting the runtime settle (yields, plus 10 ms on the multi-thread runtime). A trial
//! succeeds when both are back to their baseline. "Time until gone" is the median, over
//! the successful trials, from the start of the ending until the counts were back.
//!
//! The server runs in another process (this program, re-run with `--server`): its slow
//! endpoint answers after 2 s and its stream ends after 2 s, so nothing waits forever.
//!
//! With `--tls` the server speaks HTTPS (HTTP/1.1 by ALPN, a certificate made at start
//! with rcgen and trusted by every client), and the peer rows are reqwest's with rustls;
//! hyper-util's own client has no TLS connector, so its row is left out.
//!
//! ```text
//! cargo run --release -p taskward-http --example close_table -- [--trials 1000] [--runtime current|multi] [--tls]
//! ```
//!
//! With the default 1,000 trials a run takes about 50 minutes, 33 of them in the two
//! "drop + sleep 1 s" rows.

use std::any::Any;
use std::io::{self, BufRead, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use futures_util::StreamExt;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use taskward::Scope;
use taskward_http::{Body, Client, ClientError, Server};
use tokio::runtime::Runtime;

/// Per-request timeout of every client: the slow endpoint is well past it, and a quick
/// request on a busy machine well inside it.
const TIMEOUT: Duration = Duration::from_millis(250);
/// Attempts per trial: a trial whose set-up fails (a quick request timed out on a busy
/// machine) is run again, and counted apart if it never succeeds.
const ATTEMPTS: usize = 3;
/// How long the server's slow endpoint and stream take.
const SLOW: Duration = Duration::from_secs(2);
/// `close()`'s deadline for requests in flight.
const CLOSE_DEADLINE: Duration = Duration::from_millis(100);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args.as_slice() {
        [flag] if flag == "--server" => serve(),
        _ => parse_args(&args).and_then(|(trials, flavors, tls)| run_table(trials, &flavors, tls)),
    };
    if let Err(error) = outcome {
        let _ = writeln!(io::stderr(), "close_table: {error}");
        std::process::exit(2);
    }
}

/// `[--trials N] [--runtime current|multi] [--tls]`: trials per row (default 1,000), the
/// runtimes to run them on (default both), and whether to speak HTTPS.
fn parse_args(args: &[String]) -> Result<(usize, Vec<Flavor>, bool), String> {
    let mut trials = 1_000;
    let mut flavors = vec![Flavor::CurrentThread, Flavor::MultiThread];
    let mut tls = false;
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        if flag == "--tls" {
            tls = true;
            continue;
        }
        let value = rest
            .next()
            .ok_or_else(|| format!("{flag}: a value is missing"))?;
        match flag.as_str() {
            "--trials" => match value.parse::<usize>() {
                Ok(n) if n > 0 => trials = n,
                _ => {
                    return Err(format!(
                        "--trials: expected a positive integer, found {value:?}"
                    ));
                }
            },
            "--runtime" => match value.as_str() {
                "current" => flavors = vec![Flavor::CurrentThread],
                "multi" => flavors = vec![Flavor::MultiThread],
                _ => {
                    return Err(format!(
                        "--runtime: expected current or multi, found {value:?}"
                    ));
                }
            },
            _ => {
                return Err(format!(
                    "usage: close_table [--trials N] [--runtime current|multi] [--tls], found {flag:?}"
                ));
            }
        }
    }
    Ok((trials, flavors, tls))
}

// ---------------------------------------------------------------- the server process

/// The server's certificate and key (PEM), when the table runs over TLS.
const SERVER_PEM_ENV: &str = "CLOSE_TABLE_SERVER_PEM";

/// Serves the test endpoints on 127.0.0.1:0 (over TLS if [`SERVER_PEM_ENV`] is set),
/// prints the port, and stops at stdin's end.
fn serve() -> Result<(), String> {
    let runtime = tokio::runtime::Runtime::new().map_err(|e| format!("runtime: {e}"))?;
    runtime.block_on(async {
        let app = Scope::root("close_table server");
        let router = Router::new()
            .route("/", get(|| async { "ok" }))
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(SLOW).await;
                    "late"
                }),
            )
            .route(
                "/stream",
                get(|| async {
                    let first = futures_util::stream::once(async {
                        Ok::<_, io::Error>(bytes::Bytes::from_static(b"first"))
                    });
                    let last = futures_util::stream::once(async {
                        tokio::time::sleep(SLOW).await;
                        Ok(bytes::Bytes::from_static(b"last"))
                    });
                    Body::from_stream(first.chain(last))
                }),
            );
        let (port, server) = match std::env::var(SERVER_PEM_ENV) {
            Ok(pem) => (serve_tls(&app, router, &pem).await?, None),
            Err(_) => {
                let server = Server::bind("127.0.0.1:0")
                    .await
                    .map_err(|e| e.to_string())?
                    .serve(&app, router)
                    .map_err(|e| e.to_string())?;
                (server.local_addr().port(), Some(server))
            }
        };
        let mut out = io::stdout().lock();
        writeln!(out, "{port}").map_err(|e| e.to_string())?;
        out.flush().map_err(|e| e.to_string())?;
        drop(out);
        // The parent holds our stdin; its end (the parent exited) is our signal to stop.
        tokio::task::spawn_blocking(|| io::stdin().lock().lines().count())
            .await
            .map_err(|e| e.to_string())?;
        if let Some(server) = server {
            let _ = server.shutdown(Duration::from_secs(1)).await;
        }
        let _ = app.shutdown(Duration::from_secs(1)).await;
        Ok(())
    })
}

/// Serves `router` over TLS (HTTP/1.1, as the plain server's clients speak) with the
/// certificate and key in `pem`; each connection a task of `app`. Returns the port.
async fn serve_tls(app: &Scope, router: Router, pem: &str) -> Result<u16, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let chain = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{SERVER_PEM_ENV}: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| format!("{SERVER_PEM_ENV}: {e}"))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(|e| format!("{SERVER_PEM_ENV}: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot listen: {e}"))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let service = hyper_util::service::TowerToHyperService::new(router);
    app.task("accept")
        .spawn_with(move |ctx| async move {
            loop {
                let tcp = tokio::select! {
                    () = ctx.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok((tcp, _)) => tcp,
                        Err(_) => continue,
                    },
                };
                let (acceptor, service) = (acceptor.clone(), service.clone());
                let _ = taskward::spawn("connection", async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        })
        .map_err(|e| e.to_string())?;
    Ok(port)
}

/// A certificate authority and a server certificate for 127.0.0.1 it issued, made now:
/// the CA (PEM, for the clients) and the server's certificate and key (PEM).
fn make_certificates() -> Result<(String, String), String> {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().map_err(|e| e.to_string())?;
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).map_err(|e| e.to_string())?;
    let key = KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .and_then(|params| params.signed_by(&key, &ca))
        .map_err(|e| e.to_string())?;
    Ok((ca.pem(), format!("{}{}", cert.pem(), key.serialize_pem())))
}

/// Starts the server process (over TLS with `server_pem`) and reads its port.
fn start_server(server_pem: Option<&str>) -> Result<(Child, u16), String> {
    let exe = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
    let mut command = Command::new(exe);
    if let Some(pem) = server_pem {
        command.env(SERVER_PEM_ENV, pem);
    }
    let mut child = command
        .arg("--server")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting the server process: {e}"))?;
    let stdout = child.stdout.take().ok_or("server stdout")?;
    let mut line = String::new();
    io::BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| format!("reading the server's port: {e}"))?;
    let port = line
        .trim()
        .parse()
        .map_err(|_| format!("the server printed {line:?}, not a port"))?;
    Ok((child, port))
}

// ---------------------------------------------------------------- the clients

/// One client under test, whichever library it comes from.
#[derive(Clone)]
enum Subject {
    Taskward(Client),
    Reqwest(reqwest::Client),
    Hyper(Box<HyperClient<HttpConnector, Body>>),
}

/// How a request went.
enum Got {
    /// The response, with its body read to the end or (for a stream) its first chunk.
    Response(Box<dyn Any + Send>),
    TimedOut,
    Failed(String),
}

impl Subject {
    /// A client of `library`; trusting `ca_pem` (only) when given, for TLS.
    fn new(library: Library, app: &Scope, ca_pem: Option<&str>) -> Self {
        match (library, ca_pem) {
            (Library::Taskward, None) => {
                Self::Taskward(Client::new(app, TIMEOUT).expect("app is open"))
            }
            (Library::Taskward, Some(pem)) => Self::Taskward(
                Client::builder()
                    .timeout(TIMEOUT)
                    .tls_built_in_webpki_certs(false)
                    .add_root_certificate(
                        taskward_http::Certificate::from_pem(pem.as_bytes()).expect("rcgen's PEM"),
                    )
                    .build(app)
                    .expect("app is open"),
            ),
            (Library::Reqwest, None) => Self::Reqwest(
                reqwest::Client::builder()
                    .timeout(TIMEOUT)
                    .no_proxy()
                    .build()
                    .expect("a plain http client builds"),
            ),
            (Library::Reqwest, Some(pem)) => Self::Reqwest(
                reqwest::Client::builder()
                    .timeout(TIMEOUT)
                    .no_proxy()
                    .use_rustls_tls()
                    .tls_built_in_root_certs(false)
                    .add_root_certificate(
                        reqwest::Certificate::from_pem(pem.as_bytes()).expect("rcgen's PEM"),
                    )
                    .build()
                    .expect("a rustls client builds"),
            ),
            (Library::Hyper, _) => Self::Hyper(Box::new(
                HyperClient::builder(TokioExecutor::new()).build_http(),
            )),
        }
    }

    /// GET `url`; `whole`: read the body to the end (the connection goes back to the
    /// pool), else read one chunk and keep the response open.
    async fn get(&self, url: String, whole: bool) -> Got {
        match self {
            Self::Taskward(client) => {
                let request = http::Request::get(url).body(Body::empty()).expect("valid");
                match client.request(request).await {
                    Ok(response) => read_hyper(response, whole).await,
                    Err(ClientError::Timeout(_)) => Got::TimedOut,
                    Err(error) => Got::Failed(error.to_string()),
                }
            }
            Self::Hyper(client) => {
                let request = http::Request::get(url).body(Body::empty()).expect("valid");
                match tokio::time::timeout(TIMEOUT, client.request(request)).await {
                    Ok(Ok(response)) => read_hyper(response, whole).await,
                    Ok(Err(error)) => Got::Failed(error.to_string()),
                    Err(_) => Got::TimedOut,
                }
            }
            Self::Reqwest(client) => match client.get(url).send().await {
                Ok(response) if whole => match response.bytes().await {
                    Ok(_) => Got::Response(Box::new(())),
                    Err(error) => Got::Failed(error.to_string()),
                },
                Ok(mut response) => match response.chunk().await {
                    Ok(_) => Got::Response(Box::new(response)),
                    Err(error) => Got::Failed(error.to_string()),
                },
                Err(error) if error.is_timeout() => Got::TimedOut,
                Err(error) => Got::Failed(error.to_string()),
            },
        }
    }

    /// Ends the client by `method`; returns when the method is done.
    async fn end(self, method: Method) {
        match (self, method) {
            (Self::Taskward(client), Method::Close) => {
                let _ = client.close(CLOSE_DEADLINE).await;
            }
            (_, Method::Close) => unreachable!("close() rows are taskward's"),
            (subject, Method::Drop | Method::DropSleep) => drop(subject),
        }
    }
}

async fn read_hyper(response: http::Response<hyper::body::Incoming>, whole: bool) -> Got {
    let mut body = response.into_body();
    if whole {
        return match body.collect().await {
            Ok(_) => Got::Response(Box::new(())),
            Err(error) => Got::Failed(error.to_string()),
        };
    }
    match body.frame().await {
        Some(Ok(_)) => Got::Response(Box::new(body)),
        Some(Err(error)) => Got::Failed(error.to_string()),
        None => Got::Failed("the stream ended at once".into()),
    }
}

// ---------------------------------------------------------------- one trial

#[derive(Clone, Copy, PartialEq)]
enum Library {
    Taskward,
    Reqwest,
    Hyper,
}

#[derive(Clone, Copy, PartialEq)]
enum Method {
    Drop,
    DropSleep,
    Close,
}

#[derive(Clone, Copy, PartialEq)]
enum Flavor {
    CurrentThread,
    MultiThread,
}

/// One row of the table.
#[derive(Clone, Copy)]
struct Row {
    label: &'static str,
    library: Library,
    method: Method,
    clone_held: bool,
}

/// The rows over TLS: hyper-util's client has no TLS connector of its own.
const TLS_ROWS: [Row; 5] = [
    Row {
        label: "taskward-http (TLS): drop",
        library: Library::Taskward,
        method: Method::Drop,
        clone_held: true,
    },
    Row {
        label: "taskward-http (TLS): drop + sleep 1 s",
        library: Library::Taskward,
        method: Method::DropSleep,
        clone_held: true,
    },
    Row {
        label: "taskward-http (TLS): close()",
        library: Library::Taskward,
        method: Method::Close,
        clone_held: true,
    },
    Row {
        label: "reqwest (rustls): drop (no clone held)",
        library: Library::Reqwest,
        method: Method::Drop,
        clone_held: false,
    },
    Row {
        label: "reqwest (rustls): drop",
        library: Library::Reqwest,
        method: Method::Drop,
        clone_held: true,
    },
];

const ROWS: [Row; 6] = [
    Row {
        label: "taskward-http: drop",
        library: Library::Taskward,
        method: Method::Drop,
        clone_held: true,
    },
    Row {
        label: "taskward-http: drop + sleep 1 s",
        library: Library::Taskward,
        method: Method::DropSleep,
        clone_held: true,
    },
    Row {
        label: "taskward-http: close()",
        library: Library::Taskward,
        method: Method::Close,
        clone_held: true,
    },
    Row {
        label: "reqwest: drop (no clone held)",
        library: Library::Reqwest,
        method: Method::Drop,
        clone_held: false,
    },
    Row {
        label: "reqwest: drop",
        library: Library::Reqwest,
        method: Method::Drop,
        clone_held: true,
    },
    Row {
        label: "hyper-util + TokioExecutor: drop",
        library: Library::Hyper,
        method: Method::Drop,
        clone_held: true,
    },
];

/// What one trial left behind.
struct Outcome {
    tasks: usize,
    sockets: usize,
    /// From the start of the ending until nothing was left, if that happened.
    gone_after: Option<Duration>,
}

fn runtime(flavor: Flavor) -> Runtime {
    match flavor {
        Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread(),
        Flavor::MultiThread => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(2);
            builder
        }
    }
    .enable_all()
    .build()
    .expect("a runtime builds")
}

fn trial(row: Row, flavor: Flavor, port: u16, ca_pem: Option<&str>) -> Result<Outcome, String> {
    let runtime = runtime(flavor);
    let outcome = runtime.block_on(async {
        let metrics = tokio::runtime::Handle::current().metrics();
        let baseline = (metrics.num_alive_tasks(), sockets());
        let left = || {
            let (tasks, open) = (metrics.num_alive_tasks(), sockets());
            (
                tasks.saturating_sub(baseline.0),
                open.saturating_sub(baseline.1),
            )
        };
        let scheme = if ca_pem.is_some() { "https" } else { "http" };
        let url = |path: &str| format!("{scheme}://127.0.0.1:{port}{path}");
        let app = Scope::root("close_table");
        let client = Subject::new(row.library, &app, ca_pem);

        for _ in 0..3 {
            match client.get(url("/"), true).await {
                Got::Response(_) => {}
                Got::TimedOut => return Err("GET / timed out".into()),
                Got::Failed(e) => return Err(format!("GET /: {e}")),
            }
        }
        let (a, b) = tokio::join!(
            client.get(url("/slow"), true),
            client.get(url("/slow"), true)
        );
        for got in [a, b] {
            if !matches!(got, Got::TimedOut) {
                return Err("GET /slow did not time out".into());
            }
        }
        let in_flight = client.clone();
        let slow = url("/slow");
        tokio::spawn(async move { in_flight.get(slow, true).await });
        let stream = match client.get(url("/stream"), false).await {
            Got::Response(open) => open,
            Got::TimedOut => return Err("GET /stream timed out".into()),
            Got::Failed(e) => return Err(format!("GET /stream: {e}")),
        };
        let elsewhere = row.clone_held.then(|| client.clone());

        let started = Instant::now();
        client.end(row.method).await;
        let mut gone_after = None;
        if row.method == Method::DropSleep {
            // The sleep, watched: note when the counts first come back.
            while started.elapsed() < Duration::from_secs(1) {
                tokio::time::sleep(Duration::from_millis(10)).await;
                if gone_after.is_none() && left() == (0, 0) {
                    gone_after = Some(started.elapsed());
                }
            }
        }
        settle(flavor).await;
        let (tasks, open) = left();
        if gone_after.is_none() && (tasks, open) == (0, 0) {
            gone_after = Some(started.elapsed());
        }
        drop((stream, elsewhere));
        Ok(Outcome {
            tasks,
            sockets: open,
            gone_after,
        })
    });
    // Dropping the runtime drops whatever the trial left, so the next one starts clean.
    drop(runtime);
    outcome
}

/// Lets woken tasks run to their end before counting.
async fn settle(flavor: Flavor) {
    for _ in 0..64 {
        tokio::task::yield_now().await;
    }
    if flavor == Flavor::MultiThread {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sockets open in this process.
fn sockets() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                .filter(|target| target.to_string_lossy().starts_with("socket:"))
                .count()
        })
        .unwrap_or(0)
}

// ---------------------------------------------------------------- the table

fn run_table(trials: usize, flavors: &[Flavor], tls: bool) -> Result<(), String> {
    let certificates = tls.then(make_certificates).transpose()?;
    let (ca_pem, server_pem) = match &certificates {
        Some((ca, server)) => (Some(ca.as_str()), Some(server.as_str())),
        None => (None, None),
    };
    let rows: &[Row] = if tls { &TLS_ROWS } else { &ROWS };
    let (mut server, port) = start_server(server_pem)?;
    let mut out = io::stdout().lock();
    let result = (|| {
        for &flavor in flavors {
            let name = match flavor {
                Flavor::CurrentThread => "current-thread runtime (exact counts)",
                Flavor::MultiThread => "multi-thread runtime, 2 workers (counted after settling)",
            };
            writeln!(out, "\n{trials} trials per row, {name}\n").map_err(|e| e.to_string())?;
            writeln!(
                out,
                "| Client, ended by | Success Rate | Avg. Remaining Tasks | Avg. Remaining Sockets | Time until gone (median) |\n|---|---|---|---|---|"
            )
            .map_err(|e| e.to_string())?;
            for &row in rows {
                let line = run_row(row, flavor, port, trials, ca_pem)?;
                writeln!(out, "{line}").map_err(|e| e.to_string())?;
                out.flush().map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    })();
    drop(server.stdin.take());
    let _ = server.wait();
    result
}

fn run_row(
    row: Row,
    flavor: Flavor,
    port: u16,
    trials: usize,
    ca_pem: Option<&str>,
) -> Result<String, String> {
    let mut outcomes = Vec::with_capacity(trials);
    let mut failed_setups = Vec::new();
    for _ in 0..trials {
        let mut attempt = Err(String::new());
        for _ in 0..ATTEMPTS {
            attempt = trial(row, flavor, port, ca_pem);
            if attempt.is_ok() {
                break;
            }
        }
        match attempt {
            Ok(outcome) => outcomes.push(outcome),
            Err(error) => failed_setups.push(error),
        }
    }
    if outcomes.is_empty() {
        return Err(format!(
            "{}: no trial could be set up: {failed_setups:?}",
            row.label
        ));
    }
    let count = outcomes.len() as f64;
    let clean = outcomes
        .iter()
        .filter(|o| o.tasks == 0 && o.sockets == 0)
        .count();
    let tasks = outcomes.iter().map(|o| o.tasks).sum::<usize>() as f64 / count;
    let open = outcomes.iter().map(|o| o.sockets).sum::<usize>() as f64 / count;
    let mut gone: Vec<Duration> = outcomes.iter().filter_map(|o| o.gone_after).collect();
    gone.sort();
    let median = gone.get(gone.len() / 2).map_or_else(
        || "never seen".to_owned(),
        |d| format!("{:.1} ms", d.as_secs_f64() * 1e3),
    );
    let setups = match failed_setups.first() {
        None => String::new(),
        Some(first) => format!(" ({} trials not set up, e.g. {first})", failed_setups.len()),
    };
    Ok(format!(
        "| {}{setups} | {:.1}% | {tasks:.2} | {open:.2} | {median} |",
        row.label,
        clean as f64 * 100.0 / count
    ))
}
