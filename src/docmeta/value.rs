//! [`Metadata`]: a document's flat object of scalar values, and the checks
//! every key and value passes.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::{Error, Result};

/// Most keys one document may carry.
pub const MAX_KEYS: usize = 64;
/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 64;
/// Longest string value, in bytes.
pub const MAX_STRING_BYTES: usize = 1024;
/// Largest metadata object, as compact JSON: it is stored in the store's
/// manifest and in every export line, so it stays small.
pub const MAX_TOTAL_BYTES: usize = 8 << 10;

/// One metadata value. Numbers keep their form: a whole number that fits
/// 64 bits is an integer, any other finite number a float; the two compare
/// by value (`3 == 3.0`).
#[derive(Debug, Clone)]
pub enum MetaValue {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl PartialEq for MetaValue {
    fn eq(&self, other: &Self) -> bool {
        use MetaValue::*;
        match (self, other) {
            (Str(a), Str(b)) => a == b,
            (Bool(a), Bool(b)) => a == b,
            (Int(a), Int(b)) => a == b,
            (a, b) => match (a.as_f64(), b.as_f64()) {
                (Some(x), Some(y)) => x == y,
                _ => false,
            },
        }
    }
}

fn bad(key: &str, what: impl Into<String>) -> Error {
    Error::BadMetadata {
        key: key.to_string(),
        what: what.into(),
    }
}

impl MetaValue {
    /// The number, for the comparisons `>` and `<` (`None` for a string or
    /// a bool).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            MetaValue::Int(i) => Some(*i as f64),
            MetaValue::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// The value's type, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            MetaValue::Str(_) => "string",
            MetaValue::Int(_) | MetaValue::Float(_) => "number",
            MetaValue::Bool(_) => "bool",
        }
    }

    /// A JSON scalar as a value of `key`: a string, a finite number or a
    /// bool; anything else is refused, naming the key.
    pub fn from_json(key: &str, v: &Value) -> Result<Self> {
        let value = match v {
            Value::String(s) => MetaValue::Str(s.clone()),
            Value::Bool(b) => MetaValue::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => MetaValue::Int(i),
                None => MetaValue::Float(n.as_f64().ok_or_else(|| bad(key, "not a number"))?),
            },
            Value::Null => return Err(bad(key, "null is not a value (a string, number or bool)")),
            Value::Array(_) | Value::Object(_) => {
                return Err(bad(
                    key,
                    "metadata is flat: a value is a string, a number or a bool, not an array or \
                     an object",
                ))
            }
        };
        value.check(key)?;
        Ok(value)
    }

    /// A value written on the command line: `true` / `false` are bools,
    /// a JSON number (`2001`, `-1.5`, `1e3`) is a number, a JSON string in
    /// double quotes (`"2001"`) is that string, anything else the text as
    /// it is.
    pub fn parse_cli(key: &str, s: &str) -> Result<Self> {
        let value = match s {
            "true" => MetaValue::Bool(true),
            "false" => MetaValue::Bool(false),
            _ if s.starts_with('"') => match serde_json::from_str::<String>(s) {
                Ok(q) => MetaValue::Str(q),
                Err(e) => {
                    return Err(bad(
                        key,
                        format!("{s} starts with a quote but is not a JSON string: {e}"),
                    ))
                }
            },
            _ => match serde_json::from_str::<serde_json::Number>(s) {
                Ok(n) => return Self::from_json(key, &Value::Number(n)),
                Err(_) => MetaValue::Str(s.to_string()),
            },
        };
        value.check(key)?;
        Ok(value)
    }

    fn check(&self, key: &str) -> Result<()> {
        match self {
            MetaValue::Str(s) if s.len() > MAX_STRING_BYTES => Err(bad(
                key,
                format!(
                    "the value is {} bytes long; at most {MAX_STRING_BYTES}",
                    s.len()
                ),
            )),
            MetaValue::Str(s) if s.chars().any(char::is_control) => Err(bad(
                key,
                "the value contains a control character (line breaks and tabs included)",
            )),
            MetaValue::Float(f) if !f.is_finite() => Err(bad(key, "the number is not finite")),
            _ => Ok(()),
        }
    }

    pub fn to_json(&self) -> Value {
        match self {
            MetaValue::Str(s) => Value::String(s.clone()),
            MetaValue::Int(i) => Value::from(*i),
            MetaValue::Float(f) => {
                serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
            }
            MetaValue::Bool(b) => Value::Bool(*b),
        }
    }
}

