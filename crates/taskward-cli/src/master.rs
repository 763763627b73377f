//! The master of `taskward serve`: keeps N workers on the shared sockets, replaces them
//! one at a time (reload, `max_requests`) so that capacity never dips, respawns crashed
//! ones with backoff, kills silent ones, and stops them all on a signal.
//!
//! Read [`Master::run`]: one loop over worker exits, notify datagrams, signals, admin
//! connections and timers. All state lives in [`Master`] and changes only in that loop;
//! the only other tasks wait for a child's exit or write a status reply.

use std::collections::{BTreeMap, VecDeque};
use std::ffi::OsString;
use std::hash::{BuildHasher, RandomState};
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant, SystemTime};

use rustix::process::Signal;
use taskward::{RestartPolicy, Scope};
use taskward_http::early_report_at;
use tokio::net::UnixListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::admin::{RestartRecord, Status, WorkerStatus};
use crate::config::ServeConfig;
use crate::error_line::error_line;
use crate::notify::{Datagram, NotifySocket, RecvError, Watchdog};
use crate::worker::{Launch, Role, State, Worker, describe};

/// How long workers have to stop on SIGINT/SIGQUIT (a fast stop) before SIGKILL.
const FAST_STOP_GRACE: Duration = Duration::from_secs(2);
/// Far enough off to mean "never", near enough not to overflow an `Instant`.
const NEVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
/// How long an I/O source that failed (admin `accept`, notify `recv`) is left alone, so
/// that a persistent error (no fds left) cannot spin the loop.
const IO_PAUSE: Duration = Duration::from_millis(100);
/// How long a worker whose `max_requests` replacement is ready may serve on towards its
/// limit: traffic may stop short of it, and the extra worker must not stay forever.
const RETIRE_WITHIN: Duration = Duration::from_secs(5);
/// Recent restarts kept for `taskward status`.
const HISTORY: usize = 32;

/// How the master ended, for its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every worker stopped before its deadline.
    Clean,
    /// At least one worker had to be killed at the stop deadline.
    Killed,
}

/// Why a worker is being replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    Reload,
    MaxRequests,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Reload => "reload (SIGHUP)",
            Self::MaxRequests => "max_requests",
        })
    }
}

/// How the master is stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Graceful,
    Fast,
}

/// What happened to a child, from its waiting task.
type Exit = (u64, io::Result<ExitStatus>);

/// The master's whole state.
pub struct Master {
    program: OsString,
    args: Vec<OsString>,
    listeners: Vec<OwnedFd>,
    notify: NotifySocket,
    admin: Option<(UnixListener, PathBuf)>,
    timeout: Option<Duration>,
    graceful_timeout: Duration,
    reload_timeout: Duration,
    max_requests: Option<crate::config::MaxRequests>,
    target: usize,
    workers: BTreeMap<u64, Worker>,
    next_id: u64,
    /// Workers to replace, one at a time, in order.
    queue: VecDeque<(u64, Reason)>,
    /// The new worker of the replacement in progress.
    replacing: Option<(u64, Reason)>,
    crashes: VecDeque<Instant>,
    backoff: RestartPolicy,
    /// No worker is started before this (crash backoff).
    hold_until: Option<Instant>,
    /// Admin `accept` and notify `recv` are not polled before this, after an error.
    io_paused_until: Option<Instant>,
    history: VecDeque<RestartRecord>,
    stop: Option<Stop>,
    killed_at_stop: bool,
    told_ready: bool,
    scope: Scope,
    exits: (mpsc::UnboundedSender<Exit>, mpsc::UnboundedReceiver<Exit>),
    started: SystemTime,
}

