//! What survives a restart (`--storage.path DIR`): per supplier, the last
//! balances, the spend/top-up counters and the kind's ledger memory.
//!
//! Files in `DIR` (format version [`FORMAT_VERSION`], docs/storage.md):
//!
//! - `state.snapshot`: a header line, then one record per supplier;
//! - `state.journal`: the same header, then records appended after each poll
//!   (a later record of a supplier replaces an earlier one; `drop` records
//!   forget a supplier);
//! - `lock`: held (`flock`) while an exporter uses the directory;
//! - `trends.v1`: the landing page's trend pictures ([`crate::trend`]), its
//!   own file in its own format, rewritten whole (temporary file, fsync,
//!   rename) every few minutes and at shutdown; a damaged one is ignored.
//!
//! Each record line is `<crc32 of the JSON, 8 hex digits> <JSON>\n`, so a line
//! torn by a crash or damaged on disk is recognised and skipped. One writer
//! thread appends every record waiting at that moment in one write and one
//! `fsync` (group commit) and only then tells the polls, which publish their
//! counters afterwards: a counter is never in `/metrics` before it is
//! durable. When the journal outgrows twice the snapshot it is compacted:
//! a new snapshot is written to a temporary file, synced, renamed over the
//! old one, and the journal starts again.
#![deny(clippy::arithmetic_side_effects)]

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::poll::{BalanceRow, Reason};
use crate::snapshot::{Balance, BalanceKey, DayStart, KeyMap, LastError, SupplierState};
use crate::spend_rate::SpendHistory;
use crate::trend::Trend;

/// Version of the record format; a file of another version is set aside.
pub const FORMAT_VERSION: u32 = 1;
const HEADER: &str = "balance_exporter state v1";
const SNAPSHOT: &str = "state.snapshot";
const JOURNAL: &str = "state.journal";
/// The journal is compacted once larger than this and twice the snapshot.
const COMPACT_MIN_BYTES: u64 = 1 << 20;
/// The trends file (its version is in its name and its header).
pub const TRENDS: &str = "trends.v1";

/// Why the state could not be opened, read or written.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{op} {path}")]
    Io { op: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{path} is used by another balance_exporter (its lock is held)")]
    Locked { path: PathBuf },
    #[error("state record: {0}")]
    Record(RecordError),
    /// The task opening the state panicked.
    #[error("state record: state loader panicked: {0}")]
    LoaderPanicked(tokio::task::JoinError),
    /// The journal write holding this record failed; the writer goes on.
    #[error("state record")]
    Write(#[source] Arc<WriteFailed>),
    #[error("the state writer has stopped")]
    Stopped,
}

/// A persisted record that does not read (or write) as one.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("{field} {text:?}: {source}")]
    Amount { field: String, text: String, source: rust_decimal::Error },
    #[error("unknown reason {0:?}")]
    Reason(String),
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    #[error("format version {0} (this exporter reads {FORMAT_VERSION})")]
    Version(u32),
    #[error("{account:?} {currency:?}: {source}")]
    History { account: String, currency: String, source: crate::spend_rate::HistoryError },
}

/// A failed append to the journal, shared by every record of the batch.
#[derive(Debug, thiserror::Error)]
#[error("{op} {path}")]
pub struct WriteFailed {
    op: &'static str,
    path: PathBuf,
    source: std::io::Error,
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StorageError {
    let path = path.to_path_buf();
    move |source| StorageError::Io { op, path, source }
}

// ---- the record format ----

/// One supplier's persisted state: a record line's JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    v: u32,
    supplier: String,
    kind: String,
    polls_total: u64,
    errors_total: BTreeMap<String, u64>,
    row_errors_total: u64,
    last_success: Option<SystemTime>,
    last_error: Option<ErrorRecord>,
    balances: Vec<BalanceRecord>,
    counters: Vec<CounterRecord>,
    /// Written by the first v1 exporters (a coarse spend estimate, now replaced
    /// by `spend_history`); accepted and ignored so their state still loads.
    #[serde(default, skip_serializing)]
    spend_windows: Option<serde_json::Value>,
    /// Each balance's spend-rate history (`SpendHistory::encode`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    spend_history: Vec<HistoryRecord>,
    /// The kind's memory (ledger cursor and duplicate detection), as the kind serialises it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    memory: Option<serde_json::Value>,
    /// Where each balance's UTC day began (absent in records of exporters before it:
    /// the day then starts again at the first poll).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    days: Vec<DayRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ErrorRecord {
    reason: String,
    message: String,
    at: SystemTime,
}

/// Amounts are decimal strings, read back with `Decimal::from_str_exact`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BalanceRecord {
    account: String,
    currency: String,
    balance: String,
    frozen: String,
    usable: String,
    updated_at: Option<SystemTime>,
    fetched_at: SystemTime,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CounterRecord {
    account: String,
    currency: String,
    spent: String,
    topped_up: String,
    seen: Option<SystemTime>,
}

