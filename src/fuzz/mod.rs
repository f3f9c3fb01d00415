//! Fuzzing (proptest, compiled only into the lib's tests): no upstream bytes
//! make a supplier kind's decoder, or the whole path of several polls, panic;
//! no poll error that leaves `KindConfig::poll` carries a secret; no config
//! makes the loaders panic.
//!
//! Each kind describes its targets in its own folder (`src/kinds/<kind>/fuzz.rs`,
//! made of [`kit`]); the registry lists them all ([`kinds::fuzz_targets`]),
//! and the tests here run every one of them. Targets, each printing
//! `fuzz <target>: N inputs, A accepted, R rejected, no panic (T s)`:
//!
//! - **decoders** (`FUZZ_CASES` inputs each): one poll's bodies fed straight
//!   to the kind's decoder — foxreload, novasend, vai247, the json kind with
//!   each example mapping (stripe, twilio, wise, paypal), balanced_orders (a
//!   walk of 1–3 pages), dodo_wallets (wallets + ledger pages;
//!   all_customers: customers pages + wallets);
//! - **sequences** (`FUZZ_CASES`): 2–5 polls of one supplier of a random
//!   target, each through decoder → `SupplierState::after_poll` → the
//!   /metrics text → the landing page → the persisted state
//!   (`storage::encode_state` → `decode_state`) and the kind's memory through
//!   its JSON, as a restart would read them back, at random intervals;
//! - **over HTTP** (`FUZZ_POLL_CASES` per target): `KindConfig::poll` against
//!   a local stub answering with the input; no error carries the secret;
//! - the **config loaders** (`FUZZ_CASES`, [`config`]).
//!
//! `cargo test` runs a short fixed-seed version (`cargo test --release --lib fuzz::`);
//! `scripts/fuzz.sh` the long one. Each panic found has a fixed case in its
//! kind's targets ([`kit::FixedCase`], run by [`fixed_cases_that_panicked`]) or a unit test.

mod config;
pub mod kit;

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use self::kit::{cases, run, Answers, FixedCase, FuzzTarget, Route, StubRequest, Supplier, SECRET};
use crate::config::{self as config_file, SupplierConfig};
use crate::kinds::{self, KindMemory, PollOutput};
use crate::snapshot::{Store, SupplierSlot, SupplierState};
use crate::upstream::{build_client, Limiter, PollError, Upstream};
use crate::{landing, metrics, storage};

/// A supplier of the target's kind at `base_url`, with the secret as its credential.
fn supplier(target: &FuzzTarget, base_url: &str) -> SupplierConfig {
    match target.supplier {
        Supplier::Example(file) => {
            let text = std::fs::read_to_string(format!("examples/{file}")).unwrap();
            let env = |name: &str| Some(if name.ends_with("BASE_URL") { base_url.to_string() } else { SECRET.to_string() });
            let mut cfg = config_file::load_str(&text, &env).unwrap_or_else(|e| panic!("{file}: {e}")).suppliers.remove(0);
            (cfg.min_interval, cfg.max_retries, cfg.poll_interval) = (Duration::ZERO, 0, Duration::from_secs(300));
            cfg
        }
        Supplier::Keys(keys) => {
            let text = format!(
                "suppliers:\n  - {{name: fuzz, base_url: '{base_url}', auth: {{bearer_token: {SECRET}}}, min_interval: 0s, max_retries: 0, timeout: 2s, poll_interval: 5m, {keys}, thresholds: [{{currency: USD, low: 100, runway_days: 3}}, {{currency: XOF, low: 100}}]}}\n"
            );
            config_file::load_str(&text, &|_| Some("x".into())).unwrap_or_else(|e| panic!("{keys}: {e}")).suppliers.remove(0)
        }
    }
}

fn upstream(cfg: &SupplierConfig) -> Upstream {
    Upstream::new(build_client(Duration::from_secs(1)), &cfg.upstream_settings(), Arc::new(Limiter::default()))
}

/// Feeds one poll's answers to the target's decoder, as its kind's `poll` would.
fn decode(
    target: &FuzzTarget,
    cfg: &SupplierConfig,
    up: &Upstream,
    answers: &Answers,
    memory: &mut KindMemory,
) -> Result<PollOutput, PollError> {
    let pages: Vec<&[u8]> = answers.0.iter().map(Vec::as_slice).collect();
    (target.decode)(cfg.kind.as_any(), up, &pages, memory)
}

