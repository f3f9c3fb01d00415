//! Simulated Dodo Payments platform: customer wallets (USD cents, INR paise)
//! with ledgers, Bearer auth, `{code, message}` errors, explicit paging.
//!
//! Customers spend their credit on orders (a debit each) and buy more when
//! low (a credit). About 4 minutes after start, and then every 20 minutes, a
//! "retry bug" charges a few orders twice within a minute: the duplicated
//! debits the `supplier_ledger_duplicate_suspects_total` counter is for.
// The simulation computes with its own numbers, not upstream ones.
#![allow(clippy::arithmetic_side_effects)]

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use rust_decimal::Decimal;
use serde_json::{json, Value};

use crate::demo::kit::{daily_rhythm, random_key, SimRequest, SimResponse, Simulated};

/// First duplicate burst after start, then the period between bursts.
const FIRST_BURST: Duration = Duration::from_secs(4 * 60);
const BURST_EVERY: Duration = Duration::from_secs(20 * 60);

struct Wallet {
    customer: &'static str,
    currency: &'static str,
    /// Minor units.
    balance: i64,
    /// Order size range and orders per hour; top-up size and threshold (minor units).
    order: (i64, i64),
    orders_per_hour: f64,
    topup: i64,
    topup_below: i64,
    ledger: Vec<Value>,
    hold_topups: bool,
}

struct State {
    wallets: Vec<Wallet>,
    next_id: u64,
    next_order: u64,
    started: SystemTime,
    bursts: u32,
    /// Orders charged once that the next burst charges again.
    recent_orders: Vec<(usize, i64, String)>,
}

pub struct DodoSim {
    key: String,
    state: Mutex<State>,
}

impl DodoSim {
    pub fn new() -> Self {
        let w = |customer, currency, balance, order, orders_per_hour, topup, topup_below| Wallet {
            customer,
            currency,
            balance,
            order,
            orders_per_hour,
            topup,
            topup_below,
            ledger: Vec::new(),
            hold_topups: false,
        };
        let mut state = State {
            wallets: vec![
                w("cus_0Nf3kq8XbLz2Vh7A", "USD", 12_500, (50, 900), 90.0, 10_000, 1_000),
                w("cus_0Nf3kq8XbLz2Vh7A", "INR", 1_500_000, (5_000, 60_000), 40.0, 1_000_000, 100_000),
                w("cus_7Pq2mR4tYw9Jc1Ds", "USD", 1_050, (25, 300), 60.0, 5_000, 500),
                w("cus_Ha83Kd0sLq5ZxE2n", "USD", 48_000, (100, 2_500), 120.0, 25_000, 5_000),
            ],
            next_id: 0,
            next_order: 0,
            started: SystemTime::now(),
            bursts: 0,
            recent_orders: Vec::new(),
        };
        // A little history: the exporter's first walk takes it as the baseline.
        let start = SystemTime::now() - Duration::from_secs(3600);
        for i in 0..state.wallets.len() {
            for k in 0..8u64 {
                let amount = rand::random_range(state.wallets[i].order.0..=state.wallets[i].order.1);
                let at = start + Duration::from_secs(k * 420 + i as u64 * 13);
                let order = state.order_id();
                state.apply(i, amount, false, "payment", "order", Some(order), at);
            }
        }
        DodoSim { key: random_key("dodo_live"), state: Mutex::new(state) }
    }
}

impl State {
    fn order_id(&mut self) -> String {
        self.next_order += 1;
        format!("pay_{:04}{:012x}", self.next_order, rand::random::<u64>() & 0xffff_ffff_ffff)
    }

    /// Writes a ledger entry and moves the balance (a debit never below zero).
    #[allow(clippy::too_many_arguments)]
    fn apply(&mut self, i: usize, amount: i64, is_credit: bool, event_type: &str, reason: &str, reference: Option<String>, at: SystemTime) -> bool {
        let w = &mut self.wallets[i];
        if !is_credit && amount > w.balance {
            // The API answers 400 INSUFFICIENT_WALLET_FUNDS; nothing is written.
            return false;
        }
        let before = w.balance;
        w.balance += if is_credit { amount } else { -amount };
        self.next_id += 1;
        w.ledger.push(json!({
            "id": format!("wle_{:06}{:010x}", self.next_id, rand::random::<u64>() & 0xff_ffff_ffff),
            "amount": amount, "before_balance": before, "after_balance": w.balance,
            "is_credit": is_credit, "event_type": event_type, "reason": reason,
            "reference_object_id": reference, "currency": w.currency, "customer_id": w.customer,
            "business_id": "bus_demo5Kq2Lm8N", "created_at": humantime::format_rfc3339_millis(at).to_string(),
        }));
        true
    }
}

fn page_param(req: &SimRequest, key: &str, default: usize) -> usize {
    req.query_param(key).and_then(|v| v.parse().ok()).unwrap_or(default)
}

