//! Every integration test of balance_exporter, in one binary (one link, not
//! a dozen): `cargo test --release --test it [module::]`.
//!
//! Each module tests one area against stub suppliers on 127.0.0.1; the
//! shared helpers (in-process exporter, scrapes, sample parsing, running a
//! test in a process of its own) are in [`common`]. Tests that measure RSS or
//! time run themselves again as a child process ([`common::isolated`]), so
//! the tests running beside them in this binary do not blur their figures.

mod common;

mod api;
mod bad_configs;
mod balanced_orders;
mod binary;
mod crash;
mod dodo_wallets;
mod history;
mod hostile_upstreams;
mod json_kind;
mod json_pages;
mod load;
mod reload;
mod seed_kinds;
mod shard;
mod upstream_client;
mod web_security;
