//! `c3 merge`: combine stores and exports of one model into a new store.
//!
//! 1. Open every input (a store directory or a `c3 export` file) and read
//!    its document list (metadata only); every input must hold the same
//!    model, or the merge is refused naming the input that differs.
//! 2. Plan ([`plan`]): the newer document of each source wins, and the kept
//!    documents get ids in a fixed order, so the result does not depend on
//!    the order of the inputs or on which shard finished first.
//! 3. Copy each planned document, one chunk (text + latents) at a time,
//!    into the staging store `DIR.merging` ([`staging`]), committing each
//!    document on its own with its planned id: c3 holds one chunk at a time
//!    (beyond that, memory is sled's caches: flat for export inputs, growing
//!    with open store inputs; docs/deploy.md), and a killed
//!    merge resumes after the last committed document.
//! 4. Rebuild the BM25 index there, then rename the staging store to DIR.

pub mod input;
pub mod plan;
mod progress;
pub mod staging;

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::retrieve::index::ChunkIndex;
use crate::store::layout::family_label;
use crate::store::{ModelRecord, Store};
use crate::{Error, Result};
use input::MergeInput;
pub use plan::Replacement;

/// One input as the report lists it.
#[derive(Debug, Serialize)]
pub struct InputReport {
    pub path: String,
    pub kind: &'static str,
    pub documents: u64,
}

/// What a merge did.
#[derive(Debug, Serialize)]
pub struct MergeReport {
    pub out: String,
    pub inputs: Vec<InputReport>,
    pub documents: u64,
    pub chunks: u64,
    /// Sources found in several inputs with different content: the newer kept.
    pub replaced: Vec<Replacement>,
    /// Extra copies of a document with the same content (dropped).
    pub duplicates: u64,
    /// Documents found already merged by an earlier, interrupted run.
    pub resumed_documents: u64,
    /// Chunks copied by this run (not counting resumed ones).
    pub copied_chunks: u64,
    /// Text and latent bytes copied by this run.
    pub copied_bytes: u64,
    pub seconds: f64,
    pub copy_seconds: f64,
    pub index_seconds: f64,
    pub chunks_per_second: f64,
}

/// Merge `inputs` into the new store `out`. `progress`: draw progress on
/// stderr (a bar on a terminal, else a line every 30 s).
/// sled's page cache for the store being written (see
/// [`input::SOURCE_CACHE_BYTES`]).
const OUTPUT_CACHE_BYTES: u64 = 64 << 20;

