//! One input of `c3 merge`: a store directory or a `c3 export` file, read
//! document by document.

use std::path::{Path, PathBuf};

use crate::docmeta::Metadata;
use crate::store::export::{ExportDoc, ExportFile};
use crate::store::{DocRecord, DocWriter, ModelRecord, NewDoc, Store};
use crate::{Error, Result};

enum Source {
    /// A store, and the bytes read from it since it was (re)opened.
    Store(Box<Store>, u64),
    Export(ExportFile),
    /// Between closing and reopening a store (only seen if the reopen
    /// failed, and then reported).
    Closed,
}

/// An opened input.
pub struct MergeInput {
    /// As given on the command line (for messages and the report).
    pub label: String,
    /// Canonical path (tie-breaks and duplicate detection).
    pub canonical: PathBuf,
    source: Source,
    /// Bytes read from an input store between reopens.
    reopen_after: u64,
}

/// A document of an input: what the plan needs to choose and order it.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Index of its input.
    pub input: usize,
    /// Its id in that input.
    pub id: u64,
    /// Position in an export's document list (unused for stores).
    pub at: usize,
    pub source: String,
    pub content_hash: [u8; 32],
    pub size: u64,
    pub mtime_ms: Option<i64>,
    pub ingested_at_ms: i64,
    pub kind: String,
    pub chunk_tokens: u32,
    pub chunk_count: u32,
    /// Its metadata, kept with it in the merged store.
    pub metadata: Metadata,
}

impl Entry {
    pub fn new_doc(&self) -> NewDoc {
        NewDoc {
            source: self.source.clone(),
            content_hash: self.content_hash,
            size: self.size,
            mtime_ms: self.mtime_ms,
            ingested_at_ms: self.ingested_at_ms,
            kind: self.kind.clone(),
            chunk_tokens: self.chunk_tokens,
            metadata: self.metadata.clone(),
        }
    }

    fn of_record(input: usize, d: DocRecord, metadata: Metadata) -> Self {
        Entry {
            input,
            id: d.id,
            at: 0,
            source: d.source,
            content_hash: d.content_hash,
            size: d.size,
            mtime_ms: d.mtime_ms,
            ingested_at_ms: d.ingested_at_ms,
            kind: d.kind,
            chunk_tokens: d.chunk_tokens,
            chunk_count: d.chunk_count,
            metadata,
        }
    }

    fn of_export(input: usize, at: usize, d: &ExportDoc) -> Self {
        Entry {
            input,
            id: d.id,
            at,
            source: d.source.clone(),
            content_hash: d.content_hash,
            size: d.size,
            mtime_ms: d.mtime_ms,
            ingested_at_ms: d.ingested_at_ms,
            kind: d.kind.clone(),
            chunk_tokens: d.chunk_tokens,
            chunk_count: d.chunk_count,
            metadata: d.metadata.clone().unwrap_or_default(),
        }
    }
}

/// sled's page cache for each input store: the merge reads every record
/// once, so caching buys nothing.
pub const SOURCE_CACHE_BYTES: u64 = 16 << 20;

/// An input store is closed and opened again after this many bytes read:
/// sled 0.34 keeps what it has read resident whatever its cache capacity
/// (the peak grew with the merge, 1.3 → 2.4 GiB from 10k to 20k chunks,
/// with a 16 MiB or a 256 MiB cache alike), and a reopen hands it back.
/// Env `C3_MERGE_REOPEN_BYTES` overrides it (the tests use 1: a reopen
/// before every document).
const REOPEN_AFTER_BYTES: u64 = 32 << 20;

fn reopen_after() -> Result<u64> {
    match std::env::var("C3_MERGE_REOPEN_BYTES") {
        Err(_) => Ok(REOPEN_AFTER_BYTES),
        Ok(v) => v
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| {
                Error::Input(format!(
                    "C3_MERGE_REOPEN_BYTES={v:?}: expected a positive number of bytes"
                ))
            }),
    }
}

