//! The BM25 full-text index of stored chunk texts (tantivy), kept under
//! `<store>/bm25/`.
//!
//! The index is derived data: sled stays the source of truth. Each commit
//! records, in tantivy's commit payload, the store generation it reflects
//! and the documents it holds. [`ChunkIndex::open_synced`] compares that to
//! the store: equal generation → use as is (after checking every file's
//! checksum); otherwise add and delete whole documents (ids are never
//! reused, so a document's chunks never change under the same id);
//! unreadable, damaged, missing or foreign → rebuild from sled, with a
//! warning when it was damaged.
//!
//! Every call into tantivy runs behind the panic guard
//! (`c3_migrations::guard`): damaged index files that make tantivy panic
//! are treated like any other damage (rebuilt), never exit 101.
//!
//! A store that refuses writes (damaged, or opened read-only) never has
//! its index directory written: its index is used only if it is current
//! and intact, else one is built in memory for this process. A damaged
//! store's index is evidence (it records the generation the store had).

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
use c3_migrations::guard;

/// Directory of the index inside the store directory.
pub const INDEX_DIR: &str = crate::store::INDEX_DIR;
/// Bumped when the schema or analyzer changes: an older index is rebuilt.
const SCHEMA_VERSION: u32 = 1;
/// Stemmed English words; other scripts are split on non-alphanumerics.
const ANALYZER: &str = "en_stem";
const WRITER_MEMORY: usize = 50 << 20;

fn ix_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Store(format!("bm25 index: {what}: {e}"))
}

/// Run a tantivy call behind the panic guard.
fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    guard::catch(f).unwrap_or_else(|panic| Err(ix_err(what, format!("tantivy panicked: {panic}"))))
}

/// Files of the index whose checksum fails (tantivy's footer CRC).
fn damaged_files(index: &Index) -> Result<Vec<String>> {
    let bad = index
        .validate_checksum()
        .map_err(|e| ix_err("checksum", e))?;
    let mut names: Vec<String> = bad.iter().map(|p| p.display().to_string()).collect();
    names.sort();
    Ok(names)
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
    checked(index)
}

/// The index in `dir` read into memory: opening it there writes nothing
/// (tantivy's reader takes a lock file in the index directory), for a store
/// that refuses writes.
fn open_dir_in_memory(dir: &Path) -> Result<(Index, Payload)> {
    use tantivy::directory::{Directory, RamDirectory};
    if !dir.join("meta.json").is_file() {
        return Err(ix_err("open", "missing"));
    }
    let ram = RamDirectory::create();
    let entries = std::fs::read_dir(dir).map_err(|e| ix_err("open", e))?;
    for e in entries {
        let e = e.map_err(|e| ix_err("open", e))?;
        let name = e.file_name();
        let is_lock = name.to_string_lossy().starts_with(".tantivy-");
        if is_lock || !e.file_type().map_err(|e| ix_err("open", e))?.is_file() {
            continue;
        }
        let data = std::fs::read(e.path()).map_err(|e| ix_err("open", e))?;
        ram.atomic_write(Path::new(&name), &data)
            .map_err(|e| ix_err("open", e))?;
    }
    checked(Index::open(ram).map_err(|e| ix_err("open", e))?)
}

