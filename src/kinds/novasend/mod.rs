//! NovaSend (payment provider): `GET /v1/balance`, Basic `api_key:api_client`.
//!
//! A bare array, one entry per sub-account (`reference`) and currency:
//! `[{"balance": 4676, "availableBalance": 4676, "reference": "merchant_…", "currency": "XOF"}]`.
//! `balance` includes pending settlement, so frozen = balance − availableBalance.
//! No timestamp: updated-at is when we fetched it. Limit: one request per 10 s.
//! A difference `Decimal` cannot hold (`7e28` and `-1e28`) is a row error.
#![deny(clippy::arithmetic_side_effects)]

use rust_decimal::Decimal;
use serde::Deserialize;

use super::{BalanceRow, PollOutput};
use crate::amount::currency_code;
use crate::upstream::{PollError, Request, Upstream};

/// The demo's simulation of this API (`--demo`).
pub mod sim;
/// Its fuzz targets (run by `crate::fuzz`).
#[cfg(test)]
pub(crate) mod fuzz;

/// `kind: novasend` keys.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NovaSendConfig {
    #[serde(default = "default_path")]
    pub path: String,
}

fn default_path() -> String {
    "/v1/balance".into()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    #[serde(deserialize_with = "crate::amount::exact")]
    balance: Decimal,
    #[serde(deserialize_with = "crate::amount::exact")]
    available_balance: Decimal,
    reference: String,
    currency: String,
}

impl super::Kind for NovaSendConfig {
    const NAME: &'static str = "novasend";
    const DEFAULT_BASE_URL: Option<&'static str> = Some("https://api.novasend.app");
    // "at most one request every 10 seconds"
    const DEFAULT_MIN_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

    fn validate(&self, path: &str, issues: &mut Vec<crate::settings::ConfigIssue>) {
        super::require_absolute_path(&self.path, path, issues);
    }

    async fn poll(&self, upstream: &Upstream, _memory: &mut super::KindMemory) -> Result<PollOutput, PollError> {
        poll(self, upstream).await
    }
}

pub async fn poll(cfg: &NovaSendConfig, upstream: &Upstream) -> Result<PollOutput, PollError> {
    let resp = upstream.send(&Request::get(&cfg.path)).await?;
    parse(upstream, &resp.body)
}

/// Reads a 200 body.
pub fn parse(upstream: &Upstream, body: &[u8]) -> Result<PollOutput, PollError> {
    let entries: Vec<Entry> = upstream.decode(body)?;
    let mut out = PollOutput::default();
    let mut seen = std::collections::HashSet::with_capacity(entries.len());
    for (i, e) in entries.into_iter().enumerate() {
        let Some(currency) = currency_code(&e.currency) else {
            out.row_errors.push(format!("$[{i}].currency: not a currency code"));
            continue;
        };
        if e.reference.is_empty() {
            out.row_errors.push(format!("$[{i}].reference: empty"));
            continue;
        }
        if !seen.insert((e.reference.clone(), currency.clone())) {
            out.row_errors.push(format!("$[{i}]: duplicate entry for {} {currency}", e.reference));
            continue;
        }
        let Some(frozen) = e.balance.checked_sub(e.available_balance) else {
            out.row_errors.push(format!("$[{i}].availableBalance: balance - availableBalance overflows"));
            continue;
        };
        out.balances.push(BalanceRow {
            account: e.reference,
            currency,
            balance: e.balance,
            frozen,
            usable: e.available_balance,
            updated_at: None,
        });
    }
    if out.balances.is_empty() && !out.row_errors.is_empty() {
        return Err(PollError::decode(out.row_errors.join("; ")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::test_upstream;
    use crate::upstream::Reason;

    fn body(balance: &str, available: &str) -> String {
        format!(r#"[{{"balance": {balance}, "availableBalance": {available}, "reference": "m1", "currency": "USD"}}]"#)
    }

    /// Issue 12: `balance - availableBalance` overflowed and panicked the poll task.
    #[test]
    fn a_difference_out_of_range_is_a_decode_error_naming_the_field() {
        let e = parse(&test_upstream(), body("7e28", "-1e28").as_bytes()).unwrap_err();
        assert_eq!(e.reason, Reason::Decode);
        assert_eq!(e.message, "$[0].availableBalance: balance - availableBalance overflows");
        // One bad entry does not spoil the others.
        let two = r#"[{"balance": -7e28, "availableBalance": 1e28, "reference": "m1", "currency": "USD"}, {"balance": 5, "availableBalance": 3, "reference": "m2", "currency": "USD"}]"#;
        let out = parse(&test_upstream(), two.as_bytes()).unwrap();
        assert_eq!(out.row_errors, ["$[0].availableBalance: balance - availableBalance overflows"]);
        assert_eq!((out.balances[0].account.as_str(), out.balances[0].frozen), ("m2", Decimal::TWO));
    }

    #[test]
    fn edge_amounts_are_exact_or_name_the_field() {
        let max = "7.9228162514264337593543950335e28";
        let out = parse(&test_upstream(), body(max, max).as_bytes()).unwrap();
        assert_eq!((out.balances[0].balance, out.balances[0].frozen), (Decimal::MAX, Decimal::ZERO));
        let out = parse(&test_upstream(), body(&format!("-{max}"), "-0").as_bytes()).unwrap();
        assert_eq!((out.balances[0].balance, out.balances[0].frozen, out.balances[0].usable), (Decimal::MIN, Decimal::MIN, Decimal::ZERO));
        assert!(out.balances[0].usable.is_sign_positive(), "-0 is 0");
        let out = parse(&test_upstream(), body("1e-28", "0").as_bytes()).unwrap();
        assert_eq!(out.balances[0].frozen, Decimal::new(1, 28));
        for (balance, available, field) in [
            ("1e30", "0", "$[0].balance"),
            ("1e-30", "0", "$[0].balance"),
            ("0", "123456789012345678901234567890", "$[0].availableBalance"),
            ("0", "-1.00000000000000000000000000001e0", "$[0].availableBalance"),
            ("-79228162514264337593543950336", "0", "$[0].balance"),
        ] {
            let e = parse(&test_upstream(), body(balance, available).as_bytes()).unwrap_err();
            assert_eq!(e.reason, Reason::Decode);
            assert!(e.message.starts_with(field), "{balance}/{available}: {}", e.message);
        }
    }
}
