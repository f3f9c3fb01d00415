//! `--web.config.file`: TLS, basic auth and extra response headers, in the
//! file format of the Prometheus exporter-toolkit, so an operator's existing
//! `web-config.yml` works here unchanged (within what rustls supports).
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: /etc/balance_exporter/tls.crt
//!   key_file: /etc/balance_exporter/tls.key
//!   client_auth_type: RequireAndVerifyClientCert   # optional
//!   client_ca_file: /etc/balance_exporter/clients-ca.crt
//!   min_version: TLS12                             # TLS12 (default) or TLS13
//! http_server_config:
//!   http2: true
//!   headers:
//!     Strict-Transport-Security: max-age=31536000
//! basic_auth_users:
//!   prometheus: $2y$10$...                         # htpasswd -nBC 10 "" | tr -d ':\n'
//! ```
//!
//! Validation collects every problem with its key path (as the main config
//! does) and returns the same [`ConfigError`]. The file is read at start and on
//! every reload; certificates and keys are re-read with it. Besides
//! `config.rs`, this is the only module that reads YAML.
//!
//! Basic auth follows exporter-toolkit: bcrypt hashes, verified credentials
//! cached (bcrypt at cost 10 costs ~80 ms of CPU per check), and an unknown
//! user costs a bcrypt check against a dummy hash of the same cost, so that
//! timing does not tell which users exist.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use aws_lc_rs::hmac;
use base64::Engine as _;
use hyper::header::{HeaderName, HeaderValue};
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use serde_yaml::Value;
use subtle::ConstantTimeEq;

use crate::config::{deserialize_at, read_secret_file, ConfigError, ConfigIssue};

/// The validated web config. `Default` is plain HTTP without auth.
#[derive(Clone)]
pub struct WebConfig {
    /// TLS settings; `None` serves plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Basic auth; `None` lets every request through.
    pub basic_auth: Option<Arc<BasicAuth>>,
    /// Added to every response (`http_server_config.headers`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// `http_server_config.http2` (default true); false serves HTTP/1.1 only.
    pub http2: bool,
    /// Problems that do not stop loading (e.g. a key file readable by others).
    pub warnings: Vec<String>,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig { tls: None, basic_auth: None, headers: Vec::new(), http2: true, warnings: Vec::new() }
    }
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfig")
            .field("tls", &self.tls.is_some())
            .field("basic_auth_users", &self.basic_auth.as_ref().map_or(0, |a| a.users.len()))
            .field("headers", &self.headers.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>())
            .field("http2", &self.http2)
            .finish()
    }
}

impl WebConfig {
    /// One line for logs and `--config.check`: what this config turns on.
    pub fn summary(&self) -> String {
        let mut parts = vec![if self.tls.is_some() { "TLS" } else { "plain HTTP" }.to_string()];
        if let Some(a) = &self.basic_auth {
            parts.push(format!("basic auth for {} user(s)", a.users.len()));
        }
        if !self.headers.is_empty() {
            parts.push(format!("{} extra header(s)", self.headers.len()));
        }
        parts.join(", ")
    }
}

/// Reads and validates a web config file.
pub fn load_file(path: &std::path::Path) -> Result<WebConfig, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
    load_str(&text)
}

