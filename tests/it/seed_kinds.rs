//! The three seed kinds against stub suppliers over real HTTP, with the exact
//! bodies, auth and error shapes of SUPPLIERS.md, read back from /metrics.

use crate::common;

use std::time::Duration;

use common::{start, wait_for};
use wiremock::matchers::{body_string, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const FOX_BODY: &str = r#"{"balance": {"amount": 284.50, "currency": "USD", "updated_at": "2026-05-01T13:45:22Z"}}"#;
const NOVA_BODY: &str = r#"[{"balance": 4676, "availableBalance": 4676, "reference": "merchant_gh8jpoipkrxhjsm0", "currency": "XOF"},
    {"balance": 1230, "availableBalance": 980, "reference": "merchant_usd_ahjs87s2", "currency": "USD"}]"#;
const VAI_BODY: &str = r#"{"statusCode": 200, "message": "Success", "data": {"usd": {"balance": 1250.75, "freeze": 100.00, "usable": 1150.75},
  "khr": {"balance": 5000000.00, "freeze": 250000.00, "usable": 4750000.00}}, "traceId": "trace_abc123"}"#;

fn json(body: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(body.as_bytes().to_vec(), "application/json")
}

#[tokio::test]
async fn foxreload_novasend_vai247_exact_values() {
    let fox = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/balance"))
        .and(header("authorization", "Bearer fox_secret_1"))
        .respond_with(json(FOX_BODY))
        .mount(&fox)
        .await;
    let nova = MockServer::start().await;
    // base64("ns_key:ns_client")
    Mock::given(method("GET"))
        .and(path("/v1/balance"))
        .and(header("authorization", "Basic bnNfa2V5Om5zX2NsaWVudA=="))
        .respond_with(json(NOVA_BODY))
        .mount(&nova)
        .await;
    let vai = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v1/payment-gateway/balance-inquiry"))
        .and(header("x-api-key", "vai_secret_1"))
        .and(body_string(""))
        .respond_with(json(VAI_BODY))
        .mount(&vai)
        .await;

    let config = format!(
        "suppliers:
  - {{name: fox, kind: foxreload, base_url: '{}', auth: {{bearer_token: fox_secret_1}}, poll_interval: 1m}}
  - {{name: nova, kind: novasend, base_url: '{}', auth: {{basic: {{username: ns_key, password: ns_client}}}}, poll_interval: 1m}}
  - {{name: vai, kind: vai247, base_url: '{}', auth: {{header: {{name: X-Api-Key, value: vai_secret_1}}}}, poll_interval: 1m,
      thresholds: [{{currency: KHR, low: 1000000, runway_days: 2.5}}]}}
",
        fox.uri(),
        nova.uri(),
        vai.uri()
    );
    let (app, _dir) = start(&config).await;
    let s = wait_for(&app, Duration::from_secs(15), "all three polled", |s| {
        ["fox", "nova", "vai"].iter().all(|n| s.get("supplier_up", &[("supplier", n)]) == Some(1.0))
    })
    .await;
    let fox_l = [("supplier", "fox"), ("account", "main"), ("currency", "USD")];
    assert_eq!(s.value("supplier_balance", &fox_l), 284.50);
    assert_eq!(s.value("supplier_balance_usable", &fox_l), 284.50);
    assert_eq!(s.value("supplier_balance_frozen", &fox_l), 0.0);
    assert_eq!(s.value("supplier_balance_updated_timestamp_seconds", &fox_l), 1_777_643_122.0);

    let xof = [("supplier", "nova"), ("account", "merchant_gh8jpoipkrxhjsm0"), ("currency", "XOF")];
    assert_eq!(s.value("supplier_balance", &xof), 4676.0);
    assert_eq!(s.value("supplier_balance_frozen", &xof), 0.0);
    let usd = [("supplier", "nova"), ("account", "merchant_usd_ahjs87s2"), ("currency", "USD")];
    assert_eq!(s.value("supplier_balance", &usd), 1230.0);
    assert_eq!(s.value("supplier_balance_usable", &usd), 980.0);
    assert_eq!(s.value("supplier_balance_frozen", &usd), 250.0);

    let khr = [("supplier", "vai"), ("account", "main"), ("currency", "KHR")];
    assert_eq!(s.value("supplier_balance_usable", &khr), 4_750_000.0);
    assert_eq!(s.value("supplier_balance_frozen", &khr), 250_000.0);
    assert_eq!(s.value("supplier_balance_low_threshold", &khr), 1_000_000.0);
    assert_eq!(s.value("supplier_balance_runway_threshold_seconds", &khr), 2.5 * 86_400.0);
    let vusd = [("supplier", "vai"), ("account", "main"), ("currency", "USD")];
    assert_eq!(s.value("supplier_balance", &vusd), 1250.75);
    assert_eq!(s.get("supplier_balance_low_threshold", &vusd), None);
    // The exposition's own exact text: 284.5, not 284.49999.
    assert!(s.text.contains("supplier_balance{supplier=\"fox\",account=\"main\",currency=\"USD\"} 284.5\n"));
    assert_eq!(s.value("supplier_info", &[("supplier", "vai"), ("kind", "vai247")]), 1.0);
    assert_eq!(s.value("supplier_poll_interval_seconds", &[("supplier", "fox")]), 60.0);
    assert_eq!(s.value("supplier_polls_total", &[("supplier", "nova")]), 1.0);
    // A reason's counter appears with its first failure.
    assert_eq!(s.get("supplier_poll_errors_total", &[("supplier", "nova"), ("reason", "auth")]), None);
    let took = s.value("supplier_poll_duration_seconds", &[("supplier", "fox")]);
    assert!(took > 0.0 && took < 5.0, "{took}");
    assert_eq!(s.value("balance_exporter_poll_duration_seconds_count", &[]), 3.0);
    assert_eq!(s.value("balance_exporter_config_last_reload_successful", &[]), 1.0);
    app.stop().await;
}

