//! When to poll: one task per supplier, intervals with jitter, backoff after
//! failures, shared rate limiters, reload and shutdown.
//!
//! A supplier's task only ever waits on its own requests, so a supplier that
//! hangs or fails delays no other. Limiters and kind memory are kept by key
//! across reloads, so a reload neither resets `min_interval` spacing nor
//! forgets which ledger entries were already counted.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::client::Clients;
use crate::config::{Config, SupplierConfig};
use crate::debug::DebugRun;
use crate::history::{History, PollReport};
use crate::poll::{KindMemory, PollError, PollOutput, Reason};
use crate::snapshot::{Store, SupplierSlot};
use crate::storage::Storage;
use crate::upstream::{Limiter, PollTrace, TraceData, Upstream};

/// The first poll happens within this long of start (or reload), spread by jitter.
const MAX_INITIAL_DELAY: Duration = Duration::from_secs(3);
/// The longest a debug poll (`/-/debug/poll`) may take, waits for later requests' slots included.
pub const DEBUG_POLL_TIMEOUT: Duration = Duration::from_secs(30);
/// Base of the fast retry after a transient failure; doubles up to `poll_interval`.
const FAILURE_BACKOFF_BASE: Duration = Duration::from_secs(5);
/// How often, with `--storage.path`, the trend pictures are written (and once more at shutdown).
pub const TRENDS_WRITE_INTERVAL: Duration = Duration::from_secs(300);

/// Delay until the next poll. `jitter` in [0, 1).
///
/// After success: `poll_interval` ±10%. After a transient failure (rate limit,
/// 5xx, timeout, connect, decode): capped exponential backoff from 5 s, so a
/// blip heals well before the next regular poll. After auth/forbidden/not
/// found/internal: the regular interval (retrying a revoked key, or a bug of
/// ours, faster helps no one).
pub fn next_delay(poll_interval: Duration, outcome: Option<Reason>, consecutive_failures: u32, jitter: f64) -> Duration {
    let jitter = jitter.clamp(0.0, 1.0);
    match outcome {
        None | Some(Reason::Auth | Reason::Forbidden | Reason::NotFound | Reason::Internal) => poll_interval.mul_f64(0.9 + 0.2 * jitter),
        Some(_) => {
            let exp = FAILURE_BACKOFF_BASE.saturating_mul(1 << consecutive_failures.saturating_sub(1).min(16));
            exp.min(poll_interval).mul_f64(0.75 + 0.25 * jitter)
        }
    }
}

// ---- panics ----

thread_local! {
    /// True while this thread runs guarded poll code: the panic hook then
    /// stays quiet (the poll loop logs the panic, redacted) and notes where.
    static GUARDED: Cell<bool> = const { Cell::new(false) };
    static PANIC_LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs (once) a panic hook that keeps panics inside polls off stderr:
/// their message may quote upstream text, so the poll loop logs it through
/// the supplier's redaction instead. Other panics go to the previous hook.
pub fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if GUARDED.get() {
                let at = info.location().map(|l| format!("{}:{}", l.file(), l.line()));
                PANIC_LOCATION.with_borrow_mut(|p| *p = at);
            } else {
                previous(info);
            }
        }));
    });
}

/// A panic caught by [`guard`] or [`Guarded`]: its message and, when the
/// hook saw it, where it happened (`file:line:column`). Not yet redacted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("panic{}: {message}", location.as_ref().map(|at| format!(" at {at}")).unwrap_or_default())]
pub struct Panic {
    pub message: String,
    pub location: Option<String>,
}

/// Runs `f` with panics caught: `Err` holds the panic's message and location.
fn guard<T>(f: impl FnOnce() -> T) -> Result<T, Panic> {
    let was = GUARDED.replace(true);
    let result = std::panic::catch_unwind(AssertUnwindSafe(f));
    GUARDED.set(was);
    result.map_err(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-text panic payload".to_string());
        Panic { message, location: PANIC_LOCATION.with_borrow_mut(Option::take) }
    })
}

/// A future whose panics are caught like [`guard`]'s; it yields `Err` once
/// the inner future panicked (and is never polled again).
pub struct Guarded<F> {
    inner: Pin<Box<F>>,
}

/// Wraps a poll future so a panic in it fails the poll instead of its task.
pub fn guarded<F: Future>(future: F) -> Guarded<F> {
    Guarded { inner: Box::pin(future) }
}

