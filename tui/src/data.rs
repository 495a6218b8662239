//! Read-only view of the store for the screens: header totals, documents,
//! the chunks of one document, a chunk's text and its latents.

use crate::heat::LatentMatrix;
use c3::store::{DocRecord, Stats, Store};
use candle_core::DType;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Header numbers.
#[derive(Debug, Clone, Default)]
pub struct Header {
    pub store_dir: PathBuf,
    /// Fingerprint of the model the store's latents belong to.
    pub fingerprint: Option<String>,
    pub stats: Stats,
}

/// One row of the chunk list.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkRow {
    pub ordinal: u32,
    pub start: u64,
    pub end: u64,
    pub tokens: u32,
}

/// The store as the TUI sees it: open, missing, or unreadable.
pub struct StoreView {
    pub store: Option<Arc<Store>>,
    /// Why there is no store (missing directory, locked, corrupt).
    pub problem: Option<String>,
    pub header: Header,
    pub docs: Vec<DocRecord>,
}

impl StoreView {
    /// Opens an existing store; never creates one. Failure is kept as a
    /// message for the screen, not returned.
    pub fn open(dir: &Path) -> Self {
        match Store::open_existing(dir) {
            Ok(store) => Self::from_store(Arc::new(store)),
            Err(e) => StoreView {
                store: None,
                problem: Some(e.to_string()),
                header: Header {
                    store_dir: dir.to_path_buf(),
                    ..Header::default()
                },
                docs: Vec::new(),
            },
        }
    }

    pub fn from_store(store: Arc<Store>) -> Self {
        let mut view = StoreView {
            header: Header {
                store_dir: store.dir().to_path_buf(),
                ..Header::default()
            },
            store: Some(store),
            problem: None,
            docs: Vec::new(),
        };
        if let Err(e) = view.reload() {
            view.problem = Some(e.to_string());
        }
        view
    }

    /// Re-reads totals and the document list.
    pub fn reload(&mut self) -> c3::Result<()> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        self.header.stats = store.stats()?;
        self.header.fingerprint = store.meta()?.model.map(|m| m.fingerprint);
        let mut docs = store.documents().collect::<c3::Result<Vec<_>>>()?;
        docs.sort_by(|a, b| a.source.cmp(&b.source).then(a.id.cmp(&b.id)));
        self.docs = docs;
        Ok(())
    }

    pub fn chunks(&self, doc: &DocRecord) -> c3::Result<Vec<ChunkRow>> {
        let Some(store) = &self.store else {
            return Ok(Vec::new());
        };
        (0..doc.chunk_count)
            .map(|i| {
                let r = store.chunk_record(doc.id, i)?;
                Ok(ChunkRow {
                    ordinal: r.ordinal,
                    start: r.start,
                    end: r.end,
                    tokens: r.tokens,
                })
            })
            .collect()
    }

    pub fn chunk_text(&self, doc: u64, ordinal: u32) -> c3::Result<String> {
        match &self.store {
            Some(store) => store.chunk_text(&store.chunk_record(doc, ordinal)?),
            None => Ok(String::new()),
        }
    }

    pub fn latent(&self, doc: u64, ordinal: u32) -> c3::Result<Option<LatentMatrix>> {
        let Some(store) = &self.store else {
            return Ok(None);
        };
        let t = store.latent(doc, ordinal)?;
        let (rows, dims) = t.dims2()?;
        let values = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        Ok(Some(LatentMatrix::new(rows, dims, values)))
    }
}

/// Short name of a document for lists: the file name, or the stdin label.
pub fn short_source(source: &str) -> &str {
    source
        .rsplit(['/', '\\'])
        .find(|s| !s.is_empty())
        .unwrap_or(source)
}
