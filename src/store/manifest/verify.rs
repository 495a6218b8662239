//! Comparing the database with its manifest, before anything is written.
//!
//! Acceptable: the database at the manifest's confirmed generation holding
//! exactly its documents, or (a crash between the commit and its `done`)
//! at the pending change's generation holding the state after it.
//! Anything else is damage: documents missing or changed, a generation
//! behind the manifest (a rollback: sled dropped the end of its log) or
//! ahead of it, a lost model record, a manifest of another store.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{ManifestDoc, Replayed, State};

/// What the database holds, read without writing.
#[derive(Debug, Default, Clone)]
pub struct SledView {
    pub generation: u64,
    pub next_doc_id: u64,
    pub model: Option<String>,
    pub docs: BTreeMap<u64, ManifestDoc>,
    /// Doc ids whose record could not be read, with why.
    pub unreadable: BTreeMap<u64, String>,
    /// The manifest id recorded in the database, if any.
    pub marker: Option<String>,
    /// Values that could not be read (counters, the meta record).
    pub problems: Vec<String>,
}

/// A document the manifest expects that the database does not hold as
/// recorded.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LostDoc {
    #[serde(flatten)]
    pub doc: ManifestDoc,
    /// `missing`, `changed` or `unreadable`.
    pub status: &'static str,
    /// The detail (what differs, why unreadable).
    pub detail: String,
}

/// Everything found wrong, for `c3 check`, `c3 recover` and the error
/// that refuses writes.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Damage {
    /// Store-level findings (generations, model, manifest files), each a
    /// sentence naming what it is about.
    pub problems: Vec<String>,
    /// Documents the manifest names that are gone or differ.
    pub lost: Vec<LostDoc>,
    /// The state the manifest expects (None when it is unreadable).
    #[serde(skip)]
    pub expected: Option<State>,
}

impl Damage {
    /// One line for error messages.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        let missing = self.lost.len();
        if missing > 0 {
            let named: Vec<String> = self
                .lost
                .iter()
                .take(3)
                .map(|l| {
                    format!(
                        "doc {} {} ({})",
                        l.doc.id,
                        crate::store::shown(&l.doc.source),
                        l.status
                    )
                })
                .collect();
            parts.push(format!(
                "{missing} document{} of its manifest missing or changed: {}{}",
                if missing == 1 { "" } else { "s" },
                named.join(", "),
                if missing > 3 { ", ..." } else { "" }
            ));
        }
        parts.extend(self.problems.iter().take(2).cloned());
        if parts.is_empty() {
            parts.push("its manifest does not match the database".into());
        }
        parts.join("; ")
    }
}

/// The outcome of opening a store against its manifest.
#[derive(Debug)]
pub enum Verdict {
    /// The database matches. `confirm`: the pending change did commit,
    /// write its `done`. `mark`: the database lacks the manifest's id
    /// (a crash between writing a new manifest and recording it).
    Consistent {
        confirm: Option<u64>,
        mark: bool,
    },
    Damaged(Damage),
}

/// Compare the database with the manifest read back from disk.
pub fn verify(m: &Replayed, db: &SledView) -> Verdict {
    let mut problems: Vec<String> = db.problems.clone();
    let confirmed = &m.state;
    let after = m.pending.as_ref().map(|p| confirmed.after(p));
    // Which state the database should be in, by its generation.
    let (expected, confirm) = match &after {
        Some(a) if db.generation == a.generation => (a, Some(a.generation)),
        _ => (confirmed, None),
    };
    if db.generation != expected.generation {
        let newest = after.as_ref().unwrap_or(confirmed).generation;
        if db.generation < confirmed.generation {
            problems.push(format!(
                "the database is at generation {}, its manifest at {}: the database lost its \
                 last {} committed change{} (sled drops the end of a damaged log when it opens)",
                db.generation,
                confirmed.generation,
                confirmed.generation - db.generation,
                if confirmed.generation - db.generation == 1 {
                    ""
                } else {
                    "s"
                }
            ));
        } else {
            problems.push(format!(
                "the database is at generation {}, ahead of its manifest ({newest}): it was \
                 written without the manifest (or the manifest was replaced by an older copy)",
                db.generation
            ));
        }
    }
    match &db.marker {
        Some(id) if *id != expected.store_id => problems.push(format!(
            "the manifest belongs to another store (id {}, the database's is {id})",
            expected.store_id
        )),
        _ => {}
    }
    if expected.model.is_some() && db.model != expected.model {
        problems.push(format!(
            "the database's model record is {}, its manifest says {}",
            db.model.as_deref().unwrap_or("missing"),
            expected.model.as_deref().unwrap_or("none")
        ));
    }
    if db.next_doc_id < expected.next_doc_id {
        problems.push(format!(
            "meta `next_doc_id` is {}, its manifest says {}",
            db.next_doc_id, expected.next_doc_id
        ));
    }
    let mut lost = Vec::new();
    for (id, want) in &expected.docs {
        match (db.docs.get(id), db.unreadable.get(id)) {
            (Some(have), _) if have == want => {}
            (Some(have), _) => lost.push(LostDoc {
                doc: want.clone(),
                status: "changed",
                detail: describe_change(want, have),
            }),
            (None, Some(why)) => lost.push(LostDoc {
                doc: want.clone(),
                status: "unreadable",
                detail: why.clone(),
            }),
            (None, None) => lost.push(LostDoc {
                doc: want.clone(),
                status: "missing",
                detail: "not in the database".into(),
            }),
        }
    }
    for (id, have) in &db.docs {
        if !expected.docs.contains_key(id) {
            problems.push(format!(
                "doc {id} {} is in the database but not in its manifest",
                crate::store::shown(&have.source)
            ));
        }
    }
    for (id, why) in &db.unreadable {
        if !expected.docs.contains_key(id) {
            problems.push(format!("doc {id}: record unreadable ({why})"));
        }
    }
    if problems.is_empty() && lost.is_empty() {
        return Verdict::Consistent {
            confirm,
            mark: db.marker.is_none(),
        };
    }
    Verdict::Damaged(Damage {
        problems,
        lost,
        expected: Some(expected.clone()),
    })
}

