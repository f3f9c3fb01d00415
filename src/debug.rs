//! `GET /-/debug/poll?supplier=NAME` (only with `--web.enable-debug`): one
//! poll of a supplier run now, answered as JSON — each request made (method,
//! URL without secrets, status, duration, redacted body), the rows read
//! (exact decimal strings), the outcome. docs/debug.md has examples.
//!
//! The poll itself is [`crate::scheduler::Scheduler::debug_poll`]: through
//! the supplier's limiter, with a scratch copy of the kind's memory, and
//! published nowhere. This module only turns its [`DebugRun`] into the answer.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use crate::poll::{PollError, PollOutput};
use crate::upstream::TraceData;

/// One debug poll as it ran.
#[derive(Debug)]
pub struct DebugRun {
    pub supplier: String,
    pub kind: &'static str,
    pub result: Result<PollOutput, PollError>,
    pub trace: TraceData,
    pub took: Duration,
}

/// Runs a debug poll of the named supplier; `None` when it is not polled here.
pub type Runner = Arc<dyn Fn(String) -> Pin<Box<dyn Future<Output = Option<DebugRun>> + Send>> + Send + Sync>;

/// A JSON answer of the debug endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    /// Seconds, for `Retry-After` on a 429.
    pub retry_after: Option<u64>,
    pub body: String,
}

fn error(status: u16, message: &str) -> Answer {
    Answer { status, retry_after: None, body: json!({ "error": message }).to_string() }
}

/// The supplier named by the query (`supplier=NAME`, percent-encoded), or the 400 answer.
pub fn supplier_param(query: &str) -> Result<String, Answer> {
    let mut found = None;
    for piece in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = piece.split_once('=').unwrap_or((piece, ""));
        match name {
            "supplier" if found.is_none() => {
                found = Some(crate::api::percent_decode(value).map_err(|why| error(400, &format!("supplier {why}")))?)
            }
            "supplier" => return Err(error(400, "supplier is given more than once")),
            _ => return Err(error(400, "unknown parameter (expected supplier)")),
        }
    }
    found.filter(|s| !s.is_empty()).ok_or_else(|| error(400, "missing parameter supplier"))
}

/// The answer to a debug poll of `name`: 404 for an unknown supplier, 429
/// with `Retry-After` when the limiter had no free slot, else 200 with the run.
pub fn answer(name: &str, run: Option<DebugRun>) -> Answer {
    let Some(run) = run else {
        return error(404, &format!("no supplier named {name:?} is polled here"));
    };
    if let Some(wait) = run.trace.would_wait {
        // Whole seconds, rounded up: a client retrying then finds the slot free.
        let secs = wait.as_secs().saturating_add(u64::from(wait.subsec_nanos() > 0)).max(1);
        let body = json!({
            "error": format!("min_interval: the next request to {} is allowed in {secs} s; not waiting", run.supplier),
            "retry_after_seconds": secs,
        });
        return Answer { status: 429, retry_after: Some(secs), body: body.to_string() };
    }
    Answer { status: 200, retry_after: None, body: render(&run).to_string() }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn rfc3339(t: SystemTime) -> Option<String> {
    // humantime formats years 1970..=9999 only; anything else is left out.
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_secs();
    (secs <= 253_402_300_799).then(|| humantime::format_rfc3339_seconds(t).to_string())
}

fn render(run: &DebugRun) -> Value {
    let requests: Vec<Value> = run
        .trace
        .exchanges
        .iter()
        .map(|e| {
            json!({
                "method": e.method,
                "url": e.url,
                "status": e.status,
                "duration_ms": millis(e.duration),
                "body": e.body,
                "body_truncated": e.body_truncated,
                "note": e.note,
            })
        })
        .collect();
    let (outcome, error, rows, row_errors) = match &run.result {
        Ok(out) => {
            let rows: Vec<Value> = out
                .balances
                .iter()
                .map(|r| {
                    json!({
                        "account": r.account,
                        "currency": r.currency,
                        "balance": r.balance.to_string(),
                        "frozen": r.frozen.to_string(),
                        "usable": r.usable.to_string(),
                        "updated_at": r.updated_at.and_then(rfc3339),
                    })
                })
                .collect();
            ("ok", None, rows, out.row_errors.clone())
        }
        Err(e) => (e.reason.as_str(), Some(e.message.clone()), Vec::new(), Vec::new()),
    };
    json!({
        "supplier": run.supplier,
        "kind": run.kind,
        "outcome": outcome,
        "error": error,
        "duration_ms": millis(run.took),
        "requests": requests,
        "rows": rows,
        "row_errors": row_errors,
        "published": false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::poll::{BalanceRow, Reason};
    use crate::upstream::Exchange;
    use rust_decimal::Decimal;

    fn run(result: Result<PollOutput, PollError>, would_wait: Option<Duration>) -> DebugRun {
        let exchange = Exchange {
            method: "GET".into(),
            url: "http://127.0.0.1:1/balance".into(),
            status: Some(200),
            duration: Duration::from_millis(7),
            body: Some("{\"amount\": 1.50}".into()),
            body_truncated: false,
            note: None,
        };
        let trace = TraceData { requests: 1, last_status: Some(200), exchanges: vec![exchange], would_wait, ..Default::default() };
        DebugRun { supplier: "fox".into(), kind: "foxreload", result, trace, took: Duration::from_millis(9) }
    }

    #[test]
    fn rows_are_exact_strings_and_requests_listed() {
        let row = BalanceRow {
            account: "main".into(),
            currency: "USD".into(),
            balance: Decimal::from_str_exact("1.50").unwrap(),
            frozen: Decimal::ZERO,
            usable: Decimal::from_str_exact("1.50").unwrap(),
            updated_at: None,
        };
        let a = answer("fox", Some(run(Ok(PollOutput { balances: vec![row], ..Default::default() }), None)));
        assert_eq!(a.status, 200);
        let v: Value = serde_json::from_str(&a.body).unwrap();
        assert_eq!(v["rows"][0]["balance"], "1.50");
        assert_eq!(v["rows"][0]["frozen"], "0");
        assert_eq!(v["outcome"], "ok");
        assert_eq!(v["requests"][0]["status"], 200);
        assert_eq!(v["requests"][0]["duration_ms"], 7);
        assert_eq!(v["requests"][0]["body"], "{\"amount\": 1.50}");
        let failed = answer("fox", Some(run(Err(PollError::new(Reason::Auth, "http 401: no")), None)));
        let v: Value = serde_json::from_str(&failed.body).unwrap();
        assert_eq!((v["outcome"].as_str(), v["error"].as_str()), (Some("auth"), Some("http 401: no")));
    }

    #[test]
    fn a_busy_limiter_is_a_429_with_whole_seconds() {
        let a = answer("fox", Some(run(Err(PollError::new(Reason::RateLimited, "x")), Some(Duration::from_millis(4200)))));
        assert_eq!((a.status, a.retry_after), (429, Some(5)));
        let a = answer("fox", Some(run(Err(PollError::new(Reason::RateLimited, "x")), Some(Duration::from_millis(1)))));
        assert_eq!(a.retry_after, Some(1));
        assert_eq!(answer("<b>", None).status, 404);
    }

    #[test]
    fn the_query_names_one_supplier() {
        assert_eq!(supplier_param("supplier=fox%20reload"), Ok("fox reload".to_string()));
        for bad in ["", "supplier=", "supplier=a&supplier=b", "name=a", "supplier=%zz"] {
            assert_eq!(supplier_param(bad).unwrap_err().status, 400, "{bad}");
        }
    }
}
