//! Retrieval: the BM25 index of stored chunk texts and the choice of chunks
//! that fit a prompt.
pub mod index;
pub mod select;

pub use index::{ChunkIndex, Hit, IndexReport, SyncAction};
pub use select::{Budget, Candidate, Pick, Plan};
