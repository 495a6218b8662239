//! Parity with the independent reference in `fixtures/golden`.
mod common;

use c3::decode::{C3Decoder, GenOptions, Prompt};
use c3::encode::C3Encoder;
use c3::model::C3Checkpoint;
use candle_core::{DType, Device};
use common::*;

fn encoder() -> C3Encoder {
    let ckpt = C3Checkpoint::open(&golden_model()).unwrap();
    C3Encoder::load(&ckpt, DType::F32, &Device::Cpu).unwrap()
}

fn decoder() -> C3Decoder {
    let ckpt = C3Checkpoint::open(&golden_model()).unwrap();
    C3Decoder::load(&ckpt, DType::F32, &Device::Cpu).unwrap()
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

#[test]
fn greedy_repeat_ids_match_reference() {
    let enc = encoder();
    let dec = decoder();
    for case in golden_cases() {
        let raw = enc.encode_ids(&case.text_ids).unwrap();
        let lat = dec.project(&raw).unwrap();
        // The reference prompt, taken verbatim, so this test checks the
        // decoder alone (prompt assembly is checked against the same ids elsewhere).
        let start = case
            .decoder_prompt_ids
            .iter()
            .position(|&t| t == c3::tokenize::special::IMG_START)
            .unwrap()
            + 1;
        let prompt = Prompt {
            ids: case.decoder_prompt_ids.clone(),
            latent_starts: vec![start],
            latent_len: 32,
        };
        let opts = GenOptions {
            max_new_tokens: case.repeat_ids.len(),
            ..GenOptions::default()
        };
        let gen = dec.generate(&prompt, &[lat], &opts, |_| true).unwrap();
        assert_eq!(gen.ids, case.repeat_ids, "{}", case.name);
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
