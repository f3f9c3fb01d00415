//! The `json` kind's v2 keys against stub suppliers on 127.0.0.1:
//! `pagination` (each mode, the page cap, hostile links and cursors),
//! `login` (token caching, expiry, one re-login on 401, the limiter) and
//! `query_secrets` (never in a message), plus the Currencycloud and Airwallex
//! examples as shipped. Helpers are [`json_kind`](crate::json_kind)'s.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use balance_exporter::config;
use balance_exporter::kinds::{KindConfig, KindMemory};
use wiremock::matchers::{body_string, header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::json_kind::{assert_exposes, config_errors, example, fixture_dir, load, poll_and_render, poll_twice_exposing, read};

fn json(body: serde_json::Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(body)
}

/// One `kind: json` supplier `s` at `base_url` with `keys` (YAML, 4-space indented).
fn supplier(base_url: &str, keys: &str) -> config::Config {
    load(
        &format!("suppliers:\n  - name: s\n    kind: json\n    base_url: {base_url}\n    min_interval: 0s\n    max_retries: 0\n{keys}"),
        &BTreeMap::new(),
    )
}

const ITEMS: &str = "    path: /v1/items\n    rows:\n      - {select: '$.items[*]', currency: '$.c', balance: '$.v'}\n";

fn usd(samples: &crate::common::Samples, name: &str) -> f64 {
    samples.value(name, &[("supplier", "s"), ("account", "main"), ("currency", "USD")])
}

// ---- pagination modes ----

#[tokio::test]
async fn next_url_pages_relative_then_absolute_are_combined() {
    let server = MockServer::start().await;
    let page = |items: serde_json::Value, next: serde_json::Value| json(serde_json::json!({"items": items, "links": {"next": next}}));
    Mock::given(path("/v1/items"))
        .and(query_param_is_missing("page"))
        .respond_with(page(serde_json::json!([{"c": "USD", "v": "10.10"}, {"c": "EUR", "v": 1}]), "/v1/items?page=2".into()))
        .expect(1)
        .mount(&server)
        .await;
    let absolute = format!("{}/v1/items?page=3", server.uri());
    Mock::given(path("/v1/items"))
        .and(query_param("page", "2"))
        .respond_with(page(serde_json::json!([{"c": "GBP", "v": "2.5"}]), absolute.into()))
        .expect(1)
        .mount(&server)
        .await;
    // The last page: no link. USD again: summed, as duplicate rows of one body are.
    Mock::given(path("/v1/items"))
        .and(query_param("page", "3"))
        .respond_with(page(serde_json::json!([{"c": "USD", "v": "0.05"}]), serde_json::Value::Null))
        .expect(1)
        .mount(&server)
        .await;
    let config = supplier(&server.uri(), &format!("    pagination: {{next_url: $.links.next}}\n{ITEMS}"));
    let (outcome, samples) = poll_and_render(&config, &mut KindMemory::default()).await;
    assert_eq!(outcome, Ok(()));
    assert_exposes(
        &samples,
        "supplier_balance{supplier=\"s\",account=\"main\",currency=\"USD\"} 10.15\n\
         supplier_balance{supplier=\"s\",account=\"main\",currency=\"EUR\"} 1\n\
         supplier_balance{supplier=\"s\",account=\"main\",currency=\"GBP\"} 2.5\n",
        "next_url",
    );
}

#[tokio::test]
async fn cursor_pages_until_has_more_is_false() {
    let server = MockServer::start().await;
    Mock::given(path("/v1/items"))
        .and(query_param_is_missing("starting_after"))
        .and(query_param("limit", "2"))
        .respond_with(json(
            serde_json::json!({"items": [{"id": "a1", "c": "USD", "v": 1}, {"id": "a2", "c": "EUR", "v": 2}], "has_more": true}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/v1/items"))
        .and(query_param("starting_after", "a2"))
        .and(query_param("limit", "2"))
        .respond_with(json(serde_json::json!({"items": [{"id": "a3", "c": "GBP", "v": "3.30"}], "has_more": false})))
        .expect(1)
        .mount(&server)
        .await;
    let keys = "    query: {limit: 2}\n    pagination:\n      cursor: {path: '$.items[-1].id', param: starting_after}\n      has_more: $.has_more\n";
    let config = supplier(&server.uri(), &format!("{keys}{ITEMS}"));
    let (outcome, samples) = poll_and_render(&config, &mut KindMemory::default()).await;
    assert_eq!(outcome, Ok(()));
    assert_exposes(
        &samples,
        "supplier_balance{supplier=\"s\",account=\"main\",currency=\"USD\"} 1\n\
         supplier_balance{supplier=\"s\",account=\"main\",currency=\"EUR\"} 2\n\
         supplier_balance{supplier=\"s\",account=\"main\",currency=\"GBP\"} 3.3\n",
        "cursor",
    );
}

#[tokio::test]
async fn page_counting_stops_at_an_empty_page() {
    let server = MockServer::start().await;
    for (page, items) in
        [("1", serde_json::json!([{"c": "USD", "v": 1}])), ("2", serde_json::json!([{"c": "EUR", "v": 2}])), ("3", serde_json::json!([]))]
    {
        Mock::given(path("/v1/items"))
            .and(query_param("p", page))
            .and(query_param("per_page", "50"))
            .respond_with(json(serde_json::json!({ "items": items })))
            .expect(1)
            .mount(&server)
            .await;
    }
    let config = supplier(&server.uri(), &format!("    pagination:\n      page: {{param: p, size_param: per_page, size: 50}}\n{ITEMS}"));
    let (outcome, samples) = poll_and_render(&config, &mut KindMemory::default()).await;
    assert_eq!(outcome, Ok(()));
    assert_exposes(
        &samples,
        "supplier_balance{supplier=\"s\",account=\"main\",currency=\"USD\"} 1\n\
         supplier_balance{supplier=\"s\",account=\"main\",currency=\"EUR\"} 2\n",
        "page",
    );
}

#[tokio::test]
async fn offset_counting_stops_when_total_items_are_reached() {
    let server = MockServer::start().await;
    for (offset, items) in [
        ("0", serde_json::json!([{"c": "USD", "v": 1}, {"c": "EUR", "v": 2}])),
        ("2", serde_json::json!([{"c": "GBP", "v": 3}, {"c": "JPY", "v": 4}])),
        ("4", serde_json::json!([{"c": "CHF", "v": "5.55"}])),
    ] {
        Mock::given(path("/v1/items"))
            .and(query_param("offset", offset))
            .and(query_param("limit", "2"))
            .respond_with(json(serde_json::json!({"items": items, "total": 5})))
            .expect(1)
            .mount(&server)
            .await;
    }
    let keys = "    pagination:\n      offset: {param: offset, size_param: limit, size: 2}\n      total_items: $.total\n";
    let config = supplier(&server.uri(), &format!("{keys}{ITEMS}"));
    let (outcome, samples) = poll_and_render(&config, &mut KindMemory::default()).await;
    assert_eq!(outcome, Ok(()));
    assert_eq!(samples.value("supplier_balance", &[("supplier", "s"), ("account", "main"), ("currency", "CHF")]), 5.55);
    assert_eq!(samples.series_of("supplier_balance").len(), 5);
}

#[tokio::test]
async fn page_cap_reached_with_pages_left_fails_the_poll() {
    let server = MockServer::start().await;
    Mock::given(path("/v1/items"))
        .respond_with(json(serde_json::json!({"items": [{"c": "USD", "v": 1}], "has_more": true})))
        .expect(3)
        .mount(&server)
        .await;
    let keys = "    pagination: {page: {param: page}, has_more: $.has_more, max_pages: 3}\n";
    let config = supplier(&server.uri(), &format!("{keys}{ITEMS}"));
    let (outcome, samples) = poll_and_render(&config, &mut KindMemory::default()).await;
    let err = outcome.unwrap_err();
    assert_eq!(err.reason.as_str(), "decode");
    assert_eq!(err.message, "pagination: more pages after max_pages (3); not exporting a partial balance (raise pagination.max_pages)");
    assert_eq!(samples.value("supplier_poll_errors_total", &[("supplier", "s"), ("reason", "decode")]), 1.0);
    assert!(samples.series_of("supplier_balance").is_empty(), "{}", samples.text);
}

// ---- hostile pages ----

#[tokio::test]
async fn next_url_to_another_origin_is_refused_and_never_asked() {
    let server = MockServer::start().await;
    let elsewhere = MockServer::start().await;
    Mock::given(path("/v1/items"))
        .respond_with(json(serde_json::json!({"items": [{"c": "USD", "v": 1}], "next": format!("{}/steal?k=1", elsewhere.uri())})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(wiremock::matchers::any()).respond_with(json(serde_json::json!({}))).expect(0).mount(&elsewhere).await;
    let config =
        supplier(&server.uri(), &format!("    auth: {{bearer_token: sk_live_do_not_leak}}\n    pagination: {{next_url: $.next}}\n{ITEMS}"));
    let (outcome, _) = poll_and_render(&config, &mut KindMemory::default()).await;
    let err = outcome.unwrap_err();
    assert_eq!(err.reason.as_str(), "decode");
    let origin = elsewhere.uri();
    assert_eq!(err.message, format!("pagination: $.next: the next page is on another origin ({origin}); credentials stay on base_url's"));
}

#[tokio::test]
async fn repeating_cursor_or_link_stops_with_an_error() {
    let server = MockServer::start().await;
    Mock::given(path("/v1/items"))
        .respond_with(json(serde_json::json!({"items": [{"c": "USD", "v": 1}], "cursor": "same", "next": "/v1/items?p=2"})))
        .expect(4)
        .mount(&server)
        .await;
    let config = supplier(&server.uri(), &format!("    pagination: {{cursor: {{path: $.cursor, param: after}}}}\n{ITEMS}"));
    let err = poll_and_render(&config, &mut KindMemory::default()).await.0.unwrap_err();
    assert_eq!(
        (err.reason.as_str(), err.message.as_str()),
        ("decode", "pagination: $.cursor: the cursor repeats an earlier one; stopping rather than looping")
    );
    let config = supplier(&server.uri(), &format!("    pagination: {{next_url: $.next}}\n{ITEMS}"));
    let err = poll_and_render(&config, &mut KindMemory::default()).await.0.unwrap_err();
    assert_eq!(err.message, "pagination: $.next: the next link repeats an earlier page; stopping rather than looping");
}

#[tokio::test]
async fn non_boolean_has_more_and_bad_totals_are_errors() {
    let server = MockServer::start().await;
    Mock::given(path("/v1/items"))
        .respond_with(json(serde_json::json!({"items": [{"c": "USD", "v": 1}], "has_more": "yes", "pages": -2})))
        .mount(&server)
        .await;
    let config = supplier(&server.uri(), &format!("    pagination: {{page: {{param: page}}, has_more: $.has_more}}\n{ITEMS}"));
    let err = poll_and_render(&config, &mut KindMemory::default()).await.0.unwrap_err();
    assert_eq!(err.message, "pagination: $.has_more: expected true or false, found a string");
    let config = supplier(&server.uri(), &format!("    pagination: {{page: {{param: page}}, total_pages: $.pages}}\n{ITEMS}"));
    let err = poll_and_render(&config, &mut KindMemory::default()).await.0.unwrap_err();
    assert_eq!(err.message, "pagination: $.pages: expected a whole number, found a number");
}

// ---- query_secrets ----

const KEY: &str = "qk_live/secret+key&=1";

#[tokio::test]
async fn query_secret_is_sent_on_every_page_and_redacted_from_errors() {
    let server = MockServer::start().await;
    Mock::given(path("/v1/items"))
        .and(query_param("api_key", KEY))
        .and(query_param_is_missing("page"))
        .respond_with(json(serde_json::json!({"items": [{"c": "USD", "v": 1}], "next": "/v1/items?page=2"})))
        .expect(1)
        .mount(&server)
        .await;
    // A careless server echoing the URL it was asked, key included (raw and encoded).
    let encoded = "qk_live%2Fsecret%2Bkey%26%3D1";
    Mock::given(path("/v1/items"))
        .and(query_param("api_key", KEY))
        .and(query_param("page", "2"))
        .respond_with(ResponseTemplate::new(500).set_body_string(format!("bad request /v1/items?page=2&api_key={encoded} ({KEY})")))
        .expect(1)
        .mount(&server)
        .await;
    let keys = format!("    query_secrets: {{api_key: '{KEY}'}}\n    pagination: {{next_url: $.next}}\n{ITEMS}");
    let config = supplier(&server.uri(), &keys);
    let err = poll_and_render(&config, &mut KindMemory::default()).await.0.unwrap_err();
    assert_eq!(err.reason.as_str(), "server_error");
    assert_eq!(err.message, "http 500: bad request /v1/items?page=2&api_key=<redacted> (<redacted>)");
}

#[tokio::test]
async fn query_secret_never_in_a_connect_error() {
    // A port nothing listens on: reqwest's error would carry the URL.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let config = supplier(&closed, &format!("    query_secrets: {{api_key: '{KEY}'}}\n{ITEMS}"));
    let err = poll_and_render(&config, &mut KindMemory::default()).await.0.unwrap_err();
    assert_eq!(err.reason.as_str(), "connect");
    for shown in [KEY, "qk_live", "secret", "api_key"] {
        assert!(!err.message.contains(shown), "{shown} in {}", err.message);
    }
}

// ---- login ----

fn login_keys(extra: &str) -> String {
    format!(
        "    login:\n      url: /auth/login\n      form: {{user: u1, password: pw_login_secret}}\n      token: $.token\n{extra}    path: /v1/items\n    rows:\n      - {{select: '$.items[*]', currency: '$.c', balance: '$.v'}}\n"
    )
}

fn login_endpoint() -> wiremock::MockBuilder {
    Mock::given(method("POST"))
        .and(path("/auth/login"))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .and(body_string("password=pw_login_secret&user=u1"))
}

fn items_with(token: &str) -> wiremock::MockBuilder {
    Mock::given(method("GET")).and(path("/v1/items")).and(header("authorization", format!("Bearer {token}").as_str()))
}

fn items() -> ResponseTemplate {
    json(serde_json::json!({"items": [{"c": "USD", "v": "7.25"}]}))
}

#[tokio::test]
async fn login_token_expiring_is_fetched_again() {
    let server = MockServer::start().await;
    // expires_in 0: refreshed before every poll.
    login_endpoint().respond_with(json(serde_json::json!({"token": "tok_short", "expires_in": 0}))).expect(2).mount(&server).await;
    items_with("tok_short").respond_with(items()).expect(2).mount(&server).await;
    let config = supplier(&server.uri(), &login_keys("      expires_in: $.expires_in\n"));
    let mut memory = KindMemory::default();
    for _ in 0..2 {
        let (outcome, samples) = poll_and_render(&config, &mut memory).await;
        assert_eq!(outcome, Ok(()));
        assert_eq!(usd(&samples, "supplier_balance"), 7.25);
    }
}

#[tokio::test]
async fn login_token_with_a_huge_lifetime_is_kept() {
    let server = MockServer::start().await;
    login_endpoint().respond_with(json(serde_json::json!({"token": "tok_long", "expires_in": 1e300}))).expect(1).mount(&server).await;
    items_with("tok_long").respond_with(items()).expect(3).mount(&server).await;
    let config = supplier(&server.uri(), &login_keys("      expires_in: $.expires_in\n"));
    let mut memory = KindMemory::default();
    for _ in 0..3 {
        assert_eq!(poll_and_render(&config, &mut memory).await.0, Ok(()));
    }
}

#[tokio::test]
async fn login_401_logs_in_once_retries_once_and_a_second_401_is_final() {
    let server = MockServer::start().await;
    let config = supplier(&server.uri(), &login_keys(""));
    let mut memory = KindMemory::default();
    login_endpoint().respond_with(json(serde_json::json!({"token": "tok_old"}))).expect(1).mount(&server).await;
    items_with("tok_old").respond_with(items()).expect(1).mount(&server).await;
    assert_eq!(poll_and_render(&config, &mut memory).await.0, Ok(()));
    // The old token is revoked: one 401, one login, the request again.
    server.reset().await;
    items_with("tok_old").respond_with(ResponseTemplate::new(401)).expect(1).mount(&server).await;
    login_endpoint().respond_with(json(serde_json::json!({"token": "tok_new"}))).expect(1).mount(&server).await;
    items_with("tok_new").respond_with(items()).expect(1).mount(&server).await;
    let (outcome, samples) = poll_and_render(&config, &mut memory).await;
    assert_eq!(outcome, Ok(()));
    assert_eq!(usd(&samples, "supplier_balance"), 7.25);
    // Now every token is refused: one re-login, then the 401 is the poll's error.
    server.reset().await;
    login_endpoint().respond_with(json(serde_json::json!({"token": "tok_newer"}))).expect(1).mount(&server).await;
    Mock::given(path("/v1/items")).respond_with(ResponseTemplate::new(401)).expect(2).mount(&server).await;
    let (outcome, samples) = poll_and_render(&config, &mut memory).await;
    assert_eq!(outcome.unwrap_err().reason.as_str(), "auth");
    assert_eq!(samples.value("supplier_poll_errors_total", &[("supplier", "s"), ("reason", "auth")]), 1.0);
}

#[tokio::test]
async fn login_and_every_page_go_through_the_limiter() {
    let server = MockServer::start().await;
    login_endpoint().respond_with(json(serde_json::json!({"token": "tok_lim"}))).expect(1).mount(&server).await;
    items_with("tok_lim")
        .and(query_param_is_missing("page"))
        .respond_with(json(serde_json::json!({"items": [{"c": "USD", "v": 1}], "next": "/v1/items?page=2"})))
        .expect(1)
        .mount(&server)
        .await;
    items_with("tok_lim")
        .and(query_param("page", "2"))
        .respond_with(json(serde_json::json!({"items": [{"c": "EUR", "v": 2}]})))
        .expect(1)
        .mount(&server)
        .await;
    let text = format!(
        "suppliers:\n  - name: s\n    kind: json\n    base_url: {}\n    min_interval: 300ms\n    pagination: {{next_url: $.next}}\n{}",
        server.uri(),
        login_keys("")
    );
    let config = load(&text, &BTreeMap::new());
    let start = Instant::now();
    assert_eq!(poll_and_render(&config, &mut KindMemory::default()).await.0, Ok(()));
    // Three requests (login, two pages): two gaps of min_interval at least.
    assert!(start.elapsed() >= Duration::from_millis(600), "{:?}", start.elapsed());
}

#[tokio::test]
async fn hostile_login_answers_are_errors_that_show_no_secret() {
    let server = MockServer::start().await;
    let config = supplier(&server.uri(), &login_keys("      expires_in: $.ttl\n"));
    let cases = [
        (serde_json::json!({"token": 12345678}), "decode", "login response: $.token: expected a string, found a number"),
        (serde_json::json!({"token": ["a"]}), "decode", "login response: $.token: expected a string, found an array"),
        (serde_json::json!({"other": 1}), "decode", "login response: $.token: expected a token, found nothing"),
        (serde_json::json!({"token": ""}), "auth", "login response: empty token"),
        (serde_json::json!({"token": "tok\nsplit"}), "decode", "login response: $.token: the token is not a valid header value"),
        (serde_json::json!({"token": "tok_ok", "ttl": "soon"}), "decode", "login response: $.ttl: expected seconds, found a string"),
    ];
    for (answer, reason, message) in cases {
        server.reset().await;
        login_endpoint().respond_with(json(answer.clone())).mount(&server).await;
        let err = poll_and_render(&config, &mut KindMemory::default()).await.0.unwrap_err();
        assert_eq!((err.reason.as_str(), err.message.as_str()), (reason, message), "{answer}");
    }
    // A login endpoint echoing the credentials; a balance endpoint echoing the token.
    server.reset().await;
    login_endpoint().respond_with(ResponseTemplate::new(401).set_body_string("bad user=u1&password=pw_login_secret")).mount(&server).await;
    let err = poll_and_render(&config, &mut KindMemory::default()).await.0.unwrap_err();
    assert_eq!((err.reason.as_str(), err.message.as_str()), ("auth", "login request: http 401: bad user=u1&password=<redacted>"));
    server.reset().await;
    login_endpoint().respond_with(json(serde_json::json!({"token": "tok_echoed_secret"}))).mount(&server).await;
    items_with("tok_echoed_secret")
        .respond_with(json(serde_json::json!({"items": [{"c": "tok_echoed_secret", "v": 1}, {"c": "USD", "v": 1}]})))
        .mount(&server)
        .await;
    let upstream = balance_exporter::upstream::Upstream::new(
        balance_exporter::upstream::build_client(Duration::from_secs(2)),
        &config.suppliers[0].upstream_settings(),
        Default::default(),
    );
    let out = config.suppliers[0].kind.poll(&upstream, &mut KindMemory::default()).await.unwrap();
    assert_eq!(out.row_errors, vec!["$.items[0].c: \"<redacted>\" is not a currency code"]);
}

#[tokio::test]
async fn login_url_on_another_origin_is_refused() {
    let server = MockServer::start().await;
    let elsewhere = MockServer::start().await;
    let keys = login_keys("").replace("url: /auth/login", &format!("url: {}/auth/login", elsewhere.uri()));
    let config = supplier(&server.uri(), &keys);
    let err = poll_and_render(&config, &mut KindMemory::default()).await.0.unwrap_err();
    assert_eq!(err.reason.as_str(), "auth");
    assert_eq!(err.message, format!("login: url {} is not on base_url's origin; credentials stay there", elsewhere.uri()));
    assert!(elsewhere.received_requests().await.unwrap().is_empty());
}

// ---- the examples ----

#[tokio::test]
async fn example_currencycloud_logs_in_pages_and_reuses_the_token() {
    let server = MockServer::start().await;
    let env = BTreeMap::from([
        ("CURRENCYCLOUD_BASE_URL", server.uri()),
        ("CURRENCYCLOUD_LOGIN_ID", "ops@example.com".to_string()),
        ("CURRENCYCLOUD_API_KEY", "cc_api_key_stub_1f6a3e".to_string()),
    ]);
    let config = load(&example("currencycloud.yml"), &env);
    let dir = fixture_dir("example_currencycloud");
    Mock::given(method("POST"))
        .and(path("/v2/authenticate/api"))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .and(body_string("api_key=cc_api_key_stub_1f6a3e&login_id=ops%40example.com"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(read(&dir.join("login.json")), "application/json"))
        .expect(1)
        .mount(&server)
        .await;
    for page in ["1", "2"] {
        Mock::given(method("GET"))
            .and(path("/v2/balances/find"))
            .and(header("x-auth-token", "ea6d13c7bc50feb46cf978d137bc01a2"))
            .and(query_param("page", page))
            .and(query_param("per_page", "25"))
            .respond_with(ResponseTemplate::new(200).set_body_raw(read(&dir.join(format!("page{page}.json"))), "application/json"))
            .expect(2)
            .mount(&server)
            .await;
    }
    // The second poll reuses the token: one login in all (checked on drop).
    poll_twice_exposing(&config, "example_currencycloud", "currencycloud.yml").await;
    let requests = server.received_requests().await.unwrap();
    assert!(requests.iter().all(|r| !r.headers.contains_key("authorization")));
}

#[tokio::test]
async fn example_airwallex_logs_in_with_headers_and_reads_balances() {
    let server = MockServer::start().await;
    let env = BTreeMap::from([
        ("AIRWALLEX_BASE_URL", server.uri()),
        ("AIRWALLEX_CLIENT_ID", "awx_client_stub".to_string()),
        ("AIRWALLEX_API_KEY", "awx_api_key_stub".to_string()),
    ]);
    let config = load(&example("airwallex.yml"), &env);
    let dir = fixture_dir("example_airwallex");
    Mock::given(method("POST"))
        .and(path("/api/v1/authentication/login"))
        .and(header("x-client-id", "awx_client_stub"))
        .and(header("x-api-key", "awx_api_key_stub"))
        .respond_with(ResponseTemplate::new(201).set_body_raw(read(&dir.join("login.json")), "application/json"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v1/balances/current"))
        .and(header("authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.stub_airwallex_token.sig"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(read(&dir.join("body.json")), "application/json"))
        .expect(1)
        .mount(&server)
        .await;
    let (outcome, samples) = poll_and_render(&config, &mut KindMemory::default()).await;
    assert_eq!(outcome, Ok(()));
    assert_exposes(&samples, &read(&dir.join("expected.prom")), "airwallex.yml");
    // The balance request carries the token only, not the login's credentials.
    let requests = server.received_requests().await.unwrap();
    assert!(!requests[1].headers.contains_key("x-api-key"));
}

// ---- config: secret files and validation ----

#[test]
fn secret_files_of_login_and_query_secrets_are_read_and_watched() {
    let dir = tempfile::tempdir().unwrap();
    let (key_file, pw_file, header_file) = (dir.path().join("key"), dir.path().join("pw"), dir.path().join("hdr"));
    std::fs::write(&key_file, "key_from_file\n").unwrap();
    std::fs::write(&pw_file, "pw_from_file\n").unwrap();
    std::fs::write(&header_file, "hdr_from_file\n").unwrap();
    let text = format!(
        "suppliers:\n  - name: s\n    kind: json\n    base_url: http://127.0.0.1:9\n    path: /b\n    query_secrets: {{api_key: {{value_file: '{}'}}}}\n    login:\n      url: /login\n      json: {{user: u, password: {{value_file: '{}'}}}}\n      headers: {{X-Key: {{value_file: '{}'}}}}\n      token: $.t\n    rows:\n      - {{select: '$', currency: USD, balance: '$.b'}}\n",
        key_file.display(),
        pw_file.display(),
        header_file.display()
    );
    let config = load(&text, &BTreeMap::new());
    let KindConfig::Json(cfg) = &config.suppliers[0].kind else { panic!() };
    assert_eq!(cfg.query_secrets["api_key"].expose(), "key_from_file");
    let login = cfg.login.as_ref().unwrap();
    assert_eq!(login.secret_values(), vec!["pw_from_file", "u", "hdr_from_file"]);
    assert!(!format!("{config:?}").contains("from_file"));
    // Auto-reload rehashes every one of them.
    let mut watched = config::named_files(&text, true, &|_| None);
    watched.sort();
    let mut want: Vec<String> = [&header_file, &key_file, &pw_file].iter().map(|p| p.display().to_string()).collect();
    want.sort();
    assert_eq!(watched, want);
    // And reads them again on reload: a changed file is a changed credential.
    std::fs::write(&pw_file, "pw_rotated\n").unwrap();
    let reloaded = load(&text, &BTreeMap::new());
    let KindConfig::Json(cfg) = &reloaded.suppliers[0].kind else { panic!() };
    assert_eq!(cfg.login.as_ref().unwrap().secret_values()[0], "pw_rotated");
}

#[test]
fn v2_keys_are_validated_with_messages_naming_the_key() {
    let base = "suppliers:\n  - name: s\n    kind: json\n    base_url: http://127.0.0.1:9\n    path: /b\n";
    let rows = "    rows:\n      - {select: '$', currency: USD, balance: '$.b'}\n";
    let errors = |keys: &str| config_errors(&format!("{base}{keys}{rows}"));
    let cases: &[(&str, &str)] = &[
        (
            "    pagination: {next_url: $.n, cursor: {path: $.c, param: c}}\n",
            "suppliers[0].pagination: give exactly one of next_url, cursor, page, offset",
        ),
        ("    pagination: {has_more: $.m}\n", "suppliers[0].pagination: give exactly one of next_url, cursor, page, offset"),
        ("    pagination: {next_url: $.n, max_pages: 0}\n", "suppliers[0].pagination.max_pages: must be between 1 and 1000"),
        ("    pagination: {next_url: $.n, max_pages: 1001}\n", "suppliers[0].pagination.max_pages: must be between 1 and 1000"),
        ("    pagination: {offset: {param: o}}\n", "suppliers[0].pagination.offset.size: missing; the offset advances by the page size"),
        ("    pagination: {page: {param: p, size: 0}}\n", "suppliers[0].pagination.page.size: must be at least 1"),
        (
            "    pagination: {cursor: {path: $.c, param: c}, total_items: $.t}\n",
            "suppliers[0].pagination.total_items: applies to page or offset counting only",
        ),
        (
            "    pagination: {offset: {param: o, size: 5}, total_pages: $.t}\n",
            "suppliers[0].pagination.total_pages: applies to page counting only",
        ),
        ("    pagination: {page: {param: p}, total_items: $.t}\n", "suppliers[0].pagination.total_items: needs page.size"),
        ("    pagination: {page: {param: ''}}\n", "suppliers[0].pagination.page.param: is empty"),
        (
            "    query: {page: 1}\n    pagination: {page: {param: page}}\n",
            "suppliers[0].pagination.page.param: \"page\" is also in query; pagination sends it",
        ),
        (
            "    query: {api_key: x}\n    query_secrets: {api_key: y_secret}\n",
            "suppliers[0].query_secrets.api_key: is also in query; give it in one place",
        ),
        (
            "    login: {url: /l, token: $.t}\n    oauth2_client_credentials: {token_url: /t, client_id: i, client_secret: s}\n",
            "suppliers[0].login: give either login or oauth2_client_credentials, not both",
        ),
    ];
    for (keys, want) in cases {
        assert_eq!(errors(keys), vec![want.to_string()], "{keys}");
    }
    let starts: &[(&str, &str)] = &[
        ("    pagination: {next_url: '$.n['}\n", "suppliers[0].pagination.next_url: invalid JSONPath \"$.n[\""),
        ("    pagination: {page: {param: p}, colour: red}\n", "suppliers[0]: pagination.colour: unknown field `colour`"),
        ("    login: {url: /l, token: 't'}\n", "suppliers[0]: login: token: invalid JSONPath \"t\""),
        ("    login: {url: /l, token: $.t, form: {a: b}, json: {a: b}}\n", "suppliers[0]: login: give either form or json, not both"),
        ("    login: {url: /l, token: $.t, token_lifetime: 0s}\n", "suppliers[0]: login: token_lifetime: must be greater than 0"),
        (
            "    login: {url: /l, token: $.t, token_lifetime: 1m, expires_in: $.e}\n",
            "suppliers[0]: login: give either expires_in or token_lifetime, not both",
        ),
        ("    login: {url: 'ftp://x/l', token: $.t}\n", "suppliers[0]: login: url: scheme must be http or https"),
        ("    login: {url: /l, token: $.t, method: DELETE}\n", "suppliers[0]: login: method: expected POST, GET or PUT"),
        (
            "    login: {url: /l, token: $.t, token_header: 'X Bad'}\n",
            "suppliers[0]: login: token_header: \"X Bad\" is not a valid header name",
        ),
        (
            "    login: {url: /l, token: $.t, headers: {X-K: \"bad\\nvalue_secret\"}}\n",
            "suppliers[0]: login: headers.X-K: value is not a valid header value",
        ),
        (
            "    login: {url: /l, token: $.t, form: {pw: {value_file: /nonexistent/pw}}}\n",
            "suppliers[0]: login.form.pw: value_file: cannot read secret file /nonexistent/pw",
        ),
        ("    query_secrets: {api_key: [1]}\n", "suppliers[0]: query_secrets.api_key: expected a string, a number or {value_file: path}"),
    ];
    for (keys, want) in starts {
        let errs = errors(keys);
        assert!(errs.len() == 1 && errs[0].starts_with(want), "{keys}: {errs:?}");
        assert!(!errs[0].contains("value_secret"), "{errs:?}");
    }
}
