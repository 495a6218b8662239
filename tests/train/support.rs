//! Helpers of the `c3 train` tests: small record files, running the
//! command on the tiny golden model, reading saved tensors.

use crate::common::{fixtures, golden_model};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `n` short reconstruction records (a sentence or two of the fixture
/// book each), as JSON Lines.
pub fn records(n: usize) -> String {
    let book = std::fs::read_to_string(fixtures().join("corpus/alice-in-wonderland.txt")).unwrap();
    let words: Vec<&str> = book.split_whitespace().collect();
    (0..n)
        .map(|i| {
            let text = words[i * 12..i * 12 + 8 + i % 5].join(" ");
            record(&text, "<image>\nRepeat the text: ", &text)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn record(context: &str, human: &str, gpt: &str) -> String {
    serde_json::json!({"image": "", "conversations": [
        {"from": "context", "value": context},
        {"from": "human", "value": human},
        {"from": "gpt", "value": gpt}]})
    .to_string()
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// `c3 --store STORE --model MODEL train ARGS...`.
pub fn train_cmd(store: &Path, model: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_c3"));
    c.arg("--store")
        .arg(store)
        .arg("--model")
        .arg(model)
        .arg("train")
        .args(args)
        .env_remove("C3_MODEL")
        .env("C3_DEVICE", "cpu");
    c
}

/// Runs `c3 train` on the tiny golden model.
pub fn train(store: &Path, args: &[&str]) -> Output {
    train_cmd(store, &golden_model(), args).output().unwrap()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Every tensor of a safetensors file, as f32 on the CPU.
pub fn tensors(path: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(path, &Device::Cpu)
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k, v.to_dtype(DType::F32).unwrap()))
        .collect()
}

/// (name, dtype, shape) of every tensor in a safetensors file's header.
pub fn layout(path: &Path) -> Vec<(String, String, Vec<usize>)> {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let h: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let mut out: Vec<(String, String, Vec<usize>)> = h
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(k, v)| {
            let shape = v["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            (k.clone(), v["dtype"].as_str().unwrap().to_string(), shape)
        })
        .collect();
    out.sort();
    out
}

pub fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// The JSON objects a `--json` run printed, one per line.
pub fn json_lines(o: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The golden checkpoint copied to `dir` (to be altered by a test).
pub fn copy_model(dir: &Path) -> PathBuf {
    let src = golden_model();
    let dst = dir.join("model");
    for sub in ["", "llm1"] {
        std::fs::create_dir_all(dst.join(sub)).unwrap();
        for e in std::fs::read_dir(src.join(sub)).unwrap() {
            let e = e.unwrap();
            if e.path().is_file() {
                std::fs::copy(e.path(), dst.join(sub).join(e.file_name())).unwrap();
            }
        }
    }
    dst
}