pub fn merge(out: &Path, inputs: &[PathBuf], progress: bool) -> Result<MergeReport> {
    let started = Instant::now();
    if inputs.is_empty() {
        return Err(Error::Input("c3 merge needs at least one input".into()));
    }
    staging::check_out_free(out)?;
    let staged = staging::staging_dir(out)?;
    let out_abs = std::path::absolute(out).unwrap_or_else(|_| out.to_path_buf());
    // Canonical paths first: the same store named twice would otherwise
    // fail on its own lock.
    let mut seen: Vec<(PathBuf, &Path)> = Vec::with_capacity(inputs.len());
    for p in inputs {
        let Ok(c) = std::fs::canonicalize(p) else {
            continue; // `MergeInput::open` reports it
        };
        if let Some((_, prev)) = seen.iter().find(|(s, _)| *s == c) {
            return Err(Error::Input(format!(
                "{}: given twice (also as {})",
                p.display(),
                prev.display()
            )));
        }
        if c == out_abs || c == staged {
            return Err(Error::Input(format!(
                "{}: an input cannot be the merge's output",
                p.display()
            )));
        }
        seen.push((c, p));
    }
    let mut opened: Vec<MergeInput> = inputs
        .iter()
        .map(|p| MergeInput::open(p))
        .collect::<Result<_>>()?;
    let model = common_model(&opened)?;
    let labels: Vec<String> = opened.iter().map(|i| i.label.clone()).collect();
    let paths: Vec<String> = opened
        .iter()
        .map(|i| i.canonical.to_string_lossy().into_owned())
        .collect();
    let mut entries = Vec::new();
    let mut input_reports = Vec::new();
    for (n, i) in opened.iter().enumerate() {
        let es = i.entries(n)?;
        input_reports.push(InputReport {
            path: i.label.clone(),
            kind: i.kind(),
            documents: es.len() as u64,
        });
        entries.extend(es);
    }
    let plan = plan::plan(entries, &labels, &paths, &model.fingerprint);
    let total_chunks: u64 = plan.docs.iter().map(|d| d.chunk_count as u64).sum();
    staging::prepare(&staged, &plan.digest, plan.docs.len() as u64, &labels)?;

    // The output is written once, in order: a small cache is enough.
    let store = Store::open_with_cache(&staged, OUTPUT_CACHE_BYTES)?;
    store.bind_model(&model)?;
    let done = store.next_doc_id()?;
    if done > plan.docs.len() as u64 {
        return Err(Error::Store(format!(
            "{}: holds {done} documents, its plan only {}; remove it to start over",
            staged.display(),
            plan.docs.len()
        )));
    }
    let mut resumed_chunks = 0u64;
    for (id, e) in plan.docs.iter().enumerate().take(done as usize) {
        match store.document(id as u64)? {
            Some(d) if d.source == e.source && d.content_hash == e.content_hash => {
                resumed_chunks += d.chunk_count as u64;
            }
            _ => {
                return Err(Error::Store(format!(
                    "{}: doc {id} is not the planned {}; remove it to start over",
                    staged.display(),
                    e.source
                )))
            }
        }
    }
    let t_copy = Instant::now();
    let mut bar = progress::Progress::new(progress, total_chunks, resumed_chunks);
    let mut copied_chunks = 0u64;
    let mut copied_bytes = 0u64;
    for (id, e) in plan.docs.iter().enumerate().skip(done as usize) {
        let mut w = store.begin(Some(id as u64))?;
        if w.id() != id as u64 {
            return Err(Error::Store(format!(
                "{}: doc {id} cannot be written in order (next id {})",
                staged.display(),
                w.id()
            )));
        }
        copied_bytes += opened[e.input].copy(e, &mut w)?;
        let rec = w.commit(e.new_doc())?;
        copied_chunks += rec.chunk_count as u64;
        bar.advance(
            rec.chunk_count as u64,
            id as u64 + 1,
            plan.docs.len() as u64,
        );
    }
    bar.finish();
    let copy_seconds = t_copy.elapsed().as_secs_f64();
    drop(opened);
    let t_index = Instant::now();
    ChunkIndex::open_synced(&store, progress)?;
    let index_seconds = t_index.elapsed().as_secs_f64();
    store.flush()?;
    drop(store);
    staging::finish(&staged, out)?;
    Ok(MergeReport {
        out: out.display().to_string(),
        inputs: input_reports,
        documents: plan.docs.len() as u64,
        chunks: total_chunks,
        replaced: plan.replaced,
        duplicates: plan.duplicates,
        resumed_documents: done,
        copied_chunks,
        copied_bytes,
        seconds: started.elapsed().as_secs_f64(),
        copy_seconds,
        index_seconds,
        chunks_per_second: copied_chunks as f64 / copy_seconds.max(1e-9),
    })
}

/// The one model all inputs hold; inputs that never held one (empty
/// stores) are passed over.
fn common_model(inputs: &[MergeInput]) -> Result<ModelRecord> {
    let mut first: Option<(ModelRecord, &str)> = None;
    for i in inputs {
        let Some(m) = i.model()? else { continue };
        match &first {
            None => first = Some((m, &i.label)),
            Some((f, label)) if *f != m => {
                return Err(Error::Input(format!(
                    "{}: holds {} model {} (latents {} x {}), but {label} holds {} model {} \
                     (latents {} x {}): latents of different models cannot be merged",
                    i.label,
                    family_label(&m.fingerprint),
                    m.fingerprint,
                    m.latent_len,
                    m.hidden_size,
                    family_label(&f.fingerprint),
                    f.fingerprint,
                    f.latent_len,
                    f.hidden_size
                )))
            }
            Some(_) => {}
        }
    }
    first
        .map(|(m, _)| m)
        .ok_or_else(|| Error::Input("nothing to merge: no input holds any model's latents".into()))
}
