//! The store manifest: what the store holds, kept outside sled's log so
//! that a damaged or rolled-back database can be told from a healthy one.
//!
//! sled recovers a damaged log by dropping everything after the first bad
//! entry, silently: the database then opens as an older, consistent state.
//! The manifest is a second, independent record of the documents (ids,
//! sources, content hashes, sizes), the model and the store's `generation`
//! (the change counter every commit bumps); opening a store compares the
//! two before anything is written (`verify.rs`).
//!
//! Two files in the store directory (format in docs/store.md):
//!
//! - `manifest.json`: the state at some generation, written whole (a
//!   temporary file, fsync, rename, fsync of the directory);
//! - `manifest.log`: the changes since, one checksummed JSON line each,
//!   appended and fsynced: an `intent` before sled commits generation G,
//!   a `done` once sled has flushed it (`journal.rs`). A torn last line
//!   is read as never written.
//!
//! Invariant: a change is in the log before sled can have it on disk, so
//! the database is never legitimately ahead of the manifest by more than
//! one pending intent, and never behind a `done`.

mod journal;
mod verify;

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::export::hex;
use super::records::DocRecord;
use crate::docmeta::Metadata;
pub use journal::Journal;
pub use verify::{verify, Damage, LostDoc, SledView, Verdict};

/// The manifest's state file in the store directory.
pub const BASE_FILE: &str = "manifest.json";
/// The manifest's change log in the store directory.
pub const LOG_FILE: &str = "manifest.log";
const FORMAT: &str = "c3-store-manifest";
const VERSION: u32 = 1;

/// One document as the manifest records it: enough to notice that it is
/// gone or changed, and to re-ingest it from its source.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ManifestDoc {
    pub id: u64,
    pub source: String,
    /// blake3 of the document's bytes, hex.
    pub content_hash: String,
    pub size: u64,
    pub chunks: u32,
    /// The window it was chunked with, and its kind: re-ingesting with the
    /// same ones gives the same chunks.
    pub chunk_tokens: u32,
    pub kind: String,
    /// Its metadata (absent when empty, as in manifests written before
    /// metadata existed): re-ingesting a lost document restores it.
    #[serde(default, skip_serializing_if = "Metadata::is_empty")]
    pub metadata: Metadata,
}

impl ManifestDoc {
    pub fn of(d: &DocRecord, metadata: &Metadata) -> Self {
        ManifestDoc {
            id: d.id,
            source: d.source.clone(),
            content_hash: hex(&d.content_hash),
            size: d.size,
            chunks: d.chunk_count,
            chunk_tokens: d.chunk_tokens,
            kind: d.kind.clone(),
            metadata: metadata.clone(),
        }
    }
}

/// What the store holds at one generation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    /// Random id tying the manifest to its database (whose `meta` tree
    /// holds the same id under `manifest_id`).
    pub store_id: String,
    pub generation: u64,
    pub next_doc_id: u64,
    /// Fingerprint of the store's model, once bound.
    pub model: Option<String>,
    pub docs: BTreeMap<u64, ManifestDoc>,
}

/// One committed (or about to be committed) change: the state after it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The generation sled reaches by committing it.
    pub generation: u64,
    pub next_doc_id: u64,
    pub model: Option<String>,
    /// Documents added (a replaced document is removed and added).
    #[serde(default)]
    pub put: Vec<ManifestDoc>,
    /// Ids of documents removed.
    #[serde(default)]
    pub rm: Vec<u64>,
}

impl State {
    pub fn apply(&mut self, c: &Change) {
        for id in &c.rm {
            self.docs.remove(id);
        }
        for d in &c.put {
            self.docs.insert(d.id, d.clone());
        }
        self.generation = c.generation;
        self.next_doc_id = c.next_doc_id;
        self.model = c.model.clone();
    }

    /// The state after `c`, leaving this one as it is.
    pub fn after(&self, c: &Change) -> State {
        let mut s = self.clone();
        s.apply(c);
        s
    }
}

/// The state file's contents.
#[derive(Serialize, Deserialize)]
struct Base {
    format: String,
    version: u32,
    store_id: String,
    generation: u64,
    next_doc_id: u64,
    model: Option<String>,
    documents: u64,
    docs: Vec<ManifestDoc>,
}

/// One line of the change log.
#[derive(Serialize, Deserialize, Debug)]
#[serde(tag = "entry", rename_all = "snake_case")]
enum Line {
    /// Written and fsynced before sled commits `generation`.
    Intent(Change),
    /// Written once sled has flushed `generation`.
    Done { generation: u64 },
}

/// A manifest read back: its confirmed state, and the change whose
/// commit it had announced but not yet confirmed (a crash may have come
/// before or after sled's commit: both are acceptable).
#[derive(Debug, Clone)]
pub struct Replayed {
    pub state: State,
    pub pending: Option<Change>,
    /// Lines in the log (for compaction).
    pub log_lines: usize,
}

