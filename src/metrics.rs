//! Snapshot → Prometheus exposition.
//!
//! A `prometheus::core::Collector` builds metric families from the store's
//! immutable per-supplier states (no I/O, no awaits under the registry lock).
//! The rendered text and its gzip form are cached per store generation, so
//! scrapes between two polls cost a pointer copy, not a render.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, LabelPair, MetricFamily, MetricType};
use prometheus::{Encoder, Registry, TextEncoder};
use rust_decimal::Decimal;

use crate::poll::Reason;
use crate::snapshot::{unix_seconds, Store, SupplierSlot, SupplierState, DURATION_BUCKETS};

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

struct Family {
    mf: MetricFamily,
}

impl Family {
    fn new(name: &str, help: &str, kind: MetricType) -> Self {
        let mut mf = MetricFamily::default();
        mf.set_name(name.to_string());
        mf.set_help(help.to_string());
        mf.set_field_type(kind);
        Family { mf }
    }

    fn push(&mut self, labels: &[(&str, &str)], value: f64) {
        let mut m = proto::Metric::default();
        m.set_label(label_pairs(labels));
        match self.mf.get_field_type() {
            MetricType::COUNTER => {
                let mut c = proto::Counter::default();
                c.set_value(value);
                m.set_counter(c);
            }
            _ => {
                let mut g = proto::Gauge::default();
                g.set_value(value);
                m.set_gauge(g);
            }
        }
        self.mf.mut_metric().push(m);
    }
}

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

/// Collects every `supplier_*` and `balance_exporter_*` family from the store.
pub struct StoreCollector {
    store: Arc<Store>,
    desc: Vec<Desc>,
}

impl StoreCollector {
    pub fn new(store: Arc<Store>) -> Self {
        StoreCollector { store, desc: Vec::new() }
    }
}

impl Collector for StoreCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.desc.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        collect_families(&self.store)
    }
}

const CACHED: &str = " Cached from the last successful poll; /metrics never calls a supplier.";

