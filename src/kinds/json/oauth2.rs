//! OAuth2 client credentials (RFC 6749 §4.4) for the `json` kind.
//!
//! The token endpoint is asked with the client credentials as HTTP Basic
//! (the default) or form fields; caching until shortly before `expires_in`
//! and the one refresh on a 401 are [`token`](super::token)'s, shared with
//! the login flow. Neither the client secret nor the token ever reaches a
//! message: both are redacted from upstream text.
#![deny(clippy::arithmetic_side_effects)]

use reqwest::header::{HeaderValue, CONTENT_TYPE};
use serde::Deserialize;

pub use super::token::TokenUrl;
use super::token::{form_encode, lifetime, Fetched, TokenSource, TokenUrlError};
use crate::settings::{read_secret_file, Auth, ConfigIssue, Secret};
use crate::upstream::{PollError, Reason, Request, Upstream};

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
    #[error("token_url: {0}")]
    TokenUrl(#[source] TokenUrlError),
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
        let token_url = TokenUrl::parse(&f.token_url).map_err(OAuth2ConfigError::TokenUrl)?;
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

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    token_type: Option<String>,
    expires_in: Option<serde_json::Value>,
}

impl TokenSource for OAuth2Config {
    fn credentials(&self) -> Secret {
        Secret::new(format!("{:?}\n{}", self.token_url, self.client_id.expose()))
    }

    fn auth(&self, token: Secret) -> Auth {
        Auth::Bearer(token)
    }

    async fn fetch(&self, upstream: &Upstream) -> Result<Fetched, PollError> {
        fetch(self, upstream).await
    }
}

async fn fetch(cfg: &OAuth2Config, upstream: &Upstream) -> Result<Fetched, PollError> {
    let (endpoint, path) = cfg.token_url.target(upstream);
    let mut form = vec![("grant_type", "client_credentials")];
    let scope = cfg.scopes.join(" ");
    if !cfg.scopes.is_empty() {
        form.push(("scope", &scope));
    }
    if cfg.client_auth == ClientAuth::Body {
        form.extend([("client_id", cfg.client_id.expose()), ("client_secret", cfg.client_secret.expose())]);
    }
    let mut req = Request::post(path);
    req.headers.push((CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded")));
    req.body = Some(form_encode(form).into());
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
    Ok(Fetched { token: Secret::new(body.access_token), lifetime: body.expires_in.as_ref().and_then(lifetime) })
}
