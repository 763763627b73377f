//! Every case of a worker's life, driven through [`Lifecycle::handle`] under a clock the
//! test moves by hand: a [`Sim`] plays the master's loop (it starts "processes" by giving
//! out pids, records the signals and notes, fires the timers in order) and the workers
//! (READY=1, request counts, exits) at the moments each test chooses.

use std::collections::{BTreeMap, VecDeque};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::{Duration, Instant, SystemTime};

use rustix::process::Signal;

use super::{Action, Event, Lifecycle, Note, Outcome, Settings, WorkerId};
use crate::admin::Status;
use crate::notify::Notification;

const MS: Duration = Duration::from_millis(1);
const SECOND: Duration = Duration::from_secs(1);

/// The settings of `taskward serve -w N` with the defaults, but no heartbeats.
fn settings(workers: usize) -> Settings {
    Settings {
        workers,
        // Heartbeats are tested on their own: the other tests let minutes pass silently.
        timeout: None,
        graceful_timeout: Duration::from_secs(30),
        reload_timeout: Duration::from_secs(60),
        master_pid: 1,
        drain_delay: Duration::ZERO,
        own_sockets: true,
    }
}

/// The master's loop and its workers, played by the test.
struct Sim {
    core: Lifecycle,
    now: Instant,
    next_pid: u32,
    /// The limit every worker is given (`--max-requests` without jitter).
    max_requests: Option<u64>,
    /// Whether starting a worker fails (the program cannot be executed).
    spawn_fails: bool,
    ids: BTreeMap<u32, WorkerId>,
    pids: BTreeMap<WorkerId, u32>,
    /// Every worker started: pid, when.
    started: Vec<(u32, Instant)>,
    /// Every signal sent: pid, signal.
    signals: Vec<(u32, Signal)>,
    notes: Vec<Note>,
    reply: Option<Status>,
    /// When the listening sockets were closed.
    closed_at: Option<Instant>,
}

impl Sim {
    fn new(settings: Settings) -> Self {
        Self::with_max_requests(settings, None)
    }

    fn with_max_requests(settings: Settings, max_requests: Option<u64>) -> Self {
        let now = Instant::now();
        let mut sim = Self {
            core: Lifecycle::new(settings, now, SystemTime::UNIX_EPOCH),
            now,
            next_pid: 100,
            max_requests,
            spawn_fails: false,
            ids: BTreeMap::new(),
            pids: BTreeMap::new(),
            started: Vec::new(),
            signals: Vec::new(),
            notes: Vec::new(),
            reply: None,
            closed_at: None,
        };
        sim.apply(Event::Timer);
        sim
    }

    /// `-w n`, every worker ready.
    fn ready_workers(n: usize) -> Self {
        let mut sim = Self::new(settings(n));
        sim.ready_all();
        sim
    }

    /// Hands `event` to the policy now and carries out the actions, as `master.rs` does.
    fn apply(&mut self, event: Event) {
        let mut actions: VecDeque<Action> = self.core.handle(event, self.now).into();
        while let Some(action) = actions.pop_front() {
            match action {
                Action::Start { id } => {
                    let event = if self.spawn_fails {
                        Event::SpawnFailed { id }
                    } else {
                        let pid = self.next_pid;
                        self.next_pid += 1;
                        self.ids.insert(pid, id);
                        self.pids.insert(id, pid);
                        self.started.push((pid, self.now));
                        Event::Spawned {
                            id,
                            pid,
                            max_requests: self.max_requests,
                        }
                    };
                    actions.extend(self.core.handle(event, self.now));
                }
                Action::Signal { id, signal } => self.signals.push((self.pids[&id], signal)),
                Action::SignalLeftover { pid, signal } => self.signals.push((pid, signal)),
                Action::Notify(note) => self.notes.push(note),
                Action::Reply(status) => self.reply = Some(*status),
                Action::CloseListeners => {
                    assert!(self.closed_at.is_none(), "closed twice");
                    self.closed_at = Some(self.now);
                }
            }
        }
    }

    /// Lets `by` pass, firing each timer at its moment, as the loop's sleep does.
    fn advance(&mut self, by: Duration) {
        let end = self.now + by;
        for _ in 0..10_000 {
            match self.core.deadline() {
                Some(at) if at <= end => {
                    self.now = self.now.max(at);
                    self.apply(Event::Timer);
                }
                _ => {
                    self.now = end;
                    return;
                }
            }
        }
        panic!("a timer keeps firing without effect");
    }

    fn notify(&mut self, pid: u32, datagram: &str) {
        let message = Notification::parse(datagram.as_bytes()).expect("a valid datagram");
        self.apply(Event::Notified { pid, message });
    }

    fn ready(&mut self, pid: u32) {
        self.notify(pid, "READY=1");
    }

    /// Every starting worker says READY=1, in turn, until none is starting.
    fn ready_all(&mut self) {
        while let Some(&pid) = self.pids_in("starting").first() {
            self.ready(pid);
        }
    }

    fn requests(&mut self, pid: u32, count: u64) {
        self.notify(pid, &format!("X_TASKWARD_REQUESTS={count}"));
    }

    /// Worker `pid` exits with `status` (as `waitpid` gives it: `code << 8`, or a signal).
    fn exit(&mut self, pid: u32, status: i32) {
        let id = self.ids[&pid];
        self.apply(Event::Exited {
            id,
            status: Ok(ExitStatus::from_raw(status)),
        });
    }

