//! Exponential back-off with jitter, for retries that must not hammer the server.

use std::time::Duration;

/// Delays that double from `initial` up to `max`, each shortened by a random part of
/// up to `jitter` (0.0..=1.0) so that many clients retrying together spread out.
#[derive(Clone, Debug)]
pub struct Backoff {
    /// The first delay (before jitter).
    pub initial: Duration,
    /// No delay is longer than this.
    pub max: Duration,
    /// The fraction of each delay that is random: `0.0` none, `0.5` up to half off.
    pub jitter: f64,
    /// The delay (before jitter) the next call returns.
    next: Duration,
}

impl Default for Backoff {
    /// 800 ms doubling to 30 s, up to half of each delay random (kube-runtime's
    /// default watcher back-off).
    fn default() -> Self {
        Backoff::new(Duration::from_millis(800), Duration::from_secs(30), 0.5)
    }
}

impl Backoff {
    /// A back-off from `initial` to `max` with `jitter` (clamped to 0.0..=1.0).
    pub fn new(initial: Duration, max: Duration, jitter: f64) -> Self {
        Backoff {
            initial,
            max,
            jitter: jitter.clamp(0.0, 1.0),
            next: initial,
        }
    }

    /// The next delay; each call doubles the one after, up to `max`.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.next.min(self.max);
        self.next = base.saturating_mul(2).min(self.max);
        base.mul_f64(1.0 - self.jitter * fastrand::f64())
    }

    /// Back to `initial`, after a success.
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_to_the_cap_and_reset() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(500), 0.0);
        let delays: Vec<_> = (0..5).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 500, 500]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }

    #[test]
    fn jitter_only_shortens_within_bounds() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(1), 0.5);
        for _ in 0..100 {
            let d = b.next_delay();
            assert!(
                d >= Duration::from_millis(500) && d <= Duration::from_secs(1),
                "{d:?}"
            );
        }
    }
}
