//! Trend pictures: the usable balance of every successful poll of the last
//! 24 hours, per (supplier, account, currency), drawn as an inline SVG step
//! line (the landing page's "24 h" column; [`sparkline`] for other pages).
//!
//! A [`Trend`] keeps one point per successful poll: seconds since its own
//! origin (`u32`) and the usable balance as `f64` — 12 bytes a point. The
//! money stays exact everywhere else; the float only positions a pixel. The
//! trend is bounded: points older than [`WINDOW`] before the newest are
//! dropped, and at most [`MAX_POINTS`] are kept. When a poll would make one
//! more, one interior point goes: one that repeats the value before it when
//! there is such a point (a step line draws the same picture without it),
//! else the one whose neighbours are closest in time, which keeps the points
//! evenly spread (5 minutes apart for a full day of fast polls). Any subset
//! of a step function's points still draws steps, so a top-up stays a step.
//!
//! The drawing holds each value until the next point's time, then jumps
//! (`H` then `V` in the path: horizontal, then vertical, never a diagonal).
//! The `low` threshold, when configured, is a dashed horizontal line, and
//! the vertical range always includes it. Everything drawn is finite: no
//! `NaN` or infinity reaches the markup, and equal values draw a flat line
//! in the middle (no division by zero).
//!
//! The file format ([`encode`]/[`decode`], written by `storage` as
//! `trends.v1`) is a header line, little-endian records and a CRC-32 of all
//! that precedes it; anything else is refused whole.
#![deny(clippy::arithmetic_side_effects)]

use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use rust_decimal::Decimal;

/// How far back a trend reaches from its newest point.
pub const WINDOW: std::time::Duration = std::time::Duration::from_secs(86_400);

/// Most points kept per trend: one per 5 minutes over a day.
pub const MAX_POINTS: usize = 288;

const WINDOW_SECS: i64 = 86_400;

/// The usable balances of one (supplier, account, currency), oldest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Trend {
    /// Unix seconds that `offsets` count from.
    origin: i64,
    /// Seconds after `origin`, strictly increasing.
    offsets: Vec<u32>,
    /// The usable balance at each offset, finite.
    values: Vec<f64>,
}

/// Unix seconds of `t` (negative before 1970), saturating.
pub fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_secs()).map_or(i64::MIN, |s| s.saturating_neg()),
    }
}

/// The float that positions `d` in a picture (correctly rounded); `None` never
/// happens for a `Decimal`, but a value that does not parse is not drawn.
pub fn drawable(d: Decimal) -> Option<f64> {
    d.to_string().parse::<f64>().ok().filter(|v| v.is_finite())
}

impl Trend {
    /// Records a successful poll that ended at `at` with `usable`. A time not
    /// after the newest point (a clock step back) is ignored.
    pub fn observe(&mut self, at: SystemTime, usable: Decimal) {
        if let Some(value) = drawable(usable) {
            self.push(unix_secs(at), value);
        }
    }

    /// [`Self::observe`] in Unix seconds and a float (the file reader, tests).
    pub fn push(&mut self, at: i64, value: f64) {
        if !value.is_finite() || self.last().is_some_and(|(t, _)| t >= at) {
            return;
        }
        self.drop_before(at.saturating_sub(WINDOW_SECS));
        if self.offsets.is_empty() {
            self.origin = at;
        }
        let offset = match at.checked_sub(self.origin).and_then(|o| u32::try_from(o).ok()) {
            Some(o) => o,
            None => {
                // Only after more than 136 years of one origin: count from the first point again.
                self.rebase();
                match at.checked_sub(self.origin).and_then(|o| u32::try_from(o).ok()) {
                    Some(o) => o,
                    None => return,
                }
            }
        };
        // Exact growth: a clone of a state copies `len` points, and the room
        // for one more is all a poll needs (no doubling to 576).
        self.offsets.reserve_exact(1);
        self.values.reserve_exact(1);
        self.offsets.push(offset);
        self.values.push(value);
        if self.offsets.len() > MAX_POINTS {
            self.thin_one();
        }
    }

    /// Drops the points before `cutoff` (Unix seconds).
    pub fn drop_before(&mut self, cutoff: i64) {
        let keep_from = self.offsets.iter().position(|&o| self.origin.saturating_add(i64::from(o)) >= cutoff).unwrap_or(self.offsets.len());
        if keep_from > 0 {
            self.offsets.drain(..keep_from);
            self.values.drain(..keep_from);
        }
    }

