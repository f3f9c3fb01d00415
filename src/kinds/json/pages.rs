//! Pagination of the `json` kind (`pagination:`): which page to ask next,
//! and when to stop.
//!
//! Four modes: a next link in the body (`next_url`), a cursor in the body
//! sent back as a query parameter (`cursor`), and page or offset counting
//! (`page`, `offset`). Counting stops at a page that selects no rows, at
//! `has_more: false`, or when `total_pages` / `total_items` are reached; the
//! body modes stop when the link or cursor is absent (or `has_more` says so).
//! A [`Pager`] only decides; the kind sends every page through the supplier's
//! [`Upstream`](crate::upstream::Upstream) (rate limiter, retries, token).
//!
//! Hostile bodies cannot make it loop or leak: `max_pages` caps a walk (and
//! reaching it with pages left is an error, never a silent partial balance),
//! a link or cursor seen before is an error, and a link to another origin
//! than `base_url`'s is an error, so credentials never leave the origin.
#![deny(clippy::arithmetic_side_effects)]

use std::collections::HashSet;

use reqwest::Url;
use serde::Deserialize;
use serde_json::Value;

use super::document::{type_name, Document, Query};
use crate::settings::ConfigIssue;
use crate::upstream::PollError;

/// `max_pages` when not given.
pub const DEFAULT_MAX_PAGES: u32 = 10;
/// The largest `max_pages` accepted.
pub const MAX_PAGES: u32 = 1000;

/// `pagination:` keys: exactly one mode, stop conditions, the page cap.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pagination {
    /// JSONPath to the next page's link (absolute, or relative to the page's URL).
    #[serde(default)]
    pub next_url: Option<Query>,
    /// `{path, param}`: the cursor in the body, and the query parameter sending it back.
    #[serde(default)]
    pub cursor: Option<CursorMode>,
    /// Page counting: `{param, start (1), size_param, size}`.
    #[serde(default)]
    pub page: Option<Counter>,
    /// Offset counting: `{param, start (0), size_param, size}`; `size` required.
    #[serde(default)]
    pub offset: Option<Counter>,
    /// JSONPath to a boolean: `false` means this is the last page.
    #[serde(default)]
    pub has_more: Option<Query>,
    /// JSONPath to the number of pages (`page` mode).
    #[serde(default)]
    pub total_pages: Option<Query>,
    /// JSONPath to the number of items (`page` with `size`, or `offset`).
    #[serde(default)]
    pub total_items: Option<Query>,
    /// Pages asked at most per poll (default 10, at most 1000).
    #[serde(default = "default_max_pages")]
    pub max_pages: u32,
}

fn default_max_pages() -> u32 {
    DEFAULT_MAX_PAGES
}

/// `cursor: {path, param}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CursorMode {
    pub path: Query,
    pub param: String,
}

/// `page:` or `offset:` counting.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Counter {
    /// The query parameter carrying the page number or offset.
    pub param: String,
    /// The first page number (default 1) or offset (default 0).
    #[serde(default)]
    pub start: Option<u64>,
    /// The query parameter carrying the page size, if sent.
    #[serde(default)]
    pub size_param: Option<String>,
    /// Items per page.
    #[serde(default)]
    pub size: Option<u64>,
}