/// A balance's [`crate::snapshot::DayStart`]: `day` is days since 1970-01-01 (UTC).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DayRecord {
    account: String,
    currency: String,
    day: u64,
    spent: String,
    topped_up: String,
    opening: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryRecord {
    account: String,
    currency: String,
    points: String,
}

/// A `drop` line: the supplier left the config.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DropRecord {
    v: u32,
    drop: String,
}

impl Record {
    fn capture(supplier: &str, kind: &str, state: &SupplierState, memory: Option<serde_json::Value>) -> Record {
        let counters = state
            .spent_total
            .keys()
            .chain(state.topped_up_total.keys())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .map(|key| CounterRecord {
                account: key.0.clone(),
                currency: key.1.clone(),
                spent: state.spent_total.get(key).copied().unwrap_or_default().to_string(),
                topped_up: state.topped_up_total.get(key).copied().unwrap_or_default().to_string(),
                seen: state.counters_seen.get(key).copied(),
            })
            .collect();
        Record {
            v: FORMAT_VERSION,
            supplier: supplier.to_string(),
            kind: kind.to_string(),
            polls_total: state.polls_total,
            errors_total: state.errors_total.iter().map(|(r, n)| (r.as_str().to_string(), *n)).collect(),
            row_errors_total: state.row_errors_total,
            last_success: state.last_success,
            last_error: state.last_error.as_ref().map(|e| ErrorRecord {
                reason: e.reason.as_str().into(),
                message: e.message.clone(),
                at: e.at,
            }),
            balances: state
                .balances
                .values()
                .map(|b| BalanceRecord {
                    account: b.row.account.clone(),
                    currency: b.row.currency.clone(),
                    balance: b.row.balance.to_string(),
                    frozen: b.row.frozen.to_string(),
                    usable: b.row.usable.to_string(),
                    updated_at: b.row.updated_at,
                    fetched_at: b.fetched_at,
                })
                .collect(),
            counters,
            spend_windows: None,
            spend_history: state
                .spend_windows
                .iter()
                .map(|(key, h)| HistoryRecord { account: key.0.clone(), currency: key.1.clone(), points: h.encode() })
                .collect(),
            memory,
            days: state
                .day_starts
                .iter()
                .map(|(key, d)| DayRecord {
                    account: key.0.clone(),
                    currency: key.1.clone(),
                    day: d.day,
                    spent: d.spent.to_string(),
                    topped_up: d.topped_up.to_string(),
                    opening: d.opening.to_string(),
                })
                .collect(),
        }
    }

    /// The state a restarted exporter starts this supplier from: what was
    /// persisted, not yet polled (`supplier_up` appears with the first attempt).
    fn restore(&self, loaded_at: SystemTime) -> Result<SupplierState, StorageError> {
        let amount = |field: &str, s: &str| {
            Decimal::from_str_exact(s)
                .map_err(|source| StorageError::Record(RecordError::Amount { field: field.into(), text: s.into(), source }))
        };
        let mut state = SupplierState::loaded(loaded_at);
        state.polls_total = self.polls_total;
        state.row_errors_total = self.row_errors_total;
        for (reason, n) in &self.errors_total {
            let reason = Reason::parse(reason).ok_or_else(|| StorageError::Record(RecordError::Reason(reason.clone())))?;
            state.errors_total.insert(reason, *n);
        }
        state.last_success = self.last_success;
        if let Some(e) = &self.last_error {
            let reason = Reason::parse(&e.reason).ok_or_else(|| StorageError::Record(RecordError::Reason(e.reason.clone())))?;
            state.last_error = Some(LastError { reason, message: e.message.clone(), at: e.at });
        }
        for b in &self.balances {
            let row = BalanceRow {
                account: b.account.clone(),
                currency: b.currency.clone(),
                balance: amount("balance", &b.balance)?,
                frozen: amount("frozen", &b.frozen)?,
                usable: amount("usable", &b.usable)?,
                updated_at: b.updated_at,
            };
            state.balances.insert((b.account.clone(), b.currency.clone()), Balance { row, fetched_at: b.fetched_at });
        }
        for c in &self.counters {
            let key = (c.account.clone(), c.currency.clone());
            state.spent_total.insert(key.clone(), amount("spent", &c.spent)?);
            state.topped_up_total.insert(key.clone(), amount("topped_up", &c.topped_up)?);
            if let Some(seen) = c.seen {
                state.counters_seen.insert(key, seen);
            }
        }
        for h in &self.spend_history {
            let history = SpendHistory::decode(&h.points).map_err(|source| {
                StorageError::Record(RecordError::History { account: h.account.clone(), currency: h.currency.clone(), source })
            })?;
            state.spend_windows.insert((h.account.clone(), h.currency.clone()), history);
        }
        for d in &self.days {
            let start = DayStart {
                day: d.day,
                spent: amount("day spent", &d.spent)?,
                topped_up: amount("day topped_up", &d.topped_up)?,
                opening: amount("opening", &d.opening)?,
            };
            state.day_starts.insert((d.account.clone(), d.currency.clone()), start);
        }
        Ok(state)
    }
}

