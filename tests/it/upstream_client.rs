//! Proxy and TLS toward suppliers (`proxy_url`, `no_proxy`, `tls`): a supplier
//! stub over TLS with its own CA, one that requires a client certificate, one
//! whose certificate names another host (`server_name`), and a `CONNECT` proxy
//! stub that sees which requests go through it and with which headers. All on
//! 127.0.0.1, with the real exporter polling.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::ExtendedKeyUsagePurpose;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::common::{self, ca, leaf, start, wait_for, write_private};

const FOX_BODY: &str = r#"{"balance": {"amount": 284.50, "currency": "USD", "updated_at": "2026-05-01T13:45:22Z"}}"#;
const TOKEN: &str = "fox-token-9f8e7d";

/// Request heads a stub received, in order.
type Seen = Arc<Mutex<Vec<String>>>;

async fn read_head(stream: &mut (impl AsyncReadExt + Unpin)) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.ok()? == 0 || head.len() > 16 * 1024 {
            return None;
        }
        head.push(byte[0]);
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

async fn answer(stream: &mut (impl AsyncWriteExt + Unpin)) {
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{FOX_BODY}",
        FOX_BODY.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// A FoxReload stub over TLS with `cert`/`key`; with `client_ca`, it requires
/// a client certificate from that CA. Returns its port and what it saw.
async fn tls_supplier(cert: &str, key: &str, client_ca: Option<&str>) -> (u16, Seen) {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert.as_bytes()).map(Result::unwrap).collect();
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions().unwrap();
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                roots.add(c.unwrap()).unwrap();
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build().unwrap();
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder.with_single_cert(chain, key).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Seen = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, log) = (acceptor.clone(), log.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                if let Some(head) = read_head(&mut tls).await {
                    log.lock().unwrap().push(head);
                    answer(&mut tls).await;
                }
            });
        }
    });
    (port, seen)
}

/// A forward proxy stub: tunnels `CONNECT host:port`, answers plain
/// `GET http://…` itself. Returns its port and the request heads it saw.
async fn proxy() -> (u16, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Seen = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let Some(head) = read_head(&mut client).await else { return };
                log.lock().unwrap().push(head.clone());
                let target = head.strip_prefix("CONNECT ").and_then(|rest| rest.split(' ').next()).map(String::from);
                match target {
                    Some(target) => {
                        let Ok(mut upstream) = TcpStream::connect(&target).await else { return };
                        let _ = client.write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n").await;
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    }
                    None => answer(&mut client).await,
                }
            });
        }
    });
    (port, seen)
}

fn supplier(url: &str, extra: &str) -> String {
    format!(
        "suppliers:\n  - {{name: fox, kind: foxreload, base_url: '{url}', poll_interval: 1h, min_interval: 0s, max_retries: 0, \
         auth: {{bearer_token: {TOKEN}}}{extra}}}\n"
    )
}

async fn polled(app: &balance_exporter::app::App) -> (f64, String) {
    let s = wait_for(app, Duration::from_secs(15), "first poll", |s| s.get("supplier_up", &[("supplier", "fox")]).is_some()).await;
    let reason = s
        .series_of("supplier_poll_errors_total")
        .iter()
        .find(|(k, _)| k.contains("\"fox\""))
        .map(|(k, _)| k.to_string())
        .unwrap_or_default();
    (s.value("supplier_up", &[("supplier", "fox")]), reason)
}

#[tokio::test]
async fn a_supplier_with_a_private_ca_is_trusted_only_with_its_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = ca("supplier private CA");
    let (cert, key) = leaf(&issuer, &["127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth);
    let (port, seen) = tls_supplier(&cert, &key, None).await;
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, issuer.pem()).unwrap();
    let url = format!("https://127.0.0.1:{port}");

    // Without the CA: the system roots do not know it.
    let (app, _d) = start(&supplier(&url, "")).await;
    let (up, reason) = polled(&app).await;
    assert_eq!(up, 0.0, "untrusted certificate accepted");
    assert!(!reason.is_empty());
    app.stop().await;
    assert!(seen.lock().unwrap().is_empty(), "a request went out over an unverified connection");

    let (app, _d) = start(&supplier(&url, &format!(", tls: {{ca_file: '{}'}}", ca_file.display()))).await;
    assert_eq!(polled(&app).await.0, 1.0);
    assert_eq!(
        common::scrape(&app).await.value("supplier_balance", &[("supplier", "fox"), ("account", "main"), ("currency", "USD")]),
        284.5
    );
    let heads = seen.lock().unwrap().clone();
    assert!(heads[0].contains(&format!("Bearer {TOKEN}")), "{heads:?}");
    app.stop().await;
}

