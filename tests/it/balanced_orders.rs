//! `kind: balanced_orders` against a stub Balanced API over real HTTP: paging
//! through `meta.next`, escrow sums per merchant in major units, payouts as
//! spend, the `errors[]` envelope as reason. Every stub answer is checked
//! against the API's own JSON Schemas (tests/fixtures/balanced/schema).

use crate::common;

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SECRET: &str = "ak-test-2Fz8ld2Yr1bLmUeAj3kTQBcZ";
const ACCEPT: &str = "application/vnd.api+json;revision=1.1";

fn merchant(name: &str) -> String {
    format!("CU{name:0>20}")
}

/// Serves the schema files for `$ref`s relative to `https://balanced.test/schema/`.
struct SchemaFiles;

impl jsonschema::Retrieve for SchemaFiles {
    fn retrieve(&self, uri: &jsonschema::Uri<String>) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let rel = uri.as_str().split_once("/schema/").ok_or("not a schema uri")?.1;
        Ok(read_schema(rel))
    }
}

/// Reads a schema file. The spec's `links` patterns are URI templates such as
/// `/orders/{orders.id}/debits`; its Python validator read the braces as
/// literals, the strict ECMA-262 check here rejects them as regexes, so they
/// are escaped (same meaning, literal braces).
fn read_schema(rel: &str) -> Value {
    let mut schema: Value = serde_json::from_str(&std::fs::read_to_string(schema_dir().join(rel)).unwrap()).unwrap();
    escape_template_patterns(&mut schema);
    schema
}

fn escape_template_patterns(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                match child {
                    Value::String(p)
                        if key == "pattern" && p.contains('{') && !p.contains("\\{") && p.contains('.') && p.starts_with('/') =>
                    {
                        *p = p.replace('{', "\\{").replace('}', "\\}").replace('.', "\\.");
                    }
                    _ => escape_template_patterns(child),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(escape_template_patterns),
        _ => {}
    }
}

fn schema_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/balanced/schema")
}

/// Panics unless `body` is what the Balanced spec's schema `file` accepts.
fn assert_schema(file: &str, body: &Value) {
    let schema = read_schema(file);
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .with_base_uri(format!("https://balanced.test/schema/{file}"))
        .with_retriever(SchemaFiles)
        // The API's hrefs are relative ("/orders/OR…") and its `links` are URI
        // templates; the spec's own validator did not enforce formats. Accept
        // URI references and templates; `date-time` is still checked.
        .with_format("uri", |s: &str| {
            !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control()) && (s.starts_with('/') || s.contains("://"))
        })
        .build(&schema)
        .expect("schema compiles");
    let errors: Vec<String> = validator.iter_errors(body).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(errors.is_empty(), "stub answer rejected by {file}: {errors:#?}\n{body:#}");
}

/// One order as the API returned it. Ids are the real shapes: `OR…`, `CU…`.
fn order(n: u32, merchant: &str, amount: u64, escrowed: u64) -> Value {
    let id = format!("OR{n:0>20}");
    json!({
        "id": id,
        "href": format!("/orders/{id}"),
        "amount": amount,
        "amount_escrowed": escrowed,
        "currency": "USD",
        "created_at": "2014-01-27T22:58:01.115720Z",
        "updated_at": "2014-01-27T22:58:02.125680Z",
        "description": format!("Order #{n}"),
        "delivery_address": {"line1": "965 Mission St", "line2": null, "city": "San Francisco", "state": "CA", "postal_code": "94103", "country_code": "US"},
        "meta": {},
        "links": {"merchant": merchant}
    })
}

/// The pages of `GET /orders` for `orders` at `limit` per page.
fn pages(orders: &[Value], limit: usize) -> Vec<Value> {
    let total = orders.len();
    let last = (total.saturating_sub(1) / limit) * limit;
    let href = |offset: usize| format!("/orders?limit={limit}&offset={offset}");
    orders
        .chunks(limit)
        .enumerate()
        .map(|(i, chunk)| {
            let offset = i * limit;
            let body = json!({
                "orders": chunk,
                "meta": {
                    "limit": limit, "offset": offset, "total": total,
                    "next": (offset + limit < total).then(|| href(offset + limit)),
                    "previous": (offset > 0).then(|| href(offset - limit)),
                    "first": href(0), "last": href(last), "href": href(offset)
                },
                "links": {
                    "orders.debits": "/orders/{orders.id}/debits",
                    "orders.refunds": "/orders/{orders.id}/refunds",
                    "orders.credits": "/orders/{orders.id}/credits",
                    "orders.reversals": "/orders/{orders.id}/reversals",
                    "orders.buyers": "/orders/{orders.id}/buyers",
                    "orders.merchant": "/customers/{orders.merchant}"
                }
            });
            assert_schema("orders.json", &body);
            body
        })
        .collect()
}

