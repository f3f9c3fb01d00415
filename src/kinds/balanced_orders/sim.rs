//! Simulated Balanced marketplace (API revision 1.1): `GET /orders` paged by
//! `limit`/`offset` with `meta.next`, Basic auth with the secret as username
//! and an empty password, the `errors[]` envelope on failures.
//!
//! Three merchants. Buyers' debits go into escrow orders; now and then a
//! merchant is paid out (escrow falls) or a buyer refunded.
// The simulation computes with its own numbers, not upstream ones.
#![allow(clippy::arithmetic_side_effects)]

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use base64::Engine;
use rust_decimal::Decimal;
use serde_json::{json, Value};

use crate::demo::kit::{daily_rhythm, random_key, SimRequest, SimResponse, Simulated};

const MERCHANTS: [&str; 3] = ["CU4qLd7TzW2mXb9KpN3aRs", "CU7HcE1vYq5nGt8JwM2bFd", "ACx2Zr9LmQ4tWc6VnB1hKe"];

struct Order {
    id: String,
    merchant: usize,
    amount: i64,
    escrowed: i64,
    created_at: String,
    updated_at: String,
}

struct State {
    orders: Vec<Order>,
    hold: bool,
}

pub struct BalancedSim {
    secret: String,
    state: Mutex<State>,
}

fn order_id() -> String {
    format!("OR{:020x}", rand::random::<u128>() & ((1u128 << 80) - 1))
}

fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_micros(t).to_string()
}

impl BalancedSim {
    pub fn new() -> Self {
        let mut orders = Vec::new();
        let start = SystemTime::now() - Duration::from_secs(6 * 3600);
        // 14 orders: with the demo's `limit: 4` that is four pages.
        for k in 0..14u64 {
            let amount = rand::random_range(20i64..=400) * 100;
            let escrowed = if k % 4 == 3 { 0 } else { amount - rand::random_range(0..=amount / 200) * 100 };
            let at = timestamp(start + Duration::from_secs(k * 1500));
            orders.push(Order { id: order_id(), merchant: (k % 3) as usize, amount, escrowed, created_at: at.clone(), updated_at: at });
        }
        BalancedSim { secret: random_key("ak-demo"), state: Mutex::new(State { orders, hold: false }) }
    }
}

fn error(status: u16, text: &str, category: &str, category_type: &str, description: &str) -> SimResponse {
    let request_id = format!("OHM{:032x}", rand::random::<u128>());
    SimResponse::json(
        status,
        json!({"errors": [{
            "status": text, "status_code": status, "category_code": category, "category_type": category_type,
            "description": format!("{description} Your request id is {request_id}."),
            "additional": null, "extras": {}, "request_id": request_id
        }]}),
    )
}

