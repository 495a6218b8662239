//! Each loader check fed a broken copy of the golden checkpoint.
mod common;

use c3::cascade::c3::C3Checkpoint;
use c3::cascade::c3::C3Decoder;
use c3::cascade::c3::C3Encoder;
use candle_core::{DType, Device};
use common::*;
use safetensors::tensor::TensorView;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A writable copy of the golden checkpoint.
fn copy_golden() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path().join("ckpt");
    copy_dir(&golden_model(), &dst);
    (tmp, dst)
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), &to).unwrap();
        }
    }
}

type Tensors = BTreeMap<String, (safetensors::Dtype, Vec<usize>, Vec<u8>)>;

fn read_tensors(path: &Path) -> Tensors {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(n, v)| (n, (v.dtype(), v.shape().to_vec(), v.data().to_vec())))
        .collect()
}

fn write_tensors(path: &Path, t: &Tensors) {
    let views: Vec<(String, TensorView)> = t
        .iter()
        .map(|(n, (d, s, b))| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

fn edit_tensors(path: &Path, f: impl FnOnce(&mut Tensors)) {
    let mut t = read_tensors(path);
    f(&mut t);
    write_tensors(path, &t);
}

fn edit_json(path: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

/// Loads the encoder and the decoder (both configs, both weight files).
fn load_err(dir: &Path) -> String {
    let result = C3Checkpoint::open(dir).and_then(|c| {
        C3Encoder::load(&c, DType::F32, &Device::Cpu)?;
        C3Decoder::load(&c, DType::F32, &Device::Cpu).map(|_| ())
    });
    match result {
        Ok(()) => panic!("loading {} should fail", dir.display()),
        Err(e) => e.to_string(),
    }
}

fn assert_has(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "error {msg:?} should mention {p:?}");
    }
}

#[test]
fn golden_copy_loads() {
    let (_t, dir) = copy_golden();
    let ckpt = C3Checkpoint::open(&dir).unwrap();
    C3Encoder::load(&ckpt, DType::F32, &Device::Cpu).unwrap();
}

#[test]
fn missing_files_are_named() {
    for rel in [
        "config.json",
        "llm1/config.json",
        "model.safetensors",
        "llm1/model.safetensors",
    ] {
        let (_t, dir) = copy_golden();
        std::fs::remove_file(dir.join(rel)).unwrap();
        let msg = load_err(&dir);
        assert_has(&msg, &[rel]);
    }
    let (_t, dir) = copy_golden();
    std::fs::remove_file(dir.join("qwen.tiktoken")).unwrap();
    assert_has(&load_err(&dir), &["qwen.tiktoken"]);
}

#[test]
fn missing_tensor_is_named() {
    for name in [
        "model.norm.weight",
        "model.Q.weight",
        "model.mm_projector.bias",
    ] {
        let (_t, dir) = copy_golden();
        edit_tensors(&dir.join("model.safetensors"), |t| {
            t.remove(name);
        });
        assert_has(&load_err(&dir), &["missing tensor", name]);
    }
    let (_t, dir) = copy_golden();
    edit_tensors(&dir.join("llm1/model.safetensors"), |t| {
        t.remove("model.layers.1.self_attn.k_proj.bias");
    });
    assert_has(
        &load_err(&dir),
        &["llm1", "model.layers.1.self_attn.k_proj.bias"],
    );
}

#[test]
fn shape_mismatch_names_tensor_expected_and_found() {
    let (_t, dir) = copy_golden();
    edit_tensors(&dir.join("model.safetensors"), |t| {
        let e = t.get_mut("model.Q.weight").unwrap();
        // [32, 16] bf16 → [16, 32]: same bytes, wrong shape.
        e.1 = vec![16, 32];
    });
    assert_has(
        &load_err(&dir),
        &["model.Q.weight", "[16, 32]", "expected [32, 16]"],
    );
}

#[test]
fn absent_config_field_is_named() {
    let (_t, dir) = copy_golden();
    edit_json(&dir.join("llm1/config.json"), |v| {
        v.as_object_mut().unwrap().remove("num_key_value_heads");
    });
    assert_has(
        &load_err(&dir),
        &["llm1", "config.json", "num_key_value_heads"],
    );

    let (_t, dir) = copy_golden();
    edit_json(&dir.join("config.json"), |v| {
        v.as_object_mut().unwrap().remove("latent_token_len");
    });
    assert_has(&load_err(&dir), &["config.json", "latent_token_len"]);
}

#[test]
fn unknown_config_values_are_refused() {
    let (_t, dir) = copy_golden();
    edit_json(&dir.join("llm1/config.json"), |v| {
        v["hidden_act"] = "gelu".into()
    });
    assert_has(&load_err(&dir), &["hidden_act", "gelu"]);

    let (_t, dir) = copy_golden();
    edit_json(&dir.join("config.json"), |v| {
        v["model_type"] = "llava".into()
    });
    assert_has(&load_err(&dir), &["model_type", "llava"]);

    let (_t, dir) = copy_golden();
    edit_json(&dir.join("config.json"), |v| {
        v["rope_scaling"] = serde_json::json!({"type": "yarn", "factor": 4.0})
    });
    assert_has(&load_err(&dir), &["rope_scaling"]);
}

#[test]
fn nan_or_inf_weight_is_named() {
    for (bits, what) in [(0x7fc0u16, "NaN"), (0x7f80u16, "Inf")] {
        let (_t, dir) = copy_golden();
        edit_tensors(&dir.join("llm1/model.safetensors"), |t| {
            let e = t.get_mut("model.layers.0.mlp.up_proj.weight").unwrap();
            e.2[10..12].copy_from_slice(&bits.to_le_bytes());
        });
        let msg = load_err(&dir);
        assert_has(
            &msg,
            &[
                "model.layers.0.mlp.up_proj.weight",
                "NaN or Inf",
                "element 5",
            ],
        );
        assert!(!msg.is_empty(), "{what}");
    }
}

#[test]
fn pickle_checkpoint_is_refused() {
    let (_t, dir) = copy_golden();
    std::fs::rename(dir.join("model.safetensors"), dir.join("pytorch_model.bin")).unwrap();
    assert_has(
        &load_err(&dir),
        &["pytorch_model.bin", "pickle", "safetensors"],
    );
}

#[test]
fn encoder_decoder_hidden_size_mismatch_is_refused() {
    let (_t, dir) = copy_golden();
    edit_json(&dir.join("config.json"), |v| {
        v["contexts_compression_llm_hidden_size"] = 32.into()
    });
    assert_has(
        &load_err(&dir),
        &[
            "hidden_size",
            "16",
            "contexts_compression_llm_hidden_size",
            "32",
        ],
    );
}

#[test]
fn truncated_weights_file_is_named() {
    let (_t, dir) = copy_golden();
    let p = dir.join("llm1/model.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    assert_has(&load_err(&dir), &["llm1", "model.safetensors"]);
}

#[test]
fn sharded_checkpoint_gives_the_same_latents() {
    let (_t, dir) = copy_golden();
    // Split the decoder file into two shards with an index, as the hub does.
    let main = dir.join("model.safetensors");
    let all = read_tensors(&main);
    std::fs::remove_file(&main).unwrap();
    let mut shards = [Tensors::new(), Tensors::new()];
    let mut weight_map = serde_json::Map::new();
    for (i, (name, t)) in all.into_iter().enumerate() {
        let s = i % 2;
        weight_map.insert(
            name.clone(),
            format!("model-0000{}-of-00002.safetensors", s + 1).into(),
        );
        shards[s].insert(name, t);
    }
    for (s, t) in shards.iter().enumerate() {
        write_tensors(
            &dir.join(format!("model-0000{}-of-00002.safetensors", s + 1)),
            t,
        );
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();

    let ckpt = C3Checkpoint::open(&dir).unwrap();
    let enc = C3Encoder::load(&ckpt, DType::F32, &Device::Cpu).unwrap();
    let case = &golden_cases()[0];
    let lat = enc
        .project(&enc.encode_ids(&case.text_ids).unwrap())
        .unwrap();
    let (_, want) = golden_npy(&case.name, "latents");
    let got = lat.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(max_abs_diff(&got, &want) < 1e-4);

    // A shard named in the index but absent is reported by name.
    std::fs::remove_file(dir.join("model-00002-of-00002.safetensors")).unwrap();
    assert_has(
        &load_err(&dir),
        &["model-00002-of-00002.safetensors", "missing"],
    );
}
