//! Supplier kinds: one folder per API (its config, `poll`, simulation,
//! fixtures, unit tests and fuzz targets) and the registry below, the one place that lists
//! them. docs/adding-a-kind.md shows how a kind is added: a folder and a
//! registry line.
//!
//! A kind implements [`Kind`]: its name, defaults, extra validation and an
//! `async fn poll` that asks through [`Upstream`] and returns [`PollOutput`].
//! The [`kinds!`] registry generates the serde-tagged [`KindConfig`] (the
//! `kind:` key and that kind's own keys) and its dispatch, the list of
//! demo simulations, and (in tests) the list of fuzz targets.
//!
//! Upstream bytes never panic a poll task: kinds slice upstream text only on
//! char boundaries (`get`, `split_once`), compute with checked arithmetic
//! (each kind's module denies `clippy::arithmetic_side_effects`), and turn a
//! value `Decimal` cannot hold into a `decode` error naming the field.
#![deny(clippy::arithmetic_side_effects)]

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Deserialize;

use crate::demo::kit::Simulated;
pub use crate::poll::{BalanceRow, ErrorReader, ErrorResponse, ExtraSample, FlowDelta, Flows, KindMemory, PollError, PollOutput, Reason};
use crate::settings::ConfigIssue;
use crate::upstream::Upstream;

/// What a supplier kind is: implemented by each kind's config type.
pub trait Kind {
    /// The `kind:` value and the `kind` label.
    const NAME: &'static str;
    /// The API's public base URL, when it has one.
    const DEFAULT_BASE_URL: Option<&'static str>;
    /// The documented rate limit as a minimum gap between requests.
    const DEFAULT_MIN_INTERVAL: Duration;

    /// Checks beyond what serde enforces; problems go to `issues` with `path`.
    fn validate(&self, _path: &str, _issues: &mut Vec<ConfigIssue>) {}

    /// Secrets in the kind's own keys, beyond the supplier's `auth` (redacted too).
    fn secrets(&self) -> Vec<String> {
        Vec::new()
    }

    /// Polls the supplier once; `memory` persists between polls (and, when
    /// taken with [`KindMemory::get_persistent`], across restarts).
    fn poll(&self, upstream: &Upstream, memory: &mut KindMemory) -> impl Future<Output = Result<PollOutput, PollError>> + Send;

    /// Reads a non-2xx answer of this API (its error envelope) into a reason
    /// and message; `None` leaves it to the driver. The driver cuts and
    /// redacts the message.
    fn read_error(_response: &ErrorResponse<'_>) -> Option<(Reason, String)> {
        None
    }
}

/// A kind's `path` key must be absolute (it is joined to `base_url`).
fn require_absolute_path(value: &str, path: &str, issues: &mut Vec<ConfigIssue>) {
    if !value.starts_with('/') {
        issues.push(ConfigIssue { path: format!("{path}.path"), message: "must start with '/'".into() });
    }
}