/// An opened index that is ours, with its commit payload.
fn checked(index: Index) -> Result<(Index, Payload)> {
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
        // One sync at a time in this process: `c3 serve` syncs from its
        // model thread (ask, ingest) and its blocking pool (search) at
        // once, and tantivy allows one writer per index.
        static SYNC: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one = SYNC.lock().unwrap_or_else(|p| p.into_inner());
        if !store.writable() {
            return Self::open_read_only(store, progress);
        }
        let dir = dir_of(store);
        match guarded("open", || open_dir(&dir)) {
            Ok((index, payload)) => {
                match guarded("update", || Self::update(store, index, payload, progress)) {
                    Ok(done) => Ok(done),
                    Err(e) => {
                        if progress {
                            eprintln!("c3: warning: search index damaged ({e}); rebuilding it from the store");
                        }
                        guarded("rebuild", || {
                            Self::rebuild(store, &format!("damaged: {e}"), progress)
                        })
                    }
                }
            }
            Err(e) => {
                let reason = if dir.exists() {
                    if progress {
                        eprintln!("c3: warning: search index unreadable ({e}); rebuilding it from the store");
                    }
                    format!("damaged: {e}")
                } else {
                    "missing".to_string()
                };
                guarded("rebuild", || Self::rebuild(store, &reason, progress))
            }
        }
    }

    /// The index of a store that refuses writes: its own when current and
    /// intact (read, never written), else one built in memory.
    fn open_read_only(store: &Store, progress: bool) -> Result<(Self, SyncAction)> {
        let dir = dir_of(store);
        let current = guarded("open", || {
            let (index, payload) = open_dir_in_memory(&dir)?;
            if payload.generation != store.generation()? || payload.docs != store_docs(store)? {
                return Err(ix_err("open", "not current"));
            }
            if !damaged_files(&index)?.is_empty() {
                return Err(ix_err("open", "damaged"));
            }
            Self::with_index(index)
        });
        if let Ok(this) = current {
            return Ok((this, SyncAction::Fresh));
        }
        let reason = "the store refuses writes: built in memory, its index directory untouched";
        if progress {
            eprintln!("c3: search index: {reason}");
        }
        guarded("build in memory", || {
            let this = Self::with_index(Index::create_in_ram(schema().0))?;
            let mut w = this.writer()?;
            let want = store_docs(store)?;
            let ids: Vec<u64> = want.keys().copied().collect();
            this.add_docs(store, &mut w, &ids, false)?;
            let payload = Payload {
                schema: SCHEMA_VERSION,
                generation: store.generation()?,
                docs: want,
            };
            commit(w, &payload)?;
            this.reader.reload().map_err(|e| ix_err("reload", e))?;
            Ok((
                this,
                SyncAction::Rebuilt {
                    reason: reason.to_string(),
                },
            ))
        })
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
        let want = store_docs(store)?;
        if old.generation == generation {
            // The index claims to be current: make sure its files are what
            // tantivy wrote (a flipped bit otherwise ranks silently wrong),
            // and its commit (meta.json, which no checksum covers) lists
            // the store's documents.
            let bad = damaged_files(&this.index)?;
            if !bad.is_empty() {
                return Err(ix_err("checksum", format!("damaged files {bad:?}")));
            }
            if old.docs != want {
                return Err(ix_err("open", "its document list differs from the store's"));
            }
            return Ok((this, SyncAction::Fresh));
        }
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
        guarded("search", || self.search_unguarded(question, docs, limit))
    }

    fn search_unguarded(&self, question: &str, docs: &[u64], limit: usize) -> Result<Vec<Hit>> {
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
    guarded("check", || check_unguarded(store, store_generation)).or_else(|e| {
        Ok(IndexReport {
            status: "damaged".into(),
            generation: None,
            store_generation,
            problems: vec![format!("{e} (it will be rebuilt by the next query)")],
        })
    })
}

fn check_unguarded(store: &Store, store_generation: u64) -> Result<IndexReport> {
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
    // A store that refuses writes gets its index read into memory: no
    // lock file is made in its directory.
    let opened = if store.writable() {
        open_dir(&dir)
    } else {
        open_dir_in_memory(&dir)
    };
    let (index, payload) = match opened {
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
    match damaged_files(&index) {
        Ok(bad) if bad.is_empty() => {}
        Ok(bad) => {
            r.status = "damaged".into();
            r.problems.push(format!(
                "bm25 index: files {bad:?} fail their checksum (it will be rebuilt by the next query)"
            ));
            return Ok(r);
        }
        Err(e) => {
            r.status = "damaged".into();
            r.problems
                .push(format!("{e} (it will be rebuilt by the next query)"));
            return Ok(r);
        }
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