    /// Makes the first point offset 0.
    fn rebase(&mut self) {
        let Some(&first) = self.offsets.first() else { return };
        self.origin = self.origin.saturating_add(i64::from(first));
        for o in &mut self.offsets {
            *o = o.saturating_sub(first);
        }
    }

    /// Removes one interior point (see the module comment for which).
    fn thin_one(&mut self) {
        let n = self.offsets.len();
        let victim = (1..n.saturating_sub(1))
            .filter_map(|i| {
                let (before, after) = (*self.offsets.get(i.checked_sub(1)?)?, *self.offsets.get(i.checked_add(1)?)?);
                let repeats = self.values.get(i) == self.values.get(i.checked_sub(1)?);
                Some(((!repeats, after.saturating_sub(before)), i))
            })
            .min()
            .map(|(_, i)| i);
        if let Some(i) = victim {
            self.offsets.remove(i);
            self.values.remove(i);
        }
    }

    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// (Unix seconds, value), oldest first.
    pub fn points(&self) -> impl Iterator<Item = (i64, f64)> + '_ {
        self.offsets.iter().zip(&self.values).map(|(&o, &v)| (self.origin.saturating_add(i64::from(o)), v))
    }

    pub fn last(&self) -> Option<(i64, f64)> {
        Some((self.origin.saturating_add(i64::from(*self.offsets.last()?)), *self.values.last()?))
    }

    /// Heap bytes held (the benches' memory figure).
    pub fn heap_bytes(&self) -> usize {
        self.offsets.capacity().saturating_mul(4).saturating_add(self.values.capacity().saturating_mul(8))
    }
}

// ---- drawing ----

/// Size of a picture in CSS pixels (the SVG's user units).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Size {
    pub width: u32,
    pub height: u32,
}

impl Size {
    /// The landing page's table cell.
    pub const ROW: Size = Size { width: 120, height: 28 };
    /// The supplier page's picture of each balance.
    pub const PAGE: Size = Size { width: 480, height: 80 };
}

/// Vertical room kept free above and below the line, so a stroke at the
/// extremes is not cut in half.
const PAD: f64 = 2.0;

/// A coordinate as written: one decimal, finite, never `-0.0`.
fn coord(v: f64) -> String {
    let v = if v.is_finite() { (v * 10.0).round() / 10.0 } else { 0.0 };
    let v = if v == 0.0 { 0.0 } else { v };
    format!("{v:.1}")
}

/// A value in the label: the shortest text that reads back as the float.
fn amount(v: f64) -> String {
    format!("{v}")
}

/// Text of a currency code for the label: upstream data, so only letters,
/// digits and a few marks get through (no markup can be injected).
fn label_text(s: &str) -> String {
    s.chars().filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_' | '.')).take(16).collect()
}

/// "24 h", "3 h", "45 min": the time the points span.
fn span_text(secs: i64) -> String {
    match secs {
        s if s >= 3600 => format!("{} h", s.saturating_add(1800) / 3600),
        s => format!("{} min", (s.saturating_add(30) / 60).max(1)),
    }
}

