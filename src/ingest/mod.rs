//! Incremental ingest: files, directories and stdin into the store.
//!
//! Documents are processed one at a time (bounded memory: one document's
//! text and one batch of latents) and each is committed and flushed on its
//! own, so an interrupted run keeps what it finished and a re-run skips it by
//! content hash.

mod progress;
mod walk;

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;
use text_splitter::ChunkSizer;

use crate::chunk::{Chunker, DocKind};
use crate::encode::Compressor;
use crate::store::{ModelRecord, NewDoc, Store};
use crate::{Error, Result};
pub use progress::Progress;
pub use walk::{discover, Candidate, Input};

/// Knobs of one ingest run.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// Remove stored documents under the given paths whose files are gone.
    pub prune: bool,
    /// Chunks per `compress` call.
    pub batch_size: usize,
    /// Draw a progress bar (only meaningful on a terminal).
    pub progress: bool,
}

impl Default for IngestOptions {
    fn default() -> Self {
        IngestOptions {
            prune: false,
            batch_size: 8,
            progress: false,
        }
    }
}

/// A document that was not stored, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub source: String,
    pub error: String,
}

/// Machine-readable summary of a run.
#[derive(Debug, Default, Serialize)]
pub struct IngestReport {
    pub added: u64,
    pub replaced: u64,
    pub unchanged: u64,
    pub pruned: u64,
    pub chunks: u64,
    pub tokens: u64,
    /// Bytes of documents written (not of unchanged ones).
    pub bytes: u64,
    pub seconds: f64,
    pub chunk_seconds: f64,
    pub encode_seconds: f64,
    pub store_seconds: f64,
    /// Files left out on purpose (binary, empty in a walked directory, symlink loops).
    pub skipped: Vec<Problem>,
    /// Files that should have been stored but could not be.
    pub failed: Vec<Problem>,
}

impl IngestReport {
    pub fn ok(&self) -> bool {
        self.failed.is_empty()
    }
}

/// Binds the model, walks the inputs and stores every changed document.
/// Per-file problems land in the report; only store failures return `Err`.
pub fn ingest<S: ChunkSizer>(
    store: &Store,
    model: &dyn Compressor,
    chunker: &Chunker<S>,
    inputs: &[Input],
    opts: &IngestOptions,
) -> Result<IngestReport> {
    let started = Instant::now();
    store.bind_model(&ModelRecord {
        fingerprint: model.fingerprint(),
        latent_len: model.latent_len() as u32,
        hidden_size: model.hidden_size() as u32,
    })?;
    let mut report = IngestReport::default();
    let (files, problems) = discover(inputs);
    for p in problems {
        let entry = Problem {
            source: p.source,
            error: p.error,
        };
        if p.fatal {
            report.failed.push(entry);
        } else {
            report.skipped.push(entry);
        }
    }
    let stdin_count = inputs
        .iter()
        .filter(|i| matches!(i, Input::Stdin { .. }))
        .count();
    let total_bytes: u64 = files.iter().map(|f| f.size).sum();
    let mut bar = Progress::new(opts.progress, files.len() + stdin_count, total_bytes);
    let mut run = Run {
        store,
        model,
        chunker,
        opts,
        report: &mut report,
        bar: &mut bar,
    };
    for input in inputs {
        if let Input::Stdin { label } = input {
            let mut buf = Vec::new();
            let source = format!("stdin:{label}");
            match std::io::stdin().read_to_end(&mut buf) {
                Ok(_) => run.document(
                    source,
                    buf,
                    None,
                    DocKind::from_path(Path::new(label)),
                    true,
                )?,
                Err(e) => run.fail(source, format!("cannot read: {e}")),
            }
        }
    }
    for f in &files {
        let source = f.path.to_string_lossy().into_owned();
        let mtime = std::fs::metadata(&f.path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as i64);
        match std::fs::read(&f.path) {
            Ok(bytes) => {
                if !f.explicit && bytes.iter().take(8192).any(|&b| b == 0) {
                    run.skip(source, "binary file".into());
                    run.bar.skip(f.size);
                    continue;
                }
                run.document(
                    source,
                    bytes,
                    mtime,
                    DocKind::from_path(&f.path),
                    f.explicit,
                )?;
            }
            Err(e) => {
                run.fail(source, format!("cannot read: {e}"));
                run.bar.skip(f.size);
            }
        }
    }
    if opts.prune {
        prune(store, inputs, &mut report)?;
    }
    bar.finish();
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// State of one ingest run.
struct Run<'a, S> {
    store: &'a Store,
    model: &'a dyn Compressor,
    chunker: &'a Chunker<S>,
    opts: &'a IngestOptions,
    report: &'a mut IngestReport,
    bar: &'a mut Progress,
}

