//! HTTP: `/metrics` (configurable path), `/`, `/supplier/{name}`
//! ([`crate::supplier_page`]), `/-/healthy`, `/-/ready`, `POST /-/reload`,
//! the read API under `/api/` ([`crate::api`]), with `--web.enable-debug`
//! `/-/debug/poll` ([`crate::debug`]), and in `--demo` the demo's fault switches.
//!
//! hyper 1 with a read timer, so a slow client cannot hold a connection
//! open forever. `/metrics` serves the cached rendering, gzip when asked.
//! The web config ([`crate::web`]) adds TLS (rustls, handshake in the
//! connection's own task with a timeout), basic auth on every route, and
//! extra response headers; it is swapped on reload.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::header::{HeaderValue, ACCEPT_ENCODING, ALLOW, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_TYPE, VARY};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::ConfigError;
use crate::metrics::Renderer;
use crate::snapshot::Store;
use crate::web::WebConfig;

/// The reload action (`POST /-/reload`, SIGHUP): a boxed async function.
pub type Action = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<Reloaded, ReloadError>> + Send>> + Send + Sync>;

/// A reload that took effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reloaded {
    /// Suppliers this replica polls now.
    pub suppliers: usize,
}

impl std::fmt::Display for Reloaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "reloaded: {} suppliers", self.suppliers)
    }
}

/// Why a reload kept the previous config (and web config). The answer to
/// `/-/reload` is "config reload failed, keeping the previous config: " and
/// the [`error_chain`] of this.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// Loading the config file failed; its own message says how.
    #[error(transparent)]
    Config(ConfigError),
    #[error("web config {path}")]
    WebConfig { path: String, source: ConfigError },
    /// The web config adds or removes `tls_server_config`: a restart is needed,
    /// so a reload never silently downgrades a TLS listener to plain HTTP.
    #[error("web config {path}: tls_server_config was {}; switching TLS on or off needs a restart", if *added { "added" } else { "removed" })]
    TlsSwitch { path: String, added: bool },
}

pub use crate::settings::error_chain;

/// Extra routes (the demo's switches): `(method, path, query)` → response, if handled.
pub type ExtraRoutes = Arc<dyn Fn(&Method, &str, &str) -> Option<(StatusCode, String)> + Send + Sync>;

/// What the server needs.
pub struct ServerState {
    pub store: Arc<Store>,
    pub renderer: Renderer,
    pub telemetry_path: String,
    pub reload: Action,
    pub extra_routes: Option<ExtraRoutes>,
    /// TLS, basic auth and headers; replaced on reload.
    pub web: Arc<arc_swap::ArcSwap<WebConfig>>,
    /// The poll history the supplier pages show (none: pages without polls).
    pub history: Option<Arc<crate::history::History>>,
    /// `--web.enable-debug`: runs `/-/debug/poll` (none: that path is 404).
    pub debug_poll: Option<crate::debug::Runner>,
}

/// A response body of shared buffers sent in order, one frame each, with its
/// exact length known up front (hyper sends it as `Content-Length`). The
/// `/metrics` body is the renderer's segments, written without a copy
/// (hyper queues the frames and writes them vectored).
pub struct Body {
    segments: Arc<[Bytes]>,
    next: usize,
    remaining: u64,
}

impl Body {
    fn segments(segments: Arc<[Bytes]>) -> Body {
        let remaining = segments.iter().map(|s| s.len() as u64).sum();
        Body { segments, next: 0, remaining }
    }

