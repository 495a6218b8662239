//! The BM25 full-text index of stored chunk texts (tantivy), kept under
//! `<store>/bm25/`.
//!
//! The index is derived data: sled stays the source of truth. Each commit
//! records, in tantivy's commit payload, the store generation it reflects
//! and the documents it holds. [`ChunkIndex::open_synced`] compares that to
//! the store: equal generation → use as is; otherwise add and delete whole
//! documents (ids are never reused, so a document's chunks never change
//! under the same id); unreadable, missing or foreign → rebuild from sled.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tantivy::collector::{Count, TopDocs};
use tantivy::query::{BooleanQuery, ConstScoreQuery, Occur, Query, TermQuery, TermSetQuery};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, FAST, INDEXED,
};
use tantivy::{doc, Index, IndexReader, IndexWriter, ReloadPolicy, Term};

use crate::store::Store;
use crate::{Error, Result};

/// Directory of the index inside the store directory.
pub const INDEX_DIR: &str = "bm25";
/// Bumped when the schema or analyzer changes: an older index is rebuilt.
const SCHEMA_VERSION: u32 = 1;
/// Stemmed English words; other scripts are split on non-alphanumerics.
const ANALYZER: &str = "en_stem";
const WRITER_MEMORY: usize = 50 << 20;

fn ix_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Store(format!("bm25 index: {what}: {e}"))
}

/// What the index's last commit says it holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
struct Payload {
    schema: u32,
    generation: u64,
    /// doc id → (chunk count, first 8 bytes of its content hash as hex).
    docs: BTreeMap<u64, (u32, String)>,
}

/// How [`ChunkIndex::open_synced`] brought the index up to date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncAction {
    /// Already matched the store's generation.
    Fresh,
    /// Documents added and removed to follow the store.
    Updated { added: usize, removed: usize },
    /// Built from scratch (missing, stale schema or unreadable), with why.
    Rebuilt { reason: String },
}

struct Fields {
    doc: Field,
    chunk: Field,
    text: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let doc = b.add_u64_field("doc", INDEXED | FAST);
    let chunk = b.add_u64_field("chunk", FAST);
    let indexing = TextFieldIndexing::default()
        .set_tokenizer(ANALYZER)
        .set_index_option(IndexRecordOption::WithFreqsAndPositions);
    // Text is not stored: the chunk text lives in sled.
    let text = b.add_text_field(
        "text",
        TextOptions::default().set_indexing_options(indexing),
    );
    (b.build(), Fields { doc, chunk, text })
}

/// One scored chunk.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    pub doc: u64,
    pub chunk: u32,
    pub score: f32,
}

/// An open, synced index.
pub struct ChunkIndex {
    index: Index,
    reader: IndexReader,
    fields: Fields,
}

fn dir_of(store: &Store) -> PathBuf {
    store.dir().join(INDEX_DIR)
}

/// The store's documents as the payload describes them.
fn store_docs(store: &Store) -> Result<BTreeMap<u64, (u32, String)>> {
    store
        .documents()
        .map(|d| {
            let d = d?;
            let hash = d.content_hash[..8]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>();
            Ok((d.id, (d.chunk_count, hash)))
        })
        .collect()
}

fn read_payload(index: &Index) -> Result<Payload> {
    let metas = index.load_metas().map_err(|e| ix_err("read meta", e))?;
    let text = metas
        .payload
        .ok_or_else(|| ix_err("meta", "no commit payload"))?;
    serde_json::from_str(&text).map_err(|e| ix_err("commit payload", e))
}

fn open_dir(dir: &Path) -> Result<(Index, Payload)> {
    if !dir.join("meta.json").is_file() {
        return Err(ix_err("open", "missing"));
    }
    let index = Index::open_in_dir(dir).map_err(|e| ix_err("open", e))?;
    // A foreign or older layout is not ours to update.
    if index.schema() != schema().0 {
        return Err(ix_err("open", "schema differs"));
    }
    let payload = read_payload(&index)?;
    if payload.schema != SCHEMA_VERSION {
        return Err(ix_err("open", format!("schema version {}", payload.schema)));
    }
    Ok((index, payload))
}

