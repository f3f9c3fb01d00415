//! The fuzz kit: what every kind's fuzz target is made of (compiled only
//! into the lib's tests). A kind's `fuzz.rs` describes its targets as
//! [`FuzzTarget`]s from the hostile strategies below; the registry in
//! `kinds/mod.rs` lists them all, and [`crate::fuzz`] runs them. This file
//! names no kind and imports nothing that does.
//!
//! Inputs are each kind's real shape with every string field (currencies,
//! account ids, timestamps, keys, links) drawn from hostile Unicode —
//! multi-byte letters, combining marks, RTL marks, NUL, BOM, lone surrogate
//! escapes, the secret — or a realistic value with such a character
//! inserted, and every number from the edge of `Decimal` (±7.9228…e28, 29+
//! significant digits, exponents to ±9999, `-0`) or ordinary amounts; plus raw
//! bytes, generic JSON and byte-level mutations of real bodies.

use std::any::Any;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config as RunnerConfig, TestCaseError, TestRunner};

use crate::poll::{KindMemory, PollError, PollOutput};
use crate::upstream::Upstream;

/// The credential of every fuzzed supplier; no message leaving a poll may carry it.
pub const SECRET: &str = "sk_live_FUZZSECRET_4242";

pub fn cases(var: &str, default: u32) -> u32 {
    std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Runs `check` over `n` inputs; prints and returns (inputs, accepted).
/// A failure (panic or property) is shrunk to a minimal input and reported
/// with the panic's message and location.
pub fn run<S: Strategy>(name: &str, n: u32, strategy: S, check: impl Fn(S::Value) -> Result<bool, TestCaseError>) -> (u64, u64)
where
    S::Value: std::fmt::Debug,
{
    quiet_panics();
    LAST_PANIC.with(|p| p.take());
    let config = RunnerConfig { cases: n, failure_persistence: None, max_shrink_iters: 4000, ..RunnerConfig::default() };
    // `cargo test` runs a fixed sequence (no flaky CI); the long run
    // (FUZZ_CASES set) draws new inputs every time.
    let mut runner = if std::env::var_os("FUZZ_CASES").is_some() {
        TestRunner::new(config)
    } else {
        let rng = proptest::test_runner::TestRng::deterministic_rng(config.rng_algorithm);
        TestRunner::new_with_rng(config, rng)
    };
    let (total, accepted) = (AtomicU64::new(0), AtomicU64::new(0));
    let started = Instant::now();
    QUIET.with(|q| q.set(true));
    let result = runner.run(&strategy, |input| {
        let ok = check(input)?;
        total.fetch_add(1, Ordering::Relaxed);
        if ok {
            accepted.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    });
    QUIET.with(|q| q.set(false));
    let (total, accepted) = (total.into_inner(), accepted.into_inner());
    let secs = started.elapsed().as_secs_f64();
    match result {
        Ok(()) => println!("fuzz {name}: {total} inputs, {accepted} accepted, {} rejected, no panic ({secs:.1} s)", total - accepted),
        Err(e) => {
            let at = LAST_PANIC.with(|p| p.take()).unwrap_or_else(|| "a property failed, no panic".into());
            println!("fuzz {name}: FAILED after {total} inputs ({secs:.1} s): {at}");
            panic!("{name}: {e}\nlast panic: {at}");
        }
    }
    (total, accepted)
}

thread_local! {
    /// Inside a fuzz run: panics are expected findings, recorded not printed.
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static LAST_PANIC: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Shrinking re-runs a panicking input thousands of times: keep the log
/// readable by recording the last panic (message and location) instead.
fn quiet_panics() {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if QUIET.with(|q| q.get()) {
                let message = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned());
                let at = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
                // A panic inside a dependency (rust_decimal's operators) names the crate's caller too.
                let backtrace = std::backtrace::Backtrace::force_capture().to_string();
                let caller =
                    backtrace.lines().map(str::trim).find_map(|l| l.split_once(": balance_exporter::").map(|(_, f)| f.to_string()));
                let caller = caller.map(|f| format!(" (in balance_exporter::{f})")).unwrap_or_default();
                LAST_PANIC.with(|p| *p.borrow_mut() = Some(format!("panicked at {at}{caller}: {}", message.unwrap_or_default())));
            } else {
                default(info);
            }
        }));
    });
}

// ---- strings -----------------------------------------------------------------

