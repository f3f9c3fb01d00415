//! The `balance_exporter` binary: flags, logging, signals, and the app.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use balance_exporter::app::{App, Options};
use balance_exporter::config;
use balance_exporter::server::error_chain;

/// Prometheus exporter for prepaid balances at suppliers and payment providers.
#[derive(Parser, Debug)]
#[command(name = "balance_exporter", version)]
struct Flags {
    /// Suppliers to poll (YAML).
    #[arg(long = "config.file", default_value = "balance_exporter.yml")]
    config_file: PathBuf,
    /// Validate the config and exit 0 (valid) or 1 (every problem printed).
    #[arg(long = "config.check")]
    config_check: bool,
    /// Reload when the config file, a file it names (`*_file`) or the web config
    /// file changes content, checked at this interval (a change is used once two
    /// checks agree); 0s: off (reload with SIGHUP or POST /-/reload).
    #[arg(long = "config.auto-reload-interval", default_value = "0s", value_parser = humantime::parse_duration)]
    auto_reload_interval: std::time::Duration,
    /// Run with built-in simulated suppliers and no config file.
    #[arg(long)]
    demo: bool,
    /// Address to listen on (`:9866` is every interface); repeat the flag to listen on several.
    #[arg(long = "web.listen-address", default_value = ":9866", action = clap::ArgAction::Append)]
    listen_address: Vec<String>,
    /// Path under which to expose metrics.
    #[arg(long = "web.telemetry-path", default_value = "/metrics")]
    telemetry_path: String,
    /// Serve /-/debug/poll?supplier=NAME (behind the web config's auth): one
    /// poll run now through the supplier's limiter, answered as JSON,
    /// published nowhere (docs/debug.md).
    #[arg(long = "web.enable-debug")]
    enable_debug: bool,
    /// TLS, basic auth and extra headers (Prometheus exporter-toolkit format).
    #[arg(long = "web.config.file")]
    web_config_file: Option<PathBuf>,
    /// Directory where spend/top-up counters, last balances and ledger
    /// cursors survive restarts (none: they start fresh).
    #[arg(long = "storage.path")]
    storage_path: Option<PathBuf>,
    /// This replica's shard (0-based), see --shard.count.
    #[arg(long = "shard.index", default_value_t = 0)]
    shard_index: u64,
    /// Number of replicas sharing the suppliers; each polls those whose
    /// name hashes (Prometheus hashmod) to its --shard.index.
    #[arg(long = "shard.count", default_value_t = 1)]
    shard_count: u64,
    /// Log level: error, warn, info, debug.
    #[arg(long = "log.level", default_value = "info")]
    log_level: String,
    /// Log format: logfmt or json.
    #[arg(long = "log.format", default_value = "logfmt", value_parser = ["logfmt", "json"])]
    log_format: String,
}

/// `--log.level` names no level.
#[derive(Debug, thiserror::Error)]
#[error("invalid --log.level {level:?} (error, warn, info, debug)")]
struct LogLevelError {
    level: String,
}

fn init_logging(flags: &Flags) -> Result<(), LogLevelError> {
    let level = match flags.log_level.as_str() {
        l @ ("error" | "warn" | "info" | "debug" | "trace") => l,
        other => return Err(LogLevelError { level: other.into() }),
    };
    // Our own crate at the chosen level; chatty dependencies stay at warn.
    let filter = EnvFilter::new(format!("warn,balance_exporter={level}"));
    if flags.log_format == "json" {
        tracing_subscriber::fmt().json().with_env_filter(filter).with_current_span(false).with_writer(std::io::stderr).init();
    } else {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        tracing_subscriber::registry()
            .with(filter)
            .with(tracing_logfmt::builder().with_span_name(false).with_span_path(false).layer().with_writer(std::io::stderr))
            .init();
    }
    Ok(())
}

