//! vai247's fuzz target: its wallet map answered with hostile bodies (run
//! by `crate::fuzz`).

use proptest::prelude::*;
use proptest::sample::select;

use super::Vai247Config;
use crate::fuzz::kit::{amount_json, body_of, field, first, json_string, object, one, FixedCase, FuzzTarget, Supplier};

/// Real bodies of the API, as seeds.
const SEEDS: &[&str] = &[
    r#"{"statusCode": 200, "message": "Success", "data": {"usd": {"balance": 120.5, "freeze": 20.5, "usable": 100}, "khr": {"balance": 400000, "freeze": 0, "usable": 400000}}}"#,
    r#"{"statusCode": 401, "message": "Invalid API key"}"#,
];

fn body() -> impl Strategy<Value = String> {
    let status = prop_oneof![8 => Just(Some("200".to_string())), 1 => select(&["401", "403", "429", "500", "\"200\"", "null", "70000"][..]).prop_map(|s| Some(s.to_string())), 1 => Just(None)];
    let key = prop_oneof![3 => select(&["\"usd\"", "\"khr\"", "\"USD\""][..]).prop_map(str::to_string), 2 => json_string()];
    let wallet = (field(amount_json()), field(amount_json()), field(amount_json()))
        .prop_map(|(b, f, u)| object(&[("balance", &b), ("freeze", &f), ("usable", &u)]));
    let data = proptest::collection::vec((key, wallet), 0..4)
        .prop_map(|w| format!("{{{}}}", w.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", ")));
    (status, field(json_string()), field(data))
        .prop_map(|(s, m, d)| object(&[("statusCode", &s), ("message", &m), ("data", &d), ("traceId", &Some("\"t\"".into()))]))
}

pub(crate) fn targets() -> Vec<FuzzTarget> {
    let target = FuzzTarget::new::<Vai247Config>(
        "vai247",
        Supplier::Keys("kind: vai247"),
        &SEEDS[..1],
        one(body_of(body(), SEEDS)),
        |_, up, pages, _| super::parse(up, first(pages)),
    )
    // Unchecked `balance - freeze` (issue 12).
    .fixed(FixedCase::decode(
        &[r#"{"statusCode": 200, "data": {"usd": {"balance": 7e28, "freeze": -1e28}}}"#],
        "$.data.usd.freeze: balance - freeze overflows",
    ));
    vec![target]
}
