//! The HTTP driver every supplier kind talks through.
//!
//! It owns what kinds must not each re-implement: the per-supplier rate
//! limiter (`min_interval` before *every* request, retries and pages
//! included), authentication, timeouts, the body size cap, redirects that
//! never carry credentials elsewhere, retries with capped exponential backoff
//! and jitter, `Retry-After` / `retry-after-ms`, and mapping failures onto the
//! fixed `reason` label set. A kind only says what to ask and how to read it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, USER_AGENT};
use reqwest::{Method, StatusCode, Url};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::settings::{Auth, UpstreamSettings};

pub use crate::poll::{ErrorReader, ErrorResponse, PollError, Reason};

/// One request a kind wants sent. `path` is joined to the supplier's `base_url`.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(reqwest::header::HeaderName, HeaderValue)>,
    pub body: Option<Bytes>,
}

impl Request {
    pub fn get(path: impl Into<String>) -> Self {
        Request { method: Method::GET, path: path.into(), query: vec![], headers: vec![], body: None }
    }
    pub fn post(path: impl Into<String>) -> Self {
        Request { method: Method::POST, ..Request::get(path) }
    }
    pub fn query(mut self, key: &str, value: impl ToString) -> Self {
        self.query.push((key.to_string(), value.to_string()));
        self
    }
    pub fn header(mut self, name: reqwest::header::HeaderName, value: &'static str) -> Self {
        self.headers.push((name, HeaderValue::from_static(value)));
        self
    }
}

/// A successful (2xx) response, body read in full under the size cap.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Keeps the next instant a request may be sent to one supplier (or group).
/// Driven by `tokio::time`, so paused-clock tests see exact spacing.
#[derive(Debug)]
pub struct Limiter {
    next_allowed: Mutex<Option<Instant>>,
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter { next_allowed: Mutex::new(None) }
    }
}

impl Limiter {
    /// Waits for this request's slot: never two requests within `min_interval`.
    pub async fn acquire(&self, min_interval: Duration) {
        let slot = {
            let mut next = self.next_allowed.lock().await;
            let now = Instant::now();
            let slot = next.map_or(now, |n| n.max(now));
            *next = Some(slot + min_interval);
            slot
        };
        tokio::time::sleep_until(slot).await;
    }

    /// Takes this request's slot only if it is free now: `Err(wait)` with how
    /// long a request would have to wait instead (the debug poll answers 429
    /// rather than waiting; nothing is reserved then).
    pub async fn try_acquire(&self, min_interval: Duration) -> Result<(), Duration> {
        let mut next = self.next_allowed.lock().await;
        let now = Instant::now();
        match *next {
            Some(slot) if slot > now => Err(slot.saturating_duration_since(now)),
            _ => {
                *next = Some(now + min_interval);
                Ok(())
            }
        }
    }

    /// Pushes the next slot out to at least `until` (a supplier's `Retry-After`).
    pub async fn defer_until(&self, until: Instant) {
        let mut next = self.next_allowed.lock().await;
        *next = Some(next.map_or(until, |n| n.max(until)));
    }
}

/// Longest failure snippet a poll's trace keeps (the poll history shows it).
pub const FAILURE_SNIPPET_BYTES: usize = 300;
/// Longest response body a detailed trace shows (redacted), per request.
pub const DEBUG_BODY_BYTES: usize = 64 * 1024;
/// Bodies a detailed trace shows in all; later ones are left out.
const DEBUG_BODIES_TOTAL: usize = 4 * DEBUG_BODY_BYTES;

/// What the requests of one poll did, recorded by every [`Upstream`] handle
/// of that poll (the handles a kind derives share it). A summary trace keeps
/// what the poll history needs (requests, last status, failure snippet); a
/// detailed one (the debug poll) also keeps each request and its body, and
/// makes the poll's first request take a free limiter slot or fail at once.
#[derive(Debug, Default)]
pub struct PollTrace {
    detailed: bool,
    data: std::sync::Mutex<TraceData>,
}

