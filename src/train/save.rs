//! Writing a trained model in the released layout (C3-TRAIN.md, "Saving"):
//! `model.safetensors` with the decoder, `Q` and the projector (no `llm1.*`
//! keys), `llm1/model.safetensors` with the encoder (no `lm_head` when
//! tied), the configs, `qwen.tiktoken` and every other file of the starting
//! checkpoint (e.g. upstream's `modeling_C3.py`) copied.
//!
//! Tensors that trained are written from their f32 master copies (LoRA
//! adapters merged: W + α/r · B·A); every other tensor is copied from the
//! starting checkpoint, bit for bit when the dtypes agree.

use super::load::LoraConfig;
use super::params::Params;
use super::st_write::{self, Entry, Payload};
use crate::cascade::c3::checkpoint::C3Checkpoint;
use crate::cascade::c3::ENCODER_DIR;
use crate::model::weights::Weights;
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// How a checkpoint is written.
#[derive(Debug, Clone, Copy)]
pub struct SaveOptions {
    /// Dtype of every saved tensor (f32 unless `--save-dtype`).
    pub dtype: DType,
    /// Also write the LoRA adapters alone (`lora/`).
    pub lora_keep: bool,
}

/// transformers' name for a dtype (`torch_dtype` in config.json).
pub fn torch_dtype(d: DType) -> &'static str {
    match d {
        DType::BF16 => "bfloat16",
        DType::F16 => "float16",
        DType::F64 => "float64",
        _ => "float32",
    }
}

/// Adapters by the name of the weight they adapt: (A, B, scale).
fn adapters(params: &Params) -> HashMap<String, (Tensor, Tensor, f64)> {
    let master = |id| params.get(id).master().expect("adapters train").clone();
    params
        .adapters()
        .iter()
        .map(|ad| {
            (
                format!("{}.weight", ad.base),
                (master(ad.a), master(ad.b), ad.scale),
            )
        })
        .collect()
}

/// Writes one model file: every tensor of `src` (as named there), taking
/// trained values from `params` under `prefix` + name.
fn write_stack(
    src: &Weights,
    prefix: &str,
    params: &Params,
    lora: &HashMap<String, (Tensor, Tensor, f64)>,
    skip: &dyn Fn(&str) -> bool,
    dtype: DType,
    dest: &Path,
) -> Result<()> {
    let mut entries = BTreeMap::new();
    for name in src.names().map(str::to_string).collect::<Vec<_>>() {
        if skip(&name) {
            continue;
        }
        let shape = src.shape(&name)?;
        let full = format!("{prefix}{name}");
        let trained = params
            .id(&full)
            .map(|id| params.get(id))
            .and_then(|p| p.master().cloned());
        let payload = if let Some(t) = trained {
            Payload::Tensor(t)
        } else if let Some((a, b, scale)) = lora.get(&full) {
            // The starting weight in f32, plus the adapter's product.
            let base = src.get(&name, &shape)?.to_dtype(DType::F32)?;
            let delta = (b.matmul(a)? * *scale)?.to_device(base.device())?;
            Payload::Tensor((base + delta)?)
        } else if src.stored_dtype(&name)? == dtype {
            Payload::Raw(src.raw_bytes(&name)?.into_owned())
        } else {
            Payload::Tensor(src.get(&name, &shape)?)
        };
        entries.insert(
            name,
            Entry {
                shape,
                dtype,
                payload,
            },
        );
    }
    let mut meta = BTreeMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    st_write::write(dest, entries, &meta)
}

