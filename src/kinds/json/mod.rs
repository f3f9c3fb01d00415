//! The configurable `json` kind: any balance API described in YAML.
//!
//! One request (`method`, `path`, `query`, `query_secrets`, `headers`,
//! `body`, optionally a token from OAuth2 client credentials or a `login`
//! request), possibly over several pages (`pagination`), an optional in-body
//! success check on each page, then `rows`: JSONPath selectors (RFC 9535,
//! `serde_json_path`) whose matches each give one contribution to an
//! (account, currency). See docs/json-kind.md.
//!
//! Amounts are read exactly: numbers from their raw JSON text (see
//! [`document`]), strings as decimal text, never through `f64`. Minor units
//! scale by the ISO 4217 exponent (or `currency_exponents`).
//!
//! Merging: contributions to the same (account, currency) add up component by
//! component (`balance`, `frozen`, `usable`); a component no contribution gave
//! is derived from the other two, or else frozen is 0 (a lone `frozen` makes
//! usable 0). `updated_at` is the latest given. A row that cannot be read is a
//! row error; if its (account, currency) is known that balance is dropped
//! whole rather than exported as a partial sum. So is one whose sum or
//! derived component `Decimal` cannot hold (all arithmetic here is checked).
#![deny(clippy::arithmetic_side_effects)]

pub mod document;
pub mod login;
pub mod oauth2;
pub mod pages;
pub mod token;
/// Its fuzz targets (run by `crate::fuzz`).
#[cfg(test)]
pub(crate) mod fuzz;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderName, HeaderValue};
use rust_decimal::Decimal;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

pub use self::document::{Query, QueryError};
use self::document::{display, type_name, Document, Location, Seg};
use super::{parse_rfc3339, BalanceRow, KindMemory, PollOutput};
use crate::amount::{currency_code, minor_to_major, parse_decimal_text, parse_json_amount, AmountError};
use crate::settings::ConfigIssue;
use crate::upstream::{PollError, Reason, Request, Upstream};

/// `kind: json` keys.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct JsonConfig {
    /// `GET` (default) or `POST`.
    #[serde(default)]
    pub method: HttpMethod,
    /// Request path, joined to `base_url` (required; starts with `/`).
    pub path: String,
    /// Query parameters, added after any in `path`.
    #[serde(default, deserialize_with = "scalar_map")]
    pub query: BTreeMap<String, String>,
    /// Extra request headers. Values are treated as secrets (redacted, never logged).
    #[serde(default, deserialize_with = "scalar_map")]
    pub headers: BTreeMap<String, String>,
    /// Request body (POST only): a mapping or list is sent as JSON, a string verbatim.
    #[serde(default)]
    pub body: Option<Value>,
    /// Query parameters holding secrets (an API key): sent with every
    /// request, including every page, and redacted from every message.
    #[serde(default)]
    pub query_secrets: BTreeMap<String, login::SecretValue>,
    /// Fetch a bearer token first (replaces `auth`).
    #[serde(default)]
    pub oauth2_client_credentials: Option<Box<oauth2::OAuth2Config>>,
    /// Log in first and send the token it returns (replaces `auth`).
    #[serde(default)]
    pub login: Option<Box<login::LoginConfig>>,
    /// Ask several pages and combine their rows.
    #[serde(default)]
    pub pagination: Option<Box<pages::Pagination>>,
    /// In-body success check; a mismatch fails the poll with reason `upstream_status`.
    #[serde(default)]
    pub success: Option<Box<SuccessCheck>>,
    /// Row selectors (at least one).
    pub rows: Vec<RowSelector>,
    /// Unit of amounts: `major` (default) or `minor` (cents; scaled by the ISO 4217 exponent).
    #[serde(default)]
    pub unit: Unit,
    /// Minor-unit exponents overriding ISO 4217, e.g. `{ISK: 2}` for Stripe.
    #[serde(default, deserialize_with = "exponent_map")]
    pub currency_exponents: BTreeMap<String, u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum HttpMethod {
    #[default]
    #[serde(rename = "GET", alias = "get")]
    Get,
    #[serde(rename = "POST", alias = "post")]
    Post,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    #[default]
    Major,
    Minor,
}

/// `success: {path, equals, message}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuccessCheck {
    /// Where the status is, e.g. `$.statusCode`.
    pub path: Query,
    /// The value meaning success. Numbers and numeric strings compare by value.
    pub equals: Value,
    /// Where the supplier's error message is, quoted (shortened) in the poll error.
    #[serde(default)]
    pub message: Option<Query>,
}

