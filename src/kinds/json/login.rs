//! Login-token auth for the `json` kind (`login:`): a request of its own
//! (form or JSON body, headers) whose answer holds a token, sent with the
//! balance requests as `Authorization: Bearer` or in a header of its own
//! (Currencycloud's `X-Auth-Token`).
//!
//! Caching until shortly before the token's lifetime ends and the one
//! re-login on a 401 are [`token`](super::token)'s, shared with OAuth2. The
//! login goes to `base_url`'s origin only. Credentials (values of `form`,
//! `json`, `headers`) and the token never reach a message: all are redacted.
//! Also home of [`SecretValue`], the `value | {value_file}` of secret keys.
#![deny(clippy::arithmetic_side_effects)]

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use reqwest::Method;
use serde::de::{self, Deserializer};
use serde::Deserialize;
use serde_json::Value;

use super::document::{type_name, Document, Query};
use super::token::{form_encode, lifetime, Fetched, TokenSource, TokenUrl};
use crate::settings::{read_secret_file, Auth, Secret};
use crate::upstream::{PollError, Reason, Request, Upstream};

/// A secret value: a string or number (after `${VAR}` expansion), or
/// `{value_file: path}`, read at load and at every reload (and watched by
/// auto-reload, as every `*_file` key).
#[derive(Debug, Clone, PartialEq)]
pub struct SecretValue(pub Secret);

impl<'de> Deserialize<'de> for SecretValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = match Value::deserialize(d)? {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            Value::Object(map) => match (map.len(), map.get("value_file")) {
                (1, Some(Value::String(file))) => {
                    let (mut issues, mut warnings) = (Vec::new(), Vec::new());
                    return match read_secret_file(file, "value_file", &mut issues, &mut warnings) {
                        Some(secret) => Ok(SecretValue(secret)),
                        None => Err(de::Error::custom(issues.first().map(ToString::to_string).unwrap_or_default())),
                    };
                }
                _ => return Err(de::Error::custom("expected a string, a number or {value_file: path}")),
            },
            _ => return Err(de::Error::custom("expected a string, a number or {value_file: path}")),
        };
        if text.is_empty() {
            return Err(de::Error::custom("is empty"));
        }
        Ok(SecretValue(Secret::new(text)))
    }
}

impl SecretValue {
    pub fn expose(&self) -> &str {
        self.0.expose()
    }
}

/// A secret as every message could quote it: as is, and form-encoded (in a
/// URL's query or a form body).
pub fn redaction_forms(secret: &str) -> [String; 2] {
    let encoded = form_encode([("", secret)]);
    [secret.to_string(), encoded.trim_start_matches('=').to_string()]
}

/// `login:` keys as written in the file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLogin {
    url: String,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    form: Option<BTreeMap<String, SecretValue>>,
    #[serde(default)]
    json: Option<BTreeMap<String, SecretValue>>,
    #[serde(default)]
    headers: BTreeMap<String, SecretValue>,
    token: Query,
    #[serde(default)]
    expires_in: Option<Query>,
    #[serde(default)]
    token_lifetime: Option<String>,
    #[serde(default)]
    token_header: Option<String>,
}

/// The login request's body.
#[derive(Debug, Clone, PartialEq)]
pub enum LoginBody {
    None,
    /// `application/x-www-form-urlencoded`.
    Form(BTreeMap<String, SecretValue>),
    /// A JSON object of strings.
    Json(BTreeMap<String, SecretValue>),
}

/// How long a token lives.
#[derive(Debug, Clone, PartialEq)]
pub enum Lifetime {
    /// Until the balance request answers 401.
    UntilRejected,
    /// Seconds at a path of the login answer (number or numeric string).
    Path(Query),
    /// A fixed lifetime (`token_lifetime`), e.g. 30m for an idle timeout.
    Fixed(Duration),
}

