//! Which document of each source the merged store keeps, and its id.
//!
//! - The same source in several inputs: the **newer** one wins: the larger
//!   `ingested_at_ms`; on a tie the larger `mtime_ms` (a missing mtime is
//!   older than any); then the larger content hash (bytewise), the larger
//!   `chunk_tokens`, and last the input's canonical path, so the choice
//!   never depends on the order the inputs are given in. Different content
//!   is reported as a replacement; the same content as a duplicate.
//! - Order and ids: the kept documents sorted by their id in their input,
//!   then by source (bytes), are numbered 0, 1, 2, … A shard ingest
//!   (`c3 ingest --shard`) gives each document its position in the full,
//!   unsharded discovery order as its id, so the merged ids are those a
//!   single process ingesting the same paths into an empty store assigns.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::Serialize;

use super::input::Entry;
use crate::store::export::hex;

/// A source found in more than one input with different content.
#[derive(Debug, Clone, Serialize)]
pub struct Replacement {
    pub source: String,
    /// Input whose document was kept, and its ingest time.
    pub kept: String,
    pub kept_ingested_at_ms: i64,
    /// Input whose document was dropped.
    pub dropped: String,
    pub dropped_ingested_at_ms: i64,
}

/// The merged store's documents in id order (index = new id), and what was
/// dropped.
pub struct Plan {
    pub docs: Vec<Entry>,
    pub replaced: Vec<Replacement>,
    /// Copies with the same content as the kept one.
    pub duplicates: u64,
    /// blake3 over the model and every planned document: a resumed merge
    /// must find the same.
    pub digest: String,
}

/// `a` is newer than `b` (see the module doc); `paths` are the inputs'
/// canonical paths.
fn newer(a: &Entry, b: &Entry, paths: &[String]) -> Ordering {
    a.ingested_at_ms
        .cmp(&b.ingested_at_ms)
        .then(a.mtime_ms.cmp(&b.mtime_ms))
        .then(a.content_hash.cmp(&b.content_hash))
        .then(a.chunk_tokens.cmp(&b.chunk_tokens))
        .then(paths[a.input].cmp(&paths[b.input]))
}

/// Choose and number. `labels`: how inputs are named in the report;
/// `paths`: their canonical paths (tie-break).
pub fn plan(entries: Vec<Entry>, labels: &[String], paths: &[String], fingerprint: &str) -> Plan {
    let mut by_source: BTreeMap<String, Entry> = BTreeMap::new();
    let mut replaced = Vec::new();
    let mut duplicates = 0;
    for e in entries {
        let Some(old) = by_source.get(&e.source) else {
            by_source.insert(e.source.clone(), e);
            continue;
        };
        let (kept, dropped) = if newer(&e, old, paths) == Ordering::Greater {
            (e, old.clone())
        } else {
            (old.clone(), e)
        };
        if kept.content_hash == dropped.content_hash {
            duplicates += 1;
        } else {
            replaced.push(Replacement {
                source: kept.source.clone(),
                kept: labels[kept.input].clone(),
                kept_ingested_at_ms: kept.ingested_at_ms,
                dropped: labels[dropped.input].clone(),
                dropped_ingested_at_ms: dropped.ingested_at_ms,
            });
        }
        by_source.insert(kept.source.clone(), kept);
    }
    let mut docs: Vec<Entry> = by_source.into_values().collect();
    docs.sort_by(|a, b| a.id.cmp(&b.id).then_with(|| a.source.cmp(&b.source)));
    replaced.sort_by(|a, b| a.source.cmp(&b.source));
    let mut h = blake3::Hasher::new();
    h.update(fingerprint.as_bytes());
    for (id, d) in docs.iter().enumerate() {
        h.update(
            format!(
                "\n{id}\t{}\t{}\t{}\t{}\t{}",
                hex(&d.content_hash),
                d.chunk_count,
                d.ingested_at_ms,
                d.metadata.to_json(),
                d.source
            )
            .as_bytes(),
        );
    }
    Plan {
        docs,
        replaced,
        duplicates,
        digest: h.finalize().to_hex().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(input: usize, id: u64, source: &str, hash: u8, at: i64) -> Entry {
        Entry {
            input,
            id,
            at: 0,
            source: source.into(),
            content_hash: [hash; 32],
            size: 1,
            mtime_ms: Some(5),
            ingested_at_ms: at,
            kind: "text".into(),
            chunk_tokens: 1000,
            chunk_count: 1,
            metadata: Default::default(),
        }
    }

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("in{i}")).collect()
    }

    #[test]
    fn newer_wins_and_is_reported() {
        let es = vec![
            entry(0, 0, "/a", 1, 100),
            entry(1, 0, "/a", 2, 200),
            entry(1, 1, "/b", 3, 100),
        ];
        let p = plan(es, &names(2), &names(2), "fp");
        assert_eq!(p.docs.len(), 2);
        assert_eq!(p.docs[0].content_hash, [2; 32]);
        assert_eq!(p.replaced.len(), 1);
        assert_eq!(p.replaced[0].kept, "in1");
        assert_eq!(p.replaced[0].dropped, "in0");
        assert_eq!(p.duplicates, 0);
    }

    #[test]
    fn input_order_does_not_matter() {
        let make = |swap: bool| {
            let (x, y) = if swap { (1, 0) } else { (0, 1) };
            let es = vec![
                entry(x, 4, "/a", 1, 100),
                entry(y, 4, "/a", 2, 100), // tie on time and mtime: hash decides
                entry(y, 2, "/c", 7, 100),
                entry(x, 2, "/b", 7, 100),
                entry(x, 9, "/d", 7, 100),
                entry(y, 9, "/d", 7, 100), // same content: a duplicate
            ];
            plan(es, &names(2), &names(2), "fp")
        };
        let (a, b) = (make(false), make(true));
        let key = |p: &Plan| {
            p.docs
                .iter()
                .map(|d| (d.source.clone(), d.content_hash))
                .collect::<Vec<_>>()
        };
        assert_eq!(key(&a), key(&b));
        assert_eq!(a.digest, b.digest);
        let order: Vec<&str> = a.docs.iter().map(|d| d.source.as_str()).collect();
        assert_eq!(order, ["/b", "/c", "/a", "/d"]);
        assert_eq!(a.docs[2].content_hash, [2; 32]);
        assert_eq!((a.duplicates, a.replaced.len()), (1, 1));
    }

    #[test]
    fn digest_follows_the_plan() {
        let p1 = plan(vec![entry(0, 0, "/a", 1, 1)], &names(1), &names(1), "fp");
        let p2 = plan(vec![entry(0, 0, "/a", 2, 1)], &names(1), &names(1), "fp");
        let p3 = plan(vec![entry(0, 0, "/a", 1, 1)], &names(1), &names(1), "other");
        assert_ne!(p1.digest, p2.digest);
        assert_ne!(p1.digest, p3.digest);
    }
}
