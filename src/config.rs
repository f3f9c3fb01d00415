//! The config file: serde types for the YAML, `${VAR}` expansion, and
//! `validate()` that turns them into the runtime [`Config`].
//!
//! All YAML handling stays in this module (serde_yaml is archived; a successor
//! replaces it here alone). Every problem is reported with its key path, and
//! all problems of a file are collected, not just the first.

pub use crate::settings::{read_secret_file, Auth, ClientSettings, ConfigIssue, Secret, UpstreamSettings};
use std::collections::BTreeMap;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_yaml::Value;

use crate::kinds::KindConfig;
use crate::topup_window::{self, TopupWindow};

/// Default `global.poll_interval`.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(300);
/// Default `global.timeout` for one upstream request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default response body cap (`global.max_response_size`).
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
/// Default retries of one request within a poll (429, 5xx, timeouts, connect errors).
pub const DEFAULT_MAX_RETRIES: u32 = 2;
/// Default `thresholds[].topup_target_days`: top up to cover this many days of spend.
pub const DEFAULT_TOPUP_TARGET_DAYS: Decimal = Decimal::from_parts(7, 0, 0, false, 0);

/// A configured threshold, exported as gauges for the alert rules.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    pub currency: String,
    /// Limits the threshold to one account; `None` applies it to every account.
    pub account: Option<String>,
    pub low: Option<Decimal>,
    pub runway_days: Option<Decimal>,
    /// How many days of spend a top-up should cover (default [`DEFAULT_TOPUP_TARGET_DAYS`]).
    pub topup_target_days: Decimal,
}

impl Threshold {
    /// The threshold that applies to a balance of `account` in `currency`:
    /// one naming the account wins over a currency-wide one.
    pub fn applying_to<'a>(thresholds: &'a [Threshold], account: &str, currency: &str) -> Option<&'a Threshold> {
        thresholds
            .iter()
            .filter(|t| t.currency == currency && t.account.as_deref().is_none_or(|a| a == account))
            .max_by_key(|t| t.account.is_some())
    }

    /// The top-up target of a balance: the applying threshold's, or the default 7 days
    /// (every balance has one, so the rules need no fallback).
    pub fn topup_target_days(thresholds: &[Threshold], account: &str, currency: &str) -> Decimal {
        Threshold::applying_to(thresholds, account, currency).map_or(DEFAULT_TOPUP_TARGET_DAYS, |t| t.topup_target_days)
    }
}

/// One supplier, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct SupplierConfig {
    pub name: String,
    pub kind: KindConfig,
    pub base_url: Url,
    pub auth: Auth,
    pub poll_interval: Duration,
    pub min_interval: Duration,
    pub timeout: Duration,
    pub max_retries: u32,
    pub max_response_bytes: usize,
    /// Suppliers naming the same group share one rate limiter.
    pub rate_limit_group: Option<String>,
    pub thresholds: Vec<Threshold>,
    /// Proxy and TLS toward the supplier; suppliers with equal settings share a client.
    pub client: ClientSettings,
    /// When a top-up can be made and how long it takes to land (`global.topup_window`
    /// unless the supplier gives its own; shared, not copied, between suppliers).
    pub topup_window: Option<Arc<TopupWindow>>,
}

impl SupplierConfig {
    /// What the HTTP driver needs of this supplier.
    pub fn upstream_settings(&self) -> UpstreamSettings {
        UpstreamSettings {
            base_url: self.base_url.clone(),
            auth: self.auth.clone(),
            min_interval: self.min_interval,
            timeout: self.timeout,
            max_response_bytes: self.max_response_bytes,
            max_retries: self.max_retries,
            client: self.client.clone(),
        }
    }

    /// The key of the rate limiter this supplier uses.
    pub fn limiter_key(&self) -> String {
        match &self.rate_limit_group {
            Some(group) => format!("group:{group}"),
            None => format!("supplier:{}", self.name),
        }
    }
}

/// The whole validated config.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Config {
    pub suppliers: Vec<SupplierConfig>,
    /// Problems that do not stop loading (e.g. secret files readable by others).
    pub warnings: Vec<String>,
}

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config file {path}")]
    Read { path: String, source: std::io::Error },
    #[error("parsing YAML: {0}")]
    Yaml(YamlError),
    /// The loader task (`what`: config, web config) panicked.
    #[error("parsing YAML: {what} loader panicked: {panic}")]
    LoaderPanicked { what: &'static str, panic: tokio::task::JoinError },
    #[error("{} problem(s) in config:\n  {}", .0.len(), .0.iter().map(|i| i.to_string()).collect::<Vec<_>>().join("\n  "))]
    Invalid(Vec<ConfigIssue>),
}

/// Reads, expands and validates a config file.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
    load_str(&text, &|name| std::env::var(name).ok())
}

