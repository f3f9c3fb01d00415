//! Wiring: config source → scheduler → HTTP server, with reload. Used by
//! `main.rs` and by the integration tests, which run the same thing in-process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::auto_reload;
use crate::config::{self, Config, ConfigError};
use crate::demo::{Demo, DemoError};
use crate::metrics::Renderer;
use crate::scheduler::Scheduler;
use crate::server::{self, error_chain, Action, ReloadError, Reloaded, ServerState};
use crate::shard::Shard;
use crate::snapshot::Store;
use crate::web::{self, WebConfig};

/// How the exporter is started.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `None` with `demo: true`.
    pub config_file: Option<PathBuf>,
    pub demo: bool,
    pub listen_address: String,
    /// More addresses to serve the same endpoints on (`--web.listen-address`
    /// given more than once), e.g. an IPv4 and an IPv6 one.
    pub more_listen_addresses: Vec<String>,
    pub telemetry_path: String,
    /// Poll only this replica's share of the suppliers.
    pub shard: Option<Shard>,
    /// `--storage.path`: counters, last balances and ledger memory survive restarts.
    pub storage_path: Option<PathBuf>,
    /// `--config.auto-reload-interval`: reload when the config, a file it names or
    /// the web config changes (zero: off).
    pub auto_reload_interval: Duration,
    /// `--web.enable-debug`: serve `/-/debug/poll` (behind the web config's auth).
    pub enable_debug: bool,
}

/// Keeps the suppliers this replica polls.
fn for_this_replica(mut config: Config, shard: Option<Shard>) -> Config {
    if let Some(shard) = shard {
        config.suppliers.retain(|s| shard.owns(&s.name));
    }
    config
}