impl std::fmt::Display for MetaValue {
    /// As JSON (strings quoted): how `c3 ls` and messages show it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.to_json())
    }
}

impl Serialize for MetaValue {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.to_json().serialize(s)
    }
}

// Values are never NaN (every one is checked finite), so `==` is an
// equivalence.
impl Eq for MetaValue {}

/// Checks a key: 1 to [`MAX_KEY_BYTES`] bytes of ASCII letters, digits,
/// `_`, `-` and `.`, starting with a letter or `_` (so `--where` can tell
/// it from its operator).
pub fn check_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(bad(key, "the key is empty"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(bad(
            &key.chars().take(16).collect::<String>(),
            format!(
                "the key is {} bytes long; at most {MAX_KEY_BYTES}",
                key.len()
            ),
        ));
    }
    let first = key.as_bytes()[0];
    if !(first.is_ascii_alphabetic() || first == b'_') || !key.bytes().all(is_key_byte) {
        return Err(bad(
            key,
            "a key is ASCII letters, digits, `_`, `-` and `.`, starting with a letter or `_`",
        ));
    }
    Ok(())
}

pub(super) fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')
}

/// A document's metadata: keys in sorted order (so its JSON, and the
/// export that holds it, is the same however it was built).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Metadata(BTreeMap<String, MetaValue>);

impl Metadata {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.0.get(key)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &MetaValue)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Sets `key` to `value` after the checks (key syntax, value size and
    /// characters, the key count and the object's size).
    pub fn insert(&mut self, key: &str, value: MetaValue) -> Result<()> {
        check_key(key)?;
        value.check(key)?;
        if !self.0.contains_key(key) && self.0.len() >= MAX_KEYS {
            return Err(bad(
                key,
                format!("a document carries at most {MAX_KEYS} keys"),
            ));
        }
        let old = self.0.insert(key.to_string(), value);
        let size = self.json_len();
        if size > MAX_TOTAL_BYTES {
            match old {
                Some(v) => self.0.insert(key.to_string(), v),
                None => self.0.remove(key),
            };
            return Err(bad(
                key,
                format!("the metadata would take {size} bytes as JSON; at most {MAX_TOTAL_BYTES}"),
            ));
        }
        Ok(())
    }

    /// Bytes of the compact JSON object.
    pub fn json_len(&self) -> usize {
        self.to_json().to_string().len()
    }

    /// A JSON object (an HTTP or MCP `metadata` field, an export line).
    pub fn from_json(v: &Value) -> Result<Self> {
        let Value::Object(map) = v else {
            return Err(bad(
                "",
                format!(
                    "metadata is a JSON object of string, number and bool values, not {}",
                    json_kind(v)
                ),
            ));
        };
        let mut m = Metadata::new();
        for (k, v) in map {
            m.insert(k, MetaValue::from_json(k, v)?)?;
        }
        Ok(m)
    }

    /// `--meta key=value` arguments (values as [`MetaValue::parse_cli`]
    /// reads them); a key given twice is refused.
    pub fn from_assignments(args: &[String]) -> Result<Self> {
        let mut m = Metadata::new();
        for a in args {
            let Some((k, v)) = a.split_once('=') else {
                return Err(bad(
                    a.split(|c: char| !is_key_byte(c as u8) || !c.is_ascii())
                        .next()
                        .unwrap_or(""),
                    format!("`{a}` is not key=value"),
                ));
            };
            let k = k.trim();
            if m.get(k).is_some() {
                return Err(bad(k, "the key is given twice"));
            }
            m.insert(k, MetaValue::parse_cli(k, v.trim())?)?;
        }
        Ok(m)
    }

    pub fn to_json(&self) -> Value {
        Value::Object(
            self.0
                .iter()
                .map(|(k, v)| (k.clone(), v.to_json()))
                .collect(),
        )
    }
}

