//! Suppliers that misbehave. Every case starts with a good poll, turns the
//! supplier hostile, and checks that the failure gets its `reason`, the
//! supplier's last good balances stay exactly as they were, a second
//! supplier keeps being polled meanwhile, no secret shows in the error — and
//! that the supplier recovers once it behaves again.
//!
//! The stubs are raw TCP servers on 127.0.0.1 (and 127.0.0.2 for the other
//! origin of the redirect cases), so they can do what no HTTP mock does:
//! drip a body forever, never answer, reset the connection, close the port,
//! or send 64 MiB.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{self, scrape, Samples};
use balance_exporter::app::App;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;

const FOX_BODY: &str = r#"{"balance": {"amount": 284.50, "currency": "USD", "updated_at": "2026-05-01T13:45:22Z"}}"#;
const VAI_BODY: &str = r#"{"statusCode": 200, "message": "Success", "data": {"usd": {"balance": 120.5, "freeze": 20.5, "usable": 100}}}"#;
const TOKEN: &str = "sk_live_victim_token_8c1f";
const API_KEY: &str = "vai_key_secret_77d2e";

/// Tests take this shared; the memory test takes it alone, so that no other
/// test's allocations blur its RSS reading.
static GATE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// What a stub does with the next request.
#[derive(Clone, Debug)]
enum Mode {
    /// 200 with this JSON body.
    Json(String),
    /// This status line, extra header lines (each ending in \r\n) and body.
    Status(&'static str, String, String),
    /// Headers promising a body, then one byte every 100 ms for as long as the client listens.
    Drip,
    /// Reads the request and never answers.
    Silent,
    /// A 64 MiB body, with a Content-Length or chunked.
    Huge { chunked: bool },
    /// Closes with a TCP reset right after reading the request.
    Reset,
    /// 302 to this location.
    Redirect(String),
    /// 429 with `Retry-After` as an HTTP date this far ahead of the response.
    LimitedUntil(Duration),
    /// The port is closed: connections are refused until another mode is set.
    Refused,
}

/// A raw HTTP/1.1 stub that records every request head (or raw bytes).
#[derive(Clone)]
struct Stub {
    addr: SocketAddr,
    mode: Arc<Mutex<Mode>>,
    requests: Arc<Mutex<Vec<(Instant, String)>>>,
    /// The accept loop; `None` while the port is closed ([`Mode::Refused`]).
    accept: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl Stub {
    async fn start(ip: &str, mode: Mode) -> Stub {
        let addr: SocketAddr = format!("{ip}:0").parse().unwrap();
        let (listener, addr) = listen(addr);
        let stub = Stub { addr, mode: Arc::new(Mutex::new(mode)), requests: Default::default(), accept: Default::default() };
        *stub.accept.lock().unwrap() = Some(stub.accept_loop(listener));
        stub
    }

    fn accept_loop(&self, listener: tokio::net::TcpListener) -> JoinHandle<()> {
        let s = self.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(s.clone().serve(stream));
            }
        })
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Switches mode; `Refused` closes the port, any other mode opens it again (same port).
    fn set(&self, mode: Mode) {
        let refuse = matches!(mode, Mode::Refused);
        *self.mode.lock().unwrap() = mode;
        let mut accept = self.accept.lock().unwrap();
        match (refuse, accept.take()) {
            (true, Some(task)) => task.abort(),
            (false, None) => *accept = Some(self.accept_loop(listen(self.addr).0)),
            (_, task) => *accept = task,
        }
    }

    fn heads(&self) -> Vec<String> {
        self.requests.lock().unwrap().iter().map(|(_, h)| h.clone()).collect()
    }

    fn times(&self) -> Vec<Instant> {
        self.requests.lock().unwrap().iter().map(|(t, _)| *t).collect()
    }

