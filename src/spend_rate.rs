//! `supplier_balance_spend_rate{window}`: spend per second from the
//! exporter's own poll times.
//!
//! Each balance keeps the points `(t, taken)` of its successful polls, where
//! `t` is when the poll ended and `taken` is the spend counter plus the
//! frozen balance: what orders have taken from the usable balance (settled
//! spend plus funds newly put on hold; a hold that settles moves from frozen
//! to spent and is not counted twice; top-ups count in neither). For a window
//! `W` the rate is `(taken at the last point − taken at the latest point at
//! least W before it) ÷ the exact time between the two`, never below zero,
//! and absent until the history reaches back `W`.
//!
//! Because the times are the exporter's own, a failed poll moves nothing and
//! the next success spreads what was spent over the real time span: there is
//! none of the noise of `increase()` over a sampled counter, where a failed
//! poll or the poll phase moves spend from one window into the next.
//!
//! The history is bounded: every point of the last [`FULL_RESOLUTION`] is kept;
//! older points are thinned to one per [`THINNED_STEP`], and nothing older
//! than the point that serves the longest window is kept. At one poll a
//! minute that is at most about 330 points per balance.
#![deny(clippy::arithmetic_side_effects)]

use std::collections::VecDeque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rust_decimal::Decimal;

/// The exported windows: label value and length.
pub const WINDOWS: [(&str, Duration); 4] = [
    ("15m", Duration::from_secs(15 * 60)),
    ("30m", Duration::from_secs(30 * 60)),
    ("1h", Duration::from_secs(3600)),
    ("1d", Duration::from_secs(86400)),
];

/// Points younger than this (before the last one) are all kept: the 15m and
/// 30m windows always start at an exact poll.
pub const FULL_RESOLUTION: Duration = Duration::from_secs(40 * 60);

/// Older points are kept at most one per this step (the 1h and 1d windows
/// start up to this much earlier than `W` before the last poll).
pub const THINNED_STEP: Duration = Duration::from_secs(5 * 60);

const LONGEST: Duration = Duration::from_secs(86400);

/// A point: milliseconds since the Unix epoch, and `taken` at that poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    pub at_ms: i64,
    pub taken: Decimal,
}

/// The points of one balance, oldest first.
#[derive(Debug, Clone, Default)]
pub struct SpendHistory {
    /// Older than [`FULL_RESOLUTION`] before the last point, thinned.
    old: VecDeque<Point>,
    /// The last [`FULL_RESOLUTION`], every point.
    recent: VecDeque<Point>,
}

/// Why a history could not be read back from its stored text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HistoryError {
    #[error("spend history point {index}: {what}")]
    Point { index: usize, what: &'static str },
}

/// Equal when the points are (however they are split between thinned and recent).
impl PartialEq for SpendHistory {
    fn eq(&self, other: &Self) -> bool {
        self.points().eq(other.points())
    }
}

impl Eq for SpendHistory {}

fn millis(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_millis()).map_or(i64::MIN, |ms| ms.saturating_neg()),
    }
}