/// What a [`PollTrace`] holds. Every text in it is redacted.
#[derive(Debug, Clone, Default)]
pub struct TraceData {
    /// HTTP requests sent (redirects and retries included).
    pub requests: u32,
    /// Status of the last response, if any came.
    pub last_status: Option<u16>,
    /// The last non-2xx body, redacted, at most [`FAILURE_SNIPPET_BYTES`].
    pub failure_snippet: Option<String>,
    /// Detailed traces only: each request in order.
    pub exchanges: Vec<Exchange>,
    /// Detailed traces only: the first request found no free limiter slot; this long to wait.
    pub would_wait: Option<Duration>,
}

/// One request of a detailed trace.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub method: String,
    /// Without user info, secrets redacted.
    pub url: String,
    pub status: Option<u16>,
    pub duration: Duration,
    /// The body, redacted, at most [`DEBUG_BODY_BYTES`]; `None` when there was none to show.
    pub body: Option<String>,
    pub body_truncated: bool,
    /// Why no body is shown, or why the request failed (redacted).
    pub note: Option<String>,
}

impl PollTrace {
    /// A trace for the poll history.
    pub fn summary() -> Arc<PollTrace> {
        Arc::default()
    }

    /// A trace for the debug poll.
    pub fn detailed() -> Arc<PollTrace> {
        Arc::new(PollTrace { detailed: true, data: Default::default() })
    }

    /// What was recorded so far.
    pub fn data(&self) -> TraceData {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TraceData> {
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Retry and backoff settings of one supplier.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl RetryPolicy {
    /// Backoff before retry number `attempt` (1-based): `base * 2^(attempt-1)`,
    /// capped, with full jitter over its upper half so retries spread out.
    pub fn backoff(&self, attempt: u32, jitter: f64) -> Duration {
        let exp = self.base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let capped = exp.min(self.cap);
        capped.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
    }
}

/// The HTTP handle given to a supplier kind for one supplier.
#[derive(Clone)]
pub struct Upstream {
    client: reqwest::Client,
    base_url: Url,
    auth: Auth,
    limiter: Arc<Limiter>,
    min_interval: Duration,
    timeout: Duration,
    max_body: usize,
    retry: RetryPolicy,
    secrets: Arc<Vec<String>>,
    /// The kind's reading of non-2xx answers.
    read_error: ErrorReader,
    /// Where this poll's requests are recorded (poll history, debug poll).
    trace: Option<Arc<PollTrace>>,
    /// Response bodies of this handle carry credentials (an OAuth2 token
    /// endpoint): a detailed trace never shows them.
    bodies_secret: bool,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream").field("base_url", &self.base_url.as_str()).finish_non_exhaustive()
    }
}

/// Builds the shared HTTP client: rustls, no automatic redirects (see
/// [`Upstream::send`]), connect timeout, no proxy surprises from the env beyond reqwest's defaults.
pub fn build_client(connect_timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(connect_timeout)
        .pool_idle_timeout(Duration::from_secs(90))
        .build()
        .expect("building the HTTP client (TLS backend) failed")
}

const MAX_REDIRECTS: usize = 5;

impl Upstream {
    pub fn new(client: reqwest::Client, cfg: &UpstreamSettings, limiter: Arc<Limiter>) -> Self {
        Upstream {
            client,
            base_url: cfg.base_url.clone(),
            auth: cfg.auth.clone(),
            limiter,
            min_interval: cfg.min_interval,
            timeout: cfg.timeout,
            max_body: cfg.max_response_bytes,
            retry: RetryPolicy {
                max_retries: cfg.max_retries,
                base: cfg.min_interval.max(Duration::from_secs(1)),
                cap: Duration::from_secs(30),
            },
            secrets: Arc::new(cfg.auth.secrets().into_iter().map(String::from).chain(cfg.client.secrets()).collect()),
            read_error: |_| None,
            trace: None,
            bodies_secret: false,
        }
    }

    /// The same handle, recording its requests into `trace`.
    pub fn traced(&self, trace: Arc<PollTrace>) -> Upstream {
        Upstream { trace: Some(trace), ..self.clone() }
    }

    /// The same handle, its response bodies never shown in a detailed trace
    /// (they carry credentials, e.g. an OAuth2 access token).
    pub fn with_secret_bodies(self) -> Upstream {
        Upstream { bodies_secret: true, ..self }
    }

    /// The same handle, reading non-2xx answers the kind's way.
    pub fn reading_errors_with(self, read_error: ErrorReader) -> Upstream {
        Upstream { read_error, ..self }
    }

    /// Sends `req` and decodes the 2xx body as `T` (reason `decode` with the
    /// JSON path on failure).
    pub async fn send_json<T: serde::de::DeserializeOwned>(&self, req: &Request) -> Result<T, PollError> {
        let resp = self.send(req).await?;
        self.decode(&resp.body)
    }

    /// Decodes a JSON body into `T`, mapping failures to reason `decode` with
    /// the JSON path and a short message (never the body itself).
    pub fn decode<T: serde::de::DeserializeOwned>(&self, body: &[u8]) -> Result<T, PollError> {
        let mut de = serde_json::Deserializer::from_slice(body);
        let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let message = self.redact(&e.into_inner().to_string());
            match path.as_str() {
                "." => PollError::decode(message),
                p if p.starts_with('[') => PollError::decode(format!("${p}: {message}")),
                p => PollError::decode(format!("$.{p}: {message}")),
            }
        })?;
        de.end().map_err(|e| PollError::decode(e.to_string()))?;
        Ok(value)
    }

