//! The supplier page `/supplier/{name}` (linked from the landing page's
//! supplier names): the current balances with their thresholds, runway and
//! suggested top-up, the last polls (newest first) and the redacted body
//! snippets of the last failures.
//!
//! Like the landing page: self-contained HTML, no script, the same strict
//! CSP and stylesheet; everything a supplier sent (names, error texts,
//! snippets) is HTML-escaped, and snippets were redacted when recorded.
//! Stable hooks: `table#polls` rows carry `data-outcome` and `data-status`;
//! `table#balances` rows `data-account`/`data-currency`.

use std::fmt::Write;
use std::time::SystemTime;

use rust_decimal::Decimal;

use crate::history::{SupplierHistory, POLLS_KEPT};
use crate::landing::{
    ago, days_text, esc, health, money, poll_meta, runway_text, sort_rows, topup_money, truncate, utc, Health, RowView, MAX_ERROR_CHARS,
    REFRESH_SECONDS, STYLE,
};
use crate::snapshot::{Balance, BalanceKey, Store, SupplierState};

/// Rules of this page only, beside the landing page's stylesheet.
const PAGE_STYLE: &str = "nav{font-size:.85rem;margin-bottom:.4rem}nav a{color:inherit}\
    table#polls td.outcome,table#polls th.outcome,table#polls td.text,table#polls th.text,table#polls td.started,table#polls th.started{text-align:left}\
    table#polls td.text{white-space:normal;overflow-wrap:anywhere;min-width:10rem}tr.fail td.outcome{color:#a31515;font-weight:700}\
    pre.snippet{white-space:pre-wrap;overflow-wrap:anywhere;font-size:.8rem;background:#f4f5f7;border-radius:4px;padding:.4rem .5rem;margin:.3rem 0 .7rem}\
    h3{font-size:.92rem;margin:.6rem 0 0}\
    @media (prefers-color-scheme:dark){pre.snippet{background:#14171b}}";

/// The page of `name`, or `None` when no such supplier is configured here.
pub fn render(store: &Store, history: &SupplierHistory, name: &str, now: SystemTime) -> Option<String> {
    let slots = store.slots();
    let slot = slots.iter().find(|s| s.name == name)?;
    let state = slot.state();
    let health = health(slot, &state, now);
    let mut html = String::with_capacity(16 * 1024);
    let name = esc(&slot.name);
    let _ = write!(
        html,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\"><meta name=\"referrer\" content=\"no-referrer\"><title>{name} · balance_exporter</title>\
         <style>{STYLE}</style><style>{PAGE_STYLE}</style></head><body><header><nav><a href=\"/\">← all suppliers</a></nav>\
         <h1 class=\"supplier-name\" data-supplier=\"{name}\">{name} <span class=\"kind\">{kind}</span> <span class=\"badge {cls}\">{cls}</span></h1>",
        kind = esc(slot.kind),
        cls = health.label(),
    );
    let _ =
        write!(html, "<p class=\"meta\">{} · as of <time datetime=\"{at}\">{at}</time></p>", poll_meta(slot, &state, now), at = utc(now));
    if let (Health::Failing, Some(err)) = (health, &state.last_error) {
        let _ = write!(
            html,
            "<p class=\"err\">last error <b class=\"reason\">{}</b>: <span class=\"message\">{}</span></p>",
            err.reason.as_str(),
            esc(&truncate(&err.message, MAX_ERROR_CHARS)),
        );
    }
    html.push_str("</header><main>");
    let mut rows: Vec<Row> = state.balances.iter().map(|(key, b)| (key, b, RowView::of(&slot.thresholds, &state, key, b))).collect();
    sort_rows(&mut rows);
    balances(&mut html, &rows, &state, health, now);
    trend(&mut html, &rows, &state);
    polls(&mut html, history);
    snippets(&mut html, history);
    html.push_str(
        "</main><footer><p>Polls: the last 50 attempts of this exporter process (kept across restarts with <code>--storage.path</code>), \
         newest first; requests counts every HTTP request of the poll, retries and pages included; status is the last HTTP status it got. \
         Snippets: the first 300 bytes of the error answer of each of the last five failed polls, with every configured secret removed.</p></footer></body></html>",
    );
    Some(html)
}

/// The page for a name no supplier has: plain, the name escaped.
pub fn not_found(name: &str) -> String {
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>No such supplier · balance_exporter</title><style>{STYLE}</style></head>\
         <body><main><h1>No supplier named “{}”</h1><p><a href=\"/\">All suppliers</a></p></main></body></html>",
        esc(&truncate(name, 200)),
    )
}

/// One balance of the page, with its view as the landing page computes it;
/// the page's sections share one sorted list.
type Row<'a> = (&'a BalanceKey, &'a Balance, RowView);

