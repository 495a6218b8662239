//! `c3 train`: golden parity with an independent PyTorch reference
//! (`golden`), and the command end to end (`cli`).

#[path = "../common/mod.rs"]
mod common;

mod golden;
