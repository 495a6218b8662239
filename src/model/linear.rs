//! A dense layer `y = x W^T (+ b)` over the last dimension, with the weight
//! either a plain tensor or quantized blocks (candle's `QMatMul`).

use super::quant::Quant;
use crate::kernels::gemv::{q4k_gemv, q8_0_gemv};
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Module, Result, Tensor};

enum Weight {
    /// [out, in], as stored in the checkpoint.
    Dense(Tensor),
    Quantized(QMatMul),
    /// 14-bit integers for the CPU's integer product (see `i16_gemm`).
    #[cfg(target_arch = "x86_64")]
    I16(crate::kernels::i16_gemm::PackedWeight),
}

/// From this many rows on, a quantized matrix is dequantized and multiplied
/// in f32 (see [`Linear::forward`]).
pub const DEQUANT_ROWS: usize = 32;

pub struct Linear {
    weight: Weight,
    out_dim: usize,
    bias: Option<Tensor>,
}

impl Linear {
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        let out_dim = weight.dims()[0];
        Self {
            weight: Weight::Dense(weight),
            out_dim,
            bias,
        }
    }

    /// Quantizes `weight` [out, in] (any float dtype) when `quant` allows its
    /// shape; computations then run in f32 activations.
    pub fn new_quantized(weight: Tensor, bias: Option<Tensor>, quant: Quant) -> Result<Self> {
        let (out_dim, k) = weight.dims2()?;
        if quant == Quant::I16 {
            return Self::new_i16(weight, bias);
        }
        let Some(ggml) = quant.ggml_for(k) else {
            return Ok(Self::new(weight, bias));
        };
        let q = QTensor::quantize(&weight.to_dtype(DType::F32)?, ggml)?;
        Ok(Self {
            weight: Weight::Quantized(QMatMul::from_qtensor(q)?),
            out_dim,
            bias,
        })
    }

    /// The weight packed for the integer product where this is a CPU with
    /// AVX2, dense otherwise.
    fn new_i16(weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        #[cfg(target_arch = "x86_64")]
        if weight.device().is_cpu() && super::quant::i16_supported() {
            let (out_dim, k) = weight.dims2()?;
            let w = weight
                .to_dtype(DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            return Ok(Self {
                weight: Weight::I16(crate::kernels::i16_gemm::PackedWeight::pack(&w, out_dim, k)),
                out_dim,
                bias,
            });
        }
        Ok(Self::new(weight, bias))
    }

    /// The dense weight, when the layer is not quantized.
    pub fn weight(&self) -> Option<&Tensor> {
        match &self.weight {
            Weight::Dense(w) => Some(w),
            _ => None,
        }
    }

    /// Bytes of the weight as held in memory (what one full pass reads).
    pub fn weight_bytes(&self) -> usize {
        match &self.weight {
            Weight::Dense(w) => w.elem_count() * w.dtype().size_in_bytes(),
            Weight::Quantized(QMatMul::QTensor(q)) => q.storage_size_in_bytes(),
            Weight::Quantized(QMatMul::Tensor(w) | QMatMul::TensorF16(w)) => {
                w.elem_count() * w.dtype().size_in_bytes()
            }
            #[cfg(target_arch = "x86_64")]
            Weight::I16(p) => p.bytes(),
        }
    }

    pub fn is_quantized(&self) -> bool {
        !matches!(self.weight, Weight::Dense(_))
    }

    /// `x`: [..., in] → [..., out]. Rows are flattened to one 2-D product so
    /// the GEMM sees all tokens at once.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let inner = dims[dims.len() - 1];
        let rows: usize = dims[..dims.len() - 1].iter().product();
        let x2 = x.reshape((rows, inner))?;
        let y = match &self.weight {
            Weight::Dense(w) => dense_product(&x2, w)?,
            // One row (a generated token) on the CPU: c3's own kernels.
            Weight::Quantized(QMatMul::QTensor(q))
                if rows == 1
                    && x2.device().is_cpu()
                    && matches!(q.dtype(), GgmlDType::Q8_0 | GgmlDType::Q4K) =>
            {
                let dtype = x2.dtype();
                let x = x2.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
                let mut y = vec![0f32; self.out_dim];
                let gemv = match q.dtype() {
                    GgmlDType::Q8_0 => q8_0_gemv,
                    _ => q4k_gemv,
                };
                gemv(&q.data()?, self.out_dim, inner, &x, &mut y);
                Tensor::from_vec(y, (1, self.out_dim), x2.device())?.to_dtype(dtype)?
            }
            // Many rows on the CPU, Q8_0, with AVX-512 VNNI (unless
            // `C3_PREFILL_Q8=0` or `C3_PREFILL_I16=0`): 8-bit activations per block of 32 against
            // the blocks' bytes (`kernels::q8_gemm`), about twice the i16
            // product's rate.
            #[cfg(target_arch = "x86_64")]
            Weight::Quantized(QMatMul::QTensor(q))
                if rows >= DEQUANT_ROWS
                    && x2.device().is_cpu()
                    && q.dtype() == GgmlDType::Q8_0
                    && crate::model::quant::prefill_q8() =>
            {
                let p =
                    crate::kernels::q8_gemm::Q8Packed::from_q8_0(&q.data()?, self.out_dim, inner)
                        .map_err(candle_core::Error::Msg)?;
                slice_product("q8 product", &x2, rows, p.n(), |x| p.matmul(x, rows))?
            }
            // Many rows (a prompt's prefill) on the CPU, Q8_0: the i16
            // product on the blocks' exact values (`i16_gemm::prefill_i16`,
            // `PackedWeight::from_q8_0`), packed for the call: the same
            // weights as the f32 GEMM below, activations rounded to 15 bits.
            #[cfg(target_arch = "x86_64")]
            Weight::Quantized(QMatMul::QTensor(q))
                if rows >= DEQUANT_ROWS
                    && x2.device().is_cpu()
                    && q.dtype() == GgmlDType::Q8_0
                    && crate::kernels::i16_gemm::prefill_i16() =>
            {
                let p = crate::kernels::i16_gemm::PackedWeight::from_q8_0(
                    &q.data()?,
                    self.out_dim,
                    inner,
                );
                slice_product("i16 product", &x2, rows, p.n(), |x| p.matmul(x, rows))?
            }
            // Other formats (and without the i16 kernel): this matrix
            // dequantized for the moment, then the f32 GEMM. Same weights,
            // unquantized activations, and several times the speed of the
            // quantized product at these sizes (docs/performance.md).
            Weight::Quantized(QMatMul::QTensor(q))
                if rows >= DEQUANT_ROWS && x2.device().is_cpu() =>
            {
                let dtype = x2.dtype();
                let w = q.dequantize(x2.device())?;
                dense_product(&x2.to_dtype(DType::F32)?.contiguous()?, &w)?.to_dtype(dtype)?
            }
            Weight::Quantized(q) => {
                let dtype = x2.dtype();
                q.forward(&x2.to_dtype(DType::F32)?.contiguous()?)?
                    .to_dtype(dtype)?
            }
            #[cfg(target_arch = "x86_64")]
            Weight::I16(p) => {
                slice_product("i16 product", &x2, rows, p.n(), |x| p.matmul(x, rows))?
            }
        };
        let y = match &self.bias {
            Some(b) => y.broadcast_add(&b.to_dtype(y.dtype())?)?,
            None => y,
        };
        let mut out_dims = dims;
        let last = out_dims.len() - 1;
        out_dims[last] = self.out_dim;
        y.reshape(out_dims)
    }
}

/// `x2 [rows, in] · wᵀ` → `[rows, n]` in `x2`'s dtype, by `product` on the
/// activations as one f32 slice (c3's own CPU products); `what` names it in
/// the error for activations that are not on the CPU.
#[cfg(target_arch = "x86_64")]
fn slice_product(
    what: &str,
    x2: &Tensor,
    rows: usize,
    n: usize,
    product: impl Fn(&[f32]) -> Vec<f32>,
) -> Result<Tensor> {
    let dtype = x2.dtype();
    let xf = x2.to_dtype(DType::F32)?.contiguous()?;
    let y = crate::kernels::cpu_f32::with_slice(&xf, product).ok_or_else(|| {
        candle_core::Error::Msg(format!(
            "{what}: f32 CPU activations expected, got {:?} on {:?}",
            xf.dtype(),
            xf.device()
        ))
    })?;
    Tensor::from_vec(y, (rows, n), x2.device())?.to_dtype(dtype)
}

/// `x · wᵀ` for a dense weight: through OpenBLAS when the machine has it
/// (and the operands suit it), candle's matmul otherwise.
fn dense_product(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    if let Some(y) = crate::kernels::blas::matmul_nt(x, w) {
        return y;
    }
    x.matmul(&w.t()?)
}
