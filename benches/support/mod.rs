//! Shared by the benchmarks: a store holding `suppliers × accounts × 2`
//! balances, as after a few polls (counters and thresholds included); a server
//! returning fixed bytes (the reference and the stub upstream); a process's
//! memory and CPU from /proc; the load average printed next to timings.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use balance_exporter::config;
use balance_exporter::kinds::{BalanceRow, PollOutput};
use balance_exporter::snapshot::Store;
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rust_decimal::Decimal;

/// A config text with `n` foxreload suppliers at `base_url/s{i}`.
pub fn many_suppliers_config(n: usize, base_url: &str, poll_interval: &str) -> String {
    let mut text = String::from("suppliers:\n");
    for i in 0..n {
        text.push_str(&format!(
            "  - {{name: s{i}, kind: foxreload, base_url: '{base_url}/s{i}', poll_interval: {poll_interval}, min_interval: 1s, auth: {{bearer_token: key{i}}}, thresholds: [{{currency: USD, low: 100}}]}}\n"
        ));
    }
    text
}

/// A store of `suppliers` suppliers with `accounts` accounts in USD and EUR each.
#[allow(dead_code)] // not every bench uses it
pub fn store(suppliers: usize, accounts: usize) -> Arc<Store> {
    let cfg = config::load_str(&many_suppliers_config(suppliers, "http://127.0.0.1:9", "1m"), &|_| None).unwrap();
    let store = Arc::new(Store::default());
    let slots = store.set_suppliers(&cfg.suppliers);
    let now = SystemTime::now();
    for slot in &slots {
        let mut state = slot.state().as_ref().clone();
        for poll in 0..3i64 {
            let rows = (0..accounts)
                .flat_map(|a| {
                    ["USD", "EUR"].into_iter().map(move |c| {
                        let balance = Decimal::new(1_000_000 - poll * 1234 + a as i64, 2);
                        let frozen = Decimal::new(5_000 + a as i64, 2);
                        BalanceRow {
                            account: format!("merchant_{a:05}"),
                            currency: c.into(),
                            balance,
                            frozen,
                            usable: balance - frozen,
                            updated_at: Some(now),
                        }
                    })
                })
                .collect();
            state = state.after_poll(Ok(PollOutput { balances: rows, ..Default::default() }), Duration::from_millis(120), now);
        }
        store.publish(slot, state);
    }
    store
}

/// A server on 127.0.0.1 answering every request with `body` as Prometheus text
/// (marked gzip-encoded when `gzip`): the pre-rendered reference the exporter is
/// compared with, or a stub upstream.
#[allow(dead_code)] // not every bench uses it
pub async fn serve_bytes(body: Bytes, gzip: bool) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let body = body.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |_req: hyper::Request<hyper::body::Incoming>| {
                    let body = body.clone();
                    async move {
                        let mut r = hyper::Response::new(Full::new(body));
                        r.headers_mut().insert("content-type", hyper::header::HeaderValue::from_static(prometheus::TEXT_FORMAT));
                        if gzip {
                            r.headers_mut().insert("content-encoding", hyper::header::HeaderValue::from_static("gzip"));
                        }
                        Ok::<_, Infallible>(r)
                    }
                });
                let _ =
                    hyper_util::server::conn::auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    addr
}

/// A `/proc/<pid>/status` field in KiB (`VmRSS:`, `VmHWM:`), as MiB.
#[allow(dead_code)] // not every bench uses it
pub fn proc_status(pid: u32, key: &str) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok()).unwrap_or(0.0) / 1024.0
}

/// utime + stime of a process, in seconds.
#[allow(dead_code)] // not every bench uses it
pub fn cpu_seconds(pid: u32) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = text.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 =
        fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0) + fields.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    ticks / 100.0 // CLK_TCK is 100 on Linux
}

/// The 1-minute load average, printed next to timing figures.
#[allow(dead_code)] // not every bench uses it
pub fn load1() -> String {
    std::fs::read_to_string("/proc/loadavg").ok().and_then(|l| l.split_whitespace().next().map(str::to_string)).unwrap_or("?".into())
}