/// A record line: `<crc32 hex> <json>\n` (the poll history's file uses it too).
pub(crate) fn frame(json: &[u8]) -> Vec<u8> {
    let mut crc = flate2::Crc::new();
    crc.update(json);
    let mut line = format!("{:08x} ", crc.sum()).into_bytes();
    line.extend_from_slice(json);
    line.push(b'\n');
    line
}

/// The JSON of a record line, if its checksum holds.
pub(crate) fn unframe(line: &[u8]) -> Option<&[u8]> {
    let (crc, json) = (line.get(..8)?, line.get(9..)?);
    if line.get(8) != Some(&b' ') {
        return None;
    }
    let expected = u32::from_str_radix(std::str::from_utf8(crc).ok()?, 16).ok()?;
    let mut actual = flate2::Crc::new();
    actual.update(json);
    (actual.sum() == expected).then_some(json)
}

/// The persisted JSON of one supplier's state (without kind memory); the
/// fuzz targets round-trip it through [`decode_state`].
pub fn encode_state(supplier: &str, kind: &str, state: &SupplierState) -> Vec<u8> {
    serde_json::to_vec(&Record::capture(supplier, kind, state, None)).unwrap_or_default()
}

/// Reads what [`encode_state`] wrote: (supplier, kind, state).
pub fn decode_state(bytes: &[u8]) -> Result<(String, String, SupplierState), StorageError> {
    let record: Record = serde_json::from_slice(bytes).map_err(|e| StorageError::Record(e.into()))?;
    if record.v != FORMAT_VERSION {
        return Err(StorageError::Record(RecordError::Version(record.v)));
    }
    let state = record.restore(record.last_success.unwrap_or(SystemTime::UNIX_EPOCH))?;
    Ok((record.supplier, record.kind, state))
}

// ---- loading ----

/// What a supplier restarts from.
#[derive(Debug)]
pub struct Restored {
    pub state: SupplierState,
    pub memory: Option<serde_json::Value>,
}

/// Reads one file's records into `into` (later lines win). Problems are
/// warnings naming the file: a foreign header sets the whole file aside, a
/// damaged line is skipped.
fn read_file(path: &Path, into: &mut HashMap<String, Vec<u8>>) -> Result<u64, StorageError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io("opening", path)(e)),
    };
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut lines = BufReader::new(file).split(b'\n');
    match lines.next() {
        None => return Ok(size),
        Some(Ok(first)) if first == HEADER.as_bytes() => {}
        Some(Ok(first)) => {
            // Kept for whoever wrote it (a newer version, say), out of our way.
            let aside = path.with_extension(format!("{}.set-aside", path.extension().and_then(|e| e.to_str()).unwrap_or("")));
            let shown = String::from_utf8_lossy(first.get(..60.min(first.len())).unwrap_or_default()).into_owned();
            std::fs::rename(path, &aside).map_err(io("setting aside", path))?;
            tracing::warn!(file = %path.display(), moved_to = %aside.display(), header = %shown, expected = HEADER, "state file of another format or version set aside; suppliers in it start fresh");
            return Ok(0);
        }
        Some(Err(e)) => return Err(io("reading", path)(e)),
    }
    let mut skipped = 0u64;
    for (i, line) in lines.enumerate() {
        let line = line.map_err(io("reading", path))?;
        let Some(json) = unframe(&line) else {
            skipped = skipped.saturating_add(1);
            tracing::warn!(file = %path.display(), line = i.saturating_add(2), "damaged or torn state record skipped");
            continue;
        };
        if let Ok(d) = serde_json::from_slice::<DropRecord>(json) {
            into.remove(&d.drop);
            continue;
        }
        #[derive(Deserialize)]
        struct Name {
            supplier: String,
        }
        match serde_json::from_slice::<Name>(json) {
            Ok(n) => {
                into.insert(n.supplier, json.to_vec());
            }
            Err(_) => {
                skipped = skipped.saturating_add(1);
                tracing::warn!(file = %path.display(), line = i.saturating_add(2), "unreadable state record skipped");
            }
        }
    }
    if skipped > 0 {
        tracing::warn!(file = %path.display(), skipped, "state file had damaged records; those suppliers start from an older record or fresh");
    }
    Ok(size)
}

/// The trends kept in `dir` by supplier, without points older than a day
/// before `now`. A missing file is no trend; an unreadable or damaged one a
/// warning (the next write replaces it).
fn read_trends(dir: &Path, now: SystemTime) -> HashMap<String, KeyMap<BalanceKey, Trend>> {
    let path = dir.join(TRENDS);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return HashMap::new(),
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "trends file unreadable; the trend pictures start empty");
            return HashMap::new();
        }
    };
    let cutoff = crate::trend::unix_secs(now).saturating_sub(crate::trend::WINDOW.as_secs().try_into().unwrap_or(i64::MAX));
    match crate::trend::decode(&bytes, cutoff) {
        Ok(stored) => {
            let mut by_supplier: HashMap<String, KeyMap<BalanceKey, Trend>> = HashMap::new();
            let count = stored.len();
            for (supplier, account, currency, trend) in stored {
                by_supplier.entry(supplier).or_default().insert((account, currency), trend);
            }
            tracing::info!(file = %path.display(), trends = count, "trends loaded");
            by_supplier
        }
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "trends file ignored; the trend pictures start empty");
            HashMap::new()
        }
    }
}

