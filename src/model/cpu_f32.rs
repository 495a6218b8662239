//! The values of a contiguous f32 CPU tensor, for c3's own CPU ops.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, Layout};

/// `storage` under `layout` as one f32 slice, or an error naming `op` when
/// the tensor is not f32 or not contiguous.
pub fn contiguous_f32<'a>(
    op: &str,
    storage: &'a CpuStorage,
    layout: &Layout,
) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(all) = storage else {
        candle_core::bail!("{op}: f32 input expected, got {:?}", storage.dtype());
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("{op}: contiguous input expected");
    };
    Ok(&all[start..end])
}
