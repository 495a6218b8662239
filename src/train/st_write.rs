//! Writing safetensors files one tensor at a time (a 12 GB f32 decoder is
//! never held twice), atomically: the file is written beside its final
//! name, synced, then renamed over it. Names are sorted, so the same
//! tensors always give the same bytes.

use crate::{Error, Result};
use candle_core::{DType, Tensor};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// Where a tensor's bytes come from.
pub enum Payload {
    /// A tensor, converted to the file's dtype when written.
    Tensor(Tensor),
    /// Bytes already in the file's dtype (copied verbatim).
    Raw(Vec<u8>),
}

/// One entry of a file.
pub struct Entry {
    pub shape: Vec<usize>,
    pub dtype: DType,
    pub payload: Payload,
}

fn st_dtype(d: DType) -> Result<&'static str> {
    Ok(match d {
        DType::F32 => "F32",
        DType::BF16 => "BF16",
        DType::F16 => "F16",
        DType::F64 => "F64",
        other => {
            return Err(Error::Input(format!(
                "cannot save tensors of dtype {other:?}"
            )))
        }
    })
}

/// The little-endian bytes of `t` in `dtype`.
pub fn tensor_bytes(t: &Tensor, dtype: DType) -> Result<Vec<u8>> {
    let flat = t.to_dtype(dtype)?.flatten_all()?;
    Ok(match dtype {
        DType::F32 => flat
            .to_vec1::<f32>()?
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
        DType::F64 => flat
            .to_vec1::<f64>()?
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
        DType::BF16 => flat
            .to_vec1::<half::bf16>()?
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
        DType::F16 => flat
            .to_vec1::<half::f16>()?
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
        other => {
            return Err(Error::Input(format!(
                "cannot save tensors of dtype {other:?}"
            )))
        }
    })
}

/// Writes `entries` (and string `metadata`) to `path` atomically.
pub fn write(
    path: &Path,
    entries: BTreeMap<String, Entry>,
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        header.insert(
            "__metadata__".into(),
            serde_json::to_value(metadata).expect("strings"),
        );
    }
    let mut offset = 0usize;
    for (name, e) in &entries {
        let n = e.shape.iter().product::<usize>() * e.dtype.size_in_bytes();
        header.insert(
            name.clone(),
            serde_json::json!({
                "dtype": st_dtype(e.dtype)?,
                "shape": e.shape,
                "data_offsets": [offset, offset + n],
            }),
        );
        offset += n;
    }
    let mut h = serde_json::Value::Object(header).to_string().into_bytes();
    // Data starts 8-byte aligned, as the format's writers keep it.
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let tmp = path.with_extension("safetensors.tmp");
    let write_all = || -> std::io::Result<std::result::Result<(), Error>> {
        let file = std::fs::File::create(&tmp)?;
        let mut w = std::io::BufWriter::with_capacity(8 << 20, file);
        w.write_all(&(h.len() as u64).to_le_bytes())?;
        w.write_all(&h)?;
        for (name, e) in entries {
            let bytes = match e.payload {
                Payload::Raw(b) => b,
                Payload::Tensor(t) => match tensor_bytes(&t, e.dtype) {
                    Ok(b) => b,
                    Err(err) => return Ok(Err(err)),
                },
            };
            let want = e.shape.iter().product::<usize>() * e.dtype.size_in_bytes();
            if bytes.len() != want {
                return Ok(Err(Error::Input(format!(
                    "tensor `{name}`: {} bytes for shape {:?}",
                    bytes.len(),
                    e.shape
                ))));
            }
            w.write_all(&bytes)?;
        }
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(Ok(()))
    };
    write_all().map_err(Error::io(&tmp))??;
    std::fs::rename(&tmp, path).map_err(Error::io(path))?;
    sync_dir(path);
    Ok(())
}

/// Syncs the directory holding `path`, so a rename in it survives a crash.
pub fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
}

/// Writes `bytes` to `path` atomically (a sibling temporary, synced, renamed).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    let run = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    };
    run().map_err(Error::io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(Error::io(path))?;
    sync_dir(path);
    Ok(())
}

/// The `__metadata__` strings of a safetensors file (reads its header only).
pub fn read_metadata(path: &Path) -> Result<BTreeMap<String, String>> {
    use std::io::Read;
    let bad = |msg: &str| Error::Checkpoint {
        path: path.to_path_buf(),
        msg: msg.into(),
    };
    let mut f = std::fs::File::open(path).map_err(Error::io(path))?;
    let mut n = [0u8; 8];
    f.read_exact(&mut n).map_err(Error::io(path))?;
    let len = u64::from_le_bytes(n);
    if len > 100 << 20 {
        return Err(bad("safetensors header is implausibly large"));
    }
    let mut h = vec![0u8; len as usize];
    f.read_exact(&mut h).map_err(Error::io(path))?;
    let v: serde_json::Value =
        serde_json::from_slice(&h).map_err(|e| bad(&format!("bad safetensors header: {e}")))?;
    Ok(v.get("__metadata__")
        .and_then(|m| serde_json::from_value(m.clone()).ok())
        .unwrap_or_default())
}
