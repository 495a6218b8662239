//! Retrieval: the BM25 index of stored chunk texts, search over it (`c3
//! search`), and the choice of chunks that fit a prompt.
//!
//! Invariants: the index is derived data, rebuilt from the store whenever its
//! recorded generation differs from the store's; a selection never exceeds its [`Budget`], and
//! chunks keep their document order in the prompt whatever their scores.
pub mod index;
pub mod search;
pub mod select;

pub use index::{ChunkIndex, Hit, IndexReport, SyncAction};
pub use search::{search, SearchHit};
pub use select::{Budget, Candidate, Pick, Plan};