fn balances(html: &mut String, rows: &[Row], state: &SupplierState, health: Health, now: SystemTime) {
    let _ = write!(
        html,
        "<section class=\"balances {}\"><h2>Balances</h2><div class=\"scroll\"><table id=\"balances\"><thead><tr><th class=\"account\">account</th>\
         <th class=\"currency\">currency</th><th class=\"total\">total</th><th class=\"frozen\">frozen</th><th class=\"usable\">usable</th>\
         <th class=\"updated\">updated</th><th class=\"low\">low threshold</th><th class=\"runway-threshold\">runway threshold</th>\
         <th class=\"runway\">runway</th><th class=\"topup\">suggested top-up</th></tr></thead><tbody>",
        health.label(),
    );
    for (key, b, row) in rows {
        let (account, currency) = (esc(&key.0), esc(&key.1));
        let updated = utc(b.updated_at());
        let runway = match (row.runway_days, row.spend_per_day) {
            (Some(days), Some(per_day)) => format!("{} (at {} {currency}/day)", runway_text(days), money(per_day.round_dp(2))),
            _ => "–".into(),
        };
        let topup = match row.topup {
            Some(t) if t.amount > Decimal::ZERO => {
                format!("top up about {} {currency} to cover {}", topup_money(t.amount), days_text(row.topup_target_days))
            }
            Some(_) => format!("none needed to cover {}", days_text(row.topup_target_days)),
            None => "–".into(),
        };
        let _ = write!(
            html,
            "<tr class=\"balance{}\" data-account=\"{account}\" data-currency=\"{currency}\"><td class=\"account\" data-label=\"account\">{account}</td>\
             <td class=\"currency\" data-label=\"currency\">{currency}</td><td class=\"total\" data-label=\"total\">{}</td>\
             <td class=\"frozen\" data-label=\"frozen\">{}</td><td class=\"usable\" data-label=\"usable\">{}</td>\
             <td class=\"updated\" data-label=\"updated\"><time datetime=\"{updated}\" title=\"{updated}\">{}</time></td>\
             <td class=\"low\" data-label=\"low threshold\">{}</td><td class=\"runway-threshold\" data-label=\"runway threshold\">{}</td>\
             <td class=\"runway\" data-label=\"runway\">{runway}</td><td class=\"topup\" data-label=\"suggested top-up\">{topup}</td></tr>",
            if row.trouble() { " low" } else { "" },
            money(b.row.balance),
            money(b.row.frozen),
            money(b.row.usable),
            ago(b.updated_at(), now),
            row.low_threshold.map_or("–".into(), money),
            row.runway_threshold.map_or("–".into(), days_text),
        );
    }
    if rows.is_empty() {
        let text = if state.polled_once { "no balances yet" } else { "waiting for the first poll" };
        let _ = write!(html, "<tr class=\"empty\"><td colspan=\"10\" class=\"none\">{text}</td></tr>");
    }
    html.push_str("</tbody></table></div></section>");
}

/// Each balance's usable amount over the last 24 hours (the landing page's
/// picture, drawn larger), with its low threshold: after the balances,
/// before the polls.
fn trend(html: &mut String, rows: &[Row], state: &SupplierState) {
    html.push_str("<section class=\"trends\"><h2>Usable balance, last 24 hours</h2>");
    if rows.is_empty() {
        html.push_str("<p class=\"none\">no balances yet</p>");
    }
    let no_trend = crate::trend::Trend::default();
    for (key, _, row) in rows {
        let _ = write!(
            html,
            "<figure class=\"trend\" data-account=\"{account}\" data-currency=\"{currency}\"><figcaption>{account} · {currency}</figcaption>{}</figure>",
            crate::trend::sparkline(state.trends.get(*key).unwrap_or(&no_trend), &key.1, row.low_threshold, crate::trend::Size::PAGE),
            account = esc(&key.0),
            currency = esc(&key.1),
        );
    }
    html.push_str("</section>");
}

fn polls(html: &mut String, history: &SupplierHistory) {
    let _ = write!(
        html,
        "<section class=\"polls\"><h2>Last {} poll{} <span class=\"kind\">(up to {POLLS_KEPT}, newest first)</span></h2><div class=\"scroll\"><table id=\"polls\">\
         <thead><tr><th class=\"started\">started</th><th class=\"duration\">duration</th><th class=\"requests\">requests</th>\
         <th class=\"http-status\">last HTTP status</th><th class=\"outcome\">outcome</th><th class=\"text\">message</th></tr></thead><tbody>",
        history.len(),
        if history.len() == 1 { "" } else { "s" },
    );
    for r in history.newest_first() {
        let at = utc(r.started());
        let status = r.status().map_or("–".to_string(), |s| s.to_string());
        let _ = write!(
            html,
            "<tr class=\"{}\" data-outcome=\"{}\" data-status=\"{status}\"><td class=\"started\" data-label=\"started\"><time datetime=\"{at}\">{at}</time></td>\
             <td class=\"duration\" data-label=\"duration\">{} ms</td><td class=\"requests\" data-label=\"requests\">{}</td>\
             <td class=\"http-status\" data-label=\"last HTTP status\">{status}</td><td class=\"outcome\" data-label=\"outcome\">{}</td>\
             <td class=\"text\" data-label=\"message\">{}</td></tr>",
            if r.reason().is_some() { "fail" } else { "ok" },
            r.outcome_label(),
            r.duration().as_millis(),
            r.requests(),
            r.outcome_label(),
            esc(r.text()),
        );
    }
    if history.is_empty() {
        html.push_str("<tr class=\"empty\"><td colspan=\"6\" class=\"none\">no polls yet</td></tr>");
    }
    html.push_str("</tbody></table></div></section>");
}

