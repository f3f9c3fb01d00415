//! The `json` kind against stub suppliers on 127.0.0.1.
//!
//! Fixture triplets in `tests/fixtures/json/<name>/` (json_exporter style):
//! `config.yml` (one supplier, `base_url: ${STUB_URL}`), `body.json` (what the
//! stub answers) and `expected.prom` (samples the exporter must expose). The
//! stub only answers the request the config describes (method, path, query,
//! headers, body, credentials), so each fixture also checks the request.
//! The `examples/*.yml` files are loaded as they are, with their variables
//! pointed at the stub through the config loader's env lookup.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use balance_exporter::config::{self, Auth, Config, ConfigError};
use balance_exporter::kinds::json::oauth2::TokenUrl;
use balance_exporter::kinds::{KindConfig, KindMemory};
use balance_exporter::metrics::Renderer;
use balance_exporter::snapshot::Store;
use balance_exporter::upstream::{build_client, Limiter, PollError, Upstream};
use common::Samples;
use wiremock::matchers::{any, basic_auth, bearer_token, body_string, body_string_contains, header, method, path, query_param};
use wiremock::{Mock, MockBuilder, MockServer, ResponseTemplate};

/// `now` of every fixture poll: rows without a supplier timestamp show it.
pub(crate) const NOW: u64 = 1_800_000_000;

pub(crate) fn fixture_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/json").join(name)
}

pub(crate) fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub(crate) fn load(text: &str, env: &BTreeMap<&str, String>) -> Config {
    config::load_str(text, &|name| env.get(name).cloned()).unwrap_or_else(|e| panic!("config: {e}"))
}

