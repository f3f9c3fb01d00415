//! Tokens the `json` kind obtains with a request of their own, shared by
//! [`oauth2`](super::oauth2) (client credentials) and [`login`](super::login)
//! (a configurable login request).
//!
//! A [`TokenSource`] says how to fetch a token and how the balance request
//! carries it; this module caches it in the supplier's memory until shortly
//! before it expires, and on a 401 with a cached token fetches a new one once
//! and retries the request once. A 401 with a fresh token is final (no loop).
//! Token requests go through the same [`Upstream`] handle as every request
//! (rate limiter, timeouts, retries, body cap).
#![deny(clippy::arithmetic_side_effects)]

use std::future::Future;
use std::time::Duration;

use reqwest::Url;
use tokio::time::Instant;

use crate::settings::{Auth, Secret};
use crate::upstream::{PollError, Reason, Request, Response, Upstream};

/// Where a token endpoint is.
#[derive(Debug, Clone, PartialEq)]
pub enum TokenUrl {
    /// A path joined to the supplier's `base_url`.
    Path(String),
    /// An absolute URL (credentials go to its origin only).
    Absolute(Url),
}

/// Why a token endpoint's URL is refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenUrlError {
    #[error("invalid URL: {0}")]
    Parse(#[source] <Url as std::str::FromStr>::Err),
    #[error("scheme must be http or https, found {0:?}")]
    Scheme(String),
    #[error("credentials in the URL are not allowed")]
    Credentials,
}

impl TokenUrl {
    /// A path (starting with `/`) or an absolute `http(s)` URL without credentials.
    pub fn parse(s: &str) -> Result<TokenUrl, TokenUrlError> {
        if s.starts_with('/') {
            return Ok(TokenUrl::Path(s.to_string()));
        }
        let url = Url::parse(s).map_err(TokenUrlError::Parse)?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(TokenUrlError::Scheme(url.scheme().to_string()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(TokenUrlError::Credentials);
        }
        Ok(TokenUrl::Absolute(url))
    }

    /// The handle and request path (query included) reaching this endpoint.
    pub fn target(&self, upstream: &Upstream) -> (Upstream, String) {
        match self {
            TokenUrl::Path(p) => (upstream.clone(), p.clone()),
            TokenUrl::Absolute(url) => {
                let (origin, path) = at_origin(url);
                (upstream.at_base_url(origin), path)
            }
        }
    }
}

/// Splits an absolute URL into its origin (as a base URL) and the path with
/// its query, as [`Upstream::url_for`] joins them back.
pub fn at_origin(url: &Url) -> (Url, String) {
    let mut origin = url.clone();
    origin.set_path("/");
    origin.set_query(None);
    origin.set_fragment(None);
    let path = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    };
    (origin, path)
}

/// `application/x-www-form-urlencoded` text of `pairs`.
pub fn form_encode<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    // Through `Url`, which has the encoder at hand.
    let mut form = Url::parse("http://form.invalid/").expect("static URL");
    form.query_pairs_mut().extend_pairs(pairs);
    form.query().unwrap_or_default().to_string()
}

/// A token just fetched, and how long it lives if the endpoint said.
pub struct Fetched {
    pub token: Secret,
    pub lifetime: Option<Duration>,
}

/// How a token is obtained and carried.
pub trait TokenSource {
    /// What identifies the credentials: a token obtained with others (before
    /// a reload changed them) is never reused.
    fn credentials(&self) -> Secret;
    /// How the balance request carries `token`.
    fn auth(&self, token: Secret) -> Auth;
    /// Asks the endpoint for a token.
    fn fetch(&self, upstream: &Upstream) -> impl Future<Output = Result<Fetched, PollError>> + Send;
}

/// A token in the supplier's memory, for the credentials that obtained it.
#[derive(Debug)]
struct CachedToken {
    token: Secret,
    /// Refresh at or after this instant; `None`: until a 401.
    refresh_at: Option<Instant>,
    credentials: Secret,
}

/// The `json` kind's token between polls.
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

/// The longest lifetime believed: a larger one (`1e300`) is read as this.
pub const MAX_LIFETIME: Duration = Duration::from_secs(1_000_000_000);

