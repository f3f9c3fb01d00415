//! `kind: dodo_wallets` against a stateful stub of the Dodo Payments API over
//! real HTTP: wallets in minor units, ledger pages newest first with explicit
//! `page_number`, customers listing, Bearer auth and the `{code, message}`
//! error shape. Values are asserted exactly.

use crate::common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const TOKEN: &str = "dodo_test_sk_9f8e7d6c5b4a39281706";

/// The stub's data: wallets per customer, ledgers kept oldest first (served newest first).
#[derive(Default)]
struct State {
    wallets: BTreeMap<String, Vec<(String, i64)>>,
    ledgers: BTreeMap<(String, String), Vec<Value>>,
    next_id: u64,
    /// (arrival, path?query) of every request.
    requests: Vec<(Instant, String)>,
}

impl State {
    fn wallet(&mut self, customer: &str, currency: &str, balance: i64) {
        self.wallets.entry(customer.into()).or_default().push((currency.into(), balance));
    }

    /// Appends a ledger entry `secs` after a fixed epoch and moves the balance.
    #[allow(clippy::too_many_arguments)]
    fn entry(
        &mut self,
        customer: &str,
        currency: &str,
        amount: i64,
        is_credit: bool,
        event_type: &str,
        reference: Option<&str>,
        secs: u64,
    ) {
        let base = SystemTime::UNIX_EPOCH + Duration::from_secs(1_780_000_000);
        let created = humantime::format_rfc3339_millis(base + Duration::from_secs(secs)).to_string();
        let wallet = self.wallets.entry(customer.into()).or_default();
        let slot = match wallet.iter().position(|(c, _)| c == currency) {
            Some(i) => i,
            None => {
                wallet.push((currency.into(), 0));
                wallet.len() - 1
            }
        };
        let before = wallet[slot].1;
        let after = if is_credit { before + amount } else { before - amount };
        wallet[slot].1 = after;
        self.next_id += 1;
        let id = format!("wle_{:08}", self.next_id);
        self.ledgers.entry((customer.into(), currency.into())).or_default().push(json!({
            "id": id, "amount": amount, "before_balance": before, "after_balance": after,
            "is_credit": is_credit, "event_type": event_type,
            "reason": if is_credit { "top up" } else { "order" }, "reference_object_id": reference,
            "currency": currency, "customer_id": customer, "business_id": "bus_stub0001", "created_at": created
        }));
    }
}

#[derive(Clone, Default)]
struct Stub(Arc<Mutex<State>>);

fn query(req: &Request, key: &str) -> Option<String> {
    req.url.query_pairs().find(|(k, _)| k == key).map(|(_, v)| v.into_owned())
}

#[allow(clippy::result_large_err)]
fn page<T: Clone>(all: &[T], req: &Request) -> Result<Vec<T>, ResponseTemplate> {
    // The real API needs these explicitly; the exporter must send them.
    let number: usize = query(req, "page_number").and_then(|v| v.parse().ok()).ok_or_else(|| bad("page_number missing"))?;
    let size: usize = query(req, "page_size")
        .and_then(|v| v.parse().ok())
        .filter(|s| (1..=100).contains(s))
        .ok_or_else(|| bad("page_size must be 1-100"))?;
    Ok(all.iter().skip(number * size).take(size).cloned().collect())
}

fn bad(message: &str) -> ResponseTemplate {
    ResponseTemplate::new(422).set_body_json(json!({"code": "INVALID_REQUEST", "message": message}))
}