impl<F: Future> Future for Guarded<F> {
    type Output = Result<F::Output, Panic>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.inner.as_mut();
        match guard(move || inner.poll(cx)) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

// ---- the poll loop ----

/// What one poll attempt produced.
#[derive(Debug)]
pub struct Attempt {
    pub result: Result<PollOutput, PollError>,
    /// The kind's persistent memory after the attempt (written with the state).
    pub memory: Option<serde_json::Value>,
    /// What its requests did (requests made, last status, failure snippet), for the poll history.
    pub trace: TraceData,
}

impl From<Result<PollOutput, PollError>> for Attempt {
    fn from(result: Result<PollOutput, PollError>) -> Attempt {
        Attempt { result, memory: None, trace: TraceData::default() }
    }
}

/// Where a poll loop publishes, and how it writes and redacts.
#[derive(Clone)]
pub struct LoopContext {
    pub store: Arc<Store>,
    pub slot: Arc<SupplierSlot>,
    pub cancel: CancellationToken,
    pub initial_delay: Duration,
    /// `--storage.path`: every attempt's state is written before it is published.
    pub storage: Option<Arc<Storage>>,
    /// The supplier's secret redaction, for panic messages.
    pub redact: Arc<dyn Fn(&str) -> String + Send + Sync>,
    /// Where each attempt is recorded (the supplier page's poll history).
    pub history: Option<Arc<History>>,
}

impl LoopContext {
    /// A context without storage or secrets (tests, benches).
    pub fn new(store: Arc<Store>, slot: Arc<SupplierSlot>, cancel: CancellationToken, initial_delay: Duration) -> Self {
        LoopContext { store, slot, cancel, initial_delay, storage: None, redact: Arc::new(str::to_string), history: None }
    }
}

/// Runs one supplier's poll loop until `cancel`. `poll` performs one poll.
///
/// Nothing a poll does can end the loop: a panic in the poll or in applying
/// its result becomes a failed poll with `reason="internal"` (logged once per
/// distinct message), the last good balances stay, and the next poll runs
/// on schedule.
pub async fn run_poll_loop<F, Fut>(ctx: LoopContext, mut poll: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Attempt>,
{
    let LoopContext { store, slot, cancel, initial_delay, storage, redact, history } = ctx;
    let mut next = Instant::now() + initial_delay;
    let mut failures = 0u32;
    let mut last_panic: Option<String> = None;
    // Memory last persisted; kept when an attempt panicked before reporting it.
    let mut memory: Option<serde_json::Value> = None;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep_until(next) => {}
        }
        let started = Instant::now();
        let started_at = SystemTime::now();
        store.lateness.observe(started.saturating_duration_since(next));
        let attempt = tokio::select! {
            _ = cancel.cancelled() => return,
            a = guarded(poll()) => a,
        };
        let took = started.elapsed();
        store.poll_duration.observe(took);
        let now = SystemTime::now();
        let mut trace = TraceData::default();
        let result = match attempt {
            Ok(a) => {
                if a.memory.is_some() {
                    memory = a.memory;
                }
                trace = a.trace;
                a.result
            }
            Err(panic) => Err(PollError::new(Reason::Internal, redact(&panic.to_string()))),
        };
        let working = slot.working_state();
        // Boxed: the future of an idle task then keeps no room for a state.
        let state = Box::new(guard(|| working.after_poll(result, took, now)).unwrap_or_else(|panic| {
            let e = PollError::new(Reason::Internal, redact(&format!("applying the poll: {panic}")));
            working.after_poll(Err(e), took, now)
        }));
        let outcome = (!state.up).then(|| state.last_error.as_ref().map(|e| e.reason)).flatten();
        if let Some(history) = &history {
            let failure = (!state.up).then(|| state.last_error.as_ref().map(|e| (e.reason, e.message.clone()))).flatten();
            history.record(&slot.name, &PollReport::new(started_at, took, failure, &trace));
        }
        match (outcome, &state.last_error) {
            (None, _) => {
                failures = 0;
                for e in &state.last_row_errors {
                    tracing::warn!(supplier = %slot.name, error = %e, "row skipped");
                }
                tracing::debug!(supplier = %slot.name, balances = state.balances.len(), took_ms = took.as_millis() as u64, "poll ok");
            }
            (Some(Reason::Internal), Some(e)) => {
                failures += 1;
                if last_panic.as_deref() != Some(e.message.as_str()) {
                    tracing::error!(supplier = %slot.name, reason = "internal", error = %e.message, "poll failed by a bug of the exporter (caught; polling goes on; please report it)");
                    last_panic = Some(e.message.clone());
                }
            }
            (Some(reason), e) => {
                failures += 1;
                let message = e.as_ref().map(|e| e.message.as_str()).unwrap_or_default();
                tracing::warn!(supplier = %slot.name, reason = reason.as_str(), error = %message, "poll failed");
            }
        }
        match &storage {
            None => store.publish(&slot, *state),
            Some(storage) => {
                // Boxed while it runs: an idle task holds no room for it.
                let written = tokio::select! {
                    _ = cancel.cancelled() => return,
                    w = Box::pin(storage.put(&slot.name, slot.kind, &state, memory.clone())) => w,
                };
                match written {
                    Ok(()) => store.publish(&slot, *state),
                    Err(e) => {
                        // Balances and health go out; counters wait until durable.
                        store.state_write_failed();
                        tracing::warn!(supplier = %slot.name, error = %crate::server::error_chain(&e), "state write failed; counters held back");
                        let published = state.with_counters_of(&slot.state());
                        store.publish_held(&slot, *state, published);
                    }
                }
            }
        }
        let delay = next_delay(slot.poll_interval, outcome, failures, rand::random::<f64>());
        next = (started + delay).max(Instant::now());
    }
}

