//! Retry policy: which HTTP statuses are throttling, transient or final, how long to wait.
//!
//! Pure functions; the request loop in `anypoint` applies them.

/// What a reply's status means for the request that got it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    /// 2xx: use the body.
    Success,
    /// 401: the token was rejected; get a new one once.
    Unauthorized,
    /// 429 and 503: the control plane's rate limit (503 until the minute ends is its documented
    /// signal). Wait, then try again.
    Throttled,
    /// 408, 500, 502, 504 and other 5xx: back off and try again, a bounded number of times.
    Transient,
    /// 403: this app may not read this organization. Final.
    Forbidden,
    /// Everything else (400, 404, 3xx, other 4xx): the request itself is wrong. Final.
    Rejected,
}

/// Classifies an HTTP status. The one place that decides retry or not.
pub fn classify(status: u16) -> StatusClass {
    match status {
        200..=299 => StatusClass::Success,
        401 => StatusClass::Unauthorized,
        403 => StatusClass::Forbidden,
        429 | 503 => StatusClass::Throttled,
        408 | 500..=599 => StatusClass::Transient,
        _ => StatusClass::Rejected,
    }
}

/// Parses a `Retry-After` value, either delay-seconds or an HTTP-date, into milliseconds from
/// `now_ms`. A date in the past gives 0; garbage gives `None`.
pub fn retry_after_ms(value: &str, now_ms: i64) -> Option<u64> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(seconds.saturating_mul(1000));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some(u64::try_from(date.timestamp_millis() - now_ms).unwrap_or(0))
}

/// Parses `X-RateLimit-Reset` (epoch seconds, as the `/accounts` endpoints send it) into
/// milliseconds from `now_ms`.
pub fn reset_at_ms(value: &str, now_ms: i64) -> Option<u64> {
    let epoch_s: i64 = value.trim().parse().ok()?;
    Some(u64::try_from(epoch_s.saturating_mul(1000) - now_ms).unwrap_or(0))
}

/// Milliseconds until the next minute boundary: the Anypoint query limit answers 503 "until the
/// minute expires" and sends no `Retry-After`.
pub fn until_next_minute_ms(now_ms: i64) -> u64 {
    let into_minute = now_ms.rem_euclid(60_000);
    (60_000 - into_minute) as u64
}

/// The longest single wait we accept from a `Retry-After` before giving up on the request.
pub const MAX_THROTTLE_WAIT_MS: u64 = 120_000;

/// Truncated exponential backoff with full jitter: attempt 1 waits up to 1 s, then 2 s, 4 s …
/// capped at 32 s. `random` is any uniformly distributed number.
pub fn backoff_ms(attempt: u32, random: u64) -> u64 {
    let ceiling = 1000u64.saturating_mul(1 << attempt.saturating_sub(1).min(5));
    // Never zero, so that a retry storm cannot spin.
    100 + random % ceiling
}

/// Jitter added to a throttling wait, so that several collectors do not wake together.
pub fn throttle_jitter_ms(random: u64) -> u64 {
    random % 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified() {
        assert_eq!(classify(200), StatusClass::Success);
        assert_eq!(classify(204), StatusClass::Success);
        assert_eq!(classify(401), StatusClass::Unauthorized);
        assert_eq!(classify(403), StatusClass::Forbidden);
        assert_eq!(classify(429), StatusClass::Throttled);
        assert_eq!(classify(503), StatusClass::Throttled);
        for s in [408, 500, 502, 504, 599] {
            assert_eq!(classify(s), StatusClass::Transient, "{s}");
        }
        for s in [301, 400, 404, 405, 409, 412, 422] {
            assert_eq!(classify(s), StatusClass::Rejected, "{s}");
        }
    }

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        assert_eq!(retry_after_ms("7", 0), Some(7000));
        assert_eq!(retry_after_ms(" 0 ", 0), Some(0));
        // Wed, 21 Oct 2015 07:28:00 GMT = 1445412480 s.
        let date = "Wed, 21 Oct 2015 07:28:00 GMT";
        assert_eq!(retry_after_ms(date, 1_445_412_475_500), Some(4500));
        assert_eq!(retry_after_ms(date, 1_445_412_490_000), Some(0));
        assert_eq!(retry_after_ms("soon", 0), None);
        assert_eq!(retry_after_ms("-3", 0), None);
    }

    #[test]
    fn rate_limit_reset_is_epoch_seconds() {
        assert_eq!(reset_at_ms("1700000010", 1_700_000_000_000), Some(10_000));
        assert_eq!(reset_at_ms("1600000000", 1_700_000_000_000), Some(0));
        assert_eq!(reset_at_ms("x", 0), None);
    }

    #[test]
    fn next_minute_boundary() {
        assert_eq!(until_next_minute_ms(0), 60_000);
        assert_eq!(until_next_minute_ms(59_999), 1);
        assert_eq!(until_next_minute_ms(61_000), 59_000);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff_ms(1, u64::MAX) <= 1100);
        assert!(backoff_ms(3, u64::MAX) <= 4100);
        assert!(backoff_ms(30, u64::MAX) <= 32_100);
        assert!(backoff_ms(1, 0) >= 100);
        let spread: std::collections::HashSet<u64> = (0..50).map(|r| backoff_ms(4, r * 131)).collect();
        assert!(spread.len() > 40, "jitter spreads the waits");
    }
}
