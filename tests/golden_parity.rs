//! Parity with the independent reference in `fixtures/golden`.
mod common;

use c3::cascade::c3::C3Checkpoint;
use c3::cascade::c3::C3Decoder;
use c3::cascade::c3::C3Encoder;
use candle_core::DType;
use common::*;

fn encoder() -> C3Encoder {
    let ckpt = C3Checkpoint::open(&golden_model()).unwrap();
    C3Encoder::load(&ckpt, DType::F32, &test_device()).unwrap()
}

fn decoder() -> C3Decoder {
    let ckpt = C3Checkpoint::open(&golden_model()).unwrap();
    C3Decoder::load(&ckpt, DType::F32, &test_device()).unwrap()
}

#[test]
fn raw_states_and_latents_match_reference() {
    let enc = encoder();
    for case in golden_cases() {
        let raw = enc.encode_ids(&case.text_ids).unwrap();
        let lat = enc.project(&raw).unwrap();
        let (shape, want) = golden_npy(&case.name, "encoder_hidden");
        assert_eq!(raw.dims(), &shape[..], "{}", case.name);
        let got = raw.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let d = max_abs_diff(&got, &want);
        assert!(d < 1e-4, "{}: raw states differ by {d}", case.name);

        let (shape, want) = golden_npy(&case.name, "latents");
        assert_eq!(lat.dims(), &shape[..], "{}", case.name);
        let got = lat.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let d = max_abs_diff(&got, &want);
        assert!(d < 1e-4, "{}: latents differ by {d}", case.name);
    }
}

/// Several texts of different lengths in one padded forward give each the
/// states it gets alone, and the reference's.
#[test]
fn batched_encoding_matches_one_at_a_time_and_reference() {
    let enc = encoder();
    let cases = golden_cases();
    let lens: Vec<usize> = cases.iter().map(|c| c.text_ids.len()).collect();
    assert!(
        lens.iter().any(|&l| l != lens[0]),
        "the cases must differ in length to exercise padding: {lens:?}"
    );
    let ids: Vec<&[u32]> = cases.iter().map(|c| c.text_ids.as_slice()).collect();
    let batched = enc.encode_batch_ids(&ids).unwrap();
    assert_eq!(batched.len(), cases.len());
    for (case, got) in cases.iter().zip(&batched) {
        let alone = enc.encode_ids(&case.text_ids).unwrap();
        assert_eq!(got.dims(), alone.dims(), "{}", case.name);
        let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let alone = alone.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let d = max_abs_diff(&got, &alone);
        assert!(d < 1e-5, "{}: batched differs from alone by {d}", case.name);
        let (_, want) = golden_npy(&case.name, "encoder_hidden");
        let d = max_abs_diff(&got, &want);
        assert!(
            d < 1e-4,
            "{}: batched differs from reference by {d}",
            case.name
        );
    }
    // Order is kept, and a batch of one or none is fine.
    let rev: Vec<&[u32]> = ids.iter().rev().copied().collect();
    let back = enc.encode_batch_ids(&rev).unwrap();
    let a = back
        .last()
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let b = batched[0].flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(max_abs_diff(&a, &b) < 1e-5);
    assert_eq!(enc.encode_batch_ids(&ids[..1]).unwrap().len(), 1);
    assert!(enc.encode_batch_ids(&[]).unwrap().is_empty());
    // A bad member fails the batch with the member's error.
    let err = enc
        .encode_batch_ids(&[ids[0], &[]])
        .unwrap_err()
        .to_string();
    assert!(err.contains("empty"), "{err}");
}

/// `compress` (what ingest calls) groups texts of similar length into
/// padded forwards and returns each text's states in the order given.
#[test]
fn compress_groups_texts_and_keeps_their_order() {
    use c3::cascade::Compressor;
    let enc = encoder();
    let cases = golden_cases();
    let mut texts: Vec<&str> = cases.iter().map(|c| c.text.as_str()).collect();
    texts.insert(1, "A short one.");
    let got = enc.compress(&texts).unwrap();
    assert_eq!(got.len(), texts.len());
    for (t, g) in texts.iter().zip(&got) {
        let alone = enc
            .encode_text(t)
            .unwrap()
            .to_dtype(enc.storage_dtype())
            .unwrap();
        assert_eq!(g.dtype(), enc.storage_dtype());
        let flat = |x: &candle_core::Tensor| {
            x.to_dtype(DType::F32)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        let (g, a) = (flat(g), flat(&alone));
        // Equal up to one rounding step of the storage dtype (bf16 here).
        let scale = a.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = max_abs_diff(&g, &a);
        assert!(
            d <= scale / 128.0,
            "{t:.20}: compress differs from alone by {d}"
        );
    }
}

#[test]
fn greedy_repeat_ids_match_reference() {
    let enc = encoder();
    let dec = decoder();
    for case in golden_cases() {
        let raw = enc.encode_ids(&case.text_ids).unwrap();
        let lat = dec.project(&raw).unwrap();
        // The reference prompt, taken verbatim, so this test checks the
        // decoder alone (prompt assembly is checked against the same ids elsewhere).
        let ids = greedy_reference_ids(&dec, &case, lat);
        assert_eq!(ids, case.repeat_ids, "{}", case.name);
    }
}

#[test]
fn repeat_prompt_matches_reference_ids() {
    let dec = decoder();
    let prompt = dec.repeat_prompt(1).unwrap();
    for case in golden_cases() {
        assert_eq!(prompt.ids, case.decoder_prompt_ids, "{}", case.name);
    }
    assert_eq!(prompt.latent_starts, vec![21]);
    assert_eq!(prompt.ids.len(), 64);
}

#[test]
fn text_path_matches_reference_latents() {
    // Tokenizer + encoder together, from the text files.
    let enc = encoder();
    for case in golden_cases() {
        let lat = enc.project(&enc.encode_text(&case.text).unwrap()).unwrap();
        let (_, want) = golden_npy(&case.name, "latents");
        let got = lat.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(max_abs_diff(&got, &want) < 1e-4, "{}", case.name);
    }
}
