//! The read API for order systems: `GET /api/v1/balances[?supplier=S]` and
//! `GET /api/v1/balances/check?supplier=S&currency=C&amount=A[&account=X][&allow_stale=true]`.
//!
//! Owns the query grammar (percent-decoding, unknown, repeated and empty
//! parameters, the amount's plain-decimal syntax), the answers and their JSON,
//! and the error statuses. Everything here is a pure function of (slots,
//! method, path, query, now) → [`Answer`]: the server only wraps it in HTTP
//! (after basic auth, like every route), and the tests run it on fixed clocks.
//!
//! Amounts are JSON strings holding the exact `Decimal` as read from the
//! supplier (`"284.50"`), never a float. The answer is as fresh as the last
//! poll: spend since then is unknown here (docs/api.md says so to callers).
//! Each slot's published state is loaded once per request (`arc-swap`, no
//! lock) and serialized straight into the body, with no intermediate tree.
#![deny(clippy::arithmetic_side_effects)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hyper::{Method, StatusCode};
use rust_decimal::Decimal;
use serde::{Serialize, Serializer};

use crate::amount::{currency_code, parse_decimal_text, AmountError};
use crate::config::Threshold;
use crate::snapshot::{Balance, SupplierSlot, SupplierState};

/// The list endpoint.
pub const BALANCES_PATH: &str = "/api/v1/balances";
/// The pre-order check endpoint.
pub const CHECK_PATH: &str = "/api/v1/balances/check";
/// The methods both endpoints answer (`Allow` of a 405).
pub const ALLOWED_METHODS: &str = "GET, HEAD";

/// Longest amount text read; anything longer is refused before parsing.
const MAX_AMOUNT_CHARS: usize = 64;
/// Longest decoded parameter value (account ids included).
const MAX_VALUE_BYTES: usize = 1024;
/// Longest user text echoed back in an error message.
const MAX_ECHO_CHARS: usize = 64;
/// Accounts named in an "ambiguous account" error.
const MAX_NAMED_ACCOUNTS: usize = 5;

/// One API answer: status, JSON body, and `Allow` for a 405.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Vec<u8>,
    pub allow: Option<&'static str>,
}

/// Why a request gets no data. Each maps to one status and, when one
/// parameter is at fault, names it in the body's `parameter`. Messages echo
/// only the (cut) query text and the exporter's own names, never a header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("no such API endpoint; there are {BALANCES_PATH} and {CHECK_PATH}")]
    NoEndpoint,
    #[error("method not allowed; use GET")]
    Method,
    #[error("a parameter name {0}")]
    BadName(&'static str),
    #[error("unknown parameter {name:?}; this endpoint takes {expected}")]
    UnknownParameter { name: String, expected: &'static str },
    #[error("parameter {0} is given more than once")]
    Repeated(&'static str),
    #[error("missing required parameter {0}")]
    Missing(&'static str),
    #[error("parameter {parameter} {problem}")]
    Invalid { parameter: &'static str, problem: String },
    #[error("no supplier named {0:?}")]
    UnknownSupplier(String),
    #[error("supplier {0:?} has not been polled successfully yet")]
    NotPolledYet(String),
    #[error("supplier {supplier:?} has no balance in {currency}")]
    UnknownCurrency { supplier: String, currency: String },
    #[error("supplier {supplier:?} has no account {account:?} in {currency}")]
    UnknownAccount { supplier: String, account: String, currency: String },
    #[error("supplier {supplier:?} has {count} accounts in {currency} ({names}); name one with the account parameter")]
    AmbiguousAccount { supplier: String, currency: String, count: usize, names: String },
    #[error("usable {usable} minus amount {amount} cannot be computed exactly (out of Decimal's 28-digit range)")]
    Overflow { usable: Decimal, amount: Decimal },
    #[error("internal error: the answer could not be serialized")]
    Internal,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::NoEndpoint | ApiError::UnknownSupplier(_) | ApiError::UnknownCurrency { .. } | ApiError::UnknownAccount { .. } => {
                StatusCode::NOT_FOUND
            }
            ApiError::Method => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::NotPolledYet(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::BadName(_)
            | ApiError::UnknownParameter { .. }
            | ApiError::Repeated(_)
            | ApiError::Missing(_)
            | ApiError::Invalid { .. }
            | ApiError::AmbiguousAccount { .. }
            | ApiError::Overflow { .. } => StatusCode::BAD_REQUEST,
        }
    }

    /// The query parameter at fault, if one is.
    pub fn parameter(&self) -> Option<&str> {
        match self {
            ApiError::UnknownParameter { name, .. } => Some(name),
            ApiError::Repeated(p) | ApiError::Missing(p) | ApiError::Invalid { parameter: p, .. } => Some(p),
            ApiError::UnknownSupplier(_) | ApiError::NotPolledYet(_) => Some("supplier"),
            ApiError::UnknownCurrency { .. } => Some("currency"),
            ApiError::UnknownAccount { .. } | ApiError::AmbiguousAccount { .. } => Some("account"),
            ApiError::Overflow { .. } => Some("amount"),
            ApiError::NoEndpoint | ApiError::Method | ApiError::BadName(_) | ApiError::Internal => None,
        }
    }

    fn answer(&self) -> Answer {
        #[derive(Serialize)]
        struct ErrorJson<'a> {
            error: String,
            #[serde(skip_serializing_if = "Option::is_none")]
            parameter: Option<&'a str>,
        }
        let body = ErrorJson { error: self.to_string(), parameter: self.parameter() };
        // Strings only: serializing cannot fail, but a panic is never the answer.
        let body = serde_json::to_vec(&body).unwrap_or_else(|_| br#"{"error":"internal error"}"#.to_vec());
        Answer { status: self.status(), body, allow: matches!(self, ApiError::Method).then_some(ALLOWED_METHODS) }
    }
}

/// Answers a request under `/api/`.
pub fn answer(slots: &[Arc<SupplierSlot>], method: &Method, path: &str, query: Option<&str>, now: SystemTime) -> Answer {
    let result = match path {
        BALANCES_PATH | CHECK_PATH if *method != Method::GET && *method != Method::HEAD => Err(ApiError::Method),
        BALANCES_PATH => balances(slots, query, now),
        CHECK_PATH => check(slots, query, now),
        _ => Err(ApiError::NoEndpoint),
    };
    match result.and_then(|body| serde_json::to_vec(&body).map_err(|_| ApiError::Internal)) {
        Ok(body) => Answer { status: StatusCode::OK, body, allow: None },
        Err(e) => e.answer(),
    }
}

/// What a successful request serializes.
#[derive(Serialize)]
#[serde(untagged)]
enum Body<'a> {
    Balances { suppliers: SupplierList<'a> },
    Check(CheckJson),
}

fn balances<'a>(slots: &'a [Arc<SupplierSlot>], query: Option<&str>, now: SystemTime) -> Result<Body<'a>, ApiError> {
    let params = Params::parse(query, &["supplier"], "supplier")?;
    let selected = match params.get("supplier") {
        Some(name) => vec![find_supplier(slots, name)?],
        None => slots.iter().collect(),
    };
    Ok(Body::Balances { suppliers: SupplierList { slots: selected, now } })
}

fn find_supplier<'a>(slots: &'a [Arc<SupplierSlot>], name: &str) -> Result<&'a Arc<SupplierSlot>, ApiError> {
    slots.iter().find(|s| s.name == name).ok_or_else(|| ApiError::UnknownSupplier(echo(name)))
}