/// Whether two configs of a supplier poll identically (they may differ in thresholds and top-up window).
fn polls_the_same(a: &SupplierConfig, b: &SupplierConfig) -> bool {
    SupplierConfig { thresholds: b.thresholds.clone(), topup_window: b.topup_window.clone(), ..a.clone() } == *b
}

struct Task {
    /// Shared with the task's poll closure.
    config: Arc<SupplierConfig>,
    cancel: CancellationToken,
}

/// Owns the poll tasks and applies configs to them.
pub struct Scheduler {
    store: Arc<Store>,
    /// One HTTP client per distinct proxy/TLS setting.
    clients: Clients,
    storage: Option<Arc<Storage>>,
    /// The last polls of every supplier (saved in the storage directory when there is one).
    history: Arc<History>,
    limiters: Mutex<HashMap<String, Arc<Limiter>>>,
    memories: Mutex<HashMap<String, Arc<tokio::sync::Mutex<KindMemory>>>>,
    tasks: Mutex<HashMap<String, Task>>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    /// Whether the periodic trends write runs (started by the first `apply` with storage).
    trends_writer: std::sync::Once,
}

impl Scheduler {
    pub fn new(store: Arc<Store>) -> Self {
        Scheduler::with_storage(store, None)
    }

    /// A scheduler whose polls write their state to `storage` before publishing it.
    pub fn with_storage(store: Arc<Store>, storage: Option<Arc<Storage>>) -> Self {
        install_panic_hook();
        let history = Arc::new(storage.as_ref().map_or_else(History::in_memory, |s| History::persisted(s.dir())));
        Scheduler {
            store,
            clients: Clients::default(),
            storage,
            history,
            limiters: Mutex::default(),
            memories: Mutex::default(),
            tasks: Mutex::default(),
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
            trends_writer: std::sync::Once::new(),
        }
    }

