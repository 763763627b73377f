//! The master of `taskward serve`: the loop that does its I/O. It waits for worker exits,
//! notify datagrams, signals, admin connections and timers, hands each to the policy
//! (`Lifecycle`, in `lifecycle.rs`), and carries out what the policy answers: start or
//! signal a worker, tell the supervisor, reply to `taskward status`.
//!
//! Read [`Master::run`]. Every decision is the policy's; this file only translates.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::hash::{BuildHasher, RandomState};
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant, SystemTime};

use rustix::process::{Pid, Signal, kill_process};
use taskward::Scope;
use taskward_http::throttle::{Throttle, WARN_EVERY};
use tokio::net::{UnixListener, UnixStream};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::config::{MaxRequests, ServeConfig};
use crate::error_line::error_line;
use crate::lifecycle::{Action, Event, Lifecycle, Note, Settings, WorkerId};
use crate::notify::{Datagram, NotifySocket, RecvError};
use crate::worker::{Launch, WorkerProcess};

pub use crate::lifecycle::{Outcome, WorkerConfigError};

/// How long an I/O source that failed (admin `accept`, notify `recv`) is left alone, so
/// that a persistent error (no fds left) cannot spin the loop.
const IO_PAUSE: Duration = Duration::from_millis(100);

/// What happened to a child, from its waiting task.
type Exit = (WorkerId, io::Result<ExitStatus>);

/// The master: its sockets, its worker processes, and the policy that drives them.
pub struct Master {
    program: OsString,
    args: Vec<OsString>,
    listeners: Vec<OwnedFd>,
    notify: NotifySocket,
    admin: Option<(UnixListener, PathBuf)>,
    timeout: Option<Duration>,
    graceful_timeout: Duration,
    max_requests: Option<MaxRequests>,
    lifecycle: Lifecycle,
    processes: BTreeMap<WorkerId, WorkerProcess>,
    /// Admin `accept` and notify `recv` are not polled before this, after an error.
    io_paused_until: Option<Instant>,
    /// Malformed datagrams and datagrams without credentials, logged once per interval
    /// with a count: any local process of the user can send them as fast as it likes.
    bad_datagrams: Throttle,
    /// Admin `accept` failing (no descriptors left): a lasting condition, retried every
    /// `IO_PAUSE`, logged once per interval.
    admin_failing: Throttle,
    scope: Scope,
    exits: (mpsc::UnboundedSender<Exit>, mpsc::UnboundedReceiver<Exit>),
}

/// The master's signals.
struct Signals {
    hup: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    quit: tokio::signal::unix::Signal,
    ttin: tokio::signal::unix::Signal,
    ttou: tokio::signal::unix::Signal,
    /// A child exited: perhaps a process a worker left behind, to be reaped.
    chld: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> io::Result<Self> {
        Ok(Self {
            hup: signal(SignalKind::hangup())?,
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            quit: signal(SignalKind::quit())?,
            ttin: signal(SignalKind::from_raw(Signal::TTIN.as_raw()))?,
            ttou: signal(SignalKind::from_raw(Signal::TTOU.as_raw()))?,
            chld: signal(SignalKind::child())?,
        })
    }
}

impl Master {
    /// A master for `config`, serving on `listeners` (bound already), with its notify
    /// socket in `runtime_dir` and, if given, its admin socket (bound already).
    ///
    /// # Errors
    ///
    /// If the notify socket cannot be bound, or this executable's path is
    /// unknown.
    pub fn new(
        config: ServeConfig,
        listeners: Vec<OwnedFd>,
        runtime_dir: &Path,
        admin: Option<(UnixListener, PathBuf)>,
    ) -> io::Result<Self> {
        let notify = NotifySocket::bind(runtime_dir.join("notify.sock"))
            .map_err(|error| io::Error::new(error.source.kind(), error_line(&error)))?;
        let settings = Settings {
            workers: config.workers.get(),
            timeout: config.timeout,
            graceful_timeout: config.graceful_timeout,
            reload_timeout: config.reload_timeout,
            master_pid: std::process::id(),
            drain_delay: drain_delay(),
            own_sockets: true,
        };
        Ok(Self {
            program: config.program,
            args: config.args,
            listeners,
            notify,
            admin,
            timeout: config.timeout,
            graceful_timeout: config.graceful_timeout,
            max_requests: config.max_requests,
            lifecycle: Lifecycle::new(settings, Instant::now(), SystemTime::now()),
            processes: BTreeMap::new(),
            io_paused_until: None,
            bad_datagrams: Throttle::new(WARN_EVERY),
            admin_failing: Throttle::new(WARN_EVERY),
            scope: Scope::root("master"),
            exits: mpsc::unbounded_channel(),
        })
    }