/// `strict`: no message carries the configured secret, even when the body
/// echoed it. Direct decoder calls return raw text (redaction happens once,
/// in `KindConfig::poll`), so `strict` is for polls.
fn check_output(result: &Result<PollOutput, PollError>, strict: bool) -> Result<bool, TestCaseError> {
    match result {
        Ok(out) => {
            for row in out.row_errors.iter().filter(|_| strict) {
                prop_assert!(!row.contains(SECRET), "secret in row error {row:?}");
            }
            for b in &out.balances {
                prop_assert!(
                    b.currency.len() == 3 && b.currency.bytes().all(|c| c.is_ascii_uppercase()),
                    "currency label {:?}",
                    b.currency
                );
            }
            Ok(true)
        }
        Err(e) => {
            prop_assert!(!strict || !e.message.contains(SECRET), "secret in error {:?}", e.message);
            Ok(false)
        }
    }
}

/// Runs `each` on every registered target, on as many threads as the
/// machine has cores (the targets are independent, as separate tests would be).
fn on_every_target(each: impl Fn(&FuzzTarget) + Sync) {
    let next = AtomicUsize::new(0);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                // Strategies are not `Send`: each thread builds the list.
                let targets = kinds::fuzz_targets();
                while let Some(target) = targets.get(next.fetch_add(1, Ordering::Relaxed)) {
                    each(target);
                }
            });
        }
    });
}

#[test]
fn decoders() {
    on_every_target(|target| {
        let cfg = supplier(target, "http://127.0.0.1:9");
        let up = upstream(&cfg);
        run(&target.name, cases("FUZZ_CASES", 2000), target.answers.clone(), |answers| {
            check_output(&decode(target, &cfg, &up, &answers, &mut KindMemory::default()), false)
        });
    });
}

// ---- sequences: the whole path -------------------------------------------------------

/// One supplier of one target in a store of its own, rendered as a scrape
/// and the landing page would.
struct WholePath<'t> {
    target: &'t FuzzTarget,
    cfg: SupplierConfig,
    up: Upstream,
    store: Store,
    slot: Arc<SupplierSlot>,
}

impl<'t> WholePath<'t> {
    fn new(target: &'t FuzzTarget) -> WholePath<'t> {
        let cfg = supplier(target, "http://127.0.0.1:9");
        let store = Store::default();
        let slot = store.set_suppliers(std::slice::from_ref(&cfg)).remove(0);
        WholePath { target, up: upstream(&cfg), cfg, store, slot }
    }

    /// Runs the polls in order; true if any succeeded.
    fn run(&self, polls: &[Poll]) -> Result<bool, TestCaseError> {
        let mut state = SupplierState::default();
        self.store.publish(&self.slot, state.clone());
        let mut memory = KindMemory::default();
        let mut now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_777_643_122);
        let mut any_ok = false;
        for poll in polls {
            now += Duration::from_secs(poll.after_secs);
            let result = decode(self.target, &self.cfg, &self.up, &poll.answers, &mut memory);
            any_ok |= check_output(&result, false)?;
            state = state.after_poll(result, Duration::from_millis(poll.took_ms), now);
            self.store.publish(&self.slot, state.clone());
            self.check_exposition(&state)?;
            let page = landing::render(&self.store, "/metrics", now);
            prop_assert!(page.ends_with("</html>\n") || page.ends_with("</html>"), "landing page cut short");
            self.check_persisted(&state)?;
            memory = self.restart_memory(memory)?;
        }
        Ok(any_ok)
    }

    /// The persisted state (`storage::encode_state`) reads back with every
    /// persisted part equal: balances, counters, spend windows, errors.
    fn check_persisted(&self, state: &SupplierState) -> Result<(), TestCaseError> {
        let bytes = storage::encode_state("fuzz", self.slot.kind, state);
        let (name, kind, back) =
            storage::decode_state(&bytes).map_err(|e| TestCaseError::fail(format!("persisted state unreadable: {e}")))?;
        prop_assert_eq!((name.as_str(), kind.as_str()), ("fuzz", self.slot.kind));
        prop_assert_eq!(&back.balances, &state.balances);
        prop_assert_eq!(
            (&back.spent_total, &back.topped_up_total, &back.spend_windows),
            (&state.spent_total, &state.topped_up_total, &state.spend_windows)
        );
        prop_assert_eq!(
            (back.polls_total, &back.errors_total, back.row_errors_total),
            (state.polls_total, &state.errors_total, state.row_errors_total)
        );
        prop_assert_eq!((back.last_success, &back.last_error), (state.last_success, &state.last_error));
        Ok(())
    }

    /// The kind's memory as a restart would bring it back: through its JSON
    /// (and, for a kind that reads it back, through its type: the same memory).
    fn restart_memory(&self, memory: KindMemory) -> Result<KindMemory, TestCaseError> {
        let Some(saved) = memory.saved() else { return Ok(memory) };
        let text = serde_json::to_vec(&saved).map_err(|e| TestCaseError::fail(format!("kind memory to JSON: {e}")))?;
        let back: serde_json::Value =
            serde_json::from_slice(&text).map_err(|e| TestCaseError::fail(format!("kind memory JSON unreadable: {e}")))?;
        if let Some(read_back) = self.target.memory {
            let typed = read_back(back.clone()).map_err(|e| TestCaseError::fail(format!("{} memory unreadable: {e}", self.target.name)))?;
            prop_assert_eq!(canonical(typed), canonical(saved));
        }
        Ok(KindMemory::restored(back))
    }

