//! The read API (`/api/v1/balances`, `/api/v1/balances/check`) over real
//! HTTP: the exporter against stub suppliers, exact decimal strings, the
//! 400/404/405/503 answers, staleness on a real clock, hostile request
//! bytes, and basic auth in front of it like every route.

use crate::common;

use std::time::Duration;

use balance_exporter::app::{App, Options};
use common::{start, wait_for};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const FOX_BODY: &str = r#"{"balance": {"amount": 284.50, "currency": "USD", "updated_at": "2026-05-01T13:45:22Z"}}"#;
/// Two USD sub-accounts (the check must be told which) and one XOF.
const NOVA_BODY: &str = r#"[{"balance": 1230.00, "availableBalance": 980.10, "reference": "merchant_usd_a", "currency": "USD"},
    {"balance": 75, "availableBalance": 75, "reference": "merchant_usd_b", "currency": "USD"},
    {"balance": 4676, "availableBalance": 4676, "reference": "merchant_gh8jpoipkrxhjsm0", "currency": "XOF"}]"#;

fn json_body(body: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(body.as_bytes().to_vec(), "application/json")
}

/// A stub answering `GET route` with `body`.
async fn stub(route: &str, body: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET")).and(path(route)).respond_with(body).mount(&server).await;
    server
}

/// fox (foxreload, low 200 USD), nova (novasend, two USD accounts), down (401 from the start).
async fn suppliers_config() -> (String, [MockServer; 3]) {
    let fox = stub("/balance", json_body(FOX_BODY)).await;
    let nova = stub("/v1/balance", json_body(NOVA_BODY)).await;
    let down = stub("/balance", ResponseTemplate::new(401)).await;
    let config = format!(
        "suppliers:
  - {{name: fox, kind: foxreload, base_url: '{}', auth: {{bearer_token: fox_secret_1}}, poll_interval: 1m,
      thresholds: [{{currency: USD, low: '200.00'}}]}}
  - {{name: nova, kind: novasend, base_url: '{}', auth: {{basic: {{username: ns_key, password: ns_client}}}}, poll_interval: 1m}}
  - {{name: down, kind: foxreload, base_url: '{}', auth: {{bearer_token: down_secret_1}}, poll_interval: 1m}}
",
        fox.uri(),
        nova.uri(),
        down.uri()
    );
    (config, [fox, nova, down])
}

async fn wait_polled(app: &App) {
    wait_for(app, Duration::from_secs(15), "fox and nova up, down failed", |s| {
        s.get("supplier_up", &[("supplier", "fox")]) == Some(1.0)
            && s.get("supplier_up", &[("supplier", "nova")]) == Some(1.0)
            && s.get("supplier_up", &[("supplier", "down")]) == Some(0.0)
    })
    .await;
}