impl Simulated for BalancedSim {
    fn name(&self) -> &'static str {
        "balanced"
    }

    fn handle(&self, req: &SimRequest) -> SimResponse {
        let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{}:", self.secret)));
        if req.header("authorization") != Some(basic.as_str()) {
            return error(401, "Unauthorized", "authentication-required", "permission", "Not permitted to perform index on orders.");
        }
        let revision = req.headers.get_all("accept").iter().filter_map(|v| v.to_str().ok()).any(|v| v.contains("application/vnd.api+json;revision=1.1"));
        if !revision {
            return error(400, "Bad Request", "request", "request", "This endpoint needs Accept: application/vnd.api+json;revision=1.1.");
        }
        if req.method != hyper::Method::GET || req.path != "/orders" {
            return error(404, "Not Found", "not-found", "request", "The requested URL was not found on the server.");
        }
        let limit: usize = req.query_param("limit").and_then(|v| v.parse().ok()).unwrap_or(10).clamp(1, 100);
        let offset: usize = req.query_param("offset").and_then(|v| v.parse().ok()).unwrap_or(0);
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let total = state.orders.len();
        let items: Vec<Value> = state
            .orders
            .iter()
            .skip(offset)
            .take(limit)
            .map(|o| {
                json!({
                    "id": o.id, "href": format!("/orders/{}", o.id), "amount": o.amount, "amount_escrowed": o.escrowed,
                    "currency": "USD", "created_at": o.created_at, "updated_at": o.updated_at,
                    "description": format!("Campaign #{}", &o.id[2..8]),
                    "delivery_address": {"line1": null, "line2": null, "city": null, "state": null, "postal_code": null, "country_code": null},
                    "meta": {}, "links": {"merchant": MERCHANTS[o.merchant]}
                })
            })
            .collect();
        let href = |offset: usize| format!("/orders?limit={limit}&offset={offset}");
        let last = (total.saturating_sub(1) / limit) * limit;
        SimResponse::json(
            200,
            json!({
                "orders": items,
                "meta": {
                    "limit": limit, "offset": offset, "total": total,
                    "next": (offset + limit < total).then(|| href(offset + limit)),
                    "previous": (offset > 0).then(|| href(offset.saturating_sub(limit))),
                    "first": href(0), "last": href(last), "href": href(offset)
                },
                "links": {
                    "orders.debits": "/orders/{orders.id}/debits", "orders.refunds": "/orders/{orders.id}/refunds",
                    "orders.credits": "/orders/{orders.id}/credits", "orders.reversals": "/orders/{orders.id}/reversals",
                    "orders.buyers": "/orders/{orders.id}/buyers", "orders.merchant": "/customers/{orders.merchant}"
                }
            }),
        )
    }

    fn tick(&self, now: SystemTime, dt: Duration) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let hour = dt.as_secs_f64() / 3600.0;
        let stamp = timestamp(now);
        // Buyer debits into an open order (or a new order): ~40 an hour at the daily mean.
        if !s.hold && rand::random::<f64>() < 40.0 * daily_rhythm(now) * hour {
            let amount = rand::random_range(5i64..=150) * 100;
            let open: Vec<usize> = (0..s.orders.len()).filter(|i| s.orders[*i].escrowed > 0).collect();
            if open.is_empty() || rand::random::<f64>() < 0.2 {
                let merchant = rand::random_range(0..MERCHANTS.len());
                s.orders.push(Order { id: order_id(), merchant, amount, escrowed: amount, created_at: stamp.clone(), updated_at: stamp.clone() });
            } else {
                let o = &mut s.orders[open[rand::random_range(0..open.len())]];
                o.amount += amount;
                o.escrowed += amount;
                o.updated_at = stamp.clone();
            }
        }
        // Payouts to merchants (escrow released), ~10 an hour; refunds, ~2 an hour.
        for (per_hour, percent) in [(10.0, 100i64), (2.0, 30)] {
            if rand::random::<f64>() < per_hour * hour {
                let open: Vec<usize> = (0..s.orders.len()).filter(|i| s.orders[*i].escrowed > 0).collect();
                if let Some(&i) = open.get(rand::random_range(0..open.len().max(1))) {
                    let o = &mut s.orders[i];
                    let out = (o.escrowed * percent / 100 / 100).max(1) * 100;
                    o.escrowed = (o.escrowed - out).max(0);
                    o.updated_at = stamp.clone();
                }
            }
        }
    }

    fn drain(&self, to: Decimal) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.hold = true;
        let cap: i64 = (to * Decimal::ONE_HUNDRED).trunc().try_into().unwrap_or(0i64).max(0);
        for o in s.orders.iter_mut() {
            o.escrowed = o.escrowed.min(cap);
        }
    }

    fn restore(&self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.hold = false;
    }

    fn secrets(&self) -> Vec<(String, String)> {
        vec![("DEMO_BALANCED_SECRET".into(), self.secret.clone())]
    }
}

impl Default for BalancedSim {
    fn default() -> Self {
        BalancedSim::new()
    }
}
