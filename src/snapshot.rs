//! The last result of every supplier, shared by the pollers and the server.
//!
//! Each supplier has a slot whose state is an immutable value swapped
//! atomically after each poll (`arc-swap`): a scrape sees either the whole
//! old poll or the whole new one, never a half-updated mix. Spend and top-up
//! counters live in that state, so they survive failed polls and reloads.
//!
//! Every computation on upstream numbers here is checked: a balance change
//! or counter sum that `Decimal` cannot hold fails that row (or, when every
//! row fails, the poll with `reason="decode"`), never the poll task.
#![deny(clippy::arithmetic_side_effects)]

use std::collections::BTreeMap;

use litemap::LiteMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use rust_decimal::Decimal;

use crate::config::{SupplierConfig, Threshold};
use crate::poll::{BalanceRow, ExtraSample, Flows, PollError, PollOutput, Reason};
use crate::spend_rate::SpendHistory;
use crate::trend::Trend;

/// How long spend/top-up counters outlive their balance (a poll or two of absence keeps them).
pub const COUNTER_RETENTION: Duration = Duration::from_secs(3600);

/// Bucket bounds of the exporter-wide `balance_exporter_poll_duration_seconds`.
pub const DURATION_BUCKETS: [f64; 12] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0];

/// Key of a kind-specific counter: (name, labels).
pub type ExtraKey = (&'static str, Vec<(&'static str, String)>);

/// Key of a balance: (account, currency).
pub type BalanceKey = (String, String);

/// Per-balance (and per-reason, per-counter) data of one supplier, sorted by
/// key like a `BTreeMap`, but one exact-size vector: most suppliers have one
/// or two balances, for which a `BTreeMap` node (room for 11) cost ~5 KB per
/// supplier across its maps, most of a 10,000-supplier exporter's memory.
pub type KeyMap<K, V> = LiteMap<K, V>;

/// Where a balance's UTC day began: its counters and its total balance then,
/// so the day's spend is the counter minus its value at the start
/// (`supplier_balance_spent_today`, `…_topped_up_today`, `supplier_balance_opening`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayStart {
    /// The UTC day: days since 1970-01-01.
    pub day: u64,
    pub spent: Decimal,
    pub topped_up: Decimal,
    /// The balance before the day's first successful poll (the first balance
    /// read, for a balance first seen that day).
    pub opening: Decimal,
}

/// The UTC day of `t`: days since 1970-01-01 (0 before it).
pub fn utc_day(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs().checked_div(86_400).unwrap_or(0)
}

/// The last error of a supplier, as shown on the landing page.
#[derive(Debug, Clone, PartialEq)]
pub struct LastError {
    pub reason: Reason,
    pub message: String,
    pub at: SystemTime,
}

/// A balance row as exported: the supplier's row plus when we fetched it.
#[derive(Debug, Clone, PartialEq)]
pub struct Balance {
    pub row: BalanceRow,
    pub fetched_at: SystemTime,
}

impl Balance {
    /// The supplier's own timestamp, or the fetch time when it gives none.
    pub fn updated_at(&self) -> SystemTime {
        self.row.updated_at.unwrap_or(self.fetched_at)
    }
}

/// Everything known about one supplier. Immutable once published.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SupplierState {
    pub polled_once: bool,
    pub up: bool,
    /// When this supplier was loaded (start, reload that added it, restart).
    pub loaded_at: Option<SystemTime>,
    /// End of the last poll attempt, success or failure.
    pub last_attempt: Option<SystemTime>,
    pub last_success: Option<SystemTime>,
    pub last_error: Option<LastError>,
    pub polls_total: u64,
    pub errors_total: KeyMap<Reason, u64>,
    /// Rows a successful poll could not read (the other rows were kept).
    pub row_errors_total: u64,
    /// The row errors of the last successful poll (logged by the poll loop).
    pub last_row_errors: Vec<String>,
    /// How long the last poll attempt took (`supplier_poll_duration_seconds`).
    pub last_duration: Option<Duration>,
    pub balances: KeyMap<BalanceKey, Balance>,
    pub spent_total: KeyMap<BalanceKey, Decimal>,
    pub topped_up_total: KeyMap<BalanceKey, Decimal>,
    /// When each counter key last had a balance or a ledger flow; counters of
    /// keys gone for [`COUNTER_RETENTION`] are dropped, so accounts that come
    /// and go (the lowest-N wallets of a platform) do not grow `/metrics` forever.
    pub counters_seen: KeyMap<BalanceKey, SystemTime>,
    /// Where each balance's current UTC day began (the day of its last
    /// successful poll); kept as long as its counters.
    pub day_starts: KeyMap<BalanceKey, DayStart>,
    pub gauges: Vec<ExtraSample>,
    /// Each balance's poll times and spend plus frozen: `supplier_balance_spend_rate`
    /// and the landing page's runway.
    pub spend_windows: KeyMap<BalanceKey, SpendHistory>,
    /// Each balance's usable amount per successful poll over the last day: the
    /// landing page's trend picture (kept in `trends.v1`, not in the state records).
    pub trends: KeyMap<BalanceKey, Trend>,
    /// Kind-specific counters keyed by (name, labels).
    pub counters: KeyMap<ExtraKey, (&'static str, Decimal)>,
}

