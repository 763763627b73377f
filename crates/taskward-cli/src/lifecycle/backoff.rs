//! Crash backoff: whether a worker's death earns one, and for how long it holds the next
//! start, from a [`RestartPolicy`] (its delay doubling with the deaths inside its window).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use taskward::RestartPolicy;

use super::later;

/// A worker that dies before READY, or less than this after it, dies young: its death
/// earns a crash backoff. One that ran longer (and was killed, say) is replaced at once:
/// its death says nothing of the next one, and a backoff would only keep capacity down.
const YOUNG: Duration = Duration::from_secs(10);

/// The deaths that count, and the start they hold back.
#[derive(Debug)]
pub(super) struct CrashBackoff {
    policy: RestartPolicy,
    /// Young deaths inside the policy's window, oldest first.
    crashes: VecDeque<Instant>,
    /// No worker is started before this.
    hold_until: Option<Instant>,
}

impl CrashBackoff {
    /// 100 ms doubling up to 10 s, counting the deaths of the last 60 s; never giving up
    /// (a master keeps trying, a supervisor above it decides otherwise).
    pub(super) fn new() -> Self {
        Self {
            policy: RestartPolicy::default()
                .backoff(Duration::from_millis(100), Duration::from_secs(10))
                .intensity(u32::MAX, Duration::from_secs(60)),
            crashes: VecDeque::new(),
            hold_until: None,
        }
    }

    /// Notes the death at `now` of a worker ready since `ready_since` (if ever): if it
    /// died [young](YOUNG), the next start is held for the backoff it earns.
    pub(super) fn died(&mut self, ready_since: Option<Instant>, now: Instant) {
        if let Some(ready) = ready_since
            && now.saturating_duration_since(ready) >= YOUNG
        {
            tracing::debug!(served_for = ?now.saturating_duration_since(ready), "not a crash loop: no backoff");
            return;
        }
        let window = self.policy.window();
        while self
            .crashes
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > window)
        {
            self.crashes.pop_front();
        }
        let recent = u32::try_from(self.crashes.len()).unwrap_or(u32::MAX);
        let delay = self.policy.delay(recent);
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

    /// Whether starts are held at `now`; a hold that is over is forgotten.
    pub(super) fn holds(&mut self, now: Instant) -> bool {
        if self.hold_until.is_some_and(|until| now < until) {
            return true;
        }
        self.hold_until = None;
        false
    }

    /// When the hold ends, if one holds.
    pub(super) fn until(&self) -> Option<Instant> {
        self.hold_until
    }

    /// Lifts the hold (stopping: nothing is started any more).
    pub(super) fn lift(&mut self) {
        self.hold_until = None;
    }
}