/// One `rows[]` entry: a selector and how each match maps to a balance.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RowSelector {
    /// JSONPath selecting the rows, e.g. `$.balances[*]` or `$.data.*` (map values).
    pub select: Query,
    /// Currency code: a path, a fixed value, or a map key.
    pub currency: Field,
    /// Account label value (default `main`).
    #[serde(default)]
    pub account: Option<Field>,
    /// Total, frozen included.
    #[serde(default)]
    pub balance: Option<Field>,
    /// Held funds.
    #[serde(default)]
    pub frozen: Option<Field>,
    /// Available now.
    #[serde(default)]
    pub usable: Option<Field>,
    /// RFC 3339 text, or epoch seconds / milliseconds (number or string).
    #[serde(default)]
    pub updated_at: Option<Field>,
    /// Overrides the kind's `unit` for this selector.
    #[serde(default)]
    pub unit: Option<Unit>,
}

// The kind's keys arrive through serde's internally tagged `KindConfig`,
// which buffers them and loses the key path of an error. Re-reading them
// through `serde_path_to_error` puts the path back into the message
// ("rows[2].currency: give exactly one of path, value, key").
impl<'de> Deserialize<'de> for JsonConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        let mut track = serde_path_to_error::Track::new();
        JsonConfig::deserialize(serde_path_to_error::Deserializer::new(value, &mut track)).map_err(|e| {
            let path = track.path().to_string();
            if path == "." {
                de::Error::custom(e)
            } else {
                de::Error::custom(format!("{path}: {e}"))
            }
        })
    }
}