impl SupplierState {
    /// A supplier's state when it is loaded at `now`, before any poll.
    pub fn loaded(now: SystemTime) -> SupplierState {
        SupplierState { loaded_at: Some(now), ..SupplierState::default() }
    }

    /// `supplier_last_poll_timestamp_seconds`: the end of the last attempt, or
    /// the load time until the first attempt ends.
    pub fn last_poll_timestamp(&self) -> Option<SystemTime> {
        self.last_attempt.or(self.loaded_at)
    }

    /// The state after a poll that took `took` and ended at `now`.
    pub fn after_poll(&self, result: Result<PollOutput, PollError>, took: Duration, now: SystemTime) -> SupplierState {
        let mut next = self.clone();
        next.polled_once = true;
        next.polls_total = next.polls_total.saturating_add(1);
        next.last_attempt = Some(now);
        next.last_duration = Some(took);
        // `apply_output` changes nothing when it fails, so no copy is needed to roll back.
        match result.and_then(|output| next.apply_output(output, now)) {
            Ok(()) => {
                next.up = true;
                next.last_success = Some(now);
                next
            }
            Err(err) => {
                next.up = false;
                let n = next.errors_total.entry(err.reason).or_default();
                *n = n.saturating_add(1);
                next.last_error = Some(LastError { reason: err.reason, message: err.message, at: now });
                next
            }
        }
    }

