//! `c3 check`: every record decodes, counts and indexes agree, latents are
//! finite, and the database holds what its manifest says.

use std::collections::HashMap;

use c3_migrations::v1;
use c3_migrations::v3::DOC_META;

use super::manifest::LostDoc;
use super::records::{ChunkRecord, DocRecord, LatentRecord, MetaRecord};
use super::{codec, keys, latent, LatentLayout, Store};
use crate::Result;

/// Outcome of a check: what was visited and every problem found, each naming
/// its tree and key, and the documents the manifest names that the
/// database lost.
#[derive(Debug, Default, serde::Serialize)]
pub struct CheckReport {
    pub documents: u64,
    pub chunks: u64,
    pub latents: u64,
    /// `ok`, or `damaged` when the database does not match its manifest
    /// (then the store refuses writes until `c3 recover`).
    pub manifest: &'static str,
    /// Documents of the manifest missing from the database, or changed.
    pub lost: Vec<LostDoc>,
    pub problems: Vec<String>,
}

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty() && self.lost.is_empty()
    }
}

pub fn run(store: &Store) -> Result<CheckReport> {
    let mut r = CheckReport {
        manifest: "ok",
        ..CheckReport::default()
    };
    if let Some(d) = store.damage() {
        r.manifest = "damaged";
        r.problems.extend(d.problems.iter().cloned());
        r.lost = d.lost.clone();
    }
    let model = check_meta(store, &mut r);
    // The shape every latent of an unreadable document must have, where
    // it does not depend on the chunk's tokens.
    let fixed: Option<Vec<u32>> = model.and_then(|(layout, hidden)| match layout {
        LatentLayout::Fixed { rows } => Some(vec![rows, hidden]),
        LatentLayout::Pooled { .. } => None,
    });
    let next_id = store.next_doc_id().unwrap_or_else(|e| {
        r.problems.push(codec::problem(&e));
        u64::MAX
    });
    // doc id -> chunk count, for the orphan scan.
    let mut docs: HashMap<u64, u32> = HashMap::new();
    // Ids whose doc record is unreadable: their chunks are not orphans.
    let mut damaged: Vec<u64> = Vec::new();
    for item in store.docs.iter() {
        let (k, v) = match item {
            Ok(kv) => kv,
            Err(e) => {
                r.problems.push(format!("tree `docs`: read failed: {e}"));
                break;
            }
        };
        r.documents += 1;
        let doc: DocRecord = match codec::decode(v1::DOCS, &k, &v) {
            Ok(d) => d,
            Err(e) => {
                r.problems.push(codec::problem(&e));
                // Still vet the damaged document's chunks one by one.
                if let Some(id) = keys::parse_doc_key(&k) {
                    damaged.push(id);
                    check_orphaned_records(store, id, fixed.as_deref(), &mut r);
                }
                continue;
            }
        };
        let here = format!("tree `docs` key {}", keys::describe(v1::DOCS, &k));
        if keys::parse_doc_key(&k) != Some(doc.id) {
            r.problems
                .push(format!("{here}: record says id {}", doc.id));
        }
        if doc.id >= next_id {
            r.problems
                .push(format!("{here}: id is not below next_doc_id {next_id}"));
        }
        match store.sources.get(doc.source.as_bytes()) {
            Ok(Some(v))
                if codec::decode_u64(v1::SOURCES, doc.source.as_bytes(), &v, store.legacy).ok()
                    == Some(doc.id) => {}
            _ => r.problems.push(format!(
                "{here}: tree `sources` has no entry {:?} pointing to it",
                doc.source
            )),
        }
        docs.insert(doc.id, doc.chunk_count);
        check_chunks(store, &doc, model, &mut r);
    }
    check_sources(store, &mut r);
    check_doc_meta(store, &docs, &damaged, &mut r);
    for (tree, name) in [(&store.chunks, v1::CHUNKS), (&store.latents, v1::LATENTS)] {
        // Orphans, grouped by the doc id their keys carry.
        let mut orphans: std::collections::BTreeMap<Option<u64>, Vec<String>> = Default::default();
        for item in tree.iter() {
            let k = match item {
                Ok((k, _)) => k,
                Err(e) => {
                    r.problems.push(format!("tree `{name}`: read failed: {e}"));
                    break;
                }
            };
            let parsed = keys::parse_chunk_key(&k);
            let owned = parsed
                .is_some_and(|(d, o)| docs.get(&d).is_some_and(|&n| o < n) || damaged.contains(&d));
            if !owned {
                orphans
                    .entry(parsed.map(|(d, _)| d))
                    .or_default()
                    .push(keys::describe(name, &k));
            }
        }
        for (doc, keys) in orphans {
            r.problems.push(match (doc, keys.as_slice()) {
                (_, [one]) => format!("tree `{name}` key {one}: belongs to no document"),
                (Some(d), many) => format!(
                    "tree `{name}`: {} records of doc {d} ({} .. {}) belong to no document",
                    many.len(),
                    many[0],
                    many[many.len() - 1]
                ),
                (None, many) => format!(
                    "tree `{name}`: {} keys that are not chunk keys ({} ..)",
                    many.len(),
                    many[0]
                ),
            });
        }
    }
    Ok(r)
}

