//! Shared by the benchmarks: a store holding `suppliers × accounts × 2`
//! balances, as after a few polls (counters and thresholds included).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use balance_exporter::config;
use balance_exporter::kinds::{BalanceRow, PollOutput};
use balance_exporter::snapshot::Store;
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
