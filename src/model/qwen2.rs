//! The Qwen decoder stack (Qwen2 and Qwen3: the differences are
//! configuration, see [`Qwen2Config`]) that takes input embeddings (so
//! latents can be spliced in), with causal attention, grouped KV heads, f32
//! RoPE and a KV cache.

use super::config::Qwen2Config;
use super::linear::Linear;
use super::quant::Quant;
use super::rope::Rope;
use super::weights::Weights;
use crate::kernels::causal_softmax::{causal_softmax, expanded_mask};
use crate::kernels::decode_attention::decode_attention;
use crate::kernels::swiglu::swiglu;
use crate::Result;
use candle_core::{DType, Device, Tensor};

/// q, k and v projections are one matrix (rows q then k then v) and gate and
/// up are one matrix: each layer reads its input once per product, which
/// for one generated token means one pass over the weights instead of
/// three (two), with one thread dispatch.
struct Attention {
    qkv: Linear,
    o: Linear,
    /// Qwen3's per-head RMS norms of q and k (weights [head_dim]), applied
    /// before RoPE.
    qk_norm: Option<(Tensor, Tensor)>,
    eps: f64,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

/// Gate and up projections: one stacked matrix on the CPU (one pass over
/// the input, a fused SwiGLU after it); two matrices elsewhere, so that the
/// SwiGLU reads contiguous halves (candle's GPU kernels for strided views
/// are several times slower).
enum GateUp {
    Fused {
        gate_up: Linear,
        intermediate: usize,
    },
    Split {
        gate: Linear,
        up: Linear,
    },
}

struct Mlp {
    gate_up: GateUp,
    down: Linear,
}

struct Block {
    input_norm: Tensor,
    attn: Attention,
    post_norm: Tensor,
    mlp: Mlp,
}

/// Keys and values of one layer: buffers [B, kv_heads, capacity, head_dim]
/// of which the first `len` positions are filled. New positions are written
/// in place; the buffers grow by doubling, so appending a token never copies
/// the cache (only a rare growth does).
struct LayerCache {
    k: Tensor,
    v: Tensor,
    len: usize,
}

/// Room for this many positions beyond the prompt before the first growth.
const CACHE_HEADROOM: usize = 512;

impl LayerCache {
    fn capacity(&self) -> usize {
        self.k.dims()[2]
    }