/// Every problem with one document's records (texts, their hash, latents,
/// counts): empty when the document can be read back exactly.
pub(super) fn doc_problems(store: &Store, doc: &DocRecord) -> Vec<String> {
    let mut r = CheckReport::default();
    let model = check_meta(store, &mut r);
    r.problems.clear();
    check_chunks(store, doc, model, &mut r);
    if let Err(e) = store.metadata(doc.id) {
        r.problems.push(codec::problem(&e));
    }
    r.problems
}

/// Every `doc_meta` record decodes to valid metadata of a document that
/// exists (a record of no document is an orphan).
fn check_doc_meta(store: &Store, docs: &HashMap<u64, u32>, damaged: &[u64], r: &mut CheckReport) {
    let Some(tree) = &store.doc_meta else {
        return;
    };
    for item in tree.iter() {
        let (k, v) = match item {
            Ok(kv) => kv,
            Err(e) => {
                r.problems
                    .push(format!("tree `{DOC_META}`: read failed: {e}"));
                break;
            }
        };
        let here = format!("tree `{DOC_META}` key {}", keys::describe(DOC_META, &k));
        match keys::parse_doc_key(&k) {
            Some(id) if docs.contains_key(&id) || damaged.contains(&id) => {
                if let Err(e) = super::metadata::decode(&k, &v) {
                    r.problems.push(codec::problem(&e));
                }
            }
            _ => r.problems.push(format!("{here}: belongs to no document")),
        }
    }
}

/// Decode the meta record; returns the latent layout and width of the bound model.
fn check_meta(store: &Store, r: &mut CheckReport) -> Option<(LatentLayout, u32)> {
    for key in [v1::NEXT_DOC_ID_KEY, v1::GENERATION_KEY] {
        if let Err(e) = store.counter(key) {
            r.problems.push(codec::problem(&e));
        }
    }
    match store.meta.get(v1::STORE_KEY) {
        Ok(Some(v)) => match codec::decode::<MetaRecord>(v1::META, v1::STORE_KEY, &v) {
            Ok(m) => m.model.map(|m| (LatentLayout::of(&m), m.hidden_size)),
            Err(e) => {
                r.problems.push(codec::problem(&e));
                None
            }
        },
        _ => {
            r.problems.push("tree `meta` key \"store\": missing".into());
            None
        }
    }
}

fn check_chunks(
    store: &Store,
    doc: &DocRecord,
    model: Option<(LatentLayout, u32)>,
    r: &mut CheckReport,
) {
    let mut hasher = blake3::Hasher::new();
    let mut pos = 0u64;
    let mut tokens = 0u64;
    let mut text_ok = true;
    for ord in 0..doc.chunk_count {
        let key = keys::chunk_key(doc.id, ord);
        let here = |tree: &str| format!("tree `{tree}` key {}", keys::describe(tree, &key));
        let mut chunk_tokens = None;
        match store.chunks.get(key) {
            Ok(Some(v)) => {
                r.chunks += 1;
                match codec::decode::<ChunkRecord>(v1::CHUNKS, &key, &v) {
                    Ok(c) => {
                        if c.doc_id != doc.id || c.ordinal != ord {
                            r.problems.push(format!(
                                "{}: record says doc {} chunk {}",
                                here(v1::CHUNKS),
                                c.doc_id,
                                c.ordinal
                            ));
                        }
                        if c.start != pos || c.end < c.start {
                            r.problems.push(format!(
                                "{}: range {}..{} does not continue at byte {pos}",
                                here(v1::CHUNKS),
                                c.start,
                                c.end
                            ));
                        }
                        pos = c.end;
                        tokens += c.tokens as u64;
                        chunk_tokens = Some(c.tokens);
                        match store.chunk_text(&c) {
                            Ok(t) => {
                                hasher.update(t.as_bytes());
                            }
                            Err(e) => {
                                text_ok = false;
                                r.problems.push(codec::problem(&e));
                            }
                        }
                    }
                    Err(e) => {
                        text_ok = false;
                        r.problems.push(codec::problem(&e));
                    }
                }
            }
            _ => {
                text_ok = false;
                r.problems.push(format!("{}: missing", here(v1::CHUNKS)));
            }
        }
        match store.latents.get(key) {
            Ok(Some(v)) => {
                r.latents += 1;
                let shape = match (model, chunk_tokens) {
                    (Some((LatentLayout::Fixed { rows }, h)), _) => Some(vec![rows, h]),
                    (Some((layout, h)), Some(t)) => Some(vec![layout.rows(t), h]),
                    _ => None,
                };
                check_latent(&key, &v, shape.as_deref(), r);
            }
            _ => r.problems.push(format!("{}: missing", here(v1::LATENTS))),
        }
    }
    let here = format!(
        "tree `docs` key {}",
        keys::describe(v1::DOCS, &keys::doc_key(doc.id))
    );
    if text_ok {
        if pos != doc.size {
            r.problems.push(format!(
                "{here}: chunks cover {pos} bytes, record says {}",
                doc.size
            ));
        }
        if hasher.finalize().as_bytes() != &doc.content_hash {
            r.problems.push(format!(
                "{here}: chunk texts do not hash to the content hash"
            ));
        }
    }
    if tokens != doc.token_count {
        r.problems.push(format!(
            "{here}: chunks hold {tokens} tokens, record says {}",
            doc.token_count
        ));
    }
}