/// Validated `login:`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "FileLogin")]
pub struct LoginConfig {
    /// A path joined to `base_url`, or an absolute URL on its origin.
    pub url: TokenUrl,
    pub method: Method,
    pub body: LoginBody,
    pub headers: Vec<(HeaderName, SecretValue)>,
    /// Where the token is in the answer.
    pub token: Query,
    pub lifetime: Lifetime,
    /// `None`: `Authorization: Bearer <token>`.
    pub token_header: Option<HeaderName>,
}

/// Why `login:` is refused (serde reports the text with the key).
#[derive(Debug, thiserror::Error)]
pub enum LoginConfigError {
    #[error("url: {0}")]
    Url(#[source] super::token::TokenUrlError),
    #[error("method: expected POST, GET or PUT, found {0:?}")]
    Method(String),
    #[error("give either form or json, not both")]
    FormAndJson,
    #[error("headers.{0}: is not a valid header name")]
    HeaderName(String),
    #[error("headers.{0}: value is not a valid header value")]
    HeaderValue(String),
    #[error("token: {0}")]
    Token(String),
    #[error("expires_in: {0}")]
    ExpiresIn(String),
    #[error("give either expires_in or token_lifetime, not both")]
    TwoLifetimes,
    #[error("token_lifetime: {0}")]
    TokenLifetime(String),
    #[error("token_header: {0:?} is not a valid header name")]
    TokenHeader(String),
}

impl TryFrom<FileLogin> for LoginConfig {
    type Error = LoginConfigError;

    fn try_from(f: FileLogin) -> Result<Self, LoginConfigError> {
        let url = TokenUrl::parse(&f.url).map_err(LoginConfigError::Url)?;
        let method = match f.method.as_deref().map(str::to_ascii_uppercase).as_deref() {
            None | Some("POST") => Method::POST,
            Some("GET") => Method::GET,
            Some("PUT") => Method::PUT,
            Some(other) => return Err(LoginConfigError::Method(other.chars().take(20).collect())),
        };
        let body = match (f.form, f.json) {
            (Some(_), Some(_)) => return Err(LoginConfigError::FormAndJson),
            (Some(form), None) => LoginBody::Form(form),
            (None, Some(json)) => LoginBody::Json(json),
            (None, None) => LoginBody::None,
        };
        let mut headers = Vec::new();
        for (name, value) in f.headers {
            let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| LoginConfigError::HeaderName(name.clone()))?;
            // Never echo the value: it is a credential.
            HeaderValue::from_str(value.expose()).map_err(|_| LoginConfigError::HeaderValue(name.clone()))?;
            headers.push((header, value));
        }
        if let Some(e) = f.token.error() {
            return Err(LoginConfigError::Token(e.to_string()));
        }
        let lifetime = match (f.expires_in, f.token_lifetime) {
            (Some(_), Some(_)) => return Err(LoginConfigError::TwoLifetimes),
            (Some(q), None) => match q.error() {
                Some(e) => return Err(LoginConfigError::ExpiresIn(e.to_string())),
                None => Lifetime::Path(q),
            },
            (None, Some(text)) => match humantime::parse_duration(text.trim()) {
                Ok(d) if !d.is_zero() => Lifetime::Fixed(d.min(super::token::MAX_LIFETIME)),
                Ok(_) => return Err(LoginConfigError::TokenLifetime("must be greater than 0".into())),
                Err(_) => return Err(LoginConfigError::TokenLifetime(format!("invalid duration {:?}", text.chars().take(40).collect::<String>()))),
            },
            (None, None) => Lifetime::UntilRejected,
        };
        let token_header = match f.token_header {
            None => None,
            Some(name) => Some(HeaderName::from_bytes(name.as_bytes()).map_err(|_| LoginConfigError::TokenHeader(name.clone()))?),
        };
        Ok(LoginConfig { url, method, body, headers, token: f.token, lifetime, token_header })
    }
}

