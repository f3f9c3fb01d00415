//! balanced_orders' fuzz target: walks of 1–3 hostile order pages (run by
//! `crate::fuzz`).

use proptest::prelude::*;
use proptest::sample::select;

use super::BalancedOrdersConfig;
use crate::fuzz::kit::{
    amount_json, bodies_of, currency_json, field, json_string, list, object, pages, wrong_type, FixedCase, FuzzTarget, Served, StubRequest, Supplier,
};

/// Real bodies of the API, as seeds.
const SEEDS: &[&str] = &[
    r#"{"orders": [{"id": "OR1", "amount": 10000, "amount_escrowed": 2500, "currency": "USD", "links": {"merchant": "CU1"}}, {"id": "OR2", "amount": 500, "amount_escrowed": 500, "currency": "USD", "links": {"merchant": "CU2"}}], "meta": {"next": null, "total": 2}}"#,
    r#"{"orders": [], "meta": {"next": "/orders?limit=10&offset=10"}}"#,
    r#"{"errors": [{"status_code": 401, "category_code": "authentication-required", "description": "Not permitted"}]}"#,
];

/// 1–3 pages of Balanced orders.
fn order_pages() -> impl Strategy<Value = Vec<String>> {
    let id = prop_oneof![3 => select(&["\"OR1\"", "\"OR2\"", "\"OR3\"", "\"OR4\""][..]).prop_map(str::to_string), 1 => json_string()];
    let merchant = prop_oneof![3 => select(&["\"CU1\"", "\"CU2\""][..]).prop_map(str::to_string), 1 => json_string(), 1 => wrong_type()];
    let order =
        (field(id), field(amount_json()), field(amount_json()), field(currency_json()), field(merchant)).prop_map(|(i, a, e, c, m)| {
            object(&[("id", &i), ("amount", &a), ("amount_escrowed", &e), ("currency", &c), ("links", &Some(object(&[("merchant", &m)])))])
        });
    let next = prop_oneof![
        3 => Just("null".to_string()),
        2 => select(&["\"/orders?offset=1\"", "\"/orders?offset=2\"", "\"https://evil.example/orders\"", "\"\""][..]).prop_map(str::to_string),
        1 => json_string(),
    ];
    let page = (list(order, 4), next).prop_map(|(o, n)| format!("{{\"orders\": {o}, \"meta\": {{\"next\": {n}, \"total\": 2}}}}"));
    proptest::collection::vec(page, 1..=3)
}

/// The pages in request order, then a last page with no `next`.
fn route(request: &StubRequest<'_>) -> Served {
    Served { bodies: 0..request.bodies, index: request.n, end: br#"{"orders": [], "meta": {"next": null}}"# }
}

pub(crate) fn targets() -> Vec<FuzzTarget> {
    let target = FuzzTarget::new::<BalancedOrdersConfig>(
        "balanced_orders",
        Supplier::Keys("kind: balanced_orders, max_pages: 3"),
        &SEEDS[..1],
        pages(bodies_of(order_pages(), SEEDS)),
        |c, up, pages, _| super::parse_pages(c, up, pages),
    )
    .route(route)
    // Unchecked escrow sums.
    .fixed(FixedCase::decode(
        &[
            r#"{"orders": [{"id": "OR1", "amount": 1, "amount_escrowed": 79228162514264337593543950335, "currency": "XOF", "links": {"merchant": "CU1"}}, {"id": "OR2", "amount": 1, "amount_escrowed": 1, "currency": "XOF", "links": {"merchant": "CU1"}}], "meta": {"next": null}}"#,
        ],
        "CU1 XOF: not exported this poll: page 0 $.orders[1].amount_escrowed: the merchant's sum overflows",
    ));
    vec![target]
}
