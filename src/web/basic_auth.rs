//! `basic_auth_users` → [`BasicAuth`]: bcrypt hashes checked per request.
//!
//! Basic auth follows exporter-toolkit: bcrypt hashes, verified credentials
//! cached (bcrypt at cost 10 costs ~80 ms of CPU per check), and an unknown
//! user costs a bcrypt check against a dummy hash of the same cost, so that
//! timing does not tell which users exist.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use aws_lc_rs::hmac;
use base64::Engine as _;
use hyper::header::HeaderValue;
use subtle::ConstantTimeEq;

use crate::config::ConfigIssue;

/// Checks each user name and hash; `None` when there is a problem (pushed to
/// `issues`) or no user at all (auth off).
pub(super) fn validate_users(raw: BTreeMap<String, String>, issues: &mut Vec<ConfigIssue>) -> Option<BasicAuth> {
    let before = issues.len();
    let mut users = HashMap::new();
    let mut max_cost = 0;
    for (user, hash) in raw {
        let path = format!("basic_auth_users.{user}");
        if user.is_empty() || user.contains(':') || user.chars().any(char::is_control) {
            issues.push(ConfigIssue { path, message: "user names must be non-empty, without ':' or control characters".into() });
            continue;
        }
        match hash.trim().parse::<bcrypt::HashParts>() {
            // Each check costs 2^cost rounds, and unknown users pay it too (the dummy hash).
            Ok(parts) if parts.get_cost() > MAX_BCRYPT_COST => issues.push(ConfigIssue {
                path,
                message: format!(
                    "bcrypt cost {} is above {MAX_BCRYPT_COST}: every check would take many seconds of CPU; use 10 to 12",
                    parts.get_cost()
                ),
            }),
            Ok(parts) => {
                max_cost = max_cost.max(parts.get_cost());
                users.insert(user, hash.trim().to_string());
            }
            // The value is never echoed: it may be a plain password put here by mistake.
            Err(_) => issues.push(ConfigIssue {
                path,
                message:
                    "is not a bcrypt hash (value hidden: it may be a plain password); make one with htpasswd -nBC 10 \"\" | tr -d ':\\n'"
                        .into(),
            }),
        }
    }
    // An empty list turns auth off, as in exporter-toolkit.
    if issues.len() > before || users.is_empty() {
        return None;
    }
    Some(BasicAuth::new(users, max_cost))
}

/// The highest bcrypt cost accepted (as `htpasswd -B -C` allows): at 17 one
/// check already takes seconds.
const MAX_BCRYPT_COST: u32 = 17;

/// `basic_auth_users`: bcrypt hashes and a cache of verified credentials.
pub struct BasicAuth {
    users: HashMap<String, String>,
    /// A hash of a random password at the highest configured cost, checked
    /// for unknown users so that they cost as much as a wrong password.
    dummy_hash: String,
    /// Per user, the HMAC of the last password that bcrypt accepted. Keyed by
    /// user, so the cache never outgrows the user list; the HMAC key is
    /// random per process, so the cache holds nothing reusable.
    verified: Mutex<HashMap<String, [u8; 32]>>,
    key: hmac::Key,
    /// Bounds concurrent bcrypt checks, so a flood of wrong passwords queues
    /// instead of taking every core.
    bcrypt_slots: tokio::sync::Semaphore,
}

