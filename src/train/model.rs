//! The C3 cascade as one differentiable function: encoder ids → encoder
//! (query rows replaced by `Q`) → final norm at the query rows → projector
//! → latents spliced into the decoder's `<imgpad>` rows → decoder → final
//! norm and output matrix at the label rows only → cross entropy. The
//! encoder's `lm_head` is never computed.

use super::example::{Example, IGNORE};
use super::ops::{self, LossSums};
use super::params::{Grads, ParamId, Params};
use super::stack::Stack;
use candle_core::{Result, Tensor};

/// The C3 model's parameters, by role.
pub struct C3Net {
    pub enc: Stack,
    pub dec: Stack,
    /// `model.Q.weight` [latent_len, H_enc].
    pub query: ParamId,
    pub proj_w: ParamId,
    pub proj_b: ParamId,
    /// The decoder's output matrix: its embedding table when tied.
    pub out: ParamId,
    pub latent_len: usize,
    /// Id right-padding fills shorter sequences with (`<|endoftext|>`).
    pub pad_id: u32,
}

/// Options of one forward and backward pass.
#[derive(Debug, Clone, Copy, Default)]
pub struct PassOptions {
    /// Save only each block's input and recompute the block in the backward
    /// pass (gradient checkpointing).
    pub recompute: bool,
}

/// Where each row of a padded batch comes from.
struct Layout {
    b: usize,
    t: usize,
    ids: Vec<u32>,
}

/// Right-pads `seqs` to the longest with `pad`.
fn pad(seqs: &[&[u32]], pad: u32) -> Layout {
    let t = seqs.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(seqs.len() * t);
    for s in seqs {
        ids.extend_from_slice(s);
        ids.extend(std::iter::repeat_n(pad, t - s.len()));
    }
    Layout {
        b: seqs.len(),
        t,
        ids,
    }
}

/// Rows `[start, start + len)` of each sequence `i` of a [B·T, H] matrix,
/// gathered into [B·len, H].
fn rows_at(x: &Tensor, t: usize, starts: &[usize], len: usize) -> Result<Tensor> {
    let parts = starts
        .iter()
        .enumerate()
        .map(|(i, &s)| x.narrow(0, i * t + s, len))
        .collect::<Result<Vec<_>>>()?;
    Tensor::cat(&parts, 0)
}

/// Row indices `i·t + j` of every real position `j` of each sequence
/// outside its `[start, start + len)` block, with the id there.
fn embedded_rows(seqs: &[&[u32]], t: usize, starts: &[usize], len: usize) -> (Vec<u32>, Vec<u32>) {
    let mut rows = Vec::new();
    let mut ids = Vec::new();
    for (i, (s, &st)) in seqs.iter().zip(starts).enumerate() {
        for (j, &id) in s.iter().enumerate() {
            if j < st || j >= st + len {
                rows.push((i * t + j) as u32);
                ids.push(id);
            }
        }
    }
    (rows, ids)
}

/// Embeds a padded batch and replaces each sequence's block at `starts`
/// with `block(i)` ([len, H]); returns [B, T, H].
fn embed_with(
    stack: &Stack,
    p: &Params,
    lay: &Layout,
    starts: &[usize],
    len: usize,
    block: impl Fn(usize) -> Result<Tensor>,
) -> Result<Tensor> {
    let emb = stack.embed(p, &lay.ids)?;
    let mut seqs = Vec::with_capacity(lay.b);
    for (i, &s) in starts.iter().enumerate() {
        let row0 = i * lay.t;
        let mut parts = Vec::with_capacity(3);
        if s > 0 {
            parts.push(emb.narrow(0, row0, s)?);
        }
        parts.push(block(i)?.to_dtype(p.dtype())?);
        if s + len < lay.t {
            parts.push(emb.narrow(0, row0 + s + len, lay.t - s - len)?);
        }
        seqs.push(Tensor::cat(&parts, 0)?);
    }
    Tensor::stack(&seqs, 0)
}

/// The label rows of a batch: row index `i·T + t` where the label at
/// `t + 1` is not ignored, and that label.
fn label_rows(batch: &[&Example], t: usize) -> (Vec<u32>, Vec<u32>) {
    let mut rows = Vec::new();
    let mut targets = Vec::new();
    for (i, ex) in batch.iter().enumerate() {
        for pos in 0..ex.labels.len().saturating_sub(1) {
            let l = ex.labels[pos + 1];
            if l != IGNORE {
                rows.push((i * t + pos) as u32);
                targets.push(l as u32);
            }
        }
    }
    (rows, targets)
}

/// What the encoder half saved for its backward pass.
struct EncoderPass {
    lay: Layout,
    /// Query-row states after the final norm, [B·L, H_enc].
    raw: Tensor,
    norm: ops::RmsSaved,
    acts: Option<super::stack::StackActs>,
}