impl Respond for Stub {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut s = self.0.lock().unwrap();
        s.requests.push((Instant::now(), format!("{}?{}", req.url.path(), req.url.query().unwrap_or(""))));
        if req.headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(format!("Bearer {TOKEN}").as_str()) {
            return ResponseTemplate::new(401).set_body_json(json!({"code": "UNAUTHORIZED", "message": "invalid API key"}));
        }
        let parts: Vec<&str> = req.url.path().trim_start_matches('/').split('/').collect();
        let result = match parts.as_slice() {
            ["customers"] => {
                let ids: Vec<&String> = s.wallets.keys().collect();
                page(&ids, req).map(|ids| {
                    let items: Vec<Value> = ids.iter().map(|c| json!({"customer_id": c, "business_id": "bus_stub0001", "name": "n", "email": "e@example.com", "created_at": "2026-01-01T00:00:00Z"})).collect();
                    json!({"items": items})
                })
            }
            ["customers", c, "wallets"] => match s.wallets.get(*c) {
                None => return ResponseTemplate::new(404).set_body_json(json!({"code": "NOT_FOUND", "message": "customer not found"})),
                Some(w) => {
                    let items: Vec<Value> = w.iter().map(|(cur, bal)| json!({"balance": bal, "currency": cur, "customer_id": c, "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-05-01T13:45:22Z"})).collect();
                    let usd: i64 = w.iter().filter(|(cur, _)| cur == "USD").map(|(_, b)| b).sum();
                    Ok(json!({"items": items, "total_balance_usd": usd}))
                }
            },
            ["customers", c, "wallets", "ledger-entries"] => {
                let Some(currency) = query(req, "currency") else { return bad("currency missing") };
                let mut entries = s.ledgers.get(&(c.to_string(), currency)).cloned().unwrap_or_default();
                entries.reverse();
                page(&entries, req).map(|items| json!({"items": items}))
            }
            _ => return ResponseTemplate::new(404).set_body_json(json!({"code": "NOT_FOUND", "message": "no route"})),
        };
        match result {
            Ok(body) => ResponseTemplate::new(200).set_body_json(body),
            Err(r) => r,
        }
    }
}

impl Stub {
    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.0.lock().unwrap())
    }
    fn requests(&self) -> Vec<(Instant, String)> {
        self.0.lock().unwrap().requests.clone()
    }
}

async fn serve(stub: &Stub) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(any()).respond_with(stub.clone()).mount(&server).await;
    server
}

fn config(server: &MockServer, kind_keys: &str, poll_interval: &str, min_interval: &str) -> String {
    format!(
        "suppliers:\n  - name: dodo\n    kind: dodo_wallets\n    base_url: {}\n    auth: {{bearer_token: {TOKEN}}}\n    poll_interval: {poll_interval}\n    min_interval: {min_interval}\n    max_retries: 0\n{kind_keys}",
        server.uri()
    )
}

fn l<'a>(account: &'a str, currency: &'a str) -> [(&'static str, &'a str); 3] {
    [("supplier", "dodo"), ("account", account), ("currency", currency)]
}