/// One balance's usable amounts as an inline SVG step line, with the `low`
/// threshold as a dashed horizontal line; a short text instead when fewer
/// than two points exist. Safe to put in any HTML page: no script, no URL,
/// no `style` attribute (presentation attributes, and the classes `trend`,
/// `trend-line`, `trend-low` for a stylesheet to restyle). `data-points`
/// is the number of points drawn: the path's `M` plus its `V` commands.
pub fn sparkline(trend: &Trend, currency: &str, low: Option<Decimal>, size: Size) -> String {
    if trend.len() < 2 {
        return "<span class=\"trend none\" title=\"a picture needs two successful polls\">not enough polls yet</span>".into();
    }
    let points: Vec<(i64, f64)> = trend.points().collect();
    let low = low.and_then(drawable);
    let (min, max) = points.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &(_, v)| (lo.min(v), hi.max(v)));
    let (lo, hi) = low.map_or((min, max), |l| (min.min(l), max.max(l)));
    let (w, h) = (f64::from(size.width), f64::from(size.height));
    let (t0, t1) = (points.first().map_or(0, |p| p.0), points.last().map_or(0, |p| p.0));
    let span = t1.saturating_sub(t0);
    let x = |t: i64| if span > 0 { t.saturating_sub(t0) as f64 / span as f64 * w } else { w };
    // Scaled first, then subtracted: `hi - lo` of two huge values of opposite sign stays finite.
    let y = |v: f64| {
        let range = hi / 2.0 - lo / 2.0;
        if range > 0.0 && range.is_finite() {
            PAD + (hi / 2.0 - v / 2.0) / range * (h - 2.0 * PAD).max(0.0)
        } else {
            h / 2.0
        }
    };
    let cur = label_text(currency);
    let mut label = format!("usable {cur}, {}: {} points, min {}, max {}", span_text(span), points.len(), amount(min), amount(max));
    if let Some(l) = low {
        let _ = write!(label, ", low threshold {}", amount(l));
    }
    let mut svg = format!(
        "<svg class=\"trend\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"{label}\" data-points=\"{}\"><title>{label}</title>",
        points.len(),
        w = size.width,
        h = size.height,
    );
    if let Some(l) = low {
        let ly = coord(y(l));
        let _ = write!(
            svg,
            "<line class=\"trend-low\" x1=\"0\" y1=\"{ly}\" x2=\"{}\" y2=\"{ly}\" stroke=\"#d84a32\" stroke-width=\"1\" stroke-dasharray=\"3 2\"/>",
            size.width
        );
    }
    let mut d = String::with_capacity(points.len().saturating_mul(16));
    for (i, &(t, v)) in points.iter().enumerate() {
        if i == 0 {
            let _ = write!(d, "M{} {}", coord(x(t)), coord(y(v)));
        } else {
            let _ = write!(d, "H{}V{}", coord(x(t)), coord(y(v)));
        }
    }
    let _ = write!(svg, "<path class=\"trend-line\" d=\"{d}\" fill=\"none\" stroke=\"#2b6cb0\" stroke-width=\"1.5\"/></svg>");
    svg
}

// ---- the file ----

/// First line of the file; another version is refused.
pub const FILE_HEADER: &[u8] = b"balance_exporter trends v1\n";

/// One stored trend: (supplier, account, currency, points).
pub type StoredTrend = (String, String, String, Trend);

/// Why a trends file was not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrendFileError {
    #[error("not a trends file of this version (header {0:?})")]
    Header(String),
    #[error("checksum mismatch (damaged or torn)")]
    Checksum,
    #[error("truncated or malformed at byte {0}")]
    Malformed(usize),
}

fn crc(bytes: &[u8]) -> u32 {
    let mut c = flate2::Crc::new();
    c.update(bytes);
    c.sum()
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&u32::try_from(s.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// The file's bytes for these trends (names longer than 4 GiB are not a case).
pub fn encode<'a>(trends: impl IntoIterator<Item = (&'a str, &'a str, &'a str, &'a Trend)>) -> Vec<u8> {
    let mut body = Vec::with_capacity(64);
    let mut count = 0u32;
    for (supplier, account, currency, trend) in trends {
        count = count.saturating_add(1);
        put_str(&mut body, supplier);
        put_str(&mut body, account);
        put_str(&mut body, currency);
        body.extend_from_slice(&trend.origin.to_le_bytes());
        body.extend_from_slice(&u32::try_from(trend.len()).unwrap_or(u32::MAX).to_le_bytes());
        for (o, v) in trend.offsets.iter().zip(&trend.values) {
            body.extend_from_slice(&o.to_le_bytes());
            body.extend_from_slice(&v.to_bits().to_le_bytes());
        }
    }
    let mut out = Vec::with_capacity(FILE_HEADER.len().saturating_add(8).saturating_add(body.len()));
    out.extend_from_slice(FILE_HEADER);
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&body);
    let sum = crc(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

/// A reader over the file's bytes that fails instead of panicking.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], TrendFileError> {
        let end = self.at.checked_add(n).ok_or(TrendFileError::Malformed(self.at))?;
        let slice = self.bytes.get(self.at..end).ok_or(TrendFileError::Malformed(self.at))?;
        self.at = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], TrendFileError> {
        let at = self.at;
        self.take(N)?.try_into().map_err(|_| TrendFileError::Malformed(at))
    }

    fn u32(&mut self) -> Result<u32, TrendFileError> {
        self.array().map(u32::from_le_bytes)
    }

    fn string(&mut self) -> Result<String, TrendFileError> {
        let at = self.at;
        let len = usize::try_from(self.u32()?).map_err(|_| TrendFileError::Malformed(at))?;
        String::from_utf8(self.take(len)?.to_vec()).map_err(|_| TrendFileError::Malformed(at))
    }
}