/// A stub answering only the request `cfg` describes, with its credentials.
fn expect_request(supplier: &config::SupplierConfig, token: Option<&str>) -> MockBuilder {
    let KindConfig::Json(cfg) = &supplier.kind else { panic!("not a json supplier") };
    let verb = match cfg.method {
        balance_exporter::kinds::json::HttpMethod::Get => "GET",
        balance_exporter::kinds::json::HttpMethod::Post => "POST",
    };
    let mut mock = Mock::given(method(verb)).and(path(cfg.path.as_str()));
    for (k, v) in &cfg.query {
        mock = mock.and(query_param(k.as_str(), v.as_str()));
    }
    for (k, v) in &cfg.headers {
        mock = mock.and(header(k.as_str(), v.as_str()));
    }
    if let Some(body) = &cfg.body {
        let text = match body {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        mock = mock.and(body_string(text));
    }
    match (&supplier.auth, token) {
        (_, Some(token)) => mock.and(bearer_token(token)),
        (Auth::None, None) => mock,
        (Auth::Bearer(t), None) => mock.and(bearer_token(t.expose())),
        (Auth::Basic { username, password }, None) => mock.and(basic_auth(username.expose(), password.expose())),
        (Auth::Header { name, value }, None) => mock.and(header(name.as_str(), value.expose())),
    }
}

/// Polls the config's only supplier once against `server` and renders `/metrics`.
pub(crate) async fn poll_and_render(config: &Config, memory: &mut KindMemory) -> (Result<(), PollError>, Samples) {
    let supplier = &config.suppliers[0];
    let upstream = Upstream::new(build_client(Duration::from_secs(2)), &supplier.upstream_settings(), Arc::new(Limiter::default()));
    let result = supplier.kind.poll(&upstream, memory).await;
    let outcome = result.as_ref().map(|_| ()).map_err(Clone::clone);
    let store = Arc::new(Store::default());
    let slots = store.set_suppliers(&config.suppliers);
    let state = slots[0].state().after_poll(result, Duration::ZERO, SystemTime::UNIX_EPOCH + Duration::from_secs(NOW));
    store.publish(&slots[0], state);
    let text = Renderer::new(store).render().concat();
    (outcome, Samples::parse(std::str::from_utf8(&text).unwrap()))
}

/// Every sample of `expected` is exposed with that value; for the balance
/// families (`supplier_balance*`) nothing else is exposed; a line
/// `# absent: <name>` asserts that no series of that name is exposed.
pub(crate) fn assert_exposes(actual: &Samples, expected_text: &str, what: &str) {
    for name in expected_text.lines().filter_map(|l| l.strip_prefix("# absent: ")) {
        assert!(actual.series_of(name.trim()).is_empty(), "{what}: {name} should be absent\n{}", actual.text);
    }
    let expected = Samples::parse(expected_text);
    let mut names: Vec<&str> = expected.values.keys().map(|k| k.split('{').next().unwrap()).collect();
    names.dedup();
    for (series, value) in &expected.values {
        let got = actual.values.get(series);
        assert_eq!(got, Some(value), "{what}: {series}\n--- exposed:\n{}", actual.text);
    }
    for name in names.iter().filter(|n| n.starts_with("supplier_balance")) {
        let exposed: Vec<&String> = actual.series_of(name).into_iter().map(|(k, _)| k).collect();
        let wanted: Vec<&String> = expected.series_of(name).into_iter().map(|(k, _)| k).collect();
        assert_eq!(exposed, wanted, "{what}: series of {name}");
    }
}

/// Runs one fixture triplet; returns the exposition for extra checks.
async fn run_fixture(name: &str) -> Samples {
    let dir = fixture_dir(name);
    let server = MockServer::start().await;
    let env = BTreeMap::from([("STUB_URL", server.uri())]);
    let config = load(&read(&dir.join("config.yml")), &env);
    expect_request(&config.suppliers[0], None)
        .respond_with(ResponseTemplate::new(200).set_body_raw(read(&dir.join("body.json")), "application/json"))
        .expect(1)
        .mount(&server)
        .await;
    let (_, samples) = poll_and_render(&config, &mut KindMemory::default()).await;
    assert_exposes(&samples, &read(&dir.join("expected.prom")), name);
    samples
}

macro_rules! fixtures {
    ($($test:ident => $dir:literal),* $(,)?) => {$(
        #[tokio::test]
        async fn $test() {
            run_fixture($dir).await;
        }
    )*};
}

fixtures! {
    fixture_list_of_rows => "list_of_rows",
    fixture_exact_decimals => "exact_decimals",
    fixture_string_values => "string_values",
    fixture_currency_map => "currency_map",
    fixture_scalar_currency_map => "scalar_currency_map",
    fixture_account_map => "account_map",
    fixture_minor_units => "minor_units",
    fixture_merged_selectors => "merged_selectors",
    fixture_derived_component => "derived_component",
    fixture_fixed_values => "fixed_values",
    fixture_updated_at => "updated_at",
    fixture_root_path => "root_path",
    fixture_filter => "filter",
    fixture_post_body_query_headers => "post_body_query_headers",
    fixture_success_check => "success_check",
    fixture_success_mismatch => "success_mismatch",
    fixture_bad_row => "bad_row",
    fixture_seed_foxreload => "seed_foxreload",
    fixture_seed_novasend => "seed_novasend",
    fixture_seed_vai247 => "seed_vai247",
}

// ---- the seed shapes read by `json` configs equal the built-in kinds ----

/// The balance families of the built-in kind for the same body.
async fn builtin_balances(kind_yaml: &str, body: &str) -> Samples {
    let server = MockServer::start().await;
    Mock::given(any()).respond_with(ResponseTemplate::new(200).set_body_raw(body.to_string(), "application/json")).mount(&server).await;
    let text = format!("suppliers:\n  - name: s\n    base_url: {}\n{kind_yaml}", server.uri());
    let config = load(&text, &BTreeMap::new());
    poll_and_render(&config, &mut KindMemory::default()).await.1
}

fn balance_families(s: &Samples) -> Vec<(String, f64)> {
    ["supplier_balance", "supplier_balance_frozen", "supplier_balance_usable", "supplier_balance_updated_timestamp_seconds"]
        .iter()
        .flat_map(|n| s.series_of(n))
        .map(|(k, v)| (k.clone(), v))
        .collect()
}

async fn same_as_builtin(fixture: &str, kind_yaml: &str) {
    let json = run_fixture(fixture).await;
    let builtin = builtin_balances(kind_yaml, &read(&fixture_dir(fixture).join("body.json"))).await;
    let (a, b) = (balance_families(&json), balance_families(&builtin));
    assert!(!a.is_empty());
    assert_eq!(a, b, "{fixture}: json kind and built-in kind disagree");
}

#[tokio::test]
async fn foxreload_seed_via_json_equals_builtin() {
    same_as_builtin("seed_foxreload", "    kind: foxreload\n    auth: {bearer_token: fox_key_123}\n").await;
}

#[tokio::test]
async fn novasend_seed_via_json_equals_builtin() {
    same_as_builtin("seed_novasend", "    kind: novasend\n    auth: {basic: {username: nova_key_123, password: nova_client}}\n").await;
}

#[tokio::test]
async fn vai247_seed_via_json_equals_builtin() {
    same_as_builtin("seed_vai247", "    kind: vai247\n    auth: {header: {name: X-Api-Key, value: vai_key_123}}\n").await;
}

// ---- examples/*.yml against stubs of the documented APIs ----

pub(crate) fn example(name: &str) -> String {
    read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(name))
}

