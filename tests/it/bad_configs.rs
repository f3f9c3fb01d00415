//! Bad config files, one mistake per file (blackbox_exporter's table style):
//! each file in `tests/fixtures/bad_configs/` has its exact expected error
//! here. `web_*.yml` files are web configs (`--web.config.file`).
//!
//! `BAD_CONFIGS_PRINT=1 cargo test --test bad_configs -- --nocapture` prints
//! what each file gives, to write a new row.

use std::path::{Path, PathBuf};

use balance_exporter::config::{self, ConfigError};
use balance_exporter::web;

const DIR: &str = "tests/fixtures/bad_configs";

/// (file, every problem reported, in order).
const CASES: &[(&str, &[&str])] = &[
    // YAML and structure
    ("yaml_syntax.yml", &["parsing YAML: line 5 column 1: could not find expected ':'"]),
    ("unknown_top_level_key.yml", &["supplier: unknown field `supplier`, expected `global` or `suppliers`"]),
    ("unknown_global_key.yml", &["global.poll_intervall: unknown field `poll_intervall`, expected one of `poll_interval`, `timeout`, `min_interval`, `max_response_size`, `max_retries`, `proxy_url`, `no_proxy`, `tls`, `topup_window`"]),
    ("suppliers_not_a_list.yml", &["suppliers: invalid type: map, expected a sequence"]),
    ("supplier_not_a_mapping.yml", &["suppliers[0]: expected a mapping"]),
    // Supplier keys
    ("unknown_supplier_key.yml", &["suppliers[0]: unknown field `colour` (common keys: name, base_url, auth, poll_interval, min_interval, timeout, max_response_size, max_retries, rate_limit_group, thresholds, proxy_url, no_proxy, tls, topup_window; keys of this kind: path)"]),
    ("unknown_kind.yml", &["suppliers[0].kind: unknown variant `foxreloaded`, expected one of KINDS"]),
    ("missing_kind.yml", &["suppliers[0]: missing field `kind`"]),
    ("missing_name.yml", &["suppliers[0]: missing field `name`"]),
    ("duplicate_name.yml", &["suppliers[1].name: duplicate supplier name \"fox\" (first used by suppliers[0])"]),
    ("bad_name.yml", &["suppliers[0].name: must be non-empty and use only letters, digits, '_', '-' and '.'"]),
    ("bad_duration.yml", &["suppliers[0].poll_interval: invalid duration \"5 minutes please\" (use e.g. 250ms, 10s, 5m, 1h)"]),
    ("zero_poll_interval.yml", &["suppliers[0].poll_interval: must be greater than 0"]),
    ("zero_timeout.yml", &["suppliers[0].timeout: must be greater than 0"]),
    ("bad_size.yml", &["global.max_response_size: invalid size unit in \"4 lots\" (use B, KiB, MiB, GiB, KB, MB)"]),
    ("negative_max_retries.yml", &["suppliers[0].max_retries: invalid value: integer `-1`, expected u32"]),
    ("path_without_slash.yml", &["suppliers[0].path: must start with '/'"]),
    // base_url
    ("bad_base_url_scheme.yml", &["suppliers[0].base_url: scheme must be http or https, found \"ftp\""]),
    ("base_url_with_credentials.yml", &["suppliers[0].base_url: credentials in the URL are not allowed; use `auth`"]),
    ("base_url_with_query.yml", &["suppliers[0].base_url: must not have a query or fragment"]),
    ("base_url_not_a_url.yml", &["suppliers[0].base_url: invalid URL: relative URL without a base"]),
    ("missing_base_url.yml", &["suppliers[0].base_url: missing; this kind has no default"]),
    // Secrets
    ("two_auth_methods.yml", &["suppliers[0].auth: give exactly one of bearer_token, basic, header"]),
    ("inline_and_file.yml", &["suppliers[0].auth.bearer_token: give either bearer_token or bearer_token_file, not both"]),
    (
        "inline_secret_in_file_key.yml",
        &["suppliers[0].auth.bearer_token_file: cannot read secret file <value hidden>: entity not found (this looks like a secret given inline; `*_file` keys take a file path)"],
    ),
    ("missing_secret_file.yml", &["suppliers[0].auth.bearer_token_file: cannot read secret file /nonexistent/secrets/fox_token: entity not found"]),
    ("empty_secret_file.yml", &["suppliers[0].auth.bearer_token_file: secret file tests/fixtures/bad_configs/files/empty_token is empty"]),
    ("missing_env_var.yml", &["suppliers[0].auth.bearer_token: environment variable FOXRELOAD_API_KEY_NOT_SET is not set"]),
    ("bad_env_reference.yml", &["suppliers[0].base_url: invalid variable reference ${1HOST}"]),
    ("unterminated_env_reference.yml", &["suppliers[0].base_url: unterminated ${ in string"]),
    ("bad_header_name.yml", &["suppliers[0].auth.header.name: \"X Api Key\" is not a valid header name"]),
    ("basic_without_username.yml", &["suppliers[0].auth.basic.username: missing; give basic.username or basic.username_file"]),
    // Thresholds
    ("bad_threshold_currency.yml", &["suppliers[0].thresholds[0].currency: \"dollars\" is not a 3-letter currency code"]),
    ("threshold_without_limits.yml", &["suppliers[0].thresholds[0]: needs at least one of `low`, `runway_days`, `topup_target_days`"]),
    ("threshold_negative_runway.yml", &["suppliers[0].thresholds[0].runway_days: must be greater than 0"]),
    ("threshold_low_not_a_number.yml", &["suppliers[0].thresholds[0].low: expected a number"]),
    ("threshold_zero_topup_target.yml", &["suppliers[0].thresholds[0].topup_target_days: must be greater than 0"]),
    ("threshold_negative_topup_target.yml", &["suppliers[0].thresholds[0].topup_target_days: must be greater than 0"]),
    ("threshold_topup_target_not_a_number.yml", &["suppliers[0].thresholds[0].topup_target_days: expected a number"]),
    // Top-up window (global, or a supplier's own)
    (
        "topup_window_unknown_key.yml",
        &["global.topup_window.hour: unknown field `hour`, expected one of `timezone`, `days`, `hours`, `holidays`, `lead_time`, `margin`"],
    ),
    (
        "supplier_topup_window_unknown_key.yml",
        &["suppliers[0].topup_window.tz: unknown field `tz`, expected one of `timezone`, `days`, `hours`, `holidays`, `lead_time`, `margin`"],
    ),
    ("topup_window_missing_lead_time.yml", &["global.topup_window: missing field `lead_time`"]),
    ("topup_window_bad_timezone.yml", &["global.topup_window.timezone: unknown time zone \"Europe/Berln\" (use an IANA name such as Europe/Berlin)"]),
    ("topup_window_bad_day.yml", &["global.topup_window.days: unknown day \"monday\" (use mon, tue, wed, thu, fri, sat, sun)"]),
    ("topup_window_duplicate_day.yml", &["global.topup_window.days: mon is listed twice"]),
    ("topup_window_no_days.yml", &["global.topup_window.days: needs at least one day (a window that never opens cannot take a top-up)"]),
    ("topup_window_bad_hours.yml", &["global.topup_window.hours: invalid hours \"9-17\" (use HH:MM-HH:MM, e.g. 09:00-17:00)"]),
    ("topup_window_hours_backwards.yml", &["global.topup_window.hours: end 09:00 is not after start 17:00 (a window cannot cross midnight)"]),
    ("topup_window_bad_holiday.yml", &["global.topup_window.holidays[1]: invalid date \"2026-02-30\" (use YYYY-MM-DD)"]),
    (
        "topup_window_bad_lead_time.yml",
        &[
            "global.topup_window.lead_time: invalid duration \"soon\" (use e.g. 250ms, 10s, 5m, 1h)",
            "global.topup_window.margin: invalid duration \"half a day\" (use e.g. 250ms, 10s, 5m, 1h)",
        ],
    ),
    // Every problem of a file at once
    (
        "many_problems.yml",
        &[
            "suppliers[0].poll_interval: invalid duration \"5x\" (use e.g. 250ms, 10s, 5m, 1h)",
            "suppliers[1]: unknown field `colour` (common keys: name, base_url, auth, poll_interval, min_interval, timeout, max_response_size, max_retries, rate_limit_group, thresholds, proxy_url, no_proxy, tls, topup_window; keys of this kind: path)",
            "suppliers[2].name: duplicate supplier name \"fox\" (first used by suppliers[0])",
            "suppliers[2].base_url: scheme must be http or https, found \"ftp\"",
        ],
    ),
    // Web config (--web.config.file)
    ("web_unknown_key.yml", &["tls_config: unknown field `tls_config`, expected one of `tls_server_config`, `http_server_config`, `basic_auth_users`, `rate_limit`"]),
    ("web_cert_without_key.yml", &["tls_server_config.cert_file: no PEM certificate found", "tls_server_config.key_file: missing; TLS needs a private key (key_file or key)"]),
    (
        "web_missing_cert_file.yml",
        &["tls_server_config.cert_file: cannot read /nonexistent/server.crt: entity not found", "tls_server_config.key_file: cannot read secret file /nonexistent/server.key: entity not found"],
    ),
    ("web_key_not_pem.yml", &["tls_server_config.cert_file: no PEM certificate found", "tls_server_config.key_file: no PEM private key found (PKCS#8, PKCS#1 or SEC1)"]),
    (
        "web_plain_password.yml",
        &["basic_auth_users.prometheus: is not a bcrypt hash (value hidden: it may be a plain password); make one with htpasswd -nBC 10 \"\" | tr -d ':\\n'"],
    ),
    (
        "web_forbidden_header.yml",
        &["http_server_config.headers.Server: header \"Server\" cannot be configured (allowed: Strict-Transport-Security, X-Content-Type-Options, X-Frame-Options, X-XSS-Protection, Content-Security-Policy)"],
    ),
    ("web_bcrypt_cost_too_high.yml", &["basic_auth_users.prometheus: bcrypt cost 20 is above 17: every check would take many seconds of CPU; use 10 to 12"]),
    ("web_bad_header_value.yml", &["http_server_config.headers.X-Frame-Options: invalid value \"allow-from\"; expected one of: deny, sameorigin"]),
    ("web_http2_not_bool.yml", &["http_server_config.http2: invalid type: string \"maybe\", expected a boolean"]),
    (
        "web_client_ca_without_auth_type.yml",
        &[
            "tls_server_config.cert_file: cannot read /nonexistent/server.crt: entity not found",
            "tls_server_config.key_file: cannot read secret file /nonexistent/server.key: entity not found",
            "tls_server_config.client_ca_file: is set but client_auth_type is NoClientCert; set client_auth_type to VerifyClientCertIfGiven or RequireAndVerifyClientCert",
        ],
    ),
    (
        "web_verify_without_client_ca.yml",
        &[
            "tls_server_config.cert_file: cannot read /nonexistent/server.crt: entity not found",
            "tls_server_config.key_file: cannot read secret file /nonexistent/server.key: entity not found",
            "tls_server_config.client_ca_file: missing; client_auth_type verifies client certificates against it",
        ],
    ),
    (
        "web_unverified_client_cert.yml",
        &[
            "tls_server_config.cert_file: cannot read /nonexistent/server.crt: entity not found",
            "tls_server_config.key_file: cannot read secret file /nonexistent/server.key: entity not found",
            "tls_server_config.client_auth_type: RequireAnyClientCert (a client certificate that is not verified) is not supported; use VerifyClientCertIfGiven or RequireAndVerifyClientCert with client_ca_file",
        ],
    ),
    (
        "web_unknown_client_auth_type.yml",
        &[
            "tls_server_config.cert_file: cannot read /nonexistent/server.crt: entity not found",
            "tls_server_config.key_file: cannot read secret file /nonexistent/server.key: entity not found",
            "tls_server_config.client_auth_type: unknown value \"Required\" (NoClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert)",
        ],
    ),
    (
        "web_tls10.yml",
        &[
            "tls_server_config.cert_file: cannot read /nonexistent/server.crt: entity not found",
            "tls_server_config.key_file: cannot read secret file /nonexistent/server.key: entity not found",
            "tls_server_config.min_version: TLS10 is not supported (rustls speaks TLS12 and TLS13)",
        ],
    ),
    (
        "web_min_above_max.yml",
        &[
            "tls_server_config.cert_file: cannot read /nonexistent/server.crt: entity not found",
            "tls_server_config.key_file: cannot read secret file /nonexistent/server.key: entity not found",
            "tls_server_config.max_version: is lower than min_version",
        ],
    ),
    (
        "web_cipher_suites.yml",
        &[
            "tls_server_config.cipher_suites: is not supported (rustls offers only modern AEAD suites and cannot be narrowed here); remove it",
            "tls_server_config.cert_file: cannot read /nonexistent/server.crt: entity not found",
            "tls_server_config.key_file: cannot read secret file /nonexistent/server.key: entity not found",
        ],
    ),
];

