//! Simulated FoxReload: `GET /balance` with a Bearer key; heads toward zero.
// The simulation computes with its own numbers, not upstream ones.
#![allow(clippy::arithmetic_side_effects)]

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use rust_decimal::Decimal;
use serde_json::json;

use crate::demo::kit::{random_key, SimAccount, SimRequest, SimResponse, Simulated};

pub struct FoxReloadSim {
    key: String,
    account: Mutex<(SimAccount, SystemTime)>,
}

impl FoxReloadSim {
    pub fn new() -> Self {
        // 284.50 USD, about 10 orders of 2–12 USD a minute at peak: empty in ~25 minutes.
        let account = SimAccount::new("main", "USD", Decimal::new(28450, 2), (2, 12), 450.0, None, Decimal::new(50000, 2), 2);
        FoxReloadSim { key: random_key("fox_live"), account: Mutex::new((account, SystemTime::now())) }
    }
}

impl Simulated for FoxReloadSim {
    fn name(&self) -> &'static str {
        "foxreload"
    }

    fn handle(&self, req: &SimRequest) -> SimResponse {
        if req.header("authorization") != Some(&format!("Bearer {}", self.key)) {
            return SimResponse::json(401, json!({"error": "unauthorized", "message": "invalid API key"}));
        }
        if req.method != hyper::Method::GET || req.path != "/balance" {
            return SimResponse::json(404, json!({"error": "not_found"}));
        }
        let (a, updated) = &*self.account.lock().unwrap_or_else(|e| e.into_inner());
        let updated = humantime::format_rfc3339_seconds(*updated).to_string();
        // The amount is written as a JSON number with its exact decimal digits.
        SimResponse {
            status: 200,
            body: format!(r#"{{"balance": {{"amount": {}, "currency": "USD", "updated_at": "{updated}"}}}}"#, a.balance.round_dp(2)),
        }
    }

    fn tick(&self, now: SystemTime, dt: Duration) {
        let mut guard = self.account.lock().unwrap_or_else(|e| e.into_inner());
        let before = guard.0.balance;
        guard.0.tick(now, dt);
        // Nothing is ever frozen at FoxReload.
        guard.0.frozen = Decimal::ZERO;
        if guard.0.balance != before {
            guard.1 = now;
        }
    }

    fn drain(&self, to: Decimal) {
        let mut guard = self.account.lock().unwrap_or_else(|e| e.into_inner());
        guard.0.drain(to);
        guard.1 = SystemTime::now();
    }

    fn restore(&self) {
        self.account.lock().unwrap_or_else(|e| e.into_inner()).0.restore();
    }

    fn secrets(&self) -> Vec<(String, String)> {
        vec![("DEMO_FOXRELOAD_KEY".into(), self.key.clone())]
    }
}

impl Default for FoxReloadSim {
    fn default() -> Self {
        FoxReloadSim::new()
    }
}
