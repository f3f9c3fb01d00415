//! Simulated Vai247: `POST /api/v1/payment-gateway/balance-inquiry`, `X-Api-Key`, USD and KHR.
// The simulation computes with its own numbers, not upstream ones.
#![allow(clippy::arithmetic_side_effects)]

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use rust_decimal::Decimal;
use serde_json::json;

use crate::demo::kit::{each_account, random_key, SimAccount, SimRequest, SimResponse, Simulated};

pub struct Vai247Sim {
    key: String,
    accounts: Mutex<Vec<SimAccount>>,
}

impl Vai247Sim {
    pub fn new() -> Self {
        let accounts = vec![
            SimAccount::new("main", "USD", Decimal::new(125_075, 2), (3, 60), 40.0, Some(Decimal::new(600, 0)), Decimal::new(1500, 0), 2),
            SimAccount::new("main", "KHR", Decimal::new(5_000_000, 0), (4000, 200_000), 40.0, Some(Decimal::new(1_500_000, 0)), Decimal::new(4_000_000, 0), 2),
        ];
        Vai247Sim { key: random_key("vai_sk"), accounts: Mutex::new(accounts) }
    }
}

impl Simulated for Vai247Sim {
    fn name(&self) -> &'static str {
        "vai247"
    }

    fn handle(&self, req: &SimRequest) -> SimResponse {
        if req.header("x-api-key") != Some(self.key.as_str()) {
            return SimResponse::json(401, json!({"statusCode": 401, "message": "Unauthorized - invalid API credentials", "error": "Unauthorized"}));
        }
        if req.path != "/api/v1/payment-gateway/balance-inquiry" {
            return SimResponse::json(404, json!({"statusCode": 404, "message": "Merchant not found", "error": "Not Found"}));
        }
        if req.method != hyper::Method::POST {
            return SimResponse::json(405, json!({"statusCode": 405, "message": "Method not allowed", "error": "Method Not Allowed"}));
        }
        let accounts = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        let wallet = |a: &SimAccount| format!(r#"{{"balance": {:.2}, "freeze": {:.2}, "usable": {:.2}}}"#, a.balance, a.frozen, a.usable());
        SimResponse {
            status: 200,
            body: format!(
                r#"{{"statusCode": 200, "message": "Success", "data": {{"usd": {}, "khr": {}}}, "traceId": "trace_demo_{:08x}"}}"#,
                wallet(&accounts[0]),
                wallet(&accounts[1]),
                rand::random::<u32>()
            ),
        }
    }

    fn tick(&self, now: SystemTime, dt: Duration) {
        each_account(&self.accounts, |a| a.tick(now, dt));
    }

    fn drain(&self, to: Decimal) {
        each_account(&self.accounts, |a| a.drain(to));
    }

    fn restore(&self) {
        each_account(&self.accounts, |a| a.restore());
    }

    fn secrets(&self) -> Vec<(String, String)> {
        vec![("DEMO_VAI247_KEY".into(), self.key.clone())]
    }
}

impl Default for Vai247Sim {
    fn default() -> Self {
        Vai247Sim::new()
    }
}
