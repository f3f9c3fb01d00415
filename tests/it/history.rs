//! Issue 18: the poll history on the supplier page `/supplier/{name}` and the
//! debug poll `/-/debug/poll`, against stub suppliers over real HTTP.
//! Statuses, reasons and rows are asserted exactly; no secret appears.

use crate::common;

use std::time::Duration;

use balance_exporter::app::App;
use serde_json::Value;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "sk_live_history_token_4e2a";
const FOX: &str = r#"{"balance": {"amount": 284.50, "currency": "USD", "updated_at": "2026-05-01T13:45:22Z"}}"#;

/// Starts the exporter on `config` with `--web.enable-debug` as asked and an optional web config.
async fn start(config: &str, debug: bool, web: Option<&str>) -> (App, tempfile::TempDir) {
    common::start_with(config, |o| o.enable_debug = debug, web).await
}

fn fox(server: &MockServer, name: &str, poll_interval: &str, min_interval: &str) -> String {
    format!(
        "suppliers:\n  - {{name: '{name}', kind: foxreload, base_url: '{}', poll_interval: {poll_interval}, min_interval: {min_interval}, max_retries: 0, auth: {{bearer_token: {TOKEN}}}}}\n",
        server.uri()
    )
}

fn polls(s: &common::Samples, supplier: &str) -> f64 {
    s.get("supplier_polls_total", &[("supplier", supplier)]).unwrap_or(0.0)
}

