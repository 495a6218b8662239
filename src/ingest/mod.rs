//! Incremental ingest: files, directories and stdin into the store.
//!
//! Documents are processed one at a time (bounded memory: one document's
//! text and one batch of latents) and each is committed and flushed on its
//! own, so an interrupted run keeps what it finished and a re-run skips it by
//! content hash. With a [`Shard`] a run takes only its part of the files
//! (`c3 ingest --shard I/N`; `c3 merge` combines the parts).

mod progress;
mod sections;
mod shard;
mod sync;
mod walk;

use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;
use text_splitter::ChunkSizer;

use crate::cascade::Compressor;
use crate::chunk::{Chunker, DocKind};
use crate::docmeta::Metadata;
use crate::store::{DocWriter, ModelRecord, NewDoc, Store};
use crate::{Error, Result};
pub use progress::Progress;
use sections::Sections;
pub use shard::{Shard, INDEX_ENV};
pub use sync::{sync, SyncReport};
pub use walk::{discover, Candidate, Input};

/// The rule for a document name given by a person or a client (`POST
/// /v1/documents`, `c3 ingest - --name`): 1–1024 bytes, not blank, no
/// control characters (it is stored as the document's source and printed).
/// File names found on disk are kept as they are and escaped when printed.
pub fn check_name(name: &str) -> std::result::Result<(), String> {
    if name.trim().is_empty() {
        return Err("the document name is empty".into());
    }
    if name.len() > 1024 {
        return Err(format!(
            "the document name is {} bytes long; at most 1024",
            name.len()
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("the document name contains a control character".into());
    }
    Ok(())
}

/// Knobs of one ingest run.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// Remove stored documents under the given paths whose files are gone.
    pub prune: bool,
    /// Chunks per `compress` call.
    pub batch_size: usize,
    /// Draw a progress bar (only meaningful on a terminal).
    pub progress: bool,
    /// Files larger than this are read and chunked in sections of this size.
    pub section_bytes: usize,
    /// Only the documents of this shard (see [`Shard`]); each keeps as its
    /// id its position in the unsharded discovery order, so `c3 merge` can
    /// number the shards' documents as one process would.
    pub shard: Option<Shard>,
    /// The metadata of every document stored: `Some` sets it (also on an
    /// unchanged document whose metadata differs), `None` keeps what a
    /// replaced document had (a new one gets none).
    pub metadata: Option<Metadata>,
    /// Canonical directories every file must lie in (MCP's `--allow-path`
    /// roots): a file a walk reaches through a symlink out of them is
    /// skipped, named in the report. `None`: no limit.
    pub confine: Option<Vec<PathBuf>>,
    /// Told where the run stands before every encoder call and after every
    /// document; `false` stops the run there (nothing of the document in
    /// progress is committed; [`IngestReport::cancelled`]).
    pub watch: Option<Watch>,
}

/// Where an ingest run stands (bytes of the files found, documents, chunks
/// encoded so far).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Tick {
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub docs_done: u64,
    pub docs_total: u64,
    pub chunks_done: u64,
}

/// A run's progress callback: returns whether to go on.
#[derive(Clone)]
pub struct Watch(pub std::sync::Arc<dyn Fn(&Tick) -> bool + Send + Sync>);

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Watch")
    }
}