/// The answer of `/check`: can an order of `amount` be paid from this balance?
#[derive(Debug, Serialize)]
struct CheckJson {
    sufficient: bool,
    usable: Exact,
    after: Exact,
    below_low_threshold_after: bool,
    stale: bool,
    age_seconds: u64,
    /// The account checked (the one found when the request named none).
    account: String,
    currency: String,
}

fn check<'a>(slots: &[Arc<SupplierSlot>], query: Option<&str>, now: SystemTime) -> Result<Body<'a>, ApiError> {
    const EXPECTED: &str = "supplier, currency, amount, account, allow_stale";
    let params = Params::parse(query, &["supplier", "currency", "amount", "account", "allow_stale"], EXPECTED)?;
    let supplier = params.required("supplier")?;
    let currency_text = params.required("currency")?;
    let amount_text = params.required("amount")?;
    // Currencies are stored as upper-case ISO 4217 codes (amount::currency_code,
    // for every kind and for thresholds), so any case matches; padding does not.
    let currency = currency_code(currency_text)
        .filter(|_| currency_text.len() == 3)
        .ok_or_else(|| ApiError::Invalid { parameter: "currency", problem: "must be a 3-letter currency code such as USD".into() })?;
    let amount = parse_amount(amount_text).map_err(|problem| ApiError::Invalid { parameter: "amount", problem })?;
    let allow_stale = match params.get("allow_stale") {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(ApiError::Invalid { parameter: "allow_stale", problem: "must be true or false".into() }),
    };

    let slot = find_supplier(slots, supplier)?;
    let state = slot.state();
    if state.last_success.is_none() {
        return Err(ApiError::NotPolledYet(slot.name.clone()));
    }
    let (account, balance) = find_balance(slot, &state, params.get("account"), &currency)?;
    let usable = balance.row.usable;
    let after = exact_difference(usable, amount).ok_or(ApiError::Overflow { usable, amount })?;
    let age = now.duration_since(balance.fetched_at).unwrap_or_default();
    let stale = age > slot.poll_interval.saturating_mul(2);
    let low = Threshold::applying_to(&slot.thresholds, account, &currency).and_then(|t| t.low);
    Ok(Body::Check(CheckJson {
        sufficient: (!stale || allow_stale) && usable >= amount,
        usable: Exact(usable),
        after: Exact(after),
        below_low_threshold_after: low.is_some_and(|low| after < low),
        stale,
        age_seconds: age.as_secs(),
        account: account.to_string(),
        currency,
    }))
}

