//! The simulation kit every kind's demo simulation is built with: the
//! request and answer a simulated supplier sees, the [`Simulated`] trait, and
//! a business-like account balance. A leaf: the kinds' `sim.rs` files import
//! it, and [`crate::demo`] runs what the kind registry lists.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use hyper::{HeaderMap, Method};
use rust_decimal::Decimal;

/// A request as a simulated supplier sees it.
pub struct SimRequest {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl SimRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn query_param(&self, key: &str) -> Option<String> {
        url_query_param(&self.query, key)
    }
}

pub fn url_query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == key).map(|(_, v)| v.replace("%20", " "))
}

/// A simulated answer.
pub struct SimResponse {
    pub status: u16,
    pub body: String,
}

impl SimResponse {
    pub fn json(status: u16, body: serde_json::Value) -> Self {
        SimResponse { status, body: body.to_string() }
    }
}

/// One simulated supplier API.
pub trait Simulated: Send + Sync {
    /// The supplier name in the demo config.
    fn name(&self) -> &'static str;
    /// Answers a request (auth checked first).
    fn handle(&self, req: &SimRequest) -> SimResponse;
    /// Advances the business by `dt` at wall time `now`.
    fn tick(&self, now: SystemTime, dt: Duration);
    /// Sets every balance of this supplier to `to` (major units) and holds
    /// automatic top-ups until [`Simulated::restore`].
    fn drain(&self, to: Decimal);
    /// Ends a drain: tops the balances up and lets the business run again.
    fn restore(&self);
    /// The secret(s) this supplier accepts, as `DEMO_*` variables for the config.
    fn secrets(&self) -> Vec<(String, String)>;
}

/// A random key for a simulated supplier, so each demo run has its own secrets.
pub fn random_key(prefix: &str) -> String {
    let n: u128 = rand::random();
    format!("{prefix}_{n:032x}")
}

/// Daily rhythm of order volume: quiet at night, busiest mid-afternoon (UTC).
pub fn daily_rhythm(now: SystemTime) -> f64 {
    let secs = now.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs_f64();
    let hour = (secs / 3600.0) % 24.0;
    1.0 + 0.6 * ((hour - 9.0) / 24.0 * std::f64::consts::TAU).sin()
}

/// A random amount between `lo` and `hi` with `dp` decimal places.
pub fn random_amount(lo: i64, hi: i64, dp: u32) -> Decimal {
    let scale = 10i64.pow(dp);
    let v = rand::random_range(lo * scale..=hi * scale);
    Decimal::new(v, dp)
}

/// Applies `f` to every account behind the lock (tick, drain, restore).
pub fn each_account(accounts: &Mutex<Vec<SimAccount>>, f: impl FnMut(&mut SimAccount)) {
    accounts.lock().unwrap_or_else(|e| e.into_inner()).iter_mut().for_each(f);
}

/// One simulated account balance moving like a business.
#[derive(Debug, Clone)]
pub struct SimAccount {
    pub account: String,
    pub currency: &'static str,
    pub balance: Decimal,
    pub frozen: Decimal,
    /// Typical order size range (major units) and orders per hour at the daily mean.
    pub order: (i64, i64),
    pub orders_per_hour: f64,
    /// Top up by `topup` when usable falls under `topup_below`; `None` never tops up by itself.
    pub topup_below: Option<Decimal>,
    pub topup: Decimal,
    /// Decimal places of amounts in this currency.
    pub dp: u32,
    /// Seconds spent at zero so far (for the "manual" top-up of a drained account).
    pub at_zero_for: f64,
    /// Set by a drain: no top-up until restored.
    pub hold_topups: bool,
}

impl SimAccount {
    /// Applies `dt` of business: orders, freezes settling, top-ups.
    pub fn tick(&mut self, now: SystemTime, dt: Duration) {
        let p_order = self.orders_per_hour * daily_rhythm(now) * dt.as_secs_f64() / 3600.0;
        if rand::random::<f64>() < p_order {
            let amount = random_amount(self.order.0, self.order.1, self.dp);
            let usable = self.balance - self.frozen;
            if amount <= usable {
                self.balance -= amount;
            }
        }
        // Some funds get held for settlement; held funds settle over time.
        if rand::random::<f64>() < 0.02 {
            let hold = random_amount(self.order.0, self.order.1, self.dp);
            if hold <= self.balance - self.frozen {
                self.frozen += hold;
            }
        }
        if self.frozen > Decimal::ZERO && rand::random::<f64>() < 0.03 {
            self.frozen = (self.frozen / Decimal::TWO).round_dp(self.dp);
        }
        let usable = self.balance - self.frozen;
        if self.hold_topups {
            return;
        }
        match self.topup_below {
            Some(below) if usable < below => self.balance += self.topup,
            None if usable <= random_amount(self.order.1, self.order.1, 0) => {
                // Nobody tops this one up automatically: after 5 minutes at the bottom an operator does.
                self.at_zero_for += dt.as_secs_f64();
                if self.at_zero_for >= 300.0 {
                    self.balance += self.topup;
                    self.at_zero_for = 0.0;
                }
            }
            _ => {}
        }
    }

    pub fn usable(&self) -> Decimal {
        self.balance - self.frozen
    }

    pub fn drain(&mut self, to: Decimal) {
        self.balance = to;
        self.frozen = Decimal::ZERO;
        self.hold_topups = true;
    }

    pub fn restore(&mut self) {
        if self.hold_topups {
            self.hold_topups = false;
            self.balance += self.topup;
        }
    }

    /// A new account with the given opening balance and business.
    // One argument per trait of the simulated business; a struct literal would read no better.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        account: &str,
        currency: &'static str,
        balance: Decimal,
        order: (i64, i64),
        orders_per_hour: f64,
        topup_below: Option<Decimal>,
        topup: Decimal,
        dp: u32,
    ) -> Self {
        SimAccount {
            account: account.into(),
            currency,
            balance,
            frozen: Decimal::ZERO,
            order,
            orders_per_hour,
            topup_below,
            topup,
            dp,
            at_zero_for: 0.0,
            hold_topups: false,
        }
    }
}
