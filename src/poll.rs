//! What a poll produces and how it fails: the vocabulary shared by the
//! supplier kinds, the HTTP driver, the scheduler, the snapshot and the
//! renderer. It imports nothing of the crate, so every module can import it
//! without an import circle.
//!
//! Amounts stay exact (`Decimal`) here, extra samples included; they become
//! floats only in the renderer.

use std::any::Any;
use std::time::{Duration, SystemTime};

use rust_decimal::Decimal;

/// Why a poll failed: the fixed values of the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    Auth,
    Forbidden,
    NotFound,
    RateLimited,
    ServerError,
    Timeout,
    Connect,
    Decode,
    UpstreamStatus,
    /// A bug of ours (a panic while polling): caught, counted, polling goes on.
    Internal,
}

impl Reason {
    /// Every reason, in label order; used to pre-create the error counters at 0.
    pub const ALL: [Reason; 10] = [
        Reason::Auth,
        Reason::Forbidden,
        Reason::NotFound,
        Reason::RateLimited,
        Reason::ServerError,
        Reason::Timeout,
        Reason::Connect,
        Reason::Decode,
        Reason::UpstreamStatus,
        Reason::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Auth => "auth",
            Reason::Forbidden => "forbidden",
            Reason::NotFound => "not_found",
            Reason::RateLimited => "rate_limited",
            Reason::ServerError => "server_error",
            Reason::Timeout => "timeout",
            Reason::Connect => "connect",
            Reason::Decode => "decode",
            Reason::UpstreamStatus => "upstream_status",
            Reason::Internal => "internal",
        }
    }

    /// The reason of a label value.
    pub fn parse(label: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == label)
    }

    /// The reason for an HTTP error status.
    pub fn from_status(status: u16) -> Reason {
        match status {
            401 => Reason::Auth,
            403 => Reason::Forbidden,
            404 => Reason::NotFound,
            429 => Reason::RateLimited,
            500..=599 => Reason::ServerError,
            _ => Reason::UpstreamStatus,
        }
    }
}

/// A failed poll: a fixed reason plus a short, secret-free message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{reason}: {message}", reason = .reason.as_str())]
pub struct PollError {
    pub reason: Reason,
    pub message: String,
    /// When the supplier asked us to come back (429/503 `Retry-After`).
    pub retry_after: Option<Duration>,
}

impl PollError {
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        PollError { reason, message: message.into(), retry_after: None }
    }
    pub fn decode(message: impl Into<String>) -> Self {
        PollError::new(Reason::Decode, message)
    }
}

/// One balance: one (account, currency) of a supplier.
#[derive(Debug, Clone, PartialEq)]
pub struct BalanceRow {
    pub account: String,
    pub currency: String,
    /// Total, including frozen.
    pub balance: Decimal,
    pub frozen: Decimal,
    pub usable: Decimal,
    /// When the supplier computed it; `None` means "when we fetched it".
    pub updated_at: Option<SystemTime>,
}

/// How spend and top-ups are known for this poll's rows.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Flows {
    /// Inferred from changes of the total balance between polls.
    #[default]
    Inferred,
    /// Counted exactly from a ledger: new spend and top-ups since the last poll.
    Ledger(Vec<FlowDelta>),
}

/// New ledger spend and top-ups of one (account, currency).
#[derive(Debug, Clone, PartialEq)]
pub struct FlowDelta {
    pub account: String,
    pub currency: String,
    pub spent: Decimal,
    pub topped_up: Decimal,
}

/// A kind-specific series (escrow order counts, wallet aggregates, ledger
/// counters). Labels exclude `supplier`, which is added when rendering.
#[derive(Debug, Clone, PartialEq)]
pub struct ExtraSample {
    pub name: &'static str,
    pub help: &'static str,
    pub labels: Vec<(&'static str, String)>,
    /// Exact until exposition, like balances.
    pub value: Decimal,
}

/// What one successful poll found.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PollOutput {
    pub balances: Vec<BalanceRow>,
    pub flows: Flows,
    /// Gauges replaced on every poll.
    pub gauges: Vec<ExtraSample>,
    /// Counter increments, added to what earlier polls counted.
    pub counter_increments: Vec<ExtraSample>,
    /// Rows that could not be read while others could: counted, logged, not fatal.
    pub row_errors: Vec<String>,
}

/// State a kind keeps between polls of one supplier (e.g. ledger entries seen).
///
/// Memory taken with [`KindMemory::get_persistent`] is also written under
/// `--storage.path` and comes back after a restart; [`KindMemory::get`] is
/// for what must not reach the disk (access tokens).
#[derive(Default)]
pub struct KindMemory {
    value: Option<Box<dyn Any + Send + Sync>>,
    /// Serialises `value` when it is persistent memory.
    save: Option<fn(&(dyn Any + Send + Sync)) -> Option<serde_json::Value>>,
    /// Read from the state directory, turned into the kind's type on first use.
    restored: Option<serde_json::Value>,
}

impl KindMemory {
    /// Memory that starts from what a previous run persisted.
    pub fn restored(value: serde_json::Value) -> KindMemory {
        KindMemory { restored: Some(value), ..KindMemory::default() }
    }

    /// This kind's memory, created on first use; never persisted.
    pub fn get<T: Default + Send + Sync + 'static>(&mut self) -> &mut T {
        if !self.value.as_ref().is_some_and(|b| b.is::<T>()) {
            self.value = Some(Box::new(T::default()));
            self.save = None;
        }
        self.value.as_mut().and_then(|b| b.downcast_mut::<T>()).expect("memory type just set")
    }

    /// This kind's memory, persisted with `--storage.path`: on first use it
    /// is read back from the restored value (a value of another shape starts
    /// fresh, with a warning).
    pub fn get_persistent<T>(&mut self) -> &mut T
    where
        T: Default + serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
    {
        if !self.value.as_ref().is_some_and(|b| b.is::<T>()) {
            let value = match self.restored.take().map(serde_json::from_value::<T>) {
                Some(Ok(v)) => v,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "persisted kind memory unreadable; starting fresh");
                    T::default()
                }
                None => T::default(),
            };
            self.value = Some(Box::new(value));
            self.save = Some(|any| any.downcast_ref::<T>().and_then(|v| serde_json::to_value(v).ok()));
        }
        self.value.as_mut().and_then(|b| b.downcast_mut::<T>()).expect("memory type just set")
    }

    /// What to persist: the persistent memory, or what was restored and not yet used.
    pub fn saved(&self) -> Option<serde_json::Value> {
        match (&self.value, self.save) {
            (Some(value), Some(save)) => save(value.as_ref()),
            _ => self.restored.clone(),
        }
    }
}

impl std::fmt::Debug for KindMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KindMemory")
    }
}

/// A non-2xx answer, as the HTTP driver hands it to the supplier's kind
/// before any text is made of it (the kind may know the API's error envelope).
#[derive(Debug, Clone, Copy)]
pub struct ErrorResponse<'a> {
    pub status: u16,
    pub headers: &'a reqwest::header::HeaderMap,
    pub body: &'a [u8],
}

/// How a kind reads its API's error answers: the reason and a message, or
/// `None` for the driver's reading (reason from the status, `http N: <snippet>`).
pub type ErrorReader = fn(&ErrorResponse<'_>) -> Option<(Reason, String)>;