/// `--config.check`: the config, then the web config when one is given.
fn check_config(flags: &Flags) -> ExitCode {
    let config = check_one(
        &flags.config_file,
        config::load_file(&flags.config_file).map(|cfg| (format!("{} suppliers", cfg.suppliers.len()), cfg.warnings)),
    );
    let web = match &flags.web_config_file {
        None => true,
        Some(path) => check_one(path, balance_exporter::web::load_file(path).map(|w| (w.summary(), w.warnings))),
    };
    if config && web {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Prints one file's result; true when it is valid.
fn check_one(file: &std::path::Path, loaded: Result<(String, Vec<String>), config::ConfigError>) -> bool {
    match loaded {
        Ok((summary, warnings)) => {
            for w in &warnings {
                eprintln!("warning: {w}");
            }
            println!("{}: OK, {summary}", file.display());
            true
        }
        Err(config::ConfigError::Invalid(issues)) => {
            eprintln!("{}: {} problem(s):", file.display(), issues.len());
            for issue in issues {
                eprintln!("  {issue}");
            }
            false
        }
        Err(e) => {
            eprintln!("{}: {}", file.display(), error_chain(&e));
            false
        }
    }
}

/// glibc's allocator keeps freed memory of every thread's arena (up to eight per
/// core) instead of returning it, and the exporter frees a lot: every render drops
/// the previous `/metrics` body (megabytes at 10,000 suppliers) and every poll the
/// previous state. One arena (the polls and renders are short and rarely contend:
/// `cargo bench --bench lean` showed no throughput loss and ~5 MiB less resident
/// than two), large blocks mapped on their own, and trimming above 128 KiB hold the
/// resident set near what is live.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator() {
    // SAFETY: mallopt only sets allocator parameters; called first thing in main,
    // before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 * 1024);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}

fn main() -> ExitCode {
    tune_allocator();
    let flags = Flags::parse();
    if flags.config_check {
        return check_config(&flags);
    }
    if let Err(e) = init_logging(&flags) {
        eprintln!("{e}");
        return ExitCode::FAILURE;
    }
    if !flags.telemetry_path.starts_with('/') {
        eprintln!("--web.telemetry-path must start with '/'");
        return ExitCode::FAILURE;
    }
    // Before any thread starts: panics inside polls are logged redacted, not printed raw.
    balance_exporter::scheduler::install_panic_hook();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("building the tokio runtime");
    runtime.block_on(run(flags))
}

async fn run(flags: Flags) -> ExitCode {
    use tokio::signal::unix::{signal, SignalKind};
    // Registered before anything else, so an early SIGHUP is not fatal.
    let (mut hup, mut term) = match (signal(SignalKind::hangup()), signal(SignalKind::terminate())) {
        (Ok(h), Ok(t)) => (h, t),
        _ => {
            eprintln!("cannot install signal handlers");
            return ExitCode::FAILURE;
        }
    };
    let shard = match balance_exporter::shard::Shard::new(flags.shard_index, flags.shard_count) {
        Ok(s) if s.count > 1 => Some(s),
        Ok(_) => None,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let opts = Options {
        shard,
        config_file: (!flags.demo).then(|| flags.config_file.clone()),
        demo: flags.demo,
        listen_address: flags.listen_address.first().cloned().unwrap_or_else(|| ":9866".into()),
        more_listen_addresses: flags.listen_address.iter().skip(1).cloned().collect(),
        telemetry_path: flags.telemetry_path.clone(),
        storage_path: flags.storage_path.clone(),
        auto_reload_interval: flags.auto_reload_interval,
        enable_debug: flags.enable_debug,
    };
    let app = match App::start_with_web_config(opts, flags.web_config_file.clone()).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!(error = %error_chain(&e), "cannot start");
            return ExitCode::FAILURE;
        }
    };
    if let Some(demo) = app.demo() {
        for (name, addr) in demo.addresses() {
            tracing::info!(supplier = name, address = %addr, "demo supplier simulated");
        }
    }
    loop {
        tokio::select! {
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading config");
                let _ = app.reload().await;
            }
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    tracing::info!("shutting down");
    app.stop().await;
    ExitCode::SUCCESS
}
