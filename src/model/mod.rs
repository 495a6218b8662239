//! The C3 model: checkpoint loading and the Qwen2 forward pass both halves share.
pub mod blas;
pub mod causal_softmax;
pub mod checkpoint;
pub mod config;
mod cpu_f32;
mod decode_attention;
pub mod gemv;
pub mod linear;
pub mod projector;
pub mod quant;
pub mod qwen2;
pub mod rope;
pub mod swiglu;
pub mod synthetic;
pub mod weights;

pub use checkpoint::C3Checkpoint;
pub use quant::Quant;
pub use qwen2::{KvCache, Qwen2};
