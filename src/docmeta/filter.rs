//! [`Filter`]: conditions on metadata keys, all of which must hold.
//!
//! Command line (`--where`, repeated = and):
//!
//! | form | holds when the document's value of `key` … |
//! | --- | --- |
//! | `key=value` | equals `value` (typed as `--meta` types it; `3` equals `3.0`) |
//! | `key!=value` | exists and differs from `value` |
//! | `key>n`, `key<n`, `key>=n`, `key<=n` | is a number greater than `n`, … |
//! | `key in [a,b]` | equals one of the listed values |
//!
//! JSON (HTTP and MCP `where`): an object, one entry per key, and-ed:
//! `{"kind": "license"}`, `{"year": {">": 2000}}`, `{"kind": {"!=": "code"}}`,
//! `{"kind": {"in": ["a", "b"]}}`; several operators on one key are and-ed
//! too (`{"year": {">": 2000, "<": 2010}}`).
//!
//! A document without the key never matches a condition on it.

use serde_json::Value;

use super::value::{check_key, is_key_byte, json_kind, MetaValue, Metadata};
use crate::{Error, Result};

/// What a condition asks of a key's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Eq(MetaValue),
    Ne(MetaValue),
    Gt(f64),
    Lt(f64),
    Ge(f64),
    Le(f64),
    In(Vec<MetaValue>),
}

/// One condition on one key.
#[derive(Debug, Clone, PartialEq)]
pub struct Cond {
    pub key: String,
    pub op: Op,
}

impl Cond {
    /// Whether `m` satisfies this condition (never without the key).
    pub fn holds(&self, m: &Metadata) -> bool {
        let Some(v) = m.get(&self.key) else {
            return false;
        };
        match &self.op {
            Op::Eq(x) => v == x,
            Op::Ne(x) => v != x,
            Op::Gt(n) => v.as_f64().is_some_and(|a| a > *n),
            Op::Lt(n) => v.as_f64().is_some_and(|a| a < *n),
            Op::Ge(n) => v.as_f64().is_some_and(|a| a >= *n),
            Op::Le(n) => v.as_f64().is_some_and(|a| a <= *n),
            Op::In(xs) => xs.iter().any(|x| v == x),
        }
    }
}

impl std::fmt::Display for Cond {
    /// The command-line form.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let k = &self.key;
        match &self.op {
            Op::Eq(v) => write!(f, "{k}={v}"),
            Op::Ne(v) => write!(f, "{k}!={v}"),
            Op::Gt(n) => write!(f, "{k}>{n}"),
            Op::Lt(n) => write!(f, "{k}<{n}"),
            Op::Ge(n) => write!(f, "{k}>={n}"),
            Op::Le(n) => write!(f, "{k}<={n}"),
            Op::In(xs) => {
                let items: Vec<String> = xs.iter().map(|x| x.to_string()).collect();
                write!(f, "{k} in [{}]", items.join(","))
            }
        }
    }
}

/// Conditions that must all hold; empty: every document.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Filter {
    pub conds: Vec<Cond>,
}

fn bad(filter: &str, what: impl Into<String>) -> Error {
    Error::BadFilter {
        filter: filter.to_string(),
        what: what.into(),
    }
}

/// The operators of the command-line form, longest first (so `!=` is not
/// read as `=`).
const CLI_OPS: &[&str] = &["!=", ">=", "<=", "==", "=", ">", "<"];

impl Filter {
    pub fn is_empty(&self) -> bool {
        self.conds.is_empty()
    }

    /// Whether `m` satisfies every condition.
    pub fn matches(&self, m: &Metadata) -> bool {
        self.conds.iter().all(|c| c.holds(m))
    }

    /// The keys the conditions name, each once, in order.
    pub fn keys(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for c in &self.conds {
            if !out.contains(&c.key.as_str()) {
                out.push(&c.key);
            }
        }
        out
    }

    /// `--where` arguments, and-ed.
    pub fn parse_cli(args: &[String]) -> Result<Self> {
        let conds = args
            .iter()
            .map(|a| parse_one(a))
            .collect::<Result<Vec<_>>>()?;
        Ok(Filter { conds })
    }