#[tokio::test]
async fn a_supplier_requiring_a_client_certificate_gets_one_from_cert_and_key_files() {
    let dir = tempfile::tempdir().unwrap();
    let server_ca = ca("supplier CA");
    let (cert, key) = leaf(&server_ca, &["127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth);
    let client_ca = ca("clients of the supplier");
    let (port, seen) = tls_supplier(&cert, &key, Some(&client_ca.pem())).await;
    let (client_cert, client_key) = leaf(&client_ca, &["balance_exporter"], ExtendedKeyUsagePurpose::ClientAuth);
    let (ca_file, cert_file, key_file) = (dir.path().join("ca.pem"), dir.path().join("client.crt"), dir.path().join("client.key"));
    std::fs::write(&ca_file, server_ca.pem()).unwrap();
    std::fs::write(&cert_file, client_cert).unwrap();
    write_private(&key_file, &client_key);
    let url = format!("https://127.0.0.1:{port}");

    let ca_only = format!(", tls: {{ca_file: '{}'}}", ca_file.display());
    let (app, _d) = start(&supplier(&url, &ca_only)).await;
    assert_eq!(polled(&app).await.0, 0.0, "no client certificate, refused");
    app.stop().await;
    assert!(seen.lock().unwrap().is_empty());

    let mtls = format!(
        ", tls: {{ca_file: '{}', cert_file: '{}', key_file: '{}', min_version: TLS13}}",
        ca_file.display(),
        cert_file.display(),
        key_file.display()
    );
    let (app, _d) = start(&supplier(&url, &mtls)).await;
    assert_eq!(polled(&app).await.0, 1.0);
    assert_eq!(seen.lock().unwrap().len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn server_name_checks_the_certificate_against_another_name() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = ca("internal CA");
    let (cert, key) = leaf(&issuer, &["balances.supplier.internal"], ExtendedKeyUsagePurpose::ServerAuth);
    let (port, _seen) = tls_supplier(&cert, &key, None).await;
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, issuer.pem()).unwrap();
    let url = format!("https://127.0.0.1:{port}");

    let (app, _d) = start(&supplier(&url, &format!(", tls: {{ca_file: '{}'}}", ca_file.display()))).await;
    assert_eq!(polled(&app).await.0, 0.0, "the certificate does not name 127.0.0.1");
    app.stop().await;
    let wrong = format!(", tls: {{ca_file: '{}', server_name: other.supplier.internal}}", ca_file.display());
    let (app, _d) = start(&supplier(&url, &wrong)).await;
    assert_eq!(polled(&app).await.0, 0.0, "a name the certificate does not carry");
    app.stop().await;
    let right = format!(", tls: {{ca_file: '{}', server_name: balances.supplier.internal}}", ca_file.display());
    let (app, _d) = start(&supplier(&url, &right)).await;
    assert_eq!(polled(&app).await.0, 1.0);
    app.stop().await;
}

#[tokio::test]
async fn requests_go_through_the_proxy_with_its_own_credentials_only() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = ca("supplier CA");
    let (cert, key) = leaf(&issuer, &["127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth);
    let (port, supplier_seen) = tls_supplier(&cert, &key, None).await;
    let (proxy_port, proxy_seen) = proxy().await;
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, issuer.pem()).unwrap();
    let url = format!("https://127.0.0.1:{port}");
    let via = format!(", tls: {{ca_file: '{}'}}, proxy_url: 'http://egress:pr0xy-pass@127.0.0.1:{proxy_port}'", ca_file.display());
    let (app, _d) = start(&supplier(&url, &via)).await;
    assert_eq!(polled(&app).await.0, 1.0);
    let heads = proxy_seen.lock().unwrap().clone();
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert!(heads[0].starts_with(&format!("CONNECT 127.0.0.1:{port} ")), "{heads:?}");
    use base64::Engine;
    let proxy_auth = base64::engine::general_purpose::STANDARD.encode("egress:pr0xy-pass");
    assert!(heads[0].to_ascii_lowercase().contains(&format!("proxy-authorization: basic {proxy_auth}").to_ascii_lowercase()), "{heads:?}");
    assert!(!heads[0].contains(TOKEN), "the supplier's token reached the proxy: {heads:?}");
    let at_supplier = supplier_seen.lock().unwrap().clone();
    assert!(at_supplier[0].contains(&format!("Bearer {TOKEN}")), "{at_supplier:?}");
    assert!(!at_supplier[0].to_ascii_lowercase().contains("proxy-authorization"), "{at_supplier:?}");
    // The proxy's password is no more visible than a supplier's secret.
    let page = common::get(&app, "/").await.1;
    let metrics = common::scrape(&app).await.text;
    assert!(!page.contains("pr0xy-pass") && !metrics.contains("pr0xy-pass"));
    app.stop().await;

    // no_proxy: the same supplier, reached directly.
    let direct = format!("{via}, no_proxy: '127.0.0.1'");
    let (app, _d) = start(&supplier(&url, &direct)).await;
    assert_eq!(polled(&app).await.0, 1.0);
    assert_eq!(proxy_seen.lock().unwrap().len(), 1, "no_proxy host went through the proxy");
    app.stop().await;
}

#[tokio::test]
async fn a_global_proxy_applies_to_every_supplier_and_one_can_opt_out() {
    let (proxy_port, proxy_seen) = proxy().await;
    let direct = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("GET"))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_raw(FOX_BODY.as_bytes().to_vec(), "application/json"))
        .mount(&direct)
        .await;
    // Plain http through a forward proxy: the proxy answers for the supplier.
    let config = format!(
        "global: {{proxy_url: 'http://127.0.0.1:{proxy_port}'}}\nsuppliers:\n  \
         - {{name: fox, kind: foxreload, base_url: 'http://supplier.invalid', poll_interval: 1h, min_interval: 0s, max_retries: 0, auth: {{bearer_token: {TOKEN}}}}}\n  \
         - {{name: own, kind: foxreload, base_url: '{}', poll_interval: 1h, min_interval: 0s, max_retries: 0, proxy_url: ''}}\n",
        direct.uri()
    );
    let (app, _d) = start(&config).await;
    let s = wait_for(&app, Duration::from_secs(15), "both polled", |s| {
        s.get("supplier_up", &[("supplier", "fox")]) == Some(1.0) && s.get("supplier_up", &[("supplier", "own")]) == Some(1.0)
    })
    .await;
    assert_eq!(s.value("supplier_balance", &[("supplier", "own"), ("account", "main"), ("currency", "USD")]), 284.5);
    let heads = proxy_seen.lock().unwrap().clone();
    assert_eq!(heads.len(), 1, "only fox goes through the proxy: {heads:?}");
    assert!(heads[0].starts_with("GET http://supplier.invalid/"), "{heads:?}");
    assert_eq!(direct.received_requests().await.unwrap().len(), 1);
    app.stop().await;
}

#[test]
fn bad_client_settings_are_config_errors_that_hide_the_proxy_password() {
    let text = "suppliers:\n  - {name: fox, kind: foxreload, proxy_url: 'ftp://u:hunter2222@p', tls: {min_version: TLS10, key_file: /x}}\n";
    let err = balance_exporter::config::load_str(text, &|_| None).unwrap_err().to_string();
    assert!(err.contains("suppliers[0].proxy_url: scheme \"ftp\" not supported (http or https)"), "{err}");
    assert!(err.contains("suppliers[0].tls: give cert_file and key_file together"), "{err}");
    assert!(err.contains("suppliers[0].tls.min_version: \"TLS10\" not supported (TLS12 or TLS13)"), "{err}");
    assert!(!err.contains("hunter2222"), "{err}");
}