    fn exit_code(&mut self, pid: u32, code: i32) {
        self.exit(pid, code << 8);
    }

    fn killed(&mut self, pid: u32) {
        self.exit(pid, Signal::KILL.as_raw());
    }

    fn signal(&mut self, signal: Signal) {
        self.apply(Event::Signal(signal));
    }

    /// Every worker told to stop exits: 0 after SIGTERM/SIGQUIT, by SIGKILL after it.
    fn obey(&mut self) {
        let live: Vec<u32> = self.status().workers.iter().map(|w| w.pid).collect();
        for pid in live {
            match self.signals_to(pid).last() {
                Some(&Signal::KILL) => self.killed(pid),
                Some(_) => self.exit_code(pid, 0),
                None => {}
            }
        }
    }

    fn status(&mut self) -> Status {
        self.apply(Event::StatusRequest);
        self.reply.take().expect("a status request is answered")
    }

    fn pids_in(&mut self, state: &str) -> Vec<u32> {
        self.status()
            .workers
            .iter()
            .filter(|w| w.state == state)
            .map(|w| w.pid)
            .collect()
    }

    fn signals_to(&self, pid: u32) -> Vec<Signal> {
        self.signals
            .iter()
            .filter(|(to, _)| *to == pid)
            .map(|(_, signal)| *signal)
            .collect()
    }

    fn reasons(&mut self, pid: u32) -> Vec<String> {
        self.status()
            .restarts
            .iter()
            .filter(|r| r.pid == pid)
            .map(|r| r.reason.clone())
            .collect()
    }

    fn last_started(&self) -> u32 {
        self.started.last().expect("a worker started").0
    }
}

// ------------------------------------------------------------------ starting

#[test]
fn starts_the_wanted_workers_and_says_ready_once_all_are() {
    let mut sim = Sim::new(settings(3));
    assert_eq!(sim.pids_in("starting").len(), 3);
    let first = sim.pids_in("starting");
    sim.ready(first[0]);
    sim.ready(first[1]);
    assert!(sim.notes.is_empty(), "two of three ready: {:?}", sim.notes);
    sim.ready(first[2]);
    assert_eq!(sim.notes, [Note::Ready]);
    assert_eq!(sim.started.len(), 3, "nothing more started");
}

// ------------------------------------------------------------------ reloads

// Replaces lifecycle.rs' ten_reloads_under_load_fail_no_request and
// capacity_never_dips_during_a_reload (the policy's part; those tests stay for the
// requests): each reload starts one new worker at a time and stops an old one only once
// its replacement is ready, so the ready workers never drop below the two wanted.
#[test]
fn a_reload_replaces_each_worker_one_at_a_time_behind_ready() {
    let mut sim = Sim::ready_workers(2);
    for _ in 0..10 {
        let before = sim.pids_in("ready");
        sim.signal(Signal::HUP);
        loop {
            assert!(sim.pids_in("ready").len() >= 2, "capacity dipped");
            let starting = sim.pids_in("starting");
            assert!(
                starting.len() <= 1,
                "one replacement at a time: {starting:?}"
            );
            let Some(&new) = starting.first() else {
                break;
            };
            sim.ready(new);
            sim.obey();
        }
        let after = sim.pids_in("ready");
        assert_eq!(after.len(), 2);
        assert!(
            after.iter().all(|p| !before.contains(p)),
            "{before:?} → {after:?}"
        );
        assert_eq!(sim.status().workers.len(), 2);
    }
    let reloads = sim
        .status()
        .restarts
        .iter()
        .filter(|r| r.reason == "reload (SIGHUP)")
        .count();
    assert_eq!(reloads, 20, "two workers replaced per reload");
    let reloading = sim.notes.iter().filter(|n| **n == Note::Reloading).count();
    assert_eq!(reloading, 10);
    assert_eq!(sim.notes.last(), Some(&Note::Ready), "the reload is over");
    sim.signal(Signal::TERM);
    sim.obey();
    assert_eq!(sim.core.finished(), Some(Outcome::Clean));
}

// The policy's side of systemd.rs' plays_well_with_a_systemd_like_supervisor: READY=1
// once all are ready, RELOADING=1 at a SIGHUP and READY=1 once the reload is done (not
// before), STOPPING=1 at SIGTERM.
#[test]
fn the_supervisor_hears_ready_reloading_ready_stopping() {
    let mut sim = Sim::ready_workers(2);
    sim.signal(Signal::HUP);
    assert_eq!(sim.notes, [Note::Ready, Note::Reloading]);
    sim.ready(sim.last_started());
    sim.obey();
    assert_eq!(
        sim.notes,
        [Note::Ready, Note::Reloading],
        "one replaced, one to go"
    );
    sim.ready(sim.last_started());
    sim.obey();
    assert_eq!(sim.notes, [Note::Ready, Note::Reloading, Note::Ready]);
    sim.signal(Signal::TERM);
    assert_eq!(sim.notes.last(), Some(&Note::Stopping));
}

// Replaces odd_moments.rs' policy part of a_sighup_before_the_first_ready_is_honoured:
// the starting workers are replaced in turn once ready, and the supervisor, still waiting
// for the start, is not told RELOADING=1.
#[test]
fn a_sighup_before_the_first_ready_replaces_the_starting_workers() {
    let mut sim = Sim::new(settings(2));
    let first = sim.pids_in("starting");
    sim.signal(Signal::HUP);
    assert!(!sim.notes.contains(&Note::Reloading), "{:?}", sim.notes);
    for _ in 0..8 {
        sim.ready_all();
        sim.obey();
    }
    let ready = sim.pids_in("ready");
    assert_eq!(ready.len(), 2);
    assert_eq!(sim.status().workers.len(), 2);
    assert!(
        ready.iter().all(|p| !first.contains(p)),
        "{first:?} → {ready:?}"
    );
}

