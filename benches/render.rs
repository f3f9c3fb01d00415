//! Render and parse costs (criterion): the /metrics exposition of 2,000
//! balances (its size is printed first), the cached path scrapes take, gzip, the seed parsers, and
//! loading a 10,000-supplier config.
//!
//!   cargo bench --bench render

use std::hint::black_box;
use std::time::Duration;

use balance_exporter::config;
use balance_exporter::metrics::{collect_families, Renderer};
use criterion::{criterion_group, criterion_main, Criterion};

mod support;
use support as fixture;

fn render(c: &mut Criterion) {
    // 10 suppliers × 100 accounts × 2 currencies = 2,000 balances.
    let store = fixture::store(10, 100);
    let renderer = Renderer::new(store.clone());
    let body = renderer.render();
    println!("exposition: {} bytes, {} lines", body.len(), body.concat().iter().filter(|b| **b == b'\n').count());
    c.bench_function("collect families (2,000 balances)", |b| b.iter(|| black_box(collect_families(&store))));
    c.bench_function("full render (2,000 balances)", |b| {
        b.iter(|| {
            // A fresh renderer has an empty cache: this is the per-poll-change cost.
            let r = Renderer::new(store.clone());
            black_box(r.render().len())
        })
    });
    c.bench_function("cached render (what a scrape costs)", |b| b.iter(|| black_box(renderer.render().len())));
    c.bench_function("gzip of a new render", |b| {
        b.iter(|| {
            let r = Renderer::new(store.clone());
            black_box(r.render().gzip().len())
        })
    });
}

fn parse(c: &mut Criterion) {
    let text = fixture::many_suppliers_config(1, "http://127.0.0.1:9", "1m");
    let cfg = config::load_str(&text, &|_| None).unwrap();
    let client = reqwest::Client::new();
    let upstream = balance_exporter::upstream::Upstream::new(client, &cfg.suppliers[0].upstream_settings(), Default::default());
    let fox = br#"{"balance": {"amount": 284.50, "currency": "USD", "updated_at": "2026-05-01T13:45:22Z"}}"#;
    let vai = br#"{"statusCode": 200, "message": "Success", "data": {"usd": {"balance": 1250.75, "freeze": 100.00, "usable": 1150.75}, "khr": {"balance": 5000000.00, "freeze": 250000.00, "usable": 4750000.00}}, "traceId": "trace_abc123"}"#;
    let nova: String = format!(
        "[{}]",
        (0..1000)
            .map(|i| format!(
                r#"{{"balance": {}.50, "availableBalance": {}, "reference": "merchant_{i}", "currency": "XOF"}}"#,
                4676 + i,
                4000 + i
            ))
            .collect::<Vec<_>>()
            .join(",")
    );
    c.bench_function("parse foxreload", |b| b.iter(|| black_box(balance_exporter::kinds::foxreload::parse(&upstream, fox).unwrap())));
    c.bench_function("parse vai247", |b| b.iter(|| black_box(balance_exporter::kinds::vai247::parse(&upstream, vai).unwrap())));
    c.bench_function("parse novasend (1,000 sub-accounts)", |b| {
        b.iter(|| black_box(balance_exporter::kinds::novasend::parse(&upstream, nova.as_bytes()).unwrap()))
    });
}

fn config_load(c: &mut Criterion) {
    let text = fixture::many_suppliers_config(10_000, "http://127.0.0.1:9", "1m");
    let mut group = c.benchmark_group("config");
    group.sample_size(10).measurement_time(Duration::from_secs(10));
    group.bench_function("load 10,000 suppliers (target < 1 s)", |b| {
        b.iter(|| black_box(config::load_str(&text, &|_| None).unwrap().suppliers.len()))
    });
    group.finish();
}

criterion_group!(benches, render, parse, config_load);
criterion_main!(benches);
