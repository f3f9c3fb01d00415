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
use hyper::{HeaderMap, Method, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rust_decimal::Decimal;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConfigError};

mod sim_foxreload;
mod sim_novasend;
mod sim_vai247;
mod sim_dodo;
mod sim_balanced;

/// The demo's embedded config. `${DEMO_*}` are filled with the simulated
/// suppliers' addresses and freshly generated keys.
pub const DEMO_CONFIG: &str = include_str!("demo.yml");

/// A request as a simulated supplier sees it.
pub struct SimRequest {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl SimRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn query_param(&self, key: &str) -> Option<String> {
        url_query_param(&self.query, key)
    }
}

fn url_query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == key).map(|(_, v)| v.replace("%20", " "))
}

/// A simulated answer.
pub struct SimResponse {
    pub status: u16,
    pub body: String,
}

impl SimResponse {
    pub fn json(status: u16, body: serde_json::Value) -> Self {
        SimResponse { status, body: body.to_string() }
    }
}

/// A fault switched on through `/-/demo/…`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// Answer every request as with a revoked key.
    Revoked,
    /// Answer 500.
    Failing,
}

/// One simulated supplier API.
pub trait Simulated: Send + Sync {
    /// The supplier name in the demo config.
    fn name(&self) -> &'static str;
    /// Answers a request (auth checked first).
    fn handle(&self, req: &SimRequest) -> SimResponse;
    /// Advances the business by `dt` at wall time `now`.
    fn tick(&self, now: SystemTime, dt: Duration);
    /// Sets every balance of this supplier to `to` (major units) and holds
    /// automatic top-ups until [`Simulated::restore`].
    fn drain(&self, to: Decimal);
    /// Ends a drain: tops the balances up and lets the business run again.
    fn restore(&self);
    /// The secret(s) this supplier accepts, as `DEMO_*` variables for the config.
    fn secrets(&self) -> Vec<(String, String)>;
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

/// A random key for a simulated supplier, so each demo run has its own secrets.
pub fn random_key(prefix: &str) -> String {
    let n: u128 = rand::random();
    format!("{prefix}_{n:032x}")
}

/// Daily rhythm of order volume: quiet at night, busiest mid-afternoon (UTC).
pub fn daily_rhythm(now: SystemTime) -> f64 {
    let secs = now.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs_f64();
    let hour = (secs / 3600.0) % 24.0;
    1.0 + 0.6 * ((hour - 9.0) / 24.0 * std::f64::consts::TAU).sin()
}

/// A random amount between `lo` and `hi` with `dp` decimal places.
pub fn random_amount(lo: i64, hi: i64, dp: u32) -> Decimal {
    let scale = 10i64.pow(dp);
    let v = rand::random_range(lo * scale..=hi * scale);
    Decimal::new(v, dp)
}

impl Demo {
    /// Starts every simulated supplier and builds the demo config.
    pub async fn start() -> Result<Demo, DemoError> {
        let sims: Vec<Arc<dyn Simulated>> = vec![
            Arc::new(sim_foxreload::FoxReloadSim::new()),
            Arc::new(sim_novasend::NovaSendSim::new()),
            Arc::new(sim_vai247::Vai247Sim::new()),
            Arc::new(sim_dodo::DodoSim::new()),
            Arc::new(sim_balanced::BalancedSim::new()),
        ];
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
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Applies `f` to every account behind the lock (tick, drain, restore).
pub fn each_account(accounts: &Mutex<Vec<SimAccount>>, f: impl FnMut(&mut SimAccount)) {
    accounts.lock().unwrap_or_else(|e| e.into_inner()).iter_mut().for_each(f);
}

/// One simulated account balance moving like a business.
#[derive(Debug, Clone)]
pub struct SimAccount {
    pub account: String,
    pub currency: &'static str,
    pub balance: Decimal,
    pub frozen: Decimal,
    /// Typical order size range (major units) and orders per hour at the daily mean.
    pub order: (i64, i64),
    pub orders_per_hour: f64,
    /// Top up by `topup` when usable falls under `topup_below`; `None` never tops up by itself.
    pub topup_below: Option<Decimal>,
    pub topup: Decimal,
    /// Decimal places of amounts in this currency.
    pub dp: u32,
    /// Seconds spent at zero so far (for the "manual" top-up of a drained account).
    pub at_zero_for: f64,
    /// Set by a drain: no top-up until restored.
    pub hold_topups: bool,
}

impl SimAccount {
    /// Applies `dt` of business: orders, freezes settling, top-ups.
    pub fn tick(&mut self, now: SystemTime, dt: Duration) {
        let p_order = self.orders_per_hour * daily_rhythm(now) * dt.as_secs_f64() / 3600.0;
        if rand::random::<f64>() < p_order {
            let amount = random_amount(self.order.0, self.order.1, self.dp);
            let usable = self.balance - self.frozen;
            if amount <= usable {
                self.balance -= amount;
            }
        }
        // Some funds get held for settlement; held funds settle over time.
        if rand::random::<f64>() < 0.02 {
            let hold = random_amount(self.order.0, self.order.1, self.dp);
            if hold <= self.balance - self.frozen {
                self.frozen += hold;
            }
        }
        if self.frozen > Decimal::ZERO && rand::random::<f64>() < 0.03 {
            self.frozen = (self.frozen / Decimal::TWO).round_dp(self.dp);
        }
        let usable = self.balance - self.frozen;
        if self.hold_topups {
            return;
        }
        match self.topup_below {
            Some(below) if usable < below => self.balance += self.topup,
            None if usable <= random_amount(self.order.1, self.order.1, 0) => {
                // Nobody tops this one up automatically: after 5 minutes at the bottom an operator does.
                self.at_zero_for += dt.as_secs_f64();
                if self.at_zero_for >= 300.0 {
                    self.balance += self.topup;
                    self.at_zero_for = 0.0;
                }
            }
            _ => {}
        }
    }

    pub fn usable(&self) -> Decimal {
        self.balance - self.frozen
    }

    pub fn drain(&mut self, to: Decimal) {
        self.balance = to;
        self.frozen = Decimal::ZERO;
        self.hold_topups = true;
    }

    pub fn restore(&mut self) {
        if self.hold_topups {
            self.hold_topups = false;
            self.balance += self.topup;
        }
    }

    /// A new account with the given opening balance and business.
    pub fn new(account: &str, currency: &'static str, balance: Decimal, order: (i64, i64), orders_per_hour: f64, topup_below: Option<Decimal>, topup: Decimal, dp: u32) -> Self {
        SimAccount { account: account.into(), currency, balance, frozen: Decimal::ZERO, order, orders_per_hour, topup_below, topup, dp, at_zero_for: 0.0, hold_topups: false }
    }
}
