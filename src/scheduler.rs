//! When to poll: one task per supplier, intervals with jitter, backoff after
//! failures, shared rate limiters, reload and shutdown.
//!
//! A supplier's task only ever waits on its own requests, so a supplier that
//! hangs or fails delays no other. Limiters and kind memory are kept by key
//! across reloads, so a reload neither resets `min_interval` spacing nor
//! forgets which ledger entries were already counted.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, SupplierConfig};
use crate::snapshot::{Store, SupplierSlot};
use crate::suppliers::{KindMemory, PollOutput};
use crate::upstream::{build_client, Limiter, PollError, Reason, Upstream};

/// The first poll happens within this long of start (or reload), spread by jitter.
const MAX_INITIAL_DELAY: Duration = Duration::from_secs(3);
/// Base of the fast retry after a transient failure; doubles up to `poll_interval`.
const FAILURE_BACKOFF_BASE: Duration = Duration::from_secs(5);

/// Delay until the next poll. `jitter` in [0, 1).
///
/// After success: `poll_interval` ±10%. After a transient failure (rate limit,
/// 5xx, timeout, connect, decode): capped exponential backoff from 5 s, so a
/// blip heals well before the next regular poll. After auth/forbidden/not
/// found: the regular interval (retrying a revoked key faster helps no one).
pub fn next_delay(poll_interval: Duration, outcome: Option<Reason>, consecutive_failures: u32, jitter: f64) -> Duration {
    let jitter = jitter.clamp(0.0, 1.0);
    match outcome {
        None | Some(Reason::Auth | Reason::Forbidden | Reason::NotFound) => poll_interval.mul_f64(0.9 + 0.2 * jitter),
        Some(_) => {
            let exp = FAILURE_BACKOFF_BASE.saturating_mul(1 << consecutive_failures.saturating_sub(1).min(16));
            exp.min(poll_interval).mul_f64(0.75 + 0.25 * jitter)
        }
    }
}

/// Runs one supplier's poll loop until `cancel`. `poll` performs one poll.
pub async fn run_poll_loop<F, Fut>(store: Arc<Store>, slot: Arc<SupplierSlot>, cancel: CancellationToken, initial_delay: Duration, mut poll: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<PollOutput, PollError>>,
{
    let mut next = Instant::now() + initial_delay;
    let mut failures = 0u32;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep_until(next) => {}
        }
        let started = Instant::now();
        store.lateness.observe(started.saturating_duration_since(next));
        let result = tokio::select! {
            _ = cancel.cancelled() => return,
            r = poll() => r,
        };
        let took = started.elapsed();
        let outcome = result.as_ref().err().map(|e| e.reason);
        match &result {
            Ok(out) => {
                failures = 0;
                for e in &out.row_errors {
                    tracing::warn!(supplier = %slot.name, error = %e, "row skipped");
                }
                tracing::debug!(supplier = %slot.name, balances = out.balances.len(), took_ms = took.as_millis() as u64, "poll ok");
            }
            Err(e) => {
                failures += 1;
                tracing::warn!(supplier = %slot.name, reason = e.reason.as_str(), error = %e.message, "poll failed");
            }
        }
        let state = slot.state().after_poll(result, took, SystemTime::now());
        store.publish(&slot, state);
        let delay = next_delay(slot.poll_interval, outcome, failures, rand::random::<f64>());
        next = (started + delay).max(Instant::now());
    }
}

/// Whether two configs of a supplier poll identically (they may differ in thresholds).
fn polls_the_same(a: &SupplierConfig, b: &SupplierConfig) -> bool {
    SupplierConfig { thresholds: b.thresholds.clone(), ..a.clone() } == *b
}

struct Task {
    config: SupplierConfig,
    cancel: CancellationToken,
}

