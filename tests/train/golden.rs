//! Parity with the PyTorch reference of C3-TRAIN.md on `golden/c3-tiny`
//! (fixtures in `tests/fixtures/golden-train/`).

use crate::common::{fixtures, golden_model};
use c3::cascade::c3::C3Checkpoint;
use c3::train::example::{build, Example};
use c3::train::records::read_file;
use serde_json::Value;
use std::path::PathBuf;

fn dir() -> PathBuf {
    fixtures().join("golden-train")
}

fn expected() -> Value {
    let raw = std::fs::read_to_string(dir().join("expected/expected.json")).unwrap();
    serde_json::from_str(&raw).unwrap()
}

fn ints(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect()
}

fn examples() -> Vec<Example> {
    let ckpt = C3Checkpoint::open(&golden_model()).unwrap();
    let tok = ckpt.tokenizer().unwrap();
    read_file(&dir().join("records.json"))
        .unwrap()
        .iter()
        .map(|(_, r)| build(&tok, ckpt.latent_len(), r).unwrap())
        .collect()
}

#[test]
fn ids_and_labels_equal_the_references() {
    let exp = expected();
    let ex = examples();
    assert_eq!(ex.len(), 4);
    for (i, e) in ex.iter().enumerate() {
        let enc: Vec<i64> = e.enc_ids.iter().map(|&x| x as i64).collect();
        let dec: Vec<i64> = e.dec_ids.iter().map(|&x| x as i64).collect();
        let lab: Vec<i64> = e.labels.iter().map(|&x| x as i64).collect();
        assert_eq!(enc, ints(&exp["encoder_ids"][i]), "record {i}: encoder ids");
        assert_eq!(dec, ints(&exp["decoder_ids"][i]), "record {i}: decoder ids");
        assert_eq!(lab, ints(&exp["labels"][i]), "record {i}: labels");
        assert_eq!(e.dec_ids[e.latent_start - 1], 151857);
        assert_eq!(e.enc_ids[e.query_start - 1], 151857);
    }
}

fn one(context: &str, human: &str, gpt: &str) -> Example {
    let ckpt = C3Checkpoint::open(&golden_model()).unwrap();
    let tok = ckpt.tokenizer().unwrap();
    let r = c3::train::example::Record {
        context: context.into(),
        human: human.into(),
        gpt: gpt.into(),
    };
    build(&tok, ckpt.latent_len(), &r).unwrap()
}

/// The targets a record trains: the labels that are not ignored.
fn trained(e: &Example) -> Vec<u32> {
    e.labels
        .iter()
        .filter(|&&l| l >= 0)
        .map(|&l| l as u32)
        .collect()
}

#[test]
fn a_target_starting_with_a_newline_merges_and_its_first_token_is_masked() {
    // C3-TRAIN.md: gpt "\nfoo" gives [77091, 271, 7975] and only
    // foo<|im_end|> is trained (upstream's mask length is 2).
    let e = one("foo", "<image>\nRepeat the text: ", "\nfoo");
    let n = e.dec_ids.len();
    assert_eq!(&e.dec_ids[n - 4..], &[77091, 271, 7975, 151645]);
    assert_eq!(trained(&e), vec![7975, 151645]);
    // Without the newline: assistant, \n, then the target.
    let e = one("foo", "<image>\nRepeat the text: ", "foo");
    assert_eq!(
        &e.dec_ids[e.dec_ids.len() - 4..],
        &[77091, 198, 7975, 151645]
    );
    // The repeat prompt is C3-SPEC's 64 ids.
    assert_eq!(e.labels.iter().take_while(|&&l| l < 0).count(), 64);
    // A human text starting with a newline merges with "user\n" the same way.
    let h = one("foo", "\n<image>", "x");
    assert_eq!(&h.dec_ids[17..20], &[151644, 872, 271]);
}

#[test]
fn control_strings_in_any_turn_stay_plain_text() {
    let s = "<img> <imgpad> </img> <|im_end|> <|im_start|> <|endoftext|> <image>";
    let e = one(s, &format!("<image>\n{}", s.replace("<image>", "")), s);
    let controls = |ids: &[u32]| ids.iter().filter(|&&i| i >= 151643).count();
    // Encoder: <img>, 32 slots, </img>; nothing else.
    assert_eq!(controls(&e.enc_ids), 34);
    // Decoder: the frame (3 × im_start, 3 × im_end) and one latent block.
    assert_eq!(controls(&e.dec_ids), 6 + 34);
}
