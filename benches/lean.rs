//! Issue 15's figures at 10,000 suppliers, each printed next to its target:
//!
//! 1. bytes of `/metrics` per supplier with one account and one currency,
//!    with every series a healthy supplier has once its history covers a day
//!    (the four `supplier_balance_spend_rate` windows,
//!    `supplier_last_poll_timestamp_seconds`, spent/topped-up counters; no
//!    threshold configured), in-process: SUPPLIERS_BYTES suppliers (1,000) built by
//!    25 hours of simulated 60 s polls;
//! 2. the real binary polling 10,000 suppliers every 60 s against a stub on
//!    loopback, with `--storage.path`: CPU share of one core over a window
//!    without scrapes (WINDOW, 70 s, holding one round of polls) and RSS;
//! 3. then `/metrics` throughput with `wrk` while polls keep landing (about
//!    167 a second), 1 and 8 connections, as a ratio to a reference server
//!    in this process serving the bytes the exporter just served, pre-rendered
//!    (SCRAPE_SECONDS, 5 s per run), RSS after the 8-connection run.
//!
//! 4. (issue 16) the cost of keeping `supplier_topup_ready_timestamp_seconds`
//!    fresh at 10,000 suppliers sharing a top-up window open all day (the worst
//!    case: every ready time moves every minute), in-process: a render from
//!    scratch, a scrape within the same minute, a scrape in a new minute.
//!
//! 5. (issue 18) the landing page's trend pictures at 10,000 suppliers × 1
//!    account × 1 currency, each trend full (288 points, a day at one point
//!    per 5 minutes), in-process: this process's RSS before and after building
//!    them, the heap the trends hold, one more poll on a full trend (it thins
//!    one point), every row's SVG drawn, and the `trends.v1` file's size.
//! 6. (issue 18) the poll history's memory at 10,000 suppliers, in-process:
//!    every supplier's history full (50 polls, all failures with a full
//!    38-byte text, the last 5 with a full 300-byte snippet: the worst case),
//!    as the heap difference (glibc `mallinfo2`) and the RSS difference.
//!
//! Parts 2 and 3 give every supplier that global top-up window too.
//!
//!   cargo bench --bench lean        (SUPPLIERS=10000 WINDOW=70 SCRAPE_SECONDS=5; needs wrk)
//!   PARTS=1,4,5,6 cargo bench --bench lean (only the in-process parts: seconds, no wrk)
//!
//! The 1-minute load average is printed next to every timing figure: the
//! machine should be otherwise idle.

use std::hint::black_box;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use balance_exporter::config;
use balance_exporter::metrics::Renderer;
use balance_exporter::poll::{BalanceRow, PollOutput};
use balance_exporter::snapshot::{Store, SupplierState};
use bytes::Bytes;
use rust_decimal::Decimal;

mod support;
use support::{cpu_seconds, load1, proc_status, serve_bytes};

const BIN: &str = env!("CARGO_BIN_EXE_balance_exporter");
const FOX: &str = r#"{"balance": {"amount": 284.50, "currency": "USD", "updated_at": "2026-05-01T13:45:22Z"}}"#;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

// ---- 1. bytes per supplier ------------------------------------------------------------

fn row(balance: Decimal, frozen: Decimal) -> BalanceRow {
    BalanceRow { account: "main".into(), currency: "USD".into(), balance, frozen, usable: balance - frozen, updated_at: None }
}