/// `(data-outcome, data-status, requests cell)` of the poll rows, in page order.
fn poll_rows(html: &str) -> Vec<(String, String, String)> {
    let table = html.split("<table id=\"polls\">").nth(1).unwrap().split("</table>").next().unwrap();
    table
        .split("<tr class=\"")
        .skip(1)
        .filter(|r| r.contains("data-outcome"))
        .map(|r| {
            let attr = |k: &str| r.split(&format!("{k}=\"")).nth(1).unwrap().split('"').next().unwrap().to_string();
            let requests = r.split("data-label=\"requests\">").nth(1).unwrap().split('<').next().unwrap().to_string();
            (attr("data-outcome"), attr("data-status"), requests)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supplier_page_shows_each_poll_with_its_status_and_reason_and_no_secret() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/balance"))
        .respond_with(ResponseTemplate::new(200).set_body_string(FOX))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    // The supplier echoes our key back in its error answers: the page must not.
    Mock::given(method("GET"))
        .and(path("/balance"))
        .respond_with(ResponseTemplate::new(503).set_body_string(format!("{{\"error\":\"maintenance\",\"echo\":\"Bearer {TOKEN}\"}}")))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/balance"))
        .respond_with(ResponseTemplate::new(401).set_body_string(format!("{{\"message\":\"invalid key {TOKEN} <script>\"}}")))
        .mount(&server)
        .await;
    let name = "fox.co-1";
    let (app, _dir) = start(&fox(&server, name, "300ms", "0s"), false, None).await;
    common::wait_for(&app, Duration::from_secs(15), "three polls", |s| polls(s, name) >= 3.0).await;

    // The landing page links the name to its page.
    let (status, landing) = common::get(&app, "/").await;
    assert_eq!(status, 200);
    let href = "/supplier/fox.co-1";
    assert!(landing.contains(&format!("<a class=\"name\" href=\"{href}\">fox.co-1</a>")), "{landing}");

    let resp = reqwest::get(format!("http://{}{href}", app.addr)).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-security-policy"], "default-src 'none'; style-src 'unsafe-inline'; img-src data:");
    assert_eq!(resp.headers()["content-type"], "text/html; charset=utf-8");
    let page = resp.text().await.unwrap();
    let rows = poll_rows(&page);
    assert!(rows.len() >= 3, "{rows:?}");
    // Newest first: the 401s, then the 503, then the first success.
    let n = rows.len();
    assert_eq!(rows[n - 1], ("ok".to_string(), "200".to_string(), "1".to_string()));
    assert_eq!(rows[n - 2], ("server_error".to_string(), "503".to_string(), "1".to_string()));
    for r in &rows[..n - 2] {
        assert_eq!(r, &("auth".to_string(), "401".to_string(), "1".to_string()));
    }
    assert!(
        page.contains("<td class=\"text\" data-label=\"message\">http 503: {&quot;error&quot;:&quot;maintenance&quot;,&quot;echo</td>"),
        "{page}"
    );
    // Snippets: the error bodies, redacted and escaped.
    assert!(
        page.contains(
            "<pre class=\"snippet\">{&quot;error&quot;:&quot;maintenance&quot;,&quot;echo&quot;:&quot;Bearer &lt;redacted&gt;&quot;}</pre>"
        ),
        "{page}"
    );
    assert!(
        page.contains("<pre class=\"snippet\">{&quot;message&quot;:&quot;invalid key &lt;redacted&gt; &lt;script&gt;&quot;}</pre>"),
        "{page}"
    );
    assert!(!page.contains(TOKEN) && !page.contains("<script"), "{page}");
    // The current balance and its 24 h picture (one successful poll so far: not enough
    // for a line yet).
    assert!(page.contains("<td class=\"usable\" data-label=\"usable\">284.50</td>"), "{page}");
    assert!(
        page.contains("<section class=\"trends\"><h2>Usable balance, last 24 hours</h2><figure class=\"trend\" data-account=\"main\" data-currency=\"USD\">"),
        "{page}"
    );

    // Unknown names: a plain 404 page, the name escaped.
    let resp = reqwest::get(format!("http://{}/supplier/%3Cb%3Enope", app.addr)).await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.headers()["content-type"], "text/html; charset=utf-8");
    let body = resp.text().await.unwrap();
    assert!(body.contains("No supplier named “&lt;b&gt;nope”") && !body.contains("<b>"), "{body}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_survives_a_restart_with_storage_and_removed_suppliers_forget_it() {
    let server = MockServer::start().await;
    Mock::given(method("GET")).and(path("/balance")).respond_with(ResponseTemplate::new(200).set_body_string(FOX)).mount(&server).await;
    let state = tempfile::tempdir().unwrap();
    let run = |config: String| {
        let state = state.path().to_path_buf();
        async move { common::start_with(&config, |o| o.storage_path = Some(state), None).await }
    };
    let (app, _d) = run(fox(&server, "fox", "200ms", "0s")).await;
    common::wait_for(&app, Duration::from_secs(10), "three polls", |s| polls(s, "fox") >= 3.0).await;
    app.stop().await;
    assert!(state.path().join("history.v1").exists());
    let (app, _d) = run(fox(&server, "fox", "1h", "0s")).await;
    let (_, page) = common::get(&app, "/supplier/fox").await;
    assert!(poll_rows(&page).len() >= 3, "kept across the restart: {page}");
    app.stop().await;
    // Started without fox: its history goes.
    let (app, _d) = run(fox(&server, "other", "1h", "0s")).await;
    app.stop().await;
    let (app, _d) = run(fox(&server, "fox", "1h", "0s")).await;
    let (_, page) = common::get(&app, "/supplier/fox").await;
    assert!(poll_rows(&page).len() <= 1, "forgotten once removed: {page}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_poll_is_off_by_default() {
    let server = MockServer::start().await;
    let (app, _dir) = start(&fox(&server, "fox", "1h", "0s"), false, None).await;
    let (status, body) = common::get(&app, "/-/debug/poll?supplier=fox").await;
    assert_eq!((status, body.as_str()), (404, "Not found\n"));
    app.stop().await;
}

/// GETs the debug poll of `supplier`: (status, Retry-After, JSON).
async fn debug(app: &App, supplier: &str) -> (u16, Option<u64>, Value) {
    let resp = reqwest::get(format!("http://{}/-/debug/poll?supplier={supplier}", app.addr)).await.unwrap();
    let status = resp.status().as_u16();
    let retry_after = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().parse().unwrap());
    assert_eq!(resp.headers()["content-type"], "application/json");
    (status, retry_after, serde_json::from_str(&resp.text().await.unwrap()).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_poll_reports_requests_and_rows_waits_for_no_slot_and_changes_nothing() {
    let server = MockServer::start().await;
    Mock::given(method("GET")).and(path("/balance")).respond_with(ResponseTemplate::new(200).set_body_string(FOX)).mount(&server).await;
    let (app, _dir) = start(&fox(&server, "fox", "1h", "3s"), true, None).await;
    common::wait_for(&app, Duration::from_secs(10), "the first poll", |s| polls(s, "fox") >= 1.0).await;
    let (_, metrics_before) = common::get(&app, "/metrics").await;
    let (_, page_before) = common::get(&app, "/supplier/fox").await;

    // The scheduled poll just took the slot: min_interval is not up yet.
    let (status, retry_after, body) = debug(&app, "fox").await;
    assert_eq!(status, 429, "{body}");
    let wait = retry_after.expect("Retry-After");
    assert!((1..=3).contains(&wait), "{wait}");
    assert_eq!(body["retry_after_seconds"], wait);
    assert!(body["error"].as_str().unwrap().starts_with("min_interval"), "{body}");
    tokio::time::sleep(Duration::from_secs(wait)).await;

    let (status, _, body) = debug(&app, "fox").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outcome"], "ok");
    assert_eq!(body["published"], false);
    let requests = body["requests"].as_array().unwrap();
    assert_eq!(requests.len(), 1, "{body}");
    assert_eq!(requests[0]["method"], "GET");
    assert_eq!(requests[0]["url"], format!("{}/balance", server.uri()));
    assert_eq!(requests[0]["status"], 200);
    assert!(requests[0]["duration_ms"].is_u64());
    assert_eq!(requests[0]["body"], FOX);
    assert_eq!(
        body["rows"],
        serde_json::json!([{"account": "main", "currency": "USD", "balance": "284.50", "frozen": "0", "usable": "284.50", "updated_at": "2026-05-01T13:45:22Z"}])
    );
    assert!(!body.to_string().contains(TOKEN));

    // Straight after: the slot is taken again.
    let (status, retry_after, _) = debug(&app, "fox").await;
    assert_eq!(status, 429);
    assert!(retry_after.is_some_and(|s| (1..=3).contains(&s)));

    // Unknown supplier, missing parameter.
    assert_eq!(debug(&app, "nope").await.0, 404);
    assert_eq!(common::get(&app, "/-/debug/poll").await.0, 400);

    // Nothing published: /metrics, the landing page's supplier page and history as before.
    let (_, metrics_after) = common::get(&app, "/metrics").await;
    assert_eq!(metrics_after, metrics_before);
    let (_, page_after) = common::get(&app, "/supplier/fox").await;
    assert_eq!(poll_rows(&page_after), poll_rows(&page_before));
    assert_eq!(server.received_requests().await.unwrap().len(), 2, "one scheduled poll, one debug poll");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_poll_needs_auth_like_every_route() {
    let server = MockServer::start().await;
    let web = format!("basic_auth_users:\n  prometheus: '{}'\n", bcrypt::hash("pw", 4).unwrap());
    let (app, _dir) = start(&fox(&server, "fox", "1h", "0s"), true, Some(&web)).await;
    let client = reqwest::Client::new();
    for p in ["/-/debug/poll?supplier=fox", "/supplier/fox"] {
        let resp = client.get(format!("http://{}{p}", app.addr)).send().await.unwrap();
        assert_eq!(resp.status(), 401, "{p}");
        assert!(resp.headers().contains_key("www-authenticate"));
        let ok = client.get(format!("http://{}{p}", app.addr)).basic_auth("prometheus", Some("pw")).send().await.unwrap();
        assert_ne!(ok.status(), 401, "{p}");
    }
    app.stop().await;
}
