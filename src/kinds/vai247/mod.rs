//! Vai247 / DVPay (payment gateway): `POST /api/v1/payment-gateway/balance-inquiry`,
//! header `X-Api-Key`, no body.
//!
//! `{"statusCode": 200, "message": "Success", "data": {"usd": {"balance", "freeze", "usable"}, "khr": {…}}}`
//! Currency keys are lower case. `statusCode` in the body is checked as well
//! as the HTTP status: a 200 carrying `statusCode: 401` is an auth failure.
//! A `usable` derived as balance − freeze that `Decimal` cannot hold is a row error.
#![deny(clippy::arithmetic_side_effects)]

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{BalanceRow, PollOutput};
use crate::amount::currency_code;
use crate::upstream::{PollError, Reason, Request, Upstream};

/// The demo's simulation of this API (`--demo`).
pub mod sim;
/// Its fuzz targets (run by `crate::fuzz`).
#[cfg(test)]
pub(crate) mod fuzz;

/// `kind: vai247` keys.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vai247Config {
    #[serde(default = "default_path")]
    pub path: String,
}

fn default_path() -> String {
    "/api/v1/payment-gateway/balance-inquiry".into()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Body {
    status_code: Option<u16>,
    message: Option<String>,
    data: Option<BTreeMap<String, Box<RawValue>>>,
}

#[derive(Deserialize)]
struct Wallet {
    #[serde(deserialize_with = "crate::amount::exact")]
    balance: Decimal,
    #[serde(default, deserialize_with = "crate::amount::exact_opt")]
    freeze: Option<Decimal>,
    #[serde(default, deserialize_with = "crate::amount::exact_opt")]
    usable: Option<Decimal>,
}

impl super::Kind for Vai247Config {
    const NAME: &'static str = "vai247";
    const DEFAULT_BASE_URL: Option<&'static str> = None;
    // undocumented; be gentle
    const DEFAULT_MIN_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

    fn validate(&self, path: &str, issues: &mut Vec<crate::settings::ConfigIssue>) {
        super::require_absolute_path(&self.path, path, issues);
    }

    async fn poll(&self, upstream: &Upstream, _memory: &mut super::KindMemory) -> Result<PollOutput, PollError> {
        poll(self, upstream).await
    }
}

pub async fn poll(cfg: &Vai247Config, upstream: &Upstream) -> Result<PollOutput, PollError> {
    let resp = upstream.send(&Request::post(&cfg.path)).await?;
    parse(upstream, &resp.body)
}

/// Reads a 200 body.
pub fn parse(upstream: &Upstream, body: &[u8]) -> Result<PollOutput, PollError> {
    let body: Body = upstream.decode(body)?;
    if let Some(code) = body.status_code.filter(|c| *c != 200) {
        let reason = match code {
            401 => Reason::Auth,
            403 => Reason::Forbidden,
            404 => Reason::NotFound,
            429 => Reason::RateLimited,
            _ => Reason::UpstreamStatus,
        };
        let message = body.message.as_deref().map(|m| upstream.snippet(m.as_bytes())).unwrap_or_default();
        return Err(PollError::new(reason, format!("statusCode {code} in body: {message}")));
    }
    let data = body.data.ok_or_else(|| PollError::decode("$.data: missing"))?;
    let mut out = PollOutput::default();
    for (key, raw) in data {
        let Some(currency) = currency_code(&key) else {
            out.row_errors.push(format!("$.data: key {:?} is not a currency code", upstream.snippet(key.as_bytes())));
            continue;
        };
        match wallet(&key, raw.get()) {
            Ok(w) => {
                let freeze = w.freeze.unwrap_or(Decimal::ZERO);
                let usable = match w.usable {
                    Some(u) => u,
                    None => match w.balance.checked_sub(freeze) {
                        Some(u) => u,
                        None => {
                            out.row_errors.push(format!("$.data.{key}.freeze: balance - freeze overflows"));
                            continue;
                        }
                    },
                };
                out.balances.push(BalanceRow {
                    account: "main".into(),
                    currency,
                    balance: w.balance,
                    frozen: freeze,
                    usable,
                    updated_at: None,
                });
            }
            Err(e) => out.row_errors.push(e.to_string()),
        }
    }
    if out.balances.is_empty() {
        // Row errors name their own path.
        let detail = if out.row_errors.is_empty() { "$.data: no currencies".to_string() } else { out.row_errors.join("; ") };
        return Err(PollError::decode(detail));
    }
    Ok(out)
}

/// A wallet under `data` that does not read as one: its JSON path and why.
#[derive(Debug, thiserror::Error)]
#[error("$.data.{key}.{path}: {source}")]
struct WalletError {
    key: String,
    path: String,
    source: serde_json::Error,
}

fn wallet(key: &str, raw: &str) -> Result<Wallet, WalletError> {
    let mut de = serde_json::Deserializer::from_str(raw);
    serde_path_to_error::deserialize::<_, Wallet>(&mut de).map_err(|e| WalletError {
        key: key.to_string(),
        path: e.path().to_string(),
        source: e.into_inner(),
    })
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::test_upstream;

    fn body(usd: &str) -> String {
        format!(r#"{{"statusCode": 200, "message": "Success", "data": {{"usd": {usd}}}}}"#)
    }

    /// Issue 12: `balance - freeze` overflowed and panicked the poll task.
    #[test]
    fn balance_minus_freeze_out_of_range_is_a_decode_error_naming_the_field() {
        let e = parse(&test_upstream(), body(r#"{"balance": 7e28, "freeze": -1e28}"#).as_bytes()).unwrap_err();
        assert_eq!(e.reason, Reason::Decode);
        assert_eq!(e.message, "$.data.usd.freeze: balance - freeze overflows");
        // Given `usable`, nothing is derived: the row is read as sent.
        let out = parse(&test_upstream(), body(r#"{"balance": 7e28, "freeze": -1e28, "usable": 7e28}"#).as_bytes()).unwrap();
        assert_eq!(out.balances[0].usable, crate::amount::parse_decimal_text("7e28").unwrap());
        // Another currency still comes through, the bad one is a row error.
        let two = r#"{"statusCode": 200, "data": {"khr": {"balance": -7.9228162514264337593543950335e28, "freeze": 1}, "usd": {"balance": 2, "freeze": 1}}}"#;
        let out = parse(&test_upstream(), two.as_bytes()).unwrap();
        assert_eq!(out.row_errors, ["$.data.khr.freeze: balance - freeze overflows"]);
        assert_eq!((out.balances[0].currency.as_str(), out.balances[0].usable), ("USD", Decimal::ONE));
    }

    #[test]
    fn edge_amounts_are_exact_or_name_the_field() {
        let out = parse(&test_upstream(), body(r#"{"balance": 79228162514264337593543950335, "freeze": "-0"}"#).as_bytes()).unwrap();
        let b = &out.balances[0];
        assert_eq!((b.balance, b.frozen, b.usable), (Decimal::MAX, Decimal::ZERO, Decimal::MAX));
        assert!(b.frozen.is_sign_positive());
        for (wallet, field) in [
            (r#"{"balance": 1e30}"#, "$.data.usd.balance:"),
            (r#"{"balance": 1e-30}"#, "$.data.usd.balance:"),
            (r#"{"balance": 1, "freeze": 123456789012345678901234567890}"#, "$.data.usd.freeze:"),
            (r#"{"balance": 1, "usable": -79228162514264337593543950336}"#, "$.data.usd.usable:"),
            (r#"{"balance": 1, "usable": 1.00000000000000000000000000001e0}"#, "$.data.usd.usable:"),
        ] {
            let e = parse(&test_upstream(), body(wallet).as_bytes()).unwrap_err();
            assert_eq!(e.reason, Reason::Decode);
            assert!(e.message.starts_with(field), "{wallet}: {}", e.message);
        }
    }

    #[test]
    fn non_ascii_currency_keys_are_row_errors() {
        let body = r#"{"statusCode": 200, "data": {"u\u0301sd": {"balance": 1}, "\u200fusd": {"balance": 1}, "us\u0000": {"balance": 1}, "usd": {"balance": 1}}}"#;
        let out = parse(&test_upstream(), body.as_bytes()).unwrap();
        assert_eq!(out.balances.len(), 1);
        assert_eq!(out.row_errors.len(), 3, "{:?}", out.row_errors);
    }
}