impl Default for IngestOptions {
    fn default() -> Self {
        IngestOptions {
            prune: false,
            batch_size: 8,
            progress: false,
            section_bytes: 8 << 20,
            shard: None,
            metadata: None,
            confine: None,
            watch: None,
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
    /// Unchanged documents whose metadata was replaced (`--meta`).
    pub metadata_updated: u64,
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
    /// With `--shard`: which shard, and how many of the files found it took.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardReport>,
    /// Sources this run stored, found unchanged, or failed on (what `c3
    /// sync --prune` must not remove).
    #[serde(skip)]
    pub seen: std::collections::HashSet<String>,
    /// Inputs (by index) part of which could not be read: their stored
    /// documents cannot be told gone, so `c3 sync --prune` keeps them.
    #[serde(skip)]
    pub unread_inputs: std::collections::HashSet<usize>,
    /// The watch said stop: the run ended early (what was committed
    /// stays; nothing was pruned).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cancelled: bool,
}

/// The part of the corpus one shard took.
#[derive(Debug, Serialize)]
pub struct ShardReport {
    pub index: u32,
    pub count: u32,
    /// Files of this shard.
    pub files: u64,
    /// Files all shards together see.
    pub files_total: u64,
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
    if opts.shard.is_some() && inputs.iter().any(|i| matches!(i, Input::Stdin { .. })) {
        return Err(Error::Input(
            "--shard partitions files by path: standard input (`-`) cannot be sharded".into(),
        ));
    }
    // A damaged or read-only store is refused before anything is read or
    // spooled into it.
    store.check_writable()?;
    store.bind_model(&ModelRecord {
        fingerprint: model.fingerprint(),
        latent_len: model.latent_len() as u32,
        hidden_size: model.hidden_size() as u32,
    })?;
    let mut report = IngestReport::default();
    let (found, problems) = discover(inputs);
    // Position in the full discovery order: the id a shard's document asks for.
    let files: Vec<(u64, Candidate)> = found
        .into_iter()
        .enumerate()
        .map(|(i, f)| (i as u64, f))
        .collect();
    let files_total = files.len() as u64;
    let files: Vec<(u64, Candidate)> = match &opts.shard {
        None => files,
        Some(s) => files
            .into_iter()
            .filter(|(_, f)| s.contains(&f.path.to_string_lossy()))
            .collect(),
    };
    let files: Vec<(u64, Candidate)> = match &opts.confine {
        None => files,
        Some(roots) => files
            .into_iter()
            .filter(|(_, f)| {
                let inside = roots.iter().any(|r| f.path.starts_with(r));
                if !inside {
                    report.skipped.push(Problem {
                        source: f.path.to_string_lossy().into_owned(),
                        error: "outside the allowed roots (reached through a symlink): not \
                                stored"
                            .into(),
                    });
                }
                inside
            })
            .collect(),
    };
    report.shard = opts.shard.map(|s| ShardReport {
        index: s.index,
        count: s.count,
        files: files.len() as u64,
        files_total,
    });
    for p in problems {
        if p.fatal && !p.input_missing {
            report.unread_inputs.insert(p.input);
        }
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
    remove_stale_spools(store);
    let stdin_count = inputs
        .iter()
        .filter(|i| matches!(i, Input::Stdin { .. }))
        .count();
    let total_bytes: u64 = files.iter().map(|(_, f)| f.size).sum();
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
            let source = format!("stdin:{label}");
            let kind = DocKind::from_path(Path::new(label));
            // stdin can be read only once and may be huge: spool it to a
            // file in the store, then treat it like any other file.
            let spool = store
                .dir()
                .join(format!("spool-stdin-{}", std::process::id()));
            let copied = std::fs::File::create(&spool)
                .and_then(|mut f| std::io::copy(&mut std::io::stdin().lock(), &mut f));
            match copied {
                Ok(n) if n as usize <= opts.section_bytes => {
                    let bytes = std::fs::read(&spool).map_err(|e| io_error(&spool, e));
                    let _ = std::fs::remove_file(&spool);
                    run.document(source, Body::Bytes(bytes?), None, kind, true, None)?;
                }
                Ok(_) => {
                    let r = run.document(source, Body::File(&spool), None, kind, true, None);
                    let _ = std::fs::remove_file(&spool);
                    r?;
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&spool);
                    run.fail(source, format!("cannot read: {e}"));
                }
            }
        }
    }
    for (pos, f) in &files {
        if run.report.cancelled || !run.go_on() {
            run.report.cancelled = true;
            break;
        }
        let source = f.path.to_string_lossy().into_owned();
        let meta = std::fs::metadata(&f.path);
        let mtime = meta
            .as_ref()
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as i64);
        let size = meta.map(|m| m.len()).unwrap_or(f.size);
        let body = if size as usize <= opts.section_bytes {
            match std::fs::read(&f.path) {
                Ok(bytes) => Body::Bytes(bytes),
                Err(e) => {
                    run.fail(source, format!("cannot read: {e}"));
                    run.bar.skip(f.size);
                    continue;
                }
            }
        } else {
            Body::File(&f.path)
        };
        let kind = DocKind::from_path(&f.path);
        let id = opts.shard.is_some().then_some(*pos);
        run.document(source, body, mtime, kind, f.explicit, id)?;
    }
    if opts.prune && !report.cancelled {
        prune(store, inputs, opts.shard.as_ref(), &mut report)?;
    }
    bar.finish();
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Store one document given as bytes (`c3 recover` re-ingesting a source
/// the manifest names), asking for id `id` (kept when not below the
/// store's next id). The model must already be bound. Like [`ingest`], a
/// problem with the document lands in the report; a store failure is `Err`.
#[allow(clippy::too_many_arguments)]
pub fn ingest_bytes<S: ChunkSizer>(
    store: &Store,
    model: &dyn Compressor,
    chunker: &Chunker<S>,
    source: String,
    bytes: Vec<u8>,
    mtime_ms: Option<i64>,
    id: Option<u64>,
    opts: &IngestOptions,
) -> Result<IngestReport> {
    let started = Instant::now();
    let mut report = IngestReport::default();
    let mut bar = Progress::new(opts.progress, 1, bytes.len() as u64);
    let kind = DocKind::from_path(Path::new(&source));
    let mut run = Run {
        store,
        model,
        chunker,
        opts,
        report: &mut report,
        bar: &mut bar,
    };
    run.document(source, Body::Bytes(bytes), mtime_ms, kind, true, id)?;
    bar.finish();
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// A document's bytes: in memory, or a large file read in sections.
enum Body<'p> {
    Bytes(Vec<u8>),
    File(&'p Path),
}

/// What the first pass over a document found.
struct Scan {
    size: u64,
    hash: [u8; 32],
    binary: bool,
}

impl Body<'_> {
    /// Hash, size and a NUL-byte sniff of the first 8 KiB, in one pass.
    fn scan(&self) -> std::io::Result<Scan> {
        match self {
            Body::Bytes(b) => Ok(Scan {
                size: b.len() as u64,
                hash: *blake3::hash(b).as_bytes(),
                binary: b.iter().take(8192).any(|&c| c == 0),
            }),
            Body::File(p) => {
                let mut f = std::fs::File::open(p)?;
                let mut head = Vec::with_capacity(8192);
                (&mut f).take(8192).read_to_end(&mut head)?;
                let mut h = blake3::Hasher::new();
                h.update(&head);
                h.update_reader(&mut f)?;
                Ok(Scan {
                    size: f.stream_position()?,
                    hash: *h.finalize().as_bytes(),
                    binary: head.contains(&0),
                })
            }
        }
    }
}

/// Spool files left by a killed run (the store lock means none is live).
fn remove_stale_spools(store: &Store) {
    let Ok(entries) = std::fs::read_dir(store.dir()) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with("spool-stdin-") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

fn io_error(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        err: source,
    }
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

/// Why a document's writing stopped early.
enum Stop {
    /// Reported per file; the run goes on.
    Failed(String),
    /// The watch said stop.
    Cancelled,
    /// The store failed: the run stops.
    Fatal(Error),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Fatal(e)
    }
}

impl<S: ChunkSizer> Run<'_, S> {
    /// Asks the watch whether to go on (always yes without one).
    fn go_on(&self) -> bool {
        self.opts
            .watch
            .as_ref()
            .is_none_or(|w| (w.0)(&self.bar.tick()))
    }

    fn fail(&mut self, source: String, error: String) {
        self.report.seen.insert(source.clone());
        self.bar
            .println(&format!("c3: {}: {error}", crate::term::name(&source)));
        self.report.failed.push(Problem { source, error });
    }

    fn skip(&mut self, source: String, error: String) {
        self.report.skipped.push(Problem { source, error });
    }

    /// Store one document unless it is unchanged. `explicit`: named on the
    /// command line, so an empty or binary input is a failure rather than a
    /// skip (as for files found by walking a directory). `id`: the id to
    /// ask for (a shard's discovery position; taken when not below the
    /// store's next id).
    fn document(
        &mut self,
        source: String,
        body: Body<'_>,
        mtime_ms: Option<i64>,
        kind: DocKind,
        explicit: bool,
        id: Option<u64>,
    ) -> Result<()> {
        let scan = match body.scan() {
            Ok(s) => s,
            Err(e) => {
                self.fail(source, format!("cannot read: {e}"));
                self.bar.doc_done();
                return Ok(());
            }
        };
        if scan.size == 0 || (scan.binary && !explicit) {
            let why = if scan.size == 0 {
                "empty file"
            } else {
                "binary file"
            };
            if explicit {
                self.fail(source, why.into());
            } else {
                self.skip(source, why.into());
            }
            self.bar.skip(scan.size);
            return Ok(());
        }
        let old = self.store.find_source(&source)?;
        if let Some(d) = old.as_ref().filter(|d| d.content_hash == scan.hash) {
            self.report.seen.insert(source);
            match &self.opts.metadata {
                Some(m) if self.store.set_metadata(d.id, m)? => self.report.metadata_updated += 1,
                _ => self.report.unchanged += 1,
            }
            self.bar.skip(scan.size);
            return Ok(());
        }
        let metadata = match (&self.opts.metadata, &old) {
            (Some(m), _) => m.clone(),
            (None, Some(d)) => self.store.metadata(d.id)?,
            (None, None) => Metadata::new(),
        };
        let mut writer = self.store.begin(id)?;
        let written = match body {
            Body::Bytes(b) => self.write_section(&mut writer, 0, b, kind),
            Body::File(p) => self.write_file(&mut writer, p, &scan, kind),
        };
        let done = writer.bytes_written();
        match written {
            Ok(()) => {}
            Err(Stop::Fatal(e)) => return Err(e),
            Err(Stop::Cancelled) => {
                drop(writer);
                self.report.cancelled = true;
                return Ok(());
            }
            Err(Stop::Failed(msg)) => {
                drop(writer);
                self.fail(source, msg);
                self.bar.skip(scan.size.saturating_sub(done));
                return Ok(());
            }
        }
        let t = Instant::now();
        self.report.seen.insert(source.clone());
        let rec = writer.commit(NewDoc {
            source,
            content_hash: scan.hash,
            size: scan.size,
            mtime_ms,
            ingested_at_ms: crate::store::now_ms(),
            kind: kind.label(),
            chunk_tokens: self.chunker.max_tokens() as u32,
            metadata,
        })?;
        self.report.store_seconds += t.elapsed().as_secs_f64();
        self.report.chunks += rec.chunk_count as u64;
        self.report.bytes += scan.size;
        if old.is_some() {
            self.report.replaced += 1;
        } else {
            self.report.added += 1;
        }
        self.bar.doc_done();
        Ok(())
    }

    /// Stream a large file through the writer section by section, checking
    /// it still hashes as in the first pass.
    fn write_file(
        &mut self,
        writer: &mut DocWriter<'_>,
        path: &Path,
        scan: &Scan,
        kind: DocKind,
    ) -> std::result::Result<(), Stop> {
        let read_err = |e: std::io::Error| Stop::Failed(format!("cannot read: {e}"));
        let f = std::fs::File::open(path).map_err(read_err)?;
        let mut sections = Sections::new(f, self.opts.section_bytes);
        let mut hasher = blake3::Hasher::new();
        let mut base = 0u64;
        while let Some(sec) = sections.next_section().map_err(read_err)? {
            hasher.update(&sec);
            let len = sec.len() as u64;
            self.write_section(writer, base, sec, kind)?;
            base += len;
        }
        if base != scan.size || hasher.finalize().as_bytes() != &scan.hash {
            return Err(Stop::Failed(
                "file changed while it was being ingested".into(),
            ));
        }
        Ok(())
    }

    /// Chunk, encode and write `bytes`, which start at byte `base` of the document.
    fn write_section(
        &mut self,
        writer: &mut DocWriter<'_>,
        base: u64,
        bytes: Vec<u8>,
        kind: DocKind,
    ) -> std::result::Result<(), Stop> {
        let text = String::from_utf8(bytes).map_err(|e| {
            let at = base + e.utf8_error().valid_up_to() as u64;
            Stop::Failed(format!("not UTF-8 text (invalid byte at offset {at})"))
        })?;
        let t0 = Instant::now();
        let chunks = self.chunker.split(&text, kind);
        self.report.chunk_seconds += t0.elapsed().as_secs_f64();
        for batch in chunks.chunks(self.opts.batch_size.max(1)) {
            if !self.go_on() {
                return Err(Stop::Cancelled);
            }
            let texts: Vec<&str> = batch.iter().map(|c| &text[c.start..c.end]).collect();
            let t = Instant::now();
            let latents = self
                .model
                .compress(&texts)
                .map_err(|e| Stop::Failed(format!("encoding failed: {e}")))?;
            if latents.len() != texts.len() {
                return Err(Stop::Fatal(Error::Store(format!(
                    "encoder returned {} latents for {} chunks",
                    latents.len(),
                    texts.len()
                ))));
            }
            self.report.encode_seconds += t.elapsed().as_secs_f64();
            let t = Instant::now();
            for (c, l) in batch.iter().zip(&latents) {
                let start = base + c.start as u64;
                writer
                    .put_chunk(start, c.tokens as u32, &text[c.start..c.end], l)
                    .map_err(|e| match e {
                        // The encoder's output, not the store, is at fault:
                        // this file fails, the run goes on.
                        e @ Error::NonFinite { .. } => {
                            Stop::Failed(format!("encoding failed: {e}"))
                        }
                        e => Stop::Fatal(e),
                    })?;
                self.report.tokens += c.tokens as u64;
            }
            self.report.store_seconds += t.elapsed().as_secs_f64();
            let done: usize = batch.iter().map(|c| c.end - c.start).sum();
            self.bar.advance(done as u64, batch.len() as u64);
        }
        Ok(())
    }
}

/// Remove documents whose source lies under one of the input paths and no
/// longer exists on disk; with a shard, only the documents of that shard.
fn prune(
    store: &Store,
    inputs: &[Input],
    shard: Option<&Shard>,
    report: &mut IngestReport,
) -> Result<()> {
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
        if d.source.starts_with("stdin:") || shard.is_some_and(|s| !s.contains(&d.source)) {
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
pub(crate) fn absolute(p: &Path) -> std::path::PathBuf {
    std::fs::canonicalize(p)
        .unwrap_or_else(|_| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()))
}
