//! Restarts and crashes lose no spend (`--storage.path`).
//!
//! The real binary polls two stub suppliers on 127.0.0.1 whose true spend is
//! known: a FoxReload account that only ever spends, and a Dodo wallet whose
//! ledger gains debits. It is `kill -9`ed at random moments, 50 times, and
//! restarted on the same state directory. At the end its spend counters
//! equal the true spend exactly (no entry counted twice, nothing lost), and
//! no published counter ever went backwards across a restart.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rust_decimal::Decimal;
use serde_json::{json, Value};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const BIN: &str = env!("CARGO_BIN_EXE_balance_exporter");
const FOX_KEY: &str = "fox_crash_key_5f1e";
const DODO_KEY: &str = "dodo_crash_key_77aa";
const CUSTOMER: &str = "cus_crash0001";

/// What the stubs serve, and the spend they have seen happen.
#[derive(Default)]
struct Truth {
    fox_cents: i64,
    fox_spent_cents: i64,
    dodo_cents: i64,
    dodo_spent_cents: i64,
    ledger: Vec<Value>,
    next_id: u64,
}

#[derive(Clone)]
struct Stub(Arc<Mutex<Truth>>);

impl Respond for Stub {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let t = self.0.lock().unwrap();
        let auth = req.headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        let path = req.url.path();
        if path == "/balance" {
            if auth != format!("Bearer {FOX_KEY}") {
                return ResponseTemplate::new(401).set_body_json(json!({"error": {"code": "unauthorized", "message": "bad key"}}));
            }
            let amount = Decimal::new(t.fox_cents, 2);
            return ResponseTemplate::new(200)
                .set_body_raw(format!(r#"{{"balance": {{"amount": {amount}, "currency": "USD"}}}}"#), "application/json");
        }
        if auth != format!("Bearer {DODO_KEY}") {
            return ResponseTemplate::new(401).set_body_json(json!({"code": "UNAUTHORIZED", "message": "bad key"}));
        }
        let page = |key: &str| req.url.query_pairs().find(|(k, _)| k == key).and_then(|(_, v)| v.parse::<usize>().ok());
        match path {
            p if p == format!("/customers/{CUSTOMER}/wallets") => ResponseTemplate::new(200).set_body_json(json!({
                "items": [{"balance": t.dodo_cents, "currency": "USD", "customer_id": CUSTOMER, "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"}],
                "total_balance_usd": t.dodo_cents
            })),
            p if p == format!("/customers/{CUSTOMER}/wallets/ledger-entries") => {
                let (number, size) = (page("page_number").unwrap_or(0), page("page_size").unwrap_or(10).clamp(1, 100));
                let items: Vec<Value> = t.ledger.iter().rev().skip(number * size).take(size).cloned().collect();
                ResponseTemplate::new(200).set_body_json(json!({ "items": items }))
            }
            _ => ResponseTemplate::new(404).set_body_json(json!({"code": "NOT_FOUND", "message": "no route"})),
        }
    }
}

impl Stub {
    fn new() -> Stub {
        let stub = Stub(Arc::new(Mutex::new(Truth { fox_cents: 100_000_000, dodo_cents: 50_000_000, ..Truth::default() })));
        // History before the exporter first looks: a baseline, not spend.
        for amount in [1_000, 2_000, 3_000] {
            stub.debit(amount, false);
        }
        stub
    }

    /// A Dodo debit of `amount` cents, counted as true spend when `counted`.
    fn debit(&self, amount: i64, counted: bool) {
        let mut t = self.0.lock().unwrap();
        t.next_id += 1;
        let (before, after) = (t.dodo_cents, t.dodo_cents - amount);
        t.dodo_cents = after;
        if counted {
            t.dodo_spent_cents += amount;
        }
        let created = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        let id = format!("wle_{:08}", t.next_id);
        t.ledger.push(json!({
            "id": id, "amount": amount, "before_balance": before, "after_balance": after,
            "is_credit": false, "event_type": "payment", "reason": "order", "reference_object_id": format!("ord_{id}"),
            "currency": "USD", "customer_id": CUSTOMER, "business_id": "bus_crash", "created_at": created
        }));
    }

