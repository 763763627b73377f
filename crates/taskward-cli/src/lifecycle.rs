//! The master's policy as a state machine without I/O: which worker to start, replace,
//! recycle, stop or kill, when to back off, and when the master is done.
//!
//! Read [`Lifecycle::handle`]: it takes an [`Event`] and the current time and returns the
//! [`Action`]s for the master's loop (`master.rs`) to carry out; [`Lifecycle::deadline`]
//! says when to call it again with [`Event::Timer`]. It never reads a clock, spawns,
//! signals or writes anything but logs, so every case of a worker's life is a unit test
//! that runs in microseconds (`lifecycle/tests.rs`), in the way of `quinn-proto`.
//!
//! Each worker is in exactly one [`Phase`] (`lifecycle/phase.rs`); besides the worker
//! table there are the queue of replacements, the crash backoff (`lifecycle/backoff.rs`,
//! over [`taskward::RestartPolicy`]), the processes workers left behind, and the stop.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::process::ExitStatus;
use std::time::{Duration, Instant, SystemTime};

use rustix::process::Signal;
use taskward_http::protocol::early_report_at;
use taskward_http::throttle::{Throttle, WARN_EVERY};

use self::backoff::CrashBackoff;
use self::phase::Reason;
pub(crate) use self::phase::WorkerId;
use self::phase::{Phase, Worker};
use crate::admin::{RestartRecord, Status, WorkerStatus};
use crate::notify::{Notification, Watchdog};
use crate::worker::describe;

/// How long workers have to stop on SIGINT/SIGQUIT (a fast stop) before SIGKILL.
const FAST_STOP_GRACE: Duration = Duration::from_secs(2);
/// Far enough off to mean "never", near enough not to overflow an `Instant`.
const NEVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
/// How long a worker whose `max_requests` replacement is ready may serve on towards its
/// limit: traffic may stop short of it, and the extra worker must not stay forever.
const RETIRE_WITHIN: Duration = Duration::from_secs(5);
/// Recent restarts kept for `taskward status`.
const HISTORY: usize = 32;
/// The exit code of a program that found its configuration bad (`EX_CONFIG` in
/// `sysexits.h`): a worker exiting with it before READY would do so again if restarted.
const EX_CONFIG: i32 = 78;

/// How the master ended, for its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every worker stopped before its deadline.
    Clean,
    /// At least one worker had to be killed at the stop deadline.
    Killed,
    /// A worker found its configuration bad before it was ready (it exited with
    /// `EX_CONFIG`, 78) while no worker was serving: the master stopped rather than
    /// restart it forever.
    WorkerConfig(WorkerConfigError),
}

/// A worker exited with `EX_CONFIG` (78) before it was ready, so the master stopped.
///
/// # Examples
///
/// ```
/// use taskward_cli::master::WorkerConfigError;
///
/// let error = WorkerConfigError { pid: 42 };
/// assert!(error.to_string().starts_with("worker 42 exited with code 78 (EX_CONFIG)"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "worker {pid} exited with code 78 (EX_CONFIG) before it was ready: its configuration is \
     bad (its own message is above); stopped rather than restart it forever"
)]
pub struct WorkerConfigError {
    /// The worker's pid.
    pub pid: u32,
}

/// How the master is stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Graceful,
    Fast,
}

/// What the policy is told about the master's settings.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// Workers wanted.
    pub(crate) workers: usize,
    /// `--timeout`: a ready worker silent for this long is killed.
    pub(crate) timeout: Option<Duration>,
    /// `--graceful-timeout`: how long a stopping worker has before SIGKILL.
    pub(crate) graceful_timeout: Duration,
    /// `--reload-timeout`: how long a new worker has to say `READY=1`.
    pub(crate) reload_timeout: Duration,
    /// The master's pid, for the status.
    pub(crate) master_pid: u32,
    /// How long workers keep accepting once told to stop (`TASKWARD_DRAIN_DELAY`).
    pub(crate) drain_delay: Duration,
    /// Whether the master bound its listening sockets itself, rather than being passed
    /// them by its supervisor (systemd): only then are they closed at a stop.
    pub(crate) own_sockets: bool,
}

