//! Poll history: per supplier, the last [`POLLS_KEPT`] polls as compact
//! records (start, duration, requests made, outcome, a short text, last HTTP
//! status), and a redacted body snippet for the last [`SNIPPETS_KEPT`]
//! failures only. The supplier page (`/supplier/{name}`) shows it.
//!
//! Memory is bounded by construction: a record is a fixed 56 bytes (its text
//! is cut to [`TEXT_BYTES`] and stored inline), a snippet at most
//! [`FAILURE_SNIPPET_BYTES`]; about 4.6 KiB a supplier when full
//! (`cargo bench --bench lean`, part 6, measures it at 10,000 suppliers).
//!
//! With `--storage.path` it is kept in its own file, `history.v1` (a header
//! line, then one checksummed JSON line per supplier: see docs/storage.md), written
//! atomically (temporary file, fsync, rename) every [`SAVE_INTERVAL`] when
//! something changed and on shutdown. A damaged or foreign file is logged and
//! ignored: the history then starts empty. The `state.*` files are untouched.
#![deny(clippy::arithmetic_side_effects)]

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::poll::Reason;
pub use crate::upstream::FAILURE_SNIPPET_BYTES;
use crate::upstream::{cut_to_bytes, TraceData};

/// Polls kept per supplier; the oldest is evicted by the next.
pub const POLLS_KEPT: usize = 50;
/// Failures (the most recent) whose body snippet is kept.
pub const SNIPPETS_KEPT: usize = 5;
/// Longest short text of a record (the error message, cut on a char boundary).
pub const TEXT_BYTES: usize = 38;
/// How often the history file is rewritten when something changed.
pub const SAVE_INTERVAL: Duration = Duration::from_secs(300);
/// The history file in the storage directory.
pub const FILE_NAME: &str = "history.v1";
const HEADER: &str = "balance_exporter history v1";

/// One poll, as the history keeps it: 56 bytes, no heap.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PollRecord {
    started_ms: u64,
    duration_ms: u32,
    requests: u16,
    /// 0: no HTTP response.
    status: u16,
    /// 0: ok; else 1 + the index of the reason in [`Reason::ALL`].
    outcome: u8,
    text_len: u8,
    text: [u8; TEXT_BYTES],
}

impl std::fmt::Debug for PollRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PollRecord")
            .field("started_ms", &self.started_ms)
            .field("duration_ms", &self.duration_ms)
            .field("requests", &self.requests)
            .field("status", &self.status())
            .field("outcome", &self.outcome_label())
            .field("text", &self.text())
            .finish()
    }
}

/// What the scheduler reports of one poll.
#[derive(Debug, Clone, Default)]
pub struct PollReport {
    pub started: Option<SystemTime>,
    pub duration: Duration,
    pub requests: u32,
    pub last_status: Option<u16>,
    /// `None`: ok.
    pub failure: Option<(Reason, String)>,
    /// Redacted; kept only for failures.
    pub snippet: Option<String>,
}

impl PollReport {
    /// A poll's report from its outcome and its trace.
    pub fn new(started: SystemTime, duration: Duration, failure: Option<(Reason, String)>, trace: &TraceData) -> PollReport {
        let snippet = failure.as_ref().and(trace.failure_snippet.clone());
        PollReport { started: Some(started), duration, requests: trace.requests, last_status: trace.last_status, failure, snippet }
    }
}

