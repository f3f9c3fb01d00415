//! The HTTP clients toward suppliers: the `proxy_url`, `no_proxy` and `tls`
//! keys (in `global` and per supplier), validated into [`ClientSettings`], and
//! one `reqwest` client per distinct setting, shared by every supplier that
//! uses it (built by [`Clients`], kept while some supplier uses it).
//!
//! Every client follows no redirect by itself (the driver does, see
//! `upstream.rs`) and never sends a supplier's credentials to a proxy: the
//! supplier's `Authorization` travels inside the `CONNECT` tunnel for https
//! suppliers; a proxy gets `Proxy-Authorization` only from its own
//! `proxy_url` user and password. Without `proxy_url`, `HTTPS_PROXY`,
//! `HTTP_PROXY` and `NO_PROXY` from the environment apply (reqwest's rule).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Url;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde::Deserialize;

use crate::settings::{read_secret_file, ClientSettings, ConfigIssue, TlsSettings};

/// The `tls:` section of `global` or a supplier.
#[derive(Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct FileTls {
    /// CA certificates (PEM) to trust instead of the system's.
    ca_file: Option<String>,
    /// Client certificate chain (PEM), for suppliers that require mutual TLS.
    cert_file: Option<String>,
    /// Its private key (PEM); a secret file (warned about when others can read it).
    key_file: Option<String>,
    /// The name the supplier's certificate must carry when it is not the URL's host (needs `ca_file`).
    server_name: Option<String>,
    /// `TLS12` (default) or `TLS13`.
    min_version: Option<String>,
}

/// The client keys of `global` or of one supplier, as written.
#[derive(Clone, Default)]
pub struct FileClient {
    pub proxy_url: Option<String>,
    pub no_proxy: Option<String>,
    pub tls: Option<FileTls>,
}

/// The supplier's settings: each key of the supplier replaces the global one
/// (`tls` as a whole; `proxy_url: ""` turns a global proxy off).
pub fn validate_client(
    global: &FileClient,
    own: FileClient,
    path: &str,
    issues: &mut Vec<ConfigIssue>,
    warnings: &mut Vec<String>,
) -> ClientSettings {
    let (proxy_key, proxy) = match own.proxy_url {
        Some(p) => (format!("{path}.proxy_url"), Some(p)),
        None => ("global.proxy_url".to_string(), global.proxy_url.clone()),
    };
    let proxy_url = proxy.filter(|p| !p.trim().is_empty()).and_then(|p| match parse_proxy_url(&p) {
        Ok(url) => Some(url),
        Err(message) => {
            issues.push(ConfigIssue { path: proxy_key.clone(), message });
            None
        }
    });
    let (no_proxy_key, no_proxy) = match own.no_proxy {
        Some(n) => (format!("{path}.no_proxy"), Some(n)),
        None => ("global.no_proxy".to_string(), global.no_proxy.clone()),
    };
    let no_proxy = no_proxy.map(|n| n.trim().to_string()).filter(|n| !n.is_empty());
    if no_proxy.is_some() && proxy_url.is_none() && !issues.iter().any(|i| i.path == proxy_key) {
        issues.push(ConfigIssue {
            path: no_proxy_key,
            message: "needs proxy_url (for a proxy from the environment, set NO_PROXY there)".into(),
        });
    }
    let (tls_key, tls) = match own.tls {
        Some(t) => (format!("{path}.tls"), Some(t)),
        None => ("global.tls".to_string(), global.tls.clone()),
    };
    let tls = tls.and_then(|t| validate_tls(t, &tls_key, issues, warnings));
    ClientSettings { proxy_url, no_proxy, tls }
}

/// A proxy URL: http or https, a host, nothing after it. The error never
/// shows the URL (it may hold the proxy's password).
fn parse_proxy_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text.trim()).map_err(|e| format!("invalid URL ({e}); the value is not shown, it may hold a password"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("scheme {:?} not supported (http or https)", url.scheme()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("has no host".into());
    }
    if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
        return Err("must be scheme://[user:password@]host[:port] with nothing after it".into());
    }
    Ok(url)
}