/// Parses and validates web config text. Relative file paths are taken as
/// they are (relative to the working directory).
pub fn load_str(text: &str) -> Result<WebConfig, ConfigError> {
    let mut root: Value = serde_yaml::from_str(text).map_err(|e| {
        let msg = e.to_string();
        let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
        ConfigError::Yaml(match e.location() {
            Some(l) => format!("line {} column {}: {msg}", l.line(), l.column()),
            None => msg,
        })
    })?;
    if root.is_null() {
        root = Value::Mapping(Default::default());
    }
    let file: FileWebConfig = deserialize_at(root, "").map_err(|i| ConfigError::Invalid(vec![i]))?;
    let mut issues = Vec::new();
    let mut warnings = Vec::new();
    let http = file.http_server_config.unwrap_or_default();
    let http2 = http.http2.unwrap_or(true);
    let headers = validate_headers(http.headers.unwrap_or_default(), &mut issues);
    let basic_auth = file.basic_auth_users.and_then(|users| validate_users(users, &mut issues)).map(Arc::new);
    let tls = file.tls_server_config.and_then(|t| validate_tls(t, http2, &mut issues, &mut warnings)).map(Arc::new);
    if !issues.is_empty() {
        return Err(ConfigError::Invalid(issues));
    }
    Ok(WebConfig { tls, basic_auth, headers, http2, warnings })
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileWebConfig {
    tls_server_config: Option<FileTls>,
    http_server_config: Option<FileHttp>,
    /// User name → bcrypt hash.
    basic_auth_users: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileTls {
    /// PEM certificate chain, server certificate first.
    cert_file: Option<String>,
    /// The same chain given inline.
    cert: Option<String>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    key_file: Option<String>,
    /// The same key given inline.
    key: Option<String>,
    /// NoClientCert (default), VerifyClientCertIfGiven or RequireAndVerifyClientCert.
    client_auth_type: Option<String>,
    /// PEM CA certificates that sign client certificates.
    client_ca_file: Option<String>,
    /// TLS12 (default) or TLS13.
    min_version: Option<String>,
    /// TLS12 or TLS13 (default).
    max_version: Option<String>,
    // exporter-toolkit keys that rustls cannot honour: rejected, not ignored,
    // because each narrows what a client may do.
    cipher_suites: Option<Value>,
    curve_preferences: Option<Value>,
    client_allowed_sans: Option<Value>,
    /// Ignored, as Go itself does since 1.17.
    prefer_server_cipher_suites: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileHttp {
    http2: Option<bool>,
    headers: Option<BTreeMap<String, String>>,
}

/// The headers exporter-toolkit allows, with the values it allows (`None`: any).
const ALLOWED_HEADERS: &[(&str, Option<&[&str]>)] = &[
    ("Strict-Transport-Security", None),
    ("X-Content-Type-Options", Some(&["nosniff"])),
    ("X-Frame-Options", Some(&["deny", "sameorigin"])),
    ("X-XSS-Protection", None),
    ("Content-Security-Policy", None),
];

fn validate_headers(raw: BTreeMap<String, String>, issues: &mut Vec<ConfigIssue>) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::new();
    for (name, value) in raw {
        let path = format!("http_server_config.headers.{name}");
        let Some((canonical, allowed)) = ALLOWED_HEADERS.iter().find(|(n, _)| n.eq_ignore_ascii_case(&name)) else {
            let names: Vec<&str> = ALLOWED_HEADERS.iter().map(|(n, _)| *n).collect();
            issues.push(ConfigIssue { path, message: format!("header {name:?} cannot be configured (allowed: {})", names.join(", ")) });
            continue;
        };
        if let Some(values) = allowed {
            if !values.iter().any(|v| v.eq_ignore_ascii_case(&value)) {
                issues.push(ConfigIssue { path, message: format!("invalid value {value:?}; expected one of: {}", values.join(", ")) });
                continue;
            }
        }
        match HeaderValue::from_str(&value) {
            Ok(v) => out.push((HeaderName::from_static(lowercase_static(canonical)), v)),
            Err(_) => issues.push(ConfigIssue { path, message: "is not a valid header value".into() }),
        }
    }
    out
}

fn lowercase_static(name: &str) -> &'static str {
    match name {
        "Strict-Transport-Security" => "strict-transport-security",
        "X-Content-Type-Options" => "x-content-type-options",
        "X-Frame-Options" => "x-frame-options",
        "X-XSS-Protection" => "x-xss-protection",
        _ => "content-security-policy",
    }
}

fn validate_users(raw: BTreeMap<String, String>, issues: &mut Vec<ConfigIssue>) -> Option<BasicAuth> {
    let before = issues.len();
    let mut users = HashMap::new();
    let mut max_cost = 0;
    for (user, hash) in raw {
        let path = format!("basic_auth_users.{user}");
        if user.is_empty() || user.contains(':') || user.chars().any(char::is_control) {
            issues.push(ConfigIssue { path, message: "user names must be non-empty, without ':' or control characters".into() });
            continue;
        }
        match hash.trim().parse::<bcrypt::HashParts>() {
            // Each check costs 2^cost rounds, and unknown users pay it too (the dummy hash).
            Ok(parts) if parts.get_cost() > MAX_BCRYPT_COST => issues.push(ConfigIssue {
                path,
                message: format!("bcrypt cost {} is above {MAX_BCRYPT_COST}: every check would take many seconds of CPU; use 10 to 12", parts.get_cost()),
            }),
            Ok(parts) => {
                max_cost = max_cost.max(parts.get_cost());
                users.insert(user, hash.trim().to_string());
            }
            // The value is never echoed: it may be a plain password put here by mistake.
            Err(_) => issues.push(ConfigIssue {
                path,
                message: "is not a bcrypt hash (value hidden: it may be a plain password); make one with htpasswd -nBC 10 \"\" | tr -d ':\\n'".into(),
            }),
        }
    }
    // An empty list turns auth off, as in exporter-toolkit.
    if issues.len() > before || users.is_empty() {
        return None;
    }
    Some(BasicAuth::new(users, max_cost))
}

/// The highest bcrypt cost accepted (as `htpasswd -B -C` allows): at 17 one
/// check already takes seconds.
const MAX_BCRYPT_COST: u32 = 17;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum ClientAuth {
    None,
    VerifyIfGiven,
    Require,
}

fn validate_tls(t: FileTls, http2: bool, issues: &mut Vec<ConfigIssue>, warnings: &mut Vec<String>) -> Option<rustls::ServerConfig> {
    let before = issues.len();
    let p = "tls_server_config";
    for (key, given, why) in [
        ("cipher_suites", t.cipher_suites.is_some(), "rustls offers only modern AEAD suites and cannot be narrowed here"),
        ("curve_preferences", t.curve_preferences.is_some(), "rustls chooses among its own safe groups"),
        ("client_allowed_sans", t.client_allowed_sans.is_some(), "client certificates are checked against client_ca_file only"),
    ] {
        if given {
            issues.push(ConfigIssue { path: format!("{p}.{key}"), message: format!("is not supported ({why}); remove it") });
        }
    }
    if t.prefer_server_cipher_suites.is_some() {
        warnings.push(format!("{p}.prefer_server_cipher_suites is ignored (as in Go since 1.17)"));
    }

    let certs = match (t.cert_file, t.cert) {
        (Some(_), Some(_)) => {
            issues.push(ConfigIssue { path: format!("{p}.cert_file"), message: "give either cert_file or cert, not both".into() });
            None
        }
        (None, None) => {
            issues.push(ConfigIssue { path: format!("{p}.cert_file"), message: "missing; TLS needs a certificate (cert_file or cert)".into() });
            None
        }
        (Some(file), None) => match std::fs::read(&file) {
            Ok(pem) => read_certs(&pem, &format!("{p}.cert_file"), issues),
            Err(e) => {
                issues.push(ConfigIssue { path: format!("{p}.cert_file"), message: format!("cannot read {file}: {}", e.kind()) });
                None
            }
        },
        (None, Some(pem)) => read_certs(pem.as_bytes(), &format!("{p}.cert"), issues),
    };
    let key = match (t.key_file, t.key) {
        (Some(_), Some(_)) => {
            issues.push(ConfigIssue { path: format!("{p}.key_file"), message: "give either key_file or key, not both".into() });
            None
        }
        (None, None) => {
            issues.push(ConfigIssue { path: format!("{p}.key_file"), message: "missing; TLS needs a private key (key_file or key)".into() });
            None
        }
        // A key is a secret file: the same checks (mode warning, inline-secret hint) as auth secrets.
        (Some(file), None) => read_secret_file(&file, &format!("{p}.key_file"), issues, warnings)
            .and_then(|pem| read_key(pem.expose().as_bytes(), &format!("{p}.key_file"), issues)),
        (None, Some(pem)) => read_key(pem.as_bytes(), &format!("{p}.key"), issues),
    };

    let client_auth = match t.client_auth_type.as_deref().unwrap_or("NoClientCert") {
        "NoClientCert" => Some(ClientAuth::None),
        "VerifyClientCertIfGiven" => Some(ClientAuth::VerifyIfGiven),
        "RequireAndVerifyClientCert" => Some(ClientAuth::Require),
        unverified @ ("RequestClientCert" | "RequireAnyClientCert") => {
            issues.push(ConfigIssue {
                path: format!("{p}.client_auth_type"),
                message: format!("{unverified} (a client certificate that is not verified) is not supported; use VerifyClientCertIfGiven or RequireAndVerifyClientCert with client_ca_file"),
            });
            None
        }
        other => {
            issues.push(ConfigIssue {
                path: format!("{p}.client_auth_type"),
                message: format!("unknown value {other:?} (NoClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert)"),
            });
            None
        }
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = match (client_auth, t.client_ca_file) {
        (Some(ClientAuth::None), Some(_)) => {
            issues.push(ConfigIssue {
                path: format!("{p}.client_ca_file"),
                message: "is set but client_auth_type is NoClientCert; set client_auth_type to VerifyClientCertIfGiven or RequireAndVerifyClientCert".into(),
            });
            None
        }
        (Some(ClientAuth::VerifyIfGiven | ClientAuth::Require), None) => {
            issues.push(ConfigIssue { path: format!("{p}.client_ca_file"), message: "missing; client_auth_type verifies client certificates against it".into() });
            None
        }
        (Some(mode @ (ClientAuth::VerifyIfGiven | ClientAuth::Require)), Some(file)) => {
            let path = format!("{p}.client_ca_file");
            let cas = match std::fs::read(&file) {
                Ok(pem) => read_certs(&pem, &path, issues),
                Err(e) => {
                    issues.push(ConfigIssue { path: path.clone(), message: format!("cannot read {file}: {}", e.kind()) });
                    None
                }
            };
            cas.and_then(|cas| {
                let mut roots = rustls::RootCertStore::empty();
                for ca in cas {
                    if let Err(e) = roots.add(ca) {
                        issues.push(ConfigIssue { path: path.clone(), message: format!("not a usable CA certificate: {e}") });
                        return None;
                    }
                }
                let mut builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
                if mode == ClientAuth::VerifyIfGiven {
                    builder = builder.allow_unauthenticated();
                }
                match builder.build() {
                    Ok(v) => Some(Some(v)),
                    Err(e) => {
                        issues.push(ConfigIssue { path: path.clone(), message: format!("cannot build the client verifier: {e}") });
                        None
                    }
                }
            })
        }
        (Some(ClientAuth::None), None) => Some(None),
        (None, _) => None,
    };

    let min = tls_version(t.min_version.as_deref(), "TLS12", &format!("{p}.min_version"), issues);
    let max = tls_version(t.max_version.as_deref(), "TLS13", &format!("{p}.max_version"), issues);
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = match (min, max) {
        (Some(min), Some(max)) if min > max => {
            issues.push(ConfigIssue { path: format!("{p}.max_version"), message: "is lower than min_version".into() });
            vec![]
        }
        (Some(min), Some(max)) => [(12, &rustls::version::TLS12), (13, &rustls::version::TLS13)]
            .into_iter()
            .filter(|(v, _)| (min..=max).contains(v))
            .map(|(_, v)| v)
            .collect(),
        _ => vec![],
    };
    if issues.len() > before {
        return None;
    }
    let (certs, key, verifier) = (certs?, key?, verifier?);
    let builder = match rustls::ServerConfig::builder_with_provider(provider).with_protocol_versions(&versions) {
        Ok(b) => b,
        Err(e) => {
            issues.push(ConfigIssue { path: p.into(), message: format!("cannot configure TLS: {e}") });
            return None;
        }
    };
    let builder = match verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    match builder.with_single_cert(certs, key) {
        Ok(mut cfg) => {
            cfg.alpn_protocols = if http2 { vec![b"h2".to_vec(), b"http/1.1".to_vec()] } else { vec![b"http/1.1".to_vec()] };
            Some(cfg)
        }
        Err(e) => {
            issues.push(ConfigIssue { path: format!("{p}.key_file"), message: format!("certificate and key do not fit together: {e}") });
            None
        }
    }
}

fn tls_version(s: Option<&str>, default: &str, path: &str, issues: &mut Vec<ConfigIssue>) -> Option<u8> {
    match s.unwrap_or(default) {
        "TLS12" => Some(12),
        "TLS13" => Some(13),
        old @ ("TLS10" | "TLS11") => {
            issues.push(ConfigIssue { path: path.into(), message: format!("{old} is not supported (rustls speaks TLS12 and TLS13)") });
            None
        }
        other => {
            issues.push(ConfigIssue { path: path.into(), message: format!("unknown TLS version {other:?} (TLS12 or TLS13)") });
            None
        }
    }
}

fn read_certs(pem: &[u8], path: &str, issues: &mut Vec<ConfigIssue>) -> Option<Vec<CertificateDer<'static>>> {
    match CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>() {
        Ok(certs) if certs.is_empty() => {
            issues.push(ConfigIssue { path: path.into(), message: "no PEM certificate found".into() });
            None
        }
        Ok(certs) => Some(certs),
        Err(e) => {
            issues.push(ConfigIssue { path: path.into(), message: format!("invalid PEM: {e}") });
            None
        }
    }
}

fn read_key(pem: &[u8], path: &str, issues: &mut Vec<ConfigIssue>) -> Option<PrivateKeyDer<'static>> {
    match PrivateKeyDer::from_pem_slice(pem) {
        Ok(k) => Some(k),
        // The error text of a PEM parser never includes the key, but keep it short anyway.
        Err(rustls_pki_types::pem::Error::NoItemsFound) => {
            issues.push(ConfigIssue { path: path.into(), message: "no PEM private key found (PKCS#8, PKCS#1 or SEC1)".into() });
            None
        }
        Err(_) => {
            issues.push(ConfigIssue { path: path.into(), message: "invalid PEM private key".into() });
            None
        }
    }
}