impl PollRecord {
    fn of(report: &PollReport) -> PollRecord {
        let started_ms = report.started.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok()).map_or(0, |d| d.as_millis());
        let outcome = match &report.failure {
            None => 0,
            Some((reason, _)) => Reason::ALL.iter().position(|r| r == reason).map_or(0, |i| u8::try_from(i).unwrap_or(0).saturating_add(1)),
        };
        let message = report.failure.as_ref().map_or("", |(_, m)| m.as_str());
        let cut = cut_to_bytes(message, TEXT_BYTES);
        let mut text = [0u8; TEXT_BYTES];
        text[..cut.len()].copy_from_slice(cut.as_bytes());
        PollRecord {
            started_ms: u64::try_from(started_ms).unwrap_or(u64::MAX),
            duration_ms: u32::try_from(report.duration.as_millis()).unwrap_or(u32::MAX),
            requests: u16::try_from(report.requests).unwrap_or(u16::MAX),
            status: report.last_status.unwrap_or(0),
            outcome,
            text_len: u8::try_from(cut.len()).unwrap_or(0),
            text,
        }
    }

    pub fn started(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH.checked_add(Duration::from_millis(self.started_ms)).unwrap_or(SystemTime::UNIX_EPOCH)
    }
    pub fn duration(&self) -> Duration {
        Duration::from_millis(u64::from(self.duration_ms))
    }
    pub fn requests(&self) -> u16 {
        self.requests
    }
    /// The last HTTP status of the poll, if any response came.
    pub fn status(&self) -> Option<u16> {
        (self.status != 0).then_some(self.status)
    }
    /// `None` for a successful poll.
    pub fn reason(&self) -> Option<Reason> {
        usize::from(self.outcome).checked_sub(1).and_then(|i| Reason::ALL.get(i).copied())
    }
    /// `ok` or the reason's label value.
    pub fn outcome_label(&self) -> &'static str {
        self.reason().map_or("ok", Reason::as_str)
    }
    /// The error message, cut to [`TEXT_BYTES`]; empty for a success.
    pub fn text(&self) -> &str {
        let bytes = self.text.get(..usize::from(self.text_len)).unwrap_or_default();
        std::str::from_utf8(bytes).unwrap_or_default()
    }
}

/// One supplier's history.
#[derive(Debug, Clone, Default)]
pub struct SupplierHistory {
    polls: VecDeque<PollRecord>,
    /// `(started_ms of its record, snippet)`, only for the last [`SNIPPETS_KEPT`] failures.
    snippets: VecDeque<(u64, Box<str>)>,
}

impl SupplierHistory {
    /// Adds a poll, evicting the oldest past [`POLLS_KEPT`] and dropping the
    /// snippet of any failure older than the last [`SNIPPETS_KEPT`].
    pub fn push(&mut self, report: &PollReport) {
        if self.polls.capacity() == 0 {
            // Exactly what it will hold: the bound, not a doubling past it.
            self.polls.reserve_exact(POLLS_KEPT);
        }
        let record = PollRecord::of(report);
        while self.polls.len() >= POLLS_KEPT {
            self.polls.pop_front();
        }
        self.polls.push_back(record);
        if let (Some(_), Some(snippet)) = (&report.failure, &report.snippet) {
            let snippet = cut_to_bytes(snippet, FAILURE_SNIPPET_BYTES);
            if self.snippets.capacity() == 0 {
                self.snippets.reserve_exact(SNIPPETS_KEPT.saturating_add(1));
            }
            self.snippets.push_back((record.started_ms, snippet.into()));
        }
        let recent_failures: Vec<u64> =
            self.polls.iter().rev().filter(|r| r.reason().is_some()).take(SNIPPETS_KEPT).map(|r| r.started_ms).collect();
        self.snippets.retain(|(at, _)| recent_failures.contains(at));
    }

    /// Polls, newest first.
    pub fn newest_first(&self) -> impl Iterator<Item = &PollRecord> {
        self.polls.iter().rev()
    }

    pub fn len(&self) -> usize {
        self.polls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.polls.is_empty()
    }

    /// The snippet kept for `record`, if it is one of the last failures.
    pub fn snippet(&self, record: &PollRecord) -> Option<&str> {
        self.snippets.iter().find(|(at, _)| *at == record.started_ms).map(|(_, s)| s.as_ref())
    }

    /// Snippets kept, newest first: `(record, snippet)`.
    pub fn snippets(&self) -> impl Iterator<Item = (&PollRecord, &str)> {
        self.newest_first().filter_map(|r| self.snippet(r).map(|s| (r, s)))
    }

    /// Heap bytes held (records and snippets), for the bench.
    pub fn heap_bytes(&self) -> usize {
        let polls = self.polls.capacity().saturating_mul(std::mem::size_of::<PollRecord>());
        let slots = self.snippets.capacity().saturating_mul(std::mem::size_of::<(u64, Box<str>)>());
        let texts: usize = self.snippets.iter().map(|(_, s)| s.len()).sum();
        polls.saturating_add(slots).saturating_add(texts)
    }
}

/// Every supplier's poll history, shared by the poll loops and the server.
#[derive(Debug, Default)]
pub struct History {
    suppliers: Mutex<HashMap<String, SupplierHistory>>,
    /// Changed since the last save.
    dirty: AtomicBool,
    /// `--storage.path`: where it is saved.
    file: Option<PathBuf>,
}

