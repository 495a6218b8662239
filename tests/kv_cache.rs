//! The in-place KV cache against the cache-free forward: prefill a few
//! positions, then one position at a time past the cache's first growth;
//! every step's hidden state must equal the full-sequence forward's row.
mod common;

use c3::model::synthetic::{random_qwen2, release_encoder_config};
use c3::model::weights::Weights;
use c3::model::{KvCache, Qwen2};
use candle_core::{DType, IndexOp};
use common::test_device;

fn small_model() -> Qwen2 {
    let mut cfg = release_encoder_config();
    cfg.vocab_size = 1000;
    cfg.hidden_size = 32;
    cfg.intermediate_size = 64;
    cfg.num_hidden_layers = 2;
    cfg.num_attention_heads = 4;
    cfg.num_key_value_heads = 2;
    cfg.max_position_embeddings = 2048;
    let dev = test_device();
    let w = Weights::from_tensors(
        "random",
        random_qwen2(&cfg, DType::F32, &dev).unwrap(),
        DType::F32,
    );
    Qwen2::load(&w, &cfg, &dev, DType::F32).unwrap()
}

fn max_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    let flat = |t: &candle_core::Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    common::max_abs_diff(&flat(a), &flat(b))
}

/// `forward_tail` (the last layer computed for the last rows only) gives the
/// full forward's last rows, and the cache it fills serves later steps as
/// the full prefill's cache does.
#[test]
fn tail_forward_matches_full_forward_and_fills_the_cache() {
    let llm = small_model();
    let ids: Vec<u32> = (0..40u32).map(|i| (i * 17 + 3) % 1000).collect();
    let x = llm.embed(&ids).unwrap().unsqueeze(0).unwrap();
    let full = llm.forward(&x, None).unwrap();
    for tail in [1, 7, 40] {
        let got = llm.forward_tail(&x, None, tail).unwrap();
        assert_eq!(got.dims(), &[1, tail, 32]);
        let d = max_diff(&got, &full.narrow(1, 40 - tail, tail).unwrap());
        assert!(d < 1e-5, "tail {tail}: differs by {d}");
    }
    assert!(llm.forward_tail(&x, None, 0).is_err());
    assert!(llm.forward_tail(&x, None, 41).is_err());

    // Prefill 39 positions keeping one row, then step the 40th.
    let mut cache = KvCache::new();
    let pre = llm.embed(&ids[..39]).unwrap().unsqueeze(0).unwrap();
    let last = llm.forward_tail(&pre, Some(&mut cache), 1).unwrap();
    assert!(max_diff(&last, &full.narrow(1, 38, 1).unwrap()) < 1e-5);
    assert_eq!(cache.len(), 39);
    let step = llm.embed(&ids[39..]).unwrap().unsqueeze(0).unwrap();
    let h = llm.forward(&step, Some(&mut cache)).unwrap();
    let d = max_diff(&h, &full.narrow(1, 39, 1).unwrap());
    assert!(d < 1e-5, "step after a tail prefill differs by {d}");
}

#[test]
fn cached_steps_match_full_forward_across_growth() {
    let llm = small_model();
    // Past the first capacity (prefill + 512 headroom) so one growth happens.
    let n = 560;
    let ids: Vec<u32> = (0..n as u32).map(|i| (i * 31 + 7) % 1000).collect();
    let full = llm
        .forward(&llm.embed(&ids).unwrap().unsqueeze(0).unwrap(), None)
        .unwrap()
        .squeeze(0)
        .unwrap();
    let mut cache = KvCache::new();
    let pre = 5;
    let h = llm
        .forward(
            &llm.embed(&ids[..pre]).unwrap().unsqueeze(0).unwrap(),
            Some(&mut cache),
        )
        .unwrap()
        .squeeze(0)
        .unwrap();
    let mut worst = 0f32;
    let mut check = |got: Vec<f32>, row: usize| {
        let want = full.i(row).unwrap().to_vec1::<f32>().unwrap();
        for (a, b) in got.iter().zip(&want) {
            worst = worst.max((a - b).abs());
        }
    };
    for r in 0..pre {
        check(h.i(r).unwrap().to_vec1().unwrap(), r);
    }
    for (p, &id) in ids.iter().enumerate().skip(pre) {
        let h = llm
            .forward(
                &llm.embed(&[id]).unwrap().unsqueeze(0).unwrap(),
                Some(&mut cache),
            )
            .unwrap();
        check(h.i((0, 0)).unwrap().to_vec1().unwrap(), p);
    }
    assert_eq!(cache.len(), n);
    assert!(
        worst < 1e-4,
        "cached steps differ from the full forward by {worst}"
    );
}

/// A long prefill after cached positions (the blocked attention path with a
/// key offset) gives the full forward's rows.
#[test]
fn long_prefill_after_cached_positions_matches_full_forward() {
    let llm = small_model();
    let ids: Vec<u32> = (0..700u32).map(|i| (i * 13 + 5) % 1000).collect();
    let full = llm
        .forward(&llm.embed(&ids).unwrap().unsqueeze(0).unwrap(), None)
        .unwrap();
    let mut cache = KvCache::new();
    let first = llm.embed(&ids[..100]).unwrap().unsqueeze(0).unwrap();
    let a = llm.forward(&first, Some(&mut cache)).unwrap();
    let rest = llm.embed(&ids[100..]).unwrap().unsqueeze(0).unwrap();
    let b = llm.forward(&rest, Some(&mut cache)).unwrap();
    let d = max_diff(&a, &full.narrow(1, 0, 100).unwrap())
        .max(max_diff(&b, &full.narrow(1, 100, 600).unwrap()));
    assert!(
        d < 1e-4,
        "chunked prefill differs from the full forward by {d}"
    );
}