fn bytes_per_supplier(suppliers: usize) {
    // Names s1000…s1999: as long as most of the names s0…s9999 of the other benches.
    let text: String = (0..suppliers)
        .map(|i| format!("  - {{name: s{}, kind: foxreload, auth: {{bearer_token: x}}, poll_interval: 60s}}\n", 1000 + i))
        .collect();
    let config = config::load_str(&format!("suppliers:\n{text}"), &|_| None).expect("bench config");
    let store = Arc::new(Store::default());
    let slots = store.set_suppliers(&config.suppliers);
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let interval = Duration::from_secs(60);
    let polls = 25 * 60u32;
    let t = Instant::now();
    for (i, slot) in slots.iter().enumerate() {
        // Spends 0.37 a poll, a hold that comes and goes, a top-up every 6 hours; ±10% jitter.
        let mut state = SupplierState::loaded(start);
        let mut balance = Decimal::from(1_000_000);
        for p in 0..polls {
            let jitter = Duration::from_millis((u64::from(p) * 7919 + i as u64 * 104_729) % 12_000);
            balance -= Decimal::new(37, 2);
            if p % 360 == 359 {
                balance += Decimal::from(500);
            }
            let output = PollOutput { balances: vec![row(balance, Decimal::from(p % 7))], ..Default::default() };
            state = state.after_poll(Ok(output), Duration::from_millis(80), start + interval * p + jitter);
        }
        store.publish(slot, state);
    }
    let built = t.elapsed();
    let body = Renderer::new(store.clone()).render().concat();
    let text = std::str::from_utf8(&body).unwrap();
    let supplier_lines: Vec<&str> = text.lines().filter(|l| l.starts_with("supplier_")).collect();
    let supplier_bytes: usize = supplier_lines.iter().map(|l| l.len() + 1).sum();
    let per = supplier_bytes as f64 / suppliers as f64;
    let overhead = body.len() - supplier_bytes;
    println!(
        "{suppliers} suppliers × 1 account × 1 currency, 25 h of 60 s polls each (built in {:.1} s): {} bytes, {} supplier lines",
        built.as_secs_f64(),
        body.len(),
        supplier_lines.len()
    );
    println!(
        "  bytes of /metrics per supplier: {per:.0} ({} series each; HELP/TYPE and exporter families: {overhead} bytes once)   target <= 1,325 (55% of 2,404): {}",
        supplier_lines.len() / suppliers,
        verdict(per <= 1325.0)
    );
    println!("  one supplier's lines:");
    for l in supplier_lines.iter().filter(|l| l.contains("supplier=\"s1000\"")) {
        println!("    {l}");
    }
}

// ---- 4. fresh top-up ready times at 10,000 suppliers -----------------------------------

/// A global top-up window open all day, every day: the ready time is always
/// "now (rounded up to the minute) + 4h", so every supplier's line changes every minute.
const ALWAYS_OPEN: &str =
    "global: {topup_window: {timezone: Europe/Berlin, days: [mon, tue, wed, thu, fri, sat, sun], hours: '00:00-24:00', lead_time: 4h}}\n";

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ready_freshness(suppliers: usize) {
    let text: String = (0..suppliers).map(|i| format!("  - {{name: s{i}, kind: foxreload, auth: {{bearer_token: x}}}}\n")).collect();
    let config = config::load_str(&format!("{ALWAYS_OPEN}suppliers:\n{text}"), &|_| None).expect("bench config");
    let store = Arc::new(Store::default());
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_000_000);
    for slot in store.set_suppliers(&config.suppliers) {
        let output = PollOutput { balances: vec![row(Decimal::from(1000), Decimal::ZERO)], ..Default::default() };
        store.publish(&slot, SupplierState::loaded(t0).after_poll(Ok(output), Duration::from_millis(80), t0));
    }
    let renderer = Renderer::new(store.clone());
    let start = Instant::now();
    let first = renderer.render_at(t0);
    let scratch = start.elapsed();
    let lines =
        std::str::from_utf8(&first.concat()).unwrap().lines().filter(|l| l.starts_with("supplier_topup_ready_timestamp_seconds{")).count();
    assert_eq!(lines, suppliers);
    let same_minute: Vec<Duration> = (0..200u64)
        .map(|i| {
            let t = Instant::now();
            black_box(renderer.render_at(t0 + Duration::from_millis(i)).len());
            t.elapsed()
        })
        .collect();
    let new_minute: Vec<Duration> = (1..=30u64)
        .map(|m| {
            let t = Instant::now();
            black_box(renderer.render_at(t0 + Duration::from_secs(60 * m)).len());
            t.elapsed()
        })
        .collect();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("\n{suppliers} suppliers sharing a top-up window open all day (every ready time moves every minute), in-process:");
    println!("  render from scratch: {:.1} ms; body {} bytes with {lines} ready lines", ms(scratch), first.len());
    println!("  scrape within the same minute (cached body): median {:.4} ms over 200", ms(median(same_minute)));
    println!(
        "  scrape in a new minute (ready lines recomputed, body re-assembled, no supplier re-rendered): median {:.1} ms over 30 (load1 {})",
        ms(median(new_minute)),
        load1()
    );
}

