//! `rate_limit` of the web config (exporter-toolkit's key): one token bucket for
//! every request the listener serves, refilled with one token per `interval`
//! and holding at most `burst`. A request that finds the bucket empty is
//! answered `429 Too Many Requests` before basic auth runs (so a flood of bad
//! passwords costs no bcrypt work). A reload starts a new, full bucket.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::config::{parse_duration, ConfigIssue};

/// The file's `rate_limit` section.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FileRateLimit {
    /// Time between two requests; `0s` (or no section) turns the limiter off.
    interval: Option<String>,
    /// Requests let through at once on a full bucket.
    burst: Option<u64>,
}

/// Validates the section: `None` when it turns the limiter off.
pub fn validate_rate_limit(raw: FileRateLimit, issues: &mut Vec<ConfigIssue>) -> Option<RateLimiter> {
    let interval = match raw.interval.as_deref().map(parse_duration) {
        None => Duration::ZERO,
        Some(Ok(d)) => d,
        Some(Err(e)) => {
            issues.push(ConfigIssue { path: "rate_limit.interval".into(), message: e.to_string() });
            return None;
        }
    };
    if interval.is_zero() {
        return None;
    }
    match raw.burst {
        Some(burst @ 1..=1_000_000) => Some(RateLimiter::new(interval, burst as u32)),
        Some(other) => {
            issues.push(ConfigIssue { path: "rate_limit.burst".into(), message: format!("must be between 1 and 1000000, got {other}") });
            None
        }
        None => {
            issues.push(ConfigIssue {
                path: "rate_limit.burst".into(),
                message: "missing; give the requests let through at once (at least 1)".into(),
            });
            None
        }
    }
}

/// A token bucket shared by every connection of the listener.
#[derive(Debug)]
pub struct RateLimiter {
    interval: Duration,
    burst: u32,
    /// (tokens left, when they were counted).
    bucket: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    pub fn new(interval: Duration, burst: u32) -> RateLimiter {
        RateLimiter { interval, burst, bucket: Mutex::new((f64::from(burst), Instant::now())) }
    }

    /// Takes a token if there is one at `now`.
    pub fn allow_at(&self, now: Instant) -> bool {
        let mut bucket = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, since) = *bucket;
        let refilled = now.saturating_duration_since(since).as_secs_f64() / self.interval.as_secs_f64();
        let tokens = (tokens + refilled).min(f64::from(self.burst));
        let allowed = tokens >= 1.0;
        *bucket = (if allowed { tokens - 1.0 } else { tokens }, now.max(since));
        allowed
    }

    /// Seconds until the next token, for `Retry-After` (at least 1).
    pub fn retry_after_secs(&self) -> u64 {
        self.interval.as_secs().max(1)
    }

    /// One line for logs and `--config.check`.
    pub fn summary(&self) -> String {
        format!("rate limit 1 request per {} (burst {})", humantime::format_duration(self.interval), self.burst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_bucket_lets_burst_through_then_one_per_interval() {
        let l = RateLimiter::new(Duration::from_millis(100), 3);
        let t0 = Instant::now();
        assert!((0..3).all(|_| l.allow_at(t0)), "the burst");
        assert!(!l.allow_at(t0), "empty");
        assert!(!l.allow_at(t0 + Duration::from_millis(50)), "half a token");
        assert!(l.allow_at(t0 + Duration::from_millis(100)), "one token back");
        assert!(!l.allow_at(t0 + Duration::from_millis(100)));
        // A long pause refills only up to the burst.
        let later = t0 + Duration::from_secs(60);
        assert!((0..3).all(|_| l.allow_at(later)));
        assert!(!l.allow_at(later));
    }

    #[test]
    fn a_clock_read_out_of_order_never_adds_tokens() {
        let l = RateLimiter::new(Duration::from_secs(1), 1);
        let t0 = Instant::now() + Duration::from_secs(5);
        assert!(l.allow_at(t0));
        assert!(!l.allow_at(t0 - Duration::from_secs(3)), "an earlier instant refills nothing");
        assert!(!l.allow_at(t0 + Duration::from_millis(500)));
    }

    fn issues(interval: Option<&str>, burst: Option<u64>) -> (bool, Vec<String>) {
        let mut issues = Vec::new();
        let raw = FileRateLimit { interval: interval.map(String::from), burst };
        let on = validate_rate_limit(raw, &mut issues).is_some();
        (on, issues.iter().map(|i| i.to_string()).collect())
    }

    #[test]
    fn validation_follows_exporter_toolkit() {
        assert_eq!(issues(Some("1s"), Some(10)), (true, vec![]));
        assert_eq!(issues(Some("0s"), None), (false, vec![]), "interval 0 turns it off");
        assert_eq!(issues(None, Some(5)), (false, vec![]));
        assert_eq!(issues(Some("1s"), None).1, ["rate_limit.burst: missing; give the requests let through at once (at least 1)"]);
        assert_eq!(issues(Some("1s"), Some(0)).1, ["rate_limit.burst: must be between 1 and 1000000, got 0"]);
        assert_eq!(issues(Some("soon"), Some(1)).1[0].split(" (").next().unwrap(), "rate_limit.interval: invalid duration \"soon\"");
    }
}