/// The mode of a validated `pagination:`.
enum Mode<'a> {
    NextUrl(&'a Query),
    Cursor(&'a CursorMode),
    Page(&'a Counter),
    Offset(&'a Counter),
}

impl Pagination {
    fn mode(&self) -> Option<Mode<'_>> {
        match (&self.next_url, &self.cursor, &self.page, &self.offset) {
            (Some(q), None, None, None) => Some(Mode::NextUrl(q)),
            (None, Some(c), None, None) => Some(Mode::Cursor(c)),
            (None, None, Some(p), None) => Some(Mode::Page(p)),
            (None, None, None, Some(o)) => Some(Mode::Offset(o)),
            _ => None,
        }
    }

    /// Query parameter names this pagination sends, under their keys.
    pub fn params(&self) -> Vec<(String, &str)> {
        let mut out = vec![];
        if let Some(c) = &self.cursor {
            out.push(("cursor.param".to_string(), c.param.as_str()));
        }
        for (key, counter) in [("page", &self.page), ("offset", &self.offset)] {
            let Some(c) = counter else { continue };
            out.push((format!("{key}.param"), c.param.as_str()));
            if let Some(size_param) = &c.size_param {
                out.push((format!("{key}.size_param"), size_param.as_str()));
            }
        }
        out
    }

    /// Checks serde cannot; `path` is the key of `pagination` itself.
    pub fn validate(&self, path: &str, issues: &mut Vec<ConfigIssue>) {
        let mut issue = |key: &str, message: String| {
            let path = if key.is_empty() { path.to_string() } else { format!("{path}.{key}") };
            issues.push(ConfigIssue { path, message });
        };
        let mode = self.mode();
        if mode.is_none() {
            issue("", "give exactly one of next_url, cursor, page, offset".into());
        }
        if !(1..=MAX_PAGES).contains(&self.max_pages) {
            issue("max_pages", format!("must be between 1 and {MAX_PAGES}"));
        }
        let queries = [
            ("next_url", self.next_url.as_ref()),
            ("cursor.path", self.cursor.as_ref().map(|c| &c.path)),
            ("has_more", self.has_more.as_ref()),
            ("total_pages", self.total_pages.as_ref()),
            ("total_items", self.total_items.as_ref()),
        ];
        for (key, query) in queries {
            if let Some(e) = query.and_then(Query::error) {
                issue(key, e.to_string());
            }
        }
        for (key, name) in self.params() {
            if name.is_empty() {
                issue(&key, "is empty".into());
            }
        }
        for (key, counter) in [("page", &self.page), ("offset", &self.offset)] {
            let Some(c) = counter else { continue };
            match c.size {
                Some(0) => issue(&format!("{key}.size"), "must be at least 1".into()),
                None if c.size_param.is_some() => issue(&format!("{key}.size"), "missing; size_param sends it".into()),
                None if key == "offset" => issue("offset.size", "missing; the offset advances by the page size".into()),
                _ => {}
            }
        }
        if self.total_pages.is_some() && !matches!(mode, Some(Mode::Page(_)) | None) {
            issue("total_pages", "applies to page counting only".into());
        }
        if self.total_items.is_some() {
            match mode {
                Some(Mode::Page(Counter { size: None, .. })) => issue("total_items", "needs page.size".into()),
                Some(Mode::NextUrl(_) | Mode::Cursor(_)) => issue("total_items", "applies to page or offset counting only".into()),
                _ => {}
            }
        }
    }
}

/// What to ask after a page.
#[derive(Debug, PartialEq)]
pub enum NextPage {
    /// The configured request with these query parameters added.
    Params(Vec<(String, String)>),
    /// This URL (on `base_url`'s origin).
    Url(Url),
}

/// One walk through the pages of one poll.
pub struct Pager<'a> {
    cfg: &'a Pagination,
    /// Pages answered so far.
    fetched: u64,
    /// Links and cursors met, so a repeat stops the walk.
    seen: HashSet<String>,
}

/// Why a walk stops with an error; every message starts with `pagination:`.
fn failed(message: String) -> PollError {
    PollError::decode(format!("pagination: {message}"))
}

impl<'a> Pager<'a> {
    pub fn new(cfg: &'a Pagination) -> Pager<'a> {
        Pager { cfg, fetched: 0, seen: HashSet::new() }
    }

    /// Query parameters of the first page.
    pub fn first(&self) -> Vec<(String, String)> {
        match self.cfg.mode() {
            Some(Mode::Page(c)) => counter_params(c, c.start.unwrap_or(1)),
            Some(Mode::Offset(c)) => counter_params(c, c.start.unwrap_or(0)),
            _ => vec![],
        }
    }

    /// After a page at `url` that selected `rows` rows: the next page, or
    /// `None` when this was the last. `origin` is `base_url`.
    pub fn next(&mut self, doc: &Document, rows: usize, url: &Url, origin: &Url) -> Result<Option<NextPage>, PollError> {
        self.fetched = self.fetched.saturating_add(1);
        if let Some(q) = &self.cfg.has_more {
            match q.one(&doc.value).map_err(|n| failed(format!("{}: expected one value, found {n}", q.as_str())))? {
                Some(Value::Bool(true)) => {}
                Some(Value::Bool(false)) => return Ok(None),
                Some(other) => return Err(failed(format!("{}: expected true or false, found {}", q.as_str(), type_name(other)))),
                None => return Err(failed(format!("{}: expected true or false, found nothing", q.as_str()))),
            }
        }
        let next = match self.cfg.mode() {
            None => None,
            Some(Mode::NextUrl(q)) => self.next_url(q, doc, url, origin)?,
            Some(Mode::Cursor(c)) => self.cursor(c, doc)?,
            Some(Mode::Page(c)) => self.count(c, doc, rows, c.start.unwrap_or(1), 1)?,
            Some(Mode::Offset(c)) => self.count(c, doc, rows, c.start.unwrap_or(0), c.size.unwrap_or(1))?,
        };
        if next.is_some() && self.fetched >= u64::from(self.cfg.max_pages) {
            return Err(failed(format!(
                "more pages after max_pages ({}); not exporting a partial balance (raise pagination.max_pages)",
                self.cfg.max_pages
            )));
        }
        Ok(next)
    }

    fn next_url(&mut self, q: &Query, doc: &Document, url: &Url, origin: &Url) -> Result<Option<NextPage>, PollError> {
        self.seen.insert(url.as_str().to_string());
        let link = match q.one(&doc.value).map_err(|n| failed(format!("{}: expected one value, found {n}", q.as_str())))? {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => return Ok(None),
            Some(Value::String(s)) => s.trim(),
            Some(other) => return Err(failed(format!("{}: expected a link, found {}", q.as_str(), type_name(other)))),
        };
        let next = url.join(link).map_err(|e| failed(format!("{}: not a link: {e}", q.as_str())))?;
        if next.origin() != origin.origin() {
            // Only the origin is shown: the rest of a link may carry a secret.
            let to = next.origin().ascii_serialization();
            return Err(failed(format!("{}: the next page is on another origin ({to}); credentials stay on base_url's", q.as_str())));
        }
        if !self.seen.insert(next.as_str().to_string()) {
            return Err(failed(format!("{}: the next link repeats an earlier page; stopping rather than looping", q.as_str())));
        }
        Ok(Some(NextPage::Url(next)))
    }

    fn cursor(&mut self, c: &CursorMode, doc: &Document) -> Result<Option<NextPage>, PollError> {
        let found = c.path.locate(&doc.value, &[]);
        let cursor = match found.as_slice() {
            [] | [(Value::Null, _)] => return Ok(None),
            [(Value::String(s), _)] if s.is_empty() => return Ok(None),
            [(Value::String(s), _)] => s.clone(),
            [(Value::Number(n), loc)] => doc.number_text(loc).map_or_else(|| n.to_string(), str::to_string),
            [(other, _)] => return Err(failed(format!("{}: expected a cursor, found {}", c.path.as_str(), type_name(other)))),
            many => return Err(failed(format!("{}: expected one value, found {}", c.path.as_str(), many.len()))),
        };
        if !self.seen.insert(cursor.clone()) {
            return Err(failed(format!("{}: the cursor repeats an earlier one; stopping rather than looping", c.path.as_str())));
        }
        Ok(Some(NextPage::Params(vec![(c.param.clone(), cursor)])))
    }

    /// Page (`step` 1) or offset (`step` = size) counting.
    fn count(&self, c: &Counter, doc: &Document, rows: usize, start: u64, step: u64) -> Result<Option<NextPage>, PollError> {
        if rows == 0 {
            return Ok(None);
        }
        if let Some(q) = &self.cfg.total_pages {
            if self.fetched >= whole_number(q, doc)? {
                return Ok(None);
            }
        }
        if let (Some(q), Some(size)) = (&self.cfg.total_items, c.size) {
            if self.fetched.saturating_mul(size) >= whole_number(q, doc)? {
                return Ok(None);
            }
        }
        let next = self.fetched.checked_mul(step).and_then(|n| n.checked_add(start));
        let next = next.ok_or_else(|| failed(format!("{} overflows", c.param)))?;
        Ok(Some(NextPage::Params(counter_params(c, next))))
    }
}

fn counter_params(c: &Counter, value: u64) -> Vec<(String, String)> {
    let mut out = vec![(c.param.clone(), value.to_string())];
    if let (Some(name), Some(size)) = (&c.size_param, c.size) {
        out.push((name.clone(), size.to_string()));
    }
    out
}


/// A count (pages, items): a whole number, or a string holding one.
fn whole_number(q: &Query, doc: &Document) -> Result<u64, PollError> {
    let found = q.locate(&doc.value, &[]);
    let text = match found.as_slice() {
        [(Value::Number(_), loc)] => doc.number_text(loc).map(str::to_string),
        [(Value::String(s), _)] => Some(s.trim().to_string()),
        _ => None,
    };
    text.and_then(|t| t.parse::<u64>().ok()).ok_or_else(|| {
        let what = match found.as_slice() {
            [] => "nothing".to_string(),
            [(v, _)] => type_name(v).to_string(),
            many => format!("{} values", many.len()),
        };
        failed(format!("{}: expected a whole number, found {what}", q.as_str()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pagination(yaml: &str) -> Pagination {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn doc(text: &str) -> Document {
        Document::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn counting_past_u64_is_an_error_not_a_panic() {
        let cfg = pagination("page: {param: p, start: 18446744073709551615}");
        let mut pager = Pager::new(&cfg);
        assert_eq!(pager.first(), vec![("p".to_string(), u64::MAX.to_string())]);
        let url = Url::parse("http://127.0.0.1/x").unwrap();
        let err = pager.next(&doc("{}"), 1, &url, &url).unwrap_err();
        assert_eq!(err.message, "pagination: p overflows");
    }

    #[test]
    fn totals_and_has_more_decide_the_last_page() {
        let url = Url::parse("http://127.0.0.1/x").unwrap();
        let cfg = pagination("offset: {param: o, size: 10, size_param: n}\ntotal_items: $.total");
        let mut pager = Pager::new(&cfg);
        assert_eq!(pager.first(), vec![("o".into(), "0".into()), ("n".into(), "10".into())]);
        let next = pager.next(&doc(r#"{"total": "25"}"#), 10, &url, &url).unwrap();
        assert_eq!(next, Some(NextPage::Params(vec![("o".into(), "10".into()), ("n".into(), "10".into())])));
        assert!(pager.next(&doc(r#"{"total": 25}"#), 10, &url, &url).unwrap().is_some());
        assert_eq!(pager.next(&doc(r#"{"total": 25}"#), 5, &url, &url).unwrap(), None);
        // has_more false ends any mode, even with a link left.
        let cfg = pagination("next_url: $.next\nhas_more: $.more");
        let mut pager = Pager::new(&cfg);
        assert_eq!(pager.next(&doc(r#"{"next": "/x?p=2", "more": false}"#), 1, &url, &url).unwrap(), None);
        let next = pager.next(&doc(r#"{"next": "?p=3", "more": true}"#), 1, &url, &url).unwrap();
        assert_eq!(next, Some(NextPage::Url(Url::parse("http://127.0.0.1/x?p=3").unwrap())));
    }
}