/// The master's signals.
struct Signals {
    hup: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    quit: tokio::signal::unix::Signal,
    ttin: tokio::signal::unix::Signal,
    ttou: tokio::signal::unix::Signal,
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
        Ok(Self {
            program: config.program,
            args: config.args,
            listeners,
            notify,
            admin,
            timeout: config.timeout,
            graceful_timeout: config.graceful_timeout,
            reload_timeout: config.reload_timeout,
            max_requests: config.max_requests,
            target: config.workers.get(),
            workers: BTreeMap::new(),
            next_id: 1,
            queue: VecDeque::new(),
            replacing: None,
            crashes: VecDeque::new(),
            backoff: RestartPolicy::default()
                .backoff(Duration::from_millis(100), Duration::from_secs(10))
                .intensity(u32::MAX, Duration::from_secs(60)),
            hold_until: None,
            io_paused_until: None,
            history: VecDeque::new(),
            stop: None,
            killed_at_stop: false,
            told_ready: false,
            scope: Scope::root("master"),
            exits: mpsc::unbounded_channel(),
            started: SystemTime::now(),
        })
    }

    /// Runs until every worker has stopped after SIGTERM (graceful) or SIGINT/SIGQUIT
    /// (fast).
    ///
    /// # Errors
    ///
    /// If the signal handlers cannot be installed.
    pub async fn run(mut self) -> io::Result<Outcome> {
        let mut signals = Signals::new()?;
        tracing::info!(
            workers = self.target,
            program = ?self.program,
            notify_socket = %self.notify.path().display(),
            "master started"
        );
        self.reconcile(Instant::now());
        loop {
            let wake = self.next_timer();
            let io = self
                .io_paused_until
                .is_none_or(|until| Instant::now() >= until);
            tokio::select! {
                Some((id, status)) = self.exits.1.recv() => self.on_exit(id, status),
                received = self.notify.recv(), if io => self.on_datagram(received),
                Some(()) = signals.hup.recv() => self.on_reload(),
                Some(()) = signals.term.recv() => self.begin_stop(Stop::Graceful),
                Some(()) = signals.int.recv() => self.begin_stop(Stop::Fast),
                Some(()) = signals.quit.recv() => self.begin_stop(Stop::Fast),
                Some(()) = signals.ttin.recv() => self.resize(1),
                Some(()) = signals.ttou.recv() => self.resize(-1),
                accepted = accept(&self.admin), if io => self.on_admin(accepted),
                () = sleep_until(wake) => {}
            }
            let now = Instant::now();
            if self.io_paused_until.is_some_and(|until| now >= until) {
                self.io_paused_until = None;
            }
            self.check_timers(now);
            self.reconcile(now);
            if self.stop.is_some() && self.workers.is_empty() {
                break;
            }
        }
        if let Some((_, path)) = &self.admin {
            let _ = std::fs::remove_file(path);
        }
        let report = self.scope.shutdown(Duration::from_secs(1)).await;
        tracing::debug!(%report, "master's own tasks stopped");
        Ok(if self.killed_at_stop {
            Outcome::Killed
        } else {
            Outcome::Clean
        })
    }

    // ------------------------------------------------------------ starting workers

    /// Starts what is missing: the replacement next in line, and regular workers up to
    /// the target, unless a crash backoff holds; stops regular workers above it.
    fn reconcile(&mut self, now: Instant) {
        if self.stop.is_some() || self.hold_until.is_some_and(|t| now < t) {
            return;
        }
        self.hold_until = None;
        if self.replacing.is_none() {
            while let Some((old, reason)) = self.queue.pop_front() {
                if self.workers.get(&old).is_some_and(Worker::is_active) {
                    if let Some(new) = self.start(Role::Replacing { old }) {
                        tracing::info!(old = self.pid(old), new = self.pid(new), %reason, "replacing a worker");
                        self.replacing = Some((new, reason));
                    } else {
                        // Not even started (the program cannot be executed now): the same
                        // as a replacement that exits before READY, so that the next
                        // SIGHUP, or the next count, tries again.
                        tracing::error!(old = self.pid(old), %reason, "replacement abandoned: the old workers keep serving");
                        self.abandon_replacements(old);
                    }
                    break;
                }
            }
        }
        while self.regular() < self.target {
            if self.start(Role::Regular).is_none() {
                break;
            }
        }
        while self.regular() > self.target {
            let Some(oldest) = self.workers.values().find(|w| w.is_regular()).map(|w| w.id) else {
                break;
            };
            tracing::info!(
                pid = self.pid(oldest),
                workers = self.target,
                "more workers than wanted: stopping the oldest"
            );
            self.stop_worker(oldest, Signal::TERM, self.graceful_timeout);
        }
    }

    /// Workers counted against the target (see [`Worker::is_regular`]).
    fn regular(&self) -> usize {
        self.workers.values().filter(|w| w.is_regular()).count()
    }

    fn start(&mut self, role: Role) -> Option<u64> {
        let id = self.next_id;
        self.next_id += 1;
        let max_requests = self
            .max_requests
            .map(|m| m.threshold(RandomState::new().hash_one(id)));
        let launch = Launch {
            program: &self.program,
            args: &self.args,
            listeners: &self.listeners,
            notify_socket: self.notify.path(),
            watchdog: self.timeout,
            graceful_timeout: self.graceful_timeout,
        };
        match Worker::spawn(&launch, id, role, max_requests) {
            Ok((worker, mut child)) => {
                tracing::info!(pid = worker.pid, id, "worker started");
                let exits = self.exits.0.clone();
                let waiting = self
                    .scope
                    .spawn(format!("wait {}", worker.pid), async move {
                        let status = child.wait().await;
                        let _ = exits.send((id, status));
                    });
                if let Err(error) = waiting {
                    tracing::error!(%error, "cannot watch a worker");
                }
                self.workers.insert(id, worker);
                Some(id)
            }
            Err(error) => {
                tracing::error!(%error, program = ?self.program, "cannot start a worker");
                self.crashed(Instant::now());
                None
            }
        }
    }

    /// Notes a crash and holds further starts for the backoff it earns.
    fn crashed(&mut self, now: Instant) {
        while self
            .crashes
            .front()
            .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(60))
        {
            self.crashes.pop_front();
        }
        let recent = u32::try_from(self.crashes.len()).unwrap_or(u32::MAX);
        let delay = self.backoff.delay(recent);
        self.crashes.push_back(now);
        self.hold_until = Some(later(now, delay));
        if recent > 0 {
            tracing::warn!(
                ?delay,
                recent_crashes = recent + 1,
                "workers keep failing: backing off"
            );
        }
    }

    fn remember(&mut self, pid: u32, reason: String) {
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(RestartRecord {
            at: SystemTime::now(),
            pid,
            reason,
        });
    }

    // ------------------------------------------------------------ events

    fn on_exit(&mut self, id: u64, status: io::Result<ExitStatus>) {
        let Some(worker) = self.workers.remove(&id) else {
            return;
        };
        let how = match status {
            Ok(status) => describe(status),
            Err(error) => format!("unknown exit ({error})"),
        };
        if let State::Stopping { .. } = worker.state {
            tracing::info!(pid = worker.pid, status = %how, "worker stopped");
            return;
        }
        // The worker being replaced died first: its replacement takes its place now
        // rather than after READY, or a respawn would make one worker too many.
        if let Some((new, _)) = self.replacing
            && self
                .workers
                .get(&new)
                .is_some_and(|w| w.role == Role::Replacing { old: id })
        {
            self.replacing = None;
            if let Some(replacement) = self.workers.get_mut(&new) {
                replacement.role = Role::Regular;
            }
        }
        if let Role::Replacing { old } = worker.role {
            tracing::error!(
                pid = worker.pid, status = %how,
                "replacement worker exited before it was ready: replacement abandoned, the old workers keep serving"
            );
            self.abandon_replacements(old);
            self.remember(worker.pid, format!("replacement failed: {how}"));
            self.crashed(Instant::now());
            return;
        }
        if self.stop.is_some() {
            tracing::info!(pid = worker.pid, status = %how, "worker stopped");
            return;
        }
        if worker.retiring_since.is_some() {
            // Its replacement already serves in its place: nothing to start, no backoff.
            tracing::warn!(pid = worker.pid, status = %how, "retiring worker exited before it was stopped");
            self.remember(worker.pid, format!("exited while retiring: {how}"));
            return;
        }
        tracing::error!(pid = worker.pid, status = %how, "worker exited unexpectedly: starting another");
        self.remember(worker.pid, format!("crashed: {how}"));
        self.crashed(Instant::now());
    }

    /// A replacement failed: the old workers stay, and the queued ones are not replaced.
    fn abandon_replacements(&mut self, old: u64) {
        self.replacing = None;
        if let Some(worker) = self.workers.get_mut(&old) {
            worker.replacing = false;
        }
        for (queued, _) in self.queue.drain(..) {
            if let Some(worker) = self.workers.get_mut(&queued) {
                worker.replacing = false;
            }
        }
        // A supervisor told RELOADING=1 must hear that the reload is over, failed or not.
        if self.told_ready {
            supervisor(&[
                sd_notify::NotifyState::Ready,
                sd_notify::NotifyState::Status("reload failed: the old workers keep serving"),
            ]);
        }
    }

    fn on_datagram(&mut self, received: Result<Datagram, RecvError>) {
        let datagram = match received {
            Ok(datagram) => datagram,
            Err(error) => {
                tracing::warn!(error = %error_line(&error), "notify datagram ignored");
                if matches!(error, RecvError::Io(_)) {
                    self.io_paused_until = Some(later(Instant::now(), IO_PAUSE));
                }
                return;
            }
        };
        let Some(pid) = datagram
            .pid
            .and_then(|pid| u32::try_from(pid.as_raw_nonzero().get()).ok())
        else {
            tracing::warn!("notify datagram without sender credentials ignored");
            return;
        };
        let Some(id) = self.workers.values().find(|w| w.pid == pid).map(|w| w.id) else {
            tracing::warn!(
                pid,
                "notify datagram from a process that is not a worker ignored"
            );
            return;
        };
        let message = datagram.message;
        let now = Instant::now();
        let worker = self.workers.get_mut(&id).expect("found above");
        match message.watchdog {
            Some(Watchdog::Trigger) => {
                // The worker asks to be treated as if its heartbeat had stopped.
                worker.last_beat = now.checked_sub(Duration::from_secs(3600)).unwrap_or(now);
                tracing::warn!(pid, "worker triggered its watchdog");
            }
            Some(_) => worker.last_beat = now,
            None if message.ready => worker.last_beat = now,
            None => {}
        }
        if let Some(status) = message.status {
            worker.status = status;
        }
        if let Some(requests) = message.requests {
            worker.requests = requests;
        }
        if message.stopping && worker.is_active() {
            tracing::info!(pid, "worker says it is stopping");
        }
        if message.ready && worker.state == State::Starting {
            worker.state = State::Ready;
            tracing::info!(pid, startup = ?now.duration_since(worker.started), "worker ready");
            self.on_ready(id);
        }
        self.check_max_requests(id);
    }

    fn on_ready(&mut self, id: u64) {
        let role = self.workers.get(&id).map(|w| w.role);
        if let Some(Role::Replacing { old }) = role {
            if let Some(worker) = self.workers.get_mut(&id) {
                worker.role = Role::Regular;
            }
            let reason = self.replacing.take().map(|(_, r)| r);
            match self.workers.get_mut(&old) {
                // Recycled early (see `early_report_at`): it serves on to its limit.
                Some(worker)
                    if reason == Some(Reason::MaxRequests)
                        && worker.is_active()
                        && worker.max_requests.is_some_and(|l| worker.requests < l) =>
                {
                    worker.retiring_since = Some(Instant::now());
                    tracing::debug!(
                        pid = worker.pid,
                        "replacement ready: the old worker stops at its limit"
                    );
                }
                Some(_) => self.retire(old, reason),
                None => {}
            }
        }
        let ready = self
            .workers
            .values()
            .filter(|w| w.state == State::Ready)
            .count();
        if !self.told_ready && ready >= self.target {
            self.told_ready = true;
            tracing::info!(workers = ready, "all workers ready");
            supervisor(&[sd_notify::NotifyState::Ready]);
        } else if self.told_ready && self.replacing.is_none() && self.queue.is_empty() {
            supervisor(&[sd_notify::NotifyState::Ready]);
        }
    }

    /// Queues the replacement of a worker at [`early_report_at`] of its limit, and stops
    /// one whose replacement is ready at the limit itself.
    fn check_max_requests(&mut self, id: u64) {
        let Some(worker) = self.workers.get_mut(&id) else {
            return;
        };
        let Some(limit) = worker.max_requests else {
            return;
        };
        if worker.retiring_since.is_some() && worker.is_active() && worker.requests >= limit {
            self.retire(id, Some(Reason::MaxRequests));
            return;
        }
        let due = worker.requests >= early_report_at(limit);
        if due && worker.state == State::Ready && !worker.replacing && self.stop.is_none() {
            worker.replacing = true;
            tracing::info!(
                pid = worker.pid,
                requests = worker.requests,
                limit,
                "recycling a worker"
            );
            self.queue.push_back((id, Reason::MaxRequests));
        }
    }

    /// Gracefully stops a worker whose replacement is ready, and records why.
    fn retire(&mut self, id: u64, reason: Option<Reason>) {
        // Already stopping (TTOU, a heartbeat timeout, an earlier retire): recorded then.
        let Some(worker) = self.workers.get(&id).filter(|w| w.is_active()) else {
            return;
        };
        let pid = worker.pid;
        let reason = match reason {
            // The count when it stops, not when its replacement was queued.
            Some(Reason::MaxRequests) => {
                format!("max_requests ({} requests served)", worker.requests)
            }
            Some(reason) => reason.to_string(),
            None => "replaced".into(),
        };
        tracing::info!(pid, %reason, "stopping a replaced worker");
        self.stop_worker(id, Signal::TERM, self.graceful_timeout);
        self.remember(pid, reason);
    }

    fn on_reload(&mut self) {
        if self.stop.is_some() {
            return;
        }
        // A worker retiring beside its ready replacement stops now rather than at its
        // limit: the reload replaces that replacement in turn.
        let retiring: Vec<u64> = self
            .workers
            .values()
            .filter(|w| w.is_active() && w.retiring_since.is_some())
            .map(|w| w.id)
            .collect();
        for id in retiring {
            self.retire(id, Some(Reason::Reload));
        }
        // Replacements queued or under way for `max_requests` now stand for the reload:
        // their old worker stops as soon as the replacement is ready, not at its limit.
        for (_, reason) in self.queue.iter_mut().chain(self.replacing.as_mut()) {
            *reason = Reason::Reload;
        }
        // Every worker running now is replaced, the replacement still starting included
        // (it may have been started from the code before this deploy): it is queued and
        // replaced in turn once it is ready.
        let mut queued = 0;
        for worker in self.workers.values_mut() {
            if worker.is_active() && !worker.replacing {
                worker.replacing = true;
                self.queue.push_back((worker.id, Reason::Reload));
                queued += 1;
            }
        }
        tracing::info!(workers = queued, "SIGHUP: rolling reload");
        if self.told_ready {
            // Before the first READY=1 the supervisor is still waiting for the start.
            supervisor(&[sd_notify::NotifyState::Reloading]);
        }
    }

    fn resize(&mut self, by: isize) {
        if self.stop.is_some() {
            return;
        }
        self.target = self.target.saturating_add_signed(by).max(1);
        tracing::info!(workers = self.target, "worker count changed");
    }

    fn begin_stop(&mut self, how: Stop) {
        let how = match self.stop {
            // A second stop signal makes any stop a fast one.
            Some(_) => Stop::Fast,
            None => how,
        };
        self.stop = Some(how);
        self.queue.clear();
        self.replacing = None;
        self.hold_until = None;
        supervisor(&[sd_notify::NotifyState::Stopping]);
        let (signal, grace) = match how {
            Stop::Graceful => (Signal::TERM, self.graceful_timeout),
            Stop::Fast => (Signal::QUIT, FAST_STOP_GRACE),
        };
        tracing::info!(?how, workers = self.workers.len(), ?grace, "stopping");
        let ids: Vec<u64> = self.workers.keys().copied().collect();
        for id in ids {
            self.stop_worker(id, signal, grace);
        }
    }

    /// Sends `signal` and gives the worker `grace` before SIGKILL. A worker already
    /// stopping keeps the earlier deadline and is signalled again only to escalate (a
    /// graceful stop becoming a fast one, or SIGKILL): a second SIGTERM would tell a
    /// taskward worker nothing new, and some programs read it as "stop now".
    fn stop_worker(&mut self, id: u64, signal: Signal, grace: Duration) {
        let Some(worker) = self.workers.get_mut(&id) else {
            return;
        };
        let kill_at = later(Instant::now(), grace);
        let resend = match worker.state {
            State::Stopping { kill_at: earlier } => {
                worker.state = State::Stopping {
                    kill_at: earlier.min(kill_at),
                };
                signal != Signal::TERM
            }
            _ => {
                worker.state = State::Stopping { kill_at };
                true
            }
        };
        if resend {
            worker.signal(signal);
        }
    }

    fn on_admin(&mut self, accepted: io::Result<tokio::net::UnixStream>) {
        let stream = match accepted {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(%error, "admin socket accept failed");
                self.io_paused_until = Some(later(Instant::now(), IO_PAUSE));
                return;
            }
        };
        let status = self.status();
        let writing = self
            .scope
            .spawn("admin reply", crate::admin::reply(stream, status));
        if let Err(error) = writing {
            tracing::debug!(%error, "admin reply refused: stopping");
        }
    }

    fn status(&self) -> Status {
        let now = Instant::now();
        Status {
            master_pid: std::process::id(),
            started: self.started,
            target: self.target,
            stopping: self.stop.is_some(),
            workers: self
                .workers
                .values()
                .map(|w| WorkerStatus {
                    pid: w.pid,
                    age: now.duration_since(w.started),
                    state: w.state_name().to_owned(),
                    requests: w.requests,
                    since_heartbeat: now.duration_since(w.last_beat),
                    status: w.status.clone(),
                })
                .collect(),
            restarts: self.history.iter().cloned().collect(),
        }
    }

    // ------------------------------------------------------------ timers

    /// The earliest moment a timer is due.
    fn next_timer(&self) -> Option<Instant> {
        // A crash backoff means nothing once stopping (and, past, would be always due).
        let mut due = self.hold_until.filter(|_| self.stop.is_none());
        if let Some(until) = self.io_paused_until {
            due = Some(due.map_or(until, |d| d.min(until)));
        }
        let mut at = |t: Instant| due = Some(due.map_or(t, |d| d.min(t)));
        for worker in self.workers.values() {
            match worker.state {
                State::Stopping { kill_at } => at(kill_at),
                State::Starting => at(later(worker.started, self.reload_timeout)),
                State::Ready => {
                    if let Some(timeout) = self.timeout {
                        at(later(worker.last_beat, timeout));
                    }
                    if let Some(since) = worker.retiring_since {
                        at(later(since, RETIRE_WITHIN));
                    }
                }
            }
        }
        due
    }

    fn check_timers(&mut self, now: Instant) {
        let mut killed = Vec::new();
        for worker in self.workers.values_mut() {
            match worker.state {
                State::Stopping { kill_at } if now >= kill_at => {
                    tracing::warn!(pid = worker.pid, "worker did not stop in time: SIGKILL");
                    worker.signal(Signal::KILL);
                    // Far off: killed once; its exit removes it.
                    worker.state = State::Stopping {
                        kill_at: later(now, NEVER),
                    };
                    if self.stop.is_some() {
                        self.killed_at_stop = true;
                    }
                }
                State::Starting if now >= later(worker.started, self.reload_timeout) => {
                    tracing::error!(pid = worker.pid, timeout = ?self.reload_timeout, "worker never became ready: SIGKILL");
                    killed.push((worker.id, worker.pid, "never became ready".to_owned()));
                }
                State::Ready
                    if self
                        .timeout
                        .is_some_and(|timeout| now >= later(worker.last_beat, timeout)) =>
                {
                    tracing::error!(pid = worker.pid, timeout = ?self.timeout, "worker stopped sending heartbeats: SIGKILL");
                    killed.push((worker.id, worker.pid, "heartbeat timeout".to_owned()));
                }
                _ => {}
            }
        }
        let retiring: Vec<u64> = self
            .workers
            .values()
            .filter(|w| {
                w.is_active()
                    && w.retiring_since
                        .is_some_and(|since| now >= later(since, RETIRE_WITHIN))
            })
            .map(|w| w.id)
            .collect();
        for id in retiring {
            tracing::info!(pid = self.pid(id), within = ?RETIRE_WITHIN, "worker did not reach its max_requests: stopping it anyway");
            self.retire(id, Some(Reason::MaxRequests));
        }
        for (id, pid, reason) in killed {
            let role = self.workers.get(&id).map(|w| w.role);
            self.stop_worker(id, Signal::KILL, NEVER);
            if let Some(Role::Replacing { old }) = role {
                tracing::error!(pid, "replacement abandoned: the old workers keep serving");
                self.abandon_replacements(old);
            }
            self.remember(pid, reason);
            self.crashed(now);
        }
    }

    fn pid(&self, id: u64) -> u32 {
        self.workers.get(&id).map_or(0, |w| w.pid)
    }
}

/// `at + d`, or a moment too far off to matter when that overflows (a configured
/// duration of `u64::MAX` seconds means "never").
fn later(at: Instant, d: Duration) -> Instant {
    at.checked_add(d)
        .or_else(|| at.checked_add(NEVER))
        .unwrap_or(at)
}

/// Tells the master's own supervisor (systemd `Type=notify`), if it has one.
fn supervisor(states: &[sd_notify::NotifyState<'_>]) {
    if let Err(error) = sd_notify::notify(states) {
        tracing::warn!(%error, "cannot notify the supervisor");
    }
}

async fn accept(admin: &Option<(UnixListener, PathBuf)>) -> io::Result<tokio::net::UnixStream> {
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