fn validate_tls(raw: FileTls, path: &str, issues: &mut Vec<ConfigIssue>, warnings: &mut Vec<String>) -> Option<TlsSettings> {
    let before = issues.len();
    let read_certs = |file: &str, key: &str, issues: &mut Vec<ConfigIssue>| -> Option<Vec<u8>> {
        let key_path = format!("{path}.{key}");
        let bytes = match std::fs::read(file) {
            Ok(b) => b,
            Err(e) => {
                issues.push(ConfigIssue { path: key_path, message: format!("cannot read {file}: {e}") });
                return None;
            }
        };
        let certs: Result<Vec<CertificateDer>, _> = CertificateDer::pem_slice_iter(&bytes).collect();
        match certs {
            Ok(c) if !c.is_empty() => Some(bytes),
            Ok(_) => {
                issues.push(ConfigIssue { path: key_path, message: format!("{file} holds no PEM certificate") });
                None
            }
            Err(e) => {
                issues.push(ConfigIssue { path: key_path, message: format!("{file}: invalid PEM ({e})") });
                None
            }
        }
    };
    let ca_pem = raw.ca_file.as_deref().and_then(|f| read_certs(f, "ca_file", issues));
    let identity_pem = match (raw.cert_file.as_deref(), raw.key_file.as_deref()) {
        (None, None) => None,
        (Some(_), None) | (None, Some(_)) => {
            issues.push(ConfigIssue { path: path.into(), message: "give cert_file and key_file together".into() });
            None
        }
        (Some(cert), Some(key)) => {
            let chain = read_certs(cert, "cert_file", issues);
            let secret = read_secret_file(key, &format!("{path}.key_file"), issues, warnings);
            let key_ok = secret.as_ref().is_some_and(|k| PrivateKeyDer::from_pem_slice(k.expose().as_bytes()).is_ok());
            if secret.is_some() && !key_ok {
                issues.push(ConfigIssue { path: format!("{path}.key_file"), message: format!("{key} holds no PEM private key") });
            }
            match (chain, secret) {
                (Some(mut pem), Some(key)) if key_ok => {
                    pem.push(b'\n');
                    pem.extend_from_slice(key.expose().as_bytes());
                    Some(pem)
                }
                _ => None,
            }
        }
    };
    let server_name = raw.server_name.map(|s| s.trim().to_string());
    if let Some(name) = &server_name {
        if ServerName::try_from(name.as_str()).is_err() {
            issues.push(ConfigIssue { path: format!("{path}.server_name"), message: format!("{name:?} is not a DNS name or IP address") });
        } else if raw.ca_file.is_none() {
            issues.push(ConfigIssue {
                path: format!("{path}.server_name"),
                message: "needs ca_file (the name is checked against the CAs given there)".into(),
            });
        }
    }
    let tls13_only = match raw.min_version.as_deref() {
        None | Some("TLS12") => false,
        Some("TLS13") => true,
        Some(other) => {
            issues.push(ConfigIssue { path: format!("{path}.min_version"), message: format!("{other:?} not supported (TLS12 or TLS13)") });
            false
        }
    };
    (issues.len() == before).then_some(TlsSettings { ca_pem, identity_pem, server_name, tls13_only })
}

