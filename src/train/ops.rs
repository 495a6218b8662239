//! The Qwen2 block's operations for training, each a forward that returns
//! what its backward needs and a backward written out by hand.
//!
//! Why by hand: the inference forward (`model/qwen2.rs`) runs fused kernels
//! that record no backward in candle, and candle's own autograd computes (and
//! keeps until the step ends) a gradient for every operand, frozen weights
//! included. Here a frozen weight's gradient is simply never computed, a
//! layer's activations can be dropped and recomputed (checkpointing), and the
//! loss's gradient is formed while its logits are still in hand.
//!
//! Every op is built from basic candle tensor ops, so it runs on any device
//! and in f64 (the finite-difference tests in `train/tests.rs`). Norms,
//! softmax and the loss compute in f32 (f64 when the input is f64), as the
//! reference does; matrix products run in the input's dtype.

use candle_core::{DType, Device, Result, Tensor, D};

/// The dtype norms, softmax and the loss compute in for inputs of `dt`.
pub fn wide(dt: DType) -> DType {
    match dt {
        DType::F64 => DType::F64,
        _ => DType::F32,
    }
}

/// What [`rms_norm_backward`] needs: the normalised rows and their scale.
pub struct RmsSaved {
    /// x / rms(x), wide dtype, [N, H].
    xhat: Tensor,
    /// 1 / sqrt(mean(x²) + eps), wide dtype, [N, 1].
    r: Tensor,
}

/// `y = x / sqrt(mean(x²) + eps) * w` over the last dim of `x` [N, H],
/// computed in the wide dtype, returned in `x`'s dtype (as transformers'
/// Qwen2RMSNorm: the normalised rows are cast back before the weight).
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<(Tensor, RmsSaved)> {
    let dt = x.dtype();
    let xf = x.to_dtype(wide(dt))?;
    let r = (xf.sqr()?.mean_keepdim(D::Minus1)? + eps)?
        .sqrt()?
        .recip()?;
    let xhat = xf.broadcast_mul(&r)?;
    let y = xhat.to_dtype(dt)?.broadcast_mul(&w.to_dtype(dt)?)?;
    Ok((y, RmsSaved { xhat, r }))
}

/// Gradients of [`rms_norm`]: `dx` (in `dy`'s dtype) and, when asked, `dw`
/// (wide dtype, [H]).
pub fn rms_norm_backward(
    dy: &Tensor,
    w: &Tensor,
    s: &RmsSaved,
    want_dw: bool,
) -> Result<(Tensor, Option<Tensor>)> {
    let dt = dy.dtype();
    let wd = s.xhat.dtype();
    let dyf = dy.to_dtype(wd)?;
    let dw = match want_dw {
        true => Some((&dyf * &s.xhat)?.sum(0)?),
        false => None,
    };
    let dxhat = dyf.broadcast_mul(&w.to_dtype(wd)?)?;
    let dot = (&dxhat * &s.xhat)?.mean_keepdim(D::Minus1)?;
    let dx = (dxhat - s.xhat.broadcast_mul(&dot)?)?.broadcast_mul(&s.r)?;
    Ok((dx.to_dtype(dt)?, dw))
}

/// `x [N, in] · wᵀ (+ b)`.
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    let y = x.matmul(&w.t()?)?;
    match b {
        Some(b) => y.broadcast_add(b),
        None => Ok(y),
    }
}

/// `dy · w`: the input gradient of [`linear`].
pub fn linear_dx(dy: &Tensor, w: &Tensor) -> Result<Tensor> {
    dy.matmul(w)
}

/// `dyᵀ · x`: the weight gradient of [`linear`] ([out, in]).
pub fn linear_dw(dy: &Tensor, x: &Tensor) -> Result<Tensor> {
    dy.t()?.matmul(x)
}

/// Rotary tables for positions `0..t`: cos and sin [t, head_dim], each
/// half of the last dim holding the same angles (rotate-half form).
pub struct RopeTables {
    cos: Tensor,
    sin: Tensor,
}

