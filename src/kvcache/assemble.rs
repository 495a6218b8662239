//! Between a decoder's [`KvCache`] and stored block payloads: the payload of
//! a range of positions, and a cache rebuilt from consecutive blocks.

use candle_core::{DType, Device, Tensor};
use half::{bf16, f16};

use crate::model::{KvCache, Qwen2};
use crate::{Error, Result};

/// The geometry of a decoder's keys and values.
#[derive(Debug, Clone)]
pub struct KvShape {
    pub layers: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// The dtype the decoder computes (and keeps its cache) in.
    pub dtype: DType,
    pub device: Device,
    /// Positions a continued prefill must at least cover to run the same
    /// products as a whole prefill (`Qwen2::prefill_rows_floor`).
    pub prefill_floor: usize,
}

impl KvShape {
    pub fn of(llm: &Qwen2) -> Self {
        let c = llm.config();
        KvShape {
            layers: c.num_hidden_layers,
            kv_heads: c.num_key_value_heads,
            head_dim: c.head_dim(),
            dtype: llm.dtype(),
            device: llm.device().clone(),
            prefill_floor: llm.prefill_rows_floor(),
        }
    }

    /// Bytes one position takes stored in `stored`: layers × (K + V) ×
    /// KV heads × head width × the dtype's size.
    pub fn bytes_per_position(&self, stored: DType) -> usize {
        self.layers * 2 * self.kv_heads * self.head_dim * stored.size_in_bytes()
    }
}

/// The payload of positions `from..from + n` of `kv`: per layer, K then V,
/// each [KV heads, n, head width] in `stored`, little-endian.
pub fn payload(
    kv: &KvCache,
    shape: &KvShape,
    from: usize,
    n: usize,
    stored: DType,
) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(n * shape.bytes_per_position(stored));
    for l in 0..shape.layers {
        let (k, v) = kv.positions(l, from, n)?;
        for t in [k, v] {
            let flat = t
                .to_dtype(stored)?
                .to_device(&Device::Cpu)?
                .contiguous()?
                .flatten_all()?;
            match stored {
                DType::F32 => flat
                    .to_vec1::<f32>()?
                    .iter()
                    .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
                DType::F16 => flat
                    .to_vec1::<f16>()?
                    .iter()
                    .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
                DType::BF16 => flat
                    .to_vec1::<bf16>()?
                    .iter()
                    .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
                other => return Err(unsupported(other)),
            }
        }
    }
    Ok(out)
}

fn unsupported(d: DType) -> Error {
    Error::Input(format!(
        "keys and values in {d:?}: the prefix cache stores f32, f16 or bf16"
    ))
}

/// A cache holding the first `total` positions of `blocks` laid one after
/// the other from position 0 (each a payload of `positions[i]` positions
/// stored in `stored`; the last one may be cut), in the decoder's dtype and
/// on its device, with room for `reserve` more positions before it grows.
pub fn resume(
    blocks: &[&[u8]],
    positions: &[usize],
    total: usize,
    shape: &KvShape,
    stored: DType,
    reserve: usize,
) -> Result<KvCache> {
    if total > positions.iter().sum() {
        return Err(Error::Input(format!(
            "{total} positions from stored blocks of {} in all",
            positions.iter().sum::<usize>()
        )));
    }
    let args = (blocks, positions, total, shape, stored, reserve);
    match shape.dtype {
        DType::F32 => resume_as::<f32>(args),
        DType::F16 => resume_as::<f16>(args),
        DType::BF16 => resume_as::<bf16>(args),
        other => Err(unsupported(other)),
    }
}

type ResumeArgs<'a> = (
    &'a [&'a [u8]],
    &'a [usize],
    usize,
    &'a KvShape,
    DType,
    usize,
);

fn resume_as<T: Elem>(
    (blocks, positions, total, shape, stored, reserve): ResumeArgs,
) -> Result<KvCache> {
    let cap = total + reserve;
    let (kvh, hd) = (shape.kv_heads, shape.head_dim);
    let size = stored.size_in_bytes();
    let mut layers = Vec::with_capacity(shape.layers);
    for l in 0..shape.layers {
        let mut kv = [vec![T::ZERO; kvh * cap * hd], vec![T::ZERO; kvh * cap * hd]];
        let mut at = 0;
        for (bytes, &t) in blocks.iter().zip(positions) {
            let plane = kvh * t * hd * size;
            if bytes.len() != shape.layers * 2 * plane {
                return Err(Error::Input(format!(
                    "a stored block of {} bytes for {t} positions of {} layers",
                    bytes.len(),
                    shape.layers
                )));
            }
            // The positions of this block that are taken.
            let n = t.min(total - at);
            for (which, dst) in kv.iter_mut().enumerate() {
                let src = &bytes[(2 * l + which) * plane..][..plane];
                for h in 0..kvh {
                    let rows = &src[h * t * hd * size..][..n * hd * size];
                    let to = &mut dst[(h * cap + at) * hd..][..n * hd];
                    decode(to, rows, stored)?;
                }
            }
            at += n;
            if at == total {
                break;
            }
        }
        let [k, v] = kv;
        let k = Tensor::from_vec(k, (1, kvh, cap, hd), &Device::Cpu)?.to_device(&shape.device)?;
        let v = Tensor::from_vec(v, (1, kvh, cap, hd), &Device::Cpu)?.to_device(&shape.device)?;
        layers.push((k, v));
    }
    KvCache::from_filled(layers, total)
}

/// A compute dtype the cache is rebuilt in.
trait Elem: candle_core::WithDType {
    const ZERO: Self;
    fn of_f32(x: f32) -> Self;
    fn of_f16(x: f16) -> Self;
    fn of_bf16(x: bf16) -> Self;
}

impl Elem for f32 {
    const ZERO: Self = 0.0;
    fn of_f32(x: f32) -> Self {
        x
    }
    fn of_f16(x: f16) -> Self {
        x.to_f32()
    }
    fn of_bf16(x: bf16) -> Self {
        x.to_f32()
    }
}

impl Elem for f16 {
    const ZERO: Self = f16::ZERO;
    fn of_f32(x: f32) -> Self {
        f16::from_f32(x)
    }
    fn of_f16(x: f16) -> Self {
        x
    }
    fn of_bf16(x: bf16) -> Self {
        f16::from_f32(x.to_f32())
    }
}

impl Elem for bf16 {
    const ZERO: Self = bf16::ZERO;
    fn of_f32(x: f32) -> Self {
        bf16::from_f32(x)
    }
    fn of_f16(x: f16) -> Self {
        bf16::from_f32(x.to_f32())
    }
    fn of_bf16(x: bf16) -> Self {
        x
    }
}

/// Little-endian `stored` values of `src` into `dst` (one loop per stored
/// dtype, so the common f32 → f32 case is a plain copy loop).
fn decode<T: Elem>(dst: &mut [T], src: &[u8], stored: DType) -> Result<()> {
    fn two(c: &[u8]) -> [u8; 2] {
        [c[0], c[1]]
    }
    match stored {
        DType::F32 => {
            for (d, c) in dst.iter_mut().zip(src.chunks_exact(4)) {
                *d = T::of_f32(f32::from_le_bytes([c[0], c[1], c[2], c[3]]));
            }
        }
        DType::F16 => {
            for (d, c) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *d = T::of_f16(f16::from_le_bytes(two(c)));
            }
        }
        DType::BF16 => {
            for (d, c) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *d = T::of_bf16(bf16::from_le_bytes(two(c)));
            }
        }
        other => return Err(unsupported(other)),
    }
    Ok(())
}