/// Characters that break code assuming one byte per character, printable
/// text, or left-to-right text.
pub const HOSTILE: &[&str] = &[
    "é",
    "ü",
    "€",
    "😀",
    "\u{301}",
    "\u{200f}",
    "\u{202e}",
    "\u{0}",
    "\u{feff}",
    "\u{200d}",
    "\u{10ffff}",
    "ß",
    "İ",
    "\"",
    "\\",
    "\n",
    "\u{7f}",
    "\u{85}",
    "\u{2028}",
    "e",
    "E",
    ".",
    "+",
    "-",
    ":",
    "Z",
];

/// Realistic values of string fields (so decoders get past their first
/// checks) and edge timestamps an offset moves out of range.
const REAL_TEXT: &[&str] = &[
    "USD",
    "usd",
    "XOF",
    "KHR",
    "khr",
    "JPY",
    "EUR",
    "INR",
    "KWD",
    "ISK",
    "usd ",
    "2026-05-01T13:45:22Z",
    "2026-05-01T20:45:22+07:00",
    "2026-05-01T12:45:22-01:00",
    "2014-01-27T22:58:01.115720Z",
    "2026-05-01T13:45:22.5+07:00",
    "9999-12-31T23:59:59-23:59",
    "1970-01-01T00:00:00+23:59",
    "9999-12-31T23:59:59.999999999Z",
    "1970-01-01T00:00:00Z",
    "aé12345",
    "1777643122",
    "main",
    "merchant_gh8jpoipkrxhjsm0",
    "cus_1",
    "cus_2",
    "CU1",
    "CU2",
    "OR1",
    "OR2",
    "led_1",
    "led_2",
    "payment",
    "manual_credit",
    "welcome",
    "/orders?limit=10&offset=10",
    "/orders?offset=2",
    "https://evil.example/orders",
    "//evil.example/x",
    "",
    SECRET,
];

/// Any text: realistic, realistic with a hostile character inserted at a
/// char boundary, hostile characters strung together, or arbitrary Unicode.
pub fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => select(REAL_TEXT).prop_map(str::to_string),
        4 => (select(REAL_TEXT), 0.0..1.0f64, select(HOSTILE), any::<bool>()).prop_map(|(base, at, c, replace)| {
            let boundaries: Vec<usize> = base.char_indices().map(|(i, _)| i).chain([base.len()]).collect();
            let i = boundaries[((boundaries.len() - 1) as f64 * at) as usize];
            let rest = if replace { base[i..].chars().skip(1).collect::<String>() } else { base[i..].to_string() };
            format!("{}{c}{rest}", &base[..i])
        }),
        2 => proptest::collection::vec(prop_oneof![select(HOSTILE).prop_map(str::to_string), "[a-zA-Z0-9:+.T-]{1,3}"], 0..10).prop_map(|v| v.concat()),
        1 => any::<String>(),
        1 => "[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,12})?(Z|[+-][0-9]{2}:[0-9]{2})?",
    ]
}

/// A JSON string: escaped by serde_json (non-ASCII kept raw), sometimes with
/// `\u` escapes for everything non-ASCII, or a lone surrogate escape.
pub fn json_string() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => text().prop_map(|s| serde_json::to_string(&s).unwrap()),
        1 => text().prop_map(|s| {
            let mut out = String::from("\"");
            for c in s.chars() {
                match c {
                    ' '..='~' if c != '"' && c != '\\' => out.push(c),
                    c => {
                        let mut units = [0u16; 2];
                        for u in c.encode_utf16(&mut units) {
                            out.push_str(&format!("\\u{u:04x}"));
                        }
                    }
                }
            }
            out.push('"');
            out
        }),
        1 => select(&["\"\\ud800\"", "\"us\\udfffd\"", "\"\\u0000\"", "\"\\ud83d\\ude00\""][..]).prop_map(str::to_string),
    ]
}

/// A currency field: mostly a real code, else any string or the wrong type.
pub fn currency_json() -> impl Strategy<Value = String> {
    prop_oneof![
        10 => select(&["USD", "usd", "XOF", "KHR", "JPY", "EUR", "INR", "KWD", "ISK", "ZZZ"][..]).prop_map(|c| format!("\"{c}\"")),
        3 => json_string(),
        1 => wrong_type(),
    ]
}

