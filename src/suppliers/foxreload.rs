//! FoxReload (digital goods wholesale): `GET /balance`, Bearer token.
//!
//! `{"balance": {"amount": 284.50, "currency": "USD", "updated_at": "2026-05-01T13:45:22Z"}}`
//! One account (`main`), major units, the supplier's own `updated_at`.

use rust_decimal::Decimal;
use serde::Deserialize;

use super::{decode_json, parse_rfc3339, BalanceRow, PollOutput};
use crate::amount::currency_code;
use crate::upstream::{PollError, Request, Upstream};

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

pub async fn poll(cfg: &FoxReloadConfig, upstream: &Upstream) -> Result<PollOutput, PollError> {
    let resp = upstream.send(&Request::get(&cfg.path)).await?;
    parse(upstream, &resp.body)
}

/// Reads a 200 body.
pub fn parse(upstream: &Upstream, body: &[u8]) -> Result<PollOutput, PollError> {
    let body: Body = decode_json(upstream, body)?;
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
