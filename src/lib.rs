//! `balance_exporter`: polls prepaid balances at suppliers and payment
//! providers and exposes them to Prometheus.
//!
//! The path of one poll: [`scheduler`] wakes a supplier's task on its own
//! schedule → the kind in [`suppliers`] asks through [`upstream::Upstream`]
//! (rate limiter, auth, timeouts, retries, body cap) and reads the answer
//! into exact decimals ([`amount`]) → [`snapshot::SupplierState::after_poll`]
//! derives the next immutable state (spend and top-up counters included) →
//! with `--storage.path`, [`storage`] writes it durably (group commit) → the
//! store swaps it in atomically. A panic anywhere in a poll is caught by the
//! scheduler and becomes a failed poll with `reason="internal"`.
//!
//! The path of one scrape: [`server`] → [`metrics::Renderer`] returns the
//! exposition cached for the store's current generation, or renders it once
//! from the states through a `prometheus` collector. A scrape never calls a
//! supplier. [`app`] wires config → scheduler → server for `main.rs` and the
//! tests; [`demo`] runs simulated suppliers for `--demo`. Order systems read
//! the same states as JSON through [`api`]; [`client`] holds one HTTP client
//! per proxy/TLS setting toward suppliers; [`auto_reload`] watches the files a
//! reload reads. [`trend`] keeps each balance's last day of usable amounts
//! and draws it as the landing page's inline SVG step line.
//!
//! Each poll's requests are traced ([`upstream::PollTrace`]: requests made,
//! last status, redacted failure snippet) into [`history`], which the
//! supplier page [`supplier_page`] shows; [`debug`] answers
//! `/-/debug/poll`, a poll run on demand that publishes nothing.

pub mod amount;
pub mod api;
pub mod app;
pub mod auto_reload;
pub mod client;
pub mod config;
pub mod debug;
pub mod demo;
#[cfg(test)]
mod fuzz;
pub mod history;
pub mod kinds;
pub mod landing;
pub mod metrics;
pub mod poll;
pub mod scheduler;
pub mod server;
pub mod settings;
pub mod shard;
pub mod snapshot;
pub mod spend_rate;
pub mod storage;
pub mod supplier_page;
pub mod topup_window;
pub mod trend;
pub mod upstream;
pub mod web;
