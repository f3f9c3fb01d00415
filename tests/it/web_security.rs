//! `--web.config.file`: scrapes over TLS with a test CA, basic auth (401 with
//! `WWW-Authenticate`, unknown users cost a bcrypt check too), mTLS refusing
//! clients without a certificate, extra headers, and reload of the web config.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use balance_exporter::app::{App, Options};
use balance_exporter::server::error_chain;
use rcgen::ExtendedKeyUsagePurpose;

use crate::common::{ca, leaf, write_private};

/// A test PKI: one CA for the server, another for clients.
struct Pki {
    dir: tempfile::TempDir,
    server_ca_pem: String,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let server_ca = ca("balance_exporter test server CA");
        let (cert, key) = leaf(&server_ca, &["localhost", "127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth);
        std::fs::write(dir.path().join("server.crt"), cert).unwrap();
        write_private(&dir.path().join("server.key"), &key);

        let client_ca = ca("balance_exporter test client CA");
        std::fs::write(dir.path().join("clients-ca.crt"), client_ca.pem()).unwrap();
        let (cert, key) = leaf(&client_ca, &["prometheus"], ExtendedKeyUsagePurpose::ClientAuth);
        std::fs::write(dir.path().join("client.pem"), format!("{cert}{key}")).unwrap();
        // A client certificate from a CA the server does not trust.
        let (cert, key) = leaf(&ca("rogue CA"), &["prometheus"], ExtendedKeyUsagePurpose::ClientAuth);
        std::fs::write(dir.path().join("rogue.pem"), format!("{cert}{key}")).unwrap();
        Pki { dir, server_ca_pem: server_ca.pem() }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn tls_section(&self) -> String {
        format!("tls_server_config:\n  cert_file: {}\n  key_file: {}\n", self.path("server.crt"), self.path("server.key"))
    }

    /// A client trusting only the test server CA, optionally with a client certificate.
    fn client(&self, identity: Option<&str>) -> reqwest::Client {
        let mut b = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(self.server_ca_pem.as_bytes()).unwrap()])
            .timeout(Duration::from_secs(10));
        if let Some(name) = identity {
            let pem = std::fs::read(self.dir.path().join(name)).unwrap();
            b = b.identity(reqwest::Identity::from_pem(&pem).unwrap());
        }
        b.build().unwrap()
    }
}

/// Starts the exporter (no suppliers) with `web` as its web config.
async fn start(web: &str) -> (App, tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("balance_exporter.yml");
    std::fs::write(&config, "suppliers: []\n").unwrap();
    let web_path = dir.path().join("web.yml");
    std::fs::write(&web_path, web).unwrap();
    let opts = Options {
        config_file: Some(config),
        listen_address: "127.0.0.1:0".into(),
        telemetry_path: "/metrics".into(),
        // The debug poll is on, to show it is behind the same auth.
        enable_debug: true,
        ..Default::default()
    };
    let app = App::start_with_web_config(opts, Some(web_path.clone())).await.expect("exporter starts");
    (app, dir, web_path)
}

fn bcrypt_hash(password: &str) -> String {
    bcrypt::hash(password, 4).unwrap()
}

#[tokio::test]
async fn scrape_over_tls_with_a_test_ca_and_extra_headers() {
    let pki = Pki::new();
    let web = format!(
        "{}http_server_config:\n  headers:\n    Strict-Transport-Security: max-age=31536000\n    X-Frame-Options: deny\n    X-Content-Type-Options: nosniff\n",
        pki.tls_section()
    );
    let (app, _dir, _) = start(&web).await;
    let url = format!("https://localhost:{}/metrics", app.addr.port());
    let resp = pki.client(None).get(&url).send().await.expect("TLS scrape");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["strict-transport-security"], "max-age=31536000");
    assert_eq!(resp.headers()["x-frame-options"], "deny");
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    let body = resp.text().await.unwrap();
    assert!(body.contains("balance_exporter_build_info{"), "{body}");

    // Every route sends the headers, not only /metrics.
    let resp = pki.client(None).get(format!("https://localhost:{}/-/healthy", app.addr.port())).send().await.unwrap();
    assert_eq!(resp.headers()["x-frame-options"], "deny");

    // Plain HTTP to the TLS port gets no answer; a client that does not trust the CA fails.
    let plain = reqwest::Client::new().get(format!("http://127.0.0.1:{}/metrics", app.addr.port())).send().await;
    assert!(plain.is_err() || plain.unwrap().status() != 200);
    let untrusting = reqwest::Client::builder().tls_certs_only([]).build().unwrap();
    assert!(untrusting.get(&url).send().await.is_err(), "an unknown CA must fail the handshake");
    app.stop().await;
}