/// The balance of `account` (or of the only account) in `currency`.
fn find_balance<'s>(
    slot: &SupplierSlot,
    state: &'s SupplierState,
    account: Option<&str>,
    currency: &str,
) -> Result<(&'s str, &'s Balance), ApiError> {
    let mut in_currency = state.balances.iter().filter(|((_, c), _)| c == currency);
    match account {
        Some(wanted) => in_currency.find(|((a, _), _)| a == wanted).map(|((a, _), b)| (a.as_str(), b)).ok_or_else(|| {
            if state.balances.iter().any(|((_, c), _)| c == currency) {
                ApiError::UnknownAccount { supplier: slot.name.clone(), account: echo(wanted), currency: currency.to_string() }
            } else {
                ApiError::UnknownCurrency { supplier: slot.name.clone(), currency: currency.to_string() }
            }
        }),
        None => match (in_currency.next(), in_currency.next()) {
            (None, _) => Err(ApiError::UnknownCurrency { supplier: slot.name.clone(), currency: currency.to_string() }),
            (Some(((a, _), b)), None) => Ok((a.as_str(), b)),
            (Some(_), Some(_)) => {
                let accounts: Vec<&str> = state.balances.iter().filter(|((_, c), _)| c == currency).map(|((a, _), _)| a.as_str()).collect();
                let mut names: Vec<String> = accounts.iter().take(MAX_NAMED_ACCOUNTS).map(|a| echo(a)).collect();
                if accounts.len() > MAX_NAMED_ACCOUNTS {
                    names.push("…".into());
                }
                Err(ApiError::AmbiguousAccount {
                    supplier: slot.name.clone(),
                    currency: currency.to_string(),
                    count: accounts.len(),
                    names: names.join(", "),
                })
            }
        },
    }
}

/// `usable − amount`, or `None` when `Decimal` cannot hold it exactly.
/// `checked_sub` rounds (dropping decimals) rather than failing when the exact
/// result needs more than 96 bits at the operands' scale, so a result whose
/// scale is below the larger operand scale is refused: it may be rounded.
fn exact_difference(usable: Decimal, amount: Decimal) -> Option<Decimal> {
    usable.checked_sub(amount).filter(|after| after.scale() == usable.scale().max(amount.scale()))
}

/// Reads an order amount: a plain non-negative decimal (`12.50`, `0`, `007`):
/// digits with at most one `.` between digits; no sign, exponent, spaces,
/// thousands separators, `NaN`/`inf` or hex. The error is the problem, to
/// follow "parameter amount".
fn parse_amount(text: &str) -> Result<Decimal, String> {
    if text.len() > MAX_AMOUNT_CHARS {
        return Err(format!("is longer than {MAX_AMOUNT_CHARS} characters"));
    }
    if text.starts_with('-') {
        return Err("must not be negative (write it without a sign)".into());
    }
    let plain = "must be a plain decimal such as 12.50 (digits and one optional '.', no sign, exponent, spaces or separators)";
    if !text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(plain.into());
    }
    match parse_decimal_text(text) {
        Ok(amount) => Ok(amount),
        Err(AmountError::OutOfRange(_)) => Err("is not an exact decimal within 28 significant digits".into()),
        Err(_) => Err(plain.into()),
    }
}

/// The decoded parameters of one query, each known and given once.
#[derive(Debug, Default)]
struct Params {
    values: Vec<(&'static str, String)>,
}

impl Params {
    /// Splits `a=1&b=2` (empty pieces skipped), percent-decodes names and
    /// values (`+` is a space, as HTML forms and `curl --data-urlencode` send
    /// it), and refuses unknown or repeated names, invalid escapes or UTF-8,
    /// control characters (NUL included), empty and over-long values.
    fn parse(query: Option<&str>, known: &[&'static str], expected: &'static str) -> Result<Params, ApiError> {
        let mut params = Params::default();
        for piece in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (raw_name, raw_value) = piece.split_once('=').unwrap_or((piece, ""));
            let name = percent_decode(raw_name).map_err(ApiError::BadName)?;
            let Some(&name) = known.iter().find(|k| **k == name) else {
                return Err(ApiError::UnknownParameter { name: echo(&name), expected });
            };
            if params.get(name).is_some() {
                return Err(ApiError::Repeated(name));
            }
            let invalid = |problem: &str| ApiError::Invalid { parameter: name, problem: problem.into() };
            let value = percent_decode(raw_value).map_err(invalid)?;
            if value.is_empty() {
                return Err(invalid("must not be empty"));
            }
            if value.len() > MAX_VALUE_BYTES {
                return Err(ApiError::Invalid { parameter: name, problem: format!("is longer than {MAX_VALUE_BYTES} bytes") });
            }
            if value.chars().any(char::is_control) {
                return Err(invalid("contains a control character"));
            }
            params.values.push((name, value));
        }
        Ok(params)
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.values.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    fn required(&self, name: &'static str) -> Result<&str, ApiError> {
        self.get(name).ok_or(ApiError::Missing(name))
    }
}

/// Percent-decodes one query component into UTF-8 text. (Hand-written: a
/// dozen lines, where the `percent-encoding` crate would decode invalid UTF-8
/// lossily unless asked, and `form_urlencoded` always does.)
pub(crate) fn percent_decode(raw: &str) -> Result<String, &'static str> {
    let mut bytes = Vec::with_capacity(raw.len());
    let mut rest = raw.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        rest = tail;
        match b {
            b'+' => bytes.push(b' '),
            b'%' => {
                // Two hex digits exactly (`from_str_radix` alone would take `%+1`).
                let hex = rest.get(..2).filter(|h| h.iter().all(u8::is_ascii_hexdigit));
                let byte = hex.and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok());
                bytes.push(byte.ok_or("has a malformed percent-escape (expected %XX)")?);
                rest = rest.get(2..).unwrap_or_default();
            }
            b => bytes.push(b),
        }
    }
    String::from_utf8(bytes).map_err(|_| "is not valid UTF-8")
}