/// A lifetime in seconds as an endpoint sends it: a number or a numeric
/// string, not negative, capped at [`MAX_LIFETIME`]. `None`: not a lifetime.
pub fn lifetime(value: &serde_json::Value) -> Option<Duration> {
    match value {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .filter(|s| s.is_finite() && *s >= 0.0)
    .map(|s| Duration::from_secs_f64(s.min(MAX_LIFETIME.as_secs_f64())))
}

impl TokenCache {
    /// The cached token, if any (for redaction).
    pub fn token(&self) -> Option<&Secret> {
        self.cached.as_ref().map(|c| &c.token)
    }

    fn valid(&self, credentials: &Secret) -> Option<Secret> {
        let c = self.cached.as_ref()?;
        let fresh = c.refresh_at.is_none_or(|t| Instant::now() < t);
        (c.credentials == *credentials && fresh).then(|| c.token.clone())
    }
}

/// Sends `req` with a token from `source`, fetching or refreshing it as needed.
pub async fn send<S: TokenSource + Sync>(source: &S, upstream: &Upstream, req: &Request, cache: &mut TokenCache) -> Result<Response, PollError> {
    let credentials = source.credentials();
    if let Some(token) = cache.valid(&credentials) {
        match upstream.using_auth(source.auth(token)).send(req).await {
            Err(e) if e.reason == Reason::Auth => {
                tracing::debug!("cached token rejected; fetching a new one");
                cache.cached = None;
            }
            other => return other,
        }
    }
    let fetched = source.fetch(upstream).await?;
    let auth = source.auth(fetched.token.clone());
    // An instant past what the clock holds means "until a 401".
    let refresh_at = fetched.lifetime.and_then(|e| Instant::now().checked_add(refresh_after(e)));
    cache.cached = Some(CachedToken { token: fetched.token, refresh_at, credentials });
    let response = upstream.using_auth(auth).send(req).await;
    if response.as_ref().is_err_and(|e| e.reason == Reason::Auth) {
        // Refreshed once already: report the 401 and forget the token.
        cache.cached = None;
    }
    response
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

    #[test]
    fn lifetimes_are_numbers_or_numeric_strings_and_capped() {
        use serde_json::json;
        assert_eq!(lifetime(&json!(1800)), Some(Duration::from_secs(1800)));
        assert_eq!(lifetime(&json!(" 60 ")), Some(Duration::from_secs(60)));
        assert_eq!(lifetime(&json!(1e300)), Some(MAX_LIFETIME));
        assert_eq!(lifetime(&json!("1e999")), None, "inf is no lifetime");
        assert_eq!(lifetime(&json!(-5)), None);
        assert_eq!(lifetime(&json!(true)), None);
    }

    #[tokio::test(start_paused = true)]
    async fn cached_token_is_used_until_its_refresh_instant() {
        let credentials = Secret::new("/token\nid");
        let mut cache = TokenCache {
            cached: Some(CachedToken {
                token: Secret::new("tok"),
                refresh_at: Some(Instant::now() + refresh_after(Duration::from_secs(3600))),
                credentials: credentials.clone(),
            }),
        };
        assert_eq!(cache.valid(&credentials), Some(Secret::new("tok")));
        tokio::time::advance(Duration::from_secs(3539)).await;
        assert!(cache.valid(&credentials).is_some());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(cache.valid(&credentials), None);
        // Other credentials (after a reload) never reuse the token.
        cache.cached.as_mut().unwrap().refresh_at = None;
        assert!(cache.valid(&credentials).is_some());
        assert_eq!(cache.valid(&Secret::new("/token\nid2")), None);
    }

    #[test]
    fn absolute_urls_split_at_their_origin() {
        let (origin, path) = at_origin(&Url::parse("https://idp.example:8443/oauth/token?audience=b#x").unwrap());
        assert_eq!((origin.as_str(), path.as_str()), ("https://idp.example:8443/", "/oauth/token?audience=b"));
        assert!(matches!(TokenUrl::parse("ftp://x/t"), Err(TokenUrlError::Scheme(_))));
        assert!(matches!(TokenUrl::parse("https://u:p@x/t"), Err(TokenUrlError::Credentials)));
        assert_eq!(form_encode([("a b", "c&d")]), "a+b=c%26d");
    }
}