impl LoginConfig {
    /// Every credential of the login request.
    pub fn secret_values(&self) -> Vec<&str> {
        let body = match &self.body {
            LoginBody::Form(map) | LoginBody::Json(map) => map.values().map(SecretValue::expose).collect(),
            LoginBody::None => vec![],
        };
        body.into_iter().chain(self.headers.iter().map(|(_, v)| v.expose())).collect()
    }

    fn request(&self, path: String) -> Request {
        let mut req = Request { method: self.method.clone(), ..Request::get(path) };
        for (name, value) in &self.headers {
            if let Ok(mut value) = HeaderValue::from_str(value.expose()) {
                value.set_sensitive(true);
                req.headers.push((name.clone(), value));
            }
        }
        match &self.body {
            LoginBody::None => {}
            LoginBody::Form(map) => {
                req.headers.push((CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded")));
                req.body = Some(form_encode(map.iter().map(|(k, v)| (k.as_str(), v.expose()))).into());
            }
            LoginBody::Json(map) => {
                let object: serde_json::Map<String, Value> = map.iter().map(|(k, v)| (k.clone(), Value::String(v.expose().into()))).collect();
                req.body = Some(Value::Object(object).to_string().into());
            }
        }
        req
    }
}

impl TokenSource for LoginConfig {
    fn credentials(&self) -> Secret {
        let mut key = format!("{:?} {} {:?}", self.url, self.method, self.token_header);
        for value in self.secret_values() {
            key.push('\n');
            key.push_str(value);
        }
        Secret::new(key)
    }

    fn auth(&self, token: Secret) -> Auth {
        match &self.token_header {
            None => Auth::Bearer(token),
            Some(name) => Auth::Header { name: name.clone(), value: token },
        }
    }

    async fn fetch(&self, upstream: &Upstream) -> Result<Fetched, PollError> {
        if let TokenUrl::Absolute(url) = &self.url {
            if url.origin() != upstream.base_url().origin() {
                let message = format!("login: url {} is not on base_url's origin; credentials stay there", url.origin().ascii_serialization());
                return Err(PollError::new(Reason::Auth, message));
            }
        }
        let (endpoint, path) = self.url.target(upstream);
        let secrets = self.secret_values().into_iter().flat_map(redaction_forms);
        let endpoint = endpoint.using_auth(Auth::None).with_secrets(secrets);
        let resp = endpoint
            .send(&self.request(path))
            .await
            .map_err(|e| PollError { message: format!("login request: {}", e.message), ..e })?;
        let failed = |message: String| PollError::decode(format!("login response: {message}"));
        let doc = Document::parse(&resp.body).map_err(|e| failed(format!("not JSON: {}", endpoint.redact(&e.to_string()))))?;
        // The value is never shown: it may be the token.
        let token = match self.token.one(&doc.value).map_err(|n| failed(format!("{}: expected one value, found {n}", self.token.as_str())))? {
            Some(Value::String(t)) if t.is_empty() => return Err(PollError::new(Reason::Auth, "login response: empty token")),
            Some(Value::String(t)) if HeaderValue::from_str(t).is_err() => {
                return Err(failed(format!("{}: the token is not a valid header value", self.token.as_str())));
            }
            Some(Value::String(t)) => Secret::new(t.as_str()),
            Some(other) => return Err(failed(format!("{}: expected a string, found {}", self.token.as_str(), type_name(other)))),
            None => return Err(failed(format!("{}: expected a token, found nothing", self.token.as_str()))),
        };
        let lifetime = match &self.lifetime {
            Lifetime::UntilRejected => None,
            Lifetime::Fixed(d) => Some(*d),
            Lifetime::Path(q) => match q.one(&doc.value).map_err(|n| failed(format!("{}: expected one value, found {n}", q.as_str())))? {
                None | Some(Value::Null) => None,
                Some(v) => Some(lifetime(v).ok_or_else(|| failed(format!("{}: expected seconds, found {}", q.as_str(), type_name(v))))?),
            },
        };
        Ok(Fetched { token, lifetime })
    }
}

