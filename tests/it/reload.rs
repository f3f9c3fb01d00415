//! Reload adds, removes and rejects; retries honour Retry-After.

use crate::common;

use std::time::{Duration, Instant};

use common::{rewrite, start, wait_for};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

const FOX_BODY: &str = r#"{"balance": {"amount": 284.50, "currency": "USD", "updated_at": "2026-05-01T13:45:22Z"}}"#;
const NOVA_BODY: &str = r#"[{"balance": 4676, "availableBalance": 4676, "reference": "merchant_gh8jpoipkrxhjsm0", "currency": "XOF"}]"#;

fn json(body: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(body.as_bytes().to_vec(), "application/json")
}

#[tokio::test]
async fn reload_adds_removes_and_rejects() {
    let fox = MockServer::start().await;
    Mock::given(method("GET")).respond_with(json(FOX_BODY)).mount(&fox).await;
    let nova = MockServer::start().await;
    Mock::given(method("GET")).respond_with(json(NOVA_BODY)).mount(&nova).await;
    let fox_cfg = format!("  - {{name: fox, kind: foxreload, base_url: '{}', poll_interval: 1m}}\n", fox.uri());
    let nova_cfg = format!("  - {{name: nova, kind: novasend, base_url: '{}', poll_interval: 1m}}\n", nova.uri());

    let (app, dir) = start(&format!("suppliers:\n{fox_cfg}")).await;
    wait_for(&app, Duration::from_secs(10), "fox polled", |s| s.get("supplier_up", &[("supplier", "fox")]) == Some(1.0)).await;

    // Add nova, remove fox.
    rewrite(&dir, &format!("suppliers:\n{nova_cfg}"));
    let client = reqwest::Client::new();
    let resp = client.post(format!("http://{}/-/reload", app.addr)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let s = wait_for(&app, Duration::from_secs(10), "nova polled", |s| s.get("supplier_up", &[("supplier", "nova")]) == Some(1.0)).await;
    assert!(s.series_of("supplier_balance").iter().all(|(k, _)| !k.contains("\"fox\"")), "fox removed:\n{}", s.text);
    assert!(s.series_of("supplier_info").iter().all(|(k, _)| !k.contains("\"fox\"")));
    assert_eq!(s.value("balance_exporter_config_last_reload_successful", &[]), 1.0);

    // An invalid config is rejected with its error; the old one keeps running.
    rewrite(&dir, &format!("suppliers:\n{nova_cfg}  - {{name: bad, kind: foxreload, poll_interval: soon}}\n"));
    let resp = client.post(format!("http://{}/-/reload", app.addr)).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let text = resp.text().await.unwrap();
    assert!(text.contains("suppliers[1].poll_interval: invalid duration \"soon\""), "{text}");
    assert_eq!(text, "config reload failed, keeping the previous config: 1 problem(s) in config:\n  suppliers[1].poll_interval: invalid duration \"soon\" (use e.g. 250ms, 10s, 5m, 1h)\n");
    let s = common::scrape(&app).await;
    assert_eq!(s.value("balance_exporter_config_last_reload_successful", &[]), 0.0);
    assert_eq!(s.value("supplier_up", &[("supplier", "nova")]), 1.0);
    assert_eq!(s.value("supplier_balance", &[("supplier", "nova"), ("account", "merchant_gh8jpoipkrxhjsm0"), ("currency", "XOF")]), 4676.0);

    // GET is not a reload.
    let resp = client.get(format!("http://{}/-/reload", app.addr)).send().await.unwrap();
    assert_eq!(resp.status(), 405);

    // Fixing the file recovers the flag.
    rewrite(&dir, &format!("suppliers:\n{nova_cfg}"));
    assert!(app.reload().await.is_ok());
    assert_eq!(common::scrape(&app).await.value("balance_exporter_config_last_reload_successful", &[]), 1.0);
    app.stop().await;
}

#[tokio::test]
async fn reload_keeps_counters_of_suppliers_that_stay() {
    let fox = MockServer::start().await;
    Mock::given(method("GET")).respond_with(json(FOX_BODY)).up_to_n_times(1).mount(&fox).await;
    Mock::given(method("GET")).respond_with(json(&FOX_BODY.replace("284.50", "200.00"))).mount(&fox).await;
    let cfg = |interval: &str| {
        format!("suppliers:\n  - {{name: fox, kind: foxreload, base_url: '{}', poll_interval: {interval}, min_interval: 0s}}\n", fox.uri())
    };
    let (app, dir) = start(&cfg("500ms")).await;
    let l = [("supplier", "fox"), ("account", "main"), ("currency", "USD")];
    wait_for(&app, Duration::from_secs(10), "spend seen", |s| s.get("supplier_balance_spent_total", &l) == Some(84.5)).await;
    rewrite(&dir, &cfg("1m"));
    app.reload().await.unwrap();
    let s = common::scrape(&app).await;
    assert_eq!(s.value("supplier_balance_spent_total", &l), 84.5, "counter survives a changed config");
    assert_eq!(s.value("supplier_poll_interval_seconds", &[("supplier", "fox")]), 60.0);
    app.stop().await;
}

/// Builds one response when the request arrives (so an HTTP date can be relative to then).
type MakeResponse = Box<dyn Fn() -> ResponseTemplate + Send + Sync>;

fn fixed(r: ResponseTemplate) -> MakeResponse {
    Box::new(move || r.clone())
}

/// Answers a fixed sequence of responses, recording arrival times.
struct Sequence {
    responses: Vec<MakeResponse>,
    times: std::sync::Arc<std::sync::Mutex<Vec<Instant>>>,
}

impl wiremock::Respond for Sequence {
    fn respond(&self, _: &wiremock::Request) -> ResponseTemplate {
        let mut times = self.times.lock().unwrap();
        times.push(Instant::now());
        (self.responses[(times.len() - 1).min(self.responses.len() - 1)])()
    }
}

async fn first_poll_gaps(responses: Vec<MakeResponse>) -> (Vec<Duration>, common::Samples) {
    let server = MockServer::start().await;
    let times = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    Mock::given(method("GET")).respond_with(Sequence { responses, times: times.clone() }).mount(&server).await;
    let cfg =
        format!("suppliers:\n  - {{name: fox, kind: foxreload, base_url: '{}', poll_interval: 1m, min_interval: 0s}}\n", server.uri());
    let (app, _dir) = start(&cfg).await;
    let s = wait_for(&app, Duration::from_secs(15), "first poll done", |s| s.get("supplier_up", &[("supplier", "fox")]).is_some()).await;
    app.stop().await;
    let times = times.lock().unwrap().clone();
    (times.windows(2).map(|w| w[1] - w[0]).collect(), s)
}

#[tokio::test]
async fn retry_after_seconds_ms_and_date_are_honoured_within_a_poll() {
    let (gaps, s) = first_poll_gaps(vec![fixed(ResponseTemplate::new(429).insert_header("Retry-After", "2")), fixed(json(FOX_BODY))]).await;
    assert_eq!(gaps.len(), 1);
    assert!(gaps[0] >= Duration::from_millis(1990), "{gaps:?}");
    assert_eq!(s.value("supplier_up", &[("supplier", "fox")]), 1.0);

    let (gaps, _) =
        first_poll_gaps(vec![fixed(ResponseTemplate::new(503).insert_header("retry-after-ms", "1500")), fixed(json(FOX_BODY))]).await;
    assert!(gaps[0] >= Duration::from_millis(1490) && gaps[0] < Duration::from_millis(2500), "{gaps:?}");

    // An HTTP date 3 s after the 429 is sent (whole seconds: at least 2 s away).
    let dated: MakeResponse = Box::new(|| {
        let date = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(3));
        ResponseTemplate::new(429).insert_header("Retry-After", date.as_str())
    });
    let (gaps, _) = first_poll_gaps(vec![dated, fixed(json(FOX_BODY))]).await;
    assert!(gaps[0] >= Duration::from_millis(1900) && gaps[0] < Duration::from_millis(4500), "{gaps:?}");
}

