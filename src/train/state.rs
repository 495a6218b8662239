//! A run's record and its resumable state in `OUT/train/`:
//!
//! - `state.safetensors`: the f32 master copy of every trained tensor, both
//!   AdamW moments, and (in its metadata) [`RunState`]: the recipe, the step
//!   reached, the optimizer's step count, the log. Written whole beside its
//!   final name and renamed over it, so a kill at any moment leaves the
//!   previous state or the new one, never a mix. Removed when the run ends.
//! - `run.json`: [`RunState`] alone (and the final report once finished),
//!   for people and for `c3 train --plot`.
//!
//! The data cursor and the random streams are functions of the step and the
//! seed (`data::Batches`, `rng`), so the step is all a resumed run needs.

use super::data::Order;
use super::load::LoraConfig;
use super::optim::{AdamConfig, AdamW};
use super::params::{ParamId, Params};
use super::st_write::{self, Entry, Payload};
use super::step::StepStats;
use crate::{Error, Result};
use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const TRAIN_DIR: &str = "train";
pub const STATE_FILE: &str = "state.safetensors";
pub const RUN_FILE: &str = "run.json";
const STATE_KEY: &str = "c3_train_state";

/// Everything that decides a run's weights. A resumed run must have the
/// same recipe as the run it continues.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recipe {
    pub lr: f64,
    pub decoder_lr_ratio: f64,
    pub warmup_ratio: f64,
    pub max_grad_norm: f64,
    pub adam: AdamConfig,
    pub micro_batch: usize,
    pub grad_accum: usize,
    pub order: Order,
    pub seed: u64,
    pub max_length: usize,
    pub total_steps: usize,
    /// Parts that train (`encoder`, `queries`, `projector`, `decoder`).
    pub train: Vec<String>,
    pub lora: Option<LoraConfig>,
    pub compute_dtype: String,
    /// Records per forward pass.
    pub pack: usize,
    /// Records trained on, and the signature of their ids and labels.
    pub records: usize,
    pub data: String,
}

/// One step of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub step: usize,
    #[serde(flatten)]
    pub stats: StepStats,
    pub tokens: usize,
    pub targets: usize,
}

/// One evaluation: loss and teacher-forced token accuracy over the
/// evaluation records' targets, after `step` steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    pub step: usize,
    pub loss: f64,
    pub accuracy: f64,
    pub targets: usize,
}

/// A run's record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunState {
    pub version: u32,
    pub recipe: Recipe,
    /// The starting checkpoint and its signature.
    pub model: String,
    pub model_signature: String,
    /// Optimizer steps done.
    pub step: usize,
    /// AdamW's update count (steps skipped as non-finite do not count).
    pub adam_t: u64,
    pub log: Vec<StepRecord>,
    pub evals: Vec<EvalRecord>,
    pub nonfinite_steps: usize,
    /// Seconds spent training, over every process of the run.
    pub seconds: f64,
    pub finished: bool,
    /// The final report, once finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<serde_json::Value>,
}

pub fn state_path(out: &Path) -> PathBuf {
    out.join(TRAIN_DIR).join(STATE_FILE)
}

pub fn run_path(out: &Path) -> PathBuf {
    out.join(TRAIN_DIR).join(RUN_FILE)
}

/// Writes `run.json`.
pub fn write_run(out: &Path, st: &RunState) -> Result<()> {
    let dir = out.join(TRAIN_DIR);
    std::fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
    let text = serde_json::to_string_pretty(st).expect("the run state serialises");
    st_write::write_atomic(&run_path(out), text.as_bytes())
}

/// Reads `run.json`, if there is one.
pub fn read_run(out: &Path) -> Result<Option<RunState>> {
    let p = run_path(out);
    if !p.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&p).map_err(Error::io(&p))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| Error::Checkpoint {
            path: p,
            msg: format!("not a c3 training record: {e}"),
        })
}