/// `basic_auth_users`: bcrypt hashes and a cache of verified credentials.
pub struct BasicAuth {
    users: HashMap<String, String>,
    /// A hash of a random password at the highest configured cost, checked
    /// for unknown users so that they cost as much as a wrong password.
    dummy_hash: String,
    /// Per user, the HMAC of the last password that bcrypt accepted. Keyed by
    /// user, so the cache never outgrows the user list; the HMAC key is
    /// random per process, so the cache holds nothing reusable.
    verified: Mutex<HashMap<String, [u8; 32]>>,
    key: hmac::Key,
    /// Bounds concurrent bcrypt checks, so a flood of wrong passwords queues
    /// instead of taking every core.
    bcrypt_slots: tokio::sync::Semaphore,
}

impl BasicAuth {
    fn new(users: HashMap<String, String>, cost: u32) -> BasicAuth {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &rng).expect("system random number generator");
        let slots = std::thread::available_parallelism().map_or(2, |n| n.get());
        BasicAuth { users, dummy_hash: dummy_hash(cost), verified: Mutex::new(HashMap::new()), key, bcrypt_slots: tokio::sync::Semaphore::new(slots) }
    }

    fn tag(&self, user: &str, password: &[u8]) -> [u8; 32] {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(&(user.len() as u64).to_be_bytes());
        ctx.update(user.as_bytes());
        ctx.update(password);
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }

    /// Checks an `Authorization` header value. Runs bcrypt off the async
    /// threads when the credentials are not cached.
    pub async fn check(self: &Arc<Self>, header: Option<&HeaderValue>) -> bool {
        let Some((user, password)) = header.and_then(parse_basic) else { return false };
        let Ok(_slot) = self.bcrypt_slots.acquire().await else { return false };
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.verify(&user, &password)).await.unwrap_or(false)
    }

    /// Verifies one user and password (blocking: may run bcrypt).
    pub fn verify(&self, user: &str, password: &[u8]) -> bool {
        let tag = self.tag(user, password);
        let Some(hash) = self.users.get(user) else {
            // Unknown user: the same bcrypt work as a wrong password, then no.
            let _ = bcrypt::verify(password, &self.dummy_hash);
            return false;
        };
        let cached = self.verified.lock().map(|m| m.get(user).copied()).unwrap_or(None);
        if cached.is_some_and(|c| bool::from(c.ct_eq(&tag))) {
            return true;
        }
        let ok = bcrypt::verify(password, hash).unwrap_or(false);
        if ok {
            if let Ok(mut m) = self.verified.lock() {
                m.insert(user.to_string(), tag);
            }
        }
        ok
    }
}

