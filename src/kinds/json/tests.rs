//! Unit tests of the mapping: exactness, merging, derivation, errors.

use std::sync::Arc;

use reqwest::Method;

use super::*;
use crate::upstream::{build_client, Limiter};

fn cfg(yaml: &str) -> JsonConfig {
    serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{e}"))
}

fn upstream() -> Upstream {
    let _ = (build_client, Arc::new(Limiter::default()));
    crate::kinds::test_upstream()
}

fn d(s: &str) -> Decimal {
    Decimal::from_str_exact(s).unwrap()
}

fn rows(out: &PollOutput) -> Vec<(String, String, String, String, String)> {
    out.balances
        .iter()
        .map(|b| (b.account.clone(), b.currency.clone(), b.balance.to_string(), b.frozen.to_string(), b.usable.to_string()))
        .collect()
}

fn row(a: &str, c: &str, b: &str, f: &str, u: &str) -> (String, String, String, String, String) {
    (a.into(), c.into(), b.into(), f.into(), u.into())
}

#[test]
fn amounts_keep_every_digit() {
    let c = cfg("path: /b\nrows:\n  - {select: '$.items[*]', currency: '$.c', balance: '$.v'}\n");
    let body = br#"{"items": [{"c": "USD", "v": 12345678901234567.89}, {"c": "EUR", "v": 1.50}, {"c": "GBP", "v": "-3.20"}]}"#;
    let out = parse(&c, &upstream(), body).unwrap();
    let by_currency = |cur: &str| out.balances.iter().find(|b| b.currency == cur).unwrap().balance;
    assert_eq!(by_currency("USD"), d("12345678901234567.89"));
    assert_eq!(by_currency("EUR").to_string(), "1.50");
    assert_eq!(by_currency("GBP").to_string(), "-3.20");
}