/// Something that happened, for [`Lifecycle::handle`].
#[derive(Debug)]
pub(crate) enum Event {
    /// Time passed ([`Lifecycle::deadline`]), or the master just began.
    Timer,
    /// The worker of an [`Action::Start`] runs, as `pid`, and will be replaced at
    /// `max_requests` (jitter included).
    Spawned {
        id: WorkerId,
        pid: u32,
        max_requests: Option<u64>,
    },
    /// The worker of an [`Action::Start`] could not be started.
    SpawnFailed { id: WorkerId },
    /// A worker exited (and was reaped).
    Exited {
        id: WorkerId,
        status: io::Result<ExitStatus>,
    },
    /// A notification from process `pid` (`READY=1`, `STOPPING=1`, heartbeats, the count
    /// of requests, `STATUS=`).
    Notified { pid: u32, message: Notification },
    /// A signal to the master.
    Signal(Signal),
    /// `taskward status` asks: answered by [`Action::Reply`].
    StatusRequest,
    /// A live process that is not a worker is the master's child: a worker's descendant,
    /// reparented to the master (a child subreaper, or PID 1) when its parent exited.
    /// `worker` is the worker it descends from, if its environment says.
    Orphan {
        pid: u32,
        worker: Option<WorkerId>,
        command: String,
    },
    /// An orphan exited and was reaped.
    Reaped { pid: u32 },
}

/// Something for the master's loop to do.
#[derive(Debug)]
pub(crate) enum Action {
    /// Start worker `id`; answer with [`Event::Spawned`] or [`Event::SpawnFailed`] before
    /// any other event.
    Start { id: WorkerId },
    /// Send `signal` to worker `id`.
    Signal { id: WorkerId, signal: Signal },
    /// Tell the master's own supervisor (systemd `Type=notify`).
    Notify(Note),
    /// The answer to [`Event::StatusRequest`].
    Reply(Box<Status>),
    /// Send `signal` to a leftover process (the master's child until it is reaped, so
    /// its pid cannot have been reused).
    SignalLeftover { pid: u32, signal: Signal },
    /// Close the master's copies of the listening sockets: stopping, the drain delay is
    /// over and the workers stop accepting, so new connections must be refused (a
    /// client can retry a refused connect safely, not a reset request).
    CloseListeners,
}

/// What the master tells its own supervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Note {
    /// `READY=1`: every worker wanted is ready, or a reload is done.
    Ready,
    /// `RELOADING=1`.
    Reloading,
    /// `STOPPING=1`.
    Stopping,
    /// `READY=1` with a status: the reload failed, the old workers keep serving.
    ReloadFailed,
}

/// A worker start asked for and not answered yet.
#[derive(Debug, Clone, Copy)]
struct Pending {
    id: WorkerId,
    replaces: Option<(WorkerId, Reason)>,
}

/// The master's policy and its worker table. See the [module](self).
#[derive(Debug)]
pub(crate) struct Lifecycle {
    settings: Settings,
    target: usize,
    workers: BTreeMap<WorkerId, Worker>,
    next_id: u64,
    pending: Option<Pending>,
    /// Workers to replace, one at a time, in order.
    queue: VecDeque<(WorkerId, Reason)>,
    backoff: CrashBackoff,
    history: VecDeque<(Instant, u32, String)>,
    stop: Option<Stop>,
    killed_at_stop: bool,
    /// A worker exited with `EX_CONFIG` before READY: why the master stops.
    bad_config: Option<WorkerConfigError>,
    /// When the listening sockets are to be closed, once stopping.
    close_at: Option<Instant>,
    closed: bool,
    /// Processes a worker left behind, being stopped: SIGKILL at the deadline, if not
    /// sent yet.
    leftovers: BTreeMap<u32, Option<Instant>>,
    told_ready: bool,
    /// The moment the master began, on both clocks: the status gives wall-clock times.
    began: (Instant, SystemTime),
    /// Datagrams from processes that are not workers: any local process of the user can
    /// send them, as fast as it likes, so they are logged once per interval with a count.
    foreign: Throttle,
    actions: Vec<Action>,
}