/// A timestamp field: mostly a valid one, else any string, a number or the wrong type.
pub fn timestamp_json() -> impl Strategy<Value = String> {
    prop_oneof![
        10 => (0u64..2_000_000).prop_map(|m| format!("\"{}\"", humantime::format_rfc3339_seconds(SystemTime::UNIX_EPOCH + Duration::from_secs(1_777_000_000 + m)))),
        3 => json_string(),
        1 => number(),
        1 => wrong_type(),
    ]
}

pub fn wrong_type() -> impl Strategy<Value = String> {
    select(&["null", "true", "false", "[]", "{}", "[1]", "{\"a\": 1}"][..]).prop_map(str::to_string)
}

// ---- numbers -------------------------------------------------------------------

/// Numbers at and past the edge of `Decimal` (28–29 significant digits,
/// ±79228162514264337593543950335, scale up to 28), and ordinary amounts.
const EDGE_NUMBERS: &[&str] = &[
    "79228162514264337593543950335",
    "-79228162514264337593543950335",
    "79228162514264337593543950336",
    "-79228162514264337593543950336",
    "7.9228162514264337593543950335e28",
    "-7.9228162514264337593543950335e28",
    "7.9228162514264337593543950336e28",
    "7e28",
    "-7e28",
    "1e28",
    "-1e28",
    "4e28",
    "-4e28",
    "3.9614081257132168796771975168e28",
    "1e-28",
    "-1e-28",
    "1e-29",
    "1e-30",
    "1e30",
    "-1e30",
    "1e308",
    "1e400",
    "-1e400",
    "1e-400",
    "1e9999",
    "-0",
    "-0.0",
    "0e-5",
    "-0e9999",
    "0.0000000000000000000000000001",
    "0.00000000000000000000000000001",
    "1.00000000000000000000000000001",
    "1.00000000000000000000000000001e0",
    "123456789012345678901234567890",
    "12345678901234567.89",
    "9e18",
    "18446744073709551616",
    "-9223372036854775809",
    "100e-29",
    "1E+3",
    "284.50",
    "-12.75",
    "0",
    "1",
    "253402300800",
    "253402300800000",
    "1777643122",
    "1777643122500",
];

/// A JSON number's text.
pub fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => select(EDGE_NUMBERS).prop_map(str::to_string),
        2 => "-?[1-9][0-9]{0,39}(\\.[0-9]{1,35})?([eE][-+]?[0-9]{1,4})?",
        2 => any::<i64>().prop_map(|n| n.to_string()),
        4 => "-?[0-9]{1,6}\\.[0-9]{2}",
    ]
}

/// An amount field: a number, the same as a decimal string, or anything else.
pub fn amount_json() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => number(),
        3 => number().prop_map(|n| format!("\"{n}\"")),
        1 => json_string(),
        1 => wrong_type(),
    ]
}

// ---- bodies of each kind ---------------------------------------------------------

/// A field value, or (rarely) the field left out.
pub fn field<S: Strategy<Value = String>>(s: S) -> impl Strategy<Value = Option<String>> {
    prop_oneof![12 => s.prop_map(Some), 1 => Just(None)]
}

/// `{"key": value, ...}` without the fields left out.
pub fn object(fields: &[(&str, &Option<String>)]) -> String {
    let parts: Vec<String> = fields.iter().filter_map(|(k, v)| v.as_ref().map(|v| format!("\"{k}\": {v}"))).collect();
    format!("{{{}}}", parts.join(", "))
}

pub fn list<S: Strategy<Value = String>>(item: S, max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(item, 0..=max).prop_map(|items| format!("[{}]", items.join(", ")))
}
// ---- unstructured bodies ------------------------------------------------------------

/// Keys the kinds read, so generic JSON reaches into the decoders.
const KEYS: &[&str] = &[
    "balance",
    "amount",
    "currency",
    "updated_at",
    "availableBalance",
    "reference",
    "statusCode",
    "message",
    "data",
    "usd",
    "khr",
    "freeze",
    "usable",
    "orders",
    "meta",
    "next",
    "links",
    "merchant",
    "amount_escrowed",
    "id",
    "items",
    "customer_id",
    "created_at",
    "event_type",
    "is_credit",
    "available",
    "pending",
    "value",
    "currency_code",
    "balances",
    "total_balance",
    "available_balance",
    "reservedAmount",
    "errors",
    "withheld_balance",
    SECRET,
];