    /// Appends `k`, `v` [B, kv_heads, T, head_dim] (contiguous) and returns
    /// views of all positions so far.
    fn append(
        slot: &mut Option<Self>,
        k: &Tensor,
        v: &Tensor,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let (b, kvh, t, hd) = k.dims4()?;
        let len = slot.as_ref().map_or(0, |c| c.len);
        let need = len + t;
        if slot.as_ref().is_none_or(|c| c.capacity() < need) {
            let cap = slot
                .as_ref()
                .map_or(0, |c| 2 * c.capacity())
                .max(need + CACHE_HEADROOM);
            let nk = Tensor::zeros((b, kvh, cap, hd), k.dtype(), k.device())?;
            let nv = Tensor::zeros((b, kvh, cap, hd), v.dtype(), v.device())?;
            if let Some(old) = slot.as_ref() {
                nk.slice_set(&old.k.narrow(2, 0, len)?.contiguous()?, 2, 0)?;
                nv.slice_set(&old.v.narrow(2, 0, len)?.contiguous()?, 2, 0)?;
            }
            *slot = Some(Self { k: nk, v: nv, len });
        }
        let c = slot.as_mut().expect("cache slot was just filled");
        c.k.slice_set(k, 2, len)?;
        c.v.slice_set(v, 2, len)?;
        c.len = need;
        Ok((c.k.narrow(2, 0, need)?, c.v.narrow(2, 0, need)?))
    }
}

/// Keys and values of the positions seen so far, per layer.
#[derive(Default)]
pub struct KvCache {
    layers: Vec<Option<LayerCache>>,
}

impl KvCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of cached positions.
    pub fn len(&self) -> usize {
        self.layers
            .first()
            .and_then(|l| l.as_ref())
            .map(|c| c.len)
            .unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A cache that already holds `len` positions: one `(k, v)` pair per
    /// layer, each [1, kv_heads, capacity, head_dim] with its first `len`
    /// positions filled (the rest is room to append without growing). This
    /// is how a stored prefix is resumed; the caller vouches that the
    /// buffers hold the keys and values the model computed at positions
    /// `0..len`.
    pub fn from_filled(layers: Vec<(Tensor, Tensor)>, len: usize) -> Result<Self> {
        let mut out = Vec::with_capacity(layers.len());
        for (l, (k, v)) in layers.into_iter().enumerate() {
            let (b, kvh, cap, hd) = k.dims4()?;
            if v.dims4()? != (b, kvh, cap, hd) || b != 1 || cap < len {
                return Err(crate::Error::Input(format!(
                    "KV cache layer {l}: keys {:?} and values {:?} cannot hold {len} positions",
                    k.dims(),
                    v.dims()
                )));
            }
            out.push(Some(LayerCache { k, v, len }));
        }
        Ok(Self { layers: out })
    }

    /// Layers holding positions (0 for an empty cache).
    pub fn layer_count(&self) -> usize {
        self.layers.iter().take_while(|l| l.is_some()).count()
    }

    /// Keys and values of layer `l` at positions `from..from + n`: views
    /// [B, kv_heads, n, head_dim] of the cache (positions already written
    /// are never overwritten, so the views stay valid while it grows).
    pub fn positions(&self, l: usize, from: usize, n: usize) -> Result<(Tensor, Tensor)> {
        let c = self
            .layers
            .get(l)
            .and_then(|c| c.as_ref())
            .filter(|c| from + n <= c.len)
            .ok_or_else(|| {
                crate::Error::Input(format!(
                    "KV cache has no positions {from}..{} in layer {l}",
                    from + n
                ))
            })?;
        Ok((c.k.narrow(2, from, n)?, c.v.narrow(2, from, n)?))
    }
}

pub struct Qwen2 {
    cfg: Qwen2Config,
    embed: Tensor,
    blocks: Vec<Block>,
    norm: Tensor,
    /// The output matrix: `lm_head`, or `embed` when tied (shared, or a
    /// quantized copy when the model is quantized).
    lm_head: Linear,
    rope: Rope,
    dtype: DType,
    quant: Option<Quant>,
}

pub(crate) fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> candle_core::Result<Tensor> {
    // Computed in f32 whatever the model dtype, as the reference does.
    let dtype = x.dtype();
    let xf = x.to_dtype(DType::F32)?;
    let wf = w.to_dtype(DType::F32)?;
    candle_nn::ops::rms_norm(&xf, &wf, eps as f32)?.to_dtype(dtype)
}

impl Attention {
    /// Attention output for the last `q_rows` of the `t` rows of `x` (all
    /// `t` rows still give keys and values).
    fn forward(
        &self,
        x: &Tensor,
        rope: &Rope,
        start: usize,
        cache: Option<&mut Option<LayerCache>>,
        q_rows: usize,
        mask: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let skip = t - q_rows;
        let qkv = self.qkv.forward(x)?;
        let (q_dim, kv_dim) = (self.heads * self.head_dim, self.kv_heads * self.head_dim);
        let split = |from: usize, n: usize| -> candle_core::Result<Tensor> {
            qkv.narrow(2, from, n * self.head_dim)?
                .reshape((b, t, n, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = match skip {
            0 => split(0, self.heads)?,
            _ => qkv
                .narrow(1, skip, q_rows)?
                .narrow(2, 0, q_dim)?
                .reshape((b, q_rows, self.heads, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()?,
        };
        let k = split(q_dim, self.kv_heads)?;
        let v = split(q_dim + kv_dim, self.kv_heads)?;
        let (q, k) = match &self.qk_norm {
            Some((qn, kn)) => (rms_norm(&q, qn, self.eps)?, rms_norm(&k, kn, self.eps)?),
            None => (q, k),
        };
        let q = rope.apply(&q, start + skip)?;
        let k = rope.apply(&k, start)?;

        let (k, v) = match cache {
            Some(slot) => LayerCache::append(slot, &k, &v)?,
            None => (k, v),
        };
        let rep = self.heads / self.kv_heads;
        // The 1/sqrt(d) scale goes on q (t·d values) rather than on the
        // scores (t·s values per head). Query head g * rep + r reads KV
        // head g, so heads are grouped as [b, kv_heads, rep, rows, d].
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let q = (q.to_dtype(DType::F32)? * scale)?.reshape((
            b,
            self.kv_heads,
            rep,
            q_rows,
            self.head_dim,
        ))?;
        let out = attend_causal(&q, &k, &v, mask)?;
        let out = out
            .reshape((b, self.heads, q_rows, self.head_dim))?
            .transpose(1, 2)?
            .reshape((b, q_rows, self.heads * self.head_dim))?;
        self.o.forward(&out)
    }
}

/// Query rows per block of a long prefill's attention.
const ATTENTION_BLOCK: usize = 128;

/// Causal attention of `q` [b, kv_heads, rep, t, d] (f32, scaled) against
/// `k`, `v` [b, kv_heads, s, d], the `t` queries being the last `t` of the
/// `s` positions; returns [b, kv_heads, rep, t, d]. `mask`: see
/// [`attention_mask`].
///
/// On the CPU a long prefill is cut into blocks of query rows, each
/// multiplied only against the keys it may see: the masked upper triangle
/// of the score matrix (nearly half of it at t = s) is neither computed nor
/// exponentiated.
fn attend_causal(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
) -> candle_core::Result<Tensor> {
    let (b, kv_heads, rep, t, d) = q.dims5()?;
    let s = k.dim(2)?;
    if t == 1 {
        if let Some(out) = decode_attention(q, k, v) {
            return out;
        }
    }
    let kf = k.to_dtype(DType::F32)?;
    // The `rep` query heads of a group are stacked as rows of one product
    // against their shared keys, so K/V are never copied per query head.
    let block = |q: &Tensor, rows: usize, keys: usize| -> candle_core::Result<Tensor> {
        let q = q.reshape((b, kv_heads, rep * rows, d))?;
        let scores = q.matmul(&kf.narrow(2, 0, keys)?.t()?)?; // [b, kv, rep * rows, keys]
        let probs = causal_softmax(&scores, rows, mask)?.to_dtype(v.dtype())?;
        probs
            .matmul(&v.narrow(2, 0, keys)?)?
            .reshape((b, kv_heads, rep, rows, d))
    };
    // On a GPU the masked triangle costs less than more, smaller launches:
    // blocks only bound the score matrix's memory there.
    let rows_per_block = match q.device().is_cpu() {
        true if t < 2 * ATTENTION_BLOCK => t,
        true => ATTENTION_BLOCK,
        false => gpu_block_rows(b * kv_heads * rep, s),
    };
    if rows_per_block >= t {
        return block(q, t, s);
    }
    let mut outs = Vec::with_capacity(t.div_ceil(rows_per_block));
    for r0 in (0..t).step_by(rows_per_block) {
        let rows = rows_per_block.min(t - r0);
        // Query row r0 + i sits at position s - t + r0 + i and sees the
        // keys up to it: the block's last row bounds the key range.
        let keys = s - t + r0 + rows;
        outs.push(block(&q.narrow(3, r0, rows)?.contiguous()?, rows, keys)?);
    }
    Tensor::cat(&outs, 3)
}

/// Bytes of f32 attention scores one GPU attention pass may hold (the full
/// mask of [`attention_mask`] is as large again). 8 chunks of 1034
/// positions (12 heads) need 0.4 GiB; a 10k-position prompt over the 3B
/// decoder (16 heads) would need 6.4 GiB and is done in blocks of rows.
const GPU_SCORE_BYTES: usize = 2 << 30;

/// Query rows per GPU attention pass for `lead` = batch × heads score
/// matrices against `keys` positions (at least [`ATTENTION_BLOCK`]).
fn gpu_block_rows(lead: usize, keys: usize) -> usize {
    (GPU_SCORE_BYTES / (4 * lead * keys).max(1)).max(ATTENTION_BLOCK)
}

/// Off the CPU, the additive causal mask of `rows` queries against `keys`
/// positions, already in the shape of the scores of every head
/// ([b, kv_heads, rep * rows, keys]), built once per forward for all
/// layers. None on the CPU (its fused softmax needs none), for one row, and
/// when the scores are too large for one pass.
fn attention_mask(
    cfg: &Qwen2Config,
    b: usize,
    rows: usize,
    keys: usize,
    device: &Device,
) -> candle_core::Result<Option<Tensor>> {
    let (heads, kv_heads) = (cfg.num_attention_heads, cfg.num_key_value_heads);
    // Blocked passes build their own smaller masks.
    if device.is_cpu() || rows < 2 || gpu_block_rows(b * heads, keys) < rows {
        return Ok(None);
    }
    let m = expanded_mask(b * heads, rows, keys, device)?;
    Ok(Some(m.reshape((
        b,
        kv_heads,
        heads / kv_heads * rows,
        keys,
    ))?))
}

impl Mlp {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let act = match &self.gate_up {
            GateUp::Fused {
                gate_up,
                intermediate,
            } => swiglu(&gate_up.forward(x)?, *intermediate)?,
            GateUp::Split { gate, up } => {
                (candle_nn::ops::silu(&gate.forward(x)?)? * up.forward(x)?)?
            }
        };
        self.down.forward(&act)
    }

    fn linears(&self) -> Vec<&Linear> {
        match &self.gate_up {
            GateUp::Fused { gate_up, .. } => vec![gate_up, &self.down],
            GateUp::Split { gate, up } => vec![gate, up, &self.down],
        }
    }
}

impl Qwen2 {
    /// Loads the Qwen tensors under `model.` (or with no prefix, as a bare
    /// Qwen3 encoder stores them) from `w`, checking every shape against `cfg`.
    pub fn load(w: &Weights, cfg: &Qwen2Config, device: &Device, dtype: DType) -> Result<Self> {
        Self::load_quantized(w, cfg, device, dtype, None)
    }

    /// Like [`Qwen2::load`], quantizing every matrix (and the output matrix)
    /// with `quant` as it is read, so the dense copy of one matrix at a time
    /// is all that is held besides the quantized model. Embedding lookups
    /// keep the dense table.
    pub fn load_quantized(
        w: &Weights,
        cfg: &Qwen2Config,
        device: &Device,
        dtype: DType,
        quant: Option<Quant>,
    ) -> Result<Self> {
        Self::load_inner(w, cfg, device, dtype, quant, true)
    }

    /// [`Qwen2::load_quantized`] for a stack whose output matrix is never
    /// used (the C3 encoder): the output matrix stays the dense embedding
    /// table it is tied to, costing no time or memory.
    pub fn load_quantized_body(
        w: &Weights,
        cfg: &Qwen2Config,
        device: &Device,
        dtype: DType,
        quant: Option<Quant>,
    ) -> Result<Self> {
        Self::load_inner(w, cfg, device, dtype, quant, false)
    }

    fn load_inner(
        w: &Weights,
        cfg: &Qwen2Config,
        device: &Device,
        dtype: DType,
        quant: Option<Quant>,
        quantize_head: bool,
    ) -> Result<Self> {
        crate::runtime::keep_large_buffers();
        let h = cfg.hidden_size;
        let hd = cfg.head_dim();
        let kv = cfg.num_key_value_heads * hd;
        let q_out = cfg.num_attention_heads * hd;
        let i = cfg.intermediate_size;
        let bias = cfg.qkv_bias();
        // `save_pretrained` of a bare Qwen3Model writes no `model.` prefix.
        let pre = if !w.contains("model.embed_tokens.weight") && w.contains("embed_tokens.weight") {
            ""
        } else {
            "model."
        };
        // One layer from the checkpoint matrices `names` ([out, inp] each)
        // stacked by rows, with their biases when `bias`.
        let lin = |names: &[(&str, usize)], inp: usize, bias: bool| -> Result<Linear> {
            let mut weights = Vec::with_capacity(names.len());
            let mut biases = Vec::with_capacity(names.len());
            for &(name, out) in names {
                weights.push(w.get(&format!("{name}.weight"), &[out, inp])?);
                if bias {
                    biases.push(w.get(&format!("{name}.bias"), &[out])?);
                }
            }
            let stack = |mut parts: Vec<Tensor>| -> candle_core::Result<Tensor> {
                match parts.len() {
                    1 => Ok(parts.remove(0)),
                    _ => Tensor::cat(&parts, 0),
                }
            };
            let weight = stack(weights)?;
            let bias = if bias { Some(stack(biases)?) } else { None };
            Ok(match quant {
                Some(q) => Linear::new_quantized(weight, bias, q)?,
                None => Linear::new(weight, bias),
            })
        };
        let mut blocks = Vec::with_capacity(cfg.num_hidden_layers);
        for l in 0..cfg.num_hidden_layers {
            let p = format!("{pre}layers.{l}");
            let qk_norm = match cfg.qk_norm() {
                true => Some((
                    w.get(&format!("{p}.self_attn.q_norm.weight"), &[hd])?,
                    w.get(&format!("{p}.self_attn.k_norm.weight"), &[hd])?,
                )),
                false => None,
            };
            blocks.push(Block {
                input_norm: w.get(&format!("{p}.input_layernorm.weight"), &[h])?,
                post_norm: w.get(&format!("{p}.post_attention_layernorm.weight"), &[h])?,
                attn: Attention {
                    qkv: lin(
                        &[
                            (&format!("{p}.self_attn.q_proj"), q_out),
                            (&format!("{p}.self_attn.k_proj"), kv),
                            (&format!("{p}.self_attn.v_proj"), kv),
                        ],
                        h,
                        bias,
                    )?,
                    o: lin(&[(&format!("{p}.self_attn.o_proj"), h)], q_out, false)?,
                    qk_norm,
                    eps: cfg.rms_norm_eps,
                    heads: cfg.num_attention_heads,
                    kv_heads: cfg.num_key_value_heads,
                    head_dim: hd,
                },
                mlp: Mlp {
                    gate_up: if device.is_cpu() {
                        GateUp::Fused {
                            gate_up: lin(
                                &[
                                    (&format!("{p}.mlp.gate_proj"), i),
                                    (&format!("{p}.mlp.up_proj"), i),
                                ],
                                h,
                                false,
                            )?,
                            intermediate: i,
                        }
                    } else {
                        GateUp::Split {
                            gate: lin(&[(&format!("{p}.mlp.gate_proj"), i)], h, false)?,
                            up: lin(&[(&format!("{p}.mlp.up_proj"), i)], h, false)?,
                        }
                    },
                    down: lin(&[(&format!("{p}.mlp.down_proj"), h)], i, false)?,
                },
            });
        }
        let embed = w.get(&format!("{pre}embed_tokens.weight"), &[cfg.vocab_size, h])?;
        let out = if w.contains("lm_head.weight") {
            w.get("lm_head.weight", &[cfg.vocab_size, h])?
        } else if cfg.tie_word_embeddings {
            embed.clone()
        } else {
            return Err(crate::Error::Checkpoint {
                path: w.dir().to_path_buf(),
                msg: "missing tensor `lm_head.weight` (and `tie_word_embeddings` is false)".into(),
            });
        };
        let lm_head = match quant {
            Some(q) if quantize_head => Linear::new_quantized(out, None, q)?,
            _ => Linear::new(out, None),
        };
        Ok(Self {
            rope: Rope::new(hd, cfg.rope_theta, cfg.max_position_embeddings, device)?,
            norm: w.get(&format!("{pre}norm.weight"), &[h])?,
            embed,
            blocks,
            lm_head,
            cfg: cfg.clone(),
            dtype,
            quant,
        })
    }

    pub fn config(&self) -> &Qwen2Config {
        &self.cfg
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Bytes of weights one generated token reads: every matrix of every
    /// block and the output matrix (norms and one embedding row are noise).
    pub fn weight_bytes_per_token(&self) -> usize {
        let blocks: usize = self
            .blocks
            .iter()
            .map(|b| {
                [&b.attn.qkv, &b.attn.o]
                    .into_iter()
                    .chain(b.mlp.linears())
                    .map(|l| l.weight_bytes())
                    .sum::<usize>()
            })
            .sum();
        blocks + self.lm_head.weight_bytes()
    }

    /// The fewest rows a prefill that continues a stored prefix should
    /// run to compute what one whole-prompt prefill computes: on the CPU a
    /// quantized matrix multiplies fewer than `linear::DEQUANT_ROWS` rows
    /// through another product (8-bit activations) than many rows (15-bit
    /// or f32 activations). 1 where every row count takes one product.
    pub fn prefill_rows_floor(&self) -> usize {
        match (self.quant, self.device().is_cpu()) {
            (Some(_), true) => super::linear::DEQUANT_ROWS,
            _ => 1,
        }
    }

    /// The quantization of the matrices, if any.
    pub fn quant(&self) -> Option<Quant> {
        self.quant
    }

    pub fn device(&self) -> &Device {
        self.embed.device()
    }

    /// Embedding rows of `ids`: [len, H].
    pub fn embed(&self, ids: &[u32]) -> Result<Tensor> {
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= self.cfg.vocab_size) {
            return Err(crate::Error::Input(format!(
                "token id {bad} is outside the vocabulary ({})",
                self.cfg.vocab_size
            )));
        }
        let idx = Tensor::new(ids, self.device())?;
        Ok(self.embed.index_select(&idx, 0)?)
    }

    /// Runs the stack over `x` [B, T, H] at positions `start..start+T`
    /// (`start` = cached length when a cache is given) and returns the final
    /// RMS-normed hidden states [B, T, H].
    pub fn forward(&self, x: &Tensor, cache: Option<&mut KvCache>) -> Result<Tensor> {
        self.forward_tail(x, cache, x.dim(1)?)
    }

    /// Like [`Qwen2::forward`], but returns only the last `tail` rows
    /// [B, tail, H]. The last layer then computes attention and MLP for
    /// those rows alone (its keys and values still cover every row, and so
    /// does the cache): a prefill that needs one row, or an encoder that
    /// reads only its query rows, skips that much of the last layer.
    pub fn forward_tail(
        &self,
        x: &Tensor,
        mut cache: Option<&mut KvCache>,
        tail: usize,
    ) -> Result<Tensor> {
        let start = cache.as_ref().map(|c| c.len()).unwrap_or(0);
        let t = x.dim(1)?;
        if tail == 0 || tail > t {
            return Err(crate::Error::Input(format!(
                "cannot return the last {tail} of {t} rows"
            )));
        }
        if start + t > self.rope.max_positions() {
            return Err(crate::Error::Input(format!(
                "{} positions exceed the model's limit of {} (max_position_embeddings)",
                start + t,
                self.rope.max_positions()
            )));
        }
        if let Some(c) = cache.as_deref_mut() {
            c.layers.resize_with(self.blocks.len(), || None);
        }
        let mut h = x.to_dtype(self.dtype)?;
        let last = self.blocks.len() - 1;
        let b = x.dim(0)?;
        let mask = attention_mask(&self.cfg, b, t, start + t, self.device())?;
        let tail_mask = if tail == t {
            None
        } else {
            attention_mask(&self.cfg, b, tail, start + t, self.device())?
        };
        for (l, block) in self.blocks.iter().enumerate() {
            let q_rows = if l == last { tail } else { t };
            let mask = if q_rows == t { &mask } else { &tail_mask };
            let n = rms_norm(&h, &block.input_norm, self.cfg.rms_norm_eps)?;
            let slot = cache.as_deref_mut().map(|c| &mut c.layers[l]);
            let a = block
                .attn
                .forward(&n, &self.rope, start, slot, q_rows, mask.as_ref())?;
            if q_rows < t {
                h = h.narrow(1, t - q_rows, q_rows)?;
            }
            h = (h + a)?;
            let n = rms_norm(&h, &block.post_norm, self.cfg.rms_norm_eps)?;
            h = (&h + block.mlp.forward(&n)?)?;
        }
        Ok(rms_norm(&h, &self.norm, self.cfg.rms_norm_eps)?)
    }

    /// Logits [N, V] in f32 for hidden rows `h` [N, H].
    pub fn logits(&self, h: &Tensor) -> Result<Tensor> {
        Ok(self
            .lm_head
            .forward(&h.to_dtype(self.dtype)?)?
            .to_dtype(DType::F32)?)
    }
}

#[cfg(test)]
mod tests {
    use super::{gpu_block_rows, ATTENTION_BLOCK};

    #[test]
    fn gpu_attention_passes_bound_the_score_memory() {
        // 8 encoder chunks (12 heads, 1034 positions): one pass.
        assert!(gpu_block_rows(8 * 12, 1034) >= 1034);
        // A 10k-position prompt over 16 heads: blocks of at most 2 GiB.
        let rows = gpu_block_rows(16, 10_000);
        assert!(rows < 10_000 && 4 * 16 * 10_000 * rows <= 2 << 30, "{rows}");
        // Never below the CPU block size, whatever the size.
        assert_eq!(gpu_block_rows(1 << 20, 1 << 20), ATTENTION_BLOCK);
    }
}