/// What [`load`] found in a store directory.
#[derive(Debug)]
pub enum Loaded {
    /// Neither file: a store from before manifests, or a new one.
    Absent,
    Present(Replayed),
    /// A file is damaged or missing: what is wrong, naming the file.
    Unreadable(String),
}

/// `xxh3-64` of a line, as the files write it.
fn sum(bytes: &[u8]) -> String {
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(bytes))
}

/// A line followed by a tab and its checksum.
fn sealed_line(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 18);
    out.extend_from_slice(body);
    out.push(b'\t');
    out.extend_from_slice(sum(body).as_bytes());
    out.push(b'\n');
    out
}

/// The body of a sealed line, if its checksum holds.
fn open_line(line: &[u8]) -> Option<&[u8]> {
    let tab = line.iter().rposition(|&b| b == b'\t')?;
    let (body, rest) = line.split_at(tab);
    (rest[1..] == *sum(body).as_bytes()).then_some(body)
}

/// Serialize a state as the base file's bytes.
fn base_bytes(s: &State) -> Vec<u8> {
    let base = Base {
        format: FORMAT.into(),
        version: VERSION,
        store_id: s.store_id.clone(),
        generation: s.generation,
        next_doc_id: s.next_doc_id,
        model: s.model.clone(),
        documents: s.docs.len() as u64,
        docs: s.docs.values().cloned().collect(),
    };
    sealed_line(&serde_json::to_vec(&base).expect("a manifest always serializes"))
}

/// Read the manifest of the store in `dir`.
pub fn load(dir: &Path) -> Loaded {
    let base_path = dir.join(BASE_FILE);
    let log_path = dir.join(LOG_FILE);
    let base = match std::fs::read(&base_path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // An empty log alone is a creation that stopped before its
            // base (`Journal::create` writes the log first): no commit
            // was announced. A database that had a manifest says so
            // itself (its marker), which the caller checks.
            let empty_log = std::fs::metadata(&log_path).is_ok_and(|m| m.len() == 0);
            return if log_path.exists() && !empty_log {
                Loaded::Unreadable(format!("{} is missing", base_path.display()))
            } else {
                Loaded::Absent
            };
        }
        Err(e) => return Loaded::Unreadable(format!("{}: {e}", base_path.display())),
    };
    let state = match parse_base(&base) {
        Ok(s) => s,
        Err(what) => return Loaded::Unreadable(format!("{}: {what}", base_path.display())),
    };
    let log = match std::fs::read(&log_path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Loaded::Unreadable(format!("{} is missing", log_path.display()))
        }
        Err(e) => return Loaded::Unreadable(format!("{}: {e}", log_path.display())),
    };
    match replay(state, &log) {
        Ok(r) => Loaded::Present(r),
        Err(what) => Loaded::Unreadable(format!("{}: {what}", log_path.display())),
    }
}

fn parse_base(bytes: &[u8]) -> Result<State, String> {
    let line = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let body = open_line(line).ok_or("checksum mismatch (the file is damaged)")?;
    let b: Base = serde_json::from_slice(body).map_err(|e| format!("not a manifest: {e}"))?;
    if b.format != FORMAT || b.version != VERSION {
        return Err(format!(
            "format {} version {} is not supported",
            b.format, b.version
        ));
    }
    if b.documents != b.docs.len() as u64 {
        return Err(format!(
            "says {} documents and lists {}",
            b.documents,
            b.docs.len()
        ));
    }
    Ok(State {
        store_id: b.store_id,
        generation: b.generation,
        next_doc_id: b.next_doc_id,
        model: b.model,
        docs: b.docs.into_iter().map(|d| (d.id, d)).collect(),
    })
}