/// Cuts user text for an error message (the message is JSON-escaped whole).
fn echo(text: &str) -> String {
    match text.char_indices().nth(MAX_ECHO_CHARS) {
        Some((end, _)) => format!("{}…", text.get(..end).unwrap_or_default()),
        None => text.to_string(),
    }
}

/// An exact decimal as a JSON string: `"284.50"`, digits and scale as read.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Exact(Decimal);

impl Serialize for Exact {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// A time as RFC 3339 UTC (`2026-05-01T13:45:22Z`, nanoseconds when not
/// whole), or `null` outside the years 1970..=9999 that RFC 3339 and
/// humantime can write (a supplier's own timestamp is upstream data).
#[derive(Debug, Clone, Copy)]
struct Rfc3339(Option<SystemTime>);

impl Serialize for Rfc3339 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        const LAST_SECOND_OF_9999: u64 = 253_402_300_799;
        let in_range = |t: &SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).is_ok_and(|d| d.as_secs() <= LAST_SECOND_OF_9999);
        match self.0.filter(in_range) {
            Some(t) => s.collect_str(&humantime::format_rfc3339(t)),
            None => s.serialize_none(),
        }
    }
}

/// The suppliers of a `/balances` answer, each state loaded as it is written.
struct SupplierList<'a> {
    slots: Vec<&'a Arc<SupplierSlot>>,
    now: SystemTime,
}

impl Serialize for SupplierList<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.slots.iter().map(|slot| SupplierEntry { slot: slot.as_ref(), state: slot.state(), now: self.now }))
    }
}

struct SupplierEntry<'a> {
    slot: &'a SupplierSlot,
    state: Arc<SupplierState>,
    now: SystemTime,
}

#[derive(Serialize)]
struct SupplierJson<'a> {
    supplier: &'a str,
    kind: &'a str,
    up: bool,
    last_success: Rfc3339,
    /// The reason of the last poll's failure; `null` while the last poll succeeded.
    last_error_reason: Option<&'static str>,
    balances: Vec<BalanceJson<'a>>,
}

#[derive(Serialize)]
struct BalanceJson<'a> {
    account: &'a str,
    currency: &'a str,
    balance: Exact,
    frozen: Exact,
    usable: Exact,
    updated_at: Rfc3339,
    /// Since the last successful fetch of this balance.
    age_seconds: u64,
    low_threshold: Option<Exact>,
}

impl Serialize for SupplierEntry<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (slot, state) = (self.slot, &self.state);
        let balances = state
            .balances
            .iter()
            .map(|((account, currency), b)| BalanceJson {
                account,
                currency,
                balance: Exact(b.row.balance),
                frozen: Exact(b.row.frozen),
                usable: Exact(b.row.usable),
                updated_at: Rfc3339(Some(b.updated_at())),
                age_seconds: self.now.duration_since(b.fetched_at).unwrap_or(Duration::ZERO).as_secs(),
                low_threshold: Threshold::applying_to(&slot.thresholds, account, currency).and_then(|t| t.low).map(Exact),
            })
            .collect();
        SupplierJson {
            supplier: &slot.name,
            kind: slot.kind,
            up: state.up,
            last_success: Rfc3339(state.last_success),
            last_error_reason: state.last_error.as_ref().filter(|_| state.polled_once && !state.up).map(|e| e.reason.as_str()),
            balances,
        }
        .serialize(s)
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)] // fixed test clocks, not upstream values
mod tests {
    use super::*;
    use crate::poll::{BalanceRow, PollError, PollOutput, Reason};
    use crate::snapshot::Store;
    use serde_json::{json, Value};

    const CONFIG: &str = "
suppliers:
  - {name: fox, kind: foxreload, poll_interval: 1m, thresholds: [{currency: USD, low: '100.00'}]}
  - name: multi
    kind: novasend
    poll_interval: 1m
    thresholds:
      - {currency: USD, low: '500'}
      - {currency: USD, account: b, low: '5.5'}
  - {name: solo, kind: foxreload, poll_interval: 1m}
  - {name: late, kind: foxreload, poll_interval: 1m}
  - {name: pending, kind: foxreload, poll_interval: 1m}
  - {name: failing, kind: foxreload, poll_interval: 1m}
  - {name: edge, kind: foxreload, poll_interval: 1m}
";

    fn dec(s: &str) -> Decimal {
        Decimal::from_str_exact(s).unwrap()
    }