async fn run_example(file: &str, fixture: &str, env: &[(&'static str, &str)], base_var: &'static str) {
    let server = MockServer::start().await;
    let mut vars: BTreeMap<&str, String> = env.iter().map(|(k, v)| (*k, v.to_string())).collect();
    vars.insert(base_var, server.uri());
    let config = load(&example(file), &vars);
    assert_eq!(config.suppliers.len(), 1);
    let dir = fixture_dir(fixture);
    expect_request(&config.suppliers[0], None)
        .respond_with(ResponseTemplate::new(200).set_body_raw(read(&dir.join("body.json")), "application/json"))
        .expect(1)
        .mount(&server)
        .await;
    let (outcome, samples) = poll_and_render(&config, &mut KindMemory::default()).await;
    assert_eq!(outcome, Ok(()));
    assert_exposes(&samples, &read(&dir.join("expected.prom")), file);
}

#[tokio::test]
async fn example_stripe() {
    run_example("stripe.yml", "example_stripe", &[("STRIPE_API_KEY", "rk_test_stub_4242")], "STRIPE_BASE_URL").await;
}

#[tokio::test]
async fn example_wise() {
    run_example("wise.yml", "example_wise", &[("WISE_API_TOKEN", "wise_token_stub_1"), ("WISE_PROFILE_ID", "12345")], "WISE_BASE_URL")
        .await;
}

#[tokio::test]
async fn example_twilio() {
    run_example(
        "twilio.yml",
        "example_twilio",
        &[("TWILIO_ACCOUNT_SID", "AC0123456789abcdef0123456789abcdef"), ("TWILIO_AUTH_TOKEN", "twilio_token_stub")],
        "TWILIO_BASE_URL",
    )
    .await;
}

fn paypal_config(server: &MockServer) -> Config {
    let env = BTreeMap::from([
        ("PAYPAL_BASE_URL", server.uri()),
        ("PAYPAL_CLIENT_ID", "paypal_client_id_stub".to_string()),
        ("PAYPAL_CLIENT_SECRET", "paypal_secret_stub".to_string()),
    ]);
    load(&example("paypal.yml"), &env)
}

/// The token endpoint of the PayPal example: Basic client credentials, form body.
fn token_endpoint() -> MockBuilder {
    Mock::given(method("POST"))
        .and(path("/v1/oauth2/token"))
        .and(basic_auth("paypal_client_id_stub", "paypal_secret_stub"))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .and(body_string("grant_type=client_credentials"))
}

fn token(access_token: &str, expires_in: u64) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(serde_json::json!({
        "scope": "https://uri.paypal.com/services/reporting/search/read",
        "access_token": access_token,
        "token_type": "Bearer",
        "app_id": "APP-80W284485P519543T",
        "expires_in": expires_in,
        "nonce": "2026-05-01T13:00:00ZnonceXYZ"
    }))
}

#[tokio::test]
async fn example_paypal_fetches_a_token_then_balances_and_reuses_the_token() {
    let server = MockServer::start().await;
    let config = paypal_config(&server);
    let KindConfig::Json(cfg) = &config.suppliers[0].kind else { panic!() };
    assert_eq!(cfg.oauth2_client_credentials.as_ref().unwrap().token_url, TokenUrl::Path("/v1/oauth2/token".into()));
    token_endpoint().respond_with(token("A21AAtoken_one", 32400)).expect(1).mount(&server).await;
    let body = read(&fixture_dir("example_paypal").join("body.json"));
    expect_request(&config.suppliers[0], Some("A21AAtoken_one"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(body, "application/json"))
        .expect(2)
        .mount(&server)
        .await;
    // The second poll reuses the cached token: the token endpoint is hit once (checked on drop).
    poll_twice_exposing(&config, "example_paypal", "paypal.yml").await;
}

/// Polls twice with one memory (the second poll reusing a cached token);
/// the first must expose the fixture's `expected.prom`.
pub(crate) async fn poll_twice_exposing(config: &Config, fixture: &str, what: &str) {
    let mut memory = KindMemory::default();
    let (outcome, samples) = poll_and_render(config, &mut memory).await;
    assert_eq!(outcome, Ok(()));
    assert_exposes(&samples, &read(&fixture_dir(fixture).join("expected.prom")), what);
    assert_eq!(poll_and_render(config, &mut memory).await.0, Ok(()));
}

#[tokio::test]
async fn oauth2_token_rejected_with_401_is_refreshed_once_and_the_request_retried() {
    let server = MockServer::start().await;
    let config = paypal_config(&server);
    token_endpoint().respond_with(token("token_old", 32400)).up_to_n_times(1).expect(1).mount(&server).await;
    let body = read(&fixture_dir("example_paypal").join("body.json"));
    let ok = || ResponseTemplate::new(200).set_body_raw(body.clone(), "application/json");
    // The old token works once, then is revoked.
    expect_request(&config.suppliers[0], Some("token_old")).respond_with(ok()).up_to_n_times(1).mount(&server).await;
    let mut memory = KindMemory::default();
    assert_eq!(poll_and_render(&config, &mut memory).await.0, Ok(()));
    server.reset().await;
    let unauthorized = ResponseTemplate::new(401)
        .set_body_json(serde_json::json!({"error": "invalid_token", "error_description": "Token signature verification failed"}));
    expect_request(&config.suppliers[0], Some("token_old")).respond_with(unauthorized).expect(1).mount(&server).await;
    token_endpoint().respond_with(token("token_new", 32400)).expect(1).mount(&server).await;
    expect_request(&config.suppliers[0], Some("token_new")).respond_with(ok()).expect(1).mount(&server).await;
    assert_eq!(poll_and_render(&config, &mut memory).await.0, Ok(()));
}

#[tokio::test]
async fn oauth2_fresh_token_rejected_fails_with_auth_without_looping() {
    let server = MockServer::start().await;
    let config = paypal_config(&server);
    token_endpoint().respond_with(token("token_x", 32400)).expect(1).mount(&server).await;
    Mock::given(path("/v1/reporting/balances")).respond_with(ResponseTemplate::new(401)).expect(1).mount(&server).await;
    let (outcome, samples) = poll_and_render(&config, &mut KindMemory::default()).await;
    let err = outcome.unwrap_err();
    assert_eq!(err.reason.as_str(), "auth");
    assert_eq!(samples.value("supplier_poll_errors_total", &[("supplier", "paypal"), ("reason", "auth")]), 1.0);
}

#[tokio::test]
async fn oauth2_token_expiring_at_once_is_fetched_every_poll() {
    let server = MockServer::start().await;
    let config = paypal_config(&server);
    token_endpoint().respond_with(token("short_lived", 0)).expect(2).mount(&server).await;
    let body = read(&fixture_dir("example_paypal").join("body.json"));
    expect_request(&config.suppliers[0], Some("short_lived"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(body, "application/json"))
        .expect(2)
        .mount(&server)
        .await;
    let mut memory = KindMemory::default();
    assert_eq!(poll_and_render(&config, &mut memory).await.0, Ok(()));
    assert_eq!(poll_and_render(&config, &mut memory).await.0, Ok(()));
}

#[tokio::test]
async fn oauth2_errors_never_show_the_client_secret() {
    let server = MockServer::start().await;
    let config = paypal_config(&server);
    // A careless token endpoint echoing the credentials it was sent.
    token_endpoint()
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_string("{\"error\":\"invalid_client\",\"got\":\"paypal_client_id_stub:paypal_secret_stub\"}"),
        )
        .mount(&server)
        .await;
    let (outcome, _) = poll_and_render(&config, &mut KindMemory::default()).await;
    let err = outcome.unwrap_err();
    assert_eq!(err.reason.as_str(), "auth");
    assert!(err.message.starts_with("oauth2 token request: http 401"), "{}", err.message);
    assert!(!err.message.contains("paypal_secret_stub") && !err.message.contains("paypal_client_id_stub"), "{}", err.message);
}

#[tokio::test]
async fn oauth2_absolute_token_url_and_client_credentials_in_the_body() {
    let api = MockServer::start().await;
    let idp = MockServer::start().await;
    let text = format!(
        "suppliers:\n  - name: s\n    kind: json\n    base_url: {}\n    min_interval: 0s\n    path: /balance\n    oauth2_client_credentials:\n      token_url: {}/oauth/token?audience=balances\n      client_id: cid\n      client_secret: csecret\n      client_auth: body\n      scopes: [balance.read, account.read]\n    rows:\n      - {{select: '$', currency: USD, balance: '$.amount'}}\n",
        api.uri(),
        idp.uri()
    );
    let config = load(&text, &BTreeMap::new());
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .and(query_param("audience", "balances"))
        .and(body_string_contains("grant_type=client_credentials"))
        .and(body_string_contains("scope=balance.read+account.read"))
        .and(body_string_contains("client_id=cid"))
        .and(body_string_contains("client_secret=csecret"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"access_token": "idp_token", "token_type": "bearer", "expires_in": "3600"})),
        )
        .expect(1)
        .mount(&idp)
        .await;
    Mock::given(method("GET"))
        .and(path("/balance"))
        .and(bearer_token("idp_token"))
        .respond_with(ResponseTemplate::new(200).set_body_raw("{\"amount\": \"42.10\"}", "application/json"))
        .expect(1)
        .mount(&api)
        .await;
    let (outcome, samples) = poll_and_render(&config, &mut KindMemory::default()).await;
    assert_eq!(outcome, Ok(()));
    assert_eq!(samples.value("supplier_balance", &[("supplier", "s"), ("account", "main"), ("currency", "USD")]), 42.10);
}

