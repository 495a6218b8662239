//! Weight quantization at load time: for the decoder, candle's GGML block
//! formats through `QMatMul`, chosen per matrix by what its shape allows;
//! for the encoder, c3's 16-bit integer product (`i16_gemm`).

use candle_core::quantized::GgmlDType;
use std::fmt;
use std::str::FromStr;

/// How a model's matrices are held after loading.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Quant {
    /// 8-bit weights, one f16 scale per 32 (8.5 bits per weight).
    Q8_0,
    /// 4-bit k-quant, super-blocks of 256 with 6-bit sub-scales (4.5 bits per weight).
    Q4K,
    /// 14-bit integers with one f32 scale per output row, multiplied by
    /// activations quantized per row in the same way (AVX2 CPUs; the
    /// encoder's many-row products). Elsewhere the matrix stays dense.
    I16,
}

impl Quant {
    /// The GGML type for a matrix whose rows hold `k` values: Q4K needs rows
    /// in whole 256-blocks and falls back to Q8_0 otherwise (as llama.cpp
    /// does); Q8_0 needs 32-blocks; `None` keeps the matrix dense.
    pub fn ggml_for(self, k: usize) -> Option<GgmlDType> {
        match self {
            Quant::Q4K if k.is_multiple_of(256) => Some(GgmlDType::Q4K),
            Quant::Q4K | Quant::Q8_0 if k.is_multiple_of(32) => Some(GgmlDType::Q8_0),
            Quant::Q4K | Quant::Q8_0 | Quant::I16 => None,
        }
    }
}

/// Whether `Quant::I16` runs here (an x86-64 CPU with AVX2); elsewhere its
/// matrices stay dense.
pub fn i16_supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        crate::kernels::i16_gemm::available()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The name of the kernel `Quant::I16` products run with here (e.g.
/// `i16-avx512vnni`, `i16-avx2`; chosen by CPU features at run time), or
/// `None` where they cannot run.
pub fn i16_kernel_name() -> Option<&'static str> {
    #[cfg(target_arch = "x86_64")]
    {
        crate::kernels::i16_gemm::kernel().map(|k| k.name())
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        None
    }
}

/// Whether a quantized decoder's Q8_0 prefill runs the i16 product here
/// (see `i16_gemm::prefill_i16`); `false` where the CPU cannot run it.
pub fn prefill_i16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        crate::kernels::i16_gemm::prefill_i16()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether a quantized decoder's Q8_0 prefill runs with 8-bit activations
/// here (`kernels::q8_gemm`): where the CPU has AVX-512 VNNI, unless
/// `C3_PREFILL_Q8=0` or [`set_prefill_q8`] turned it off, or the prefill
/// is on the f32 GEMM ([`prefill_i16`] off: `C3_PREFILL_I16=0`).
pub fn prefill_q8() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        crate::kernels::q8_gemm::on() && prefill_i16()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Turns the 8-bit-activation prefill on or off for later products (on only
/// where the CPU runs it): tests and benchmarks comparing kernels.
pub fn set_prefill_q8(on: bool) {
    #[cfg(target_arch = "x86_64")]
    crate::kernels::q8_gemm::set_on(on);
    #[cfg(not(target_arch = "x86_64"))]
    let _ = on;
}

/// Turns the i16 prefill on or off for later products (on only where the
/// CPU runs it): tests and benchmarks comparing both in one process.
pub fn set_prefill_i16(on: bool) {
    #[cfg(target_arch = "x86_64")]
    crate::kernels::i16_gemm::set_prefill_i16(on);
    #[cfg(not(target_arch = "x86_64"))]
    let _ = on;
}

/// The kernel a Q8_0 prefill's products run with here: `q8-avx512vnni`
/// where [`prefill_q8`] is on, the i16 kernel's name where [`prefill_i16`]
/// is, else `f32-dequantized`.
pub fn prefill_kernel_name() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    if prefill_q8() {
        return crate::kernels::q8_gemm::NAME;
    }
    #[cfg(target_arch = "x86_64")]
    if prefill_i16() {
        // Q8_0 blocks are integers: they run with an i16 kernel even
        // where the encoder's weights are packed to bf16.
        if let Some(k) = crate::kernels::i16_gemm::int_kernel() {
            return k.name();
        }
    }
    "f32-dequantized"
}

impl fmt::Display for Quant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Quant::Q8_0 => "q8_0",
            Quant::Q4K => "q4k",
            Quant::I16 => "i16",
        })
    }
}

impl FromStr for Quant {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "q8_0" | "q8" => Ok(Quant::Q8_0),
            "q4k" | "q4_k" => Ok(Quant::Q4K),
            "i16" => Ok(Quant::I16),
            other => Err(format!("unknown quantization `{other}` (q8_0, q4k or i16)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_fall_back_by_row_length() {
        assert_eq!(Quant::Q4K.ggml_for(2048), Some(GgmlDType::Q4K));
        assert_eq!(Quant::Q4K.ggml_for(64), Some(GgmlDType::Q8_0));
        assert_eq!(Quant::Q8_0.ggml_for(2048), Some(GgmlDType::Q8_0));
        assert_eq!(Quant::Q8_0.ggml_for(48), None);
        assert_eq!(Quant::I16.ggml_for(2048), None);
        assert_eq!("i16".parse::<Quant>(), Ok(Quant::I16));
        assert_eq!("Q4K".parse::<Quant>(), Ok(Quant::Q4K));
        assert!("q2".parse::<Quant>().is_err());
    }
}