impl C3Net {
    /// Whether anything on the encoder's side (encoder, `Q`, projector) trains.
    fn encoder_side_trains(&self, g: &Grads, p: &Params) -> bool {
        g.wants(self.query)
            || g.wants(self.proj_w)
            || g.wants(self.proj_b)
            || p.iter()
                .any(|(id, q)| g.wants(id) && q.part == super::params::Part::Encoder)
    }

    /// Whether the encoder stack itself needs a backward pass.
    fn encoder_backward(&self, g: &Grads, p: &Params) -> bool {
        g.wants(self.query)
            || p.iter()
                .any(|(id, q)| g.wants(id) && q.part == super::params::Part::Encoder)
    }

    fn encode(
        &self,
        p: &Params,
        batch: &[&Example],
        keep: bool,
        o: PassOptions,
    ) -> Result<EncoderPass> {
        let seqs: Vec<&[u32]> = batch.iter().map(|e| e.enc_ids.as_slice()).collect();
        let starts: Vec<usize> = batch.iter().map(|e| e.query_start).collect();
        let lay = pad(&seqs, self.pad_id);
        let query = p.w(self.query);
        let x = embed_with(&self.enc, p, &lay, &starts, self.latent_len, |_| {
            Ok(query.clone())
        })?;
        let (h, acts) = self.enc.forward(p, &x, keep, o.recompute)?;
        let hidden = self.enc.geom.hidden;
        let q_rows = rows_at(
            &h.reshape((lay.b * lay.t, hidden))?,
            lay.t,
            &starts,
            self.latent_len,
        )?;
        let (raw, norm) = ops::rms_norm(&q_rows, p.w(self.enc.norm), self.enc.geom.eps)?;
        Ok(EncoderPass {
            lay,
            raw,
            norm,
            acts,
        })
    }

    /// Projected latents [B·L, H_dec] of raw query-row states.
    fn project(&self, p: &Params, raw: &Tensor) -> Result<Tensor> {
        ops::linear(raw, p.w(self.proj_w), Some(p.w(self.proj_b)))
    }

    /// Latents [B, L, H_dec] of a batch, as the trainer computes them.
    pub fn latents(&self, p: &Params, batch: &[&Example]) -> Result<Tensor> {
        let enc = self.encode(p, batch, false, PassOptions::default())?;
        let lat = self.project(p, &enc.raw)?;
        lat.reshape((batch.len(), self.latent_len, ()))
    }

    /// Logits [N, V] (wide dtype) at the batch's label rows, in order.
    pub fn label_logits(&self, p: &Params, batch: &[&Example]) -> Result<Tensor> {
        let enc = self.encode(p, batch, false, PassOptions::default())?;
        let lat = self.project(p, &enc.raw)?;
        let l = self.latent_len;
        let dseqs: Vec<&[u32]> = batch.iter().map(|e| e.dec_ids.as_slice()).collect();
        let dstarts: Vec<usize> = batch.iter().map(|e| e.latent_start).collect();
        let lay = pad(&dseqs, self.pad_id);
        let x = embed_with(&self.dec, p, &lay, &dstarts, l, |i| lat.narrow(0, i * l, l))?;
        let (h, _) = self.dec.forward(p, &x, false, false)?;
        let h = h.reshape((lay.b * lay.t, self.dec.geom.hidden))?;
        let (rows, _) = label_rows(batch, lay.t);
        let sel = h.index_select(&Tensor::new(rows.as_slice(), p.device())?, 0)?;
        let (y, _) = ops::rms_norm(&sel, p.w(self.dec.norm), self.dec.geom.eps)?;
        y.matmul(&p.w(self.out).t()?)?
            .to_dtype(ops::wide(y.dtype()))
    }

    /// Loss sums of a batch with no gradient (evaluation).
    pub fn evaluate(&self, p: &Params, batch: &[&Example]) -> Result<LossSums> {
        self.pass(p, batch, None, PassOptions::default())
    }

    /// Forward and backward over `batch`: each label row's cross entropy
    /// counts `scale` times in the objective; gradients go to `g`.
    pub fn loss_and_grads(
        &self,
        p: &Params,
        batch: &[&Example],
        scale: f64,
        g: &mut Grads,
        o: PassOptions,
    ) -> Result<LossSums> {
        self.pass(p, batch, Some((scale, g)), o)
    }

