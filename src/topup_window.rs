//! The top-up window: when a supplier can be topped up (days and hours in a
//! time zone, minus holidays) and how long a top-up takes to land
//! (`lead_time`, counted in window hours). [`TopupWindow::ready_at`] answers
//! the question `supplier_topup_ready_timestamp_seconds` asks: a top-up
//! started now, or at the next opening when the window is closed, has landed
//! when?
//!
//! Pure: (window, instant) → instant, no clock and no I/O; a leaf that
//! imports nothing of the crate. Time zones come from jiff's bundled copy of
//! the IANA database (the same rules on every machine; no hand-written offsets).
//!
//! Daylight saving time, chosen here: `lead_time` counts real elapsed time
//! inside the window. On the night a window hour is skipped (clocks jump
//! forward) the window is an hour shorter; on the night one is repeated it is
//! an hour longer. A window boundary that falls into a skipped hour moves
//! forward by the gap (02:30 in Berlin's March change is 03:30); one that falls
//! into a repeated hour is its first occurrence (jiff's `compatible` rule, as
//! in RFC 5545 and Temporal).
//!
//! Bounded: the search looks at most [`HORIZON_DAYS`] days ahead. A window
//! that does not hold `lead_time` within them (every day a holiday, or a lead
//! time of years) gives `None`, and the series is absent. Nothing here panics.
#![deny(clippy::arithmetic_side_effects)]

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

/// How far ahead [`TopupWindow::ready_at`] looks, in calendar days (three years).
pub const HORIZON_DAYS: u32 = 1098;

/// Default `margin`: how much earlier than the ready time the balance must last.
pub const DEFAULT_MARGIN: Duration = Duration::from_secs(43_200);

/// The config's day names, Monday first (jiff's `to_monday_zero_offset` order).
pub const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// A time of day on the window's clock: `00:00` to `24:00` (the end of the day, as a closing time only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ClockTime {
    hour: i8,
    minute: i8,
}

impl fmt::Display for ClockTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.hour, self.minute)
    }
}

/// `hours: "09:00-17:00"`: the window is open from `open` (included) to `close` (excluded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hours {
    pub open: ClockTime,
    pub close: ClockTime,
}

/// A validated `topup_window`.
#[derive(Debug, Clone)]
pub struct TopupWindow {
    /// The IANA name as configured (`Europe/Berlin`).
    pub timezone_name: String,
    pub timezone: TimeZone,
    /// Open on these weekdays, Monday first.
    pub days: [bool; 7],
    pub hours: Hours,
    /// Dates, on the window's own calendar, when it stays closed.
    pub holidays: BTreeSet<Date>,
    /// How long a top-up takes to land, counted in window time.
    pub lead_time: Duration,
    /// Exported as `supplier_topup_margin_seconds` for the alert rule.
    pub margin: Duration,
}

/// Equal when configured the same (the time zone by its name).
impl PartialEq for TopupWindow {
    fn eq(&self, other: &Self) -> bool {
        self.timezone_name == other.timezone_name
            && self.days == other.days
            && self.hours == other.hours
            && self.holidays == other.holidays
            && self.lead_time == other.lead_time
            && self.margin == other.margin
    }
}

/// Why a `topup_window` key is not usable. Texts are cut to 40 characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error("unknown time zone {name:?} (use an IANA name such as Europe/Berlin)")]
    TimeZone { name: String },
    #[error("unknown day {text:?} (use mon, tue, wed, thu, fri, sat, sun)")]
    Day { text: String },
    #[error("{day} is listed twice")]
    DuplicateDay { day: &'static str },
    #[error("needs at least one day (a window that never opens cannot take a top-up)")]
    NoDays,
    #[error("invalid hours {text:?} (use HH:MM-HH:MM, e.g. 09:00-17:00)")]
    Hours { text: String },
    #[error("end {end} is not after start {start} (a window cannot cross midnight)")]
    HoursOrder { start: ClockTime, end: ClockTime },
    #[error("invalid date {text:?} (use YYYY-MM-DD)")]
    Date { text: String },
}

