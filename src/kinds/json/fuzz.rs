//! The json kind's fuzz targets: one per example mapping in `examples/`
//! (stripe, twilio, wise, paypal), each answered with hostile bodies of
//! that API's shape (run by `crate::fuzz`).

use proptest::prelude::*;

use super::JsonConfig;
use crate::fuzz::kit::{
    amount_json, body_of, currency_json, field, first, list, object, one, timestamp_json, FixedCase, FuzzTarget, Supplier, SECRET,
};

/// Real bodies of each API, as seeds.
const STRIPE: &[&str] = &[
    r#"{"object": "balance", "available": [{"amount": 666670, "currency": "usd", "source_types": {"card": 666670}}], "pending": [{"amount": 61414, "currency": "usd"}], "livemode": false}"#,
];
const TWILIO: &[&str] = &[r#"{"currency": "USD", "balance": "0.05", "account_sid": "AC123"}"#];
const WISE: &[&str] = &[
    r#"[{"id": 1, "currency": "EUR", "type": "STANDARD", "amount": {"value": 1000.5, "currency": "EUR"}, "reservedAmount": {"value": 0, "currency": "EUR"}}]"#,
];
const PAYPAL: &[&str] = &[
    r#"{"balances": [{"currency": "USD", "primary": true, "total_balance": {"currency_code": "USD", "value": "1000.00"}, "available_balance": {"currency_code": "USD", "value": "900.00"}, "withheld_balance": {"currency_code": "USD", "value": "100.00"}}], "last_refresh_time": "2026-05-01T13:45:22Z"}"#,
];

fn stripe() -> impl Strategy<Value = String> {
    let item = (field(amount_json()), field(currency_json())).prop_map(|(a, c)| object(&[("amount", &a), ("currency", &c)])).boxed();
    (field(list(item.clone(), 3)), field(list(item, 3)))
        .prop_map(|(a, p)| object(&[("object", &Some("\"balance\"".into())), ("available", &a), ("pending", &p)]))
}

fn twilio() -> impl Strategy<Value = String> {
    (field(amount_json()), field(currency_json()))
        .prop_map(|(b, c)| object(&[("balance", &b), ("currency", &c), ("account_sid", &Some("\"AC1\"".into()))]))
}

fn wise() -> impl Strategy<Value = String> {
    let money = (field(amount_json()), field(currency_json())).prop_map(|(v, c)| object(&[("value", &v), ("currency", &c)])).boxed();
    let item = (field(currency_json()), field(money.clone()), field(prop_oneof![3 => money, 1 => Just("null".to_string())]))
        .prop_map(|(c, a, r)| object(&[("currency", &c), ("amount", &a), ("reservedAmount", &r)]));
    list(item, 3)
}

fn paypal() -> impl Strategy<Value = String> {
    let money = (field(amount_json()), field(currency_json())).prop_map(|(v, c)| object(&[("value", &v), ("currency_code", &c)])).boxed();
    let item = (field(currency_json()), field(money.clone()), field(money.clone()), field(money))
        .prop_map(|(c, t, a, w)| object(&[("currency", &c), ("total_balance", &t), ("available_balance", &a), ("withheld_balance", &w)]));
    (field(list(item, 3)), field(timestamp_json())).prop_map(|(b, t)| object(&[("balances", &b), ("last_refresh_time", &t)]))
}


/// A target of the example mapping `examples/<file>`.
fn mapping(file: &'static str, seeds: &'static [&'static str], body: impl Strategy<Value = String> + 'static) -> FuzzTarget {
    FuzzTarget::new::<JsonConfig>(format!("json ({file})"), Supplier::Example(file), &seeds[..1], one(body_of(body, seeds)), |c, up, pages, _| {
        super::parse(c, up, first(pages))
    })
}

pub(crate) fn targets() -> Vec<FuzzTarget> {
    // Found by the HTTP target: the json kind redacted only the supplier's
    // `auth`, so an OAuth2 client secret (or id) echoed as a currency reached
    // the row error; now every secret in the kind's keys is redacted.
    let secret_as_currency = PAYPAL[0].replacen("\"currency\": \"USD\"", &format!("\"currency\": \"{SECRET}\""), 1);
    vec![
        // Unchecked sums of contributions and derived components.
        mapping("stripe.yml", STRIPE, stripe()).fixed(FixedCase::decode(
            &[
                r#"{"available": [{"amount": 79228162514264337593543950335, "currency": "jpy"}], "pending": [{"amount": 1, "currency": "jpy"}]}"#,
            ],
            "main JPY: balance = frozen + usable overflows",
        )),
        mapping("twilio.yml", TWILIO, twilio()).fixed(FixedCase::decode(&[r#"{"balance": "1e-30", "currency": "USD"}"#], "$.balance: number")),
        mapping("wise.yml", WISE, wise()),
        // An offset moving a timestamp past year 9999: the landing page's `utc()` panicked on it.
        mapping("paypal.yml", PAYPAL, paypal())
            .fixed(FixedCase::decode(
                &[
                    r#"{"balances": [{"currency": "USD", "total_balance": {"value": "1"}, "available_balance": {"value": "1"}}], "last_refresh_time": "9999-12-31T23:59:59-23:59"}"#,
                ],
                "$.last_refresh_time: expected RFC 3339",
            ))
            .fixed(FixedCase::Polled {
                answers: vec![secret_as_currency],
                error: "$.balances[0].currency: \"<redacted>\" is not a currency code",
            }),
    ]
}
