//! Owned, named, deadline-bounded tasks for tokio.
//!
//! Every task has an owner ([`Scope`]), a name and a spawn site; every shutdown is
//! signalled, bounded by a deadline, escalated when ignored, and ends in a
//! [`ShutdownReport`] naming whatever did not stop. Start with [`Scope`].
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! use std::time::Duration;
//! use taskward::Scope;
//!
//! let app = Scope::root("app");
//! app.task("ticker")
//!     .spawn_with(|ctx| async move {
//!         let mut tick = tokio::time::interval(Duration::from_secs(1));
//!         loop {
//!             tokio::select! {
//!                 _ = ctx.cancelled() => break,
//!                 _ = tick.tick() => { /* periodic work */ }
//!             }
//!         }
//!     })
//!     .expect("app is open");
//! app.spawn("stubborn", std::future::pending::<()>()).expect("app is open");
//!
//! let report = app.shutdown(Duration::from_secs(5)).await;
//! assert_eq!(report.counts.cancelled, 1);
//! assert_eq!(report.counts.aborted, 1);
//! assert_eq!(report.tasks[0].name, "stubborn");
//! # }
//! ```
//!
//! # Exiting after the report
//!
//! A task that blocks its thread for good (a synchronous call that never returns) is
//! reported `stuck`, but it still holds its worker thread, and dropping a tokio runtime
//! waits for every worker: with `#[tokio::main]`, the process would hang after printing
//! the report. End `main` this way instead: build the runtime by hand, print the report,
//! give the workers a bounded time with `Runtime::shutdown_timeout`, and exit with
//! [`ShutdownReport::exit_code`] (1 when the report is not clean, a stuck task included).
//! `examples/stuck_task.rs` is this pattern, run as a real process by the tests.
//!
//! ```no_run
//! use std::time::Duration;
//! use taskward::{Scope, ShutdownPolicy, signal::{Signals, shutdown_on_signals}};
//!
//! fn main() -> Result<std::process::ExitCode, Box<dyn std::error::Error>> {
//!     let runtime = tokio::runtime::Runtime::new()?;
//!     let report = runtime.block_on(async {
//!         let app = Scope::root("app");
//!         // ... spawn the service's tasks ...
//!         let mut signals = Signals::new()?;
//!         let policy = ShutdownPolicy::new(Duration::from_secs(10));
//!         Ok::<_, taskward::SignalError>(shutdown_on_signals(&app, &mut signals, policy).await)
//!     })?;
//!     eprintln!("{report}");
//!     runtime.shutdown_timeout(Duration::from_secs(1)); // not drop(runtime): it would wait
//!     Ok(report.exit_code())
//! }
//! ```
//!
//! # Seeing the warnings
//!
//! taskward logs with `tracing`: failures, aborted and stuck tasks, scopes dropped with
//! live tasks. Without a subscriber (`tracing_subscriber::fmt::init()`, say) nothing is
//! printed, except the warning for a scope dropped with live tasks, which then goes to
//! stderr.
//!
//! # Testing
//!
//! The leak-checking harness, `taskward::testing`, is behind the `testing` feature, which pulls in
//! tokio's test utilities: enable it for tests only, under `[dev-dependencies]`:
//!
//! ```toml
//! [dev-dependencies]
//! taskward = { version = "*", features = ["testing"] }
//! ```
//!
//! # Process-wide effects
//!
//! The first spawn puts a panic hook in front of the one installed (it notes the location
//! of a panic, which the caught payload lacks, then calls the previous hook). A hook set
//! later with `std::panic::set_hook` replaces it, and reports then lack panic locations.
//! Root scopes are listed in one process-wide table, for [`snapshot`].
#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod abort;
mod context;
mod error;
mod hooks;
mod panic;
mod policy;
mod registry;
mod report;
mod scope;
mod shutdown;
mod snapshot;
mod spawn;
mod supervise;
mod task;

#[cfg(all(unix, feature = "signal"))]
pub mod signal;
#[cfg(feature = "testing")]
pub mod testing;

pub use context::{CancelledFuture, TaskContext, spawn, spawn_with};
#[cfg(all(unix, feature = "signal"))]
pub use error::SignalError;
pub use error::{JoinError, SpawnError, TaskError};
pub use policy::{FailurePolicy, RestartPolicy};
pub use report::{
    Escalation, HookOutcome, HookReport, OutcomeCounts, Phase, ShutdownReport, TaskReport,
};
pub use scope::Scope;
pub use shutdown::{ShutdownFuture, ShutdownPolicy};
pub use snapshot::{Snapshot, TaskSnapshot, snapshot};
pub use spawn::{RestartBuilder, TaskBuilder};
pub use task::{TaskHandle, TaskId, TaskName, TaskOutcome, TaskOutput, TaskState};
