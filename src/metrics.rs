//! Snapshot → Prometheus text exposition, rendered incrementally.
//!
//! Every series is described once: [`supplier_series`] for one supplier's
//! state and [`exporter_series`] for the exporter's own, into a [`Sink`].
//! Two sinks read that description:
//!
//! - the production path writes text: each supplier's lines, per family, are
//!   a cached fragment re-rendered only when that supplier's state (or, after
//!   a reload, its slot) changes. Suppliers in name order are cut into chunks
//!   of `CHUNK`; each chunk keeps its suppliers' lines stitched per family
//!   in one buffer, re-stitched only when one of them changed. The body is a
//!   list of shared segments (a static `# HELP`/`# TYPE` per family, then one
//!   slice per chunk; the small families written per render), series sorted
//!   as the `prometheus` crate sorts them (by label values), sent as they are
//!   without being copied into one buffer: a scrape after a few polls costs
//!   those suppliers' lines and their chunks, not a copy of the whole body;
//! - [`collect_families`] builds the `prometheus` crate's families: the
//!   reference the tests compare the text with, series for series.
//!
//! The body and its gzip form are cached per store generation; a scrape that
//! arrives while a render is running waits for it and takes its result
//! instead of starting another.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use prometheus::proto::{self, LabelPair, MetricFamily, MetricType};
use rust_decimal::Decimal;

use crate::snapshot::{unix_seconds, SharedHistogram, Store, SupplierSlot, SupplierState};

/// Version and revision baked in at build time.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const REVISION: &str = match option_env!("BALANCE_EXPORTER_REVISION") {
    Some(r) => r,
    None => "unknown",
};

/// Exact decimal → exposition float, correctly rounded (via its text).
pub fn to_f64(d: Decimal) -> f64 {
    d.to_string().parse().unwrap_or(f64::NAN)
}

/// Counter or gauge (the per-supplier families have no histograms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    fn text(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }

    fn proto(self) -> MetricType {
        match self {
            Kind::Counter => MetricType::COUNTER,
            Kind::Gauge => MetricType::GAUGE,
        }
    }
}

/// A metric family every supplier may have series in.
pub struct FamilyDef {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
}

macro_rules! cached {
    ($help:literal) => {
        concat!($help, " Cached from the last successful poll; /metrics never calls a supplier.")
    };
}

/// Index of each per-supplier family in [`SUPPLIER_FAMILIES`] (sorted by name).
pub mod family {
    pub const BALANCE: usize = 0;
    pub const FROZEN: usize = 1;
    pub const LOW: usize = 2;
    pub const OPENING: usize = 3;
    pub const RUNWAY: usize = 4;
    pub const SPEND_RATE: usize = 5;
    pub const SPENT_TODAY: usize = 6;
    pub const SPENT: usize = 7;
    pub const TOPPED_UP_TODAY: usize = 8;
    pub const TOPPED_UP: usize = 9;
    pub const TOPUP_TARGET: usize = 10;
    pub const UPDATED: usize = 11;
    pub const USABLE: usize = 12;
    pub const INFO: usize = 13;
    pub const LAST_POLL: usize = 14;
    pub const LAST_SUCCESS: usize = 15;
    pub const DURATION: usize = 16;
    pub const ERRORS: usize = 17;
    pub const INTERVAL: usize = 18;
    pub const POLLS: usize = 19;
    pub const ROW_ERRORS: usize = 20;
    pub const TOPUP_MARGIN: usize = 21;
    /// Not in the cached fragments: it moves with the clock (see [`super::topup_ready_series`]).
    pub const TOPUP_READY: usize = 22;
    pub const UP: usize = 23;
}

/// The per-supplier families, sorted by name (the exposition's order).
pub const SUPPLIER_FAMILIES: [FamilyDef; 24] = [
    FamilyDef {
        name: "supplier_balance",
        help: cached!("Total balance including frozen funds, in the currency's major unit."),
        kind: Kind::Gauge,
    },
    FamilyDef {
        name: "supplier_balance_frozen",
        help: cached!("Held funds (pending, escrowed, frozen), in major units; 0 when the API has no such notion."),
        kind: Kind::Gauge,
    },
    FamilyDef {
        name: "supplier_balance_low_threshold",
        help: "Configured low-balance threshold (thresholds[].low), in major units.",
        kind: Kind::Gauge,
    },
    FamilyDef {
        name: "supplier_balance_opening",
        help: "The day's opening balance (total, frozen included), in major units: the balance before the first successful \
               poll of the UTC day of the last successful poll. supplier_balance_opening - supplier_balance_spent_today + \
               supplier_balance_topped_up_today = supplier_balance where every change is inferred (no ledger).",
        kind: Kind::Gauge,
    },
    FamilyDef {
        name: "supplier_balance_runway_threshold_seconds",
        help: "Configured runway threshold (thresholds[].runway_days), in seconds.",
        kind: Kind::Gauge,
    },
    FamilyDef {
        name: "supplier_balance_spend_rate",
        help: cached!(
            "Spend per second over `window` (15m, 30m, 1h, 1d) from the exporter's own poll times: spend plus frozen \
             (what orders took from usable) at the last successful poll minus at the latest successful poll at least \
             `window` before it, over the exact time between them; never below 0; absent until the history covers the \
             window. History older than 40 minutes is thinned to one poll per 5 minutes, so the 1h and 1d windows may \
             start up to 5 minutes earlier."
        ),
        kind: Kind::Gauge,
    },
    FamilyDef {
        name: "supplier_balance_spent_today",
        help: "What supplier_balance_spent_total grew by during the UTC day of the last successful poll (the first poll of \
               a day counts the change since the poll before it), in major units. Kept with --storage.path.",
        kind: Kind::Gauge,
    },
    FamilyDef {
        name: "supplier_balance_spent_total",
        help: "Sum of observed decreases of the total balance (ledger debits where a ledger exists), in major units.",
        kind: Kind::Counter,
    },
    FamilyDef {
        name: "supplier_balance_topped_up_today",
        help: "What supplier_balance_topped_up_total grew by during the UTC day of the last successful poll (the first \
               poll of a day counts the change since the poll before it), in major units. Kept with --storage.path.",
        kind: Kind::Gauge,
    },
    FamilyDef {
        name: "supplier_balance_topped_up_total",
        help: "Sum of observed increases of the total balance (ledger credits where a ledger exists), in major units.",
        kind: Kind::Counter,
    },
    FamilyDef {
        name: "supplier_balance_topup_target_seconds",
        help: "Configured top-up target (thresholds[].topup_target_days, default 7 days), in seconds; one per balance. The rule \
               supplier:supplier_balance_topup_suggested:amount suggests topping up max(0, this much time of spend at the \
               recorded daily rate - usable).",
        kind: Kind::Gauge,
    },
    FamilyDef {
        name: "supplier_balance_updated_timestamp_seconds",
        help: cached!("When the supplier computed the balance, or when it was fetched if the supplier does not say."),
        kind: Kind::Gauge,
    },
    FamilyDef { name: "supplier_balance_usable", help: cached!("Funds available for new orders now, in major units."), kind: Kind::Gauge },
    FamilyDef { name: "supplier_info", help: "1 per configured supplier.", kind: Kind::Gauge },
    FamilyDef {
        name: "supplier_last_poll_timestamp_seconds",
        help: "End of the last poll attempt, success or failure (the load time until the first attempt ends); a stuck poller shows here.",
        kind: Kind::Gauge,
    },
    FamilyDef {
        name: "supplier_last_success_timestamp_seconds",
        help: "Time of the last successful poll (absent before the first success).",
        kind: Kind::Gauge,
    },
    FamilyDef {
        name: "supplier_poll_duration_seconds",
        help: "Time taken by the last poll attempt, all its requests included (the distribution over all suppliers: \
               balance_exporter_poll_duration_seconds).",
        kind: Kind::Gauge,
    },
    FamilyDef {
        name: "supplier_poll_errors_total",
        help: "Failed polls by reason; a reason's series appears with its first failure.",
        kind: Kind::Counter,
    },
    FamilyDef { name: "supplier_poll_interval_seconds", help: "Configured poll interval.", kind: Kind::Gauge },
    FamilyDef { name: "supplier_polls_total", help: "Polls attempted.", kind: Kind::Counter },
    FamilyDef {
        name: "supplier_row_errors_total",
        help: "Rows of successful polls that could not be read (the other rows were kept).",
        kind: Kind::Counter,
    },
    FamilyDef {
        name: "supplier_topup_margin_seconds",
        help: "Configured topup_window.margin (default 12h): SupplierBalanceRunsOutBeforeTopUp fires when the balance, at the \
               recorded spend rate, runs out before supplier_topup_ready_timestamp_seconds plus this.",
        kind: Kind::Gauge,
    },
    FamilyDef {
        name: "supplier_topup_ready_timestamp_seconds",
        help: "Earliest time a top-up started now (or at the next opening of the configured topup_window) has landed: \
               lead_time of window hours later, skipping closed days and holidays. Computed at scrape time for the end of \
               the current minute (at most 60 s late, never early); absent when no window holds the lead time within 3 years.",
        kind: Kind::Gauge,
    },
    FamilyDef { name: "supplier_up", help: "1 if the last poll of this supplier succeeded, 0 otherwise.", kind: Kind::Gauge },
];

