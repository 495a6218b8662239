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

/// Number of bytes a record with this dtype and shape must hold (`None`
/// for an unknown dtype or a shape too large to exist).
pub fn expected_len(dtype: &str, shape: &[u32]) -> Option<usize> {
    let n = shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d as usize))?;
    dtype_size(dtype)?.checked_mul(n)
}

/// Index of the first element of `data` (little-endian `dtype` values)
/// that is NaN or infinite. Latents are never stored with one: the decoder
/// would read garbage and answer nothing.
pub fn first_non_finite(dtype: &str, data: &[u8]) -> Option<usize> {
    match dtype {
        "bf16" => data
            .chunks_exact(2)
            .position(|b| !half::bf16::from_le_bytes([b[0], b[1]]).is_finite()),
        "f16" => data
            .chunks_exact(2)
            .position(|b| !half::f16::from_le_bytes([b[0], b[1]]).is_finite()),
        "f32" => data
            .chunks_exact(4)
            .position(|b| !f32::from_le_bytes([b[0], b[1], b[2], b[3]]).is_finite()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_values_are_found_in_each_dtype() {
        let bf: Vec<u8> = [1.0f32, f32::NAN]
            .iter()
            .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
            .collect();
        assert_eq!(first_non_finite("bf16", &bf), Some(1));
        let f16: Vec<u8> = [f32::INFINITY]
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect();
        assert_eq!(first_non_finite("f16", &f16), Some(0));
        let f: Vec<u8> = [0.5f32, -2.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(first_non_finite("f32", &f), None);
        assert_eq!(expected_len("f32", &[u32::MAX, u32::MAX, u32::MAX]), None);
    }
}