// Replaces odd_moments.rs' policy part of a_burst_of_sighups_under_load_settles_cleanly.
#[test]
fn a_burst_of_sighups_settles_with_the_wanted_workers() {
    let mut sim = Sim::ready_workers(2);
    let before = sim.pids_in("ready");
    for _ in 0..20 {
        sim.signal(Signal::HUP);
        if let Some(&new) = sim.pids_in("starting").first() {
            sim.ready(new);
            sim.obey();
        }
    }
    for _ in 0..100 {
        sim.ready_all();
        sim.obey();
    }
    let ready = sim.pids_in("ready");
    assert_eq!(ready.len(), 2);
    assert_eq!(sim.status().workers.len(), 2);
    assert!(ready.iter().all(|p| !before.contains(p)));
    assert!(sim.pids_in("starting").is_empty(), "settled");
}

// Replaces supervision.rs' a_failed_reload_keeps_the_old_workers (policy part): the
// replacement exits before READY; the reload is abandoned, the old workers keep serving,
// the supervisor hears the reload is over, and the next SIGHUP tries again.
#[test]
fn a_replacement_that_exits_before_ready_is_abandoned() {
    let mut sim = Sim::ready_workers(2);
    let before = sim.pids_in("ready");
    sim.signal(Signal::HUP);
    let new = sim.last_started();
    sim.exit_code(new, 1);
    assert_eq!(sim.pids_in("ready"), before, "the old workers stay");
    assert!(
        sim.signals.is_empty(),
        "nobody signalled: {:?}",
        sim.signals
    );
    assert_eq!(sim.notes.last(), Some(&Note::ReloadFailed));
    assert_eq!(sim.reasons(new), ["replacement failed: exit code 1"]);
    sim.advance(SECOND);
    assert_eq!(sim.started.len(), 3, "the second worker is not replaced");
    sim.signal(Signal::HUP);
    sim.ready_all();
    sim.obey();
    sim.ready_all();
    sim.obey();
    let after = sim.pids_in("ready");
    assert!(
        after.iter().all(|p| !before.contains(p)),
        "retried: {after:?}"
    );
}

// Replaces supervision.rs' a_reload_that_cannot_execute_the_program_can_be_retried
// (policy part; that test stays for the exec failure itself).
#[test]
fn a_replacement_that_cannot_start_is_abandoned_and_the_next_reload_retries() {
    let mut sim = Sim::ready_workers(2);
    let before = sim.pids_in("ready");
    sim.spawn_fails = true;
    sim.signal(Signal::HUP);
    assert_eq!(sim.pids_in("ready"), before);
    assert_eq!(sim.notes.last(), Some(&Note::ReloadFailed));
    sim.spawn_fails = false;
    sim.advance(SECOND);
    assert_eq!(sim.started.len(), 2, "nothing queued is left to replace");
    sim.signal(Signal::HUP);
    for _ in 0..2 {
        sim.ready_all();
        sim.obey();
    }
    let after = sim.pids_in("ready");
    assert_eq!(after.len(), 2);
    assert!(after.iter().all(|p| !before.contains(p)), "{after:?}");
}

// Replaces supervision.rs' a_reload_stuck_starting_is_abandoned_at_its_timeout.
#[test]
fn a_replacement_stuck_starting_is_killed_at_the_reload_timeout() {
    let mut sim = Sim::ready_workers(2);
    let before = sim.pids_in("ready");
    sim.signal(Signal::HUP);
    let new = sim.last_started();
    sim.advance(Duration::from_secs(60) - MS);
    assert!(sim.signals_to(new).is_empty());
    sim.advance(MS);
    assert_eq!(sim.signals_to(new), [Signal::KILL]);
    assert_eq!(sim.reasons(new), ["never became ready"]);
    assert_eq!(sim.notes.last(), Some(&Note::ReloadFailed));
    sim.killed(new);
    sim.advance(SECOND);
    assert_eq!(sim.pids_in("ready"), before, "the old workers keep serving");
    assert_eq!(
        sim.started.len(),
        3,
        "the reload is not tried again by itself"
    );
}

// The worker being replaced dies before its replacement is ready: the replacement takes
// its place at once, and nothing more is started for the crash (one worker too many).
#[test]
fn the_old_worker_dying_first_hands_its_place_to_its_replacement() {
    let mut sim = Sim::ready_workers(2);
    let before = sim.pids_in("ready");
    sim.signal(Signal::HUP);
    let new = sim.last_started();
    sim.killed(before[0]);
    sim.advance(SECOND);
    assert_eq!(sim.started.len(), 4, "the crash starts one, not two");
    sim.ready(new);
    assert!(
        sim.signals_to(before[1]).is_empty(),
        "no one retired for it"
    );
}

// ------------------------------------------------------------------ max_requests

/// `-w 2 --max-requests 100`, both workers ready; worker pids.
fn recycling() -> (Sim, Vec<u32>) {
    let mut sim = Sim::with_max_requests(settings(2), Some(100));
    sim.ready_all();
    let pids = sim.pids_in("ready");
    (sim, pids)
}

