//! The real binary: flags, --config.check, logs without secrets, SIGHUP,
//! SIGTERM, and --demo (its /metrics passes `promtool check metrics` silently).

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

const BIN: &str = env!("CARGO_BIN_EXE_balance_exporter");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn signal_pid(pid: u32, sig: &str) {
    assert!(Command::new("kill").args([sig, &pid.to_string()]).status().unwrap().success());
}

/// The exporter process; killed when dropped, so a failing test leaves nothing running.
struct Exporter(Option<Child>);

impl Exporter {
    fn id(&self) -> u32 {
        self.0.as_ref().expect("running").id()
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn(args: &[&str]) -> Exporter {
    Exporter(Some(Command::new(BIN).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()))
}

fn signal(child: &Exporter, sig: &str) {
    signal_pid(child.id(), sig);
}

async fn wait_http(url: &str, cond: impl Fn(u16, &str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(resp) = reqwest::get(url).await {
            let status = resp.status().as_u16();
            let body = resp.text().await.unwrap_or_default();
            if cond(status, &body) {
                return body;
            }
        }
        assert!(Instant::now() < deadline, "timed out waiting on {url}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn stop(mut exporter: Exporter) -> (std::process::ExitStatus, String, Duration) {
    let mut child = exporter.0.take().expect("running");
    signal_pid(child.id(), "-TERM");
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("did not exit after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut logs = String::new();
    child.stderr.take().unwrap().read_to_string(&mut logs).unwrap();
    (status, logs, started.elapsed())
}

#[test]
fn config_check_prints_every_problem_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yml");
    std::fs::write(&bad, "suppliers:\n  - {name: a, kind: foxreload, timeout: 3 parsecs}\n  - {name: a, kind: novasend, auth: {bearer_token: '${NOT_SET_ANYWHERE_42}'}}\n").unwrap();
    let out = Command::new(BIN).args(["--config.check", "--config.file", bad.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("suppliers[1].auth.bearer_token: environment variable NOT_SET_ANYWHERE_42 is not set"), "{err}");

    std::fs::write(&bad, "suppliers:\n  - {name: a, kind: foxreload, timeout: 3 parsecs}\n  - {name: a, kind: novasend}\n").unwrap();
    let out = Command::new(BIN).args(["--config.check", "--config.file", bad.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("2 problem(s)"), "{err}");
    assert!(err.contains("suppliers[0].timeout: invalid duration \"3 parsecs\""), "{err}");
    assert!(err.contains("suppliers[1].name: duplicate supplier name \"a\""), "{err}");

    let good = dir.path().join("good.yml");
    std::fs::write(&good, "suppliers:\n  - {name: a, kind: foxreload}\n").unwrap();
    let out = Command::new(BIN).args(["--config.check", "--config.file", good.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK, 1 suppliers"));
}

#[tokio::test]
async fn logs_name_supplier_and_reason_never_the_secret_and_sighup_reloads() {
    let fox = MockServer::start().await;
    // A hostile upstream echoing the key back in its error body.
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(401).set_body_string("invalid key sk_live_TOPSECRET_123 for this account"))
        .mount(&fox)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("fox.key");
    std::fs::write(&secret_file, "sk_live_TOPSECRET_123\n").unwrap();
    let cfg = dir.path().join("config.yml");
    let supplier = format!(
        "  - {{name: fox, kind: foxreload, base_url: '{}', auth: {{bearer_token_file: {}}}, poll_interval: 1m}}\n",
        fox.uri(),
        secret_file.display()
    );
    std::fs::write(&cfg, format!("suppliers:\n{supplier}")).unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let child = spawn(&["--config.file", cfg.to_str().unwrap(), "--web.listen-address", &listen, "--log.level", "debug"]);
    let base = format!("http://{listen}");
    let metrics = wait_http(&format!("{base}/metrics"), |s, b| s == 200 && b.contains("reason=\"auth\"} 1")).await;
    assert!(metrics.contains("supplier_up{supplier=\"fox\"} 0"));
    let page = wait_http(&format!("{base}/"), |s, _| s == 200).await;
    assert!(page.contains("&lt;redacted&gt;"), "{page}");
    assert!(!page.contains("TOPSECRET"));
    assert!(!metrics.contains("TOPSECRET"));
    assert_eq!(wait_http(&format!("{base}/-/ready"), |s, _| s == 200).await, "Ready\n");
    assert_eq!(wait_http(&format!("{base}/-/healthy"), |s, _| s == 200).await, "Healthy\n");

    // SIGHUP picks up a second supplier.
    std::fs::write(
        &cfg,
        format!("suppliers:\n{supplier}  - {{name: fox2, kind: foxreload, base_url: '{}', poll_interval: 1m}}\n", fox.uri()),
    )
    .unwrap();
    signal(&child, "-HUP");
    wait_http(&format!("{base}/metrics"), |_, b| b.contains("supplier_info{supplier=\"fox2\",kind=\"foxreload\"} 1")).await;

    let (status, logs, took) = stop(child);
    assert!(status.success(), "{logs}");
    assert!(took < Duration::from_secs(5));
    assert!(logs.contains("message=\"poll failed\" supplier=fox reason=auth"), "{logs}");
    assert!(logs.contains("SIGHUP"), "{logs}");
    assert!(!logs.contains("TOPSECRET"), "secret leaked into logs:\n{logs}");
}

#[tokio::test]
async fn demo_runs_without_config_and_logs_json() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    // The flag given twice serves the same endpoints on both addresses.
    let second = format!("127.0.0.1:{}", free_port());
    let child = spawn(&[
        "--demo",
        "--web.listen-address",
        &listen,
        "--web.listen-address",
        &second,
        "--log.format",
        "json",
        "--web.telemetry-path",
        "/m",
    ]);
    let base = format!("http://{listen}");
    wait_http(&format!("{base}/-/ready"), |s, _| s == 200).await;
    let on_second = wait_http(&format!("http://{second}/m"), |s, _| s == 200).await;
    assert!(on_second.contains("supplier_info{"), "{on_second}");
    let metrics = wait_http(&format!("{base}/m"), |s, _| s == 200).await;
    for kind in ["foxreload", "novasend", "vai247"] {
        assert!(metrics.contains(&format!("kind=\"{kind}\"")), "{kind} missing:\n{metrics}");
    }
    assert!(metrics.contains("supplier_up{supplier=\"foxreload\"} 1"));
    // Demo switches: revoke a key, see auth failures.
    let client = reqwest::Client::new();
    let r = client.post(format!("{base}/-/demo/revoke?supplier=vai247")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let metrics =
        wait_http(&format!("{base}/m"), |_, b| b.contains("supplier_poll_errors_total{supplier=\"vai247\",reason=\"auth\"} 1")).await;
    // Prometheus's own linter has nothing to say about the exposition (base units,
    // counter names, HELP on every family); it parses it too.
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (scripts/test.sh installs it: apt-get install prometheus)");
    promtool.stdin.take().unwrap().write_all(metrics.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics: {said}\n{metrics}");
    let (status, logs, _) = stop(child);
    assert!(status.success());
    let first = logs.lines().next().unwrap();
    let parsed: serde_json::Value = serde_json::from_str(first).unwrap_or_else(|e| panic!("not JSON: {first}: {e}"));
    assert!(parsed.get("level").is_some());
    assert!(!logs.contains("fox_live_"), "demo key in logs");
}
