//! A worker as the policy knows it: its number, its [`Phase`], what it last reported.

use std::time::Instant;

/// The master's own number for a worker, never reused (a pid can be).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct WorkerId(u64);

impl WorkerId {
    /// The number (`TASKWARD_WORKER_ID`).
    pub(crate) fn get(self) -> u64 {
        self.0
    }

    /// The worker numbered `number`.
    pub(crate) fn from_number(number: u64) -> Self {
        Self(number)
    }
}

impl std::fmt::Display for WorkerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Why a worker is being replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
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

/// Where a worker is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Started, not yet `READY=1`. A replacement names the worker it replaces, which is
    /// stopped only once this one is ready (so capacity never dips), and why.
    Starting {
        replaces: Option<(WorkerId, Reason)>,
    },
    /// Said `READY=1`: accepting.
    Ready,
    /// Its `max_requests` replacement is ready since `since`: it serves on to its limit
    /// (or for a bounded time), counted as one worker more than wanted.
    Retiring { since: Instant },
    /// Asked to stop (`SIGTERM`, or `SIGQUIT` for a fast stop): killed at `kill_at`.
    Stopping { kill_at: Instant },
    /// Sent SIGKILL: only its exit is awaited.
    Killed,
}

impl Phase {
    /// Counts for keeping the number of workers: not stopping.
    pub(super) fn is_active(self) -> bool {
        !matches!(self, Self::Stopping { .. } | Self::Killed)
    }

    /// One of the workers counted against the target: neither a replacement still
    /// starting nor a worker retiring beside its ready replacement.
    pub(super) fn is_regular(self) -> bool {
        matches!(self, Self::Starting { replaces: None } | Self::Ready)
    }

    /// The state `taskward status` shows.
    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Starting { .. } => "starting",
            Self::Ready => "ready",
            Self::Retiring { .. } => "retiring",
            Self::Stopping { .. } | Self::Killed => "stopping",
        }
    }
}

/// One worker, as the policy knows it.
#[derive(Debug, Clone)]
pub(super) struct Worker {
    pub(super) pid: u32,
    pub(super) started: Instant,
    pub(super) phase: Phase,
    /// The first `READY=1`.
    pub(super) ready_since: Option<Instant>,
    /// The last `WATCHDOG=1` (or `READY=1`, or the start).
    pub(super) last_beat: Instant,
    /// `WATCHDOG=trigger`: to be treated as if its heartbeat had stopped.
    pub(super) triggered: bool,
    /// Requests begun, as last reported.
    pub(super) requests: u64,
    /// Replaced once `requests` reaches it (`--max-requests` plus jitter).
    pub(super) max_requests: Option<u64>,
    /// `STATUS=` as last reported.
    pub(super) status: String,
}