    pub fn base_url(&self) -> &Url {
        &self.base_url
    }

    /// The same handle (client, limiter, timeouts, retries) authenticating
    /// with `auth` instead of the supplier's configured auth: an OAuth2
    /// access token, or client credentials for the token endpoint.
    pub fn using_auth(&self, auth: Auth) -> Upstream {
        let mut secrets: Vec<String> = self.secrets.as_ref().clone();
        secrets.extend(auth.secrets().into_iter().map(String::from));
        Upstream { auth, secrets: Arc::new(secrets), ..self.clone() }
    }

    /// The same handle sending to another base URL (e.g. a token endpoint on
    /// another host). Credentials go only to this new origin.
    pub fn at_base_url(&self, base_url: Url) -> Upstream {
        Upstream { base_url, ..self.clone() }
    }

    /// Adds values to redact from upstream text (e.g. secret header values).
    pub fn with_secrets(&self, extra: impl IntoIterator<Item = String>) -> Upstream {
        let mut secrets: Vec<String> = self.secrets.as_ref().clone();
        secrets.extend(extra.into_iter().filter(|s| s.len() >= 4));
        Upstream { secrets: Arc::new(secrets), ..self.clone() }
    }

    /// Removes every configured secret from text that came from upstream.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in self.secrets.iter() {
            out = out.replace(s.as_str(), "<redacted>");
            // Also as quoted by `{:?}` or JSON, where `"` and `\` come escaped.
            let debug = s.escape_debug().to_string();
            if debug != *s {
                out = out.replace(&debug, "<redacted>");
            }
            let json = serde_json::to_string(s).unwrap_or_default();
            let json = json.trim_matches('"');
            if json != s && !json.is_empty() {
                out = out.replace(json, "<redacted>");
            }
        }
        out
    }

    /// A short, redacted, single-line snippet of an upstream body for
    /// messages. Redacted before it is cut, so no secret prefix survives a cut.
    pub fn snippet(&self, body: &[u8]) -> String {
        self.snippet_of(body, 200, |line| line.chars().take(120).collect())
    }

    /// Like [`Upstream::snippet`], at most `max_bytes` long (cut on a char
    /// boundary): the failure snippet of the poll history.
    pub fn snippet_bytes(&self, body: &[u8], max_bytes: usize) -> String {
        self.snippet_of(body, max_bytes.saturating_add(80), |line| cut_to_bytes(&line, max_bytes).to_string())
    }

    /// Redacts the first `read` bytes (plus room for a secret straddling the
    /// cut), flattens control characters, then cuts with `cut`.
    fn snippet_of(&self, body: &[u8], read: usize, cut: impl FnOnce(String) -> String) -> String {
        let longest_secret = self.secrets.iter().map(|s| s.len() * 2).max().unwrap_or(0);
        let window = read + longest_secret;
        let text = String::from_utf8_lossy(&body[..body.len().min(window)]);
        let mut redacted = self.redact(&text);
        if body.len() > window {
            // A secret cut by the window's end is not recognised: drop that end. (Redactions
            // before it shorten the text, and could otherwise pull its prefix under the cut.)
            let keep = cut_to_bytes(&redacted, redacted.len().saturating_sub(longest_secret)).len();
            redacted.truncate(keep);
        }
        let line: String = redacted.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
        cut(line).trim().to_string()
    }

    /// `url` as shown in a debug trace: no user info, every secret redacted.
    fn shown_url(&self, url: &Url) -> String {
        let mut shown = url.clone();
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        self.redact(shown.as_str())
    }

    /// Joins a request path to `base_url`, keeping any path prefix of the base.
    pub fn url_for(&self, path: &str) -> Result<Url, PollError> {
        let mut url = self.base_url.clone();
        let base_path = url.path().trim_end_matches('/').to_string();
        let (p, q) = path.split_once('?').unwrap_or((path, ""));
        url.set_path(&format!("{base_path}/{}", p.trim_start_matches('/')));
        if !q.is_empty() {
            url.set_query(Some(q));
        }
        Ok(url)
    }

    /// Sends one request through the limiter, with retries; returns a 2xx
    /// response or the failure mapped to its reason. 401/403/404 are final.
    pub async fn send(&self, req: &Request) -> Result<Response, PollError> {
        let mut attempt = 0;
        loop {
            let result = self.send_once(req).await;
            let err = match result {
                Ok(resp) => return Ok(resp),
                Err(e) => e,
            };
            let retryable = matches!(err.reason, Reason::RateLimited | Reason::ServerError | Reason::Timeout | Reason::Connect);
            // A debug poll reports the first failure instead of retrying.
            let max_retries = if self.trace.as_ref().is_some_and(|t| t.detailed) { 0 } else { self.retry.max_retries };
            if !retryable || attempt >= max_retries {
                if let Some(wait) = err.retry_after {
                    self.limiter.defer_until(Instant::now() + wait).await;
                }
                return Err(err);
            }
            attempt += 1;
            let wait = match err.retry_after {
                // Too long to wait inside a poll: fail now, the limiter keeps the supplier quiet until then.
                Some(wait) if wait > self.retry.cap => {
                    self.limiter.defer_until(Instant::now() + wait).await;
                    return Err(err);
                }
                Some(wait) => wait,
                None => self.retry.backoff(attempt, rand::random::<f64>()),
            };
            tracing::debug!(attempt, wait_ms = wait.as_millis() as u64, reason = err.reason.as_str(), "retrying upstream request");
            self.limiter.defer_until(Instant::now() + wait).await;
        }
    }

    async fn send_once(&self, req: &Request) -> Result<Response, PollError> {
        let mut url = self.url_for(&req.path)?;
        if !req.query.is_empty() {
            url.query_pairs_mut().extend_pairs(req.query.iter());
        }
        let origin = url.origin();
        let mut redirects = 0;
        let mut method = req.method.clone();
        let mut body = req.body.clone();
        loop {
            self.take_slot().await?;
            let sent_at = Instant::now();
            // Credentials only ever go to the configured origin.
            let same_origin = url.origin() == origin;
            let mut builder = self
                .client
                .request(method.clone(), url.clone())
                .timeout(self.timeout)
                .header(USER_AGENT, concat!("balance_exporter/", env!("CARGO_PKG_VERSION")));
            // A kind's own Accept (Balanced's API revision) replaces the default.
            if !req.headers.iter().any(|(name, _)| name == ACCEPT) {
                builder = builder.header(ACCEPT, "application/json");
            }
            for (name, value) in &req.headers {
                builder = builder.header(name, value);
            }
            if same_origin {
                builder = self.with_auth(builder);
            }
            if let Some(b) = &body {
                // JSON unless the request names its own type (e.g. an OAuth2 form).
                if !req.headers.iter().any(|(name, _)| name == reqwest::header::CONTENT_TYPE) {
                    builder = builder.header(reqwest::header::CONTENT_TYPE, "application/json");
                }
                builder = builder.body(b.clone());
            }
            let resp = match builder.send().await {
                Ok(resp) => resp,
                Err(e) => {
                    let err = self.transport_error(e);
                    self.note(&method, &url, sent_at, None, Err(&err.message));
                    return Err(err);
                }
            };
            let status = resp.status();
            if status.is_redirection() {
                self.note(&method, &url, sent_at, Some(status.as_u16()), Err("redirect"));
                let location = resp.headers().get(reqwest::header::LOCATION).and_then(|v| v.to_str().ok());
                let next = location.and_then(|l| url.join(l).ok());
                match next {
                    Some(next) if redirects < MAX_REDIRECTS && matches!(next.scheme(), "http" | "https") => {
                        redirects += 1;
                        if next.origin() != origin {
                            tracing::warn!(from = %origin.ascii_serialization(), to = %next.origin().ascii_serialization(), "redirect to another origin; sending it without credentials");
                        }
                        if matches!(status.as_u16(), 301..=303) && method == Method::POST {
                            method = Method::GET;
                            body = None;
                        }
                        url = next;
                        continue;
                    }
                    _ => return Err(PollError::new(Reason::UpstreamStatus, format!("http {}: redirect not followed", status.as_u16()))),
                }
            }
            let headers = resp.headers().clone();
            let retry_after = retry_after(&headers, SystemTime::now());
            let bytes = match self.read_capped(resp).await {
                Ok(bytes) => bytes,
                Err(err) => {
                    self.note(&method, &url, sent_at, Some(status.as_u16()), Err(&err.message));
                    return Err(err);
                }
            };
            self.note(&method, &url, sent_at, Some(status.as_u16()), Ok(&bytes));
            if status.is_success() {
                return Ok(Response { status, headers, body: bytes });
            }
            // The kind reads its API's error answer first; the text is cut and redacted here.
            let answer = ErrorResponse { status: status.as_u16(), headers: &headers, body: &bytes };
            let mut err = match (self.read_error)(&answer) {
                Some((reason, message)) => PollError::new(reason, self.snippet(message.as_bytes())),
                None => PollError::new(Reason::from_status(status.as_u16()), format!("http {}: {}", status.as_u16(), self.snippet(&bytes))),
            };
            if matches!(status.as_u16(), 429 | 503) {
                err.retry_after = retry_after;
            }
            return Err(err);
        }
    }

    /// Waits for this request's limiter slot; the first request of a debug
    /// poll takes a free slot or fails at once (`rate_limited`, with the wait).
    async fn take_slot(&self) -> Result<(), PollError> {
        match &self.trace {
            Some(trace) if trace.detailed && trace.lock().requests == 0 => {
                self.limiter.try_acquire(self.min_interval).await.map_err(|wait| {
                    trace.lock().would_wait = Some(wait);
                    PollError { retry_after: Some(wait), ..PollError::new(Reason::RateLimited, "min_interval: no free request slot now") }
                })
            }
            _ => {
                self.limiter.acquire(self.min_interval).await;
                Ok(())
            }
        }
    }

    /// Records one request in the poll's trace: its status and either its
    /// body or why there is none (an error, a redirect).
    fn note(&self, method: &Method, url: &Url, sent_at: Instant, status: Option<u16>, body: Result<&[u8], &str>) {
        let Some(trace) = &self.trace else { return };
        let mut data = trace.lock();
        data.requests = data.requests.saturating_add(1);
        if status.is_some() {
            data.last_status = status;
        }
        // The snippet is of the error answer that ended the poll: a later 2xx (a retry that
        // succeeded, the next page) clears an earlier one.
        match (status, body) {
            (Some(200..=299), _) => data.failure_snippet = None,
            (Some(_), Ok(bytes)) => data.failure_snippet = Some(self.snippet_bytes(bytes, FAILURE_SNIPPET_BYTES)),
            _ => {}
        }
        if !trace.detailed {
            return;
        }
        let shown: usize = data.exchanges.iter().filter_map(|e| e.body.as_ref()).map(String::len).sum();
        let (body, body_truncated, note) = match body {
            Err(why) => (None, false, Some(self.redact(why))),
            Ok(_) if self.bodies_secret => (None, false, Some("body not shown: it carries credentials".to_string())),
            Ok(_) if shown >= DEBUG_BODIES_TOTAL => (None, false, Some("body not shown: the debug output is full".to_string())),
            Ok(bytes) => {
                let text = self.redact(&String::from_utf8_lossy(bytes));
                let cut = cut_to_bytes(&text, DEBUG_BODY_BYTES);
                (Some(cut.to_string()), cut.len() < text.len(), None)
            }
        };
        data.exchanges.push(Exchange {
            method: method.as_str().to_string(),
            url: self.shown_url(url),
            status,
            duration: sent_at.elapsed(),
            body,
            body_truncated,
            note,
        });
    }

    fn with_auth(&self, builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.auth {
            Auth::None => builder,
            Auth::Bearer(token) => {
                let mut v = HeaderValue::from_str(&format!("Bearer {}", token.expose())).unwrap_or(HeaderValue::from_static(""));
                v.set_sensitive(true);
                builder.header(AUTHORIZATION, v)
            }
            Auth::Basic { username, password } => builder.basic_auth(username.expose(), Some(password.expose())),
            Auth::Header { name, value } => {
                let mut v = HeaderValue::from_str(value.expose()).unwrap_or(HeaderValue::from_static(""));
                v.set_sensitive(true);
                builder.header(name, v)
            }
        }
    }

    /// Reads the body chunk by chunk and stops at the cap: memory stays flat
    /// whatever the supplier sends.
    async fn read_capped(&self, mut resp: reqwest::Response) -> Result<Bytes, PollError> {
        if resp.content_length().is_some_and(|n| n as usize > self.max_body) {
            return Err(PollError::decode(format!("response body larger than the {} byte cap", self.max_body)));
        }
        let mut buf = BytesMut::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.transport_error(e))? {
            if buf.len() + chunk.len() > self.max_body {
                return Err(PollError::decode(format!("response body larger than the {} byte cap", self.max_body)));
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    }

    fn transport_error(&self, e: reqwest::Error) -> PollError {
        let reason = if e.is_timeout() {
            Reason::Timeout
        } else if e.is_connect() {
            Reason::Connect
        } else if e.is_decode() || e.is_body() {
            Reason::Decode
        } else {
            Reason::Connect
        };
        // Without the URL (it may carry a secret in the query) and with the cause chain.
        let e = e.without_url();
        let mut message = e.to_string();
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            message.push_str(": ");
            message.push_str(&c.to_string());
            cause = c.source();
        }
        PollError::new(reason, self.redact(&message))
    }
}