impl<S: ChunkSizer> Run<'_, S> {
    fn fail(&mut self, source: String, error: String) {
        self.bar.println(&format!("c3: {source}: {error}"));
        self.report.failed.push(Problem { source, error });
    }

    fn skip(&mut self, source: String, error: String) {
        self.report.skipped.push(Problem { source, error });
    }

    /// Store one document unless it is unchanged. `strict`: an empty input
    /// is a failure (named explicitly) rather than a skip (found by walking).
    fn document(
        &mut self,
        source: String,
        bytes: Vec<u8>,
        mtime_ms: Option<i64>,
        kind: DocKind,
        strict: bool,
    ) -> Result<()> {
        let size = bytes.len() as u64;
        if bytes.is_empty() {
            if strict {
                self.fail(source, "empty input".into());
            } else {
                self.skip(source, "empty file".into());
            }
            self.bar.doc_done();
            return Ok(());
        }
        let text = match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                let at = e.utf8_error().valid_up_to();
                self.fail(
                    source,
                    format!("not UTF-8 text (invalid byte at offset {at})"),
                );
                self.bar.skip(size);
                return Ok(());
            }
        };
        let hash = *blake3::hash(text.as_bytes()).as_bytes();
        let old = self.store.find_source(&source)?;
        if old.as_ref().is_some_and(|d| d.content_hash == hash) {
            self.report.unchanged += 1;
            self.bar.skip(size);
            return Ok(());
        }
        let t0 = Instant::now();
        let chunks = self.chunker.split(&text, kind);
        self.report.chunk_seconds += t0.elapsed().as_secs_f64();
        let mut writer = self.store.begin(None)?;
        let mut encode = Duration::ZERO;
        let mut store_time = Duration::ZERO;
        for batch in chunks.chunks(self.opts.batch_size.max(1)) {
            let texts: Vec<&str> = batch.iter().map(|c| &text[c.start..c.end]).collect();
            let t = Instant::now();
            let latents = match self.model.compress(&texts) {
                Ok(l) if l.len() == texts.len() => l,
                Ok(l) => {
                    let msg = format!(
                        "encoder returned {} latents for {} chunks",
                        l.len(),
                        texts.len()
                    );
                    return Err(Error::Store(msg));
                }
                Err(e) => {
                    // The model failed on this text: report it, keep the rest.
                    drop(writer);
                    self.fail(source, format!("encoding failed: {e}"));
                    self.bar.skip(size);
                    return Ok(());
                }
            };
            encode += t.elapsed();
            let t = Instant::now();
            for (c, l) in batch.iter().zip(&latents) {
                writer.put_chunk(c.start as u64, c.tokens as u32, &text[c.start..c.end], l)?;
                self.report.tokens += c.tokens as u64;
            }
            store_time += t.elapsed();
            let done: usize = batch.iter().map(|c| c.end - c.start).sum();
            self.bar.advance(done as u64, batch.len() as u64);
        }
        let t = Instant::now();
        let rec = writer.commit(NewDoc {
            source,
            content_hash: hash,
            size,
            mtime_ms,
            ingested_at_ms: crate::store::now_ms(),
            kind: kind.label(),
            chunk_tokens: self.chunker.max_tokens() as u32,
        })?;
        store_time += t.elapsed();
        self.report.encode_seconds += encode.as_secs_f64();
        self.report.store_seconds += store_time.as_secs_f64();
        self.report.chunks += rec.chunk_count as u64;
        self.report.bytes += size;
        if old.is_some() {
            self.report.replaced += 1;
        } else {
            self.report.added += 1;
        }
        self.bar.doc_done();
        Ok(())
    }
}

/// Remove documents whose source lies under one of the input paths and no
/// longer exists on disk.
fn prune(store: &Store, inputs: &[Input], report: &mut IngestReport) -> Result<()> {
    let roots: Vec<std::path::PathBuf> = inputs
        .iter()
        .filter_map(|i| match i {
            Input::Path(p) => Some(absolute(p)),
            Input::Stdin { .. } => None,
        })
        .collect();
    let mut gone = Vec::new();
    for d in store.documents() {
        let d = d?;
        if d.source.starts_with("stdin:") {
            continue;
        }
        let p = Path::new(&d.source);
        if roots.iter().any(|r| p.starts_with(r)) && !p.exists() {
            gone.push(d.id);
        }
    }
    for id in gone {
        if store.remove(id)? {
            report.pruned += 1;
        }
    }
    Ok(())
}

/// Canonical form of a path that may no longer exist: canonicalize what
/// exists, or make it absolute.
fn absolute(p: &Path) -> std::path::PathBuf {
    std::fs::canonicalize(p)
        .unwrap_or_else(|_| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()))
}
