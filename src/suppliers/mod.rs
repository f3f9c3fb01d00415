//! Supplier kinds: one file per API, plus the shared output types.
//!
//! A kind is a config struct (its own YAML keys) and an `async fn poll` that
//! asks through [`Upstream`] and returns [`PollOutput`]. The list of kinds
//! exists once, in [`KindConfig`]; adding a kind is one file and one variant.
//!
//! Upstream bytes never panic a poll task: kinds slice upstream text only on
//! char boundaries (`get`, `split_once`), compute with checked arithmetic
//! (each kind's module denies `clippy::arithmetic_side_effects`), and turn a
//! value `Decimal` cannot hold into a `decode` error naming the field.
#![deny(clippy::arithmetic_side_effects)]

use std::time::{Duration, SystemTime};

use serde::Deserialize;

use crate::settings::ConfigIssue;
use crate::upstream::Upstream;
pub use crate::poll::{BalanceRow, ExtraSample, FlowDelta, Flows, KindMemory, PollError, PollOutput, Reason};

pub mod foxreload;
pub mod json;
pub mod novasend;
pub mod vai247;
pub mod balanced_orders;
pub mod dodo_wallets;

/// The `kind:` of a supplier and that kind's own keys.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum KindConfig {
    Foxreload(foxreload::FoxReloadConfig),
    Novasend(novasend::NovaSendConfig),
    Vai247(vai247::Vai247Config),
    /// Any JSON balance API, described in the config (docs/json-kind.md).
    Json(json::JsonConfig),
    /// Balanced marketplace escrow orders, API revision 1.1.
    BalancedOrders(balanced_orders::BalancedOrdersConfig),
    /// Dodo Payments customer wallets and their ledgers.
    DodoWallets(dodo_wallets::DodoWalletsConfig),
}

impl KindConfig {
    /// The `kind` label value.
    pub fn name(&self) -> &'static str {
        match self {
            KindConfig::Foxreload(_) => "foxreload",
            KindConfig::Novasend(_) => "novasend",
            KindConfig::Vai247(_) => "vai247",
            KindConfig::Json(_) => "json",
            KindConfig::BalancedOrders(_) => "balanced_orders",
            KindConfig::DodoWallets(_) => "dodo_wallets",
        }
    }

    /// The API's public base URL, when it has one.
    pub fn default_base_url(&self) -> Option<&'static str> {
        match self {
            KindConfig::Foxreload(_) => Some("https://api.foxreload.com"),
            KindConfig::Novasend(_) => Some("https://api.novasend.app"),
            KindConfig::Vai247(_) => None,
            KindConfig::Json(_) => None,
            KindConfig::BalancedOrders(_) => Some("https://api.balancedpayments.com"),
            // live; the test environment is https://test.dodopayments.com
            KindConfig::DodoWallets(_) => Some("https://live.dodopayments.com"),
        }
    }

    /// The documented rate limit as a minimum gap between requests.
    pub fn default_min_interval(&self) -> Duration {
        match self {
            // 100 requests/min per key
            KindConfig::Foxreload(_) => Duration::from_secs(1),
            // "at most one request every 10 seconds"
            KindConfig::Novasend(_) => Duration::from_secs(10),
            // undocumented; be gentle
            KindConfig::Vai247(_) => Duration::from_secs(1),
            // unknown API; be gentle
            KindConfig::Json(_) => Duration::from_secs(1),
            // undocumented (the service is defunct); be gentle, pages included
            KindConfig::BalancedOrders(_) => Duration::from_secs(1),
            // default tier 240 requests/min (40/s bursts fit inside it)
            KindConfig::DodoWallets(_) => Duration::from_millis(250),
        }
    }

    /// Kind-specific checks beyond what serde enforces.
    pub fn validate(&self, path: &str, issues: &mut Vec<ConfigIssue>) {
        let paths = match self {
            KindConfig::Foxreload(c) => vec![("path", &c.path)],
            KindConfig::Novasend(c) => vec![("path", &c.path)],
            KindConfig::Vai247(c) => vec![("path", &c.path)],
            KindConfig::Json(c) => {
                c.validate(path, issues);
                vec![]
            }
            KindConfig::BalancedOrders(c) => {
                c.validate(path, issues);
                vec![]
            }
            KindConfig::DodoWallets(c) => {
                c.validate(path, issues);
                vec![]
            }
        };
        for (key, value) in paths {
            if !value.starts_with('/') {
                issues.push(ConfigIssue { path: format!("{path}.{key}"), message: "must start with '/'".into() });
            }
        }
    }

    /// Polls the supplier once. `memory` persists between polls of this supplier.
    ///
    /// Every message that leaves here (poll error, row errors) has the
    /// supplier's secrets redacted, whatever upstream text a kind quoted.
    pub async fn poll(&self, upstream: &Upstream, memory: &mut KindMemory) -> Result<PollOutput, PollError> {
        let result = self.poll_kind(upstream, memory).await;
        // The kind's own secrets too (json: header values, OAuth2 client credentials).
        let upstream = upstream.with_secrets(self.secrets());
        match result {
            Ok(mut out) => {
                for e in &mut out.row_errors {
                    *e = upstream.redact(e);
                }
                Ok(out)
            }
            Err(mut e) => {
                e.message = upstream.redact(&e.message);
                Err(e)
            }
        }
    }

    /// Secrets in the kind's own keys, beyond the supplier's `auth`.
    pub fn secrets(&self) -> Vec<String> {
        match self {
            KindConfig::Json(c) => c.secrets(),
            _ => vec![],
        }
    }

    async fn poll_kind(&self, upstream: &Upstream, memory: &mut KindMemory) -> Result<PollOutput, PollError> {
        #[cfg(test)]
        fault::maybe_panic(upstream.base_url().as_str());
        match self {
            KindConfig::Foxreload(c) => foxreload::poll(c, upstream).await,
            KindConfig::Novasend(c) => novasend::poll(c, upstream).await,
            KindConfig::Vai247(c) => vai247::poll(c, upstream).await,
            KindConfig::Json(c) => json::poll(c, upstream, memory).await,
            KindConfig::BalancedOrders(c) => balanced_orders::poll(c, upstream).await,
            KindConfig::DodoWallets(c) => dodo_wallets::poll(c, upstream, memory).await,
        }
    }
}