/// Brings `pid` to a ready replacement: it is then retiring.
fn retire(sim: &mut Sim, pid: u32) -> u32 {
    sim.requests(pid, 75);
    let new = sim.last_started();
    sim.ready(new);
    assert_eq!(sim.pids_in("retiring"), [pid]);
    new
}

// Replaces the policy part of lifecycle.rs' max_requests tests (which stay for the
// counts a real worker reports): the replacement starts at three quarters of the limit,
// the old worker serves on beside it and is stopped at the limit, not before.
#[test]
fn max_requests_starts_the_replacement_early_and_stops_at_the_limit() {
    let (mut sim, pids) = recycling();
    sim.requests(pids[0], 74);
    assert_eq!(sim.started.len(), 2, "not yet");
    sim.requests(pids[0], 75);
    assert_eq!(sim.started.len(), 3, "the replacement starts at 3/4");
    let new = sim.last_started();
    sim.requests(pids[0], 80);
    assert_eq!(sim.started.len(), 3, "queued once");
    sim.ready(new);
    assert_eq!(sim.pids_in("retiring"), [pids[0]]);
    assert!(sim.signals_to(pids[0]).is_empty(), "serves on to its limit");
    sim.requests(pids[0], 99);
    assert!(sim.signals_to(pids[0]).is_empty());
    sim.requests(pids[0], 100);
    assert_eq!(sim.signals_to(pids[0]), [Signal::TERM]);
    assert_eq!(sim.reasons(pids[0]), ["max_requests (100 requests served)"]);
    sim.obey();
    assert_eq!(sim.pids_in("ready").len(), 2);
    assert_eq!(sim.started.len(), 3, "nothing more");
}

// A worker whose replacement becomes ready after it reached its limit stops at once.
#[test]
fn a_worker_past_its_limit_when_its_replacement_is_ready_stops_at_once() {
    let (mut sim, pids) = recycling();
    sim.requests(pids[0], 75);
    let new = sim.last_started();
    sim.requests(pids[0], 101);
    sim.ready(new);
    assert_eq!(sim.signals_to(pids[0]), [Signal::TERM]);
    assert_eq!(sim.reasons(pids[0]), ["max_requests (101 requests served)"]);
}

// Replaces lifecycle.rs' a_retiring_worker_that_never_reaches_its_limit_is_stopped.
#[test]
fn a_retiring_worker_that_never_reaches_its_limit_is_stopped_after_five_seconds() {
    let (mut sim, pids) = recycling();
    retire(&mut sim, pids[0]);
    sim.advance(Duration::from_secs(5) - MS);
    assert!(sim.signals_to(pids[0]).is_empty());
    sim.advance(MS);
    assert_eq!(sim.signals_to(pids[0]), [Signal::TERM]);
    assert_eq!(sim.reasons(pids[0]), ["max_requests (75 requests served)"]);
    sim.obey();
    assert_eq!(sim.status().workers.len(), 2);
}

// Replaces lifecycle.rs' a_reload_stops_a_retiring_worker_at_once.
#[test]
fn a_reload_stops_a_retiring_worker_at_once() {
    let (mut sim, pids) = recycling();
    retire(&mut sim, pids[0]);
    let before: Vec<u32> = sim.status().workers.iter().map(|w| w.pid).collect();
    sim.signal(Signal::HUP);
    assert_eq!(sim.signals_to(pids[0]), [Signal::TERM]);
    assert_eq!(sim.reasons(pids[0]), ["reload (SIGHUP)"]);
    sim.obey();
    for _ in 0..3 {
        sim.ready_all();
        sim.obey();
    }
    let after = sim.pids_in("ready");
    assert_eq!(after.len(), 2);
    assert_eq!(sim.status().workers.len(), 2);
    assert!(
        after.iter().all(|p| !before.contains(p)),
        "every other one replaced: {before:?} → {after:?}"
    );
}

// Replaces lifecycle.rs'
// a_reload_during_a_recycling_stops_the_old_worker_when_its_replacement_is_ready.
#[test]
fn a_reload_during_a_recycling_stops_the_old_worker_when_its_replacement_is_ready() {
    let (mut sim, pids) = recycling();
    sim.requests(pids[0], 75);
    let new = sim.last_started();
    sim.signal(Signal::HUP);
    sim.ready(new);
    assert!(sim.pids_in("retiring").is_empty(), "not left retiring");
    assert_eq!(sim.signals_to(pids[0]), [Signal::TERM]);
    assert_eq!(sim.reasons(pids[0]), ["reload (SIGHUP)"]);
    for _ in 0..3 {
        sim.obey();
        assert!(sim.pids_in("retiring").is_empty());
        sim.ready_all();
    }
    sim.obey();
    let after = sim.pids_in("ready");
    assert_eq!(after.len(), 2);
    assert!(
        after.iter().all(|p| !pids.contains(p) && *p != new),
        "{after:?}"
    );
}

// Replaces lifecycle.rs' a_retiring_worker_that_dies_is_not_replaced_twice.
#[test]
fn a_retiring_worker_that_dies_is_not_replaced_and_earns_no_backoff() {
    let (mut sim, pids) = recycling();
    retire(&mut sim, pids[0]);
    sim.killed(pids[0]);
    assert_eq!(
        sim.reasons(pids[0]),
        ["exited while retiring: killed by SIGKILL"]
    );
    sim.advance(SECOND);
    assert_eq!(sim.started.len(), 3, "nothing started for it");
    assert_eq!(sim.status().workers.len(), 2);
    // No backoff earned: the next crash is restarted after the first delay, not the second.
    let next = sim.pids_in("ready")[0];
    sim.killed(next);
    sim.advance(Duration::from_millis(100) - MS);
    assert_eq!(sim.started.len(), 3);
    sim.advance(MS);
    assert_eq!(sim.started.len(), 4);
}

