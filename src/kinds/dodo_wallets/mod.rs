//! Dodo Payments customer wallets, Bearer auth.
//!
//! `GET /customers/{id}/wallets` →
//! `{"items": [{"balance": 1050, "currency": "USD", "customer_id", "created_at", "updated_at"}], "total_balance_usd"}`.
//! Balances are integers in the currency's smallest unit, exported in major
//! units through the ISO 4217 table (`currency_exponents` overrides it); a
//! currency without an exponent is a row error for that wallet only.
//!
//! Two modes:
//!
//! - `customers: [cus_…]` — one balance row per (customer, currency), and the
//!   wallet's ledger (`GET /customers/{id}/wallets/ledger-entries?currency=&page_number=&page_size=`)
//!   gives exact flows: new debits add to `supplier_balance_spent_total`, new
//!   credits to `supplier_balance_topped_up_total`, each entry once. Also
//!   `supplier_ledger_entries_total{direction, event_type}` and
//!   `supplier_ledger_duplicate_suspects_total`.
//! - `all_customers: true` — walks `GET /customers?page_number=&page_size=`
//!   and exports bounded per-currency aggregates (`supplier_wallets`,
//!   `supplier_wallets_balance_sum`, `supplier_wallets_below_threshold`) plus
//!   the `lowest` N wallets of each currency as balance rows. No ledgers are
//!   read (one request per wallet is already the cost of a poll): spend of
//!   those rows is inferred from their balance changes while they stay among
//!   the lowest, and platform-wide net flow is the change of
//!   `supplier_wallets_balance_sum`.
//!
//! Every request, pages included, goes through the supplier's limiter: a poll
//! of N customers costs about N + N/page_size (+ ledger pages) × `min_interval`.
//!
//! Ledger bookkeeping ([`WalletLedger`], kept in [`KindMemory`] across polls
//! and restarts of the poll loop): the first poll of a wallet reads the newest
//! page only and takes it as the baseline — history is not spend, counters
//! start at 0, but its debits seed the duplicate detector. Later polls read
//! pages from 0 and stop at the first page whose oldest entry was already
//! accounted (the API lists newest first; if a page is oldest-first the walk
//! goes on to the empty page instead). An entry is new when its id was not
//! seen and it is newer than the wallet's `floor`; ids are remembered for
//! [`RETENTION`] past the newest entry, older ones fall under the floor.
//!
//! Sums are checked: new ledger entries adding up past what `Decimal` holds
//! are a row error for that wallet (nothing of its walk is counted), and an
//! aggregate sum that overflows is not exported.
#![deny(clippy::arithmetic_side_effects)]

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, SystemTime};

use rust_decimal::Decimal;
use serde::de::{self, Deserializer};
use serde::Deserialize;

use super::{parse_rfc3339, BalanceRow, ExtraSample, FlowDelta, Flows, KindMemory, PollOutput};
use crate::amount::{currency_code, minor_to_major, AmountError};
use crate::settings::ConfigIssue;
use crate::upstream::{PollError, Reason, Request, Upstream};

/// The demo's simulation of this API (`--demo`).
pub mod sim;
/// Its fuzz targets (run by `crate::fuzz`).
#[cfg(test)]
pub(crate) mod fuzz;

/// Ids of accounted entries are kept this long past a wallet's newest entry
/// (at least `duplicate_window`); an entry that shows up later than this
/// after its own `created_at` is not counted.
pub const RETENTION: Duration = Duration::from_secs(3600);
/// At most this many ids per wallet, whatever the entry rate.
const MAX_SEEN_PER_WALLET: usize = 20_000;
/// Ledger pages read per wallet and poll before giving up on that wallet.
const MAX_LEDGER_PAGES: u32 = 1000;
/// Customers pages walked at most in one poll (100 × 10,000 = a million customers).
const MAX_CUSTOMER_PAGES: u32 = 10_000;

/// `kind: dodo_wallets` keys.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DodoWalletsConfig {
    /// Customer ids to watch, each with per-wallet series and its ledger.
    #[serde(default)]
    pub customers: Vec<String>,
    /// Walk every customer of the business instead, exporting aggregates (give this or `customers`).
    #[serde(default)]
    pub all_customers: bool,
    /// `page_size` of list requests (customers, ledger entries): 1–100, default 100.
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// Debits repeating an earlier debit's amount and reference within this
    /// window count as duplicate suspects (default 10m).
    #[serde(default = "default_window", deserialize_with = "duration")]
    pub duplicate_window: Duration,
    /// `all_customers` only: the N lowest wallets of each currency exported as balance rows (default 10).
    #[serde(default = "default_lowest")]
    pub lowest: usize,
    /// `all_customers` only: wallets below this balance (major units) count in
    /// `supplier_wallets_below_threshold`. One number for every currency, or a
    /// map per currency (`{USD: 5, INR: 400}`); absent, that gauge is not exported.
    #[serde(default)]
    pub low: Option<LowThreshold>,
    /// Minor-unit exponents overriding ISO 4217, e.g. `{USD: 2}`.
    #[serde(default)]
    pub currency_exponents: BTreeMap<String, u32>,
}

fn default_page_size() -> u32 {
    100
}
fn default_window() -> Duration {
    Duration::from_secs(600)
}
fn default_lowest() -> usize {
    10
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(text.trim()).map_err(|e| de::Error::custom(format!("invalid duration {text:?}: {e}")))
}

/// `low:` — one threshold for all currencies, or one per currency.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum LowThreshold {
    All(DecimalText),
    PerCurrency(BTreeMap<String, DecimalText>),
}