impl RopeTables {
    /// The angles as transformers' Qwen2 forms them, in f32 whatever the
    /// model dtype: inv_freq[i] = 1 / theta^(2i / d) and angle = pos ×
    /// inv_freq, each rounded to f32; cos and sin are then rounded once.
    pub fn new(t: usize, head_dim: usize, theta: f64, dt: DType, device: &Device) -> Result<Self> {
        let half = head_dim / 2;
        let inv: Vec<f32> = (0..half)
            .map(|i| 1.0f32 / (theta as f32).powf((2 * i) as f32 / head_dim as f32))
            .collect();
        let mut cos = Vec::with_capacity(t * head_dim);
        let mut sin = Vec::with_capacity(t * head_dim);
        for p in 0..t {
            let row: Vec<f32> = inv.iter().map(|f| p as f32 * f).collect();
            for _ in 0..2 {
                cos.extend(row.iter().map(|&a| (a as f64).cos() as f32));
                sin.extend(row.iter().map(|&a| (a as f64).sin() as f32));
            }
        }
        let wd = wide(dt);
        Ok(Self {
            cos: Tensor::from_vec(cos, (t, head_dim), device)?.to_dtype(wd)?,
            sin: Tensor::from_vec(sin, (t, head_dim), device)?.to_dtype(wd)?,
        })
    }

    /// Tables for the first `t` positions.
    pub fn prefix(&self, t: usize) -> Result<Self> {
        Ok(Self {
            cos: self.cos.narrow(0, 0, t)?,
            sin: self.sin.narrow(0, 0, t)?,
        })
    }

