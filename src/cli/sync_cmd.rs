//! `c3 sync`: make the store match files and folders (add new, replace
//! changed, with `--prune` remove what is gone), counting each.

use std::io::Write;
use std::path::{Path, PathBuf};

use c3::chunk::Chunker;
use c3::ingest::IngestOptions;
use serde_json::json;

use super::common::{
    default_batch, load_encoder, meta_arg, open_or_create, refresh_index, ModelCtx, Out,
};

#[derive(clap::Args, Debug)]
pub struct SyncArgs {
    /// Files and directories to keep the store in step with.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Remove stored documents that came from under PATHs and are gone
    /// (deleted, renamed, now ignored, empty or binary).
    #[arg(long)]
    pub prune: bool,
    /// Metadata of every document stored or found unchanged (as `c3 ingest
    /// --meta`).
    #[arg(long = "meta", value_name = "KEY=VALUE")]
    pub meta: Vec<String>,
    /// Maximum tokens per chunk (as for `c3 ingest`).
    #[arg(long, value_name = "N")]
    pub chunk_tokens: Option<usize>,
    /// Chunks per encoder call (as for `c3 ingest`).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub batch: Option<u16>,
    /// Print the counts as JSON: `{new, changed, unchanged,
    /// metadata_updated, removed, kept_unreadable, chunks, tokens, seconds,
    /// skipped, failed}`.
    #[arg(long)]
    pub json: bool,
}

/// `c3 sync`.
pub fn run(store_dir: &Path, ctx: &ModelCtx, a: &SyncArgs) -> anyhow::Result<i32> {
    if a.paths.iter().any(|p| p.as_os_str() == "-") {
        anyhow::bail!("c3 sync reads files and folders; for standard input use `c3 ingest -`");
    }
    let metadata = meta_arg(&a.meta)?;
    let (enc, n) = load_encoder(ctx, a.chunk_tokens)?;
    let chunker = Chunker::new(enc.tokenizer(), n)?;
    let store = open_or_create(store_dir)?;
    let opts = IngestOptions {
        prune: a.prune,
        batch_size: a
            .batch
            .map_or_else(|| default_batch(enc.compressor()), usize::from),
        progress: !a.json,
        metadata,
        ..IngestOptions::default()
    };
    let r = c3::ingest::sync(&store, enc.compressor(), &chunker, &a.paths, &opts)?;
    refresh_index(&store, !a.json);
    if a.json {
        writeln!(Out::new(), "{}", serde_json::to_string_pretty(&json!(r))?)?;
    } else {
        for p in &r.failed {
            c3::note!(
                "c3: failed: {}: {}",
                c3::term::name(&p.source),
                c3::term::name(&p.error)
            );
        }
        c3::note!(
            "c3: sync: {} new, {} changed, {} unchanged{}, {} removed{}, {} failed; {} chunks in {:.1}s",
            r.new,
            r.changed,
            r.unchanged,
            match r.metadata_updated {
                0 => String::new(),
                n => format!(" ({n} with new metadata)"),
            },
            r.removed,
            match r.kept_unreadable {
                0 => String::new(),
                n => format!(" ({n} kept: part of their path could not be read)"),
            },
            r.failed.len(),
            r.chunks,
            r.seconds
        );
    }
    Ok(if r.ok() { 0 } else { 1 })
}