/// Fault injection for the lib's own tests (compiled only into them): a
/// kind polled at an armed base URL panics, as a parser bug would.
#[cfg(test)]
pub mod fault {
    use std::collections::HashSet;
    use std::sync::Mutex;

    static ARMED: Mutex<Option<HashSet<String>>> = Mutex::new(None);

    /// Makes polls of suppliers at `base_url` panic (`true`) or not.
    pub fn arm(base_url: &str, on: bool) {
        let mut armed = ARMED.lock().unwrap_or_else(|e| e.into_inner());
        let set = armed.get_or_insert_with(HashSet::new);
        if on {
            set.insert(base_url.to_string());
        } else {
            set.remove(base_url);
        }
    }

    pub(super) fn maybe_panic(base_url: &str) {
        let armed = ARMED.lock().unwrap_or_else(|e| e.into_inner()).as_ref().is_some_and(|s| s.contains(base_url));
        if armed {
            panic!("injected fault polling {base_url} with key sk_fault_secret");
        }
    }
}

/// Parses a JSON body into `T`, mapping failures to reason `decode` with the
/// JSON path and a short message (never the body itself).
pub fn decode_json<T: serde::de::DeserializeOwned>(upstream: &Upstream, body: &[u8]) -> Result<T, PollError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let message = upstream.redact(&e.into_inner().to_string());
        match path.as_str() {
            "." => PollError::decode(message),
            p if p.starts_with('[') => PollError::decode(format!("${p}: {message}")),
            p => PollError::decode(format!("$.{p}: {message}")),
        }
    })?;
    de.end().map_err(|e| PollError::decode(e.to_string()))?;
    Ok(value)
}

/// The first instant of year 10000: RFC 3339 has four-digit years.
pub const YEAR_10000: Duration = Duration::from_secs(253_402_300_800);

/// `t` if it lies between the Unix epoch and the end of year 9999, the range
/// RFC 3339 text (and so the landing page and logs) can show.
pub fn within_rfc3339_range(t: SystemTime) -> Option<SystemTime> {
    t.duration_since(SystemTime::UNIX_EPOCH).is_ok_and(|d| d < YEAR_10000).then_some(t)
}

