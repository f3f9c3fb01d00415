//! /metrics throughput against a reference: a minimal hyper server that
//! returns the same bytes pre-rendered (the ceiling for any exporter here).
//! Both serve 1,000 accounts × 2 currencies (≈12,000 series) and are loaded
//! with `wrk` side by side, with 1 and 8 connections, plain and gzip (the gzip
//! reference serves the same compressed bytes, pre-compressed). Target: ≥ 80%.
//!
//!   bash benches/run.sh        (installs wrk, runs every benchmark)
//!   cargo bench --bench scrape (needs wrk on PATH; SCRAPE_SECONDS=5 by default)

use std::process::Command;
use std::sync::Arc;

use balance_exporter::metrics::Renderer;
use balance_exporter::server::{serve, ServerState};
use tokio_util::sync::CancellationToken;

mod support;
use support as fixture;
use support::load1;

/// Runs wrk and returns requests per second.
fn wrk(url: &str, connections: u32, seconds: u32, gzip: bool) -> f64 {
    let mut cmd = Command::new("wrk");
    cmd.args(["-t", &connections.min(2).to_string(), "-c", &connections.to_string(), "-d", &format!("{seconds}s"), "--latency"]);
    if gzip {
        cmd.args(["-H", "Accept-Encoding: gzip"]);
    }
    let out = cmd.arg(url).output().expect("wrk not found: apt-get install -y wrk");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk output:\n{text}"))
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` / `--list` probes: nothing to run.
    }
    let seconds: u32 = std::env::var("SCRAPE_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        // 1 supplier × 1,000 accounts × 2 currencies, as the target describes.
        let store = fixture::store(1, 1000);
        let renderer = Renderer::new(store.clone());
        let pre_rendered = renderer.render().concat();
        let renderer_gzip = renderer.render().gzip();
        let series = pre_rendered.iter().filter(|b| **b == b'\n').count();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ours = listener.local_addr().unwrap();
        let state = Arc::new(ServerState {
            store: store.clone(),
            renderer,
            telemetry_path: "/metrics".into(),
            reload: Arc::new(|| Box::pin(async { Ok(balance_exporter::server::Reloaded { suppliers: 0 }) })),
            extra_routes: None,
            web: Default::default(),
            history: None,
            debug_poll: None,
        });
        tokio::spawn(serve(listener, state, CancellationToken::new()));
        let reference = fixture::serve_bytes(pre_rendered.clone(), false).await;
        // The gzip reference serves the exporter's own compressed bytes, pre-compressed.
        let reference_gzip = fixture::serve_bytes(renderer_gzip, true).await;
        println!("payload: {} bytes, {series} lines; wrk {seconds}s per run", pre_rendered.len());
        println!("{:<28} {:>12} {:>12} {:>8}  target", "run", "exporter", "reference", "ratio");
        for (connections, gzip) in [(1, false), (8, false), (1, true), (8, true)] {
            let ours_url = format!("http://{ours}/metrics");
            let ref_url = format!("http://{}/metrics", if gzip { reference_gzip } else { reference });
            let (a, b) = tokio::task::spawn_blocking(move || {
                (wrk(&ours_url, connections, seconds, gzip), wrk(&ref_url, connections, seconds, gzip))
            })
            .await
            .unwrap();
            let label = format!("{connections} conn{}", if gzip { ", gzip (ref pre-gzipped)" } else { "" });
            let ratio = a / b;
            let verdict = if ratio >= 0.8 { ">= 80% met" } else { ">= 80% MISSED" };
            println!("{label:<28} {a:>10.0}/s {b:>10.0}/s {:>7.0}%  {verdict} (load1 {})", ratio * 100.0, load1());
        }
    });
}