#[tokio::test]
async fn basic_auth_answers_401_with_www_authenticate() {
    let web = format!(
        "basic_auth_users:\n  prometheus: '{}'\n  grafana: '{}'\nhttp_server_config:\n  headers:\n    X-Frame-Options: sameorigin\n",
        bcrypt_hash("s3cret-pass"),
        bcrypt_hash("other")
    );
    let (app, _dir, _) = start(&web).await;
    let url = format!("http://{}/metrics", app.addr);
    let client = reqwest::Client::new();

    let missing = client.get(&url).send().await.unwrap();
    assert_eq!(missing.status(), 401);
    let challenge = missing.headers()["www-authenticate"].to_str().unwrap().to_string();
    assert!(challenge.starts_with("Basic realm="), "{challenge}");
    assert_eq!(missing.headers()["x-frame-options"], "sameorigin", "headers on 401 too");
    assert!(!missing.text().await.unwrap().contains("supplier_"), "no metrics without auth");

    for (user, pass) in [("prometheus", "wrong"), ("prometheus", ""), ("nobody", "s3cret-pass"), ("grafana", "s3cret-pass")] {
        let resp = client.get(&url).basic_auth(user, Some(pass)).send().await.unwrap();
        assert_eq!(resp.status(), 401, "{user}:{pass}");
        assert!(resp.headers().contains_key("www-authenticate"));
    }
    // Not Basic, or garbage.
    for header in ["Bearer abc", "Basic !!!", "Basic"] {
        let resp = client.get(&url).header("authorization", header).send().await.unwrap();
        assert_eq!(resp.status(), 401, "{header}");
    }
    // Every route is protected, the landing page, supplier pages, the debug poll and health included.
    for path in ["/", "/supplier/fox", "/supplier/%3Cnope%3E", "/-/debug/poll?supplier=fox", "/-/healthy", "/-/ready"] {
        let resp = client.get(format!("http://{}{path}", app.addr)).send().await.unwrap();
        assert_eq!(resp.status(), 401, "{path}");
        assert_eq!(resp.text().await.unwrap(), "Unauthorized\n", "{path}: nothing of the page without auth");
    }
    // With auth: an unknown supplier's page and debug poll are 404s that echo the name escaped only.
    let page =
        client.get(format!("http://{}/supplier/%3Cnope%3E", app.addr)).basic_auth("prometheus", Some("s3cret-pass")).send().await.unwrap();
    assert_eq!(page.status(), 404);
    assert!(!page.text().await.unwrap().contains("<nope>"));
    let debug = client
        .get(format!("http://{}/-/debug/poll?supplier=fox", app.addr))
        .basic_auth("prometheus", Some("s3cret-pass"))
        .send()
        .await
        .unwrap();
    assert_eq!(debug.status(), 404);
    assert!(!debug.text().await.unwrap().contains("s3cret-pass"));
    assert_eq!(client.post(format!("http://{}/-/reload", app.addr)).send().await.unwrap().status(), 401, "reload needs auth");

    // The right password, twice (the second is served from the cache).
    for _ in 0..2 {
        let ok = client.get(&url).basic_auth("prometheus", Some("s3cret-pass")).send().await.unwrap();
        assert_eq!(ok.status(), 200);
        assert!(ok.text().await.unwrap().contains("balance_exporter_build_info"));
    }
    app.stop().await;
}