impl Simulated for DodoSim {
    fn name(&self) -> &'static str {
        "dodo"
    }

    fn handle(&self, req: &SimRequest) -> SimResponse {
        if req.header("authorization") != Some(&format!("Bearer {}", self.key)) {
            return SimResponse::json(401, json!({"code": "UNAUTHORIZED", "message": "Invalid or missing API key"}));
        }
        if req.method != hyper::Method::GET {
            return SimResponse::json(405, json!({"code": "METHOD_NOT_ALLOWED", "message": "method not allowed"}));
        }
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (number, size) = (page_param(req, "page_number", 0), page_param(req, "page_size", 10).clamp(1, 100));
        let parts: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
        match parts.as_slice() {
            ["customers"] => {
                let mut ids: Vec<&str> = state.wallets.iter().map(|w| w.customer).collect();
                ids.dedup();
                let items: Vec<Value> = ids
                    .iter()
                    .skip(number * size)
                    .take(size)
                    .map(|c| json!({"customer_id": c, "business_id": "bus_demo5Kq2Lm8N", "name": "Demo customer", "email": "customer@example.com", "phone_number": null, "created_at": "2026-01-05T09:30:00Z"}))
                    .collect();
                SimResponse::json(200, json!({ "items": items }))
            }
            ["customers", c, "wallets"] => {
                let wallets: Vec<&Wallet> = state.wallets.iter().filter(|w| w.customer == *c).collect();
                if wallets.is_empty() {
                    return SimResponse::json(404, json!({"code": "NOT_FOUND", "message": "Customer not found"}));
                }
                let now = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
                let items: Vec<Value> = wallets
                    .iter()
                    .map(|w| json!({"balance": w.balance, "currency": w.currency, "customer_id": w.customer, "created_at": "2026-01-05T09:30:00Z", "updated_at": now}))
                    .collect();
                let usd: i64 = wallets.iter().filter(|w| w.currency == "USD").map(|w| w.balance).sum();
                SimResponse::json(200, json!({"items": items, "total_balance_usd": usd}))
            }
            ["customers", c, "wallets", "ledger-entries"] => {
                let currency = req.query_param("currency").unwrap_or_default();
                let entries: Vec<Value> = state
                    .wallets
                    .iter()
                    .filter(|w| w.customer == *c && (currency.is_empty() || w.currency == currency))
                    .flat_map(|w| w.ledger.iter().rev().cloned())
                    .skip(number * size)
                    .take(size)
                    .collect();
                SimResponse::json(200, json!({ "items": entries }))
            }
            _ => SimResponse::json(404, json!({"code": "NOT_FOUND", "message": "Not found"})),
        }
    }

    fn tick(&self, now: SystemTime, dt: Duration) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for i in 0..s.wallets.len() {
            let w = &s.wallets[i];
            let p = w.orders_per_hour * daily_rhythm(now) * dt.as_secs_f64() / 3600.0;
            if rand::random::<f64>() < p {
                let amount = rand::random_range(w.order.0..=w.order.1);
                let order = s.order_id();
                if s.apply(i, amount, false, "payment", "order", Some(order.clone()), now) {
                    s.recent_orders.push((i, amount, order));
                    if s.recent_orders.len() > 8 {
                        s.recent_orders.remove(0);
                    }
                }
            }
            let w = &s.wallets[i];
            if !w.hold_topups && w.balance < w.topup_below {
                let topup = w.topup;
                s.apply(i, topup, true, "credit_added", "credits purchased", None, now);
            }
        }
        // The retry bug: the last few orders are charged a second time.
        let due = FIRST_BURST + BURST_EVERY * s.bursts;
        if now.duration_since(s.started).unwrap_or_default() >= due {
            s.bursts += 1;
            let repeats: Vec<(usize, i64, String)> = s.recent_orders.iter().rev().take(3).cloned().collect();
            for (i, amount, order) in repeats {
                s.apply(i, amount, false, "payment", "order", Some(order), now);
            }
        }
    }

    fn drain(&self, to: Decimal) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = SystemTime::now();
        for i in 0..s.wallets.len() {
            s.wallets[i].hold_topups = true;
            let target = (to * Decimal::ONE_HUNDRED).trunc().try_into().unwrap_or(0i64).max(0);
            let excess = s.wallets[i].balance - target;
            if excess > 0 {
                s.apply(i, excess, false, "manual_debit", "demo drain", None, now);
            }
        }
    }

    fn restore(&self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = SystemTime::now();
        for i in 0..s.wallets.len() {
            if s.wallets[i].hold_topups {
                s.wallets[i].hold_topups = false;
                let topup = s.wallets[i].topup;
                s.apply(i, topup, true, "credit_added", "credits purchased", None, now);
            }
        }
    }

    fn secrets(&self) -> Vec<(String, String)> {
        vec![("DEMO_DODO_KEY".into(), self.key.clone())]
    }
}

impl Default for DodoSim {
    fn default() -> Self {
        DodoSim::new()
    }
}
