//! Reading training records: upstream's JSON array (`train_test_data.json`)
//! or JSON Lines of the same objects. A record that cannot be used is
//! refused with the file, the line it starts on and the field at fault;
//! nothing is guessed or repaired.

use super::example::{Record, IMAGE};
use crate::{Error, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Where a record came from, for messages and reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// A file, or a label such as `store doc 3 chunk 1`.
    pub source: String,
    /// 1-based line the record starts on (0 when not from a file).
    pub line: usize,
    /// 0-based index of the record in its source.
    pub index: usize,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            0 => write!(f, "{} record {}", self.source, self.index),
            l => write!(f, "{}:{l}: record {}", self.source, self.index),
        }
    }
}

/// Reads every record of a file (JSON array or JSON Lines, told apart by
/// the first non-blank character).
pub fn read_file(path: &Path) -> Result<Vec<(Origin, Record)>> {
    let text = std::fs::read_to_string(path).map_err(Error::io(path))?;
    parse(&text, path)
}

/// Parses the text of a records file; `path` names it in errors.
pub fn parse(text: &str, path: &Path) -> Result<Vec<(Origin, Record)>> {
    let items = match text.trim_start().starts_with('[') {
        true => array_items(text, path)?,
        false => text
            .split('\n')
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| (i + 1, l))
            .collect(),
    };
    let mut out = Vec::with_capacity(items.len());
    for (index, (line, src)) in items.into_iter().enumerate() {
        let bad = |field: &str, msg: String| Error::BadRecord {
            path: path.to_path_buf(),
            line,
            index,
            field: field.into(),
            msg,
        };
        let v: Value = serde_json::from_str(src).map_err(|e| Error::BadRecord {
            path: path.to_path_buf(),
            line: line + e.line().saturating_sub(1),
            index,
            field: "(record)".into(),
            msg: format!("invalid JSON: {e}"),
        })?;
        let rec = record(&v).map_err(|(field, msg)| bad(&field, msg))?;
        let origin = Origin {
            source: path.display().to_string(),
            line,
            index,
        };
        out.push((origin, rec));
    }
    Ok(out)
}

