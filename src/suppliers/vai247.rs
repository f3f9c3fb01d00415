//! Vai247 / DVPay (payment gateway): `POST /api/v1/payment-gateway/balance-inquiry`,
//! header `X-Api-Key`, no body.
//!
//! `{"statusCode": 200, "message": "Success", "data": {"usd": {"balance", "freeze", "usable"}, "khr": {…}}}`
//! Currency keys are lower case. `statusCode` in the body is checked as well
//! as the HTTP status: a 200 carrying `statusCode: 401` is an auth failure.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{decode_json, BalanceRow, PollOutput};
use crate::amount::currency_code;
use crate::upstream::{PollError, Reason, Request, Upstream};

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

pub async fn poll(cfg: &Vai247Config, upstream: &Upstream) -> Result<PollOutput, PollError> {
    let resp = upstream.send(&Request::post(&cfg.path)).await?;
    parse(upstream, &resp.body)
}

/// Reads a 200 body.
pub fn parse(upstream: &Upstream, body: &[u8]) -> Result<PollOutput, PollError> {
    let body: Body = decode_json(upstream, body)?;
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
                let usable = w.usable.unwrap_or(w.balance - freeze);
                out.balances.push(BalanceRow {
                    account: "main".into(),
                    currency,
                    balance: w.balance,
                    frozen: freeze,
                    usable,
                    updated_at: None,
                });
            }
            Err(e) => out.row_errors.push(e),
        }
    }
    if out.balances.is_empty() {
        let detail = if out.row_errors.is_empty() { "no currencies".to_string() } else { out.row_errors.join("; ") };
        return Err(PollError::decode(format!("$.data: {detail}")));
    }
    Ok(out)
}

fn wallet(key: &str, raw: &str) -> Result<Wallet, String> {
    let mut de = serde_json::Deserializer::from_str(raw);
    serde_path_to_error::deserialize::<_, Wallet>(&mut de)
        .map_err(|e| {
            let path = e.path().to_string();
            format!("$.data.{key}.{path}: {}", e.into_inner())
        })
}

