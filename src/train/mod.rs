//! Training and fine-tuning the C3 cascade (`c3 train`), gradient for
//! gradient with upstream's recipe (C3-TRAIN facts, docs/training.md).
//!
//! Invariants:
//! - A frozen parameter costs no gradient or moment memory and is never
//!   written: its gradient is never computed, and the saved checkpoint copies
//!   it from the starting checkpoint as stored.
//! - Every text of a record is plain text; only the `<image>` placeholder of
//!   the human turn becomes control ids (`example`).
//! - A run's result depends only on its recipe, data and seed: a run killed
//!   at any moment and resumed ends with the same weights, bit for bit.
//!
//! This room belongs to the C3 family (it names `cascade::c3`'s checkpoint
//! types) and runs on `model`'s configs and weights; it never touches
//! `cascade::lclm`.
//!
//! Files: `ops` (each operation's forward and hand-written backward),
//! `params` (parameters, master copies, gradients), `stack` (a Qwen2 stack),
//! `model` (the cascade as one loss), `load` (from a checkpoint, LoRA),
//! `example` (record → ids and labels), `rng` (named seeded streams).
pub mod data;
pub mod example;
pub mod load;
pub mod model;
pub mod ops;
pub mod optim;
pub mod params;
pub mod plan;
pub mod plot;
pub mod records;
pub mod rng;
pub mod run;
pub mod save;
pub mod sources;
pub mod st_write;
pub mod stack;
pub mod state;
pub mod step;

/// The checkpoint a run starts from (the C3 family's), for front ends that
/// go through this room rather than naming the family.
pub use crate::cascade::c3::checkpoint::C3Checkpoint as Checkpoint;

#[cfg(test)]
mod tests;