/// The longest prefix of `text` of at most `max` bytes that ends on a char boundary.
pub fn cut_to_bytes(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end = end.saturating_sub(1);
    }
    &text[..end]
}

/// The longest wait a supplier's `Retry-After` can impose. Longer values are
/// capped: a hostile or broken header (`Retry-After: 18446744073709551615`)
/// overflowed `Instant + Duration` and killed the supplier's poll task; and a
/// supplier silenced for longer than this shows as stale anyway.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Reads `retry-after-ms`, then `Retry-After` as seconds or an HTTP date,
/// capped at [`MAX_RETRY_AFTER`].
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let read = || {
        if let Some(ms) = headers.get("retry-after-ms").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<f64>().ok()) {
            if ms.is_finite() && ms >= 0.0 {
                return Some(Duration::try_from_secs_f64(ms / 1000.0).unwrap_or(MAX_RETRY_AFTER));
            }
        }
        let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
        if let Ok(secs) = value.parse::<u64>() {
            return Some(Duration::from_secs(secs));
        }
        let when = httpdate::parse_http_date(value).ok()?;
        Some(when.duration_since(now).unwrap_or(Duration::ZERO))
    };
    read().map(|d| d.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_dates_and_ms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(7)));
        let date = httpdate::fmt_http_date(now + Duration::from_secs(42));
        h.insert("retry-after", HeaderValue::from_str(&date).unwrap());
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(42)));
        h.insert("retry-after-ms", HeaderValue::from_static("1500"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_millis(1500)));
        let mut past = HeaderMap::new();
        past.insert("retry-after", HeaderValue::from_str(&httpdate::fmt_http_date(now - Duration::from_secs(5))).unwrap());
        assert_eq!(retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn absurd_retry_after_values_are_capped() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        for (name, value) in [
            ("retry-after", "18446744073709551615"),
            ("retry-after", "Fri, 31 Dec 9999 23:59:59 GMT"),
            ("retry-after-ms", "1e300"),
            ("retry-after-ms", "18446744073709551615000"),
        ] {
            let mut h = HeaderMap::new();
            h.insert(name, HeaderValue::from_static(value));
            assert_eq!(retry_after(&h, now), Some(MAX_RETRY_AFTER), "{name}: {value}");
        }
        let mut h = HeaderMap::new();
        h.insert("retry-after-ms", HeaderValue::from_static("-5"));
        assert_eq!(retry_after(&h, now), None);
    }

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        let p = RetryPolicy { max_retries: 5, base: Duration::from_secs(1), cap: Duration::from_secs(30) };
        assert_eq!(p.backoff(1, 1.0), Duration::from_secs(1));
        assert_eq!(p.backoff(2, 1.0), Duration::from_secs(2));
        assert_eq!(p.backoff(3, 0.0), Duration::from_secs(2));
        assert_eq!(p.backoff(10, 1.0), Duration::from_secs(30));
        assert_eq!(p.backoff(10, 0.0), Duration::from_secs(15));
    }

    #[test]
    fn redaction_covers_escaped_and_cut_secrets() {
        let secret = "sk_\"quoted\\key".to_string();
        let settings =
            UpstreamSettings::new("https://api.example.com".parse().unwrap(), Auth::Bearer(crate::settings::Secret::new(secret.clone())));
        let up = Upstream::new(reqwest::Client::new(), &settings, Arc::default());
        assert_eq!(up.redact(&format!("bad key {secret}")), "bad key <redacted>");
        assert_eq!(up.redact(&format!("bad key {secret:?}")), "bad key \"<redacted>\"");
        let json = serde_json::json!({ "key": secret }).to_string();
        assert_eq!(up.redact(&json), "{\"key\":\"<redacted>\"}");
        // A secret straddling the snippet's cut leaves no prefix behind.
        let body = format!("{}{secret} tail", "x".repeat(195));
        assert!(!up.snippet(body.as_bytes()).contains("sk_"), "{}", up.snippet(body.as_bytes()));
        // Nor when redactions before it shorten the text, pulling the cut secret under the limit.
        let body = secret.repeat(40);
        for snippet in [up.snippet(body.as_bytes()), up.snippet_bytes(body.as_bytes(), 300)] {
            assert!(snippet.starts_with("<redacted><redacted>"), "{snippet}");
            assert!(!snippet.contains("sk"), "no piece of the secret: {snippet}");
        }
        assert_eq!(up.snippet_bytes("é".repeat(400).as_bytes(), 301), "é".repeat(150), "cut on a char boundary");
    }

    #[tokio::test(start_paused = true)]
    async fn limiter_spaces_every_request() {
        let limiter = Limiter::default();
        let start = Instant::now();
        let mut times = vec![];
        for _ in 0..3 {
            limiter.acquire(Duration::from_secs(10)).await;
            times.push(start.elapsed());
        }
        assert_eq!(times, vec![Duration::ZERO, Duration::from_secs(10), Duration::from_secs(20)]);
        limiter.defer_until(Instant::now() + Duration::from_secs(60)).await;
        limiter.acquire(Duration::from_secs(10)).await;
        assert_eq!(start.elapsed(), Duration::from_secs(80));
    }
}