    pub fn len(&self) -> usize {
        self.cos.dims()[0]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `[x2, x1]` with `sign` on the first half: `sign = -1` gives rotate_half
/// (`[-x2, x1]`), and the transpose of rotate_half is `[x2, -x1]`.
fn rotate(x: &Tensor, forward: bool) -> Result<Tensor> {
    let d = x.dim(D::Minus1)?;
    let h = d / 2;
    let x1 = x.narrow(D::Minus1, 0, h)?;
    let x2 = x.narrow(D::Minus1, h, h)?;
    match forward {
        true => Tensor::cat(&[&x2.neg()?, &x1], D::Minus1),
        false => Tensor::cat(&[&x2, &x1.neg()?], D::Minus1),
    }
}

/// RoPE on `x` [B, heads, T, d] (wide dtype in, wide dtype out).
pub fn rope(x: &Tensor, tab: &RopeTables) -> Result<Tensor> {
    x.broadcast_mul(&tab.cos)? + rotate(x, true)?.broadcast_mul(&tab.sin)?
}

/// The transpose of [`rope`] applied to a gradient.
pub fn rope_backward(dy: &Tensor, tab: &RopeTables) -> Result<Tensor> {
    dy.broadcast_mul(&tab.cos)? + rotate(&dy.broadcast_mul(&tab.sin)?, false)?
}

/// Heads of one attention call.
#[derive(Debug, Clone, Copy)]
pub struct Heads {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

impl Heads {
    fn rep(&self) -> usize {
        self.heads / self.kv_heads
    }
}

/// What [`attention_backward`] needs.
pub struct AttnSaved {
    /// Rotated queries grouped by KV head, [B, kv, rep·T, d], compute dtype.
    q: Tensor,
    /// Rotated keys and the values, [B, kv, T, d], compute dtype.
    k: Tensor,
    v: Tensor,
    /// Attention probabilities [B, kv, rep·T, T], wide dtype.
    p: Tensor,
    scale: f64,
}

/// Additive causal mask [rep·T, T] in the wide dtype: row `r·T + i` sees
/// keys `0..=i`.
fn causal_mask(rep: usize, t: usize, dt: DType, device: &Device) -> Result<Tensor> {
    let mut m = vec![0f32; t * t];
    for i in 0..t {
        for j in i + 1..t {
            m[i * t + j] = f32::NEG_INFINITY;
        }
    }
    let m = Tensor::from_vec(m, (1, t, t), device)?.to_dtype(dt)?;
    m.broadcast_as((rep, t, t))?.reshape((rep * t, t))
}

/// Causal grouped-query attention. `q` [B, T, heads·d], `k`, `v` [B, T,
/// kv·d] (projections, before RoPE); returns [B, T, heads·d]. Query head
/// `g·rep + r` reads KV head `g`. Rows are right-padded sequences: causality
/// alone keeps padding out of every real row.
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    h: Heads,
    tab: &RopeTables,
) -> Result<(Tensor, AttnSaved)> {
    let (b, t, _) = q.dims3()?;
    let dt = q.dtype();
    let wd = wide(dt);
    let (rep, d) = (h.rep(), h.head_dim);
    let split = |x: &Tensor, n: usize| -> Result<Tensor> {
        x.reshape((b, t, n, d))?
            .transpose(1, 2)?
            .to_dtype(wd)?
            .contiguous()
    };
    let q = rope(&split(q, h.heads)?, tab)?
        .to_dtype(dt)?
        .reshape((b, h.kv_heads, rep * t, d))?;
    let k = rope(&split(k, h.kv_heads)?, tab)?.to_dtype(dt)?;
    let v = v
        .reshape((b, t, h.kv_heads, d))?
        .transpose(1, 2)?
        .contiguous()?;
    let scale = 1.0 / (d as f64).sqrt();
    // Scores in the compute dtype, scaled and softmaxed in the wide one,
    // as transformers' eager attention does.
    let s = (q.matmul(&k.t()?)?.to_dtype(wd)? * scale)?;
    let s = s.broadcast_add(&causal_mask(rep, t, wd, q.device())?)?;
    let m = s.max_keepdim(D::Minus1)?;
    let e = s.broadcast_sub(&m)?.exp()?;
    let p = e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?;
    let o = p.to_dtype(dt)?.matmul(&v)?;
    let o = o
        .reshape((b, h.heads, t, d))?
        .transpose(1, 2)?
        .reshape((b, t, h.heads * d))?;
    Ok((o, AttnSaved { q, k, v, p, scale }))
}

/// Gradients of [`attention`]: (dq, dk, dv) in the shapes of its inputs.
pub fn attention_backward(
    d_out: &Tensor,
    s: &AttnSaved,
    h: Heads,
    tab: &RopeTables,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (b, t, _) = d_out.dims3()?;
    let dt = d_out.dtype();
    let wd = s.p.dtype();
    let (rep, d) = (h.rep(), h.head_dim);
    let d_o = d_out
        .reshape((b, t, h.heads, d))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((b, h.kv_heads, rep * t, d))?;
    // The rep query heads of a group are rows of one product, so the sums
    // over them (dk, dv) come out of the products themselves.
    let dv = s.p.to_dtype(dt)?.t()?.matmul(&d_o)?;
    let dp = d_o.matmul(&s.v.t()?)?.to_dtype(wd)?;
    let row = (&dp * &s.p)?.sum_keepdim(D::Minus1)?;
    let ds = ((dp.broadcast_sub(&row)? * &s.p)? * s.scale)?.to_dtype(dt)?;
    let dq = ds.matmul(&s.k)?;
    let dk = ds.t()?.matmul(&s.q)?;
    let unrope = |x: Tensor, n: usize| -> Result<Tensor> {
        let x = rope_backward(&x.reshape((b, n, t, d))?.to_dtype(wd)?, tab)?;
        x.to_dtype(dt)?.transpose(1, 2)?.reshape((b, t, n * d))
    };
    let dq = unrope(dq, h.heads)?;
    let dk = unrope(dk, h.kv_heads)?;
    let dv = dv.transpose(1, 2)?.reshape((b, t, h.kv_heads * d))?;
    Ok((dq, dk, dv))
}

/// `1 / (1 + exp(-x))`, in `x`'s dtype.
fn sigmoid(x: &Tensor) -> Result<Tensor> {
    (x.neg()?.exp()? + 1.0)?.recip()
}

/// `silu(g) · u`, computed in the wide dtype, returned in `g`'s.
pub fn swiglu(g: &Tensor, u: &Tensor) -> Result<Tensor> {
    let dt = g.dtype();
    let wd = wide(dt);
    let gf = g.to_dtype(wd)?;
    let silu = (&gf * sigmoid(&gf)?)?;
    (silu * u.to_dtype(wd)?)?.to_dtype(dt)
}

/// Gradients (dg, du) of [`swiglu`].
pub fn swiglu_backward(da: &Tensor, g: &Tensor, u: &Tensor) -> Result<(Tensor, Tensor)> {
    let dt = da.dtype();
    let wd = wide(dt);
    let (gf, uf, daf) = (g.to_dtype(wd)?, u.to_dtype(wd)?, da.to_dtype(wd)?);
    let sig = sigmoid(&gf)?;
    let silu = (&gf * &sig)?;
    let du = (&daf * &silu)?;
    // d silu / dg = sig · (1 + g · (1 - sig))
    let dsilu = (&sig * ((&gf * (1.0 - &sig)?)? + 1.0)?)?;
    let dg = ((daf * uf)? * dsilu)?;
    Ok((dg.to_dtype(dt)?, du.to_dtype(dt)?))
}

/// Loss sums of one call of [`cross_entropy`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LossSums {
    /// Sum of the per-row cross entropies (f64 on the host).
    pub loss: f64,
    /// Rows whose arg-max logit is the target.
    pub correct: usize,
    pub rows: usize,
}

/// Logit rows per slice of the loss: keeps [rows, V] f32 logits near 256 MB
/// for the 151,860-id vocabulary.
fn loss_rows(vocab: usize) -> usize {
    ((256usize << 20) / (4 * vocab.max(1))).max(16)
}

/// Cross entropy of `h` [N, H] against the output matrix `w` [V, H] for
/// `targets`, with its gradient formed at once: the logits are computed
/// slice by slice (never all [N, V] at once), and with `scale = Some(s)`
/// each row's loss counts `s` times in the objective, giving
/// `dh` [N, H] (`h`'s dtype) and `dw` [V, H] (wide dtype) when asked.
pub fn cross_entropy(
    h: &Tensor,
    w: &Tensor,
    targets: &[u32],
    scale: Option<f64>,
    want_dw: bool,
) -> Result<(LossSums, Option<Tensor>, Option<Tensor>)> {
    let (n, _) = h.dims2()?;
    let (vocab, _) = w.dims2()?;
    let dt = h.dtype();
    let wd = wide(dt);
    let mut sums = LossSums {
        rows: n,
        ..Default::default()
    };
    let mut dh_parts = Vec::new();
    let mut dw: Option<Tensor> = None;
    let step = loss_rows(vocab);
    for r0 in (0..n).step_by(step) {
        let rows = step.min(n - r0);
        let hc = h.narrow(0, r0, rows)?;
        let tgt = Tensor::new(&targets[r0..r0 + rows], h.device())?.unsqueeze(1)?;
        let logits = hc.matmul(&w.t()?)?.to_dtype(wd)?;
        let m = logits.max_keepdim(D::Minus1)?;
        let shifted = logits.broadcast_sub(&m)?;
        let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
        let picked = shifted.gather(&tgt, 1)?;
        let row_loss = (&lse - &picked)?.to_dtype(DType::F64)?;
        sums.loss += row_loss.sum_all()?.to_scalar::<f64>()?;
        let best = logits.argmax(D::Minus1)?.to_dtype(DType::U32)?;
        let hit = best.eq(&tgt.squeeze(1)?)?.to_dtype(DType::U32)?;
        sums.correct += hit.sum_all()?.to_scalar::<u32>()? as usize;
        if let Some(s) = scale {
            // d loss / d logits = (softmax - onehot) · s
            let p = shifted.broadcast_sub(&lse)?.exp()?;
            let neg = Tensor::full(-s, (rows, 1), h.device())?.to_dtype(wd)?;
            let dl = (p * s)?.scatter_add(&tgt, &neg, 1)?;
            let dlc = dl.to_dtype(dt)?;
            dh_parts.push(dlc.matmul(w)?);
            if want_dw {
                let g = dlc.t()?.matmul(&hc)?.to_dtype(wd)?;
                dw = Some(match dw {
                    Some(acc) => (acc + g)?,
                    None => g,
                });
            }
        }
    }
    let dh = match (scale, dh_parts.len()) {
        (None, _) => None,
        (Some(_), 0) => Some(h.zeros_like()?),
        (Some(_), 1) => dh_parts.pop(),
        (Some(_), _) => Some(Tensor::cat(&dh_parts, 0)?),
    };
    Ok((sums, dh, dw))
}
