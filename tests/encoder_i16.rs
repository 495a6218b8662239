//! The encoder with 14-bit integer products (`--encoder-precision i16`, the
//! CPU default with AVX2) on the golden checkpoint: its raw states must stay
//! within what rounding the exact states to bf16 (the release checkpoint's
//! storage dtype, what the store keeps) changes, and the decoder must
//! reconstruct the reference's greedy ids from its latents.
mod common;

use c3::cascade::c3::C3Checkpoint;
use c3::cascade::c3::C3Decoder;
use c3::cascade::c3::C3Encoder;
use c3::model::quant::i16_supported;
use c3::model::Quant;
use candle_core::{DType, Device};
use common::*;

/// Max |a − b| and Σ|a − b| / Σ|b|.
fn errors(a: &[f32], b: &[f32]) -> (f32, f64) {
    let max = max_abs_diff(a, b);
    let sum: f64 = a.iter().zip(b).map(|(x, y)| (x - y).abs() as f64).sum();
    let scale: f64 = b.iter().map(|y| y.abs() as f64).sum();
    (max, sum / scale)
}

fn i16_encoder() -> Option<C3Encoder> {
    if !i16_supported() {
        eprintln!("no AVX2 here: the i16 encoder stays dense, nothing to compare");
        return None;
    }
    let ckpt = C3Checkpoint::open(&golden_model()).unwrap();
    Some(C3Encoder::load_quantized(&ckpt, DType::F32, &Device::Cpu, Some(Quant::I16)).unwrap())
}

#[test]
fn i16_states_stay_within_a_bf16_rounding_of_the_reference() {
    let Some(fast) = i16_encoder() else { return };
    let ckpt = C3Checkpoint::open(&golden_model()).unwrap();
    let exact = C3Encoder::load(&ckpt, DType::F32, &Device::Cpu).unwrap();
    for case in golden_cases() {
        let (_, reference) = golden_npy(&case.name, "encoder_hidden");
        let got = fast.encode_ids(&case.text_ids).unwrap();
        let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let want = exact.encode_ids(&case.text_ids).unwrap();
        let want = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let (bf_max, bf_mean) = errors(&bf16_rounded(&want), &want);
        let (max, mean) = errors(&got, &want);
        let (ref_max, ref_mean) = errors(&got, &reference);
        eprintln!(
            "{}: i16 vs f32 max {max:.2e} mean {:.4}%, vs reference max {ref_max:.2e} mean \
             {:.4}%; bf16 rounding max {bf_max:.2e} mean {:.4}%",
            case.name,
            100.0 * mean,
            100.0 * ref_mean,
            100.0 * bf_mean
        );
        assert!(
            mean < bf_mean && max < bf_max,
            "{}: i16 error (max {max}, mean {mean}) is not under a bf16 rounding (max {bf_max}, mean {bf_mean})",
            case.name
        );
        assert!(
            ref_mean < bf_mean && ref_max < bf_max,
            "{}: i16 vs reference (max {ref_max}, mean {ref_mean}) is not under a bf16 rounding",
            case.name
        );
    }
}

/// What `c3 ingest` then `c3 expand` do: i16 states, rounded to the storage
/// dtype, projected and decoded greedily, give the reference's ids.
#[test]
fn i16_latents_reconstruct_the_reference_ids() {
    let Some(fast) = i16_encoder() else { return };
    let ckpt = C3Checkpoint::open(&golden_model()).unwrap();
    let dec = C3Decoder::load(&ckpt, DType::F32, &Device::Cpu).unwrap();
    for case in golden_cases() {
        let raw = fast.encode_ids(&case.text_ids).unwrap();
        let raw = raw.to_dtype(fast.storage_dtype()).unwrap();
        let lat = dec.project(&raw).unwrap();
        let ids = greedy_reference_ids(&dec, &case, lat);
        assert_eq!(ids, case.repeat_ids, "{}", case.name);
    }
}