/// Decode every chunk and latent record under a doc id whose doc record is
/// unreadable.
fn check_orphaned_records(store: &Store, id: u64, shape: Option<&[u32]>, r: &mut CheckReport) {
    for item in store.chunks.scan_prefix(keys::doc_key(id)) {
        let Ok((k, v)) = item else { break };
        r.chunks += 1;
        if let Err(e) = codec::decode::<ChunkRecord>(v1::CHUNKS, &k, &v) {
            r.problems.push(codec::problem(&e));
        }
    }
    for item in store.latents.scan_prefix(keys::doc_key(id)) {
        let Ok((k, v)) = item else { break };
        r.latents += 1;
        check_latent(&k, &v, shape, r);
    }
}

fn check_latent(key: &[u8], v: &[u8], shape: Option<&[u32]>, r: &mut CheckReport) {
    let buf = match codec::aligned(v1::LATENTS, key, v) {
        Ok(b) => b,
        Err(e) => return r.problems.push(codec::problem(&e)),
    };
    let rec = match codec::access::<LatentRecord>(v1::LATENTS, key, &buf) {
        Ok(rec) => rec,
        Err(e) => return r.problems.push(codec::problem(&e)),
    };
    let dims: Vec<u32> = rec.shape.iter().map(|d| d.to_native()).collect();
    let here = format!("tree `latents` key {}", keys::describe(v1::LATENTS, key));
    if shape.is_some_and(|s| s != dims.as_slice()) {
        r.problems.push(format!(
            "{here}: shape {dims:?}, the store's model makes {shape:?}"
        ));
    }
    if latent::expected_len(&rec.dtype, &dims) != Some(rec.data.len()) {
        r.problems.push(format!(
            "{here}: {} bytes do not fit dtype {} and shape {dims:?}",
            rec.data.len(),
            rec.dtype.as_str()
        ));
    } else if let Some(i) = latent::first_non_finite(&rec.dtype, &rec.data) {
        r.problems.push(format!(
            "{here}: a non-finite value (NaN or infinity) at element {i}"
        ));
    }
}

fn check_sources(store: &Store, r: &mut CheckReport) {
    for item in store.sources.iter() {
        let Ok((k, v)) = item else {
            r.problems.push("tree `sources`: read failed".into());
            break;
        };
        let here = format!("tree `sources` key {}", keys::describe(v1::SOURCES, &k));
        let id = match codec::decode_u64(v1::SOURCES, &k, &v, store.legacy) {
            Ok(id) => id,
            Err(e) => {
                r.problems.push(codec::problem(&e));
                continue;
            }
        };
        match store.document(id) {
            Ok(Some(d)) if d.source.as_bytes() == k.as_ref() => {}
            Ok(Some(d)) => r.problems.push(format!(
                "{here}: points to doc {id}, whose source is {:?}",
                d.source
            )),
            Ok(None) => r
                .problems
                .push(format!("{here}: points to missing doc {id}")),
            // A corrupt doc record is already reported by the docs scan.
            Err(_) => {}
        }
    }
}