/// An unknown user costs a bcrypt check like a wrong password does, so
/// response times do not reveal which users exist. A coarse ratio over the
/// fastest of nine checks each (the fastest is what the work costs; slower
/// ones measure other load on the machine), not a timing benchmark.
#[test]
fn unknown_user_costs_the_same_as_a_wrong_password() {
    let hash = bcrypt::hash("right", 8).unwrap();
    let cfg = balance_exporter::web::load_str(&format!("basic_auth_users:\n  alice: '{hash}'\n")).unwrap();
    let auth = cfg.basic_auth.unwrap();
    let fastest = |user: &str, pass: &str| {
        let mut times: Vec<Duration> = (0..9)
            .map(|_| {
                let t = Instant::now();
                assert!(!auth.verify(user, pass.as_bytes()));
                t.elapsed()
            })
            .collect();
        times.sort();
        times[0]
    };
    let wrong = fastest("alice", "wrong");
    let unknown = fastest("mallory", "wrong");
    let ratio = unknown.as_secs_f64() / wrong.as_secs_f64();
    assert!((0.5..2.0).contains(&ratio), "unknown user {unknown:?} vs wrong password {wrong:?}");
    // A verified password is cached: far cheaper than bcrypt the second time.
    assert!(auth.verify("alice", b"right"));
    let t = Instant::now();
    assert!(auth.verify("alice", b"right"));
    assert!(t.elapsed() < wrong / 4, "cached check {:?} vs bcrypt {wrong:?}", t.elapsed());
}