    /// Makes the running tasks match `config`: new suppliers start (from
    /// their persisted state when there is one), removed ones stop (and
    /// leave `/metrics` and the state directory), changed ones restart
    /// keeping state.
    pub fn apply(&self, config: &Config) {
        let mut restored_memory = HashMap::new();
        let slots = self.store.set_suppliers_restoring(&config.suppliers, &mut |cfg| {
            let storage = self.storage.as_ref()?;
            let trends = storage.take_trends(&cfg.name);
            let mut state = match storage.take_restored(&cfg.name, cfg.kind.name()) {
                Some(restored) => {
                    if let Some(m) = restored.memory {
                        restored_memory.insert(cfg.name.clone(), m);
                    }
                    restored.state
                }
                None if trends.is_empty() => return None,
                None => crate::snapshot::SupplierState::loaded(SystemTime::now()),
            };
            state.trends = trends;
            Some(state)
        });
        if let Some(storage) = &self.storage {
            self.trends_writer.call_once(|| {
                let (store, storage, stop) = (self.store.clone(), storage.clone(), self.shutdown.clone());
                self.tracker.spawn(async move {
                    let mut tick = tokio::time::interval_at(Instant::now() + TRENDS_WRITE_INTERVAL, TRENDS_WRITE_INTERVAL);
                    loop {
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = tick.tick() => write_trends(&store, &storage).await,
                        }
                    }
                });
            });
        }
        let by_name: HashMap<&str, &SupplierConfig> = config.suppliers.iter().map(|s| (s.name.as_str(), s)).collect();
        if let Some(storage) = &self.storage {
            storage.retain(&|name| by_name.contains_key(name));
        }
        self.history.retain(&|name| by_name.contains_key(name));
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.retain(|name, task| match by_name.get(name.as_str()) {
            // Only the thresholds changed: they are read from the new slot, so
            // the running task (and a poll in flight) carries on.
            Some(s) if polls_the_same(s, &task.config) => {
                task.config = Arc::new((*s).clone());
                true
            }
            other => {
                task.cancel.cancel();
                if let (None, Some(storage)) = (other, &self.storage) {
                    storage.drop_supplier(name);
                }
                false
            }
        });
        {
            let mut memories = self.memories.lock().unwrap_or_else(|e| e.into_inner());
            memories.retain(|name, _| by_name.contains_key(name.as_str()));
            for (name, value) in restored_memory {
                memories.insert(name, Arc::new(tokio::sync::Mutex::new(KindMemory::restored(value))));
            }
        }
        self.clients.retain(&config.suppliers.iter().map(|s| &s.client).collect::<Vec<_>>());
        for (cfg, slot) in config.suppliers.iter().zip(slots) {
            if tasks.contains_key(&cfg.name) {
                // Unchanged: the running task keeps polling; it shares its state cell with the new slot.
                continue;
            }
            let cancel = self.shutdown.child_token();
            let config = Arc::new(cfg.clone());
            self.spawn(config.clone(), slot, cancel.clone());
            tasks.insert(cfg.name.clone(), Task { config, cancel });
        }
    }

    /// The supplier's HTTP handle: its (shared) limiter, its client, its kind's reading of errors.
    fn upstream_for(&self, cfg: &SupplierConfig) -> Option<Upstream> {
        let limiter = self.limiters.lock().unwrap_or_else(|e| e.into_inner()).entry(cfg.limiter_key()).or_default().clone();
        // The config loader built this client once already, so this does not fail in practice.
        let client = match self.clients.get(&cfg.client) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(supplier = %cfg.name, error = %crate::server::error_chain(&e), "cannot build the HTTP client; not polling this supplier");
                return None;
            }
        };
        Some(Upstream::new(client, &cfg.upstream_settings(), limiter).reading_errors_with(cfg.kind.error_reader()))
    }

    fn spawn(&self, cfg: Arc<SupplierConfig>, slot: Arc<SupplierSlot>, cancel: CancellationToken) {
        let memory = self.memories.lock().unwrap_or_else(|e| e.into_inner()).entry(cfg.name.clone()).or_default().clone();
        let Some(upstream) = self.upstream_for(&cfg) else { return };
        let initial = MAX_INITIAL_DELAY.min(cfg.poll_interval / 10).mul_f64(rand::random::<f64>());
        // One copy, shared by the poll closure and the redaction.
        let upstream = Arc::new(upstream);
        let redactor = upstream.clone();
        let ctx = LoopContext {
            store: self.store.clone(),
            slot,
            cancel,
            initial_delay: initial,
            storage: self.storage.clone(),
            redact: Arc::new(move |text: &str| redactor.redact(text)),
            history: Some(self.history.clone()),
        };
        self.tracker.spawn(run_poll_loop(ctx, move || {
            let (cfg, upstream, memory) = (cfg.clone(), upstream.clone(), memory.clone());
            // Boxed: an idle task then holds a pointer, not room for the largest
            // kind's poll state (several KiB × 10,000 suppliers).
            Box::pin(async move {
                let mut memory = memory.lock().await;
                let trace = PollTrace::summary();
                // Caught here, with the memory lock still held, so what the
                // kind left in memory is saved either way.
                let result = guarded(cfg.kind.poll(&upstream.traced(trace.clone()), &mut memory)).await.unwrap_or_else(|panic| {
                    Err(PollError::new(Reason::Internal, upstream.redact(&format!("{} kind: {panic}", cfg.kind.name()))))
                });
                Attempt { result, memory: memory.saved(), trace: trace.data() }
            })
        }));
    }

    /// The poll history of every supplier polled here.
    pub fn history(&self) -> Arc<History> {
        self.history.clone()
    }

    /// Polls `supplier` once now for `/-/debug/poll`, `None` when no such
    /// supplier is polled here. Nothing of it is published, recorded or
    /// counted: the kind polls with a scratch copy of its memory (ledger
    /// cursors do not move), and the result goes only to the caller. Its
    /// requests go through the supplier's limiter; the first one takes a
    /// free slot or the poll ends at once with the wait in the trace.
    pub async fn debug_poll(&self, supplier: &str) -> Option<DebugRun> {
        let cfg = self.tasks.lock().unwrap_or_else(|e| e.into_inner()).get(supplier).map(|t| t.config.clone())?;
        let upstream = self.upstream_for(&cfg)?;
        let memory = self.memories.lock().unwrap_or_else(|e| e.into_inner()).get(supplier).cloned();
        let saved = match memory {
            Some(m) => m.lock().await.saved(),
            None => None,
        };
        let mut scratch = saved.map_or_else(KindMemory::default, KindMemory::restored);
        let trace = PollTrace::detailed();
        let started = Instant::now();
        let polled = tokio::time::timeout(DEBUG_POLL_TIMEOUT, guarded(cfg.kind.poll(&upstream.traced(trace.clone()), &mut scratch))).await;
        let result = match polled {
            Ok(Ok(result)) => result,
            Ok(Err(panic)) => Err(PollError::new(Reason::Internal, upstream.redact(&format!("{} kind: {panic}", cfg.kind.name())))),
            Err(_) => Err(PollError::new(
                Reason::Timeout,
                format!("debug poll: not done within {}", humantime::format_duration(DEBUG_POLL_TIMEOUT)),
            )),
        };
        Some(DebugRun { supplier: cfg.name.clone(), kind: cfg.kind.name(), result, trace: trace.data(), took: started.elapsed() })
    }

    /// Stops every poll task, waiting at most `grace` for them to finish,
    /// then saves the poll history and flushes the state directory.
    pub async fn shutdown(&self, grace: Duration) {
        self.shutdown.cancel();
        self.tracker.close();
        let _ = tokio::time::timeout(grace, self.tracker.wait()).await;
        let history = self.history.clone();
        let _ = tokio::task::spawn_blocking(move || history.save()).await;
        if let Some(storage) = &self.storage {
            write_trends(&self.store, storage).await;
            storage.flush().await;
            let storage = storage.clone();
            let _ = tokio::task::spawn_blocking(move || storage.close()).await;
        }
    }
}

