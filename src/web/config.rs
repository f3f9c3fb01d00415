//! The web config file as a whole: its top level and `http_server_config`
//! (serde types), loading, header validation and the validated
//! [`WebConfig`]. The `tls_server_config`, `basic_auth_users` and `rate_limit`
//! sections are read here and handed to [`super::tls`], [`super::basic_auth`]
//! and [`super::rate_limit`].
//!
//! Validation collects every problem with its key path (as the main config
//! does) and returns the same [`ConfigError`]. The file is read at start and on
//! every reload; certificates and keys are re-read with it. Besides
//! `src/config.rs`, this is the only module that reads YAML.

use std::collections::BTreeMap;
use std::sync::Arc;

use hyper::header::{HeaderName, HeaderValue};
use serde::Deserialize;
use serde_yaml::Value;

use super::basic_auth::{validate_users, BasicAuth};
use super::rate_limit::{validate_rate_limit, FileRateLimit, RateLimiter};
use super::tls::{validate_tls, FileTls};
use crate::config::{deserialize_at, ConfigError, ConfigIssue, YamlError};

/// The validated web config. `Default` is plain HTTP without auth.
#[derive(Clone)]
pub struct WebConfig {
    /// TLS settings; `None` serves plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Basic auth; `None` lets every request through.
    pub basic_auth: Option<Arc<BasicAuth>>,
    /// Added to every response (`http_server_config.headers`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// `http_server_config.http2` (default true); false serves HTTP/1.1 only.
    pub http2: bool,
    /// `rate_limit`: one token bucket for every request; `None` is unlimited.
    pub rate_limit: Option<Arc<RateLimiter>>,
    /// Problems that do not stop loading (e.g. a key file readable by others).
    pub warnings: Vec<String>,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig { tls: None, basic_auth: None, headers: Vec::new(), http2: true, rate_limit: None, warnings: Vec::new() }
    }
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfig")
            .field("tls", &self.tls.is_some())
            .field("basic_auth_users", &self.basic_auth.as_ref().map_or(0, |a| a.user_count()))
            .field("headers", &self.headers.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>())
            .field("http2", &self.http2)
            .field("rate_limit", &self.rate_limit.is_some())
            .finish()
    }
}

impl WebConfig {
    /// One line for logs and `--config.check`: what this config turns on.
    pub fn summary(&self) -> String {
        let mut parts = vec![if self.tls.is_some() { "TLS" } else { "plain HTTP" }.to_string()];
        if let Some(a) = &self.basic_auth {
            parts.push(format!("basic auth for {} user(s)", a.user_count()));
        }
        if !self.headers.is_empty() {
            parts.push(format!("{} extra header(s)", self.headers.len()));
        }
        if let Some(limit) = &self.rate_limit {
            parts.push(limit.summary());
        }
        parts.join(", ")
    }
}

/// Reads and validates a web config file.
pub fn load_file(path: &std::path::Path) -> Result<WebConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
    load_str(&text)
}

