//! Raw encoder states as stored bytes: the tensor's own dtype, little-endian.

use candle_core::{DType, Device, Tensor};

use super::records::LatentRecord;
use crate::{Error, Result};

/// Name used in records and exports for a dtype.
pub fn dtype_name(dtype: DType) -> Result<&'static str> {
    Ok(match dtype {
        DType::BF16 => "bf16",
        DType::F16 => "f16",
        DType::F32 => "f32",
        other => {
            return Err(Error::Store(format!(
                "latents of dtype {other:?} are not supported"
            )))
        }
    })
}

pub fn parse_dtype(name: &str) -> Option<DType> {
    match name {
        "bf16" => Some(DType::BF16),
        "f16" => Some(DType::F16),
        "f32" => Some(DType::F32),
        _ => None,
    }
}

/// Bytes per element of a stored dtype name.
pub fn dtype_size(name: &str) -> Option<usize> {
    parse_dtype(name).map(|d| d.size_in_bytes())
}

/// Capture a `[latent_len, H]` tensor as a record.
pub fn to_record(t: &Tensor) -> Result<LatentRecord> {
    let dtype = dtype_name(t.dtype())?;
    let shape = t.dims().iter().map(|&d| d as u32).collect();
    let flat = t.flatten_all()?;
    let data = match t.dtype() {
        DType::BF16 => flat
            .to_vec1::<half::bf16>()?
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        DType::F16 => flat
            .to_vec1::<half::f16>()?
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        _ => flat
            .to_vec1::<f32>()?
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
    };
    Ok(LatentRecord {
        dtype: dtype.to_string(),
        shape,
        data,
    })
}

/// Rebuild the tensor of a record on the CPU.
pub fn to_tensor(dtype: &str, shape: &[u32], data: &[u8]) -> Result<Tensor> {
    let dt = parse_dtype(dtype)
        .ok_or_else(|| Error::Store(format!("unknown latent dtype `{dtype}`")))?;
    let dims: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
    Ok(Tensor::from_raw_buffer(data, dt, &dims, &Device::Cpu)?)
}

/// Number of bytes a record with this dtype and shape must hold.
pub fn expected_len(dtype: &str, shape: &[u32]) -> Option<usize> {
    let n: usize = shape.iter().map(|&d| d as usize).product();
    dtype_size(dtype).map(|s| s * n)
}