impl Lifecycle {
    /// The policy of a master that began at `now` (`wall` on the wall clock).
    pub(crate) fn new(settings: Settings, now: Instant, wall: SystemTime) -> Self {
        Self {
            target: settings.workers.max(1),
            settings,
            workers: BTreeMap::new(),
            next_id: 1,
            pending: None,
            queue: VecDeque::new(),
            backoff: CrashBackoff::new(),
            history: VecDeque::new(),
            stop: None,
            killed_at_stop: false,
            bad_config: None,
            close_at: None,
            closed: false,
            leftovers: BTreeMap::new(),
            told_ready: false,
            began: (now, wall),
            foreign: Throttle::new(WARN_EVERY),
            actions: Vec::new(),
        }
    }

    /// Takes in `event`, which happened at `now`, then fires the timers due and starts
    /// or stops workers to reach the target; returns what the master must do, in order.
    pub(crate) fn handle(&mut self, event: Event, now: Instant) -> Vec<Action> {
        match event {
            Event::Timer => {}
            Event::Spawned {
                id,
                pid,
                max_requests,
            } => self.on_spawned(id, pid, max_requests, now),
            Event::SpawnFailed { id } => self.on_spawn_failed(id, now),
            Event::Exited { id, status } => self.on_exit(id, status, now),
            Event::Notified { pid, message } => self.on_notified(pid, message, now),
            Event::Signal(signal) => self.on_signal(signal, now),
            Event::StatusRequest => {
                let status = self.status(now);
                self.actions.push(Action::Reply(Box::new(status)));
            }
            Event::Orphan {
                pid,
                worker,
                command,
            } => self.on_orphan(pid, worker, command, now),
            Event::Reaped { pid } => {
                if self.leftovers.remove(&pid).is_some() {
                    tracing::info!(pid, "leftover process gone");
                }
            }
        }
        self.check_timers(now);
        self.reconcile(now);
        std::mem::take(&mut self.actions)
    }

    /// The earliest moment a timer is due: call [`handle`](Self::handle) with
    /// [`Event::Timer`] then.
    #[must_use]
    pub(crate) fn deadline(&self) -> Option<Instant> {
        // A crash backoff means nothing once stopping (and, past, would be always due).
        let mut due = self.backoff.until().filter(|_| self.stop.is_none());
        let mut at = |t: Instant| due = Some(due.map_or(t, |d| d.min(t)));
        if let Some(close_at) = self.close_at {
            at(close_at);
        }
        for kill_at in self.leftovers.values().flatten() {
            at(*kill_at);
        }
        for worker in self.workers.values() {
            match worker.phase {
                Phase::Stopping { kill_at } => at(kill_at),
                Phase::Starting { .. } => at(later(worker.started, self.settings.reload_timeout)),
                Phase::Ready | Phase::Retiring { .. } => {
                    if let Some(timeout) = self.settings.timeout {
                        at(later(worker.last_beat, timeout));
                    }
                    if let Phase::Retiring { since } = worker.phase {
                        at(later(since, RETIRE_WITHIN));
                    }
                }
                Phase::Killed => {}
            }
        }
        due
    }

    /// How the master ended, once it has: stopping, and every worker gone, and every
    /// process they left behind.
    #[must_use]
    pub(crate) fn finished(&self) -> Option<Outcome> {
        let done = self.stop.is_some()
            && self.workers.is_empty()
            && self.pending.is_none()
            && self.leftovers.is_empty();
        done.then_some(match self.bad_config {
            Some(error) => Outcome::WorkerConfig(error),
            None if self.killed_at_stop => Outcome::Killed,
            None => Outcome::Clean,
        })
    }

    /// Sets whether the listening sockets are the master's own (see [`Settings`]).
    pub(crate) fn set_own_sockets(&mut self, own: bool) {
        self.settings.own_sockets = own;
    }

    /// Workers wanted.
    #[must_use]
    pub(crate) fn target(&self) -> usize {
        self.target
    }