#[tokio::test]
async fn rate_limited_poll_fails_after_retries_with_its_reason() {
    let (gaps, s) = first_poll_gaps(vec![fixed(ResponseTemplate::new(429))]).await;
    // max_retries 2: three requests, backoff between them.
    assert_eq!(gaps.len(), 2, "{gaps:?}");
    assert!(gaps.iter().all(|g| *g >= Duration::from_millis(500)), "{gaps:?}");
    assert_eq!(s.value("supplier_poll_errors_total", &[("supplier", "fox"), ("reason", "rate_limited")]), 1.0);
}

#[tokio::test]
async fn threshold_change_applies_without_a_new_poll() {
    let fox = MockServer::start().await;
    Mock::given(method("GET")).respond_with(json(FOX_BODY)).mount(&fox).await;
    let cfg = |low: &str| {
        format!("suppliers:\n  - {{name: fox, kind: foxreload, base_url: '{}', poll_interval: 10m, thresholds: [{{currency: USD, low: {low}}}]}}\n", fox.uri())
    };
    let (app, dir) = start(&cfg("100")).await;
    let l = [("supplier", "fox"), ("account", "main"), ("currency", "USD")];
    wait_for(&app, Duration::from_secs(10), "polled", |s| s.get("supplier_balance_low_threshold", &l) == Some(100.0)).await;
    rewrite(&dir, &cfg("300.25"));
    app.reload().await.unwrap();
    let s = common::scrape(&app).await;
    assert_eq!(s.value("supplier_balance_low_threshold", &l), 300.25);
    assert_eq!(s.value("supplier_balance", &l), 284.5);
    tokio::time::sleep(Duration::from_secs(4)).await;
    // The poll task kept its schedule: no second poll after the reload.
    assert_eq!(fox.received_requests().await.unwrap().len(), 1);
    app.stop().await;
}