    /// A `where` JSON object (HTTP, MCP); `null` is no filter.
    pub fn from_json(v: &Value) -> Result<Self> {
        let map = match v {
            Value::Null => return Ok(Filter::default()),
            Value::Object(m) => m,
            other => {
                return Err(bad(
                    &other.to_string(),
                    format!(
                        "`where` is a JSON object such as {{\"kind\": \"license\"}}, not {}",
                        json_kind(other)
                    ),
                ))
            }
        };
        let mut conds = Vec::new();
        for (key, spec) in map {
            let here = format!("{{{}: {spec}}}", Value::String(key.clone()));
            check_key(key).map_err(|e| bad(&here, e.to_string()))?;
            match spec {
                Value::Object(ops) if ops.is_empty() => {
                    return Err(bad(&here, "no operator (use =, !=, >, <, >=, <= or in)"))
                }
                Value::Object(ops) => {
                    for (op, arg) in ops {
                        conds.push(Cond {
                            key: key.clone(),
                            op: json_op(&here, key, op, arg)?,
                        });
                    }
                }
                scalar => conds.push(Cond {
                    key: key.clone(),
                    op: Op::Eq(json_value(&here, key, scalar)?),
                }),
            }
        }
        Ok(Filter { conds })
    }
}

impl std::fmt::Display for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, c) in self.conds.iter().enumerate() {
            if i > 0 {
                write!(f, " and ")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

fn json_value(here: &str, key: &str, v: &Value) -> Result<MetaValue> {
    match v {
        Value::Array(_) => Err(bad(here, "a list of values is written {\"in\": [a, b]}")),
        v => MetaValue::from_json(key, v).map_err(|e| bad(here, e.to_string())),
    }
}

fn json_number(here: &str, op: &str, v: &Value) -> Result<f64> {
    v.as_f64().filter(|f| f.is_finite()).ok_or_else(|| {
        bad(
            here,
            format!("`{op}` compares numbers; {} is not a number", json_kind(v)),
        )
    })
}

fn json_op(here: &str, key: &str, op: &str, arg: &Value) -> Result<Op> {
    Ok(match op {
        "=" | "==" => Op::Eq(json_value(here, key, arg)?),
        "!=" => Op::Ne(json_value(here, key, arg)?),
        ">" => Op::Gt(json_number(here, op, arg)?),
        "<" => Op::Lt(json_number(here, op, arg)?),
        ">=" => Op::Ge(json_number(here, op, arg)?),
        "<=" => Op::Le(json_number(here, op, arg)?),
        "in" => {
            let Value::Array(items) = arg else {
                return Err(bad(
                    here,
                    format!("`in` takes an array of values, not {}", json_kind(arg)),
                ));
            };
            Op::In(
                items
                    .iter()
                    .map(|x| json_value(here, key, x))
                    .collect::<Result<_>>()?,
            )
        }
        other => {
            return Err(bad(
                here,
                format!("unknown operator `{other}` (use =, !=, >, <, >=, <= or in)"),
            ))
        }
    })
}

/// One `--where` argument.
fn parse_one(arg: &str) -> Result<Cond> {
    let usage = "expected key=value, key!=value, key>n, key<n, key>=n, key<=n or key in [a,b]";
    let s = arg.trim();
    let key_len = s.bytes().take_while(|&b| is_key_byte(b)).count();
    let key = &s[..key_len];
    let rest = s[key_len..].trim_start();
    if key.is_empty() {
        return Err(bad(arg, usage));
    }
    check_key(key).map_err(|e| bad(arg, e.to_string()))?;
    if key_len == s.len() {
        return Err(bad(arg, usage));
    }
    // `key in [...]`: the word needs space after the key.
    if let Some(list) = rest.strip_prefix("in") {
        if key_len < s.len() && s.as_bytes()[key_len].is_ascii_whitespace() {
            return Ok(Cond {
                key: key.to_string(),
                op: Op::In(parse_list(arg, key, list.trim())?),
            });
        }
    }
    let Some(op) = CLI_OPS.iter().find(|o| rest.starts_with(**o)) else {
        return Err(bad(arg, usage));
    };
    let value = rest[op.len()..].trim();
    let parsed = MetaValue::parse_cli(key, value).map_err(|e| bad(arg, e.to_string()))?;
    let number = |p: &MetaValue| {
        p.as_f64().ok_or_else(|| {
            bad(
                arg,
                format!("`{op}` compares numbers; `{value}` is not a number"),
            )
        })
    };
    let op = match *op {
        "=" | "==" => Op::Eq(parsed),
        "!=" => Op::Ne(parsed),
        ">" => Op::Gt(number(&parsed)?),
        "<" => Op::Lt(number(&parsed)?),
        ">=" => Op::Ge(number(&parsed)?),
        _ => Op::Le(number(&parsed)?),
    };
    Ok(Cond {
        key: key.to_string(),
        op,
    })
}

/// `[a,b]`: a JSON array of scalars, or bare items separated by commas,
/// each read as a `--meta` value.
fn parse_list(arg: &str, key: &str, list: &str) -> Result<Vec<MetaValue>> {
    let Some(inner) = list.strip_prefix('[').and_then(|l| l.strip_suffix(']')) else {
        return Err(bad(arg, "`in` takes a list in brackets: key in [a,b]"));
    };
    if let Ok(Value::Array(items)) = serde_json::from_str::<Value>(list) {
        return items.iter().map(|x| json_value(arg, key, x)).collect();
    }
    if inner.trim().is_empty() {
        return Ok(Vec::new());
    }
    inner
        .split(',')
        .map(|item| MetaValue::parse_cli(key, item.trim()).map_err(|e| bad(arg, e.to_string())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn meta(v: Value) -> Metadata {
        Metadata::from_json(&v).unwrap()
    }

    fn cli(args: &[&str]) -> Result<Filter> {
        Filter::parse_cli(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn both_forms_read_the_same_conditions() {
        let pairs = [
            (vec!["kind=license"], json!({"kind": "license"})),
            (vec!["year>2000"], json!({"year": {">": 2000}})),
            (vec!["kind!=code"], json!({"kind": {"!=": "code"}})),
            (vec!["kind in [a,b]"], json!({"kind": {"in": ["a", "b"]}})),
            (
                vec!["kind in [\"a\", 3]"],
                json!({"kind": {"in": ["a", 3]}}),
            ),
            (
                // JSON objects read in key order (`<=` before `>=`).
                vec!["year<=2010", "year>=2000"],
                json!({"year": {">=": 2000, "<=": 2010}}),
            ),
            (
                vec!["draft=true", "n<1.5"],
                json!({"draft": true, "n": {"<": 1.5}}),
            ),
        ];
        for (args, v) in pairs {
            assert_eq!(
                cli(&args).unwrap(),
                Filter::from_json(&v).unwrap(),
                "{args:?}"
            );
        }
        assert_eq!(
            cli(&["kind = license"]).unwrap(),
            cli(&["kind=license"]).unwrap()
        );
        assert_eq!(
            cli(&["year>2000", "kind in [a,b]"]).unwrap().to_string(),
            "year>2000 and kind in [\"a\",\"b\"]"
        );
    }

    #[test]
    fn conditions_need_their_key() {
        let m = meta(json!({"kind": "code", "year": 2001, "lang": "rust"}));
        let t = |args: &[&str]| cli(args).unwrap().matches(&m);
        assert!(t(&["kind=code"]));
        assert!(!t(&["kind!=code"]));
        assert!(t(&["lang!=go"]));
        assert!(!t(&["missing!=x"]), "a condition needs its key");
        assert!(t(&["year>2000", "year<2002", "year>=2001", "year<=2001"]));
        assert!(!t(&["kind>1"]), "a string is not greater than a number");
        assert!(t(&["year=2001.0"]));
        assert!(!t(&["year=\"2001\""]), "a string is not the number");
        assert!(t(&["kind in [a,code]"]));
        assert!(!t(&["kind in []"]));
        assert!(Filter::default().matches(&Metadata::new()));
    }

    #[test]
    fn malformed_filters_are_refused_naming_them() {
        for bad in [
            "",
            "kind",
            "=x",
            "kind~x",
            "year>abc",
            "9x=1",
            "kind in a,b",
            "k=a\u{7}",
        ] {
            let e = cli(&[bad]).unwrap_err().to_string();
            assert!(e.starts_with("filter `"), "{bad}: {e}");
        }
        for bad in [
            json!("kind"),
            json!([1]),
            json!({"kind": null}),
            json!({"kind": ["a"]}),
            json!({"kind": {}}),
            json!({"kind": {"~": 1}}),
            json!({"year": {">": "x"}}),
            json!({"kind": {"in": "a"}}),
            json!({"bad key": 1}),
        ] {
            let e = Filter::from_json(&bad).unwrap_err();
            assert!(matches!(e, Error::BadFilter { .. }), "{bad}: {e}");
        }
        assert!(Filter::from_json(&Value::Null).unwrap().is_empty());
    }
}