    async fn serve(self, mut stream: TcpStream) {
        // The request head (and a body, if announced), or whatever raw bytes came (e.g. a TLS hello).
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break Some(i + 4);
            }
            match tokio::time::timeout(Duration::from_millis(500), stream.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => break None,
            }
            if buf.len() > 64 * 1024 {
                break None;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end.unwrap_or(buf.len())]).to_string();
        self.requests.lock().unwrap().push((Instant::now(), head.clone()));
        if head_end.is_none() {
            return;
        }
        let content_length = head
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0)))
            .unwrap_or(0);
        let mut have = buf.len() - head_end.unwrap();
        while have < content_length {
            match stream.read(&mut chunk).await {
                Ok(n) if n > 0 => have += n,
                _ => return,
            }
        }
        let mode = self.mode.lock().unwrap().clone();
        let _ = respond(&mut stream, mode).await;
    }
}

/// A listening socket at `addr` (port 0: any), reusable right after it is closed.
fn listen(addr: SocketAddr) -> (tokio::net::TcpListener, SocketAddr) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_reuseaddr(true).unwrap();
    socket.bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    let listener = socket.listen(64).unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

async fn respond(stream: &mut TcpStream, mode: Mode) -> std::io::Result<()> {
    match mode {
        // The port is closed; a connection accepted just before gets nothing.
        Mode::Refused => Ok(()),
        Mode::Json(body) => write_response(stream, "200 OK", "Content-Type: application/json\r\n", &body).await,
        Mode::Status(status, headers, body) => write_response(stream, status, &headers, &body).await,
        Mode::LimitedUntil(ahead) => {
            let date = httpdate::fmt_http_date(std::time::SystemTime::now() + ahead);
            write_response(stream, "429 Too Many Requests", &format!("Retry-After: {date}\r\n"), "").await
        }
        Mode::Redirect(location) => write_response(stream, "302 Found", &format!("Location: {location}\r\n"), "").await,
        Mode::Drip => {
            stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{\"balance\": ").await?;
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                stream.write_all(b" ").await?;
            }
        }
        Mode::Silent => {
            // Hold the connection until the client gives up.
            let mut sink = [0u8; 1024];
            while stream.read(&mut sink).await? > 0 {}
            Ok(())
        }
        Mode::Huge { chunked } => {
            const TOTAL: usize = 64 << 20;
            static BLOCK: [u8; 64 * 1024] = [b'7'; 64 * 1024];
            let head = if chunked {
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_string()
            } else {
                format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {TOTAL}\r\nConnection: close\r\n\r\n")
            };
            stream.write_all(head.as_bytes()).await?;
            for _ in 0..TOTAL / BLOCK.len() {
                if chunked {
                    stream.write_all(format!("{:x}\r\n", BLOCK.len()).as_bytes()).await?;
                    stream.write_all(&BLOCK).await?;
                    stream.write_all(b"\r\n").await?;
                } else {
                    stream.write_all(&BLOCK).await?;
                }
            }
            if chunked {
                stream.write_all(b"0\r\n\r\n").await?;
            }
            Ok(())
        }
        Mode::Reset => {
            // Linger 0: close sends RST. (Deprecated because it can block on drop, which it cannot with 0.)
            #[allow(deprecated)]
            stream.set_linger(Some(Duration::ZERO))?;
            Ok(())
        }
    }
}