/// Where series are described to: the text fragments or the crate's families.
pub trait Sink {
    /// A sample of one of [`SUPPLIER_FAMILIES`].
    fn sample(&mut self, family: usize, labels: &[(&str, &str)], value: f64);
    /// A sample of a family a kind adds (its name, help and type come with it).
    fn extra(&mut self, name: &'static str, help: &'static str, kind: Kind, labels: &[(&str, &str)], value: f64);
}

/// One supplier's series.
pub fn supplier_series(slot: &SupplierSlot, state: &SupplierState, sink: &mut dyn Sink) {
    use family::*;
    let s = slot.name.as_str();
    let sup = [("supplier", s)];
    sink.sample(INFO, &[("supplier", s), ("kind", slot.kind)], 1.0);
    sink.sample(INTERVAL, &sup, slot.poll_interval.as_secs_f64());
    sink.sample(POLLS, &sup, state.polls_total as f64);
    if let Some(t) = state.last_poll_timestamp() {
        sink.sample(LAST_POLL, &sup, unix_seconds(t));
    }
    sink.sample(ROW_ERRORS, &sup, state.row_errors_total as f64);
    for (reason, n) in &state.errors_total {
        sink.sample(ERRORS, &[("supplier", s), ("reason", reason.as_str())], *n as f64);
    }
    if let Some(d) = state.last_duration {
        sink.sample(DURATION, &sup, d.as_secs_f64());
    }
    if state.polled_once {
        sink.sample(UP, &sup, if state.up { 1.0 } else { 0.0 });
    }
    if let Some(t) = state.last_success {
        sink.sample(LAST_SUCCESS, &sup, unix_seconds(t));
    }
    if let Some(w) = &slot.topup_window {
        sink.sample(TOPUP_MARGIN, &sup, w.margin.as_secs_f64());
    }
    for ((account, currency), b) in &state.balances {
        let l = [("supplier", s), ("account", account.as_str()), ("currency", currency.as_str())];
        sink.sample(BALANCE, &l, to_f64(b.row.balance));
        sink.sample(FROZEN, &l, to_f64(b.row.frozen));
        sink.sample(USABLE, &l, to_f64(b.row.usable));
        sink.sample(UPDATED, &l, unix_seconds(b.updated_at()));
        if let Some(t) = crate::config::Threshold::applying_to(&slot.thresholds, account, currency) {
            // Threshold gauges carry the labels of the balance they apply to, so rules
            // join them `on(supplier, account, currency)`.
            if let Some(v) = t.low {
                sink.sample(LOW, &l, to_f64(v));
            }
            if let Some(v) = t.runway_days {
                sink.sample(RUNWAY, &l, to_f64(v) * 86_400.0);
            }
        }
        // Every balance has a top-up target (the default when no threshold gives one).
        let target = crate::config::Threshold::topup_target_days(&slot.thresholds, account, currency);
        sink.sample(TOPUP_TARGET, &l, target.checked_mul(Decimal::from(86_400u32)).map_or(to_f64(target) * 86_400.0, to_f64));
    }
    for ((account, currency), history) in &state.spend_windows {
        for (window, length) in crate::spend_rate::WINDOWS {
            if let Some(rate) = history.rate(length) {
                let l = [("supplier", s), ("account", account.as_str()), ("currency", currency.as_str()), ("window", window)];
                // Five significant digits: a runway computed from it is off by at most 5e-5 of
                // itself, and the series is a dozen bytes shorter than the exact quotient.
                sink.sample(SPEND_RATE, &l, to_f64(rate.round_sf(5).unwrap_or(rate)));
            }
        }
    }
    for ((account, currency), v) in &state.spent_total {
        sink.sample(SPENT, &[("supplier", s), ("account", account), ("currency", currency)], to_f64(*v));
    }
    for ((account, currency), v) in &state.topped_up_total {
        sink.sample(TOPPED_UP, &[("supplier", s), ("account", account), ("currency", currency)], to_f64(*v));
    }
    for key in state.day_starts.keys() {
        if let Some((spent, topped_up, opening)) = state.today(key) {
            let l = [("supplier", s), ("account", key.0.as_str()), ("currency", key.1.as_str())];
            sink.sample(SPENT_TODAY, &l, to_f64(spent));
            sink.sample(TOPPED_UP_TODAY, &l, to_f64(topped_up));
            sink.sample(OPENING, &l, to_f64(opening));
        }
    }
    let with_supplier = |labels: &[(&'static str, String)]| -> Vec<(&'static str, String)> {
        std::iter::once(("supplier", s.to_string())).chain(labels.iter().cloned()).collect()
    };
    for g in &state.gauges {
        let labels = with_supplier(&g.labels);
        let l: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
        sink.extra(g.name, g.help, Kind::Gauge, &l, to_f64(g.value));
    }
    for ((name, labels), (help, value)) in &state.counters {
        let labels = with_supplier(labels);
        let l: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
        sink.extra(name, help, Kind::Counter, &l, to_f64(*value));
    }
}

/// The instant the ready times are computed for: `now` rounded up to a whole
/// minute. A ready time is then at most 60 s later than exact, never earlier
/// (an alert on it errs early), and stays the same for a minute: the renderer
/// recomputes the ready lines once a minute, not per scrape.
pub fn ready_minute(now: SystemTime) -> SystemTime {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since.as_secs().saturating_add(u64::from(since.subsec_nanos() > 0));
    let whole = seconds.div_ceil(60).saturating_mul(60);
    UNIX_EPOCH.checked_add(Duration::from_secs(whole)).unwrap_or(now)
}

/// Ready times already computed during one pass over the suppliers, by
/// window: suppliers sharing `global.topup_window` share one computation.
pub type ReadyMemo = HashMap<usize, Option<f64>>;

/// `supplier_topup_ready_timestamp_seconds` of one supplier at `minute` (from
/// [`ready_minute`]); nothing without a top-up window. Kept out of
/// [`supplier_series`] because it moves with the clock, not with the state.
pub fn topup_ready_series(slot: &SupplierSlot, minute: SystemTime, memo: &mut ReadyMemo, sink: &mut dyn Sink) {
    let Some(window) = &slot.topup_window else { return };
    let ready = *memo.entry(Arc::as_ptr(window) as usize).or_insert_with(|| {
        let now = jiff::Timestamp::try_from(minute).ok()?;
        window.ready_at(now).map(|t| t.as_duration().as_secs_f64())
    });
    if let Some(t) = ready {
        sink.sample(family::TOPUP_READY, &[("supplier", slot.name.as_str())], t);
    }
}

/// The exporter's own families: (name, help, type, samples). Histograms are
/// written whole (buckets, sum, count) by [`ExporterFamily::Histogram`].
pub enum ExporterFamily {
    Scalar { name: &'static str, help: &'static str, kind: Kind, labels: Vec<(&'static str, &'static str)>, value: f64 },
    Histogram { name: &'static str, help: &'static str, bounds: &'static [f64], cumulative: Vec<u64>, count: u64, sum: f64 },
}

impl ExporterFamily {
    fn name(&self) -> &'static str {
        match self {
            ExporterFamily::Scalar { name, .. } | ExporterFamily::Histogram { name, .. } => name,
        }
    }
}

/// The `balance_exporter_*` families (not `balance_exporter_scrape_bytes`, which
/// measures the body and comes last).
pub fn exporter_series(store: &Store) -> Vec<ExporterFamily> {
    let mut out = vec![
        ExporterFamily::Scalar {
            name: "balance_exporter_build_info",
            help: "Build of this exporter.",
            kind: Kind::Gauge,
            labels: vec![("version", VERSION), ("revision", REVISION)],
            value: 1.0,
        },
        ExporterFamily::Scalar {
            name: "balance_exporter_config_last_reload_successful",
            help: "1 if the last config reload succeeded.",
            kind: Kind::Gauge,
            labels: vec![],
            value: if store.reload_ok() { 1.0 } else { 0.0 },
        },
        ExporterFamily::Scalar {
            name: "balance_exporter_config_last_reload_success_timestamp_seconds",
            help: "Time of the last successful config load.",
            kind: Kind::Gauge,
            labels: vec![],
            value: store.last_reload_success() as f64,
        },
    ];
    if let Some(n) = store.state_write_errors() {
        out.push(ExporterFamily::Scalar {
            name: "balance_exporter_state_write_errors_total",
            help: "Writes of the --storage.path state that failed (counters are held back until a write succeeds).",
            kind: Kind::Counter,
            labels: vec![],
            value: n as f64,
        });
    }
    out.push(shared_histogram(
        "balance_exporter_poll_lateness_seconds",
        "How long after its planned instant each poll started (scheduler lag), all suppliers.",
        &store.lateness,
    ));
    out.push(shared_histogram(
        "balance_exporter_poll_duration_seconds",
        "Time taken by each poll attempt, all its requests included, all suppliers.",
        &store.poll_duration,
    ));
    out
}

fn shared_histogram<const N: usize>(name: &'static str, help: &'static str, h: &SharedHistogram<N>) -> ExporterFamily {
    let (cumulative, count, sum) = h.read();
    ExporterFamily::Histogram { name, help, bounds: h.bounds, cumulative: cumulative.to_vec(), count, sum }
}

// ---- the crate's families: the reference ---------------------------------------------

fn label_pairs(labels: &[(&str, &str)]) -> Vec<LabelPair> {
    labels
        .iter()
        .map(|(k, v)| {
            let mut l = LabelPair::default();
            l.set_name(k.to_string());
            l.set_value(v.to_string());
            l
        })
        .collect()
}

fn new_family(name: &str, help: &str, kind: MetricType) -> MetricFamily {
    let mut mf = MetricFamily::default();
    mf.set_name(name.to_string());
    mf.set_help(help.to_string());
    mf.set_field_type(kind);
    mf
}

fn scalar_metric(kind: Kind, labels: &[(&str, &str)], value: f64) -> proto::Metric {
    let mut m = proto::Metric::default();
    m.set_label(label_pairs(labels));
    match kind {
        Kind::Counter => {
            let mut c = proto::Counter::default();
            c.set_value(value);
            m.set_counter(c);
        }
        Kind::Gauge => {
            let mut g = proto::Gauge::default();
            g.set_value(value);
            m.set_gauge(g);
        }
    }
    m
}

struct ProtoSink {
    families: Vec<MetricFamily>,
    extra: BTreeMap<&'static str, MetricFamily>,
}

impl Sink for ProtoSink {
    fn sample(&mut self, family: usize, labels: &[(&str, &str)], value: f64) {
        let kind = SUPPLIER_FAMILIES[family].kind;
        self.families[family].mut_metric().push(scalar_metric(kind, labels, value));
    }

    fn extra(&mut self, name: &'static str, help: &'static str, kind: Kind, labels: &[(&str, &str)], value: f64) {
        let mf = self.extra.entry(name).or_insert_with(|| new_family(name, help, kind.proto()));
        mf.mut_metric().push(scalar_metric(kind, labels, value));
    }
}

/// Every family as the `prometheus` crate models it (unsorted; its
/// `Registry::gather` sorts). The reference for the text renderer.
pub fn collect_families(store: &Store) -> Vec<MetricFamily> {
    collect_families_at(store, SystemTime::now())
}

/// [`collect_families`] with the clock of the top-up ready times given.
pub fn collect_families_at(store: &Store, now: SystemTime) -> Vec<MetricFamily> {
    let mut sink = ProtoSink {
        families: SUPPLIER_FAMILIES.iter().map(|f| new_family(f.name, f.help, f.kind.proto())).collect(),
        extra: BTreeMap::new(),
    };
    let (minute, mut memo) = (ready_minute(now), ReadyMemo::new());
    for slot in store.slots().iter() {
        supplier_series(slot, &slot.state(), &mut sink);
        topup_ready_series(slot, minute, &mut memo, &mut sink);
    }
    let exporter = exporter_series(store).into_iter().map(|f| match f {
        ExporterFamily::Scalar { name, help, kind, labels, value } => {
            let mut mf = new_family(name, help, kind.proto());
            mf.mut_metric().push(scalar_metric(kind, &labels, value));
            mf
        }
        ExporterFamily::Histogram { name, help, bounds, cumulative, count, sum } => {
            let mut h = proto::Histogram::default();
            h.set_sample_count(count);
            h.set_sample_sum(sum);
            h.set_bucket(
                bounds
                    .iter()
                    .zip(cumulative.iter())
                    .map(|(bound, count)| {
                        let mut b = proto::Bucket::default();
                        b.set_upper_bound(*bound);
                        b.set_cumulative_count(*count);
                        b
                    })
                    .collect(),
            );
            let mut m = proto::Metric::default();
            m.set_histogram(h);
            let mut mf = new_family(name, help, MetricType::HISTOGRAM);
            mf.mut_metric().push(m);
            mf
        }
    });
    sink.families.into_iter().chain(sink.extra.into_values()).chain(exporter).filter(|mf| !mf.get_metric().is_empty()).collect()
}

// ---- the text path --------------------------------------------------------------------

/// `\` → `\\`, newline → `\n`, and `"` → `\"` in label values (not in HELP), as the text format wants.
fn escape(v: &str, quotes: bool, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quotes => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// One sample line: `name{labels} value\n`.
fn sample_line(out: &mut String, name: &str, labels: &[(&str, &str)], extra_label: Option<(&str, &str)>, value: f64) {
    out.push_str(name);
    let mut sep = '{';
    for (k, v) in labels.iter().copied().chain(extra_label) {
        out.push(sep);
        out.push_str(k);
        out.push_str("=\"");
        escape(v, true, out);
        out.push('"');
        sep = ',';
    }
    if sep == ',' {
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

fn header(out: &mut Vec<u8>, name: &str, help: &str, kind: &str) {
    let mut h = String::with_capacity(help.len() + name.len() + 32);
    h.push_str("# HELP ");
    h.push_str(name);
    h.push(' ');
    escape(help, false, &mut h);
    let _ = write!(h, "\n# TYPE {name} {kind}\n");
    out.extend_from_slice(h.as_bytes());
}

/// The sort key of a series: its label values in order (the crate compares the
/// number of labels first, then the values).
type SortKey = (usize, Vec<String>);

fn sort_key(labels: &[(&str, &str)]) -> SortKey {
    (labels.len(), labels.iter().map(|(_, v)| v.to_string()).collect())
}

/// A sample of a kind's own family: its family and sort key come with it.
struct ExtraLine {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    key: SortKey,
    line: String,
}

/// One supplier's rendered lines: family `i`'s lines are `text[spans[i].0..spans[i].1]`.
/// Once stitched into its chunk, `text` is the chunk's buffer (shared, not a copy).
struct Fragment {
    slot: Arc<SupplierSlot>,
    /// [`SupplierSlot::state_version`] of the state rendered (not the state:
    /// holding it would keep each replaced state alive until the next scrape).
    version: u64,
    text: Bytes,
    spans: [(usize, usize); SUPPLIER_FAMILIES.len()],
    extra: Vec<ExtraLine>,
}

impl Fragment {
    fn family(&self, i: usize) -> &[u8] {
        let (start, end) = self.spans[i];
        &self.text[start..end]
    }
}

#[derive(Default)]
struct TextSink {
    lines: Vec<Vec<(SortKey, String)>>,
    extra: Vec<ExtraLine>,
}

impl Sink for TextSink {
    fn sample(&mut self, family: usize, labels: &[(&str, &str)], value: f64) {
        let mut line = String::with_capacity(96);
        sample_line(&mut line, SUPPLIER_FAMILIES[family].name, labels, None, value);
        self.lines[family].push((sort_key(labels), line));
    }

    fn extra(&mut self, name: &'static str, help: &'static str, kind: Kind, labels: &[(&str, &str)], value: f64) {
        let mut line = String::with_capacity(96);
        sample_line(&mut line, name, labels, None, value);
        self.extra.push(ExtraLine { name, help, kind, key: sort_key(labels), line });
    }
}

fn render_fragment(slot: &Arc<SupplierSlot>) -> Fragment {
    let version = slot.state_version();
    let state = slot.state();
    let mut sink = TextSink { lines: (0..SUPPLIER_FAMILIES.len()).map(|_| Vec::new()).collect(), extra: Vec::new() };
    supplier_series(slot, &state, &mut sink);
    let mut text = Vec::with_capacity(sink.lines.iter().flatten().map(|(_, l)| l.len()).sum());
    let mut spans = [(0usize, 0usize); SUPPLIER_FAMILIES.len()];
    for (i, mut lines) in sink.lines.into_iter().enumerate() {
        lines.sort_by(|a, b| a.0.cmp(&b.0));
        let start = text.len();
        for (_, line) in lines {
            text.extend_from_slice(line.as_bytes());
        }
        spans[i] = (start, text.len());
    }
    Fragment { slot: slot.clone(), version, text: Bytes::from(text), spans, extra: sink.extra }
}

fn write_exporter_family(out: &mut Vec<u8>, family: &ExporterFamily) {
    let mut text = String::new();
    match family {
        ExporterFamily::Scalar { name, help, kind, labels, value } => {
            header(out, name, help, kind.text());
            sample_line(&mut text, name, labels, None, *value);
        }
        ExporterFamily::Histogram { name, help, bounds, cumulative, count, sum } => {
            header(out, name, help, "histogram");
            let bucket = format!("{name}_bucket");
            for (bound, n) in bounds.iter().zip(cumulative.iter()) {
                sample_line(&mut text, &bucket, &[], Some(("le", &bound.to_string())), *n as f64);
            }
            sample_line(&mut text, &bucket, &[], Some(("le", "+Inf")), *count as f64);
            sample_line(&mut text, &format!("{name}_sum"), &[], None, *sum);
            sample_line(&mut text, &format!("{name}_count"), &[], None, *count as f64);
        }
    }
    out.extend_from_slice(text.as_bytes());
}

/// Suppliers per chunk of the body. A poll re-stitches its chunk (this many
/// suppliers' lines, about 1 KB each at one balance) at the next scrape;
/// the body is sent as one segment per family and chunk.
const CHUNK: usize = 64;

/// One rendered exposition body: segments shared with the render cache,
/// sent in order without being copied into one buffer.
#[derive(Clone)]
pub struct Rendered {
    pub generation: u64,
    segments: Arc<[Bytes]>,
    len: usize,
    gzip: Arc<Mutex<Option<Bytes>>>,
}

impl Rendered {
    /// The body's parts, in order.
    pub fn segments(&self) -> &Arc<[Bytes]> {
        &self.segments
    }

    /// Length of the body in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The body in one buffer (a copy: for tests and benches, not the server).
    pub fn concat(&self) -> Bytes {
        let mut out = Vec::with_capacity(self.len);
        for s in self.segments.iter() {
            out.extend_from_slice(s);
        }
        Bytes::from(out)
    }

    /// The gzip form, compressed at most once per generation.
    pub fn gzip(&self) -> Bytes {
        let mut slot = self.gzip.lock().unwrap_or_else(|e| e.into_inner());
        slot.get_or_insert_with(|| {
            let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(self.len / 4), flate2::Compression::fast());
            for s in self.segments.iter() {
                enc.write_all(s).expect("writing to a Vec cannot fail");
            }
            Bytes::from(enc.finish().expect("finishing a Vec cannot fail"))
        })
        .clone()
    }
}

/// [`CHUNK`] consecutive suppliers in name order: family `i`'s lines of all
/// of them are `text[ends[i-1]..ends[i]]`.
struct Chunk {
    text: Bytes,
    ends: [usize; SUPPLIER_FAMILIES.len()],
    dirty: bool,
}

impl Chunk {
    fn family(&self, i: usize) -> Bytes {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        self.text.slice(start..self.ends[i])
    }

    /// Re-stitches the chunk from its suppliers' fragments, which then point
    /// into it instead of keeping their own copy.
    fn stitch(&mut self, fragments: &mut [Fragment], members: &[usize]) {
        let total = members.iter().map(|m| fragments[*m].spans.iter().map(|(s, e)| e - s).sum::<usize>()).sum();
        let mut text = Vec::with_capacity(total);
        let mut spans = vec![[(0usize, 0usize); SUPPLIER_FAMILIES.len()]; members.len()];
        for (i, end) in self.ends.iter_mut().enumerate() {
            for (m, span) in members.iter().zip(spans.iter_mut()) {
                let start = text.len();
                text.extend_from_slice(fragments[*m].family(i));
                span[i] = (start, text.len());
            }
            *end = text.len();
        }
        self.text = Bytes::from(text);
        self.dirty = false;
        for (m, span) in members.iter().zip(spans) {
            fragments[*m].text = self.text.clone();
            fragments[*m].spans = span;
        }
    }
}

#[derive(Default)]
struct Cache {
    rendered: Option<Rendered>,
    /// The slot list the fragments follow (it changes only at a reload).
    slots: Option<Arc<Vec<Arc<SupplierSlot>>>>,
    /// Each slot's fragment, in slot order, with the slot and state it was rendered from.
    fragments: Vec<Fragment>,
    /// Indices into `fragments` by supplier name: the exposition's order.
    by_name: Vec<usize>,
    /// `by_name` cut into runs of [`CHUNK`], each stitched per family.
    chunks: Vec<Chunk>,
    /// The chunk of each slot, in slot order.
    chunk_of: Vec<usize>,
    /// `supplier_topup_ready_timestamp_seconds` of every supplier with a top-up
    /// window, in name order, for `ready_minute` and the slots of `fragments`.
    ready: Bytes,
    ready_minute: Option<SystemTime>,
}

/// Writes one family's samples as text lines (the ready times: one label, so
/// suppliers in name order are already in the crate's order).
struct LineSink(String);

impl Sink for LineSink {
    fn sample(&mut self, family: usize, labels: &[(&str, &str)], value: f64) {
        sample_line(&mut self.0, SUPPLIER_FAMILIES[family].name, labels, None, value);
    }

    fn extra(&mut self, _: &'static str, _: &'static str, _: Kind, _: &[(&str, &str)], _: f64) {}
}

/// The ready lines of the suppliers of `fragments`, in name order, at `minute`.
fn ready_lines(fragments: &[Fragment], by_name: &[usize], minute: SystemTime) -> Bytes {
    let mut sink = LineSink(String::new());
    let mut memo = ReadyMemo::new();
    for i in by_name {
        topup_ready_series(&fragments[*i].slot, minute, &mut memo, &mut sink);
    }
    Bytes::from(sink.0)
}

/// Renders the exposition, incrementally: only suppliers whose state changed,
/// and only the chunks holding them.
pub struct Renderer {
    store: Arc<Store>,
    cache: Mutex<Cache>,
}

impl Renderer {
    pub fn new(store: Arc<Store>) -> Self {
        Renderer { store, cache: Mutex::new(Cache::default()) }
    }

    /// The current exposition. A scrape that arrives while a render runs waits
    /// for it and takes its body (it was started no earlier than the state the
    /// scrape arrived at); otherwise suppliers whose state changed since their
    /// last fragment are re-rendered, their chunks re-stitched, and the body's
    /// segment list is built again around the unchanged chunks.
    ///
    /// The top-up ready times move with the clock, not with the states: they
    /// are one segment of their own, recomputed when the minute of
    /// [`ready_minute`] changes (once per window shared by suppliers, then a
    /// line per supplier), and the body is re-assembled only when a line changed.
    pub fn render(&self) -> Rendered {
        self.render_at(SystemTime::now())
    }

    /// [`Self::render`] with the clock of the top-up ready times given.
    pub fn render_at(&self, now: SystemTime) -> Rendered {
        let minute = ready_minute(now);
        let arrived = self.store.generation();
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let cache = &mut *cache;
        if let Some(r) = cache.rendered.as_ref().filter(|r| r.generation >= arrived) {
            if cache.ready_minute == Some(minute) {
                return r.clone();
            }
            // Only the clock moved: the same body unless a ready time changed.
            let ready = ready_lines(&cache.fragments, &cache.by_name, minute);
            cache.ready_minute = Some(minute);
            if ready == cache.ready {
                return r.clone();
            }
            cache.ready = ready;
        }
        let generation = self.store.generation();
        let slots = self.store.slots();
        let reloaded = !cache.slots.as_ref().is_some_and(|known| Arc::ptr_eq(known, &slots));
        if !reloaded {
            // The common case: the same suppliers; re-render those whose state changed.
            for (i, (f, slot)) in cache.fragments.iter_mut().zip(slots.iter()).enumerate() {
                if f.version != slot.state_version() {
                    *f = render_fragment(slot);
                    cache.chunks[cache.chunk_of[i]].dirty = true;
                }
            }
        } else {
            // A reload: fragments of suppliers whose slot and state are unchanged are kept.
            let mut old: HashMap<String, Fragment> =
                std::mem::take(&mut cache.fragments).into_iter().map(|f| (f.slot.name.clone(), f)).collect();
            cache.fragments = slots
                .iter()
                .map(|slot| match old.remove(slot.name.as_str()) {
                    Some(f) if Arc::ptr_eq(&f.slot, slot) && f.version == slot.state_version() => f,
                    _ => render_fragment(slot),
                })
                .collect();
            let mut by_name: Vec<usize> = (0..cache.fragments.len()).collect();
            by_name.sort_by(|a, b| cache.fragments[*a].slot.name.cmp(&cache.fragments[*b].slot.name));
            cache.chunk_of = vec![0; by_name.len()];
            for (rank, i) in by_name.iter().enumerate() {
                cache.chunk_of[*i] = rank / CHUNK;
            }
            cache.chunks =
                by_name.chunks(CHUNK).map(|_| Chunk { text: Bytes::new(), ends: [0; SUPPLIER_FAMILIES.len()], dirty: true }).collect();
            cache.by_name = by_name;
            cache.slots = Some(slots);
        }
        for (chunk, members) in cache.chunks.iter_mut().zip(cache.by_name.chunks(CHUNK)) {
            if chunk.dirty {
                chunk.stitch(&mut cache.fragments, members);
            }
        }
        if reloaded || cache.ready_minute != Some(minute) {
            cache.ready = ready_lines(&cache.fragments, &cache.by_name, minute);
            cache.ready_minute = Some(minute);
        }
        let ordered: Vec<&Fragment> = cache.by_name.iter().map(|i| &cache.fragments[*i]).collect();
        let (segments, len) = assemble(&cache.chunks, &ordered, &exporter_series(&self.store), &cache.ready);
        let rendered = Rendered { generation, segments: segments.into(), len, gzip: Arc::new(Mutex::new(None)) };
        cache.rendered = Some(rendered.clone());
        rendered
    }
}

/// A body's segments as they are gathered: shared chunk slices, and the small
/// families written into a buffer that becomes a segment of its own.
#[derive(Default)]
struct Segments {
    done: Vec<Bytes>,
    len: usize,
    pending: Vec<u8>,
}

impl Segments {
    fn flush(&mut self) {
        if !self.pending.is_empty() {
            let text = std::mem::take(&mut self.pending);
            self.len += text.len();
            self.done.push(Bytes::from(text));
        }
    }

    fn push(&mut self, segment: Bytes) {
        if !segment.is_empty() {
            self.flush();
            self.len += segment.len();
            self.done.push(segment);
        }
    }

    fn len(&self) -> usize {
        self.len + self.pending.len()
    }
}

/// The body: every family in name order, then `balance_exporter_scrape_bytes`.
/// The ready times come from `ready`, not from the chunks.
fn assemble(chunks: &[Chunk], fragments: &[&Fragment], exporter: &[ExporterFamily], ready: &Bytes) -> (Vec<Bytes>, usize) {
    // The kinds' own families, each sorted across suppliers as the crate sorts.
    let mut extra: BTreeMap<&'static str, (&'static str, Kind, Vec<&ExtraLine>)> = BTreeMap::new();
    for e in fragments.iter().flat_map(|f| f.extra.iter()) {
        extra.entry(e.name).or_insert((e.help, e.kind, Vec::new())).2.push(e);
    }
    enum Part<'a> {
        Supplier(usize),
        Extra(&'static str, Kind, Vec<&'a ExtraLine>),
        Exporter(&'a ExporterFamily),
    }
    let mut parts: Vec<(&'static str, Part)> = SUPPLIER_FAMILIES.iter().enumerate().map(|(i, f)| (f.name, Part::Supplier(i))).collect();
    parts.extend(extra.into_iter().map(|(name, (help, kind, lines))| (name, Part::Extra(help, kind, lines))));
    parts.extend(exporter.iter().map(|f| (f.name(), Part::Exporter(f))));
    parts.sort_by(|a, b| a.0.cmp(b.0));

    let mut out = Segments::default();
    for (name, part) in parts {
        match part {
            Part::Supplier(family::TOPUP_READY) => {
                if !ready.is_empty() {
                    out.push(family_header(family::TOPUP_READY).clone());
                    out.push(ready.clone());
                }
            }
            Part::Supplier(i) => {
                let lines: Vec<Bytes> = chunks.iter().map(|c| c.family(i)).filter(|s| !s.is_empty()).collect();
                if lines.is_empty() {
                    continue;
                }
                out.push(family_header(i).clone());
                for segment in lines {
                    out.push(segment);
                }
            }
            Part::Extra(help, kind, mut lines) => {
                lines.sort_by(|a, b| a.key.cmp(&b.key));
                header(&mut out.pending, name, help, kind.text());
                for l in lines {
                    out.pending.extend_from_slice(l.line.as_bytes());
                }
            }
            Part::Exporter(f) => write_exporter_family(&mut out.pending, f),
        }
    }
    // Size of the body above, so dashboards can watch scrape size grow.
    let size = ExporterFamily::Scalar {
        name: "balance_exporter_scrape_bytes",
        help: "Size in bytes of the /metrics body, excluding this metric.",
        kind: Kind::Gauge,
        labels: vec![],
        value: out.len() as f64,
    };
    write_exporter_family(&mut out.pending, &size);
    out.flush();
    (out.done, out.len)
}

/// `# HELP` and `# TYPE` of supplier family `i`, written once.
fn family_header(i: usize) -> &'static Bytes {
    static HEADERS: std::sync::OnceLock<Vec<Bytes>> = std::sync::OnceLock::new();
    let headers = HEADERS.get_or_init(|| {
        SUPPLIER_FAMILIES
            .iter()
            .map(|f| {
                let mut h = Vec::new();
                header(&mut h, f.name, f.help, f.kind.text());
                Bytes::from(h)
            })
            .collect()
    });
    &headers[i]
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::poll::{BalanceRow, Reason};
    use crate::snapshot::SupplierState;

    fn poll(state: &SupplierState, balance: i64, frozen: i64, at: SystemTime) -> SupplierState {
        let row = BalanceRow {
            account: "main".into(),
            currency: "USD".into(),
            balance: Decimal::from(balance),
            frozen: Decimal::from(frozen),
            usable: Decimal::from(balance - frozen),
            updated_at: None,
        };
        state.after_poll(Ok(crate::poll::PollOutput { balances: vec![row], ..Default::default() }), Duration::ZERO, at)
    }

    #[test]
    fn spend_rate_per_window_appears_once_the_history_covers_it() {
        let config = crate::config::load_str(
            "suppliers:\n  - {name: fox, kind: foxreload, auth: {bearer_token: x}, thresholds: [{currency: USD, low: 10, runway_days: 2.5}]}\n",
            &|_| None,
        )
        .unwrap();
        let store = Arc::new(Store::default());
        let slot = store.set_suppliers(&config.suppliers).remove(0);
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        // 1000 total; then 60 spent and 30 newly held every 10 minutes, one poll failing in between.
        let mut s = poll(&SupplierState::default(), 1000, 0, t0);
        for i in 1..=4i64 {
            let at = t0 + Duration::from_secs(600 * i as u64);
            if i == 3 {
                s = s.after_poll(Err(crate::poll::PollError::new(crate::poll::Reason::Timeout, "t")), Duration::ZERO, at);
                continue;
            }
            s = poll(&s, 1000 - 60 * i, 30 * i, at);
        }
        store.publish(&slot, s);
        let text = String::from_utf8(Renderer::new(store).render().concat().to_vec()).unwrap();
        let rate = |window: &str| {
            let prefix = format!("supplier_balance_spend_rate{{supplier=\"fox\",account=\"main\",currency=\"USD\",window=\"{window}\"}} ");
            text.lines().find_map(|l| l.strip_prefix(prefix.as_str())).map(|v| v.parse::<f64>().unwrap())
        };
        // Last poll at 40 min: 240 spent + 120 held. 15m: from the poll at 20 min (the one at 30 min failed),
        // (360 - 180) / 1200 s; 30m: from 10 min, (360 - 90) / 1800 s; 1h and 1d: not covered yet.
        assert_eq!(rate("15m"), Some(0.15));
        assert_eq!(rate("30m"), Some(0.15));
        assert_eq!((rate("1h"), rate("1d")), (None, None));
        assert!(text.contains("supplier_balance_runway_threshold_seconds{supplier=\"fox\",account=\"main\",currency=\"USD\"} 216000\n"));
        assert!(text.contains("# TYPE supplier_balance_spend_rate gauge"));
    }

    /// The clock of the comparisons: Tuesday 2026-12-08 09:10:20 UTC (10:10:20 in
    /// Berlin, inside the test windows, not on a whole minute).
    fn clock() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_721_020)
    }

    /// The reference at [`clock`].
    fn crate_text(store: &Arc<Store>) -> String {
        crate_text_at(store, clock())
    }

    /// The reference: the `prometheus` crate's registry and text encoder over
    /// [`collect_families_at`].
    fn crate_text_at(store: &Arc<Store>, now: SystemTime) -> String {
        struct Reference(Arc<Store>, SystemTime);
        impl prometheus::core::Collector for Reference {
            fn desc(&self) -> Vec<&prometheus::core::Desc> {
                Vec::new()
            }
            fn collect(&self) -> Vec<MetricFamily> {
                collect_families_at(&self.0, self.1)
            }
        }
        let registry = prometheus::Registry::new();
        registry.register(Box::new(Reference(store.clone(), now))).unwrap();
        let mut out = Vec::new();
        prometheus::Encoder::encode(&prometheus::TextEncoder::new(), &registry.gather(), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn without_scrape_bytes(text: &str) -> &str {
        &text[..text.find("# HELP balance_exporter_scrape_bytes").unwrap()]
    }

    /// Suppliers out of name order, hostile account names (quotes, backslashes,
    /// newlines, NUL, multi-byte), errors of several reasons, a kind's own
    /// families, thresholds, spend rates, a supplier never polled, top-up
    /// targets and windows (the global one, a supplier's own).
    fn varied_store() -> Arc<Store> {
        let config = crate::config::load_str(
            "global: {topup_window: {timezone: Europe/Berlin, days: [mon, tue, wed, thu, fri], hours: '09:00-17:00', lead_time: 4h}}
suppliers:
  - {name: zeta, kind: foxreload, auth: {bearer_token: x}, thresholds: [{currency: USD, low: 10, runway_days: 2.5, topup_target_days: 3.5}]}
  - {name: alpha, kind: vai247, base_url: 'http://127.0.0.1:9', auth: {bearer_token: x}, thresholds: [{currency: KHR, low: 1000}],
     topup_window: {timezone: America/New_York, days: [sat], hours: '10:00-11:00', lead_time: 90m, margin: 1d}}
  - {name: mid, kind: novasend, base_url: 'http://127.0.0.1:9', auth: {bearer_token: x}}
  - {name: never, kind: foxreload, auth: {bearer_token: x}}
",
            &|_| None,
        )
        .unwrap();
        let store = Arc::new(Store::default());
        let slots = store.set_suppliers(&config.suppliers);
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let accounts = ["main", "a\"b", "c\\d", "e\nf", "g\u{0}h", "漢字é", "", "z"];
        for (i, slot) in slots.iter().take(3).enumerate() {
            let mut s = SupplierState::loaded(t0);
            for p in 0..40u64 {
                let at = t0 + Duration::from_secs(60 * p);
                if p % 7 == 3 {
                    let reason = [Reason::Timeout, Reason::Auth, Reason::ServerError][(p as usize + i) % 3];
                    s = s.after_poll(Err(crate::poll::PollError::new(reason, "x")), Duration::from_millis(20 * p), at);
                    continue;
                }
                let balances = accounts
                    .iter()
                    .enumerate()
                    .flat_map(|(k, a)| {
                        ["USD", "KHR"].into_iter().map(move |c| {
                            let b = Decimal::from(10_000 - (p as i64) * (k as i64 + 1));
                            BalanceRow {
                                account: a.to_string(),
                                currency: c.into(),
                                balance: b,
                                frozen: Decimal::new(p as i64, 1),
                                usable: b - Decimal::new(p as i64, 1),
                                updated_at: None,
                            }
                        })
                    })
                    .collect();
                let extra = |v: i64| crate::poll::ExtraSample {
                    name: "supplier_test_extra_total",
                    help: "A kind's own counter.",
                    labels: vec![("account", accounts[(v as usize) % accounts.len()].to_string())],
                    value: Decimal::from(v),
                };
                let gauge = crate::poll::ExtraSample {
                    name: "supplier_test_gauge",
                    help: "A kind's own gauge, with \\ and \n in its help.",
                    labels: vec![("account", "a\"b".into()), ("currency", "USD".into())],
                    value: Decimal::new(12345, 2),
                };
                let output = crate::poll::PollOutput {
                    balances,
                    gauges: vec![gauge],
                    counter_increments: vec![extra(p as i64), extra(p as i64 + 3)],
                    ..Default::default()
                };
                s = s.after_poll(Ok(output), Duration::from_millis(10 * p), at);
            }
            store.publish(slot, s);
        }
        store.poll_duration.observe(Duration::from_millis(70));
        store.lateness.observe(Duration::from_micros(300));
        store
    }

    #[test]
    fn incremental_text_is_the_crates_exposition_byte_for_byte() {
        let store = varied_store();
        let renderer = Renderer::new(store.clone());
        let text = String::from_utf8(renderer.render_at(clock()).concat().to_vec()).unwrap();
        let reference = crate_text(&store);
        assert!(reference.contains("supplier_test_extra_total{") && reference.contains("supplier_balance_spend_rate{"));
        for family in
            ["supplier_balance_topup_target_seconds{", "supplier_topup_margin_seconds{", "supplier_topup_ready_timestamp_seconds{"]
        {
            assert!(reference.contains(family), "{family}");
        }
        assert!(reference.contains(r#"account="e\nf""#) && reference.contains(r#"account="a\"b""#), "{reference}");
        assert_eq!(without_scrape_bytes(&text), reference);
        let size: usize = text.lines().last().unwrap().strip_prefix("balance_exporter_scrape_bytes ").unwrap().parse().unwrap();
        assert_eq!(size, reference.len());
    }

    #[test]
    fn a_poll_re_renders_only_its_supplier_and_the_body_stays_exact() {
        let store = varied_store();
        let renderer = Renderer::new(store.clone());
        let first = renderer.render_at(clock());
        let fragments_before: Vec<(String, usize)> = {
            let cache = renderer.cache.lock().unwrap();
            cache.fragments.iter().map(|f| (f.slot.name.clone(), f.extra.as_ptr() as usize)).collect()
        };
        // One supplier polls again; a reload replaces the thresholds of another.
        let slots = store.slots();
        let zeta = slots.iter().find(|s| s.name == "zeta").unwrap();
        let later = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_010_000);
        store.publish(zeta, zeta.state().after_poll(Err(crate::poll::PollError::new(Reason::Decode, "d")), Duration::ZERO, later));
        let again = renderer.render_at(clock());
        let again_text = again.concat();
        assert!(again.generation > first.generation);
        let cache = renderer.cache.lock().unwrap();
        for (name, ptr) in fragments_before {
            let same = cache.fragments.iter().find(|f| f.slot.name == name).unwrap().extra.as_ptr() as usize == ptr;
            assert_eq!(same, name != "zeta", "{name}: re-rendered only if its state changed");
        }
        drop(cache);
        assert_eq!(without_scrape_bytes(std::str::from_utf8(&again_text).unwrap()), crate_text(&store));
        assert!(std::str::from_utf8(&again_text).unwrap().contains(r#"supplier_poll_errors_total{supplier="zeta",reason="decode"} 1"#));
        // Nothing changed: the same body, not a new render.
        assert!(Arc::ptr_eq(renderer.render_at(clock()).segments(), again.segments()));
        // A reload: one supplier leaves, one arrives, the others keep their state.
        let config = crate::config::load_str(
            "suppliers:\n  - {name: zeta, kind: foxreload, auth: {bearer_token: x}}\n  - {name: aaa, kind: foxreload, auth: {bearer_token: x}}\n",
            &|_| None,
        )
        .unwrap();
        store.set_suppliers(&config.suppliers);
        let reloaded = renderer.render_at(clock()).concat();
        assert_eq!(without_scrape_bytes(std::str::from_utf8(&reloaded).unwrap()), crate_text(&store));
        assert!(!std::str::from_utf8(&reloaded).unwrap().contains("supplier=\"alpha\""));
    }

    #[test]
    fn error_reasons_appear_on_first_use() {
        let store = varied_store();
        let text = String::from_utf8(Renderer::new(store).render().concat().to_vec()).unwrap();
        let reasons = |supplier: &str| -> Vec<String> {
            let prefix = format!("supplier_poll_errors_total{{supplier=\"{supplier}\",reason=\"");
            text.lines().filter_map(|l| l.strip_prefix(prefix.as_str()).map(|r| r.split('"').next().unwrap().to_string())).collect()
        };
        assert_eq!(reasons("never"), Vec::<String>::new());
        assert!(!reasons("zeta").is_empty() && reasons("zeta").len() < crate::poll::Reason::ALL.len());
        assert!(text.contains("# TYPE supplier_poll_duration_seconds gauge\n"));
        assert!(!text.contains("supplier_poll_duration_seconds_bucket"));
    }

    /// A config of suppliers `s{i}` for each `i` in `ids` (names sort unlike numbers: chunks
    /// mix); with `windows`, a global top-up window open all day (its ready
    /// times move every minute), every fifth supplier a weekend one of its own.
    fn many_config_with(ids: impl Iterator<Item = usize>, windows: bool) -> Vec<crate::config::SupplierConfig> {
        let own = ", topup_window: {timezone: Asia/Tokyo, days: [sat, sun], hours: '10:00-12:00', lead_time: 3h}";
        let text: String = ids
            .map(|i| {
                let own = if windows && i % 5 == 0 { own } else { "" };
                format!("  - {{name: s{i}, kind: foxreload, auth: {{bearer_token: x}}, thresholds: [{{currency: USD, low: 5}}]{own}}}\n")
            })
            .collect();
        let global = if windows {
            "global: {topup_window: {timezone: UTC, days: [mon, tue, wed, thu, fri, sat, sun], hours: '00:00-24:00', lead_time: 1h}}\n"
        } else {
            ""
        };
        crate::config::load_str(&format!("{global}suppliers:\n{text}"), &|_| None).unwrap().suppliers
    }

    /// A state after `polls` polls, the `seed`-th balance of them, failing every fifth.
    fn polled(slot: &SupplierSlot, polls: u64, seed: i64) -> SupplierState {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut s = slot.state().as_ref().clone();
        for p in 0..polls {
            let at = t0 + Duration::from_secs(60 * (s.polls_total + p));
            s = if (seed + p as i64) % 5 == 4 {
                s.after_poll(Err(crate::poll::PollError::new(Reason::Timeout, "t")), Duration::from_millis(7), at)
            } else {
                poll(&s, 10_000 - seed - p as i64, seed % 3, at)
            };
        }
        s
    }

    /// `n` suppliers (several chunks), most of them polled a few times.
    pub(crate) fn many_store(n: usize) -> Arc<Store> {
        many_store_with(n, false)
    }

    fn many_store_with(n: usize, windows: bool) -> Arc<Store> {
        let store = Arc::new(Store::default());
        for (i, slot) in store.set_suppliers(&many_config_with(0..n, windows)).iter().enumerate() {
            if i % 7 != 3 {
                store.publish(slot, polled(slot, 3, i as i64));
            }
        }
        store
    }

    #[test]
    fn segments_after_random_changes_equal_a_render_from_scratch() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(15);
        let n = 3 * CHUNK + 17;
        let store = many_store_with(n, true);
        let renderer = Renderer::new(store.clone());
        let mut ids: Vec<usize> = (0..n).collect();
        for step in 0..40 {
            if step % 10 == 9 {
                // A reload: some suppliers leave, new ones arrive (ids above any seen so far).
                ids.retain(|_| rng.random_range(0..10) != 0);
                ids.extend((0..rng.random_range(1..CHUNK)).map(|k| 10_000 + step * 1000 + k));
                store.set_suppliers(&many_config_with(ids.iter().copied(), true));
            }
            let slots = store.slots();
            // Some steps change nothing but the clock (the ready times move every minute).
            for _ in 0..rng.random_range(0..6) {
                let slot = &slots[rng.random_range(0..slots.len())];
                store.publish(slot, polled(slot, rng.random_range(1..3), rng.random_range(0..1000)));
            }
            let now = clock() + Duration::from_secs(37 * step as u64);
            let rendered = renderer.render_at(now);
            let body = rendered.concat();
            assert_eq!(body.len(), rendered.len());
            let scratch = Renderer::new(store.clone()).render_at(now).concat();
            assert!(body == scratch, "step {step}: the segmented body differs from a render from scratch");
            assert_eq!(without_scrape_bytes(std::str::from_utf8(&body).unwrap()), crate_text_at(&store, now), "step {step}");
        }
    }

    fn value(text: &str, prefix: &str) -> Option<f64> {
        text.lines().find_map(|l| l.strip_prefix(prefix)).map(|v| v.parse().unwrap())
    }

    /// An instant as local time in a zone, in Unix seconds.
    fn local(text: &str) -> f64 {
        text.parse::<jiff::Zoned>().unwrap().timestamp().as_second() as f64
    }

    fn instant(text: &str) -> SystemTime {
        SystemTime::from(text.parse::<jiff::Zoned>().unwrap().timestamp())
    }

    /// The issue's worked example, config to exposition: Mon-Fri 09:00-17:00
    /// Europe/Berlin, lead_time 4h.
    #[test]
    fn topup_families_from_config_to_exposition() {
        let config = crate::config::load_str(
            "global:
  topup_window: {timezone: Europe/Berlin, days: [mon, tue, wed, thu, fri], hours: '09:00-17:00', holidays: ['2026-12-24'], lead_time: 4h}
suppliers:
  - {name: fox, kind: foxreload, auth: {bearer_token: x}, thresholds: [{currency: USD, topup_target_days: 2.5}]}
  - {name: own, kind: foxreload, auth: {bearer_token: x}, topup_window: {timezone: UTC, days: [sat], hours: '00:00-24:00', lead_time: 0s, margin: 2h}}
",
            &|_| None,
        )
        .unwrap();
        let store = Arc::new(Store::default());
        let slots = store.set_suppliers(&config.suppliers);
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_000_000);
        store.publish(&slots[0], poll(&SupplierState::default(), 1000, 0, t0));
        store.publish(&slots[1], poll(&SupplierState::default(), 50, 0, t0));
        let renderer = Renderer::new(store.clone());
        let text = |now: SystemTime| String::from_utf8(renderer.render_at(now).concat().to_vec()).unwrap();
        let ready = |body: &str, s: &str| value(body, &format!("supplier_topup_ready_timestamp_seconds{{supplier=\"{s}\"}} "));

        let friday = text(instant("2026-12-04T18:00[Europe/Berlin]"));
        assert_eq!(ready(&friday, "fox"), Some(local("2026-12-07T13:00[Europe/Berlin]")));
        // Its own window: Saturday, lead time 0: the next opening.
        assert_eq!(ready(&friday, "own"), Some(local("2026-12-05T00:00[UTC]")));
        let target = |s: &str| format!("supplier_balance_topup_target_seconds{{supplier=\"{s}\",account=\"main\",currency=\"USD\"}} ");
        assert_eq!(value(&friday, &target("fox")), Some(216_000.0));
        assert_eq!(value(&friday, &target("own")), Some(604_800.0), "no threshold: the default 7 days");
        assert_eq!(value(&friday, "supplier_topup_margin_seconds{supplier=\"fox\"} "), Some(43_200.0));
        assert_eq!(value(&friday, "supplier_topup_margin_seconds{supplier=\"own\"} "), Some(7_200.0));
        assert_eq!(without_scrape_bytes(&friday), crate_text_at(&store, instant("2026-12-04T18:00[Europe/Berlin]")));

        let tuesday = text(instant("2026-12-08T09:30[Europe/Berlin]"));
        assert_eq!(ready(&tuesday, "fox"), Some(local("2026-12-08T13:30[Europe/Berlin]")));
        // Between whole minutes the ready time is that of the next minute.
        let later = text(instant("2026-12-08T09:30:01[Europe/Berlin]"));
        assert_eq!(ready(&later, "fox"), Some(local("2026-12-08T13:31[Europe/Berlin]")));
        // The holiday: 23rd 16:00 → 1 h that day, 3 h on Friday the 25th.
        let eve = text(instant("2026-12-23T16:00[Europe/Berlin]"));
        assert_eq!(ready(&eve, "fox"), Some(local("2026-12-25T12:00[Europe/Berlin]")));
    }

    /// The ready lines follow the clock without re-rendering any supplier: within
    /// a minute the body is the same; a new minute outside the window (ready times
    /// unchanged) keeps it too; a new minute inside re-assembles the body only.
    #[test]
    fn ready_times_stay_fresh_without_re_rendering_fragments() {
        let store = varied_store();
        let renderer = Renderer::new(store.clone());
        let fragment_ptrs = |r: &Renderer| -> Vec<usize> {
            let cache = r.cache.lock().unwrap();
            cache.fragments.iter().map(|f| f.text.as_ptr() as usize).collect()
        };
        // Saturday 2026-12-05 12:00:10 in Berlin: both windows closed.
        let closed = instant("2026-12-05T12:00:10[Europe/Berlin]");
        let first = renderer.render_at(closed);
        let ptrs = fragment_ptrs(&renderer);
        assert!(Arc::ptr_eq(renderer.render_at(closed + Duration::from_secs(30)).segments(), first.segments()), "same minute");
        assert!(Arc::ptr_eq(renderer.render_at(closed + Duration::from_secs(600)).segments(), first.segments()), "ready times unchanged");
        // Tuesday, inside the Berlin window: new ready times, same fragments, exact body.
        let open = instant("2026-12-08T10:00:10[Europe/Berlin]");
        let inside = renderer.render_at(open);
        assert!(!Arc::ptr_eq(inside.segments(), first.segments()));
        let minute_later = renderer.render_at(open + Duration::from_secs(60));
        assert!(!Arc::ptr_eq(minute_later.segments(), inside.segments()));
        assert_eq!(fragment_ptrs(&renderer), ptrs, "no fragment re-rendered for a clock change");
        let body = String::from_utf8(minute_later.concat().to_vec()).unwrap();
        assert_eq!(without_scrape_bytes(&body), crate_text_at(&store, open + Duration::from_secs(60)));
        assert_eq!(
            value(&body, "supplier_topup_ready_timestamp_seconds{supplier=\"zeta\"} "),
            Some(local("2026-12-08T14:02[Europe/Berlin]"))
        );
    }
}
