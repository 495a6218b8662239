//! The optimizer side of the recipe (C3-TRAIN.md): transformers' warmup +
//! cosine schedule (the first step runs at lr 0), global-norm clipping,
//! and AdamW as torch writes it (f32 moments, eps added to √v̂ after bias
//! correction, decoupled weight decay). candle's `AdamW` differs (decay
//! 0.01 by default, moments in the parameter's dtype) and candle has no
//! clipping or schedules, so these are c3's own.

use super::params::{master_dtype, ParamId, Params};
use crate::kernels::inplace;
use candle_core::{DType, Result, Tensor, D};
use std::collections::BTreeMap;

/// Linear warmup from 0 over `ceil(ratio × total)` steps, then a half
/// cosine to 0 (transformers' `get_cosine_schedule_with_warmup`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    pub base: f64,
    pub warmup: usize,
    pub total: usize,
}

impl Schedule {
    pub fn new(base: f64, warmup_ratio: f64, total: usize) -> Self {
        Self {
            base,
            warmup: (total as f64 * warmup_ratio).ceil() as usize,
            total,
        }
    }

    /// The learning rate of optimizer step `step` (0-based), computed in
    /// the reference's order of operations.
    pub fn lr(&self, step: usize) -> f64 {
        let factor = if step < self.warmup {
            step as f64 / self.warmup.max(1) as f64
        } else {
            let progress = (step - self.warmup) as f64 / (self.total - self.warmup).max(1) as f64;
            let cycles = 0.5;
            (0.5 * (1.0 + (std::f64::consts::PI * cycles * 2.0 * progress).cos())).max(0.0)
        };
        self.base * factor
    }
}

/// The global L2 norm of `grads` and the factor clipping multiplies them by
/// (`max_norm / (norm + 1e-6)`, at most 1; 1 when `max_norm <= 0`).
pub fn clip_factor(grads: &BTreeMap<ParamId, Tensor>, max_norm: f64) -> Result<(f64, f64)> {
    let mut sq = 0f64;
    for g in grads.values() {
        // Rows in the gradient's dtype, the (up to 152k) row sums in f64:
        // one f32 sum over a whole embedding table drifts by ~1e-4.
        let rows = match g.rank() {
            0 | 1 => g.sqr()?,
            _ => g.sqr()?.sum(D::Minus1)?,
        };
        sq += rows.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()?;
    }
    let norm = sq.sqrt();
    let coef = match max_norm > 0.0 {
        true => (max_norm / (norm + 1e-6)).min(1.0),
        false => 1.0,
    };
    Ok((norm, coef))
}

/// AdamW's hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// AdamW's state: the step count and both moments of every trainable
/// parameter, in the master dtype.
pub struct AdamW {
    pub cfg: AdamConfig,
    /// Updates applied so far (the bias corrections' exponent).
    pub t: u64,
    pub m: BTreeMap<ParamId, Tensor>,
    pub v: BTreeMap<ParamId, Tensor>,
}

impl AdamW {
    pub fn new(cfg: AdamConfig) -> Self {
        Self {
            cfg,
            t: 0,
            m: BTreeMap::new(),
            v: BTreeMap::new(),
        }
    }