/// The requests `server` received carrying an Authorization header, in order.
async fn authorizations(server: &MockServer) -> Vec<String> {
    let requests = server.received_requests().await.unwrap_or_default();
    requests.iter().filter_map(|r| r.headers.get("authorization").map(|v| v.to_str().unwrap_or("").to_string())).collect()
}

/// Waits until `server` has seen `auth`; panics after `limit` with what it saw.
async fn wait_for_auth(server: &MockServer, auth: &str, limit: Duration) {
    let start = Instant::now();
    loop {
        let seen = authorizations(server).await;
        if seen.iter().any(|a| a == auth) {
            return;
        }
        assert!(start.elapsed() < limit, "no request with {auth:?} within {limit:?}; seen: {seen:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

#[tokio::test]
async fn auto_reload_picks_up_rotated_secret_files_without_restart_or_half_written_reads() {
    const INTERVAL: Duration = Duration::from_millis(300);
    let fox = MockServer::start().await;
    Mock::given(method("GET")).respond_with(json(FOX_BODY)).mount(&fox).await;
    let nova = MockServer::start().await;
    Mock::given(method("GET")).respond_with(json(NOVA_BODY)).mount(&nova).await;
    let dir = tempfile::tempdir().unwrap();
    let (token, password) = (dir.path().join("token"), dir.path().join("password"));
    std::fs::write(&token, "old-token\n").unwrap();
    std::fs::write(&password, "old-pass").unwrap();
    let config = dir.path().join("balance_exporter.yml");
    std::fs::write(
        &config,
        format!(
            "suppliers:\n  - {{name: fox, kind: foxreload, base_url: '{}', poll_interval: 200ms, min_interval: 0s, \
             auth: {{bearer_token_file: '{}'}}}}\n  - {{name: nova, kind: novasend, base_url: '{}', poll_interval: 200ms, \
             min_interval: 0s, auth: {{basic: {{username: ops, password_file: '{}'}}}}}}\n",
            fox.uri(),
            token.display(),
            nova.uri(),
            password.display()
        ),
    )
    .unwrap();
    let app = balance_exporter::app::App::start(balance_exporter::app::Options {
        config_file: Some(config),
        listen_address: "127.0.0.1:0".into(),
        telemetry_path: "/metrics".into(),
        auto_reload_interval: INTERVAL,
        ..Default::default()
    })
    .await
    .expect("exporter starts");
    wait_for_auth(&fox, "Bearer old-token", Duration::from_secs(10)).await;
    wait_for_auth(&nova, &basic("ops", "old-pass"), Duration::from_secs(10)).await;
    let polls_before = common::scrape(&app).await.value("supplier_polls_total", &[("supplier", "fox")]);

    // Rotate both files the slow way: a partial write that lasts a third of an
    // interval (one check can see it, never two), then the rest.
    std::fs::write(&token, "new-").unwrap();
    std::fs::write(&password, "new-").unwrap();
    tokio::time::sleep(INTERVAL / 3).await;
    std::fs::write(&token, "new-token\n").unwrap();
    std::fs::write(&password, "new-pass").unwrap();
    wait_for_auth(&fox, "Bearer new-token", Duration::from_secs(10)).await;
    wait_for_auth(&nova, &basic("ops", "new-pass"), Duration::from_secs(10)).await;

    let fox_seen = authorizations(&fox).await;
    assert!(!fox_seen.iter().any(|a| a == "Bearer new-"), "a half-written token was sent: {fox_seen:?}");
    let nova_seen = authorizations(&nova).await;
    assert!(!nova_seen.contains(&basic("ops", "new-")), "a half-written password was sent");
    // Once the new secret is in use, the old one is never sent again.
    let first_new = fox_seen.iter().position(|a| a == "Bearer new-token").unwrap();
    assert!(fox_seen[first_new..].iter().all(|a| a == "Bearer new-token"), "{fox_seen:?}");
    let s = common::scrape(&app).await;
    assert_eq!(s.value("balance_exporter_config_last_reload_successful", &[]), 1.0);
    assert!(s.value("supplier_polls_total", &[("supplier", "fox")]) > polls_before, "same process, counters go on");
    app.stop().await;
}

#[tokio::test]
async fn auto_reload_keeps_the_old_config_when_the_new_one_is_invalid_and_applies_the_web_config() {
    const INTERVAL: Duration = Duration::from_millis(200);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("balance_exporter.yml");
    std::fs::write(&config, "suppliers: []\n").unwrap();
    let web = dir.path().join("web.yml");
    let users = |password: &str| format!("basic_auth_users:\n  admin: '{}'\n", bcrypt::hash(password, 4).unwrap());
    std::fs::write(&web, users("first")).unwrap();
    let opts = balance_exporter::app::Options {
        config_file: Some(config.clone()),
        listen_address: "127.0.0.1:0".into(),
        telemetry_path: "/metrics".into(),
        auto_reload_interval: INTERVAL,
        ..Default::default()
    };
    let app = balance_exporter::app::App::start_with_web_config(opts, Some(web.clone())).await.expect("exporter starts");
    let client = reqwest::Client::new();
    let url = format!("http://{}/metrics", app.addr);
    let status = |password: &'static str| {
        let (client, url) = (client.clone(), url.clone());
        async move { client.get(&url).basic_auth("admin", Some(password)).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status("first").await, 200);

    // The exporter's own password is rotated in the web config.
    std::fs::write(&web, users("second")).unwrap();
    let start = Instant::now();
    while status("second").await != 200 {
        assert!(start.elapsed() < Duration::from_secs(10), "new web config not applied");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status("first").await, 401);

    // A broken config is tried once, flagged, and the running one kept.
    std::fs::write(&config, "suppliers: [{name: bad, kind: foxreload, poll_interval: soon}]\n").unwrap();
    let start = Instant::now();
    loop {
        let resp = client.get(&url).basic_auth("admin", Some("second")).send().await.unwrap().text().await.unwrap();
        if resp.contains("balance_exporter_config_last_reload_successful 0") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "failed reload not flagged:\n{resp}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status("second").await, 200, "web config kept");
    app.stop().await;
}
