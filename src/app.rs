//! Wiring: config source → scheduler → HTTP server, with reload. Used by
//! `main.rs` and by the integration tests, which run the same thing in-process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{self, Config, ConfigError};
use crate::demo::{Demo, DemoError};
use crate::metrics::Renderer;
use crate::scheduler::Scheduler;
use crate::server::{self, Action, ServerState};
use crate::snapshot::Store;

/// How the exporter is started.
#[derive(Debug, Clone)]
pub struct Options {
    /// `None` with `demo: true`.
    pub config_file: Option<PathBuf>,
    pub demo: bool,
    pub listen_address: String,
    pub telemetry_path: String,
}

/// Why the exporter could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("loading the config")]
    Config(#[source] ConfigError),
    #[error("starting the demo suppliers")]
    Demo(#[source] DemoError),
    #[error("listening on {addr}")]
    Listen { addr: String, source: std::io::Error },
}

/// A running exporter.
pub struct App {
    pub addr: SocketAddr,
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
        let store = Arc::new(Store::default());
        let scheduler = Arc::new(Scheduler::new(store.clone()));
        let (demo, initial) = if opts.demo {
            let demo = Arc::new(Demo::start().await.map_err(StartError::Demo)?);
            let config = demo.config.clone();
            (Some(demo), config)
        } else {
            let path = opts.config_file.clone().unwrap_or_else(|| PathBuf::from("balance_exporter.yml"));
            (None, config::load_file(&path).map_err(StartError::Config)?)
        };
        log_warnings(&initial);
        scheduler.apply(&initial);
        tracing::info!(suppliers = initial.suppliers.len(), demo = opts.demo, "config loaded");

        let reload: Action = {
            let (store, scheduler, file, demo) = (store.clone(), scheduler.clone(), opts.config_file.clone(), demo.clone());
            Arc::new(move || {
                let (store, scheduler, file, demo) = (store.clone(), scheduler.clone(), file.clone(), demo.clone());
                Box::pin(async move {
                    let loaded = match (&demo, &file) {
                        (Some(demo), _) => Ok(demo.config.clone()),
                        (None, Some(path)) => {
                            let path = path.clone();
                            tokio::task::spawn_blocking(move || config::load_file(&path)).await.unwrap_or_else(|e| {
                                Err(ConfigError::Yaml(format!("config loader panicked: {e}")))
                            })
                        }
                        (None, None) => config::load_file(std::path::Path::new("balance_exporter.yml")),
                    };
                    match loaded {
                        Ok(config) => {
                            log_warnings(&config);
                            scheduler.apply(&config);
                            store.set_reload_result(true);
                            tracing::info!(suppliers = config.suppliers.len(), "config reloaded");
                            Ok(format!("reloaded: {} suppliers", config.suppliers.len()))
                        }
                        Err(e) => {
                            store.set_reload_result(false);
                            let text = error_chain(&e);
                            tracing::error!(error = %text, "config reload failed; keeping the previous config");
                            Err(format!("config reload failed, keeping the previous config: {text}"))
                        }
                    }
                })
            })
        };

        let listener = server::bind(&opts.listen_address)
            .await
            .map_err(|source| StartError::Listen { addr: opts.listen_address.clone(), source })?;
        let addr = listener.local_addr().map_err(|source| StartError::Listen { addr: opts.listen_address.clone(), source })?;
        let extra_routes: Option<server::ExtraRoutes> = demo.clone().map(|d| {
            let routes: server::ExtraRoutes = Arc::new(move |m: &hyper::Method, p: &str, q: &str| d.control(m, p, q));
            routes
        });
        let state = Arc::new(ServerState {
            store: store.clone(),
            renderer: Renderer::new(store.clone()),
            telemetry_path: opts.telemetry_path.clone(),
            reload: reload.clone(),
            extra_routes,
        });
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(server::serve(listener, state, shutdown.clone()));
        tracing::info!(address = %addr, telemetry_path = %opts.telemetry_path, "listening");
        Ok(App { addr, store, scheduler, reload, shutdown, server, demo })
    }

    /// Reloads the config as SIGHUP and `POST /-/reload` do.
    pub async fn reload(&self) -> Result<String, String> {
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
