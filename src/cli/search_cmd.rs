//! `c3 search`: the chunks that match a query best (BM25) with a snippet
//! each; no model is loaded.

use std::io::Write;
use std::path::Path;

use serde_json::json;

use super::common::{open, select, where_arg, Out};

#[derive(clap::Args, Debug)]
pub struct SearchArgs {
    /// What to look for (plain words; not a query language).
    pub query: String,
    /// How many chunks to show.
    #[arg(long, value_name = "K", default_value_t = 8,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub top_k: u64,
    /// Only documents whose metadata matches (`key=value`, `key!=value`,
    /// `key>n`, `key<n`, `key in [a,b]`; repeat: all must hold).
    #[arg(long = "where", value_name = "COND")]
    pub filters: Vec<String>,
    /// Print one JSON object: `{query, hits: [{doc, source, chunk, score,
    /// start, end, snippet}]}`.
    #[arg(long)]
    pub json: bool,
}

/// `c3 search`.
pub fn run(store_dir: &Path, a: &SearchArgs) -> anyhow::Result<i32> {
    if a.query.trim().is_empty() {
        anyhow::bail!("the query is empty");
    }
    let filter = where_arg(&a.filters)?;
    let store = open(store_dir)?;
    let (docs, warning) = if filter.is_empty() {
        (None, None)
    } else {
        let sel = select(&store, &filter)?;
        (Some(sel.ids()), sel.note())
    };
    let hits = c3::retrieve::search(&store, &a.query, docs.as_deref(), a.top_k as usize)?;
    let mut out = Out::new();
    if a.json {
        let mut v = json!({"query": a.query, "hits": hits});
        if let Some(w) = warning {
            v["warning"] = json!(w);
        }
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(0);
    }
    if hits.is_empty() {
        c3::note!("c3: no chunk matches {}", c3::term::name(&a.query));
    }
    for h in &hits {
        writeln!(
            out,
            "{:>7.3}  doc {} chunk {}  {}",
            h.score,
            h.doc,
            h.chunk,
            c3::term::name(&h.source)
        )?;
        writeln!(out, "         {}", c3::term::name(&h.snippet))?;
    }
    Ok(0)
}
