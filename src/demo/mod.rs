//! `--demo`: simulated suppliers on 127.0.0.1 ephemeral ports, speaking the
//! real wire formats (auth included), polled through the normal code path.
//!
//! Balances move like a small business: orders every few seconds with a daily
//! rhythm, frozen amounts that come and settle, top-ups when runway gets
//! short — and FoxReload heads toward zero until a "manual" top-up arrives.
//! The demo's switches (`/-/demo/…`, only with `--demo`) revoke a key, drain
//! a balance, fail with 500s or restore, for end-to-end alert tests.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::HeaderValue;
use hyper::service::service_fn;
use hyper::{Method, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rust_decimal::Decimal;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConfigError};

pub mod kit;

use kit::{url_query_param, SimRequest, SimResponse, Simulated};

/// The demo's embedded config. `${DEMO_*}` are filled with the simulated
/// suppliers' addresses and freshly generated keys.
pub const DEMO_CONFIG: &str = include_str!("demo.yml");

/// A fault switched on through `/-/demo/…`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// Answer every request as with a revoked key.
    Revoked,
    /// Answer 500.
    Failing,
}

/// A simulated supplier behind its HTTP listener, with its fault switch.
struct Running {
    sim: Arc<dyn Simulated>,
    fault: Arc<Mutex<Option<Fault>>>,
    addr: SocketAddr,
}

/// The running demo: its suppliers, their addresses, and the config to poll them.
pub struct Demo {
    running: Vec<Running>,
    pub config: Config,
    stop: CancellationToken,
}

impl Demo {
    /// Starts every simulated supplier and builds the demo config.
    pub async fn start() -> Result<Demo, DemoError> {
        // One per kind that has a simulation, as the kind registry lists them.
        let sims = crate::kinds::simulations();
        let stop = CancellationToken::new();
        let mut running = Vec::new();
        let mut vars: BTreeMap<String, String> = BTreeMap::new();
        for sim in sims {
            let fault = Arc::new(Mutex::new(None));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(DemoError::Bind)?;
            let addr = listener.local_addr().map_err(DemoError::Bind)?;
            let var = format!("DEMO_{}_URL", sim.name().to_ascii_uppercase());
            vars.insert(var, format!("http://{addr}"));
            vars.extend(sim.secrets());
            tokio::spawn(serve_sim(listener, sim.clone(), fault.clone(), stop.clone()));
            running.push(Running { sim, fault, addr });
        }
        let config = crate::config::load_str(DEMO_CONFIG, &|name| vars.get(name).cloned()).map_err(DemoError::Config)?;
        let ticking: Vec<Arc<dyn Simulated>> = running.iter().map(|r| r.sim.clone()).collect();
        let stop_ticks = stop.clone();
        tokio::spawn(async move {
            let tick = Duration::from_secs(1);
            let mut interval = tokio::time::interval(tick);
            loop {
                tokio::select! {
                    _ = stop_ticks.cancelled() => return,
                    _ = interval.tick() => {}
                }
                let now = SystemTime::now();
                for sim in &ticking {
                    sim.tick(now, tick);
                }
            }
        });
        Ok(Demo { running, config, stop })
    }

    /// Addresses of the simulated suppliers by name.
    pub fn addresses(&self) -> Vec<(&'static str, SocketAddr)> {
        self.running.iter().map(|r| (r.sim.name(), r.addr)).collect()
    }

    /// Handles `/-/demo/{revoke,fail,drain,restore}?supplier=NAME[&to=AMOUNT]`.
    pub fn control(&self, method: &Method, path: &str, query: &str) -> Option<(StatusCode, String)> {
        let action = path.strip_prefix("/-/demo/")?;
        if method != Method::POST {
            return Some((StatusCode::METHOD_NOT_ALLOWED, "use POST\n".into()));
        }
        let Some(name) = url_query_param(query, "supplier") else {
            return Some((StatusCode::BAD_REQUEST, "missing ?supplier=\n".into()));
        };
        let Some(r) = self.running.iter().find(|r| r.sim.name() == name) else {
            return Some((StatusCode::NOT_FOUND, format!("no demo supplier {name:?}\n")));
        };
        let mut fault = r.fault.lock().unwrap_or_else(|e| e.into_inner());
        match action {
            "revoke" => *fault = Some(Fault::Revoked),
            "fail" => *fault = Some(Fault::Failing),
            "restore" => {
                *fault = None;
                r.sim.restore();
            }
            "drain" => {
                let to = url_query_param(query, "to").and_then(|s| crate::amount::parse_decimal_text(&s).ok()).unwrap_or(Decimal::ZERO);
                r.sim.drain(to);
            }
            _ => return Some((StatusCode::NOT_FOUND, format!("unknown demo action {action:?}\n"))),
        }
        Some((StatusCode::OK, format!("{action} {name}: ok\n")))
    }

    pub fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Why the demo could not start.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("binding a simulated supplier on 127.0.0.1")]
    Bind(#[source] std::io::Error),
    #[error("the embedded demo config is invalid")]
    Config(#[source] ConfigError),
}

async fn serve_sim(listener: tokio::net::TcpListener, sim: Arc<dyn Simulated>, fault: Arc<Mutex<Option<Fault>>>, stop: CancellationToken) {
    loop {
        let stream = tokio::select! {
            _ = stop.cancelled() => return,
            a = listener.accept() => match a { Ok((s, _)) => s, Err(_) => continue },
        };
        let (sim, fault) = (sim.clone(), fault.clone());
        let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let (sim, fault) = (sim.clone(), fault.clone());
            async move {
                let (parts, body) = req.into_parts();
                let body = Limited::new(body, 1 << 20).collect().await.map(|c| c.to_bytes()).unwrap_or_default();
                let req = SimRequest {
                    method: parts.method,
                    path: parts.uri.path().to_string(),
                    query: parts.uri.query().unwrap_or("").to_string(),
                    headers: parts.headers,
                    body,
                };
                let current = *fault.lock().unwrap_or_else(|e| e.into_inner());
                let resp = match current {
                    Some(Fault::Revoked) => {
                        // Same auth failure the real API gives for a wrong key.
                        let mut stripped = req;
                        stripped.headers.clear();
                        sim.handle(&stripped)
                    }
                    Some(Fault::Failing) => SimResponse::json(500, serde_json::json!({"error": "internal error (demo fault)"})),
                    None => sim.handle(&req),
                };
                let mut r = hyper::Response::new(Full::new(Bytes::from(resp.body)));
                *r.status_mut() = StatusCode::from_u16(resp.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                r.headers_mut().insert(hyper::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                Ok::<_, std::convert::Infallible>(r)
            }
        });
        tokio::spawn(async move {
            let _ =
                hyper_util::server::conn::auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