impl std::fmt::Display for Metadata {
    /// `key=value` pairs separated by spaces (strings quoted), as `c3 ls`
    /// shows them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, " ")?;
            }
            write!(f, "{k}={v}")?;
        }
        Ok(())
    }
}

pub(super) fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a bool",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl Serialize for Metadata {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.to_json().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Metadata {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        Metadata::from_json(&v).map_err(serde::de::Error::custom)
    }
}

impl FromIterator<(String, MetaValue)> for Metadata {
    /// For values already checked (tests, conversions); unchecked pairs
    /// go through [`Metadata::insert`].
    fn from_iter<I: IntoIterator<Item = (String, MetaValue)>>(iter: I) -> Self {
        Metadata(iter.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn command_line_values_take_their_type() {
        let m = Metadata::from_assignments(&[
            "kind=license".into(),
            "year=2001".into(),
            "score=-1.5".into(),
            "draft=true".into(),
            "zip=007".into(),
            "id=\"2001\"".into(),
            "date=2024-01-05".into(),
            "note=a=b".into(),
        ])
        .unwrap();
        assert_eq!(
            m.to_json(),
            json!({"kind": "license", "year": 2001, "score": -1.5, "draft": true,
                   "zip": "007", "id": "2001", "date": "2024-01-05", "note": "a=b"})
        );
        assert_eq!(m.to_string().split(' ').next(), Some("date=\"2024-01-05\""));
    }

    #[test]
    fn bad_keys_and_values_are_refused_naming_the_key() {
        let e = |args: &[&str]| {
            Metadata::from_assignments(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap_err()
                .to_string()
        };
        assert!(e(&["noequals"]).contains("not key=value"));
        assert!(e(&["9lives=1"]).contains("starting with a letter"));
        assert!(e(&["a b=1"]).contains("`a b`"));
        assert!(e(&["k=1", "k=2"]).contains("twice"));
        assert!(e(&["k=a\u{1b}[31m"]).contains("control character"));
        assert!(e(&[&format!("k={}", "x".repeat(2000))]).contains("at most 1024"));
        assert!(e(&[&format!("{}=1", "k".repeat(65))]).contains("at most 64"));
        let many: Vec<String> = (0..=MAX_KEYS).map(|i| format!("k{i}=1")).collect();
        assert!(Metadata::from_assignments(&many)
            .unwrap_err()
            .to_string()
            .contains("at most 64 keys"));
        let big: Vec<String> = (0..10)
            .map(|i| format!("k{i}={}", "x".repeat(1000)))
            .collect();
        assert!(Metadata::from_assignments(&big)
            .unwrap_err()
            .to_string()
            .contains("bytes as JSON"));
        for bad in [
            json!([1]),
            json!("x"),
            json!({"k": null}),
            json!({"k": [1]}),
            json!({"k": {"a": 1}}),
        ] {
            assert!(Metadata::from_json(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn json_round_trips_and_numbers_compare_by_value() {
        let v = json!({"b": 1, "a": "x", "c": 2.5, "d": false, "e": 18446744073709551615u64});
        let m = Metadata::from_json(&v).unwrap();
        let back: Metadata = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(back, m);
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"a":"x","b":1,"c":2.5,"d":false,"e":1.8446744073709552e+19}"#
        );
        assert_eq!(MetaValue::Int(3), MetaValue::Float(3.0));
        assert_ne!(MetaValue::Int(3), MetaValue::Str("3".into()));
        assert_ne!(MetaValue::Bool(true), MetaValue::Int(1));
    }
}
