//! The landing page `/`: one table per supplier, trouble first.
//!
//! Self-contained HTML (no external assets, no script: it works offline and
//! under the server's `default-src 'none'; style-src 'unsafe-inline'` CSP),
//! refreshes itself every 30 s with a meta refresh, and turns each table row
//! into a card on a phone. Shows names, balances, health and the (already
//! redacted) last error text only: no config value, so no secret, appears here.
//!
//! Order: failing suppliers, then stale ones, then those with a balance under
//! its `low` threshold (or a runway under its `runway_days`), then the ones not
//! polled yet, then the healthy ones; by name within each group. Within a
//! table, rows in trouble come first, then by account and currency.
//!
//! Stable hooks for tests and scrapers: `section.supplier` carries
//! `data-supplier`, `data-status` (`failing`/`stale`/`low`/`pending`/`ok`)
//! and `data-stale`; rows carry `data-account`/`data-currency` and the classes
//! `low`, `short-runway`, `stale`; cells are classed by column. The `24 h`
//! column is an inline SVG per row ([`crate::trend::sparkline`]) carrying
//! `data-points`.

use std::fmt::Write;
use std::time::{Duration, SystemTime};

use rust_decimal::{Decimal, RoundingStrategy};

use crate::config::Threshold;
use crate::snapshot::{Balance, BalanceKey, Store, SupplierSlot, SupplierState};

/// Seconds between automatic reloads of the page.
pub const REFRESH_SECONDS: u32 = 30;

/// Longest error text shown; the rest is cut (the full text is in the logs).
pub(crate) const MAX_ERROR_CHARS: usize = 240;

/// Health of a supplier's polling as the page shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Health {
    Failing,
    Stale,
    Pending,
    Ok,
}

impl Health {
    pub fn label(self) -> &'static str {
        match self {
            Health::Failing => "failing",
            Health::Stale => "stale",
            Health::Pending => "pending",
            Health::Ok => "ok",
        }
    }
}

/// Where a supplier sorts on the page, most urgent first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Attention {
    /// The last poll failed.
    Failing,
    /// Polls succeed but not often enough: the data is old.
    Stale,
    /// Polling is fine but a balance is under its threshold (low, short runway, negative).
    Low,
    /// Not polled yet.
    Pending,
    Ok,
}

impl Attention {
    pub fn of(health: Health, any_row_trouble: bool) -> Attention {
        match health {
            Health::Failing => Attention::Failing,
            Health::Stale => Attention::Stale,
            Health::Ok if any_row_trouble => Attention::Low,
            Health::Pending => Attention::Pending,
            Health::Ok => Attention::Ok,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Attention::Failing => "failing",
            Attention::Stale => "stale",
            Attention::Low => "low",
            Attention::Pending => "pending",
            Attention::Ok => "ok",
        }
    }

    /// Needs a person to look.
    pub fn is_trouble(self) -> bool {
        matches!(self, Attention::Failing | Attention::Stale | Attention::Low)
    }
}

/// Whether the last success is older than three poll intervals (the same rule
/// as the staleness alert); `true` when there never was one.
pub fn data_stale(poll_interval: Duration, state: &SupplierState, now: SystemTime) -> bool {
    match state.last_success {
        None => true,
        Some(t) => now.duration_since(t).unwrap_or_default() > poll_interval * 3,
    }
}

/// Failing when the last poll failed, stale when the last success is older
/// than three poll intervals.
pub fn health(slot: &SupplierSlot, state: &SupplierState, now: SystemTime) -> Health {
    health_of(slot.poll_interval, state, now)
}

fn health_of(poll_interval: Duration, state: &SupplierState, now: SystemTime) -> Health {
    if !state.polled_once {
        return Health::Pending;
    }
    match (state.up, data_stale(poll_interval, state, now)) {
        (false, _) => Health::Failing,
        (true, true) => Health::Stale,
        (true, false) => Health::Ok,
    }
}

/// What one balance row shows besides its amounts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RowView {
    /// Usable under the `low` threshold.
    pub low: bool,
    /// Runway under the `runway_days` threshold.
    pub short_runway: bool,
    /// Usable below zero.
    pub negative: bool,
    /// Days the usable balance lasts at the recent spend rate, when known.
    pub runway_days: Option<Decimal>,
    /// The spend per day behind `runway_days`.
    pub spend_per_day: Option<Decimal>,
    /// The window of that spend rate: `1d`, or `1h` until a day of history exists.
    pub spend_window: Option<&'static str>,
    pub low_threshold: Option<Decimal>,
    pub runway_threshold: Option<Decimal>,
    /// Days of spend a top-up should cover (`topup_target_days`, default 7).
    pub topup_target_days: Decimal,
    /// The suggested top-up and the spend per day behind it, when that spend is known.
    pub topup: Option<TopUp>,
}

/// The exporter's own suggested top-up of one balance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TopUp {
    /// `max(0, target days × spend per day − usable)`, exact.
    pub amount: Decimal,
    /// The runway's spend per day (`1d` window, `1h` until a day of history exists).
    pub per_day: Decimal,
}

/// `max(0, target_days × per_day − usable)`, exactly; `None` when `Decimal` cannot hold it.
pub fn suggested_topup(target_days: Decimal, per_day: Decimal, usable: Decimal) -> Option<Decimal> {
    Some(target_days.checked_mul(per_day)?.checked_sub(usable)?.max(Decimal::ZERO))
}

