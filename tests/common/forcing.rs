//! Teacher forcing through the many-row (prefill) path, for the tests that
//! compare a decoder's prefill products: logits of every position in one
//! forward, argmax agreement and logit error against a reference, and the
//! two decoders they run (the golden one, a wider random one).

use super::{golden_cases, golden_model, max_abs_diff};
use c3::cascade::c3::{C3Checkpoint, C3Decoder, C3Encoder};
use c3::model::config::Qwen2Config;
use c3::model::synthetic::random_qwen2;
use c3::model::weights::Weights;
use c3::model::{Quant, Qwen2};
use candle_core::{DType, Device, Tensor};

/// Logits [T, V] of every row of `x` [1, T, H] in one forward (each
/// product sees all T rows: the prefill path).
pub fn all_logits(llm: &Qwen2, x: &Tensor) -> Vec<Vec<f32>> {
    let h = llm.forward(x, None).unwrap().squeeze(0).unwrap();
    llm.logits(&h).unwrap().to_vec2::<f32>().unwrap()
}

/// The first index of the largest value.
pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

/// Argmax agreement and the largest logit error over compared positions.
#[derive(Default)]
pub struct Tally {
    pub agree: usize,
    pub positions: usize,
    pub max_err: f32,
}

impl Tally {
    pub fn add(&mut self, reference: &[Vec<f32>], got: &[Vec<f32>]) {
        for (a, b) in reference.iter().zip(got) {
            self.agree += (argmax(a) == argmax(b)) as usize;
            self.positions += 1;
            self.max_err = self.max_err.max(max_abs_diff(a, b));
        }
    }
}

/// The golden decoder in f32 and as Q8_0, and per golden case its prompt
/// and reference answer as one embedded input [1, T, H] with the number of
/// last positions that predict the answer.
pub struct GoldenForcing {
    pub f32_dec: C3Decoder,
    pub q_dec: C3Decoder,
    pub cases: Vec<(Tensor, usize)>,
}

impl GoldenForcing {
    pub fn load(dev: &Device) -> Self {
        let ckpt = C3Checkpoint::open(&golden_model()).unwrap();
        let enc = C3Encoder::load(&ckpt, DType::F32, dev).unwrap();
        let f32_dec = C3Decoder::load(&ckpt, DType::F32, dev).unwrap();
        let q_dec = C3Decoder::load_quantized(&ckpt, DType::F32, dev, Some(Quant::Q8_0)).unwrap();
        let cases = golden_cases()
            .into_iter()
            .map(|case| {
                let raw = enc.encode_ids(&case.text_ids).unwrap();
                let lat = f32_dec.project(&raw).unwrap();
                let prompt = f32_dec
                    .prompt_embeddings(&case.reference_prompt(), std::slice::from_ref(&lat))
                    .unwrap();
                let answer = f32_dec.llm().embed(&case.repeat_ids).unwrap();
                let x = Tensor::cat(&[&prompt, &answer], 0)
                    .unwrap()
                    .unsqueeze(0)
                    .unwrap();
                (x, case.repeat_ids.len() + 1)
            })
            .collect();
        Self {
            f32_dec,
            q_dec,
            cases,
        }
    }
}

/// The last `tail` rows of `v`.
pub fn last(v: Vec<Vec<f32>>, tail: usize) -> Vec<Vec<f32>> {
    v[v.len() - tail..].to_vec()
}

/// A random decoder with rows of 256 and 512 (so Q4K runs, and products
/// span several k blocks), a 2048-token vocabulary and `layers` layers.
pub fn wide_random_config(layers: usize) -> Qwen2Config {
    let mut cfg = c3::model::synthetic::release_decoder_config().llm;
    cfg.vocab_size = 2048;
    cfg.hidden_size = 256;
    cfg.intermediate_size = 512;
    cfg.num_hidden_layers = layers;
    cfg.num_attention_heads = 4;
    cfg.num_key_value_heads = 2;
    cfg.max_position_embeddings = 1024;
    cfg
}

/// [`wide_random_config`]'s 3-layer model dense and as Q8_0, with 400 rows
/// of embedded pseudo-random ids [1, 400, 256].
pub fn wide_random_q8_0(dev: &Device) -> (Qwen2, Qwen2, Tensor) {
    let cfg = wide_random_config(3);
    let w = Weights::from_tensors(
        "random",
        random_qwen2(&cfg, DType::F32, dev).unwrap(),
        DType::F32,
    );
    let dense = Qwen2::load(&w, &cfg, dev, DType::F32).unwrap();
    let q = Qwen2::load_quantized(&w, &cfg, dev, DType::F32, Some(Quant::Q8_0)).unwrap();
    let ids: Vec<u32> = (0..400u32).map(|i| (i * 7919 + 13) % 2048).collect();
    let x = dense.embed(&ids).unwrap().unsqueeze(0).unwrap();
    (dense, q, x)
}