/// Copies the files of `from` (not subdirectories) other than weights and
/// `config.json` into `to`, and writes `config.json` with `torch_dtype` set.
fn copy_files(from: &Path, to: &Path, dtype: DType, written: &mut Vec<PathBuf>) -> Result<()> {
    std::fs::create_dir_all(to).map_err(Error::io(to))?;
    for entry in std::fs::read_dir(from).map_err(Error::io(from))? {
        let entry = entry.map_err(Error::io(from))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        let weights = name.ends_with(".safetensors")
            || name.ends_with(".safetensors.index.json")
            || name.ends_with(".bin")
            || name.ends_with(".bin.index.json");
        if !path.is_file() || weights || name == "config.json" {
            continue;
        }
        let bytes = std::fs::read(&path).map_err(Error::io(&path))?;
        let dest = to.join(&name);
        st_write::write_atomic(&dest, &bytes)?;
        written.push(dest);
    }
    let cfg_path = from.join("config.json");
    let text = std::fs::read_to_string(&cfg_path).map_err(Error::io(&cfg_path))?;
    let mut cfg: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::Checkpoint {
            path: cfg_path.clone(),
            msg: format!("invalid JSON: {e}"),
        })?;
    if let Some(o) = cfg.as_object_mut() {
        o.insert("torch_dtype".into(), torch_dtype(dtype).into());
    }
    let dest = to.join("config.json");
    let pretty = serde_json::to_string_pretty(&cfg).expect("a JSON value serialises");
    st_write::write_atomic(&dest, pretty.as_bytes())?;
    written.push(dest);
    Ok(())
}

/// Writes the trained model into `out`; returns the files written.
pub fn save_checkpoint(
    start: &C3Checkpoint,
    params: &Params,
    lora_cfg: Option<&LoraConfig>,
    out: &Path,
    o: SaveOptions,
) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let enc_out = out.join(ENCODER_DIR);
    copy_files(&start.dir, out, o.dtype, &mut written)?;
    copy_files(
        &start.dir.join(ENCODER_DIR),
        &enc_out,
        o.dtype,
        &mut written,
    )?;
    let lora = adapters(params);
    let cpu = Device::Cpu;
    let dec = Weights::open(&start.dir, DType::F32, &cpu)?;
    let dest = out.join("model.safetensors");
    write_stack(
        &dec,
        "",
        params,
        &lora,
        &|n| n.starts_with("model.llm1."),
        o.dtype,
        &dest,
    )?;
    written.push(dest);
    let enc = Weights::open(&start.dir.join(ENCODER_DIR), DType::F32, &cpu)?;
    let tied = start.encoder_config.tie_word_embeddings;
    let prefix = format!("{ENCODER_DIR}/");
    let dest = enc_out.join("model.safetensors");
    write_stack(
        &enc,
        &prefix,
        params,
        &lora,
        &|n| tied && n == "lm_head.weight",
        o.dtype,
        &dest,
    )?;
    written.push(dest);
    if let (true, Some(cfg)) = (o.lora_keep, lora_cfg) {
        written.extend(save_adapters(params, cfg, &out.join("lora"))?);
    }
    Ok(written)
}

/// Writes the adapters alone: `adapter_model.safetensors` (f32, named
/// `{weight name}.lora_A.weight` / `.lora_B.weight`, encoder ones under
/// `llm1/`) and `adapter_config.json`.
pub fn save_adapters(params: &Params, cfg: &LoraConfig, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
    let mut entries = BTreeMap::new();
    for (_, p) in params.iter().filter(|(_, p)| p.adapter) {
        if let Some(m) = p.master() {
            entries.insert(
                p.name.clone(),
                Entry {
                    shape: p.shape.clone(),
                    dtype: DType::F32,
                    payload: Payload::Tensor(m.clone()),
                },
            );
        }
    }
    let st = dir.join("adapter_model.safetensors");
    st_write::write(&st, entries, &BTreeMap::new())?;
    let path = dir.join("adapter_config.json");
    let info = serde_json::json!({
        "rank": cfg.rank,
        "alpha": cfg.alpha,
        "targets": cfg.targets,
        "merge": "W + alpha / rank * B @ A (already merged into the saved model)",
    });
    st_write::write_atomic(
        &path,
        serde_json::to_string_pretty(&info)
            .expect("JSON")
            .as_bytes(),
    )?;
    Ok(vec![st, path])
}