/// Apply the log's lines to the base state.
fn replay(mut state: State, log: &[u8]) -> Result<Replayed, String> {
    let mut pending: Option<Change> = None;
    let lines: Vec<&[u8]> = log.split_inclusive(|&b| b == b'\n').collect();
    let count = lines.len();
    for (i, raw) in lines.into_iter().enumerate() {
        let complete = raw.ends_with(b"\n");
        let line = raw.strip_suffix(b"\n").unwrap_or(raw);
        let parsed = open_line(line).and_then(|b| serde_json::from_slice::<Line>(b).ok());
        let Some(entry) = parsed else {
            // A torn last line (no newline yet): the append a crash
            // interrupted, read as never written. Any complete line that
            // fails its checksum is damage.
            if i + 1 == count && !complete {
                break;
            }
            return Err(format!("line {} is damaged (checksum mismatch)", i + 1));
        };
        let here = |what: String| format!("line {}: {what}", i + 1);
        match entry {
            Line::Intent(c) => {
                if c.generation <= state.generation {
                    // Already in the base (written before a compaction).
                    continue;
                }
                match &pending {
                    Some(p) if c.generation == p.generation + 1 => {
                        // The next intent shows the previous one committed.
                        let p = pending.take().expect("matched Some");
                        state.apply(&p);
                    }
                    _ if c.generation == state.generation + 1 => {}
                    _ => {
                        return Err(here(format!(
                            "generation {} does not follow {}",
                            c.generation, state.generation
                        )))
                    }
                }
                pending = Some(c);
            }
            Line::Done { generation } => {
                if generation <= state.generation {
                    continue;
                }
                match pending.take() {
                    Some(p) if p.generation == generation => state.apply(&p),
                    _ => {
                        return Err(here(format!(
                            "`done` for generation {generation}, which was not announced"
                        )))
                    }
                }
            }
        }
    }
    Ok(Replayed {
        state,
        pending,
        log_lines: count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(id: u64) -> ManifestDoc {
        ManifestDoc {
            id,
            source: format!("/s/{id}"),
            content_hash: "00".repeat(32),
            size: 10,
            chunks: 1,
            chunk_tokens: 100,
            kind: "text".into(),
            metadata: Metadata::new(),
        }
    }

    fn change(g: u64, put: &[u64], rm: &[u64]) -> Change {
        Change {
            generation: g,
            next_doc_id: put.iter().max().map_or(0, |m| m + 1),
            model: Some("fp".into()),
            put: put.iter().map(|&i| doc(i)).collect(),
            rm: rm.to_vec(),
        }
    }

    fn log(lines: &[Line]) -> Vec<u8> {
        lines
            .iter()
            .flat_map(|l| sealed_line(&serde_json::to_vec(l).unwrap()))
            .collect()
    }

    // A store creation killed after the empty log and before the base
    // (tests/crash.rs hit it at 16 ms) is no manifest yet, not damage; a
    // log with lines and no base is damage.
    #[test]
    fn an_empty_log_without_a_base_is_no_manifest_yet() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LOG_FILE), b"").unwrap();
        assert!(matches!(load(dir.path()), Loaded::Absent));
        std::fs::write(dir.path().join(LOG_FILE), b"x\n").unwrap();
        assert!(matches!(load(dir.path()), Loaded::Unreadable(_)));
    }

    #[test]
    fn replay_applies_done_changes_and_keeps_the_last_intent_pending() {
        let l = log(&[
            Line::Intent(change(1, &[0], &[])),
            Line::Done { generation: 1 },
            Line::Intent(change(2, &[1], &[])),
            // No `done` for 2, but 3 follows: 2 committed.
            Line::Intent(change(3, &[2], &[0])),
        ]);
        let r = replay(State::default(), &l).unwrap();
        assert_eq!(r.state.generation, 2);
        assert_eq!(r.state.docs.keys().copied().collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(r.pending.as_ref().map(|p| p.generation), Some(3));
        // A torn last line is read as never written.
        let mut torn = l.clone();
        torn.extend_from_slice(b"{\"entry\":\"done\",\"gen");
        let t = replay(State::default(), &torn).unwrap();
        assert_eq!(t.state, r.state);
        // A damaged line before the end is an error naming it.
        let mut bad = l.clone();
        bad[5] ^= 1;
        assert!(replay(State::default(), &bad)
            .unwrap_err()
            .contains("line 1"));
    }

    #[test]
    fn an_intent_that_never_committed_is_replaced_by_the_next_one() {
        let l = log(&[
            Line::Intent(change(1, &[0], &[])),
            Line::Intent(change(1, &[5], &[])),
            Line::Done { generation: 1 },
        ]);
        let r = replay(State::default(), &l).unwrap();
        assert_eq!(r.state.docs.keys().copied().collect::<Vec<_>>(), vec![5]);
        assert!(r.pending.is_none());
        // A gap is refused.
        let gap = log(&[Line::Intent(change(3, &[0], &[]))]);
        assert!(replay(State::default(), &gap).is_err());
        // So is a complete last line that fails its checksum.
        let mut flipped = log(&[
            Line::Intent(change(1, &[0], &[])),
            Line::Done { generation: 1 },
        ]);
        let n = flipped.len();
        flipped[n - 5] ^= 1;
        assert!(replay(State::default(), &flipped)
            .unwrap_err()
            .contains("line 2"));
    }

    #[test]
    fn base_round_trips_and_detects_a_flip() {
        let mut s = State {
            store_id: "ab".into(),
            generation: 4,
            next_doc_id: 3,
            model: Some("fp".into()),
            ..State::default()
        };
        s.docs.insert(2, doc(2));
        let b = base_bytes(&s);
        assert_eq!(parse_base(&b).unwrap(), s);
        for i in 0..b.len() - 1 {
            let mut f = b.clone();
            f[i] ^= 0x20;
            assert!(parse_base(&f).is_err(), "flip at {i} not caught");
        }
    }
}