/// Reads what [`encode`] wrote, dropping the points before `cutoff` (Unix
/// seconds; a restart after a day off shows no day-old picture). Points out
/// of order, not finite or beyond [`MAX_POINTS`] make the file malformed.
pub fn decode(bytes: &[u8], cutoff: i64) -> Result<Vec<StoredTrend>, TrendFileError> {
    if !bytes.starts_with(FILE_HEADER) {
        let line = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
        return Err(TrendFileError::Header(String::from_utf8_lossy(line.get(..60).unwrap_or(line)).into_owned()));
    }
    let body_end = bytes.len().checked_sub(4).filter(|e| *e >= FILE_HEADER.len()).ok_or(TrendFileError::Malformed(bytes.len()))?;
    let (content, sum) = (bytes.get(..body_end).unwrap_or_default(), bytes.get(body_end..).unwrap_or_default());
    if sum != crc(content).to_le_bytes() {
        return Err(TrendFileError::Checksum);
    }
    let mut c = Cursor { bytes: content, at: FILE_HEADER.len() };
    let count = c.u32()?;
    let mut out = Vec::new();
    for _ in 0..count {
        let (supplier, account, currency) = (c.string()?, c.string()?, c.string()?);
        let origin = i64::from_le_bytes(c.array()?);
        let at = c.at;
        let n = usize::try_from(c.u32()?).map_err(|_| TrendFileError::Malformed(at))?;
        if n > MAX_POINTS {
            return Err(TrendFileError::Malformed(at));
        }
        let mut trend = Trend::default();
        for _ in 0..n {
            let at = c.at;
            let offset = c.u32()?;
            let value = f64::from_bits(u64::from_le_bytes(c.array()?));
            let t = origin.checked_add(i64::from(offset)).ok_or(TrendFileError::Malformed(at))?;
            if !value.is_finite() || trend.last().is_some_and(|(last, _)| last >= t) {
                return Err(TrendFileError::Malformed(at));
            }
            trend.push(t, value);
        }
        trend.drop_before(cutoff);
        if !trend.is_empty() {
            out.push((supplier, account, currency, trend));
        }
    }
    if c.at != content.len() {
        return Err(TrendFileError::Malformed(c.at));
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use std::time::Duration;

    const T0: i64 = 1_800_000_000;

    fn dec(s: &str) -> Decimal {
        Decimal::from_str_exact(s).unwrap()
    }

    fn trend(points: &[(i64, f64)]) -> Trend {
        let mut t = Trend::default();
        for &(at, v) in points {
            t.push(T0 + at, v);
        }
        t
    }

    /// The path's vertices as (x, y) after each command, `M` then one per `H…V…` pair.
    fn path_points(svg: &str) -> Vec<(f64, f64)> {
        let d = svg.split(" d=\"").nth(1).unwrap().split('"').next().unwrap();
        let mut out = vec![];
        let first = d.strip_prefix('M').unwrap();
        let (head, rest) = first.split_once('H').map_or((first, ""), |(a, b)| (a, b));
        let (x, y) = head.split_once(' ').unwrap();
        out.push((x.parse().unwrap(), y.parse().unwrap()));
        for step in rest.split('H').filter(|s| !s.is_empty()) {
            let (x, y) = step.split_once('V').unwrap();
            out.push((x.parse().unwrap(), y.parse().unwrap()));
        }
        out
    }

    fn data_points(svg: &str) -> usize {
        svg.split("data-points=\"").nth(1).unwrap().split('"').next().unwrap().parse().unwrap()
    }

    #[test]
    fn a_day_of_30_s_polls_keeps_288_evenly_spread_points() {
        let mut t = Trend::default();
        let polls = 2 * 86_400 / 30;
        for p in 0..polls {
            // Spends, with a top-up every 6 hours: every value differs from the last.
            let v = 1000.0 - (p % 720) as f64 * 0.37;
            t.push(T0 + p * 30, v);
            assert!(t.len() <= MAX_POINTS, "{} points after poll {p}", t.len());
            assert!(t.offsets.capacity() <= MAX_POINTS + 1 && t.values.capacity() <= MAX_POINTS + 1, "no doubling");
        }
        assert_eq!(t.len(), MAX_POINTS);
        let points: Vec<(i64, f64)> = t.points().collect();
        let newest = T0 + (polls - 1) * 30;
        assert_eq!(points.last().unwrap().0, newest, "the newest poll is always kept");
        assert!(points[0].0 >= newest - 86_400, "nothing older than a day");
        assert!(points[0].0 <= newest - 86_400 + 600, "the day is covered: oldest at {}", newest - points[0].0);
        let widest = points.windows(2).map(|w| w[1].0 - w[0].0).max().unwrap();
        assert!(widest <= 900, "points stay spread: widest gap {widest} s");
    }

    #[test]
    fn repeated_values_go_first_and_a_top_up_stays_a_vertical_step() {
        let mut t = Trend::default();
        // Flat at 50 for hours, a top-up to 500, flat again: far more polls than points.
        for p in 0..2000 {
            t.push(T0 + p * 30, if p < 1500 { 50.0 } else { 500.0 });
        }
        assert!(t.len() <= MAX_POINTS);
        let svg = sparkline(&t, "USD", None, Size::ROW);
        let pts = path_points(&svg);
        assert_eq!(pts.len(), data_points(&svg));
        // Exactly one change of height, drawn as H to the top-up's x, then V: no diagonal.
        let jumps: Vec<_> = pts.windows(2).filter(|w| w[0].1 != w[1].1).collect();
        assert_eq!(jumps.len(), 1, "{svg}");
        let d = svg.split(" d=\"").nth(1).unwrap().split('"').next().unwrap();
        assert!(d.chars().all(|c| c.is_ascii_digit() || " .MHV".contains(c)), "only M, H and V: {d}");
        // The step lands at the top-up's time (p = 1500 of 0..2000, over the kept span).
        let (first, last) = (t.points().next().unwrap().0, t.last().unwrap().0);
        let expected_x = (T0 + 1500 * 30 - first) as f64 / (last - first) as f64 * 120.0;
        assert!((jumps[0][1].0 - expected_x).abs() < 0.11, "step at x {} expected {expected_x}", jumps[0][1].0);
        assert!(jumps[0][1].1 < jumps[0][0].1, "a top-up goes up (smaller y)");
    }

    #[test]
    fn golden_svg_of_a_small_series() {
        let t = trend(&[(0, 100.0), (3600, 80.0), (7200, 80.0), (10_800, 200.0)]);
        let svg = sparkline(&t, "USD", Some(dec("50")), Size::ROW);
        assert_eq!(
            svg,
            "<svg class=\"trend\" width=\"120\" height=\"28\" viewBox=\"0 0 120 28\" role=\"img\" \
             aria-label=\"usable USD, 3 h: 4 points, min 80, max 200, low threshold 50\" data-points=\"4\">\
             <title>usable USD, 3 h: 4 points, min 80, max 200, low threshold 50</title>\
             <line class=\"trend-low\" x1=\"0\" y1=\"26.0\" x2=\"120\" y2=\"26.0\" stroke=\"#d84a32\" stroke-width=\"1\" stroke-dasharray=\"3 2\"/>\
             <path class=\"trend-line\" d=\"M0.0 18.0H40.0V21.2H80.0V21.2H120.0V2.0\" fill=\"none\" stroke=\"#2b6cb0\" stroke-width=\"1.5\"/></svg>"
        );
    }

    #[test]
    fn threshold_line_sits_at_its_value_and_widens_the_range() {
        // Values 100..200, threshold 150: inside, half way (y = 2 + 0.5 × 24).
        let t = trend(&[(0, 100.0), (60, 200.0)]);
        let svg = sparkline(&t, "EUR", Some(dec("150")), Size::ROW);
        assert!(svg.contains("y1=\"14.0\" x2=\"120\" y2=\"14.0\""), "{svg}");
        // A threshold above every value is drawn at the top, the values below it.
        let svg = sparkline(&t, "EUR", Some(dec("400")), Size::ROW);
        assert!(svg.contains("y1=\"2.0\" x2=\"120\" y2=\"2.0\""), "{svg}");
        assert_eq!(path_points(&svg), vec![(0.0, 26.0), (120.0, 18.0)]);
        // No threshold: no line.
        assert!(!sparkline(&t, "EUR", None, Size::ROW).contains("<line"));
    }

    #[test]
    fn hostile_values_draw_finite_pictures() {
        let cases: Vec<Vec<Decimal>> = vec![
            vec![Decimal::MAX, Decimal::MIN, Decimal::MAX],
            vec![Decimal::new(1, 28), Decimal::new(-1, 28), Decimal::new(2, 28)],
            vec![dec("-5"), dec("-7.25"), dec("-1")],
            vec![dec("3"), dec("3"), dec("3")],
            vec![Decimal::ZERO, Decimal::ZERO],
        ];
        for values in cases {
            let mut t = Trend::default();
            for (i, v) in values.iter().enumerate() {
                t.observe(SystemTime::UNIX_EPOCH + Duration::from_secs(T0 as u64 + i as u64 * 60), *v);
            }
            for low in [None, Some(Decimal::MAX), Some(Decimal::MIN), Some(Decimal::ZERO)] {
                let svg = sparkline(&t, "US<D>\"", low, Size::ROW);
                let lower = svg.to_lowercase();
                let d = svg.split(" d=\"").nth(1).unwrap().split('"').next().unwrap();
                assert!(!lower.contains("nan") && !lower.contains("inf") && !d.contains('-'), "{values:?} {low:?}: {svg}");
                assert!(!svg.contains("<D>") && !svg.contains("D\""), "the currency cannot inject markup: {svg}");
                let pts = path_points(&svg);
                assert_eq!(pts.len(), values.len());
                assert_eq!(data_points(&svg), values.len());
                for (x, y) in pts {
                    assert!((0.0..=120.0).contains(&x) && (0.0..=28.0).contains(&y), "{values:?} {low:?}: ({x}, {y})");
                }
            }
        }
        // All equal: a flat line in the middle.
        let flat = trend(&[(0, 3.0), (60, 3.0)]);
        assert_eq!(path_points(&sparkline(&flat, "USD", None, Size::ROW)), vec![(0.0, 14.0), (120.0, 14.0)]);
        // Not finite, or back in time: not kept.
        let mut t = trend(&[(0, 1.0)]);
        t.push(T0 + 10, f64::NAN);
        t.push(T0 + 20, f64::INFINITY);
        t.push(T0 - 5, 2.0);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn fewer_than_two_points_is_a_short_text() {
        assert!(sparkline(&Trend::default(), "USD", None, Size::ROW).contains("not enough polls yet"));
        let one = trend(&[(0, 5.0)]);
        let text = sparkline(&one, "USD", Some(dec("1")), Size::ROW);
        assert!(!text.contains("<svg") && text.contains("class=\"trend none\""), "{text}");
    }

    #[test]
    fn points_older_than_a_day_go() {
        let mut t = trend(&[(0, 1.0), (3600, 2.0)]);
        t.push(T0 + 86_400 + 1800, 3.0);
        assert_eq!(t.points().map(|p| p.1).collect::<Vec<_>>(), vec![2.0, 3.0]);
        t.push(T0 + 10 * 86_400, 4.0);
        assert_eq!(t.points().collect::<Vec<_>>(), vec![(T0 + 10 * 86_400, 4.0)]);
    }

    #[test]
    fn the_file_round_trips_and_drops_old_points() {
        let a = trend(&[(0, 1.5), (600, -2.25), (1200, 7.9e28)]);
        let b = trend(&[(100, 0.0), (86_000, 1e-28)]);
        let bytes = encode([("fox", "main", "USD", &a), ("nova \"x\"\n", "", "EUR", &b)]);
        let back = decode(&bytes, 0).unwrap();
        assert_eq!(back, vec![("fox".into(), "main".into(), "USD".into(), a.clone()), ("nova \"x\"\n".into(), "".into(), "EUR".into(), b)]);
        // Loaded a day later: only what is younger than the cutoff.
        let back = decode(&bytes, T0 + 1000).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].3.points().collect::<Vec<_>>(), vec![(T0 + 1200, 7.9e28)]);
        assert!(decode(&bytes, T0 + 100_000).unwrap().is_empty());
    }

    #[test]
    fn damaged_or_foreign_files_are_refused_without_panicking() {
        let a = trend(&[(0, 1.5), (600, 2.5)]);
        let bytes = encode([("fox", "main", "USD", &a)]);
        assert!(matches!(decode(b"balance_exporter state v1\n...", 0), Err(TrendFileError::Header(_))));
        assert!(matches!(decode(b"", 0), Err(TrendFileError::Header(_))));
        assert!(matches!(decode(FILE_HEADER, 0), Err(TrendFileError::Malformed(_))));
        // Every truncation and every flipped byte is refused (by the checksum or the reader).
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut], 0).is_err(), "cut at {cut}");
        }
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x41;
            assert!(decode(&bad, 0).is_err(), "flipped byte {i}");
        }
        // A well-checksummed file whose contents lie (a count far too large) is malformed, not a panic.
        let mut lying = bytes[..bytes.len() - 4].to_vec();
        lying[FILE_HEADER.len()..FILE_HEADER.len() + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let sum = crc(&lying);
        lying.extend_from_slice(&sum.to_le_bytes());
        assert!(matches!(decode(&lying, 0), Err(TrendFileError::Malformed(_))));
    }
}
