//! novasend's fuzz target: its account list answered with hostile bodies
//! (run by `crate::fuzz`).

use proptest::prelude::*;
use proptest::sample::select;

use super::NovaSendConfig;
use crate::fuzz::kit::{amount_json, body_of, currency_json, field, first, json_string, list, object, one, FixedCase, FuzzTarget, Supplier};

/// Real bodies of the API, as seeds.
const SEEDS: &[&str] = &[
    r#"[{"balance": 4676, "availableBalance": 4676, "reference": "merchant_gh8jpoipkrxhjsm0", "currency": "XOF"}, {"balance": 10.5, "availableBalance": 9, "reference": "m2", "currency": "USD"}]"#,
    r#"[]"#,
];

fn body() -> impl Strategy<Value = String> {
    let reference = prop_oneof![2 => select(&["\"m1\"", "\"m2\""][..]).prop_map(str::to_string), 1 => json_string()];
    let entry = (field(amount_json()), field(amount_json()), field(reference), field(currency_json()))
        .prop_map(|(b, a, r, c)| object(&[("balance", &b), ("availableBalance", &a), ("reference", &r), ("currency", &c)]));
    list(entry, 4)
}

pub(crate) fn targets() -> Vec<FuzzTarget> {
    let target = FuzzTarget::new::<NovaSendConfig>(
        "novasend",
        Supplier::Keys("kind: novasend"),
        &SEEDS[..1],
        one(body_of(body(), SEEDS)),
        |_, up, pages, _| super::parse(up, first(pages)),
    )
    // Unchecked `balance - availableBalance` (issue 12).
    .fixed(FixedCase::decode(
        &[r#"[{"balance": 7e28, "availableBalance": -1e28, "reference": "m1", "currency": "USD"}]"#],
        "$[0].availableBalance: balance - availableBalance overflows",
    ));
    vec![target]
}