/// Parses an RFC 3339 timestamp (`Z` or a numeric offset, fractions allowed).
/// Anything else, including non-ASCII text and instants an offset moves
/// before 1970 or past 9999, is `None`.
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    // RFC 3339 is ASCII; checking first makes every byte offset below a char boundary.
    if !s.is_ascii() {
        return None;
    }
    if let Some(local) = s.strip_suffix(['Z', 'z']) {
        return local_time(local);
    }
    // A numeric offset: "2026-05-01T20:45:22+07:00".
    let (local, offset) = s.split_at_checked(s.len().checked_sub(6)?)?;
    let &[sign, h1, h2, b':', m1, m2] = offset.as_bytes() else { return None };
    let two_digits = |a: u8, b: u8| -> Option<u64> {
        let digit = |c: u8| c.is_ascii_digit().then(|| u64::from(c.saturating_sub(b'0')));
        digit(a)?.checked_mul(10)?.checked_add(digit(b)?)
    };
    let (hours, minutes) = (two_digits(h1, h2)?, two_digits(m1, m2)?);
    if hours > 23 || minutes > 59 {
        return None;
    }
    let shift = Duration::from_secs(hours.checked_mul(3600)?.checked_add(minutes.checked_mul(60)?)?);
    let local = local_time(local)?;
    let utc = match sign {
        b'+' => local.checked_sub(shift),
        b'-' => local.checked_add(shift),
        _ => None,
    };
    utc.and_then(within_rfc3339_range)
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction]` without a zone, as UTC. (humantime's
/// weak parser would also skip a `+hh:mm` inside a fraction: refused here.)
fn local_time(local: &str) -> Option<SystemTime> {
    let fraction = local.get(19..)?;
    let fraction_ok = fraction.is_empty()
        || fraction.strip_prefix('.').is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()));
    if !fraction_ok {
        return None;
    }
    humantime::parse_rfc3339_weak(local).ok()
}

/// An `Upstream` for kinds' unit tests (never contacted: 127.0.0.1:9).
#[cfg(test)]
pub(crate) fn test_upstream() -> Upstream {
    let auth = crate::settings::Auth::Bearer(crate::settings::Secret::new("sk_secret_123"));
    let settings = crate::settings::UpstreamSettings::new("http://127.0.0.1:9".parse().expect("test URL"), auth);
    Upstream::new(crate::upstream::build_client(Duration::from_secs(1)), &settings, Default::default())
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)] // constants in tests, not upstream values
mod tests {
    use super::*;

    #[test]
    fn timestamps_with_zone_and_offset() {
        let z = parse_rfc3339("2026-05-01T13:45:22Z").unwrap();
        assert_eq!(z.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(), 1_777_643_122);
        assert_eq!(parse_rfc3339("2026-05-01T20:45:22+07:00"), Some(z));
        assert_eq!(parse_rfc3339("2026-05-01T12:45:22-01:00"), Some(z));
        assert!(parse_rfc3339("2014-01-27T22:58:01.115720Z").is_some());
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(parse_rfc3339("2026-05-01T13:45:22.5+07:00"), Some(z.checked_sub(Duration::from_secs(7 * 3600)).unwrap() + Duration::from_millis(500)));
        assert_eq!(parse_rfc3339("2026-05-01T13:45:22.+07:00"), None, "an empty fraction");
        assert_eq!(parse_rfc3339("2026-05-01T13:45:22+24:00"), None);
        assert_eq!(parse_rfc3339("2026-05-01T13:45:22+-1:00"), None);
    }

    /// An offset can move a valid local time out of what RFC 3339 text can
    /// show; such a time made `humantime::format_rfc3339` fail (the landing page's `utc()` panics on it).
    #[test]
    fn offsets_never_leave_years_1970_to_9999() {
        assert_eq!(parse_rfc3339("9999-12-31T23:59:59-23:59"), None);
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00+00:01"), None);
        assert!(parse_rfc3339("9999-12-31T23:59:59+00:00").is_some());
        assert!(parse_rfc3339("9999-12-31T23:59:59.999999999Z").is_some());
        assert!(parse_rfc3339("1970-01-01T00:00:00-00:01").is_some());
    }

    /// Issue 12: `split_at` on a byte offset inside `é` panicked the poll task.
    #[test]
    fn non_ascii_timestamps_are_none_not_a_panic() {
        for text in ["aé12345", "é", "2026-05-01T13:45:22é", "2026-05-01T13:45:2é+07:00", "2026-05-01T13:45:22+07:0é", "\u{202e}2026-05-01T13:45:22Z", "2026-05-01T13:45:22\0Z", "\u{301}\u{301}\u{301}\u{301}\u{301}\u{301}"] {
            assert_eq!(parse_rfc3339(text), None, "{text:?}");
        }
    }
}