/// Parses and validates config text; `env` looks up `${VAR}` values.
pub fn load_str(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    let mut root: Value = serde_yaml::from_str(text).map_err(|source| ConfigError::Yaml(YamlError { source }))?;
    if root.is_null() {
        root = Value::Mapping(Default::default());
    }
    let mut issues = Vec::new();
    expand_env(&mut root, String::new(), env, &mut issues);
    if !issues.is_empty() {
        return Err(ConfigError::Invalid(issues));
    }
    let file: FileRoot = match deserialize_at(root, "") {
        Ok(f) => f,
        Err(issue) => return Err(ConfigError::Invalid(vec![issue])),
    };
    let mut warnings = Vec::new();
    let config = validate(file, &mut issues, &mut warnings);
    if issues.is_empty() {
        Ok(Config { suppliers: config, warnings })
    } else {
        Err(ConfigError::Invalid(issues))
    }
}

/// Text that is not YAML: `line L column C: ` and serde_yaml's reason.
#[derive(Debug, thiserror::Error)]
#[error("{}", yaml_error_text(.source))]
pub struct YamlError {
    pub(crate) source: serde_yaml::Error,
}

fn yaml_error_text(e: &serde_yaml::Error) -> String {
    match e.location() {
        Some(loc) => format!("line {} column {}: {}", loc.line(), loc.column(), strip_location(&e.to_string())),
        None => e.to_string(),
    }
}

fn strip_location(s: &str) -> String {
    match s.find(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s.to_string(),
    }
}

/// Expands `${VAR}` and `${VAR:-default}` in every string value; `$$` is a literal `$`.
/// The files a config (or web config) text names: the string value of every
/// key ending in `_file`, after `${VAR}` expansion when `expand` (the web config
/// is not expanded). What `--config.auto-reload-interval` watches besides the
/// file itself; unreadable or invalid text names none.
pub fn named_files(text: &str, expand: bool, env: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
    fn walk(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Sequence(items) => items.iter().for_each(|item| walk(item, out)),
            Value::Mapping(map) => {
                for (key, item) in map {
                    match (key.as_str(), item) {
                        (Some(k), Value::String(path)) if k.ends_with("_file") => out.push(path.clone()),
                        _ => walk(item, out),
                    }
                }
            }
            Value::Tagged(tagged) => walk(&tagged.value, out),
            _ => {}
        }
    }
    let Ok(mut root) = serde_yaml::from_str::<Value>(text) else { return Vec::new() };
    if expand {
        expand_env(&mut root, String::new(), env, &mut Vec::new());
    }
    let mut out = Vec::new();
    walk(&root, &mut out);
    out.sort();
    out.dedup();
    out
}

fn expand_env(value: &mut Value, path: String, env: &dyn Fn(&str) -> Option<String>, issues: &mut Vec<ConfigIssue>) {
    match value {
        Value::String(s) => match expand_string(s, env) {
            Ok(expanded) => *s = expanded,
            Err(e) => issues.push(ConfigIssue { path, message: e.to_string() }),
        },
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand_env(item, format!("{path}[{i}]"), env, issues);
            }
        }
        Value::Mapping(map) => {
            for (key, item) in map.iter_mut() {
                let key = key.as_str().unwrap_or("?");
                let child = if path.is_empty() { key.to_string() } else { format!("{path}.{key}") };
                expand_env(item, child, env, issues);
            }
        }
        Value::Tagged(tagged) => expand_env(&mut tagged.value, path, env, issues),
        _ => {}
    }
}

/// Why a `${VAR}` reference in a config string could not be expanded.
/// Names the variable, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    #[error("unterminated ${{ in string")]
    Unterminated,
    /// `name` is cut to 40 characters.
    #[error("invalid variable reference ${{{name}}}")]
    InvalidReference { name: String },
    #[error("environment variable {name} is not set")]
    NotSet { name: String },
}

/// Expands one string; the error names the missing variable, never a value.
pub fn expand_string(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, ExpandError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('{') {
            let end = tail.find('}').ok_or(ExpandError::Unterminated)?;
            let expr = &tail[..end];
            let (name, default) = match expr.find(":-") {
                Some(j) => (&expr[..j], Some(&expr[j + 2..])),
                None => (expr, None),
            };
            let valid =
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') && !name.as_bytes()[0].is_ascii_digit();
            if !valid {
                return Err(ExpandError::InvalidReference { name: name.chars().take(40).collect() });
            }
            match (env(name).filter(|v| default.is_none() || !v.is_empty()), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => return Err(ExpandError::NotSet { name: name.into() }),
            }
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Deserializes `value` into `T`, reporting the failing key path under `prefix`.
pub(crate) fn deserialize_at<T: serde::de::DeserializeOwned>(value: Value, prefix: &str) -> Result<T, ConfigIssue> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.path().to_string();
        let path = match (prefix.is_empty(), inner == ".") {
            (_, true) => prefix.to_string(),
            (true, false) => inner,
            (false, false) => format!("{prefix}.{inner}"),
        };
        ConfigIssue { path, message: strip_location(&e.into_inner().to_string()) }
    })
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileRoot {
    #[serde(default)]
    global: FileGlobal,
    #[serde(default)]
    suppliers: Vec<Value>,
}

