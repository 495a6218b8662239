//! The in-place KV cache against the cache-free forward: prefill a few
//! positions, then one position at a time past the cache's first growth;
//! every step's hidden state must equal the full-sequence forward's row.
use c3::model::synthetic::{random_qwen2, release_encoder_config};
use c3::model::weights::Weights;
use c3::model::{KvCache, Qwen2};
use candle_core::{DType, Device, IndexOp};

#[test]
fn cached_steps_match_full_forward_across_growth() {
    let mut cfg = release_encoder_config();
    cfg.vocab_size = 1000;
    cfg.hidden_size = 32;
    cfg.intermediate_size = 64;
    cfg.num_hidden_layers = 2;
    cfg.num_attention_heads = 4;
    cfg.num_key_value_heads = 2;
    cfg.max_position_embeddings = 2048;
    let dev = Device::Cpu;
    let w = Weights::from_tensors(
        "random",
        random_qwen2(&cfg, DType::F32, &dev).unwrap(),
        DType::F32,
    );
    let llm = Qwen2::load(&w, &cfg, &dev, DType::F32).unwrap();
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