impl RowView {
    pub fn of(thresholds: &[Threshold], state: &SupplierState, key: &BalanceKey, b: &Balance) -> RowView {
        let t = Threshold::applying_to(thresholds, &key.0, &key.1);
        let runway = state.runway(key).filter(|(_, per_day, _)| *per_day > Decimal::ZERO);
        let spend_window = runway.map(|(w, _, _)| w);
        let spend_per_day = runway.map(|(_, per_day, _)| per_day);
        let runway_days = runway.and_then(|(_, _, days)| days);
        let low_threshold = t.and_then(|t| t.low);
        let runway_threshold = t.and_then(|t| t.runway_days);
        let topup_target_days = Threshold::topup_target_days(thresholds, &key.0, &key.1);
        // The runway's own spend per day, zero included (then only a negative usable needs a top-up).
        let topup = state
            .runway(key)
            .and_then(|(_, per_day, _)| suggested_topup(topup_target_days, per_day, b.row.usable).map(|amount| TopUp { amount, per_day }));
        RowView {
            low: low_threshold.is_some_and(|low| b.row.usable < low),
            short_runway: matches!((runway_days, runway_threshold), (Some(r), Some(min)) if r < min),
            negative: b.row.usable < Decimal::ZERO,
            runway_days,
            spend_per_day,
            spend_window,
            low_threshold,
            runway_threshold,
            topup_target_days,
            topup,
        }
    }

    pub fn trouble(&self) -> bool {
        self.low || self.short_runway || self.negative
    }
}

/// One supplier as the page shows it.
pub struct SupplierView<'a> {
    pub slot: &'a SupplierSlot,
    pub state: std::sync::Arc<SupplierState>,
    pub health: Health,
    pub attention: Attention,
    /// The balances shown are older than three poll intervals.
    pub stale: bool,
    /// Rows in display order.
    pub rows: Vec<(&'a BalanceKey, &'a Balance, RowView)>,
    /// With a top-up window: when a top-up started now lands (Unix seconds, text on the window's clock).
    pub topup_ready: Option<(i64, String)>,
}

/// Orders rows: trouble first, then account and currency.
pub fn sort_rows<T>(rows: &mut [(&BalanceKey, T, RowView)]) {
    rows.sort_by(|a, b| (!a.2.trouble(), a.0).cmp(&(!b.2.trouble(), b.0)));
}

/// Orders suppliers: most urgent first, then by name.
pub fn sort_suppliers<T>(items: &mut [(Attention, &str, T)]) {
    items.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
}

/// "4 min ago", "2 h ago", "just now".
pub fn ago(then: SystemTime, now: SystemTime) -> String {
    let secs = now.duration_since(then).unwrap_or(Duration::ZERO).as_secs();
    match secs {
        0..=9 => "just now".into(),
        10..=59 => format!("{secs} s ago"),
        60..=3599 => format!("{} min ago", secs / 60),
        3600..=172_799 => format!("{} h ago", secs / 3600),
        _ => format!("{} days ago", secs / 86_400),
    }
}

/// "6 h", "2.3 d", "45 d", "> 1 y".
pub fn runway_text(days: Decimal) -> String {
    if days < Decimal::ONE {
        let hours = (days * Decimal::from(24)).floor().normalize();
        format!("{hours} h")
    } else if days < Decimal::TEN {
        format!("{} d", days.round_dp_with_strategy(1, RoundingStrategy::MidpointAwayFromZero).normalize())
    } else if days < Decimal::from(365) {
        format!("{} d", days.floor())
    } else {
        "> 1 y".into()
    }
}

pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The supplier page's path (`/supplier/{name}`), the name percent-encoded
/// (every byte but ASCII letters, digits and `-._~`).
pub fn supplier_href(name: &str) -> String {
    let mut href = String::from("/supplier/");
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            href.push(char::from(b));
        } else {
            let _ = write!(href, "%{b:02X}");
        }
    }
    href
}

pub(crate) fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// "7 days", "1 day", "2.5 days".
pub(crate) fn days_text(days: Decimal) -> String {
    match days.normalize() {
        d if d == Decimal::ONE => "1 day".into(),
        d => format!("{d} days"),
    }
}

/// A suggested amount as shown: rounded up to the cent (it should cover the
/// target), always two decimals, grouped like the other amounts.
pub(crate) fn topup_money(amount: Decimal) -> String {
    let mut cents = amount.round_dp_with_strategy(2, RoundingStrategy::ToPositiveInfinity);
    cents.rescale(2);
    money(cents)
}

/// When a top-up started at `now` lands, on the window's own clock: "Mon 2026-12-07 13:00 Europe/Berlin"
/// (the minute `/metrics` computes it for).
fn topup_ready_text(window: &crate::topup_window::TopupWindow, now: SystemTime) -> Option<(i64, String)> {
    let minute = jiff::Timestamp::try_from(crate::metrics::ready_minute(now)).ok()?;
    let ready = window.ready_at(minute)?;
    let local = ready.to_zoned(window.timezone.clone());
    Some((ready.as_second(), format!("{} {}", local.strftime("%a %Y-%m-%d %H:%M"), window.timezone_name)))
}

/// Groups digits in thousands, keeping the exact decimal digits.
pub(crate) fn money(d: Decimal) -> String {
    let s = d.to_string();
    let (sign, s) = s.strip_prefix('-').map_or(("", s.as_str()), |r| ("-", r));
    let (int, frac) = s.split_once('.').map_or((s, None), |(i, f)| (i, Some(f)));
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    match frac {
        Some(f) => format!("{sign}{grouped}.{f}"),
        None => format!("{sign}{grouped}"),
    }
}