/// `global:` — defaults for every supplier.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileGlobal {
    /// How often to poll each supplier (default 5m).
    poll_interval: Option<String>,
    /// Timeout of one upstream request (default 10s).
    timeout: Option<String>,
    /// Minimum gap between two requests to one supplier (default: the kind's documented limit).
    min_interval: Option<String>,
    /// Response bodies larger than this fail with reason `decode` (default 4MiB).
    max_response_size: Option<String>,
    /// Retries of one request within a poll (default 2).
    max_retries: Option<u32>,
    /// HTTP(S) proxy for every supplier (see `client.rs`); default: none, or HTTPS_PROXY/NO_PROXY from the environment.
    proxy_url: Option<String>,
    /// Hosts reached without the proxy (NO_PROXY format).
    no_proxy: Option<String>,
    /// TLS toward the suppliers: ca_file, cert_file, key_file, server_name, min_version.
    tls: Option<crate::client::FileTls>,
    /// The default top-up window of every supplier (a supplier's own replaces it whole).
    topup_window: Option<FileTopupWindow>,
}

/// The keys every supplier kind shares. Everything else belongs to the kind.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCommon {
    name: String,
    base_url: Option<String>,
    auth: Option<FileAuth>,
    poll_interval: Option<String>,
    min_interval: Option<String>,
    timeout: Option<String>,
    max_response_size: Option<String>,
    max_retries: Option<u32>,
    rate_limit_group: Option<String>,
    #[serde(default)]
    thresholds: Vec<FileThreshold>,
    proxy_url: Option<String>,
    no_proxy: Option<String>,
    tls: Option<crate::client::FileTls>,
    topup_window: Option<FileTopupWindow>,
}

