//! A response body ready for JSONPath, with every number's exact text kept.
//!
//! JSONPath (`serde_json_path`) queries a `serde_json::Value`, whose numbers
//! are `f64` without serde_json's `arbitrary_precision` feature (which must
//! stay off: it breaks `untagged`/`flatten` elsewhere). So the body is read
//! twice: once into a `Value` for queries and filters (`?@.amount > 0` still
//! compares numbers), and once into a shadow tree of the same shape holding
//! the raw text of each number. A query returns nodes *with their locations*;
//! an amount is then read from the shadow tree at that location, so
//! `12345678901234567.89` and `1.50` keep every digit.
#![deny(clippy::arithmetic_side_effects)]

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::sync::Arc;

use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use serde_json::Value;
use serde_json_path::{JsonPath, NormalizedPath, PathElement};

/// One step of a location: an object member or an array element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Name(String),
    Index(usize),
}

/// An absolute location in the document (`$` is the empty location).
pub type Location = Vec<Seg>;

/// Converts a `serde_json_path` location, appended to `base`.
pub fn join(base: &[Seg], rel: &NormalizedPath<'_>) -> Location {
    let mut out = base.to_vec();
    out.extend(rel.iter().map(|e| match e {
        PathElement::Name(n) => Seg::Name(n.to_string()),
        PathElement::Index(i) => Seg::Index(*i),
    }));
    out
}

/// Shows a location as JSONPath in dot notation where possible:
/// `$.data.usd.balance`, `$.available[0].amount`, `$['a b']`.
pub fn display(loc: &[Seg]) -> String {
    let mut out = String::from("$");
    for seg in loc {
        match seg {
            Seg::Name(n) if is_identifier(n) => {
                out.push('.');
                out.push_str(n);
            }
            Seg::Name(n) => {
                out.push_str("['");
                for c in n.chars() {
                    match c {
                        '\'' | '\\' => {
                            out.push('\\');
                            out.push(c);
                        }
                        c if c.is_control() => {
                            let _ = write!(out, "\\u{:04x}", c as u32);
                        }
                        c => out.push(c),
                    }
                }
                out.push_str("']");
            }
            Seg::Index(i) => {
                let _ = write!(out, "[{i}]");
            }
        }
    }
    out
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A JSONPath expression. Syntax errors are kept and reported by
/// [`JsonConfig::validate`] under the key's full path, so `--config.check`
/// names `suppliers[0].rows[1].select`.
#[derive(Clone)]
pub struct Query {
    text: String,
    path: Result<JsonPath, QueryError>,
}

/// A JSONPath expression that does not parse.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid JSONPath {text:?}: {source}")]
pub struct QueryError {
    text: String,
    source: Arc<serde_json_path::ParseError>,
}

impl Query {
    pub fn parse(text: &str) -> Query {
        let path = JsonPath::parse(text).map_err(|e| QueryError { text: text.to_string(), source: Arc::new(e) });
        Query { text: text.to_string(), path }
    }
    pub fn as_str(&self) -> &str {
        &self.text
    }
    /// The syntax error, if any.
    pub fn error(&self) -> Option<&QueryError> {
        self.path.as_ref().err()
    }
    /// Matches under `root`, which lives at `base`; with absolute locations.
    /// (An invalid query never gets here: the config is rejected at load.)
    pub fn locate<'v>(&self, root: &'v Value, base: &[Seg]) -> Vec<(&'v Value, Location)> {
        match &self.path {
            Ok(path) => path.query_located(root).into_iter().map(|n| (n.node(), join(base, n.location()))).collect(),
            Err(_) => vec![],
        }
    }
}

impl Query {
    /// The one match on the whole document, if any; `Err(n)`: `n` matches.
    pub fn one<'v>(&self, root: &'v Value) -> Result<Option<&'v Value>, usize> {
        match self.locate(root, &[]).as_slice() {
            [] => Ok(None),
            [(value, _)] => Ok(Some(*value)),
            many => Err(many.len()),
        }
    }
}

impl PartialEq for Query {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl fmt::Debug for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.text)
    }
}

impl<'de> Deserialize<'de> for Query {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Query::parse(&String::deserialize(d)?))
    }
}

/// A value's JSON type, for messages (never the value: it may be a secret).
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The raw text of each number, in the shape of the document.
#[derive(Debug)]
enum Shadow {
    Number(Box<str>),
    Object(HashMap<String, Shadow>),
    Array(Vec<Shadow>),
    Other,
}

/// A parsed body: the queryable value plus the exact number texts.
#[derive(Debug)]
pub struct Document {
    pub value: Value,
    shadow: Shadow,
}

impl Document {
    /// Parses a body; the error is serde_json's (line and column, no body text).
    pub fn parse(body: &[u8]) -> Result<Document, serde_json::Error> {
        let value: Value = serde_json::from_slice(body)?;
        let raw: &RawValue = serde_json::from_slice(body)?;
        Ok(Document { value, shadow: shadow(raw)? })
    }

    /// The exact JSON text of the number at `loc`, if a number is there.
    pub fn number_text(&self, loc: &[Seg]) -> Option<&str> {
        let mut node = &self.shadow;
        for seg in loc {
            node = match (node, seg) {
                (Shadow::Object(map), Seg::Name(n)) => map.get(n)?,
                (Shadow::Array(items), Seg::Index(i)) => items.get(*i)?,
                _ => return None,
            };
        }
        match node {
            Shadow::Number(text) => Some(text),
            _ => None,
        }
    }
}

/// Builds the shadow tree. Duplicate object keys: the last one wins, as in `Value`.
fn shadow(raw: &RawValue) -> Result<Shadow, serde_json::Error> {
    let text = raw.get().trim();
    Ok(match text.as_bytes().first() {
        Some(b'{') => {
            let members: HashMap<String, &RawValue> = serde_json::from_str(text)?;
            let mut map = HashMap::with_capacity(members.len());
            for (k, v) in members {
                map.insert(k, shadow(v)?);
            }
            Shadow::Object(map)
        }
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_str(text)?;
            Shadow::Array(items.into_iter().map(shadow).collect::<Result<_, _>>()?)
        }
        Some(b'-' | b'0'..=b'9') => Shadow::Number(text.into()),
        _ => Shadow::Other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json_path::JsonPath;

    #[test]
    fn numbers_keep_their_text_at_their_location() {
        let doc = Document::parse(br#"{"data": {"usd": {"balance": 12345678901234567.89}, "k": [1.50, -3.20, 1e2]}}"#).unwrap();
        let path = JsonPath::parse("$.data.k[*]").unwrap();
        let texts: Vec<&str> = path
            .query_located(&doc.value)
            .iter()
            .map(|n| doc.number_text(&join(&[], n.location())).unwrap())
            .collect();
        assert_eq!(texts, ["1.50", "-3.20", "1e2"]);
        let loc = vec![Seg::Name("data".into()), Seg::Name("usd".into()), Seg::Name("balance".into())];
        assert_eq!(doc.number_text(&loc), Some("12345678901234567.89"));
        assert_eq!(doc.number_text(&loc[..2]), None);
    }

    #[test]
    fn locations_display_as_jsonpath() {
        let loc = vec![Seg::Name("available".into()), Seg::Index(0), Seg::Name("amount".into())];
        assert_eq!(display(&loc), "$.available[0].amount");
        assert_eq!(display(&[Seg::Name("a b".into()), Seg::Name("it's".into())]), "$['a b']['it\\'s']");
        assert_eq!(display(&[]), "$");
    }
}
