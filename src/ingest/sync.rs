//! `c3 sync`: make the store match files and folders.
//!
//! New files are added, changed ones replaced, unchanged ones left (their
//! metadata replaced when `--meta` differs), all as `c3 ingest` does it:
//! each document committed on its own, so a run killed at any moment and
//! run again ends in the same store. With `prune`, documents that came from
//! under the given paths and that this run did not find (deleted, renamed
//! away, now ignored, empty or binary) are removed afterwards, so the store
//! holds what a fresh ingest of the same paths would. A path part of which
//! could not be read keeps its documents (they cannot be told gone), and
//! so does a document this run failed to store.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;
use text_splitter::ChunkSizer;

use super::{absolute, ingest, IngestOptions, Input, Problem};
use crate::cascade::Compressor;
use crate::chunk::Chunker;
use crate::store::Store;
use crate::Result;

/// What a sync did, counted per document.
#[derive(Debug, Default, Serialize)]
pub struct SyncReport {
    pub new: u64,
    pub changed: u64,
    pub unchanged: u64,
    /// Unchanged texts whose metadata was replaced (`--meta`).
    pub metadata_updated: u64,
    pub removed: u64,
    /// Stored documents under the paths that `--prune` would have removed
    /// but kept, because part of their path could not be read.
    pub kept_unreadable: u64,
    pub chunks: u64,
    pub tokens: u64,
    pub seconds: f64,
    /// Files left out on purpose (binary, empty, ignored loops, outside the
    /// allowed roots).
    pub skipped: Vec<Problem>,
    /// Files that should have been stored but could not be.
    pub failed: Vec<Problem>,
    /// The watch stopped the run (a cancelled MCP call): what was
    /// committed stays, and nothing was removed.
    pub cancelled: bool,
}

impl SyncReport {
    pub fn ok(&self) -> bool {
        self.failed.is_empty()
    }
}

/// Sync `paths` into `store` (see the module doc). `opts.prune` removes
/// what is gone; `opts.shard` is not used.
pub fn sync<S: ChunkSizer>(
    store: &Store,
    model: &dyn Compressor,
    chunker: &Chunker<S>,
    paths: &[PathBuf],
    opts: &IngestOptions,
) -> Result<SyncReport> {
    let started = Instant::now();
    let inputs: Vec<Input> = paths.iter().map(|p| Input::Path(p.clone())).collect();
    let run_opts = IngestOptions {
        prune: false,
        shard: None,
        ..opts.clone()
    };
    let r = ingest(store, model, chunker, &inputs, &run_opts)?;
    let mut out = SyncReport {
        new: r.added,
        changed: r.replaced,
        unchanged: r.unchanged,
        metadata_updated: r.metadata_updated,
        chunks: r.chunks,
        tokens: r.tokens,
        skipped: r.skipped,
        failed: r.failed,
        cancelled: r.cancelled,
        ..SyncReport::default()
    };
    // A cancelled run did not visit every file: those it did not reach
    // are not gone, so nothing is removed.
    if opts.prune && !r.cancelled {
        let roots: Vec<(usize, PathBuf)> = paths
            .iter()
            .enumerate()
            .map(|(i, p)| (i, absolute(p)))
            .collect();
        let mut gone = Vec::new();
        for d in store.documents() {
            let d = d?;
            if d.source.starts_with("stdin:") || r.seen.contains(&d.source) {
                continue;
            }
            let p = Path::new(&d.source);
            let under: Vec<usize> = roots
                .iter()
                .filter(|(_, root)| p.starts_with(root))
                .map(|(i, _)| *i)
                .collect();
            if under.is_empty() {
                continue;
            }
            if under.iter().any(|i| r.unread_inputs.contains(i)) {
                out.kept_unreadable += 1;
                continue;
            }
            gone.push(d.id);
        }
        for id in gone {
            if store.remove(id)? {
                out.removed += 1;
            }
        }
    }
    out.seconds = started.elapsed().as_secs_f64();
    Ok(out)
}