    /// Applies a successful poll. A row whose counter update `Decimal` cannot
    /// hold keeps its last good balance and becomes a row error; when every
    /// row fails that way the poll fails with `reason="decode"` and nothing
    /// of it is applied: `self` is only changed once that check has passed
    /// (a failed row changes nothing, so all rows failing means no change).
    fn apply_output(&mut self, output: PollOutput, now: SystemTime) -> Result<(), PollError> {
        let mut row_errors = output.row_errors;
        let rows = output.balances.len();
        let mut failed = 0usize;
        let mut balances = BTreeMap::new();
        let mut kept_old = std::collections::BTreeSet::new();
        let day = utc_day(now);
        let mut new_days = Vec::new();
        for row in output.balances {
            let key = (row.account.clone(), row.currency.clone());
            if balances.contains_key(&key) {
                // A kind reports each key once; a second row would double its counters.
                row_errors.push(format!("account {:?} currency {:?}: reported twice in one poll", key.0, key.1));
                continue;
            }
            if self.day_starts.get(&key).map(|d| d.day) != Some(day) {
                // The day's first poll: it starts from the counters and the balance of
                // the poll before it, so the change since then counts to the new day.
                new_days.push((
                    key.clone(),
                    DayStart {
                        day,
                        spent: self.spent_total.get(&key).copied().unwrap_or_default(),
                        topped_up: self.topped_up_total.get(&key).copied().unwrap_or_default(),
                        opening: self.balances.get(&key).map_or(row.balance, |b| b.row.balance),
                    },
                ));
            }
            if let (Flows::Inferred, Some(old)) = (&output.flows, self.balances.get(&key).cloned()) {
                if let Err(e) = self.infer_flow(&key, old.row.balance, row.balance) {
                    row_errors.push(format!("account {:?} currency {:?}: {e}", key.0, key.1));
                    failed = failed.saturating_add(1);
                    kept_old.insert(key.clone());
                    balances.insert(key, old);
                    continue;
                }
            }
            balances.insert(key, Balance { row, fetched_at: now });
        }
        if rows > 0 && failed == rows {
            return Err(PollError::decode(row_errors.join("; ")));
        }
        for (key, start) in new_days {
            self.day_starts.insert(key, start);
        }
        // Every exported balance has its counters, starting at zero.
        for key in balances.keys() {
            self.spent_total.entry(key.clone()).or_default();
            self.topped_up_total.entry(key.clone()).or_default();
        }
        if let Flows::Ledger(deltas) = output.flows {
            for d in deltas {
                let key = (d.account, d.currency);
                let spent = self.spent_total.get(&key).copied().unwrap_or_default().checked_add(d.spent);
                let topped = self.topped_up_total.get(&key).copied().unwrap_or_default().checked_add(d.topped_up);
                match (spent, topped) {
                    (Some(spent), Some(topped)) => {
                        self.spent_total.insert(key.clone(), spent);
                        self.topped_up_total.insert(key.clone(), topped);
                        self.counters_seen.insert(key, now);
                    }
                    _ => row_errors.push(format!(
                        "account {:?} currency {:?}: ledger spend {} / top-up {} overflows the spent/topped-up counters",
                        key.0, key.1, d.spent, d.topped_up
                    )),
                }
            }
        }
        for key in balances.keys() {
            self.counters_seen.insert(key.clone(), now);
        }
        let seen = &mut self.counters_seen;
        seen.retain(|_, t| now.duration_since(*t).unwrap_or_default() < COUNTER_RETENTION);
        self.spent_total.retain(|k, _| seen.contains_key(k));
        self.topped_up_total.retain(|k, _| seen.contains_key(k));
        self.day_starts.retain(|k, _| seen.contains_key(k));
        for (key, b) in &balances {
            // A row that kept its last good balance adds no point: nothing new was read.
            if kept_old.contains(key) {
                continue;
            }
            let spent = self.spent_total.get(key).copied().unwrap_or_default();
            // Spend plus frozen: what orders took from usable (see spend_rate.rs). A sum
            // `Decimal` cannot hold adds no point; the rate then spans the next good one.
            if let Some(taken) = spent.checked_add(b.row.frozen.max(Decimal::ZERO)) {
                self.spend_windows.entry(key.clone()).or_default().observe(now, taken);
            }
        }
        self.spend_windows.retain(|k, _| balances.contains_key(k));
        for (key, b) in &balances {
            if !kept_old.contains(key) {
                self.trends.entry(key.clone()).or_default().observe(now, b.row.usable);
            }
        }
        // A balance gone from the answer takes its picture with it.
        self.trends.retain(|k, _| balances.contains_key(k));
        self.balances = balances.into_iter().collect();
        self.gauges = output.gauges;
        for inc in output.counter_increments {
            let entry = self.counters.entry((inc.name, inc.labels)).or_insert((inc.help, Decimal::ZERO));
            match entry.1.checked_add(inc.value) {
                Some(sum) => entry.1 = sum,
                None => row_errors.push(format!("{} {:?}: the increment {} overflows the counter", inc.name, entry.0, inc.value)),
            }
        }
        self.row_errors_total = self.row_errors_total.saturating_add(row_errors.len() as u64);
        self.last_row_errors = row_errors;
        Ok(())
    }

    /// The landing page's runway of a balance: the window used (`1d`, or `1h`
    /// until a day of history exists), the spend per day over it, and the
    /// days the usable balance lasts at that rate (`None` without spend).
    pub fn runway(&self, key: &BalanceKey) -> Option<(&'static str, Decimal, Option<Decimal>)> {
        let [_, _, hour, day] = crate::spend_rate::WINDOWS;
        let (window, per_second) = self.spend_windows.get(key)?.longest_rate(&[day, hour])?;
        let per_day = per_second.checked_mul(Decimal::from(86_400u32))?.round_dp(8).normalize();
        let usable = self.balances.get(key)?.row.usable.max(Decimal::ZERO);
        let days = Some(per_day).filter(|r| *r > Decimal::ZERO).and_then(|r| usable.checked_div(r)).map(|d| d.normalize());
        Some((window, per_day, days))
    }

    /// A balance's day so far (the UTC day of its last successful poll): what
    /// its spend and top-up counters grew by since the day began, and its
    /// opening balance. `None` for a balance without a day start or when
    /// `Decimal` cannot hold a difference.
    pub fn today(&self, key: &BalanceKey) -> Option<(Decimal, Decimal, Decimal)> {
        let start = self.day_starts.get(key)?;
        let spent = self.spent_total.get(key).copied().unwrap_or_default().checked_sub(start.spent)?;
        let topped_up = self.topped_up_total.get(key).copied().unwrap_or_default().checked_sub(start.topped_up)?;
        Some((spent, topped_up, start.opening))
    }