    /// The status `taskward status` shows, at `now`.
    fn status(&self, now: Instant) -> Status {
        let (began, wall) = self.began;
        let wall_at = |at: Instant| wall + at.saturating_duration_since(began);
        Status {
            master_pid: self.settings.master_pid,
            started: wall,
            target: self.target,
            stopping: self.stop.is_some(),
            workers: self
                .workers
                .values()
                .map(|w| WorkerStatus {
                    pid: w.pid,
                    age: now.saturating_duration_since(w.started),
                    state: w.phase.name().to_owned(),
                    requests: w.requests,
                    since_heartbeat: now.saturating_duration_since(w.last_beat),
                    status: w.status.clone(),
                })
                .collect(),
            restarts: self
                .history
                .iter()
                .map(|(at, pid, reason)| RestartRecord {
                    at: wall_at(*at),
                    pid: *pid,
                    reason: reason.clone(),
                })
                .collect(),
        }
    }

    // ------------------------------------------------------------ starting workers

    /// Starts what is missing, one worker at a time: the replacement next in line, then
    /// regular workers up to the target, unless a crash backoff holds; stops regular
    /// workers above it.
    fn reconcile(&mut self, now: Instant) {
        if self.stop.is_some() || self.pending.is_some() || self.backoff.holds(now) {
            return;
        }
        if self.replacement().is_none() {
            while let Some((old, reason)) = self.queue.pop_front() {
                if self.workers.get(&old).is_some_and(|w| w.phase.is_active()) {
                    self.start(Some((old, reason)));
                    return;
                }
            }
        }
        if self.regular() < self.target {
            self.start(None);
            return;
        }
        while self.regular() > self.target {
            let Some(oldest) = self.find(|w| w.phase.is_regular()) else {
                break;
            };
            tracing::info!(
                pid = self.pid(oldest),
                workers = self.target,
                "more workers than wanted: stopping the oldest"
            );
            self.stop_worker(oldest, Signal::TERM, self.settings.graceful_timeout, now);
        }
    }

    fn start(&mut self, replaces: Option<(WorkerId, Reason)>) {
        let id = WorkerId::from_number(self.next_id);
        self.next_id += 1;
        self.pending = Some(Pending { id, replaces });
        self.actions.push(Action::Start { id });
    }

    fn on_spawned(&mut self, id: WorkerId, pid: u32, max_requests: Option<u64>, now: Instant) {
        let Some(pending) = self.pending.take_if(|p| p.id == id) else {
            tracing::warn!(%id, pid, "a worker started that was not asked for");
            return;
        };
        tracing::info!(pid, %id, "worker started");
        self.workers.insert(
            id,
            Worker {
                pid,
                started: now,
                phase: Phase::Starting {
                    replaces: pending.replaces,
                },
                ready_since: None,
                last_beat: now,
                triggered: false,
                requests: 0,
                max_requests,
                status: String::new(),
            },
        );
        if let Some((old, reason)) = pending.replaces {
            tracing::info!(old = self.pid(old), new = pid, %reason, "replacing a worker");
        }
        if self.stop.is_some() {
            // Not asked for once stopping, but stopped like the others should it come.
            self.stop_worker(id, Signal::TERM, self.settings.graceful_timeout, now);
        }
    }

    fn on_spawn_failed(&mut self, id: WorkerId, now: Instant) {
        let Some(pending) = self.pending.take_if(|p| p.id == id) else {
            return;
        };
        self.backoff.died(None, now);
        if let Some((old, reason)) = pending.replaces {
            // Not even started (the program cannot be executed now): the same as a
            // replacement that exits before READY, so that the next SIGHUP, or the next
            // count, tries again.
            tracing::error!(old = self.pid(old), %reason, "replacement abandoned: the old workers keep serving");
            self.abandon_replacements();
        }
    }

    /// Whether a worker is serving (ready, or retiring beside its replacement).
    fn serving(&self) -> bool {
        self.workers
            .values()
            .any(|w| matches!(w.phase, Phase::Ready | Phase::Retiring { .. }))
    }

    /// Workers counted against the target (see [`Phase::is_regular`]).
    fn regular(&self) -> usize {
        self.workers
            .values()
            .filter(|w| w.phase.is_regular())
            .count()
    }