async fn write_response(stream: &mut TcpStream, status: &str, headers: &str, body: &str) -> std::io::Result<()> {
    let text = format!("HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    stream.write_all(text.as_bytes()).await?;
    stream.shutdown().await
}

/// The exporter with a victim supplier (the stub under test) and a healthy one.
struct Rig {
    app: App,
    dir: tempfile::TempDir,
    healthy: Stub,
}

const VICTIM_FOX: &[(&str, &str)] = &[("supplier", "victim"), ("account", "main"), ("currency", "USD")];

/// The config: `victim` is a YAML flow mapping body for the victim supplier (without name).
fn config(victim: &str, healthy: &Stub) -> String {
    let timeout = if victim.contains("timeout:") { "" } else { "timeout: 1s, " };
    format!(
        "suppliers:\n  - {{name: victim, poll_interval: 1s, min_interval: 0s, max_retries: 0, {timeout}{victim}}}\n  - {{name: healthy, kind: foxreload, base_url: '{}', poll_interval: 300ms, min_interval: 0s, timeout: 1s}}\n",
        healthy.url()
    )
}

async fn rig(victim: &str) -> Rig {
    let healthy = Stub::start("127.0.0.1", Mode::Json(FOX_BODY.replace("284.50", "10"))).await;
    let (app, dir) = common::start(&config(victim, &healthy)).await;
    Rig { app, dir, healthy }
}

fn fox(stub: &Stub) -> String {
    format!("kind: foxreload, base_url: '{}', auth: {{bearer_token: {TOKEN}}}", stub.url())
}

fn errors(s: &Samples, reason: &str) -> f64 {
    s.get("supplier_poll_errors_total", &[("supplier", "victim"), ("reason", reason)]).unwrap_or(0.0)
}

fn last_error(app: &App) -> String {
    let slots = app.store.slots();
    let slot = slots.iter().find(|s| s.name == "victim").expect("victim slot");
    slot.state().last_error.as_ref().map(|e| e.message.clone()).unwrap_or_default()
}

/// What must survive a failure, read from the scrape before it.
struct Before {
    last_success: f64,
    healthy_polls: f64,
    errors: f64,
}

impl Rig {
    async fn wait(&self, what: &str, limit: Duration, cond: impl Fn(&Samples) -> bool) -> Samples {
        common::wait_for(&self.app, limit, what, cond).await
    }

    /// Waits for a good poll of the victim, turns `stub` to `mode`, waits for a
    /// failure with `reason`, and checks what must survive it. Returns the
    /// last error message.
    async fn survive(&self, stub: &Stub, mode: Mode, reason: &str, labels: &[(&str, &str)], good: f64) -> String {
        let before = self.good_poll(reason, labels, good).await;
        stub.set(mode);
        self.failed(before, reason, labels, good).await
    }

    /// Waits for a good poll of the victim showing `good`; what must survive.
    async fn good_poll(&self, reason: &str, labels: &[(&str, &str)], good: f64) -> Before {
        self.wait("victim polled", Duration::from_secs(15), |s| s.get("supplier_up", &[("supplier", "victim")]) == Some(1.0)).await;
        let s = scrape(&self.app).await;
        assert_eq!(s.value("supplier_balance", labels), good);
        Before {
            last_success: s.value("supplier_last_success_timestamp_seconds", &[("supplier", "victim")]),
            healthy_polls: s.value("supplier_polls_total", &[("supplier", "healthy")]),
            errors: errors(&s, reason),
        }
    }

    /// Waits for a failure with `reason` after `before`; checks the last good
    /// balance, the last success time, the other supplier, and that no secret
    /// is in the error. Returns the error message.
    async fn failed(&self, before: Before, reason: &str, labels: &[(&str, &str)], good: f64) -> String {
        // The other supplier keeps being polled meanwhile (its interval is 300 ms).
        let s = self
            .wait(&format!("a poll failing with reason {reason}, the other supplier polled since"), Duration::from_secs(20), |s| {
                errors(s, reason) > before.errors && s.value("supplier_polls_total", &[("supplier", "healthy")]) > before.healthy_polls
            })
            .await;
        assert_eq!(s.value("supplier_up", &[("supplier", "victim")]), 0.0, "{}", s.text);
        assert_eq!(s.value("supplier_balance", labels), good, "last good balance kept:\n{}", s.text);
        assert_eq!(s.value("supplier_last_success_timestamp_seconds", &[("supplier", "victim")]), before.last_success);
        assert_eq!(s.value("supplier_up", &[("supplier", "healthy")]), 1.0);
        let message = last_error(&self.app);
        assert!(!message.contains(TOKEN) && !message.contains(API_KEY), "no secret in {message:?}");
        message
    }

    /// The stub behaves again: the victim recovers, showing `good` again
    /// with a newer last success.
    async fn recovers(&self, stub: &Stub, mode: Mode) {
        stub.set(mode);
        self.recovered().await;
    }

    /// Waits for the victim to be up again after a failure, polled anew.
    async fn recovered(&self) -> Samples {
        let failed_at = scrape(&self.app).await.value("supplier_last_success_timestamp_seconds", &[("supplier", "victim")]);
        self.wait("victim recovered", Duration::from_secs(20), |s| {
            s.get("supplier_up", &[("supplier", "victim")]) == Some(1.0)
                && s.get("supplier_last_success_timestamp_seconds", &[("supplier", "victim")]).is_some_and(|t| t > failed_at)
        })
        .await
    }

    /// Reloads the config with other keys for the victim; same name and
    /// kind, so its state (balances, counters) is kept.
    async fn reload_victim(&self, victim: &str) {
        common::rewrite(&self.dir, &config(victim, &self.healthy));
        self.app.reload().await.expect("reload");
    }
}

/// One hostile mode against a foxreload victim: reason, kept balance, recovery.
async fn fox_case(mode: Mode, reason: &str) -> String {
    fox_cases(vec![(mode, reason)]).await.remove(0)
}

/// Several hostile modes in turn against one foxreload victim, recovering in between.
async fn fox_cases(cases: Vec<(Mode, &str)>) -> Vec<String> {
    victim_cases(FOX_BODY, fox, VICTIM_FOX, 284.5, cases).await
}

/// Several hostile modes in turn against one victim answering `good_body`
/// when it behaves (showing `good` under `labels`), recovering after each.
async fn victim_cases(
    good_body: &str,
    keys: impl Fn(&Stub) -> String,
    labels: &[(&str, &str)],
    good: f64,
    cases: Vec<(Mode, &str)>,
) -> Vec<String> {
    let _gate = GATE.read().await;
    let stub = Stub::start("127.0.0.1", Mode::Json(good_body.into())).await;
    let rig = rig(&keys(&stub)).await;
    let mut messages = Vec::new();
    for (mode, reason) in cases {
        messages.push(rig.survive(&stub, mode, reason, labels, good).await);
        rig.recovers(&stub, Mode::Json(good_body.into())).await;
        assert_eq!(scrape(&rig.app).await.value("supplier_balance", labels), good);
    }
    assert!(!rig.healthy.heads().is_empty());
    rig.app.stop().await;
    messages
}

fn status(line: &'static str, headers: &str, body: &str) -> Mode {
    Mode::Status(line, headers.to_string(), body.to_string())
}

#[tokio::test]
async fn server_error_with_an_html_body() {
    let html = "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>";
    let message = fox_case(status("502 Bad Gateway", "Content-Type: text/html\r\n", html), "server_error").await;
    assert!(message.starts_with("http 502: <html>"), "a short snippet, one line: {message:?}");
    assert!(message.len() < 200, "{message:?}");
}

#[tokio::test]
async fn ok_with_truncated_json() {
    fox_case(Mode::Json(FOX_BODY[..40].into()), "decode").await;
}

#[tokio::test]
async fn ok_with_invalid_json() {
    fox_cases(vec![(Mode::Json("<html>maintenance</html>".into()), "decode"), (Mode::Json(String::new()), "decode")]).await;
}

#[tokio::test]
async fn ok_with_json_of_the_wrong_shape() {
    let messages = fox_cases(vec![
        (Mode::Json(r#"{"data": {"balance": "284.50"}}"#.into()), "decode"),
        (Mode::Json(r#"[{"balance": {"amount": 1, "currency": "USD"}}]"#.into()), "decode"),
        (Mode::Json(r#"{"balance": {"amount": 1, "currency": "dollars"}}"#.into()), "decode"),
    ])
    .await;
    assert!(messages[0].contains("balance"), "names what is missing: {messages:?}");
}

#[tokio::test]
async fn numbers_out_of_range_and_nan_like_strings() {
    let amounts = ["1e400", "123456789012345678901234567890123", "\"NaN\"", "\"Infinity\"", "\"-inf\"", "\"1_000\"", "null", "true"];
    let messages = fox_cases(amounts.iter().map(|a| (Mode::Json(FOX_BODY.replace("284.50", a)), "decode")).collect()).await;
    for (amount, message) in amounts.iter().zip(&messages) {
        assert!(message.contains("amount"), "{amount}: {message:?}");
    }
}

/// Negative balances are real (an overdraft): no failure, no kept old value —
/// they are exported as they are, and replaced by the next answer.
#[tokio::test]
async fn negative_balances_are_reported_as_they_are() {
    let _gate = GATE.read().await;
    let stub = Stub::start("127.0.0.1", Mode::Json(FOX_BODY.into())).await;
    let rig = rig(&fox(&stub)).await;
    rig.good_poll("decode", VICTIM_FOX, 284.5).await;
    stub.set(Mode::Json(FOX_BODY.replace("284.50", "-12.75")));
    let s = rig.wait("the negative balance", Duration::from_secs(15), |s| s.get("supplier_balance", VICTIM_FOX) == Some(-12.75)).await;
    assert_eq!(s.value("supplier_balance_usable", VICTIM_FOX), -12.75);
    assert_eq!((s.value("supplier_up", &[("supplier", "victim")]), errors(&s, "decode")), (1.0, 0.0));
    rig.recovers(&stub, Mode::Json(FOX_BODY.into())).await;
    rig.wait("back to 284.50", Duration::from_secs(15), |s| s.get("supplier_balance", VICTIM_FOX) == Some(284.5)).await;
    rig.app.stop().await;
    // And a negative vai247 wallet (usable below zero while some is frozen).
    let vai = Stub::start("127.0.0.1", Mode::Json(VAI_BODY.into())).await;
    let rig = rig_vai(&vai).await;
    let l = [("supplier", "victim"), ("account", "main"), ("currency", "USD")];
    rig.good_poll("decode", &l, 120.5).await;
    vai.set(Mode::Json(r#"{"statusCode": 200, "data": {"usd": {"balance": -5, "freeze": 3, "usable": -8}}}"#.into()));
    let s = rig.wait("the negative wallet", Duration::from_secs(15), |s| s.get("supplier_balance", &l) == Some(-5.0)).await;
    assert_eq!((s.value("supplier_balance_frozen", &l), s.value("supplier_balance_usable", &l)), (3.0, -8.0));
    assert_eq!((s.value("supplier_up", &[("supplier", "victim")]), errors(&s, "decode")), (1.0, 0.0));
    vai.set(Mode::Json(VAI_BODY.into()));
    rig.wait("back to 120.5", Duration::from_secs(15), |s| s.get("supplier_balance", &l) == Some(120.5)).await;
    rig.app.stop().await;
}

/// Issue 12: this `updated_at` made `parse_rfc3339` slice inside `é` and
/// panic the poll task, which then never polled again.
#[tokio::test]
async fn non_ascii_updated_at() {
    let body = FOX_BODY.replace("2026-05-01T13:45:22Z", "aé12345");
    let messages = fox_cases(vec![(Mode::Json(body), "decode")]).await;
    assert_eq!(messages[0], "$.balance.updated_at: not an RFC 3339 timestamp");
}

/// Issue 12: vai247 `balance - freeze` past `Decimal`'s range panicked the poll task.
#[tokio::test]
async fn vai247_balance_minus_freeze_past_the_decimal_range() {
    let l = [("supplier", "victim"), ("account", "main"), ("currency", "USD")];
    let hostile = r#"{"statusCode": 200, "message": "Success", "data": {"usd": {"balance": 7e28, "freeze": -1e28}}}"#;
    let messages = victim_cases(VAI_BODY, vai, &l, 120.5, vec![(Mode::Json(hostile.into()), "decode")]).await;
    assert_eq!(messages[0], "$.data.usd.freeze: balance - freeze overflows");
}

/// Issue 12: a balance swinging from 7e28 to −7e28 between polls: the
/// inferred spend (their difference) does not fit in a `Decimal`. Found
/// panicking in snapshot.rs; now the row keeps its last good balance.
#[tokio::test]
async fn balance_swing_across_the_decimal_range() {
    let good = FOX_BODY.replace("284.50", "7e28");
    let hostile = FOX_BODY.replace("284.50", "-7e28");
    let messages = victim_cases(&good, fox, VICTIM_FOX, 7e28, vec![(Mode::Json(hostile), "decode")]).await;
    assert!(messages[0].contains("\"main\""), "names the row: {messages:?}");
}

fn vai(stub: &Stub) -> String {
    format!("kind: vai247, base_url: '{}', auth: {{header: {{name: X-Api-Key, value: {API_KEY}}}}}", stub.url())
}

async fn rig_vai(stub: &Stub) -> Rig {
    rig(&vai(stub)).await
}

#[tokio::test]
async fn rate_limited_with_and_without_retry_after() {
    fox_cases(vec![
        (status("429 Too Many Requests", "", "slow down"), "rate_limited"),
        (status("429 Too Many Requests", "Retry-After: 1\r\n", ""), "rate_limited"),
        (status("503 Service Unavailable", "Retry-After: 1\r\n", ""), "server_error"),
    ])
    .await;
}

/// Absurd `Retry-After` values: no overflow, no panic (one killed the poll
/// task before `MAX_RETRY_AFTER` capped them); the poll fails with its reason
/// and the other supplier goes on. Values that are ignored (negative,
/// garbage) leave the schedule alone and the supplier recovers on its own.
/// Capped values make the supplier wait an hour (the cap) — not waited out
/// here: a reload into another rate-limit group lifts the wait, and the
/// supplier recovers, its last good balance kept throughout. Each case gets a
/// fresh exporter.
#[tokio::test]
async fn absurd_retry_after_values_do_not_crash_the_poller() {
    let _gate = GATE.read().await;
    for (line, header, reason, capped) in [
        ("429 Too Many Requests", "Retry-After: 18446744073709551615\r\n", "rate_limited", true),
        ("429 Too Many Requests", "retry-after-ms: 1e300\r\n", "rate_limited", true),
        ("503 Service Unavailable", "retry-after-ms: -5\r\n", "server_error", false),
        ("429 Too Many Requests", "Retry-After: Fri, 31 Dec 9999 23:59:59 GMT\r\n", "rate_limited", true),
        ("429 Too Many Requests", "Retry-After: soon\r\n", "rate_limited", false),
    ] {
        let stub = Stub::start("127.0.0.1", Mode::Json(FOX_BODY.into())).await;
        let rig = rig(&fox(&stub)).await;
        rig.survive(&stub, status(line, header, ""), reason, VICTIM_FOX, 284.5).await;
        let polls = scrape(&rig.app).await.value("supplier_polls_total", &[("supplier", "healthy")]);
        rig.wait("healthy goes on", Duration::from_secs(10), |s| s.value("supplier_polls_total", &[("supplier", "healthy")]) > polls + 1.0)
            .await;
        if capped {
            // Still waiting: no request since the 429.
            let asked = stub.times().len();
            tokio::time::sleep(Duration::from_millis(2500)).await;
            assert_eq!(stub.times().len(), asked, "{header}: the capped wait holds");
            stub.set(Mode::Json(FOX_BODY.into()));
            rig.reload_victim(&format!("{}, rate_limit_group: after_the_wait", fox(&stub))).await;
            rig.recovered().await;
        } else {
            rig.recovers(&stub, Mode::Json(FOX_BODY.into())).await;
        }
        assert_eq!(scrape(&rig.app).await.value("supplier_balance", VICTIM_FOX), 284.5, "{header}");
        rig.app.stop().await;
    }
}

/// `Retry-After` longer than a poll interval: the next request to that
/// supplier waits for it (max_retries 0, so the wait spans polls).
async fn next_request_waits(mode: Mode, at_least: Duration) {
    let _gate = GATE.read().await;
    let stub = Stub::start("127.0.0.1", Mode::Json(FOX_BODY.into())).await;
    let rig = rig(&fox(&stub)).await;
    rig.survive(&stub, mode.clone(), "rate_limited", VICTIM_FOX, 284.5).await;
    let limited_at = *stub.times().last().unwrap();
    rig.recovers(&stub, Mode::Json(FOX_BODY.into())).await;
    let times = stub.times();
    let next = times.iter().find(|t| **t > limited_at).expect("a request after the 429");
    let gap = *next - limited_at;
    assert!(gap >= at_least, "{mode:?}: next request after {gap:?}, wanted at least {at_least:?}");
    rig.app.stop().await;
}

#[tokio::test]
async fn retry_after_seconds_spans_polls() {
    next_request_waits(status("429 Too Many Requests", "Retry-After: 3\r\n", ""), Duration::from_millis(2900)).await;
}

#[tokio::test]
async fn retry_after_http_date_spans_polls() {
    // Whole seconds: a date 4 s ahead is at least 3 s away.
    next_request_waits(Mode::LimitedUntil(Duration::from_secs(4)), Duration::from_millis(2900)).await;
}

#[tokio::test]
async fn retry_after_ms_spans_polls() {
    next_request_waits(status("429 Too Many Requests", "retry-after-ms: 2500\r\n", ""), Duration::from_millis(2400)).await;
}

#[tokio::test]
async fn slow_drip_that_never_ends_times_out() {
    fox_case(Mode::Drip, "timeout").await;
}

#[tokio::test]
async fn response_that_never_starts_times_out() {
    fox_case(Mode::Silent, "timeout").await;
}

#[tokio::test]
async fn connection_reset() {
    fox_case(Mode::Reset, "connect").await;
}

#[tokio::test]
async fn connection_refused() {
    fox_case(Mode::Refused, "connect").await;
}

/// The supplier's host name stops resolving (here: the config is reloaded
/// to `http://supplier.invalid`), then resolves again (reloaded back).
#[tokio::test]
async fn dns_failure_of_the_configured_host() {
    let _gate = GATE.read().await;
    let stub = Stub::start("127.0.0.1", Mode::Json(FOX_BODY.into())).await;
    let rig = rig(&fox(&stub)).await;
    let before = rig.good_poll("connect", VICTIM_FOX, 284.5).await;
    rig.reload_victim(&format!("kind: foxreload, base_url: 'http://supplier.invalid', auth: {{bearer_token: {TOKEN}}}")).await;
    rig.failed(before, "connect", VICTIM_FOX, 284.5).await;
    assert_eq!(errors(&scrape(&rig.app).await, "timeout"), 0.0, "a name that does not resolve is not a timeout");
    rig.reload_victim(&fox(&stub)).await;
    rig.recovered().await;
    assert_eq!(scrape(&rig.app).await.value("supplier_balance", VICTIM_FOX), 284.5);
    rig.app.stop().await;
}

/// Memory stays flat while a supplier sends 64 MiB: the body is cut at the
/// 4 MiB default cap (announced or not). RSS is read from /proc; the bound is
/// generous and is a guard against buffering the whole body, not a benchmark.
#[tokio::test]
async fn body_of_64_mib_is_cut_at_the_cap_and_memory_stays_flat() {
    // RSS is the process's: measured in a process of its own.
    if common::isolated("hostile_upstreams::body_of_64_mib_is_cut_at_the_cap_and_memory_stays_flat") {
        return;
    }
    let _gate = GATE.write().await;
    let stub = Stub::start("127.0.0.1", Mode::Json(FOX_BODY.into())).await;
    // A longer timeout: the cut must come from the cap, not the clock.
    let rig = rig(&format!("{}, timeout: 20s", fox(&stub))).await;
    rig.wait("victim polled", Duration::from_secs(15), |s| s.get("supplier_up", &[("supplier", "victim")]) == Some(1.0)).await;
    let rss_before = rss_kib();
    let mut peak = rss_before;
    for chunked in [false, true, true, true] {
        let n = errors(&scrape(&rig.app).await, "decode");
        stub.set(Mode::Huge { chunked });
        let s = rig.wait("cut at the cap", Duration::from_secs(30), |s| errors(s, "decode") > n).await;
        assert_eq!(s.value("supplier_balance", VICTIM_FOX), 284.5);
        assert!(last_error(&rig.app).contains("larger than the 4194304 byte cap"), "{}", last_error(&rig.app));
        peak = peak.max(rss_kib());
    }
    let grown_mib = (peak.saturating_sub(rss_before)) as f64 / 1024.0;
    println!("rss before {} KiB, peak {} KiB, grown {grown_mib:.1} MiB over four 64 MiB bodies", rss_before, peak);
    assert!(grown_mib < 32.0, "RSS grew by {grown_mib:.1} MiB while refusing 64 MiB bodies");
    rig.recovers(&stub, Mode::Json(FOX_BODY.into())).await;
    rig.app.stop().await;
}

#[tokio::test]
async fn configurable_cap() {
    let _gate = GATE.read().await;
    let stub = Stub::start("127.0.0.1", Mode::Json(FOX_BODY.into())).await;
    let rig = rig(&format!("{}, max_response_size: 1KiB", fox(&stub))).await;
    let padded = FOX_BODY.replace("}}", &format!("}}, \"pad\": \"{}\"}}", "x".repeat(2000)));
    rig.survive(&stub, Mode::Json(padded), "decode", VICTIM_FOX, 284.5).await;
    assert!(last_error(&rig.app).contains("1024 byte cap"));
    rig.recovers(&stub, Mode::Json(FOX_BODY.into())).await;
    rig.app.stop().await;
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A redirect to another host never carries the Bearer token or the
/// `X-Api-Key`: the second listener, on 127.0.0.2, records what it got.
#[tokio::test]
async fn redirect_to_another_host_never_carries_credentials() {
    let _gate = GATE.read().await;
    let other = Stub::start("127.0.0.2", status("401 Unauthorized", "", "{\"error\": \"no key\"}")).await;

    // Bearer (foxreload).
    let stub = Stub::start("127.0.0.1", Mode::Json(FOX_BODY.into())).await;
    let rig = rig(&fox(&stub)).await;
    rig.survive(&stub, Mode::Redirect(format!("{}/balance", other.url())), "auth", VICTIM_FOX, 284.5).await;
    rig.recovers(&stub, Mode::Json(FOX_BODY.into())).await;
    rig.app.stop().await;
    assert!(stub.heads().iter().any(|h| h.contains(&format!("authorization: Bearer {TOKEN}"))), "the victim itself got the token");

    // X-Api-Key (vai247), POST turned GET by the 302.
    let vai = Stub::start("127.0.0.1", Mode::Json(VAI_BODY.into())).await;
    let rig = rig_vai(&vai).await;
    let l = [("supplier", "victim"), ("account", "main"), ("currency", "USD")];
    rig.survive(&vai, Mode::Redirect(format!("{}/api/v1/payment-gateway/balance-inquiry", other.url())), "auth", &l, 120.5).await;
    rig.recovers(&vai, Mode::Json(VAI_BODY.into())).await;
    rig.app.stop().await;
    assert!(vai.heads().iter().any(|h| h.to_ascii_lowercase().contains(&format!("x-api-key: {API_KEY}"))));

    let heads = other.heads();
    assert!(heads.len() >= 2, "the other host was asked: {heads:?}");
    for h in &heads {
        let lower = h.to_ascii_lowercase();
        assert!(!lower.contains("authorization") && !lower.contains("x-api-key"), "credentials leaked:\n{h}");
        assert!(!h.contains(TOKEN) && !h.contains(API_KEY), "credentials leaked:\n{h}");
    }
}

/// Another port on the same host is another origin, and so is another scheme.
#[tokio::test]
async fn redirect_to_another_port_or_scheme_never_carries_credentials() {
    let _gate = GATE.read().await;
    let other_port = Stub::start("127.0.0.1", status("401 Unauthorized", "", "")).await;
    let stub = Stub::start("127.0.0.1", Mode::Json(FOX_BODY.into())).await;
    let rig = rig(&fox(&stub)).await;
    rig.survive(&stub, Mode::Redirect(format!("{}/balance", other_port.url())), "auth", VICTIM_FOX, 284.5).await;
    // https on a plain listener: the TLS hello fails (connect); what arrived is recorded raw.
    let tls_side = Stub::start("127.0.0.2", Mode::Silent).await;
    rig.recovers(&stub, Mode::Json(FOX_BODY.into())).await;
    rig.survive(&stub, Mode::Redirect(format!("https://{}/balance", tls_side.addr)), "connect", VICTIM_FOX, 284.5).await;
    // A scheme that is not HTTP is not followed.
    rig.recovers(&stub, Mode::Json(FOX_BODY.into())).await;
    rig.survive(&stub, Mode::Redirect("ftp://127.0.0.2/balance".into()), "upstream_status", VICTIM_FOX, 284.5).await;
    rig.recovers(&stub, Mode::Json(FOX_BODY.into())).await;
    rig.app.stop().await;
    for h in other_port.heads().iter().chain(tls_side.heads().iter()) {
        assert!(!h.to_ascii_lowercase().contains("authorization") && !h.contains(TOKEN), "credentials leaked:\n{h}");
    }
    assert!(!tls_side.heads().is_empty(), "the TLS side was contacted");
}
