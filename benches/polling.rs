//! End-to-end polling and memory figures of the real binary against a stub
//! upstream on loopback:
//!
//! 1. N suppliers (100, 1,000, 10,000 by default) at a 60 s interval: config
//!    load time, CPU share of one core, RSS, p99 poll lateness (from the
//!    exporter's own `balance_exporter_poll_lateness_seconds`), and the
//!    smallest gap the stub saw between two requests to one supplier.
//! 2. RSS with one supplier of 1,000 accounts × 2 currencies after polls and
//!    scrapes (target < 30 MiB).
//!
//!   cargo bench --bench polling             (SIZES=100,1000,10000 WINDOW=70 STORAGE=no|yes|both WALLETS=100000)
//!
//! Each size runs without and with `--storage.path` (every poll written
//! durably before it is published, group commit); with storage it also
//! prints the state directory's size and how long a restart takes to read it
//! back and become ready.

use std::collections::HashMap;
use std::convert::Infallible;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};

mod support;
use support::{cpu_seconds, proc_status};

const BIN: &str = env!("CARGO_BIN_EXE_balance_exporter");
const FOX: &str = r#"{"balance": {"amount": 284.50, "currency": "USD", "updated_at": "2026-05-01T13:45:22Z"}}"#;

/// Per supplier path: (last request, smallest gap seen), plus a request count.
#[derive(Default)]
struct Seen {
    by_path: HashMap<String, (Instant, Option<Duration>)>,
    requests: u64,
}

async fn stub(body: Bytes, seen: Arc<Mutex<Seen>>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let (body, seen) = (body.clone(), seen.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (body, seen) = (body.clone(), seen.clone());
                    async move {
                        let now = Instant::now();
                        let mut s = seen.lock().unwrap();
                        s.requests += 1;
                        let entry = s.by_path.entry(req.uri().path().to_string()).or_insert((now, None));
                        if entry.0 != now {
                            let gap = now - entry.0;
                            entry.1 = Some(entry.1.map_or(gap, |g: Duration| g.min(gap)));
                            entry.0 = now;
                        }
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(body)))
                    }
                });
                let _ =
                    hyper_util::server::conn::auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    addr
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn metrics(port: u16) -> String {
    reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await.unwrap().text().await.unwrap()
}

/// (cumulative counts by bound, count) of the lateness histogram.
fn lateness(text: &str) -> (Vec<(f64, f64)>, f64) {
    let mut buckets = vec![];
    let mut count = 0.0;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("balance_exporter_poll_lateness_seconds_bucket{le=\"") {
            let (le, v) = rest.split_once("\"} ").unwrap();
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap() };
            buckets.push((le, v.parse().unwrap()));
        } else if let Some(v) = line.strip_prefix("balance_exporter_poll_lateness_seconds_count ") {
            count = v.parse().unwrap();
        }
    }
    (buckets, count)
}

/// The bucket bound that holds the 99th percentile of the window's polls.
fn p99(before: &(Vec<(f64, f64)>, f64), after: &(Vec<(f64, f64)>, f64)) -> String {
    let total = after.1 - before.1;
    if total <= 0.0 {
        return "n/a".into();
    }
    for ((le, a), (_, b)) in after.0.iter().zip(before.0.iter()) {
        if (a - b) >= 0.99 * total {
            return format!("<= {le} s");
        }
    }
    "> 5 s".into()
}

fn spawn(config: &std::path::Path, port: u16) -> Child {
    spawn_with(config, port, &[])
}

fn spawn_with(config: &std::path::Path, port: u16, extra: &[&str]) -> Child {
    Command::new(BIN)
        .args(["--config.file", config.to_str().unwrap(), "--web.listen-address", &format!("127.0.0.1:{port}"), "--log.level", "error"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

async fn wait_ready(port: u16, limit: Duration) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{port}/-/ready")).await {
            if r.status() == 200 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("exporter not ready within {limit:?}");
}

/// Bytes in the files of `dir`.
fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir).map(|d| d.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum()).unwrap_or(0)
}