/// `(status, Content-Type, body as JSON)` of a GET of `target`.
async fn get_json(client: &reqwest::Client, app: &App, target: &str, auth: Option<(&str, &str)>) -> (u16, String, Value) {
    let mut req = client.get(format!("http://{}{target}", app.addr));
    if let Some((user, pass)) = auth {
        req = req.basic_auth(user, Some(pass));
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let content_type = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{target}: not JSON ({e}): {text}"));
    (status, content_type, body)
}

#[tokio::test]
async fn balances_and_check_over_http_with_exact_strings() {
    let (config, _stubs) = suppliers_config().await;
    let (app, _dir) = start(&config).await;
    wait_polled(&app).await;
    let client = reqwest::Client::new();
    let get = |target: &'static str| get_json(&client, &app, target, None);

    let (status, content_type, body) = get("/api/v1/balances").await;
    assert_eq!((status, content_type.as_str()), (200, "application/json"));
    let suppliers = body["suppliers"].as_array().unwrap();
    assert_eq!(suppliers.iter().map(|s| s["supplier"].as_str().unwrap()).collect::<Vec<_>>(), ["fox", "nova", "down"]);
    let fox = &suppliers[0];
    assert_eq!((&fox["kind"], &fox["up"], &fox["last_error_reason"]), (&json!("foxreload"), &json!(true), &Value::Null));
    assert!(fox["last_success"].as_str().unwrap().ends_with('Z'), "RFC 3339 UTC: {fox}");
    let b = &fox["balances"][0];
    assert_eq!(
        (&b["account"], &b["currency"], &b["balance"], &b["frozen"], &b["usable"]),
        (&json!("main"), &json!("USD"), &json!("284.50"), &json!("0"), &json!("284.50")),
        "exact decimal strings as the supplier sent them"
    );
    assert_eq!((&b["updated_at"], &b["low_threshold"]), (&json!("2026-05-01T13:45:22Z"), &json!("200.00")));
    assert!(b["age_seconds"].as_u64().unwrap() < 15, "{b}");
    let nova_balances = suppliers[1]["balances"].as_array().unwrap();
    let accounts: Vec<&str> = nova_balances.iter().map(|b| b["account"].as_str().unwrap()).collect();
    assert_eq!(accounts, ["merchant_gh8jpoipkrxhjsm0", "merchant_usd_a", "merchant_usd_b"], "by account, then currency");
    let a = &nova_balances[1];
    assert_eq!(
        (&a["account"], &a["balance"], &a["frozen"], &a["usable"]),
        (&json!("merchant_usd_a"), &json!("1230.00"), &json!("249.90"), &json!("980.10"))
    );
    let down = &suppliers[2];
    assert_eq!(
        (&down["up"], &down["last_success"], &down["last_error_reason"], &down["balances"]),
        (&json!(false), &Value::Null, &json!("auth"), &json!([]))
    );

    let (status, _, body) = get("/api/v1/balances?supplier=nova").await;
    assert_eq!((status, body["suppliers"].as_array().unwrap().len()), (200, 1));

    let (status, _, body) = get("/api/v1/balances/check?supplier=fox&currency=USD&amount=100").await;
    assert_eq!(status, 200);
    let age = body["age_seconds"].as_u64().unwrap();
    assert_eq!(
        body,
        json!({"sufficient": true, "usable": "284.50", "after": "184.50", "below_low_threshold_after": true,
               "stale": false, "age_seconds": age, "account": "main", "currency": "USD"})
    );
    let (_, _, body) = get("/api/v1/balances/check?supplier=fox&currency=usd&amount=284.51").await;
    assert_eq!((&body["sufficient"], &body["after"]), (&json!(false), &json!("-0.01")));
    let (_, _, body) = get("/api/v1/balances/check?supplier=nova&currency=USD&account=merchant_usd_a&amount=980.10").await;
    assert_eq!((&body["sufficient"], &body["after"], &body["below_low_threshold_after"]), (&json!(true), &json!("0.00"), &json!(false)));
    let (status, _, body) = get("/api/v1/balances/check?supplier=nova&currency=XOF&amount=4676").await;
    assert_eq!((status, &body["account"], &body["after"]), (200, &json!("merchant_gh8jpoipkrxhjsm0"), &json!("0")), "the only XOF account");

    // The error answers: JSON with the parameter at fault.
    for (target, want_status, want_parameter) in [
        ("/api/v1/balances?supplier=nope", 404, Some("supplier")),
        ("/api/v1/balances/check?supplier=nope&currency=USD&amount=1", 404, Some("supplier")),
        ("/api/v1/balances/check?supplier=fox&currency=EUR&amount=1", 404, Some("currency")),
        ("/api/v1/balances/check?supplier=fox&currency=USD&amount=1&account=vip", 404, Some("account")),
        ("/api/v1/balances/check?supplier=down&currency=USD&amount=1", 503, Some("supplier")),
        ("/api/v1/balances/check?supplier=nova&currency=USD&amount=1", 400, Some("account")),
        ("/api/v1/balances/check?supplier=fox&currency=USD", 400, Some("amount")),
        ("/api/v1/balances/check?supplier=fox&currency=USD&amount=-1", 400, Some("amount")),
        ("/api/v1/balances/check?supplier=fox&currency=USD&amount=1e3", 400, Some("amount")),
        ("/api/v1/balances/check?supplier=fox&currency=USD&amount=%00", 400, Some("amount")),
        ("/api/v1/balances/check?supplier=fox&currency=USD&amount=%FF%FE", 400, Some("amount")),
        ("/api/v1/balances/check?supplier=fox&currency=USD&amount=79228162514264337593543950336", 400, Some("amount")),
        ("/api/v1/balances/check?supplier=fox&currency=USD&amount=%EF%BC%91", 400, Some("amount")),
        ("/api/v1/balances/check?supplier=fox&currency=USD&amount=1&verbose=1", 400, Some("verbose")),
        ("/api/v1/nothing", 404, None),
    ] {
        let (status, content_type, body) = get(target).await;
        assert_eq!((status, content_type.as_str()), (want_status, "application/json"), "{target}: {body}");
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{target}: {body}");
        assert_eq!(body.get("parameter").and_then(Value::as_str), want_parameter, "{target}: {body}");
    }

    // Read-only: other methods are 405 with Allow.
    for path in ["/api/v1/balances", "/api/v1/balances/check"] {
        for m in [reqwest::Method::POST, reqwest::Method::PUT, reqwest::Method::DELETE] {
            let resp = client.request(m.clone(), format!("http://{}{path}", app.addr)).body("{}").send().await.unwrap();
            assert_eq!(resp.status(), 405, "{m} {path}");
            assert_eq!(resp.headers()["allow"], "GET, HEAD");
            assert_eq!(resp.headers()["content-type"], "application/json");
        }
    }

    // The landing page links the API.
    let (status, page) = common::get(&app, "/").await;
    assert_eq!(status, 200);
    assert!(page.contains("<a href=\"/api/v1/balances\""), "{page}");
    app.stop().await;
}

/// Raw request bytes no client library would send: the exporter answers
/// each with a 400 (hyper refuses bytes a URI cannot hold; the API refuses
/// the rest) and keeps serving.
#[tokio::test]
async fn hostile_request_lines_get_400_and_the_server_stays_up() {
    let (config, _stubs) = suppliers_config().await;
    let (app, _dir) = start(&config).await;
    wait_polled(&app).await;
    let raw: [&[u8]; 5] = [
        b"GET /api/v1/balances/check?supplier=fox&currency=USD&amount=\xff\xfe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET /api/v1/balances/check?supplier=fox&currency=USD&amount=\xe2\x82\xac HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET /api/v1/balances/check?supplier=fox&currency=USD&amount=1\x00 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET /api/v1/balances/check?supplier=fox&currency=USD&amount=%zz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET /api/v1/balances/check?supplier=fox&currency=USD&amount=1%201 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ];
    for request in raw {
        let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await.expect("answered").unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 400"), "{}: {answer}", String::from_utf8_lossy(request));
    }
    let (status, _) = common::get(&app, "/api/v1/balances/check?supplier=fox&currency=USD&amount=1").await;
    assert_eq!(status, 200, "still serving");
    app.stop().await;
}

/// On a real clock: the last success of a 500 ms poll interval older than
/// 1 s makes the balance stale; `sufficient` turns false unless allowed.
#[tokio::test]
async fn stale_balance_is_not_sufficient_unless_allowed() {
    let fox = MockServer::start().await;
    Mock::given(method("GET")).and(path("/balance")).respond_with(json_body(FOX_BODY)).up_to_n_times(1).mount(&fox).await;
    Mock::given(method("GET")).and(path("/balance")).respond_with(ResponseTemplate::new(401)).mount(&fox).await;
    let config = format!(
        "suppliers:\n  - {{name: fox, kind: foxreload, base_url: '{}', auth: {{bearer_token: t}}, poll_interval: 500ms, min_interval: 100ms}}\n",
        fox.uri()
    );
    let (app, _dir) = start(&config).await;
    let client = reqwest::Client::new();
    let check = |extra: &'static str| {
        let (client, app) = (&client, &app);
        async move { get_json(client, app, &format!("/api/v1/balances/check?supplier=fox&currency=USD&amount=10{extra}"), None).await }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let body = loop {
        let (status, _, body) = check("").await;
        if status == 200 && body["stale"] == json!(true) {
            break body;
        }
        assert!(tokio::time::Instant::now() < deadline, "never stale: {status} {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!((&body["sufficient"], &body["usable"], &body["after"]), (&json!(false), &json!("284.50"), &json!("274.50")));
    assert!(body["age_seconds"].as_u64().is_some());
    let (_, _, allowed) = check("&allow_stale=true").await;
    assert_eq!((&allowed["stale"], &allowed["sufficient"]), (&json!(true), &json!(true)));
    app.stop().await;
}

#[tokio::test]
async fn api_is_behind_basic_auth() {
    let (config, _stubs) = suppliers_config().await;
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("balance_exporter.yml");
    std::fs::write(&config_path, config).unwrap();
    let web_path = dir.path().join("web.yml");
    std::fs::write(&web_path, format!("basic_auth_users:\n  orders: '{}'\n", bcrypt::hash("0rder-pass", 4).unwrap())).unwrap();
    let opts = Options {
        config_file: Some(config_path),
        listen_address: "127.0.0.1:0".into(),
        telemetry_path: "/metrics".into(),
        ..Default::default()
    };
    let app = App::start_with_web_config(opts, Some(web_path)).await.expect("exporter starts");
    let client = reqwest::Client::new();
    let url = |target: &str| format!("http://{}{target}", app.addr);

    for target in ["/api/v1/balances", "/api/v1/balances/check?supplier=fox&currency=USD&amount=1", "/api/v1/nothing"] {
        let resp = client.get(url(target)).send().await.unwrap();
        assert_eq!(resp.status(), 401, "{target} without credentials");
        assert!(resp.headers().contains_key("www-authenticate"));
        let resp = client.get(url(target)).basic_auth("orders", Some("wrong-Pa55-guess")).send().await.unwrap();
        assert_eq!(resp.status(), 401, "{target} with a wrong password");
        assert!(!resp.text().await.unwrap().contains("wrong-Pa55-guess"), "credentials are never echoed");
    }
    assert_eq!(client.post(url("/api/v1/balances")).send().await.unwrap().status(), 401, "auth before the method check");

    wait_for_up(&client, &app).await;
    let auth = Some(("orders", "0rder-pass"));
    let (status, content_type, body) = get_json(&client, &app, "/api/v1/balances?supplier=fox", auth).await;
    assert_eq!((status, content_type.as_str()), (200, "application/json"));
    assert_eq!(body["suppliers"][0]["balances"][0]["usable"], "284.50");
    let (status, _, body) = get_json(&client, &app, "/api/v1/balances/check?supplier=fox&currency=USD&amount=84.5", auth).await;
    assert_eq!((status, &body["after"], &body["sufficient"]), (200, &json!("200.00"), &json!(true)));
    // An error answer names the parameter, never the credentials.
    let resp = client
        .get(url("/api/v1/balances/check?supplier=fox&currency=USD&amount=x"))
        .basic_auth("orders", Some("0rder-pass"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let text = resp.text().await.unwrap();
    assert!(!text.contains("0rder-pass") && !text.contains("orders") && !text.contains("Basic"), "{text}");
    app.stop().await;
}

/// Waits (with credentials) until fox has been polled successfully.
async fn wait_for_up(client: &reqwest::Client, app: &App) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (status, _, body) = get_json(client, app, "/api/v1/balances?supplier=fox", Some(("orders", "0rder-pass"))).await;
        if status == 200 && body["suppliers"][0]["up"] == json!(true) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "fox never up: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
