//! Shared by the integration tests: run the exporter in-process against a
//! config text, scrape it over real HTTP, and read samples like Prometheus.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use balance_exporter::app::{App, Options};

/// Starts the exporter on 127.0.0.1:0 with `config` (YAML text) written to a temp file.
pub async fn start(config: &str) -> (App, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("balance_exporter.yml");
    std::fs::write(&path, config).unwrap();
    let app = App::start(Options {
        config_file: Some(path),
        demo: false,
        listen_address: "127.0.0.1:0".into(),
        telemetry_path: "/metrics".into(),
        ..Default::default()
    })
    .await
    .expect("exporter starts");
    (app, dir)
}

/// Starts the exporter like [`start`], with `options` changing the start
/// options (`--web.enable-debug`, `--storage.path`, …) and `web` as its web config.
pub async fn start_with(config: &str, options: impl FnOnce(&mut Options), web: Option<&str>) -> (App, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("balance_exporter.yml");
    std::fs::write(&path, config).unwrap();
    let web_file = web.map(|w| {
        let p = dir.path().join("web.yml");
        std::fs::write(&p, w).unwrap();
        p
    });
    let mut opts =
        Options { config_file: Some(path), listen_address: "127.0.0.1:0".into(), telemetry_path: "/metrics".into(), ..Default::default() };
    options(&mut opts);
    (App::start_with_web_config(opts, web_file).await.expect("exporter starts"), dir)
}

/// Rewrites the config file of a running test exporter.
pub fn rewrite(dir: &tempfile::TempDir, config: &str) {
    std::fs::write(dir.path().join("balance_exporter.yml"), config).unwrap();
}

pub async fn get(app: &App, path: &str) -> (u16, String) {
    let resp = reqwest::get(format!("http://{}{}", app.addr, path)).await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

pub async fn scrape(app: &App) -> Samples {
    let (status, body) = get(app, "/metrics").await;
    assert_eq!(status, 200);
    Samples::parse(&body)
}

/// Waits until `cond` holds on a scrape (polls every 50 ms, up to `limit`).
pub async fn wait_for(app: &App, limit: Duration, what: &str, cond: impl Fn(&Samples) -> bool) -> Samples {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let s = scrape(app).await;
        if cond(&s) {
            return s;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}; last scrape:\n{}", s.text);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Samples of one exposition, keyed by `name{sorted labels}`.
#[derive(Debug, Clone)]
pub struct Samples {
    pub values: BTreeMap<String, f64>,
    pub text: String,
}

impl Samples {
    /// Parses the text format: `name{a="b",...} value` lines, label values unescaped.
    pub fn parse(text: &str) -> Samples {
        let mut values = BTreeMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
            let (series, value) = line.rsplit_once(' ').expect("sample line has a value");
            let (name, labels) = match series.find('{') {
                Some(i) => (&series[..i], parse_labels(&series[i + 1..series.len() - 1])),
                None => (series, vec![]),
            };
            let v: f64 = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().expect("numeric sample value"),
            };
            values.insert(key(name, &labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect::<Vec<_>>()), v);
        }
        Samples { values, text: text.to_string() }
    }

    /// The value of `name` with exactly these labels.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.values.get(&key(name, labels)).copied()
    }

    /// Like `get`, panicking with the exposition when absent.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or_else(|| panic!("no sample {}\n{}", key(name, labels), self.text))
    }

    /// Every series of a metric name.
    pub fn series_of(&self, name: &str) -> Vec<(&String, f64)> {
        self.values.iter().filter(|(k, _)| k.as_str() == name || k.starts_with(&format!("{name}{{"))).map(|(k, v)| (k, *v)).collect()
    }
}

fn key(name: &str, labels: &[(&str, &str)]) -> String {
    let mut l: Vec<_> = labels.to_vec();
    l.sort();
    if l.is_empty() {
        return name.to_string();
    }
    let inner: Vec<String> = l.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{name}{{{}}}", inner.join(","))
}

fn parse_labels(s: &str) -> Vec<(String, String)> {
    let mut out = vec![];
    let mut chars = s.chars().peekable();
    while chars.peek().is_some() {
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        assert_eq!(chars.next(), Some('"'));
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(c) => value.push(c),
                    None => break,
                },
                '"' => break,
                c => value.push(c),
            }
        }
        out.push((name.trim_start_matches(',').to_string(), value));
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    out
}

/// Runs the calling test again in a process of its own, for figures (RSS,
/// latency) that tests running beside it in this binary would blur.
///
/// Returns `true` in the parent, after the child passed (the caller then
/// returns at once), and `false` in the child, which runs the test's body.
/// `name` is the test's path in this binary, e.g. `load::two_hundred_scrapers…`.
pub fn isolated(name: &str) -> bool {
    if std::env::var_os("BALANCE_EXPORTER_ISOLATED").is_some() {
        return false;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = std::process::Command::new(exe)
        .args([name, "--exact", "--nocapture", "--test-threads", "1"])
        .env("BALANCE_EXPORTER_ISOLATED", "1")
        .output()
        .expect("running the test in its own process");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // What the child printed (figures included) shows in the parent's output.
    print!("{stdout}");
    eprint!("{stderr}");
    assert!(out.status.success(), "{name} failed in its own process");
    assert!(stdout.contains("1 passed"), "{name} did not run in its own process:\n{stdout}");
    true
}

/// A test CA.
pub fn ca(name: &str) -> rcgen::CertifiedIssuer<'static, rcgen::KeyPair> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap()
}

/// A certificate and its key (PEM) for `sans`, signed by `issuer`.
pub fn leaf(
    issuer: &rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    sans: &[&str],
    usage: rcgen::ExtendedKeyUsagePurpose,
) -> (String, String) {
    let mut params = rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    params.extended_key_usages = vec![usage];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// Writes a key file only its owner can read.
pub fn write_private(path: &std::path::Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}