fn cut(s: &str) -> String {
    s.chars().take(40).collect()
}

/// Looks up an IANA time zone name in the bundled database.
pub fn parse_timezone(name: &str) -> Result<TimeZone, WindowError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(WindowError::TimeZone { name: String::new() });
    }
    TimeZone::get(name).map_err(|_| WindowError::TimeZone { name: cut(name) })
}

/// `[mon, tue, …]` → the weekday set; empty lists and repeated days are errors.
pub fn parse_days<S: AsRef<str>>(names: &[S]) -> Result<[bool; 7], WindowError> {
    let mut days = [false; 7];
    for name in names {
        let text = name.as_ref().trim();
        let (i, day) = DAY_NAMES.iter().enumerate().find(|(_, d)| **d == text).ok_or_else(|| WindowError::Day { text: cut(text) })?;
        let slot = days.get_mut(i).ok_or_else(|| WindowError::Day { text: cut(text) })?;
        if *slot {
            return Err(WindowError::DuplicateDay { day });
        }
        *slot = true;
    }
    if days.iter().any(|d| *d) {
        Ok(days)
    } else {
        Err(WindowError::NoDays)
    }
}

/// `HH:MM` with two digits each; `24:00` only when `end` is true.
fn parse_clock(s: &str, end: bool) -> Option<ClockTime> {
    if s.len() != 5 || s.as_bytes().get(2) != Some(&b':') {
        return None;
    }
    let two = |part: Option<&str>| part.filter(|p| p.bytes().all(|c| c.is_ascii_digit())).and_then(|p| p.parse::<i8>().ok());
    let hour = two(s.get(0..2))?;
    let minute = two(s.get(3..5))?;
    let valid = minute <= 59 && (hour <= 23 || (end && hour == 24 && minute == 0));
    valid.then_some(ClockTime { hour, minute })
}

/// `"09:00-17:00"`: opening and closing time; the end must be after the start.
pub fn parse_hours(s: &str) -> Result<Hours, WindowError> {
    let text = s.trim();
    let bad = || WindowError::Hours { text: cut(text) };
    let (open, close) = text.split_once('-').ok_or_else(bad)?;
    let open = parse_clock(open.trim(), false).ok_or_else(bad)?;
    let close = parse_clock(close.trim(), true).ok_or_else(bad)?;
    if close <= open {
        return Err(WindowError::HoursOrder { start: open, end: close });
    }
    Ok(Hours { open, close })
}

/// A holiday, `YYYY-MM-DD` exactly (a real calendar date).
pub fn parse_date(s: &str) -> Result<Date, WindowError> {
    let text = s.trim();
    let bad = || WindowError::Date { text: cut(text) };
    let b = text.as_bytes();
    if b.len() != 10 || b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return Err(bad());
    }
    fn digits<T: std::str::FromStr>(text: &str, range: std::ops::Range<usize>) -> Option<T> {
        text.get(range).filter(|p| p.bytes().all(|c| c.is_ascii_digit())).and_then(|p| p.parse().ok())
    }
    let year: i16 = digits(text, 0..4).ok_or_else(bad)?;
    let month: i8 = digits(text, 5..7).ok_or_else(bad)?;
    let day: i8 = digits(text, 8..10).ok_or_else(bad)?;
    Date::new(year, month, day).map_err(|_| bad())
}

