//! OAuth2 client credentials (RFC 6749 §4.4) for the `json` kind.
//!
//! The access token is cached in the supplier's [`KindMemory`] until shortly
//! before `expires_in`; a 401 on a cached token refreshes it once and retries
//! the request once. Token requests go through the same [`Upstream`] handle
//! (rate limiter, timeouts, retries, body cap), with the client credentials
//! as HTTP Basic (the default) or form fields. Neither the client secret nor
//! the token ever reaches a message: both are redacted from upstream text.
//!
//! [`KindMemory`]: crate::kinds::KindMemory
#![deny(clippy::arithmetic_side_effects)]

use std::time::Duration;

use reqwest::header::{HeaderValue, CONTENT_TYPE};
use reqwest::Url;
use serde::Deserialize;
use tokio::time::Instant;

use crate::settings::{read_secret_file, Auth, ConfigIssue, Secret};
use crate::upstream::{PollError, Reason, Request, Response, Upstream};

/// `oauth2_client_credentials:` keys as written in the file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileOAuth2 {
    token_url: String,
    client_id: String,
    client_secret: Option<String>,
    client_secret_file: Option<String>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    client_auth: ClientAuth,
}

/// How the client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// HTTP Basic `client_id:client_secret` (RFC 6749 §2.3.1; PayPal, most).
    #[default]
    Basic,
    /// `client_id` and `client_secret` as form fields of the token request.
    Body,
}

/// Where the token endpoint is.
#[derive(Debug, Clone, PartialEq)]
pub enum TokenUrl {
    /// A path joined to the supplier's `base_url`.
    Path(String),
    /// An absolute URL (credentials go to its origin only).
    Absolute(Url),
}

/// Validated `oauth2_client_credentials:`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "FileOAuth2")]
pub struct OAuth2Config {
    pub token_url: TokenUrl,
    pub client_id: Secret,
    pub client_secret: Secret,
    pub scopes: Vec<String>,
    pub client_auth: ClientAuth,
}

/// Why `oauth2_client_credentials:` is refused (serde reports the text).
#[derive(Debug, thiserror::Error)]
pub enum OAuth2ConfigError {
    #[error("token_url: invalid URL: {0}")]
    TokenUrl(#[source] <Url as std::str::FromStr>::Err),
    #[error("token_url: scheme must be http or https, found {0:?}")]
    TokenUrlScheme(String),
    #[error("token_url: credentials in the URL are not allowed")]
    TokenUrlCredentials,
    #[error("client_id: is empty")]
    EmptyClientId,
    #[error("give either client_secret or client_secret_file, not both")]
    BothSecrets,
    #[error("missing client_secret; give client_secret or client_secret_file")]
    NoSecret,
    #[error("client_secret: is empty")]
    EmptySecret,
    /// `client_secret_file` unreadable (the first issue found).
    #[error("{}", .0.as_ref().map(ToString::to_string).unwrap_or_default())]
    SecretFile(Option<ConfigIssue>),
}

impl TryFrom<FileOAuth2> for OAuth2Config {
    type Error = OAuth2ConfigError;

    fn try_from(f: FileOAuth2) -> Result<Self, OAuth2ConfigError> {
        let token_url = if f.token_url.starts_with('/') {
            TokenUrl::Path(f.token_url)
        } else {
            let url = Url::parse(&f.token_url).map_err(OAuth2ConfigError::TokenUrl)?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(OAuth2ConfigError::TokenUrlScheme(url.scheme().to_string()));
            }
            if !url.username().is_empty() || url.password().is_some() {
                return Err(OAuth2ConfigError::TokenUrlCredentials);
            }
            TokenUrl::Absolute(url)
        };
        if f.client_id.is_empty() {
            return Err(OAuth2ConfigError::EmptyClientId);
        }
        let client_secret = match (f.client_secret, f.client_secret_file) {
            (Some(_), Some(_)) => return Err(OAuth2ConfigError::BothSecrets),
            (None, None) => return Err(OAuth2ConfigError::NoSecret),
            (Some(s), None) if s.is_empty() => return Err(OAuth2ConfigError::EmptySecret),
            (Some(s), None) => Secret::new(s),
            (None, Some(file)) => {
                let (mut issues, mut warnings) = (Vec::new(), Vec::new());
                match read_secret_file(&file, "client_secret_file", &mut issues, &mut warnings) {
                    Some(s) => s,
                    None => return Err(OAuth2ConfigError::SecretFile(issues.into_iter().next())),
                }
            }
        };
        Ok(OAuth2Config {
            token_url,
            client_id: Secret::new(f.client_id),
            client_secret,
            scopes: f.scopes,
            client_auth: f.client_auth,
        })
    }
}

