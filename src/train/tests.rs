//! Gradient checks: every parameter's hand-written gradient against central
//! finite differences of the loss, on a tiny random cascade in f64.

use super::example::{Example, IGNORE};
use super::load::{build_net, LoraConfig, NetSpec, Selection, TensorSource};
use super::model::{C3Net, PassOptions};
use super::params::{Grads, Params, Part};
use super::rng::Rng;
use crate::model::config::Qwen2Config;
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;

pub(crate) fn qwen2(
    v: usize,
    h: usize,
    i: usize,
    layers: usize,
    heads: usize,
    kv: usize,
) -> Qwen2Config {
    Qwen2Config {
        vocab_size: v,
        hidden_size: h,
        intermediate_size: i,
        num_hidden_layers: layers,
        num_attention_heads: heads,
        num_key_value_heads: kv,
        max_position_embeddings: 512,
        rms_norm_eps: 1e-6,
        rope_theta: 10_000.0,
        tie_word_embeddings: true,
        hidden_act: "silu".into(),
        use_sliding_window: false,
        rope_scaling: None,
        model_type: "qwen2".into(),
        head_dim: None,
        attention_bias: None,
    }
}

/// Random tensors by name, created on first request (deterministic per name).
pub(crate) struct RandomSource {
    seed: u64,
    cache: std::cell::RefCell<HashMap<String, Tensor>>,
}

impl RandomSource {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            seed,
            cache: Default::default(),
        }
    }
}

impl TensorSource for RandomSource {
    fn tensor(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        if let Some(t) = self.cache.borrow().get(name).filter(|t| t.dims() == shape) {
            return Ok(t.clone());
        }
        let mut r = Rng::new(self.seed, name);
        let n: usize = shape.iter().product();
        // Norm weights near 1, everything else around ±0.3.
        let v: Vec<f64> = (0..n)
            .map(|_| {
                let u = r.next_f64() * 2.0 - 1.0;
                match name.ends_with("norm.weight") {
                    true => 1.0 + 0.2 * u,
                    false => 0.3 * u,
                }
            })
            .collect();
        let t = Tensor::from_vec(v, shape, &Device::Cpu).map_err(Error::from)?;
        self.cache.borrow_mut().insert(name.into(), t.clone());
        Ok(t)
    }
    fn has(&self, _name: &str) -> bool {
        false
    }
}

pub(crate) const LAT: usize = 3;

pub(crate) fn tiny(sel: &Selection, dtype: DType) -> (Params, C3Net) {
    let enc = qwen2(40, 8, 12, 2, 2, 1);
    let dec = qwen2(40, 12, 16, 2, 2, 1);
    let spec = NetSpec {
        encoder: &enc,
        decoder: &dec,
        latent_len: LAT,
    };
    let (e, d) = (RandomSource::new(11), RandomSource::new(12));
    build_net(&spec, &e, &d, sel, dtype, &Device::Cpu, 5).unwrap()
}

/// A record with `ctx` encoder text ids and `target` decoder target ids.
pub(crate) fn example(ctx: &[u32], prompt: &[u32], target: &[u32]) -> Example {
    let mut enc_ids = ctx.to_vec();
    enc_ids.push(30);
    let query_start = enc_ids.len();
    enc_ids.extend(std::iter::repeat_n(39, LAT));
    enc_ids.push(31);
    let mut dec_ids = vec![1, 2, 30];
    let latent_start = dec_ids.len();
    dec_ids.extend(std::iter::repeat_n(39, LAT));
    dec_ids.push(31);
    dec_ids.extend_from_slice(prompt);
    let masked = dec_ids.len();
    dec_ids.extend_from_slice(target);
    let labels = dec_ids
        .iter()
        .enumerate()
        .map(|(i, &id)| if i < masked { IGNORE } else { id as i32 })
        .collect();
    Example {
        enc_ids,
        query_start,
        dec_ids,
        latent_start,
        labels,
    }
}

pub(crate) fn batch() -> Vec<Example> {
    vec![
        example(&[5, 9, 11, 17, 3], &[4, 8], &[12, 13, 14, 15]),
        example(&[6, 7], &[4], &[22, 23]),
    ]
}

/// The objective (mean cross entropy over the batch's label rows).
fn objective(p: &Params, net: &C3Net, b: &[&Example]) -> f64 {
    let s = net.evaluate(p, b).unwrap();
    s.loss / s.rows as f64
}

fn grads(p: &Params, net: &C3Net, b: &[&Example], o: PassOptions) -> Grads {
    let rows: usize = b.iter().map(|e| e.target_count()).sum();
    let mut g = Grads::new(p);
    net.loss_and_grads(p, b, 1.0 / rows as f64, &mut g, o)
        .unwrap();
    g
}

fn element(t: &Tensor, i: usize) -> f64 {
    t.flatten_all().unwrap().to_vec1::<f64>().unwrap()[i]
}

fn nudged(t: &Tensor, i: usize, by: f64) -> Tensor {
    let mut v = t.flatten_all().unwrap().to_vec1::<f64>().unwrap();
    v[i] += by;
    Tensor::from_vec(v, t.dims(), t.device()).unwrap()
}

