//! Load and faults on our side.
//!
//! - 200 concurrent scrapers hit `/metrics` for a minute (`LOAD_SECONDS`)
//!   while six stub suppliers fail and recover and the config is reloaded
//!   every second. Every scrape must answer 200 with a complete, parseable
//!   body, and no supplier's series may mix two polls: each poll `k` of a
//!   stub answers `frozen = k`, `usable = 2k`, `balance = 3k` in both
//!   currencies, so one scrape must show one `k` per supplier and
//!   `balance == frozen + usable` on every row.
//! - SIGTERM while polls hang in flight: the binary exits within 5 s.

use crate::common;

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Samples;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const SUPPLIERS: usize = 6;
const SCRAPERS: usize = 200;

/// A vai247 stub: every request is a new poll `k`; about one in four fails
/// (500 with HTML, 429, or truncated JSON), the rest answer the invariant body.
async fn stub(polls: Arc<AtomicU64>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let polls = polls.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut read = 0;
                while !buf[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf[read..]).await {
                        Ok(n) if n > 0 => read += n,
                        _ => return,
                    }
                }
                let k = polls.fetch_add(1, Ordering::SeqCst) + 1;
                let wallet = format!("{{\"balance\": {}, \"freeze\": {k}, \"usable\": {}}}", 3 * k, 2 * k);
                let (status, body) = match k % 8 {
                    3 => ("500 Internal Server Error", "<html><body>oops</body></html>".to_string()),
                    5 => ("429 Too Many Requests", String::new()),
                    7 => ("200 OK", format!("{{\"statusCode\": 200, \"data\": {{\"usd\": {wallet}")),
                    _ => (
                        "200 OK",
                        format!("{{\"statusCode\": 200, \"message\": \"Success\", \"data\": {{\"usd\": {wallet}, \"khr\": {wallet}}}}}"),
                    ),
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(resp.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    format!("http://{addr}")
}

fn config(urls: &[String], generation: u64) -> String {
    let mut text = String::from("suppliers:\n");
    for (i, url) in urls.iter().enumerate() {
        // Each reload changes something real: the thresholds.
        text.push_str(&format!(
            "  - {{name: s{i}, kind: vai247, base_url: '{url}', auth: {{header: {{name: X-Api-Key, value: k_{i}_secret}}}}, poll_interval: 200ms, min_interval: 0s, max_retries: 0, timeout: 2s, thresholds: [{{currency: USD, low: {generation}}}]}}\n"
        ));
    }
    text
}

/// Checks one scrape; returns how many suppliers were up. Before a
/// supplier's first poll it has no `supplier_up` yet; after `warmed_up`,
/// every supplier must have one (a reload keeps their state).
fn check_scrape(body: &str, warmed_up: bool) -> Result<usize, String> {
    if !body.ends_with('\n') || !body.contains("balance_exporter_build_info") {
        return Err("incomplete body".into());
    }
    let s = Samples::parse(body);
    let mut up = 0;
    for i in 0..SUPPLIERS {
        let name = format!("s{i}");
        match s.get("supplier_up", &[("supplier", &name)]) {
            Some(1.0) => up += 1,
            Some(0.0) => {}
            None if !warmed_up => {}
            other => return Err(format!("{name}: supplier_up {other:?}")),
        }
        let mut marks = BTreeMap::new();
        for currency in ["USD", "KHR"] {
            let l = [("supplier", name.as_str()), ("account", "main"), ("currency", currency)];
            let (Some(b), Some(f), Some(u)) =
                (s.get("supplier_balance", &l), s.get("supplier_balance_frozen", &l), s.get("supplier_balance_usable", &l))
            else {
                continue; // not polled successfully yet
            };
            if b != f + u || u != 2.0 * f {
                return Err(format!("{name} {currency}: balance {b} frozen {f} usable {u} are not one poll"));
            }
            marks.insert(currency, f);
        }
        if marks.len() == 2 && marks["USD"] != marks["KHR"] {
            return Err(format!("{name}: USD from poll {} but KHR from poll {}", marks["USD"], marks["KHR"]));
        }
    }
    Ok(up)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_scrapers_while_suppliers_flap_and_config_reloads() {
    if common::isolated("load::two_hundred_scrapers_while_suppliers_flap_and_config_reloads") {
        return;
    }
    let seconds: u64 = std::env::var("LOAD_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(60);
    let polls: Vec<Arc<AtomicU64>> = (0..SUPPLIERS).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let mut urls = Vec::new();
    for p in &polls {
        urls.push(stub(p.clone()).await);
    }
    let (app, dir) = common::start(&config(&urls, 0)).await;
    let base = format!("http://{}", app.addr);
    let client = reqwest::Client::builder().pool_max_idle_per_host(SCRAPERS).timeout(Duration::from_secs(10)).build().unwrap();
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);

    let (scrapes, bytes, saw_down, saw_up) =
        (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let latencies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut scrapers = Vec::new();
    for _ in 0..SCRAPERS {
        let (client, url) = (client.clone(), format!("{base}/metrics"));
        let (scrapes, bytes, saw_down, saw_up, latencies) =
            (scrapes.clone(), bytes.clone(), saw_down.clone(), saw_up.clone(), latencies.clone());
        scrapers.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let started = Instant::now();
                let resp =
                    client.get(&url).send().await.map_err(|e| {
                        format!("scrape failed after {:?}: {}", started.elapsed(), balance_exporter::settings::error_chain(&e))
                    })?;
                if resp.status() != 200 {
                    return Err(format!("scrape answered {}", resp.status()));
                }
                let body = resp.text().await.map_err(|e| format!("reading the scrape: {e}"))?;
                latencies.lock().unwrap().push(started.elapsed());
                let up = check_scrape(&body, started > start + Duration::from_secs(5)).map_err(|e| format!("{e}\n{body}"))?;
                scrapes.fetch_add(1, Ordering::Relaxed);
                bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
                if up < SUPPLIERS {
                    saw_down.fetch_add(1, Ordering::Relaxed);
                }
                if up > 0 {
                    saw_up.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Ok::<(), String>(())
        }));
    }

    // Reload every second, through the HTTP endpoint, as an operator would.
    let mut reloads = 0u64;
    let mut every_second = tokio::time::interval_at(tokio::time::Instant::now() + Duration::from_secs(1), Duration::from_secs(1));
    while Instant::now() + Duration::from_secs(1) < deadline {
        every_second.tick().await;
        reloads += 1;
        common::rewrite(&dir, &config(&urls, reloads));
        let resp = client.post(format!("{base}/-/reload")).send().await.unwrap();
        assert_eq!(resp.status(), 200, "reload {reloads}: {}", resp.text().await.unwrap());
    }
    for s in scrapers {
        if let Err(e) = s.await.unwrap() {
            panic!("{e}");
        }
    }

    let s = common::scrape(&app).await;
    let failures: f64 = s.series_of("supplier_poll_errors_total").iter().map(|(_, v)| v).sum();
    let total_polls: u64 = polls.iter().map(|p| p.load(Ordering::SeqCst)).sum();
    let mut lat = latencies.lock().unwrap().clone();
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    let n = scrapes.load(Ordering::Relaxed);
    println!(
        "load: {n} scrapes by {SCRAPERS} concurrent clients in {seconds} s, all 200 and complete ({:.1} MiB); {reloads} reloads; {total_polls} supplier requests, {failures} failed polls; scrapes seeing a supplier down: {}; latency p50 {:?} p99 {:?} max {:?}",
        bytes.load(Ordering::Relaxed) as f64 / (1 << 20) as f64,
        saw_down.load(Ordering::Relaxed),
        pct(0.5),
        pct(0.99),
        lat[lat.len() - 1],
    );
    assert!(n >= SCRAPERS as u64, "every scraper finished at least one scrape");
    assert!(saw_down.load(Ordering::Relaxed) > 0 && saw_up.load(Ordering::Relaxed) > 0, "suppliers both failed and recovered");
    assert!(failures > 0.0);
    assert!(reloads + 2 >= seconds, "a reload every second: {reloads} in {seconds} s");
    assert!(total_polls >= (SUPPLIERS as u64) * seconds / 2, "suppliers kept being polled: {total_polls}");
    assert_eq!(s.value("balance_exporter_config_last_reload_successful", &[]), 1.0);
    app.stop().await;
}

/// SIGTERM while every poll hangs on a supplier that never answers: the
/// binary exits within 5 s.
#[test]
fn sigterm_during_polls_exits_within_5_seconds() {
    // A supplier that accepts and never answers, and counts connections.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicU64::new(0));
    let c = connections.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            c.fetch_add(1, Ordering::SeqCst);
            held.push(stream);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yml");
    let mut text = String::from("suppliers:\n");
    for i in 0..4 {
        text.push_str(&format!(
            "  - {{name: hang{i}, kind: foxreload, base_url: 'http://{addr}', poll_interval: 1s, min_interval: 0s, timeout: 60s}}\n"
        ));
    }
    std::fs::write(&cfg, text).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_balance_exporter"))
        .args(["--config.file", cfg.to_str().unwrap(), "--web.listen-address", &format!("127.0.0.1:{port}")])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until every supplier's poll is in flight.
    let started = Instant::now();
    while connections.load(Ordering::SeqCst) < 4 {
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("polls did not start");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let signalled = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if signalled.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("still running 10 s after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = signalled.elapsed();
    let mut logs = String::new();
    child.stderr.take().unwrap().read_to_string(&mut logs).unwrap();
    println!("sigterm: exited {status} {took:?} after SIGTERM with 4 polls in flight");
    assert!(status.success(), "{logs}");
    assert!(took < Duration::from_secs(5), "took {took:?}\n{logs}");
}
