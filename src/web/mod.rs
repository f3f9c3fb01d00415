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
//! rate_limit:                                      # optional: a token bucket for all requests
//!   interval: 100ms                                # one request per interval (0s: off)
//!   burst: 20                                      # let through at once
//! ```
//!
//! This module owns that file, from its text to what the server uses:
//! - `config`: the file's top level, loading, the `http_server_config`
//!   headers, and the validated [`WebConfig`];
//! - `tls`: `tls_server_config` → a rustls server config (versions,
//!   certificate chain, private key, client certificates);
//! - `basic_auth`: `basic_auth_users` → [`BasicAuth`] (bcrypt checks, the
//!   cache of verified credentials, the `Authorization` header);
//! - `rate_limit`: `rate_limit` → a token bucket the server asks first.
//!
//! `config` imports the other three; they import nothing of this module, so
//! each can be read and changed alone.

mod basic_auth;
mod config;
mod rate_limit;
mod tls;

pub use basic_auth::BasicAuth;
pub use config::{load_file, load_str, WebConfig};
pub use rate_limit::RateLimiter;