    fn fox_spend(&self, cents: i64) {
        let mut t = self.0.lock().unwrap();
        t.fox_cents -= cents;
        t.fox_spent_cents += cents;
    }

    fn truth(&self) -> (Decimal, Decimal) {
        let t = self.0.lock().unwrap();
        (Decimal::new(t.fox_spent_cents, 2), Decimal::new(t.dodo_spent_cents, 2))
    }
}

/// The exporter process; killed when dropped.
struct Exporter(Child);

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(config: &std::path::Path, state: &std::path::Path, port: u16) -> Exporter {
    let child = Command::new(BIN)
        .args(["--config.file", config.to_str().unwrap(), "--storage.path", state.to_str().unwrap()])
        .args(["--web.listen-address", &format!("127.0.0.1:{port}"), "--log.level", "warn"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the exporter");
    Exporter(child)
}

/// The spend counters on /metrics, exactly as written there: (fox, dodo).
async fn counters(port: u16) -> Option<(Option<Decimal>, Option<Decimal>)> {
    let body = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await.ok()?.text().await.ok()?;
    let mut found = BTreeMap::new();
    for line in body.lines().filter(|l| l.starts_with("supplier_balance_spent_total{")) {
        let (series, value) = line.rsplit_once(' ')?;
        let supplier = if series.contains(r#"supplier="fox""#) { "fox" } else { "dodo" };
        found.insert(supplier, Decimal::from_scientific(value).or_else(|_| Decimal::from_str_exact(value)).ok()?);
    }
    Some((found.get("fox").copied(), found.get("dodo").copied()))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The stub suppliers on 127.0.0.1, and a directory for the config and the state.
async fn stubs() -> (Stub, MockServer, tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let stub = Stub::new();
    let server = MockServer::start().await;
    Mock::given(any()).respond_with(stub.clone()).mount(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let (config, state) = (dir.path().join("config.yml"), dir.path().join("state"));
    (stub, server, dir, config, state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_moments_loses_no_spend_and_counts_nothing_twice() {
    let (stub, server, _dir, config, state) = stubs().await;
    std::fs::write(
        &config,
        format!(
            "suppliers:\n\
             \x20 - {{name: fox, kind: foxreload, base_url: '{uri}', poll_interval: 300ms, min_interval: 0s, max_retries: 0, auth: {{bearer_token: {FOX_KEY}}}}}\n\
             \x20 - {{name: dodo, kind: dodo_wallets, base_url: '{uri}', poll_interval: 300ms, min_interval: 0s, max_retries: 0, customers: [{CUSTOMER}], auth: {{bearer_token: {DODO_KEY}}}}}\n",
            uri = server.uri()
        ),
    )
    .unwrap();

    // First run: wait until both baselines are durable (counters are only
    // published once written), then the suppliers start spending.
    let port = free_port();
    let mut exporter = start(&config, &state, port);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some((Some(_), Some(_))) = counters(port).await {
            break;
        }
        assert!(Instant::now() < deadline, "the exporter never published both counters");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let spending = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let spender = {
        let (stub, spending) = (stub.clone(), spending.clone());
        tokio::spawn(async move {
            while spending.load(std::sync::atomic::Ordering::SeqCst) {
                stub.fox_spend(rand::random_range(1..=500));
                if rand::random::<bool>() {
                    stub.debit(rand::random_range(1..=900), true);
                }
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
        })
    };

    let mut highest = (Decimal::ZERO, Decimal::ZERO);
    let mut restarts = 0;
    for round in 0..50 {
        // Watch the published counters until the kill: never above the
        // truth (nothing counted twice), never below what was published
        // before an earlier crash (no counter reset).
        let kill_at = Instant::now() + Duration::from_millis(rand::random_range(40..700));
        while Instant::now() < kill_at {
            if let Some((fox, dodo)) = counters(port).await {
                let (true_fox, true_dodo) = stub.truth();
                if let Some(fox) = fox {
                    assert!(fox >= highest.0, "round {round}: fox counter went back from {} to {fox}", highest.0);
                    assert!(fox <= true_fox, "round {round}: fox counted {fox}, more than was spent ({true_fox})");
                    highest.0 = fox;
                }
                if let Some(dodo) = dodo {
                    assert!(dodo >= highest.1, "round {round}: dodo counter went back from {} to {dodo}", highest.1);
                    assert!(dodo <= true_dodo, "round {round}: dodo counted {dodo}, more than was spent ({true_dodo})");
                    highest.1 = dodo;
                }
            }
            tokio::time::sleep(Duration::from_millis(rand::random_range(5..40))).await;
        }
        exporter.0.kill().unwrap(); // SIGKILL
        exporter.0.wait().unwrap();
        restarts += 1;
        exporter = start(&config, &state, port);
    }
    spending.store(false, std::sync::atomic::Ordering::SeqCst);
    spender.await.unwrap();
    let (true_fox, true_dodo) = stub.truth();

    // After the last restart, the next polls catch up on everything.
    let deadline = Instant::now() + Duration::from_secs(20);
    let last = loop {
        let last = counters(port).await;
        if last == Some((Some(true_fox), Some(true_dodo))) {
            break last;
        }
        if Instant::now() > deadline {
            panic!("after {restarts} kill -9 restarts: published {last:?}, true spend fox {true_fox}, dodo {true_dodo}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!("crash: {restarts} kill -9 restarts; spend exact: fox {true_fox}, dodo {true_dodo} ({last:?})");
    assert_eq!(restarts, 50);
    assert!(true_fox > Decimal::ZERO && true_dodo > Decimal::ZERO);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_foreign_and_truncated_state_files_are_survived() {
    let (_stub, server, _dir, config, state) = stubs().await;
    std::fs::write(
        &config,
        format!("suppliers:\n  - {{name: fox, kind: foxreload, base_url: '{}', poll_interval: 300ms, min_interval: 0s, auth: {{bearer_token: {FOX_KEY}}}}}\n", server.uri()),
    )
    .unwrap();
    std::fs::create_dir_all(&state).unwrap();
    let cases: [(&str, &[u8], &[u8], &str); 4] = [
        (
            "corrupt",
            b"balance_exporter state v1\n0badc0de {\"v\":1,\"supplier\":\"fox\"}\n\xff\xfe\x00garbage\n",
            b"",
            "damaged or torn state record skipped",
        ),
        ("truncated", b"balance_exporter state v1\n", b"balance_exporter state v1\n1234", "damaged or torn state record skipped"),
        ("foreign", b"balance_exporter state v2\n{}\n", b"", "set aside"),
        ("binary", b"\x00\x01\x02\x03", b"\xc3\x28", "set aside"),
    ];
    for (name, snapshot, journal, warning) in cases {
        std::fs::write(state.join("state.snapshot"), snapshot).unwrap();
        std::fs::write(state.join("state.journal"), journal).unwrap();
        let port = free_port();
        let mut exporter = start(&config, &state, port);
        let deadline = Instant::now() + Duration::from_secs(20);
        while counters(port).await.and_then(|c| c.0).is_none() {
            assert!(Instant::now() < deadline, "{name}: the exporter did not start polling");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        exporter.0.kill().unwrap();
        exporter.0.wait().unwrap();
        let mut stderr = String::new();
        std::io::Read::read_to_string(exporter.0.stderr.as_mut().unwrap(), &mut stderr).unwrap();
        assert!(stderr.contains(warning), "{name}: expected a warning {warning:?}:\n{stderr}");
        assert!(stderr.contains("state."), "{name}: the warning names the file:\n{stderr}");
        let _ = std::fs::remove_file(state.join("state.snapshot.set-aside"));
    }
}