    /// The replacement under way: the new worker, and the old one with the reason.
    fn replacement(&self) -> Option<(WorkerId, WorkerId, Reason)> {
        self.workers.iter().find_map(|(&new, w)| match w.phase {
            Phase::Starting {
                replaces: Some((old, reason)),
            } => Some((new, old, reason)),
            _ => None,
        })
    }

    /// Queued for replacement, or being replaced: not to be queued again.
    fn is_replaced(&self, id: WorkerId) -> bool {
        self.queue.iter().any(|(queued, _)| *queued == id)
            || self.replacement().is_some_and(|(_, old, _)| old == id)
    }

    fn remember(&mut self, pid: u32, reason: String, now: Instant) {
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back((now, pid, reason));
    }

    // ------------------------------------------------------------ events

    fn on_exit(&mut self, id: WorkerId, status: io::Result<ExitStatus>, now: Instant) {
        let Some(worker) = self.workers.remove(&id) else {
            return;
        };
        let exit_code = status.as_ref().ok().and_then(ExitStatus::code);
        let how = match status {
            Ok(status) => describe(status),
            Err(error) => format!("unknown exit ({error})"),
        };
        let pid = worker.pid;
        if !worker.phase.is_active() {
            tracing::info!(pid, status = %how, "worker stopped");
            return;
        }
        // The worker being replaced died first: its replacement takes its place now
        // rather than after READY, or a respawn would make one worker too many.
        if let Some((new, old, _)) = self.replacement()
            && old == id
            && let Some(replacement) = self.workers.get_mut(&new)
        {
            replacement.phase = Phase::Starting { replaces: None };
        }
        match worker.phase {
            Phase::Starting { replaces: Some(_) } => {
                tracing::error!(
                    pid, status = %how,
                    "replacement worker exited before it was ready: replacement abandoned, the old workers keep serving"
                );
                self.abandon_replacements();
                self.remember(pid, format!("replacement failed: {how}"), now);
                self.backoff.died(None, now);
            }
            _ if self.stop.is_some() => {
                tracing::info!(pid, status = %how, "worker stopped");
            }
            Phase::Retiring { .. } => {
                // Its replacement already serves in its place: nothing to start, no
                // backoff.
                tracing::warn!(pid, status = %how, "retiring worker exited before it was stopped");
                self.remember(pid, format!("exited while retiring: {how}"), now);
            }
            // While other workers serve, a bad configuration (a file edited under a running
            // service, say) degrades it, as a crash loop with backoff, rather than take
            // it down; with none serving, restarting can only loop.
            Phase::Starting { replaces: None }
                if exit_code == Some(EX_CONFIG) && !self.serving() =>
            {
                let error = WorkerConfigError { pid };
                tracing::error!(pid, status = %how, "{error}");
                self.remember(pid, format!("bad configuration: {how}"), now);
                self.bad_config = Some(error);
                self.begin_stop(Stop::Graceful, now);
            }
            _ => {
                tracing::error!(pid, status = %how, "worker exited unexpectedly: starting another");
                self.remember(pid, format!("crashed: {how}"), now);
                self.backoff.died(worker.ready_since, now);
            }
        }
    }

    /// A replacement failed: the old workers stay, and the queued ones are not replaced.
    fn abandon_replacements(&mut self) {
        self.queue.clear();
        // A supervisor told RELOADING=1 must hear that the reload is over, failed or not.
        if self.told_ready {
            self.actions.push(Action::Notify(Note::ReloadFailed));
        }
    }