// ---- 5. trend pictures at 10,000 suppliers ---------------------------------------------

fn trends(suppliers: usize) {
    use balance_exporter::trend::{self, Size, Trend, MAX_POINTS};
    let pid = std::process::id();
    let start = 1_800_000_000i64;
    let before = proc_status(pid, "VmRSS:");
    let t = Instant::now();
    // A day of one point per 5 minutes: spend 0.37 a poll, a top-up every 6 hours.
    let built: Vec<Trend> = (0..suppliers)
        .map(|i| {
            let mut tr = Trend::default();
            for p in 0..MAX_POINTS as i64 {
                let topups = (p / 72) as f64 * 500.0;
                tr.push(start + p * 300 + (i as i64 % 7), 1_000_000.0 - p as f64 * 0.37 + topups);
            }
            tr
        })
        .collect();
    let took = t.elapsed();
    let after = proc_status(pid, "VmRSS:");
    let points: usize = built.iter().map(Trend::len).sum();
    let held: usize = built.iter().map(Trend::heap_bytes).sum::<usize>() + built.len() * std::mem::size_of::<Trend>();
    println!("\n{suppliers} suppliers × 1 account × 1 currency, a full trend each (built in {:.1} s), in-process:", took.as_secs_f64());
    println!(
        "  {points} points ({} per trend); held by the trends: {:.1} MiB ({} bytes per trend, struct included)",
        points / suppliers.max(1),
        held as f64 / (1 << 20) as f64,
        held / suppliers.max(1)
    );
    println!("  RSS {before:.1} MiB before building them, {after:.1} MiB after: +{:.1} MiB", after - before);
    // One more poll on a full trend: the newest point goes in, one is thinned out.
    let mut full = built[0].clone();
    let n = 10_000i64;
    let t = Instant::now();
    for k in 1..=n {
        full.push(start + (MAX_POINTS as i64 + k) * 300, 999_000.0 + k as f64);
    }
    let per_poll = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    let t = Instant::now();
    let svg_bytes: usize = built.iter().map(|tr| black_box(trend::sparkline(tr, "USD", Some(Decimal::from(100)), Size::ROW)).len()).sum();
    let drawn = t.elapsed();
    let names: Vec<String> = (0..suppliers).map(|i| format!("s{i}")).collect();
    let file = trend::encode(names.iter().zip(&built).map(|(name, tr)| (name.as_str(), "main", "USD", tr)));
    println!("  one poll on a full trend (push + thin one point): {per_poll:.2} µs (load1 {})", load1());
    println!(
        "  every row's SVG drawn: {:.0} ms, {} bytes of markup ({} per row); trends.v1: {:.1} MiB",
        drawn.as_secs_f64() * 1000.0,
        svg_bytes,
        svg_bytes / suppliers.max(1),
        file.len() as f64 / (1 << 20) as f64
    );
}

// ---- 6. the poll history at 10,000 suppliers -------------------------------------------

/// Bytes the allocator has handed out and not had back.
fn heap_in_use() -> u64 {
    // SAFETY: mallinfo2 only reads the allocator's counters.
    unsafe { libc::mallinfo2() }.uordblks as u64
}