pub(crate) fn utc(t: SystemTime) -> String {
    // humantime formats 1970..=9999 only (and panics outside); a supplier's
    // timestamp is upstream data, so anything else is shown as plain seconds.
    const LAST_SECOND_OF_9999: u64 = 253_402_300_799;
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) if d.as_secs() <= LAST_SECOND_OF_9999 => humantime::format_rfc3339_seconds(t).to_string(),
        Ok(d) => format!("{} s after 1970-01-01", d.as_secs()),
        Err(e) => format!("{} s before 1970-01-01", e.duration().as_secs()),
    }
}

// The stylesheet, inlined into the page (the CSP allows inline styles, not
// files). Trimmed so that the page does not depend on the file's last newline.
pub(crate) const STYLE: &str = include_str!("landing.css").trim_ascii_end();

/// Renders the page for `now`.
pub fn render(store: &Store, telemetry_path: &str, now: SystemTime) -> String {
    let slots = store.slots();
    let states: Vec<_> = slots.iter().map(|slot| slot.state()).collect();
    // Suppliers sharing the global window share one computation.
    let mut ready_memo: std::collections::HashMap<usize, Option<(i64, String)>> = std::collections::HashMap::new();
    let mut views: Vec<SupplierView> = slots
        .iter()
        .zip(&states)
        .map(|(slot, state)| {
            let health = health(slot, state, now);
            let mut rows: Vec<_> = state.balances.iter().map(|(key, b)| (key, b, RowView::of(&slot.thresholds, state, key, b))).collect();
            sort_rows(&mut rows);
            let attention = Attention::of(health, rows.iter().any(|r| r.2.trouble()));
            let stale = state.polled_once && health != Health::Ok && data_stale(slot.poll_interval, state, now);
            let topup_ready = slot
                .topup_window
                .as_ref()
                .and_then(|w| ready_memo.entry(std::sync::Arc::as_ptr(w) as usize).or_insert_with(|| topup_ready_text(w, now)).clone());
            SupplierView { slot: slot.as_ref(), state: state.clone(), health, attention, stale, rows, topup_ready }
        })
        .collect();
    views.sort_by(|a, b| (a.attention, &a.slot.name).cmp(&(b.attention, &b.slot.name)));

    let count = |a: Attention| views.iter().filter(|v| v.attention == a).count();
    let trouble = views.iter().filter(|v| v.attention.is_trouble()).count();
    let title =
        if trouble > 0 { format!("({trouble}) balance_exporter: {trouble} need attention") } else { "balance_exporter: all ok".into() };

    let mut html = String::with_capacity(16 * 1024);
    let _ = write!(
        html,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\"><meta name=\"referrer\" content=\"no-referrer\"><title>{title}</title><style>{STYLE}</style></head><body>\
         <header><h1>Supplier balances</h1><ul class=\"summary\" id=\"summary\"><li class=\"total\">{} suppliers</li>",
        views.len(),
    );
    for a in [Attention::Failing, Attention::Stale, Attention::Low, Attention::Pending, Attention::Ok] {
        let n = count(a);
        if n > 0 {
            let text = match a {
                Attention::Low => "low balance",
                _ => a.label(),
            };
            let _ = write!(html, "<li class=\"{}\">{n} {text}</li>", a.label());
        }
    }
    let _ = write!(
        html,
        "</ul><p class=\"meta\"><span id=\"trouble\" data-count=\"{trouble}\">{trouble} need attention</span> · as of <time datetime=\"{at}\">{at}</time> · refreshes every {REFRESH_SECONDS} s · <a href=\"{}\">metrics</a> · <a href=\"/api/v1/balances\" title=\"JSON for order systems, documented in docs/api.md\">balances API</a> · balance_exporter {}</p></header><main>",
        esc(telemetry_path),
        esc(crate::metrics::VERSION),
        at = utc(now),
    );
    for v in &views {
        render_supplier(&mut html, v, now);
    }
    if views.is_empty() {
        html.push_str("<p class=\"none\">No suppliers configured.</p>");
    }
    html.push_str(
        "</main><footer><p>Failing: the last poll failed (the balances shown are from the last success). \
         Stale: no successful poll for three poll intervals. Low: usable under the supplier's <code>low</code> threshold, \
         or runway under its <code>runway_days</code>. Runway is usable ÷ the spend rate of the last day (of the last hour until a day of history exists), counting new holds as spend. \
         Top-up: what would cover the balance's <code>topup_target_days</code> (default 7) at that spend rate, less usable, rounded up to the cent; \
         the recording rule <code>supplier:supplier_balance_topup_suggested:amount</code> computes it from Prometheus samples and can differ slightly.</p></footer></body></html>",
    );
    html
}

/// "last success 4 min ago · polled every 1m · 12 polls" (the supplier page shows it too).
pub(crate) fn poll_meta(slot: &SupplierSlot, state: &SupplierState, now: SystemTime) -> String {
    let last = match state.last_success {
        Some(t) => format!("<time datetime=\"{at}\" title=\"{at}\">{}</time>", ago(t, now), at = utc(t)),
        None => "never".into(),
    };
    format!(
        "last success {last} · polled every {} · {} poll{}",
        humantime::format_duration(slot.poll_interval),
        state.polls_total,
        if state.polls_total == 1 { "" } else { "s" },
    )
}

