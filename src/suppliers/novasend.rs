//! NovaSend (payment provider): `GET /v1/balance`, Basic `api_key:api_client`.
//!
//! A bare array, one entry per sub-account (`reference`) and currency:
//! `[{"balance": 4676, "availableBalance": 4676, "reference": "merchant_…", "currency": "XOF"}]`.
//! `balance` includes pending settlement, so frozen = balance − availableBalance.
//! No timestamp: updated-at is when we fetched it. Limit: one request per 10 s.

use rust_decimal::Decimal;
use serde::Deserialize;

use super::{decode_json, BalanceRow, PollOutput};
use crate::amount::currency_code;
use crate::upstream::{PollError, Request, Upstream};

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

pub async fn poll(cfg: &NovaSendConfig, upstream: &Upstream) -> Result<PollOutput, PollError> {
    let resp = upstream.send(&Request::get(&cfg.path)).await?;
    parse(upstream, &resp.body)
}

/// Reads a 200 body.
pub fn parse(upstream: &Upstream, body: &[u8]) -> Result<PollOutput, PollError> {
    let entries: Vec<Entry> = decode_json(upstream, body)?;
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
        out.balances.push(BalanceRow {
            account: e.reference,
            currency,
            balance: e.balance,
            frozen: e.balance - e.available_balance,
            usable: e.available_balance,
            updated_at: None,
        });
    }
    if out.balances.is_empty() && !out.row_errors.is_empty() {
        return Err(PollError::decode(out.row_errors.join("; ")));
    }
    Ok(out)
}
