//! Balanced (marketplace escrow "Orders", API revision 1.1): `GET /orders`.
//!
//! Basic auth with the API secret as username and an **empty password**
//! (`auth: {basic: {username: ${BALANCED_SECRET}}}`); every request sends
//! `Accept: application/vnd.api+json;revision=1.1`. Pages are
//! `GET /orders?limit=&offset=0`, then `meta.next` (an href relative to the
//! API root, joined to `base_url`) until it is null.
//!
//! An order holds funds for exactly one merchant (`links.merchant`), so each
//! (merchant, currency) is one balance row: `balance` = `frozen` = the sum of
//! `amount_escrowed` over the merchant's orders, `usable` = 0 (escrow is not
//! free for any other use). Amounts are integers in minor units (cents).
//! Gauges: `supplier_escrow_orders` (orders with escrow above zero) and
//! `supplier_escrow_debited` (sum of `amount`, what buyers paid in). Flows are
//! inferred from the escrow total: decreases are payouts (spend), increases
//! are buyer debits into escrow (top-ups).
//!
//! Error answers carry `{"errors": [{"status_code", "category_code",
//! "description", …}]}`; its `read_error` maps them onto `reason`.
//!
//! Sums are checked: escrow that adds up past what `Decimal` holds spoils
//! that merchant's row (a row error), never the poll task.
#![deny(clippy::arithmetic_side_effects)]

use std::collections::{BTreeMap, HashSet};

use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{BalanceRow, ErrorResponse, ExtraSample, PollOutput};
use crate::amount::{currency_code, minor_to_major};
use crate::upstream::{PollError, Reason, Request, Upstream};

/// The demo's simulation of this API (`--demo`).
pub mod sim;
/// Its fuzz targets (run by `crate::fuzz`).
#[cfg(test)]
pub(crate) mod fuzz;

/// The media type of API revision 1.1, sent as `Accept` on every request.
pub const ACCEPT_REVISION: &str = "application/vnd.api+json;revision=1.1";

/// `kind: balanced_orders` keys.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BalancedOrdersConfig {
    /// Orders collection path (default `/orders`).
    #[serde(default = "default_path")]
    pub path: String,
    /// Orders per page, the `limit` query parameter (default 100, 1–1000).
    #[serde(default = "default_limit")]
    pub limit: u32,
    /// Stop with reason `decode` after this many pages in one poll (default 1000):
    /// a `meta.next` that never ends must not keep a poll running forever.
    #[serde(default = "default_max_pages")]
    pub max_pages: u32,
    /// Minor-unit exponents overriding ISO 4217, e.g. `{USD: 2}`.
    #[serde(default)]
    pub currency_exponents: BTreeMap<String, u32>,
}

fn default_path() -> String {
    "/orders".into()
}
fn default_limit() -> u32 {
    100
}
fn default_max_pages() -> u32 {
    1000
}

impl BalancedOrdersConfig {
    /// Checks beyond serde, reported under `path`.
    pub fn validate(&self, path: &str, issues: &mut Vec<crate::settings::ConfigIssue>) {
        let mut issue = |key: &str, message: &str| {
            issues.push(crate::settings::ConfigIssue { path: format!("{path}.{key}"), message: message.into() })
        };
        if !self.path.starts_with('/') {
            issue("path", "must start with '/'");
        }
        if !(1..=1000).contains(&self.limit) {
            issue("limit", "must be between 1 and 1000");
        }
        if self.max_pages == 0 {
            issue("max_pages", "must be greater than 0");
        }
        for code in self.currency_exponents.keys() {
            if currency_code(code).as_deref() != Some(code.as_str()) {
                issue("currency_exponents", &format!("{code:?} is not an upper-case 3-letter currency code"));
            }
        }
    }
}

#[derive(Deserialize)]
struct Page {
    /// Each order is read on its own: one bad order spoils its merchant's row, not the poll.
    orders: Vec<Box<RawValue>>,
    #[serde(default)]
    meta: Option<Meta>,
}

#[derive(Deserialize)]
struct Meta {
    #[serde(default)]
    next: Option<String>,
}

#[derive(Deserialize)]
struct Order {
    id: String,
    #[serde(deserialize_with = "crate::amount::exact")]
    amount: Decimal,
    #[serde(deserialize_with = "crate::amount::exact")]
    amount_escrowed: Decimal,
    currency: String,
    links: OrderLinks,
}