#[tokio::test]
async fn mtls_refuses_clients_without_a_trusted_certificate() {
    let pki = Pki::new();
    let web = format!(
        "{}  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {}\n  min_version: TLS12\n",
        pki.tls_section(),
        pki.path("clients-ca.crt")
    );
    let (app, _dir, _) = start(&web).await;
    let url = format!("https://localhost:{}/metrics", app.addr.port());

    let without = pki.client(None).get(&url).send().await;
    assert!(without.is_err(), "no client certificate must be refused: {:?}", without.map(|r| r.status()));
    let rogue = pki.client(Some("rogue.pem")).get(&url).send().await;
    assert!(rogue.is_err(), "a certificate from an unknown CA must be refused");
    let with = pki.client(Some("client.pem")).get(&url).send().await.expect("trusted client certificate");
    assert_eq!(with.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn web_config_is_reread_on_reload_and_tls_cannot_be_switched_off() {
    let pki = Pki::new();
    let web = |pass: &str| format!("{}basic_auth_users:\n  prometheus: '{}'\n", pki.tls_section(), bcrypt_hash(pass));
    let (app, _dir, web_path) = start(&web("first")).await;
    let url = format!("https://localhost:{}/metrics", app.addr.port());
    let client = pki.client(None);
    let status = |pass: &'static str| {
        let (client, url) = (client.clone(), url.clone());
        async move { client.get(&url).basic_auth("prometheus", Some(pass)).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status("first").await, 200);

    std::fs::write(&web_path, web("second")).unwrap();
    app.reload().await.expect("reload with a new password");
    assert_eq!(status("first").await, 401, "the old password (even cached) no longer works");
    assert_eq!(status("second").await, 200);

    // An invalid web config keeps the old one, and the reload is reported failed.
    std::fs::write(&web_path, "basic_auth_users:\n  prometheus: plaintext\n").unwrap();
    let err = error_chain(&app.reload().await.unwrap_err());
    assert!(err.contains("basic_auth_users.prometheus: is not a bcrypt hash"), "{err}");
    assert!(!err.contains("plaintext"), "the value is never echoed: {err}");
    assert_eq!(status("second").await, 200);

    // Dropping tls_server_config would silently serve plain HTTP: refused.
    std::fs::write(&web_path, format!("basic_auth_users:\n  prometheus: '{}'\n", bcrypt_hash("second"))).unwrap();
    let err = error_chain(&app.reload().await.unwrap_err());
    assert!(err.contains("switching TLS on or off needs a restart"), "{err}");
    let resp = client.get(&url).basic_auth("prometheus", Some("second")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let s = resp.text().await.unwrap();
    assert!(s.contains("balance_exporter_config_last_reload_successful 0"), "{s}");
    app.stop().await;
}

#[test]
fn config_check_validates_the_web_config_too() {
    let pki = Pki::new();
    let bin = env!("CARGO_BIN_EXE_balance_exporter");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.yml");
    std::fs::write(&config, "suppliers: []\n").unwrap();
    let good = dir.path().join("web.yml");
    std::fs::write(&good, format!("{}basic_auth_users:\n  p: '{}'\n", pki.tls_section(), bcrypt_hash("x"))).unwrap();
    let out = std::process::Command::new(bin)
        .args(["--config.check", "--config.file", config.to_str().unwrap(), "--web.config.file", good.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("web.yml: OK, TLS, basic auth for 1 user(s)"), "{stdout}");

    let bad = dir.path().join("bad-web.yml");
    std::fs::write(&bad, "tls_server_config:\n  cert_file: /nonexistent/server.crt\n").unwrap();
    let out = std::process::Command::new(bin)
        .args(["--config.check", "--config.file", config.to_str().unwrap(), "--web.config.file", bad.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("tls_server_config.cert_file: cannot read /nonexistent/server.crt: entity not found"), "{stderr}");
    assert!(stderr.contains("tls_server_config.key_file: missing"), "{stderr}");
}

#[tokio::test]
async fn rate_limit_answers_429_before_basic_auth_and_refills() {
    let web = format!("basic_auth_users:\n  prometheus: '{}'\nrate_limit:\n  interval: 400ms\n  burst: 2\n", bcrypt_hash("right"));
    let (app, _dir, _) = start(&web).await;
    let client = reqwest::Client::new();
    let url = format!("http://{}/metrics", app.addr);
    let get = |password: &'static str| {
        let (client, url) = (client.clone(), url.clone());
        async move { client.get(&url).basic_auth("prometheus", Some(password)).send().await.unwrap() }
    };
    assert_eq!(get("right").await.status(), 200);
    assert_eq!(get("wrong").await.status(), 401, "a token is spent on a failed login too");
    let limited = get("right").await;
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["retry-after"], "1");
    // Refilled after an interval: one more request, not a burst.
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(get("right").await.status(), 200);
    assert_eq!(get("right").await.status(), 429);
    app.stop().await;
}

#[test]
fn rate_limit_config_errors_name_the_key() {
    let errs = match balance_exporter::web::load_str("rate_limit:\n  interval: 1s\n  burst: 0\n  extra: 1\n") {
        Err(e) => e.to_string(),
        Ok(_) => panic!("accepted"),
    };
    assert!(errs.contains("rate_limit.extra: unknown field `extra`, expected `interval` or `burst`"), "{errs}");
    let errs = match balance_exporter::web::load_str("rate_limit:\n  interval: 1s\n  burst: 0\n") {
        Err(e) => e.to_string(),
        Ok(_) => panic!("accepted"),
    };
    assert!(errs.contains("rate_limit.burst: must be between 1 and 1000000, got 0"), "{errs}");
}

#[tokio::test]
async fn every_listen_address_serves_the_same_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("balance_exporter.yml");
    std::fs::write(&config, "suppliers: []\n").unwrap();
    let opts = Options {
        config_file: Some(config.clone()),
        listen_address: "127.0.0.1:0".into(),
        more_listen_addresses: vec!["127.0.0.1:0".into()],
        telemetry_path: "/metrics".into(),
        ..Default::default()
    };
    let app = App::start(opts).await.expect("exporter starts");
    assert_eq!(app.addrs.len(), 2);
    assert_ne!(app.addrs[0], app.addrs[1]);
    for addr in &app.addrs {
        let resp = reqwest::get(format!("http://{addr}/-/healthy")).await.unwrap();
        assert_eq!(resp.status(), 200, "{addr}");
    }
    // An address that cannot be bound fails the start, naming it.
    let taken = app.addrs[1].to_string();
    let opts = Options {
        config_file: Some(config),
        listen_address: "127.0.0.1:0".into(),
        more_listen_addresses: vec![taken.clone()],
        ..Default::default()
    };
    let err = App::start(opts).await.err().expect("a taken address fails the start");
    assert_eq!(err.to_string(), format!("listening on {taken}"));
    app.stop().await;
}
