//! Memory-mapped safetensors weights (single file or sharded), with checks
//! that name the tensor at fault: missing, wrong shape, NaN/Inf.

use crate::{Error, Result};
use candle_core::safetensors::{Load, MmapedSafetensors};
use candle_core::{DType, Device, Tensor};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The weights of one model directory (`DIR/model.safetensors` or
/// `DIR/model.safetensors.index.json` + shards).
pub struct Weights {
    dir: PathBuf,
    st: MmapedSafetensors,
    names: BTreeSet<String>,
    dtype: DType,
    device: Device,
}

const INDEX: &str = "model.safetensors.index.json";
const SINGLE: &str = "model.safetensors";

fn ckpt_err(path: &Path, msg: impl Into<String>) -> Error {
    Error::Checkpoint {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

/// The safetensors files of a model directory, refusing pickle checkpoints.
fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join(INDEX);
    if index.is_file() {
        let text = std::fs::read_to_string(&index).map_err(|source| Error::Io {
            path: index.clone(),
            source,
        })?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| ckpt_err(&index, format!("invalid index JSON: {e}")))?;
        let map = v
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| ckpt_err(&index, "missing `weight_map` object"))?;
        let mut files = BTreeSet::new();
        for (tensor, file) in map {
            let file = file.as_str().ok_or_else(|| {
                ckpt_err(&index, format!("`weight_map.{tensor}` is not a string"))
            })?;
            if file.contains('/') || file.contains('\\') || file == ".." {
                return Err(ckpt_err(
                    &index,
                    format!("shard name {file:?} leaves the directory"),
                ));
            }
            files.insert(file.to_string());
        }
        let files: Vec<PathBuf> = files.into_iter().map(|f| dir.join(f)).collect();
        for f in &files {
            if !f.is_file() {
                return Err(ckpt_err(f, "shard listed in the index is missing"));
            }
        }
        return Ok(files);
    }
    let single = dir.join(SINGLE);
    if single.is_file() {
        return Ok(vec![single]);
    }
    for pickle in [
        "pytorch_model.bin",
        "pytorch_model.bin.index.json",
        "model.bin",
    ] {
        if dir.join(pickle).exists() {
            return Err(ckpt_err(
                &dir.join(pickle),
                "pickle (.bin) checkpoints are refused: only safetensors are loaded \
                 (convert it to model.safetensors first)",
            ));
        }
    }
    Err(ckpt_err(
        &single,
        format!("no weights: expected {SINGLE} or {INDEX}"),
    ))
}

impl Weights {
    /// Maps the weights of `dir`; tensors are cast to `dtype` when loaded.
    pub fn open(dir: &Path, dtype: DType, device: &Device) -> Result<Self> {
        let files = weight_files(dir)?;
        for f in &files {
            check_header(f)?;
        }
        // SAFETY: the files are mapped read-only; like every mmap loader we
        // rely on nobody truncating the checkpoint while it is in use.
        let st = unsafe { MmapedSafetensors::multi(&files) }
            .map_err(|e| ckpt_err(dir, format!("cannot read safetensors: {e}")))?;
        let names = st.tensors().into_iter().map(|(n, _)| n).collect();
        Ok(Self {
            dir: dir.to_path_buf(),
            st,
            names,
            dtype,
            device: device.clone(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn contains(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    /// Raw on-disk bytes of a tensor (for fingerprints).
    pub fn raw_bytes(&self, name: &str) -> Result<&[u8]> {
        let view = self
            .st
            .get(name)
            .map_err(|_| ckpt_err(&self.dir, format!("missing tensor `{name}`")))?;
        Ok(view.data())
    }

    /// The dtype a tensor has on disk.
    pub fn stored_dtype(&self, name: &str) -> Result<DType> {
        let view = self
            .st
            .get(name)
            .map_err(|_| ckpt_err(&self.dir, format!("missing tensor `{name}`")))?;
        DType::try_from(view.dtype())
            .map_err(|e| ckpt_err(&self.dir, format!("tensor `{name}`: {e}")))
    }

    /// Loads `name`, checking its shape and that every value is finite.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        if !self.contains(name) {
            return Err(ckpt_err(&self.dir, format!("missing tensor `{name}`")));
        }
        let view = self
            .st
            .get(name)
            .map_err(|e| ckpt_err(&self.dir, format!("tensor `{name}`: {e}")))?;
        if view.shape() != shape {
            return Err(ckpt_err(
                &self.dir,
                format!(
                    "tensor `{name}` has shape {:?}, expected {:?}",
                    view.shape(),
                    shape
                ),
            ));
        }
        if let Some(bad) = first_non_finite(view.dtype(), view.data()) {
            return Err(ckpt_err(
                &self.dir,
                format!("tensor `{name}` contains NaN or Inf (element {bad})"),
            ));
        }
        let t = view
            .load(&self.device)
            .map_err(|e| ckpt_err(&self.dir, format!("tensor `{name}`: {e}")))?;
        Ok(t.to_dtype(self.dtype)?)
    }
}

/// Reads the safetensors header alone so a truncated or garbled file is
/// reported by name before anything is mapped.
fn check_header(path: &Path) -> Result<()> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let len = f
        .metadata()
        .map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?
        .len();
    let mut n = [0u8; 8];
    if len < 8 || f.read_exact(&mut n).is_err() {
        return Err(ckpt_err(
            path,
            "not a safetensors file (shorter than its header)",
        ));
    }
    let header = u64::from_le_bytes(n);
    if header.saturating_add(8) > len {
        return Err(ckpt_err(
            path,
            "not a safetensors file or truncated (header length exceeds file size)",
        ));
    }
    Ok(())
}

/// Index of the first NaN/Inf element, scanning the raw bits (no conversion,
/// so checking a 9 GB checkpoint costs one read of it).
fn first_non_finite(dtype: safetensors::Dtype, data: &[u8]) -> Option<usize> {
    use safetensors::Dtype as D;
    match dtype {
        D::BF16 => data
            .chunks_exact(2)
            .position(|b| u16::from_le_bytes([b[0], b[1]]) & 0x7f80 == 0x7f80),
        D::F16 => data
            .chunks_exact(2)
            .position(|b| u16::from_le_bytes([b[0], b[1]]) & 0x7c00 == 0x7c00),
        D::F32 => data.chunks_exact(4).position(|b| {
            u32::from_le_bytes([b[0], b[1], b[2], b[3]]) & 0x7f80_0000 == 0x7f80_0000
        }),
        D::F64 => data.chunks_exact(8).position(|b| {
            u64::from_le_bytes(b.try_into().unwrap()) & 0x7ff0_0000_0000_0000
                == 0x7ff0_0000_0000_0000
        }),
        _ => None,
    }
}
