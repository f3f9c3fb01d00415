//! The vocabulary of configuration shared below the config module: secrets,
//! authentication, a config problem with its key path, and what the HTTP
//! driver needs of a supplier. It imports nothing of the crate, so the config
//! loader, the kinds and the driver can all use it without an import circle.

use std::fmt;
use std::time::Duration;

use reqwest::Url;

/// A secret string: never printed by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The secret itself, for the one place that sends it upstream.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

/// How requests to a supplier authenticate.
#[derive(Debug, Clone, PartialEq)]
pub enum Auth {
    None,
    Bearer(Secret),
    Basic { username: Secret, password: Secret },
    Header { name: reqwest::header::HeaderName, value: Secret },
}

impl Auth {
    /// Every secret value, so that upstream error text can be redacted.
    pub fn secrets(&self) -> Vec<&str> {
        let all: Vec<&Secret> = match self {
            Auth::None => vec![],
            Auth::Bearer(t) => vec![t],
            Auth::Basic { username, password } => vec![username, password],
            Auth::Header { value, .. } => vec![value],
        };
        all.into_iter().map(Secret::expose).filter(|s| s.len() >= 4).collect()
    }
}

/// How the HTTP client reaches a supplier (`proxy_url`, `no_proxy`, `tls`).
/// Suppliers with equal settings share one client (one connection pool), so
/// 10,000 suppliers behind one proxy mean one client, not 10,000. The default
/// is a direct connection (or `HTTPS_PROXY`/`NO_PROXY` from the environment)
/// with the system's roots.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct ClientSettings {
    /// `proxy_url`: every request goes through it (`CONNECT` for https
    /// suppliers); user and password in the URL are the proxy's own credentials.
    pub proxy_url: Option<Url>,
    /// `no_proxy`: hosts reached directly, in the `NO_PROXY` format.
    pub no_proxy: Option<String>,
    pub tls: Option<TlsSettings>,
}

/// `tls:` toward a supplier: its CA, a client certificate, the name to verify.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct TlsSettings {
    /// PEM certificates of the CAs to trust instead of the system's (`ca_file`).
    pub ca_pem: Option<Vec<u8>>,
    /// PEM client certificate chain followed by its private key (`cert_file` + `key_file`).
    pub identity_pem: Option<Vec<u8>>,
    /// `server_name`: the name the supplier's certificate must carry, when it
    /// differs from the URL's host.
    pub server_name: Option<String>,
    /// `min_version: TLS13` refuses TLS 1.2.
    pub tls13_only: bool,
}

impl ClientSettings {
    /// The proxy URL with its password replaced, for logs and pages.
    pub fn proxy_redacted(&self) -> Option<String> {
        self.proxy_url.as_ref().map(redact_url_password)
    }

    /// The proxy's user and password, so error text can be redacted.
    pub fn secrets(&self) -> Vec<String> {
        let Some(url) = &self.proxy_url else { return Vec::new() };
        [url.username(), url.password().unwrap_or("")].into_iter().filter(|s| s.len() >= 4).map(String::from).collect()
    }
}

/// `url` with any password replaced by `<secret>`.
pub fn redact_url_password(url: &Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some("<secret>"));
    }
    shown.to_string()
}

impl fmt::Debug for ClientSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientSettings")
            .field("proxy_url", &self.proxy_redacted())
            .field("no_proxy", &self.no_proxy)
            .field("tls", &self.tls)
            .finish()
    }
}

impl fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSettings")
            .field("ca", &self.ca_pem.is_some())
            .field("client_certificate", &self.identity_pem.is_some())
            .field("server_name", &self.server_name)
            .field("tls13_only", &self.tls13_only)
            .finish()
    }
}

/// One problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Key path, e.g. `suppliers[1].auth.bearer_token_file`.
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Reads a secret file (trailing newline trimmed). The error never echoes the
/// value when it does not look like a path: it may be a secret put inline.
pub fn read_secret_file(file: &str, path: &str, issues: &mut Vec<ConfigIssue>, warnings: &mut Vec<String>) -> Option<Secret> {
    let looks_like_path = file.contains('/') && !file.contains(char::is_whitespace);
    let shown = if looks_like_path { file.to_string() } else { "<value hidden>".to_string() };
    match std::fs::read_to_string(file) {
        Ok(content) => {
            warn_if_readable_by_others(file, path, warnings);
            let value = content.trim_end_matches(['\n', '\r']).to_string();
            if value.is_empty() {
                issues.push(ConfigIssue { path: path.into(), message: format!("secret file {shown} is empty") });
                return None;
            }
            Some(Secret::new(value))
        }
        Err(e) => {
            let hint = if looks_like_path { "" } else { " (this looks like a secret given inline; `*_file` keys take a file path)" };
            issues.push(ConfigIssue { path: path.into(), message: format!("cannot read secret file {shown}: {}{hint}", e.kind()) });
            None
        }
    }
}

#[cfg(unix)]
fn warn_if_readable_by_others(file: &str, path: &str, warnings: &mut Vec<String>) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(file) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            warnings.push(format!("{path}: secret file {file} is readable by group or others (mode {mode:04o}); use chmod 600"));
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_: &str, _: &str, _: &mut Vec<String>) {}

/// What the HTTP driver needs of one supplier.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    pub base_url: Url,
    pub auth: Auth,
    pub min_interval: Duration,
    pub timeout: Duration,
    pub max_response_bytes: usize,
    pub max_retries: u32,
    /// Proxy and TLS: which shared client the driver is given.
    pub client: ClientSettings,
}

impl UpstreamSettings {
    /// Settings with the driver's defaults (no spacing, 10 s timeout, 4 MiB
    /// body cap, no retries); tests and benches adjust what they need.
    pub fn new(base_url: Url, auth: Auth) -> Self {
        UpstreamSettings {
            base_url,
            auth,
            min_interval: Duration::ZERO,
            timeout: Duration::from_secs(10),
            max_response_bytes: 4 << 20,
            max_retries: 0,
            client: ClientSettings::default(),
        }
    }
}

/// An error with its causes, one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}
