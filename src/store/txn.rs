//! Multi-tree transactions: every committed change goes through one, so a
//! crash leaves either the state before it or the state after it.

use c3_migrations::v1;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::Transactional;

use super::records::DocRecord;
use super::{codec, keys, Store};
use crate::{Error, Result};

pub(super) type TxResult<T> = std::result::Result<T, ConflictableTransactionError<Error>>;

/// The six trees inside one transaction.
pub(super) struct Tx<'a> {
    pub meta: &'a TransactionalTree,
    pub docs: &'a TransactionalTree,
    pub sources: &'a TransactionalTree,
    pub chunks: &'a TransactionalTree,
    pub latents: &'a TransactionalTree,
    pub doc_meta: &'a TransactionalTree,
}

fn abort(e: Error) -> ConflictableTransactionError<Error> {
    ConflictableTransactionError::Abort(e)
}

impl Store {
    pub(super) fn transact<F>(&self, f: F) -> Result<()>
    where
        F: Fn(&Tx<'_>) -> std::result::Result<(), ConflictableTransactionError<Error>>,
    {
        self.check_writable()?;
        // A writable store was migrated to version 3, which has the tree.
        let doc_meta = self.doc_meta.as_ref().ok_or_else(|| {
            Error::Store(format!(
                "store {}: the `doc_meta` tree is missing (schema older than 3)",
                self.dir.display()
            ))
        })?;
        let trees = (
            &self.meta.inner,
            &self.docs.inner,
            &self.sources.inner,
            &self.chunks.inner,
            &self.latents.inner,
            &doc_meta.inner,
        );
        let run = || {
            trees.transaction(|(meta, docs, sources, chunks, latents, doc_meta)| {
                f(&Tx {
                    meta,
                    docs,
                    sources,
                    chunks,
                    latents,
                    doc_meta,
                })
            })
        };
        match c3_migrations::guard::catch(run) {
            Ok(r) => r.map_err(|e| match e {
                TransactionError::Abort(e) => e,
                TransactionError::Storage(e) => {
                    super::tree::sled_failure(&self.dir, "transaction", e)
                }
            }),
            Err(p) => Err(super::tree::panicked(&self.dir, "transaction", p)),
        }
    }
}

impl Tx<'_> {
    pub fn counter(&self, key: &[u8]) -> TxResult<u64> {
        match self.meta.get(key)? {
            None => Ok(0),
            Some(v) => codec::decode_u64(v1::META, key, &v, false).map_err(abort),
        }
    }

    pub fn bump_generation(&self) -> TxResult<()> {
        let g = self.counter(v1::GENERATION_KEY)? + 1;
        self.meta
            .insert(v1::GENERATION_KEY, &codec::encode_u64(g)[..])?;
        Ok(())
    }

    pub fn remove_doc(&self, doc: &DocRecord) -> TxResult<()> {
        self.docs.remove(&keys::doc_key(doc.id))?;
        self.doc_meta.remove(&keys::doc_key(doc.id))?;
        // Only drop the source index if it still points at this document.
        if let Some(v) = self.sources.get(doc.source.as_bytes())? {
            if codec::decode_u64(v1::SOURCES, doc.source.as_bytes(), &v, false).ok() == Some(doc.id)
            {
                self.sources.remove(doc.source.as_bytes())?;
            }
        }
        for ord in 0..doc.chunk_count {
            let k = keys::chunk_key(doc.id, ord);
            self.chunks.remove(&k)?;
            self.latents.remove(&k)?;
        }
        Ok(())
    }
}
