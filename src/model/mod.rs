//! Model: what every cascade family runs on — checkpoint tensors (`weights`,
//! safetensors shards, dtype conversion), the Qwen configuration and forward
//! pass (`qwen2`: Qwen2 and Qwen3, which differ only by configuration), dense
//! and quantized layers (`linear`, `quant`), RoPE tables, GGUF reading and
//! random weights at any geometry (`synthetic`, for benchmarks).
//!
//! Invariant: nothing here knows a cascade family; the products and fused
//! ops it calls live in `kernels/`.
pub mod config;
pub mod gguf;
pub mod linear;
pub mod quant;
pub mod qwen2;
pub mod rope;
pub mod synthetic;
pub mod weights;

pub use quant::Quant;
pub use qwen2::{KvCache, Qwen2};
