//! Client-side pacing: keeps requests under the control plane's per-minute limit so that a normal
//! run provokes no 503.
//!
//! A token bucket of one minute's budget would let a run burst its whole minute at once and then
//! collide with whatever else shares the egress IP; spacing requests evenly is kinder and just as
//! fast over a minute.

/// Spaces requests at least `60 s / limit` apart.
#[derive(Debug, Clone)]
pub struct Pacer {
    interval_ms: i64,
    next_ms: i64,
}

impl Pacer {
    /// A pacer for `per_minute` requests a minute (at least 1).
    pub fn new(per_minute: u32) -> Self {
        // Whole milliseconds, rounded up: never faster than the limit.
        let per_minute = i64::from(per_minute.max(1));
        Self { interval_ms: (60_000 + per_minute - 1) / per_minute, next_ms: i64::MIN }
    }

    /// The spacing between requests, in ms.
    pub fn interval_ms(&self) -> i64 {
        self.interval_ms
    }

    /// How long to wait before a request sent at `now_ms`; reserves its slot.
    pub fn reserve(&mut self, now_ms: i64) -> u64 {
        let start = self.next_ms.max(now_ms);
        self.next_ms = start + self.interval_ms;
        (start - now_ms) as u64
    }

    /// Pushes the next slot to `until_ms` at least (after a throttling reply the whole budget
    /// waits, not only the request that saw it).
    pub fn hold_until(&mut self, until_ms: i64) {
        self.next_ms = self.next_ms.max(until_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spaces_requests_evenly() {
        let mut p = Pacer::new(40);
        assert_eq!(p.reserve(1_000), 0);
        assert_eq!(p.reserve(1_000), 1_500);
        assert_eq!(p.reserve(1_000), 3_000);
        // Time passing uses up the wait.
        assert_eq!(p.reserve(10_000), 0);
    }

    #[test]
    fn never_exceeds_the_limit_in_any_minute() {
        let mut p = Pacer::new(700);
        let mut now = 0i64;
        let mut sent = Vec::new();
        for _ in 0..2000 {
            now += p.reserve(now) as i64;
            sent.push(now);
        }
        for (i, t) in sent.iter().enumerate() {
            let in_minute = sent[i..].iter().take_while(|&&u| u < t + 60_000).count();
            assert!(in_minute <= 700, "{in_minute} requests in the minute from {t}");
        }
    }

    #[test]
    fn hold_delays_everyone() {
        let mut p = Pacer::new(700);
        p.hold_until(5_000);
        assert_eq!(p.reserve(1_000), 4_000);
    }
}
