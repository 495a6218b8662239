//! The C3 model: checkpoint loading and the Qwen2 forward pass both halves share.
pub mod blas;
pub mod causal_softmax;
pub mod checkpoint;
pub mod config;
mod cpu_f32;
mod decode_attention;
pub mod gemv;
pub mod gguf;
#[cfg(target_arch = "x86_64")]
pub mod i16_gemm;
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

/// Largest |a - b| over two f32 tensors of one shape, for unit tests.
#[cfg(test)]
pub(crate) fn max_abs_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    (a - b)
        .and_then(|d| d.abs())
        .and_then(|d| d.max_all())
        .and_then(|d| d.to_scalar::<f32>())
        .expect("same-shape f32 tensors")
}