#[derive(Deserialize)]
struct OrderLinks {
    merchant: Option<String>,
}

/// Running totals of one (merchant, currency), in minor units until the end.
#[derive(Default)]
struct Totals {
    escrowed: Decimal,
    debited: Decimal,
    orders_with_escrow: u64,
}

impl super::Kind for BalancedOrdersConfig {
    const NAME: &'static str = "balanced_orders";
    const DEFAULT_BASE_URL: Option<&'static str> = Some("https://api.balancedpayments.com");
    // undocumented (the service is defunct); be gentle, pages included
    const DEFAULT_MIN_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

    fn validate(&self, path: &str, issues: &mut Vec<crate::settings::ConfigIssue>) {
        BalancedOrdersConfig::validate(self, path, issues);
    }

    async fn poll(&self, upstream: &Upstream, _memory: &mut super::KindMemory) -> Result<PollOutput, PollError> {
        poll(self, upstream).await
    }

    fn read_error(response: &ErrorResponse<'_>) -> Option<(Reason, String)> {
        read_error(response)
    }
}

pub async fn poll(cfg: &BalancedOrdersConfig, upstream: &Upstream) -> Result<PollOutput, PollError> {
    let mut walk = Walk::default();
    let mut request = Some(get(&cfg.path).query("limit", cfg.limit).query("offset", 0));
    while let Some(req) = request {
        let resp = upstream.send(&req).await?;
        request = walk.page(cfg, upstream, &resp.body)?;
    }
    walk.finish(cfg)
}

/// Reads the answers to one poll's page requests, in order, exactly as
/// [`poll`] does but without sending anything (tests, fuzzing): the walk ends
/// at the first page without `meta.next`, or where `pages` end.
pub fn parse_pages(cfg: &BalancedOrdersConfig, upstream: &Upstream, pages: &[&[u8]]) -> Result<PollOutput, PollError> {
    let mut walk = Walk::default();
    for body in pages {
        if walk.page(cfg, upstream, body)?.is_none() {
            break;
        }
    }
    walk.finish(cfg)
}

/// A GET asking for API revision 1.1.
fn get(path: impl Into<String>) -> Request {
    Request::get(path).header(reqwest::header::ACCEPT, ACCEPT_REVISION)
}

/// What the pages of one poll add up to.
#[derive(Default)]
struct Walk {
    totals: BTreeMap<(String, String), Totals>,
    /// (merchant, currency) rows with an unreadable order: not exported this poll,
    /// since a partial sum would read as a payout.
    spoiled: BTreeMap<(String, String), String>,
    order_ids: HashSet<String>,
    row_errors: Vec<String>,
    /// Pages read so far, and the `meta.next` paths followed.
    pages: u32,
    hrefs_seen: HashSet<String>,
}

impl Walk {
    /// Reads one 200 page; returns the request for `meta.next`, if any.
    fn page(&mut self, cfg: &BalancedOrdersConfig, upstream: &Upstream, body: &[u8]) -> Result<Option<Request>, PollError> {
        let page_number = self.pages;
        self.pages = self.pages.saturating_add(1);
        let page: Page = upstream.decode(body).map_err(|e| PollError::decode(format!("page {page_number}: {}", e.message)))?;
        for (i, raw) in page.orders.iter().enumerate() {
            let at = format!("page {page_number} $.orders[{i}]");
            self.order(upstream, raw.get(), &at);
        }
        let Some(next) = page.meta.and_then(|m| m.next).filter(|n| !n.is_empty()) else { return Ok(None) };
        if self.pages >= cfg.max_pages {
            return Err(PollError::decode(format!("more than {} pages of orders (max_pages)", cfg.max_pages)));
        }
        let path = next_path(upstream, &next)?;
        if !self.hrefs_seen.insert(path.clone()) {
            return Err(PollError::decode(format!("meta.next repeats an earlier page ({})", upstream.snippet(path.as_bytes()))));
        }
        Ok(Some(get(path)))
    }

