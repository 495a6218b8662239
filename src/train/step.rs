//! One optimizer step: the gradients of its micro-batches (each
//! micro-batch's loss the mean over its label rows, divided by the number
//! of micro-batches, gradients summed: the step's gradient is the mean of
//! the micro-batch means), then clipping and AdamW; a step whose loss or
//! gradient norm is not finite changes nothing.

use super::example::Example;
use super::model::{C3Net, PassOptions};
use super::optim::{clip_factor, AdamW};
use super::params::{Grads, ParamId, Params, Part};
use candle_core::Tensor;
use std::collections::BTreeMap;

/// The summed gradients of one step and what they came from.
pub struct Accumulated {
    pub grads: BTreeMap<ParamId, Tensor>,
    /// Mean over the micro-batches of each one's mean cross entropy.
    pub loss: f64,
    /// Label rows (trained tokens) in the step.
    pub targets: usize,
    /// Tokens the step read: encoder and decoder ids of every record.
    pub tokens: usize,
}

/// Gradients of the micro-batches `micro` (records by reference). Each
/// micro-batch runs as forwards of at most `pack` records (padded to the
/// longest of them); the objective is the same whatever `pack` is.
pub fn accumulate(
    net: &C3Net,
    params: &Params,
    micro: &[Vec<&Example>],
    pack: usize,
    o: PassOptions,
) -> crate::Result<Accumulated> {
    let mut g = Grads::new(params);
    let count = micro.len().max(1) as f64;
    let (mut loss, mut targets, mut tokens) = (0.0, 0, 0);
    for mb in micro {
        let n: usize = mb.iter().map(|e| e.target_count()).sum();
        let scale = 1.0 / (n.max(1) as f64 * count);
        let mut sum = 0.0;
        for part in mb.chunks(pack.max(1)) {
            sum += net.loss_and_grads(params, part, scale, &mut g, o)?.loss;
        }
        loss += sum / n.max(1) as f64;
        targets += n;
        tokens += mb
            .iter()
            .map(|e| e.enc_ids.len() + e.dec_ids.len())
            .sum::<usize>();
    }
    Ok(Accumulated {
        grads: g.take(),
        loss: loss / count,
        targets,
        tokens,
    })
}

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StepStats {
    pub lr: f64,
    #[serde(with = "non_finite")]
    pub loss: f64,
    /// Global gradient norm before clipping.
    #[serde(with = "non_finite")]
    pub grad_norm: f64,
    /// The factor gradients were multiplied by (1: not clipped).
    #[serde(with = "non_finite")]
    pub clip_coef: f64,
    /// The loss or the gradient norm was not finite: nothing was updated.
    pub skipped: bool,
}

/// Learning rates of one step: `lr` for every parameter, `lr × decoder_ratio`
/// for the decoder's (its adapters included).
#[derive(Debug, Clone, Copy)]
pub struct StepLr {
    pub lr: f64,
    pub decoder_ratio: f64,
}

/// Clips and applies `acc` with AdamW.
pub fn apply(
    params: &mut Params,
    opt: &mut AdamW,
    acc: &Accumulated,
    lr: StepLr,
    max_grad_norm: f64,
) -> crate::Result<StepStats> {
    let (norm, coef) = clip_factor(&acc.grads, max_grad_norm)?;
    let mut stats = StepStats {
        lr: lr.lr,
        loss: acc.loss,
        grad_norm: norm,
        clip_coef: coef,
        skipped: false,
    };
    if !acc.loss.is_finite() || !norm.is_finite() {
        stats.skipped = true;
        return Ok(stats);
    }
    let parts: Vec<Part> = params.iter().map(|(_, p)| p.part).collect();
    opt.step(params, &acc.grads, coef, |id| match parts[id] {
        Part::Decoder => lr.lr * lr.decoder_ratio,
        _ => lr.lr,
    })?;
    Ok(stats)
}

/// JSON has no NaN or infinity: such a value is written as `null` and read
/// back as NaN (a skipped step's record must survive a resume).
mod non_finite {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        match v.is_finite() {
            true => s.serialize_f64(*v),
            false => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}
