//! Model weights: memory-mapped safetensors (single file or sharded), or
//! tensors built in memory (benchmarks at release geometry), with checks that
//! name the tensor at fault: missing, wrong shape, NaN/Inf.

use crate::{Error, Result};
use candle_core::safetensors::{Load, MmapedSafetensors};
use candle_core::{DType, Device, Tensor};
use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// The weights of one model directory (`DIR/model.safetensors` or
/// `DIR/model.safetensors.index.json` + shards).
pub struct Weights {
    dir: PathBuf,
    source: Source,
    names: BTreeSet<String>,
    dtype: DType,
    device: Device,
}

enum Source {
    Mapped(MmapedSafetensors),
    Memory(HashMap<String, Tensor>),
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
        let text = std::fs::read_to_string(&index).map_err(Error::io(&index))?;
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
            source: Source::Mapped(st),
            names,
            dtype,
            device: device.clone(),
        })
    }

    /// Maps one safetensors file (e.g. LCLM's `adapter/adapter.safetensors`);
    /// messages name the file.
    pub fn open_file(path: &Path, dtype: DType, device: &Device) -> Result<Self> {
        if !path.is_file() {
            return Err(ckpt_err(path, "missing weights file"));
        }
        check_header(path)?;
        // SAFETY: as in `open`.
        let st = unsafe { MmapedSafetensors::new(path) }
            .map_err(|e| ckpt_err(path, format!("cannot read safetensors: {e}")))?;
        let names = st.tensors().into_iter().map(|(n, _)| n).collect();
        Ok(Self {
            dir: path.to_path_buf(),
            source: Source::Mapped(st),
            names,
            dtype,
            device: device.clone(),
        })
    }

    /// Every tensor name.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The dtype tensors are cast to when loaded.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn contains(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    /// Weights held in memory; `label` stands for the directory in messages.
    pub fn from_tensors(label: &str, tensors: HashMap<String, Tensor>, dtype: DType) -> Self {
        let device = tensors
            .values()
            .next()
            .map(|t| t.device().clone())
            .unwrap_or(Device::Cpu);
        Self {
            dir: PathBuf::from(label),
            names: tensors.keys().cloned().collect(),
            source: Source::Memory(tensors),
            dtype,
            device,
        }
    }

    fn missing(&self, name: &str) -> Error {
        ckpt_err(&self.dir, format!("missing tensor `{name}`"))
    }

    /// Bytes of a tensor as stored (for fingerprints).
    pub fn raw_bytes(&self, name: &str) -> Result<Cow<'_, [u8]>> {
        match &self.source {
            Source::Mapped(st) => Ok(Cow::Borrowed(
                st.get(name).map_err(|_| self.missing(name))?.data(),
            )),
            Source::Memory(m) => {
                let t = m.get(name).ok_or_else(|| self.missing(name))?;
                let v = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
                Ok(Cow::Owned(v.iter().flat_map(|x| x.to_le_bytes()).collect()))
            }
        }
    }

    /// The dtype a tensor has on disk (or in memory).
    pub fn stored_dtype(&self, name: &str) -> Result<DType> {
        match &self.source {
            Source::Mapped(st) => {
                let view = st.get(name).map_err(|_| self.missing(name))?;
                DType::try_from(view.dtype())
                    .map_err(|e| ckpt_err(&self.dir, format!("tensor `{name}`: {e}")))
            }
            Source::Memory(m) => Ok(m.get(name).ok_or_else(|| self.missing(name))?.dtype()),
        }
    }

    /// Loads `name`, checking its shape and that every value is finite.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let shape_err = |found: &[usize]| {
            ckpt_err(
                &self.dir,
                format!("tensor `{name}` has shape {found:?}, expected {shape:?}"),
            )
        };
        let t = match &self.source {
            Source::Mapped(st) => {
                let view = st.get(name).map_err(|_| self.missing(name))?;
                if view.shape() != shape {
                    return Err(shape_err(view.shape()));
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
                // The tensor now owns a copy: hand the mapped pages back,
                // so loading an 18.5 GB F32 checkpoint does not keep every
                // page of it resident beside the converted model.
                release_mapped(view.data());
                t
            }
            Source::Memory(m) => {
                let t = m.get(name).ok_or_else(|| self.missing(name))?;
                if t.dims() != shape {
                    return Err(shape_err(t.dims()));
                }
                t.clone()
            }
        };
        Ok(t.to_dtype(self.dtype)?)
    }
}

/// Drops the resident pages behind `data`, part of a read-only file mapping:
/// a later read faults them in again from the file, so this only changes
/// memory use. Small tensors are left alone (not worth a system call).
fn release_mapped(data: &[u8]) {
    const MIN: usize = 1 << 20;
    #[cfg(unix)]
    if data.len() >= MIN {
        let page = 4096usize;
        let start = data.as_ptr() as usize & !(page - 1);
        let end = data.as_ptr() as usize + data.len();
        // SAFETY: the range lies within (or on the pages of) a read-only
        // mapping that stays mapped; MADV_DONTNEED on such pages discards
        // nothing that cannot be read back from the file.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
        }
    }
    #[cfg(not(unix))]
    let _ = (data, MIN);
}

/// The largest safetensors header read (the format's own limit).
const MAX_HEADER: u64 = 100_000_000;

/// Reads the safetensors header alone so a truncated or garbled file is
/// reported by name before anything is mapped.
fn check_header(path: &Path) -> Result<()> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(Error::io(path))?;
    let len = f.metadata().map_err(Error::io(path))?.len();
    let mut n = [0u8; 8];
    if len < 8 || f.read_exact(&mut n).is_err() {
        return Err(ckpt_err(
            path,
            "not a safetensors file (shorter than its header)",
        ));
    }
    let header = u64::from_le_bytes(n);
    // Bound the header before anything reads it (the safetensors format
    // allows 100 MB); a damaged length is named here.
    if header > MAX_HEADER {
        return Err(ckpt_err(
            path,
            format!("safetensors header of {header} bytes is larger than the {MAX_HEADER} allowed"),
        ));
    }
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