fn polls(s: &common::Samples) -> f64 {
    s.get("supplier_polls_total", &[("supplier", "dodo")]).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn defaults_follow_the_documented_tier() {
    let cfg = balance_exporter::config::load_str(
        "suppliers:\n  - {name: d, kind: dodo_wallets, auth: {bearer_token: x}, customers: [cus_1]}\n",
        &|_| None,
    )
    .unwrap();
    let s = &cfg.suppliers[0];
    assert_eq!(s.base_url.as_str(), "https://live.dodopayments.com/");
    // 240 requests/min; every page and wallet request of a walk waits for it.
    assert_eq!(s.min_interval, Duration::from_millis(250));
    let errs = |text: &str| match balance_exporter::config::load_str(text, &|_| None) {
        Err(e) => e.to_string(),
        Ok(_) => String::new(),
    };
    assert!(errs("suppliers:\n  - {name: d, kind: dodo_wallets, auth: {bearer_token: x}}\n")
        .contains("suppliers[0].customers: give `customers: [...]` or `all_customers: true`"));
    assert!(errs("suppliers:\n  - {name: d, kind: dodo_wallets, auth: {bearer_token: x}, customers: [a], all_customers: true}\n")
        .contains("not both"));
    assert!(errs("suppliers:\n  - {name: d, kind: dodo_wallets, auth: {bearer_token: x}, customers: [a], page_size: 101}\n")
        .contains("suppliers[0].page_size: must be between 1 and 100"));
    assert!(errs("suppliers:\n  - {name: d, kind: dodo_wallets, auth: {bearer_token: x}, customers: [a], low: 5}\n")
        .contains("suppliers[0].low: only applies with `all_customers: true`"));
    assert!(errs("suppliers:\n  - {name: d, kind: dodo_wallets, auth: {bearer_token: x}, customers: [a], duplicate_window: soon}\n")
        .contains("invalid duration \"soon\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wallets_in_major_units_and_an_unknown_currency_fails_only_its_wallet() {
    let stub = Stub::default();
    stub.with(|s| {
        s.wallet("cus_a", "USD", 1050);
        s.wallet("cus_a", "INR", 1_500_000);
        s.wallet("cus_b", "USD", 0);
        s.wallet("cus_b", "ZZZ", 100);
    });
    let server = serve(&stub).await;
    let (app, _dir) = common::start(&config(&server, "    customers: [cus_a, cus_b]\n", "1h", "5ms")).await;
    let s = common::wait_for(&app, Duration::from_secs(10), "first poll", |s| polls(s) >= 1.0).await;
    assert_eq!(s.value("supplier_up", &[("supplier", "dodo")]), 1.0);
    assert_eq!(s.value("supplier_balance", &l("cus_a", "USD")), 10.50);
    assert_eq!(s.value("supplier_balance_usable", &l("cus_a", "USD")), 10.50);
    assert_eq!(s.value("supplier_balance_frozen", &l("cus_a", "USD")), 0.0);
    assert_eq!(s.value("supplier_balance", &l("cus_a", "INR")), 15000.0);
    assert_eq!(s.value("supplier_balance", &l("cus_b", "USD")), 0.0);
    assert_eq!(s.get("supplier_balance", &l("cus_b", "ZZZ")), None);
    assert_eq!(s.value("supplier_row_errors_total", &[("supplier", "dodo")]), 1.0);
    // The wallet's own timestamp.
    assert_eq!(s.value("supplier_balance_updated_timestamp_seconds", &l("cus_a", "USD")), 1_777_643_122.0);
    // Counters exist from the first poll.
    assert_eq!(s.value("supplier_balance_spent_total", &l("cus_a", "INR")), 0.0);
    assert_eq!(
        s.value("supplier_ledger_duplicate_suspects_total", &[("supplier", "dodo"), ("account", "cus_a"), ("currency", "USD")]),
        0.0
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ledger_spend_and_credit_counted_once_across_polls() {
    let stub = Stub::default();
    stub.with(|s| {
        s.wallet("cus_a", "USD", 1_000_000);
        // 250 entries of history: 3 pages at page_size 100.
        for i in 0..250 {
            s.entry(
                "cus_a",
                "USD",
                100 + i as i64,
                i % 10 == 0,
                if i % 10 == 0 { "credit_added" } else { "payment" },
                Some(&format!("pay_{i}")),
                i * 60,
            );
        }
    });
    let server = serve(&stub).await;
    let (app, _dir) = common::start(&config(&server, "    customers: [cus_a]\n", "300ms", "1ms")).await;
    let s = common::wait_for(&app, Duration::from_secs(10), "baseline", |s| polls(s) >= 2.0).await;
    // History is the baseline, not spend.
    assert_eq!(s.value("supplier_balance_spent_total", &l("cus_a", "USD")), 0.0);
    assert_eq!(s.value("supplier_balance_topped_up_total", &l("cus_a", "USD")), 0.0);
    let entries = |s: &common::Samples, direction: &str, event_type: &str| {
        s.value(
            "supplier_ledger_entries_total",
            &[("supplier", "dodo"), ("account", "cus_a"), ("currency", "USD"), ("direction", direction), ("event_type", event_type)],
        )
    };
    assert_eq!(entries(&s, "debit", "payment"), 0.0);
    // Only the newest page was read: no poll walked the history.
    let deep = stub.requests().iter().filter(|(_, p)| p.contains("ledger-entries") && !p.contains("page_number=0")).count();
    assert_eq!(deep, 0);

    // Two debits (3.00 and 1.25) and a credit (10.00).
    stub.with(|s| {
        s.entry("cus_a", "USD", 300, false, "payment", Some("pay_new1"), 20_000);
        s.entry("cus_a", "USD", 125, false, "payment", Some("pay_new2"), 20_010);
        s.entry("cus_a", "USD", 1000, true, "credit_added", None, 20_020);
    });
    let s = common::wait_for(&app, Duration::from_secs(10), "new entries", |s| {
        s.get("supplier_balance_spent_total", &l("cus_a", "USD")) == Some(4.25)
    })
    .await;
    assert_eq!(s.value("supplier_balance_topped_up_total", &l("cus_a", "USD")), 10.0);
    assert_eq!(entries(&s, "debit", "payment"), 2.0);
    assert_eq!(entries(&s, "credit", "credit_added"), 1.0);
    // Repeated polls see the same entries and count nothing more.
    let seen_at = polls(&s);
    let s = common::wait_for(&app, Duration::from_secs(10), "two more polls", |s| polls(s) >= seen_at + 2.0).await;
    assert_eq!(s.value("supplier_balance_spent_total", &l("cus_a", "USD")), 4.25);
    assert_eq!(s.value("supplier_balance_topped_up_total", &l("cus_a", "USD")), 10.0);
    assert_eq!(entries(&s, "debit", "payment"), 2.0);

    // More new entries than one page: the walk follows them and stops at known ones.
    stub.with(|s| {
        for i in 0..150 {
            s.entry("cus_a", "USD", 1, false, "payment", Some(&format!("pay_b{i}")), 30_000 + i);
        }
    });
    let s = common::wait_for(&app, Duration::from_secs(10), "a page and a half of debits", |s| {
        s.get("supplier_balance_spent_total", &l("cus_a", "USD")) == Some(5.75)
    })
    .await;
    assert_eq!(entries(&s, "debit", "payment"), 152.0);
    assert_eq!(
        s.value("supplier_ledger_duplicate_suspects_total", &[("supplier", "dodo"), ("account", "cus_a"), ("currency", "USD")]),
        0.0
    );
    // The balance agrees with the ledger.
    assert_eq!(s.value("supplier_balance", &l("cus_a", "USD")), stub.with(|s| s.wallets["cus_a"][0].1) as f64 / 100.0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn repeated_debit_within_the_window_is_a_duplicate_suspect() {
    let stub = Stub::default();
    stub.with(|s| {
        s.wallet("cus_a", "USD", 100_000);
        s.entry("cus_a", "USD", 500, false, "payment", Some("ord_1"), 0);
    });
    let server = serve(&stub).await;
    let yaml = "    customers: [cus_a]\n    duplicate_window: 10m\n";
    let (app, _dir) = common::start(&config(&server, yaml, "300ms", "1ms")).await;
    let suspects = |s: &common::Samples| {
        s.get("supplier_ledger_duplicate_suspects_total", &[("supplier", "dodo"), ("account", "cus_a"), ("currency", "USD")])
    };
    let s = common::wait_for(&app, Duration::from_secs(10), "baseline", |s| suspects(s).is_some()).await;
    assert_eq!(suspects(&s), Some(0.0));
    stub.with(|s| {
        // Same order charged again a minute after the one in history: a suspect.
        s.entry("cus_a", "USD", 500, false, "payment", Some("ord_1"), 60);
        // Same amount, another order: not one.
        s.entry("cus_a", "USD", 500, false, "payment", Some("ord_2"), 70);
        // Same order and amount, but 20 minutes after the last repeat: not one.
        s.entry("cus_a", "USD", 500, false, "payment", Some("ord_1"), 60 + 1200);
        // Same order, another amount: not one.
        s.entry("cus_a", "USD", 499, false, "payment", Some("ord_1"), 1270);
    });
    let s = common::wait_for(&app, Duration::from_secs(10), "new debits", |s| {
        s.get("supplier_balance_spent_total", &l("cus_a", "USD")) == Some(19.99)
    })
    .await;
    assert_eq!(suspects(&s), Some(1.0));
    let seen_at = polls(&s);
    let s = common::wait_for(&app, Duration::from_secs(10), "two more polls", |s| polls(s) >= seen_at + 2.0).await;
    assert_eq!(suspects(&s), Some(1.0));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_wallets_give_bounded_aggregates() {
    let stub = Stub::default();
    let mut expected_sum = 0i64;
    stub.with(|s| {
        for i in 0..10_000i64 {
            let cents = (i * 7919) % 1_000_000 + 100; // 1.00 .. 10000.99, distinct enough
            expected_sum += cents;
            s.wallet(&format!("cus_{i:05}"), "USD", cents);
        }
        s.wallet("cus_00042", "INR", 1_500_000);
        s.wallet("cus_00043", "XTS", 5);
    });
    let mut usd: Vec<(i64, String)> = stub.with(|s| {
        s.wallets.iter().flat_map(|(c, w)| w.iter().filter(|(cur, _)| cur == "USD").map(move |(_, b)| (*b, c.clone()))).collect()
    });
    usd.sort();
    let below = usd.iter().filter(|(b, _)| *b < 50_00).count();
    let server = serve(&stub).await;
    let yaml = "    all_customers: true\n    lowest: 10\n    low: {USD: 50, INR: 100}\n";
    let (app, _dir) = common::start(&config(&server, yaml, "1h", "0s")).await;
    let s = common::wait_for(&app, Duration::from_secs(120), "the walk", |s| polls(s) >= 1.0).await;
    assert_eq!(s.value("supplier_up", &[("supplier", "dodo")]), 1.0);
    let cur = |c: &'static str| [("supplier", "dodo"), ("currency", c)];
    assert_eq!(s.value("supplier_wallets", &cur("USD")), 10_000.0);
    assert_eq!(s.value("supplier_wallets_balance_sum", &cur("USD")), expected_sum as f64 / 100.0);
    assert_eq!(s.value("supplier_wallets_below_threshold", &cur("USD")), below as f64);
    assert_eq!(s.value("supplier_wallets", &cur("INR")), 1.0);
    assert_eq!(s.value("supplier_wallets_balance_sum", &cur("INR")), 15000.0);
    assert_eq!(s.value("supplier_wallets_below_threshold", &cur("INR")), 0.0);
    // The 10 lowest USD wallets, exactly, as ordinary balance rows.
    let rows = s.series_of("supplier_balance");
    assert_eq!(rows.len(), 11, "10 lowest USD + the one INR wallet");
    for (cents, customer) in usd.iter().take(10) {
        assert_eq!(s.value("supplier_balance", &l(customer, "USD")), *cents as f64 / 100.0);
    }
    // XTS has no exponent: counted as a problem, not guessed.
    assert_eq!(s.value("supplier_row_errors_total", &[("supplier", "dodo")]), 1.0);
    assert!(s.series_of("supplier_ledger_entries_total").is_empty());
    let samples = s.text.lines().filter(|l| !l.starts_with('#')).count();
    assert!(samples < 250, "{samples} samples for 10,000 wallets");
    // 100 customer pages, the empty page, one wallet request per customer.
    assert_eq!(stub.requests().len(), 100 + 1 + 10_000);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_long_walk_stays_under_the_rate_limit() {
    let stub = Stub::default();
    stub.with(|s| {
        for i in 0..60 {
            s.wallet(&format!("cus_{i:03}"), "USD", 100 * i);
        }
    });
    let server = serve(&stub).await;
    let min_interval = Duration::from_millis(50);
    let yaml = "    all_customers: true\n    page_size: 10\n    lowest: 3\n";
    let (app, _dir) = common::start(&config(&server, yaml, "1h", "50ms")).await;
    common::wait_for(&app, Duration::from_secs(20), "the walk", |s| polls(s) >= 1.0).await;
    let times: Vec<Instant> = stub.requests().iter().map(|(t, _)| *t).collect();
    assert_eq!(times.len(), 7 + 60, "7 customer pages (the last empty) and 60 wallets");
    // The limiter spaces the starts of requests; arrival at the stub adds some
    // scheduling jitter, so check every run of 10 requests, and the whole walk.
    let jitter = Duration::from_millis(40);
    for (i, w) in times.windows(10).enumerate() {
        let span = w[9] - w[0];
        assert!(span + jitter >= min_interval * 9, "requests {i}..{}: 10 within {span:?}", i + 9);
    }
    let span = times[times.len() - 1] - times[0];
    let rate = (times.len() - 1) as f64 / (span + jitter).as_secs_f64();
    assert!(rate <= 1.0 / min_interval.as_secs_f64(), "{rate:.2} requests/s over the walk");
    app.stop().await;
}

/// `/-/debug/poll` reads the ledger with a scratch copy of the kind's memory:
/// the entries it sees are still new to the next scheduled poll, which counts
/// them exactly once; the debug poll itself publishes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_debug_poll_neither_moves_the_ledger_cursor_nor_counts_spend() {
    let stub = Stub::default();
    stub.with(|s| {
        s.wallet("cus_a", "USD", 1_000_000);
        for i in 0..5 {
            s.entry("cus_a", "USD", 100, false, "payment", Some(&format!("pay_{i}")), i * 60);
        }
    });
    let server = serve(&stub).await;
    let (app, dir) = common::start_with(&config(&server, "    customers: [cus_a]\n", "1h", "1ms"), |o| o.enable_debug = true, None).await;
    common::wait_for(&app, Duration::from_secs(10), "baseline", |s| polls(s) >= 1.0).await;
    // Two debits (3.00 and 1.25) after the baseline.
    stub.with(|s| {
        s.entry("cus_a", "USD", 300, false, "payment", Some("pay_new1"), 20_000);
        s.entry("cus_a", "USD", 125, false, "payment", Some("pay_new2"), 20_010);
    });
    let (_, before) = common::get(&app, "/metrics").await;
    let url = format!("http://{}/-/debug/poll?supplier=dodo", app.addr);
    let body: Value = loop {
        let resp = reqwest::get(&url).await.unwrap();
        if resp.status() == 429 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        assert_eq!(resp.status(), 200);
        break resp.json().await.unwrap();
    };
    assert_eq!(body["outcome"], "ok", "{body}");
    let paths: Vec<&str> = body["requests"].as_array().unwrap().iter().map(|r| r["url"].as_str().unwrap()).collect();
    assert!(paths.iter().any(|p| p.contains("/customers/cus_a/wallets/ledger-entries")), "{paths:?}");
    assert!(body["requests"].as_array().unwrap().iter().all(|r| r["status"] == 200));
    assert_eq!(body["rows"][0]["balance"], "9990.75", "{body}");
    assert!(!body.to_string().contains(TOKEN));
    let (_, after) = common::get(&app, "/metrics").await;
    assert_eq!(after, before, "the debug poll published nothing");
    assert_eq!(common::Samples::parse(&after).value("supplier_balance_spent_total", &l("cus_a", "USD")), 0.0);

    // The next scheduled poll (sooner after a reload: the task restarts, memory kept) counts both debits once.
    common::rewrite(&dir, &config(&server, "    customers: [cus_a]\n", "300ms", "1ms"));
    app.reload().await.unwrap();
    let s = common::wait_for(&app, Duration::from_secs(10), "the debits counted", |s| {
        s.get("supplier_balance_spent_total", &l("cus_a", "USD")) == Some(4.25)
    })
    .await;
    let seen = polls(&s);
    let s = common::wait_for(&app, Duration::from_secs(10), "two more polls", |s| polls(s) >= seen + 2.0).await;
    assert_eq!(s.value("supplier_balance_spent_total", &l("cus_a", "USD")), 4.25, "counted once");
    app.stop().await;
}
