//! FoxReload (digital goods wholesale): `GET /balance`, Bearer token.
//!
//! `{"balance": {"amount": 284.50, "currency": "USD", "updated_at": "2026-05-01T13:45:22Z"}}`
//! One account (`main`), major units, the supplier's own `updated_at`.
#![deny(clippy::arithmetic_side_effects)]

use rust_decimal::Decimal;
use serde::Deserialize;

use super::{parse_rfc3339, BalanceRow, PollOutput};
use crate::amount::currency_code;
use crate::upstream::{PollError, Request, Upstream};

/// The demo's simulation of this API (`--demo`).
pub mod sim;
/// Its fuzz targets (run by `crate::fuzz`).
#[cfg(test)]
pub(crate) mod fuzz;

/// `kind: foxreload` keys.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FoxReloadConfig {
    /// Balance endpoint path (public docs also show `/v1/balance`).
    #[serde(default = "default_path")]
    pub path: String,
}

fn default_path() -> String {
    "/balance".into()
}

#[derive(Deserialize)]
struct Body {
    balance: Balance,
}

#[derive(Deserialize)]
struct Balance {
    #[serde(deserialize_with = "crate::amount::exact")]
    amount: Decimal,
    currency: String,
    updated_at: Option<String>,
}

impl super::Kind for FoxReloadConfig {
    const NAME: &'static str = "foxreload";
    const DEFAULT_BASE_URL: Option<&'static str> = Some("https://api.foxreload.com");
    // 100 requests/min per key
    const DEFAULT_MIN_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

    fn validate(&self, path: &str, issues: &mut Vec<crate::settings::ConfigIssue>) {
        super::require_absolute_path(&self.path, path, issues);
    }

    async fn poll(&self, upstream: &Upstream, _memory: &mut super::KindMemory) -> Result<PollOutput, PollError> {
        poll(self, upstream).await
    }
}

pub async fn poll(cfg: &FoxReloadConfig, upstream: &Upstream) -> Result<PollOutput, PollError> {
    let resp = upstream.send(&Request::get(&cfg.path)).await?;
    parse(upstream, &resp.body)
}

/// Reads a 200 body.
pub fn parse(upstream: &Upstream, body: &[u8]) -> Result<PollOutput, PollError> {
    let body: Body = upstream.decode(body)?;
    let b = body.balance;
    let currency = currency_code(&b.currency)
        .ok_or_else(|| PollError::decode(format!("$.balance.currency: not a currency code: {:?}", upstream.snippet(b.currency.as_bytes()))))?;
    let updated_at = match b.updated_at.as_deref() {
        None => None,
        Some(s) => Some(parse_rfc3339(s).ok_or_else(|| PollError::decode("$.balance.updated_at: not an RFC 3339 timestamp"))?),
    };
    Ok(PollOutput {
        balances: vec![BalanceRow {
            account: "main".into(),
            currency,
            balance: b.amount,
            frozen: Decimal::ZERO,
            usable: b.amount,
            updated_at,
        }],
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::test_upstream;
    use crate::upstream::Reason;

    fn body(amount: &str, currency: &str, updated_at: &str) -> String {
        format!(r#"{{"balance": {{"amount": {amount}, "currency": {currency}, "updated_at": {updated_at}}}}}"#)
    }

    /// Issue 12: this `updated_at` panicked the poll task (`split_at` inside `é`).
    #[test]
    fn a_non_ascii_timestamp_is_a_decode_error() {
        let e = parse(&test_upstream(), br#"{"balance": {"amount": 284.50, "currency": "USD", "updated_at": "a\u00e912345"}}"#).unwrap_err();
        assert_eq!((e.reason, e.message.as_str()), (Reason::Decode, "$.balance.updated_at: not an RFC 3339 timestamp"));
        let e = parse(&test_upstream(), "{\"balance\": {\"amount\": 284.50, \"currency\": \"USD\", \"updated_at\": \"aé12345\"}}".as_bytes()).unwrap_err();
        assert_eq!((e.reason, e.message.as_str()), (Reason::Decode, "$.balance.updated_at: not an RFC 3339 timestamp"));
    }

    #[test]
    fn edge_amounts_are_exact_or_name_the_field() {
        let t = r#""2026-05-01T13:45:22Z""#;
        let out = parse(&test_upstream(), body("-7.9228162514264337593543950335e28", r#""usd""#, t).as_bytes()).unwrap();
        assert_eq!((out.balances[0].balance, out.balances[0].usable), (Decimal::MIN, Decimal::MIN));
        let out = parse(&test_upstream(), body("-0", r#""USD""#, "null").as_bytes()).unwrap();
        assert!(out.balances[0].balance.is_zero() && out.balances[0].balance.is_sign_positive());
        for amount in ["7.9228162514264337593543950336e28", "1e30", "1e-30", "12345678901234567890123456789.5", "1.00000000000000000000000000001e0"] {
            let e = parse(&test_upstream(), body(amount, r#""USD""#, t).as_bytes()).unwrap_err();
            assert_eq!(e.reason, Reason::Decode);
            assert!(e.message.starts_with("$.balance.amount: "), "{amount}: {}", e.message);
        }
        for currency in [r#""U\u0301S""#, r#""\u202eUSD""#, r#""US\u0000""#, r#""ÜSD""#] {
            let e = parse(&test_upstream(), body("1", currency, t).as_bytes()).unwrap_err();
            assert!(e.message.starts_with("$.balance.currency: "), "{currency}: {}", e.message);
        }
    }
}