/// Saves the resumable state (then `run.json`).
pub fn save(out: &Path, st: &RunState, params: &Params, opt: &AdamW) -> Result<()> {
    let dir = out.join(TRAIN_DIR);
    std::fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
    let mut entries = BTreeMap::new();
    let mut put = |kind: &str, name: &str, t: &Tensor| {
        entries.insert(
            format!("{kind}/{name}"),
            Entry {
                shape: t.dims().to_vec(),
                dtype: t.dtype(),
                payload: Payload::Tensor(t.clone()),
            },
        );
    };
    for id in params.trainable_ids() {
        let p = params.get(id);
        put("master", &p.name, p.master().expect("trainable"));
        if let (Some(m), Some(v)) = (opt.m.get(&id), opt.v.get(&id)) {
            put("m", &p.name, m);
            put("v", &p.name, v);
        }
    }
    let mut meta = BTreeMap::new();
    meta.insert(
        STATE_KEY.to_string(),
        serde_json::to_string(st).expect("serialises"),
    );
    st_write::write(&state_path(out), entries, &meta)?;
    write_run(out, st)
}

/// The run state in a state file (header only).
pub fn read_state_header(out: &Path) -> Result<Option<RunState>> {
    let p = state_path(out);
    if !p.is_file() {
        return Ok(None);
    }
    let meta = st_write::read_metadata(&p)?;
    let text = meta.get(STATE_KEY).ok_or_else(|| Error::Checkpoint {
        path: p.clone(),
        msg: "not a c3 training state (no run record in its metadata)".into(),
    })?;
    serde_json::from_str(text)
        .map(Some)
        .map_err(|e| Error::Checkpoint {
            path: p,
            msg: format!("bad run record: {e}"),
        })
}

/// Restores trained tensors and moments from the state file into `params`
/// and `opt`.
pub fn restore(out: &Path, st: &RunState, params: &mut Params, opt: &mut AdamW) -> Result<()> {
    let p = state_path(out);
    let tensors = candle_core::safetensors::load(&p, params.device())?;
    let missing = |name: &str| Error::Checkpoint {
        path: p.clone(),
        msg: format!("state lacks tensor `{name}`"),
    };
    let ids: Vec<ParamId> = params.trainable_ids();
    for id in ids {
        let name = params.get(id).name.clone();
        let key = format!("master/{name}");
        let t = tensors.get(&key).ok_or_else(|| missing(&key))?;
        if t.dims() != params.get(id).shape.as_slice() {
            return Err(Error::Checkpoint {
                path: p.clone(),
                msg: format!(
                    "tensor `{key}` has shape {:?}, expected {:?}",
                    t.dims(),
                    params.get(id).shape
                ),
            });
        }
        params.set_master(id, t.to_dtype(super::params::master_dtype(params.dtype()))?)?;
        if let (Some(m), Some(v)) = (
            tensors.get(&format!("m/{name}")),
            tensors.get(&format!("v/{name}")),
        ) {
            opt.m.insert(id, m.clone());
            opt.v.insert(id, v.clone());
        }
    }
    opt.t = st.adam_t;
    Ok(())
}

/// Removes the resumable state once the run has finished.
pub fn remove_state(out: &Path) {
    let _ = std::fs::remove_file(state_path(out));
    let _ = std::fs::remove_file(state_path(out).with_extension("safetensors.tmp"));
}

/// A fingerprint of a checkpoint that is cheap to take: both configs and
/// every weights file's length and header (names, dtypes, shapes, offsets).
pub fn model_signature(dir: &Path) -> Result<String> {
    use std::io::Read;
    let mut h = blake3::Hasher::new();
    for sub in [dir.to_path_buf(), dir.join(crate::cascade::c3::ENCODER_DIR)] {
        let cfg = sub.join("config.json");
        h.update(&std::fs::read(&cfg).map_err(Error::io(&cfg))?);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&sub)
            .map_err(Error::io(&sub))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect();
        files.sort();
        for f in files {
            let mut file = std::fs::File::open(&f).map_err(Error::io(&f))?;
            let len = file.metadata().map_err(Error::io(&f))?.len();
            h.update(&len.to_le_bytes());
            let mut head = vec![0u8; len.min(1 << 20) as usize];
            file.read_exact(&mut head).map_err(Error::io(&f))?;
            h.update(&head);
        }
    }
    Ok(h.finalize().to_hex()[..16].to_string())
}

/// The compute dtype's name in a recipe.
pub fn dtype_name(d: DType) -> String {
    format!("{d:?}").to_lowercase()
}

/// AdamW with the recipe's settings.
pub fn optimizer(r: &Recipe) -> AdamW {
    AdamW::new(r.adam)
}