/// Why a client could not be built from valid-looking settings.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("building the HTTP client")]
    Build(#[source] reqwest::Error),
    #[error("setting up TLS toward the supplier")]
    Tls(#[source] rustls::Error),
    #[error("reading the TLS files: {0}")]
    Pem(String),
}

/// Builds a client for `settings`: rustls, no automatic redirects, the connect timeout.
pub fn build(settings: &ClientSettings, connect_timeout: Duration) -> Result<reqwest::Client, ClientError> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(connect_timeout)
        .pool_idle_timeout(Duration::from_secs(90));
    if let Some(url) = &settings.proxy_url {
        // Credentials in the URL become this proxy's Proxy-Authorization, and only its.
        let mut proxy = reqwest::Proxy::all(url.clone()).map_err(ClientError::Build)?;
        if let Some(list) = &settings.no_proxy {
            proxy = proxy.no_proxy(reqwest::NoProxy::from_string(list));
        }
        builder = builder.proxy(proxy);
    }
    if let Some(tls) = &settings.tls {
        builder = match &tls.server_name {
            Some(name) => builder.use_preconfigured_tls(name_checking_tls(tls, name)?),
            None => {
                if let Some(ca) = &tls.ca_pem {
                    let certs = reqwest::Certificate::from_pem_bundle(ca).map_err(ClientError::Build)?;
                    builder = builder.tls_certs_only(certs);
                }
                if let Some(pem) = &tls.identity_pem {
                    builder = builder.identity(reqwest::Identity::from_pem(pem).map_err(ClientError::Build)?);
                }
                if tls.tls13_only {
                    builder = builder.min_tls_version(reqwest::tls::Version::TLS_1_3);
                }
                builder
            }
        };
    }
    builder.build().map_err(ClientError::Build)
}