async fn suppliers_run(n: usize, window: u64, storage: bool) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let addr = stub(Bytes::from_static(FOX.as_bytes()), seen.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let text = support::many_suppliers_config(n, &format!("http://{addr}"), "60s");
    let t = Instant::now();
    let loaded = balance_exporter::config::load_str(&text, &|_| None).unwrap();
    let load_time = t.elapsed();
    assert_eq!(loaded.suppliers.len(), n);
    let path = dir.path().join("config.yml");
    std::fs::write(&path, &text).unwrap();
    let port = free_port();
    let state = dir.path().join("state");
    let state_arg = state.to_str().unwrap().to_string();
    let extra: Vec<&str> = if storage { vec!["--storage.path", &state_arg] } else { vec![] };
    let mut child = spawn_with(&path, port, &extra);
    wait_ready(port, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (cpu0, lat0, req0, t0) = (cpu_seconds(child.id()), lateness(&metrics(port).await), seen.lock().unwrap().requests, Instant::now());
    tokio::time::sleep(Duration::from_secs(window)).await;
    let lat1 = lateness(&metrics(port).await);
    let (cpu1, req1, elapsed) = (cpu_seconds(child.id()), seen.lock().unwrap().requests, t0.elapsed().as_secs_f64());
    let rss = proc_status(child.id(), "VmRSS:");
    let min_gap = seen.lock().unwrap().by_path.values().filter_map(|(_, g)| *g).min();
    // A reload re-reads, validates and applies the whole file.
    let t = Instant::now();
    let reload = reqwest::Client::new().post(format!("http://127.0.0.1:{port}/-/reload")).send().await.unwrap();
    assert_eq!(reload.status(), 200);
    let reload_time = t.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    let state_size = if storage { format!("{:.1} MiB", dir_bytes(&state) as f64 / 1048576.0) } else { "-".into() };
    // With storage: how long a restart takes to read the state back (until ready).
    let restart = if storage {
        let t = Instant::now();
        let mut again = spawn_with(&path, port, &extra);
        wait_ready(port, Duration::from_secs(120)).await;
        let took = t.elapsed();
        let _ = again.kill();
        let _ = again.wait();
        format!("{:.0} ms", took.as_secs_f64() * 1000.0)
    } else {
        "-".into()
    };
    println!(
        "{n:>8} {:>8} {:>11.0}ms {:>9.0}ms {:>9.2}% {:>8.1} {:>8} {:>12} {:>14} {:>10} {:>12}",
        if storage { "yes" } else { "no" },
        load_time.as_secs_f64() * 1000.0,
        reload_time.as_secs_f64() * 1000.0,
        (cpu1 - cpu0) / elapsed * 100.0,
        rss,
        req1 - req0,
        p99(&lat0, &lat1),
        min_gap.map_or("n/a".into(), |g| format!("{:.1}s", g.as_secs_f64())),
        state_size,
        restart,
    );
}

async fn memory_run() {
    let entries: Vec<String> = (0..1000)
        .flat_map(|i| {
            [("XOF", 0), ("USD", 2)].into_iter().map(move |(c, dp)| {
                let v = if dp == 0 { format!("{}", 100_000 + i) } else { format!("{}.{:02}", 1000 + i, i % 100) };
                format!(r#"{{"balance": {v}, "availableBalance": {v}, "reference": "merchant_{i:05}", "currency": "{c}"}}"#)
            })
        })
        .collect();
    let body = Bytes::from(format!("[{}]", entries.join(",")));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let addr = stub(body, seen).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yml");
    std::fs::write(
        &path,
        format!("suppliers:\n  - {{name: nova, kind: novasend, base_url: 'http://{addr}', poll_interval: 2s, min_interval: 0s}}\n"),
    )
    .unwrap();
    let port = free_port();
    let mut child = spawn(&path, port);
    wait_ready(port, Duration::from_secs(30)).await;
    let client = reqwest::Client::new();
    let mut series = 0;
    for i in 0..60 {
        let mut req = client.get(format!("http://127.0.0.1:{port}/metrics"));
        if i % 2 == 0 {
            req = req.header("accept-encoding", "gzip");
        }
        let body = req.send().await.unwrap().bytes().await.unwrap();
        if i % 2 == 1 {
            series = body.iter().filter(|b| **b == b'\n').count();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rss = proc_status(child.id(), "VmRSS:");
    let hwm = proc_status(child.id(), "VmHWM:");
    let _ = child.kill();
    let _ = child.wait();
    println!("1,000 accounts x 2 currencies ({series} lines): RSS {rss:.1} MiB, peak {hwm:.1} MiB (target < 30 MiB)");
}

/// A Dodo platform of `n` customers with one USD wallet each.
async fn dodo_stub(n: usize) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| async move {
                    let path = req.uri().path().to_string();
                    let query = req.uri().query().unwrap_or("").to_string();
                    let param =
                        |k: &str| query.split('&').find_map(|kv| kv.strip_prefix(&format!("{k}="))).and_then(|v| v.parse::<usize>().ok());
                    let body = if path == "/customers" {
                        let (page, size) = (param("page_number").unwrap_or(0), param("page_size").unwrap_or(100));
                        let items: Vec<String> = (page * size..((page + 1) * size).min(n))
                            .map(|i| format!(r#"{{"customer_id": "cus_{i:06}", "business_id": "bus_1", "email": "c{i}@example.com", "name": "C {i}", "created_at": "2026-01-01T00:00:00Z"}}"#))
                            .collect();
                        format!(r#"{{"items": [{}]}}"#, items.join(","))
                    } else {
                        let id = path.trim_start_matches("/customers/").trim_end_matches("/wallets");
                        let cents = 1000 + id.trim_start_matches("cus_").parse::<u64>().unwrap_or(0) % 100_000;
                        format!(
                            r#"{{"items": [{{"balance": {cents}, "currency": "USD", "customer_id": "{id}", "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"}}], "total_balance_usd": {cents}}}"#
                        )
                    };
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(body))))
                });
                let _ =
                    hyper_util::server::conn::auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    addr
}

async fn wallets_run(n: usize) {
    let addr = dodo_stub(n).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yml");
    std::fs::write(&path, format!("suppliers:\n  - {{name: dodo, kind: dodo_wallets, base_url: 'http://{addr}', auth: {{bearer_token: k}}, all_customers: true, low: 10, lowest: 10, poll_interval: 1h, min_interval: 0s, timeout: 30s}}\n")).unwrap();
    let port = free_port();
    let started = Instant::now();
    let mut child = spawn(&path, port);
    wait_ready(port, Duration::from_secs(900)).await;
    let walk = started.elapsed();
    let text = metrics(port).await;
    let rss = proc_status(child.id(), "VmRSS:");
    let hwm = proc_status(child.id(), "VmHWM:");
    let _ = child.kill();
    let _ = child.wait();
    let wallets =
        text.lines().find_map(|l| l.strip_prefix("supplier_wallets{supplier=\"dodo\",currency=\"USD\"} ")).unwrap_or("?").to_string();
    println!(
        "{n} Dodo wallets, all_customers (walk {:.0} s, supplier_wallets {wallets}, /metrics {} lines): RSS {rss:.1} MiB, peak {hwm:.1} MiB (target < 150 MiB)",
        walk.as_secs_f64(),
        text.lines().filter(|l| !l.starts_with('#')).count()
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let sizes: Vec<usize> =
        std::env::var("SIZES").unwrap_or("100,1000,10000".into()).split(',').filter_map(|s| s.trim().parse().ok()).collect();
    let window: u64 = std::env::var("WINDOW").ok().and_then(|s| s.parse().ok()).unwrap_or(70);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        memory_run().await;
        let wallets: usize = std::env::var("WALLETS").ok().and_then(|s| s.parse().ok()).unwrap_or(100_000);
        if wallets > 0 {
            wallets_run(wallets).await;
        }
        println!("\npolling at 60 s intervals, measured over {window} s after start-up, without and with --storage.path (targets: p99 lateness < 1 s, CPU < 10% of one core, config load and reload < 1 s):");
        println!(
            "{:>8} {:>8} {:>13} {:>11} {:>10} {:>8} {:>8} {:>12} {:>14} {:>10} {:>12}",
            "supplier", "storage", "config load", "reload", "CPU", "RSS MiB", "polls", "p99 late", "min gap/supp.", "state", "restart"
        );
        let storage_modes: Vec<bool> = match std::env::var("STORAGE").as_deref() {
            Ok("no") => vec![false],
            Ok("yes") => vec![true],
            _ => vec![false, true],
        };
        for n in sizes {
            for &storage in &storage_modes {
                suppliers_run(n, window, storage).await;
            }
        }
    });
}
