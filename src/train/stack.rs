//! A Qwen2 stack (embeddings, blocks, final norm) for training: the forward
//! keeps what each block's backward needs (or only the block's input, to
//! recompute it: gradient checkpointing), and the backward hands each
//! parameter's gradient to [`Grads`], computing none for a frozen one.

use super::ops::{self, AttnSaved, Heads, RmsSaved, RopeTables};
use super::params::{Grads, ParamId, Params};
use crate::model::config::Qwen2Config;
use candle_core::{Result, Tensor};

/// A LoRA adapter on a linear layer: `y += scale · (x Aᵀ) Bᵀ`.
#[derive(Debug, Clone, Copy)]
pub struct Adapter {
    /// [r, in]
    pub a: ParamId,
    /// [out, r]
    pub b: ParamId,
    pub scale: f64,
}

/// A linear layer's parameters.
#[derive(Debug, Clone)]
pub struct Lin {
    pub w: ParamId,
    pub b: Option<ParamId>,
    pub adapter: Option<Adapter>,
}

impl Lin {
    /// `x` [N, in] → [N, out].
    fn forward(&self, p: &Params, x: &Tensor) -> Result<Tensor> {
        let y = ops::linear(x, p.w(self.w), self.b.map(|b| p.w(b)))?;
        match &self.adapter {
            Some(ad) => {
                let xa = x.matmul(&p.w(ad.a).t()?)?;
                y + (xa.matmul(&p.w(ad.b).t()?)? * ad.scale)?
            }
            None => Ok(y),
        }
    }

    /// Hands the weight gradients to `g` and returns `dx` when `need_dx`.
    fn backward(
        &self,
        p: &Params,
        x: &Tensor,
        dy: &Tensor,
        g: &mut Grads,
        need_dx: bool,
    ) -> Result<Option<Tensor>> {
        if g.wants(self.w) {
            g.add(self.w, ops::linear_dw(dy, x)?)?;
        }
        if let Some(b) = self.b.filter(|&b| g.wants(b)) {
            g.add(b, dy.sum(0)?)?;
        }
        let mut dx = match need_dx {
            true => Some(ops::linear_dx(dy, p.w(self.w))?),
            false => None,
        };
        if let Some(ad) = &self.adapter {
            let dyb = (dy.matmul(p.w(ad.b))? * ad.scale)?;
            if g.wants(ad.b) {
                let xa = x.matmul(&p.w(ad.a).t()?)?;
                g.add(ad.b, ((dy.t()?.matmul(&xa))? * ad.scale)?)?;
            }
            if g.wants(ad.a) {
                g.add(ad.a, dyb.t()?.matmul(x)?)?;
            }
            if let Some(d) = dx.take() {
                dx = Some((d + dyb.matmul(p.w(ad.a))?)?);
            }
        }
        Ok(dx)
    }
}

/// One Qwen2 block's parameters.
#[derive(Debug, Clone)]
pub struct Block {
    pub input_norm: ParamId,
    pub q: Lin,
    pub k: Lin,
    pub v: Lin,
    pub o: Lin,
    pub post_norm: ParamId,
    pub gate: Lin,
    pub up: Lin,
    pub down: Lin,
}