    fn on_notified(&mut self, pid: u32, message: Notification, now: Instant) {
        let Some(id) = self.find(|w| w.pid == pid) else {
            if let Some(more) = self.foreign.hit(tokio::time::Instant::from_std(now)) {
                tracing::warn!(
                    pid,
                    more,
                    "notify datagram from a process that is not a worker ignored"
                );
            }
            return;
        };
        let worker = self.workers.get_mut(&id).expect("found above");
        match message.watchdog {
            Some(Watchdog::Trigger) => {
                worker.triggered = true;
                tracing::warn!(pid, "worker triggered its watchdog");
            }
            Some(_) => {
                worker.last_beat = now;
                worker.triggered = false;
            }
            None if message.ready => {
                worker.last_beat = now;
                worker.triggered = false;
            }
            None => {}
        }
        if let Some(status) = message.status {
            // Kept escaped: `status --json` and every other reader get it as text, never
            // as escape sequences for the operator's terminal (serde_json leaves C1
            // controls and bidi overrides raw).
            worker.status = crate::admin::printable(&status).into_owned();
        }
        if let Some(requests) = message.requests {
            worker.requests = requests;
        }
        if message.stopping && worker.phase.is_active() {
            tracing::info!(pid, "worker says it is stopping");
        }
        if message.ready
            && let Phase::Starting { replaces } = worker.phase
        {
            worker.phase = Phase::Ready;
            worker.ready_since = Some(now);
            tracing::info!(pid, startup = ?now.saturating_duration_since(worker.started), "worker ready");
            self.on_ready(replaces, now);
        }
        self.check_max_requests(id, now);
    }

    fn on_ready(&mut self, replaced: Option<(WorkerId, Reason)>, now: Instant) {
        if let Some((old, reason)) = replaced {
            match self.workers.get_mut(&old) {
                // Recycled early (see `early_report_at`): it serves on to its limit.
                Some(worker)
                    if reason == Reason::MaxRequests
                        && worker.phase.is_active()
                        && worker.max_requests.is_some_and(|l| worker.requests < l) =>
                {
                    worker.phase = Phase::Retiring { since: now };
                    tracing::debug!(
                        pid = worker.pid,
                        "replacement ready: the old worker stops at its limit"
                    );
                }
                Some(_) => self.retire(old, reason, now),
                None => {}
            }
        }
        let ready = self
            .workers
            .values()
            .filter(|w| matches!(w.phase, Phase::Ready | Phase::Retiring { .. }))
            .count();
        if !self.told_ready && ready >= self.target {
            self.told_ready = true;
            tracing::info!(workers = ready, "all workers ready");
            self.actions.push(Action::Notify(Note::Ready));
        } else if self.told_ready && self.replacement().is_none() && self.queue.is_empty() {
            self.actions.push(Action::Notify(Note::Ready));
        }
    }