#[tokio::test]
async fn error_bodies_map_to_reasons_and_keep_last_balances() {
    let fox = MockServer::start().await;
    Mock::given(method("GET")).and(path("/balance")).respond_with(json(FOX_BODY)).up_to_n_times(1).mount(&fox).await;
    Mock::given(method("GET"))
        .and(path("/balance"))
        .respond_with(ResponseTemplate::new(401).set_body_string(r#"{"error":"invalid key fox_secret_2"}"#))
        .mount(&fox)
        .await;
    // Vai247: HTTP 200 but statusCode 401 in the body.
    let vai = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(json(r#"{"statusCode": 401, "message": "Unauthorized - invalid API credentials", "error": "Unauthorized"}"#))
        .mount(&vai)
        .await;
    // NovaSend: 403 account disabled with its documented body.
    let nova = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(403)
                .set_body_string(r#"{"statusCode":403,"message":"account disabled","error":"Forbidden","correlationId":"c-1"}"#),
        )
        .mount(&nova)
        .await;

    let config = format!(
        "suppliers:
  - {{name: fox, kind: foxreload, base_url: '{}', auth: {{bearer_token: fox_secret_2}}, poll_interval: 1s, min_interval: 0s}}
  - {{name: vai, kind: vai247, base_url: '{}', auth: {{header: {{name: X-Api-Key, value: vai_secret_2}}}}, poll_interval: 1m}}
  - {{name: nova, kind: novasend, base_url: '{}', auth: {{basic: {{username: k, password: c}}}}, poll_interval: 1m}}
",
        fox.uri(),
        vai.uri(),
        nova.uri()
    );
    let (app, _dir) = start(&config).await;
    let s = wait_for(&app, Duration::from_secs(15), "fox fails after one success", |s| {
        s.get("supplier_poll_errors_total", &[("supplier", "fox"), ("reason", "auth")]).unwrap_or(0.0) >= 1.0
            && s.get("supplier_up", &[("supplier", "vai")]).is_some()
            && s.get("supplier_up", &[("supplier", "nova")]).is_some()
    })
    .await;
    let fox_l = [("supplier", "fox"), ("account", "main"), ("currency", "USD")];
    assert_eq!(s.value("supplier_up", &[("supplier", "fox")]), 0.0);
    assert_eq!(s.value("supplier_balance", &fox_l), 284.50, "last good balance kept");
    assert!(s.value("supplier_last_success_timestamp_seconds", &[("supplier", "fox")]) > 1.7e9);
    assert_eq!(s.value("supplier_up", &[("supplier", "vai")]), 0.0);
    assert_eq!(s.value("supplier_poll_errors_total", &[("supplier", "vai"), ("reason", "auth")]), 1.0);
    assert_eq!(s.get("supplier_last_success_timestamp_seconds", &[("supplier", "vai")]), None);
    assert_eq!(s.value("supplier_poll_errors_total", &[("supplier", "nova"), ("reason", "forbidden")]), 1.0);
    // 401/403 are not retried within a poll: one request each.
    assert_eq!(vai.received_requests().await.unwrap().len(), 1);
    assert_eq!(nova.received_requests().await.unwrap().len(), 1);
    // The landing page shows the reason, never the secret the 401 body echoed.
    let (_, html) = common::get(&app, "/").await;
    assert!(html.contains("auth"), "{html}");
    assert!(html.contains("account disabled"));
    assert!(!html.contains("fox_secret_2"), "{html}");
    assert!(!s.text.contains("secret"));
    app.stop().await;
}

#[tokio::test]
async fn spend_and_top_up_counters_follow_balance_changes() {
    let fox = MockServer::start().await;
    for amount in ["284.50", "280.40", "0.10"] {
        let body = FOX_BODY.replace("284.50", amount);
        Mock::given(method("GET")).respond_with(json(&body)).up_to_n_times(1).mount(&fox).await;
    }
    Mock::given(method("GET")).respond_with(json(&FOX_BODY.replace("284.50", "500.10"))).mount(&fox).await;
    let config =
        format!("suppliers:\n  - {{name: fox, kind: foxreload, base_url: '{}', poll_interval: 300ms, min_interval: 0s}}\n", fox.uri());
    let (app, _dir) = start(&config).await;
    let l = [("supplier", "fox"), ("account", "main"), ("currency", "USD")];
    let s = wait_for(&app, Duration::from_secs(15), "four polls", |s| s.get("supplier_balance", &l) == Some(500.10)).await;
    assert_eq!(s.value("supplier_balance_spent_total", &l), 284.40);
    assert_eq!(s.value("supplier_balance_topped_up_total", &l), 500.0);
    app.stop().await;
}

/// Records when each request arrived, then answers with a fixed body.
struct Recorder {
    times: std::sync::Arc<std::sync::Mutex<Vec<std::time::Instant>>>,
    body: &'static str,
}

impl wiremock::Respond for Recorder {
    fn respond(&self, _: &wiremock::Request) -> ResponseTemplate {
        self.times.lock().unwrap().push(std::time::Instant::now());
        json(self.body)
    }
}

#[tokio::test]
async fn novasend_is_never_polled_twice_within_ten_seconds() {
    let nova = MockServer::start().await;
    let times = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    Mock::given(method("GET")).respond_with(Recorder { times: times.clone(), body: NOVA_BODY }).mount(&nova).await;
    // Asks for a poll every second; the kind's documented limit (10 s) wins.
    let config = format!("suppliers:\n  - {{name: nova, kind: novasend, base_url: '{}', poll_interval: 1s}}\n", nova.uri());
    let (app, _dir) = start(&config).await;
    tokio::time::sleep(Duration::from_millis(21_000)).await;
    app.stop().await;
    let times = times.lock().unwrap().clone();
    assert_eq!(times.len(), 3, "polls at ~0 s, ~10 s and ~20 s");
    // The limiter spaces request starts 10 s apart (exactly, on tokio's clock: see the
    // paused-clock tests in src/upstream.rs). Arrival times here also carry the first
    // request's TCP connect, which the later ones on the kept-alive connection skip; on a
    // loaded 2-core machine that has been 14 ms, so arrivals are allowed 100 ms of it.
    for pair in times.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap >= Duration::from_millis(9_900), "requests {gap:?} apart");
    }
}