    /// This state with the counters of `durable` (what is on disk): published
    /// while a state write fails, so no counter is ahead of the disk.
    pub fn with_counters_of(&self, durable: &SupplierState) -> SupplierState {
        SupplierState {
            polls_total: durable.polls_total,
            errors_total: durable.errors_total.clone(),
            row_errors_total: durable.row_errors_total,
            spent_total: durable.spent_total.clone(),
            topped_up_total: durable.topped_up_total.clone(),
            day_starts: durable.day_starts.clone(),
            ..self.clone()
        }
    }

    /// Counts the change of a total balance as spend (decrease) or top-up
    /// (increase), exactly; an error when `Decimal` cannot hold the change or the sum.
    fn infer_flow(&mut self, key: &BalanceKey, old: Decimal, new: Decimal) -> Result<(), FlowError> {
        let delta = new.checked_sub(old).ok_or(FlowError::Change { old, new })?;
        let counters = if delta < Decimal::ZERO { &mut self.spent_total } else { &mut self.topped_up_total };
        let counter = if delta < Decimal::ZERO { "supplier_balance_spent_total" } else { "supplier_balance_topped_up_total" };
        let total = counters.get(key).copied().unwrap_or_default();
        let sum = total.checked_add(delta.abs()).ok_or(FlowError::Counter { counter, total, old, new })?;
        counters.insert(key.clone(), sum);
        Ok(())
    }
}

/// Why a balance change could not be counted as spend or top-up: `Decimal`
/// cannot hold the change, or the counter plus the change. The balance row is
/// skipped (a row error), its last good value kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    #[error("the change of supplier_balance from {old} to {new} cannot be represented")]
    Change { old: Decimal, new: Decimal },
    #[error("{counter} {total} plus the change from {old} to {new} cannot be represented")]
    Counter { counter: &'static str, total: Decimal, old: Decimal, new: Decimal },
}

/// What the exporter knows about one configured supplier.
#[derive(Debug)]
pub struct SupplierSlot {
    pub name: String,
    pub kind: &'static str,
    pub poll_interval: Duration,
    pub thresholds: Vec<Threshold>,
    /// `supplier_topup_*`: when a top-up can be made and how long it takes.
    pub topup_window: Option<Arc<crate::topup_window::TopupWindow>>,
    /// Shared with the slot this one replaced at reload, so a poll task that
    /// keeps running across a reload still publishes where scrapes look.
    cell: Arc<StateCell>,
}

/// The published state, and the state polls build on when the two differ:
/// with `--storage.path`, counters not yet written durably are held back from
/// `/metrics` (a crash must never make a published counter go backwards), so
/// the next poll continues from the working state, not the published one.
#[derive(Debug)]
struct StateCell {
    published: ArcSwap<SupplierState>,
    /// Counts publications (after each store): the renderer keeps this,
    /// not the state, so a replaced state is freed at once.
    version: AtomicU64,
    working: std::sync::Mutex<Option<Arc<SupplierState>>>,
}

impl StateCell {
    fn new(state: SupplierState) -> Arc<StateCell> {
        Arc::new(StateCell { published: ArcSwap::from_pointee(state), version: AtomicU64::new(0), working: std::sync::Mutex::new(None) })
    }
}

impl SupplierSlot {
    /// The state as published to `/metrics` and the landing page.
    pub fn state(&self) -> Arc<SupplierState> {
        self.cell.published.load_full()
    }

    /// Changes whenever a state is published here; read it before [`Self::state`]
    /// and the state is at least as new as the version says.
    pub fn state_version(&self) -> u64 {
        self.cell.version.load(Ordering::Acquire)
    }

    /// The state the next poll builds on (equal to [`Self::state`] unless
    /// counters are held back after a failed state write).
    pub fn working_state(&self) -> Arc<SupplierState> {
        let working = self.cell.working.lock().unwrap_or_else(|e| e.into_inner()).clone();
        working.unwrap_or_else(|| self.state())
    }
}