/// A token in the supplier's memory, for the credentials that obtained it.
#[derive(Debug)]
struct CachedToken {
    token: Secret,
    /// Refresh at or after this instant; `None`: until a 401.
    refresh_at: Option<Instant>,
    credentials: (TokenUrl, Secret),
}

/// The `json` kind's state between polls.
#[derive(Debug, Default)]
pub struct TokenCache {
    cached: Option<CachedToken>,
}

/// When to refresh a token that lives `expires_in`: a minute before, or
/// halfway for tokens shorter than two minutes.
pub fn refresh_after(expires_in: Duration) -> Duration {
    let early = expires_in.checked_div(2).unwrap_or_default().min(Duration::from_secs(60));
    expires_in.saturating_sub(early)
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    token_type: Option<String>,
    expires_in: Option<serde_json::Value>,
}

impl TokenCache {
    /// The cached access token, if any (for redaction).
    pub fn token(&self) -> Option<&Secret> {
        self.cached.as_ref().map(|c| &c.token)
    }

    fn valid(&self, cfg: &OAuth2Config) -> Option<Secret> {
        let c = self.cached.as_ref()?;
        let same = c.credentials == (cfg.token_url.clone(), cfg.client_id.clone());
        let fresh = c.refresh_at.is_none_or(|t| Instant::now() < t);
        (same && fresh).then(|| c.token.clone())
    }
}

/// Sends `req` with a bearer token, fetching or refreshing the token as needed.
pub async fn send(cfg: &OAuth2Config, upstream: &Upstream, req: &Request, cache: &mut TokenCache) -> Result<Response, PollError> {
    if let Some(token) = cache.valid(cfg) {
        match upstream.using_auth(Auth::Bearer(token)).send(req).await {
            Err(e) if e.reason == Reason::Auth => {
                tracing::debug!("cached OAuth2 token rejected; fetching a new one");
                cache.cached = None;
            }
            other => return other,
        }
    }
    let token = fetch(cfg, upstream).await?;
    let bearer = Auth::Bearer(token.token.clone());
    cache.cached = Some(token);
    let response = upstream.using_auth(bearer).send(req).await;
    if response.as_ref().is_err_and(|e| e.reason == Reason::Auth) {
        // Refreshed once already: report the 401 and forget the token.
        cache.cached = None;
    }
    response
}