fn describe_change(want: &ManifestDoc, have: &ManifestDoc) -> String {
    let mut d = Vec::new();
    if want.source != have.source {
        d.push(format!("source {:?}", have.source));
    }
    if want.content_hash != have.content_hash {
        d.push(format!(
            "content hash {}",
            &have.content_hash[..16.min(have.content_hash.len())]
        ));
    }
    if want.size != have.size {
        d.push(format!("{} bytes", have.size));
    }
    if want.chunks != have.chunks {
        d.push(format!("{} chunks", have.chunks));
    }
    if want.metadata != have.metadata {
        d.push(format!("metadata {{{}}}", have.metadata));
    }
    if d.is_empty() {
        d.push("chunking differs".into());
    }
    format!("the database has {}", d.join(", "))
}

#[cfg(test)]
mod tests {
    use super::super::Change;
    use super::*;

    fn doc(id: u64) -> ManifestDoc {
        ManifestDoc {
            id,
            source: format!("/s/{id}"),
            content_hash: "22".repeat(32),
            size: 5,
            chunks: 2,
            chunk_tokens: 10,
            kind: "text".into(),
            metadata: crate::docmeta::Metadata::new(),
        }
    }

    fn state(g: u64, ids: &[u64]) -> State {
        State {
            store_id: "id".into(),
            generation: g,
            next_doc_id: ids.iter().max().map_or(0, |m| m + 1),
            model: Some("fp".into()),
            docs: ids.iter().map(|&i| (i, doc(i))).collect(),
        }
    }

    fn view(s: &State) -> SledView {
        SledView {
            generation: s.generation,
            next_doc_id: s.next_doc_id,
            model: s.model.clone(),
            docs: s.docs.clone(),
            marker: Some(s.store_id.clone()),
            ..SledView::default()
        }
    }

    fn replayed(s: State, pending: Option<Change>) -> Replayed {
        Replayed {
            state: s,
            pending,
            log_lines: 0,
        }
    }

    #[test]
    fn both_sides_of_a_pending_commit_are_accepted() {
        let before = state(2, &[0, 1]);
        let c = Change {
            generation: 3,
            next_doc_id: 3,
            model: Some("fp".into()),
            put: vec![doc(2)],
            rm: vec![0],
        };
        let r = replayed(before.clone(), Some(c.clone()));
        assert!(matches!(
            verify(&r, &view(&before)),
            Verdict::Consistent {
                confirm: None,
                mark: false
            }
        ));
        let after = before.after(&c);
        assert!(matches!(
            verify(&r, &view(&after)),
            Verdict::Consistent {
                confirm: Some(3),
                ..
            }
        ));
    }

    #[test]
    fn a_rollback_names_the_lost_document() {
        let m = state(2, &[0, 1]);
        let db = state(1, &[0]);
        let Verdict::Damaged(d) = verify(&replayed(m, None), &view(&db)) else {
            panic!("a rollback was accepted");
        };
        assert_eq!(d.lost.len(), 1);
        assert_eq!((d.lost[0].doc.id, d.lost[0].status), (1, "missing"));
        assert!(d.problems[0].contains("generation 1"), "{:?}", d.problems);
        assert!(d.summary().contains("/s/1"), "{}", d.summary());
    }

    #[test]
    fn a_changed_or_unreadable_document_at_the_same_generation_is_damage() {
        let m = state(2, &[0, 1]);
        let mut v = view(&m);
        v.docs.get_mut(&1).unwrap().content_hash = "33".repeat(32);
        v.docs.remove(&0);
        v.unreadable.insert(0, "checksum mismatch".into());
        let Verdict::Damaged(d) = verify(&replayed(m, None), &v) else {
            panic!("accepted");
        };
        let st: Vec<_> = d.lost.iter().map(|l| l.status).collect();
        assert_eq!(st, vec!["unreadable", "changed"]);
    }
}