fn history_memory(suppliers: usize) {
    use balance_exporter::history::{History, PollReport, POLLS_KEPT};
    use balance_exporter::poll::Reason;
    let history = History::in_memory();
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let (heap0, rss0) = (heap_in_use(), proc_status(std::process::id(), "VmRSS:"));
    let t = Instant::now();
    for i in 0..suppliers {
        let name = format!("s{i}");
        for p in 0..POLLS_KEPT as u32 {
            let report = PollReport {
                started: Some(start + Duration::from_secs(60) * p),
                duration: Duration::from_millis(180),
                requests: 3,
                last_status: Some(503),
                failure: Some((Reason::ServerError, format!("http 503: {{\"error\":\"maintenance window {p} of supplier {i}\"}}"))),
                snippet: Some(format!("{p:04}{i:06}{}", "x".repeat(400))),
            };
            history.record(&name, &report);
        }
    }
    let built = t.elapsed();
    let (heap1, rss1) = (heap_in_use(), proc_status(std::process::id(), "VmRSS:"));
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    let heap = mib(heap1.saturating_sub(heap0));
    println!(
        "\n{suppliers} suppliers, each with a full poll history (50 failed polls, 5 snippets of 300 bytes), in-process (built in {:.1} s):",
        built.as_secs_f64()
    );
    println!(
        "  heap: +{heap:.1} MiB ({:.0} bytes a supplier; records and snippets alone: {:.1} MiB)   target <= 50 MiB: {}",
        (heap1.saturating_sub(heap0)) as f64 / suppliers as f64,
        mib(history.heap_bytes() as u64),
        verdict(heap <= 50.0)
    );
    println!(
        "  RSS: {rss0:.1} MiB before, {rss1:.1} MiB after: +{:.1} MiB   target <= 50 MiB: {}",
        rss1 - rss0,
        verdict(rss1 - rss0 <= 50.0)
    );
    black_box(&history);
}

// ---- 2 and 3. the real binary at 10,000 suppliers ------------------------------------

fn polls_total(text: &str) -> f64 {
    text.lines().find_map(|l| l.strip_prefix("balance_exporter_poll_duration_seconds_count ")).and_then(|v| v.parse().ok()).unwrap_or(0.0)
}

/// Requests per second, from wrk.
fn wrk(url: &str, connections: u32, seconds: u64) -> f64 {
    let out = Command::new("wrk")
        .args([
            "-t",
            &connections.min(2).to_string(),
            "-c",
            &connections.to_string(),
            "-d",
            &format!("{seconds}s"),
            "--timeout",
            "10s",
            url,
        ])
        .output()
        .expect("wrk not found: apt-get install -y wrk");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk output:\n{text}"))
}