/// Builds all families from the store's current states.
pub fn collect_families(store: &Store) -> Vec<MetricFamily> {
    let help = |s: &str| format!("{s}{CACHED}");
    let mut balance =
        Family::new("supplier_balance", &help("Total balance including frozen funds, in the currency's major unit."), MetricType::GAUGE);
    let mut frozen = Family::new(
        "supplier_balance_frozen",
        &help("Held funds (pending, escrowed, frozen), in major units; 0 when the API has no such notion."),
        MetricType::GAUGE,
    );
    let mut usable =
        Family::new("supplier_balance_usable", &help("Funds available for new orders now, in major units."), MetricType::GAUGE);
    let mut updated = Family::new(
        "supplier_balance_updated_timestamp_seconds",
        &help("When the supplier computed the balance, or when it was fetched if the supplier does not say."),
        MetricType::GAUGE,
    );
    let mut spent = Family::new(
        "supplier_balance_spent_total",
        "Sum of observed decreases of the total balance (ledger debits where a ledger exists), in major units.",
        MetricType::COUNTER,
    );
    let mut topped = Family::new(
        "supplier_balance_topped_up_total",
        "Sum of observed increases of the total balance (ledger credits where a ledger exists), in major units.",
        MetricType::COUNTER,
    );
    let mut low = Family::new(
        "supplier_balance_low_threshold",
        "Configured low-balance threshold (thresholds[].low), in major units.",
        MetricType::GAUGE,
    );
    let mut spend_rate = Family::new(
        "supplier_balance_spend_rate",
        &help(
            "Spend per second over `window` (15m, 30m, 1h, 1d) from the exporter's own poll times: spend plus frozen \
             (what orders took from usable) at the last successful poll minus at the latest successful poll at least \
             `window` before it, over the exact time between them; never below 0; absent until the history covers the \
             window. History older than 40 minutes is thinned to one poll per 5 minutes, so the 1h and 1d windows may \
             start up to 5 minutes earlier.",
        ),
        MetricType::GAUGE,
    );
    let mut runway = Family::new(
        "supplier_balance_runway_threshold_seconds",
        "Configured runway threshold (thresholds[].runway_days), in seconds.",
        MetricType::GAUGE,
    );
    let mut up = Family::new("supplier_up", "1 if the last poll of this supplier succeeded, 0 otherwise.", MetricType::GAUGE);
    let mut last_success = Family::new(
        "supplier_last_success_timestamp_seconds",
        "Time of the last successful poll (absent before the first success).",
        MetricType::GAUGE,
    );
    let mut interval = Family::new("supplier_poll_interval_seconds", "Configured poll interval.", MetricType::GAUGE);
    let mut polls = Family::new("supplier_polls_total", "Polls attempted.", MetricType::COUNTER);
    let mut last_poll = Family::new(
        "supplier_last_poll_timestamp_seconds",
        "End of the last poll attempt, success or failure (the load time until the first attempt ends); a stuck poller shows here.",
        MetricType::GAUGE,
    );
    let mut errors = Family::new("supplier_poll_errors_total", "Failed polls by reason.", MetricType::COUNTER);
    let mut row_errors = Family::new(
        "supplier_row_errors_total",
        "Rows of successful polls that could not be read (the other rows were kept).",
        MetricType::COUNTER,
    );
    let mut duration =
        Family::new("supplier_poll_duration_seconds", "Time taken by one poll, all its requests included.", MetricType::HISTOGRAM);
    let mut info = Family::new("supplier_info", "1 per configured supplier.", MetricType::GAUGE);
    let mut extra: BTreeMap<&'static str, Family> = BTreeMap::new();

    for slot in store.slots().iter() {
        let state = slot.state();
        let s = slot.name.as_str();
        info.push(&[("supplier", s), ("kind", slot.kind)], 1.0);
        interval.push(&[("supplier", s)], slot.poll_interval.as_secs_f64());
        polls.push(&[("supplier", s)], state.polls_total as f64);
        if let Some(t) = state.last_poll_timestamp() {
            last_poll.push(&[("supplier", s)], unix_seconds(t));
        }
        row_errors.push(&[("supplier", s)], state.row_errors_total as f64);
        for reason in Reason::ALL {
            let n = state.errors_total.get(&reason).copied().unwrap_or(0);
            errors.push(&[("supplier", s), ("reason", reason.as_str())], n as f64);
        }
        duration.mf.mut_metric().push(histogram(s, &state));
        if state.polled_once {
            up.push(&[("supplier", s)], if state.up { 1.0 } else { 0.0 });
        }
        if let Some(t) = state.last_success {
            last_success.push(&[("supplier", s)], unix_seconds(t));
        }
        for ((account, currency), b) in &state.balances {
            let l = [("supplier", s), ("account", account.as_str()), ("currency", currency.as_str())];
            balance.push(&l, to_f64(b.row.balance));
            frozen.push(&l, to_f64(b.row.frozen));
            usable.push(&l, to_f64(b.row.usable));
            updated.push(&l, unix_seconds(b.updated_at()));
        }
        for ((account, currency), history) in &state.spend_windows {
            for (window, length) in crate::spend_rate::WINDOWS {
                if let Some(rate) = history.rate(length) {
                    let l = [("supplier", s), ("account", account.as_str()), ("currency", currency.as_str()), ("window", window)];
                    spend_rate.push(&l, to_f64(rate));
                }
            }
        }
        for ((account, currency), v) in &state.spent_total {
            spent.push(&[("supplier", s), ("account", account), ("currency", currency)], to_f64(*v));
        }
        for ((account, currency), v) in &state.topped_up_total {
            topped.push(&[("supplier", s), ("account", account), ("currency", currency)], to_f64(*v));
        }
        push_thresholds(slot, &state, &mut low, &mut runway);
        for g in &state.gauges {
            push_extra(&mut extra, s, g.name, g.help, MetricType::GAUGE, &g.labels, to_f64(g.value));
        }
        for ((name, labels), (help, value)) in &state.counters {
            push_extra(&mut extra, s, name, help, MetricType::COUNTER, labels, to_f64(*value));
        }
    }

    let mut build = Family::new("balance_exporter_build_info", "Build of this exporter.", MetricType::GAUGE);
    build.push(&[("version", VERSION), ("revision", REVISION)], 1.0);
    let mut reload =
        Family::new("balance_exporter_config_last_reload_successful", "1 if the last config reload succeeded.", MetricType::GAUGE);
    reload.push(&[], if store.reload_ok() { 1.0 } else { 0.0 });
    let mut reload_time = Family::new(
        "balance_exporter_config_last_reload_success_timestamp_seconds",
        "Time of the last successful config load.",
        MetricType::GAUGE,
    );
    reload_time.push(&[], store.last_reload_success() as f64);

    let mut state_errors = Family::new(
        "balance_exporter_state_write_errors_total",
        "Writes of the --storage.path state that failed (counters are held back until a write succeeds).",
        MetricType::COUNTER,
    );
    if let Some(n) = store.state_write_errors() {
        state_errors.push(&[], n as f64);
    }

    let mut lateness = Family::new(
        "balance_exporter_poll_lateness_seconds",
        "How long after its planned instant each poll started (scheduler lag), all suppliers.",
        MetricType::HISTOGRAM,
    );
    let (cumulative, count, sum) = store.lateness.read();
    lateness.mf.mut_metric().push(histogram_metric(&[], &crate::snapshot::LATENESS_BUCKETS, &cumulative, count, sum));

    [
        balance,
        frozen,
        usable,
        updated,
        spent,
        topped,
        spend_rate,
        low,
        runway,
        up,
        last_success,
        interval,
        polls,
        last_poll,
        errors,
        row_errors,
        duration,
        info,
        build,
        reload,
        reload_time,
        state_errors,
        lateness,
    ]
    .into_iter()
    .chain(extra.into_values())
    .map(|f| f.mf)
    .filter(|mf| !mf.get_metric().is_empty())
    .collect()
}