    /// Says whether the listening sockets were passed in by the master's own supervisor
    /// (systemd socket activation) rather than bound by it: those stay open during a
    /// stop, so that connections queue for the next start; its own are closed once the
    /// drain delay is over, so that new connections are refused rather than reset.
    #[must_use]
    pub fn sockets_passed_in(mut self, passed_in: bool) -> Self {
        self.lifecycle.set_own_sockets(!passed_in);
        self
    }

    /// Runs until every worker has stopped after SIGTERM (graceful) or SIGINT/SIGQUIT
    /// (fast).
    ///
    /// # Errors
    ///
    /// If the signal handlers cannot be installed.
    pub async fn run(mut self) -> io::Result<Outcome> {
        let mut signals = Signals::new()?;
        if let Err(error) = crate::leftovers::become_subreaper() {
            tracing::warn!(%error, "cannot become a child subreaper: processes workers leave behind go to init");
        }
        tracing::info!(
            workers = self.lifecycle.target(),
            program = ?self.program,
            notify_socket = %self.notify.path().display(),
            "master started"
        );
        self.apply(Event::Timer, None);
        let outcome = loop {
            if let Some(outcome) = self.lifecycle.finished() {
                break outcome;
            }
            let wake = match (self.lifecycle.deadline(), self.io_paused_until) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let io = self
                .io_paused_until
                .is_none_or(|until| Instant::now() >= until);
            let mut reply_to = None;
            let mut sweep = false;
            let event = tokio::select! {
                Some((id, status)) = self.exits.1.recv() => {
                    self.processes.remove(&id);
                    // Its children are the master's now.
                    sweep = true;
                    Event::Exited { id, status }
                }
                Some(()) = signals.chld.recv() => {
                    sweep = true;
                    Event::Timer
                }
                received = self.notify.recv(), if io => self.on_datagram(received),
                Some(()) = signals.hup.recv() => Event::Signal(Signal::HUP),
                Some(()) = signals.term.recv() => Event::Signal(Signal::TERM),
                Some(()) = signals.int.recv() => Event::Signal(Signal::INT),
                Some(()) = signals.quit.recv() => Event::Signal(Signal::QUIT),
                Some(()) = signals.ttin.recv() => Event::Signal(Signal::TTIN),
                Some(()) = signals.ttou.recv() => Event::Signal(Signal::TTOU),
                accepted = accept(&self.admin), if io => match accepted {
                    Ok(stream) => {
                        reply_to = Some(stream);
                        Event::StatusRequest
                    }
                    Err(error) => {
                        if let Some(more) = self.admin_failing.hit(tokio::time::Instant::now()) {
                            tracing::warn!(%error, more, "admin socket accept failed");
                        }
                        self.pause_io();
                        Event::Timer
                    }
                },
                () = sleep_until(wake) => Event::Timer,
            };
            if self
                .io_paused_until
                .is_some_and(|until| Instant::now() >= until)
            {
                self.io_paused_until = None;
            }
            self.apply(event, reply_to);
            if sweep {
                self.sweep();
            }
        };
        if let Some((_, path)) = &self.admin {
            let _ = std::fs::remove_file(path);
        }
        let report = self.scope.shutdown(Duration::from_secs(1)).await;
        tracing::debug!(%report, "master's own tasks stopped");
        Ok(outcome)
    }

    /// Hands `event` to the policy and carries out its actions, and those of the events
    /// they cause in turn (a worker started, or not).
    fn apply(&mut self, event: Event, mut reply_to: Option<UnixStream>) {
        let mut actions: std::collections::VecDeque<Action> =
            self.lifecycle.handle(event, Instant::now()).into();
        while let Some(action) = actions.pop_front() {
            match action {
                Action::Start { id } => {
                    let event = self.start(id);
                    actions.extend(self.lifecycle.handle(event, Instant::now()));
                }
                Action::Signal { id, signal } => {
                    if let Some(process) = self.processes.get(&id) {
                        process.signal(signal);
                    }
                }
                Action::Notify(note) => supervisor(note),
                Action::SignalLeftover { pid, signal } => {
                    let sent = i32::try_from(pid)
                        .ok()
                        .and_then(Pid::from_raw)
                        .map(|pid| kill_process(pid, signal));
                    if let Some(Err(error)) = sent {
                        tracing::debug!(%error, pid, "signal not delivered");
                    }
                }
                Action::CloseListeners => {
                    tracing::info!(
                        sockets = self.listeners.len(),
                        "workers no longer accept: listening sockets closed, new connections are refused"
                    );
                    self.listeners.clear();
                }
                Action::Reply(status) => {
                    let Some(stream) = reply_to.take() else {
                        continue;
                    };
                    let writing = self
                        .scope
                        .spawn("admin reply", crate::admin::reply(stream, *status));
                    if let Err(error) = writing {
                        tracing::debug!(%error, "admin reply refused: stopping");
                    }
                }
            }
        }
    }