/// Bucket bounds of `balance_exporter_poll_lateness_seconds`.
pub const LATENESS_BUCKETS: [f64; 10] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// An exporter-wide histogram every poll task records into, lock-free.
#[derive(Debug)]
pub struct SharedHistogram<const N: usize> {
    pub bounds: &'static [f64; N],
    buckets: [AtomicU64; N],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl<const N: usize> SharedHistogram<N> {
    pub fn new(bounds: &'static [f64; N]) -> Self {
        SharedHistogram {
            bounds,
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (bound, slot) in self.bounds.iter().zip(self.buckets.iter()) {
            if secs <= *bound {
                slot.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.sum_micros.fetch_add(u64::try_from(d.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// (cumulative bucket counts, count, sum in seconds).
    pub fn read(&self) -> ([u64; N], u64, f64) {
        let buckets = std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed));
        (buckets, self.count.load(Ordering::Relaxed), self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6)
    }
}

/// All suppliers' slots plus exporter-level status.
#[derive(Debug)]
pub struct Store {
    /// Scheduler lateness: how long after its planned instant each poll started.
    pub lateness: SharedHistogram<10>,
    /// How long polls take, all suppliers (`balance_exporter_poll_duration_seconds`).
    pub poll_duration: SharedHistogram<12>,
    slots: ArcSwap<Vec<Arc<SupplierSlot>>>,
    generation: AtomicU64,
    reload_ok: AtomicBool,
    last_reload_success: AtomicU64,
    /// `Some` with `--storage.path`: state writes that failed.
    state_write_errors: std::sync::OnceLock<AtomicU64>,
}

impl Default for Store {
    fn default() -> Self {
        Store {
            lateness: SharedHistogram::new(&LATENESS_BUCKETS),
            poll_duration: SharedHistogram::new(&DURATION_BUCKETS),
            slots: ArcSwap::from_pointee(Vec::new()),
            generation: AtomicU64::new(0),
            reload_ok: AtomicBool::new(true),
            last_reload_success: AtomicU64::new(unix_seconds(SystemTime::now()) as u64),
            state_write_errors: std::sync::OnceLock::new(),
        }
    }
}

impl Store {
    /// The configured suppliers, in config order.
    pub fn slots(&self) -> Arc<Vec<Arc<SupplierSlot>>> {
        self.slots.load_full()
    }

    /// Changes whenever anything rendered could change; the render cache key.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn bump(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Replaces the set of suppliers. Suppliers that stay keep their state
    /// (balances, counters); removed ones disappear; new ones start empty.
    pub fn set_suppliers(&self, suppliers: &[SupplierConfig]) -> Vec<Arc<SupplierSlot>> {
        self.set_suppliers_restoring(suppliers, &mut |_| None)
    }

    /// [`Self::set_suppliers`], where a new supplier starts from `restore`'s
    /// state when it has one (the state kept under `--storage.path`).
    pub fn set_suppliers_restoring(
        &self,
        suppliers: &[SupplierConfig],
        restore: &mut dyn FnMut(&SupplierConfig) -> Option<SupplierState>,
    ) -> Vec<Arc<SupplierSlot>> {
        let old = self.slots();
        let old_by_name: std::collections::HashMap<&str, &Arc<SupplierSlot>> = old.iter().map(|s| (s.name.as_str(), s)).collect();
        let now = SystemTime::now();
        let slots: Vec<Arc<SupplierSlot>> = suppliers
            .iter()
            .map(|cfg| {
                let cell = match old_by_name.get(cfg.name.as_str()).filter(|s| s.kind == cfg.kind.name()) {
                    Some(s) => s.cell.clone(),
                    None => StateCell::new(restore(cfg).unwrap_or_else(|| SupplierState::loaded(now))),
                };
                Arc::new(SupplierSlot {
                    name: cfg.name.clone(),
                    kind: cfg.kind.name(),
                    poll_interval: cfg.poll_interval,
                    thresholds: cfg.thresholds.clone(),
                    topup_window: cfg.topup_window.clone(),
                    cell,
                })
            })
            .collect();
        self.slots.store(Arc::new(slots.clone()));
        self.bump();
        slots
    }

    /// Publishes a supplier's new state, atomically.
    pub fn publish(&self, slot: &SupplierSlot, state: SupplierState) {
        *slot.cell.working.lock().unwrap_or_else(|e| e.into_inner()) = None;
        slot.cell.published.store(Arc::new(state));
        slot.cell.version.fetch_add(1, Ordering::AcqRel);
        self.bump();
    }

    /// Publishes `published` while the next poll builds on `working` (whose
    /// counters are ahead of what is durable).
    pub fn publish_held(&self, slot: &SupplierSlot, working: SupplierState, published: SupplierState) {
        *slot.cell.working.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(working));
        slot.cell.published.store(Arc::new(published));
        slot.cell.version.fetch_add(1, Ordering::AcqRel);
        self.bump();
    }

    /// Ready once every configured supplier has been polled once.
    pub fn ready(&self) -> bool {
        self.slots().iter().all(|s| s.state().polled_once)
    }

    pub fn set_reload_result(&self, ok: bool) {
        self.reload_ok.store(ok, Ordering::Release);
        if ok {
            self.last_reload_success.store(unix_seconds(SystemTime::now()) as u64, Ordering::Release);
        }
        self.bump();
    }

    /// Turns on `balance_exporter_state_write_errors_total` (`--storage.path` is set).
    pub fn enable_state_writes(&self) {
        self.state_write_errors.get_or_init(AtomicU64::default);
    }

    /// Counts a failed state write.
    pub fn state_write_failed(&self) {
        self.state_write_errors.get_or_init(AtomicU64::default).fetch_add(1, Ordering::Relaxed);
        self.bump();
    }

    /// Failed state writes, when state is written at all.
    pub fn state_write_errors(&self) -> Option<u64> {
        self.state_write_errors.get().map(|n| n.load(Ordering::Relaxed))
    }

    pub fn reload_ok(&self) -> bool {
        self.reload_ok.load(Ordering::Acquire)
    }

    pub fn last_reload_success(&self) -> u64 {
        self.last_reload_success.load(Ordering::Acquire)
    }
}

/// Seconds since the Unix epoch, as exported.
pub fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::poll::FlowDelta;

    fn row(account: &str, currency: &str, balance: &str) -> BalanceRow {
        let b = Decimal::from_str_exact(balance).unwrap();
        BalanceRow { account: account.into(), currency: currency.into(), balance: b, frozen: Decimal::ZERO, usable: b, updated_at: None }
    }

    fn ok(rows: Vec<BalanceRow>) -> Result<PollOutput, PollError> {
        Ok(PollOutput { balances: rows, ..Default::default() })
    }

    fn key(a: &str, c: &str) -> BalanceKey {
        (a.into(), c.into())
    }

    #[test]
    fn decreases_are_spend_and_increases_top_ups_exactly() {
        let t = SystemTime::UNIX_EPOCH;
        let d = Duration::from_millis(100);
        let s = SupplierState::default().after_poll(ok(vec![row("main", "USD", "284.50")]), d, t);
        assert_eq!(s.spent_total[&key("main", "USD")], Decimal::ZERO);
        let s = s.after_poll(ok(vec![row("main", "USD", "280.40")]), d, t);
        let s = s.after_poll(ok(vec![row("main", "USD", "0.10")]), d, t);
        let s = s.after_poll(ok(vec![row("main", "USD", "500.10")]), d, t);
        assert_eq!(s.spent_total[&key("main", "USD")].to_string(), "284.40");
        assert_eq!(s.topped_up_total[&key("main", "USD")].to_string(), "500.00");
        assert_eq!(s.polls_total, 4);
    }

    #[test]
    fn failed_poll_keeps_balances_and_counts_reason() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let d = Duration::from_millis(100);
        let s = SupplierState::default().after_poll(ok(vec![row("main", "USD", "10")]), d, t);
        let later = t + Duration::from_secs(60);
        let s = s.after_poll(Err(PollError::new(Reason::Auth, "http 401")), d, later);
        assert!(!s.up);
        assert_eq!(s.last_success, Some(t));
        assert_eq!(s.errors_total[&Reason::Auth], 1);
        assert_eq!(s.balances[&key("main", "USD")].row.balance, Decimal::TEN);
        // The next good poll still sees the decrease across the failure.
        let s = s.after_poll(ok(vec![row("main", "USD", "7.5")]), d, later);
        assert_eq!(s.spent_total[&key("main", "USD")].to_string(), "2.5");
    }

    /// A poll of account c1 reading `balance`, with a ledger of 7.00 spent and 2.00 topped up.
    fn ledger_poll(balance: &str) -> PollOutput {
        PollOutput {
            balances: vec![row("c1", "USD", balance)],
            flows: Flows::Ledger(vec![FlowDelta {
                account: "c1".into(),
                currency: "USD".into(),
                spent: Decimal::new(700, 2),
                topped_up: Decimal::new(200, 2),
            }]),
            ..Default::default()
        }
    }

    #[test]
    fn ledger_flows_replace_inference() {
        let t = SystemTime::UNIX_EPOCH;
        let d = Duration::ZERO;
        let s = SupplierState::default().after_poll(ok(vec![row("c1", "USD", "10")]), d, t);
        let out = ledger_poll("5");
        let s = s.after_poll(Ok(out), d, t);
        assert_eq!(s.spent_total[&key("c1", "USD")].to_string(), "7.00");
        assert_eq!(s.topped_up_total[&key("c1", "USD")].to_string(), "2.00");
    }

    fn today(s: &SupplierState, a: &str) -> (String, String, String) {
        let (spent, topped_up, opening) = s.today(&key(a, "USD")).unwrap();
        (spent.to_string(), topped_up.to_string(), opening.to_string())
    }

    fn strs(v: (&str, &str, &str)) -> (String, String, String) {
        (v.0.into(), v.1.into(), v.2.into())
    }

    #[test]
    fn the_day_starts_again_at_the_first_poll_of_a_utc_day() {
        let d = Duration::ZERO;
        // 2026-12-07 23:50:00 UTC.
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_687_400);
        let s = SupplierState::default().after_poll(ok(vec![row("main", "USD", "1000.00")]), d, t);
        // First seen: the day opens at the first balance read, nothing counted yet.
        assert_eq!(today(&s, "main"), strs(("0", "0", "1000.00")));
        let s = s.after_poll(ok(vec![row("main", "USD", "990.25")]), d, t + Duration::from_secs(300));
        let s = s.after_poll(ok(vec![row("main", "USD", "1490.25")]), d, t + Duration::from_secs(540));
        assert_eq!(today(&s, "main"), strs(("9.75", "500.00", "1000.00")));
        // 00:01 the next day: the change since 23:59 counts to the new day, which
        // opens at the 23:59 balance (yesterday's closing).
        let s = s.after_poll(ok(vec![row("main", "USD", "1480.00")]), d, t + Duration::from_secs(660));
        assert_eq!(today(&s, "main"), strs(("10.25", "0.00", "1490.25")));
        assert_eq!(s.spent_total[&key("main", "USD")].to_string(), "20.00");
        // A failed poll changes nothing; the next good one goes on counting.
        let s = s.after_poll(Err(PollError::new(Reason::ServerError, "http 503")), d, t + Duration::from_secs(720));
        let s = s.after_poll(ok(vec![row("main", "USD", "1470.00")]), d, t + Duration::from_secs(780));
        assert_eq!(today(&s, "main"), strs(("20.25", "0.00", "1490.25")));
        // Opening - spent + topped up = the balance now.
        assert_eq!(Decimal::new(149025, 2) - Decimal::new(2025, 2), s.balances[&key("main", "USD")].row.balance);
    }

    #[test]
    fn a_day_without_polls_is_skipped_and_ledger_flows_count_to_the_day() {
        let d = Duration::ZERO;
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_687_400);
        let s = SupplierState::default().after_poll(ok(vec![row("c1", "USD", "50")]), d, t);
        // Two days later (an outage): the day opens at the last balance known.
        let later = t + Duration::from_secs(2 * 86_400);
        let out = ledger_poll("45");
        let s = s.after_poll(Ok(out), d, later);
        assert_eq!(s.day_starts[&key("c1", "USD")].day, utc_day(later));
        assert_eq!(today(&s, "c1"), strs(("7.00", "2.00", "50")));
    }

