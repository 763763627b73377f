//! A service with a task that blocks its worker thread for good, stopped by SIGTERM: the
//! shutdown reports the task stuck, and the process exits with code 1 right after the
//! report instead of hanging in the runtime's drop, which waits for its workers.
//!
//! The pattern is the end of `main`: build the runtime by hand, print the report, then
//! `runtime.shutdown_timeout(..)` rather than dropping the runtime, and exit with
//! `report.exit_code()`.
//!
//! ```text
//! cargo run -p taskward --example stuck_task     # then Ctrl-C
//! ```
#![expect(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "an example prints its state and its report for the reader"
)]

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use taskward::signal::{Signals, shutdown_on_signals};
use taskward::{Scope, ShutdownPolicy};

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("stuck_task: cannot start the tokio runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let report = runtime.block_on(async {
        let app = Scope::root("app");
        app.spawn("blocker", async {
            // Blocks its worker thread: neither cancellation nor abort can reach it.
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        })?;
        app.task("ticker")
            .spawn_with(|ctx| async move { ctx.cancelled().await })?;
        let mut signals = Signals::new()?;
        println!("ready");
        let _ = std::io::stdout().flush();
        let policy =
            ShutdownPolicy::new(Duration::from_millis(200)).abort_wait(Duration::from_millis(50));
        Ok::<_, Box<dyn std::error::Error>>(shutdown_on_signals(&app, &mut signals, policy).await)
    });
    let report = match report {
        Ok(report) => report,
        Err(error) => {
            eprintln!("stuck_task: {error}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("{report}");
    // Dropping the runtime would wait for every worker, the blocked one included: forever.
    // Give the others a moment, then leave the blocked one to the process's exit.
    runtime.shutdown_timeout(Duration::from_secs(1));
    report.exit_code()
}
