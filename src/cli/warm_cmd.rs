//! `c3 warm`: fill the prefix cache for documents before any question.

use std::io::Write;
use std::path::Path;

use super::common::{warm_store, ModelCtx, Out, ASK_MAX_NEW_TOKENS};

#[derive(clap::Args, Debug)]
pub struct WarmArgs {
    /// Only these documents (ids or source paths), as `c3 ask --doc` reads
    /// them; the cache then serves `ask --doc` with the same documents.
    #[arg(long = "doc", value_name = "ID", num_args = 1.., conflicts_with = "all")]
    pub docs: Vec<String>,
    /// Every document, as `c3 ask` without `--doc` reads them (the default).
    #[arg(long)]
    pub all: bool,
    /// The `--max-new-tokens` the questions will use: with it, the
    /// selection is cut where `ask` would cut it.
    #[arg(long, default_value_t = ASK_MAX_NEW_TOKENS)]
    pub max_new_tokens: usize,
    /// Print one JSON object (what was warmed) instead of progress.
    #[arg(long)]
    pub json: bool,
}

/// `c3 warm`.
pub fn run(store_dir: &Path, ctx: &ModelCtx, a: &WarmArgs) -> anyhow::Result<i32> {
    let report = warm_store(store_dir, ctx, &a.docs, a.max_new_tokens, a.json)?;
    if a.json {
        writeln!(Out::new(), "{}", serde_json::to_string_pretty(&report)?)?;
    }
    Ok(0)
}