async fn fetch(cfg: &OAuth2Config, upstream: &Upstream) -> Result<CachedToken, PollError> {
    let (endpoint, path, query) = match &cfg.token_url {
        TokenUrl::Path(p) => (upstream.clone(), p.clone(), vec![]),
        TokenUrl::Absolute(url) => {
            let mut origin = url.clone();
            origin.set_path("/");
            origin.set_query(None);
            origin.set_fragment(None);
            let query = url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
            (upstream.at_base_url(origin), url.path().to_string(), query)
        }
    };
    // Form encoding through `Url`, which has the encoder at hand.
    let mut form = Url::parse("http://form.invalid/").expect("static URL");
    {
        let mut pairs = form.query_pairs_mut();
        pairs.append_pair("grant_type", "client_credentials");
        if !cfg.scopes.is_empty() {
            pairs.append_pair("scope", &cfg.scopes.join(" "));
        }
        if cfg.client_auth == ClientAuth::Body {
            pairs.append_pair("client_id", cfg.client_id.expose());
            pairs.append_pair("client_secret", cfg.client_secret.expose());
        }
    }
    let mut req = Request::post(path);
    req.query = query;
    req.headers.push((CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded")));
    req.body = Some(form.query().unwrap_or_default().to_string().into());
    let auth = match cfg.client_auth {
        ClientAuth::Basic => Auth::Basic { username: cfg.client_id.clone(), password: cfg.client_secret.clone() },
        ClientAuth::Body => Auth::None,
    };
    // Its answers carry the access token: a debug poll never shows their bodies.
    let endpoint = endpoint.using_auth(auth).with_secrets([cfg.client_secret.expose().to_string()]).with_secret_bodies();
    let resp = endpoint
        .send(&req)
        .await
        .map_err(|e| PollError { message: format!("oauth2 token request: {}", e.message), ..e })?;
    let body: TokenResponse = serde_json::from_slice(&resp.body)
        .map_err(|e| PollError::decode(format!("oauth2 token response: {}", endpoint.redact(&e.to_string()))))?;
    if body.access_token.is_empty() {
        return Err(PollError::new(Reason::Auth, "oauth2 token response: empty access_token"));
    }
    if let Some(t) = body.token_type.as_deref().filter(|t| !t.eq_ignore_ascii_case("bearer")) {
        return Err(PollError::decode(format!("oauth2 token response: token_type {:?} is not Bearer", t.chars().take(20).collect::<String>())));
    }
    let expires_in = match &body.expires_in {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Number(n)) => n.as_f64(),
        Some(serde_json::Value::String(s)) => s.trim().parse::<f64>().ok(),
        Some(_) => None,
    }
    .filter(|s| s.is_finite() && *s >= 0.0)
    .map(|s| Duration::from_secs_f64(s.min(1e9)));
    Ok(CachedToken {
        token: Secret::new(body.access_token),
        // An instant past what the clock holds means "until a 401".
        refresh_at: expires_in.and_then(|e| Instant::now().checked_add(refresh_after(e))),
        credentials: (cfg.token_url.clone(), cfg.client_id.clone()),
    })
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)] // instants in tests, not upstream values
mod tests {
    use super::*;

    #[test]
    fn tokens_refresh_shortly_before_expiry() {
        assert_eq!(refresh_after(Duration::from_secs(32400)), Duration::from_secs(32340));
        assert_eq!(refresh_after(Duration::from_secs(60)), Duration::from_secs(30));
        assert_eq!(refresh_after(Duration::ZERO), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn cached_token_is_used_until_its_refresh_instant() {
        let cfg = OAuth2Config {
            token_url: TokenUrl::Path("/token".into()),
            client_id: Secret::new("id"),
            client_secret: Secret::new("secret"),
            scopes: vec![],
            client_auth: ClientAuth::Basic,
        };
        let mut cache = TokenCache {
            cached: Some(CachedToken {
                token: Secret::new("tok"),
                refresh_at: Some(Instant::now() + refresh_after(Duration::from_secs(3600))),
                credentials: (cfg.token_url.clone(), cfg.client_id.clone()),
            }),
        };
        assert_eq!(cache.valid(&cfg), Some(Secret::new("tok")));
        tokio::time::advance(Duration::from_secs(3539)).await;
        assert!(cache.valid(&cfg).is_some());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(cache.valid(&cfg), None);
        // Other credentials (after a reload) never reuse the token.
        cache.cached.as_mut().unwrap().refresh_at = None;
        let other = OAuth2Config { client_id: Secret::new("id2"), ..cfg.clone() };
        assert!(cache.valid(&cfg).is_some());
        assert_eq!(cache.valid(&other), None);
    }
}