impl TopupWindow {
    /// When a top-up started at `now` (or, while the window is closed, at its
    /// next opening) has landed: `lead_time` of window time after `now`.
    /// With `lead_time` 0 that is `now` inside the window, else the next
    /// opening. `None` when the window does not hold `lead_time` within
    /// [`HORIZON_DAYS`] days, or past the end of jiff's calendar.
    pub fn ready_at(&self, now: Timestamp) -> Option<Timestamp> {
        let mut remaining = SignedDuration::try_from(self.lead_time).ok()?;
        let mut date = now.to_zoned(self.timezone.clone()).date();
        for _ in 0..HORIZON_DAYS {
            if let Some((open, close)) = self.window_on(date) {
                let start = open.max(now);
                if start < close {
                    let available = close.duration_since(start);
                    if remaining <= available {
                        return start.checked_add(remaining).ok();
                    }
                    remaining = remaining.checked_sub(available)?;
                }
            }
            date = date.tomorrow().ok()?;
        }
        None
    }

    /// The window of `date` as instants, when it opens that day.
    fn window_on(&self, date: Date) -> Option<(Timestamp, Timestamp)> {
        let weekday = usize::try_from(date.weekday().to_monday_zero_offset()).ok()?;
        if !self.days.get(weekday).copied().unwrap_or(false) || self.holidays.contains(&date) {
            return None;
        }
        let open = self.instant(date, self.hours.open)?;
        let close = self.instant(date, self.hours.close)?;
        // Never inverted by a DST change (both boundaries move forward alike), but cheap to be sure.
        (open < close).then_some((open, close))
    }

    /// `date` at `time` on the window's clock (24:00 is the next day's midnight).
    fn instant(&self, date: Date, time: ClockTime) -> Option<Timestamp> {
        let civil = if time.hour == 24 {
            date.tomorrow().ok()?.to_datetime(Time::midnight())
        } else {
            date.to_datetime(Time::new(time.hour, time.minute, 0, 0).ok()?)
        };
        self.timezone.to_ambiguous_timestamp(civil).compatible().ok()
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)] // test clocks, not upstream values
mod tests {
    use super::*;
    use jiff::Zoned;

    /// A window of `days` and `hours` in `tz`, with `lead` lead time.
    fn window(tz: &str, days: &[&str], hours: &str, holidays: &[&str], lead: &str) -> TopupWindow {
        TopupWindow {
            timezone_name: tz.into(),
            timezone: parse_timezone(tz).unwrap(),
            days: parse_days(days).unwrap(),
            hours: parse_hours(hours).unwrap(),
            holidays: holidays.iter().map(|d| parse_date(d).unwrap()).collect(),
            lead_time: humantime::parse_duration(lead).unwrap(),
            margin: DEFAULT_MARGIN,
        }
    }

    const WEEKDAYS: [&str; 5] = ["mon", "tue", "wed", "thu", "fri"];
    const EVERY_DAY: [&str; 7] = DAY_NAMES;

    fn berlin_office(lead: &str) -> TopupWindow {
        window("Europe/Berlin", &WEEKDAYS, "09:00-17:00", &[], lead)
    }

    /// An instant given as local time in a zone: `2026-12-04T18:00[Europe/Berlin]`.
    fn at(text: &str) -> Timestamp {
        text.parse::<Zoned>().unwrap().timestamp()
    }

    fn utc(text: &str) -> Timestamp {
        text.parse::<Timestamp>().unwrap()
    }

    #[test]
    fn the_worked_example() {
        // 2026-12-04 is a Friday, 2026-12-07 a Monday.
        let w = berlin_office("4h");
        assert_eq!(w.ready_at(at("2026-12-04T18:00[Europe/Berlin]")), Some(at("2026-12-07T13:00[Europe/Berlin]")));
        assert_eq!(w.ready_at(at("2026-12-08T09:30[Europe/Berlin]")), Some(at("2026-12-08T13:30[Europe/Berlin]")));
        // The issue's own: 4h started Friday 16:00 lands Monday 12:00.
        assert_eq!(w.ready_at(at("2026-12-04T16:00[Europe/Berlin]")), Some(at("2026-12-07T12:00[Europe/Berlin]")));
    }