    /// The /metrics text: every sample's value parses, one `supplier_balance`
    /// sample per balance.
    fn check_exposition(&self, state: &SupplierState) -> Result<(), TestCaseError> {
        let families = metrics::collect_families(&self.store);
        let mut text = Vec::new();
        prometheus::Encoder::encode(&prometheus::TextEncoder::new(), &families, &mut text)
            .map_err(|e| TestCaseError::fail(format!("text encoding: {e}")))?;
        let text = String::from_utf8(text).map_err(|e| TestCaseError::fail(format!("exposition not UTF-8: {e}")))?;
        let mut balances = 0;
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit_once(' ').map(|(_, v)| v).unwrap_or("");
            prop_assert!(value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value), "sample line {line:?}");
            balances += usize::from(line.starts_with("supplier_balance{"));
        }
        prop_assert_eq!(balances, state.balances.len(), "supplier_balance samples");
        Ok(())
    }
}

/// JSON with every array sorted: memory holds hash sets, whose order is arbitrary.
fn canonical(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Array(items) => {
            let mut items: Vec<Value> = items.into_iter().map(canonical).collect();
            items.sort_by_cached_key(|i| i.to_string());
            Value::Array(items)
        }
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, canonical(v))).collect()),
        other => other,
    }
}

/// One poll of a sequence: its answers, how long after the previous poll it
/// ends, and how long it took.
#[derive(Debug, Clone)]
struct Poll {
    answers: Answers,
    after_secs: u64,
    took_ms: u64,
}

fn polls(target: &FuzzTarget) -> impl Strategy<Value = Vec<Poll>> {
    let gap = prop_oneof![3 => 1u64..600, 2 => 600u64..86_400, 1 => 86_400u64..90 * 86_400];
    let poll =
        (target.answers.clone(), gap, 0u64..120_000).prop_map(|(answers, after_secs, took_ms)| Poll { answers, after_secs, took_ms });
    proptest::collection::vec(poll, 2..=5)
}

/// 2–5 polls of one supplier of a random target through decoder → state →
/// /metrics → landing page → persisted state and memory.
#[test]
fn sequences_through_the_whole_path() {
    let targets = kinds::fuzz_targets();
    let paths: Vec<WholePath> = targets.iter().map(WholePath::new).collect();
    let strategy = proptest::strategy::Union::new(targets.iter().enumerate().map(|(i, t)| polls(t).prop_map(move |p| (i, p)).boxed()));
    run(
        "sequences (decoder → after_poll → /metrics → landing page → persisted state)",
        cases("FUZZ_CASES", 2000),
        strategy,
        |(i, polls)| {
            let path = &paths[i];
            path.run(&polls).map_err(|e| TestCaseError::fail(format!("{}: {e}", path.target.name)))
        },
    );
}

// ---- over HTTP: every target through KindConfig::poll -----------------------------------

/// What the stub answers during one input's poll.
#[derive(Clone)]
struct StubAnswers {
    route: Route,
    bodies: Vec<bytes::Bytes>,
    /// Past the given pages, repeat the last one (an API ignoring
    /// `page_number`) instead of ending the walk.
    repeat: bool,
}

impl StubAnswers {
    /// The body for the `n`th request of the poll, to `path` with `page_number`.
    fn body(&self, path: &str, page: Option<usize>, n: usize) -> bytes::Bytes {
        if path.ends_with("/oauth2/token") {
            return bytes::Bytes::from_static(br#"{"access_token": "tok_fuzz", "token_type": "Bearer", "expires_in": 32400}"#);
        }
        let served = (self.route)(&StubRequest { path, page, n, bodies: self.bodies.len() });
        let list = self.bodies.get(served.bodies).unwrap_or_default();
        match (list.get(served.index), list.last()) {
            (Some(b), _) => b.clone(),
            (None, Some(last)) if self.repeat || served.end.is_empty() => last.clone(),
            _ => bytes::Bytes::from_static(served.end),
        }
    }
}

/// A keep-alive HTTP server answering each request from the current [`StubAnswers`].
async fn body_server(answers: Arc<Mutex<StubAnswers>>, served: Arc<AtomicU64>) -> std::net::SocketAddr {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (answers, served) = (answers.clone(), served.clone());
            let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let n = served.fetch_add(1, Ordering::Relaxed) as usize;
                let page = req.uri().query().and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("page_number=")?.parse().ok()));
                let body = answers.lock().unwrap().body(req.uri().path(), page, n);
                async move {
                    let mut resp = hyper::Response::new(http_body_util::Full::new(body));
                    resp.headers_mut().insert("content-type", hyper::header::HeaderValue::from_static("application/json"));
                    Ok::<_, Infallible>(resp)
                }
            });
            tokio::spawn(
                hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .into_owned(),
            );
        }
    });
    addr
}