impl ChunkIndex {
    /// Opens the store's index and brings it in line with the store,
    /// rebuilding it from sled when it is missing or unreadable. `progress`
    /// prints what happens on stderr.
    pub fn open_synced(store: &Store, progress: bool) -> Result<(Self, SyncAction)> {
        let dir = dir_of(store);
        match open_dir(&dir) {
            Ok((index, payload)) => match Self::update(store, index, payload, progress) {
                Ok(done) => Ok(done),
                Err(e) => Self::rebuild(store, &format!("update failed ({e})"), progress),
            },
            Err(e) => {
                let reason = if dir.exists() {
                    e.to_string()
                } else {
                    "missing".to_string()
                };
                Self::rebuild(store, &reason, progress)
            }
        }
    }

    fn with_index(index: Index) -> Result<Self> {
        index
            .tokenizers()
            .get(ANALYZER)
            .ok_or_else(|| ix_err("open", format!("analyzer {ANALYZER} unavailable")))?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(|e| ix_err("reader", e))?;
        let s = index.schema();
        let field = |n: &str| s.get_field(n).map_err(|e| ix_err("schema", e));
        let fields = Fields {
            doc: field("doc")?,
            chunk: field("chunk")?,
            text: field("text")?,
        };
        Ok(Self {
            index,
            reader,
            fields,
        })
    }

    fn update(
        store: &Store,
        index: Index,
        old: Payload,
        progress: bool,
    ) -> Result<(Self, SyncAction)> {
        let generation = store.generation()?;
        let this = Self::with_index(index)?;
        // Lost segment files show up as a count that disagrees with the payload.
        let claimed: u64 = old.docs.values().map(|v| v.0 as u64).sum();
        let indexed = this.reader.searcher().num_docs();
        if indexed != claimed {
            return Err(ix_err(
                "open",
                format!("{indexed} chunks indexed, its commit says {claimed}"),
            ));
        }
        if old.generation == generation {
            return Ok((this, SyncAction::Fresh));
        }
        let want = store_docs(store)?;
        let removed: Vec<u64> = old
            .docs
            .iter()
            .filter(|(id, v)| want.get(id) != Some(v))
            .map(|(id, _)| *id)
            .collect();
        let added: Vec<u64> = want
            .iter()
            .filter(|(id, v)| old.docs.get(id) != Some(v))
            .map(|(id, _)| *id)
            .collect();
        let mut w = this.writer()?;
        for id in &removed {
            w.delete_term(Term::from_field_u64(this.fields.doc, *id));
        }
        let chunks = this.add_docs(store, &mut w, &added, progress)?;
        let payload = Payload {
            schema: SCHEMA_VERSION,
            generation,
            docs: want,
        };
        commit(w, &payload)?;
        this.reader.reload().map_err(|e| ix_err("reload", e))?;
        if progress && (chunks > 0 || !removed.is_empty()) {
            crate::note!(
                "c3: index updated: {} documents ({chunks} chunks) added, {} removed",
                added.len(),
                removed.len()
            );
        }
        Ok((
            this,
            SyncAction::Updated {
                added: added.len(),
                removed: removed.len(),
            },
        ))
    }