impl LowThreshold {
    fn for_currency(&self, currency: &str) -> Option<Decimal> {
        match self {
            LowThreshold::All(d) => Some(d.0),
            LowThreshold::PerCurrency(m) => m.get(currency).map(|d| d.0),
        }
    }
}

/// A decimal read from the text of a config number or string, never via `f64` arithmetic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecimalText(pub Decimal);

impl<'de> Deserialize<'de> for DecimalText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = DecimalText;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<DecimalText, E> {
                Ok(DecimalText(Decimal::from(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<DecimalText, E> {
                Ok(DecimalText(Decimal::from(v)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<DecimalText, E> {
                // The shortest text that round-trips is what was written in the file.
                self.visit_str(&v.to_string())
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DecimalText, E> {
                crate::amount::parse_decimal_text(v.trim()).map(DecimalText).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl DodoWalletsConfig {
    /// Checks beyond serde, reported under `path`.
    pub fn validate(&self, path: &str, issues: &mut Vec<ConfigIssue>) {
        let mut issue = |key: &str, message: String| issues.push(ConfigIssue { path: format!("{path}.{key}"), message });
        match (self.customers.is_empty(), self.all_customers) {
            (true, false) => issue("customers", "give `customers: [...]` or `all_customers: true`".into()),
            (false, true) => issue("customers", "give either `customers` or `all_customers: true`, not both".into()),
            _ => {}
        }
        let mut seen = HashSet::new();
        for (i, c) in self.customers.iter().enumerate() {
            if c.is_empty() || c.len() > 128 || !c.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b)) {
                issue(&format!("customers[{i}]"), "must be a customer id (letters, digits, '_' and '-')".into());
            } else if !seen.insert(c) {
                issue(&format!("customers[{i}]"), format!("duplicate customer {c:?}"));
            }
        }
        if !(1..=100).contains(&self.page_size) {
            issue("page_size", "must be between 1 and 100".into());
        }
        if self.duplicate_window.is_zero() {
            issue("duplicate_window", "must be greater than 0".into());
        }
        if !self.all_customers && (self.low.is_some() || self.lowest != default_lowest()) {
            issue(if self.low.is_some() { "low" } else { "lowest" }, "only applies with `all_customers: true`".into());
        }
        if let Some(LowThreshold::PerCurrency(m)) = &self.low {
            for code in m.keys().filter(|c| currency_code(c).as_deref() != Some(c.as_str())) {
                issue("low", format!("{code:?} is not an upper-case 3-letter currency code"));
            }
        }
        for code in self.currency_exponents.keys().filter(|c| currency_code(c).as_deref() != Some(c.as_str())) {
            issue("currency_exponents", format!("{code:?} is not an upper-case 3-letter currency code"));
        }
    }
}

// ---- wire shapes ----

#[derive(Deserialize)]
struct Wallets {
    items: Vec<Wallet>,
}

#[derive(Deserialize)]
struct Wallet {
    #[serde(deserialize_with = "crate::amount::exact")]
    balance: Decimal,
    currency: String,
    #[serde(default)]
    updated_at: Option<String>,
}

#[derive(Deserialize)]
struct Items<T> {
    items: Vec<T>,
}

#[derive(Deserialize)]
struct Customer {
    customer_id: String,
}

#[derive(Deserialize)]
struct RawEntry {
    id: String,
    #[serde(deserialize_with = "crate::amount::exact")]
    amount: Decimal,
    is_credit: bool,
    #[serde(default)]
    event_type: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    reference_object_id: Option<String>,
    #[serde(default)]
    currency: Option<String>,
    created_at: String,
}

/// A ledger entry read and checked.
#[derive(Debug, Clone)]
struct Entry {
    id: String,
    /// Major units, magnitude; the direction is `is_credit`.
    amount: Decimal,
    is_credit: bool,
    event_type: String,
    /// What makes two debits "the same": the reference, else the reason.
    same_as: Option<String>,
    created_at: SystemTime,
}

// ---- memory ----

/// What is remembered of one wallet's ledger between polls (and, with
/// `--storage.path`, across restarts: each entry is counted once).
#[derive(Debug, Clone, Default, serde::Serialize, Deserialize)]
pub struct WalletLedger {
    /// False until the first walk set the baseline.
    initialized: bool,
    /// Entries created at or before this instant are accounted for.
    floor: Option<SystemTime>,
    /// Accounted entries newer than `floor`: id → created_at.
    seen: HashMap<String, SystemTime>,
    /// Debits within `duplicate_window` of the newest: (amount, same_as, created_at).
    recent_debits: Vec<(Decimal, String, SystemTime)>,
    /// Ids of unreadable entries already reported (so each is logged once).
    reported_bad: HashSet<String>,
}

impl WalletLedger {
    fn is_new(&self, e: &Entry) -> bool {
        self.initialized && self.floor.is_none_or(|f| e.created_at > f) && !self.seen.contains_key(&e.id)
    }

    /// Forgets ids older than the retention (raising the floor over them) and old debits.
    fn prune(&mut self, window: Duration) {
        let Some(newest) = self.seen.values().max().copied() else { return };
        let mut cutoff = newest.checked_sub(RETENTION.max(window)).unwrap_or(SystemTime::UNIX_EPOCH);
        if let Some(excess) = self.seen.len().checked_sub(MAX_SEEN_PER_WALLET).filter(|n| *n > 0) {
            let mut times: Vec<SystemTime> = self.seen.values().copied().collect();
            times.sort_unstable();
            if let Some(t) = times.get(excess) {
                cutoff = cutoff.max(*t);
            }
        }
        self.seen.retain(|_, t| *t > cutoff);
        self.floor = Some(self.floor.map_or(cutoff, |f| f.max(cutoff)));
        let oldest_debit = newest.checked_sub(window).unwrap_or(SystemTime::UNIX_EPOCH);
        self.recent_debits.retain(|(_, _, t)| *t >= oldest_debit);
    }
}

/// This kind's [`KindMemory`]: per (customer, currency).
#[derive(Debug, Clone, Default, serde::Serialize, Deserialize)]
pub struct DodoMemory {
    /// A list, not a map: JSON object keys cannot be pairs.
    #[serde(with = "ledger_list")]
    ledgers: BTreeMap<(String, String), WalletLedger>,
}

mod ledger_list {
    use super::WalletLedger;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;

    type Ledgers = BTreeMap<(String, String), WalletLedger>;

    pub fn serialize<S: Serializer>(ledgers: &Ledgers, s: S) -> Result<S::Ok, S::Error> {
        ledgers.iter().collect::<Vec<_>>().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Ledgers, D::Error> {
        Ok(Vec::<((String, String), WalletLedger)>::deserialize(d)?.into_iter().collect())
    }
}

// ---- polling ----

impl super::Kind for DodoWalletsConfig {
    const NAME: &'static str = "dodo_wallets";
    const DEFAULT_BASE_URL: Option<&'static str> = Some("https://live.dodopayments.com");
    // default tier 240 requests/min (40/s bursts fit inside it); test environment: https://test.dodopayments.com
    const DEFAULT_MIN_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);

    fn validate(&self, path: &str, issues: &mut Vec<crate::settings::ConfigIssue>) {
        DodoWalletsConfig::validate(self, path, issues);
    }

    async fn poll(&self, upstream: &Upstream, memory: &mut super::KindMemory) -> Result<PollOutput, PollError> {
        poll(self, upstream, memory).await
    }
}

pub async fn poll(cfg: &DodoWalletsConfig, upstream: &Upstream, memory: &mut KindMemory) -> Result<PollOutput, PollError> {
    if cfg.all_customers {
        return poll_aggregate(cfg, upstream).await;
    }
    let mut poll = CustomersPoll::new(memory.get_persistent::<DodoMemory>());
    for customer in &cfg.customers {
        let wallets = match fetch_wallets(upstream, customer).await {
            Ok(w) => w,
            // A deleted customer is that customer's problem, not the poll's.
            Err(e) if e.reason == Reason::NotFound => {
                poll.customer_gone(customer, &e);
                continue;
            }
            Err(e) => return Err(e),
        };
        for (i, w) in wallets.items.into_iter().enumerate() {
            let Some((key, row)) = poll.wallet(cfg, customer, i, w) else { continue };
            let mut walk = LedgerWalk::new(poll.ledger_of(&key));
            let path = format!("/customers/{customer}/wallets/ledger-entries");
            loop {
                let req = Request::get(&path).query("currency", &key.1).query("page_number", walk.pages).query("page_size", cfg.page_size);
                let resp = upstream.send(&req).await?;
                if !walk.page(cfg, upstream, &key, &resp.body, &mut poll.out.row_errors)? {
                    break;
                }
            }
            poll.accounted(cfg, key, row, walk);
        }
    }
    poll.finish()
}

/// Reads one customer's answers exactly as [`poll`] does in `customers`
/// mode, without sending anything (tests, fuzzing): `wallets` answers
/// `GET /customers/{customer}/wallets`, and each wallet's ledger walk is
/// answered by `ledger_pages` in order, then by empty pages.
pub fn parse_customer(
    cfg: &DodoWalletsConfig,
    upstream: &Upstream,
    customer: &str,
    wallets: &[u8],
    ledger_pages: &[&[u8]],
    memory: &mut KindMemory,
) -> Result<PollOutput, PollError> {
    let mut poll = CustomersPoll::new(memory.get_persistent::<DodoMemory>());
    let wallets = decode_wallets(upstream, customer, wallets)?;
    for (i, w) in wallets.items.into_iter().enumerate() {
        let Some((key, row)) = poll.wallet(cfg, customer, i, w) else { continue };
        let mut walk = LedgerWalk::new(poll.ledger_of(&key));
        let mut pages = ledger_pages.iter().copied();
        while walk.page(cfg, upstream, &key, pages.next().unwrap_or(br#"{"items": []}"#), &mut poll.out.row_errors)? {}
        poll.accounted(cfg, key, row, walk);
    }
    poll.finish()
}

async fn fetch_wallets(upstream: &Upstream, customer: &str) -> Result<Wallets, PollError> {
    let resp = upstream.send(&Request::get(format!("/customers/{customer}/wallets"))).await?;
    decode_wallets(upstream, customer, &resp.body)
}

fn decode_wallets(upstream: &Upstream, customer: &str, body: &[u8]) -> Result<Wallets, PollError> {
    upstream.decode(body).map_err(|e| PollError::decode(format!("customer {customer} wallets: {}", e.message)))
}

/// One poll in `customers` mode: its rows and flows, and the ledger memory
/// it will leave. Works on a copy: a failed poll must not mark entries as counted.
struct CustomersPoll<'m> {
    memory: &'m mut DodoMemory,
    next: DodoMemory,
    out: PollOutput,
    deltas: Vec<FlowDelta>,
    keys: HashSet<(String, String)>,
}

impl<'m> CustomersPoll<'m> {
    fn new(memory: &'m mut DodoMemory) -> Self {
        CustomersPoll { memory, next: DodoMemory::default(), out: PollOutput::default(), deltas: Vec::new(), keys: HashSet::new() }
    }

    fn customer_gone(&mut self, customer: &str, e: &PollError) {
        self.out.row_errors.push(format!("customer {customer}: {}", e.message));
        // Keep what its ledgers taught us, in case it is only briefly missing.
        let kept = self.memory.ledgers.iter().filter(|(k, _)| k.0 == customer).map(|(k, v)| (k.clone(), v.clone()));
        self.next.ledgers.extend(kept);
    }

    /// Reads wallet `i` of `customer`: its key and balance row, or a row error.
    fn wallet(&mut self, cfg: &DodoWalletsConfig, customer: &str, i: usize, w: Wallet) -> Option<((String, String), BalanceRow)> {
        let Some(currency) = currency_code(&w.currency) else {
            self.out.row_errors.push(format!("customer {customer} $.items[{i}].currency: not a currency code"));
            return None;
        };
        let balance = match minor_to_major(w.balance, &currency, &cfg.currency_exponents) {
            Ok(b) => b,
            Err(e) => {
                self.out.row_errors.push(format!("customer {customer} $.items[{i}].balance: {e}"));
                return None;
            }
        };
        let key = (customer.to_string(), currency.clone());
        if !self.keys.insert(key.clone()) {
            self.out.row_errors.push(format!("customer {customer}: two {currency} wallets"));
            return None;
        }
        let updated_at = w.updated_at.as_deref().and_then(parse_rfc3339);
        let row = BalanceRow { account: customer.to_string(), currency, balance, frozen: Decimal::ZERO, usable: balance, updated_at };
        Some((key, row))
    }

    /// What is known of a wallet's ledger from earlier polls.
    fn ledger_of(&self, key: &(String, String)) -> WalletLedger {
        self.memory.ledgers.get(key).cloned().unwrap_or_default()
    }

    /// Accounts a wallet whose ledger walk is done.
    fn accounted(&mut self, cfg: &DodoWalletsConfig, key: (String, String), row: BalanceRow, walk: LedgerWalk) {
        match walk.finish(cfg) {
            Ok((found, ledger)) => {
                self.out.balances.push(row);
                self.deltas.push(found.account(&key, &mut self.out));
                self.next.ledgers.insert(key, ledger);
            }
            Err(message) => {
                self.out.row_errors.push(format!("customer {} {} ledger {message}; wallet not exported this poll", key.0, key.1));
                // Nothing of this walk was counted: keep what was known before it.
                if let Some(old) = self.memory.ledgers.get(&key) {
                    self.next.ledgers.insert(key, old.clone());
                }
            }
        }
    }

    fn finish(self) -> Result<PollOutput, PollError> {
        let mut out = self.out;
        out.flows = Flows::Ledger(self.deltas);
        // Wallets that vanished are forgotten; everything else is replaced at once.
        *self.memory = self.next;
        if out.balances.is_empty() && !out.row_errors.is_empty() {
            return Err(PollError::decode(out.row_errors.join("; ")));
        }
        Ok(out)
    }
}

/// What one ledger walk found new.
#[derive(Default)]
struct Found {
    spent: Decimal,
    topped_up: Decimal,
    /// (direction, event_type) → entries; zero for types seen only in history.
    entries: BTreeMap<(&'static str, String), u64>,
    duplicate_suspects: u64,
}

impl Found {
    /// Adds this wallet's counter increments to `out` and returns its flow.
    fn account(self, key: &(String, String), out: &mut PollOutput) -> FlowDelta {
        for ((direction, event_type), n) in self.entries {
            out.counter_increments.push(ExtraSample {
                name: "supplier_ledger_entries_total",
                help: "Ledger entries counted since the exporter started watching the wallet, by direction and event type.",
                labels: vec![("account", key.0.clone()), ("currency", key.1.clone()), ("direction", direction.to_string()), ("event_type", event_type)],
                value: Decimal::from(n),
            });
        }
        out.counter_increments.push(ExtraSample {
            name: "supplier_ledger_duplicate_suspects_total",
            help: "Ledger debits repeating an earlier debit's amount and reference (or reason) within duplicate_window.",
            labels: vec![("account", key.0.clone()), ("currency", key.1.clone())],
            value: Decimal::from(self.duplicate_suspects),
        });
        FlowDelta { account: key.0.clone(), currency: key.1.clone(), spent: self.spent, topped_up: self.topped_up }
    }
}

/// One wallet's ledger walk in one poll, fed page by page (by [`poll`] over
/// HTTP, by [`parse_customer`] from memory) and accounted at the end.
struct LedgerWalk {
    /// A working copy of the wallet's ledger memory.
    ledger: WalletLedger,
    read: Vec<Entry>,
    ids: HashSet<String>,
    /// Pages read so far: the `page_number` of the next request.
    pages: u32,
}

impl LedgerWalk {
    fn new(ledger: WalletLedger) -> Self {
        LedgerWalk { ledger, read: Vec::new(), ids: HashSet::new(), pages: 0 }
    }

    /// Reads one page of `key`'s ledger; whether the walk goes on to the next page.
    fn page(&mut self, cfg: &DodoWalletsConfig, upstream: &Upstream, key: &(String, String), body: &[u8], row_errors: &mut Vec<String>) -> Result<bool, PollError> {
        let (customer, currency) = (&key.0, &key.1);
        let page_number = self.pages;
        self.pages = self.pages.saturating_add(1);
        let page: Items<Box<serde_json::value::RawValue>> = upstream.decode(body)
            .map_err(|e| PollError::decode(format!("customer {customer} {currency} ledger page {page_number}: {}", e.message)))?;
        if page.items.is_empty() {
            return Ok(false);
        }
        let mut entries = Vec::with_capacity(page.items.len());
        for (i, raw) in page.items.iter().enumerate() {
            match entry(raw.get(), currency, &cfg.currency_exponents) {
                Ok(e) => entries.push(e),
                Err(EntryError { id, problem: message }) => {
                    // Not counted; reported once per id.
                    let reported = &mut self.ledger.reported_bad;
                    if id.as_ref().is_none_or(|id| !reported.contains(id)) {
                        row_errors.push(format!("customer {customer} {currency} ledger page {page_number} $.items[{i}]: {message}"));
                    }
                    if let Some(id) = id {
                        if reported.len() >= 1000 {
                            reported.clear();
                        }
                        reported.insert(id);
                    }
                }
            }
        }
        let more = match (entries.first(), entries.last()) {
            (Some(first), Some(last)) => {
                let newest_first = first.created_at >= last.created_at;
                let oldest_known = !self.ledger.is_new(last);
                let baseline = !self.ledger.initialized;
                let ids = &mut self.ids;
                self.read.extend(entries.into_iter().filter(|e| ids.insert(e.id.clone())));
                // Newest first: everything past an accounted entry is accounted too.
                !(newest_first && (baseline || oldest_known))
            }
            // Nothing readable on this page: go on.
            _ => true,
        };
        if more && self.pages >= MAX_LEDGER_PAGES {
            row_errors.push(format!("customer {customer} {currency} ledger: stopped after {MAX_LEDGER_PAGES} pages"));
            return Ok(false);
        }
        Ok(more)
    }

    /// Accounts the new entries: what they add up to and the ledger memory
    /// to keep. `Err` names a sum `Decimal` cannot hold.
    fn finish(self, cfg: &DodoWalletsConfig) -> Result<(Found, WalletLedger), LedgerSumError> {
        let LedgerWalk { mut ledger, read, .. } = self;
        let mut found = Found::default();
        let baseline = !ledger.initialized;
        let mut fresh: Vec<Entry> = read.iter().filter(|e| ledger.is_new(e)).cloned().collect();
        fresh.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        // History seeds the duplicate detector and names the event types, counting nothing.
        let fresh_ids: HashSet<&str> = fresh.iter().map(|e| e.id.as_str()).collect();
        for e in read.iter().filter(|e| !fresh_ids.contains(e.id.as_str())) {
            found.entries.entry((direction(e), e.event_type.clone())).or_default();
            if !e.is_credit && !ledger.seen.contains_key(&e.id) {
                if let Some(same) = &e.same_as {
                    ledger.recent_debits.push((e.amount, same.clone(), e.created_at));
                }
            }
            ledger.seen.insert(e.id.clone(), e.created_at);
        }
        for e in fresh {
            let n = found.entries.entry((direction(&e), e.event_type.clone())).or_default();
            *n = n.saturating_add(1);
            if e.is_credit {
                found.topped_up = found.topped_up.checked_add(e.amount).ok_or(LedgerSumError::Credits)?;
            } else {
                found.spent = found.spent.checked_add(e.amount).ok_or(LedgerSumError::Debits)?;
                if let Some(same) = &e.same_as {
                    let repeat = ledger.recent_debits.iter().any(|(amount, s, t)| {
                        *amount == e.amount && s == same && e.created_at.duration_since(*t).unwrap_or_else(|d| d.duration()) <= cfg.duplicate_window
                    });
                    if repeat {
                        found.duplicate_suspects = found.duplicate_suspects.saturating_add(1);
                    }
                    ledger.recent_debits.push((e.amount, same.clone(), e.created_at));
                }
            }
            ledger.seen.insert(e.id.clone(), e.created_at);
        }
        if baseline {
            ledger.initialized = true;
            ledger.floor = read.iter().map(|e| e.created_at).min();
        }
        ledger.prune(cfg.duplicate_window);
        Ok((found, ledger))
    }
}

/// New ledger entries whose sum `Decimal` cannot hold.
#[derive(Debug, thiserror::Error)]
enum LedgerSumError {
    #[error("$.items[*].amount: the sum of new credits overflows")]
    Credits,
    #[error("$.items[*].amount: the sum of new debits overflows")]
    Debits,
}

/// A ledger entry that does not read: its id (if readable) and why.
#[derive(Debug, thiserror::Error)]
#[error("{problem}")]
struct EntryError {
    id: Option<String>,
    problem: EntryProblem,
}

#[derive(Debug, thiserror::Error)]
enum EntryProblem {
    /// Not an entry's shape: the JSON path and serde's reason.
    #[error("{path}: {source}")]
    Shape { path: String, source: serde_json::Error },
    #[error("currency {found:?} in the {ledger} ledger")]
    Currency { found: String, ledger: String },
    #[error("created_at: not an RFC 3339 time")]
    CreatedAt,
    #[error(transparent)]
    Amount(#[from] AmountError),
}

fn direction(e: &Entry) -> &'static str {
    if e.is_credit { "credit" } else { "debit" }
}

/// Reads one ledger entry; on failure, its id (if readable) and why.
fn entry(raw: &str, currency: &str, exponents: &BTreeMap<String, u32>) -> Result<Entry, EntryError> {
    let mut de = serde_json::Deserializer::from_str(raw);
    let e: RawEntry = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let id = serde_json::from_str::<serde_json::Value>(raw).ok().and_then(|v| v.get("id")?.as_str().map(String::from));
        EntryError { id, problem: EntryProblem::Shape { path: err.path().to_string(), source: err.into_inner() } }
    })?;
    let fail = |problem: EntryProblem| EntryError { id: Some(e.id.clone()), problem };
    if let Some(c) = e.currency.as_deref().filter(|c| currency_code(c).as_deref() != Some(currency)) {
        return Err(fail(EntryProblem::Currency { found: c.to_string(), ledger: currency.to_string() }));
    }
    let created_at = parse_rfc3339(&e.created_at).ok_or_else(|| fail(EntryProblem::CreatedAt))?;
    let amount = minor_to_major(e.amount.abs(), currency, exponents).map_err(|err: AmountError| fail(err.into()))?;
    let same_as = match (e.reference_object_id.filter(|r| !r.is_empty()), e.reason.filter(|r| !r.is_empty())) {
        (Some(r), _) => Some(format!("ref:{r}")),
        (None, Some(r)) => Some(format!("reason:{r}")),
        (None, None) => None,
    };
    Ok(Entry { id: e.id, amount, is_credit: e.is_credit, event_type: event_type_label(e.event_type.as_deref()), same_as, created_at })
}

/// `event_type` as a label value: short snake-case words pass, anything else is `other`.
fn event_type_label(raw: Option<&str>) -> String {
    match raw {
        Some(t) if !t.is_empty() && t.len() <= 48 && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)) => t.to_ascii_lowercase(),
        Some(_) => "other".into(),
        None => "unknown".into(),
    }
}

// ---- aggregate mode ----

/// Per-currency totals of a walk over every customer, with the lowest wallets.
#[derive(Default)]
struct CurrencyAggregate {
    wallets: u64,
    sum: Decimal,
    /// The sum went past what `Decimal` holds: its gauge is not exported.
    sum_overflowed: bool,
    below: u64,
    /// The `lowest` smallest (balance, customer), kept sorted.
    lowest: BTreeSet<(Decimal, String)>,
    updated_at: HashMap<String, Option<SystemTime>>,
}

async fn poll_aggregate(cfg: &DodoWalletsConfig, upstream: &Upstream) -> Result<PollOutput, PollError> {
    let mut agg = Aggregate::default();
    loop {
        let req = Request::get("/customers").query("page_number", agg.pages).query("page_size", cfg.page_size);
        let resp = upstream.send(&req).await?;
        if !agg.customers_page(upstream, &resp.body)? {
            break;
        }
    }
    for customer in std::mem::take(&mut agg.customers) {
        match fetch_wallets(upstream, &customer).await {
            Ok(wallets) => agg.wallets(cfg, &customer, wallets),
            Err(e) if e.reason == Reason::NotFound => agg.problem("customers gone between list and wallets".into()),
            Err(e) => return Err(e),
        }
    }
    Ok(agg.finish(cfg))
}

/// Reads answers exactly as [`poll`] does in `all_customers` mode, without
/// sending anything (tests, fuzzing): `customer_pages` answer the customers
/// listing in order (then empty pages), `wallets` every customer's wallets.
pub fn parse_all_customers(cfg: &DodoWalletsConfig, upstream: &Upstream, customer_pages: &[&[u8]], wallets: &[u8]) -> Result<PollOutput, PollError> {
    let mut agg = Aggregate::default();
    let mut pages = customer_pages.iter().copied();
    while agg.customers_page(upstream, pages.next().unwrap_or(br#"{"items": []}"#))? {}
    for customer in std::mem::take(&mut agg.customers) {
        let w = decode_wallets(upstream, &customer, wallets)?;
        agg.wallets(cfg, &customer, w);
    }
    Ok(agg.finish(cfg))
}

/// One poll in `all_customers` mode.
#[derive(Default)]
struct Aggregate {
    customers: Vec<String>,
    ids: HashSet<String>,
    /// Customers pages read: the `page_number` of the next request.
    pages: u32,
    by_currency: BTreeMap<String, CurrencyAggregate>,
    problems: BTreeMap<String, u64>,
}

impl Aggregate {
    /// Reads one customers page; whether to ask for the next one.
    fn customers_page(&mut self, upstream: &Upstream, body: &[u8]) -> Result<bool, PollError> {
        let page_number = self.pages;
        self.pages = self.pages.saturating_add(1);
        let page: Items<Customer> = upstream.decode(body).map_err(|e| PollError::decode(format!("customers page {page_number}: {}", e.message)))?;
        if page.items.is_empty() {
            return Ok(false);
        }
        // Pages may shift while customers sign up: each customer once.
        let before = self.customers.len();
        let ids = &mut self.ids;
        self.customers.extend(page.items.into_iter().map(|c| c.customer_id).filter(|id| ids.insert(id.clone())));
        // An API that ignores page_number repeats a page forever: a page with
        // nobody new ends the walk, and so does an absurd page count.
        if self.customers.len() == before {
            return Err(PollError::decode(format!("customers page {page_number} repeats earlier customers only; is page_number ignored?")));
        }
        if page_number >= MAX_CUSTOMER_PAGES {
            return Err(PollError::decode(format!("customers: more than {MAX_CUSTOMER_PAGES} pages")));
        }
        Ok(true)
    }

    fn problem(&mut self, problem: String) {
        let n = self.problems.entry(problem).or_default();
        *n = n.saturating_add(1);
    }

    /// Adds one customer's wallets to the totals.
    fn wallets(&mut self, cfg: &DodoWalletsConfig, customer: &str, wallets: Wallets) {
        for w in wallets.items {
            let Some(currency) = currency_code(&w.currency) else {
                self.problem("wallets with an invalid currency code".into());
                continue;
            };
            let balance = match minor_to_major(w.balance, &currency, &cfg.currency_exponents) {
                Ok(b) => b,
                Err(e) => {
                    self.problem(format!("wallets skipped: {e}"));
                    continue;
                }
            };
            let agg = self.by_currency.entry(currency.clone()).or_default();
            agg.wallets = agg.wallets.saturating_add(1);
            match agg.sum.checked_add(balance) {
                Some(sum) => agg.sum = sum,
                None => agg.sum_overflowed = true,
            }
            if cfg.low.as_ref().and_then(|l| l.for_currency(&currency)).is_some_and(|low| balance < low) {
                agg.below = agg.below.saturating_add(1);
            }
            if cfg.lowest > 0 {
                agg.lowest.insert((balance, customer.to_string()));
                if agg.lowest.len() > cfg.lowest {
                    if let Some((_, largest)) = agg.lowest.pop_last() {
                        agg.updated_at.remove(&largest);
                    }
                }
                if agg.lowest.iter().any(|(_, c)| c == customer) {
                    agg.updated_at.insert(customer.to_string(), w.updated_at.as_deref().and_then(parse_rfc3339));
                }
            }
        }
    }

    fn finish(self, cfg: &DodoWalletsConfig) -> PollOutput {
        let mut out = PollOutput::default();
        for (problem, n) in self.problems {
            out.row_errors.push(format!("{n} {problem}"));
        }
        for (currency, agg) in self.by_currency {
            let labels = vec![("currency", currency.clone())];
            out.gauges.push(ExtraSample { name: "supplier_wallets", help: "Customer wallets in this currency (all_customers mode).", labels: labels.clone(), value: Decimal::from(agg.wallets) });
            if agg.sum_overflowed {
                out.row_errors.push(format!("{currency}: the sum of wallet balances overflows; supplier_wallets_balance_sum not exported"));
            } else {
                out.gauges.push(ExtraSample {
                    name: "supplier_wallets_balance_sum",
                    help: "Sum of all customer wallet balances in this currency, in major units (all_customers mode).",
                    labels: labels.clone(),
                    value: agg.sum,
                });
            }
            if cfg.low.as_ref().and_then(|l| l.for_currency(&currency)).is_some() {
                out.gauges.push(ExtraSample {
                    name: "supplier_wallets_below_threshold",
                    help: "Customer wallets whose balance is below the configured `low` (all_customers mode).",
                    labels,
                    value: Decimal::from(agg.below),
                });
            }
            for (balance, customer) in agg.lowest {
                let updated_at = agg.updated_at.get(&customer).copied().flatten();
                out.balances.push(BalanceRow { account: customer, currency: currency.clone(), balance, frozen: Decimal::ZERO, usable: balance, updated_at });
            }
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)] // times in tests, not upstream values
mod tests {
    use super::*;
    use crate::kinds::test_upstream;

    fn cfg() -> DodoWalletsConfig {
        DodoWalletsConfig {
            customers: vec!["cus_1".into()],
            all_customers: false,
            page_size: 100,
            duplicate_window: default_window(),
            lowest: default_lowest(),
            low: None,
            currency_exponents: BTreeMap::new(),
        }
    }

    fn wallets(balance: &str, currency: &str) -> Vec<u8> {
        format!(r#"{{"items": [{{"balance": {balance}, "currency": "{currency}", "customer_id": "cus_1", "updated_at": "2026-05-01T13:45:22Z"}}]}}"#).into_bytes()
    }

    fn ledger(entries: &[(&str, &str, bool, &str)]) -> Vec<u8> {
        let items: Vec<String> = entries
            .iter()
            .map(|(id, amount, credit, at)| format!(r#"{{"id": "{id}", "amount": {amount}, "is_credit": {credit}, "event_type": "payment", "currency": "XOF", "created_at": "{at}"}}"#))
            .collect();
        format!(r#"{{"items": [{}]}}"#, items.join(",")).into_bytes()
    }

    /// New ledger debits adding up past `Decimal::MAX` are a row error for the
    /// wallet (nothing of that walk is counted), then the wallet recovers.
    #[test]
    fn ledger_sums_out_of_range_are_a_row_error_not_a_panic() {
        let (cfg, up, mut memory) = (cfg(), test_upstream(), KindMemory::default());
        let max = "79228162514264337593543950335";
        let history = ledger(&[("e0", "1", false, "2026-05-01T10:00:00Z")]);
        let out = parse_customer(&cfg, &up, "cus_1", &wallets("5", "XOF"), &[&history], &mut memory).unwrap();
        assert_eq!(out.balances.len(), 1, "baseline poll");
        let huge = ledger(&[("e2", max, false, "2026-05-01T10:02:00Z"), ("e1", max, false, "2026-05-01T10:01:00Z"), ("e0", "1", false, "2026-05-01T10:00:00Z")]);
        let e = parse_customer(&cfg, &up, "cus_1", &wallets("5", "XOF"), &[&huge], &mut memory).unwrap_err();
        assert_eq!(e.reason, Reason::Decode);
        assert_eq!(e.message, "customer cus_1 XOF ledger $.items[*].amount: the sum of new debits overflows; wallet not exported this poll");
        // The same entries one at a time are fine: nothing was marked counted.
        let one = ledger(&[("e1", max, false, "2026-05-01T10:01:00Z"), ("e0", "1", false, "2026-05-01T10:00:00Z")]);
        let out = parse_customer(&cfg, &up, "cus_1", &wallets("5", "XOF"), &[&one], &mut memory).unwrap();
        let Flows::Ledger(deltas) = &out.flows else { panic!("ledger flows") };
        assert_eq!(deltas[0].spent, Decimal::MAX);
    }

    #[test]
    fn edge_amounts_are_exact_or_name_the_field() {
        let (cfg, up) = (cfg(), test_upstream());
        let out = parse_customer(&cfg, &up, "cus_1", &wallets("-79228162514264337593543950335", "XOF"), &[], &mut KindMemory::default()).unwrap();
        assert_eq!(out.balances[0].balance, Decimal::MIN);
        let out = parse_customer(&cfg, &up, "cus_1", &wallets("-0", "USD"), &[], &mut KindMemory::default()).unwrap();
        assert!(out.balances[0].balance.is_zero() && out.balances[0].balance.is_sign_positive());
        for balance in ["1e30", "1e-30", "123456789012345678901234567890", "1.00000000000000000000000000001e0"] {
            let e = parse_customer(&cfg, &up, "cus_1", &wallets(balance, "USD"), &[], &mut KindMemory::default()).unwrap_err();
            assert!(e.message.starts_with("customer cus_1 wallets: $.items[0].balance: "), "{balance}: {}", e.message);
        }
        // Representable in minor units, but not once scaled to major units.
        let e = parse_customer(&cfg, &up, "cus_1", &wallets("0.0000000000000000000000000001", "USD"), &[], &mut KindMemory::default()).unwrap_err();
        assert!(e.message.starts_with("customer cus_1 $.items[0].balance: number"), "{}", e.message);
        let e = parse_customer(&cfg, &up, "cus_1", &wallets("1", "U\u{301}S"), &[], &mut KindMemory::default()).unwrap_err();
        assert_eq!(e.message, "customer cus_1 $.items[0].currency: not a currency code");
    }

    #[test]
    fn aggregate_sums_out_of_range_are_not_exported() {
        let cfg = DodoWalletsConfig { customers: vec![], all_customers: true, ..cfg() };
        let customers = br#"{"items": [{"customer_id": "a"}, {"customer_id": "b"}]}"#;
        let out = parse_all_customers(&cfg, &test_upstream(), &[customers], &wallets("79228162514264337593543950335", "XOF")).unwrap();
        assert_eq!(out.row_errors, ["XOF: the sum of wallet balances overflows; supplier_wallets_balance_sum not exported"]);
        assert!(out.gauges.iter().all(|g| g.name != "supplier_wallets_balance_sum"));
        assert_eq!(out.gauges[0].value, Decimal::from(2));
        assert_eq!(out.balances.len(), 2);
        // A listing that repeats itself fails the poll instead of looping.
        let e = parse_all_customers(&cfg, &test_upstream(), &[customers, customers], &wallets("1", "XOF")).unwrap_err();
        assert!(e.message.contains("repeats earlier customers only"), "{}", e.message);
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn e(id: &str, secs: u64) -> Entry {
        Entry { id: id.into(), amount: Decimal::ONE, is_credit: false, event_type: "x".into(), same_as: None, created_at: at(secs) }
    }

    #[test]
    fn entries_are_new_above_the_floor_and_unseen() {
        let mut l = WalletLedger::default();
        assert!(!l.is_new(&e("a", 0)), "nothing is new before the baseline");
        l.initialized = true;
        assert!(l.is_new(&e("a", 0)), "an empty baseline makes every entry new");
        l.floor = Some(at(100));
        l.seen.insert("b".into(), at(200));
        assert!(!l.is_new(&e("old", 100)));
        assert!(!l.is_new(&e("b", 200)));
        assert!(l.is_new(&e("c", 101)));
        // Ids fall under the floor once the newest is RETENTION ahead.
        l.seen.insert("z".into(), at(200 + RETENTION.as_secs()));
        l.prune(Duration::from_secs(600));
        assert!(!l.seen.contains_key("b"));
        assert_eq!(l.floor, Some(at(200)));
        assert!(!l.is_new(&e("b", 200)));
    }

    #[test]
    fn ledger_entry_reads_minor_units_and_direction() {
        let none = BTreeMap::new();
        let raw = r#"{"id": "wle_1", "amount": 1500000, "before_balance": 0, "after_balance": 1500000, "is_credit": true, "event_type": "manual_credit", "reason": "welcome", "reference_object_id": null, "currency": "INR", "customer_id": "cus_1", "business_id": "bus_1", "created_at": "2026-05-01T13:45:22Z"}"#;
        let x = entry(raw, "INR", &none).unwrap();
        assert_eq!(x.amount, Decimal::new(15000, 0));
        assert!(x.is_credit);
        assert_eq!(x.same_as.as_deref(), Some("reason:welcome"));
        let bad = raw.replace("\"INR\"", "\"USD\"");
        assert_eq!(entry(&bad, "INR", &none).unwrap_err().id.as_deref(), Some("wle_1"));
        assert_eq!(event_type_label(Some("Payment")), "payment");
        assert_eq!(event_type_label(Some("a b")), "other");
    }

    #[test]
    fn low_is_one_number_or_a_map() {
        let one: LowThreshold = serde_json::from_str("5.50").unwrap();
        assert_eq!(one.for_currency("INR"), Some(Decimal::new(550, 2)));
        let map: LowThreshold = serde_json::from_str(r#"{"USD": 5, "INR": "400.25"}"#).unwrap();
        assert_eq!(map.for_currency("INR"), Some(Decimal::new(40025, 2)));
        assert_eq!(map.for_currency("EUR"), None);
    }
}
