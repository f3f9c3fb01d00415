//! `--config.auto-reload-interval`: reloads the config when what a reload reads
//! has changed, so a rotated secret file (a Kubernetes Secret, a systemd
//! credential) takes effect without a restart or a `SIGHUP`.
//!
//! Every interval the watcher hashes (SHA-256) the config file, every file it
//! names (each `*_file` key, after `${VAR}` expansion), the web config file and
//! the files that one names. A new digest is acted on only when the next check,
//! one interval later, reads the same digest: a file caught half-written is
//! never loaded, because a writer that is still writing changes it again before
//! the second read. The reload is the one `SIGHUP` and `POST /-/reload` run:
//! all or nothing, the old config kept on error,
//! `balance_exporter_config_last_reload_successful` set either way. A digest
//! that failed to load is not retried until the files change again.

use std::path::PathBuf;
use std::time::Duration;

use aws_lc_rs::digest::{Context, SHA256};
use tokio_util::sync::CancellationToken;

use crate::config::named_files;
use crate::server::{error_chain, Action};

/// What one check read, as a digest.
pub type Digest = [u8; 32];

/// The files a reload reads.
#[derive(Debug, Clone, Default)]
pub struct Watched {
    /// `None` in `--demo` (its config is built in).
    pub config_file: Option<PathBuf>,
    pub web_config_file: Option<PathBuf>,
}

impl Watched {
    /// Hashes every watched file: path, then content or "missing". Blocking I/O.
    pub fn digest(&self, env: &dyn Fn(&str) -> Option<String>) -> Digest {
        let mut ctx = Context::new(&SHA256);
        for (file, expand) in [(&self.config_file, true), (&self.web_config_file, false)] {
            let Some(file) = file else { continue };
            let text = std::fs::read(file);
            hash_file(&mut ctx, &file.display().to_string(), text.as_deref().ok());
            let named = match &text {
                Ok(bytes) => named_files(&String::from_utf8_lossy(bytes), expand, env),
                Err(_) => Vec::new(),
            };
            for path in named {
                hash_file(&mut ctx, &path, std::fs::read(&path).ok().as_deref());
            }
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }
}

/// Length-prefixed, so no two different (path, content) lists hash alike.
fn hash_file(ctx: &mut Context, path: &str, content: Option<&[u8]>) {
    ctx.update(&(path.len() as u64).to_le_bytes());
    ctx.update(path.as_bytes());
    match content {
        Some(bytes) => {
            ctx.update(&[1]);
            ctx.update(&(bytes.len() as u64).to_le_bytes());
            ctx.update(bytes);
        }
        None => ctx.update(&[0]),
    }
}

/// When to reload, from the digests of successive checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Debounce {
    /// The digest the running config was loaded from (or last tried).
    applied: Digest,
    /// A changed digest seen once, waiting for a second read that agrees.
    pending: Option<Digest>,
}

impl Debounce {
    pub fn new(applied: Digest) -> Debounce {
        Debounce { applied, pending: None }
    }

    /// Records one check; true when a reload is due (the same changed digest
    /// read twice in a row).
    pub fn observe(&mut self, now: Digest) -> bool {
        if now == self.applied {
            self.pending = None;
            return false;
        }
        if self.pending == Some(now) {
            self.applied = now;
            self.pending = None;
            return true;
        }
        self.pending = Some(now);
        false
    }
}

/// Checks every `interval` until `shutdown`; `initial` is the digest read before
/// the running config was loaded.
pub async fn watch(watched: Watched, initial: Digest, interval: Duration, reload: Action, shutdown: CancellationToken) {
    let mut debounce = Debounce::new(initial);
    // Delay, never burst: two checks are always at least one interval apart, so a
    // file that is being written for less than an interval is never read twice.
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let w = watched.clone();
        let digest = match tokio::task::spawn_blocking(move || w.digest(&|name| std::env::var(name).ok())).await {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "auto reload: reading the config files panicked");
                continue;
            }
        };
        if debounce.observe(digest) {
            tracing::info!("config files changed: reloading");
            if let Err(e) = reload().await {
                // The reload logged the whole error already; this says what started it.
                tracing::warn!(error = %error_chain(&e), "automatic reload failed; waiting for the files to change again");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> Digest {
        [n; 32]
    }

    #[test]
    fn a_change_is_applied_on_the_second_read_that_agrees() {
        let mut w = Debounce::new(d(1));
        assert!(!w.observe(d(1)));
        assert!(!w.observe(d(2)), "seen once");
        assert!(w.observe(d(2)), "seen twice in a row");
        assert!(!w.observe(d(2)), "applied: no second reload");
    }

    #[test]
    fn a_half_written_file_is_never_applied() {
        // The writer is caught mid-write (3), then finishes (4).
        let mut w = Debounce::new(d(1));
        assert!(!w.observe(d(3)));
        assert!(!w.observe(d(4)), "the partial content never got a second read");
        assert!(w.observe(d(4)));
    }

    #[test]
    fn a_change_reverted_before_the_second_read_is_ignored() {
        let mut w = Debounce::new(d(1));
        assert!(!w.observe(d(2)));
        assert!(!w.observe(d(1)));
        assert!(!w.observe(d(2)), "pending was cleared, so this is a first read again");
        assert!(w.observe(d(2)));
    }

    #[test]
    fn digest_follows_named_files_and_their_content() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        let pass = dir.path().join("pass");
        std::fs::write(&token, "old").unwrap();
        std::fs::write(&pass, "p1").unwrap();
        let cfg = dir.path().join("config.yml");
        std::fs::write(
            &cfg,
            "suppliers:\n  - {name: a, kind: foxreload, auth: {bearer_token_file: '${TOKEN_DIR}/token'}}\n  \
             - {name: b, kind: foxreload, auth: {basic: {username: u, password_file: '${TOKEN_DIR}/pass'}}}\n",
        )
        .unwrap();
        let web = dir.path().join("web.yml");
        let w = Watched { config_file: Some(cfg.clone()), web_config_file: Some(web.clone()) };
        let dir_s = dir.path().display().to_string();
        let env = move |name: &str| (name == "TOKEN_DIR").then(|| dir_s.clone());
        let first = w.digest(&env);
        assert_eq!(w.digest(&env), first, "stable while nothing changes");
        std::fs::write(&token, "new").unwrap();
        let second = w.digest(&env);
        assert_ne!(second, first, "a rotated bearer token file");
        std::fs::write(&pass, "p2").unwrap();
        let third = w.digest(&env);
        assert_ne!(third, second, "a rotated password file");
        std::fs::write(&web, "basic_auth_users: {}\n").unwrap();
        assert_ne!(w.digest(&env), third, "the web config appearing");
        std::fs::remove_file(&token).unwrap();
        let gone = w.digest(&env);
        std::fs::write(&token, "").unwrap();
        assert_ne!(w.digest(&env), gone, "an empty file is not a missing one");
    }

    #[test]
    fn named_files_walks_every_file_key() {
        let text = "global: {x_file: /a}\nsuppliers:\n  - {auth: {bearer_token_file: '${D}/b'}, tls: {ca_file: /c, cert_file: /c}}\n";
        let env = |name: &str| (name == "D").then(|| "/dir".to_string());
        assert_eq!(named_files(text, true, &env), ["/a", "/c", "/dir/b"]);
        assert_eq!(named_files(text, false, &env), ["${D}/b", "/a", "/c"]);
        assert!(named_files(":\n- [", true, &env).is_empty(), "invalid YAML names nothing");
    }
}