async fn mount_pages(server: &MockServer, pages: Vec<Value>, limit: usize) {
    for (i, body) in pages.into_iter().enumerate() {
        Mock::given(method("GET"))
            .and(path("/orders"))
            .and(query_param("limit", limit.to_string()))
            .and(query_param("offset", (i * limit).to_string()))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
            .mount(server)
            .await;
    }
}

fn config(server: &MockServer, limit: usize) -> String {
    format!(
        "suppliers:\n  - name: market\n    kind: balanced_orders\n    base_url: {}\n    auth:\n      basic:\n        username: {SECRET}\n    poll_interval: 1s\n    min_interval: 10ms\n    max_retries: 0\n    limit: {limit}\n",
        server.uri()
    )
}

fn l(account: &str) -> [(&'static str, &str); 3] {
    [("supplier", "market"), ("account", account), ("currency", "USD")]
}

#[tokio::test]
async fn escrow_sums_across_pages_and_payouts_count_as_spend() {
    let server = MockServer::start().await;
    let (a, b, c) = (merchant("alpha"), merchant("bravo"), merchant("charlie"));
    let mut orders = vec![
        order(1, &a, 10000, 5000),
        order(2, &b, 100000, 100000),
        order(3, &a, 2550, 2550),
        order(4, &c, 5000, 0),
        order(5, &a, 999, 0),
        order(6, &b, 1, 1),
        order(7, &c, 7000, 0),
    ];
    mount_pages(&server, pages(&orders, 2), 2).await;
    let (app, _dir) = common::start(&config(&server, 2)).await;

    let s = common::wait_for(&app, Duration::from_secs(10), "first poll", |s| s.get("supplier_up", &[("supplier", "market")]) == Some(1.0))
        .await;
    // Cents → dollars, summed over the merchant's orders on every page.
    assert_eq!(s.value("supplier_balance", &l(&a)), 75.50);
    assert_eq!(s.value("supplier_balance_frozen", &l(&a)), 75.50);
    assert_eq!(s.value("supplier_balance_usable", &l(&a)), 0.0);
    assert_eq!(s.value("supplier_escrow_orders", &l(&a)), 2.0);
    assert_eq!(s.value("supplier_escrow_debited", &l(&a)), 135.49);
    assert_eq!(s.value("supplier_balance", &l(&b)), 1000.01);
    assert_eq!(s.value("supplier_escrow_orders", &l(&b)), 2.0);
    assert_eq!(s.value("supplier_escrow_debited", &l(&b)), 1000.01);
    assert_eq!(s.value("supplier_balance", &l(&c)), 0.0);
    assert_eq!(s.value("supplier_escrow_orders", &l(&c)), 0.0);
    assert_eq!(s.value("supplier_escrow_debited", &l(&c)), 120.0);
    assert_eq!(s.series_of("supplier_balance").len(), 3);
    assert_eq!(s.value("supplier_row_errors_total", &[("supplier", "market")]), 0.0);

    // Every request: the revision media type and Basic "<secret>:" (empty password); 4 pages per poll.
    let requests = server.received_requests().await.unwrap();
    let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{SECRET}:")));
    for r in &requests {
        let accept: Vec<&str> = r.headers.get_all("accept").iter().filter_map(|v| v.to_str().ok()).collect();
        assert_eq!(accept, vec![ACCEPT], "exactly the revision Accept on {}", r.url);
        assert_eq!(r.headers.get("authorization").and_then(|v| v.to_str().ok()), Some(basic.as_str()));
    }
    let offsets: Vec<String> = requests.iter().take(4).map(|r| r.url.query().unwrap_or("").to_string()).collect();
    assert_eq!(offsets, ["limit=2&offset=0", "limit=2&offset=2", "limit=2&offset=4", "limit=2&offset=6"]);

    // A pays 50.00 out of order 1; a buyer debits 20.00 into a new order for B.
    orders[0] = order(1, &a, 10000, 0);
    orders.push(order(8, &b, 2000, 2000));
    server.reset().await;
    mount_pages(&server, pages(&orders, 2), 2).await;
    let s = common::wait_for(&app, Duration::from_secs(10), "escrow change", |s| {
        s.get("supplier_balance", &l(&a)) == Some(25.50) && s.get("supplier_balance", &l(&b)) == Some(1020.01)
    })
    .await;
    assert_eq!(s.value("supplier_balance_spent_total", &l(&a)), 50.0);
    assert_eq!(s.value("supplier_balance_topped_up_total", &l(&a)), 0.0);
    assert_eq!(s.value("supplier_balance_topped_up_total", &l(&b)), 20.0);
    assert_eq!(s.value("supplier_balance_spent_total", &l(&b)), 0.0);
    // The day so far (the daily log): opening - spent + topped up = the balance now.
    assert_eq!(s.value("supplier_balance_spent_today", &l(&a)), 50.0);
    assert_eq!(s.value("supplier_balance_topped_up_today", &l(&a)), 0.0);
    assert_eq!(s.value("supplier_balance_opening", &l(&a)), 75.50);
    assert_eq!(s.value("supplier_balance_spent_today", &l(&b)), 0.0);
    assert_eq!(s.value("supplier_balance_topped_up_today", &l(&b)), 20.0);
    assert_eq!(s.value("supplier_balance_opening", &l(&b)), 1000.01);
    assert_eq!(s.series_of("supplier_balance_opening").len(), 3);
    assert_eq!(s.value("supplier_escrow_orders", &l(&a)), 1.0);
    assert_eq!(s.value("supplier_escrow_orders", &l(&b)), 3.0);
    assert_eq!(s.value("supplier_escrow_debited", &l(&b)), 1020.01);
    app.stop().await;
}

#[tokio::test]
async fn errors_envelope_maps_to_reason() {
    let cases = [
        (403, "Forbidden", "request", "forbidden"),
        (404, "Not Found", "not-found", "not_found"),
        (409, "Conflict", "insufficient-funds", "upstream_status"),
        (400, "Bad Request", "unexpected-payload", "upstream_status"),
    ];
    for (status, text, category, reason) in cases {
        let server = MockServer::start().await;
        let body = json!({"errors": [{
            "status": text, "status_code": status, "category_code": category, "category_type": "request",
            "description": format!("Something about {SECRET}. Your request id is OHM4b2e5b50f5b611e3a1a0026ba7cd33d0."),
            "additional": null, "extras": {}, "request_id": "OHM4b2e5b50f5b611e3a1a0026ba7cd33d0"
        }]});
        assert_schema("errors.json", &body);
        Mock::given(path("/orders")).respond_with(ResponseTemplate::new(status).set_body_json(body)).mount(&server).await;
        let (app, _dir) = common::start(&config(&server, 10)).await;
        let s = common::wait_for(&app, Duration::from_secs(10), "failed poll", |s| {
            s.get("supplier_up", &[("supplier", "market")]) == Some(0.0)
        })
        .await;
        assert_eq!(s.value("supplier_poll_errors_total", &[("supplier", "market"), ("reason", reason)]), 1.0, "{status} {category}");
        // The last error names the category, never the secret.
        let (_, landing) = common::get(&app, "/").await;
        assert!(!landing.contains(SECRET), "secret leaked on the landing page");
        assert!(landing.contains(category), "landing page lacks {category}:\n{landing}");
        app.stop().await;
    }
}

#[tokio::test]
async fn a_bad_order_spoils_only_its_merchant() {
    let server = MockServer::start().await;
    let (a, b) = (merchant("alpha"), merchant("bravo"));
    let good = pages(&[order(1, &a, 1000, 1000), order(2, &b, 2000, 2000)], 10).remove(0);
    let mut body = good.clone();
    // Not schema-valid on purpose: what a broken upstream might send.
    body["orders"][1]["amount_escrowed"] = json!("lots");
    Mock::given(path("/orders")).respond_with(ResponseTemplate::new(200).set_body_json(body)).mount(&server).await;
    let (app, _dir) = common::start(&config(&server, 10)).await;
    let s = common::wait_for(&app, Duration::from_secs(10), "poll", |s| s.get("supplier_up", &[("supplier", "market")]) == Some(1.0)).await;
    assert_eq!(s.value("supplier_balance", &l(&a)), 10.0);
    assert_eq!(s.get("supplier_balance", &l(&b)), None);
    assert_eq!(s.value("supplier_row_errors_total", &[("supplier", "market")]), 1.0);
    app.stop().await;
}

#[tokio::test]
async fn a_next_link_to_another_host_is_refused() {
    let server = MockServer::start().await;
    let mut body = pages(&[order(1, &merchant("alpha"), 1000, 1000)], 10).remove(0);
    body["meta"]["next"] = json!("https://elsewhere.example/orders?offset=10");
    Mock::given(path("/orders")).respond_with(ResponseTemplate::new(200).set_body_json(body)).mount(&server).await;
    let (app, _dir) = common::start(&config(&server, 10)).await;
    let s = common::wait_for(&app, Duration::from_secs(10), "poll", |s| s.get("supplier_up", &[("supplier", "market")]) == Some(0.0)).await;
    assert_eq!(s.value("supplier_poll_errors_total", &[("supplier", "market"), ("reason", "decode")]), 1.0);
    app.stop().await;
}