// ------------------------------------------------------------------ crashes

// Replaces the policy part of lifecycle.rs'
// a_killed_worker_is_replaced_and_costs_only_its_requests (which stays for the requests).
#[test]
fn a_crashed_worker_is_replaced_and_the_reason_recorded() {
    let mut sim = Sim::ready_workers(2);
    let victim = sim.pids_in("ready")[0];
    sim.killed(victim);
    assert_eq!(sim.reasons(victim), ["crashed: killed by SIGKILL"]);
    sim.advance(Duration::from_millis(100));
    assert_eq!(sim.started.len(), 3);
    sim.ready_all();
    assert_eq!(sim.pids_in("ready").len(), 2);
}

// Replaces supervision.rs' a_crash_loop_backs_off: each start of a program that exits at
// once waits twice as long as the one before, and crashes that left the 60 s window no
// longer count.
#[test]
fn a_crash_loop_backs_off_doubling() {
    let ms = Duration::from_millis;
    let mut sim = Sim::new(settings(1));
    for delay in [100, 200, 400, 800, 1600] {
        let pid = sim.last_started();
        sim.exit_code(pid, 3);
        assert_eq!(sim.reasons(pid), ["crashed: exit code 3"]);
        sim.advance(ms(delay) - MS);
        assert_eq!(sim.last_started(), pid, "held for {delay} ms");
        sim.advance(MS);
        assert_ne!(sim.last_started(), pid, "restarted after {delay} ms");
    }
    // Once the crashes have left the 60 s window, the delay starts over: this one never
    // says READY and is killed at the reload timeout, 60 s on.
    let pid = sim.last_started();
    sim.advance(Duration::from_secs(60));
    assert_eq!(sim.signals_to(pid), [Signal::KILL]);
    sim.killed(pid);
    let count = sim.started.len();
    sim.advance(ms(100) - MS);
    assert_eq!(sim.started.len(), count);
    sim.advance(MS);
    assert_eq!(
        sim.started.len(),
        count + 1,
        "the old crashes left the window"
    );
}

// ------------------------------------------------------------------ heartbeats

// Replaces supervision.rs' a_worker_without_heartbeats_is_killed_and_replaced.
#[test]
fn a_silent_worker_is_killed_at_the_heartbeat_timeout_and_replaced() {
    let mut sim = Sim::new(Settings {
        timeout: Some(SECOND),
        ..settings(1)
    });
    sim.ready_all();
    let pid = sim.pids_in("ready")[0];
    for _ in 0..5 {
        sim.advance(SECOND - MS);
        sim.notify(pid, "WATCHDOG=1");
    }
    assert!(sim.signals_to(pid).is_empty(), "heartbeats keep it");
    sim.advance(SECOND - MS);
    assert!(sim.signals_to(pid).is_empty());
    sim.advance(MS);
    assert_eq!(sim.signals_to(pid), [Signal::KILL]);
    assert_eq!(sim.reasons(pid), ["heartbeat timeout"]);
    sim.killed(pid);
    sim.advance(SECOND);
    assert_eq!(sim.started.len(), 2, "replaced");
}

// WATCHDOG=trigger: the worker asks to be killed as if silent.
#[test]
fn a_watchdog_trigger_kills_at_once() {
    let mut sim = Sim::new(Settings {
        timeout: Some(Duration::from_secs(30)),
        ..settings(1)
    });
    sim.ready_all();
    let pid = sim.pids_in("ready")[0];
    sim.notify(pid, "WATCHDOG=trigger");
    assert_eq!(sim.signals_to(pid), [Signal::KILL]);
    assert_eq!(sim.reasons(pid), ["heartbeat timeout"]);
}

// A trigger before READY is overtaken by the READY=1 that follows, which is a heartbeat.
#[test]
fn a_watchdog_trigger_before_ready_is_overtaken_by_ready() {
    let mut sim = Sim::new(Settings {
        timeout: Some(Duration::from_secs(30)),
        ..settings(1)
    });
    let pid = sim.pids_in("starting")[0];
    sim.notify(pid, "WATCHDOG=trigger");
    sim.ready(pid);
    assert!(sim.signals_to(pid).is_empty(), "{:?}", sim.signals);
    sim.notify(pid, "READY=1\nWATCHDOG=trigger");
    assert_eq!(sim.signals_to(pid), [Signal::KILL], "a trigger once ready");
}

// ------------------------------------------------------------------ counts

// Replaces the policy part of supervision.rs' ttin_and_ttou_change_the_worker_count.
#[test]
fn ttin_and_ttou_change_the_count_gracefully() {
    let mut sim = Sim::ready_workers(2);
    let first = sim.pids_in("ready");
    sim.signal(Signal::TTIN);
    sim.ready_all();
    assert_eq!(sim.pids_in("ready").len(), 3);
    sim.signal(Signal::TTOU);
    assert_eq!(sim.signals_to(first[0]), [Signal::TERM], "the oldest goes");
    sim.obey();
    sim.signal(Signal::TTOU);
    sim.obey();
    sim.signal(Signal::TTOU);
    assert_eq!(sim.status().target, 1, "never below one");
    assert_eq!(sim.status().workers.len(), 1);
}

