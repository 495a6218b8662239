//! `c3 train`: golden parity with an independent PyTorch reference
//! (`golden`), the command end to end (`cli`), killed and resumed runs
//! (`resume`), LoRA (`lora`).

#[path = "../common/mod.rs"]
mod common;

mod cli;
mod golden;
mod lora;
mod resume;
mod support;

pub use golden::examples as golden_examples;
