//! The values of a contiguous f32 CPU tensor, for c3's own CPU ops.
//!
//! Computes: nothing; hands out slices and an output pointer for rows that
//!   threads write disjointly.
//! Accuracy: exact (no arithmetic).
//! Needs: nothing.
//! Why: candle's custom-op API hands storage and layout, not slices.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, Layout, Storage, Tensor};

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

/// A contiguous f32 CPU tensor's values passed to `f`, or `None` for any
/// other tensor.
pub fn with_slice<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Option<R> {
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        return None;
    };
    contiguous_f32("with_slice", cpu, layout).ok().map(f)
}

/// An output buffer's pointer handed to rayon's threads, each of which
/// writes its own disjoint part of it (the callers' SAFETY notes say which).
#[derive(Clone, Copy)]
pub struct OutPtr(pub *mut f32);
// SAFETY: the users split the output into disjoint parts per thread.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// The element at `i` (a method, so closures capture the whole `Send`
    /// wrapper rather than its raw pointer field).
    pub fn at(self, i: usize) -> *mut f32 {
        self.0.wrapping_add(i)
    }
}