    #[test]
    fn inside_before_opening_and_after_closing() {
        let w = berlin_office("4h");
        // Inside: lands the same day, exactly at closing when it just fits.
        assert_eq!(w.ready_at(at("2026-12-08T13:00[Europe/Berlin]")), Some(at("2026-12-08T17:00[Europe/Berlin]")));
        assert_eq!(w.ready_at(at("2026-12-08T13:00:01[Europe/Berlin]")), Some(at("2026-12-09T09:00:01[Europe/Berlin]")));
        // Before opening: counts from the opening.
        assert_eq!(w.ready_at(at("2026-12-08T07:15[Europe/Berlin]")), Some(at("2026-12-08T13:00[Europe/Berlin]")));
        // After closing (and at closing: the window is open until, not at, 17:00).
        assert_eq!(w.ready_at(at("2026-12-08T17:00[Europe/Berlin]")), Some(at("2026-12-09T13:00[Europe/Berlin]")));
        assert_eq!(w.ready_at(at("2026-12-08T23:59[Europe/Berlin]")), Some(at("2026-12-09T13:00[Europe/Berlin]")));
        // Saturday and Sunday count as closed.
        assert_eq!(w.ready_at(at("2026-12-05T10:00[Europe/Berlin]")), Some(at("2026-12-07T13:00[Europe/Berlin]")));
    }

    #[test]
    fn holidays_are_skipped_one_or_several() {
        // Christmas 2026: Thursday 24th to Saturday 26th; the next working day is Monday 28th.
        let w = window("Europe/Berlin", &WEEKDAYS, "09:00-17:00", &["2026-12-24", "2026-12-25"], "4h");
        assert_eq!(w.ready_at(at("2026-12-23T16:00[Europe/Berlin]")), Some(at("2026-12-28T12:00[Europe/Berlin]")));
        let one = window("Europe/Berlin", &WEEKDAYS, "09:00-17:00", &["2026-12-08"], "4h");
        assert_eq!(one.ready_at(at("2026-12-07T18:00[Europe/Berlin]")), Some(at("2026-12-09T13:00[Europe/Berlin]")));
        // Inside a holiday: the holiday's hours do not count.
        assert_eq!(one.ready_at(at("2026-12-08T10:00[Europe/Berlin]")), Some(at("2026-12-09T13:00[Europe/Berlin]")));
    }

    #[test]
    fn lead_time_spanning_several_days_and_zero() {
        let w = berlin_office("20h");
        // Monday 8 h, Tuesday 8 h, Wednesday 4 h.
        assert_eq!(w.ready_at(at("2026-12-07T09:00[Europe/Berlin]")), Some(at("2026-12-09T13:00[Europe/Berlin]")));
        // Thursday 15:00: 2 h + Friday 8 h + Monday 8 h + Tuesday 2 h.
        assert_eq!(w.ready_at(at("2026-12-03T15:00[Europe/Berlin]")), Some(at("2026-12-08T11:00[Europe/Berlin]")));
        let zero = berlin_office("0s");
        assert_eq!(zero.ready_at(at("2026-12-08T10:20[Europe/Berlin]")), Some(at("2026-12-08T10:20[Europe/Berlin]")));
        assert_eq!(zero.ready_at(at("2026-12-04T18:00[Europe/Berlin]")), Some(at("2026-12-07T09:00[Europe/Berlin]")));
        assert_eq!(zero.ready_at(at("2026-12-08T17:00[Europe/Berlin]")), Some(at("2026-12-09T09:00[Europe/Berlin]")));
    }

    #[test]
    fn other_zones_and_a_whole_day_window() {
        let ny = window("America/New_York", &WEEKDAYS, "09:00-17:00", &[], "4h");
        // Friday 18:00 in New York is Saturday 00:00 in Berlin: Monday 13:00 New York time.
        assert_eq!(ny.ready_at(at("2026-12-04T18:00[America/New_York]")), Some(at("2026-12-07T13:00[America/New_York]")));
        let always = window("UTC", &EVERY_DAY, "00:00-24:00", &[], "30h");
        assert_eq!(always.ready_at(utc("2026-12-04T18:00Z")), Some(utc("2026-12-06T00:00Z")));
    }

