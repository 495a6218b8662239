//! Kernels: c3's own CPU products and fused ops, on slices and tensors.
//!
//! Invariant: a kernel knows no model: it takes slices, tensors and shapes,
//! never a config, and the model room (`model/`) decides when each one runs.
//! Each file opens with what it computes, its accuracy contract, the
//! instructions it needs and what runs without them.
//!
//! Invariant: none of these ops records a backward pass (candle sees them as
//! custom ops or plain slices): training goes through differentiable
//! compositions instead.
//!
//! - `i16_gemm` (+ `i16_gemm/vnni.rs`, `i16_gemm/bf16.rs`): `x · wᵀ` in
//!   16-bit integers (AVX2, AVX-512 VNNI) or bf16 (AVX-512 BF16), the
//!   encoder's and prefill's many-row product.
//! - `q8_gemm`: `x · wᵀ` for Q8_0 weights with 8-bit activations
//!   (`vpdpbusd`, AVX-512 VNNI), the prefill's product where asked for.
//! - `gemv/`: one-row products on GGML Q8_0 / Q4_K blocks (decode steps).
//! - `blas`: the system OpenBLAS's f32 GEMM, opened at run time when present.
//! - `causal_softmax`, `swiglu`, `decode_attention`: fused element-wise and
//!   attention steps.
//! - `inplace`: element-wise updates written into existing f32 tensors
//!   (gradient sums, AdamW) for the trainer.
//! - `vexp`: `exp` 16 lanes at a time (AVX-512F) for the softmaxes and SwiGLU.
//! - `switch`: an on/off kernel choice from the environment, made once.
//! - `cpu_f32`: the f32 slice of a CPU tensor, for the ops above.
pub mod blas;
pub mod causal_softmax;
pub(crate) mod cpu_f32;
pub(crate) mod decode_attention;
pub mod gemv;
#[cfg(target_arch = "x86_64")]
pub mod i16_gemm;
pub mod inplace;
#[cfg(target_arch = "x86_64")]
pub mod q8_gemm;
pub mod swiglu;
#[cfg(target_arch = "x86_64")]
mod switch;
pub mod vexp;

/// Largest |a - b| over two f32 tensors of one shape, for unit tests.
#[cfg(test)]
pub(crate) fn max_abs_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    (a - b)
        .and_then(|d| d.abs())
        .and_then(|d| d.max_all())
        .and_then(|d| d.to_scalar::<f32>())
        .expect("same-shape f32 tensors")
}