/// The registry: one line per kind, `Variant(module::ConfigType)` plus its
/// demo simulation when it has one. The variant's snake_case name is the
/// `kind:` value.
macro_rules! kinds {
    ($( $(#[$doc:meta])* $variant:ident($module:ident::$config:ident) $(, sim: $sim:ident)?; )*) => {
        $( pub mod $module; )*

        /// The `kind:` of a supplier and that kind's own keys.
        #[derive(Debug, Clone, PartialEq, Deserialize)]
        #[serde(tag = "kind", rename_all = "snake_case")]
        pub enum KindConfig {
            $( $(#[$doc])* $variant($module::$config), )*
        }

        impl KindConfig {
            /// The `kind` label value.
            pub fn name(&self) -> &'static str {
                match self { $( KindConfig::$variant(_) => <$module::$config as Kind>::NAME, )* }
            }

            /// The API's public base URL, when it has one.
            pub fn default_base_url(&self) -> Option<&'static str> {
                match self { $( KindConfig::$variant(_) => <$module::$config as Kind>::DEFAULT_BASE_URL, )* }
            }

            /// The documented rate limit as a minimum gap between requests.
            pub fn default_min_interval(&self) -> Duration {
                match self { $( KindConfig::$variant(_) => <$module::$config as Kind>::DEFAULT_MIN_INTERVAL, )* }
            }

            /// Kind-specific checks beyond what serde enforces.
            pub fn validate(&self, path: &str, issues: &mut Vec<ConfigIssue>) {
                match self { $( KindConfig::$variant(c) => c.validate(path, issues), )* }
            }

            /// How this kind reads its API's non-2xx answers.
            pub fn error_reader(&self) -> ErrorReader {
                match self { $( KindConfig::$variant(_) => <$module::$config as Kind>::read_error, )* }
            }

            /// Secrets in the kind's own keys, beyond the supplier's `auth`.
            pub fn secrets(&self) -> Vec<String> {
                match self { $( KindConfig::$variant(c) => c.secrets(), )* }
            }

            /// The kind's own config, for a fuzz target's decoder to downcast.
            #[cfg(test)]
            pub(crate) fn as_any(&self) -> &dyn std::any::Any {
                match self { $( KindConfig::$variant(c) => c, )* }
            }

            async fn poll_kind(&self, upstream: &Upstream, memory: &mut KindMemory) -> Result<PollOutput, PollError> {
                #[cfg(test)]
                fault::maybe_panic(upstream.base_url().as_str());
                match self { $( KindConfig::$variant(c) => c.poll(upstream, memory).await, )* }
            }
        }

        /// Every registered kind's name, in registry order.
        pub const NAMES: &[&str] = &[ $( <$module::$config as Kind>::NAME, )* ];

        /// Every kind's fuzz targets (`src/kinds/<kind>/fuzz.rs`), in registry order.
        #[cfg(test)]
        pub(crate) fn fuzz_targets() -> Vec<crate::fuzz::kit::FuzzTarget> {
            [ $( $module::fuzz::targets(), )* ].into_iter().flatten().collect()
        }

        /// Every kind's demo simulation (`--demo`), in registry order.
        pub fn simulations() -> Vec<Arc<dyn Simulated>> {
            vec![ $( $( Arc::new($module::sim::$sim::new()) as Arc<dyn Simulated>, )? )* ]
        }
    };
}

kinds! {
    Foxreload(foxreload::FoxReloadConfig), sim: FoxReloadSim;
    Novasend(novasend::NovaSendConfig), sim: NovaSendSim;
    Vai247(vai247::Vai247Config), sim: Vai247Sim;
    /// Any JSON balance API, described in the config (docs/json-kind.md).
    Json(json::JsonConfig);
    /// Dodo Payments customer wallets and their ledgers.
    DodoWallets(dodo_wallets::DodoWalletsConfig), sim: DodoSim;
    /// Balanced marketplace escrow orders, API revision 1.1.
    BalancedOrders(balanced_orders::BalancedOrdersConfig), sim: BalancedSim;
}

impl KindConfig {
    /// Polls the supplier once. `memory` persists between polls of this supplier.
    ///
    /// Every message that leaves here (poll error, row errors) has the
    /// supplier's secrets redacted, whatever upstream text a kind quoted:
    /// redaction happens once, here, for every kind.
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
    let fraction_ok =
        fraction.is_empty() || fraction.strip_prefix('.').is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()));
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

    /// A registry line's variant, in snake_case, is the `kind:` value serde
    /// accepts; it must be the kind's own `Kind::NAME`.
    #[test]
    fn every_registry_variant_is_named_as_its_kind() {
        for name in NAMES {
            let err = serde_yaml::from_str::<KindConfig>(&format!(
                "kind: {name}
no_such_key: 1
"
            ))
            .unwrap_err()
            .to_string();
            assert!(!err.contains("unknown variant"), "kind {name}: the registry variant's snake_case name differs: {err}");
        }
    }

    #[test]
    fn timestamps_with_zone_and_offset() {
        let z = parse_rfc3339("2026-05-01T13:45:22Z").unwrap();
        assert_eq!(z.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(), 1_777_643_122);
        assert_eq!(parse_rfc3339("2026-05-01T20:45:22+07:00"), Some(z));
        assert_eq!(parse_rfc3339("2026-05-01T12:45:22-01:00"), Some(z));
        assert!(parse_rfc3339("2014-01-27T22:58:01.115720Z").is_some());
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(
            parse_rfc3339("2026-05-01T13:45:22.5+07:00"),
            Some(z.checked_sub(Duration::from_secs(7 * 3600)).unwrap() + Duration::from_millis(500))
        );
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
        for text in [
            "aé12345",
            "é",
            "2026-05-01T13:45:22é",
            "2026-05-01T13:45:2é+07:00",
            "2026-05-01T13:45:22+07:0é",
            "\u{202e}2026-05-01T13:45:22Z",
            "2026-05-01T13:45:22\0Z",
            "\u{301}\u{301}\u{301}\u{301}\u{301}\u{301}",
        ] {
            assert_eq!(parse_rfc3339(text), None, "{text:?}");
        }
    }
}