/// Parses and validates web config text. Relative file paths are taken as
/// they are (relative to the working directory).
pub fn load_str(text: &str) -> Result<WebConfig, ConfigError> {
    let mut root: Value = serde_yaml::from_str(text).map_err(|source| ConfigError::Yaml(YamlError { source }))?;
    if root.is_null() {
        root = Value::Mapping(Default::default());
    }
    let file: FileWebConfig = deserialize_at(root, "").map_err(|i| ConfigError::Invalid(vec![i]))?;
    let mut issues = Vec::new();
    let mut warnings = Vec::new();
    let http = file.http_server_config.unwrap_or_default();
    let http2 = http.http2.unwrap_or(true);
    let headers = validate_headers(http.headers.unwrap_or_default(), &mut issues);
    let basic_auth = file.basic_auth_users.and_then(|users| validate_users(users, &mut issues)).map(Arc::new);
    let tls = file.tls_server_config.and_then(|t| validate_tls(t, http2, &mut issues, &mut warnings)).map(Arc::new);
    let rate_limit = file.rate_limit.and_then(|r| validate_rate_limit(r, &mut issues)).map(Arc::new);
    if !issues.is_empty() {
        return Err(ConfigError::Invalid(issues));
    }
    Ok(WebConfig { tls, basic_auth, headers, http2, rate_limit, warnings })
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileWebConfig {
    tls_server_config: Option<FileTls>,
    http_server_config: Option<FileHttp>,
    /// User name → bcrypt hash.
    basic_auth_users: Option<BTreeMap<String, String>>,
    rate_limit: Option<FileRateLimit>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileHttp {
    http2: Option<bool>,
    headers: Option<BTreeMap<String, String>>,
}

/// The headers exporter-toolkit allows, with the values it allows (`None`: any).
const ALLOWED_HEADERS: &[(&str, Option<&[&str]>)] = &[
    ("Strict-Transport-Security", None),
    ("X-Content-Type-Options", Some(&["nosniff"])),
    ("X-Frame-Options", Some(&["deny", "sameorigin"])),
    ("X-XSS-Protection", None),
    ("Content-Security-Policy", None),
];

fn validate_headers(raw: BTreeMap<String, String>, issues: &mut Vec<ConfigIssue>) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::new();
    for (name, value) in raw {
        let path = format!("http_server_config.headers.{name}");
        let Some((canonical, allowed)) = ALLOWED_HEADERS.iter().find(|(n, _)| n.eq_ignore_ascii_case(&name)) else {
            let names: Vec<&str> = ALLOWED_HEADERS.iter().map(|(n, _)| *n).collect();
            issues.push(ConfigIssue { path, message: format!("header {name:?} cannot be configured (allowed: {})", names.join(", ")) });
            continue;
        };
        if let Some(values) = allowed {
            if !values.iter().any(|v| v.eq_ignore_ascii_case(&value)) {
                issues.push(ConfigIssue { path, message: format!("invalid value {value:?}; expected one of: {}", values.join(", ")) });
                continue;
            }
        }
        match HeaderValue::from_str(&value) {
            Ok(v) => out.push((HeaderName::from_static(lowercase_static(canonical)), v)),
            Err(_) => issues.push(ConfigIssue { path, message: "is not a valid header value".into() }),
        }
    }
    out
}

fn lowercase_static(name: &str) -> &'static str {
    match name {
        "Strict-Transport-Security" => "strict-transport-security",
        "X-Content-Type-Options" => "x-content-type-options",
        "X-Frame-Options" => "x-frame-options",
        "X-XSS-Protection" => "x-xss-protection",
        _ => "content-security-policy",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issues(text: &str) -> Vec<String> {
        match load_str(text) {
            Err(ConfigError::Invalid(list)) => list.iter().map(|i| i.to_string()).collect(),
            Err(e) => vec![e.to_string()],
            Ok(_) => vec![],
        }
    }

    #[test]
    fn empty_file_is_plain_http() {
        let cfg = load_str("").unwrap();
        assert!(cfg.tls.is_none() && cfg.basic_auth.is_none() && cfg.headers.is_empty() && cfg.http2);
    }

    #[test]
    fn headers_follow_exporter_toolkit() {
        let cfg =
            load_str("http_server_config:\n  headers:\n    X-Frame-Options: deny\n    Strict-Transport-Security: max-age=3600\n").unwrap();
        assert_eq!(cfg.headers.len(), 2);
        assert_eq!(
            issues("http_server_config:\n  headers:\n    Server: x\n")[0].split(" (").next().unwrap(),
            "http_server_config.headers.Server: header \"Server\" cannot be configured"
        );
        assert_eq!(
            issues("http_server_config:\n  headers:\n    X-Content-Type-Options: sniff\n"),
            vec!["http_server_config.headers.X-Content-Type-Options: invalid value \"sniff\"; expected one of: nosniff"]
        );
    }
}