/// The common keys, used to split a supplier's mapping between [`FileCommon`] and its kind.
const COMMON_KEYS: &[&str] = &[
    "name",
    "base_url",
    "auth",
    "poll_interval",
    "min_interval",
    "timeout",
    "max_response_size",
    "max_retries",
    "rate_limit_group",
    "thresholds",
    "proxy_url",
    "no_proxy",
    "tls",
    "topup_window",
];

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileAuth {
    bearer_token: Option<String>,
    bearer_token_file: Option<String>,
    basic: Option<FileBasic>,
    header: Option<FileHeader>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBasic {
    username: Option<String>,
    username_file: Option<String>,
    password: Option<String>,
    password_file: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileHeader {
    name: String,
    value: Option<String>,
    value_file: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileThreshold {
    currency: String,
    account: Option<String>,
    low: Option<Value>,
    runway_days: Option<Value>,
    topup_target_days: Option<Value>,
}

/// `topup_window:` — when a top-up can be made (see [`TopupWindow`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTopupWindow {
    /// IANA time zone name, e.g. `Europe/Berlin`.
    timezone: String,
    /// Weekdays the window opens: `mon` … `sun`.
    days: Vec<String>,
    /// `HH:MM-HH:MM` on those days, e.g. `09:00-17:00` (`24:00` ends at midnight).
    hours: String,
    /// `YYYY-MM-DD` dates, in the window's time zone, when it stays closed.
    #[serde(default)]
    holidays: Vec<String>,
    /// How long a top-up takes to land, counted in window hours (e.g. `4h`).
    lead_time: String,
    /// The balance must last this long past the ready time (default 12h).
    margin: Option<String>,
}

struct Defaults {
    poll_interval: Duration,
    timeout: Duration,
    min_interval: Option<Duration>,
    max_response_bytes: usize,
    max_retries: u32,
    client: crate::client::FileClient,
    topup_window: Option<Arc<TopupWindow>>,
}

fn validate(mut file: FileRoot, issues: &mut Vec<ConfigIssue>, warnings: &mut Vec<String>) -> Vec<SupplierConfig> {
    let topup_window = file.global.topup_window.take().and_then(|w| validate_topup_window(w, "global.topup_window", issues));
    let g = &file.global;
    let defaults = Defaults {
        poll_interval: duration_or(g.poll_interval.as_deref(), "global.poll_interval", DEFAULT_POLL_INTERVAL, issues),
        timeout: duration_or(g.timeout.as_deref(), "global.timeout", DEFAULT_TIMEOUT, issues),
        min_interval: g.min_interval.as_deref().map(|s| duration_or(Some(s), "global.min_interval", Duration::ZERO, issues)),
        max_response_bytes: size_or(g.max_response_size.as_deref(), "global.max_response_size", issues),
        max_retries: g.max_retries.unwrap_or(DEFAULT_MAX_RETRIES),
        client: crate::client::FileClient { proxy_url: g.proxy_url.clone(), no_proxy: g.no_proxy.clone(), tls: g.tls.clone() },
        topup_window,
    };
    let mut out = Vec::new();
    let mut seen = BTreeMap::new();
    for (i, raw) in file.suppliers.into_iter().enumerate() {
        let path = format!("suppliers[{i}]");
        // Names are checked for duplicates even when the rest of the entry is invalid.
        if let Some(name) = raw.get("name").and_then(Value::as_str).map(|n| n.trim().to_string()) {
            if let Some(first) = seen.insert(name.clone(), i) {
                issues.push(ConfigIssue {
                    path: format!("{path}.name"),
                    message: format!("duplicate supplier name {name:?} (first used by suppliers[{first}])"),
                });
            }
        }
        if let Some(supplier) = validate_supplier(raw, &path, &defaults, issues, warnings) {
            out.push(supplier);
        }
    }
    // Each distinct proxy/TLS setting is built once here, so a key that rustls or
    // reqwest refuses is a config error naming the supplier, not a failed start.
    let mut tried: Vec<&ClientSettings> = Vec::new();
    for s in &out {
        if s.client == ClientSettings::default() || tried.contains(&&s.client) {
            continue;
        }
        tried.push(&s.client);
        if let Err(e) = crate::client::build(&s.client, Duration::from_secs(5)) {
            issues.push(ConfigIssue { path: format!("suppliers[name={}]", s.name), message: crate::settings::error_chain(&e) });
        }
    }
    out
}

fn validate_supplier(
    raw: Value,
    path: &str,
    defaults: &Defaults,
    issues: &mut Vec<ConfigIssue>,
    warnings: &mut Vec<String>,
) -> Option<SupplierConfig> {
    let Value::Mapping(map) = raw else {
        issues.push(ConfigIssue { path: path.into(), message: "expected a mapping".into() });
        return None;
    };
    let (mut common_map, mut kind_map) = (serde_yaml::Mapping::new(), serde_yaml::Mapping::new());
    for (k, v) in map {
        if k.as_str().is_some_and(|k| COMMON_KEYS.contains(&k)) {
            common_map.insert(k, v);
        } else {
            kind_map.insert(k, v);
        }
    }
    if !kind_map.contains_key("kind") {
        issues.push(ConfigIssue { path: path.into(), message: "missing field `kind`".into() });
        return None;
    }
    let common: Result<FileCommon, _> = deserialize_at(Value::Mapping(common_map), path);
    let kind: Result<KindConfig, _> = deserialize_at(Value::Mapping(kind_map), path);
    let (common, kind) = match (common, kind) {
        (Ok(c), Ok(k)) => (c, k),
        (c, k) => {
            issues.extend(c.err());
            issues.extend(k.err().map(|i| with_common_keys(i, path)));
            return None;
        }
    };
    let before = issues.len();
    let name = common.name.trim().to_string();
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b)) {
        issues.push(ConfigIssue {
            path: format!("{path}.name"),
            message: "must be non-empty and use only letters, digits, '_', '-' and '.'".into(),
        });
    }
    let base_url = match common.base_url.as_deref().or(kind.default_base_url()) {
        None => {
            issues.push(ConfigIssue { path: format!("{path}.base_url"), message: "missing; this kind has no default".into() });
            None
        }
        Some(s) => match parse_base_url(s) {
            Ok(u) => Some(u),
            Err(e) => {
                issues.push(ConfigIssue { path: format!("{path}.base_url"), message: issue_message(&e) });
                None
            }
        },
    };
    let auth = validate_auth(common.auth, &format!("{path}.auth"), issues, warnings);
    let poll_interval = duration_or(common.poll_interval.as_deref(), &format!("{path}.poll_interval"), defaults.poll_interval, issues);
    let min_interval = match common.min_interval.as_deref() {
        Some(s) => duration_or(Some(s), &format!("{path}.min_interval"), Duration::ZERO, issues),
        None => defaults.min_interval.unwrap_or_else(|| kind.default_min_interval()),
    };
    let timeout = duration_or(common.timeout.as_deref(), &format!("{path}.timeout"), defaults.timeout, issues);
    let max_response_bytes = match common.max_response_size.as_deref() {
        Some(s) => size_or(Some(s), &format!("{path}.max_response_size"), issues),
        None => defaults.max_response_bytes,
    };
    if poll_interval.is_zero() {
        issues.push(ConfigIssue { path: format!("{path}.poll_interval"), message: "must be greater than 0".into() });
    }
    if timeout.is_zero() {
        issues.push(ConfigIssue { path: format!("{path}.timeout"), message: "must be greater than 0".into() });
    }
    let thresholds = validate_thresholds(common.thresholds, &format!("{path}.thresholds"), issues);
    let own_client = crate::client::FileClient { proxy_url: common.proxy_url, no_proxy: common.no_proxy, tls: common.tls };
    let client = crate::client::validate_client(&defaults.client, own_client, path, issues, warnings);
    let topup_window = match common.topup_window {
        Some(own) => validate_topup_window(own, &format!("{path}.topup_window"), issues),
        None => defaults.topup_window.clone(),
    };
    kind.validate(path, issues);
    if issues.len() > before {
        return None;
    }
    Some(SupplierConfig {
        name,
        kind,
        base_url: base_url?,
        auth: auth?,
        poll_interval,
        min_interval,
        timeout,
        max_retries: common.max_retries.unwrap_or(defaults.max_retries),
        max_response_bytes,
        rate_limit_group: common.rate_limit_group,
        thresholds,
        client,
        topup_window,
    })
}