impl Block {
    /// The block's linear layers with their checkpoint suffixes.
    pub fn linears(&self) -> [(&'static str, &Lin); 7] {
        [
            ("self_attn.q_proj", &self.q),
            ("self_attn.k_proj", &self.k),
            ("self_attn.v_proj", &self.v),
            ("self_attn.o_proj", &self.o),
            ("mlp.gate_proj", &self.gate),
            ("mlp.up_proj", &self.up),
            ("mlp.down_proj", &self.down),
        ]
    }

    pub fn linears_mut(&mut self) -> [(&'static str, &mut Lin); 7] {
        [
            ("self_attn.q_proj", &mut self.q),
            ("self_attn.k_proj", &mut self.k),
            ("self_attn.v_proj", &mut self.v),
            ("self_attn.o_proj", &mut self.o),
            ("mlp.gate_proj", &mut self.gate),
            ("mlp.up_proj", &mut self.up),
            ("mlp.down_proj", &mut self.down),
        ]
    }
}

/// Geometry of a stack.
#[derive(Debug, Clone, Copy)]
pub struct Geometry {
    pub hidden: usize,
    pub heads: Heads,
    pub eps: f64,
    pub theta: f64,
}

impl Geometry {
    pub fn of(cfg: &Qwen2Config) -> Self {
        Self {
            hidden: cfg.hidden_size,
            heads: Heads {
                heads: cfg.num_attention_heads,
                kv_heads: cfg.num_key_value_heads,
                head_dim: cfg.head_dim(),
            },
            eps: cfg.rms_norm_eps,
            theta: cfg.rope_theta,
        }
    }
}

/// A Qwen2 stack.
#[derive(Debug, Clone)]
pub struct Stack {
    pub geom: Geometry,
    pub embed: ParamId,
    pub blocks: Vec<Block>,
    pub norm: ParamId,
}

/// What one block's backward needs.
struct BlockActs {
    n1: Tensor,
    rs1: RmsSaved,
    att: AttnSaved,
    /// Attention output before `o_proj`, [N, heads·d].
    o: Tensor,
    rs2: RmsSaved,
    n2: Tensor,
    g: Tensor,
    u: Tensor,
    act: Tensor,
}

/// A block's saved state: everything, or only its input (recomputed in
/// the backward pass).
enum Saved {
    Full(Box<BlockActs>),
    Input(Tensor),
}

/// What [`Stack::backward`] needs of a forward.
pub struct StackActs {
    saved: Vec<Saved>,
    tab: RopeTables,
}

impl Block {
    fn forward(
        &self,
        p: &Params,
        geom: &Geometry,
        x: &Tensor,
        tab: &RopeTables,
    ) -> Result<(Tensor, BlockActs)> {
        let (b, t, h) = x.dims3()?;
        let x2 = x.reshape((b * t, h))?;
        let (n1, rs1) = ops::rms_norm(&x2, p.w(self.input_norm), geom.eps)?;
        let q = self.q.forward(p, &n1)?;
        let k = self.k.forward(p, &n1)?;
        let v = self.v.forward(p, &n1)?;
        let r3 = |x: Tensor| x.reshape((b, t, ())); // back to [B, T, ·]
        let (o, att) = ops::attention(&r3(q)?, &r3(k)?, &r3(v)?, geom.heads, tab)?;
        let o = o.reshape((b * t, ()))?;
        let hid = (&x2 + self.o.forward(p, &o)?)?;
        let (n2, rs2) = ops::rms_norm(&hid, p.w(self.post_norm), geom.eps)?;
        let g = self.gate.forward(p, &n2)?;
        let u = self.up.forward(p, &n2)?;
        let act = ops::swiglu(&g, &u)?;
        let out = (hid + self.down.forward(p, &act)?)?.reshape((b, t, h))?;
        let acts = BlockActs {
            n1,
            rs1,
            att,
            o,
            rs2,
            n2,
            g,
            u,
            act,
        };
        Ok((out, acts))
    }

    /// `d_out` [B, T, H] → `dx` [B, T, H] (when `need_dx`).
    #[allow(clippy::too_many_arguments)]
    fn backward(
        &self,
        p: &Params,
        geom: &Geometry,
        a: &BlockActs,
        d_out: &Tensor,
        tab: &RopeTables,
        g: &mut Grads,
        need_dx: bool,
    ) -> Result<Option<Tensor>> {
        let (b, t, h) = d_out.dims3()?;
        let dh = d_out.reshape((b * t, h))?;
        let dact = self.down.backward(p, &a.act, &dh, g, true)?.expect("asked");
        let (dg, du) = ops::swiglu_backward(&dact, &a.g, &a.u)?;
        let dn2 = (self.gate.backward(p, &a.n2, &dg, g, true)?.expect("asked")
            + self.up.backward(p, &a.n2, &du, g, true)?.expect("asked"))?;
        let pn = self.post_norm;
        let (dhid, dw) = ops::rms_norm_backward(&dn2, p.w(pn), &a.rs2, g.wants(pn))?;
        if let Some(dw) = dw {
            g.add(pn, dw)?;
        }
        let dh = (dh + dhid)?;
        let d_o = self.o.backward(p, &a.o, &dh, g, true)?.expect("asked");
        let r3 = |x: Tensor| x.reshape((b, t, ()));
        let (dq, dk, dv) = ops::attention_backward(&r3(d_o)?, &a.att, geom.heads, tab)?;
        let flat = |x: Tensor| x.reshape((b * t, ()));
        let dn1 = (self
            .q
            .backward(p, &a.n1, &flat(dq)?, g, true)?
            .expect("asked")
            + self
                .k
                .backward(p, &a.n1, &flat(dk)?, g, true)?
                .expect("asked"))?;
        let dn1 = (dn1
            + self
                .v
                .backward(p, &a.n1, &flat(dv)?, g, true)?
                .expect("asked"))?;
        let inn = self.input_norm;
        let (dx1, dw) = ops::rms_norm_backward(&dn1, p.w(inn), &a.rs1, g.wants(inn))?;
        if let Some(dw) = dw {
            g.add(inn, dw)?;
        }
        match need_dx {
            true => Ok(Some((dh + dx1)?.reshape((b, t, h))?)),
            false => Ok(None),
        }
    }
}

impl Stack {
    /// Embedding rows of `ids` ([n] → [n, H], compute dtype).
    pub fn embed(&self, p: &Params, ids: &[u32]) -> Result<Tensor> {
        let idx = Tensor::new(ids, p.device())?;
        p.w(self.embed).index_select(&idx, 0)
    }

    /// Runs the blocks over `x` [B, T, H] (positions 0..T) and returns the
    /// last block's output (before the final norm). `keep`: whether to save
    /// what the backward needs (`None`: nothing, an inference pass);
    /// `recompute`: save only each block's input.
    pub fn forward(
        &self,
        p: &Params,
        x: &Tensor,
        keep: bool,
        recompute: bool,
    ) -> Result<(Tensor, Option<StackActs>)> {
        let t = x.dim(1)?;
        let hd = self.geom.heads.head_dim;
        let tab = RopeTables::new(t, hd, self.geom.theta, x.dtype(), x.device())?;
        let mut saved = Vec::with_capacity(self.blocks.len());
        let mut h = x.clone();
        for block in &self.blocks {
            let (out, acts) = block.forward(p, &self.geom, &h, &tab)?;
            if keep {
                saved.push(match recompute {
                    true => Saved::Input(h),
                    false => Saved::Full(Box::new(acts)),
                });
            }
            h = out;
        }
        Ok((h, keep.then_some(StackActs { saved, tab })))
    }

    /// Back through the blocks: `d_out` [B, T, H] is the gradient of the
    /// last block's output; returns the gradient of the stack's input when
    /// `need_dx`.
    pub fn backward(
        &self,
        p: &Params,
        acts: StackActs,
        d_out: Tensor,
        g: &mut Grads,
        need_dx: bool,
    ) -> Result<Option<Tensor>> {
        let StackActs { mut saved, tab } = acts;
        let mut d = d_out;
        for (l, block) in self.blocks.iter().enumerate().rev() {
            let acts = match saved.pop().expect("one saved state per block") {
                Saved::Full(a) => *a,
                Saved::Input(x) => block.forward(p, &self.geom, &x, &tab)?.1,
            };
            let need = need_dx || l > 0;
            match block.backward(p, &self.geom, &acts, &d, &tab, g, need)? {
                Some(dx) => d = dx,
                None => return Ok(None),
            }
        }
        Ok(Some(d))
    }
}