#[test]
fn currency_maps_by_key_lower_case_and_scalar_values() {
    let c = cfg("path: /b\nrows:\n  - {select: '$.data.*', currency: {key: 0}, balance: '$.balance', frozen: '$.freeze'}\n");
    let out = parse(&c, &upstream(), br#"{"data": {"usd": {"balance": 10.5, "freeze": 1}, "khr": {"balance": 5000000.00, "freeze": 0}}}"#).unwrap();
    assert_eq!(rows(&out), vec![row("main", "KHR", "5000000.00", "0", "5000000.00"), row("main", "USD", "10.5", "1", "9.5")]);
    let c = cfg("path: /b\nrows:\n  - {select: '$.*', currency: {key: true}, balance: '$'}\n");
    let out = parse(&c, &upstream(), br#"{"USD": 12.5, "jpy": 300}"#).unwrap();
    assert_eq!(rows(&out), vec![row("main", "JPY", "300", "0", "300"), row("main", "USD", "12.5", "0", "12.5")]);
}

#[test]
fn account_from_parent_key() {
    let c = cfg("path: /b\nrows:\n  - {select: '$.accounts.*.*', account: {key: 1}, currency: {key: 0}, usable: '$'}\n");
    let out = parse(&c, &upstream(), br#"{"accounts": {"acc_1": {"usd": 1}, "acc_2": {"eur": 2, "usd": 3}}}"#).unwrap();
    assert_eq!(
        rows(&out),
        vec![row("acc_1", "USD", "1", "0", "1"), row("acc_2", "EUR", "2", "0", "2"), row("acc_2", "USD", "3", "0", "3")]
    );
}

#[test]
fn selectors_merge_and_third_component_is_derived() {
    // Stripe: available -> usable, pending -> frozen; balance derived; minor units.
    let c = cfg(
        "path: /v1/balance\nunit: minor\nrows:\n  - {select: '$.available[*]', currency: '$.currency', usable: '$.amount'}\n  - {select: '$.pending[*]', currency: '$.currency', frozen: '$.amount'}\n",
    );
    let body = br#"{"available": [{"amount": 12345, "currency": "usd"}, {"amount": 5000, "currency": "jpy"}],
                   "pending": [{"amount": 655, "currency": "usd"}, {"amount": 700, "currency": "eur"}]}"#;
    let out = parse(&c, &upstream(), body).unwrap();
    assert_eq!(
        rows(&out),
        vec![row("main", "EUR", "7.00", "7.00", "0"), row("main", "JPY", "5000", "0", "5000"), row("main", "USD", "130.00", "6.55", "123.45")]
    );
}

#[test]
fn resolve_covers_every_combination() {
    let c = |b: Option<&str>, f: Option<&str>, u: Option<&str>| {
        Contribution { balance: b.map(d), frozen: f.map(d), usable: u.map(d), updated_at: None }.resolve()
    };
    assert_eq!(c(Some("10"), Some("3"), None), Ok((d("10"), d("3"), d("7"))));
    assert_eq!(c(Some("10"), None, Some("4")), Ok((d("10"), d("6"), d("4"))));
    assert_eq!(c(None, Some("3"), Some("4")), Ok((d("7"), d("3"), d("4"))));
    assert_eq!(c(Some("10"), Some("1"), Some("2")), Ok((d("10"), d("1"), d("2"))));
    assert_eq!(c(None, None, Some("4")), Ok((d("4"), d("0"), d("4"))));
    assert_eq!(c(None, Some("3"), None), Ok((d("3"), d("3"), d("0"))));
    // Derivations `Decimal` cannot hold are errors, not panics (issue 12).
    let (max, min) = (Some("79228162514264337593543950335"), Some("-79228162514264337593543950335"));
    assert_eq!(c(max, Some("-1"), None), Err("usable = balance - frozen overflows"));
    assert_eq!(c(min, None, Some("1")), Err("frozen = balance - usable overflows"));
    assert_eq!(c(None, max, Some("1")), Err("balance = frozen + usable overflows"));
}

/// Issue 12: sums and derivations past `Decimal::MAX` were unchecked `+`/`-`.
#[test]
fn sums_and_derivations_out_of_range_drop_that_balance_and_name_it() {
    let c = cfg("path: /b\nrows:\n  - {select: '$.items[*]', currency: '$.c', balance: '$.b', frozen: {path: '$.f', optional: true}}\n");
    let body = br#"{"items": [{"c": "USD", "b": 7e28}, {"c": "USD", "b": 7e28}, {"c": "EUR", "b": 7e28, "f": -1e28}, {"c": "GBP", "b": 1}]}"#;
    let out = parse(&c, &upstream(), body).unwrap();
    assert_eq!(rows(&out), vec![row("main", "GBP", "1", "0", "1")]);
    assert_eq!(out.row_errors, vec!["$.items[1]: main USD: the sum of balance overflows".to_string(), "main EUR: usable = balance - frozen overflows".to_string()]);
    let err = parse(&c, &upstream(), br#"{"items": [{"c": "EUR", "b": 7e28, "f": -1e28}]}"#).unwrap_err();
    assert_eq!((err.reason, err.message.as_str()), (Reason::Decode, "main EUR: usable = balance - frozen overflows"));
}

#[test]
fn edge_amounts_are_exact_or_name_the_field() {
    let c = cfg("path: /b\nrows:\n  - {select: '$[*]', currency: '$.c', balance: '$.b'}\n");
    let body = br#"[{"c": "USD", "b": 7.9228162514264337593543950335e28}, {"c": "EUR", "b": "-79228162514264337593543950335"}, {"c": "GBP", "b": -0}]"#;
    let out = parse(&c, &upstream(), body).unwrap();
    assert_eq!(rows(&out), vec![row("main", "EUR", "-79228162514264337593543950335", "0", "-79228162514264337593543950335"), row("main", "GBP", "0", "0", "0"), row("main", "USD", "79228162514264337593543950335", "0", "79228162514264337593543950335")]);
    for (i, b) in ["1e30", "-1e30", "1e-30", "123456789012345678901234567890", "1.00000000000000000000000000001e0", "\"7.9228162514264337593543950336e28\""].iter().enumerate() {
        let err = parse(&c, &upstream(), format!(r#"[{{"c": "USD", "b": {b}}}]"#).as_bytes()).unwrap_err();
        assert!(err.message.starts_with("$[0].b: number"), "{i} {b}: {}", err.message);
    }
    // Minor units scaled past 28 decimal places.
    let c = cfg("path: /b\nunit: minor\nrows:\n  - {select: '$[*]', currency: '$.c', balance: '$.b'}\n");
    let err = parse(&c, &upstream(), br#"[{"c": "USD", "b": 1e-28}]"#).unwrap_err();
    assert!(err.message.starts_with("$[0].b: number"), "{}", err.message);
}

#[test]
fn epoch_timestamps_out_of_range_are_row_errors() {
    let c = cfg("path: /b\nrows:\n  - {select: '$[*]', currency: '$.c', balance: '$.b', updated_at: '$.t'}\n");
    for t in ["7.9e28", "-1", "1e20", "253402300800000", "\"9999-12-31T23:59:59-01:00\"", "\"a\\u00e912345\"", "\"2026-05-01T13:45:22\\u0301Z\""] {
        let err = parse(&c, &upstream(), format!(r#"[{{"c": "USD", "b": 1, "t": {t}}}]"#).as_bytes()).unwrap_err();
        assert!(err.message.starts_with("$[0].t: "), "{t}: {}", err.message);
    }
}

#[test]
fn map_keys_in_any_script_are_read_without_panicking() {
    let c = cfg("path: /b\nrows:\n  - {select: '$.*.*', account: {key: 1}, currency: {key: 0}, balance: '$'}\n  - {select: '$.*', currency: {key: 5}, balance: '$'}\n");
    let body = "{\"é\u{301}\u{200f}\": {\"usd\": 1, \"ü\\u0000d\": 2}}";
    let out = parse(&c, &upstream(), body.as_bytes()).unwrap();
    assert_eq!(rows(&out), vec![row("é\u{301}\u{200f}", "USD", "1", "0", "1")]);
    assert_eq!(out.row_errors.len(), 2, "{:?}", out.row_errors);
}

#[test]
fn bad_row_is_counted_and_good_rows_kept() {
    let c = cfg("path: /b\nrows:\n  - {select: '$.data.*', currency: {key: 0}, balance: '$.balance'}\n");
    let out = parse(&c, &upstream(), br#"{"data": {"usd": {"balance": null}, "khr": {"balance": "100.00"}, "x1y": {"balance": 1}}}"#).unwrap();
    assert_eq!(rows(&out), vec![row("main", "KHR", "100.00", "0", "100.00")]);
    assert_eq!(
        out.row_errors,
        vec![
            "$.data.usd.balance: expected a number or decimal string, found null".to_string(),
            "$.data.x1y: \"x1y\" is not a currency code".to_string(),
        ]
    );
}

#[test]
fn a_bad_contribution_drops_its_balance_rather_than_a_partial_sum() {
    let c = cfg(
        "path: /b\nrows:\n  - {select: '$.available[*]', currency: '$.currency', usable: '$.amount'}\n  - {select: '$.pending[*]', currency: '$.currency', frozen: '$.amount'}\n",
    );
    let out = parse(&c, &upstream(), br#"{"available": [{"amount": 1, "currency": "usd"}, {"amount": 2, "currency": "eur"}], "pending": [{"amount": true, "currency": "usd"}]}"#).unwrap();
    assert_eq!(rows(&out), vec![row("main", "EUR", "2", "0", "2")]);
    assert_eq!(out.row_errors, vec!["$.pending[0].amount: expected a number or decimal string, found a boolean".to_string()]);
}

#[test]
fn missing_paths_and_all_rows_bad_fail_the_poll() {
    let c = cfg("path: /b\nrows:\n  - {select: '$.items[*]', currency: USD, balance: '$.amount'}\n");
    let err = parse(&c, &upstream(), br#"{"items": [{"value": 1}]}"#).unwrap_err();
    assert_eq!(err.reason, Reason::Decode);
    assert_eq!(err.message, "$.items[0].amount: expected a value, found nothing");
    let err = parse(&c, &upstream(), br#"{"other": []}"#).unwrap_err();
    assert_eq!(err.message, "no rows: $.items[*] matched nothing");
    let err = parse(&c, &upstream(), b"not json").unwrap_err();
    assert!(err.message.starts_with("response is not JSON"), "{}", err.message);
}

#[test]
fn optional_components_may_be_absent_or_null() {
    let c = cfg("path: /b\nrows:\n  - {select: '$[*]', currency: '$.c', balance: '$.b', frozen: {path: '$.f', optional: true}}\n");
    let out = parse(&c, &upstream(), br#"[{"c": "USD", "b": 5, "f": null}, {"c": "EUR", "b": 5}, {"c": "GBP", "b": 5, "f": 2}]"#).unwrap();
    assert_eq!(rows(&out), vec![row("main", "EUR", "5", "0", "5"), row("main", "GBP", "5", "2", "3"), row("main", "USD", "5", "0", "5")]);
}

#[test]
fn success_check_mismatch_is_upstream_status() {
    let c = cfg("path: /b\nsuccess: {path: $.statusCode, equals: 200, message: $.message}\nrows:\n  - {select: '$.data.*', currency: {key: 0}, balance: '$'}\n");
    let err = parse(&c, &upstream(), br#"{"statusCode": 401, "message": "Unauthorized - invalid API credentials sk_secret_123"}"#).unwrap_err();
    assert_eq!(err.reason, Reason::UpstreamStatus);
    assert_eq!(err.message, "$.statusCode: expected 200, found 401: Unauthorized - invalid API credentials <redacted>");
    assert!(parse(&c, &upstream(), br#"{"statusCode": "200", "data": {"usd": 1}}"#).is_ok());
    assert!(parse(&c, &upstream(), br#"{"statusCode": 200.0, "data": {"usd": 1}}"#).is_ok());
    let err = parse(&c, &upstream(), br#"{"data": {"usd": 1}}"#).unwrap_err();
    assert_eq!(err.message, "$.statusCode: expected 200, found nothing");
    let c = cfg("path: /b\nsuccess: {path: $.status, equals: ok}\nrows:\n  - {select: '$', currency: USD, balance: '$.b'}\n");
    assert!(parse(&c, &upstream(), br#"{"status": "ok", "b": 1}"#).is_ok());
    assert_eq!(parse(&c, &upstream(), br#"{"status": "error", "b": 1}"#).unwrap_err().message, "$.status: expected \"ok\", found \"error\"");
}

#[test]
fn timestamps_rfc3339_epoch_seconds_and_millis() {
    let c = cfg("path: /b\nrows:\n  - {select: '$[*]', currency: '$.c', balance: '$.b', updated_at: '$.t'}\n");
    let body = br#"[{"c": "USD", "b": 1, "t": "2026-05-01T13:45:22Z"}, {"c": "EUR", "b": 1, "t": 1777643122}, {"c": "GBP", "b": 1, "t": "1777643122500"}, {"c": "JPY", "b": 1, "t": "soon"}]"#;
    let out = parse(&c, &upstream(), body).unwrap();
    let secs = |cur: &str| {
        let t = out.balances.iter().find(|b| b.currency == cur).unwrap().updated_at.unwrap();
        t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis()
    };
    assert_eq!(secs("USD"), 1_777_643_122_000);
    assert_eq!(secs("EUR"), 1_777_643_122_000);
    assert_eq!(secs("GBP"), 1_777_643_122_500);
    assert_eq!(out.row_errors, vec!["$[3].t: expected RFC 3339 or epoch seconds/milliseconds, found \"soon\"".to_string()]);
}

#[test]
fn minor_units_use_iso_exponents_overrides_and_reject_unknown() {
    let c = cfg("path: /b\nunit: minor\ncurrency_exponents: {isk: 2}\nrows:\n  - {select: '$[*]', currency: '$.c', balance: '$.b'}\n");
    let out = parse(&c, &upstream(), br#"[{"c": "isk", "b": 500}, {"c": "kwd", "b": 1234}, {"c": "xof", "b": 4676}, {"c": "zzz", "b": 1}]"#).unwrap();
    assert_eq!(rows(&out), vec![row("main", "ISK", "5.00", "0", "5.00"), row("main", "KWD", "1.234", "0", "1.234"), row("main", "XOF", "4676", "0", "4676")]);
    assert_eq!(out.row_errors.len(), 1);
    assert!(out.row_errors[0].starts_with("$[3].b: unknown currency \"ZZZ\""), "{:?}", out.row_errors);
}

#[test]
fn filters_still_compare_numbers() {
    let c = cfg("path: /b\nrows:\n  - {select: '$.items[?@.amount > 0]', currency: '$.currency', balance: '$.amount'}\n");
    let out = parse(&c, &upstream(), br#"{"items": [{"amount": 0, "currency": "USD"}, {"amount": 2.50, "currency": "EUR"}]}"#).unwrap();
    assert_eq!(rows(&out), vec![row("main", "EUR", "2.50", "0", "2.50")]);
}

#[test]
fn config_errors_name_the_key() {
    let value: serde_yaml::Value = serde_yaml::from_str("path: /b\nrows:\n  - {select: '$', currency: {path: '$.c', key: 0}, balance: '$.b'}\n").unwrap();
    let err = serde_yaml::from_value::<JsonConfig>(value).unwrap_err();
    assert!(err.to_string().starts_with("rows[0].currency: give exactly one of path, value, key"), "{err}");
    let mut issues = vec![];
    cfg("path: /b\nsuccess: {path: 'statusCode', equals: 200}\nrows:\n  - {select: '$.data[', currency: '$.c[', balance: '$.b'}\n").validate("s", &mut issues);
    let shown: Vec<String> = issues.iter().map(|i| i.to_string()).collect();
    assert_eq!(shown.len(), 3, "{shown:?}");
    assert!(shown[0].starts_with("s.success.path: invalid JSONPath \"statusCode\""), "{shown:?}");
    assert!(shown[1].starts_with("s.rows[0].select: invalid JSONPath \"$.data[\""), "{shown:?}");
    assert!(shown[2].starts_with("s.rows[0].currency: invalid JSONPath \"$.c[\""), "{shown:?}");
    let mut issues = vec![];
    cfg("path: b\nbody: {a: 1}\nheaders: {'bad header': x}\nrows:\n  - {select: '$', currency: US, frozen: 'abc'}\n  - {select: '$', currency: USD}\n")
        .validate("s", &mut issues);
    let shown: Vec<String> = issues.iter().map(|i| i.to_string()).collect();
    assert_eq!(
        shown,
        vec![
            "s.path: must start with '/'",
            "s.headers.bad header: is not a valid header name",
            "s.body: a body needs method: POST",
            "s.rows[0].currency: \"US\" is not a 3-letter currency code",
            "s.rows[0].frozen: expected a number or decimal string, found a non-numeric string",
            "s.rows[1]: give at least one of balance, frozen, usable",
        ]
    );
}

#[test]
fn request_carries_method_query_headers_and_body() {
    let c = cfg("method: POST\npath: /api\nquery: {types: STANDARD, limit: 100}\nheaders: {X-Api-Key: k}\nbody: {merchant: m1, page: 1}\nrows:\n  - {select: '$', currency: USD, balance: '$.b'}\n");
    let req = c.request();
    assert_eq!(req.method, Method::POST);
    assert_eq!(req.query, vec![("limit".to_string(), "100".to_string()), ("types".to_string(), "STANDARD".to_string())]);
    assert_eq!(req.headers[0].0.as_str(), "x-api-key");
    assert!(req.headers[0].1.is_sensitive());
    assert_eq!(req.body.as_deref(), Some(&br#"{"merchant":"m1","page":1}"#[..]));
    let c = cfg("method: POST\npath: /api\nbody: 'a=1&b=2'\nrows:\n  - {select: '$', currency: USD, balance: '$.b'}\n");
    assert_eq!(c.request().body.as_deref(), Some(&b"a=1&b=2"[..]));
}

#[test]
fn root_paths_reach_outside_the_row() {
    let c = cfg("path: /b\nrows:\n  - {select: '$.balances[*]', currency: '$.currency', balance: '$.total.value', updated_at: {path: '$.last_refresh_time', root: true}}\n");
    let out = parse(&c, &upstream(), br#"{"balances": [{"currency": "USD", "total": {"value": "1000.00"}}], "last_refresh_time": "2026-05-01T13:45:22Z"}"#).unwrap();
    assert_eq!(out.balances[0].updated_at, crate::kinds::parse_rfc3339("2026-05-01T13:45:22Z"));
    let err = parse(&c, &upstream(), br#"{"balances": [{"currency": "USD", "total": {"value": "1"}}]}"#).unwrap_err();
    assert_eq!(err.message, "$.last_refresh_time: expected a value, found nothing");
}
