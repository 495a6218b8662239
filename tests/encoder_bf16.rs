//! The encoder with its weights packed to bf16 and multiplied by AVX-512
//! BF16's `vdpbf16ps` (`--encoder-precision bf16-avx512`) on the golden
//! checkpoint: how far its raw states are from the f32 encoder's, against
//! what rounding those states to bf16 changes and against the i16 encoder's
//! error, and whether the decoder still reconstructs the reference's greedy
//! ids from its latents. One test in its own binary: it selects the bf16
//! kernel for the whole process before the encoder is packed.
mod common;

use c3::cascade::c3::{C3Checkpoint, C3Decoder, C3Encoder};
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

#[cfg(target_arch = "x86_64")]
#[test]
fn bf16_encoder_error_against_i16_and_a_bf16_rounding() {
    use c3::kernels::i16_gemm::{set_kernel, Kernel};
    let k = Kernel::Avx512Bf16;
    if !k.runs_here() {
        eprintln!("bf16 encoder: SKIPPED: this CPU lacks {}", k.features());
        return;
    }
    let ckpt = C3Checkpoint::open(&golden_model()).unwrap();
    let exact = C3Encoder::load(&ckpt, DType::F32, &Device::Cpu).unwrap();
    let int = C3Encoder::load_quantized(&ckpt, DType::F32, &Device::Cpu, Some(Quant::I16)).unwrap();
    set_kernel(k);
    let bf = C3Encoder::load_quantized(&ckpt, DType::F32, &Device::Cpu, Some(Quant::I16)).unwrap();
    assert_eq!(c3::model::quant::i16_kernel_name(), Some("bf16-avx512"));
    let dec = C3Decoder::load(&ckpt, DType::F32, &Device::Cpu).unwrap();
    let flat = |t: candle_core::Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    for case in golden_cases() {
        let want = flat(exact.encode_ids(&case.text_ids).unwrap());
        let got_i16 = flat(int.encode_ids(&case.text_ids).unwrap());
        let raw = bf.encode_ids(&case.text_ids).unwrap();
        let got = flat(raw.clone());
        let (bf_max, bf_mean) = errors(&bf16_rounded(&want), &want);
        let (max, mean) = errors(&got, &want);
        let (i_max, i_mean) = errors(&got_i16, &want);
        eprintln!(
            "{}: bf16 products vs f32 max {max:.2e} mean {:.4}% = {:.2} (mean) / {:.2} (max) of a \
             bf16 rounding of the states; i16 products {:.2} / {:.2}",
            case.name,
            100.0 * mean,
            mean / bf_mean,
            max / bf_max,
            i_mean / bf_mean,
            i_max / bf_max
        );
        // The bound the i16 kernels meet (tests/encoder_i16.rs), printed,
        // not asserted: the bf16 kernel sits at it (0.97-1.13 of a bf16
        // rounding on these cases), the i16 ones ~12x under it. That is
        // why `Kernel::best` never picks bf16, checked here.
        let within = mean < bf_mean && max < bf_max;
        eprintln!(
            "{}: bf16 within a bf16 rounding of the f32 states: {within}",
            case.name
        );
        assert!(
            mean > i_mean,
            "{}: bf16 as accurate as i16: revisit Kernel::best",
            case.name
        );
        assert_ne!(Kernel::best(), Some(k));
        // What it must still do: stay within a few roundings, and give the
        // reference's greedy ids through the decoder.
        assert!(
            mean < 4.0 * bf_mean && max < 8.0 * bf_max,
            "{}: bf16 error (max {max}, mean {mean}) past 4 (8) bf16 roundings",
            case.name
        );
        let lat = dec
            .project(&raw.to_dtype(bf.storage_dtype()).unwrap())
            .unwrap();
        assert_eq!(
            greedy_reference_ids(&dec, &case, lat),
            case.repeat_ids,
            "{}",
            case.name
        );
    }
}
