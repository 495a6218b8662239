//! Multi-tree transactions: every committed change goes through one, so a
//! crash leaves either the state before it or the state after it.

use c3_migrations::v1;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::Transactional;

use super::records::DocRecord;
use super::{codec, keys, Store};
use crate::{Error, Result};

pub(super) type TxResult<T> = std::result::Result<T, ConflictableTransactionError<Error>>;

/// The five trees inside one transaction.
pub(super) struct Tx<'a> {
    pub meta: &'a TransactionalTree,
    pub docs: &'a TransactionalTree,
    pub sources: &'a TransactionalTree,
    pub chunks: &'a TransactionalTree,
    pub latents: &'a TransactionalTree,
}

fn abort(e: Error) -> ConflictableTransactionError<Error> {
    ConflictableTransactionError::Abort(e)
}

impl Store {
    pub(super) fn transact<F>(&self, f: F) -> Result<()>
    where
        F: Fn(&Tx<'_>) -> std::result::Result<(), ConflictableTransactionError<Error>>,
    {
        (
            &self.meta,
            &self.docs,
            &self.sources,
            &self.chunks,
            &self.latents,
        )
            .transaction(|(meta, docs, sources, chunks, latents)| {
                f(&Tx {
                    meta,
                    docs,
                    sources,
                    chunks,
                    latents,
                })
            })
            .map_err(|e| match e {
                TransactionError::Abort(e) => e,
                TransactionError::Storage(e) => Error::Store(format!("transaction: {e}")),
            })
    }
}

impl Tx<'_> {
    pub fn counter(&self, key: &[u8]) -> TxResult<u64> {
        match self.meta.get(key)? {
            None => Ok(0),
            Some(v) => {
                let b: [u8; 8] = v
                    .as_ref()
                    .try_into()
                    .map_err(|_| abort(codec::corrupt(v1::META, key, "counter is not 8 bytes")))?;
                Ok(u64::from_be_bytes(b))
            }
        }
    }

    pub fn bump_generation(&self) -> TxResult<()> {
        let g = self.counter(v1::GENERATION_KEY)? + 1;
        self.meta.insert(v1::GENERATION_KEY, &g.to_be_bytes())?;
        Ok(())
    }

    pub fn remove_doc(&self, doc: &DocRecord) -> TxResult<()> {
        self.docs.remove(&keys::doc_key(doc.id))?;
        // Only drop the source index if it still points at this document.
        if let Some(v) = self.sources.get(doc.source.as_bytes())? {
            if keys::parse_doc_key(&v) == Some(doc.id) {
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
