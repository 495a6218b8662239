//! Next-token sampling (temperature 0.7, top-p 0.9) over a 151,936-entry
//! vocabulary: the nucleus draw c3 had written itself (kept here, only for
//! this comparison) against candle-transformers' `LogitsProcessor`, which
//! `src/generate/sampling.rs` now uses because it measured faster; then c3's
//! sampler as it runs (top-p, and top-k 40 then top-p). Greedy is c3's argmax
//! either way. `cargo bench --bench sampling`; smoke mode (`cargo test
//! --benches`): 20 draws each.

mod support;

use c3::generate::sampling::{Sampler, Sampling};
use candle_core::{Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling as CandleSampling};
use std::time::Instant;
use support::quick;

const VOCAB: usize = 151_936;

/// Milliseconds of each of `draws` calls of `f`.
fn times(draws: usize, mut f: impl FnMut()) -> Vec<f64> {
    (0..draws)
        .map(|_| {
            let t0 = Instant::now();
            f();
            t0.elapsed().as_secs_f64() * 1e3
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// c3's former nucleus draw: exp in f64, full sort, smallest prefix whose
/// mass reaches top-p, one uniform draw (splitmix64).
fn own_nucleus(logits: &[f32], temperature: f32, top_p: f32, rng: &mut u64) -> Option<u32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut probs: Vec<(u32, f64)> = logits
        .iter()
        .enumerate()
        .filter(|(_, l)| l.is_finite())
        .map(|(i, &l)| (i as u32, (((l - max) / temperature) as f64).exp()))
        .collect();
    probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let total: f64 = probs.iter().map(|p| p.1).sum();
    let (mut keep, mut mass) = (0, 0.0);
    for p in &probs {
        keep += 1;
        mass += p.1 / total;
        if mass >= top_p as f64 {
            break;
        }
    }
    probs.truncate(keep.max(1));
    let kept: f64 = probs.iter().map(|p| p.1).sum();
    *rng = rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *rng;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    let mut r = ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64 * kept;
    for (id, p) in &probs {
        if r < *p {
            return Some(*id);
        }
        r -= p;
    }
    probs.last().map(|p| p.0)
}

fn main() {
    let draws = if quick() { 20 } else { 300 };
    // Logits shaped like a trained model's: a few large, a long flat tail.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let logits: Vec<f32> = (0..VOCAB)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let u = (state >> 40) as f32 / (1u64 << 24) as f32;
            let peak = if i % 9973 == 0 { 12.0 } else { 0.0 };
            u * 6.0 + peak
        })
        .collect();

    let mut rng = 1u64;
    let t_own = times(draws, || {
        std::hint::black_box(own_nucleus(&logits, 0.7, 0.9, &mut rng));
    });
    let mut ours = Sampler::new(Sampling::TopP {
        temperature: 0.7,
        top_p: 0.9,
        top_k: None,
        seed: 1,
    });
    let t_ours = times(draws, || {
        std::hint::black_box(ours.pick(&logits));
    });

    let mut lp = LogitsProcessor::from_sampling(
        1,
        CandleSampling::TopP {
            p: 0.9,
            temperature: 0.7,
        },
    );
    let t_lp = times(draws, || {
        let t = Tensor::from_slice(&logits, VOCAB, &Device::Cpu).unwrap();
        std::hint::black_box(lp.sample(&t).unwrap());
    });

    let mut topk = Sampler::new(Sampling::TopP {
        temperature: 0.7,
        top_p: 0.9,
        top_k: Some(40),
        seed: 1,
    });
    let t_k = times(draws, || {
        std::hint::black_box(topk.pick(&logits));
    });
    println!(
        "sampling/top_p_0.9 former own nucleus draw: median {:.2} ms per token ({draws} draws)",
        median(t_own)
    );
    println!(
        "sampling/top_p_0.9 candle LogitsProcessor: median {:.2} ms per token",
        median(t_lp)
    );
    println!(
        "sampling/top_p_0.9 c3 Sampler (LogitsProcessor): median {:.2} ms per token",
        median(t_ours)
    );
    println!(
        "sampling/top_k_40_then_top_p_0.9 c3 Sampler: median {:.2} ms per token",
        median(t_k)
    );
}