    fn row(account: &str, currency: &str, balance: &str, frozen: &str, usable: &str) -> BalanceRow {
        BalanceRow {
            account: account.into(),
            currency: currency.into(),
            balance: dec(balance),
            frozen: dec(frozen),
            usable: dec(usable),
            updated_at: None,
        }
    }

    fn ok(rows: Vec<BalanceRow>) -> Result<PollOutput, PollError> {
        Ok(PollOutput { balances: rows, ..Default::default() })
    }

    /// 2025-11-13T02:13:20Z.
    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_763_000_000)
    }

    fn ago(secs: u64) -> SystemTime {
        now() - Duration::from_secs(secs)
    }

    /// fox: one USD balance, polled 30 s ago, with the supplier's own
    /// timestamp; multi: two USD accounts and one XOF; solo: one EUR account
    /// not named `main`; late: last success 121 s ago at a 1 min interval
    /// (stale); pending: never polled; failing: good poll then `auth`;
    /// edge: usable at `Decimal`'s limits.
    fn store() -> Store {
        let config = crate::config::load_str(CONFIG, &|_: &str| None::<String>).expect("test config loads");
        let store = Store::default();
        let slots = store.set_suppliers(&config.suppliers);
        let by = |n: &str| slots.iter().find(|s| s.name == n).unwrap().clone();
        let d = Duration::from_millis(20);
        let base = SupplierState::default();
        let mut fox = row("main", "USD", "284.50", "0", "284.50");
        fox.updated_at = Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_762_999_900));
        store.publish(&by("fox"), base.after_poll(ok(vec![fox]), d, ago(30)));
        let multi = vec![
            row("a", "USD", "1230", "250", "980"),
            row("b", "USD", "10.00", "0", "10.00"),
            row("merchant_gh8jpoipkrxhjsm0", "XOF", "4676", "0", "4676"),
        ];
        store.publish(&by("multi"), base.after_poll(ok(multi), d, ago(5)));
        store.publish(&by("solo"), base.after_poll(ok(vec![row("merchant_1", "EUR", "50", "0", "50")]), d, ago(5)));
        store.publish(&by("late"), base.after_poll(ok(vec![row("main", "USD", "1000", "0", "1000")]), d, ago(121)));
        let failing = base.after_poll(ok(vec![row("main", "USD", "7", "0", "7")]), d, ago(50));
        store.publish(&by("failing"), failing.after_poll(Err(PollError::new(Reason::Auth, "http 401")), d, ago(10)));
        let edge = vec![
            row("max", "USD", "79228162514264337593543950335", "0", "79228162514264337593543950335"),
            row("min", "USD", "-79228162514264337593543950335", "0", "-79228162514264337593543950335"),
        ];
        store.publish(&by("edge"), base.after_poll(ok(edge), d, ago(5)));
        store
    }

    /// `(status, body)` of a GET of `target` (path and query as sent).
    fn get(store: &Store, target: &str) -> (u16, Value) {
        request(store, Method::GET, target)
    }

    fn request(store: &Store, method: Method, target: &str) -> (u16, Value) {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (target, None),
        };
        let a = answer(&store.slots(), &method, path, query, now());
        let body: Value = serde_json::from_slice(&a.body).expect("the body is JSON");
        assert_eq!(a.allow.is_some(), a.status == StatusCode::METHOD_NOT_ALLOWED);
        (a.status.as_u16(), body)
    }

    /// The status and the `parameter` of an error answer (`None` when the body names none).
    fn error(store: &Store, target: &str) -> (u16, Option<String>) {
        let (status, body) = get(store, target);
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{target}: {body}");
        let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
        assert!(keys.iter().all(|k| *k == "error" || *k == "parameter"), "{target}: {body}");
        (status, body.get("parameter").map(|p| p.as_str().unwrap().to_string()))
    }

    fn bad(parameter: &str) -> (u16, Option<String>) {
        (400, Some(parameter.to_string()))
    }

    #[test]
    fn balances_lists_every_supplier_with_exact_strings() {
        let store = store();
        let (status, body) = get(&store, "/api/v1/balances");
        assert_eq!(status, 200);
        let suppliers = body["suppliers"].as_array().unwrap();
        let names: Vec<&str> = suppliers.iter().map(|s| s["supplier"].as_str().unwrap()).collect();
        assert_eq!(names, ["fox", "multi", "solo", "late", "pending", "failing", "edge"], "config order");
        assert_eq!(
            suppliers[0],
            json!({
                "supplier": "fox", "kind": "foxreload", "up": true,
                "last_success": "2025-11-13T02:12:50Z", "last_error_reason": null,
                "balances": [{
                    "account": "main", "currency": "USD", "balance": "284.50", "frozen": "0", "usable": "284.50",
                    "updated_at": "2025-11-13T02:11:40Z", "age_seconds": 30, "low_threshold": "100.00"
                }]
            })
        );
        let multi = &suppliers[1];
        assert_eq!(multi["kind"], "novasend");
        let a = &multi["balances"][0];
        assert_eq!((&a["balance"], &a["frozen"], &a["usable"]), (&json!("1230"), &json!("250"), &json!("980")));
        assert_eq!(a["low_threshold"], "500");
        assert_eq!(a["updated_at"], "2025-11-13T02:13:15Z", "no supplier timestamp: the fetch time");
        assert_eq!(multi["balances"][1]["low_threshold"], "5.5", "the account's own threshold wins");
        assert_eq!(multi["balances"][2]["low_threshold"], Value::Null, "no XOF threshold");
        assert_eq!(
            suppliers[4],
            json!({"supplier": "pending", "kind": "foxreload", "up": false, "last_success": null, "last_error_reason": null, "balances": []})
        );
        let failing = &suppliers[5];
        assert_eq!((&failing["up"], &failing["last_error_reason"]), (&json!(false), &json!("auth")));
        assert_eq!(failing["last_success"], "2025-11-13T02:12:30Z");
        assert_eq!(failing["balances"][0]["age_seconds"], 50, "the last good balance, aged from its fetch");
        assert_eq!(suppliers[6]["balances"][1]["usable"], "-79228162514264337593543950335");
    }

    #[test]
    fn balances_of_one_supplier() {
        let store = store();
        let (status, body) = get(&store, "/api/v1/balances?supplier=solo");
        assert_eq!(status, 200);
        assert_eq!(body["suppliers"].as_array().unwrap().len(), 1);
        assert_eq!(body["suppliers"][0]["balances"][0]["account"], "merchant_1");
        assert_eq!(error(&store, "/api/v1/balances?supplier=nope"), (404, Some("supplier".into())));
        assert_eq!(error(&store, "/api/v1/balances?supplier=FOX"), (404, Some("supplier".into())), "names are case-sensitive");
        assert_eq!(error(&store, "/api/v1/balances?currency=USD"), bad("currency"));
        assert_eq!(error(&store, "/api/v1/balances?supplier=fox&supplier=solo"), bad("supplier"));
        assert_eq!(error(&store, "/api/v1/balances?supplier="), bad("supplier"));
        let (status, body) = get(&store, "/api/v1/balances?&&");
        assert_eq!((status, body["suppliers"].as_array().unwrap().len()), (200, 7), "empty pieces are skipped");
    }

    #[test]
    fn check_answers_with_exact_decimals() {
        let store = store();
        let (status, body) = get(&store, "/api/v1/balances/check?supplier=fox&currency=USD&amount=100");
        assert_eq!(status, 200);
        assert_eq!(
            body,
            json!({
                "sufficient": true, "usable": "284.50", "after": "184.50", "below_low_threshold_after": false,
                "stale": false, "age_seconds": 30, "account": "main", "currency": "USD"
            })
        );
        let check = |q: &str| get(&store, &format!("/api/v1/balances/check?{q}")).1;
        let all = check("supplier=fox&currency=USD&amount=284.50");
        assert_eq!((&all["sufficient"], &all["after"]), (&json!(true), &json!("0.00")), "usable ≥ amount, exactly");
        let over = check("supplier=fox&currency=USD&amount=284.51");
        assert_eq!((&over["sufficient"], &over["after"]), (&json!(false), &json!("-0.01")));
        assert_eq!(check("supplier=fox&currency=USD&amount=0.1")["after"], "284.40");
        assert_eq!(check("supplier=fox&currency=USD&amount=0")["sufficient"], true);
        assert_eq!(check("supplier=fox&currency=USD&amount=007.000")["after"], "277.500");
        // The low threshold is 100.00: 99.99 left is under it, 100.00 is not.
        assert_eq!(check("supplier=fox&currency=USD&amount=184.51")["below_low_threshold_after"], true);
        assert_eq!(check("supplier=fox&currency=USD&amount=184.50")["below_low_threshold_after"], false);
        assert_eq!(check("supplier=multi&currency=USD&account=b&amount=4.5")["below_low_threshold_after"], false, "b's own 5.5");
        assert_eq!(check("supplier=multi&currency=USD&account=b&amount=4.51")["below_low_threshold_after"], true);
        assert_eq!(check("supplier=multi&currency=USD&account=a&amount=481")["below_low_threshold_after"], true, "currency-wide 500");
        let xof = check("supplier=multi&currency=XOF&amount=1");
        assert_eq!((&xof["below_low_threshold_after"], &xof["after"]), (&json!(false), &json!("4675")), "no threshold: false");
        assert_eq!(check("supplier=fox&currency=usd&amount=1")["currency"], "USD", "currency codes in any case");
        assert_eq!(check("amount=1&currency=USD&supplier=fox")["after"], "283.50", "any order");
        assert_eq!(check("supplier=failing&currency=USD&amount=7")["sufficient"], true, "a failed last poll with a fresh success");
    }

    #[test]
    fn stale_balances_are_not_sufficient_unless_allowed() {
        let store = store();
        let check = |q: &str| get(&store, &format!("/api/v1/balances/check?supplier=late&currency=USD&amount=1{q}")).1;
        let stale = check("");
        assert_eq!((&stale["stale"], &stale["sufficient"], &stale["age_seconds"]), (&json!(true), &json!(false), &json!(121)));
        assert_eq!(stale["after"], "999", "the arithmetic is still shown");
        assert_eq!(check("&allow_stale=true")["sufficient"], true);
        assert_eq!(check("&allow_stale=false")["sufficient"], false);
        assert_eq!(error(&store, "/api/v1/balances/check?supplier=late&currency=USD&amount=1&allow_stale=yes"), bad("allow_stale"));
        // Two poll intervals exactly is not yet stale.
        let at_limit = answer(&store.slots(), &Method::GET, CHECK_PATH, Some("supplier=late&currency=USD&amount=1"), ago(1));
        let body: Value = serde_json::from_slice(&at_limit.body).unwrap();
        assert_eq!((&body["stale"], &body["age_seconds"]), (&json!(false), &json!(120)));
    }

    #[test]
    fn account_may_be_left_out_only_when_one_matches() {
        let store = store();
        let (status, body) = get(&store, "/api/v1/balances/check?supplier=solo&currency=EUR&amount=50");
        assert_eq!(status, 200);
        assert_eq!((&body["account"], &body["after"]), (&json!("merchant_1"), &json!("0")), "whatever its name");
        let (status, body) = get(&store, "/api/v1/balances/check?supplier=multi&currency=USD&amount=1");
        assert_eq!((status, &body["parameter"]), (400, &json!("account")));
        assert_eq!(body["error"], "supplier \"multi\" has 2 accounts in USD (a, b); name one with the account parameter");
        assert_eq!(get(&store, "/api/v1/balances/check?supplier=multi&currency=USD&amount=1&account=a").1["usable"], "980");
    }

    #[test]
    fn unknown_names_are_404_and_pending_suppliers_503() {
        let store = store();
        let q = |q: &str| error(&store, &format!("/api/v1/balances/check?{q}"));
        assert_eq!(q("supplier=nope&currency=USD&amount=1"), (404, Some("supplier".into())));
        assert_eq!(q("supplier=fox&currency=EUR&amount=1"), (404, Some("currency".into())));
        assert_eq!(q("supplier=fox&currency=USD&amount=1&account=other"), (404, Some("account".into())));
        assert_eq!(q("supplier=multi&currency=EUR&amount=1&account=a"), (404, Some("currency".into())));
        assert_eq!(q("supplier=caf%C3%A9&currency=USD&amount=1"), (404, Some("supplier".into())), "multi-byte text is a name like any");
        assert_eq!(q("supplier=pending&currency=USD&amount=1"), (503, Some("supplier".into())));
        let (_, body) = get(&store, "/api/v1/balances/check?supplier=pending&currency=USD&amount=1");
        assert_eq!(body["error"], "supplier \"pending\" has not been polled successfully yet");
        assert_eq!(error(&store, "/api/v2/balances"), (404, None));
        assert_eq!(error(&store, "/api/v1/balances/"), (404, None));
    }

    #[test]
    fn missing_unknown_repeated_and_empty_parameters_are_400() {
        let store = store();
        let q = |q: &str| error(&store, &format!("/api/v1/balances/check?{q}"));
        assert_eq!(q(""), bad("supplier"));
        assert_eq!(q("supplier=fox&amount=1"), bad("currency"));
        assert_eq!(q("supplier=fox&currency=USD"), bad("amount"));
        assert_eq!(q("supplier=fox&currency=USD&amount=1&pending=5"), bad("pending"));
        assert_eq!(q("supplier=fox&currency=USD&amount=1&Amount=2"), bad("Amount"), "names are case-sensitive");
        assert_eq!(q("supplier=fox&currency=USD&amount=1&amount=1"), bad("amount"));
        assert_eq!(q("supplier=fox&currency=USD&amount="), bad("amount"));
        assert_eq!(q("supplier=fox&currency=USD&amount"), bad("amount"));
        assert_eq!(q("supplier=fox&currency=USD&amount=1&account="), bad("account"));
        assert_eq!(q("supplier=fox&currency=USD&amount=1&%FF=1"), (400, None), "a name that is not UTF-8");
        assert_eq!(q("supplier=fox&currency=USD&amount=1&%zz=1"), (400, None));
        let (_, body) = get(&store, "/api/v1/balances/check?supplier=fox&currency=USD&amount=1&pending=5");
        assert_eq!(body["error"], "unknown parameter \"pending\"; this endpoint takes supplier, currency, amount, account, allow_stale");
        let long_name = "x".repeat(5000);
        let (_, body) = get(&store, &format!("/api/v1/balances?{long_name}=1"));
        assert!(body["error"].as_str().unwrap().len() < 200, "echoed text is cut: {body}");
    }

    #[test]
    fn hostile_amounts_are_400_naming_amount() {
        let store = store();
        let long = "1".repeat(65);
        let hostile = "-1 -0 -0.00 +1 %2B1 1e3 1E3 0x10 1%20 %201 1+ 1,000 1_000 1. .5 1..5 1.2.3 NaN nan inf Infinity -Infinity \
                       1e30 79228162514264337593543950336 0.00000000000000000000000000001 %00 1%00 %FF %C3%28 % %4 %4g \
                       %EF%BC%91 %E2%80%8B1 one 1%0A \"1\"";
        for amount in hostile.split_whitespace().chain([long.as_str()]) {
            let target = format!("/api/v1/balances/check?supplier=fox&currency=USD&amount={amount}");
            assert_eq!(error(&store, &target), bad("amount"), "{amount}");
        }
        let (_, body) = get(&store, "/api/v1/balances/check?supplier=fox&currency=USD&amount=-5");
        assert_eq!(body["error"], "parameter amount must not be negative (write it without a sign)");
        let (_, body) = get(&store, "/api/v1/balances/check?supplier=fox&currency=USD&amount=79228162514264337593543950336");
        assert_eq!(body["error"], "parameter amount is not an exact decimal within 28 significant digits");
        // The largest exact amount is fine.
        let max = "79228162514264337593543950335";
        let (status, body) = get(&store, &format!("/api/v1/balances/check?supplier=edge&currency=USD&account=max&amount={max}"));
        assert_eq!((status, &body["after"], &body["sufficient"]), (200, &json!("0"), &json!(true)));
    }

    #[test]
    fn hostile_text_in_other_parameters_is_400() {
        let store = store();
        let q = |q: &str| error(&store, &format!("/api/v1/balances/check?{q}"));
        for currency in ["US", "USDD", "U%00D", "+usd", "usd+", "U$D", "%C3%9CSD", "%FF", "123"] {
            assert_eq!(q(&format!("supplier=fox&amount=1&currency={currency}")), bad("currency"), "{currency}");
        }
        assert_eq!(q("supplier=%00&currency=USD&amount=1"), bad("supplier"));
        assert_eq!(q("supplier=fox%FF&currency=USD&amount=1"), bad("supplier"));
        assert_eq!(q("supplier=fox&currency=USD&amount=1&account=a%0Db"), bad("account"));
        assert_eq!(q(&format!("supplier=fox&currency=USD&amount=1&account={}", "a".repeat(1025))), bad("account"));
    }

    #[test]
    fn results_decimal_cannot_hold_exactly_are_400() {
        let store = store();
        let q = |q: &str| error(&store, &format!("/api/v1/balances/check?supplier=edge&currency=USD&{q}"));
        assert_eq!(q("account=min&amount=1"), bad("amount"), "below Decimal::MIN");
        assert_eq!(q("account=max&amount=0.5"), bad("amount"), "would round to Decimal::MAX");
        let (status, body) = get(&store, "/api/v1/balances/check?supplier=edge&currency=USD&account=max&amount=1");
        assert_eq!((status, &body["after"]), (200, &json!("79228162514264337593543950334")));
        assert_eq!(exact_difference(dec("10.00"), dec("5")), Some(dec("5.00")));
        assert_eq!(exact_difference(dec("10.00"), dec("5")).unwrap().to_string(), "5.00");
        assert_eq!(exact_difference(dec("0.1"), dec("0.30")).unwrap().to_string(), "-0.20");
    }

    #[test]
    fn other_methods_are_405_with_allow() {
        let store = store();
        for method in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH, Method::OPTIONS] {
            for path in [BALANCES_PATH, CHECK_PATH] {
                let a = answer(&store.slots(), &method, path, None, now());
                assert_eq!((a.status, a.allow), (StatusCode::METHOD_NOT_ALLOWED, Some("GET, HEAD")), "{method} {path}");
                let body: Value = serde_json::from_slice(&a.body).unwrap();
                assert_eq!(body, json!({"error": "method not allowed; use GET"}));
            }
        }
        assert_eq!(request(&store, Method::HEAD, "/api/v1/balances?supplier=fox").0, 200);
    }

    /// 10,000 suppliers (most polled a few times, every seventh never): one
    /// answer holds them all at under 1.5 KB each; `supplier=` finds the last.
    #[test]
    fn ten_thousand_suppliers_in_one_bounded_answer() {
        let store = crate::metrics::tests::many_store(10_000);
        let a = answer(&store.slots(), &Method::GET, BALANCES_PATH, None, now());
        assert_eq!(a.status, StatusCode::OK);
        let body: Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(body["suppliers"].as_array().unwrap().len(), 10_000);
        assert!(a.body.len() < 10_000 * 1536, "{} bytes", a.body.len());
        let last = store.slots().last().unwrap().name.clone();
        let one = answer(&store.slots(), &Method::GET, BALANCES_PATH, Some(&format!("supplier={last}")), now());
        assert_eq!(one.status, StatusCode::OK);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b+c%2Bd").as_deref(), Ok("a b c+d"));
        assert_eq!(percent_decode("caf%C3%A9").as_deref(), Ok("café"));
        assert_eq!(percent_decode("%e2%82%ac").as_deref(), Ok("€"), "lower-case hex");
        assert_eq!(percent_decode("%00").as_deref(), Ok("\0"), "decoded here, refused by Params");
        assert!(percent_decode("%FF").is_err());
        assert!(percent_decode("%F").is_err());
        assert!(percent_decode("%+1").is_err());
        assert!(percent_decode("%-1").is_err(), "from_str_radix would take a sign");
        assert_eq!(echo(&"é".repeat(100)).chars().count(), MAX_ECHO_CHARS + 1);
    }
}