    /// Builds the whole index beside the old one, then swaps it in, so an
    /// interrupted rebuild leaves nothing half-written in place.
    fn rebuild(store: &Store, reason: &str, progress: bool) -> Result<(Self, SyncAction)> {
        let dir = dir_of(store);
        let tmp = store
            .dir()
            .join(format!("{INDEX_DIR}.tmp-{}", std::process::id()));
        let io = |p: &Path, source| Error::Io {
            path: p.to_path_buf(),
            err: source,
        };
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
        }
        std::fs::create_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
        let generation = store.generation()?;
        let want = store_docs(store)?;
        let total: u64 = want.values().map(|v| v.0 as u64).sum();
        if progress {
            crate::note!("c3: building the search index ({reason}): {total} chunks");
        }
        {
            let index = Index::create_in_dir(&tmp, schema().0).map_err(|e| ix_err("create", e))?;
            let this = Self::with_index(index)?;
            let mut w = this.writer()?;
            let ids: Vec<u64> = want.keys().copied().collect();
            this.add_docs(store, &mut w, &ids, progress)?;
            let payload = Payload {
                schema: SCHEMA_VERSION,
                generation,
                docs: want,
            };
            commit(w, &payload)?;
        }
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| io(&dir, e))?;
        }
        std::fs::rename(&tmp, &dir).map_err(|e| io(&dir, e))?;
        let index = Index::open_in_dir(&dir).map_err(|e| ix_err("open", e))?;
        let this = Self::with_index(index)?;
        Ok((
            this,
            SyncAction::Rebuilt {
                reason: reason.to_string(),
            },
        ))
    }

    fn writer(&self) -> Result<IndexWriter> {
        self.index
            .writer_with_num_threads(1, WRITER_MEMORY)
            .map_err(|e| ix_err("writer", e))
    }

    /// Adds every chunk of `ids`; returns how many chunks.
    fn add_docs(
        &self,
        store: &Store,
        w: &mut IndexWriter,
        ids: &[u64],
        progress: bool,
    ) -> Result<u64> {
        let mut n = 0u64;
        for (i, &id) in ids.iter().enumerate() {
            let Some(d) = store.document(id)? else {
                continue;
            };
            for ord in 0..d.chunk_count {
                let rec = store.chunk_record(id, ord)?;
                let text = store.chunk_text(&rec)?;
                w.add_document(doc!(
                    self.fields.doc => id,
                    self.fields.chunk => ord as u64,
                    self.fields.text => text,
                ))
                .map_err(|e| ix_err("add", e))?;
                n += 1;
            }
            if progress && ids.len() > 1 && (i + 1) % 50 == 0 {
                crate::note!("c3: indexed {}/{} documents", i + 1, ids.len());
            }
        }
        Ok(n)
    }

    /// Scores every chunk (restricted to `docs` when not empty) that shares
    /// at least one analyzed term with `question`, best first; ties in
    /// document order. The question is plain text: it is split by the
    /// index's analyzer, never parsed as query syntax.
    pub fn search(&self, question: &str, docs: &[u64], limit: usize) -> Result<Vec<Hit>> {
        let terms = self.terms(question)?;
        if terms.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let should: Vec<(Occur, Box<dyn Query>)> = terms
            .into_iter()
            .map(|t| {
                let q: Box<dyn Query> = Box::new(TermQuery::new(t, IndexRecordOption::WithFreqs));
                (Occur::Should, q)
            })
            .collect();
        let mut query: Box<dyn Query> = Box::new(BooleanQuery::new(should));
        if !docs.is_empty() {
            let set = TermSetQuery::new(
                docs.iter()
                    .map(|&d| Term::from_field_u64(self.fields.doc, d)),
            );
            // A filter: adds nothing to the BM25 score.
            let filter: Box<dyn Query> = Box::new(ConstScoreQuery::new(Box::new(set), 0.0));
            query = Box::new(BooleanQuery::new(vec![
                (Occur::Must, query),
                (Occur::Must, filter),
            ]));
        }
        let searcher = self.reader.searcher();
        let top = searcher
            .search(&query, &TopDocs::with_limit(limit).order_by_score())
            .map_err(|e| ix_err("search", e))?;
        let mut hits = Vec::with_capacity(top.len());
        for (score, addr) in top {
            let ff = searcher.segment_reader(addr.segment_ord).fast_fields();
            let get = |name: &str| -> Result<u64> {
                ff.u64(name)
                    .map_err(|e| ix_err("fast field", e))?
                    .first(addr.doc_id)
                    .ok_or_else(|| ix_err("fast field", format!("`{name}` has no value")))
            };
            hits.push(Hit {
                doc: get("doc")?,
                chunk: get("chunk")? as u32,
                score,
            });
        }
        hits.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then(a.doc.cmp(&b.doc))
                .then(a.chunk.cmp(&b.chunk))
        });
        Ok(hits)
    }

    /// Analyzed, de-duplicated terms of a text.
    fn terms(&self, text: &str) -> Result<Vec<Term>> {
        let mut analyzer = self
            .index
            .tokenizer_for_field(self.fields.text)
            .map_err(|e| ix_err("analyzer", e))?;
        let mut stream = analyzer.token_stream(text);
        let mut seen = BTreeSet::new();
        while stream.advance() {
            seen.insert(stream.token().text.clone());
        }
        Ok(seen
            .into_iter()
            .map(|t| Term::from_field_text(self.fields.text, &t))
            .collect())
    }

    /// Indexed chunks of one document (deleted entries not counted).
    fn count_doc(&self, doc: u64) -> Result<usize> {
        let q = TermQuery::new(
            Term::from_field_u64(self.fields.doc, doc),
            IndexRecordOption::Basic,
        );
        self.reader
            .searcher()
            .search(&q, &Count)
            .map_err(|e| ix_err("count", e))
    }
}

