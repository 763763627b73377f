//! What happens when a task fails: log it, escalate it, or restart it with backoff until
//! it fails too often.
//!
//! Read [`FailurePolicy`] and [`RestartPolicy`] first.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// What a failing one-shot task does to its scope.
///
/// A failure is an `Err` output (see [`TaskOutput`](crate::TaskOutput)) or a panic. It is
/// always logged with the task's name and spawn site, and counted in the report; it never
/// takes the process down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailurePolicy {
    /// Log the failure; the scope and the other tasks carry on.
    #[default]
    Log,
    /// Log the failure and shut the owning scope down: its subtree is cancelled, and its
    /// [`ShutdownReport`](crate::ShutdownReport) names this failure as the cause.
    Escalate,
}

/// Restart a failed task, waiting an exponential backoff between attempts; if it fails
/// more than `max_restarts` times within `within`, escalate instead (the OTP supervisor's
/// restart intensity).
///
/// The backoff grows with the number of restarts still inside the window, so a task that
/// has run well for `within` starts again from the initial delay.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use taskward::RestartPolicy;
///
/// let policy = RestartPolicy::default()
///     .backoff(Duration::from_millis(50), Duration::from_secs(2))
///     .intensity(5, Duration::from_secs(30));
/// assert_eq!(policy.delay(0), Duration::from_millis(50));
/// assert_eq!(policy.delay(3), Duration::from_millis(400));
/// assert_eq!(policy.delay(10), Duration::from_secs(2));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    initial: Duration,
    max: Duration,
    max_restarts: u32,
    within: Duration,
}

impl Default for RestartPolicy {
    /// 100 ms doubling up to 10 s; at most 5 restarts within 60 s.
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
            max_restarts: 5,
            within: Duration::from_secs(60),
        }
    }
}

impl RestartPolicy {
    /// Sets the first delay and the cap of the doubling backoff.
    #[must_use]
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial = initial;
        self.max = max.max(initial);
        self
    }

    /// Sets the restart intensity: more than `max_restarts` failures within `within`
    /// escalate.
    #[must_use]
    pub fn intensity(mut self, max_restarts: u32, within: Duration) -> Self {
        self.max_restarts = max_restarts;
        self.within = within;
        self
    }

    /// The intensity window: failures older than this no longer count, neither against
    /// the intensity nor towards the backoff.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use taskward::RestartPolicy;
    ///
    /// let policy = RestartPolicy::default().intensity(3, Duration::from_secs(30));
    /// assert_eq!(policy.window(), Duration::from_secs(30));
    /// ```
    #[must_use]
    pub fn window(&self) -> Duration {
        self.within
    }

    /// The delay before restart number `recent + 1`, when `recent` restarts are inside the
    /// intensity window: `initial * 2^recent`, capped at `max`.
    ///
    /// Computed from the count rather than kept as backoff state (as `backon` or `backoff`
    /// would), so that it resets by itself as old restarts leave the window.
    #[must_use]
    pub fn delay(&self, recent: u32) -> Duration {
        let factor = 1u32.checked_shl(recent).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

/// A restarting task's policy and the restarts that still count against its intensity.
#[derive(Debug)]
pub(crate) struct Restarts {
    policy: RestartPolicy,
    recent: VecDeque<Instant>,
    total: u32,
}

impl Restarts {
    pub(crate) fn new(policy: RestartPolicy) -> Self {
        Self {
            policy,
            recent: VecDeque::new(),
            total: 0,
        }
    }

    /// Decides about one more failure at `now`: the delay before the next attempt, or
    /// `None` if the intensity is exceeded.
    pub(crate) fn next_delay(&mut self, now: Instant) -> Option<Duration> {
        let policy = &self.policy;
        while let Some(&oldest) = self.recent.front() {
            if now.saturating_duration_since(oldest) >= policy.within {
                self.recent.pop_front();
            } else {
                break;
            }
        }
        let recent = u32::try_from(self.recent.len()).unwrap_or(u32::MAX);
        if recent >= policy.max_restarts {
            return None;
        }
        self.recent.push_back(now);
        self.total += 1;
        Some(policy.delay(recent))
    }

    /// Restarts so far, over the task's life.
    pub(crate) fn total(&self) -> u32 {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_doubles_and_caps() {
        let p =
            RestartPolicy::default().backoff(Duration::from_millis(10), Duration::from_millis(75));
        let delays: Vec<_> = (0..5).map(|n| p.delay(n).as_millis()).collect();
        assert_eq!(delays, [10, 20, 40, 75, 75]);
        assert_eq!(
            p.delay(200),
            Duration::from_millis(75),
            "no overflow on huge counts"
        );
    }

    #[test]
    fn window_refuses_past_intensity_and_forgets_old_restarts() {
        let p = RestartPolicy::default().intensity(2, Duration::from_secs(10));
        let mut w = Restarts::new(p);
        let t0 = Instant::now();
        assert!(w.next_delay(t0).is_some());
        assert!(w.next_delay(t0 + Duration::from_secs(1)).is_some());
        assert_eq!(
            w.next_delay(t0 + Duration::from_secs(2)),
            None,
            "third in 10 s"
        );
        // Both earlier restarts have left the window by t0 + 11 s.
        let delay = w.next_delay(t0 + Duration::from_secs(11));
        assert_eq!(delay, Some(p.delay(0)), "backoff starts over");
        assert_eq!(w.total(), 3);
    }
}