impl History {
    /// A history kept in memory only.
    pub fn in_memory() -> History {
        History::default()
    }

    /// A history saved in `dir` (the storage directory), starting from what
    /// the file there holds; a damaged or foreign file is logged and ignored.
    pub fn persisted(dir: &Path) -> History {
        let file = dir.join(FILE_NAME);
        let suppliers = match std::fs::read(&file) {
            Ok(bytes) => match decode(&bytes) {
                Ok(s) => s,
                Err(why) => {
                    tracing::warn!(file = %file.display(), error = why, "poll history file unreadable; the history starts empty");
                    HashMap::new()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => HashMap::new(),
            Err(e) => {
                tracing::warn!(file = %file.display(), error = %e, "poll history file unreadable; the history starts empty");
                HashMap::new()
            }
        };
        History { suppliers: Mutex::new(suppliers), dirty: AtomicBool::new(false), file: Some(file) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, SupplierHistory>> {
        self.suppliers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records one poll of `supplier`.
    pub fn record(&self, supplier: &str, report: &PollReport) {
        let mut suppliers = self.lock();
        match suppliers.get_mut(supplier) {
            Some(h) => h.push(report),
            None => {
                let mut h = SupplierHistory::default();
                h.push(report);
                suppliers.insert(supplier.to_string(), h);
            }
        }
        self.dirty.store(true, Ordering::Relaxed);
    }

    /// A copy of one supplier's history (empty when it has none).
    pub fn of(&self, supplier: &str) -> SupplierHistory {
        self.lock().get(supplier).cloned().unwrap_or_default()
    }

    /// Forgets every supplier not in `keep` (removed from the config).
    pub fn retain(&self, keep: &dyn Fn(&str) -> bool) {
        let mut suppliers = self.lock();
        let before = suppliers.len();
        suppliers.retain(|name, _| keep(name));
        if suppliers.len() != before {
            self.dirty.store(true, Ordering::Relaxed);
        }
    }

    /// Heap bytes held by the records and snippets, for the bench.
    pub fn heap_bytes(&self) -> usize {
        self.lock().values().map(SupplierHistory::heap_bytes).sum()
    }

    /// Writes the file when something changed since the last save (blocking:
    /// call it from a blocking thread). Failures are logged; the next save retries.
    ///
    /// One supplier at a time is copied under the lock and streamed to the
    /// file, so polls are never held up for long and no copy of the whole
    /// history is made (about 20 MB of JSON at 10,000 full histories).
    pub fn save(&self) {
        let Some(file) = &self.file else { return };
        if !self.dirty.swap(false, Ordering::Relaxed) {
            return;
        }
        let mut names: Vec<String> = self.lock().keys().cloned().collect();
        names.sort_unstable();
        let written = crate::storage::write_atomically(file, &mut |out| {
            out.write_all(HEADER.as_bytes())?;
            out.write_all(b"\n")?;
            for name in &names {
                let Some(history) = self.lock().get(name).cloned() else { continue };
                out.write_all(&crate::storage::frame(&encode(name, &history)))?;
            }
            Ok(())
        });
        if let Err(e) = written {
            self.dirty.store(true, Ordering::Relaxed);
            tracing::warn!(error = %crate::settings::error_chain(&e), "poll history not saved");
        }
    }
}

/// One record in the file: `[started_ms, duration_ms, requests, status, outcome, text, snippet]`.
#[derive(Serialize, Deserialize)]
struct StoredPoll(u64, u32, u16, u16, String, String, Option<String>);

/// One line of the file: a supplier and its polls, oldest first.
#[derive(Serialize, Deserialize)]
struct StoredSupplier {
    supplier: String,
    polls: Vec<StoredPoll>,
}

fn encode(name: &str, h: &SupplierHistory) -> Vec<u8> {
    let polls = h
        .polls
        .iter()
        .map(|r| {
            let snippet = h.snippet(r).map(str::to_string);
            StoredPoll(r.started_ms, r.duration_ms, r.requests, r.status, r.outcome_label().into(), r.text().into(), snippet)
        })
        .collect();
    serde_json::to_vec(&StoredSupplier { supplier: name.to_string(), polls }).unwrap_or_default()
}

/// Reads what [`History::save`] wrote; `Err` says why not (never a secret:
/// the file holds none). Any damaged line makes the whole file unreadable.
fn decode(bytes: &[u8]) -> Result<HashMap<String, SupplierHistory>, &'static str> {
    let rest = bytes.strip_prefix(HEADER.as_bytes()).and_then(|r| r.strip_prefix(b"\n")).ok_or("not a poll history file of version 1")?;
    let mut out = HashMap::new();
    for line in rest.split_inclusive(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\n").ok_or("cut short (damaged)")?;
        let json = crate::storage::unframe(line).ok_or("checksum mismatch (damaged)")?;
        let stored: StoredSupplier = serde_json::from_slice(json).map_err(|_| "not the expected JSON")?;
        let mut h = SupplierHistory::default();
        for StoredPoll(started_ms, duration_ms, requests, status, outcome, text, snippet) in stored.polls {
            let failure = match outcome.as_str() {
                "ok" => None,
                label => Some((Reason::parse(label).ok_or("unknown outcome")?, text)),
            };
            let report = PollReport {
                started: SystemTime::UNIX_EPOCH.checked_add(Duration::from_millis(started_ms)),
                duration: Duration::from_millis(u64::from(duration_ms)),
                requests: u32::from(requests),
                last_status: (status != 0).then_some(status),
                failure,
                snippet,
            };
            h.push(&report);
        }
        out.insert(stored.supplier, h);
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)] // instants and sizes in tests, not upstream values
mod tests {
    use super::*;

    fn at(i: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + 60 * i)
    }

    fn ok(i: u64) -> PollReport {
        PollReport { started: Some(at(i)), duration: Duration::from_millis(80), requests: 1, last_status: Some(200), ..Default::default() }
    }

    fn failed(i: u64) -> PollReport {
        PollReport {
            started: Some(at(i)),
            duration: Duration::from_millis(120),
            requests: 3,
            last_status: Some(503),
            failure: Some((Reason::ServerError, format!("http 503: maintenance window number {i} of many, a long message"))),
            snippet: Some(format!("{{\"error\":\"maintenance {i}\"}}")),
        }
    }

    #[test]
    fn a_record_is_small_and_reads_back() {
        assert_eq!(std::mem::size_of::<PollRecord>(), 56);
        let r = PollRecord::of(&failed(3));
        assert_eq!(r.started(), at(3));
        assert_eq!(r.duration(), Duration::from_millis(120));
        assert_eq!((r.requests(), r.status(), r.reason(), r.outcome_label()), (3, Some(503), Some(Reason::ServerError), "server_error"));
        assert_eq!(r.text(), "http 503: maintenance window number 3 ");
        assert_eq!(r.text().len(), TEXT_BYTES);
        let ok = PollRecord::of(&PollReport { last_status: None, ..ok(1) });
        assert_eq!((ok.reason(), ok.outcome_label(), ok.text(), ok.status()), (None, "ok", "", None));
        // A cut never splits a character.
        let long = PollReport { failure: Some((Reason::Decode, "é".repeat(40))), ..failed(0) };
        assert_eq!(PollRecord::of(&long).text(), "é".repeat(19));
        for reason in Reason::ALL {
            let r = PollRecord::of(&PollReport { failure: Some((reason, String::new())), ..failed(0) });
            assert_eq!(r.reason(), Some(reason));
        }
    }

    #[test]
    fn the_51st_poll_evicts_the_oldest() {
        let mut h = SupplierHistory::default();
        for i in 0..50 {
            h.push(&ok(i));
        }
        assert_eq!(h.len(), 50);
        assert_eq!(h.newest_first().last().unwrap().started(), at(0));
        h.push(&ok(50));
        assert_eq!(h.len(), 50);
        assert_eq!(h.newest_first().next().unwrap().started(), at(50));
        assert_eq!(h.newest_first().last().unwrap().started(), at(1), "the oldest went");
        assert_eq!(h.polls.capacity(), POLLS_KEPT, "never grown past the bound");
    }

    #[test]
    fn the_6th_failure_drops_the_oldest_snippet() {
        let mut h = SupplierHistory::default();
        for i in 0..5 {
            h.push(&failed(i));
            h.push(&ok(100 + i));
        }
        let kept: Vec<SystemTime> = h.snippets().map(|(r, _)| r.started()).collect();
        assert_eq!(kept, (0..5).rev().map(at).collect::<Vec<_>>());
        h.push(&failed(5));
        let kept: Vec<SystemTime> = h.snippets().map(|(r, _)| r.started()).collect();
        assert_eq!(kept, (1..6).rev().map(at).collect::<Vec<_>>(), "the oldest failure lost its snippet");
        let oldest = h.newest_first().find(|r| r.started() == at(0)).unwrap();
        assert_eq!(oldest.reason(), Some(Reason::ServerError), "its record stays");
        assert_eq!(h.snippet(oldest), None);
        assert_eq!(h.snippet(h.newest_first().next().unwrap()), Some("{\"error\":\"maintenance 5\"}"));
        // A snippet is cut to its bound; a success keeps none.
        h.push(&PollReport { snippet: Some("x".repeat(1000)), ..failed(6) });
        assert_eq!(h.snippets().next().unwrap().1.len(), FAILURE_SNIPPET_BYTES);
        h.push(&PollReport { snippet: Some("ignored".into()), ..ok(7) });
        assert_eq!(h.snippets().count(), 5);
    }

    #[test]
    fn a_full_history_stays_within_its_bound() {
        let mut h = SupplierHistory::default();
        for i in 0..500 {
            h.push(&PollReport { snippet: Some("y".repeat(400)), ..failed(i) });
        }
        assert_eq!((h.len(), h.snippets().count()), (POLLS_KEPT, SNIPPETS_KEPT));
        assert!(h.heap_bytes() <= 56 * 50 + 24 * 6 + 300 * 5, "{}", h.heap_bytes());
    }

    #[test]
    fn saved_history_reads_back_and_removed_suppliers_are_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let history = History::persisted(dir.path());
        for i in 0..60 {
            history.record("fox", &if i % 3 == 0 { failed(i) } else { ok(i) });
        }
        history.record("gone", &ok(1));
        history.retain(&|name| name != "gone");
        history.save();
        assert!(!history.dirty.load(Ordering::Relaxed));
        let before = history.of("fox");
        let again = History::persisted(dir.path());
        let after = again.of("fox");
        assert_eq!(after.polls, before.polls);
        assert_eq!(after.snippets().collect::<Vec<_>>(), before.snippets().collect::<Vec<_>>());
        assert_eq!(after.snippets().count(), 5);
        assert!(again.of("gone").is_empty());
        // Nothing changed: no rewrite.
        std::fs::write(dir.path().join(FILE_NAME), "left alone").unwrap();
        again.save();
        assert_eq!(std::fs::read(dir.path().join(FILE_NAME)).unwrap(), b"left alone");
        assert!(!dir.path().join(format!("{FILE_NAME}.tmp")).exists());
    }

    #[test]
    fn a_damaged_or_foreign_file_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let history = History::persisted(dir.path());
        history.record("fox", &failed(1));
        history.save();
        let good = std::fs::read(dir.path().join(FILE_NAME)).unwrap();
        let mut flipped = good.clone();
        let i = flipped.len() - 10;
        flipped[i] ^= 0x01;
        let foreign = b"balance_exporter history v2\n00000000 {}\n".to_vec();
        let mut two = good.clone();
        two.extend_from_slice(b"deadbeef {\"supplier\":\"x\",\"polls\":[]}\n");
        let mut unknown = format!("{HEADER}\n").into_bytes();
        unknown.extend_from_slice(&crate::storage::frame(br#"{"supplier":"fox","polls":[[1,2,3,4,"exploded","",null]]}"#));
        for damaged in [flipped, good[..good.len() / 2].to_vec(), foreign, unknown, two, vec![0xff; 100], Vec::new()] {
            std::fs::write(dir.path().join(FILE_NAME), &damaged).unwrap();
            let h = History::persisted(dir.path());
            assert!(h.of("fox").is_empty(), "{:?}", String::from_utf8_lossy(&damaged));
            // And it is overwritten by the next save.
            h.record("fox", &ok(2));
            h.save();
            assert_eq!(History::persisted(dir.path()).of("fox").len(), 1);
        }
        // An unreadable path (a directory) too.
        let dir2 = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir2.path().join(FILE_NAME)).unwrap();
        let h = History::persisted(dir2.path());
        h.record("fox", &ok(1));
        h.save();
        assert!(h.dirty.load(Ordering::Relaxed), "a failed save is retried next time");
    }
}
