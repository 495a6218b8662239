//! Documents' metadata in the store (`doc_meta` tree, schema version 3),
//! and choosing documents by a [`Filter`].
//!
//! A document's metadata is written and removed in the transaction that
//! writes or removes its `docs` record; changing only the metadata of a
//! stored document is one more such transaction ([`Store::set_metadata`]),
//! announced in the manifest like any other commit.

use c3_migrations::v3::DOC_META;

use super::records::{DocMetaRecord, DocRecord, MetaEntryRecord, StoredValue};
use super::{codec, keys, Store};
use crate::docmeta::{Filter, MetaValue, Metadata};
use crate::{Error, Result};

/// The stored form of `m` for document `id`.
pub(super) fn to_record(id: u64, m: &Metadata) -> DocMetaRecord {
    DocMetaRecord {
        doc_id: id,
        entries: m
            .iter()
            .map(|(k, v)| MetaEntryRecord {
                key: k.to_string(),
                value: match v {
                    MetaValue::Str(s) => StoredValue::Str(s.clone()),
                    MetaValue::Int(i) => StoredValue::Int(*i),
                    MetaValue::Float(f) => StoredValue::Float(*f),
                    MetaValue::Bool(b) => StoredValue::Bool(*b),
                },
            })
            .collect(),
    }
}

/// The metadata of a stored value, checked as any metadata is (a value
/// that breaks a rule is damage, named by tree and key).
pub(super) fn decode(key: &[u8], value: &[u8]) -> Result<Metadata> {
    let rec: DocMetaRecord = codec::decode(DOC_META, key, value)?;
    if keys::parse_doc_key(key) != Some(rec.doc_id) {
        return Err(codec::corrupt(
            DOC_META,
            key,
            &format!("its record says doc {}", rec.doc_id),
        ));
    }
    let mut m = Metadata::new();
    for e in rec.entries {
        let v = match e.value {
            StoredValue::Str(s) => MetaValue::Str(s),
            StoredValue::Int(i) => MetaValue::Int(i),
            StoredValue::Float(f) => MetaValue::Float(f),
            StoredValue::Bool(b) => MetaValue::Bool(b),
        };
        m.insert(&e.key, v)
            .map_err(|err| codec::corrupt(DOC_META, key, &err.to_string()))?;
    }
    Ok(m)
}

/// The documents a filter chose, and the keys of the filter no document
/// of the store has (then nothing is chosen, and the caller says so).
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Matching documents, in id order.
    pub docs: Vec<DocRecord>,
    /// Keys of the filter that no stored document carries.
    pub unknown_keys: Vec<String>,
}

impl Selection {
    pub fn ids(&self) -> Vec<u64> {
        self.docs.iter().map(|d| d.id).collect()
    }

    /// The documents a question over `explicit` (ids; every document when
    /// empty) may read under `filter`: `explicit` narrowed to this
    /// selection. An empty `filter` returns `explicit` as it is. A filter
    /// that leaves nothing is [`Error::NoMatch`], saying why.
    pub fn narrow(&self, explicit: &[u64], filter: &Filter) -> Result<Vec<u64>> {
        if filter.is_empty() {
            return Ok(explicit.to_vec());
        }
        let ids: Vec<u64> = self
            .docs
            .iter()
            .map(|d| d.id)
            .filter(|id| explicit.is_empty() || explicit.contains(id))
            .collect();
        if ids.is_empty() {
            return Err(Error::NoMatch {
                filter: filter.to_string(),
                why: self.note().unwrap_or_else(|| {
                    if explicit.is_empty() {
                        String::new()
                    } else {
                        "none of the documents named with it".into()
                    }
                }),
            });
        }
        Ok(ids)
    }

    /// A sentence for the user when the filter names keys no document has.
    pub fn note(&self) -> Option<String> {
        match self.unknown_keys.as_slice() {
            [] => None,
            [k] => Some(format!(
                "no document has the metadata key `{k}`: the filter selects nothing"
            )),
            ks => Some(format!(
                "no document has the metadata keys {}: the filter selects nothing",
                ks.iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }
}

impl Store {
    /// The metadata of document `id` (empty when it has none).
    pub fn metadata(&self, id: u64) -> Result<Metadata> {
        let Some(tree) = &self.doc_meta else {
            return Ok(Metadata::new());
        };
        let key = keys::doc_key(id);
        match tree.get(key)? {
            None => Ok(Metadata::new()),
            Some(v) => decode(&key, &v),
        }
    }

    /// Every document with its metadata, in id order.
    pub fn documents_with_metadata(
        &self,
    ) -> impl Iterator<Item = Result<(DocRecord, Metadata)>> + '_ {
        self.documents().map(move |d| {
            let d = d?;
            let m = self.metadata(d.id)?;
            Ok((d, m))
        })
    }

    /// The documents whose metadata satisfies `filter` (all with an empty
    /// one), and the filter's keys no document has.
    pub fn select(&self, filter: &Filter) -> Result<Selection> {
        let keys = filter.keys();
        let mut seen = vec![false; keys.len()];
        let mut docs = Vec::new();
        for item in self.documents_with_metadata() {
            let (d, m) = item?;
            for (i, k) in keys.iter().enumerate() {
                seen[i] |= m.get(k).is_some();
            }
            if filter.matches(&m) {
                docs.push(d);
            }
        }
        let unknown_keys = keys
            .iter()
            .zip(&seen)
            .filter(|(_, s)| !**s)
            .map(|(k, _)| k.to_string())
            .collect();
        Ok(Selection { docs, unknown_keys })
    }

    /// Replace the metadata of stored document `id` (only the metadata:
    /// its chunks and latents stay) in one commit. Returns whether it
    /// changed anything.
    pub fn set_metadata(&self, id: u64, metadata: &Metadata) -> Result<bool> {
        self.check_writable()?;
        let doc = self.document(id)?.ok_or_else(|| Error::NoDocument {
            spec: id.to_string(),
            store: self.dir.clone(),
        })?;
        if self.metadata(id)? == *metadata {
            return Ok(false);
        }
        let value = if metadata.is_empty() {
            None
        } else {
            Some(codec::encode(&to_record(id, metadata))?)
        };
        let change = self.change(None, None, &[(doc.clone(), metadata.clone())], &[])?;
        self.commit_change(change, |t| {
            let key = keys::doc_key(id);
            match &value {
                Some(v) => t.doc_meta.insert(&key, v.clone())?,
                None => t.doc_meta.remove(&key)?,
            };
            t.bump_generation()
        })?;
        Ok(true)
    }
}