/// The top-level elements of a JSON array, each with the line it starts on.
fn array_items<'a>(text: &'a str, path: &Path) -> Result<Vec<(usize, &'a str)>> {
    let b = text.as_bytes();
    let line_of = |pos: usize| 1 + b[..pos].iter().filter(|&&c| c == b'\n').count();
    let syntax = |pos: usize, msg: &str| Error::BadRecord {
        path: path.to_path_buf(),
        line: line_of(pos),
        index: 0,
        field: "(file)".into(),
        msg: msg.into(),
    };
    let mut i = b.iter().position(|&c| c == b'[').expect("caller saw `[`") + 1;
    let mut items = Vec::new();
    let skip_ws = |mut i: usize| {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    loop {
        i = skip_ws(i);
        match b.get(i) {
            None => return Err(syntax(b.len(), "the JSON array is not closed (no `]`)")),
            Some(b']') if items.is_empty() => {
                i += 1;
                break;
            }
            _ => {}
        }
        let start = i;
        let (mut depth, mut in_str, mut esc) = (0i64, false, false);
        while i < b.len() {
            let c = b[i];
            if in_str {
                match (esc, c) {
                    (true, _) => esc = false,
                    (false, b'\\') => esc = true,
                    (false, b'"') => in_str = false,
                    _ => {}
                }
            } else {
                match c {
                    b'"' => in_str = true,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' if depth > 0 => depth -= 1,
                    b',' | b']' if depth == 0 => break,
                    _ => {}
                }
            }
            i += 1;
        }
        let item = text[start..i].trim_end();
        if item.is_empty() {
            return Err(syntax(start, "empty element in the JSON array"));
        }
        items.push((line_of(start), item));
        match b.get(i) {
            Some(b',') => i += 1,
            Some(b']') => {
                i += 1;
                break;
            }
            _ => return Err(syntax(b.len(), "the JSON array is not closed (no `]`)")),
        }
    }
    if skip_ws(i) < b.len() {
        return Err(syntax(i, "text after the end of the JSON array"));
    }
    Ok(items)
}

type FieldError = (String, String);

/// A record object's three turns, checked.
fn record(v: &Value) -> std::result::Result<Record, FieldError> {
    let err = |f: &str, m: &str| (f.to_string(), m.to_string());
    let obj = v
        .as_object()
        .ok_or_else(|| err("(record)", "not a JSON object"))?;
    let turns = obj
        .get("conversations")
        .ok_or_else(|| err("conversations", "missing"))?
        .as_array()
        .ok_or_else(|| err("conversations", "not an array"))?;
    let mut found: [Option<(usize, String)>; 3] = [None, None, None];
    const SPEAKERS: [&str; 3] = ["context", "human", "gpt"];
    for (i, t) in turns.iter().enumerate() {
        let field = |f: &str| format!("conversations[{i}]{f}");
        let t = t
            .as_object()
            .ok_or_else(|| (field(""), "not a JSON object".into()))?;
        let from = t
            .get("from")
            .ok_or_else(|| (field(".from"), "missing".into()))?
            .as_str()
            .ok_or_else(|| (field(".from"), "not a string".into()))?;
        let value = t
            .get("value")
            .ok_or_else(|| (field(".value"), "missing".into()))?
            .as_str()
            .ok_or_else(|| (field(".value"), "not a string".into()))?;
        let k = SPEAKERS.iter().position(|&s| s == from).ok_or_else(|| {
            (
                field(".from"),
                format!("unknown speaker {from:?} (expected \"context\", \"human\" or \"gpt\")"),
            )
        })?;
        if found[k].is_some() {
            return Err((
                field(".from"),
                format!(
                    "a second {from:?} turn (a record has one context, one human and one gpt turn)"
                ),
            ));
        }
        found[k] = Some((i, value.to_string()));
    }
    let [context, human, gpt] = found;
    let missing = |s: &str| (String::from("conversations"), format!("no {s:?} turn"));
    let (ci, context) = context.ok_or_else(|| missing("context"))?;
    let (hi, human) = human.ok_or_else(|| missing("human"))?;
    let (_, gpt) = gpt.ok_or_else(|| missing("gpt"))?;
    if context.trim().is_empty() {
        return Err((
            format!("conversations[{ci}].value"),
            "empty context (nothing for the encoder to compress)".into(),
        ));
    }
    match human.matches(IMAGE).count() {
        1 => {}
        0 => {
            return Err((
                format!("conversations[{hi}].value"),
                format!("no `{IMAGE}` placeholder in the human turn (the latents go there)"),
            ))
        }
        n => {
            return Err((
                format!("conversations[{hi}].value"),
                format!("`{IMAGE}` appears {n} times in the human turn; a record has one context"),
            ))
        }
    }
    Ok(Record {
        context,
        human,
        gpt,
    })
}

/// Reads several files in order.
pub fn read_files(paths: &[PathBuf]) -> Result<Vec<(Origin, Record)>> {
    let mut out = Vec::new();
    for p in paths {
        out.extend(read_file(p)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(context: &str, human: &str, gpt: &str) -> String {
        serde_json::json!({"image": "", "conversations": [
            {"from": "context", "value": context},
            {"from": "human", "value": human},
            {"from": "gpt", "value": gpt}]})
        .to_string()
    }

    fn err(text: &str) -> (usize, usize, String) {
        match parse(text, Path::new("d.json")).unwrap_err() {
            Error::BadRecord {
                line, index, field, ..
            } => (line, index, field),
            e => panic!("{e}"),
        }
    }

    #[test]
    fn arrays_and_lines_give_the_same_records() {
        let a = rec("a [b] {c} \"q\\\"", "<image>\nRepeat the text: ", "x");
        let b = rec("second", "<image>", "y");
        let arr = format!("[\n  {a},\n  {b}\n]\n");
        let lines = format!("{a}\n\n{b}\n");
        let ra = parse(&arr, Path::new("a.json")).unwrap();
        let rl = parse(&lines, Path::new("a.jsonl")).unwrap();
        assert_eq!(ra.len(), 2);
        assert_eq!(ra[0].1, rl[0].1);
        assert_eq!(ra[1].1, rl[1].1);
        assert_eq!((ra[1].0.line, rl[1].0.line), (3, 3));
        assert_eq!(ra[0].1.context, "a [b] {c} \"q\\\"");
        assert!(parse("[]", Path::new("e.json")).unwrap().is_empty());
    }

    #[test]
    fn each_malformed_kind_names_line_and_field() {
        let good = rec("c", "<image>", "g");
        let no_gpt = r#"{"conversations": [{"from": "context", "value": "c"}, {"from": "human", "value": "<image>"}]}"#;
        assert_eq!(
            err(&format!("{good}\n{no_gpt}")),
            (2, 1, "conversations".into())
        );
        let no_image = rec("c", "Repeat: ", "g");
        assert_eq!(err(&no_image), (1, 0, "conversations[1].value".into()));
        let two = rec("c", "<image><image>", "g");
        assert_eq!(err(&two), (1, 0, "conversations[1].value".into()));
        let empty = rec("", "<image>", "g");
        assert_eq!(
            err(&format!("[\n{good},\n\n{empty}]")),
            (4, 1, "conversations[0].value".into())
        );
        let speaker = r#"{"conversations": [{"from": "system", "value": "c"}]}"#;
        assert_eq!(err(speaker), (1, 0, "conversations[0].from".into()));
        let number = r#"{"conversations": [{"from": "gpt", "value": 3}]}"#;
        assert_eq!(err(number), (1, 0, "conversations[0].value".into()));
        assert_eq!(err("{\"conversations\": ").2, "(record)");
        assert_eq!(err("[{\"conversations\": []}").2, "(file)");
        assert_eq!(err("[1]").2, "(record)");
    }
}
