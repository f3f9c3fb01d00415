//! Fuzzing the config loaders (`config::load_str`, `web::load_str`): YAML
//! built from the keys and values they read, and byte-level mutations of
//! the example and bad-config files.

use proptest::prelude::*;
use proptest::sample::select;

use super::kit::{cases, mutate, run};
use crate::{config, web};

const CONFIG_KEYS: &[&str] = &[
    "global",
    "suppliers",
    "name",
    "kind",
    "base_url",
    "auth",
    "bearer_token",
    "bearer_token_file",
    "basic",
    "username",
    "password",
    "password_file",
    "header",
    "value",
    "value_file",
    "poll_interval",
    "min_interval",
    "timeout",
    "max_response_size",
    "max_retries",
    "rate_limit_group",
    "thresholds",
    "currency",
    "account",
    "low",
    "runway_days",
    "topup_target_days",
    "topup_window",
    "timezone",
    "days",
    "hours",
    "holidays",
    "lead_time",
    "margin",
    "path",
    "rows",
    "select",
    "usable",
    "frozen",
    "unit",
    "currency_exponents",
    "customers",
    "all_customers",
    "page_size",
    "limit",
    "max_pages",
    "oauth2_client_credentials",
    "token_url",
    "client_id",
    "client_secret",
    "query",
    "query_secrets",
    "login",
    "form",
    "token",
    "token_lifetime",
    "token_header",
    "pagination",
    "next_url",
    "cursor",
    "page",
    "offset",
    "has_more",
    "total_pages",
    "optional",
    "lowest",
    "duplicate_window",
];
const CONFIG_LEAVES: &[&str] = &[
    "foxreload",
    "novasend",
    "vai247",
    "json",
    "balanced_orders",
    "dodo_wallets",
    "fox",
    "'https://api.example.com'",
    "'ftp://x'",
    "'http://[::1'",
    "5m",
    "0s",
    "1h30m",
    "-1s",
    "10 parsecs",
    "4MiB",
    "0",
    "-1",
    "99999999999999999999",
    "1e400",
    "USD",
    "usd",
    "'${FUZZ_VAR}'",
    "'${UNSET_FUZZ_VAR}'",
    "'${X:-d}'",
    "'${'",
    "'$$'",
    "'${1A}'",
    "/nonexistent/secret",
    "''",
    "null",
    "~",
    "true",
    "minor",
    "major",
    "'$.balances[*]'",
    "'$[?(@.x'",
    "'$..amount'",
    "[]",
    "{}",
    "'\\u0000'",
    "!!binary aGVsbG8=",
    "&a x",
    "*a",
    "7.9228162514264337593543950336e28",
    "'é\u{301}'",
    "Europe/Berlin",
    "mon",
    "[mon, fri]",
    "'09:00-17:00'",
    "'00:00-24:00'",
    "'17:00-09:00'",
    "2026-12-25",
    "2026-02-30",
];

fn yaml_text() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        6 => select(CONFIG_LEAVES).prop_map(str::to_string),
        1 => "[a-zA-Z0-9_./:${}-]{0,12}",
    ];
    leaf.prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(|items| format!("[{}]", items.join(", "))),
            proptest::collection::vec((select(CONFIG_KEYS), inner), 0..7).prop_map(|fields| {
                let fields: Vec<String> = fields.into_iter().map(|(k, v)| format!("{k}: {v}")).collect();
                format!("{{{}}}", fields.join(", "))
            }),
        ]
    })
}

fn config_texts(seeds: Vec<String>) -> impl Strategy<Value = String> {
    let edits = proptest::collection::vec((0.0..1.0f64, any::<u8>(), any::<u8>()), 1..6);
    let seeds: &'static [String] = Box::leak(seeds.into_boxed_slice());
    prop_oneof![
        2 => any::<String>(),
        3 => yaml_text().prop_map(|t| format!("suppliers: [{t}]")),
        2 => yaml_text(),
        4 => (select(seeds), edits).prop_map(|(seed, edits)| String::from_utf8_lossy(&mutate(&seed, &edits)).into_owned()),
    ]
}

/// Example configs and the bad-config fixtures, as seeds.
fn config_seeds(prefix_web: bool) -> Vec<String> {
    let mut seeds = Vec::new();
    for dir in ["examples", "tests/fixtures/bad_configs"] {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if name.ends_with(".yml") && name.starts_with("web_") == prefix_web && name != "prometheus.yml" {
                seeds.push(std::fs::read_to_string(entry.path()).unwrap());
            }
        }
    }
    assert!(!seeds.is_empty());
    seeds
}

#[test]
fn config_loader() {
    let env = |name: &str| (name == "FUZZ_VAR" || name.ends_with("_KEY") || name.ends_with("_ID")).then(|| "v".to_string());
    run("config loader", cases("FUZZ_CASES", 2000), config_texts(config_seeds(false)), |text| {
        let result = config::load_str(&text, &env);
        if let Err(config::ConfigError::Invalid(issues)) = &result {
            prop_assert!(!issues.is_empty());
        }
        Ok(result.is_ok())
    });
}

#[test]
fn web_config_loader() {
    // Cost-4 hashes only: the loader makes a dummy hash at the users' cost.
    let hash = bcrypt::hash("x", 4).unwrap();
    let mut seeds = config_seeds(true);
    seeds.push(format!(
        "basic_auth_users:\n  a: '{hash}'\n  b: '{hash}'\nhttp_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\n"
    ));
    run("web config loader", cases("FUZZ_CASES", 2000), config_texts(seeds), |text| {
        // The dummy hash costs 2^cost rounds: keep generated costs at 4.
        let text = text
            .replace("$2y$1", "$2y$0")
            .replace("$2b$1", "$2b$0")
            .replace("$2y$2", "$2y$0")
            .replace("$2b$2", "$2b$0")
            .replace("$2y$3", "$2y$0")
            .replace("$2b$3", "$2b$0");
        Ok(web::load_str(&text).is_ok())
    });
}
