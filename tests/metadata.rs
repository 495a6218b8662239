//! Issue 23: document metadata filters. A property test over random
//! metadata and random filters: `Store::select` chooses exactly the
//! documents a straightforward evaluation in this file chooses, the
//! command-line and JSON forms of a filter read the same, and a filter on
//! a key no document has selects nothing and says so.

mod store_support;

use std::collections::BTreeMap;

use c3::docmeta::{Filter, Metadata};
use c3::store::Store;
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use store_support::{model, put_doc, FakeCompressor};

/// The keys documents may carry, and one no document ever has.
const KEYS: &[&str] = &["kind", "year", "draft", "lang"];
const UNKNOWN: &str = "zzz";

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(vec!["a", "b", "code", "3", "true"]).prop_map(|s| json!(s)),
        (1998i64..2003).prop_map(|n| json!(n)),
        prop::sample::select(vec![1999.5f64, 2000.0, -1.5]).prop_map(|f| json!(f)),
        any::<bool>().prop_map(|b| json!(b)),
    ]
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        (1998i64..2003).prop_map(|n| json!(n)),
        prop::sample::select(vec![1999.5f64, 2000.0]).prop_map(|f| json!(f)),
    ]
}

fn doc_meta() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::vec(prop::option::of(value()), KEYS.len()).prop_map(|vals| {
        KEYS.iter()
            .zip(vals)
            .filter_map(|(k, v)| v.map(|v| (k.to_string(), v)))
            .collect()
    })
}

/// One condition as (key, op, argument).
fn cond() -> impl Strategy<Value = (String, &'static str, Value)> {
    let key = prop::sample::select(vec!["kind", "year", "draft", "lang", UNKNOWN]);
    prop_oneof![
        (key.clone(), prop::sample::select(vec!["=", "!="]), value()).prop_map(|(k, o, v)| (
            k.to_string(),
            o,
            v
        )),
        (
            key.clone(),
            prop::sample::select(vec![">", "<", ">=", "<="]),
            number()
        )
            .prop_map(|(k, o, v)| (k.to_string(), o, v)),
        (key, prop::collection::vec(value(), 0..3)).prop_map(|(k, vs)| (
            k.to_string(),
            "in",
            Value::Array(vs)
        )),
    ]
}

/// Equality as the filter grammar defines it: numbers by value, strings
/// and bools by themselves, different types never equal.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        _ => false,
    }
}