// ------------------------------------------------------------------ stopping

// Replaces the policy part of supervision.rs'
// a_worker_ignoring_sigterm_is_killed_and_the_exit_code_says_so.
#[test]
fn a_graceful_stop_kills_at_the_deadline_and_says_so() {
    let mut sim = Sim::ready_workers(2);
    let pids = sim.pids_in("ready");
    sim.signal(Signal::TERM);
    assert_eq!(sim.notes.last(), Some(&Note::Stopping));
    sim.exit_code(pids[0], 0);
    sim.advance(Duration::from_secs(30) - MS);
    assert_eq!(sim.signals_to(pids[1]), [Signal::TERM]);
    sim.advance(MS);
    assert_eq!(sim.signals_to(pids[1]), [Signal::TERM, Signal::KILL]);
    assert_eq!(sim.core.finished(), None);
    sim.killed(pids[1]);
    assert_eq!(sim.core.finished(), Some(Outcome::Killed));
    assert_eq!(sim.started.len(), 2, "nothing started while stopping");
}

// Replaces the policy part of lifecycle.rs' sigterm_during_a_drain_cuts_nothing: a
// worker already draining is not signalled again, and keeps its deadline.
#[test]
fn a_sigterm_during_a_drain_does_not_signal_the_draining_worker_again() {
    let mut sim = Sim::ready_workers(1);
    let old = sim.pids_in("ready")[0];
    sim.signal(Signal::HUP);
    sim.ready_all();
    assert_eq!(sim.signals_to(old), [Signal::TERM]);
    sim.advance(Duration::from_secs(10));
    sim.signal(Signal::TERM);
    assert_eq!(sim.signals_to(old), [Signal::TERM], "not signalled again");
    sim.advance(Duration::from_secs(20) - MS);
    assert_eq!(sim.signals_to(old), [Signal::TERM]);
    sim.advance(MS);
    assert_eq!(
        sim.signals_to(old),
        [Signal::TERM, Signal::KILL],
        "its first deadline"
    );
}

// Replaces the policy part of supervision.rs' sigint_stops_fast_without_waiting_for_requests;
// and a second stop signal makes a graceful stop fast.
#[test]
fn a_fast_stop_sends_sigquit_and_kills_after_two_seconds() {
    let mut sim = Sim::ready_workers(1);
    let pid = sim.pids_in("ready")[0];
    sim.signal(Signal::INT);
    assert_eq!(sim.signals_to(pid), [Signal::QUIT]);
    sim.advance(Duration::from_secs(2));
    assert_eq!(sim.signals_to(pid), [Signal::QUIT, Signal::KILL]);

    let mut sim = Sim::ready_workers(1);
    let pid = sim.pids_in("ready")[0];
    sim.signal(Signal::TERM);
    sim.signal(Signal::TERM);
    assert_eq!(sim.signals_to(pid), [Signal::TERM, Signal::QUIT]);
    sim.exit_code(pid, 0);
    assert_eq!(sim.core.finished(), Some(Outcome::Clean));
}

// Replaces the policy part of odd_moments.rs' sigterm_while_workers_start_stops_them_all.
#[test]
fn sigterm_while_workers_start_stops_them_and_starts_nothing() {
    let mut sim = Sim::new(settings(2));
    let starting = sim.pids_in("starting");
    sim.signal(Signal::TERM);
    for pid in &starting {
        assert_eq!(sim.signals_to(*pid), [Signal::TERM]);
    }
    sim.ready_all();
    assert!(!sim.notes.contains(&Note::Ready), "{:?}", sim.notes);
    sim.obey();
    sim.advance(Duration::from_secs(60));
    assert_eq!(sim.started.len(), 2);
    assert_eq!(sim.core.finished(), Some(Outcome::Clean));
    assert_eq!(sim.core.deadline(), None);
}

// ------------------------------------------------------------------ notifications

// Replaces the policy part of supervision.rs' foreign_and_malformed_datagrams_are_ignored.
#[test]
fn a_datagram_from_a_process_that_is_not_a_worker_changes_nothing() {
    let mut sim = Sim::new(settings(1));
    sim.notify(4242, "READY=1\nX_TASKWARD_REQUESTS=99");
    let status = sim.status();
    assert_eq!(status.workers[0].state, "starting");
    assert_eq!(status.workers[0].requests, 0);
}

#[test]
fn the_status_names_each_phase() {
    let (mut sim, pids) = recycling();
    sim.requests(pids[0], 75);
    let states: Vec<String> = sim
        .status()
        .workers
        .iter()
        .map(|w| w.state.clone())
        .collect();
    assert_eq!(states, ["ready", "ready", "starting"]);
    let new = sim.last_started();
    sim.ready(new);
    sim.signal(Signal::TTOU);
    sim.notify(new, "STATUS=serving");
    let status = sim.status();
    let states: Vec<&str> = status.workers.iter().map(|w| w.state.as_str()).collect();
    assert_eq!(states, ["retiring", "stopping", "ready"]);
    assert_eq!(status.workers[2].status, "serving");
    assert_eq!(status.target, 1);
}

// ------------------------------------------------------------------ young deaths