/// serde, seeing only the kind's part of a supplier, says "unknown field
/// `colour`, expected `path`", as if `path` were the only key: name the
/// common keys too.
fn with_common_keys(mut issue: ConfigIssue, path: &str) -> ConfigIssue {
    let rewritten =
        issue.message.strip_prefix("unknown field `").and_then(|rest| rest.split_once("`, expected ")).map(|(field, expected)| {
            let kind_keys = match expected.strip_prefix("one of ").unwrap_or(expected) {
                "there are no fields" => "none".to_string(),
                keys => keys.replace('`', ""),
            };
            format!("unknown field `{field}` (common keys: {}; keys of this kind: {kind_keys})", COMMON_KEYS.join(", "))
        });
    if let (true, Some(message)) = (issue.path == path, rewritten) {
        issue.message = message;
    }
    issue
}

/// Why a `base_url` is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BaseUrlError {
    #[error("invalid URL")]
    Parse(#[source] <Url as std::str::FromStr>::Err),
    #[error("scheme must be http or https, found {scheme:?}")]
    Scheme { scheme: String },
    #[error("credentials in the URL are not allowed; use `auth`")]
    Credentials,
    #[error("must not have a query or fragment")]
    QueryOrFragment,
}

fn parse_base_url(s: &str) -> Result<Url, BaseUrlError> {
    let url = Url::parse(s).map_err(BaseUrlError::Parse)?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(BaseUrlError::Scheme { scheme: url.scheme().into() });
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(BaseUrlError::Credentials);
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(BaseUrlError::QueryOrFragment);
    }
    Ok(url)
}

/// A config issue's message: the error and its causes, one line
/// (`invalid URL: relative URL without a base`).
fn issue_message(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        message.push_str(": ");
        message.push_str(&c.to_string());
        cause = c.source();
    }
    message
}

fn validate_thresholds(raw: Vec<FileThreshold>, path: &str, issues: &mut Vec<ConfigIssue>) -> Vec<Threshold> {
    let mut out = Vec::new();
    for (i, t) in raw.into_iter().enumerate() {
        let p = format!("{path}[{i}]");
        let Some(currency) = crate::amount::currency_code(&t.currency) else {
            issues
                .push(ConfigIssue { path: format!("{p}.currency"), message: format!("{:?} is not a 3-letter currency code", t.currency) });
            continue;
        };
        let given = t.low.is_some() || t.runway_days.is_some() || t.topup_target_days.is_some();
        let low = t.low.and_then(|v| decimal_value(v, &format!("{p}.low"), issues));
        let positive = |v: Option<Value>, key: &str, issues: &mut Vec<ConfigIssue>| {
            let d = v.and_then(|v| decimal_value(v, &format!("{p}.{key}"), issues));
            if d.is_some_and(|d| d <= Decimal::ZERO) {
                issues.push(ConfigIssue { path: format!("{p}.{key}"), message: "must be greater than 0".into() });
            }
            d
        };
        let runway_days = positive(t.runway_days, "runway_days", issues);
        let topup_target_days = positive(t.topup_target_days, "topup_target_days", issues).unwrap_or(DEFAULT_TOPUP_TARGET_DAYS);
        // Only when none is given: an invalid one already has its own error.
        if !given {
            issues.push(ConfigIssue { path: p.clone(), message: "needs at least one of `low`, `runway_days`, `topup_target_days`".into() });
        }
        out.push(Threshold { currency, account: t.account, low, runway_days, topup_target_days });
    }
    out
}