fn render_supplier(html: &mut String, v: &SupplierView, now: SystemTime) {
    let (slot, state) = (v.slot, &v.state);
    let cls = v.attention.label();
    let failing_reason = match (v.health, &state.last_error) {
        (Health::Failing, Some(err)) => Some(err),
        _ => None,
    };
    let _ = write!(
        html,
        "<section class=\"supplier {cls}{stale}\" id=\"supplier-{name}\" data-supplier=\"{name}\" data-status=\"{cls}\" data-stale=\"{v_stale}\">\
         <h2><a class=\"name\" href=\"{href}\">{name}</a> <span class=\"kind\">{kind}</span> <span class=\"badge {cls}\">{cls}</span>",
        stale = if v.stale && v.attention != Attention::Stale { " stale" } else { "" },
        v_stale = v.stale,
        name = esc(&slot.name),
        href = esc(&supplier_href(&slot.name)),
        kind = esc(slot.kind),
    );
    if let Some(err) = failing_reason {
        let _ = write!(html, " <span class=\"badge reason\">{}</span>", err.reason.as_str());
    }
    if v.stale && v.attention != Attention::Stale {
        html.push_str(" <span class=\"badge stale\">stale</span>");
    }
    let _ = write!(html, "</h2><p class=\"meta\">{}", poll_meta(slot, state, now));
    if let Some((at, text)) = &v.topup_ready {
        let _ = write!(html, " · <span class=\"topup-ready\" data-ready=\"{at}\">a top-up started now lands {}</span>", esc(text));
    }
    html.push_str("</p>");
    if let Some(err) = failing_reason {
        let _ = write!(
            html,
            "<p class=\"err\">last error <b class=\"reason\">{}</b>: <span class=\"message\">{}</span> (<time datetime=\"{at}\" title=\"{at}\">{}</time>)</p>",
            err.reason.as_str(),
            esc(&truncate(&err.message, MAX_ERROR_CHARS)),
            ago(err.at, now),
            at = utc(err.at),
        );
    }
    html.push_str(
        "<div class=\"scroll\"><table><thead><tr><th class=\"account\">account</th><th class=\"currency\">currency</th><th class=\"total\">total</th>\
         <th class=\"frozen\">frozen</th><th class=\"usable\">usable</th><th class=\"trend\">24 h</th><th class=\"updated\">updated</th><th class=\"status\">status</th>\
         <th class=\"runway\">runway</th><th class=\"topup\">top-up</th></tr></thead><tbody>",
    );
    let no_trend = crate::trend::Trend::default();
    for (key, b, row) in &v.rows {
        let mut classes = vec!["balance"];
        if row.low {
            classes.push("low");
        }
        if row.negative {
            classes.push("negative");
        }
        if row.short_runway {
            classes.push("short-runway");
        }
        if v.stale {
            classes.push("stale");
        }
        let (account, currency) = (esc(&key.0), esc(&key.1));
        let updated = utc(b.updated_at());
        let _ = write!(
            html,
            "<tr class=\"{}\" data-account=\"{account}\" data-currency=\"{currency}\"><td class=\"account\" data-label=\"account\">{account}</td>\
             <td class=\"currency\" data-label=\"currency\">{currency}</td><td class=\"total\" data-label=\"total\">{}</td>\
             <td class=\"frozen\" data-label=\"frozen\">{}</td><td class=\"usable{}\" data-label=\"usable\"{}>{}</td>\
             <td class=\"trend\" data-label=\"24 h\">{}</td><td class=\"updated\" data-label=\"updated\" title=\"{updated}\"><time datetime=\"{updated}\">{}</time></td><td class=\"status\" data-label=\"status\">",
            classes.join(" "),
            money(b.row.balance),
            money(b.row.frozen),
            if row.negative { " neg" } else { "" },
            row.low_threshold.map_or(String::new(), |l| format!(" title=\"low threshold {}\"", money(l))),
            money(b.row.usable),
            crate::trend::sparkline(state.trends.get(*key).unwrap_or(&no_trend), &key.1, row.low_threshold, crate::trend::Size::ROW),
            ago(b.updated_at(), now),
        );
        let mut tags: Vec<String> = Vec::new();
        match v.health {
            Health::Failing => {
                tags.push("<span class=\"tag failing\">failing</span>".into());
                if let Some(err) = failing_reason {
                    tags.push(format!("<span class=\"tag reason\">{}</span>", err.reason.as_str()));
                }
            }
            Health::Stale => {}
            Health::Pending => tags.push("<span class=\"tag pending\">pending</span>".into()),
            Health::Ok => {}
        }
        if v.stale {
            tags.push("<span class=\"tag stale\">stale</span>".into());
        }
        if row.negative {
            tags.push("<span class=\"tag negative\">negative</span>".into());
        } else if row.low {
            tags.push(format!(
                "<span class=\"tag low\" title=\"usable under {}\">low</span>",
                row.low_threshold.map(money).unwrap_or_default()
            ));
        }
        if row.short_runway {
            let min = row.runway_threshold.map(|d| d.normalize().to_string()).unwrap_or_default();
            tags.push(format!("<span class=\"tag short-runway\">runway &lt; {min} d</span>"));
        }
        if tags.is_empty() {
            tags.push("<span class=\"tag ok\">ok</span>".into());
        }
        html.push_str(&tags.join(" "));
        match (row.runway_days, row.spend_per_day) {
            (Some(days), Some(per_day)) => {
                let over = if row.spend_window == Some("1d") { "the last day" } else { "the last hour (less than a day of history)" };
                let _ = write!(
                    html,
                    "</td><td class=\"runway\" data-label=\"runway\" title=\"at {} {currency}/day, the spend rate of {over}\">{}</td>",
                    money(per_day.round_dp(2)),
                    runway_text(days),
                );
            }
            _ => html.push_str("</td><td class=\"runway none\" data-label=\"runway\" title=\"not known yet: needs an hour of history and some spend\">–</td>"),
        }
        let target = days_text(row.topup_target_days);
        let target_attr = row.topup_target_days.normalize();
        match row.topup {
            Some(TopUp { amount, per_day }) => {
                let text = if amount > Decimal::ZERO {
                    format!("top up about {} {currency} to cover {target}", topup_money(amount))
                } else {
                    format!("none needed to cover {target}")
                };
                let _ = write!(
                    html,
                    "<td class=\"topup\" data-label=\"top-up\" data-amount=\"{}\" data-spend-per-day=\"{}\" data-target-days=\"{target_attr}\" \
                     title=\"{target} at {} {currency}/day, less usable\">{text}</td></tr>",
                    amount.normalize(),
                    per_day.normalize(),
                    money(per_day.round_dp(2)),
                );
            }
            None => {
                let _ = write!(
                    html,
                    "<td class=\"topup none\" data-label=\"top-up\" data-target-days=\"{target_attr}\" \
                     title=\"not known yet: needs an hour of spend history to cover {target}\">–</td></tr>"
                );
            }
        }
    }
    if v.rows.is_empty() {
        let text = if state.polled_once { "no balances yet" } else { "waiting for the first poll" };
        let _ = write!(html, "<tr class=\"empty\"><td colspan=\"10\" class=\"none\">{text}</td></tr>");
    }
    html.push_str("</tbody></table></div></section>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::poll::{BalanceRow, PollError, PollOutput, Reason};

    fn dec(s: &str) -> Decimal {
        Decimal::from_str_exact(s).unwrap()
    }

    fn row(account: &str, currency: &str, balance: &str, frozen: &str) -> BalanceRow {
        let (b, f) = (dec(balance), dec(frozen));
        BalanceRow { account: account.into(), currency: currency.into(), balance: b, frozen: f, usable: b - f, updated_at: None }
    }

    fn ok(rows: Vec<BalanceRow>) -> Result<PollOutput, PollError> {
        Ok(PollOutput { balances: rows, ..Default::default() })
    }

    const CONFIG: &str = "
suppliers:
  - {name: alpha, kind: foxreload, poll_interval: 10s, auth: {bearer_token: tok_SECRET_alpha}}
  - {name: bravo, kind: foxreload, poll_interval: 10s, auth: {bearer_token: tok_SECRET_bravo}}
  - name: charlie
    kind: foxreload
    poll_interval: 10s
    thresholds:
      - {currency: USD, low: 100, runway_days: 3}
      - {currency: USD, account: vip, low: 1000}
  - {name: delta, kind: foxreload, poll_interval: 10s}
  - {name: echo, kind: foxreload, poll_interval: 10s}
  - {name: aardvark, kind: foxreload, poll_interval: 10s}
";

    /// alpha ok, bravo failing (auth), charlie low, delta pending, echo stale, aardvark failing for long.
    fn store(now: SystemTime) -> Store {
        let config = crate::config::load_str(CONFIG, &|_: &str| None::<String>).expect("test config loads");
        let store = Store::default();
        let slots = store.set_suppliers(&config.suppliers);
        let d = Duration::from_millis(20);
        let recent = now - Duration::from_secs(5);
        let by = |n: &str| slots.iter().find(|s| s.name == n).unwrap().clone();
        let base = SupplierState::default();
        store.publish(&by("alpha"), base.after_poll(ok(vec![row("main", "USD", "500.00", "0")]), d, recent));
        let bravo = base.after_poll(ok(vec![row("main", "USD", "284.50", "0")]), d, now - Duration::from_secs(15));
        store.publish(&by("bravo"), bravo.after_poll(Err(PollError::new(Reason::Auth, "http 401 <b>invalid</b> key")), d, recent));
        let charlie = vec![
            row("main", "USD", "150.00", "0"),
            row("aaa", "USD", "5000.00", "0"),
            row("vip", "USD", "900.00", "0"),
            row("main", "EUR", "3.00", "0"),
            row("neg", "USD", "10.00", "20.00"),
        ];
        store.publish(&by("charlie"), base.after_poll(ok(charlie), d, recent));
        store.publish(&by("echo"), base.after_poll(ok(vec![row("main", "USD", "700", "0")]), d, now - Duration::from_secs(600)));
        let aardvark = base.after_poll(ok(vec![row("main", "USD", "1", "0")]), d, now - Duration::from_secs(3600));
        store.publish(&by("aardvark"), aardvark.after_poll(Err(PollError::new(Reason::ServerError, "http 500")), d, recent));
        store
    }

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_763_000_000)
    }

    /// `(data-supplier, class)` of every section, in page order.
    fn sections(html: &str) -> Vec<(String, String)> {
        html.split("<section class=\"")
            .skip(1)
            .map(|s| {
                let class = s.split('"').next().unwrap().to_string();
                let name = s.split("data-supplier=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
                (name, class)
            })
            .collect()
    }

    /// `(data-account, data-currency, class)` of the rows of one supplier's section.
    fn rows(html: &str, supplier: &str) -> Vec<(String, String, String)> {
        let section = html.split(&format!("data-supplier=\"{supplier}\"")).nth(1).unwrap().split("</section>").next().unwrap();
        section
            .split("<tr class=\"")
            .skip(1)
            .filter(|s| s.contains("data-account"))
            .map(|s| {
                let attr = |k: &str| s.split(&format!("{k}=\"")).nth(1).unwrap().split('"').next().unwrap().to_string();
                (attr("data-account"), attr("data-currency"), s.split('"').next().unwrap().to_string())
            })
            .collect()
    }

    #[test]
    fn formats_money_ages_and_runway() {
        assert_eq!(money(Decimal::new(475000000, 2)), "4,750,000.00");
        assert_eq!(money(Decimal::new(-32, 1)), "-3.2");
        assert_eq!(money(Decimal::new(4676, 0)), "4,676");
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(10_000);
        assert_eq!(ago(t, t + Duration::from_secs(245)), "4 min ago");
        assert_eq!(ago(t, t + Duration::from_secs(3)), "just now");
        assert_eq!(ago(t, t + Duration::from_secs(7300)), "2 h ago");
        assert_eq!(runway_text(dec("0.25")), "6 h");
        assert_eq!(runway_text(dec("2.25")), "2.3 d");
        assert_eq!(runway_text(dec("3")), "3 d");
        assert_eq!(runway_text(dec("45.9")), "45 d");
        assert_eq!(runway_text(dec("800")), "> 1 y");
        assert_eq!(truncate("abcdef", 3), "abc…");
        assert_eq!(truncate("abc", 3), "abc");
    }

    #[test]
    fn escapes_html() {
        assert_eq!(esc("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
    }

    #[test]
    fn attention_order_and_trouble() {
        use Attention::*;
        assert!(Failing < Stale && Stale < Low && Low < Pending && Pending < Ok);
        assert_eq!(Attention::of(Health::Ok, true), Low);
        assert_eq!(Attention::of(Health::Ok, false), Ok);
        assert_eq!(Attention::of(Health::Failing, true), Failing);
        assert_eq!(Attention::of(Health::Pending, false), Pending);
        assert!(Low.is_trouble() && !Pending.is_trouble() && !Ok.is_trouble());
        let mut items = vec![(Ok, "a", ()), (Low, "z", ()), (Failing, "y", ()), (Pending, "b", ()), (Failing, "b", ()), (Stale, "c", ())];
        sort_suppliers(&mut items);
        let order: Vec<_> = items.iter().map(|i| (i.0, i.1)).collect();
        assert_eq!(order, vec![(Failing, "b"), (Failing, "y"), (Stale, "c"), (Low, "z"), (Pending, "b"), (Ok, "a")]);
    }

    #[test]
    fn health_and_staleness() {
        let t = now();
        let i = Duration::from_secs(10);
        assert_eq!(health_of(i, &SupplierState::default(), t), Health::Pending);
        let s = SupplierState::default().after_poll(ok(vec![]), Duration::ZERO, t - Duration::from_secs(30));
        assert_eq!(health_of(i, &s, t), Health::Ok, "exactly three intervals is not stale yet");
        assert_eq!(health_of(i, &s, t + Duration::from_secs(1)), Health::Stale);
        let f = s.after_poll(Err(PollError::new(Reason::Timeout, "timed out")), Duration::ZERO, t);
        assert_eq!(health_of(i, &f, t), Health::Failing);
        assert!(!data_stale(i, &f, t));
        assert!(data_stale(i, &f, t + Duration::from_secs(5)));
    }

    #[test]
    fn account_threshold_wins_over_currency_one() {
        let config = crate::config::load_str(CONFIG, &|_: &str| None::<String>).unwrap();
        let th = &config.suppliers.iter().find(|s| s.name == "charlie").unwrap().thresholds;
        assert_eq!(Threshold::applying_to(th, "vip", "USD").unwrap().low, Some(dec("1000")));
        assert_eq!(Threshold::applying_to(th, "main", "USD").unwrap().low, Some(dec("100")));
        assert!(Threshold::applying_to(th, "main", "EUR").is_none());
    }

    #[test]
    fn page_puts_trouble_first() {
        let html = render(&store(now()), "/metrics", now());
        let order: Vec<_> = sections(&html).into_iter().map(|(n, _)| n).collect();
        assert_eq!(order, ["aardvark", "bravo", "echo", "charlie", "delta", "alpha"]);
        let classes: std::collections::BTreeMap<_, _> = sections(&html).into_iter().collect();
        assert_eq!(classes["aardvark"], "supplier failing stale");
        assert_eq!(classes["bravo"], "supplier failing");
        assert_eq!(classes["echo"], "supplier stale");
        assert_eq!(classes["charlie"], "supplier low");
        assert_eq!(classes["delta"], "supplier pending");
        assert_eq!(classes["alpha"], "supplier ok");
        assert!(html.contains("data-supplier=\"bravo\" data-status=\"failing\" data-stale=\"false\""));
        assert!(html.contains("data-supplier=\"aardvark\" data-status=\"failing\" data-stale=\"true\""));
        assert!(html.contains("<title>(4) balance_exporter: 4 need attention</title>"), "{html}");
        assert!(html.contains("<li class=\"failing\">2 failing</li>"));
        assert!(html.contains("<li class=\"low\">1 low balance</li>"));
        assert!(html.contains(&format!("<meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">")));
    }

    #[test]
    fn rows_in_trouble_first_and_highlighted() {
        let html = render(&store(now()), "/metrics", now());
        let r = rows(&html, "charlie");
        let got: Vec<_> = r.iter().map(|(a, c, cls)| (a.as_str(), c.as_str(), cls.as_str())).collect();
        assert_eq!(
            got,
            [
                ("neg", "USD", "balance low negative"),
                ("vip", "USD", "balance low"),
                ("aaa", "USD", "balance"),
                ("main", "EUR", "balance"),
                ("main", "USD", "balance"),
            ]
        );
        // A stale failing supplier's rows say so; a fresh failing one's do not.
        assert_eq!(rows(&html, "aardvark")[0].2, "balance stale");
        assert_eq!(rows(&html, "bravo")[0].2, "balance");
        let bravo = html.split("data-supplier=\"bravo\"").nth(1).unwrap().split("</section>").next().unwrap();
        assert!(bravo.contains("<span class=\"tag failing\">failing</span> <span class=\"tag reason\">auth</span>"), "{bravo}");
        assert!(bravo.contains("<b class=\"reason\">auth</b>"));
        assert!(bravo.contains("http 401 &lt;b&gt;invalid&lt;/b&gt; key"), "error text is escaped");
        assert!(bravo.contains("<td class=\"total\" data-label=\"total\">284.50</td>"));
        assert!(html.contains("waiting for the first poll"));
    }

    /// A store of the test config's suppliers, none polled, and charlie's slot (thresholds: USD low 100, vip 1000).
    fn charlie_alone() -> (Store, std::sync::Arc<SupplierSlot>) {
        let config = crate::config::load_str(CONFIG, &|_: &str| None::<String>).unwrap();
        let store = Store::default();
        let charlie = store.set_suppliers(&config.suppliers).into_iter().find(|s| s.name == "charlie").unwrap();
        (store, charlie)
    }

    #[test]
    fn runway_shown_when_known_and_flagged_under_threshold() {
        let (store, charlie) = charlie_alone();
        let charlie = &charlie;
        let t0 = now() - Duration::from_secs(6 * 3600);
        let s = SupplierState::default().after_poll(ok(vec![row("main", "USD", "1000", "700")]), Duration::ZERO, t0);
        // 100 spent in 6 h = 400/day; 200 usable lasts half a day, under the 3-day threshold.
        let s = s.after_poll(ok(vec![row("main", "USD", "900", "700")]), Duration::ZERO, now());
        store.publish(charlie, s.clone());
        let html = render(&store, "/metrics", now());
        assert_eq!(rows(&html, "charlie")[0].2, "balance short-runway");
        let title = "title=\"at 400 USD/day, the spend rate of the last hour (less than a day of history)\">12 h</td>";
        assert!(html.contains(title), "{html}");
        // The suggested top-up: 7 days × 400 − 200 usable.
        let topup = "<td class=\"topup\" data-label=\"top-up\" data-amount=\"2600\" data-spend-per-day=\"400\" data-target-days=\"7\" \
                     title=\"7 days at 400 USD/day, less usable\">top up about 2,600.00 USD to cover 7 days</td></tr>";
        assert!(html.contains(topup), "{html}");
        // New holds are taken from usable too: 100 more held in the next 6 h doubles the rate.
        let s = s.after_poll(ok(vec![row("main", "USD", "900", "800")]), Duration::ZERO, now() + Duration::from_secs(6 * 3600));
        store.publish(charlie, s);
        let html = render(&store, "/metrics", now() + Duration::from_secs(6 * 3600));
        assert!(html.contains("at 400 USD/day, the spend rate of the last hour"), "1h window: only the new hold, 100 in 6 h: {html}");
        assert!(html.contains("runway &lt; 3 d"));
        assert_eq!(sections(&html)[0], ("charlie".to_string(), "supplier low".to_string()));
    }

    #[test]
    fn suggested_topup_is_exact_and_shown_rounded_up() {
        assert_eq!(suggested_topup(dec("7"), dec("678.57142857"), dec("0")), Some(dec("4749.99999999")));
        assert_eq!(topup_money(dec("4749.99999999")), "4,750.00");
        assert_eq!(topup_money(dec("12.3")), "12.30");
        assert_eq!(topup_money(dec("0.001")), "0.01");
        assert_eq!(topup_money(dec("4750")), "4,750.00");
        // Enough already: nothing; a negative usable is part of the top-up.
        assert_eq!(suggested_topup(dec("7"), dec("10"), dec("500")), Some(Decimal::ZERO));
        assert_eq!(suggested_topup(dec("7"), dec("0"), dec("-20.5")), Some(dec("20.5")));
        assert_eq!(suggested_topup(dec("2.5"), dec("100"), dec("50")), Some(dec("200")));
        assert_eq!(suggested_topup(Decimal::MAX, dec("2"), dec("0")), None, "too large for Decimal: not shown");
        assert_eq!(
            (days_text(dec("7.0")), days_text(dec("1")), days_text(dec("2.50"))),
            ("7 days".into(), "1 day".into(), "2.5 days".into())
        );
    }

    #[test]
    fn topup_target_and_window_on_the_page() {
        let config = crate::config::load_str(
            "suppliers:
  - name: fox
    kind: foxreload
    thresholds: [{currency: USD, topup_target_days: 2.5}]
    topup_window: {timezone: Europe/Berlin, days: [mon, tue, wed, thu, fri], hours: '09:00-17:00', lead_time: 4h}
  - {name: plain, kind: foxreload}
",
            &|_: &str| None::<String>,
        )
        .unwrap();
        let store = Store::default();
        let slots = store.set_suppliers(&config.suppliers);
        // Friday 2026-12-04 18:00 in Berlin.
        let friday = SystemTime::from("2026-12-04T18:00[Europe/Berlin]".parse::<jiff::Zoned>().unwrap().timestamp());
        let t0 = friday - Duration::from_secs(6 * 3600);
        for slot in &slots {
            let s = SupplierState::default().after_poll(ok(vec![row("main", "USD", "1000", "0")]), Duration::ZERO, t0);
            // 150 spent in 6 h: 600 a day.
            store.publish(slot, s.after_poll(ok(vec![row("main", "USD", "850", "0")]), Duration::ZERO, friday));
        }
        let html = render(&store, "/metrics", friday);
        let section =
            |name: &str| html.split(&format!("data-supplier=\"{name}\"")).nth(1).unwrap().split("</section>").next().unwrap().to_string();
        let fox = section("fox");
        assert!(fox.contains("<span class=\"topup-ready\" data-ready=\"1796644800\">a top-up started now lands Mon 2026-12-07 13:00 Europe/Berlin</span>"), "{fox}");
        // 2.5 days × 600 − 850 = 650.
        assert!(fox.contains("data-amount=\"650\" data-spend-per-day=\"600\" data-target-days=\"2.5\""), "{fox}");
        assert!(fox.contains(">top up about 650.00 USD to cover 2.5 days</td>"), "{fox}");
        // No window: no ready time; no threshold: the default 7 days (7 × 600 − 850).
        let plain = section("plain");
        assert!(!plain.contains("topup-ready"));
        assert!(plain.contains(">top up about 3,350.00 USD to cover 7 days</td>"), "{plain}");
        // Before any spend is known: a dash, and what it waits for.
        let fresh = Store::default();
        let slots = fresh.set_suppliers(&config.suppliers);
        fresh.publish(&slots[1], SupplierState::default().after_poll(ok(vec![row("main", "USD", "850", "0")]), Duration::ZERO, friday));
        let html = render(&fresh, "/metrics", friday);
        assert!(html.contains("title=\"not known yet: needs an hour of spend history to cover 7 days\">–</td></tr>"), "{html}");
    }

    #[test]
    fn each_row_draws_its_trend_with_the_low_threshold() {
        let (store, charlie) = charlie_alone();
        let charlie = &charlie;
        let t0 = now() - Duration::from_secs(3 * 3600);
        let mut s = SupplierState::default();
        for (i, usable) in ["150", "90", "400"].iter().enumerate() {
            let rows = vec![row("main", "USD", usable, "0"), row("main", "EUR", "3", "0")];
            s = s.after_poll(ok(rows), Duration::ZERO, t0 + Duration::from_secs(3600) * i as u32);
        }
        store.publish(charlie, s.clone());
        let html = render(&store, "/metrics", now());
        assert!(html.contains("<th class=\"usable\">usable</th><th class=\"trend\">24 h</th>"));
        let usd = html.split("data-account=\"main\" data-currency=\"USD\"").nth(1).unwrap().split("</tr>").next().unwrap();
        let cell = usd.split("<td class=\"trend\" data-label=\"24 h\">").nth(1).unwrap().split("</td>").next().unwrap();
        // The threshold (100) inside the range 90..400: the line is drawn, the label says so.
        assert!(cell.starts_with("<svg class=\"trend\"") && cell.contains("data-points=\"3\""), "{cell}");
        assert!(cell.contains("aria-label=\"usable USD, 2 h: 3 points, min 90, max 400, low threshold 100\""), "{cell}");
        assert!(cell.contains("<line class=\"trend-low\""), "{cell}");
        // EUR has no threshold: a picture without a line.
        let eur = html.split("data-currency=\"EUR\"").nth(1).unwrap().split("</tr>").next().unwrap();
        assert!(eur.contains("data-points=\"3\"") && !eur.contains("<line"), "{eur}");
        // One poll only: a short text, not a picture.
        let html = render(&self::store(now()), "/metrics", now());
        let alpha = html.split("data-supplier=\"alpha\"").nth(1).unwrap().split("</section>").next().unwrap();
        assert!(alpha.contains("<td class=\"trend\" data-label=\"24 h\"><span class=\"trend none\""), "{alpha}");
        assert!(!html.contains(" style="), "no style attribute anywhere");
    }

    #[test]
    fn page_has_no_secret_and_no_external_asset() {
        let html = render(&store(now()), "/metrics", now());
        assert!(!html.contains("SECRET"), "{html}");
        assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("<script") && !html.contains("<link"));
        assert!(!html.contains("url("), "no CSS url() at all");
    }

    #[test]
    fn stylesheet_is_inlined_whole() {
        let html = render(&store(now()), "/metrics", now());
        assert!(html.contains(&format!("<style>{STYLE}</style>")));
        assert!(STYLE.starts_with("*{box-sizing:border-box}") && STYLE.ends_with("}}"), "the whole file, without its last newline");
        assert!(!STYLE.contains("</"), "nothing in the CSS can close the <style> element");
    }

    #[test]
    fn instants_outside_years_1970_to_9999_are_shown_not_panicked_on() {
        let far = SystemTime::UNIX_EPOCH + Duration::from_secs(253_402_300_800);
        assert_eq!(utc(far), "253402300800 s after 1970-01-01");
        assert_eq!(utc(SystemTime::UNIX_EPOCH - Duration::from_secs(5)), "5 s before 1970-01-01");
        assert_eq!(utc(SystemTime::UNIX_EPOCH + Duration::from_secs(253_402_300_799)), "9999-12-31T23:59:59Z");
    }
}