/// Strings that appear in the fixtures as secrets and must never be echoed.
const SECRETS: &[&str] = &["hunter2", "sk_live_51HfQkLmN0pQr", "sk_test_123456", "k_123456", "p_123456", "correct-horse-battery"];

fn env(name: &str) -> Option<String> {
    (name == "FIXTURES").then(|| DIR.to_string())
}

/// Every problem a file gives, one string each.
fn problems(file: &Path) -> Vec<String> {
    let name = file.file_name().unwrap().to_str().unwrap();
    let result = if name.starts_with("web_") {
        web::load_file(file).map(|_| ())
    } else {
        let text = std::fs::read_to_string(file).unwrap();
        config::load_str(&text, &env).map(|_| ())
    };
    match result {
        Ok(()) => vec![],
        Err(ConfigError::Invalid(issues)) => issues.iter().map(|i| i.to_string()).collect(),
        Err(e) => vec![e.to_string()],
    }
}

#[test]
fn every_bad_config_gives_its_exact_error() {
    let print = std::env::var_os("BAD_CONFIGS_PRINT").is_some();
    let mut failures = Vec::new();
    for (file, expected) in CASES {
        let got = problems(&PathBuf::from(DIR).join(file));
        if print {
            println!("(\"{file}\", &{got:?}),");
        }
        let expected: Vec<String> = expected.iter().map(|e| e.replace("KINDS", &kinds())).collect();
        if got != expected {
            failures.push(format!("{file}:\n  expected {expected:#?}\n  got      {got:#?}"));
        }
        for secret in SECRETS {
            assert!(got.iter().all(|g| !g.contains(secret)), "{file}: secret {secret:?} echoed in {got:?}");
        }
    }
    assert!(failures.is_empty(), "{} of {} files differ:\n{}", failures.len(), CASES.len(), failures.join("\n"));
}