// ---- the store ----

enum Command {
    Put { supplier: String, json: Vec<u8>, done: oneshot::Sender<Result<(), Arc<WriteFailed>>> },
    Drop { supplier: String },
    Flush { done: oneshot::Sender<()> },
}

/// The state directory, open for this process.
pub struct Storage {
    dir: PathBuf,
    restored: Mutex<HashMap<String, Vec<u8>>>,
    /// Each supplier's trends read from [`TRENDS`], taken once like `restored`.
    trends: Mutex<HashMap<String, KeyMap<BalanceKey, Trend>>>,
    /// Held while [`TRENDS`] is written: the periodic write and the one at shutdown never interleave.
    trends_write: Mutex<()>,
    tx: Mutex<Option<mpsc::Sender<Command>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage").field("dir", &self.dir).finish_non_exhaustive()
    }
}

impl Storage {
    /// Opens (creating it if needed) and locks `dir`, reads what it holds and
    /// starts the writer. An unusable directory is an error; damaged content
    /// is a warning and those suppliers start fresh.
    pub fn open(dir: &Path) -> Result<Storage, StorageError> {
        // Balances are business data: the directory and its files are the exporter's alone.
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io("creating", dir))?;
        let lock_path = dir.join("lock");
        let lock =
            OpenOptions::new().create(true).truncate(false).write(true).mode(0o600).open(&lock_path).map_err(io("opening", &lock_path))?;
        lock.try_lock().map_err(|e| match e {
            std::fs::TryLockError::WouldBlock => StorageError::Locked { path: dir.to_path_buf() },
            std::fs::TryLockError::Error(source) => StorageError::Io { op: "locking", path: lock_path.clone(), source },
        })?;
        let (snapshot_path, journal_path) = (dir.join(SNAPSHOT), dir.join(JOURNAL));
        let mut records = HashMap::new();
        let snapshot_len = read_file(&snapshot_path, &mut records)?;
        read_file(&journal_path, &mut records)?;
        let mut writer = Writer {
            dir: dir.to_path_buf(),
            journal: None,
            journal_len: 0,
            snapshot_len,
            records: records.iter().map(|(k, v)| (k.clone(), pack(v))).collect(),
            _lock: lock,
        };
        // Start from a compacted snapshot: whatever the journal held (torn
        // lines included) is folded in, and appends start on a clean file.
        writer.compact().map_err(|(op, path, source)| StorageError::Io { op, path, source })?;
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("state-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(io("starting the writer for", dir))?;
        tracing::info!(dir = %dir.display(), suppliers = records.len(), "state loaded");
        let trends = Mutex::new(read_trends(dir, SystemTime::now()));
        Ok(Storage {
            dir: dir.to_path_buf(),
            restored: Mutex::new(records),
            trends,
            trends_write: Mutex::new(()),
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(thread)),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The persisted state of `supplier` if it was of `kind`, taken once (a
    /// later reload adding the same name again starts it fresh). A record
    /// that cannot be read is a warning and the supplier starts fresh.
    pub fn take_restored(&self, supplier: &str, kind: &str) -> Option<Restored> {
        let json = self.restored.lock().unwrap_or_else(|e| e.into_inner()).remove(supplier)?;
        let record = match serde_json::from_slice::<Record>(&json) {
            Ok(r) if r.v == FORMAT_VERSION => r,
            Ok(r) => {
                tracing::warn!(dir = %self.dir.display(), supplier, version = r.v, "state record of another format version; supplier starts fresh");
                return None;
            }
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), supplier, error = %e, "state record unreadable; supplier starts fresh");
                return None;
            }
        };
        if record.kind != kind {
            tracing::info!(supplier, was = %record.kind, now = kind, "supplier changed kind; its state starts fresh");
            return None;
        }
        match record.restore(SystemTime::now()) {
            Ok(state) => Some(Restored { state, memory: record.memory }),
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), supplier, error = %e, "state record unreadable; supplier starts fresh");
                None
            }
        }
    }

    /// Forgets every supplier not in `keep` (removed or renamed in the config).
    pub fn retain(&self, keep: &dyn Fn(&str) -> bool) {
        let gone: Vec<String> = {
            let mut restored = self.restored.lock().unwrap_or_else(|e| e.into_inner());
            let gone = restored.keys().filter(|k| !keep(k)).cloned().collect();
            restored.retain(|k, _| keep(k));
            gone
        };
        self.trends.lock().unwrap_or_else(|e| e.into_inner()).retain(|k, _| keep(k));
        for supplier in gone {
            self.drop_supplier(&supplier);
        }
    }

    /// The trends of `supplier` read at start-up, taken once (empty when none).
    pub fn take_trends(&self, supplier: &str) -> KeyMap<BalanceKey, Trend> {
        self.trends.lock().unwrap_or_else(|e| e.into_inner()).remove(supplier).unwrap_or_default()
    }

    /// Replaces [`TRENDS`] with `bytes` (`trend::encode`) atomically: a
    /// temporary file, fsync, rename, directory fsync. Blocking.
    pub fn write_trends(&self, bytes: &[u8]) -> Result<(), StorageError> {
        let _one_at_a_time = self.trends_write.lock().unwrap_or_else(|e| e.into_inner());
        let (path, tmp) = (self.dir.join(TRENDS), self.dir.join(format!("{TRENDS}.tmp")));
        write_synced(&tmp, bytes).map_err(io("writing", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(io("renaming", &path))?;
        sync_dir(&self.dir).map_err(io("syncing", &self.dir))
    }

    /// Forgets a supplier's state.
    pub fn drop_supplier(&self, supplier: &str) {
        self.send(Command::Drop { supplier: supplier.to_string() });
    }

    /// Writes a supplier's state durably; returns once it is on disk.
    pub async fn put(
        &self,
        supplier: &str,
        kind: &str,
        state: &SupplierState,
        memory: Option<serde_json::Value>,
    ) -> Result<(), StorageError> {
        let json = serde_json::to_vec(&Record::capture(supplier, kind, state, memory)).map_err(|e| StorageError::Record(e.into()))?;
        let (done, wait) = oneshot::channel();
        if !self.send(Command::Put { supplier: supplier.to_string(), json, done }) {
            return Err(StorageError::Stopped);
        }
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(failed)) => Err(StorageError::Write(failed)),
            Err(_) => Err(StorageError::Stopped),
        }
    }

    /// Waits until everything sent so far is written.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.send(Command::Flush { done }) {
            let _ = wait.await;
        }
    }

    /// Flushes and stops the writer (SIGTERM).
    pub fn close(&self) {
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = thread.join();
        }
    }

    fn send(&self, command: Command) -> bool {
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        tx.as_ref().is_some_and(|tx| tx.send(command).is_ok())
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        self.close();
    }
}