    fn order(&mut self, upstream: &Upstream, raw: &str, at: &str) {
        let mut de = serde_json::Deserializer::from_str(raw);
        let order: Order = match serde_path_to_error::deserialize(&mut de) {
            Ok(o) => o,
            Err(e) => {
                let path = e.path().to_string();
                let message = upstream.redact(&e.into_inner().to_string());
                // Spoil the merchant's row if the order still says whose it is.
                let merchant = serde_json::from_str::<serde_json::Value>(raw).ok().and_then(|v| {
                    let m = v.pointer("/links/merchant")?.as_str()?.to_string();
                    let c = currency_code(v.get("currency")?.as_str()?)?;
                    Some((m, c))
                });
                let text = format!("{at}.{path}: {message}");
                match merchant {
                    Some(key) => {
                        self.spoiled.entry(key).or_insert_with(|| text.clone());
                    }
                    None => self.row_errors.push(text),
                }
                return;
            }
        };
        // Offset paging can shift while orders are created: count each order once.
        if !self.order_ids.insert(order.id.clone()) {
            return;
        }
        let Some(merchant) = order.links.merchant.filter(|m| !m.is_empty()) else {
            self.row_errors.push(format!("{at}.links.merchant: missing; order {} not attributed", upstream.snippet(order.id.as_bytes())));
            return;
        };
        let Some(currency) = currency_code(&order.currency) else {
            self.row_errors.push(format!("{at}.currency: not a currency code"));
            return;
        };
        let key = (merchant, currency);
        if order.amount < Decimal::ZERO || order.amount_escrowed < Decimal::ZERO {
            self.spoiled.entry(key).or_insert_with(|| format!("{at}: negative amount"));
            return;
        }
        let t = self.totals.entry(key.clone()).or_default();
        match (t.escrowed.checked_add(order.amount_escrowed), t.debited.checked_add(order.amount)) {
            (Some(escrowed), Some(debited)) => {
                (t.escrowed, t.debited) = (escrowed, debited);
                if order.amount_escrowed > Decimal::ZERO {
                    t.orders_with_escrow = t.orders_with_escrow.saturating_add(1);
                }
            }
            (escrowed, _) => {
                let field = if escrowed.is_none() { "amount_escrowed" } else { "amount" };
                self.spoiled.entry(key).or_insert_with(|| format!("{at}.{field}: the merchant's sum overflows"));
            }
        }
    }

    fn finish(mut self, cfg: &BalancedOrdersConfig) -> Result<PollOutput, PollError> {
        let mut out = PollOutput::default();
        for (key, reason) in &self.spoiled {
            self.totals.remove(key);
            out.row_errors.push(format!("{} {}: not exported this poll: {reason}", key.0, key.1));
        }
        for ((merchant, currency), t) in self.totals {
            let major = |minor: Decimal| minor_to_major(minor, &currency, &cfg.currency_exponents);
            let (escrowed, debited) = match (major(t.escrowed), major(t.debited)) {
                (Ok(e), Ok(d)) => (e, d),
                (Err(e), _) | (_, Err(e)) => {
                    out.row_errors.push(format!("{merchant} {currency}: {e}"));
                    continue;
                }
            };
            let labels = vec![("account", merchant.clone()), ("currency", currency.clone())];
            out.gauges.push(ExtraSample {
                name: "supplier_escrow_orders",
                help: "Orders holding escrow above zero, per merchant (escrow suppliers).",
                labels: labels.clone(),
                value: Decimal::from(t.orders_with_escrow),
            });
            out.gauges.push(ExtraSample {
                name: "supplier_escrow_debited",
                help: "Sum of amounts debited into the merchant's orders, in major units (escrow suppliers).",
                labels,
                value: debited,
            });
            out.balances.push(BalanceRow { account: merchant, currency, balance: escrowed, frozen: escrowed, usable: Decimal::ZERO, updated_at: None });
        }
        out.row_errors.extend(self.row_errors);
        if out.balances.is_empty() && !out.row_errors.is_empty() {
            return Err(PollError::decode(out.row_errors.join("; ")));
        }
        Ok(out)
    }
}

/// Turns `meta.next` into a path for [`Upstream::url_for`]. Relative hrefs
/// are joined to `base_url`; an absolute one must point at `base_url`'s origin
/// (credentials never follow a link elsewhere).
fn next_path(upstream: &Upstream, next: &str) -> Result<String, PollError> {
    if next.starts_with('/') && !next.starts_with("//") {
        return Ok(next.to_string());
    }
    let bad = || PollError::decode(format!("meta.next {:?} is not a path on base_url", upstream.snippet(next.as_bytes())));
    let url = reqwest::Url::parse(next).map_err(|_| bad())?;
    if url.origin() != upstream.base_url().origin() {
        return Err(bad());
    }
    // An absolute link already includes base_url's path prefix.
    let prefix = upstream.base_url().path().trim_end_matches('/');
    let path = url.path().strip_prefix(prefix).filter(|p| p.starts_with('/')).ok_or_else(bad)?;
    Ok(match url.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    })
}

