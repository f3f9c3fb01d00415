//! Simulated NovaSend: `GET /v1/balance`, Basic `api_key:api_client`, two sub-accounts.
// The simulation computes with its own numbers, not upstream ones.
#![allow(clippy::arithmetic_side_effects)]

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use base64::Engine;
use rust_decimal::Decimal;
use serde_json::json;

use crate::demo::kit::{each_account, random_key, SimAccount, SimRequest, SimResponse, Simulated};

pub struct NovaSendSim {
    api_key: String,
    api_client: String,
    accounts: Mutex<Vec<SimAccount>>,
}

impl NovaSendSim {
    pub fn new() -> Self {
        let accounts = vec![
            SimAccount::new("merchant_gh8jpoipkrxhjsm0", "XOF", Decimal::new(467_600, 0), (500, 5000), 60.0, Some(Decimal::new(50_000, 0)), Decimal::new(500_000, 0), 0),
            SimAccount::new("merchant_usd_ahjs87s2", "USD", Decimal::new(1230, 0), (5, 40), 30.0, Some(Decimal::new(300, 0)), Decimal::new(1000, 0), 2),
        ];
        NovaSendSim { api_key: random_key("ns_key"), api_client: random_key("ns_client"), accounts: Mutex::new(accounts) }
    }
}

impl Simulated for NovaSendSim {
    fn name(&self) -> &'static str {
        "novasend"
    }

    fn handle(&self, req: &SimRequest) -> SimResponse {
        let expected = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", self.api_key, self.api_client)));
        if req.header("authorization") != Some(expected.as_str()) {
            return SimResponse::json(401, json!({"statusCode": 401, "message": "unauthenticated", "error": "Unauthorized", "correlationId": "demo-0001"}));
        }
        if req.method != hyper::Method::GET || req.path != "/v1/balance" {
            return SimResponse::json(404, json!({"statusCode": 404, "message": "not found", "error": "Not Found", "correlationId": "demo-0002"}));
        }
        let accounts = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        let entries: Vec<String> = accounts
            .iter()
            .map(|a| format!(r#"{{"balance": {}, "availableBalance": {}, "reference": "{}", "currency": "{}"}}"#, a.balance, a.usable(), a.account, a.currency))
            .collect();
        SimResponse { status: 200, body: format!("[{}]", entries.join(", ")) }
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
        vec![("DEMO_NOVASEND_KEY".into(), self.api_key.clone()), ("DEMO_NOVASEND_CLIENT".into(), self.api_client.clone())]
    }
}

impl Default for NovaSendSim {
    fn default() -> Self {
        NovaSendSim::new()
    }
}