type IoFailure = (&'static str, PathBuf, std::io::Error);

/// The writer thread's side: the files and the latest record of every supplier.
struct Writer {
    dir: PathBuf,
    journal: Option<File>,
    journal_len: u64,
    snapshot_len: u64,
    /// Each supplier's latest record, deflated (about a quarter of the JSON: at
    /// 10,000 suppliers several MiB less resident); inflated only to compact.
    records: HashMap<String, Box<[u8]>>,
    _lock: File,
}

/// A record as the writer keeps it between compactions.
fn pack(json: &[u8]) -> Box<[u8]> {
    let mut enc = flate2::write::DeflateEncoder::new(Vec::with_capacity((json.len() / 3).saturating_add(16)), flate2::Compression::fast());
    enc.write_all(json).expect("writing to a Vec cannot fail");
    enc.finish().expect("finishing a Vec cannot fail").into_boxed_slice()
}

/// The JSON of a packed record.
fn unpack(packed: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut json = Vec::with_capacity(packed.len().saturating_mul(4));
    std::io::Read::read_to_end(&mut flate2::read::DeflateDecoder::new(packed), &mut json)?;
    Ok(json)
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Command>) {
        while let Ok(first) = rx.recv() {
            // Group commit: everything waiting now goes in one write and one fsync.
            let mut batch = vec![first];
            batch.extend(rx.try_iter());
            self.commit(batch);
        }
    }

    fn commit(&mut self, batch: Vec<Command>) {
        let mut bytes = Vec::new();
        let mut puts = Vec::new();
        let mut flushes = Vec::new();
        let mut changes: Vec<(String, Option<Vec<u8>>)> = Vec::new();
        for command in batch {
            match command {
                Command::Put { supplier, json, done } => {
                    bytes.extend_from_slice(&frame(&json));
                    changes.push((supplier, Some(json)));
                    puts.push(done);
                }
                Command::Drop { supplier } => {
                    let json = serde_json::to_vec(&DropRecord { v: FORMAT_VERSION, drop: supplier.clone() }).unwrap_or_default();
                    bytes.extend_from_slice(&frame(&json));
                    changes.push((supplier, None));
                }
                Command::Flush { done } => flushes.push(done),
            }
        }
        let result = if bytes.is_empty() { Ok(()) } else { self.append(&bytes) };
        match result {
            Ok(()) => {
                for (supplier, json) in changes {
                    match json {
                        Some(json) => self.records.insert(supplier, pack(&json)),
                        None => self.records.remove(&supplier),
                    };
                }
                for done in puts {
                    let _ = done.send(Ok(()));
                }
            }
            Err((op, path, source)) => {
                let failed = Arc::new(WriteFailed { op, path, source });
                tracing::warn!(error = %format_args!("{failed}: {}", failed.source), records = puts.len(), "state write failed; counters are held back until a write succeeds");
                for done in puts {
                    let _ = done.send(Err(failed.clone()));
                }
            }
        }
        for done in flushes {
            let _ = done.send(());
        }
        if self.journal_len > COMPACT_MIN_BYTES.max(self.snapshot_len.saturating_mul(2)) {
            if let Err((op, path, e)) = self.compact() {
                tracing::warn!(error = %format!("{op} {}: {e}", path.display()), "state compaction failed; the journal keeps growing until it succeeds");
            }
        }
    }

    /// Appends and syncs; on failure cuts the journal back to its last good
    /// length so no torn line stays in front of later records.
    fn append(&mut self, bytes: &[u8]) -> Result<(), IoFailure> {
        let path = self.dir.join(JOURNAL);
        if self.journal.is_none() {
            let file = OpenOptions::new().append(true).open(&path).map_err(|e| ("opening", path.clone(), e))?;
            self.journal = Some(file);
        }
        let Some(file) = self.journal.as_mut() else { return Err(("opening", path, std::io::Error::other("no journal"))) };
        #[cfg(test)]
        if fault::failing(&self.dir) {
            return Err(("writing", path, std::io::Error::other("injected fault: no space left on device")));
        }
        let written = file.write_all(bytes).and_then(|()| file.sync_data());
        match written {
            Ok(()) => {
                self.journal_len = self.journal_len.saturating_add(bytes.len() as u64);
                Ok(())
            }
            Err(e) => {
                if file.set_len(self.journal_len).and_then(|()| file.sync_data()).is_err() {
                    // The journal may end in a torn line: its checksum makes the
                    // loader skip it, and the next compaction starts a clean file.
                    self.journal = None;
                    self.journal_len = u64::MAX / 4;
                }
                Err(("writing", path, e))
            }
        }
    }

    /// Writes every supplier's latest record to a new snapshot (temporary
    /// file, fsync, rename, directory fsync) and starts an empty journal.
    fn compact(&mut self) -> Result<(), IoFailure> {
        let snapshot = self.dir.join(SNAPSHOT);
        let tmp = self.dir.join(format!("{SNAPSHOT}.tmp"));
        let mut body = Vec::with_capacity(
            self.records.values().map(|r| r.len().saturating_mul(4).saturating_add(10)).sum::<usize>().saturating_add(64),
        );
        body.extend_from_slice(HEADER.as_bytes());
        body.push(b'\n');
        let mut names: Vec<&String> = self.records.keys().collect();
        names.sort();
        for name in names {
            if let Some(packed) = self.records.get(name) {
                // Our own deflate output: inflating it cannot fail short of a memory fault.
                let json = unpack(packed).map_err(|e| ("inflating the record of", self.dir.join(name), e))?;
                body.extend_from_slice(&frame(&json));
            }
        }
        write_synced(&tmp, &body).map_err(|e| ("writing", tmp.clone(), e))?;
        std::fs::rename(&tmp, &snapshot).map_err(|e| ("renaming", snapshot.clone(), e))?;
        sync_dir(&self.dir).map_err(|e| ("syncing", self.dir.clone(), e))?;
        self.snapshot_len = body.len() as u64;
        // The snapshot holds everything the journal did: start it again.
        let journal = self.dir.join(JOURNAL);
        let header = format!("{HEADER}\n");
        let jtmp = self.dir.join(format!("{JOURNAL}.tmp"));
        write_synced(&jtmp, header.as_bytes()).map_err(|e| ("writing", jtmp.clone(), e))?;
        std::fs::rename(&jtmp, &journal).map_err(|e| ("renaming", journal.clone(), e))?;
        sync_dir(&self.dir).map_err(|e| ("syncing", self.dir.clone(), e))?;
        self.journal = None;
        self.journal_len = header.len() as u64;
        Ok(())
    }
}