fn commit(mut w: IndexWriter, payload: &Payload) -> Result<()> {
    let text = serde_json::to_string(payload).map_err(|e| ix_err("payload", e))?;
    let mut prepared = w.prepare_commit().map_err(|e| ix_err("commit", e))?;
    prepared.set_payload(&text);
    prepared.commit().map_err(|e| ix_err("commit", e))?;
    w.wait_merging_threads().map_err(|e| ix_err("merge", e))?;
    Ok(())
}

/// What `c3 check` found about the index.
#[derive(Debug, Clone, Serialize)]
pub struct IndexReport {
    /// `ok`, `missing`, `stale` or `damaged`.
    pub status: String,
    /// Generation the index reflects (None when unreadable).
    pub generation: Option<u64>,
    pub store_generation: u64,
    /// Problems with an index that claims to be current.
    pub problems: Vec<String>,
}

/// Verifies the index without changing it. A missing or stale index is not
/// a problem (the next query rebuilds or updates it); an unreadable one, or
/// one that claims the store's generation but holds other chunks, is.
pub fn check(store: &Store) -> Result<IndexReport> {
    let store_generation = store.generation()?;
    let dir = dir_of(store);
    let mut r = IndexReport {
        status: "ok".into(),
        generation: None,
        store_generation,
        problems: Vec::new(),
    };
    if !dir.exists() {
        r.status = "missing".into();
        return Ok(r);
    }
    let (index, payload) = match open_dir(&dir) {
        Ok(x) => x,
        Err(e) => {
            r.status = "damaged".into();
            r.problems
                .push(format!("{e} (it will be rebuilt by the next query)"));
            return Ok(r);
        }
    };
    r.generation = Some(payload.generation);
    if payload.generation != store_generation {
        r.status = "stale".into();
        return Ok(r);
    }
    let this = match ChunkIndex::with_index(index) {
        Ok(t) => t,
        Err(e) => {
            r.status = "damaged".into();
            r.problems.push(e.to_string());
            return Ok(r);
        }
    };
    let want = store_docs(store)?;
    if want != payload.docs {
        r.problems
            .push("bm25 index: its document list differs from the store's".into());
    }
    let mut total = 0u64;
    for (id, (chunks, _)) in &want {
        total += *chunks as u64;
        match this.count_doc(*id) {
            Ok(n) if n == *chunks as usize => {}
            Ok(n) => r.problems.push(format!(
                "bm25 index: doc {id} has {n} indexed chunks, the store {chunks}"
            )),
            Err(e) => r.problems.push(e.to_string()),
        }
    }
    let indexed = this.reader.searcher().num_docs();
    if indexed != total {
        r.problems.push(format!(
            "bm25 index: {indexed} chunks indexed, the store has {total}"
        ));
    }
    if !r.problems.is_empty() {
        r.status = "damaged".into();
    }
    Ok(r)
}