/// The list of kinds in serde's "expected one of" text, as the kinds grow.
fn kinds() -> String {
    let text = std::fs::read_to_string(PathBuf::from(DIR).join("unknown_kind.yml")).unwrap();
    match config::load_str(&text, &env) {
        Err(ConfigError::Invalid(i)) => i[0].message.split("expected one of ").nth(1).unwrap_or("").to_string(),
        _ => String::new(),
    }
}

#[test]
fn every_fixture_is_in_the_table() {
    let mut files: Vec<String> = std::fs::read_dir(DIR)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".yml"))
        .collect();
    files.sort();
    let listed: Vec<&str> = CASES.iter().map(|(f, _)| *f).collect();
    let missing: Vec<&String> = files.iter().filter(|f| !listed.contains(&f.as_str())).collect();
    assert!(missing.is_empty(), "fixtures without a row: {missing:?}");
    assert!(CASES.iter().all(|(f, _)| files.iter().any(|x| x == f)), "rows without a fixture");
}

/// Secret files readable by group or others load, with a warning naming the
/// key and the mode. Git does not keep file modes, so the file is made here.
#[test]
fn secret_files_readable_by_others_warn() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("fox_token");
    std::fs::write(&token, "sk_live_0123456789\n").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let text = format!("suppliers:\n  - {{name: fox, kind: foxreload, auth: {{bearer_token_file: {}}}}}\n", token.display());
    let cfg = config::load_str(&text, &env).expect("loads despite the mode");
    assert_eq!(
        cfg.warnings,
        vec![format!(
            "suppliers[0].auth.bearer_token_file: secret file {} is readable by group or others (mode 0644); use chmod 600",
            token.display()
        )]
    );
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(config::load_str(&text, &env).unwrap().warnings.is_empty(), "0600 is quiet");

    // The TLS key of the web config is a secret file too.
    let key = dir.path().join("server.key");
    let cert = dir.path().join("server.crt");
    let signed = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(&cert, signed.cert.pem()).unwrap();
    std::fs::write(&key, signed.signing_key.serialize_pem()).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let web_file = dir.path().join("web.yml");
    std::fs::write(&web_file, format!("tls_server_config:\n  cert_file: {}\n  key_file: {}\n", cert.display(), key.display())).unwrap();
    let loaded = web::load_file(&web_file).unwrap();
    assert_eq!(
        loaded.warnings,
        vec![format!(
            "tls_server_config.key_file: secret file {} is readable by group or others (mode 0640); use chmod 600",
            key.display()
        )]
    );

    // --config.check prints the warning and still exits 0.
    let config_file = dir.path().join("c.yml");
    std::fs::write(&config_file, &text).unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o604)).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_balance_exporter"))
        .args(["--config.check", "--config.file", config_file.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: suppliers[0].auth.bearer_token_file: secret file") && stderr.contains("(mode 0604); use chmod 600"),
        "{stderr}"
    );
    assert!(!stderr.contains("sk_live_0123456789"));
}

/// `--config.check` prints every problem of the file and exits 1, for a
/// config and for a web config.
#[test]
fn config_check_exits_1_with_the_table_errors() {
    let bin = env!("CARGO_BIN_EXE_balance_exporter");
    let good = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(good.path(), "suppliers: []\n").unwrap();
    for (file, flag) in [("many_problems.yml", "--config.file"), ("web_plain_password.yml", "--web.config.file")] {
        let path = PathBuf::from(DIR).join(file);
        let mut args = vec!["--config.check".to_string()];
        if flag == "--web.config.file" {
            args.extend(["--config.file".into(), good.path().display().to_string()]);
        }
        args.extend([flag.to_string(), path.display().to_string()]);
        let out = std::process::Command::new(bin).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{file}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let expected = CASES.iter().find(|(f, _)| *f == file).unwrap().1;
        assert!(stderr.starts_with(&format!("{}: {} problem(s):\n", path.display(), expected.len())), "{stderr}");
        for line in expected {
            assert!(stderr.contains(&format!("  {line}\n")), "{file}: {line:?} not in\n{stderr}");
        }
    }
}