/// Where a row's value comes from.
///
/// Short forms: a string starting with `$` is a path relative to the row
/// (`$` is the row itself); any other string or number is a fixed value.
/// Long form: exactly one of `{path: …}`, `{value: …}`, `{key: …}`, where
/// `key: 0` (or `true`) is the map key the row sits under, `key: 1` its
/// parent's key, and so on. `{path: …, optional: true}` lets the path be
/// missing or null (the component is then not given); `{path: …, root: true}`
/// evaluates the path on the whole body instead of the row (e.g. a top-level
/// `last_refresh_time` shared by every row).
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    Path { query: Query, optional: bool, root: bool },
    Value(String),
    Key(usize),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LongField {
    path: Option<Query>,
    #[serde(default, deserialize_with = "opt_scalar")]
    value: Option<String>,
    key: Option<KeyLevel>,
    #[serde(default)]
    optional: bool,
    #[serde(default)]
    root: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum KeyLevel {
    Own(bool),
    Up(usize),
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct FieldVisitor;
        impl<'de> Visitor<'de> for FieldVisitor {
            type Value = Field;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSONPath starting with `$`, a fixed value, or one of {path}, {value}, {key}")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Field, E> {
                if s.starts_with('$') {
                    Ok(Field::Path { query: Query::parse(s), optional: false, root: false })
                } else {
                    Ok(Field::Value(s.to_string()))
                }
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Field, E> {
                Ok(Field::Value(n.to_string()))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Field, E> {
                Ok(Field::Value(n.to_string()))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Field, E> {
                Ok(Field::Value(n.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Field, A::Error> {
                let f = LongField::deserialize(de::value::MapAccessDeserializer::new(map))?;
                if f.root && f.path.is_none() {
                    return Err(de::Error::custom("root applies to path only"));
                }
                match (f.path, f.value, f.key) {
                    (Some(query), None, None) => Ok(Field::Path { query, optional: f.optional, root: f.root }),
                    (None, Some(v), None) if !f.optional => Ok(Field::Value(v)),
                    (None, None, Some(KeyLevel::Own(true))) if !f.optional => Ok(Field::Key(0)),
                    (None, None, Some(KeyLevel::Up(n))) if !f.optional => Ok(Field::Key(n)),
                    (None, None, Some(KeyLevel::Own(false))) => Err(de::Error::custom("key: false means nothing; use key: 0 (the row's own key) or key: N (N levels up)")),
                    (p, _, _) if f.optional && p.is_none() => Err(de::Error::custom("optional applies to path only")),
                    _ => Err(de::Error::custom("give exactly one of path, value, key")),
                }
            }
        }
        d.deserialize_any(FieldVisitor)
    }
}

/// A YAML scalar (string, number, bool) as text.
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Text(String),
    Int(i64),
    Uint(u64),
    Float(f64),
    Bool(bool),
}

impl Scalar {
    fn into_text(self) -> String {
        match self {
            Scalar::Text(s) => s,
            Scalar::Int(n) => n.to_string(),
            Scalar::Uint(n) => n.to_string(),
            Scalar::Float(n) => n.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

fn scalar_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let raw: BTreeMap<String, Scalar> = Deserialize::deserialize(d)?;
    Ok(raw.into_iter().map(|(k, v)| (k, v.into_text())).collect())
}

fn opt_scalar<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<Scalar>::deserialize(d)?.map(Scalar::into_text))
}

fn exponent_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, u32>, D::Error> {
    let raw: BTreeMap<String, u32> = Deserialize::deserialize(d)?;
    raw.into_iter()
        .map(|(k, v)| match currency_code(&k) {
            Some(code) if v <= 9 => Ok((code, v)),
            Some(_) => Err(de::Error::custom(format!("{k}: exponent {v} is larger than 9"))),
            None => Err(de::Error::custom(format!("{k:?} is not a 3-letter currency code"))),
        })
        .collect()
}

impl JsonConfig {
    /// Checks serde cannot: header syntax, fixed values, which components are given.
    pub fn validate(&self, path: &str, issues: &mut Vec<ConfigIssue>) {
        let mut issue = |key: String, message: String| issues.push(ConfigIssue { path: format!("{path}.{key}"), message });
        if !self.path.starts_with('/') {
            issue("path".into(), "must start with '/'".into());
        }
        for (name, value) in &self.headers {
            if HeaderName::from_bytes(name.as_bytes()).is_err() {
                issue(format!("headers.{name}"), "is not a valid header name".into());
            } else if HeaderValue::from_str(value).is_err() {
                // Never echo the value: headers may carry secrets.
                issue(format!("headers.{name}"), "value is not a valid header value".into());
            }
        }
        if self.body.is_some() && self.method != HttpMethod::Post {
            issue("body".into(), "a body needs method: POST".into());
        }
        if self.login.is_some() && self.oauth2_client_credentials.is_some() {
            issue("login".into(), "give either login or oauth2_client_credentials, not both".into());
        }
        for name in self.query_secrets.keys() {
            if name.is_empty() {
                issue("query_secrets".into(), "a parameter name is empty".into());
            } else if self.query.contains_key(name) {
                issue(format!("query_secrets.{name}"), "is also in query; give it in one place".into());
            }
        }
        if self.rows.is_empty() {
            issue("rows".into(), "give at least one row selector".into());
        }
        if let Some(check) = &self.success {
            let queries = [("success.path", Some(&check.path)), ("success.message", check.message.as_ref())];
            for (key, query) in queries {
                if let Some(e) = query.and_then(Query::error) {
                    issue(key.into(), e.to_string());
                }
            }
        }
        for (i, row) in self.rows.iter().enumerate() {
            let p = format!("rows[{i}]");
            if let Some(e) = row.select.error() {
                issue(format!("{p}.select"), e.to_string());
            }
            let fields = [
                ("currency", Some(&row.currency)),
                ("account", row.account.as_ref()),
                ("balance", row.balance.as_ref()),
                ("frozen", row.frozen.as_ref()),
                ("usable", row.usable.as_ref()),
                ("updated_at", row.updated_at.as_ref()),
            ];
            for (key, field) in fields {
                if let Some(Field::Path { query, .. }) = field {
                    if let Some(e) = query.error() {
                        issue(format!("{p}.{key}"), e.to_string());
                    }
                }
            }
            if let Field::Value(v) = &row.currency {
                if currency_code(v).is_none() {
                    issue(format!("{p}.currency"), format!("{:?} is not a 3-letter currency code", v.chars().take(20).collect::<String>()));
                }
            }
            if let Some(Field::Value(v)) = &row.account {
                if v.trim().is_empty() {
                    issue(format!("{p}.account"), "is empty".into());
                }
            }
            let components = [("balance", &row.balance), ("frozen", &row.frozen), ("usable", &row.usable)];
            if components.iter().all(|(_, f)| f.is_none()) {
                issue(p.clone(), "give at least one of balance, frozen, usable".into());
            }
            for (key, field) in components {
                if let Some(Field::Value(v)) = field {
                    if let Err(e) = parse_decimal_text(v.trim()) {
                        issue(format!("{p}.{key}"), e.to_string());
                    }
                }
            }
            if let Some(Field::Value(v)) = &row.updated_at {
                if timestamp_text(v).is_err() {
                    issue(format!("{p}.updated_at"), "expected RFC 3339 or epoch seconds/milliseconds".into());
                }
            }
        }
        if let Some(p) = &self.pagination {
            for (key, name) in p.params() {
                if self.query.contains_key(name) || self.query_secrets.contains_key(name) {
                    issue(format!("pagination.{key}"), format!("{name:?} is also in query; pagination sends it"));
                }
            }
            p.validate(&format!("{path}.pagination"), issues);
        }
    }

    /// Values to redact from every message: header values (they often carry
    /// API keys) and OAuth2 client credentials.
    pub fn secrets(&self) -> Vec<String> {
        let mut out: Vec<String> = self.headers.values().cloned().collect();
        if let Some(o) = &self.oauth2_client_credentials {
            out.extend([o.client_id.expose().to_string(), o.client_secret.expose().to_string()]);
        }
        // As given, and form-encoded as they travel in a URL or a form body.
        let values = self.query_secrets.values().map(login::SecretValue::expose);
        out.extend(values.chain(self.login.iter().flat_map(|l| l.secret_values())).flat_map(login::redaction_forms));
        out
    }

    fn request(&self) -> Request {
        let mut req = match self.method {
            HttpMethod::Get => Request::get(&self.path),
            HttpMethod::Post => Request::post(&self.path),
        };
        req.query = self.query.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        req.query.extend(self.query_secrets.iter().map(|(k, v)| (k.clone(), v.expose().to_string())));
        for (name, value) in &self.headers {
            // Checked by `validate`; both parse.
            if let (Ok(name), Ok(mut value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
                value.set_sensitive(true);
                req.headers.push((name, value));
            }
        }
        req.body = self.body.as_ref().map(|b| match b {
            Value::String(s) => s.clone().into(),
            other => other.to_string().into(),
        });
        req
    }
}

/// The `json` kind's memory between polls.
#[derive(Debug, Default)]
struct JsonMemory {
    tokens: token::TokenCache,
}

impl super::Kind for JsonConfig {
    const NAME: &'static str = "json";
    const DEFAULT_BASE_URL: Option<&'static str> = None;
    // unknown API; be gentle
    const DEFAULT_MIN_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

    fn validate(&self, path: &str, issues: &mut Vec<crate::settings::ConfigIssue>) {
        JsonConfig::validate(self, path, issues);
    }
    fn secrets(&self) -> Vec<String> {
        JsonConfig::secrets(self)
    }

    async fn poll(&self, upstream: &Upstream, memory: &mut super::KindMemory) -> Result<PollOutput, PollError> {
        poll(self, upstream, memory).await
    }
}

pub async fn poll(cfg: &JsonConfig, upstream: &Upstream, memory: &mut KindMemory) -> Result<PollOutput, PollError> {
    let upstream = upstream.with_secrets(cfg.secrets());
    let tokens = &mut memory.get::<JsonMemory>().tokens;
    let first = cfg.request();
    let mut pager = cfg.pagination.as_deref().map(pages::Pager::new);
    let (mut target, mut req) = (upstream.clone(), first.clone());
    req.query.extend(pager.as_ref().map(pages::Pager::first).unwrap_or_default());
    let mut rows = Rows::default();
    for page in 0usize.. {
        let resp = match (&cfg.oauth2_client_credentials, &cfg.login) {
            (Some(o), _) => token::send(o.as_ref(), &target, &req, tokens).await?,
            (None, Some(l)) => token::send(l.as_ref(), &target, &req, tokens).await?,
            (None, None) => target.send(&req).await?,
        };
        // A body quoting the token must not put it into a message.
        let reading = upstream.with_secrets(tokens.token().map(|t| t.expose().to_string()));
        let doc = read_page(cfg, &reading, &resp.body)?;
        let selected = rows.add_page(cfg, &reading, &doc, page);
        let Some(pager) = pager.as_mut() else { break };
        let url = page_url(&target, &req)?;
        match pager.next(&doc, selected, &url, upstream.base_url())? {
            None => break,
            Some(pages::NextPage::Params(params)) => {
                (target, req) = (upstream.clone(), first.clone());
                req.query.extend(params);
            }
            Some(pages::NextPage::Url(next)) => {
                let (origin, path) = token::at_origin(&next);
                // The link's own parameters, plus any secret parameter it lacks.
                let secrets = cfg.query_secrets.iter().filter(|(k, _)| !next.query_pairs().any(|(name, _)| name == k.as_str()));
                let query = secrets.map(|(k, v)| (k.clone(), v.expose().to_string())).collect();
                (target, req) = (upstream.at_base_url(origin), Request { path, query, ..first.clone() });
            }
        }
    }
    rows.finish(cfg)
}

/// The URL a request goes to (before redirects), to resolve relative links.
fn page_url(target: &Upstream, req: &Request) -> Result<reqwest::Url, PollError> {
    let mut url = target.url_for(&req.path)?;
    if !req.query.is_empty() {
        url.query_pairs_mut().extend_pairs(req.query.iter());
    }
    Ok(url)
}

/// One row's addition to an (account, currency).
#[derive(Debug, Default, Clone, Copy)]
struct Contribution {
    balance: Option<Decimal>,
    frozen: Option<Decimal>,
    usable: Option<Decimal>,
    updated_at: Option<SystemTime>,
}

impl Contribution {
    /// Adds `other` component by component; `Err` names the component whose
    /// sum `Decimal` cannot hold.
    fn add(&mut self, other: Contribution) -> Result<(), &'static str> {
        let sum = |a: Option<Decimal>, b: Option<Decimal>, name: &'static str| match (a, b) {
            (Some(a), Some(b)) => a.checked_add(b).map(Some).ok_or(name),
            (a, b) => Ok(a.or(b)),
        };
        let balance = sum(self.balance, other.balance, "balance")?;
        let frozen = sum(self.frozen, other.frozen, "frozen")?;
        let usable = sum(self.usable, other.usable, "usable")?;
        (self.balance, self.frozen, self.usable) = (balance, frozen, usable);
        self.updated_at = self.updated_at.max(other.updated_at);
        Ok(())
    }

    /// Balance, frozen, usable: given ones as is, the rest derived. `Err`
    /// says which derivation `Decimal` cannot hold.
    fn resolve(self) -> Result<(Decimal, Decimal, Decimal), &'static str> {
        Ok(match (self.balance, self.frozen, self.usable) {
            (Some(b), Some(f), Some(u)) => (b, f, u),
            (Some(b), Some(f), None) => (b, f, b.checked_sub(f).ok_or("usable = balance - frozen overflows")?),
            (Some(b), None, Some(u)) => (b, b.checked_sub(u).ok_or("frozen = balance - usable overflows")?, u),
            (None, Some(f), Some(u)) => (f.checked_add(u).ok_or("balance = frozen + usable overflows")?, f, u),
            (Some(b), None, None) => (b, Decimal::ZERO, b),
            (None, None, Some(u)) => (u, Decimal::ZERO, u),
            (None, Some(f), None) => (f, f, Decimal::ZERO),
            (None, None, None) => (Decimal::ZERO, Decimal::ZERO, Decimal::ZERO),
        })
    }
}

/// A row that could not be read; `key` when it is known which balance it poisons.
struct RowError {
    key: Option<(String, String)>,
    message: String,
}

/// Reads a 200 body (one page).
pub fn parse(cfg: &JsonConfig, upstream: &Upstream, body: &[u8]) -> Result<PollOutput, PollError> {
    let doc = read_page(cfg, upstream, body)?;
    let mut rows = Rows::default();
    rows.add_page(cfg, upstream, &doc, 0);
    rows.finish(cfg)
}

/// A page's body as a document, its in-body success check passed.
fn read_page(cfg: &JsonConfig, upstream: &Upstream, body: &[u8]) -> Result<Document, PollError> {
    let doc = Document::parse(body).map_err(|e| PollError::decode(format!("response is not JSON: {}", upstream.redact(&e.to_string()))))?;
    if let Some(check) = &cfg.success {
        check_success(check, &doc, upstream)?;
    }
    Ok(doc)
}

/// The rows of every page of one poll, merged by (account, currency) as if
/// they came from one body.
#[derive(Default)]
struct Rows {
    merged: BTreeMap<(String, String), Contribution>,
    poisoned: BTreeSet<(String, String)>,
    out: PollOutput,
    matched: usize,
}

impl Rows {
    /// Adds the rows of page `page` (0-based); returns how many it selected.
    fn add_page(&mut self, cfg: &JsonConfig, upstream: &Upstream, doc: &Document, page: usize) -> usize {
        // Row errors of later pages say which page.
        let on_page = |message: String| if page == 0 { message } else { format!("page {}: {message}", page.saturating_add(1)) };
        let mut selected = 0usize;
        for row in &cfg.rows {
            for (node, loc) in row.select.locate(&doc.value, &[]) {
                selected = selected.saturating_add(1);
                match read_row(cfg, row, doc, node, &loc, upstream) {
                    Ok((key, c)) => {
                        if let Err(component) = self.merged.entry(key.clone()).or_default().add(c) {
                            self.out.row_errors.push(on_page(format!("{}: {} {}: the sum of {component} overflows", display(&loc), key.0, key.1)));
                            self.poisoned.insert(key);
                        }
                    }
                    Err(e) => {
                        self.poisoned.extend(e.key);
                        self.out.row_errors.push(on_page(e.message));
                    }
                }
            }
        }
        self.matched = self.matched.saturating_add(selected);
        selected
    }

    fn finish(self, cfg: &JsonConfig) -> Result<PollOutput, PollError> {
        let Rows { merged, poisoned, mut out, matched } = self;
        for ((account, currency), c) in merged {
            if poisoned.contains(&(account.clone(), currency.clone())) {
                continue;
            }
            let (balance, frozen, usable) = match c.resolve() {
                Ok(components) => components,
                Err(why) => {
                    out.row_errors.push(format!("{account} {currency}: {why}"));
                    continue;
                }
            };
            out.balances.push(BalanceRow { account, currency, balance, frozen, usable, updated_at: c.updated_at });
        }
        if out.balances.is_empty() {
            let detail = if !out.row_errors.is_empty() {
                out.row_errors.join("; ")
            } else if matched == 0 {
                let selects: Vec<&str> = cfg.rows.iter().map(|r| r.select.as_str()).collect();
                format!("no rows: {} matched nothing", selects.join(", "))
            } else {
                "no rows".to_string()
            };
            return Err(PollError::decode(detail));
        }
        Ok(out)
    }
}

fn check_success(check: &SuccessCheck, doc: &Document, upstream: &Upstream) -> Result<(), PollError> {
    let found = check.path.locate(&doc.value, &[]);
    let ok = match found.as_slice() {
        [(value, loc)] => same_value(value, doc.number_text(loc), &check.equals),
        _ => false,
    };
    if ok {
        return Ok(());
    }
    let shown = match found.as_slice() {
        [] => "nothing".to_string(),
        [(value, _)] => upstream.snippet(value.to_string().as_bytes()),
        many => format!("{} values", many.len()),
    };
    let mut message = format!("{}: expected {}, found {shown}", check.path.as_str(), check.equals);
    if let Some(q) = &check.message {
        if let Some((Value::String(m), _)) = q.locate(&doc.value, &[]).first() {
            message.push_str(": ");
            message.push_str(&upstream.snippet(m.as_bytes()));
        }
    }
    Err(PollError::new(Reason::UpstreamStatus, message))
}

/// Equality for the success check: numbers and numeric strings by value.
fn same_value(found: &Value, number_text: Option<&str>, expected: &Value) -> bool {
    let as_decimal = |v: &Value, raw: Option<&str>| match v {
        Value::Number(n) => parse_json_amount(raw.map_or_else(|| n.to_string(), str::to_string).as_str()).ok(),
        Value::String(s) => parse_decimal_text(s.trim()).ok(),
        _ => None,
    };
    match (as_decimal(found, number_text), as_decimal(expected, None)) {
        (Some(a), Some(b)) => a == b,
        _ => found == expected,
    }
}

fn read_row(
    cfg: &JsonConfig,
    row: &RowSelector,
    doc: &Document,
    node: &Value,
    loc: &Location,
    upstream: &Upstream,
) -> Result<((String, String), Contribution), RowError> {
    let no_key = |message: String| RowError { key: None, message };
    let field_error = |e: FieldError| no_key(e.to_string());
    let currency = match read_text(&row.currency, node, loc, doc, upstream).map_err(field_error)? {
        Some((text, at)) => currency_code(&text)
            .ok_or_else(|| no_key(format!("{at}: {:?} is not a currency code", upstream.snippet(text.as_bytes()))))?,
        None => return Err(no_key(format!("{}: currency missing", display(loc)))),
    };
    let account = match &row.account {
        None => "main".to_string(),
        Some(field) => match read_text(field, node, loc, doc, upstream).map_err(field_error)? {
            Some((text, _)) if !text.trim().is_empty() => text.trim().to_string(),
            Some((_, at)) => return Err(no_key(format!("{at}: empty account"))),
            None => return Err(no_key(format!("{}: account missing", display(loc)))),
        },
    };
    let key = (account, currency);
    let keyed = |message: String| RowError { key: Some(key.clone()), message };
    let keyed_field = |e: FieldError| keyed(e.to_string());
    let unit = row.unit.unwrap_or(cfg.unit);
    let amount = |field: &Option<Field>| -> Result<Option<Decimal>, RowError> {
        let Some(field) = field else { return Ok(None) };
        let Some((value, at)) = read_amount(field, node, loc, doc).map_err(keyed_field)? else { return Ok(None) };
        match unit {
            Unit::Major => Ok(Some(value)),
            Unit::Minor => minor_to_major(value, &key.1, &cfg.currency_exponents).map(Some).map_err(|e| keyed(format!("{at}: {e}"))),
        }
    };
    let contribution = Contribution {
        balance: amount(&row.balance)?,
        frozen: amount(&row.frozen)?,
        usable: amount(&row.usable)?,
        updated_at: match &row.updated_at {
            None => None,
            Some(field) => read_timestamp(field, node, loc, doc, upstream).map_err(keyed_field)?,
        },
    };
    Ok((key, contribution))
}

/// What a field found: a value at an absolute location, nothing (optional
/// path), or the row's key.
enum Found<'v> {
    Node(&'v Value, Location),
    Fixed(&'v str),
    Key(String, Location),
    Absent,
}

/// Why a field of a row could not be read; the message starts with where.
#[derive(Debug, thiserror::Error)]
enum FieldError {
    #[error("{at}: no map key {level} level(s) up")]
    NoMapKey { at: String, level: usize },
    #[error("{at}: is an array element, not a map key")]
    NotAMapKey { at: String },
    #[error("{at}: expected a value, found nothing")]
    Nothing { at: String },
    #[error("{at}: expected one value, found {n}")]
    Many { at: String, n: usize },
    #[error("{at}: expected {expected}, found {found}")]
    Type { at: String, expected: &'static str, found: String },
    #[error("{at}: number text not found")]
    NoNumberText { at: String },
    #[error("{at}: {source}")]
    Amount { at: String, source: AmountError },
    #[error("{at}: {source}")]
    Timestamp { at: String, source: TimestampError },
}

fn find<'v>(field: &'v Field, node: &'v Value, loc: &'v [Seg], doc: &'v Document) -> Result<Found<'v>, FieldError> {
    match field {
        Field::Value(v) => Ok(Found::Fixed(v)),
        Field::Key(level) => {
            let no_key = || FieldError::NoMapKey { at: display(loc), level: *level };
            let at = loc.len().checked_sub(*level).and_then(|n| n.checked_sub(1)).ok_or_else(no_key)?;
            let (up_to, seg) = (loc.get(..=at).ok_or_else(no_key)?, loc.get(at).ok_or_else(no_key)?);
            match seg {
                Seg::Name(name) => Ok(Found::Key(name.clone(), up_to.to_vec())),
                Seg::Index(_) => Err(FieldError::NotAMapKey { at: display(up_to) }),
            }
        }
        Field::Path { query, optional, root } => {
            let (base, base_loc): (&Value, &[Seg]) = if *root { (&doc.value, &[]) } else { (node, loc) };
            let mut hits = query.locate(base, base_loc);
            match hits.len() {
                0 if *optional => Ok(Found::Absent),
                0 => Err(FieldError::Nothing { at: format!("{}{}", display(base_loc), query.as_str().trim_start_matches('$')) }),
                1 => {
                    let (value, at) = hits.remove(0);
                    if value.is_null() && *optional {
                        return Ok(Found::Absent);
                    }
                    Ok(Found::Node(value, at))
                }
                n => Err(FieldError::Many { at: format!("{}{}", display(base_loc), query.as_str().trim_start_matches('$')), n }),
            }
        }
    }
}

/// A text value (currency, account) and where it was found.
fn read_text(field: &Field, node: &Value, loc: &Location, doc: &Document, upstream: &Upstream) -> Result<Option<(String, String)>, FieldError> {
    match find(field, node, loc, doc)? {
        Found::Absent => Ok(None),
        Found::Fixed(v) => Ok(Some((v.to_string(), "value".to_string()))),
        Found::Key(k, at) => Ok(Some((k, display(&at)))),
        Found::Node(Value::String(s), at) => Ok(Some((s.clone(), display(&at)))),
        // Numeric account ids are fine as labels; their JSON text is exact.
        Found::Node(Value::Number(n), at) => Ok(Some((doc.number_text(&at).map_or_else(|| n.to_string(), str::to_string), display(&at)))),
        Found::Node(other, at) => Err(FieldError::Type { at: display(&at), expected: "a string", found: kind_of(other, upstream) }),
    }
}

/// An exact amount and where it was found.
fn read_amount(field: &Field, node: &Value, loc: &Location, doc: &Document) -> Result<Option<(Decimal, String)>, FieldError> {
    let (parsed, at) = match find(field, node, loc, doc)? {
        Found::Absent => return Ok(None),
        Found::Fixed(v) => (parse_decimal_text(v.trim()), "value".to_string()),
        Found::Key(k, at) => (parse_decimal_text(k.trim()), display(&at)),
        Found::Node(Value::Number(_), at) => match doc.number_text(&at) {
            Some(text) => (parse_json_amount(text), display(&at)),
            None => return Err(FieldError::NoNumberText { at: display(&at) }),
        },
        Found::Node(Value::String(s), at) => (parse_decimal_text(s.trim()), display(&at)),
        Found::Node(other, at) => (Err(AmountError::NotANumber(type_name(other))), display(&at)),
    };
    match parsed {
        Ok(d) => Ok(Some((d, at))),
        Err(source) => Err(FieldError::Amount { at, source }),
    }
}

fn read_timestamp(field: &Field, node: &Value, loc: &Location, doc: &Document, upstream: &Upstream) -> Result<Option<SystemTime>, FieldError> {
    let (parsed, at) = match find(field, node, loc, doc)? {
        Found::Absent => return Ok(None),
        Found::Fixed(v) => (timestamp_text(v), "value".to_string()),
        Found::Key(k, at) => (timestamp_text(&k), display(&at)),
        Found::Node(Value::Number(_), at) => match doc.number_text(&at) {
            Some(text) => (timestamp_text(text), display(&at)),
            None => return Err(FieldError::NoNumberText { at: display(&at) }),
        },
        Found::Node(Value::String(s), at) => (timestamp_text(s), display(&at)),
        Found::Node(other, at) => {
            return Err(FieldError::Type { at: display(&at), expected: "a timestamp", found: kind_of(other, upstream) });
        }
    };
    parsed.map(Some).map_err(|source| FieldError::Timestamp { at, source })
}

/// RFC 3339, or epoch seconds; values of 10^11 and more are milliseconds
/// (10^11 seconds is the year 5138; 10^11 ms is 1973).
fn timestamp_text(text: &str) -> Result<SystemTime, TimestampError> {
    let text = text.trim();
    let shown = || text.chars().take(40).collect::<String>();
    if let Ok(n) = parse_decimal_text(text) {
        let out_of_range = || TimestampError::EpochOutOfRange(shown());
        let millis = if n.abs() >= Decimal::from(100_000_000_000u64) { Some(n) } else { n.checked_mul(Decimal::from(1000)) };
        let millis: u64 = millis.ok_or_else(out_of_range)?.trunc().try_into().map_err(|_| out_of_range())?;
        let t = SystemTime::UNIX_EPOCH.checked_add(Duration::from_millis(millis)).and_then(super::within_rfc3339_range);
        return t.ok_or_else(out_of_range);
    }
    parse_rfc3339(text).ok_or_else(|| TimestampError::NotATimestamp(shown()))
}

/// A timestamp value that is none; the text shown is its first 40 characters.
#[derive(Debug, thiserror::Error)]
enum TimestampError {
    #[error("epoch time {0:?} out of range")]
    EpochOutOfRange(String),
    #[error("expected RFC 3339 or epoch seconds/milliseconds, found {0:?}")]
    NotATimestamp(String),
}

/// What was found, for messages: scalars shown (shortened, redacted), containers by type.
fn kind_of(v: &Value, upstream: &Upstream) -> String {
    match v {
        Value::Number(_) | Value::Bool(_) | Value::String(_) => format!("{} {}", type_name(v), upstream.snippet(v.to_string().as_bytes())),
        _ => type_name(v).to_string(),
    }
}

#[cfg(test)]
mod tests;