    #[test]
    fn berlin_spring_forward_skips_a_window_hour() {
        // 2026-03-29 (last Sunday of March): 02:00 CET becomes 03:00 CEST. The window 01:00-04:00 is
        // 01:00 CET (00:00Z) to 04:00 CEST (02:00Z): two real hours, not three.
        let w = window("Europe/Berlin", &EVERY_DAY, "01:00-04:00", &[], "3h");
        // Two hours on Sunday, the third from Monday 01:00 CEST (Sunday 23:00Z).
        assert_eq!(w.ready_at(at("2026-03-29T00:30[Europe/Berlin]")), Some(utc("2026-03-30T00:00Z")));
        let two = window("Europe/Berlin", &EVERY_DAY, "01:00-04:00", &[], "2h");
        assert_eq!(two.ready_at(at("2026-03-29T00:30[Europe/Berlin]")), Some(utc("2026-03-29T02:00Z")));
        // An opening inside the skipped hour moves forward by the gap: 02:30 is 03:30 CEST (01:30Z).
        let gap = window("Europe/Berlin", &EVERY_DAY, "02:30-05:00", &[], "1h");
        assert_eq!(gap.ready_at(at("2026-03-29T00:00[Europe/Berlin]")), Some(utc("2026-03-29T02:30Z")));
    }

    #[test]
    fn berlin_fall_back_doubles_a_window_hour() {
        // 2026-10-25 (last Sunday of October): 03:00 CEST becomes 02:00 CET. The window 01:00-04:00 is
        // 01:00 CEST (2026-10-24T23:00Z) to 04:00 CET (03:00Z): four real hours.
        let w = window("Europe/Berlin", &EVERY_DAY, "01:00-04:00", &[], "4h");
        assert_eq!(w.ready_at(at("2026-10-25T00:30[Europe/Berlin]")), Some(utc("2026-10-25T03:00Z")));
        let half = window("Europe/Berlin", &EVERY_DAY, "01:00-04:00", &[], "3h30m");
        assert_eq!(half.ready_at(at("2026-10-25T00:30[Europe/Berlin]")), Some(utc("2026-10-25T02:30Z")));
        // An opening in the repeated hour is its first occurrence: 02:30 CEST (00:30Z) to 04:00 CET (03:00Z).
        let fold = window("Europe/Berlin", &EVERY_DAY, "02:30-04:00", &[], "2h");
        assert_eq!(fold.ready_at(at("2026-10-25T00:00[Europe/Berlin]")), Some(utc("2026-10-25T02:30Z")));
    }

    #[test]
    fn new_york_changes_both_ways() {
        // 2026-03-08: 02:00 EST becomes 03:00 EDT; 00:00-04:00 is 05:00Z to 08:00Z, three real hours.
        let sundays = |lead| window("America/New_York", &["sun"], "00:00-04:00", &[], lead);
        assert_eq!(sundays("3h").ready_at(at("2026-03-07T23:00[America/New_York]")), Some(utc("2026-03-08T08:00Z")));
        // Half an hour more waits for the next Sunday, 2026-03-15 00:30 EDT (04:30Z).
        assert_eq!(sundays("3h30m").ready_at(at("2026-03-07T23:00[America/New_York]")), Some(utc("2026-03-15T04:30Z")));
        // 2026-11-01: 02:00 EDT becomes 01:00 EST; 00:00-04:00 is 04:00Z to 09:00Z, five real hours.
        assert_eq!(sundays("4h30m").ready_at(at("2026-10-31T23:00[America/New_York]")), Some(utc("2026-11-01T08:30Z")));
        // Started in the repeated hour (the second 01:15, EST, 06:15Z): 1 h later is 07:15Z.
        assert_eq!(sundays("1h").ready_at(utc("2026-11-01T06:15Z")), Some(utc("2026-11-01T07:15Z")));
    }