impl BasicAuth {
    fn new(users: HashMap<String, String>, cost: u32) -> BasicAuth {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &rng).expect("system random number generator");
        let slots = std::thread::available_parallelism().map_or(2, |n| n.get());
        BasicAuth {
            users,
            dummy_hash: dummy_hash(cost),
            verified: Mutex::new(HashMap::new()),
            key,
            bcrypt_slots: tokio::sync::Semaphore::new(slots),
        }
    }

    /// How many users are configured (for the summary line and `Debug`).
    pub(super) fn user_count(&self) -> usize {
        self.users.len()
    }

    fn tag(&self, user: &str, password: &[u8]) -> [u8; 32] {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(&(user.len() as u64).to_be_bytes());
        ctx.update(user.as_bytes());
        ctx.update(password);
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }

    /// Checks an `Authorization` header value. Runs bcrypt off the async
    /// threads when the credentials are not cached.
    pub async fn check(self: &Arc<Self>, header: Option<&HeaderValue>) -> bool {
        let Some((user, password)) = header.and_then(parse_basic) else { return false };
        let Ok(_slot) = self.bcrypt_slots.acquire().await else { return false };
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.verify(&user, &password)).await.unwrap_or(false)
    }

    /// Verifies one user and password (blocking: may run bcrypt).
    pub fn verify(&self, user: &str, password: &[u8]) -> bool {
        let tag = self.tag(user, password);
        let Some(hash) = self.users.get(user) else {
            // Unknown user: the same bcrypt work as a wrong password, then no.
            let _ = bcrypt::verify(password, &self.dummy_hash);
            return false;
        };
        let cached = self.verified.lock().map(|m| m.get(user).copied()).unwrap_or(None);
        if cached.is_some_and(|c| bool::from(c.ct_eq(&tag))) {
            return true;
        }
        let ok = bcrypt::verify(password, hash).unwrap_or(false);
        if ok {
            if let Ok(mut m) = self.verified.lock() {
                m.insert(user.to_string(), tag);
            }
        }
        ok
    }
}

/// `Basic base64(user:password)` → (user, password bytes).
fn parse_basic(value: &HeaderValue) -> Option<(String, Vec<u8>)> {
    let value = value.to_str().ok()?.trim();
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let colon = decoded.iter().position(|b| *b == b':')?;
    let user = String::from_utf8(decoded[..colon].to_vec()).ok()?;
    Some((user, decoded[colon + 1..].to_vec()))
}

/// One dummy hash per cost per process: making one costs a bcrypt run, and
/// reloads would otherwise pay it each time.
fn dummy_hash(cost: u32) -> String {
    static CACHE: OnceLock<Mutex<HashMap<u32, String>>> = OnceLock::new();
    let cost = cost.clamp(4, 31);
    let cache = CACHE.get_or_init(Default::default);
    if let Some(h) = cache.lock().ok().and_then(|m| m.get(&cost).cloned()) {
        return h;
    }
    let random: [u8; 16] = rand::random();
    let h = bcrypt::hash(random, cost).expect("bcrypt cost is within 4..=31");
    if let Ok(mut m) = cache.lock() {
        m.insert(cost, h.clone());
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(user: &str, hash: &str) -> BTreeMap<String, String> {
        BTreeMap::from([(user.to_string(), hash.to_string())])
    }

    #[test]
    fn basic_auth_verifies_caches_and_rejects_unknown_users() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let mut issues = Vec::new();
        let auth = validate_users(users("alice", &hash), &mut issues).unwrap();
        assert!(issues.is_empty(), "{issues:?}");
        assert!(auth.verify("alice", b"s3cret"));
        assert!(auth.verified.lock().unwrap().contains_key("alice"));
        assert!(auth.verify("alice", b"s3cret"), "cached");
        assert!(!auth.verify("alice", b"wrong"));
        assert!(!auth.verify("bob", b"s3cret"));
        assert!(bcrypt::verify("x", &auth.dummy_hash).is_ok(), "dummy hash is a real hash");
        assert!(auth.dummy_hash.starts_with("$2b$04$"), "dummy has the users' cost: {}", auth.dummy_hash);
    }

    #[test]
    fn authorization_header_parsing() {
        let v = |s: &str| HeaderValue::from_str(s).unwrap();
        assert_eq!(parse_basic(&v("Basic YWxpY2U6czNjcjp0")), Some(("alice".into(), b"s3cr:t".to_vec())));
        assert_eq!(parse_basic(&v("basic YWxpY2U6")), Some(("alice".into(), vec![])));
        assert_eq!(parse_basic(&v("Bearer YWxpY2U6czNjcmV0")), None);
        assert_eq!(parse_basic(&v("Basic !!!")), None);
        assert_eq!(parse_basic(&v("Basic YWxpY2U")), None, "no colon");
    }

    #[test]
    fn plain_password_is_rejected_without_echo() {
        let mut issues = Vec::new();
        assert!(validate_users(users("alice", "hunter2"), &mut issues).is_none());
        let errs: Vec<String> = issues.iter().map(|i| i.to_string()).collect();
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with("basic_auth_users.alice: is not a bcrypt hash"), "{errs:?}");
        assert!(!errs[0].contains("hunter2"));
    }
}