/// A `topup_window` (global or a supplier's), every problem reported under `path`.
fn validate_topup_window(raw: FileTopupWindow, path: &str, issues: &mut Vec<ConfigIssue>) -> Option<Arc<TopupWindow>> {
    fn check<T>(result: Result<T, topup_window::WindowError>, key: String, issues: &mut Vec<ConfigIssue>) -> Option<T> {
        result.map_err(|e| issues.push(ConfigIssue { path: key, message: e.to_string() })).ok()
    }
    let before = issues.len();
    let timezone = check(topup_window::parse_timezone(&raw.timezone), format!("{path}.timezone"), issues);
    let days = check(topup_window::parse_days(&raw.days), format!("{path}.days"), issues);
    let hours = check(topup_window::parse_hours(&raw.hours), format!("{path}.hours"), issues);
    let holidays: Vec<_> = raw
        .holidays
        .iter()
        .enumerate()
        .filter_map(|(i, d)| check(topup_window::parse_date(d), format!("{path}.holidays[{i}]"), issues))
        .collect();
    let lead_time = duration_or(Some(raw.lead_time.as_str()), &format!("{path}.lead_time"), Duration::ZERO, issues);
    let margin = duration_or(raw.margin.as_deref(), &format!("{path}.margin"), topup_window::DEFAULT_MARGIN, issues);
    if issues.len() > before {
        return None;
    }
    Some(Arc::new(TopupWindow {
        timezone_name: raw.timezone.trim().to_string(),
        timezone: timezone?,
        days: days?,
        hours: hours?,
        holidays: holidays.into_iter().collect(),
        lead_time,
        margin,
    }))
}

/// A decimal from YAML: a number or a string, read from its text exactly.
fn decimal_value(v: Value, path: &str, issues: &mut Vec<ConfigIssue>) -> Option<Decimal> {
    let text = match &v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => String::new(),
    };
    match crate::amount::parse_decimal_text(text.trim()) {
        Ok(d) => Some(d),
        Err(_) => {
            issues.push(ConfigIssue { path: path.into(), message: "expected a number".into() });
            None
        }
    }
}

fn validate_auth(raw: Option<FileAuth>, path: &str, issues: &mut Vec<ConfigIssue>, warnings: &mut Vec<String>) -> Option<Auth> {
    let Some(a) = raw else { return Some(Auth::None) };
    let given = [a.bearer_token.is_some() || a.bearer_token_file.is_some(), a.basic.is_some(), a.header.is_some()];
    if given.iter().filter(|g| **g).count() > 1 {
        issues.push(ConfigIssue { path: path.into(), message: "give exactly one of bearer_token, basic, header".into() });
        return None;
    }
    let mut secret =
        |inline: Option<String>, file: Option<String>, key: &str, required: bool, issues: &mut Vec<ConfigIssue>| -> Option<Secret> {
            match (inline, file) {
                (Some(_), Some(_)) => {
                    issues
                        .push(ConfigIssue { path: format!("{path}.{key}"), message: format!("give either {key} or {key}_file, not both") });
                    None
                }
                (Some(v), None) => {
                    if v.is_empty() && required {
                        issues.push(ConfigIssue { path: format!("{path}.{key}"), message: "is empty".into() });
                        return None;
                    }
                    Some(Secret::new(v))
                }
                (None, Some(f)) => read_secret_file(&f, &format!("{path}.{key}_file"), issues, warnings),
                (None, None) if !required => Some(Secret::new("")),
                (None, None) => {
                    issues.push(ConfigIssue { path: format!("{path}.{key}"), message: format!("missing; give {key} or {key}_file") });
                    None
                }
            }
        };
    if a.bearer_token.is_some() || a.bearer_token_file.is_some() {
        return secret(a.bearer_token, a.bearer_token_file, "bearer_token", true, issues).map(Auth::Bearer);
    }
    if let Some(b) = a.basic {
        let username = secret(b.username, b.username_file, "basic.username", true, issues);
        let password = secret(b.password, b.password_file, "basic.password", false, issues);
        return Some(Auth::Basic { username: username?, password: password? });
    }
    if let Some(h) = a.header {
        let name = match reqwest::header::HeaderName::from_bytes(h.name.as_bytes()) {
            Ok(n) => Some(n),
            Err(_) => {
                issues
                    .push(ConfigIssue { path: format!("{path}.header.name"), message: format!("{:?} is not a valid header name", h.name) });
                None
            }
        };
        let value = secret(h.value, h.value_file, "header.value", true, issues);
        return Some(Auth::Header { name: name?, value: value? });
    }
    issues.push(ConfigIssue { path: path.into(), message: "give exactly one of bearer_token, basic, header".into() });
    None
}

/// A duration that does not parse. `text` is the given text cut to 40
/// characters; humantime's own explanation is not shown (the hint is clearer).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {text:?} (use e.g. 250ms, 10s, 5m, 1h)")]
pub struct DurationError {
    pub text: String,
}

/// Parses a duration such as `5m`, `10s`, `1h30m`, `250ms`.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    humantime::parse_duration(s.trim()).map_err(|_| DurationError { text: s.chars().take(40).collect() })
}

/// A duration key under `path`, or `default` when absent.
pub(crate) fn duration_or(s: Option<&str>, path: &str, default: Duration, issues: &mut Vec<ConfigIssue>) -> Duration {
    match s.map(parse_duration) {
        None => default,
        Some(Ok(d)) => d,
        Some(Err(e)) => {
            issues.push(ConfigIssue { path: path.into(), message: e.to_string() });
            default
        }
    }
}

