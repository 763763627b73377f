//! `taskward-demo`: the seed's service rebuilt on taskward. Run it under `taskward serve`
//! (`bash scripts/demo`), or alone (it binds `--bind` then).
//!
//! Read `app.rs` for how it is put together.
#![forbid(unsafe_code)]

mod app;
mod cache;
mod db;
mod routes;
mod writer;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use taskward_http::Worker;

/// The seed's service: items in SQLite behind a batching writer, a warm cache, a
/// periodic job, and an upstream call.
#[derive(Debug, Parser)]
#[command(name = "taskward-demo", version)]
struct Flags {
    /// The SQLite file, created if missing.
    #[arg(long, env = "DEMO_DB", default_value = "demo.sqlite3")]
    db: PathBuf,
    /// What `GET /upstream` calls [default: this worker's own `/builtin`].
    #[arg(long, env = "DEMO_UPSTREAM")]
    upstream: Option<String>,
    /// The upstream call's timeout, in milliseconds.
    #[arg(long, env = "DEMO_UPSTREAM_TIMEOUT_MS", default_value_t = 500)]
    upstream_timeout_ms: u64,
    /// Where to write each shutdown report (`<pid>.json`).
    #[arg(long, env = "DEMO_REPORT_DIR")]
    report_dir: Option<PathBuf>,
    /// Where to listen when not started by `taskward serve`.
    #[arg(long, default_value = "127.0.0.1:8000")]
    bind: String,
    /// Test switch: acknowledge writes when queued and drop the queue at shutdown, as
    /// the seed's service did (its tests show that this loses writes). Never use it.
    #[arg(
        long,
        env = "DEMO_UNSAFE_FIRE_AND_FORGET",
        hide = true,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    unsafe_fire_and_forget: bool,
    /// Serve the live task list at /debug/tasks on the service's own port. Off by
    /// default: it names other clients' addresses and the code's source paths, so it
    /// belongs on a trusted network only (`scripts/demo` turns it on, on 127.0.0.1).
    #[arg(
        long,
        env = "DEMO_DEBUG_TASKS",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    debug_tasks: bool,
}

/// An error and its causes, on one line.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn main() -> ExitCode {
    let flags = Flags::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    // Before the runtime's threads start: the socket variables are read and unset here.
    let worker = match Worker::listen(flags.bind.as_str()) {
        Ok(worker) => worker,
        Err(error) => {
            tracing::error!(error = %error_chain(&error), "cannot listen");
            // EX_CONFIG for bad settings: the process manager stops instead of
            // restarting a worker that cannot start.
            return ExitCode::from(error.exit_code());
        }
    };
    let settings = app::Settings {
        db: flags.db,
        upstream: flags.upstream,
        upstream_timeout: Duration::from_millis(flags.upstream_timeout_ms),
        report_dir: flags.report_dir,
        debug_tasks: flags.debug_tasks,
        writer: if flags.unsafe_fire_and_forget {
            writer::Mode::FireAndForget
        } else {
            writer::Mode::Safe
        },
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "no runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(app::run(settings, worker)) {
        Ok(_) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = %error_chain(error.as_ref()), "the service failed");
            ExitCode::FAILURE
        }
    }
}