/// A rustls config that trusts only `ca_pem` and checks the certificate against
/// `name` instead of the URL's host (the SNI sent is still the URL's host).
fn name_checking_tls(tls: &TlsSettings, name: &str) -> Result<rustls::ClientConfig, ClientError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(tls.ca_pem.as_deref().unwrap_or_default()) {
        roots.add(cert.map_err(|e| ClientError::Pem(e.to_string()))?).map_err(ClientError::Tls)?;
    }
    let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| ClientError::Pem(e.to_string()))?;
    let name = ServerName::try_from(name.to_string()).map_err(|e| ClientError::Pem(e.to_string()))?;
    let versions: &[&rustls::SupportedProtocolVersion] =
        if tls.tls13_only { &[&rustls::version::TLS13] } else { &[&rustls::version::TLS13, &rustls::version::TLS12] };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(ClientError::Tls)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(CheckedAs { inner, name }));
    let mut config = match &tls.identity_pem {
        None => builder.with_no_client_auth(),
        Some(pem) => {
            let chain: Vec<CertificateDer<'static>> =
                CertificateDer::pem_slice_iter(pem).collect::<Result<_, _>>().map_err(|e| ClientError::Pem(e.to_string()))?;
            let key = PrivateKeyDer::from_pem_slice(pem).map_err(|e| ClientError::Pem(e.to_string()))?;
            builder.with_client_auth_cert(chain, key).map_err(ClientError::Tls)?
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The standard web-PKI check, against a configured name.
#[derive(Debug)]
struct CheckedAs {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for CheckedAs {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _url_host: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner.verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The clients in use, one per distinct [`ClientSettings`].
#[derive(Default)]
pub struct Clients {
    by_settings: Mutex<HashMap<ClientSettings, reqwest::Client>>,
}

impl Clients {
    /// The client for `settings`, built on first use.
    pub fn get(&self, settings: &ClientSettings) -> Result<reqwest::Client, ClientError> {
        let mut map = self.by_settings.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = map.get(settings) {
            return Ok(client.clone());
        }
        let client = build(settings, Duration::from_secs(5))?;
        map.insert(settings.clone(), client.clone());
        Ok(client)
    }

    /// Drops the clients no supplier in `used` needs (after a reload).
    pub fn retain(&self, used: &[&ClientSettings]) {
        self.by_settings.lock().unwrap_or_else(|e| e.into_inner()).retain(|k, _| used.contains(&k));
    }

    /// How many distinct clients exist.
    pub fn len(&self) -> usize {
        self.by_settings.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issues_of(global: FileClient, own: FileClient) -> Vec<String> {
        let mut issues = Vec::new();
        validate_client(&global, own, "suppliers[0]", &mut issues, &mut Vec::new());
        issues.iter().map(|i| i.to_string()).collect()
    }

    #[test]
    fn the_supplier_replaces_the_global_proxy_and_can_turn_it_off() {
        let global = FileClient { proxy_url: Some("http://proxy.internal:3128".into()), ..Default::default() };
        let mut issues = Vec::new();
        let s = validate_client(&global, FileClient::default(), "suppliers[0]", &mut issues, &mut Vec::new());
        assert_eq!(s.proxy_url.unwrap().as_str(), "http://proxy.internal:3128/");
        let own = FileClient { proxy_url: Some(String::new()), ..Default::default() };
        let s = validate_client(&global, own, "suppliers[0]", &mut issues, &mut Vec::new());
        assert!(s.proxy_url.is_none() && issues.is_empty());
    }

    #[test]
    fn proxy_errors_never_show_the_url() {
        let own = FileClient { proxy_url: Some("http://user:hunter22@[bad".into()), ..Default::default() };
        let errs = issues_of(FileClient::default(), own);
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with("suppliers[0].proxy_url: invalid URL"), "{errs:?}");
        assert!(!errs[0].contains("hunter22"), "{errs:?}");
        let own = FileClient { proxy_url: Some("socks5://p:1080".into()), ..Default::default() };
        assert_eq!(issues_of(FileClient::default(), own), ["suppliers[0].proxy_url: scheme \"socks5\" not supported (http or https)"]);
        let own = FileClient { proxy_url: Some("http://p:1/path".into()), ..Default::default() };
        assert_eq!(
            issues_of(FileClient::default(), own),
            ["suppliers[0].proxy_url: must be scheme://[user:password@]host[:port] with nothing after it"]
        );
        let own = FileClient { no_proxy: Some("localhost".into()), ..Default::default() };
        assert_eq!(
            issues_of(FileClient::default(), own),
            ["suppliers[0].no_proxy: needs proxy_url (for a proxy from the environment, set NO_PROXY there)"]
        );
    }

    #[test]
    fn proxy_password_is_redacted_and_listed_as_a_secret() {
        let s = ClientSettings { proxy_url: Some(Url::parse("http://ops:s3cr3t-pw@proxy:3128").unwrap()), ..Default::default() };
        assert_eq!(s.proxy_redacted().unwrap(), "http://ops:%3Csecret%3E@proxy:3128/");
        assert!(!format!("{s:?}").contains("s3cr3t-pw"));
        assert_eq!(s.secrets(), ["s3cr3t-pw"]);
    }

    #[test]
    fn tls_errors_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let tls = |t: FileTls| FileClient { tls: Some(t), ..Default::default() };
        let junk_s = junk.display().to_string();
        assert_eq!(
            issues_of(FileClient::default(), tls(FileTls { ca_file: Some(junk_s.clone()), ..Default::default() })),
            [format!("suppliers[0].tls.ca_file: {junk_s} holds no PEM certificate")]
        );
        assert_eq!(
            issues_of(FileClient::default(), tls(FileTls { cert_file: Some(junk_s.clone()), ..Default::default() })),
            ["suppliers[0].tls: give cert_file and key_file together"]
        );
        assert_eq!(
            issues_of(FileClient::default(), tls(FileTls { server_name: Some("supplier.internal".into()), ..Default::default() })),
            ["suppliers[0].tls.server_name: needs ca_file (the name is checked against the CAs given there)"]
        );
        assert_eq!(
            issues_of(FileClient::default(), tls(FileTls { min_version: Some("TLS11".into()), ..Default::default() })),
            ["suppliers[0].tls.min_version: \"TLS11\" not supported (TLS12 or TLS13)"]
        );
        let global = tls(FileTls { ca_file: Some("/nonexistent/ca.pem".into()), ..Default::default() });
        let errs = issues_of(global, FileClient::default());
        assert!(errs[0].starts_with("global.tls.ca_file: cannot read /nonexistent/ca.pem"), "{errs:?}");
    }

    #[test]
    fn equal_settings_share_one_client() {
        let clients = Clients::default();
        let direct = ClientSettings::default();
        let proxied = ClientSettings { proxy_url: Some(Url::parse("http://127.0.0.1:9").unwrap()), ..Default::default() };
        for _ in 0..100 {
            clients.get(&direct).unwrap();
            clients.get(&proxied).unwrap();
        }
        assert_eq!(clients.len(), 2);
        clients.retain(&[&direct]);
        assert_eq!(clients.len(), 1);
    }
}