/// Checks `checks` elements of every trainable parameter against central
/// differences; returns the worst relative error.
fn finite_difference_check(p: &mut Params, net: &C3Net, b: &[&Example], checks: usize) -> f64 {
    let g = grads(p, net, b, PassOptions::default());
    let mut worst: f64 = 0.0;
    let eps = 1e-5;
    let mut rng = Rng::new(3, "fd");
    for id in p.trainable_ids() {
        let base = p.get(id).master().unwrap().clone();
        let n = p.get(id).elem_count();
        let grad = g.get(id).cloned();
        for _ in 0..checks.min(n) {
            let i = rng.below(n);
            p.set_master(id, nudged(&base, i, eps)).unwrap();
            let up = objective(p, net, b);
            p.set_master(id, nudged(&base, i, -eps)).unwrap();
            let down = objective(p, net, b);
            p.set_master(id, base.clone()).unwrap();
            let numeric = (up - down) / (2.0 * eps);
            let analytic = grad.as_ref().map_or(0.0, |t| element(t, i));
            let err = (numeric - analytic).abs() / (numeric.abs().max(analytic.abs()).max(1e-4));
            assert!(
                err < 1e-5,
                "{}[{i}]: analytic {analytic:e}, numeric {numeric:e}",
                p.get(id).name
            );
            worst = worst.max(err);
        }
    }
    worst
}

#[test]
fn every_gradient_matches_finite_differences() {
    let (mut p, net) = tiny(&Selection::all(), DType::F64);
    let b = batch();
    let refs: Vec<&Example> = b.iter().collect();
    let worst = finite_difference_check(&mut p, &net, &refs, 6);
    eprintln!("worst relative error {worst:e}");
}

#[test]
fn lora_adapter_gradients_match_finite_differences() {
    let sel = Selection {
        parts: Part::ALL.into_iter().collect(),
        lora: Some(LoraConfig {
            rank: 2,
            alpha: 4.0,
            targets: ["q", "v", "o", "down"].map(String::from).to_vec(),
        }),
    };
    let (mut p, net) = tiny(&sel, DType::F64);
    // B starts at zero (a no-op); give it values so A's gradient is not zero.
    let src = RandomSource::new(99);
    for id in p.trainable_ids() {
        if p.get(id).name.ends_with("lora_B.weight") {
            let shape = p.get(id).shape.clone();
            let t = src.tensor(&p.get(id).name, &shape).unwrap();
            p.set_master(id, t).unwrap();
        }
    }
    let b = batch();
    let refs: Vec<&Example> = b.iter().collect();
    finite_difference_check(&mut p, &net, &refs, 4);
    // The base weights of adapted parts take no gradient.
    let g = grads(&p, &net, &refs, PassOptions::default());
    for (id, q) in p.iter() {
        if matches!(q.part, Part::Encoder | Part::Decoder) && !q.adapter {
            assert!(g.get(id).is_none(), "{} got a gradient", q.name);
        }
    }
}

#[test]
fn recomputation_gives_the_same_gradients_bit_for_bit() {
    let (p, net) = tiny(&Selection::all(), DType::F32);
    let b = batch();
    let refs: Vec<&Example> = b.iter().collect();
    let plain = grads(&p, &net, &refs, PassOptions { recompute: false });
    let again = grads(&p, &net, &refs, PassOptions { recompute: true });
    for (id, t) in plain.iter() {
        let a = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let b = again
            .get(id)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(a, b, "{}", p.get(id).name);
    }
}

#[test]
fn frozen_parts_get_no_gradient_and_trained_ones_the_same() {
    let (p_all, net_all) = tiny(&Selection::all(), DType::F64);
    let sel = Selection {
        parts: [Part::Queries, Part::Projector].into_iter().collect(),
        lora: None,
    };
    let (p, net) = tiny(&sel, DType::F64);
    let b = batch();
    let refs: Vec<&Example> = b.iter().collect();
    let all = grads(&p_all, &net_all, &refs, PassOptions::default());
    let some = grads(&p, &net, &refs, PassOptions::default());
    let names: Vec<&str> = some.iter().map(|(id, _)| p.get(id).name.as_str()).collect();
    assert_eq!(
        names,
        [
            "model.Q.weight",
            "model.mm_projector.weight",
            "model.mm_projector.bias"
        ]
    );
    for (id, t) in some.iter() {
        let d = (t - all.get(id).unwrap()).unwrap().abs().unwrap();
        let d = d
            .max_keepdim(0)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        assert!(d.iter().all(|&x| x < 1e-14), "{}", p.get(id).name);
    }
}

#[test]
fn a_record_alone_equals_the_same_record_padded_in_a_batch() {
    let (p, net) = tiny(&Selection::all(), DType::F32);
    let b = batch();
    let short = &b[1];
    let alone = net.latents(&p, &[short]).unwrap();
    let padded = net.latents(&p, &[&b[0], short]).unwrap().get(1).unwrap();
    let d = (alone.squeeze(0).unwrap() - padded).unwrap().abs().unwrap();
    assert!(
        d.max_keepdim(0)
            .unwrap()
            .max_keepdim(1)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap()[0][0]
            < 1e-6
    );
    let la = net.evaluate(&p, &[short]).unwrap();
    let lb = net.evaluate(&p, &[&b[0]]).unwrap();
    let both = net.evaluate(&p, &[&b[0], short]).unwrap();
    assert_eq!(both.rows, la.rows + lb.rows);
    assert!(((la.loss + lb.loss) - both.loss).abs() < 1e-4 * both.loss);
}