fn snippets(html: &mut String, history: &SupplierHistory) {
    html.push_str(
        "<section class=\"snippets\"><h2>Failure snippets <span class=\"kind\">(the last five failures, secrets removed)</span></h2>",
    );
    let mut any = false;
    for (r, snippet) in history.snippets() {
        any = true;
        let at = utc(r.started());
        let status = r.status().map_or(String::new(), |s| format!(" · HTTP {s}"));
        let _ = write!(
            html,
            "<h3 data-outcome=\"{}\"><time datetime=\"{at}\">{at}</time> · {}{status}</h3><pre class=\"snippet\">{}</pre>",
            r.outcome_label(),
            r.outcome_label(),
            esc(snippet),
        );
    }
    if !any {
        html.push_str("<p class=\"none\">no failure with an answer body among the recent polls</p>");
    }
    html.push_str("</section>");
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::history::PollReport;
    use crate::poll::{BalanceRow, PollError, PollOutput, Reason};

    #[test]
    fn shows_balances_polls_and_snippets_escaped() {
        let config = crate::config::load_str(
            "suppliers:\n  - {name: fox.co, kind: foxreload, thresholds: [{currency: USD, low: 100, runway_days: 3}]}\n",
            &|_: &str| None::<String>,
        )
        .unwrap();
        let store = Store::default();
        let slot = store.set_suppliers(&config.suppliers).remove(0);
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let b = Decimal::from_str_exact("50.25").unwrap();
        let row =
            BalanceRow { account: "main".into(), currency: "USD".into(), balance: b, frozen: Decimal::ZERO, usable: b, updated_at: None };
        let state = SupplierState::default().after_poll(Ok(PollOutput { balances: vec![row], ..Default::default() }), Duration::ZERO, now);
        let state = state.after_poll(Err(PollError::new(Reason::Auth, "http 401: <b>bad</b>")), Duration::ZERO, now);
        store.publish(&slot, state);
        let mut history = SupplierHistory::default();
        history.push(&PollReport { started: Some(now), requests: 1, last_status: Some(200), ..Default::default() });
        history.push(&PollReport {
            started: Some(now + Duration::from_secs(60)),
            requests: 1,
            last_status: Some(401),
            failure: Some((Reason::Auth, "http 401: <b>bad</b>".into())),
            snippet: Some("{\"error\":\"<script>\"}".into()),
            ..Default::default()
        });
        let html = render(&store, &history, "fox.co", now).unwrap();
        assert!(
            html.contains("<h1 class=\"supplier-name\" data-supplier=\"fox.co\">fox.co <span class=\"kind\">foxreload</span>"),
            "{html}"
        );
        assert!(html.contains(
            "<p class=\"err\">last error <b class=\"reason\">auth</b>: <span class=\"message\">http 401: &lt;b&gt;bad&lt;/b&gt;</span></p>"
        ));
        assert!(!html.contains("<script") && !html.contains("<b>bad"), "{html}");
        let polls: Vec<&str> = html.split("<tr class=\"").skip(1).filter(|r| r.contains("data-outcome")).collect();
        assert!(polls[0].starts_with("fail\" data-outcome=\"auth\" data-status=\"401\""), "newest first: {}", polls[0]);
        assert!(polls[1].starts_with("ok\" data-outcome=\"ok\" data-status=\"200\""));
        assert!(html.contains("<pre class=\"snippet\">{&quot;error&quot;:&quot;&lt;script&gt;&quot;}</pre>"));
        assert!(html.contains("<td class=\"usable\" data-label=\"usable\">50.25</td>"));
        assert!(html.contains("<td class=\"low\" data-label=\"low threshold\">100</td>"));
        assert!(html.contains("<td class=\"runway-threshold\" data-label=\"runway threshold\">3 days</td>"));
        assert!(html.contains("<section class=\"trends\">"), "{html}");
        assert!(render(&store, &history, "fox", now).is_none());
        assert!(not_found("<x>").contains("No supplier named “&lt;x&gt;”"));
        // Links percent-encode every byte but unreserved ones.
        assert_eq!(crate::landing::supplier_href("fox & co/<1>é"), "/supplier/fox%20%26%20co%2F%3C1%3E%C3%A9");
        assert_eq!(crate::landing::supplier_href("a-b_c.d~9"), "/supplier/a-b_c.d~9");
    }
}
