//! Process-wide settings for model work.

/// Keeps freed large buffers in the process for reuse (glibc only).
///
/// Every layer allocates several 10–75 MB temporaries (score matrices, MLP
/// activations). glibc serves blocks that large with a fresh `mmap` and
/// returns them with `munmap` on free, so each layer paid page faults and
/// kernel zeroing for memory it had just released: the f32 encoder took
/// ~31.7 s per chunk that way and ~25.2 s with this setting (interleaved
/// runs of `cargo bench --bench c3 -- encode/f32`). Peak memory is the same;
/// the process simply keeps its high-water mark. Called once, on first model
/// load; later calls do nothing.
pub fn keep_large_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::sync::Once;
        static ONCE: Once = Once::new();
        ONCE.call_once(|| {
            extern "C" {
                fn mallopt(param: i32, value: i32) -> i32;
            }
            const M_TRIM_THRESHOLD: i32 = -1;
            const M_MMAP_THRESHOLD: i32 = -3;
            // Blocks up to 1 GiB come from the heap (larger ones, such as the
            // score matrix of a whole-book prefill, still use mmap), and the
            // heap top is only given back beyond 1 GiB free.
            const LIMIT: i32 = 1 << 30;
            // SAFETY: mallopt only changes allocator parameters; an
            // unaccepted value leaves the defaults (return value 0).
            unsafe {
                mallopt(M_MMAP_THRESHOLD, LIMIT);
                mallopt(M_TRIM_THRESHOLD, LIMIT);
            }
        });
    }
}
