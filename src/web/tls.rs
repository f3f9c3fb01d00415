//! `tls_server_config` → a rustls server config: protocol versions,
//! certificate chain, private key and client certificates (verified against
//! `client_ca_file`). exporter-toolkit keys that rustls cannot honour are
//! rejected rather than ignored. Key files get the same checks as other
//! secret files (mode warning).

use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use serde_yaml::Value;

use crate::config::{read_secret_file, ConfigIssue};

/// `tls_server_config` as written in the file.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileTls {
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

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum ClientAuth {
    None,
    VerifyIfGiven,
    Require,
}

/// Builds the rustls server config (ALPN h2 only with `http2`); `None` when
/// there is a problem, each pushed to `issues` with its key path.
pub(super) fn validate_tls(
    t: FileTls,
    http2: bool,
    issues: &mut Vec<ConfigIssue>,
    warnings: &mut Vec<String>,
) -> Option<rustls::ServerConfig> {
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
            issues.push(ConfigIssue {
                path: format!("{p}.cert_file"),
                message: "missing; TLS needs a certificate (cert_file or cert)".into(),
            });
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
            issues
                .push(ConfigIssue { path: format!("{p}.key_file"), message: "missing; TLS needs a private key (key_file or key)".into() });
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
            issues.push(ConfigIssue {
                path: format!("{p}.client_ca_file"),
                message: "missing; client_auth_type verifies client certificates against it".into(),
            });
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
