//! Repeated warnings turned into one line per interval: the first occurrence is logged,
//! the rest are counted and summed up in the next line logged.
//!
//! Read [`Throttle`]. It takes the time as an argument, so that its policy is tested
//! without a clock. The server's accept loop, the worker's notify socket and the process
//! manager's notify receiver all use it: a hostile or broken peer must not be able to fill
//! the log at the rate it can send.

use std::time::Duration;

use tokio::time::Instant;

/// How often a repeated warning is logged at most.
pub const WARN_EVERY: Duration = Duration::from_secs(10);

/// Decides which occurrences of one repeated warning are logged.
///
/// ```
/// use std::time::Duration;
/// use taskward_http::throttle::Throttle;
/// use tokio::time::Instant;
///
/// let start = Instant::now();
/// let mut throttle = Throttle::new(Duration::from_secs(10));
/// assert_eq!(throttle.hit(start), Some(0)); // the first is logged
/// assert_eq!(throttle.hit(start + Duration::from_secs(1)), None); // counted
/// // The next line, an interval later, says how many were not logged.
/// assert_eq!(throttle.hit(start + Duration::from_secs(10)), Some(1));
/// ```
#[derive(Debug)]
pub struct Throttle {
    every: Duration,
    /// When the last line was logged, if any.
    logged_at: Option<Instant>,
    /// Occurrences since then that were not logged.
    suppressed: u64,
}

impl Throttle {
    /// A throttle logging at most one line per `every`.
    #[must_use]
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            logged_at: None,
            suppressed: 0,
        }
    }

    /// One more occurrence at `now`. `Some(n)`: log it, saying that `n` more happened
    /// since the last line; `None`: count it and stay quiet.
    pub fn hit(&mut self, now: Instant) -> Option<u64> {
        match self.logged_at {
            Some(at) if now.saturating_duration_since(at) < self.every => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.logged_at = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }

    /// The condition is over at `now`: `Some(n)` to say so in one line, with the `n`
    /// occurrences never logged, if there are any and a line is due (the interval since
    /// the last line has passed); otherwise they stay counted for the next line. A
    /// condition that comes and goes (a connection cap reached at every accept) so yields
    /// one line per interval, not one per change.
    pub fn recovered(&mut self, now: Instant) -> Option<u64> {
        if self.suppressed == 0 {
            return None;
        }
        let due = self
            .logged_at
            .is_none_or(|at| now.saturating_duration_since(at) >= self.every);
        if !due {
            return None;
        }
        self.logged_at = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use super::Throttle;

    const EVERY: Duration = Duration::from_secs(10);

    // Asserts: of a burst inside one interval only the first is logged; the first after
    // the interval is logged with the count of those in between.
    #[test]
    fn one_line_per_interval_with_the_count() {
        let start = Instant::now();
        let mut throttle = Throttle::new(EVERY);
        assert_eq!(throttle.hit(start), Some(0));
        for ms in 1..=999 {
            assert_eq!(throttle.hit(start + Duration::from_millis(ms)), None);
        }
        assert_eq!(throttle.hit(start + EVERY - Duration::from_millis(1)), None);
        assert_eq!(throttle.hit(start + EVERY), Some(1000));
        assert_eq!(throttle.hit(start + EVERY + Duration::from_secs(1)), None);
    }

    // Asserts: the end of the condition sums up what was never logged, but no sooner than
    // the interval allows: a condition that comes and goes at every step logs one line per
    // interval, whether for its hits or its recoveries.
    #[test]
    fn recovery_sums_up_once_per_interval() {
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let mut throttle = Throttle::new(EVERY);
        assert_eq!(throttle.recovered(start), None, "nothing happened");
        assert_eq!(throttle.hit(start), Some(0));
        assert_eq!(throttle.recovered(at(1)), None, "everything was logged");
        let mut lines = 0;
        for s in 1..30 {
            lines += usize::from(throttle.hit(at(s)).is_some());
            lines += usize::from(throttle.recovered(at(s)).is_some());
        }
        assert_eq!(lines, 2, "at 10 s and 20 s");
        assert_eq!(
            throttle.recovered(at(30)),
            Some(9),
            "hits 21..=29 never logged"
        );
        assert_eq!(throttle.recovered(at(31)), None);
    }
}