fn span_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl SpendHistory {
    /// Records a successful poll that ended at `at` with `taken` (spent + frozen).
    /// A point not later than the last one (a clock step back) replaces
    /// nothing and is ignored: rates only ever span forward time.
    pub fn observe(&mut self, at: SystemTime, taken: Decimal) {
        let at_ms = millis(at);
        if self.last().is_some_and(|p| p.at_ms >= at_ms) {
            return;
        }
        self.recent.push_back(Point { at_ms, taken });
        let full_from = at_ms.saturating_sub(span_ms(FULL_RESOLUTION));
        while let Some(p) = self.recent.front().copied().filter(|p| p.at_ms < full_from) {
            self.recent.pop_front();
            let step = span_ms(THINNED_STEP);
            if self.old.back().is_none_or(|kept| p.at_ms.saturating_sub(kept.at_ms) >= step) {
                self.old.push_back(p);
            }
        }
        // Keep exactly one point at or before `LONGEST` ago: the start of the longest window.
        let longest_from = at_ms.saturating_sub(span_ms(LONGEST));
        while self.old.get(1).is_some_and(|p| p.at_ms <= longest_from) {
            self.old.pop_front();
        }
    }

    pub fn last(&self) -> Option<Point> {
        self.recent.back().or(self.old.back()).copied()
    }

    pub fn len(&self) -> usize {
        self.old.len().saturating_add(self.recent.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn points(&self) -> impl Iterator<Item = &Point> {
        self.old.iter().chain(self.recent.iter())
    }

    /// The latest point at least `window` before the last one.
    fn start_of(&self, window: Duration) -> Option<Point> {
        let last = self.last()?;
        let from = last.at_ms.checked_sub(span_ms(window))?;
        let before = |p: &Point| p.at_ms <= from;
        let in_recent = self.recent.partition_point(before);
        if in_recent > 0 {
            return self.recent.get(in_recent.checked_sub(1)?).copied();
        }
        let in_old = self.old.partition_point(before);
        self.old.get(in_old.checked_sub(1)?).copied()
    }

    /// Spend per second over `window` ending at the last point; `None` until
    /// the history reaches back that far, or when `Decimal` cannot hold it.
    pub fn rate(&self, window: Duration) -> Option<Decimal> {
        let last = self.last()?;
        let start = self.start_of(window)?;
        let taken = last.taken.checked_sub(start.taken)?.max(Decimal::ZERO);
        let ms = last.at_ms.checked_sub(start.at_ms).filter(|ms| *ms > 0)?;
        taken.checked_mul(Decimal::ONE_THOUSAND)?.checked_div(Decimal::from(ms))
    }

    /// The rate over the longest window the history covers among `windows`
    /// (longest first), with that window's label.
    pub fn longest_rate(&self, windows: &[(&'static str, Duration)]) -> Option<(&'static str, Decimal)> {
        windows.iter().find_map(|(label, w)| self.rate(*w).map(|r| (*label, r)))
    }

    /// Stored form: `<ms> <taken>` for the first point, then `<+ms> <+taken>`
    /// per point, separated by `;` (small numbers keep the state file small).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let mut prev: Option<Point> = None;
        for p in self.points() {
            let (dt, dv) = match prev {
                None => (p.at_ms, Some(p.taken)),
                Some(q) => (p.at_ms.saturating_sub(q.at_ms), p.taken.checked_sub(q.taken)),
            };
            if !out.is_empty() {
                out.push(';');
            }
            // A difference `Decimal` cannot hold is written absolute, marked `=`.
            match dv {
                Some(dv) => out.push_str(&format!("{dt} {dv}")),
                None => out.push_str(&format!("{dt} ={}", p.taken)),
            }
            prev = Some(*p);
        }
        out
    }

    /// Reads [`Self::encode`]'s form back; a point out of order is an error.
    pub fn decode(text: &str) -> Result<SpendHistory, HistoryError> {
        let mut h = SpendHistory::default();
        let mut prev: Option<Point> = None;
        for (index, part) in text.split(';').filter(|s| !s.is_empty()).enumerate() {
            let bad = |what| HistoryError::Point { index, what };
            let (dt, dv) = part.split_once(' ').ok_or(bad("no space between time and amount"))?;
            let dt: i64 = dt.parse().map_err(|_| bad("time is not an integer"))?;
            let absolute = dv.strip_prefix('=');
            let dv = Decimal::from_str_exact(absolute.unwrap_or(dv)).map_err(|_| bad("amount is not a decimal"))?;
            let p = match prev {
                None => Point { at_ms: dt, taken: dv },
                Some(q) => {
                    let at_ms = q.at_ms.checked_add(dt).filter(|_| dt > 0).ok_or(bad("time does not move forward"))?;
                    let taken = match absolute {
                        Some(_) => dv,
                        None => q.taken.checked_add(dv).ok_or(bad("amount overflows"))?,
                    };
                    Point { at_ms, taken }
                }
            };
            h.push_restored(p);
            prev = Some(p);
        }
        Ok(h)
    }

    /// Appends a stored point: the split between thinned and recent points is
    /// redone by the next `observe`, which re-thins whatever is now old.
    fn push_restored(&mut self, p: Point) {
        self.recent.push_back(p);
    }

    /// Bytes held by the points (for the memory figure in the benchmark).
    pub fn heap_bytes(&self) -> usize {
        self.old.capacity().saturating_add(self.recent.capacity()).saturating_mul(std::mem::size_of::<Point>())
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)] // times and amounts of the tests, not upstream values
mod tests {
    use super::*;

    fn t(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn d(s: &str) -> Decimal {
        Decimal::from_str_exact(s).unwrap()
    }

    #[test]
    fn rate_spans_the_exact_time_between_two_polls() {
        let mut h = SpendHistory::default();
        h.observe(t(0), d("100"));
        h.observe(t(600), d("130"));
        assert_eq!(h.rate(WINDOWS[0].1), None, "10 minutes do not cover 15");
        // A failed poll at 900 s moves nothing; the success at 1010 s spans 0..1010.
        h.observe(t(1010), d("201"));
        assert_eq!(h.rate(WINDOWS[0].1), Some(d("0.1")));
        assert_eq!(h.rate(WINDOWS[1].1), None);
    }

    #[test]
    fn holds_released_never_make_the_rate_negative() {
        let mut h = SpendHistory::default();
        h.observe(t(0), d("50"));
        h.observe(t(1800), d("20"));
        assert_eq!(h.rate(WINDOWS[1].1), Some(Decimal::ZERO));
    }

    #[test]
    fn history_is_bounded_and_serves_every_window() {
        let mut h = SpendHistory::default();
        // Two days of one poll a minute, one unit per minute.
        for m in 0..=2 * 1440u64 {
            h.observe(t(m * 60), Decimal::from(m));
        }
        let per_minute = d("1") / d("60");
        for (label, w) in WINDOWS {
            let r = h.rate(w).unwrap_or_else(|| panic!("{label}"));
            assert_eq!(r.round_dp(12), per_minute.round_dp(12), "{label}");
        }
        // 40 full-resolution points + one per 5 minutes over the day + the start point.
        assert!(h.len() <= 41 + 288 + 1, "{} points", h.len());
        let first = h.points().next().unwrap().at_ms;
        let last = h.last().unwrap().at_ms;
        assert!(last - first >= 86_400_000 && last - first < 86_400_000 + 300_000, "{}", last - first);
    }

    #[test]
    fn a_clock_step_back_is_ignored() {
        let mut h = SpendHistory::default();
        h.observe(t(1000), d("5"));
        h.observe(t(10), d("1"));
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn stored_form_round_trips_and_rejects_garbage() {
        let mut h = SpendHistory::default();
        for m in 0..200u64 {
            h.observe(t(m * 61), d("79228162514264337593543950335") - Decimal::from(200 - m));
        }
        let text = h.encode();
        let back = SpendHistory::decode(&text).unwrap();
        assert_eq!(back.points().collect::<Vec<_>>(), h.points().collect::<Vec<_>>());
        assert_eq!(back.rate(WINDOWS[2].1), h.rate(WINDOWS[2].1));
        // Extreme swings are stored absolute.
        let mut swing = SpendHistory::default();
        swing.observe(t(0), Decimal::MIN);
        swing.observe(t(60), Decimal::MAX);
        assert_eq!(SpendHistory::decode(&swing.encode()).unwrap(), swing);
        for bad in ["x", "1 2;0 1", "1 2;5 nope", "1 2;-5 1", "9223372036854775807 1;9 1", "1 79228162514264337593543950335;1 1"] {
            assert!(SpendHistory::decode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn extreme_amounts_give_no_rate_rather_than_a_panic() {
        let mut h = SpendHistory::default();
        h.observe(t(0), Decimal::MIN);
        h.observe(t(3600), Decimal::MAX);
        assert_eq!(h.rate(WINDOWS[0].1), None);
        let mut h = SpendHistory::default();
        h.observe(UNIX_EPOCH - Duration::from_secs(u64::MAX / 2), Decimal::ZERO);
        h.observe(UNIX_EPOCH + Duration::from_secs(u64::MAX / 2), Decimal::ONE);
        let _ = h.rate(WINDOWS[3].1);
    }
}