fn push_extra(
    extra: &mut BTreeMap<&'static str, Family>,
    supplier: &str,
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    labels: &[(&'static str, String)],
    value: f64,
) {
    let family = extra.entry(name).or_insert_with(|| Family::new(name, help, kind));
    let mut all: Vec<(&str, &str)> = vec![("supplier", supplier)];
    all.extend(labels.iter().map(|(k, v)| (*k, v.as_str())));
    family.push(&all, value);
}

/// Threshold gauges carry the same labels as the balances they apply to, so
/// rules join them `on(supplier, account, currency)`.
fn push_thresholds(slot: &SupplierSlot, state: &SupplierState, low: &mut Family, runway: &mut Family) {
    for (account, currency) in state.balances.keys() {
        let Some(t) = crate::config::Threshold::applying_to(&slot.thresholds, account, currency) else { continue };
        let l = [("supplier", slot.name.as_str()), ("account", account.as_str()), ("currency", currency.as_str())];
        if let Some(v) = t.low {
            low.push(&l, to_f64(v));
        }
        if let Some(v) = t.runway_days {
            runway.push(&l, to_f64(v) * 86_400.0);
        }
    }
}

fn histogram(supplier: &str, state: &SupplierState) -> proto::Metric {
    let d = &state.duration;
    histogram_metric(&[("supplier", supplier)], &DURATION_BUCKETS, &d.cumulative, d.count, d.sum)
}

fn histogram_metric(labels: &[(&str, &str)], bounds: &[f64], cumulative: &[u64], count: u64, sum: f64) -> proto::Metric {
    let mut h = proto::Histogram::default();
    h.set_sample_count(count);
    h.set_sample_sum(sum);
    let buckets = bounds
        .iter()
        .zip(cumulative.iter())
        .map(|(bound, count)| {
            let mut b = proto::Bucket::default();
            b.set_upper_bound(*bound);
            b.set_cumulative_count(*count);
            b
        })
        .collect();
    h.set_bucket(buckets);
    let mut m = proto::Metric::default();
    m.set_label(label_pairs(labels));
    m.set_histogram(h);
    m
}

/// One rendered exposition body.
#[derive(Clone)]
pub struct Rendered {
    pub generation: u64,
    pub text: Bytes,
    gzip: Arc<Mutex<Option<Bytes>>>,
}

impl Rendered {
    /// The gzip form, compressed at most once per generation.
    pub fn gzip(&self) -> Bytes {
        let mut slot = self.gzip.lock().unwrap_or_else(|e| e.into_inner());
        slot.get_or_insert_with(|| {
            let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(self.text.len() / 4), flate2::Compression::fast());
            enc.write_all(&self.text).expect("writing to a Vec cannot fail");
            Bytes::from(enc.finish().expect("finishing a Vec cannot fail"))
        })
        .clone()
    }
}

/// Renders the registry once per store generation.
pub struct Renderer {
    store: Arc<Store>,
    registry: Registry,
    cache: Mutex<Option<Rendered>>,
}

impl Renderer {
    pub fn new(store: Arc<Store>) -> Self {
        let registry = Registry::new();
        registry.register(Box::new(StoreCollector::new(store.clone()))).expect("registering the store collector on a fresh registry");
        Renderer { store, registry, cache: Mutex::new(None) }
    }

    /// The current exposition, re-rendered only if the store changed.
    pub fn render(&self) -> Rendered {
        let generation = self.store.generation();
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = cache.as_ref().filter(|r| r.generation == generation) {
            return r.clone();
        }
        let mut text = Vec::with_capacity(cache.as_ref().map_or(4096, |r| r.text.len() + 1024));
        TextEncoder::new().encode(&self.registry.gather(), &mut text).expect("text encoding into a Vec");
        // Size of the body above, so dashboards can watch scrape size grow.
        let mut size =
            Family::new("balance_exporter_scrape_bytes", "Size in bytes of the /metrics body, excluding this metric.", MetricType::GAUGE);
        size.push(&[], text.len() as f64);
        TextEncoder::new().encode(&[size.mf], &mut text).expect("text encoding into a Vec");
        let rendered = Rendered { generation, text: Bytes::from(text), gzip: Arc::new(Mutex::new(None)) };
        *cache = Some(rendered.clone());
        rendered
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::poll::BalanceRow;
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
        let text = String::from_utf8(Renderer::new(store).render().text.to_vec()).unwrap();
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
}