    /// Queues the replacement of a worker at [`early_report_at`] of its limit, and stops
    /// one whose replacement is ready at the limit itself.
    fn check_max_requests(&mut self, id: WorkerId, now: Instant) {
        let Some(worker) = self.workers.get(&id) else {
            return;
        };
        let Some(limit) = worker.max_requests else {
            return;
        };
        if matches!(worker.phase, Phase::Retiring { .. }) && worker.requests >= limit {
            self.retire(id, Reason::MaxRequests, now);
            return;
        }
        let due = worker.requests >= early_report_at(limit);
        if due && worker.phase == Phase::Ready && !self.is_replaced(id) && self.stop.is_none() {
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
    fn retire(&mut self, id: WorkerId, reason: Reason, now: Instant) {
        // Already stopping (TTOU, a heartbeat timeout, an earlier retire): recorded then.
        let Some(worker) = self.workers.get(&id).filter(|w| w.phase.is_active()) else {
            return;
        };
        let pid = worker.pid;
        let reason = match reason {
            // The count when it stops, not when its replacement was queued.
            Reason::MaxRequests => {
                format!("max_requests ({} requests served)", worker.requests)
            }
            Reason::Reload => reason.to_string(),
        };
        tracing::info!(pid, %reason, "stopping a replaced worker");
        self.stop_worker(id, Signal::TERM, self.settings.graceful_timeout, now);
        self.remember(pid, reason, now);
    }

    fn on_signal(&mut self, signal: Signal, now: Instant) {
        match signal {
            Signal::HUP => self.on_reload(now),
            Signal::TERM => self.begin_stop(Stop::Graceful, now),
            Signal::INT | Signal::QUIT => self.begin_stop(Stop::Fast, now),
            Signal::TTIN => self.resize(1),
            Signal::TTOU => self.resize(-1),
            other => tracing::debug!(signal = ?other, "signal ignored"),
        }
    }

    fn on_reload(&mut self, now: Instant) {
        if self.stop.is_some() {
            return;
        }
        // A worker retiring beside its ready replacement stops now rather than at its
        // limit: the reload replaces that replacement in turn.
        let retiring: Vec<WorkerId> = self.select(|w| matches!(w.phase, Phase::Retiring { .. }));
        for id in retiring {
            self.retire(id, Reason::Reload, now);
        }
        // Replacements queued or under way for `max_requests` now stand for the reload:
        // their old worker stops as soon as the replacement is ready, not at its limit.
        for (_, reason) in &mut self.queue {
            *reason = Reason::Reload;
        }
        if let Some((new, old, _)) = self.replacement()
            && let Some(worker) = self.workers.get_mut(&new)
        {
            worker.phase = Phase::Starting {
                replaces: Some((old, Reason::Reload)),
            };
        }
        // Every worker running now is replaced, the replacement still starting included
        // (it may have been started from the code before this deploy): it is queued and
        // replaced in turn once it is ready.
        let mut queued = 0;
        for id in self.select(|w| w.phase.is_active()) {
            if !self.is_replaced(id) {
                self.queue.push_back((id, Reason::Reload));
                queued += 1;
            }
        }
        tracing::info!(workers = queued, "SIGHUP: rolling reload");
        if self.told_ready {
            // Before the first READY=1 the supervisor is still waiting for the start.
            self.actions.push(Action::Notify(Note::Reloading));
        }
    }

    fn resize(&mut self, by: isize) {
        if self.stop.is_some() {
            return;
        }
        self.target = self.target.saturating_add_signed(by).max(1);
        tracing::info!(workers = self.target, "worker count changed");
    }

    fn begin_stop(&mut self, how: Stop, now: Instant) {
        let how = match self.stop {
            // A second stop signal makes any stop a fast one.
            Some(_) => Stop::Fast,
            None => how,
        };
        self.stop = Some(how);
        self.queue.clear();
        self.backoff.lift();
        self.actions.push(Action::Notify(Note::Stopping));
        let (signal, grace, drain) = match how {
            Stop::Graceful => (
                Signal::TERM,
                self.settings.graceful_timeout,
                self.settings.drain_delay,
            ),
            Stop::Fast => (Signal::QUIT, FAST_STOP_GRACE, Duration::ZERO),
        };
        // Sockets passed in by a supervisor stay open: there, connections queue for the
        // next start, which is the point of socket activation.
        if self.settings.own_sockets && !self.closed {
            let close_at = later(now, drain);
            self.close_at = Some(self.close_at.map_or(close_at, |t| t.min(close_at)));
        }
        tracing::info!(?how, workers = self.workers.len(), ?grace, "stopping");
        let ids: Vec<WorkerId> = self.workers.keys().copied().collect();
        for id in ids {
            self.stop_worker(id, signal, grace, now);
        }
    }

    /// Sends `signal` and gives the worker `grace` before SIGKILL (sent at once when
    /// `signal` is SIGKILL). A worker already stopping keeps the earlier deadline and is
    /// signalled again only to escalate (a graceful stop becoming a fast one, or
    /// SIGKILL): a second SIGTERM would tell a taskward worker nothing new, and some
    /// programs read it as "stop now".
    fn stop_worker(&mut self, id: WorkerId, signal: Signal, grace: Duration, now: Instant) {
        let Some(worker) = self.workers.get_mut(&id) else {
            return;
        };
        let send = match worker.phase {
            Phase::Killed => false,
            _ if signal == Signal::KILL => {
                worker.phase = Phase::Killed;
                true
            }
            Phase::Stopping { kill_at } => {
                worker.phase = Phase::Stopping {
                    kill_at: kill_at.min(later(now, grace)),
                };
                signal != Signal::TERM
            }
            _ => {
                worker.phase = Phase::Stopping {
                    kill_at: later(now, grace),
                };
                true
            }
        };
        if send {
            self.actions.push(Action::Signal { id, signal });
        }
    }

    /// A descendant of a worker that is gone outlived it: it is named (log, status) and
    /// stopped like a worker, SIGTERM then SIGKILL at the grace deadline. The orphan of
    /// a worker still running is left alone: adopted, it is reaped when it exits.
    fn on_orphan(&mut self, pid: u32, worker: Option<WorkerId>, command: String, now: Instant) {
        let alive = worker.is_some_and(|id| self.workers.contains_key(&id));
        if alive || self.leftovers.contains_key(&pid) {
            return;
        }
        let of = worker.map_or_else(|| "a worker".to_owned(), |id| format!("worker {id}"));
        tracing::warn!(pid, command, "a process of {of} outlived it: stopping it");
        self.remember(pid, format!("leftover of {of}: {command}"), now);
        let grace = match self.stop {
            Some(Stop::Fast) => FAST_STOP_GRACE,
            _ => self.settings.graceful_timeout,
        };
        self.leftovers.insert(pid, Some(later(now, grace)));
        self.actions.push(Action::SignalLeftover {
            pid,
            signal: Signal::TERM,
        });
    }

    // ------------------------------------------------------------ timers

    fn check_timers(&mut self, now: Instant) {
        if self.close_at.is_some_and(|at| now >= at) {
            self.close_at = None;
            self.closed = true;
            self.actions.push(Action::CloseListeners);
        }
        for (&pid, kill_at) in &mut self.leftovers {
            if kill_at.is_some_and(|at| now >= at) {
                tracing::warn!(pid, "leftover process did not stop in time: SIGKILL");
                *kill_at = None;
                self.actions.push(Action::SignalLeftover {
                    pid,
                    signal: Signal::KILL,
                });
            }
        }
        let mut killed = Vec::new();
        for (&id, worker) in &mut self.workers {
            match worker.phase {
                Phase::Stopping { kill_at } if now >= kill_at => {
                    tracing::warn!(pid = worker.pid, "worker did not stop in time: SIGKILL");
                    worker.phase = Phase::Killed;
                    self.actions.push(Action::Signal {
                        id,
                        signal: Signal::KILL,
                    });
                    if self.stop.is_some() {
                        self.killed_at_stop = true;
                    }
                }
                Phase::Starting { replaces }
                    if now >= later(worker.started, self.settings.reload_timeout) =>
                {
                    tracing::error!(pid = worker.pid, timeout = ?self.settings.reload_timeout, "worker never became ready: SIGKILL");
                    killed.push((id, worker.pid, replaces, None, "never became ready"));
                }
                Phase::Ready | Phase::Retiring { .. }
                    if self.settings.timeout.is_some_and(|timeout| {
                        worker.triggered || now >= later(worker.last_beat, timeout)
                    }) =>
                {
                    tracing::error!(pid = worker.pid, timeout = ?self.settings.timeout, "worker stopped sending heartbeats: SIGKILL");
                    killed.push((
                        id,
                        worker.pid,
                        None,
                        worker.ready_since,
                        "heartbeat timeout",
                    ));
                }
                _ => {}
            }
        }
        let retiring = self.select(
            |w| matches!(w.phase, Phase::Retiring { since } if now >= later(since, RETIRE_WITHIN)),
        );
        for id in retiring {
            tracing::info!(pid = self.pid(id), within = ?RETIRE_WITHIN, "worker did not reach its max_requests: stopping it anyway");
            self.retire(id, Reason::MaxRequests, now);
        }
        for (id, pid, replaces, ready_since, reason) in killed {
            self.stop_worker(id, Signal::KILL, NEVER, now);
            if replaces.is_some() {
                tracing::error!(pid, "replacement abandoned: the old workers keep serving");
                self.abandon_replacements();
            }
            self.remember(pid, reason.to_owned(), now);
            self.backoff.died(ready_since, now);
        }
    }

    // ------------------------------------------------------------ lookups

    fn find(&self, wanted: impl Fn(&Worker) -> bool) -> Option<WorkerId> {
        self.workers
            .iter()
            .find(|(_, w)| wanted(w))
            .map(|(&id, _)| id)
    }

    fn select(&self, wanted: impl Fn(&Worker) -> bool) -> Vec<WorkerId> {
        self.workers
            .iter()
            .filter(|(_, w)| wanted(w))
            .map(|(&id, _)| id)
            .collect()
    }

    fn pid(&self, id: WorkerId) -> u32 {
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

mod backoff;
mod phase;
#[cfg(test)]
mod tests;