/// `Basic base64(user:password)` → (user, password bytes).
fn parse_basic(value: &HeaderValue) -> Option<(String, Vec<u8>)> {
    let value = value.to_str().ok()?.trim();
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let colon = decoded.iter().position(|b| *b == b':')?;
    let user = String::from_utf8(decoded[..colon].to_vec()).ok()?;
    Some((user, decoded[colon + 1..].to_vec()))
}

/// One dummy hash per cost per process: making one costs a bcrypt run, and
/// reloads would otherwise pay it each time.
fn dummy_hash(cost: u32) -> String {
    static CACHE: OnceLock<Mutex<HashMap<u32, String>>> = OnceLock::new();
    let cost = cost.clamp(4, 31);
    let cache = CACHE.get_or_init(Default::default);
    if let Some(h) = cache.lock().ok().and_then(|m| m.get(&cost).cloned()) {
        return h;
    }
    let random: [u8; 16] = rand::random();
    let h = bcrypt::hash(random, cost).expect("bcrypt cost is within 4..=31");
    if let Ok(mut m) = cache.lock() {
        m.insert(cost, h.clone());
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issues(text: &str) -> Vec<String> {
        match load_str(text) {
            Err(ConfigError::Invalid(list)) => list.iter().map(|i| i.to_string()).collect(),
            Err(e) => vec![e.to_string()],
            Ok(_) => vec![],
        }
    }

    #[test]
    fn empty_file_is_plain_http() {
        let cfg = load_str("").unwrap();
        assert!(cfg.tls.is_none() && cfg.basic_auth.is_none() && cfg.headers.is_empty() && cfg.http2);
    }

    #[test]
    fn basic_auth_verifies_caches_and_rejects_unknown_users() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let cfg = load_str(&format!("basic_auth_users:\n  alice: '{hash}'\n")).unwrap();
        let auth = cfg.basic_auth.unwrap();
        assert!(auth.verify("alice", b"s3cret"));
        assert!(auth.verified.lock().unwrap().contains_key("alice"));
        assert!(auth.verify("alice", b"s3cret"), "cached");
        assert!(!auth.verify("alice", b"wrong"));
        assert!(!auth.verify("bob", b"s3cret"));
        assert!(bcrypt::verify("x", &auth.dummy_hash).is_ok(), "dummy hash is a real hash");
        assert!(auth.dummy_hash.starts_with("$2b$04$"), "dummy has the users' cost: {}", auth.dummy_hash);
    }

    #[test]
    fn authorization_header_parsing() {
        let v = |s: &str| HeaderValue::from_str(s).unwrap();
        assert_eq!(parse_basic(&v("Basic YWxpY2U6czNjcjp0")), Some(("alice".into(), b"s3cr:t".to_vec())));
        assert_eq!(parse_basic(&v("basic YWxpY2U6")), Some(("alice".into(), vec![])));
        assert_eq!(parse_basic(&v("Bearer YWxpY2U6czNjcmV0")), None);
        assert_eq!(parse_basic(&v("Basic !!!")), None);
        assert_eq!(parse_basic(&v("Basic YWxpY2U")), None, "no colon");
    }

    #[test]
    fn plain_password_is_rejected_without_echo() {
        let errs = issues("basic_auth_users:\n  alice: hunter2\n");
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with("basic_auth_users.alice: is not a bcrypt hash"), "{errs:?}");
        assert!(!errs[0].contains("hunter2"));
    }

    #[test]
    fn headers_follow_exporter_toolkit() {
        let cfg = load_str("http_server_config:\n  headers:\n    X-Frame-Options: deny\n    Strict-Transport-Security: max-age=3600\n").unwrap();
        assert_eq!(cfg.headers.len(), 2);
        assert_eq!(issues("http_server_config:\n  headers:\n    Server: x\n")[0].split(" (").next().unwrap(), "http_server_config.headers.Server: header \"Server\" cannot be configured");
        assert_eq!(issues("http_server_config:\n  headers:\n    X-Content-Type-Options: sniff\n"), vec!["http_server_config.headers.X-Content-Type-Options: invalid value \"sniff\"; expected one of: nosniff"]);
    }
}