    /// One update of every parameter with a gradient, each at `lr(id)`,
    /// gradients first multiplied by `clip` (when below 1), as torch's
    /// `_single_tensor_adamw` does it.
    pub fn step(
        &mut self,
        params: &mut Params,
        grads: &BTreeMap<ParamId, Tensor>,
        clip: f64,
        lr: impl Fn(ParamId) -> f64,
    ) -> Result<()> {
        self.t += 1;
        let c = self.cfg;
        let bc1 = 1.0 - c.beta1.powi(self.t as i32);
        let bc2_sqrt = (1.0 - c.beta2.powi(self.t as i32)).sqrt();
        let dt = master_dtype(params.dtype());
        for (&id, g) in grads {
            let lr = lr(id);
            let decay = match c.weight_decay != 0.0 && params.get(id).decay {
                true => 1.0 - lr * c.weight_decay,
                false => 1.0,
            };
            let zeros = || Tensor::zeros(g.dims(), dt, g.device());
            let m = match self.m.remove(&id) {
                Some(m) => m,
                None => zeros()?,
            };
            let v = match self.v.remove(&id) {
                Some(v) => v,
                None => zeros()?,
            };
            let p = params.get(id).master().expect("trainable").clone();
            if [&p, g, &m, &v].iter().all(|t| inplace::in_place(t)) {
                // The same operations, written into the tensors (CPU f32).
                let k = if clip < 1.0 { clip as f32 } else { 1.0 };
                inplace::adamw(
                    &p,
                    g,
                    k,
                    &m,
                    &v,
                    c.beta1,
                    c.beta2,
                    decay,
                    bc2_sqrt,
                    c.eps,
                    lr / bc1,
                )?;
                params.refresh_compute(id)?;
            } else {
                let g = match clip < 1.0 {
                    true => (g * clip)?,
                    false => g.clone(),
                };
                // exp_avg.lerp_(grad, 1 - beta1)
                let m2 = (&m + ((&g - &m)? * (1.0 - c.beta1))?)?;
                // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2)
                let v2 = ((&v * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
                let p = match decay != 1.0 {
                    true => (p * decay)?,
                    false => p,
                };
                let denom = ((v2.sqrt()? / bc2_sqrt)? + c.eps)?;
                let p = (p - ((&m2 / denom)? * (lr / bc1))?)?;
                params.set_master(id, p)?;
                self.m.insert(id, m2);
                self.v.insert(id, v2);
                continue;
            }
            self.m.insert(id, m);
            self.v.insert(id, v);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_step_runs_at_zero_then_cosine() {
        let s = Schedule::new(1e-3, 0.01, 4);
        assert_eq!(s.warmup, 1);
        let lrs: Vec<f64> = (0..4).map(|i| s.lr(i)).collect();
        assert_eq!(lrs, [0.0, 0.001, 0.00075, 0.0002500000000000001]);
        let s = Schedule::new(1.0, 0.1, 100);
        assert_eq!((s.warmup, s.lr(5)), (10, 0.5));
        assert!(s.lr(99) > 0.0 && s.lr(99) < 1e-3);
    }

    #[test]
    fn adam_moves_each_element_by_about_lr_on_the_first_update() {
        let dev = candle_core::Device::Cpu;
        let mut p = Params::new(DType::F32, &dev);
        let w = Tensor::new(&[1.0f32, -2.0, 0.5], &dev).unwrap();
        let id = p
            .add("w", super::super::params::Part::Decoder, w, true, false)
            .unwrap();
        let mut g = BTreeMap::new();
        g.insert(id, Tensor::new(&[0.1f32, -3.0, 0.0], &dev).unwrap());
        let mut opt = AdamW::new(AdamConfig::default());
        opt.step(&mut p, &g, 1.0, |_| 0.01).unwrap();
        let after = p.get(id).master().unwrap().to_vec1::<f32>().unwrap();
        // m̂ / (√v̂ + eps) = sign(g) on the first step.
        assert!((after[0] - 0.99).abs() < 1e-6 && (after[1] + 1.99).abs() < 1e-6);
        assert_eq!(after[2], 0.5);
    }

    #[test]
    fn the_in_place_update_equals_the_tensor_expressions() {
        // f32 on the CPU runs the in-place kernels; f64 the candle expressions.
        let dev = candle_core::Device::Cpu;
        let run = |dt: DType| -> Vec<f64> {
            let mut p = Params::new(dt, &dev);
            let w: Vec<f64> = (0..300)
                .map(|i| ((i * 37 % 101) as f64 - 50.0) / 70.0)
                .collect();
            let w = Tensor::new(w.as_slice(), &dev)
                .unwrap()
                .to_dtype(dt)
                .unwrap();
            let id = p
                .add("w", super::super::params::Part::Decoder, w, true, false)
                .unwrap();
            let cfg = AdamConfig {
                weight_decay: 0.1,
                ..AdamConfig::default()
            };
            let mut opt = AdamW::new(cfg);
            for step in 0..4 {
                let g: Vec<f64> = (0..300)
                    .map(|i| (((i * 13 + step * 7) % 29) as f64 - 14.0) / 9.0)
                    .collect();
                let mut grads = BTreeMap::new();
                grads.insert(
                    id,
                    Tensor::new(g.as_slice(), &dev)
                        .unwrap()
                        .to_dtype(dt)
                        .unwrap(),
                );
                opt.step(&mut p, &grads, [1.0, 0.5, 0.25, 1.0][step], |_| 0.01)
                    .unwrap();
            }
            let m = p.get(id).master().unwrap().to_dtype(DType::F64).unwrap();
            m.to_vec1::<f64>().unwrap()
        };
        let (a, b) = (run(DType::F32), run(DType::F64));
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 2e-6 * y.abs().max(1.0), "{x} vs {y}");
        }
    }
}
