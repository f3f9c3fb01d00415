//! dodo_wallets' fuzz targets (run by `crate::fuzz`): a listed customer
//! (its wallets, then 0–3 ledger pages) and `all_customers` (1–3 customers
//! pages, then the wallets).

use proptest::prelude::*;
use proptest::sample::select;

use super::{DodoMemory, DodoWalletsConfig};
use crate::fuzz::kit::{
    amount_json, bodies_of, currency_json, field, json_string, list, object, pages, timestamp_json, wrong_type, FuzzTarget, Served, StubRequest, Supplier,
};

/// Real bodies of the API, as seeds.
const SEEDS: &[&str] = &[
    r#"{"items": [{"balance": 12345, "currency": "USD", "customer_id": "cus_1", "created_at": "2026-05-01T00:00:00Z", "updated_at": "2026-05-01T13:45:22Z"}], "total_balance_usd": 12345}"#,
    r#"{"items": [{"id": "led_1", "amount": 500, "currency": "USD", "is_credit": false, "event_type": "payment", "created_at": "2026-05-01T13:00:00Z", "after_balance": 11845, "before_balance": 12345}]}"#,
    r#"{"items": [{"customer_id": "cus_1"}, {"customer_id": "cus_2"}]}"#,
    r#"{"code": "NOT_FOUND", "message": "customer not found"}"#,
];

/// No answer at all (an input of no pages).
const NOTHING: &[u8] = b"";

/// An empty listing page, past the pages of an input.
const NO_ITEMS: &[u8] = br#"{"items": []}"#;

fn wallets() -> impl Strategy<Value = String> {
    let wallet = (field(amount_json()), field(currency_json()), field(timestamp_json()))
        .prop_map(|(b, c, t)| object(&[("balance", &b), ("currency", &c), ("customer_id", &Some("\"cus_1\"".into())), ("updated_at", &t)]));
    list(wallet, 3).prop_map(|items| format!("{{\"items\": {items}, \"total_balance_usd\": 0}}"))
}

/// 0–3 ledger pages.
fn ledger_pages() -> impl Strategy<Value = Vec<String>> {
    let id = prop_oneof![4 => select(&["\"led_1\"", "\"led_2\"", "\"led_3\"", "\"led_4\"", "\"led_5\""][..]).prop_map(str::to_string), 1 => json_string()];
    let credit = prop_oneof![4 => select(&["true", "false"][..]).prop_map(str::to_string), 1 => wrong_type()];
    let reference = prop_oneof![2 => select(&["\"ref_1\"", "null"][..]).prop_map(str::to_string), 1 => json_string()];
    let entry = (
        field(id),
        field(amount_json()),
        field(credit),
        field(json_string()),
        field(reference),
        field(currency_json()),
        field(timestamp_json()),
    )
        .prop_map(|(i, a, c, e, r, cur, t)| {
            object(&[
                ("id", &i),
                ("amount", &a),
                ("is_credit", &c),
                ("event_type", &e),
                ("reason", &Some("\"order\"".into())),
                ("reference_object_id", &r),
                ("currency", &cur),
                ("created_at", &t),
            ])
        });
    let page = list(entry, 4).prop_map(|items| format!("{{\"items\": {items}}}"));
    proptest::collection::vec(page, 0..=3)
}

/// 1–3 pages of the customers listing.
fn customer_pages() -> impl Strategy<Value = Vec<String>> {
    let id = prop_oneof![4 => select(&["\"cus_1\"", "\"cus_2\"", "\"cus_3\""][..]).prop_map(str::to_string), 1 => json_string()];
    let customer = field(id).prop_map(|i| object(&[("customer_id", &i)]));
    proptest::collection::vec(list(customer, 3).prop_map(|items| format!("{{\"items\": {items}}}")), 1..=3)
}

/// A listed customer: the wallets first, the ledger pages by `page_number`.
fn customer_route(request: &StubRequest<'_>) -> Served {
    if request.path.ends_with("/ledger-entries") {
        Served { bodies: 1..request.bodies, index: request.page.unwrap_or(0), end: NO_ITEMS }
    } else {
        Served { bodies: 0..1, index: 0, end: NO_ITEMS }
    }
}

/// `all_customers`: the customers pages by `page_number`, the wallets last.
fn all_customers_route(request: &StubRequest<'_>) -> Served {
    let wallets = request.bodies.saturating_sub(1);
    if request.path == "/customers" {
        Served { bodies: 0..wallets, index: request.page.unwrap_or(0), end: NO_ITEMS }
    } else {
        Served { bodies: wallets..request.bodies, index: 0, end: NO_ITEMS }
    }
}

/// The saved ledger memory read as [`DodoMemory`] and written back.
fn memory(saved: serde_json::Value) -> Result<serde_json::Value, serde_json::Error> {
    serde_json::to_value(serde_json::from_value::<DodoMemory>(saved)?)
}

pub(crate) fn targets() -> Vec<FuzzTarget> {
    let customer = FuzzTarget::new::<DodoWalletsConfig>(
        "dodo_wallets",
        Supplier::Keys("kind: dodo_wallets, customers: [cus_1]"),
        &SEEDS[..2],
        pages(bodies_of((wallets(), ledger_pages()).prop_map(|(w, l)| [vec![w], l].concat()), SEEDS)),
        |c, up, pages, memory| {
            let (wallets, ledger) = pages.split_first().unwrap_or((&NOTHING, &[]));
            super::parse_customer(c, up, &c.customers[0], wallets, ledger, memory)
        },
    )
    .route(customer_route)
    .memory(memory);
    // Found by the HTTP target: a customers listing that repeats the same
    // non-empty page (an API ignoring `page_number`) used to be walked
    // forever. A page with nobody new now fails the poll (`decode`).
    let all_customers = FuzzTarget::new::<DodoWalletsConfig>(
        "dodo_wallets all_customers",
        Supplier::Keys("kind: dodo_wallets, all_customers: true, lowest: 2, low: 10"),
        &[SEEDS[2], SEEDS[0]],
        pages(bodies_of((customer_pages(), wallets()).prop_map(|(c, w)| [c, vec![w]].concat()), SEEDS)),
        |c, up, pages, _| {
            let (wallets, customers) = pages.split_last().unwrap_or((&NOTHING, &[]));
            super::parse_all_customers(c, up, customers, wallets)
        },
    )
    .route(all_customers_route)
    .memory(memory);
    vec![customer, all_customers]
}