impl MergeInput {
    /// Open `path`: a directory is a store (which must exist), a file an export.
    pub fn open(path: &Path) -> Result<Self> {
        let label = path.display().to_string();
        let canonical = std::fs::canonicalize(path).map_err(|e| {
            Error::Input(format!(
                "{label}: cannot open merge input ({e}): expected a store directory or a `c3 export` file"
            ))
        })?;
        let source = if canonical.is_dir() {
            let store = Store::open_existing_with_cache(&canonical, SOURCE_CACHE_BYTES)
                .map_err(|e| Error::Input(format!("{label}: {e}")))?;
            // Merging what is left of a damaged store would make its loss
            // permanent in the output: repair it first.
            if let Some(d) = store.damage() {
                return Err(Error::Damaged {
                    dir: canonical,
                    summary: d.summary(),
                });
            }
            Source::Store(Box::new(store), 0)
        } else {
            Source::Export(ExportFile::open(&canonical)?)
        };
        Ok(MergeInput {
            label,
            canonical,
            source,
            reopen_after: reopen_after()?,
        })
    }

    pub fn kind(&self) -> &'static str {
        match self.source {
            Source::Store(..) | Source::Closed => "store",
            Source::Export(_) => "export",
        }
    }

    /// The model whose latents it holds (`None`: a store never ingested into).
    pub fn model(&self) -> Result<Option<ModelRecord>> {
        Ok(match &self.source {
            Source::Store(s, _) => s.meta()?.model,
            Source::Export(e) => Some(e.model().clone()),
            Source::Closed => return Err(self.closed()),
        })
    }

    /// Its documents, metadata only.
    pub fn entries(&self, input: usize) -> Result<Vec<Entry>> {
        match &self.source {
            Source::Store(s, _) => s
                .documents_with_metadata()
                .map(|d| d.map(|(d, m)| Entry::of_record(input, d, m)))
                .collect(),
            Source::Export(e) => Ok(e
                .docs()
                .iter()
                .enumerate()
                .map(|(at, d)| Entry::of_export(input, at, d))
                .collect()),
            Source::Closed => Err(self.closed()),
        }
    }

    fn closed(&self) -> Error {
        Error::Store(format!(
            "{}: the input store could not be reopened",
            self.label
        ))
    }

    /// Closes and opens an input store again (see [`REOPEN_AFTER_BYTES`]).
    fn reopen(&mut self) -> Result<()> {
        if let Source::Store(..) = &self.source {
            // Drop the old handle first: sled allows one per database.
            self.source = Source::Closed;
            self.source = Source::Store(
                Box::new(
                    Store::open_existing_with_cache(&self.canonical, SOURCE_CACHE_BYTES)
                        .map_err(|e| Error::Input(format!("{}: reopening: {e}", self.label)))?,
                ),
                0,
            );
        }
        Ok(())
    }

    /// Write `e`'s chunks and latents through `w`, one chunk at a time.
    /// Returns the text and latent bytes copied.
    pub fn copy(&mut self, e: &Entry, w: &mut DocWriter<'_>) -> Result<u64> {
        match &self.source {
            Source::Store(_, read) if *read >= self.reopen_after => self.reopen()?,
            Source::Closed => return Err(self.closed()),
            _ => {}
        }
        match &mut self.source {
            Source::Store(s, read) => {
                let here = |err: Error| {
                    Error::Store(format!(
                        "{}: doc {} ({}): {err}",
                        self.label, e.id, e.source
                    ))
                };
                let mut bytes = 0u64;
                for ord in 0..e.chunk_count {
                    let chunk = s.chunk_record(e.id, ord).map_err(here)?;
                    let lat = s.latent_record(e.id, ord).map_err(here)?;
                    bytes += (chunk.end - chunk.start) + lat.data.len() as u64;
                    w.put_raw(&chunk, &lat).map_err(here)?;
                }
                *read += bytes;
                Ok(bytes)
            }
            Source::Export(f) => {
                let doc = f.docs()[e.at].clone();
                f.copy_doc(&doc, w)
            }
            Source::Closed => Err(self.closed()),
        }
    }
}