// Five long-lived workers killed 10 s apart are each replaced at the moment of their
// death: no crash backoff for workers that had served for minutes.
#[test]
fn long_lived_workers_killed_ten_seconds_apart_are_replaced_at_once() {
    let mut sim = Sim::ready_workers(5);
    let old = sim.pids_in("ready");
    sim.advance(Duration::from_secs(300));
    for (n, pid) in old.into_iter().enumerate() {
        sim.killed(pid);
        assert_eq!(
            sim.started.len(),
            6 + n,
            "replaced at once after kill {}",
            n + 1
        );
        assert_eq!(sim.started.last().map(|s| s.1), Some(sim.now));
        sim.ready_all();
        sim.advance(Duration::from_secs(10));
    }
}

// A worker that dies soon after READY is still a crash loop's: the backoff doubles.
#[test]
fn workers_dying_soon_after_ready_back_off() {
    let mut sim = Sim::ready_workers(1);
    for delay in [100, 200, 400] {
        sim.advance(Duration::from_secs(9));
        let pid = sim.pids_in("ready")[0];
        sim.killed(pid);
        sim.advance(Duration::from_millis(delay) - MS);
        assert_eq!(sim.last_started(), pid, "held for {delay} ms");
        sim.advance(MS);
        sim.ready_all();
    }
}

// A worker killed at the heartbeat timeout after serving for minutes is replaced at once.
#[test]
fn a_long_lived_worker_killed_for_silence_is_replaced_at_once() {
    let mut sim = Sim::new(Settings {
        timeout: Some(Duration::from_secs(30)),
        ..settings(1)
    });
    sim.ready_all();
    let pid = sim.pids_in("ready")[0];
    for _ in 0..10 {
        sim.advance(Duration::from_secs(20));
        sim.notify(pid, "WATCHDOG=1");
    }
    sim.advance(Duration::from_secs(30));
    assert_eq!(sim.signals_to(pid), [Signal::KILL]);
    sim.killed(pid);
    assert_eq!(sim.started.len(), 2, "replaced at once");
}

// ------------------------------------------------------------------ EX_CONFIG

// A worker exiting with EX_CONFIG (78) before READY stops the master (exit code 2 in
// main) instead of being restarted forever.
#[test]
fn a_worker_exiting_with_ex_config_before_ready_stops_the_master() {
    let mut sim = Sim::new(settings(2));
    let pids = sim.pids_in("starting");
    sim.exit_code(pids[0], 78);
    assert_eq!(
        sim.signals_to(pids[1]),
        [Signal::TERM],
        "the others are stopped"
    );
    assert_eq!(
        sim.reasons(pids[0]),
        ["bad configuration: exit code 78 (EX_CONFIG)"]
    );
    sim.advance(Duration::from_secs(60));
    assert_eq!(sim.started.len(), 2, "not restarted");
    sim.exit_code(pids[1], 78);
    let error = super::WorkerConfigError { pid: pids[0] };
    assert_eq!(sim.core.finished(), Some(Outcome::WorkerConfig(error)));
    let message = error.to_string();
    assert!(!message.contains('\n'), "{message}");
    assert!(message.contains("EX_CONFIG"), "{message}");
}

// After READY, 78 is a crash like any other, and so is a restart exiting with it while
// another worker serves (a service is degraded, not taken down); a replacement exiting
// with it is abandoned as any failed reload is, the old workers serving on.
#[test]
fn ex_config_after_ready_or_while_others_serve_does_not_stop_the_master() {
    let mut sim = Sim::ready_workers(2);
    let pids = sim.pids_in("ready");
    sim.exit_code(pids[0], 78);
    sim.advance(SECOND);
    assert_eq!(sim.started.len(), 3, "restarted");
    sim.exit_code(sim.last_started(), 78);
    assert_eq!(sim.core.finished(), None);
    assert!(!sim.notes.contains(&Note::Stopping));
    assert_eq!(sim.signals_to(pids[1]), [], "the serving worker serves on");
    sim.advance(SECOND);
    assert_eq!(sim.started.len(), 4, "restarted, with backoff");
    sim.ready_all();
    sim.signal(Signal::HUP);
    let new = sim.last_started();
    sim.exit_code(new, 78);
    assert_eq!(sim.notes.last(), Some(&Note::ReloadFailed));
    assert_eq!(sim.pids_in("ready").len(), 2);
    assert_eq!(sim.core.finished(), None);
    assert!(!sim.notes.contains(&Note::Stopping));
}

// With the only worker gone, a restart exiting with 78 stops the master: nothing serves,
// and restarting can only loop.
#[test]
fn ex_config_with_no_worker_serving_stops_the_master() {
    let mut sim = Sim::ready_workers(1);
    let first = sim.pids_in("ready")[0];
    sim.killed(first);
    sim.advance(SECOND);
    let restart = sim.last_started();
    assert_ne!(restart, first);
    sim.exit_code(restart, 78);
    assert_eq!(
        sim.core.finished(),
        Some(Outcome::WorkerConfig(super::WorkerConfigError {
            pid: restart
        }))
    );
}

// ------------------------------------------------------------------ closing the sockets

