//! Every refused LCLM checkpoint is reported naming the file and the key or
//! tensor at fault.
mod lclm_support;

use std::collections::HashMap;
use std::path::Path;

use c3::cascade::lclm::{LclmCheckpoint, LclmDecoder, LclmEncoder};
use candle_core::{DType, Device, Tensor};
use lclm_support::*;

fn load_all(dir: &Path) -> Result<(), String> {
    let ckpt = LclmCheckpoint::open(dir).map_err(|e| e.to_string())?;
    LclmEncoder::load(&ckpt, DType::F32, &Device::Cpu, None).map_err(|e| e.to_string())?;
    LclmDecoder::load(&ckpt, DType::F32, &Device::Cpu, None).map_err(|e| e.to_string())?;
    Ok(())
}

fn expect_err(dir: &Path, needles: &[&str]) {
    let e = load_all(dir).expect_err("the checkpoint must be refused");
    for n in needles {
        assert!(e.contains(n), "error {e:?} does not name {n:?}");
    }
}

#[test]
fn the_golden_copy_loads() {
    let d = lclm_copy();
    load_all(d.path()).unwrap();
}

#[test]
fn refused_model_config_values_name_file_and_key() {
    for (key, value) in [
        ("pooling", "\"eos\""),
        ("pooling", "\"concat\""),
        ("encoder_mask_type", "\"bidirectional\""),
        ("boundary_overlap", "128"),
        ("adapter_type", "\"mlp_attn\""),
        ("adapter_type", "\"attn_mlp\""),
        ("compression_ratio", "3"),
    ] {
        let d = lclm_copy();
        let path = d.path().join("model_config.json");
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        v[key] = serde_json::from_str(value).unwrap();
        std::fs::write(&path, v.to_string()).unwrap();
        let needle = if value == "3" {
            "encoder_window_size"
        } else {
            key
        };
        expect_err(d.path(), &["model_config.json", needle]);
    }
}

#[test]
fn lora_and_training_folders_are_refused() {
    let d = lclm_copy();
    std::fs::write(d.path().join("decoder/adapter_model.safetensors"), b"x").unwrap();
    expect_err(d.path(), &["adapter_model.safetensors", "LoRA"]);
    let d = lclm_copy();
    std::fs::create_dir(d.path().join("checkpoint_1000")).unwrap();
    expect_err(d.path(), &["checkpoint_1000"]);
}

#[test]
fn a_qwen2_encoder_config_is_refused() {
    let d = lclm_copy();
    let path = d.path().join("encoder/config.json");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("\"qwen3\"", "\"qwen2\"")).unwrap();
    expect_err(d.path(), &["encoder/config.json", "model_type"]);
}

/// Rewrites the adapter with `edit` applied to its tensors.
fn edit_adapter(dir: &Path, edit: impl FnOnce(&mut HashMap<String, Tensor>)) {
    let path = dir.join("adapter/adapter.safetensors");
    let mut t = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    edit(&mut t);
    std::fs::remove_file(&path).unwrap();
    candle_core::safetensors::save(&t, &path).unwrap();
}

#[test]
fn adapter_tensor_problems_name_the_tensor() {
    let d = lclm_copy();
    edit_adapter(d.path(), |t| {
        t.remove("fc2.bias");
    });
    expect_err(d.path(), &["adapter.safetensors", "fc2.bias"]);

    let d = lclm_copy();
    edit_adapter(d.path(), |t| {
        t.insert(
            "fc1.weight".into(),
            Tensor::zeros((40, 15), DType::F32, &Device::Cpu).unwrap(),
        );
    });
    expect_err(d.path(), &["fc1.weight", "shape"]);

    let d = lclm_copy();
    edit_adapter(d.path(), |t| {
        t.insert(
            "gate.weight".into(),
            Tensor::zeros(4, DType::F32, &Device::Cpu).unwrap(),
        );
    });
    expect_err(d.path(), &["gate.weight", "unexpected"]);

    let d = lclm_copy();
    edit_adapter(d.path(), |t| {
        let mut v = vec![1f32; 16];
        v[3] = f32::NAN;
        t.insert("norm.weight".into(), Tensor::new(v, &Device::Cpu).unwrap());
    });
    expect_err(d.path(), &["norm.weight", "NaN"]);
}

#[test]
fn a_decoder_tensor_missing_is_named() {
    let d = lclm_copy();
    let path = d.path().join("decoder/model.safetensors");
    let mut t = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    t.remove("model.layers.1.self_attn.k_norm.weight");
    std::fs::remove_file(&path).unwrap();
    candle_core::safetensors::save(&t, &path).unwrap();
    expect_err(
        d.path(),
        &["decoder", "model.layers.1.self_attn.k_norm.weight"],
    );
}

#[test]
fn a_missing_memory_token_is_named() {
    let d = lclm_copy();
    let path = d.path().join("decoder/tokenizer.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let added = v["added_tokens"].as_array_mut().unwrap();
    added.retain(|t| t["content"] != "<|memory|>");
    std::fs::write(&path, v.to_string()).unwrap();
    expect_err(d.path(), &["decoder/tokenizer.json", "<|memory|>"]);
}

// Issue 21, point 10: numbers out of range in any LCLM config are refused
// with the file and key named. Before the fix each of these loaded.
#[test]
fn out_of_range_numbers_in_every_config_name_file_and_key() {
    for (file, key, value) in [
        ("encoder/config.json", "rope_theta", "0"),
        ("decoder/config.json", "rms_norm_eps", "-1"),
        (
            "decoder/config.json",
            "max_position_embeddings",
            "1099511627776",
        ),
        ("model_config.json", "encoder_window_size", "65536"),
    ] {
        let d = lclm_copy();
        let path = d.path().join(file);
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        v[key] = serde_json::from_str(value).unwrap();
        std::fs::write(&path, v.to_string()).unwrap();
        expect_err(d.path(), &[file, key]);
    }
}
