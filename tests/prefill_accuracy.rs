//! The decoder's many-row Q8_0 products (a prefill, teacher forcing) with
//! the i16 product against the f32 GEMM on the same dequantized weights,
//! both measured against the f32 decoder. One test in its own binary: the
//! switch between the two is process-wide.
mod common;

use c3::cascade::c3::C3Checkpoint;
use c3::cascade::c3::C3Decoder;
use c3::cascade::c3::C3Encoder;
use c3::model::quant::{prefill_i16, set_prefill_i16, set_prefill_q8};
use c3::model::synthetic::random_qwen2;
use c3::model::weights::Weights;
use c3::model::{Quant, Qwen2};
use candle_core::{DType, Tensor};
use common::*;

/// Logits [T, V] of every row of `x` [1, T, H] in one forward (each
/// product sees all T rows: the prefill path).
fn all_logits(llm: &Qwen2, x: &Tensor) -> Vec<Vec<f32>> {
    let h = llm.forward(x, None).unwrap().squeeze(0).unwrap();
    llm.logits(&h).unwrap().to_vec2::<f32>().unwrap()
}

fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

#[derive(Default)]
struct Tally {
    agree: usize,
    positions: usize,
    max_err: f32,
}

impl Tally {
    fn add(&mut self, reference: &[Vec<f32>], got: &[Vec<f32>]) {
        for (a, b) in reference.iter().zip(got) {
            self.agree += (argmax(a) == argmax(b)) as usize;
            self.positions += 1;
            self.max_err = self.max_err.max(max_abs_diff(a, b));
        }
    }
}

/// `f(llm)` with the f32 prefill and then with the i16 one.
fn both<T>(f: impl Fn() -> T) -> (T, T) {
    // The i16 product itself, not the 8-bit-activation one that takes its
    // place on AVX-512 VNNI CPUs (`tests/prefill_q8.rs`).
    set_prefill_q8(false);
    set_prefill_i16(false);
    let a = f();
    set_prefill_i16(true);
    let b = f();
    (a, b)
}

#[test]
fn i16_prefill_stays_as_close_to_f32_as_the_f32_prefill() {
    if !{
        set_prefill_i16(true);
        prefill_i16()
    } {
        eprintln!(
            "i16_prefill_stays_as_close_to_f32_as_the_f32_prefill: SKIPPED: this CPU lacks the \
             i16 kernel (avx2)"
        );
        return;
    }
    let dev = test_device();
    // The golden decoder over each case's prompt and reference answer.
    let ckpt = C3Checkpoint::open(&golden_model()).unwrap();
    let enc = C3Encoder::load(&ckpt, DType::F32, &dev).unwrap();
    let f32_dec = C3Decoder::load(&ckpt, DType::F32, &dev).unwrap();
    let q_dec = C3Decoder::load_quantized(&ckpt, DType::F32, &dev, Some(Quant::Q8_0)).unwrap();
    let (mut dense_vs_f32, mut dense_vs_i16, mut f32_vs_i16) =
        (Tally::default(), Tally::default(), Tally::default());
    for case in golden_cases() {
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
        let tail = case.repeat_ids.len() + 1;
        let keep = |v: Vec<Vec<f32>>| v[v.len() - tail..].to_vec();
        let reference = keep(all_logits(f32_dec.llm(), &x));
        let (a, b) = both(|| keep(all_logits(q_dec.llm(), &x)));
        dense_vs_f32.add(&reference, &a);
        dense_vs_i16.add(&reference, &b);
        f32_vs_i16.add(&a, &b);
    }
    report(
        "golden decoder q8_0, teacher-forced",
        &dense_vs_f32,
        &dense_vs_i16,
        &f32_vs_i16,
        1,
    );

    // Rows of 256 and 512 (several k blocks per flush group), 400 rows of
    // random ids: more positions than the golden cases have.
    let mut cfg = c3::model::synthetic::release_decoder_config().llm;
    cfg.vocab_size = 2048;
    cfg.hidden_size = 256;
    cfg.intermediate_size = 512;
    cfg.num_hidden_layers = 3;
    cfg.num_attention_heads = 4;
    cfg.num_key_value_heads = 2;
    cfg.max_position_embeddings = 1024;
    let w = Weights::from_tensors(
        "random",
        random_qwen2(&cfg, DType::F32, &dev).unwrap(),
        DType::F32,
    );
    let dense = Qwen2::load(&w, &cfg, &dev, DType::F32).unwrap();
    let q = Qwen2::load_quantized(&w, &cfg, &dev, DType::F32, Some(Quant::Q8_0)).unwrap();
    let ids: Vec<u32> = (0..400u32).map(|i| (i * 7919 + 13) % 2048).collect();
    let x = dense.embed(&ids).unwrap().unsqueeze(0).unwrap();
    let reference = all_logits(&dense, &x);
    let (a, b) = both(|| all_logits(&q, &x));
    let (mut d_a, mut d_b, mut a_b) = (Tally::default(), Tally::default(), Tally::default());
    d_a.add(&reference, &a);
    d_b.add(&reference, &b);
    a_b.add(&a, &b);
    report("256-wide random model q8_0, 400 rows", &d_a, &d_b, &a_b, 2);
}

/// Prints the three comparisons and checks the i16 prefill against the f32
/// one: its own error under a tenth of q8_0's, argmax agreement with the
/// f32 model within `slack` positions.
fn report(
    what: &str,
    dense_vs_f32: &Tally,
    dense_vs_i16: &Tally,
    f32_vs_i16: &Tally,
    slack: usize,
) {
    eprintln!(
        "{what} in one forward: argmax agreement with f32 {}/{} (f32 prefill) and {}/{} \
         (i16 prefill); max |logit error| {:.2e} and {:.2e}; i16 against the f32 prefill: {:.2e}",
        dense_vs_f32.agree,
        dense_vs_f32.positions,
        dense_vs_i16.agree,
        dense_vs_i16.positions,
        dense_vs_f32.max_err,
        dense_vs_i16.max_err,
        f32_vs_i16.max_err
    );
    assert!(
        f32_vs_i16.max_err < 0.1 * dense_vs_f32.max_err,
        "{what}: the i16 prefill adds {} to q8_0's own {}",
        f32_vs_i16.max_err,
        dense_vs_f32.max_err
    );
    assert!(
        dense_vs_i16.agree + slack >= dense_vs_f32.agree,
        "{what}: agreement {} with the i16 prefill against {}",
        dense_vs_i16.agree,
        dense_vs_f32.agree
    );
}