    fn full(body: impl Into<Bytes>) -> Body {
        Body::segments(Arc::new([body.into()]))
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, _cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        while let Some(segment) = this.segments.get(this.next) {
            this.next += 1;
            if !segment.is_empty() {
                this.remaining -= segment.len() as u64;
                return std::task::Poll::Ready(Some(Ok(Frame::data(segment.clone()))));
            }
        }
        std::task::Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Body::full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

/// An HTML page under the strict CSP (no script, no external asset), never cached.
fn html(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(Body::full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    r.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.headers_mut()
        .insert("content-security-policy", HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; img-src data:"));
    r
}

/// `/supplier/{name}`: the page, or a plain 404 page for an unknown (or undecodable) name.
fn supplier_page(state: &ServerState, encoded: &str) -> Response<Body> {
    let name = crate::api::percent_decode(encoded).unwrap_or_else(|_| encoded.to_string());
    let history = state.history.as_ref().map(|h| h.of(&name)).unwrap_or_default();
    match crate::supplier_page::render(&state.store, &history, &name, SystemTime::now()) {
        Some(page) => html(StatusCode::OK, page),
        None => html(StatusCode::NOT_FOUND, crate::supplier_page::not_found(&name)),
    }
}

/// `/-/debug/poll?supplier=NAME`: JSON, never cached; 429 with `Retry-After` when the limiter is busy.
async fn debug_poll(runner: &crate::debug::Runner, query: &str) -> Response<Body> {
    let answer = match crate::debug::supplier_param(query) {
        Ok(name) => crate::debug::answer(&name, runner(name.clone()).await),
        Err(bad) => bad,
    };
    let mut r = Response::new(Body::full(answer.body));
    *r.status_mut() = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(secs) = answer.retry_after {
        r.headers_mut().insert(hyper::header::RETRY_AFTER, HeaderValue::from(secs));
    }
    r
}

/// An answer of [`crate::api`]: JSON, never cached.
fn json(answer: crate::api::Answer) -> Response<Body> {
    let mut r = Response::new(Body::full(answer.body));
    *r.status_mut() = answer.status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(allow) = answer.allow {
        r.headers_mut().insert(ALLOW, HeaderValue::from_static(allow));
    }
    r
}

fn wants_gzip(req: &Request<Incoming>) -> bool {
    req.headers().get_all(ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(|enc| {
        let mut parts = enc.split(';');
        let name = parts.next().unwrap_or("").trim();
        let q_zero = parts.any(|p| matches!(p.trim().replace(' ', "").as_str(), "q=0" | "q=0.0" | "q=0.00" | "q=0.000"));
        name.eq_ignore_ascii_case("gzip") && !q_zero
    })
}

/// The rate limit and basic auth (when configured) before any route, then the
/// configured headers on every answer.
async fn handle(state: Arc<ServerState>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let web = state.web.load_full();
    let limited = web.rate_limit.as_ref().filter(|l| !l.allow_at(std::time::Instant::now()));
    let mut response = match (limited, &web.basic_auth) {
        (Some(limit), _) => {
            let mut r = text(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests\n");
            r.headers_mut().insert(hyper::header::RETRY_AFTER, HeaderValue::from(limit.retry_after_secs()));
            r
        }
        (None, Some(auth)) if !auth.check(req.headers().get(hyper::header::AUTHORIZATION)).await => {
            let mut r = text(StatusCode::UNAUTHORIZED, "Unauthorized\n");
            r.headers_mut()
                .insert(hyper::header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"balance_exporter\", charset=\"UTF-8\""));
            r
        }
        _ => route(state, req).await,
    };
    for (name, value) in &web.headers {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    Ok(response)
}

async fn route(state: Arc<ServerState>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let method = req.method().clone();
    if let Some(extra) = &state.extra_routes {
        if let Some((status, body)) = extra(&method, &path, &query) {
            return text(status, body);
        }
    }
    let response = match (method, path.as_str()) {
        (Method::GET | Method::HEAD, p) if p == state.telemetry_path => {
            let rendered = state.renderer.render();
            let gzip = wants_gzip(&req);
            let body = if gzip { Body::full(rendered.gzip()) } else { Body::segments(rendered.segments().clone()) };
            let mut r = Response::new(body);
            r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(prometheus::TEXT_FORMAT));
            r.headers_mut().insert(VARY, HeaderValue::from_static("Accept-Encoding"));
            if gzip {
                r.headers_mut().insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            }
            r
        }
        (Method::GET | Method::HEAD, "/") => {
            html(StatusCode::OK, crate::landing::render(&state.store, &state.telemetry_path, SystemTime::now()))
        }
        (Method::GET | Method::HEAD, p) if p.starts_with("/supplier/") => supplier_page(&state, &p["/supplier/".len()..]),
        (Method::GET, "/-/debug/poll") => match &state.debug_poll {
            Some(runner) => debug_poll(runner, &query).await,
            // Off unless --web.enable-debug: as if the path did not exist.
            None => text(StatusCode::NOT_FOUND, "Not found\n"),
        },
        (Method::GET | Method::HEAD, "/-/healthy") => text(StatusCode::OK, "Healthy\n"),
        (Method::GET | Method::HEAD, "/-/ready") => {
            if state.store.ready() {
                text(StatusCode::OK, "Ready\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "Not ready: some suppliers have not been polled yet\n")
            }
        }
        (Method::POST | Method::PUT, "/-/reload") => {
            // Drain (and cap) any body before answering.
            let _ = Limited::new(req.into_body(), 64 * 1024).collect().await;
            match (state.reload)().await {
                Ok(reloaded) => text(StatusCode::OK, format!("{reloaded}\n")),
                Err(err) => {
                    text(StatusCode::BAD_REQUEST, format!("config reload failed, keeping the previous config: {}\n", error_chain(&err)))
                }
            }
        }
        (_, "/-/reload") => {
            let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "Only POST or PUT requests allowed\n");
            r.headers_mut().insert(ALLOW, HeaderValue::from_static("POST, PUT"));
            r
        }
        (method, p) if p.starts_with("/api/") => {
            json(crate::api::answer(&state.store.slots(), &method, p, Some(&query), SystemTime::now()))
        }
        _ => text(StatusCode::NOT_FOUND, "Not found\n"),
    };
    response
}

/// Binds the listen address; `:9866` means all interfaces.
pub async fn bind(addr: &str) -> std::io::Result<TcpListener> {
    let addr = if addr.starts_with(':') { format!("0.0.0.0{addr}") } else { addr.to_string() };
    TcpListener::bind(addr).await
}

/// How long a client may take to complete the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves until `shutdown`, then drains open connections for up to 5 s.
/// Whether a connection is TLS follows the web config current when it is
/// accepted (the app refuses reloads that switch TLS on or off).
pub async fn serve(listener: TcpListener, state: Arc<ServerState>, shutdown: CancellationToken) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (stream, peer): (tokio::net::TcpStream, SocketAddr) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let web = state.web.load_full();
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder.http1().timer(TokioTimer::new()).header_read_timeout(Duration::from_secs(10));
        if !web.http2 {
            builder = builder.http1_only();
        }
        let state = state.clone();
        let service = service_fn(move |req| handle(state.clone(), req));
        let watcher = graceful.watcher();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let result = match &web.tls {
                None => watcher.watch(builder.serve_connection(TokioIo::new(stream), service).into_owned()).await,
                Some(tls) => {
                    // The handshake runs here, not in the accept loop: a slow client delays no one.
                    let acceptor = tokio_rustls::TlsAcceptor::from(tls.clone());
                    let stream = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        hs = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)) => match hs {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                return;
                            }
                        },
                    };
                    watcher.watch(builder.serve_connection(TokioIo::new(stream), service).into_owned()).await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with error");
            }
        });
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    /// `/metrics` over real HTTP: the body is the renderer's segments joined,
    /// with a matching `Content-Length`, identity and gzip.
    #[tokio::test]
    async fn metrics_body_is_the_segments_in_order_with_their_length() {
        let store = crate::metrics::tests::many_store(300);
        let reload: Action = Arc::new(|| Box::pin(async { Ok(Reloaded { suppliers: 0 }) }));
        let state = Arc::new(ServerState {
            store: store.clone(),
            renderer: Renderer::new(store.clone()),
            telemetry_path: "/metrics".into(),
            reload,
            extra_routes: None,
            web: Arc::new(arc_swap::ArcSwap::from_pointee(WebConfig::default())),
            history: None,
            debug_poll: None,
        });
        let listener = bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve(listener, state.clone(), shutdown.clone()));
        let expected = state.renderer.render().concat();
        assert!(state.renderer.render().segments().len() > 10, "several chunks, several families");
        let client = reqwest::Client::new();
        for gzip in [false, true] {
            let mut req = client.get(format!("http://{addr}/metrics"));
            if gzip {
                req = req.header(ACCEPT_ENCODING, "gzip");
            }
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), 200);
            let length: u64 = resp.headers()[hyper::header::CONTENT_LENGTH].to_str().unwrap().parse().unwrap();
            assert_eq!(resp.headers().get(CONTENT_ENCODING).is_some(), gzip);
            let bytes = resp.bytes().await.unwrap();
            assert_eq!(bytes.len() as u64, length, "gzip {gzip}: Content-Length is the body's length");
            let body = if gzip {
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(&bytes[..]).read_to_end(&mut out).unwrap();
                out
            } else {
                bytes.to_vec()
            };
            assert!(body == expected, "gzip {gzip}: the body is the segments joined");
        }
        shutdown.cancel();
        server.await.unwrap();
    }
}