pub fn json_text() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![3 => number(), 3 => json_string(), 1 => wrong_type()];
    leaf.prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(|items| format!("[{}]", items.join(","))),
            proptest::collection::vec((select(KEYS), inner), 0..7).prop_map(|fields| {
                let fields: Vec<String> = fields.into_iter().map(|(k, v)| format!("{}:{v}", serde_json::to_string(k).unwrap())).collect();
                format!("{{{}}}", fields.join(","))
            }),
        ]
    })
}

/// A mutation of a seed: (position as a fraction, operation, byte).
pub type Edit = (f64, u8, u8);

pub fn mutate(seed: &str, edits: &[Edit]) -> Vec<u8> {
    let mut b = seed.as_bytes().to_vec();
    for &(at, op, byte) in edits {
        let i = ((b.len() as f64) * at) as usize;
        match op % 6 {
            0 if i < b.len() => {
                b.remove(i);
            }
            1 => b.insert(i.min(b.len()), byte),
            2 if i < b.len() => b[i] = byte,
            3 => b.truncate(i),
            4 if i < b.len() => {
                let end = (i + byte as usize % 32).min(b.len());
                let slice = b[i..end].to_vec();
                b.splice(i..i, slice);
            }
            5 => {
                let c = HOSTILE[byte as usize % HOSTILE.len()];
                let i = i.min(b.len());
                b.splice(i..i, c.bytes());
            }
            _ => {}
        }
    }
    b
}

/// One answer body: mostly the kind's own shape, else raw bytes, generic
/// JSON, or a real body mutated byte by byte.
pub fn body_of<S: Strategy<Value = String> + 'static>(shaped: S, seeds: &'static [&'static str]) -> BoxedStrategy<Vec<u8>> {
    let edits = proptest::collection::vec((0.0..1.0f64, any::<u8>(), any::<u8>()), 1..6);
    prop_oneof![
        12 => shaped.prop_map(String::into_bytes),
        1 => proptest::collection::vec(any::<u8>(), 0..200),
        2 => json_text().prop_map(String::into_bytes),
        3 => (select(seeds), edits).prop_map(|(seed, edits)| mutate(seed, &edits)),
    ]
    .boxed()
}

/// Several answer bodies (pages) for the kinds that ask more than once.
pub fn bodies_of<S: Strategy<Value = Vec<String>> + 'static>(shaped: S, seeds: &'static [&'static str]) -> BoxedStrategy<Vec<Vec<u8>>> {
    prop_oneof![
        6 => shaped.prop_map(|pages| pages.into_iter().map(String::into_bytes).collect()),
        1 => proptest::collection::vec(body_of(json_text(), seeds), 1..=3),
    ]
    .boxed()
}

// ---- targets -----------------------------------------------------------------------

/// One poll's answer bodies (pages, in the order the kind asks); shown as
/// text (not byte lists) in a failure report.
#[derive(Clone, Default)]
pub struct Answers(pub Vec<Vec<u8>>);

impl std::fmt::Debug for Answers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.iter().map(|b| String::from_utf8_lossy(b))).finish()
    }
}

impl Answers {
    /// Answers from text bodies.
    pub fn of<S: AsRef<str>>(bodies: &[S]) -> Answers {
        Answers(bodies.iter().map(|b| b.as_ref().as_bytes().to_vec()).collect())
    }
}

/// Polls answered with one body each.
pub fn one(body: BoxedStrategy<Vec<u8>>) -> BoxedStrategy<Answers> {
    body.prop_map(|b| Answers(vec![b])).boxed()
}

/// Polls answered with several bodies (the pages of a walk).
pub fn pages(bodies: BoxedStrategy<Vec<Vec<u8>>>) -> BoxedStrategy<Answers> {
    bodies.prop_map(Answers).boxed()
}

/// The first page, or nothing.
pub fn first<'a>(pages: &[&'a [u8]]) -> &'a [u8] {
    pages.first().copied().unwrap_or_default()
}