    fn pass(
        &self,
        p: &Params,
        batch: &[&Example],
        grad: Option<(f64, &mut Grads)>,
        o: PassOptions,
    ) -> Result<LossSums> {
        let (enc_train, enc_back) = match &grad {
            Some((_, g)) => (self.encoder_side_trains(g, p), self.encoder_backward(g, p)),
            None => (false, false),
        };
        let enc = self.encode(p, batch, enc_back, o)?;
        let lat = self.project(p, &enc.raw)?;
        let l = self.latent_len;

        let dseqs: Vec<&[u32]> = batch.iter().map(|e| e.dec_ids.as_slice()).collect();
        let dstarts: Vec<usize> = batch.iter().map(|e| e.latent_start).collect();
        let lay = pad(&dseqs, self.pad_id);
        let x = embed_with(&self.dec, p, &lay, &dstarts, l, |i| lat.narrow(0, i * l, l))?;
        let dec_back = grad.is_some();
        let (h, acts) = self.dec.forward(p, &x, dec_back, o.recompute)?;
        let hd = self.dec.geom.hidden;
        let h = h.reshape((lay.b * lay.t, hd))?;
        let (rows, targets) = label_rows(batch, lay.t);
        let sel = h.index_select(&Tensor::new(rows.as_slice(), p.device())?, 0)?;
        let (y, fnorm) = ops::rms_norm(&sel, p.w(self.dec.norm), self.dec.geom.eps)?;
        let Some((scale, g)) = grad else {
            return Ok(ops::cross_entropy(&y, p.w(self.out), &targets, None, false)?.0);
        };
        let (sums, dy, dout) =
            ops::cross_entropy(&y, p.w(self.out), &targets, Some(scale), g.wants(self.out))?;
        if let Some(d) = dout {
            g.add(self.out, d)?;
        }
        let dy = dy.expect("a scaled loss gives dh");
        let dn = self.dec.norm;
        let (dsel, dw) = ops::rms_norm_backward(&dy, p.w(dn), &fnorm, g.wants(dn))?;
        if let Some(dw) = dw {
            g.add(dn, dw)?;
        }
        // Back to every row of the batch (zero where no label reads it).
        let dh = h
            .zeros_like()?
            .index_add(&Tensor::new(rows.as_slice(), p.device())?, &dsel, 0)?
            .reshape((lay.b, lay.t, hd))?;
        let dec_embed_trains = g.wants(self.dec.embed);
        let need_dx = dec_embed_trains || enc_train;
        let acts = acts.expect("kept for the backward pass");
        let Some(dx) = self.dec.backward(p, acts, dh, g, need_dx)? else {
            return Ok(sums);
        };
        let dx = dx.reshape((lay.b * lay.t, hd))?;
        if dec_embed_trains {
            let (r, ids) = embedded_rows(&dseqs, lay.t, &dstarts, l);
            let rows = dx.index_select(&Tensor::new(r.as_slice(), p.device())?, 0)?;
            let shape = p.get(self.dec.embed).shape.clone();
            g.add_rows(self.dec.embed, &shape, &ids, &rows)?;
        }
        if !enc_train {
            return Ok(sums);
        }
        let dlat = rows_at(&dx, lay.t, &dstarts, l)?;
        if g.wants(self.proj_w) {
            g.add(self.proj_w, ops::linear_dw(&dlat, &enc.raw)?)?;
        }
        if g.wants(self.proj_b) {
            g.add(self.proj_b, dlat.sum(0)?)?;
        }
        let Some(enc_acts) = enc.acts else {
            return Ok(sums);
        };
        let draw = ops::linear_dx(&dlat, p.w(self.proj_w))?;
        let en = self.enc.norm;
        let (dq_rows, dw) = ops::rms_norm_backward(&draw, p.w(en), &enc.norm, g.wants(en))?;
        if let Some(dw) = dw {
            g.add(en, dw)?;
        }
        let el = &enc.lay;
        let he = self.enc.geom.hidden;
        let estarts: Vec<usize> = batch.iter().map(|e| e.query_start).collect();
        let qrows: Vec<u32> = estarts
            .iter()
            .enumerate()
            .flat_map(|(i, &s)| (0..l).map(move |j| (i * el.t + s + j) as u32))
            .collect();
        let qidx = Tensor::new(qrows.as_slice(), p.device())?;
        let dh = Tensor::zeros((el.b * el.t, he), dq_rows.dtype(), p.device())?
            .index_add(&qidx, &dq_rows, 0)?
            .reshape((el.b, el.t, he))?;
        let enc_embed_trains = g.wants(self.enc.embed);
        let need = enc_embed_trains || g.wants(self.query);
        let Some(dx) = self.enc.backward(p, enc_acts, dh, g, need)? else {
            return Ok(sums);
        };
        let dx = dx.reshape((el.b * el.t, he))?;
        if g.wants(self.query) {
            let dq = rows_at(&dx, el.t, &estarts, l)?
                .reshape((el.b, l, he))?
                .sum(0)?;
            g.add(self.query, dq)?;
        }
        if enc_embed_trains {
            let eseqs: Vec<&[u32]> = batch.iter().map(|e| e.enc_ids.as_slice()).collect();
            let (r, ids) = embedded_rows(&eseqs, el.t, &estarts, l);
            let rows = dx.index_select(&Tensor::new(r.as_slice(), p.device())?, 0)?;
            let shape = p.get(self.enc.embed).shape.clone();
            g.add_rows(self.enc.embed, &shape, &ids, &rows)?;
        }
        Ok(sums)
    }
}