/// Owns the poll tasks and applies configs to them.
pub struct Scheduler {
    store: Arc<Store>,
    client: reqwest::Client,
    limiters: Mutex<HashMap<String, Arc<Limiter>>>,
    memories: Mutex<HashMap<String, Arc<tokio::sync::Mutex<KindMemory>>>>,
    tasks: Mutex<HashMap<String, Task>>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl Scheduler {
    pub fn new(store: Arc<Store>) -> Self {
        Scheduler {
            store,
            client: build_client(Duration::from_secs(5)),
            limiters: Mutex::default(),
            memories: Mutex::default(),
            tasks: Mutex::default(),
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
        }
    }

    /// Makes the running tasks match `config`: new suppliers start, removed
    /// ones stop (and leave `/metrics`), changed ones restart keeping state.
    pub fn apply(&self, config: &Config) {
        let slots = self.store.set_suppliers(&config.suppliers);
        let by_name: HashMap<&str, &SupplierConfig> = config.suppliers.iter().map(|s| (s.name.as_str(), s)).collect();
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.retain(|name, task| match by_name.get(name.as_str()) {
            // Only the thresholds changed: they are read from the new slot, so
            // the running task (and a poll in flight) carries on.
            Some(s) if polls_the_same(s, &task.config) => {
                task.config = (*s).clone();
                true
            }
            _ => {
                task.cancel.cancel();
                false
            }
        });
        self.memories.lock().unwrap_or_else(|e| e.into_inner()).retain(|name, _| by_name.contains_key(name.as_str()));
        for (cfg, slot) in config.suppliers.iter().zip(slots) {
            if tasks.contains_key(&cfg.name) {
                // Unchanged: the running task keeps polling; it shares its state cell with the new slot.
                continue;
            }
            let cancel = self.shutdown.child_token();
            self.spawn(cfg.clone(), slot, cancel.clone());
            tasks.insert(cfg.name.clone(), Task { config: cfg.clone(), cancel });
        }
    }

    fn spawn(&self, cfg: SupplierConfig, slot: Arc<SupplierSlot>, cancel: CancellationToken) {
        let limiter = self.limiters.lock().unwrap_or_else(|e| e.into_inner()).entry(cfg.limiter_key()).or_default().clone();
        let memory = self.memories.lock().unwrap_or_else(|e| e.into_inner()).entry(cfg.name.clone()).or_default().clone();
        let upstream = Upstream::new(self.client.clone(), &cfg, limiter);
        let initial = MAX_INITIAL_DELAY.min(cfg.poll_interval / 10).mul_f64(rand::random::<f64>());
        let store = self.store.clone();
        let cfg = Arc::new(cfg);
        self.tracker.spawn(run_poll_loop(store, slot, cancel, initial, move || {
            let (cfg, upstream, memory) = (cfg.clone(), upstream.clone(), memory.clone());
            // Boxed: an idle task then holds a pointer, not room for the largest
            // kind's poll state (several KiB × 10,000 suppliers).
            Box::pin(async move {
                let mut memory = memory.lock().await;
                cfg.kind.poll(&upstream, &mut memory).await
            })
        }));
    }

    /// Stops every poll task, waiting at most `grace` for them to finish.
    pub async fn shutdown(&self, grace: Duration) {
        self.shutdown.cancel();
        self.tracker.close();
        let _ = tokio::time::timeout(grace, self.tracker.wait()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suppliers::BalanceRow;
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
        let text = format!("suppliers:\n  - {{name: {name}, kind: foxreload, base_url: 'http://127.0.0.1:9', poll_interval: {}ms}}\n", poll_interval.as_millis());
        crate::config::load_str(&text, &|_| None).unwrap().suppliers.remove(0)
    }

    #[test]
    fn threshold_changes_do_not_restart_polling() {
        let a = test_config("s", Duration::from_secs(60));
        let mut b = a.clone();
        b.thresholds.push(crate::config::Threshold { currency: "USD".into(), account: None, low: Some(Decimal::ONE), runway_days: None });
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
        let task = tokio::spawn(run_poll_loop(store.clone(), slot.clone(), cancel.clone(), Duration::from_secs(2), move || {
            c2.lock().unwrap().push(start.elapsed());
            let i = n2.fetch_add(1, Ordering::SeqCst);
            async move {
                if (1..=2).contains(&i) {
                    Err(PollError::new(Reason::ServerError, "http 500"))
                } else {
                    let b = Decimal::new(i as i64, 0);
                    Ok(PollOutput { balances: vec![BalanceRow { account: "main".into(), currency: "USD".into(), balance: b, frozen: Decimal::ZERO, usable: b, updated_at: None }], ..Default::default() })
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
        tokio::spawn(run_poll_loop(store.clone(), slots[0].clone(), cancel.clone(), Duration::ZERO, || std::future::pending()));
        let f = fast_polls.clone();
        tokio::spawn(run_poll_loop(store.clone(), slots[1].clone(), cancel.clone(), Duration::ZERO, move || {
            f.fetch_add(1, Ordering::SeqCst);
            async { Ok(PollOutput::default()) }
        }));
        tokio::time::sleep(Duration::from_secs(100)).await;
        assert!(fast_polls.load(Ordering::SeqCst) >= 9);
        assert!(!slots[0].state().polled_once);
        cancel.cancel();
    }
}
