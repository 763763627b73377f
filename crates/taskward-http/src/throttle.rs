//! Repeated warnings turned into one line per interval: the first occurrence is logged,
//! the rest are counted and summed up in the next line logged.
//!
//! Read [`Throttle`]. It takes the time as an argument, so that its policy is tested
//! without a clock.

use std::time::Duration;

use tokio::time::Instant;

/// How often a repeated warning is logged at most.
pub(crate) const WARN_EVERY: Duration = Duration::from_secs(10);

/// Decides which occurrences of one repeated warning are logged.
#[derive(Debug)]
pub(crate) struct Throttle {
    every: Duration,
    /// When the last line was logged, if any.
    logged_at: Option<Instant>,
    /// Occurrences since then that were not logged.
    suppressed: u64,
}

impl Throttle {
    pub(crate) fn new(every: Duration) -> Self {
        Self {
            every,
            logged_at: None,
            suppressed: 0,
        }
    }

    /// One more occurrence at `now`. `Some(n)`: log it, saying that `n` more happened
    /// since the last line; `None`: count it and stay quiet.
    pub(crate) fn hit(&mut self, now: Instant) -> Option<u64> {
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

    /// The condition is over: the occurrences never logged, if any, to say so in one
    /// line; the next occurrence is logged at once.
    pub(crate) fn recovered(&mut self) -> Option<u64> {
        let logged = self.logged_at.take().is_some();
        let suppressed = std::mem::take(&mut self.suppressed);
        (logged && suppressed > 0).then_some(suppressed)
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

    // Asserts: the end of the condition reports what was never logged, once, and the next
    // occurrence after it is logged at once.
    #[test]
    fn recovery_sums_up_and_rearms() {
        let start = Instant::now();
        let mut throttle = Throttle::new(EVERY);
        assert_eq!(throttle.recovered(), None, "nothing happened");
        assert_eq!(throttle.hit(start), Some(0));
        assert_eq!(throttle.recovered(), None, "everything was logged");
        assert_eq!(
            throttle.hit(start),
            Some(0),
            "logged at once after a recovery"
        );
        assert_eq!(throttle.hit(start + Duration::from_secs(1)), None);
        assert_eq!(throttle.hit(start + Duration::from_secs(2)), None);
        assert_eq!(throttle.recovered(), Some(2));
        assert_eq!(throttle.recovered(), None);
        assert_eq!(throttle.hit(start + Duration::from_secs(3)), Some(0));
    }
}
