//! `taskward-hello`: the smallest taskward-http worker, for trying `taskward serve` and
//! for its tests.
//!
//! ```text
//! taskward serve -w 2 -b 127.0.0.1:8000 -- taskward-hello
//! curl 127.0.0.1:8000/          # hello from <pid>
//! curl 127.0.0.1:8000/slow/500   # answers after 500 ms
//! ```
//!
//! `HELLO_STARTUP_MS` delays readiness by a startup task of that length (default 0);
//! until it is done, `/` answers 503, as a service whose handlers need their startup.
//! `HELLO_HEADER_READ_MS` sets the connections' header read timeout (default 30 s).
//! Run alone, it binds 127.0.0.1:8000.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use taskward::Scope;
use taskward_http::{Timeouts, Worker};

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    // Before the runtime's threads: the socket variables are read and unset here.
    let worker = match Worker::listen("127.0.0.1:8000") {
        Ok(worker) => worker,
        Err(error) => {
            tracing::error!(error = %error, "cannot listen");
            // EX_CONFIG for bad settings: the process manager stops instead of
            // restarting a worker that cannot start.
            return ExitCode::from(error.exit_code());
        }
    };
    let worker = match std::env::var("HELLO_HEADER_READ_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
    {
        Some(ms) => {
            worker.timeouts(Timeouts::default().header_read(Some(Duration::from_millis(ms))))
        }
        None => worker,
    };
    let startup_ms = std::env::var("HELLO_STARTUP_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(0);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "no runtime");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let app = Scope::root("hello");
        let started = async {
            let startup = app.child("startup")?;
            let warm = Arc::new(AtomicBool::new(false));
            let warmed = warm.clone();
            startup.spawn("warm_up", async move {
                tokio::time::sleep(Duration::from_millis(startup_ms)).await;
                warmed.store(true, Ordering::Release);
            })?;
            let pid = std::process::id();
            let router = Router::new()
                .route(
                    "/",
                    get(move || {
                        let warm = warm.load(Ordering::Acquire);
                        async move {
                            if warm {
                                (StatusCode::OK, format!("hello from {pid}\n"))
                            } else {
                                (StatusCode::SERVICE_UNAVAILABLE, "starting\n".to_owned())
                            }
                        }
                    }),
                )
                .route(
                    "/slow/{ms}",
                    get(|Path(ms): Path<u64>| async move {
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        format!("slept {ms} ms\n")
                    }),
                );
            worker.run(&app, &startup, router).await
        };
        match started.await {
            Ok(report) if report.is_clean() => ExitCode::SUCCESS,
            Ok(report) => {
                tracing::warn!(%report, "stopped, not cleanly");
                ExitCode::SUCCESS
            }
            Err(error) => {
                tracing::error!(%error, "worker failed");
                ExitCode::FAILURE
            }
        }
    })
}