/// A byte size that does not parse; `text` is the given text, trimmed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    /// No number in front of the unit.
    #[error("invalid size {text:?} (use e.g. 4MiB)")]
    Number { text: String },
    #[error("invalid size unit in {text:?} (use B, KiB, MiB, GiB, KB, MB)")]
    Unit { text: String },
    /// Zero, or more bytes than `usize` holds.
    #[error("invalid size {text:?}")]
    OutOfRange { text: String },
}

/// Parses a byte size such as `4MiB`, `512KiB`, `1000000`.
pub fn parse_size(s: &str) -> Result<usize, SizeError> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: usize = digits.parse().map_err(|_| SizeError::Number { text: s.into() })?;
    let mult = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1000,
        "MB" => 1_000_000,
        _ => return Err(SizeError::Unit { text: s.into() }),
    };
    n.checked_mul(mult).filter(|n| *n > 0).ok_or_else(|| SizeError::OutOfRange { text: s.into() })
}

fn size_or(s: Option<&str>, path: &str, issues: &mut Vec<ConfigIssue>) -> usize {
    match s.map(parse_size) {
        None => DEFAULT_MAX_RESPONSE_BYTES,
        Some(Ok(n)) => n,
        Some(Err(e)) => {
            issues.push(ConfigIssue { path: path.into(), message: e.to_string() });
            DEFAULT_MAX_RESPONSE_BYTES
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "FOX_KEY" => Some("sk_fox_123456".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn issues(text: &str) -> Vec<String> {
        match load_str(text, &env) {
            Err(ConfigError::Invalid(list)) => list.iter().map(|i| i.to_string()).collect(),
            Err(e) => vec![e.to_string()],
            Ok(_) => vec![],
        }
    }

    #[test]
    fn expands_variables_with_defaults() {
        assert_eq!(expand_string("a ${FOX_KEY} b", &env).unwrap(), "a sk_fox_123456 b");
        assert_eq!(expand_string("${NOPE:-https://x}", &env).unwrap(), "https://x");
        assert_eq!(expand_string("${EMPTY:-d}", &env).unwrap(), "d");
        assert_eq!(expand_string("$$5 and $x", &env).unwrap(), "$5 and $x");
        assert_eq!(expand_string("${NOPE}", &env).unwrap_err(), ExpandError::NotSet { name: "NOPE".into() });
        assert_eq!(expand_string("${NOPE}", &env).unwrap_err().to_string(), "environment variable NOPE is not set");
        assert_eq!(expand_string("${1X}", &env).unwrap_err().to_string(), "invalid variable reference ${1X}");
        assert_eq!(expand_string("a ${X", &env).unwrap_err().to_string(), "unterminated ${ in string");
    }

    #[test]
    fn full_supplier_loads_with_defaults() {
        let cfg = load_str(
            "global: {poll_interval: 2m}\nsuppliers:\n  - name: fox\n    kind: foxreload\n    auth: {bearer_token: '${FOX_KEY}'}\n    thresholds: [{currency: usd, low: 100.50, runway_days: 3}]\n",
            &env,
        )
        .unwrap();
        let s = &cfg.suppliers[0];
        assert_eq!(s.poll_interval, Duration::from_secs(120));
        assert_eq!(s.timeout, DEFAULT_TIMEOUT);
        assert_eq!(s.base_url.as_str(), "https://api.foxreload.com/");
        assert_eq!(s.auth, Auth::Bearer(Secret::new("sk_fox_123456")));
        assert_eq!(s.thresholds[0].currency, "USD");
        assert_eq!(s.thresholds[0].low, Some(Decimal::new(10050, 2)));
        assert!(!format!("{s:?}").contains("sk_fox"));
    }

    #[test]
    fn topup_target_and_window_defaults_and_overrides() {
        let cfg = load_str(
            "global:
  topup_window: {timezone: Europe/Berlin, days: [mon, tue, wed, thu, fri], hours: '09:00-17:00', holidays: [2026-12-24, '2026-12-25'], lead_time: 4h}
suppliers:
  - {name: a, kind: foxreload, thresholds: [{currency: USD, topup_target_days: 2.5}, {currency: EUR, low: 5}]}
  - {name: b, kind: foxreload, topup_window: {timezone: UTC, days: [sat, sun], hours: '00:00-24:00', lead_time: 0s, margin: 1d}}
  - {name: c, kind: foxreload}
",
            &env,
        )
        .unwrap();
        let [a, b, c] = &cfg.suppliers[..] else { panic!("three suppliers") };
        let th = &a.thresholds;
        assert_eq!(Threshold::topup_target_days(th, "main", "USD"), Decimal::new(25, 1), "a threshold may give only this key");
        assert_eq!(Threshold::topup_target_days(th, "main", "EUR"), DEFAULT_TOPUP_TARGET_DAYS, "given no target: 7");
        assert_eq!(Threshold::topup_target_days(th, "main", "KHR"), Decimal::from(7), "no threshold: 7");
        let global = a.topup_window.as_ref().unwrap();
        assert_eq!((global.timezone_name.as_str(), global.days), ("Europe/Berlin", [true, true, true, true, true, false, false]));
        assert_eq!((global.lead_time, global.margin), (Duration::from_secs(4 * 3600), Duration::from_secs(12 * 3600)));
        assert_eq!(global.holidays.len(), 2);
        // The global window is shared, not copied; a supplier's own replaces it whole.
        assert!(Arc::ptr_eq(global, c.topup_window.as_ref().unwrap()));
        let own = b.topup_window.as_ref().unwrap();
        assert_eq!((own.timezone_name.as_str(), own.holidays.len(), own.margin), ("UTC", 0, Duration::from_secs(86_400)));
        assert!(load_str("suppliers: [{name: a, kind: foxreload}]", &env).unwrap().suppliers[0].topup_window.is_none());
    }

    #[test]
    fn errors_carry_key_paths_and_are_all_reported() {
        let errs = issues(
            "suppliers:\n  - {name: a, kind: foxreload, poll_interval: 5x, auth: {bearer_token: '${MISSING}'}}\n  - {name: a, kind: novasend, colour: red}\n",
        );
        assert_eq!(errs, vec!["suppliers[0].auth.bearer_token: environment variable MISSING is not set"]);
        let errs = issues(
            "suppliers:\n  - {name: a, kind: foxreload, poll_interval: 5x}\n  - {name: b, kind: novasend, colour: red}\n  - {name: c, kind: nope}\n  - {name: a, kind: vai247, base_url: 'ftp://x'}\n",
        );
        assert_eq!(errs.len(), 5, "{errs:?}");
        assert!(errs[0].starts_with("suppliers[0].poll_interval: invalid duration \"5x\""), "{errs:?}");
        assert!(errs[1].starts_with("suppliers[1]: unknown field `colour`"), "{errs:?}");
        assert!(
            errs[2].starts_with("suppliers[2].kind: unknown variant `nope`") || errs[2].starts_with("suppliers[2]: unknown variant `nope`"),
            "{errs:?}"
        );
        assert_eq!(errs[3], "suppliers[3].name: duplicate supplier name \"a\" (first used by suppliers[0])");
        assert_eq!(errs[4], "suppliers[3].base_url: scheme must be http or https, found \"ftp\"");
    }

    #[test]
    fn duplicate_names_are_rejected() {
        let errs = issues("suppliers:\n  - {name: a, kind: foxreload}\n  - {name: a, kind: foxreload}\n");
        assert_eq!(errs, vec!["suppliers[1].name: duplicate supplier name \"a\" (first used by suppliers[0])"]);
    }

    #[test]
    fn unknown_auth_and_global_keys_are_rejected() {
        let errs = issues("global: {poll: 1m}\n");
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with("global.poll: unknown field `poll`"), "{errs:?}");
        let errs = issues("suppliers:\n  - {name: a, kind: foxreload, auth: {basic: {user: x}}}\n");
        assert!(errs[0].starts_with("suppliers[0].auth.basic.user: unknown field `user`"), "{errs:?}");
    }

    #[test]
    fn inline_secret_in_file_key_is_not_echoed() {
        let errs = issues("suppliers:\n  - {name: a, kind: foxreload, auth: {bearer_token_file: sk_live_abcdef}}\n");
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with("suppliers[0].auth.bearer_token_file: cannot read secret file <value hidden>"), "{errs:?}");
        assert!(!errs[0].contains("sk_live"));
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("4MiB").unwrap(), 4 << 20);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert_eq!(parse_size("4 lots").unwrap_err().to_string(), "invalid size unit in \"4 lots\" (use B, KiB, MiB, GiB, KB, MB)");
        assert_eq!(parse_size("MiB").unwrap_err().to_string(), "invalid size \"MiB\" (use e.g. 4MiB)");
        assert_eq!(parse_size("0").unwrap_err().to_string(), "invalid size \"0\"");
    }

    #[test]
    fn base_url_errors_keep_their_text() {
        let message = |s: &str| issue_message(&parse_base_url(s).unwrap_err());
        assert_eq!(message("not a url"), "invalid URL: relative URL without a base");
        assert_eq!(message("ftp://x"), "scheme must be http or https, found \"ftp\"");
        assert_eq!(message("https://u:p@x"), "credentials in the URL are not allowed; use `auth`");
        assert_eq!(message("https://x/?q=1"), "must not have a query or fragment");
        assert_eq!(parse_duration("5x").unwrap_err().to_string(), "invalid duration \"5x\" (use e.g. 250ms, 10s, 5m, 1h)");
    }
}