// The master's own sockets are closed once the drain delay is over (the workers stop
// accepting then), at once in a fast stop; sockets passed in by systemd never.
#[test]
fn a_stop_closes_the_masters_own_sockets_after_the_drain_delay() {
    let drain = Duration::from_secs(5);
    let mut sim = Sim::new(Settings {
        drain_delay: drain,
        ..settings(1)
    });
    sim.ready_all();
    sim.advance(SECOND);
    assert_eq!(sim.closed_at, None, "open while serving");
    sim.signal(Signal::TERM);
    let stopped = sim.now;
    sim.advance(drain - MS);
    assert_eq!(sim.closed_at, None, "open during the drain delay");
    sim.advance(MS);
    assert_eq!(sim.closed_at, Some(stopped + drain));

    // A second signal during the drain delay makes the stop fast: closed at once.
    let mut sim = Sim::new(Settings {
        drain_delay: drain,
        ..settings(1)
    });
    sim.ready_all();
    sim.signal(Signal::TERM);
    sim.advance(SECOND);
    sim.signal(Signal::INT);
    assert_eq!(sim.closed_at, Some(sim.now));

    // Passed in by a supervisor: left open for the next start.
    let mut sim = Sim::new(Settings {
        own_sockets: false,
        ..settings(1)
    });
    sim.ready_all();
    sim.signal(Signal::TERM);
    sim.advance(Duration::from_secs(60));
    assert_eq!(sim.closed_at, None);
}

// ------------------------------------------------------------------ leftovers

fn orphan(sim: &mut Sim, pid: u32, of: u32, command: &str) {
    let worker = sim.ids.get(&of).copied();
    sim.apply(Event::Orphan {
        pid,
        worker,
        command: command.to_owned(),
    });
}

// A process reparented to the master while its worker runs is adopted (left alone); once
// its worker has exited it is a leftover: named in the status, SIGTERM, then SIGKILL at
// the grace deadline.
#[test]
fn a_leftover_of_an_exited_worker_is_named_and_stopped() {
    let mut sim = Sim::ready_workers(1);
    let worker = sim.pids_in("ready")[0];
    orphan(&mut sim, 900, worker, "sleep 1000");
    assert!(sim.signals_to(900).is_empty(), "its worker still runs");
    sim.killed(worker);
    orphan(&mut sim, 900, worker, "sleep 1000");
    orphan(&mut sim, 900, worker, "sleep 1000");
    assert_eq!(sim.signals_to(900), [Signal::TERM], "signalled once");
    assert_eq!(sim.reasons(900), ["leftover of worker 1: sleep 1000"]);
    sim.advance(Duration::from_secs(30) - MS);
    assert_eq!(sim.signals_to(900), [Signal::TERM]);
    sim.advance(MS);
    assert_eq!(sim.signals_to(900), [Signal::TERM, Signal::KILL]);
    sim.apply(Event::Reaped { pid: 900 });
    assert_eq!(sim.core.deadline().filter(|at| *at <= sim.now), None);
}

// An orphan whose worker cannot be told (its environment was cleared) is a leftover at
// once; and the master does not finish a stop before the leftovers are gone.
#[test]
fn a_stop_waits_for_the_leftovers() {
    let mut sim = Sim::ready_workers(1);
    let worker = sim.pids_in("ready")[0];
    sim.signal(Signal::TERM);
    sim.exit_code(worker, 0);
    sim.apply(Event::Orphan {
        pid: 901,
        worker: None,
        command: "daemon".to_owned(),
    });
    assert_eq!(sim.signals_to(901), [Signal::TERM]);
    assert_eq!(sim.core.finished(), None, "a leftover still runs");
    sim.apply(Event::Reaped { pid: 901 });
    assert_eq!(sim.core.finished(), Some(Outcome::Clean));
}

/// The warnings logged while `body` runs, one per line.
fn warnings_during(body: impl FnOnce()) -> Vec<String> {
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("log lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    let lines = Lines::default();
    let writer = lines.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, body);
    let bytes = lines.0.lock().expect("log lock").clone();
    String::from_utf8_lossy(&bytes)
        .lines()
        .map(str::to_owned)
        .collect()
}

// Asserts: a process that is not a worker flooding the notify socket gets one warning per
// interval, the next one counting what was not logged, instead of a line per datagram
// (red without the throttle: 1,000 lines in the first second).
#[test]
fn datagrams_from_strangers_are_logged_once_per_interval() {
    let mut sim = Sim::ready_workers(1);
    let warned = warnings_during(|| {
        for _ in 0..1_000 {
            sim.notify(4_000_000, "READY=1");
            sim.advance(MS);
        }
        sim.advance(10 * SECOND);
        sim.notify(4_000_000, "WATCHDOG=1");
    });
    let strangers: Vec<&String> = warned
        .iter()
        .filter(|line| line.contains("not a worker"))
        .collect();
    assert_eq!(strangers.len(), 2, "{warned:#?}");
    assert!(strangers[1].contains("more=999"), "{}", strangers[1]);
    assert_eq!(
        sim.pids_in("ready").len(),
        1,
        "the stranger changed nothing"
    );
}

// Asserts: a worker's STATUS= text reaches the status (and `status --json`, which
// serde_json writes with C1 controls and bidi overrides raw) with every control and bidi
// character escaped (red when stored as sent: ESC, U+009B and U+202E come out raw).
#[test]
fn worker_status_text_is_stored_escaped() {
    let mut sim = Sim::ready_workers(1);
    let pid = sim.pids_in("ready")[0];
    sim.notify(pid, "STATUS=ok\u{1b}[2J\u{9b}31m \u{202e}rtl");
    let status = sim.status();
    let json = serde_json::to_string(&status).expect("a status serialises");
    let unsafe_char =
        |c: char| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    assert!(!json.chars().any(unsafe_char), "{json:?}");
    assert!(status.workers[0].status.starts_with("ok"), "{status}");
}