/// A Balanced `errors[]` envelope, read from the whole error body the
/// driver hands over: `{"errors": [{"status_code", "category_code", "description", …}]}`.
#[derive(Debug, Default, PartialEq, Deserialize)]
pub struct Envelope {
    errors: Vec<EnvelopeError>,
}

/// One entry of the envelope; the first one names the failure.
#[derive(Debug, Default, PartialEq, Deserialize)]
pub struct EnvelopeError {
    #[serde(default)]
    pub status_code: Option<u16>,
    #[serde(default)]
    pub category_code: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

impl Envelope {
    /// The first error of `body` if it is an `errors[]` envelope naming a
    /// status or a category.
    pub fn read(body: &[u8]) -> Option<EnvelopeError> {
        let first = serde_json::from_slice::<Envelope>(body).ok()?.errors.into_iter().next()?;
        (first.status_code.is_some() || first.category_code.is_some()).then_some(first)
    }
}

impl EnvelopeError {
    /// The `reason` label for this error: from the envelope's `status_code`
    /// (the HTTP status when absent); category `not-found` is `not_found`
    /// whatever the status. Business refusals (402 funding, 409
    /// `insufficient-funds`, 400 `request`) are `upstream_status`.
    pub fn reason(&self, http_reason: Reason) -> Reason {
        if self.category_code.as_deref() == Some("not-found") {
            return Reason::NotFound;
        }
        match self.status_code {
            Some(401) => Reason::Auth,
            Some(403) => Reason::Forbidden,
            Some(404) => Reason::NotFound,
            Some(429) => Reason::RateLimited,
            Some(500..=599) => Reason::ServerError,
            Some(400..=499) => Reason::UpstreamStatus,
            _ => http_reason,
        }
    }
}

/// [`super::Kind::read_error`] for Balanced: the reason from the envelope,
/// the message `http 409 insufficient-funds: <description>`.
fn read_error(response: &ErrorResponse<'_>) -> Option<(Reason, String)> {
    let envelope = Envelope::read(response.body)?;
    let mut message = format!("http {}", response.status);
    if let Some(c) = &envelope.category_code {
        message.push(' ');
        message.push_str(c);
    }
    if let Some(d) = &envelope.description {
        message.push_str(": ");
        message.push_str(d);
    }
    Some((envelope.reason(Reason::from_status(response.status)), message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::test_upstream;

    fn cfg() -> BalancedOrdersConfig {
        BalancedOrdersConfig { path: default_path(), limit: 10, max_pages: 3, currency_exponents: BTreeMap::new() }
    }

    fn order(id: &str, merchant: &str, amount: &str, escrowed: &str) -> String {
        format!(r#"{{"id": "{id}", "amount": {amount}, "amount_escrowed": {escrowed}, "currency": "USD", "links": {{"merchant": "{merchant}"}}}}"#)
    }

    fn page(orders: &[String], next: &str) -> Vec<u8> {
        format!(r#"{{"orders": [{}], "meta": {{"next": {next}}}}}"#, orders.join(",")).into_bytes()
    }

    /// Sums past `Decimal::MAX` spoil that merchant's row, not the poll (and never panic).
    #[test]
    fn escrow_sums_out_of_range_spoil_the_merchant_row() {
        let max = "79228162514264337593543950335";
        let p0 = page(&[order("OR1", "CU1", max, max), order("OR2", "CU2", "100", "50")], r#""/orders?offset=2""#);
        let p1 = page(&[order("OR3", "CU1", "1", "1")], "null");
        let out = parse_pages(&cfg(), &test_upstream(), &[&p0, &p1]).unwrap();
        assert_eq!(out.balances.len(), 1);
        assert_eq!((out.balances[0].account.as_str(), out.balances[0].balance), ("CU2", Decimal::new(50, 2)));
        assert_eq!(out.row_errors, ["CU1 USD: not exported this poll: page 1 $.orders[0].amount_escrowed: the merchant's sum overflows"]);
        // Only the debited sum overflowing is named as such.
        let p = page(&[order("OR1", "CU1", max, "0"), order("OR2", "CU1", max, "0")], "null");
        let e = parse_pages(&cfg(), &test_upstream(), &[&p]).unwrap_err();
        assert_eq!(e.message, "CU1 USD: not exported this poll: page 0 $.orders[1].amount: the merchant's sum overflows");
    }

    #[test]
    fn edge_amounts_are_exact_or_name_the_field() {
        let p = page(&[order("OR1", "CU1", "79228162514264337593543950335", "-0")], "null");
        let out = parse_pages(&cfg(), &test_upstream(), &[&p]).unwrap();
        assert_eq!(out.balances[0].balance, Decimal::ZERO);
        assert_eq!(out.gauges[1].value.to_string(), "792281625142643375935439503.35");
        for (amount, field) in [("1e30", "amount"), ("1e-30", "amount"), ("123456789012345678901234567890", "amount"), ("1.00000000000000000000000000001e0", "amount")] {
            let p = page(&[order("OR1", "CU1", amount, "1")], "null");
            let e = parse_pages(&cfg(), &test_upstream(), &[&p]).unwrap_err();
            assert!(e.message.starts_with(&format!("CU1 USD: not exported this poll: page 0 $.orders[0].{field}: ")), "{amount}: {}", e.message);
        }
        // Scaling minor units past 28 decimal places is out of range, not rounded.
        let p = page(&[order("OR1", "CU1", "1", "0.0000000000000000000000000001")], "null");
        let e = parse_pages(&cfg(), &test_upstream(), &[&p]).unwrap_err();
        assert!(e.message.starts_with("CU1 USD: number"), "{}", e.message);
    }

    #[test]
    fn pages_past_max_pages_and_repeated_links_fail_the_poll() {
        let next = |n: u32| page(&[], &format!(r#""/orders?offset={n}""#));
        let (a, b, c) = (next(1), next(2), next(3));
        assert_eq!(parse_pages(&cfg(), &test_upstream(), &[&a, &b, &c]).unwrap_err().message, "more than 3 pages of orders (max_pages)");
        assert!(parse_pages(&cfg(), &test_upstream(), &[&a, &a]).unwrap_err().message.starts_with("meta.next repeats an earlier page"));
    }

    fn answer(status: u16, body: &str) -> Option<(Reason, String)> {
        read_error(&ErrorResponse { status, headers: &reqwest::header::HeaderMap::new(), body: body.as_bytes() })
    }

    #[test]
    fn envelopes_with_multibyte_text_are_read_without_panicking() {
        let (reason, message) = answer(404, "{\"errors\": [{\"category_code\": \"not-found\", \"description\": \"é\u{301}\u{200f}\\u0000\"}]}").unwrap();
        assert_eq!(reason, Reason::NotFound);
        assert_eq!(message, "http 404 not-found: é\u{301}\u{200f}\0");
        assert_eq!(answer(404, "é\"errors\": [{\"status_code\": 4é09"), None, "not JSON: the driver's reading");
    }

    #[test]
    fn envelope_maps_status_and_category() {
        let body = r#"{"errors": [{"status": "Conflict", "status_code": 409, "category_code": "insufficient-funds", "description": "Order has insufficient funds. Your request id is OHM123.", "request_id": "OHM123"}]}"#;
        let env = Envelope::read(body.as_bytes()).unwrap();
        assert_eq!(env.status_code, Some(409));
        assert_eq!(env.category_code.as_deref(), Some("insufficient-funds"));
        assert_eq!(env.reason(Reason::UpstreamStatus), Reason::UpstreamStatus);
        assert_eq!(answer(409, body).unwrap(), (Reason::UpstreamStatus, "http 409 insufficient-funds: Order has insufficient funds. Your request id is OHM123.".to_string()));
        let nf = r#"{"errors":[{"status":"Not Found","status_code":404,"category_code":"not-found","description":"x"}]}"#;
        assert_eq!(answer(404, nf).unwrap().0, Reason::NotFound);
        let auth = r#"{"errors": [{"status": "Unauthorized", "status_code": 401, "category_code": "authentication-required"}]}"#;
        assert_eq!(answer(401, auth).unwrap(), (Reason::Auth, "http 401 authentication-required".to_string()));
        assert_eq!(answer(400, r#"{"error": "nope"}"#), None);
        assert_eq!(answer(400, r#"{"errors": []}"#), None);
    }
}
