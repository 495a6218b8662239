//! LCLM golden fixtures: the tiny checkpoint at 4x and 16x, the reference's
//! expectations, and checkpoint copies tests may alter.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::Value;

pub fn lclm_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden-lclm")
}

/// The tiny checkpoint at `ratio` 4 or 16. The 16x fixture ships only its
/// configs (its weights are the 4x ones): it is assembled once in a temp
/// dir with links to the 4x folders.
pub fn lclm_model(ratio: usize) -> PathBuf {
    match ratio {
        4 => lclm_dir().join("lclm-tiny-4x"),
        16 => {
            static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
            DIR.get_or_init(|| {
                let d = tempfile::tempdir().unwrap();
                let src16 = lclm_dir().join("lclm-tiny-16x");
                for f in ["model_config.json", "processor_config.json"] {
                    std::fs::copy(src16.join(f), d.path().join(f)).unwrap();
                }
                for sub in ["encoder", "decoder", "adapter"] {
                    std::os::unix::fs::symlink(lclm_model(4).join(sub), d.path().join(sub))
                        .unwrap();
                }
                d
            })
            .path()
            .to_path_buf()
        }
        _ => panic!("no golden LCLM checkpoint at {ratio}x"),
    }
}

/// A writable copy of the 4x checkpoint: configs and tokenizers copied,
/// weights linked (replace a link before altering its file).
pub fn lclm_copy() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    copy_tree(&lclm_model(4), d.path());
    d
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if src.is_dir() {
            copy_tree(&src, &dst);
        } else if src.extension().is_some_and(|x| x == "safetensors") {
            std::os::unix::fs::symlink(&src, &dst).unwrap();
        } else {
            std::fs::copy(&src, &dst).unwrap();
            let mut p = std::fs::metadata(&dst).unwrap().permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            p.set_readonly(false);
            std::fs::set_permissions(&dst, p).unwrap();
        }
    }
}

pub struct LclmCase {
    pub name: String,
    pub text: String,
    pub encoder_ids: Vec<u32>,
    pub windows: Vec<(usize, usize)>,
    pub num_latents: usize,
    pub decoder_prompt_ids: Vec<u32>,
    pub memory_slots: (usize, usize),
    pub greedy_ids: Vec<u32>,
    pub greedy_gap: Vec<f64>,
    pub rep_ids: Vec<u32>,
    pub rep_gap: Vec<f64>,
    pub top5_ids: Vec<u32>,
    pub top5_logits: Vec<f32>,
    pub python_ids: Option<Vec<u32>>,
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

pub fn expected(ratio: usize) -> Value {
    let p = lclm_dir().join(format!("expected/{ratio}x/expected.json"));
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

pub fn lclm_cases(ratio: usize) -> Vec<LclmCase> {
    let e = expected(ratio);
    e["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let file = c["text"].as_str().unwrap();
            let pair = |v: &Value| {
                (
                    v[0].as_u64().unwrap() as usize,
                    v[1].as_u64().unwrap() as usize,
                )
            };
            LclmCase {
                name: file.trim_end_matches(".txt").into(),
                // Byte-exact: CR LF stays CR LF.
                text: String::from_utf8(
                    std::fs::read(lclm_dir().join("texts").join(file)).unwrap(),
                )
                .unwrap(),
                encoder_ids: ids(&c["encoder_ids"]),
                windows: c["windows"].as_array().unwrap().iter().map(pair).collect(),
                num_latents: c["num_latents"].as_u64().unwrap() as usize,
                decoder_prompt_ids: ids(&c["decoder_prompt_ids"]),
                memory_slots: pair(&c["memory_slots"]),
                greedy_ids: ids(&c["greedy_ids"]),
                greedy_gap: floats(&c["greedy_top2_gap"]),
                rep_ids: ids(&c["greedy_rep1.1_ids"]),
                rep_gap: floats(&c["greedy_rep1.1_top2_gap"]),
                top5_ids: ids(&c["first_step_top5"]["ids"]),
                top5_logits: floats(&c["first_step_top5"]["logits"])
                    .into_iter()
                    .map(|x| x as f32)
                    .collect(),
                python_ids: c.get("lclm_python_encoder_ids").map(ids),
            }
        })
        .collect()
}

pub fn lclm_npy(ratio: usize, name: &str, kind: &str) -> (Vec<usize>, Vec<f32>) {
    c3::npy::read_f32(&lclm_dir().join(format!("expected/{ratio}x/{name}.{kind}.npy"))).unwrap()
}

/// How many leading ids must match: those before the first step whose
/// top-2 gap is a near tie (< 1e-3), where either choice is right.
pub fn comparable(gaps: &[f64], n: usize) -> usize {
    gaps.iter().position(|&g| g < 1e-3).unwrap_or(n).min(n)
}