/// The in-test evaluation of one condition.
fn holds(meta: &Map<String, Value>, (key, op, arg): &(String, &'static str, Value)) -> bool {
    let Some(v) = meta.get(key) else {
        return false;
    };
    let num = |f: fn(f64, f64) -> bool| match (v.as_f64(), arg.as_f64()) {
        (Some(a), Some(b)) if v.is_number() => f(a, b),
        _ => false,
    };
    match *op {
        "=" => same(v, arg),
        "!=" => !same(v, arg),
        ">" => num(|a, b| a > b),
        "<" => num(|a, b| a < b),
        ">=" => num(|a, b| a >= b),
        "<=" => num(|a, b| a <= b),
        "in" => arg.as_array().unwrap().iter().any(|x| same(v, x)),
        _ => unreachable!(),
    }
}

/// A value on the command line: strings that would read as a number or a
/// bool are quoted, others bare.
fn cli_value(v: &Value) -> String {
    match v {
        Value::String(s) if s.parse::<f64>().is_ok() || s == "true" || s == "false" => {
            serde_json::to_string(s).unwrap()
        }
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn cli_form((key, op, arg): &(String, &'static str, Value)) -> String {
    match *op {
        "in" => {
            let items: Vec<String> = arg.as_array().unwrap().iter().map(cli_value).collect();
            format!("{key} in [{}]", items.join(","))
        }
        op => format!("{key}{op}{}", cli_value(arg)),
    }
}

/// The JSON `where` object, or `None` when one key repeats an operator
/// (a JSON object cannot hold it twice).
fn json_form(conds: &[(String, &'static str, Value)]) -> Option<Value> {
    let mut by_key: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
    for (k, op, arg) in conds {
        let ops = by_key.entry(k).or_default();
        if ops.insert(op.to_string(), arg.clone()).is_some() {
            return None;
        }
    }
    Some(Value::Object(
        by_key
            .into_iter()
            .map(|(k, ops)| (k.to_string(), Value::Object(ops)))
            .collect(),
    ))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn filters_select_exactly_the_matching_documents(
        docs in prop::collection::vec(doc_meta(), 1..7),
        conds in prop::collection::vec(cond(), 0..4),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let enc = FakeCompressor::new("meta-fp");
        let store = Store::open(dir.path()).unwrap();
        store.bind_model(&model(&enc)).unwrap();
        let mut ids = Vec::new();
        for (i, m) in docs.iter().enumerate() {
            let d = put_doc(&store, &enc, &format!("/d/{i}.txt"), &[&format!("text {i}")]);
            let meta = Metadata::from_json(&Value::Object(m.clone())).unwrap();
            store.set_metadata(d.id, &meta).unwrap();
            prop_assert_eq!(store.metadata(d.id).unwrap(), meta);
            ids.push(d.id);
        }
        let want: Vec<u64> = ids
            .iter()
            .zip(&docs)
            .filter(|(_, m)| conds.iter().all(|c| holds(m, c)))
            .map(|(id, _)| *id)
            .collect();
        let args: Vec<String> = conds.iter().map(cli_form).collect();
        let filter = Filter::parse_cli(&args).unwrap();
        if let Some(j) = json_form(&conds) {
            let from_json = Filter::from_json(&j).unwrap();
            let sel = store.select(&from_json).unwrap();
            prop_assert_eq!(sel.ids(), want.clone(), "json {}", j);
        }
        let sel = store.select(&filter).unwrap();
        prop_assert_eq!(sel.ids(), want.clone(), "--where {:?}", args);
        // Keys no document has: named, and nothing is selected.
        let unknown: Vec<String> = filter
            .keys()
            .into_iter()
            .filter(|k| !docs.iter().any(|m| m.contains_key(*k)))
            .map(str::to_string)
            .collect();
        prop_assert_eq!(&sel.unknown_keys, &unknown);
        if !unknown.is_empty() {
            prop_assert!(sel.docs.is_empty());
            let note = sel.note().unwrap();
            prop_assert!(note.contains(&format!("`{}`", unknown[0])), "{}", note);
            let e = sel.narrow(&[], &filter).unwrap_err();
            let is_no_match = matches!(e, c3::Error::NoMatch { .. });
            prop_assert!(is_no_match, "{}", e);
        }
    }
}

#[test]
fn a_filter_on_an_unknown_key_selects_nothing_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let enc = FakeCompressor::new("meta-fp");
    let store = Store::open(dir.path()).unwrap();
    store.bind_model(&model(&enc)).unwrap();
    let d = put_doc(&store, &enc, "/d/a.txt", &["alpha"]);
    store
        .set_metadata(
            d.id,
            &Metadata::from_json(&json!({"kind": "code"})).unwrap(),
        )
        .unwrap();
    let f = Filter::parse_cli(&["team=search".into()]).unwrap();
    let sel = store.select(&f).unwrap();
    assert!(sel.docs.is_empty());
    assert_eq!(
        sel.note().unwrap(),
        "no document has the metadata key `team`: the filter selects nothing"
    );
    let e = sel.narrow(&[], &f).unwrap_err().to_string();
    assert_eq!(
        e,
        "no document matches the filter `team=\"search\"`: no document has the metadata key \
         `team`: the filter selects nothing"
    );
    // A known key with no matching value: nothing, and no note.
    let f = Filter::parse_cli(&["kind=prose".into()]).unwrap();
    let sel = store.select(&f).unwrap();
    assert!(sel.docs.is_empty() && sel.note().is_none());
    // Removing the document removes its metadata; check stays clean.
    assert!(store.remove(d.id).unwrap());
    assert!(store.metadata(d.id).unwrap().is_empty());
    assert!(store.check().unwrap().ok());
}