    #[test]
    fn a_window_that_never_opens_is_none_and_bounded() {
        // Every Monday of four years a holiday: nothing within the horizon.
        let mut mondays = Vec::new();
        let mut d = jiff::civil::date(2026, 12, 7);
        while d.year() < 2031 {
            mondays.push(d.to_string());
            d = d.checked_add(jiff::Span::new().days(7)).unwrap();
        }
        let refs: Vec<&str> = mondays.iter().map(String::as_str).collect();
        let w = window("Europe/Berlin", &["mon"], "09:00-17:00", &refs, "1h");
        let started = std::time::Instant::now();
        assert_eq!(w.ready_at(at("2026-12-04T18:00[Europe/Berlin]")), None);
        assert!(started.elapsed() < Duration::from_secs(1));
        // A lead time of more window time than the horizon holds.
        assert_eq!(berlin_office("100000h").ready_at(at("2026-12-04T18:00[Europe/Berlin]")), None);
        // The end of jiff's calendar: none, no panic.
        assert_eq!(berlin_office("4h").ready_at(Timestamp::MAX), None);
        assert!(berlin_office("4h").ready_at(Timestamp::MIN).is_some());
    }

    #[test]
    fn parsing_errors_are_exact() {
        assert_eq!(parse_hours("9-17").unwrap_err().to_string(), "invalid hours \"9-17\" (use HH:MM-HH:MM, e.g. 09:00-17:00)");
        assert_eq!(
            parse_hours("09:00-25:00").unwrap_err().to_string(),
            "invalid hours \"09:00-25:00\" (use HH:MM-HH:MM, e.g. 09:00-17:00)"
        );
        assert_eq!(
            parse_hours("24:00-24:00").unwrap_err().to_string(),
            "invalid hours \"24:00-24:00\" (use HH:MM-HH:MM, e.g. 09:00-17:00)"
        );
        assert_eq!(
            parse_hours("17:00-09:00").unwrap_err().to_string(),
            "end 09:00 is not after start 17:00 (a window cannot cross midnight)"
        );
        assert_eq!(
            parse_hours("09:00-09:00").unwrap_err().to_string(),
            "end 09:00 is not after start 09:00 (a window cannot cross midnight)"
        );
        assert_eq!(
            parse_hours(" 09:00 - 17:30 ").unwrap(),
            Hours { open: ClockTime { hour: 9, minute: 0 }, close: ClockTime { hour: 17, minute: 30 } }
        );
        assert!(parse_hours("00:00-24:00").is_ok());
        assert_eq!(parse_days(&["mon", "Tue"]).unwrap_err().to_string(), "unknown day \"Tue\" (use mon, tue, wed, thu, fri, sat, sun)");
        assert_eq!(parse_days(&["mon", "mon"]).unwrap_err().to_string(), "mon is listed twice");
        assert_eq!(parse_days::<&str>(&[]).unwrap_err(), WindowError::NoDays);
        assert_eq!(parse_date("2026-02-30").unwrap_err().to_string(), "invalid date \"2026-02-30\" (use YYYY-MM-DD)");
        assert_eq!(parse_date("2026-2-3").unwrap_err().to_string(), "invalid date \"2026-2-3\" (use YYYY-MM-DD)");
        assert_eq!(parse_date("+026-12-25").unwrap_err().to_string(), "invalid date \"+026-12-25\" (use YYYY-MM-DD)");
        assert_eq!(parse_date("2026-12-25").unwrap(), jiff::civil::date(2026, 12, 25));
        assert_eq!(
            parse_timezone("Europe/Berln").unwrap_err().to_string(),
            "unknown time zone \"Europe/Berln\" (use an IANA name such as Europe/Berlin)"
        );
        assert!(parse_timezone("America/New_York").is_ok());
    }
}
