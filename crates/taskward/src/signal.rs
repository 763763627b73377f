//! Unix signals mapped to lifecycle events, once, in one place: SIGTERM / SIGINT ask for
//! a graceful shutdown (the second one for an immediate one), SIGQUIT for an immediate
//! one, SIGHUP for a reload. [`Signals::next`] gives the signals unmapped, for a caller
//! with other rules (`taskward-http`'s worker).
//!
//! Read [`Signals`] first; [`shutdown_on_signals`] is the whole `main` tail of a service.

use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::error::SignalError;
use crate::report::ShutdownReport;
use crate::scope::Scope;
use crate::shutdown::ShutdownPolicy;

/// What a signal asks of the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignalEvent {
    /// The first SIGTERM or SIGINT: stop gracefully.
    Shutdown,
    /// A later SIGTERM or SIGINT, or any SIGQUIT (a process manager's fast stop): stop
    /// now (skip to the abort phase).
    Immediate,
    /// SIGHUP: reload (configuration, or a rolling restart under a process manager).
    Reload,
}

/// The process's SIGTERM, SIGINT, SIGQUIT and SIGHUP, as a stream of [`SignalEvent`]s.
///
/// Installing it replaces the default action of those signals (terminate) for the life of
/// the process, as any tokio signal listener does.
///
/// # Examples
///
/// ```no_run
/// # #[tokio::main]
/// # async fn main() -> Result<(), taskward::SignalError> {
/// use taskward::signal::{SignalEvent, Signals};
///
/// let mut signals = Signals::new()?;
/// loop {
///     match signals.recv().await {
///         SignalEvent::Reload => { /* re-read the configuration */ }
///         SignalEvent::Shutdown | SignalEvent::Immediate => break,
///         _ => {}
///     }
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Signals {
    term: Signal,
    int: Signal,
    quit: Signal,
    hup: Signal,
    stops: u32,
}

impl Signals {
    /// Installs the handlers.
    ///
    /// # Errors
    ///
    /// [`SignalError`] if a handler cannot be installed (or no tokio runtime with signal
    /// support is running).
    pub fn new() -> Result<Self, SignalError> {
        let install = |kind: SignalKind, name: &'static str| {
            signal(kind).map_err(|source| SignalError {
                signal: name,
                source,
            })
        };
        Ok(Self {
            term: install(SignalKind::terminate(), "SIGTERM")?,
            int: install(SignalKind::interrupt(), "SIGINT")?,
            quit: install(SignalKind::quit(), "SIGQUIT")?,
            hup: install(SignalKind::hangup(), "SIGHUP")?,
            stops: 0,
        })
    }

    /// Waits for the next signal and maps it to what it asks of the process (the first
    /// SIGTERM or SIGINT a graceful shutdown, a later one or SIGQUIT an immediate one,
    /// SIGHUP a reload).
    ///
    /// # Cancel safety
    ///
    /// This method is cancel safe: a signal that arrives while no call is waiting is kept
    /// for the next call.
    pub async fn recv(&mut self) -> SignalEvent {
        let name = match self.next().await {
            UnixSignal::Term => "SIGTERM",
            UnixSignal::Int => "SIGINT",
            UnixSignal::Quit => {
                self.stops += 1;
                tracing::warn!(signal = "SIGQUIT", "immediate shutdown requested");
                return SignalEvent::Immediate;
            }
            UnixSignal::Hup => {
                tracing::info!(signal = "SIGHUP", "reload requested");
                return SignalEvent::Reload;
            }
        };
        self.stops += 1;
        if self.stops == 1 {
            tracing::info!(signal = name, "graceful shutdown requested");
            SignalEvent::Shutdown
        } else {
            tracing::warn!(signal = name, "second stop signal: immediate shutdown");
            SignalEvent::Immediate
        }
    }

    /// Waits for the next signal, unmapped: for a caller with a mapping of its own (a
    /// worker under a process manager, say, where SIGINT is a fast stop). Nothing is
    /// logged or counted; [`recv`](Self::recv) is built on it.
    ///
    /// # Cancel safety
    ///
    /// This method is cancel safe, as [`recv`](Self::recv) is.
    pub async fn next(&mut self) -> UnixSignal {
        tokio::select! {
            Some(()) = self.term.recv() => UnixSignal::Term,
            Some(()) = self.int.recv() => UnixSignal::Int,
            Some(()) = self.quit.recv() => UnixSignal::Quit,
            Some(()) = self.hup.recv() => UnixSignal::Hup,
            // Every stream ended: tokio's signal driver is gone with its runtime, and no
            // signal can come any more.
            else => std::future::pending().await,
        }
    }
}

/// One of the signals [`Signals`] listens to, as [`Signals::next`] returns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnixSignal {
    /// SIGTERM.
    Term,
    /// SIGINT.
    Int,
    /// SIGQUIT.
    Quit,
    /// SIGHUP.
    Hup,
}

/// Runs `scope` until a stop signal (or until the scope is cancelled, e.g. by an
/// escalating task), then shuts it down under `policy`; a second stop signal during the
/// shutdown skips it to the abort phase. SIGHUP is logged and otherwise ignored here.
///
/// # Return Value
///
/// The scope's [`ShutdownReport`].
///
/// # Cancel safety
///
/// Dropping the future after the first signal leaves the scope cancelled; the shutdown
/// can be completed by calling [`Scope::shutdown`] again.
///
/// # Examples
///
/// ```no_run
/// # #[tokio::main]
/// # async fn main() -> Result<(), taskward::SignalError> {
/// use std::time::Duration;
/// use taskward::{Scope, ShutdownPolicy, signal::{Signals, shutdown_on_signals}};
///
/// let app = Scope::root("app");
/// // ... spawn the service's tasks ...
/// let mut signals = Signals::new()?;
/// let report = shutdown_on_signals(&app, &mut signals, ShutdownPolicy::new(Duration::from_secs(30))).await;
/// eprintln!("{report}");
/// # Ok(())
/// # }
/// ```
pub async fn shutdown_on_signals(
    scope: &Scope,
    signals: &mut Signals,
    policy: ShutdownPolicy,
) -> ShutdownReport {
    loop {
        tokio::select! {
            event = signals.recv() => match event {
                SignalEvent::Reload => continue,
                SignalEvent::Shutdown | SignalEvent::Immediate => break,
            },
            () = scope.cancelled() => break,
        }
    }
    let shutdown = scope.shutdown_with(policy);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            report = &mut shutdown => return report,
            event = signals.recv() => {
                if event != SignalEvent::Reload {
                    // Skips the running shutdown to its abort phase; its future is the
                    // same shutdown, already pinned above.
                    drop(scope.abort_now());
                }
            }
        }
    }
}