    /// Reaps the master's children that are not workers and have exited, and tells the
    /// policy of those still running (see `leftovers.rs`).
    fn sweep(&mut self) {
        let workers: Vec<u32> = self.processes.values().map(|p| p.pid).collect();
        for child in crate::leftovers::children(std::process::id(), &workers) {
            let event = if child.zombie {
                if !crate::leftovers::reap(child.pid) {
                    continue;
                }
                tracing::debug!(pid = child.pid, "reaped an orphan");
                Event::Reaped { pid: child.pid }
            } else {
                Event::Orphan {
                    pid: child.pid,
                    worker: crate::leftovers::worker_of(child.pid).map(WorkerId::from_number),
                    command: crate::leftovers::command_of(child.pid),
                }
            };
            self.apply(event, None);
        }
    }

    /// Starts worker `id`, and watches for its exit.
    fn start(&mut self, id: WorkerId) -> Event {
        let number = id.get();
        let max_requests = self
            .max_requests
            .map(|m| m.threshold(RandomState::new().hash_one(number)));
        let launch = Launch {
            program: &self.program,
            args: &self.args,
            listeners: &self.listeners,
            notify_socket: self.notify.path(),
            watchdog: self.timeout,
            graceful_timeout: self.graceful_timeout,
        };
        match WorkerProcess::spawn(&launch, number, max_requests) {
            Ok((process, mut child)) => {
                let pid = process.pid;
                let exits = self.exits.0.clone();
                let waiting = self.scope.spawn(format!("wait {pid}"), async move {
                    let status = child.wait().await;
                    let _ = exits.send((id, status));
                });
                if let Err(error) = waiting {
                    tracing::error!(%error, "cannot watch a worker");
                }
                self.processes.insert(id, process);
                Event::Spawned {
                    id,
                    pid,
                    max_requests,
                }
            }
            Err(error) => {
                tracing::error!(%error, program = ?self.program, "cannot start a worker");
                Event::SpawnFailed { id }
            }
        }
    }

    fn on_datagram(&mut self, received: Result<Datagram, RecvError>) -> Event {
        let datagram = match received {
            Ok(datagram) => datagram,
            Err(error) => {
                if let Some(more) = self.bad_datagrams.hit(tokio::time::Instant::now()) {
                    tracing::warn!(error = %error_line(&error), more, "notify datagram ignored");
                }
                if matches!(error, RecvError::Io(_)) {
                    self.pause_io();
                }
                return Event::Timer;
            }
        };
        if let Some((error, lines)) = &datagram.message.rejected {
            // The good lines count (as in systemd); the bad ones are said, once per interval.
            if let Some(more) = self.bad_datagrams.hit(tokio::time::Instant::now()) {
                tracing::warn!(error = %error, lines, more, "notify lines ignored");
            }
        }
        let Some(pid) = datagram
            .pid
            .and_then(|pid| u32::try_from(pid.as_raw_nonzero().get()).ok())
        else {
            if let Some(more) = self.bad_datagrams.hit(tokio::time::Instant::now()) {
                tracing::warn!(more, "notify datagram without sender credentials ignored");
            }
            return Event::Timer;
        };
        Event::Notified {
            pid,
            message: datagram.message,
        }
    }

    fn pause_io(&mut self) {
        self.io_paused_until = Instant::now().checked_add(IO_PAUSE);
    }
}

/// The drain delay the workers read from the environment they inherit
/// ([`DRAIN_DELAY`](taskward_http::protocol::env::DRAIN_DELAY)), or zero when it is unset.
/// The configuration refused to start with a value the workers would refuse.
fn drain_delay() -> Duration {
    let var = taskward_http::protocol::env::DRAIN_DELAY;
    std::env::var_os(var).map_or(Duration::ZERO, |value| {
        taskward_http::protocol::parse_seconds(var, &value)
            .expect("checked when the configuration was loaded")
    })
}

/// Tells the master's own supervisor (systemd `Type=notify`), if it has one.
fn supervisor(note: Note) {
    use sd_notify::NotifyState;
    let states: &[NotifyState<'_>] = match note {
        Note::Ready => &[NotifyState::Ready],
        Note::Reloading => &[NotifyState::Reloading],
        Note::Stopping => &[NotifyState::Stopping],
        Note::ReloadFailed => &[
            NotifyState::Ready,
            NotifyState::Status("reload failed: the old workers keep serving"),
        ],
    };
    if let Err(error) = sd_notify::notify(states) {
        tracing::warn!(%error, "cannot notify the supervisor");
    }
}

async fn accept(admin: &Option<(UnixListener, PathBuf)>) -> io::Result<UnixStream> {
    match admin {
        Some((listener, _)) => listener.accept().await.map(|(stream, _)| stream),
        None => std::future::pending().await,
    }
}

async fn sleep_until(wake: Option<Instant>) {
    match wake {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