    #[test]
    fn day_starts_follow_the_counters_and_a_rejected_poll_changes_none() {
        let d = Duration::ZERO;
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_687_400);
        let s = SupplierState::default().after_poll(ok(vec![row("a", "USD", "1"), row("b", "USD", "2")]), d, t);
        assert_eq!(s.day_starts.len(), 2);
        // Every row fails (a change Decimal cannot hold): the poll fails with nothing applied,
        // the day of the next UTC day included.
        let huge = |a: &str| BalanceRow { balance: Decimal::MIN, ..row(a, "USD", "0") };
        let next_day = t + Duration::from_secs(86_400);
        let mut big = s.clone();
        big.balances.get_mut(&key("a", "USD")).unwrap().row.balance = Decimal::MAX;
        big.balances.get_mut(&key("b", "USD")).unwrap().row.balance = Decimal::MAX;
        let failed = big.after_poll(ok(vec![huge("a"), huge("b")]), d, next_day);
        assert!(!failed.up);
        assert_eq!(failed.day_starts, big.day_starts);
        // `b` gone for longer than the counters' retention: its day start goes with them.
        let s = s.after_poll(ok(vec![row("a", "USD", "1")]), d, t + COUNTER_RETENTION + Duration::from_secs(1));
        assert!(s.day_starts.contains_key(&key("a", "USD")) && !s.day_starts.contains_key(&key("b", "USD")));
        assert!(!s.spent_total.contains_key(&key("b", "USD")));
    }

    #[test]
    fn runway_from_spend_window() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let d = Duration::ZERO;
        let mut s = SupplierState::default().after_poll(ok(vec![row("main", "USD", "1000")]), d, t0);
        let t1 = t0 + Duration::from_secs(6 * 3600);
        s = s.after_poll(ok(vec![row("main", "USD", "900")]), d, t1);
        // 100 in 6 hours = 400/day (the 1h window until a day is covered); 900 usable lasts 2.25 days.
        let (window, per_day, runway) = s.runway(&key("main", "USD")).unwrap();
        assert_eq!((window, per_day.to_string(), runway.unwrap().to_string()), ("1h", "400".into(), "2.25".into()));
        let s = SupplierState::default().after_poll(ok(vec![row("main", "USD", "1000")]), d, t0);
        let s = s.after_poll(ok(vec![row("main", "USD", "999")]), d, t0 + Duration::from_secs(60));
        assert_eq!(s.runway(&key("main", "USD")), None, "a minute of history is not a spend rate");
    }

    #[test]
    fn counters_of_accounts_gone_for_an_hour_are_dropped() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let d = Duration::ZERO;
        let s = SupplierState::default().after_poll(ok(vec![row("a", "USD", "10"), row("b", "USD", "10")]), d, t0);
        let s = s.after_poll(ok(vec![row("a", "USD", "9"), row("b", "USD", "8")]), d, t0 + Duration::from_secs(60));
        // b leaves the set: its counter stays for a while, then goes.
        let s = s.after_poll(ok(vec![row("a", "USD", "9")]), d, t0 + Duration::from_secs(1800));
        assert_eq!(s.spent_total[&key("b", "USD")].to_string(), "2");
        let s = s.after_poll(ok(vec![row("a", "USD", "9")]), d, t0 + Duration::from_secs(3700));
        assert!(!s.spent_total.contains_key(&key("b", "USD")));
        assert!(!s.topped_up_total.contains_key(&key("b", "USD")));
        assert_eq!(s.spent_total[&key("a", "USD")].to_string(), "1");
    }

    #[test]
    fn trends_get_a_point_per_successful_poll_and_lose_accounts_that_go() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let d = Duration::ZERO;
        let s = SupplierState::default().after_poll(ok(vec![row("a", "USD", "10"), row("b", "EUR", "5")]), d, t0);
        let s = s.after_poll(ok(vec![row("a", "USD", "9.5"), row("b", "EUR", "5")]), d, t0 + Duration::from_secs(60));
        // A failed poll adds nothing.
        let s = s.after_poll(Err(PollError::new(Reason::Timeout, "timed out")), d, t0 + Duration::from_secs(120));
        assert_eq!(s.trends[&key("a", "USD")].points().map(|p| p.1).collect::<Vec<_>>(), vec![10.0, 9.5]);
        assert_eq!(s.trends[&key("b", "EUR")].len(), 2);
        // b leaves the answer: its trend goes at once (its counters stay a while).
        let s = s.after_poll(ok(vec![row("a", "USD", "9")]), d, t0 + Duration::from_secs(180));
        assert_eq!(s.trends.keys().collect::<Vec<_>>(), vec![&key("a", "USD")]);
        assert_eq!(s.trends[&key("a", "USD")].len(), 3);
    }

    #[test]
    fn histogram_is_cumulative() {
        let h = SharedHistogram::new(&DURATION_BUCKETS);
        h.observe(Duration::from_millis(70));
        h.observe(Duration::from_secs(3));
        let (cumulative, count, sum) = h.read();
        assert_eq!((cumulative[0], cumulative[1], cumulative[6]), (0, 1, 2));
        assert_eq!((count, sum), (2, 3.07));
    }
}
