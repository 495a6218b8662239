//! The query path: `ask` a question over stored chunks (as latents, or as
//! text for the RAG baseline) and `expand` chunks back into text.
//!
//! Library entry points for front ends (CLI, TUI):
//! - [`ask`]: select chunks, build the prompt, stream the answer.
//! - [`prepare`] + [`Prepared::run`]: the same in two steps, so a caller can
//!   show which chunks were chosen (and whether the budget cut some) before
//!   the answer streams.
//! - [`expand_chunk`]: reconstruct one stored chunk from its latents.
//! - [`prepare_with`]: [`prepare`] over a prefix cache (`kvcache`), and
//!   [`warm`]: fill that cache for documents before any question.

pub mod answer_model;
mod ask;
mod expand;
pub mod stream;
mod warm;

pub use answer_model::AnswerModel;
pub use ask::{
    ask, prepare, prepare_with, AskRequest, AskResult, ChunkUse, Mode, Prepared, Reader, Timings,
};
pub use expand::expand_chunk;
pub use stream::AnswerStream;
pub use warm::{warm, WarmReport, WarmRequest, WARM_STEP};