/// Writes every supplier's trends to the state directory (off the async
/// threads); a failure is a warning, and the next write tries again.
pub async fn write_trends(store: &Store, storage: &Arc<Storage>) {
    let states: Vec<_> = store.slots().iter().map(|slot| (slot.clone(), slot.state())).collect();
    let series = states.iter().flat_map(|(slot, state)| {
        state.trends.iter().map(move |((account, currency), trend)| (slot.name.as_str(), account.as_str(), currency.as_str(), trend))
    });
    let bytes = crate::trend::encode(series);
    let storage = storage.clone();
    match tokio::task::spawn_blocking(move || storage.write_trends(&bytes)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %crate::server::error_chain(&e), "writing the trend pictures failed; the next write tries again")
        }
        Err(e) => tracing::warn!(error = %e, "the trends writer panicked; the next write tries again"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::poll::BalanceRow;
    use crate::storage::fault;

    #[test]
    fn a_caught_panic_reads_as_before() {
        let at = Panic { message: "boom".into(), location: Some("src/x.rs:1:2".into()) };
        assert_eq!(at.to_string(), "panic at src/x.rs:1:2: boom");
        assert_eq!(Panic { message: "boom".into(), location: None }.to_string(), "panic: boom");
        assert_eq!(guard(|| 7).unwrap(), 7);
    }
    use rust_decimal::Decimal;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn delay_jitters_around_interval_and_backs_off_on_transient_failure() {
        let five_min = Duration::from_secs(300);
        assert_eq!(next_delay(five_min, None, 0, 0.0), Duration::from_secs(270));
        assert_eq!(next_delay(five_min, None, 0, 1.0), Duration::from_secs(330));
        assert_eq!(next_delay(five_min, Some(Reason::Auth), 3, 0.0), Duration::from_secs(270));
        assert_eq!(next_delay(five_min, Some(Reason::ServerError), 1, 1.0), Duration::from_secs(5));
        assert_eq!(next_delay(five_min, Some(Reason::ServerError), 3, 1.0), Duration::from_secs(20));
        assert_eq!(next_delay(five_min, Some(Reason::Timeout), 20, 1.0), five_min);
        assert_eq!(next_delay(five_min, Some(Reason::Timeout), 20, 0.0), Duration::from_secs(225));
    }

    fn test_config(name: &str, poll_interval: Duration) -> SupplierConfig {
        let text = format!(
            "suppliers:\n  - {{name: {name}, kind: foxreload, base_url: 'http://127.0.0.1:9', poll_interval: {}ms}}\n",
            poll_interval.as_millis()
        );
        crate::config::load_str(&text, &|_| None).unwrap().suppliers.remove(0)
    }

    #[test]
    fn threshold_changes_do_not_restart_polling() {
        let a = test_config("s", Duration::from_secs(60));
        let mut b = a.clone();
        b.thresholds.push(crate::config::Threshold {
            currency: "USD".into(),
            account: None,
            low: Some(Decimal::ONE),
            runway_days: None,
            topup_target_days: Decimal::from(7),
        });
        b.topup_window = crate::config::load_str(
            "global: {topup_window: {timezone: UTC, days: [mon], hours: '09:00-17:00', lead_time: 1h}}\nsuppliers: [{name: s, kind: foxreload}]\n",
            &|_| None,
        )
        .unwrap()
        .suppliers[0]
        .topup_window
        .clone();
        assert!(b.topup_window.is_some());
        assert!(polls_the_same(&a, &b));
        b.poll_interval = Duration::from_secs(30);
        assert!(!polls_the_same(&a, &b));
    }

    #[tokio::test(start_paused = true)]
    async fn loop_polls_on_schedule_and_backs_off_then_recovers() {
        let store = Arc::new(Store::default());
        let cfg = test_config("s", Duration::from_secs(60));
        let slot = store.set_suppliers(std::slice::from_ref(&cfg)).remove(0);
        let cancel = CancellationToken::new();
        let calls = Arc::new(Mutex::new(Vec::<Duration>::new()));
        let n = Arc::new(AtomicU32::new(0));
        let start = Instant::now();
        let (c2, n2) = (calls.clone(), n.clone());
        let ctx = LoopContext::new(store.clone(), slot.clone(), cancel.clone(), Duration::from_secs(2));
        let task = tokio::spawn(run_poll_loop(ctx, move || {
            c2.lock().unwrap().push(start.elapsed());
            let i = n2.fetch_add(1, Ordering::SeqCst);
            async move {
                if (1..=2).contains(&i) {
                    Err(PollError::new(Reason::ServerError, "http 500")).into()
                } else {
                    let b = Decimal::new(i as i64, 0);
                    Ok(PollOutput {
                        balances: vec![BalanceRow {
                            account: "main".into(),
                            currency: "USD".into(),
                            balance: b,
                            frozen: Decimal::ZERO,
                            usable: b,
                            updated_at: None,
                        }],
                        ..Default::default()
                    })
                    .into()
                }
            }
        }));
        tokio::time::sleep(Duration::from_secs(200)).await;
        cancel.cancel();
        task.await.unwrap();
        let calls = calls.lock().unwrap().clone();
        // first poll after the initial delay; then ~60s; failures retry after 3.75–5s and 7.5–10s.
        assert_eq!(calls[0], Duration::from_secs(2));
        let gaps: Vec<f64> = calls.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()).collect();
        assert!((54.0..=66.0).contains(&gaps[0]), "{gaps:?}");
        assert!((3.75..=5.0).contains(&gaps[1]), "{gaps:?}");
        assert!((7.5..=10.0).contains(&gaps[2]), "{gaps:?}");
        assert!((54.0..=66.0).contains(&gaps[3]), "{gaps:?}");
        let state = slot.state();
        assert!(state.up);
        assert_eq!(state.errors_total[&Reason::ServerError], 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_supplier_delays_no_other() {
        let store = Arc::new(Store::default());
        let cfgs = vec![test_config("hang", Duration::from_secs(10)), test_config("fast", Duration::from_secs(10))];
        let slots = store.set_suppliers(&cfgs);
        let cancel = CancellationToken::new();
        let fast_polls = Arc::new(AtomicU32::new(0));
        tokio::spawn(run_poll_loop(LoopContext::new(store.clone(), slots[0].clone(), cancel.clone(), Duration::ZERO), || {
            std::future::pending()
        }));
        let f = fast_polls.clone();
        tokio::spawn(run_poll_loop(LoopContext::new(store.clone(), slots[1].clone(), cancel.clone(), Duration::ZERO), move || {
            f.fetch_add(1, Ordering::SeqCst);
            async { Ok(PollOutput::default()).into() }
        }));
        tokio::time::sleep(Duration::from_secs(100)).await;
        assert!(fast_polls.load(Ordering::SeqCst) >= 9);
        assert!(!slots[0].state().polled_once);
        cancel.cancel();
    }

    fn fox_row(balance: &str) -> BalanceRow {
        let b = Decimal::from_scientific(balance).or_else(|_| Decimal::from_str_exact(balance)).unwrap();
        BalanceRow { account: "main".into(), currency: "USD".into(), balance: b, frozen: Decimal::ZERO, usable: b, updated_at: None }
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_poll_fails_with_reason_internal_and_polling_goes_on_on_schedule() {
        install_panic_hook();
        let store = Arc::new(Store::default());
        let slot = store.set_suppliers(&[test_config("s", Duration::from_secs(60))]).remove(0);
        let cancel = CancellationToken::new();
        let calls = Arc::new(Mutex::new(Vec::<Duration>::new()));
        let (c2, start) = (calls.clone(), Instant::now());
        let mut ctx = LoopContext::new(store.clone(), slot.clone(), cancel.clone(), Duration::ZERO);
        ctx.redact = Arc::new(|t: &str| t.replace("sk_live_42", "<secret>"));
        let task = tokio::spawn(run_poll_loop(ctx, move || {
            let i = {
                let mut c = c2.lock().unwrap();
                c.push(start.elapsed());
                c.len()
            };
            async move {
                tokio::task::yield_now().await;
                if (2..=3).contains(&i) {
                    panic!("parser bug near sk_live_42 (call {i})");
                }
                Attempt::from(Ok(PollOutput { balances: vec![fox_row(if i == 1 { "284.50" } else { "280.00" })], ..Default::default() }))
            }
        }));
        tokio::time::sleep(Duration::from_secs(100)).await;
        let s = slot.state();
        assert!(!s.up);
        assert_eq!(s.errors_total[&Reason::Internal], 1, "one panic so far");
        let e = s.last_error.as_ref().unwrap();
        assert!(e.message.contains("parser bug near <secret> (call 2)"), "{}", e.message);
        assert!(!e.message.contains("sk_live_42"));
        assert_eq!(s.balances[&("main".to_string(), "USD".to_string())].row.balance.to_string(), "284.50", "last good balance kept");
        tokio::time::sleep(Duration::from_secs(100)).await;
        cancel.cancel();
        task.await.expect("the task survived its panics");
        let calls = calls.lock().unwrap().clone();
        assert!(calls.len() >= 4, "{calls:?}");
        // After a panic the next poll is at the regular interval (a bug does not heal faster).
        for gap in calls.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()) {
            assert!((54.0..=66.0).contains(&gap), "{calls:?}");
        }
        let s = slot.state();
        assert!(s.up, "recovered");
        assert_eq!(s.errors_total[&Reason::Internal], 2);
        assert_eq!(s.spent_total[&("main".to_string(), "USD".to_string())].to_string(), "4.50");
    }

    #[tokio::test(start_paused = true)]
    async fn a_swing_beyond_the_decimal_range_fails_one_poll_with_decode_then_recovers() {
        let store = Arc::new(Store::default());
        let slot = store.set_suppliers(&[test_config("s", Duration::from_secs(60))]).remove(0);
        let cancel = CancellationToken::new();
        let answers = Arc::new(Mutex::new(vec!["284.50", "-7e28", "-7e28", "-7e28", "7e28"]));
        let a2 = answers.clone();
        let ctx = LoopContext::new(store.clone(), slot.clone(), cancel.clone(), Duration::ZERO);
        let task = tokio::spawn(run_poll_loop(ctx, move || {
            let b = a2.lock().unwrap().pop().unwrap_or("284.50");
            async move { Attempt::from(Ok(PollOutput { balances: vec![fox_row(b)], ..Default::default() })) }
        }));
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(slot.state().balances.values().next().unwrap().row.balance.to_string(), "70000000000000000000000000000");
        // The swing comes at ~60 s and is retried after 3.75–5 s and 7.5–10 s.
        tokio::time::sleep(Duration::from_secs(40)).await;
        let s = slot.state();
        assert!(!s.up);
        assert!(s.errors_total[&Reason::Decode] >= 1);
        assert!(s.last_error.as_ref().unwrap().message.contains("supplier_balance"), "names the field: {:?}", s.last_error);
        assert_eq!(s.balances.values().next().unwrap().row.balance.to_string(), "70000000000000000000000000000", "last good kept");
        tokio::time::sleep(Duration::from_secs(200)).await;
        cancel.cancel();
        task.await.unwrap();
        let s = slot.state();
        assert!(s.up);
        assert_eq!(s.errors_total[&Reason::Decode], 3);
        assert_eq!(s.balances.values().next().unwrap().row.balance.to_string(), "284.50", "back to the true balance");
        // 7e28 − 284.50 needs 31 significant digits; Decimal keeps 29 and rounds.
        assert_eq!(s.spent_total.values().next().unwrap().to_string(), "69999999999999999999999999716");
    }

    #[tokio::test]
    async fn a_kind_that_panics_is_caught_by_the_scheduler_and_recovers() {
        use wiremock::matchers::{method, path};
        use wiremock::{Mock, MockServer, ResponseTemplate};
        install_panic_hook();
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/balance"))
            .respond_with(ResponseTemplate::new(200).set_body_string(r#"{"balance": {"amount": 284.50, "currency": "USD"}}"#))
            .mount(&server)
            .await;
        let text = format!(
            "suppliers:\n  - {{name: fox, kind: foxreload, base_url: '{}', poll_interval: 400ms, min_interval: 0s, auth: {{bearer_token: sk_fault_secret}}}}\n",
            server.uri()
        );
        let config = crate::config::load_str(&text, &|_| None).unwrap();
        let base_url = format!("{}/", server.uri());
        let store = Arc::new(Store::default());
        let scheduler = Scheduler::new(store.clone());
        scheduler.apply(&config);
        let slot = store.slots()[0].clone();
        let wait_for = |want: &'static str| {
            let slot = slot.clone();
            async move {
                for _ in 0..100 {
                    let s = slot.state();
                    let ok = match want {
                        "up" => s.up,
                        _ => s.errors_total.get(&Reason::Internal).copied().unwrap_or(0) >= 2,
                    };
                    if ok {
                        return s;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                panic!("supplier never reached {want}: {:?}", slot.state());
            }
        };
        wait_for("up").await;
        crate::kinds::fault::arm(&base_url, true);
        let s = wait_for("two internal failures").await;
        crate::kinds::fault::arm(&base_url, false);
        assert!(!s.up);
        let message = &s.last_error.as_ref().unwrap().message;
        assert!(message.starts_with("foxreload kind: panic at src/kinds/mod.rs"), "{message}");
        assert!(!message.contains("sk_fault_secret"), "redacted: {message}");
        assert_eq!(s.balances.values().next().unwrap().row.balance.to_string(), "284.50", "last good kept");
        let s = wait_for("up").await;
        assert!(s.polls_total >= 4);
        scheduler.shutdown(Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn while_state_writes_fail_counters_are_held_back_and_polling_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Arc::new(Storage::open(dir.path()).unwrap());
        let store = Arc::new(Store::default());
        store.enable_state_writes();
        let slot = store.set_suppliers(&[test_config("s", Duration::from_millis(100))]).remove(0);
        let cancel = CancellationToken::new();
        let polls = Arc::new(AtomicU32::new(0));
        let p2 = polls.clone();
        let mut ctx = LoopContext::new(store.clone(), slot.clone(), cancel.clone(), Duration::ZERO);
        ctx.storage = Some(storage.clone());
        let task = tokio::spawn(run_poll_loop(ctx, move || {
            // 1000, 990, 980, …: each poll spends 10.
            let i = p2.fetch_add(1, Ordering::SeqCst);
            let balance = (1000 - 10 * i64::from(i)).to_string();
            async move { Attempt::from(Ok(PollOutput { balances: vec![fox_row(&balance)], ..Default::default() })) }
        }));
        let key = ("main".to_string(), "USD".to_string());
        let spent = |slot: &SupplierSlot| slot.state().spent_total.get(&key).copied().unwrap_or_default();
        let wait = |n: u32| {
            let polls = polls.clone();
            async move {
                while polls.load(Ordering::SeqCst) < n {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        };
        wait(3).await;
        let before = spent(&slot);
        assert!(before >= Decimal::from(20), "{before}");
        fault::fail_writes(dir.path(), true);
        let failing_from = polls.load(Ordering::SeqCst);
        wait(failing_from + 3).await;
        let s = slot.state();
        assert!(s.up, "polling goes on and balances are published");
        let latest = s.balances[&key].row.balance;
        assert!(latest <= Decimal::from(1000 - 10 * i64::from(failing_from + 1)), "{latest}");
        assert!(spent(&slot) <= before + Decimal::from(10), "held back: {} (was {before})", spent(&slot));
        assert!(store.state_write_errors().unwrap() >= 2);
        assert!(slot.working_state().spent_total[&key] > spent(&slot), "the working state keeps counting");
        fault::fail_writes(dir.path(), false);
        let recovered_at = polls.load(Ordering::SeqCst);
        wait(recovered_at + 2).await;
        cancel.cancel();
        task.await.unwrap();
        // Published again once durable: the full spend, nothing lost while writes failed.
        let s = slot.state();
        assert_eq!(spent(&slot), Decimal::from(1000) - s.balances[&key].row.balance);
        storage.close();
        drop(storage);
        let reopened = Storage::open(dir.path()).unwrap();
        let restored = reopened.take_restored("s", "foxreload").unwrap();
        assert!(restored.state.spent_total[&key] >= spent(&slot) - Decimal::from(10));
        assert!(restored.state.spent_total[&key] <= spent(&slot));
    }

    #[tokio::test]
    async fn removed_and_renamed_suppliers_lose_their_state_kept_ones_restart_from_it() {
        let dir = tempfile::tempdir().unwrap();
        let config = |names: &[&str]| {
            let mut text = String::from("suppliers:\n");
            for n in names {
                text.push_str(&format!("  - {{name: {n}, kind: foxreload, base_url: 'http://127.0.0.1:9', poll_interval: 50ms, min_interval: 0s, max_retries: 0}}\n"));
            }
            crate::config::load_str(&text, &|_| None).unwrap()
        };
        let run = |names: &'static [&'static str], then: Option<&'static [&'static str]>| {
            let dir = dir.path().to_path_buf();
            async move {
                let store = Arc::new(Store::default());
                let storage = Arc::new(Storage::open(&dir).unwrap());
                let scheduler = Scheduler::with_storage(store.clone(), Some(storage));
                scheduler.apply(&config(names));
                let polls =
                    |store: &Store| store.slots().iter().map(|s| (s.name.clone(), s.state().polls_total)).collect::<HashMap<_, _>>();
                let at_start = polls(&store);
                tokio::time::sleep(Duration::from_millis(400)).await;
                if let Some(next) = then {
                    scheduler.apply(&config(next));
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                let at_end = polls(&store);
                scheduler.shutdown(Duration::from_secs(1)).await;
                (at_start, at_end)
            }
        };
        let (start, end) = run(&["a", "b", "c"], Some(&["a", "c2"])).await;
        assert!(start.values().all(|n| *n == 0));
        assert!(end["a"] >= 2 && !end.contains_key("b"));
        // Restart with b back and c2: a continues, b (removed by the reload) and c (renamed) start fresh.
        let (start, _) = run(&["a", "b", "c", "c2"], None).await;
        assert!(start["a"] >= end["a"], "a continues from its state: {start:?} vs {end:?}");
        assert_eq!(start["b"], 0, "b was dropped when a reload removed it");
        assert_eq!(start["c"], 0, "c was renamed to c2: its state went");
        assert!(start["c2"] >= 1, "c2 continues");
        // A restart whose config lacks a supplier drops it too.
        let _ = run(&["c2"], None).await;
        let (start, _) = run(&["a", "c2"], None).await;
        assert_eq!(start["a"], 0, "a was dropped when started without it");
    }
}