/// Why the exporter could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("loading the config")]
    Config(#[source] ConfigError),
    #[error("starting the demo suppliers")]
    Demo(#[source] DemoError),
    #[error("loading the web config {path}")]
    WebConfig { path: String, source: ConfigError },
    #[error("opening the state directory (--storage.path)")]
    Storage(#[source] crate::storage::StorageError),
    #[error("listening on {addr}")]
    Listen { addr: String, source: std::io::Error },
}

/// A running exporter.
pub struct App {
    /// Where it listens (the first `--web.listen-address`).
    pub addr: SocketAddr,
    /// Every address it listens on, in flag order.
    pub addrs: Vec<SocketAddr>,
    pub store: Arc<Store>,
    scheduler: Arc<Scheduler>,
    reload: Action,
    shutdown: CancellationToken,
    server: JoinHandle<()>,
    demo: Option<Arc<Demo>>,
}

fn log_warnings(config: &Config) {
    for w in &config.warnings {
        tracing::warn!(warning = %w, "config");
    }
}

impl App {
    /// Loads the config (or starts the demo), starts polling and serving.
    pub async fn start(opts: Options) -> Result<App, StartError> {
        App::start_with_web_config(opts, None).await
    }

    /// [`App::start`] with `--web.config.file` (TLS, basic auth, headers),
    /// which is re-read on every reload with the config.
    pub async fn start_with_web_config(opts: Options, web_config_file: Option<PathBuf>) -> Result<App, StartError> {
        // Read before the config is, so a file that changes while it loads is
        // reloaded again rather than missed.
        let watched = auto_reload::Watched {
            config_file: if opts.demo {
                None
            } else {
                Some(opts.config_file.clone().unwrap_or_else(|| PathBuf::from("balance_exporter.yml")))
            },
            web_config_file: web_config_file.clone(),
        };
        let initial_digest = if opts.auto_reload_interval.is_zero() {
            None
        } else {
            let w = watched.clone();
            tokio::task::spawn_blocking(move || w.digest(&|name| std::env::var(name).ok())).await.ok()
        };
        let web = match &web_config_file {
            None => WebConfig::default(),
            Some(path) => {
                let p = path.clone();
                let loaded = tokio::task::spawn_blocking(move || web::load_file(&p)).await;
                let loaded = loaded.unwrap_or_else(|e| Err(ConfigError::LoaderPanicked { what: "web config", panic: e }));
                loaded.map_err(|source| StartError::WebConfig { path: path.display().to_string(), source })?
            }
        };
        for w in &web.warnings {
            tracing::warn!(warning = %w, "web config");
        }
        let web = Arc::new(arc_swap::ArcSwap::from_pointee(web));
        let store = Arc::new(Store::default());
        let storage = match &opts.storage_path {
            None => None,
            Some(dir) => {
                let dir = dir.clone();
                let opened = tokio::task::spawn_blocking(move || crate::storage::Storage::open(&dir)).await;
                let opened = opened.unwrap_or_else(|e| Err(crate::storage::StorageError::LoaderPanicked(e)));
                store.enable_state_writes();
                Some(Arc::new(opened.map_err(StartError::Storage)?))
            }
        };
        let scheduler = Arc::new(Scheduler::with_storage(store.clone(), storage));
        let (demo, initial) = if opts.demo {
            let demo = Arc::new(Demo::start().await.map_err(StartError::Demo)?);
            let config = demo.config.clone();
            (Some(demo), config)
        } else {
            let path = opts.config_file.clone().unwrap_or_else(|| PathBuf::from("balance_exporter.yml"));
            (None, config::load_file(&path).map_err(StartError::Config)?)
        };
        let initial = for_this_replica(initial, opts.shard);
        log_warnings(&initial);
        scheduler.apply(&initial);
        tracing::info!(suppliers = initial.suppliers.len(), demo = opts.demo, "config loaded");

        let reload: Action = {
            let (store, scheduler, file, demo, shard) =
                (store.clone(), scheduler.clone(), opts.config_file.clone(), demo.clone(), opts.shard);
            let (web, web_file) = (web.clone(), web_config_file.clone());
            Arc::new(move || {
                let (store, scheduler, file, demo) = (store.clone(), scheduler.clone(), file.clone(), demo.clone());
                let (web, web_file) = (web.clone(), web_file.clone());
                Box::pin(async move {
                    let loaded = match (&demo, &file) {
                        (Some(demo), _) => Ok(demo.config.clone()),
                        (None, Some(path)) => {
                            let path = path.clone();
                            tokio::task::spawn_blocking(move || config::load_file(&path))
                                .await
                                .unwrap_or_else(|e| Err(ConfigError::LoaderPanicked { what: "config", panic: e }))
                        }
                        (None, None) => config::load_file(std::path::Path::new("balance_exporter.yml")),
                    };
                    let loaded = loaded.map(|c| for_this_replica(c, shard)).map_err(ReloadError::Config);
                    // The web config is re-read too; if either is invalid, both old ones stay.
                    let new_web = match &web_file {
                        None => Ok(None),
                        Some(path) => reload_web_config(path.clone(), &web.load()).await.map(Some),
                    };
                    match loaded.and_then(|c| new_web.map(|w| (c, w))) {
                        Ok((config, new_web)) => {
                            if let Some(w) = new_web {
                                for warning in &w.warnings {
                                    tracing::warn!(warning = %warning, "web config");
                                }
                                web.store(Arc::new(w));
                            }
                            log_warnings(&config);
                            scheduler.apply(&config);
                            store.set_reload_result(true);
                            tracing::info!(suppliers = config.suppliers.len(), "config reloaded");
                            Ok(Reloaded { suppliers: config.suppliers.len() })
                        }
                        Err(e) => {
                            store.set_reload_result(false);
                            tracing::error!(error = %error_chain(&e), "config reload failed; keeping the previous config");
                            Err(e)
                        }
                    }
                })
            })
        };

        // Every address is bound before any is served: one that cannot be bound fails the start.
        let mut listeners = Vec::new();
        for wanted in std::iter::once(&opts.listen_address).chain(&opts.more_listen_addresses) {
            let listener = server::bind(wanted).await.map_err(|source| StartError::Listen { addr: wanted.clone(), source })?;
            let bound = listener.local_addr().map_err(|source| StartError::Listen { addr: wanted.clone(), source })?;
            listeners.push((listener, bound));
        }
        let addrs: Vec<SocketAddr> = listeners.iter().map(|(_, a)| *a).collect();
        let addr = addrs[0];
        let extra_routes: Option<server::ExtraRoutes> = demo.clone().map(|d| {
            let routes: server::ExtraRoutes = Arc::new(move |m: &hyper::Method, p: &str, q: &str| d.control(m, p, q));
            routes
        });
        let debug_poll: Option<crate::debug::Runner> = opts.enable_debug.then(|| {
            let scheduler = scheduler.clone();
            let runner: crate::debug::Runner = Arc::new(move |name: String| {
                let scheduler = scheduler.clone();
                Box::pin(async move { scheduler.debug_poll(&name).await })
            });
            runner
        });
        let state = Arc::new(ServerState {
            store: store.clone(),
            renderer: Renderer::new(store.clone()),
            telemetry_path: opts.telemetry_path.clone(),
            reload: reload.clone(),
            extra_routes,
            web,
            history: Some(scheduler.history()),
            debug_poll,
        });
        let shutdown = CancellationToken::new();
        if opts.storage_path.is_some() {
            tokio::spawn(save_history_periodically(scheduler.history(), shutdown.clone()));
        }
        let mut serving = tokio::task::JoinSet::new();
        for (listener, bound) in listeners {
            tracing::info!(address = %bound, telemetry_path = %opts.telemetry_path, "listening");
            serving.spawn(server::serve(listener, state.clone(), shutdown.clone()));
        }
        let server = tokio::spawn(async move { while serving.join_next().await.is_some() {} });
        if let Some(initial) = initial_digest {
            tokio::spawn(auto_reload::watch(watched, initial, opts.auto_reload_interval, reload.clone(), shutdown.clone()));
            tracing::info!(interval = ?opts.auto_reload_interval, "automatic config reload on");
        }
        Ok(App { addr, addrs, store, scheduler, reload, shutdown, server, demo })
    }

    /// Reloads the config as SIGHUP and `POST /-/reload` do.
    pub async fn reload(&self) -> Result<Reloaded, ReloadError> {
        (self.reload)().await
    }

    /// Addresses of the demo's simulated suppliers, if running `--demo`.
    pub fn demo(&self) -> Option<&Demo> {
        self.demo.as_deref()
    }

    /// Stops polling and serving; returns within a few seconds.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.scheduler.shutdown(Duration::from_secs(2)).await;
        let _ = tokio::time::timeout(Duration::from_secs(6), self.server).await;
        if let Some(d) = &self.demo {
            d.stop();
        }
    }
}

/// Saves the poll history every [`crate::history::SAVE_INTERVAL`] (when it
/// changed) until `shutdown`; the scheduler's shutdown saves it a last time.
async fn save_history_periodically(history: Arc<crate::history::History>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(crate::history::SAVE_INTERVAL) => {}
        }
        let history = history.clone();
        let _ = tokio::task::spawn_blocking(move || history.save()).await;
    }
}

/// Re-reads the web config for a reload. Switching TLS on or off needs a
/// restart: a reload must never silently downgrade a TLS listener to plain HTTP.
async fn reload_web_config(path: PathBuf, current: &WebConfig) -> Result<WebConfig, ReloadError> {
    let p = path.clone();
    let loaded = tokio::task::spawn_blocking(move || web::load_file(&p)).await;
    let loaded = loaded.unwrap_or_else(|e| Err(ConfigError::LoaderPanicked { what: "web config", panic: e }));
    let new = loaded.map_err(|source| ReloadError::WebConfig { path: path.display().to_string(), source })?;
    if new.tls.is_some() != current.tls.is_some() {
        return Err(ReloadError::TlsSwitch { path: path.display().to_string(), added: new.tls.is_some() });
    }
    Ok(new)
}