// ---- config checking ----

pub(crate) fn config_errors(text: &str) -> Vec<String> {
    match config::load_str(text, &|_| None) {
        Err(ConfigError::Invalid(issues)) => issues.iter().map(|i| i.to_string()).collect(),
        Err(e) => vec![e.to_string()],
        Ok(_) => vec![],
    }
}

#[test]
fn config_check_rejects_bad_jsonpath_and_mappings_with_key_paths() {
    let base = "suppliers:\n  - name: s\n    kind: json\n    base_url: http://127.0.0.1:9\n    path: /b\n";
    let errs = config_errors(&format!("{base}    rows:\n      - {{select: '$.data[', currency: USD, balance: '$.b'}}\n"));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].starts_with("suppliers[0].rows[0].select: invalid JSONPath \"$.data[\""), "{errs:?}");
    let errs = config_errors(&format!("{base}    rows:\n      - {{select: '$', currency: '$.c', balance: '$.a..'}}\n"));
    assert!(errs[0].starts_with("suppliers[0].rows[0].balance: invalid JSONPath \"$.a..\""), "{errs:?}");
    let errs = config_errors(&format!(
        "{base}    success: {{path: 'statusCode', equals: 200}}\n    rows:\n      - {{select: '$', currency: USD, balance: '$.b'}}\n"
    ));
    assert!(errs[0].starts_with("suppliers[0].success.path: invalid JSONPath \"statusCode\""), "{errs:?}");
    let errs = config_errors(&format!("{base}    rows:\n      - {{select: '$', currency: USD, balance: '$.b', colour: red}}\n"));
    assert!(errs[0].starts_with("suppliers[0]: rows[0].colour: unknown field `colour`"), "{errs:?}");
    let errs = config_errors(&format!("{base}    rows:\n      - {{select: '$', currency: {{key: 0, value: USD}}, balance: '$.b'}}\n"));
    assert_eq!(errs, vec!["suppliers[0]: rows[0].currency: give exactly one of path, value, key"]);
    let errs = config_errors(&format!("{base}    rows:\n      - {{select: '$', currency: EURO, usable: '$.b'}}\n"));
    assert_eq!(errs, vec!["suppliers[0].rows[0].currency: \"EURO\" is not a 3-letter currency code"]);
    let errs = config_errors(&format!("{base}    oauth2_client_credentials: {{token_url: /t, client_id: id, client_secret_file: /nonexistent/secret}}\n    rows:\n      - {{select: '$', currency: USD, balance: '$.b'}}\n"));
    assert!(
        errs[0].starts_with("suppliers[0]: oauth2_client_credentials: client_secret_file: cannot read secret file /nonexistent/secret"),
        "{errs:?}"
    );
    let errs = config_errors(&format!("{base}    oauth2_client_credentials: {{token_url: /t, client_id: id, client_secret: s3cr3t_value, client_secret_file: /x}}\n    rows:\n      - {{select: '$', currency: USD, balance: '$.b'}}\n"));
    assert!(errs[0].contains("give either client_secret or client_secret_file, not both"), "{errs:?}");
    assert!(!errs[0].contains("s3cr3t_value"));
}

