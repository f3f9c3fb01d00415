//! What `supplier_balance_spend_rate` costs at 10,000 suppliers polled every
//! 60 s (one balance each), once every history is full (a day and more of
//! polls, simulated; no waiting):
//!
//! - memory: the resident set before and after building the 10,000 states,
//!   and the bytes the histories hold;
//! - the points kept per balance, and the stored size of one supplier's
//!   state with its history (what `--storage.path` appends per poll);
//! - time per poll to apply a successful poll to a warm state;
//! - time to render `/metrics` with the four windows of every balance.
//!
//!   cargo bench --bench spend_rate             (SUPPLIERS=10000 HOURS=25 INTERVAL=60)

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use balance_exporter::config;
use balance_exporter::metrics::Renderer;
use balance_exporter::poll::{BalanceRow, PollOutput};
use balance_exporter::snapshot::{Store, SupplierState};
use balance_exporter::spend_rate::SpendHistory;
use balance_exporter::storage::encode_state;
use rust_decimal::Decimal;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Resident set size of this process, from /proc/self/statm.
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).expect("statm resident field");
    pages * 4096
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1 << 20) as f64)
}

fn row(balance: Decimal, frozen: Decimal) -> BalanceRow {
    BalanceRow { account: "main".into(), currency: "USD".into(), balance, frozen, usable: balance - frozen, updated_at: None }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` and `cargo test --benches` ask for the list of benches
    }
    let suppliers = env("SUPPLIERS", 10_000) as usize;
    let hours = env("HOURS", 25);
    let interval = Duration::from_secs(env("INTERVAL", 60));
    let polls = hours * 3600 / interval.as_secs();
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    println!("spend_rate: {suppliers} suppliers × 1 balance, one poll every {} s for {hours} h ({polls} polls each)", interval.as_secs());

    let text: String = (0..suppliers)
        .map(|i| format!("  - {{name: s{i}, kind: foxreload, auth: {{bearer_token: x}}, poll_interval: {}s}}\n", interval.as_secs()))
        .collect();
    let config = config::load_str(&format!("suppliers:\n{text}"), &|_| None).expect("bench config");
    let store = Arc::new(Store::default());
    let slots = store.set_suppliers(&config.suppliers);

    let before = rss_bytes();
    let t = Instant::now();
    let mut last_state = SupplierState::default();
    for (i, slot) in slots.iter().enumerate() {
        // Spend 0.37 per poll plus a hold that grows and settles; ±10% jitter of the poll times.
        let mut history = SpendHistory::default();
        let mut spent = Decimal::ZERO;
        for p in 0..polls {
            let jitter = Duration::from_millis((p * 7919 + i as u64 * 104_729) % (interval.as_millis() as u64 / 5));
            let at = start + interval * p as u32 + jitter;
            spent += Decimal::new(37, 2);
            history.observe(at, spent + Decimal::from(p % 7));
        }
        let mut state = SupplierState::default().after_poll(
            Ok(PollOutput { balances: vec![row(Decimal::from(1_000_000), Decimal::from(3))], ..Default::default() }),
            Duration::from_millis(80),
            start + interval * polls as u32,
        );
        state.spend_windows.insert(("main".into(), "USD".into()), history);
        if i + 1 == slots.len() {
            last_state = state.clone();
        }
        store.publish(slot, state);
    }
    let built = t.elapsed();
    let after = rss_bytes();
    let states = store.slots();
    let points: usize = states.iter().map(|s| s.state().spend_windows.values().map(SpendHistory::len).sum::<usize>()).sum();
    let held: usize = states.iter().map(|s| s.state().spend_windows.values().map(SpendHistory::heap_bytes).sum::<usize>()).sum();
    println!("  built in {:.1} s", built.as_secs_f64());
    println!("  RSS: {} before, {} after: {} for {suppliers} states with full histories", mib(before), mib(after), mib(after - before));
    println!(
        "  histories: {} points in all ({:.0} per balance), {} held by them",
        points,
        points as f64 / suppliers as f64,
        mib(held as u64)
    );
    let stored = encode_state("s0", "foxreload", &last_state).len();
    println!("  stored state of one supplier (appended to the journal per poll with --storage.path): {stored} bytes");

    // One more successful poll on a warm state: what every poll pays.
    let n = 2_000u32;
    let t = Instant::now();
    let mut s = last_state;
    for k in 1..=n {
        let at = start + interval * (polls as u32 + k);
        s = s.after_poll(
            Ok(PollOutput { balances: vec![row(Decimal::from(1_000_000) - Decimal::from(k), Decimal::from(3))], ..Default::default() }),
            Duration::from_millis(80),
            at,
        );
    }
    println!("  apply one poll to a warm state: {:.1} µs", t.elapsed().as_secs_f64() * 1e6 / f64::from(n));

    let renderer = Renderer::new(store.clone());
    let t = Instant::now();
    let body = renderer.render();
    let took = t.elapsed();
    let body = body.concat();
    let series = body.split(|b| *b == b'\n').filter(|l| l.starts_with(b"supplier_balance_spend_rate{")).count();
    println!("  render /metrics: {:.0} ms, {} bytes, {series} spend_rate series", took.as_secs_f64() * 1e3, body.len());
}
