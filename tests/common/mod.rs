//! Shared test helpers: fixture paths and the golden expectations.
#![allow(dead_code)]

use std::path::PathBuf;

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn golden_model() -> PathBuf {
    fixtures().join("golden/c3-tiny")
}

pub struct GoldenCase {
    pub name: String,
    pub text: String,
    pub text_ids: Vec<u32>,
    pub decoder_prompt_ids: Vec<u32>,
    pub repeat_ids: Vec<u32>,
    pub top2_gap: Vec<f64>,
}

pub fn golden_cases() -> Vec<GoldenCase> {
    let dir = fixtures().join("golden");
    let raw = std::fs::read_to_string(dir.join("expected/expected.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&raw).unwrap();
    let ids = |x: &serde_json::Value| -> Vec<u32> {
        x.as_array()
            .unwrap()
            .iter()
            .map(|i| i.as_u64().unwrap() as u32)
            .collect()
    };
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let file = e["text"].as_str().unwrap().to_string();
            GoldenCase {
                name: file.trim_end_matches(".txt").to_string(),
                text: std::fs::read_to_string(dir.join("texts").join(&file)).unwrap(),
                text_ids: ids(&e["text_ids"]),
                decoder_prompt_ids: ids(&e["decoder_prompt_ids"]),
                repeat_ids: ids(&e["repeat_ids"]),
                top2_gap: e["top2_gap"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|g| g.as_f64().unwrap())
                    .collect(),
            }
        })
        .collect()
}

pub fn golden_npy(name: &str, kind: &str) -> (Vec<usize>, Vec<f32>) {
    c3::npy::read_f32(&fixtures().join(format!("golden/expected/{name}.{kind}.npy"))).unwrap()
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