async fn ten_thousand(n: usize, window: u64, seconds: u64) {
    // The stub answers every supplier's path with the same FoxReload balance.
    let stub = serve_bytes(Bytes::from_static(FOX.as_bytes()), false).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yml");
    let mut text = format!("{ALWAYS_OPEN}suppliers:\n");
    for i in 0..n {
        text.push_str(&format!(
            "  - {{name: s{i}, kind: foxreload, base_url: 'http://{stub}/s{i}', poll_interval: 60s, min_interval: 1s, auth: {{bearer_token: key{i}}}, thresholds: [{{currency: USD, low: 100}}]}}\n"
        ));
    }
    std::fs::write(&path, text).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let state = dir.path().join("state");
    let mut child = Command::new(BIN)
        .args(["--config.file", path.to_str().unwrap(), "--web.listen-address", &format!("127.0.0.1:{port}"), "--log.level", "error"])
        .args(["--storage.path", state.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let pid = child.id();
    let url = format!("http://127.0.0.1:{port}/metrics");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let ready = reqwest::get(format!("http://127.0.0.1:{port}/-/ready")).await.map(|r| r.status() == 200).unwrap_or(false);
        if ready {
            break;
        }
        assert!(Instant::now() < deadline, "exporter not ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let started = Instant::now();
    println!("\n{n} suppliers polled every 60 s against a stub on loopback, --storage.path set (the real binary):");
    let polls = || async { polls_total(&reqwest::get(&url).await.unwrap().text().await.unwrap()) };
    // Every supplier's first poll lands within 3 s of the start, the second 54-69 s after
    // it: the exporter's scrapes run then, while about 700 polls a second land.
    tokio::time::sleep(Duration::from_secs(55).saturating_sub(started.elapsed())).await;
    let mut runs = vec![];
    for connections in [1u32, 8] {
        let (ours, p0) = (url.clone(), polls().await);
        let (rps, load) = tokio::task::spawn_blocking(move || (wrk(&ours, connections, seconds), load1())).await.unwrap();
        runs.push((connections, rps, load, polls().await - p0));
    }
    let rss = proc_status(pid, "VmRSS:");
    let hwm = proc_status(pid, "VmHWM:");
    // The reference serves what the exporter serves now, pre-rendered.
    let body = reqwest::get(&url).await.unwrap().bytes().await.unwrap();
    let reference = serve_bytes(body.clone(), false).await;
    let ref_url = format!("http://{reference}/metrics");
    println!(
        "  /metrics: {} bytes, {} lines; wrk {seconds} s per run; the reference serves these bytes pre-rendered",
        body.len(),
        body.iter().filter(|b| **b == b'\n').count()
    );
    for (connections, a, load_a, landed) in runs {
        let theirs = ref_url.clone();
        let (b, load_b) = tokio::task::spawn_blocking(move || (wrk(&theirs, connections, seconds), load1())).await.unwrap();
        let ratio = a / b;
        println!(
            "  {connections} conn: exporter {a:.0}/s with {landed:.0} polls landing during the run (load1 {load_a}), reference {b:.0}/s (load1 {load_b}): ratio {ratio:.2}   target >= 0.5: {}",
            verdict(ratio >= 0.5)
        );
    }
    println!("  RSS after the 8-connection run: {rss:.1} MiB (peak {hwm:.1} MiB)   target <= 100 MiB: {}", verdict(rss <= 100.0));
    // The third round of polls lands 108-135 s after the start: CPU over a window
    // that holds it, no scrapes, per poll and at 10,000 polls a minute.
    tokio::time::sleep(Duration::from_secs(75).saturating_sub(started.elapsed())).await;
    let (p0, cpu0, t0) = (polls().await, cpu_seconds(pid), Instant::now());
    tokio::time::sleep(Duration::from_secs(window)).await;
    let (cpu1, elapsed) = (cpu_seconds(pid), t0.elapsed().as_secs_f64());
    let landed = polls().await - p0;
    let share = (cpu1 - cpu0) / landed.max(1.0) * (n as f64 / 60.0) * 100.0;
    println!(
        "  CPU without scrapes: {:.2} s over {elapsed:.0} s for {landed:.0} polls = {share:.2}% of one core at {n} polls a minute (load1 {})   target <= 5%: {}",
        cpu1 - cpu0,
        load1(),
        verdict(share <= 5.0)
    );
    let rss = proc_status(pid, "VmRSS:");
    println!("  RSS after that window: {rss:.1} MiB   target <= 100 MiB: {}", verdict(rss <= 100.0));
    let _ = child.kill();
    let _ = child.wait();
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    // PARTS=1,4,5,6 runs only those (the in-process ones: seconds, not minutes); default all.
    let parts = std::env::var("PARTS").unwrap_or_else(|_| "1,2,3,4,5".into());
    let part = |p: &str| parts.split(',').any(|x| x.trim() == p);
    if part("1") {
        bytes_per_supplier(env("SUPPLIERS_BYTES", 1000) as usize);
    }
    if part("4") {
        ready_freshness(env("SUPPLIERS", 10_000) as usize);
    }
    if part("5") {
        trends(env("SUPPLIERS", 10_000) as usize);
    }
    if part("6") {
        history_memory(env("SUPPLIERS", 10_000) as usize);
    }
    if part("2") || part("3") {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        rt.block_on(ten_thousand(env("SUPPLIERS", 10_000) as usize, env("WINDOW", 70), env("SCRAPE_SECONDS", 5)));
    }
}