/// Replaces `file` with what `write` writes, atomically: a temporary file
/// beside it (buffered), fsync, rename over it, directory fsync (the poll
/// history's file).
pub fn write_atomically(file: &Path, write: &mut dyn FnMut(&mut dyn Write) -> std::io::Result<()>) -> Result<(), StorageError> {
    let dir = file.parent().unwrap_or(Path::new("."));
    let mut tmp = file.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let written = (|| {
        let out = OpenOptions::new().create(true).truncate(true).write(true).mode(0o600).open(&tmp)?;
        let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
        write(&mut out)?;
        out.into_inner().map_err(std::io::IntoInnerError::into_error)?.sync_all()
    })();
    written.map_err(io("writing", &tmp))?;
    std::fs::rename(&tmp, file).map_err(io("renaming", file))?;
    sync_dir(dir).map_err(io("syncing", dir))
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = OpenOptions::new().create(true).truncate(true).write(true).mode(0o600).open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Fault injection for the lib's own tests: writes under an armed directory fail.
#[cfg(test)]
pub mod fault {
    use std::collections::HashSet;
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;

    static FAILING: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);

    pub fn fail_writes(dir: &Path, on: bool) {
        let mut failing = FAILING.lock().unwrap_or_else(|e| e.into_inner());
        let set = failing.get_or_insert_with(HashSet::new);
        if on {
            set.insert(dir.to_path_buf());
        } else {
            set.remove(dir);
        }
    }

    pub(super) fn failing(dir: &Path) -> bool {
        FAILING.lock().unwrap_or_else(|e| e.into_inner()).as_ref().is_some_and(|s| s.contains(dir))
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use crate::poll::PollOutput;
    use std::time::Duration;

    fn polled(balance: &str) -> SupplierState {
        let b = Decimal::from_str_exact(balance).unwrap();
        let row =
            BalanceRow { account: "main".into(), currency: "USD".into(), balance: b, frozen: Decimal::ZERO, usable: b, updated_at: None };
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let s =
            SupplierState::default().after_poll(Ok(PollOutput { balances: vec![row.clone()], ..Default::default() }), Duration::ZERO, t);
        let row = BalanceRow { balance: Decimal::new(1, 2), usable: Decimal::new(1, 2), ..row };
        s.after_poll(Ok(PollOutput { balances: vec![row], ..Default::default() }), Duration::ZERO, t + Duration::from_secs(60))
    }

    #[test]
    fn a_state_round_trips_exactly() {
        let state = polled("12345678901234567890.50");
        let bytes = encode_state("fox", "foxreload", &state);
        let (name, kind, back) = decode_state(&bytes).unwrap();
        assert_eq!((name.as_str(), kind.as_str()), ("fox", "foxreload"));
        assert_eq!(back.balances, state.balances);
        assert_eq!(back.spent_total, state.spent_total);
        assert_eq!(back.spent_total[&("main".to_string(), "USD".to_string())].to_string(), "12345678901234567890.49");
        assert_eq!(back.spend_windows, state.spend_windows);
        assert_eq!(back.polls_total, 2);
        // Where the day began survives too (the daily log goes on after a restart).
        assert_eq!(back.day_starts, state.day_starts);
        let (spent, topped_up, opening) = back.today(&("main".to_string(), "USD".to_string())).unwrap();
        assert_eq!(
            (spent.to_string(), topped_up.to_string(), opening.to_string()),
            ("12345678901234567890.49".into(), "0".into(), "12345678901234567890.50".into())
        );
    }

    #[test]
    fn a_record_of_the_first_v1_exporters_still_loads() {
        // Written before `spend_history` replaced `spend_windows`: counters and balances
        // come back; the spend-rate history starts empty.
        let old = br#"{"v":1,"supplier":"fox","kind":"foxreload","polls_total":3,"errors_total":{},"row_errors_total":0,
            "last_success":{"secs_since_epoch":1800000000,"nanos_since_epoch":0},"last_error":null,"balances":[],
            "counters":[{"account":"main","currency":"USD","spent":"4.5","topped_up":"0","seen":null}],
            "spend_windows":[{"account":"main","currency":"USD","anchor_at":{"secs_since_epoch":1800000000,"nanos_since_epoch":0},
            "anchor_spent":"1","pending_at":{"secs_since_epoch":1800000000,"nanos_since_epoch":0},"pending_spent":"1"}]}"#;
        let (_, _, state) = decode_state(old).unwrap();
        assert_eq!(state.spent_total[&("main".to_string(), "USD".to_string())].to_string(), "4.5");
        assert!(state.spend_windows.is_empty());
        // Without `days` the day starts again at the first poll.
        assert!(state.day_starts.is_empty());
        assert!(!String::from_utf8(encode_state("fox", "foxreload", &state)).unwrap().contains("spend_windows"));
    }

    #[test]
    fn a_damaged_spend_history_names_the_balance() {
        let state = polled("10");
        let text = String::from_utf8(encode_state("fox", "foxreload", &state)).unwrap();
        assert!(text.contains(r#""spend_history":[{"account":"main","currency":"USD","points":""#), "{text}");
        let bad = text.replacen(r#""points":""#, r#""points":"x;"#, 1);
        let err = decode_state(bad.as_bytes()).unwrap_err().to_string();
        assert_eq!(err, r#"state record: "main" "USD": spend history point 0: no space between time and amount"#);
    }

    #[test]
    fn packed_records_inflate_to_the_same_bytes() {
        let state = polled("10.50");
        let json = encode_state("fox", "foxreload", &state);
        let packed = pack(&json);
        assert!(packed.len() < json.len(), "{} packed bytes for {}", packed.len(), json.len());
        assert_eq!(unpack(&packed).unwrap(), json);
        assert_eq!(unpack(&pack(b"")).unwrap(), b"");
    }

    #[test]
    fn frames_detect_damage() {
        let line = frame(br#"{"a":1}"#);
        assert_eq!(unframe(&line[..line.len() - 1]), Some(&br#"{"a":1}"#[..]));
        let mut bad = line.clone();
        bad[12] ^= 1;
        assert_eq!(unframe(&bad[..bad.len() - 1]), None);
        assert_eq!(unframe(b"0000"), None);
        assert_eq!(unframe("é".as_bytes()), None);
    }

    #[tokio::test]
    async fn written_state_is_read_back_after_reopening_and_damage_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let state = polled("10.50");
        {
            let storage = Storage::open(dir.path()).unwrap();
            assert!(matches!(Storage::open(dir.path()), Err(StorageError::Locked { .. })));
            storage.put("a", "foxreload", &state, Some(serde_json::json!({"cursor": 7}))).await.unwrap();
            storage.put("b", "foxreload", &state, None).await.unwrap();
            storage.drop_supplier("b");
            storage.flush().await;
            storage.close();
        }
        // A torn line at the end of the journal (a crash mid-write) is skipped.
        std::fs::OpenOptions::new().append(true).open(dir.path().join(JOURNAL)).unwrap().write_all(b"deadbeef {\"v\":1,\"supp").unwrap();
        let storage = Storage::open(dir.path()).unwrap();
        assert!(storage.take_restored("b", "foxreload").is_none());
        assert!(storage.take_restored("a", "novasend").is_none(), "another kind starts fresh");
        storage.close();
        drop(storage);
        let storage = Storage::open(dir.path()).unwrap();
        let restored = storage.take_restored("a", "foxreload").unwrap();
        assert_eq!(restored.state.spent_total, state.spent_total);
        assert_eq!(restored.state.balances, state.balances);
        assert_eq!(restored.memory, Some(serde_json::json!({"cursor": 7})));
        assert!(!restored.state.polled_once);
        assert!(storage.take_restored("a", "foxreload").is_none(), "taken once");
    }

    #[tokio::test]
    async fn foreign_and_corrupt_files_start_fresh() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(SNAPSHOT), "balance_exporter state v999\nwhatever\n").unwrap();
        std::fs::write(dir.path().join(JOURNAL), [0u8, 159, 146, 150, b'\n', 0xff]).unwrap();
        let storage = Storage::open(dir.path()).unwrap();
        assert!(storage.take_restored("a", "foxreload").is_none());
        storage.put("a", "foxreload", &polled("1"), None).await.unwrap();
        storage.close();
        let text = std::fs::read_to_string(dir.path().join(SNAPSHOT)).unwrap();
        assert!(text.starts_with(HEADER), "a fresh snapshot: {text}");
        let aside = std::fs::read_to_string(dir.path().join("state.snapshot.set-aside")).unwrap();
        assert!(aside.starts_with("balance_exporter state v999"), "the foreign file is kept aside");
    }

    #[test]
    fn trends_survive_a_restart_in_their_own_file_and_a_damaged_one_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let secs = crate::trend::unix_secs(now);
        let mut recent = Trend::default();
        recent.push(secs - 3600, 10.0);
        recent.push(secs - 60, 12.5);
        let mut old = Trend::default();
        old.push(secs - 2 * 86_400, 1.0);
        let storage = Storage::open(dir.path()).unwrap();
        let bytes = crate::trend::encode([("fox", "main", "USD", &recent), ("fox", "old", "EUR", &old), ("gone", "main", "USD", &recent)]);
        storage.write_trends(&bytes).unwrap();
        assert!(!dir.path().join(format!("{TRENDS}.tmp")).exists(), "the temporary file was renamed");
        storage.close();
        drop(storage);
        let state_files = |d: &Path| {
            let mut names: Vec<String> = std::fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .filter(|n| n.starts_with("state"))
                .collect();
            names.sort();
            names
        };
        assert_eq!(state_files(dir.path()), ["state.journal", "state.snapshot"], "the state files are untouched");

        let storage = Storage::open(dir.path()).unwrap();
        storage.retain(&|name| name == "fox");
        let fox = storage.take_trends("fox");
        // The point older than a day went at load, and with it that trend.
        assert_eq!(fox.keys().collect::<Vec<_>>(), vec![&("main".to_string(), "USD".to_string())]);
        assert_eq!(fox[&("main".to_string(), "USD".to_string())], recent);
        assert!(storage.take_trends("fox").is_empty(), "taken once");
        assert!(storage.take_trends("gone").is_empty(), "a supplier left the config");
        storage.close();
        drop(storage);

        // Damaged (a flipped byte), then foreign: ignored, no panic, the state still opens.
        let mut damaged = bytes.clone();
        damaged[40] ^= 1;
        for bad in [damaged, b"balance_exporter trends v9\n\x00\x01".to_vec(), vec![0xff; 3]] {
            std::fs::write(dir.path().join(TRENDS), &bad).unwrap();
            let storage = Storage::open(dir.path()).unwrap();
            assert!(storage.take_trends("fox").is_empty());
            storage.close();
        }
    }

    #[tokio::test]
    async fn a_failed_write_names_the_operation_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path()).unwrap();
        fault::fail_writes(dir.path(), true);
        let err = storage.put("a", "foxreload", &polled("1"), None).await.unwrap_err();
        fault::fail_writes(dir.path(), false);
        assert!(matches!(err, StorageError::Write(_)), "{err:?}");
        let chain = crate::server::error_chain(&err);
        assert_eq!(chain, format!("state record: writing {}: injected fault: no space left on device", dir.path().join(JOURNAL).display()));
        storage.put("a", "foxreload", &polled("1"), None).await.unwrap();
        storage.close();
    }
}