#[test]
fn examples_load_and_name_their_variables() {
    for file in ["stripe.yml", "wise.yml", "paypal.yml", "twilio.yml", "currencycloud.yml", "airwallex.yml"] {
        let errs = config_errors(&example(file));
        assert!(!errs.is_empty() && errs.iter().all(|e| e.contains("environment variable")), "{file}: {errs:?}");
    }
    let errs = config_errors(&example("twilio.yml"));
    assert_eq!(
        errs,
        vec![
            "suppliers[0].auth.basic.username: environment variable TWILIO_ACCOUNT_SID is not set",
            "suppliers[0].auth.basic.password: environment variable TWILIO_AUTH_TOKEN is not set",
            "suppliers[0].path: environment variable TWILIO_ACCOUNT_SID is not set",
        ]
    );
}

#[test]
fn oauth2_client_secret_file_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secret");
    std::fs::write(&file, "from_file_secret\n").unwrap();
    let text = format!(
        "suppliers:\n  - name: s\n    kind: json\n    base_url: http://127.0.0.1:9\n    path: /b\n    oauth2_client_credentials: {{token_url: /t, client_id: id, client_secret_file: '{}'}}\n    rows:\n      - {{select: '$', currency: USD, balance: '$.b'}}\n",
        file.display()
    );
    let config = load(&text, &BTreeMap::new());
    let KindConfig::Json(cfg) = &config.suppliers[0].kind else { panic!() };
    let o = cfg.oauth2_client_credentials.as_ref().unwrap();
    assert_eq!(o.client_secret.expose(), "from_file_secret");
    assert!(!format!("{config:?}").contains("from_file_secret"));
}