/// A supplier of one target polled through `KindConfig::poll` against a
/// local stub. Kind memory is kept across polls.
struct OverHttp {
    rt: tokio::runtime::Runtime,
    route: Route,
    answers: Arc<Mutex<StubAnswers>>,
    served: Arc<AtomicU64>,
    cfg: SupplierConfig,
    up: Upstream,
    memory: Mutex<KindMemory>,
}

impl OverHttp {
    fn new(target: &FuzzTarget) -> OverHttp {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let route = target.route;
        let answers = Arc::new(Mutex::new(StubAnswers { route, bodies: Vec::new(), repeat: false }));
        let served = Arc::new(AtomicU64::new(0));
        let addr = rt.block_on(body_server(answers.clone(), served.clone()));
        let cfg = supplier(target, &format!("http://{addr}"));
        let up = rt.block_on(async { upstream(&cfg) });
        OverHttp { rt, route, answers, served, cfg, up, memory: Mutex::new(KindMemory::default()) }
    }

    /// One poll answered with `bodies`.
    fn poll(&self, bodies: Answers, repeat: bool) -> Result<Result<PollOutput, PollError>, TestCaseError> {
        *self.answers.lock().unwrap() =
            StubAnswers { route: self.route, bodies: bodies.0.into_iter().map(bytes::Bytes::from).collect(), repeat };
        self.served.store(0, Ordering::Relaxed);
        let mut memory = self.memory.lock().unwrap();
        let result =
            self.rt.block_on(async { tokio::time::timeout(Duration::from_secs(20), self.cfg.kind.poll(&self.up, &mut memory)).await });
        result.map_err(|_| TestCaseError::fail("poll hung for 20 s"))
    }
}

/// Every target through `KindConfig::poll`, errors never carrying the
/// secret: a supplier polled once per input, the stub answering with the
/// input (pages by `page_number` or request order), so ledger state sees a
/// long random history. One input in eight repeats its last page forever
/// (an API ignoring `page_number`); the others end their walk with an empty
/// page, which keeps an input to a few requests.
#[test]
fn every_target_polled_over_http_never_echoes_the_secret() {
    on_every_target(|target| {
        let http = OverHttp::new(target);
        let strategy = (target.answers.clone(), proptest::bool::weighted(0.125));
        run(&format!("{} (HTTP)", target.name), cases("FUZZ_POLL_CASES", 200), strategy, |(bodies, repeat)| {
            check_output(&http.poll(bodies, repeat)?, true)
        });
    });
}

// ---- panics found: fixed cases ---------------------------------------------------------

/// Inputs that panicked a poll task (issue 12 and this fuzzing), each
/// target's [`FixedCase`]s: a `decode` case must now be a `decode` error,
/// through the whole path too; a polled case gives its exact (redacted)
/// error; a sequence runs through the whole path.
#[test]
fn fixed_cases_that_panicked() {
    for target in kinds::fuzz_targets() {
        let name = &target.name;
        for case in &target.fixed {
            match case {
                FixedCase::Decode { answers, error } => {
                    let path = WholePath::new(&target);
                    let answers = Answers::of(answers);
                    let result = decode(&target, &path.cfg, &path.up, &answers, &mut KindMemory::default());
                    let e = result.as_ref().expect_err(name);
                    assert_eq!(e.reason.as_str(), "decode", "{name}: {e:?}");
                    assert!(e.message.starts_with(error), "{name}: {:?}", e.message);
                    // And through the whole path, after a good poll, twice.
                    let good = Poll { answers: Answers::of(&target.good), after_secs: 60, took_ms: 5 };
                    let bad = Poll { answers, after_secs: 60, took_ms: 5 };
                    assert!(path.run(&[good.clone(), bad, good]).unwrap_or_else(|e| panic!("{name}: {e}")));
                }
                FixedCase::Polled { answers, error } => {
                    let http = OverHttp::new(&target);
                    let e = http.poll(Answers::of(answers), false).unwrap().expect_err(name);
                    assert_eq!(&e.message, error, "{name}");
                }
                FixedCase::Sequence(polls) => {
                    let polls: Vec<Poll> = polls.iter().map(|p| Poll { answers: Answers::of(p), after_secs: 60, took_ms: 5 }).collect();
                    WholePath::new(&target).run(&polls).unwrap_or_else(|e| panic!("{name}: {e}"));
                }
            }
        }
    }
}