/// The supplier a target polls.
pub enum Supplier {
    /// The kind's own keys (`kind: dodo_wallets, customers: [cus_1]`), in a
    /// supplier with the harness's URL, [`SECRET`] as bearer token, no
    /// retries and USD and XOF thresholds.
    Keys(&'static str),
    /// The first supplier of `examples/<file>`, every variable set to the
    /// stub's URL (`*BASE_URL`) or [`SECRET`].
    Example(&'static str),
}

/// A request to the over-HTTP stub during one poll: its path, its
/// `page_number`, how many requests came before it in this poll, and how
/// many answer bodies the poll has.
pub struct StubRequest<'a> {
    pub path: &'a str,
    pub page: Option<usize>,
    pub n: usize,
    pub bodies: usize,
}

/// What the stub answers a request: `bodies[index]` of the poll's answers;
/// past them `end` (an empty page), or the last body again when `end` is
/// empty or the input repeats its last page.
pub struct Served {
    pub bodies: Range<usize>,
    pub index: usize,
    pub end: &'static [u8],
}

/// How a kind's requests map onto one poll's answer bodies.
pub type Route = fn(&StubRequest<'_>) -> Served;

/// The default [`Route`]: the answers in request order, nothing past them.
pub fn in_request_order(request: &StubRequest<'_>) -> Served {
    Served { bodies: 0..request.bodies, index: request.n, end: b"" }
}

/// A kind's decoder fed one poll's answers, as its `poll` would feed it;
/// the config is the kind's own type (see [`FuzzTarget::new`]).
type Decoder = Box<dyn Fn(&dyn Any, &Upstream, &[&[u8]], &mut KindMemory) -> Result<PollOutput, PollError>>;

/// A kind's decoder as its fuzz target names it: the supplier's config of
/// the kind, the upstream, one poll's pages and the kind's memory.
pub type KindDecoder<C> = fn(&C, &Upstream, &[&[u8]], &mut KindMemory) -> Result<PollOutput, PollError>;

/// An input that once panicked a poll task, and what it gives now.
pub enum FixedCase {
    /// One poll's answers: the decoder returns a `decode` error whose
    /// message starts with `error`; between two good polls through the
    /// whole path too.
    Decode { answers: Vec<String>, error: &'static str },
    /// One poll's answers over HTTP: the poll error's message, exactly.
    Polled { answers: Vec<String>, error: &'static str },
    /// Polls (each one poll's answers) through the whole path.
    Sequence(Vec<Vec<String>>),
}

impl FixedCase {
    /// [`FixedCase::Decode`] of one poll's bodies.
    pub fn decode(answers: &[&str], error: &'static str) -> FixedCase {
        FixedCase::Decode { answers: answers.iter().map(|a| a.to_string()).collect(), error }
    }
}

/// One fuzz target: a supplier of one kind, the answers its polls get, and
/// how they reach the kind's decoder.
pub struct FuzzTarget {
    /// Printed as `fuzz <name>: N inputs, ...`.
    pub name: String,
    pub supplier: Supplier,
    /// One sane poll's answers (the good polls around the fixed cases).
    pub good: Vec<&'static str>,
    /// One poll's answers.
    pub answers: BoxedStrategy<Answers>,
    pub decode: Decoder,
    /// How the over-HTTP stub answers the kind's requests.
    pub route: Route,
    /// For a kind that persists memory: reads its saved JSON into the kind's
    /// type and back, as a restart would.
    pub memory: Option<fn(serde_json::Value) -> Result<serde_json::Value, serde_json::Error>>,
    /// Inputs that once panicked.
    pub fixed: Vec<FixedCase>,
}

impl FuzzTarget {
    /// A target of the kind whose config type is `C`; `decode` gets the
    /// supplier's `C` and one poll's pages.
    pub fn new<C: Any>(
        name: impl Into<String>,
        supplier: Supplier,
        good: &[&'static str],
        answers: BoxedStrategy<Answers>,
        decode: KindDecoder<C>,
    ) -> FuzzTarget {
        let name = name.into();
        let kind = name.clone();
        let decode: Decoder = Box::new(move |cfg, up, pages, memory| {
            let cfg = cfg.downcast_ref::<C>().unwrap_or_else(|| panic!("fuzz {kind}: the supplier is of another kind"));
            decode(cfg, up, pages, memory)
        });
        FuzzTarget { name, supplier, good: good.to_vec(), answers, decode, route: in_request_order, memory: None, fixed: Vec::new() }
    }

    pub fn route(self, route: Route) -> FuzzTarget {
        FuzzTarget { route, ..self }
    }

    pub fn memory(self, memory: fn(serde_json::Value) -> Result<serde_json::Value, serde_json::Error>) -> FuzzTarget {
        FuzzTarget { memory: Some(memory), ..self }
    }

    pub fn fixed(mut self, case: FixedCase) -> FuzzTarget {
        self.fixed.push(case);
        self
    }
}
