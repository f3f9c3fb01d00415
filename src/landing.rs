//! The landing page `/`: one table per supplier, trouble first.
//!
//! Self-contained HTML (no external assets, works offline), refreshes itself,
//! readable on a phone. Shows balances and health only: no config values, so
//! no secret can appear here.

use std::fmt::Write;
use std::time::{Duration, SystemTime};

use rust_decimal::Decimal;

use crate::snapshot::{Store, SupplierSlot, SupplierState};

/// Health of a supplier as the page shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Health {
    Failing,
    Stale,
    Pending,
    Ok,
}

impl Health {
    fn label(self) -> &'static str {
        match self {
            Health::Failing => "failing",
            Health::Stale => "stale",
            Health::Pending => "pending",
            Health::Ok => "ok",
        }
    }
}

/// Failing when the last poll failed, stale when the last success is older
/// than three poll intervals (the same rule as the staleness alert).
pub fn health(slot: &SupplierSlot, state: &SupplierState, now: SystemTime) -> Health {
    if !state.polled_once {
        return Health::Pending;
    }
    let stale = match state.last_success {
        None => true,
        Some(t) => now.duration_since(t).unwrap_or_default() > slot.poll_interval * 3,
    };
    match (state.up, stale) {
        (false, _) => Health::Failing,
        (true, true) => Health::Stale,
        (true, false) => Health::Ok,
    }
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

fn esc(s: &str) -> String {
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

/// Groups digits in thousands, keeping the exact decimal digits.
fn money(d: Decimal) -> String {
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

const STYLE: &str = "body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;padding:1rem;background:#f6f7f9;color:#1d232b}
h1{font-size:1.4rem;margin:0 0 .25rem}h2{font-size:1.1rem;margin:0;display:flex;gap:.5rem;align-items:center;flex-wrap:wrap}
.meta{color:#5a6572;font-size:.85rem;margin-bottom:1rem}
section{background:#fff;border:1px solid #d9dee4;border-left:6px solid #2e9d58;border-radius:6px;padding:.75rem;margin-bottom:1rem}
section.failing{border-left-color:#c62828;background:#fff5f5}section.stale{border-left-color:#ef8f00;background:#fffaf0}section.pending{border-left-color:#8795a1}
.badge{font-size:.75rem;padding:.1rem .45rem;border-radius:3px;background:#2e9d58;color:#fff;text-transform:uppercase;letter-spacing:.03em}
.failing .badge{background:#c62828}.stale .badge{background:#b26a00}.pending .badge{background:#8795a1}
.kind{color:#5a6572;font-size:.8rem;font-weight:normal}.err{color:#a31515;font-size:.85rem;margin:.35rem 0 0;overflow-wrap:anywhere}
.scroll{overflow-x:auto}table{border-collapse:collapse;width:100%;margin-top:.5rem;font-size:.9rem}
th,td{padding:.3rem .5rem;border-bottom:1px solid #e6e9ed;text-align:right;white-space:nowrap}th:first-child,td:first-child,th:nth-child(2),td:nth-child(2){text-align:left}
th{color:#5a6572;font-weight:600;font-size:.8rem}tr.low td{background:#fdecea;font-weight:600}td.neg{color:#c62828}
@media (max-width:600px){body{padding:.5rem}th,td{padding:.25rem .3rem;font-size:.8rem}}
@media (prefers-color-scheme:dark){body{background:#14171b;color:#dfe3e8}section{background:#1d2127;border-color:#333a42}section.failing{background:#2a1a1a}section.stale{background:#2a2416}th{color:#9aa5b1}td,th{border-color:#2c3238}tr.low td{background:#3a1f1f}}";

/// Renders the page for `now`.
pub fn render(store: &Store, telemetry_path: &str, now: SystemTime) -> String {
    let slots = store.slots();
    let mut entries: Vec<_> = slots.iter().map(|slot| {
        let state = slot.state();
        (health(slot, &state, now), slot.clone(), state)
    }).collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.name.cmp(&b.1.name)));
    let trouble = entries.iter().filter(|e| matches!(e.0, Health::Failing | Health::Stale)).count();

    let mut html = String::with_capacity(8192);
    let _ = write!(
        html,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"30\"><title>balance_exporter</title><style>{STYLE}</style></head><body>\
         <h1>balance_exporter</h1><div class=\"meta\">{} suppliers, <span id=\"trouble\">{trouble}</span> need attention · refreshes every 30 s · \
         <a href=\"{}\">metrics</a> · version {}</div>",
        entries.len(),
        esc(telemetry_path),
        esc(crate::metrics::VERSION),
    );
    for (h, slot, state) in &entries {
        let _ = write!(
            html,
            "<section class=\"supplier {cls}\" data-supplier=\"{name}\" data-status=\"{cls}\"><h2>{name} <span class=\"kind\">{kind}</span> <span class=\"badge\">{cls}</span></h2>",
            cls = h.label(),
            name = esc(&slot.name),
            kind = esc(slot.kind),
        );
        let last = state.last_success.map_or("never".to_string(), |t| ago(t, now));
        let _ = write!(html, "<div class=\"meta\">last success {last} · polled every {}</div>", humantime::format_duration(slot.poll_interval));
        if let (false, Some(err)) = (state.up, &state.last_error) {
            let _ = write!(html, "<p class=\"err\">last error: <b class=\"reason\">{}</b> {} ({})</p>", err.reason.as_str(), esc(&err.message), ago(err.at, now));
        }
        html.push_str("<div class=\"scroll\"><table><thead><tr><th>account</th><th>currency</th><th>total</th><th>frozen</th><th>usable</th><th>updated</th><th>runway</th></tr></thead><tbody>");
        let mut rows: Vec<_> = state.balances.iter().collect();
        // Lowest usable relative to its threshold first.
        rows.sort_by_key(|(key, b)| (!below_low(slot, key, b.row.usable), b.row.usable));
        for (key, b) in rows {
            let runway = state
                .spend_windows
                .get(key)
                .and_then(|w| w.runway_days(now, state.spent_total.get(key).copied().unwrap_or_default(), b.row.usable))
                .map_or("–".to_string(), |d| format!("{} d", d.round_dp(1)));
            let low = below_low(slot, key, b.row.usable);
            let _ = write!(
                html,
                "<tr class=\"balance{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td{}>{}</td><td title=\"{}\">{}</td><td>{}</td></tr>",
                if low { " low" } else { "" },
                esc(&key.0),
                esc(&key.1),
                money(b.row.balance),
                money(b.row.frozen),
                if b.row.usable < Decimal::ZERO { " class=\"neg\"" } else { "" },
                money(b.row.usable),
                humantime::format_rfc3339_seconds(b.updated_at()),
                ago(b.updated_at(), now),
                runway,
            );
        }
        if state.balances.is_empty() {
            html.push_str("<tr><td colspan=\"7\">no balances yet</td></tr>");
        }
        html.push_str("</tbody></table></div></section>");
    }
    html.push_str("</body></html>");
    html
}

fn below_low(slot: &SupplierSlot, key: &(String, String), usable: Decimal) -> bool {
    slot.thresholds
        .iter()
        .filter(|t| t.currency == key.1 && t.account.as_ref().is_none_or(|a| *a == key.0))
        .max_by_key(|t| t.account.is_some())
        .and_then(|t| t.low)
        .is_some_and(|low| usable < low)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_money_and_ages() {
        assert_eq!(money(Decimal::new(475000000, 2)), "4,750,000.00");
        assert_eq!(money(Decimal::new(-32, 1)), "-3.2");
        assert_eq!(money(Decimal::new(4676, 0)), "4,676");
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(10_000);
        assert_eq!(ago(t, t + Duration::from_secs(245)), "4 min ago");
        assert_eq!(ago(t, t + Duration::from_secs(3)), "just now");
        assert_eq!(ago(t, t + Duration::from_secs(7300)), "2 h ago");
    }

    #[test]
    fn escapes_html() {
        assert_eq!(esc("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
    }
}