// ---- end to end: the exporter itself ----

#[tokio::test]
async fn exporter_polls_a_json_supplier_and_counts_row_errors() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v1/payment-gateway/balance-inquiry"))
        .and(header("x-api-key", "vai_e2e_key"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            r#"{"statusCode": 200, "message": "Success", "data": {"usd": {"balance": 1250.75, "freeze": 100.00, "usable": 1150.75}, "khr": {"balance": null, "freeze": 0, "usable": 0}}}"#,
            "application/json",
        ))
        .mount(&server)
        .await;
    let text = format!(
        "global: {{poll_interval: 1h}}\nsuppliers:\n  - name: vai\n    kind: json\n    base_url: {}\n    auth: {{header: {{name: X-Api-Key, value: vai_e2e_key}}}}\n    method: POST\n    path: /api/v1/payment-gateway/balance-inquiry\n    success: {{path: $.statusCode, equals: 200, message: $.message}}\n    rows:\n      - select: $.data.*\n        currency: {{key: 0}}\n        balance: $.balance\n        frozen: $.freeze\n        usable: $.usable\n",
        server.uri()
    );
    let (app, _dir) = common::start(&text).await;
    let s = common::wait_for(&app, Duration::from_secs(10), "first poll", |s| s.get("supplier_up", &[("supplier", "vai")]).is_some()).await;
    let usd = [("supplier", "vai"), ("account", "main"), ("currency", "USD")];
    assert_eq!(s.value("supplier_up", &[("supplier", "vai")]), 1.0);
    assert_eq!(s.value("supplier_balance", &usd), 1250.75);
    assert_eq!(s.value("supplier_balance_frozen", &usd), 100.0);
    assert_eq!(s.value("supplier_balance_usable", &usd), 1150.75);
    assert_eq!(s.get("supplier_balance", &[("supplier", "vai"), ("account", "main"), ("currency", "KHR")]), None);
    assert_eq!(s.value("supplier_row_errors_total", &[("supplier", "vai")]), 1.0);
    assert_eq!(s.value("supplier_info", &[("supplier", "vai"), ("kind", "json")]), 1.0);
}
