//! The prefix cache: the decoder's keys and values for the memory part of
//! a latent prompt, stored block by block so a later question over the same
//! chunks prefills only what is new (its question, and any chunks after the
//! longest stored prefix).
//!
//! A block is one chunk's segment of the prompt ([`Prompt::segments`]): the
//! frame ids since the previous block's latents, then the chunk's latent
//! slots. Its key ([`key::chain`]) hashes the model ([`ModelKey`]: latents'
//! model, decoder files, quantization, dtypes, device class, frame version)
//! and, chained, every segment up to it with its positions and the digest of
//! the stored latents that fill its slots; a block is therefore only ever
//! used at the positions, after the prefix, and with the weights it was
//! computed with.
//!
//! Invariants:
//! - A prompt resumes from a block only if every block before it was found
//!   too: reuse is always a whole prefix.
//! - A block file is complete or absent to every reader (written under a
//!   temporary name, renamed into place); one that fails its checks is
//!   removed and counted, never used.
//! - After a store, the directory holds at most its cap (a prompt's blocks
//!   that alone exceed it are not written past it).
//!
//! Files: `key` (what a block depends on), `file` (the block file format),
//! `dir` (the directory: lookups, writes, eviction), `memory` (the bounded
//! in-memory tier of `c3 serve`), `assemble` (payloads to and from a
//! [`KvCache`]), `digest` (the decoder files' identity).

pub mod assemble;
pub mod digest;
pub mod dir;
pub mod file;
pub mod key;
pub mod memory;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use candle_core::DType;
use serde::Serialize;

pub use assemble::KvShape;
pub use dir::{Disk, Listing};
pub use key::{chain, BlockKey, ModelKey};

use crate::cascade::{LatentReader, Prompt};
use crate::model::{KvCache, Qwen2};
use crate::{Error, Result};
use file::Header;

/// Name of the cache directory inside a store's directory (the default
/// place: beside the store's database and its search index).
pub const STORE_SUBDIR: &str = "kv-cache";
/// Default cap of the directory (`--kv-cache-size`).
pub const DEFAULT_MAX_BYTES: u64 = 4 << 30;
/// Default bound of `c3 serve`'s in-memory tier (`--kv-cache-memory`).
pub const DEFAULT_MEMORY_BYTES: u64 = 1 << 30;

/// The dtype keys and values are stored in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KvDtype {
    /// The decoder's compute dtype: a resumed prompt reads exactly the
    /// values its own prefill wrote.
    #[default]
    Compute,
    /// f16: half the bytes of f32; changes the answer within f16 rounding
    /// of the keys and values (docs/cache.md gives the measured effect).
    F16,
}

impl KvDtype {
    pub fn dtype(self, compute: DType) -> DType {
        match self {
            KvDtype::Compute => compute,
            KvDtype::F16 => DType::F16,
        }
    }
}

/// Where the cache lives and how large it may grow.
#[derive(Debug, Clone)]
pub struct CacheOptions {
    pub dir: PathBuf,
    /// Cap of the directory's block files, in bytes (0: no cache).
    pub max_bytes: u64,
    /// Bound of the in-memory tier (0: none, every hit reads the files).
    pub memory_bytes: u64,
    pub kv_dtype: KvDtype,
}

impl CacheOptions {
    /// The default options for a store at `store_dir`.
    pub fn beside(store_dir: &Path) -> Self {
        CacheOptions {
            dir: store_dir.join(STORE_SUBDIR),
            max_bytes: DEFAULT_MAX_BYTES,
            memory_bytes: 0,
            kv_dtype: KvDtype::Compute,
        }
    }
}

/// Running totals since the cache was opened (`/metrics`).
#[derive(Debug, Default)]
pub struct Counters {
    /// Blocks found (in memory or on disk) and resumed from.
    pub hits: AtomicU64,
    /// Blocks looked up and not found (the first miss and every block after it).
    pub misses: AtomicU64,
    /// Hits served by the in-memory tier.
    pub memory_hits: AtomicU64,
    /// Prompt positions resumed from stored blocks.
    pub cached_positions: AtomicU64,
    /// Prompt positions prefilled by the decoder in prompts that used the cache.
    pub prefilled_positions: AtomicU64,
    pub bytes_read: AtomicU64,
    pub bytes_written: AtomicU64,
    pub blocks_written: AtomicU64,
    /// Block files removed to stay under the cap.
    pub evictions: AtomicU64,
    pub evicted_bytes: AtomicU64,
    /// Block files that failed their checks (removed).
    pub corrupt: AtomicU64,
    /// Bytes of block files in the directory after the last store.
    pub disk_bytes: AtomicU64,
    /// Bytes held by the in-memory tier.
    pub memory_bytes: AtomicU64,
}

impl Counters {
    fn add(a: &AtomicU64, n: u64) {
        a.fetch_add(n, Ordering::Relaxed);
    }
}

/// What one prompt did with the cache (`ask --json`'s `kv_cache`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct CacheUse {
    /// Blocks of the prompt (one per chunk).
    pub blocks: usize,
    /// Blocks resumed from the cache (a prefix of them).
    pub blocks_hit: usize,
    /// Blocks written after this prompt's prefill.
    pub blocks_written: usize,
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// Block files removed to stay under the cap.
    pub evicted: u64,
    /// Block files found damaged (removed, recomputed).
    pub corrupt: u64,
    /// Finding, checking and loading the stored blocks.
    pub load_ms: f64,
    /// Writing the new blocks (after the answer).
    pub save_ms: f64,
    /// Why the cache could not be used or written (the answer is unaffected).
    pub error: Option<String>,
}

/// A prompt resumed from the cache.
pub struct Resumed {
    /// Keys and values of the stored prefix, with room for the rest.
    pub kv: KvCache,
    /// Blocks read and used (the first `blocks` of the prompt; the last may
    /// be used in part, see [`PrefixCache::resume`]).
    pub blocks: usize,
    /// Blocks whose every position is resumed: the latents of the blocks
    /// after them are what the prefill still needs.
    pub whole: usize,
    /// Positions resumed.
    pub positions: usize,
    pub bytes: u64,
    pub corrupt: u64,
}

/// What a store wrote.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stored {
    pub blocks: usize,
    pub bytes: u64,
    pub evicted: u64,
}

/// A stored block's bytes: mapped from its file or held in memory.
enum Payload {
    Mapped(memmap2::Mmap),
    Held(Arc<[u8]>),
}

impl Payload {
    fn bytes(&self) -> &[u8] {
        match self {
            Payload::Mapped(m) => file::payload_of(m),
            Payload::Held(b) => b,
        }
    }
}

/// The prefix cache of one loaded decoder over one directory. Cloning
/// shares it.
#[derive(Clone)]
pub struct PrefixCache {
    inner: Arc<Inner>,
}

struct Inner {
    disk: Disk,
    max_bytes: u64,
    model: ModelKey,
    shape: KvShape,
    stored: DType,
    memory: Mutex<memory::Memory>,
    counters: Arc<Counters>,
}

impl PrefixCache {
    /// The cache for `llm` reading latents of model `latents` (the store's
    /// fingerprint), its decoder files digested as `decoder`, its prompt
    /// frame `frame`. `None` when `opts.max_bytes` is 0 (the cache is off).
    pub fn open(
        opts: &CacheOptions,
        llm: &Qwen2,
        latents: &str,
        decoder: &str,
        frame: &str,
    ) -> Result<Option<Self>> {
        let stored = opts.kv_dtype.dtype(llm.dtype());
        let model = ModelKey::new(latents, decoder, llm, frame, stored);
        Self::with_key(opts, model, KvShape::of(llm))
    }

    /// [`PrefixCache::open`] for a loaded decoder: `model_dir` is its
    /// checkpoint (the decoder's files are digested, each digest remembered
    /// in the cache directory), `fingerprint` the model of the latents it
    /// reads (as `AnyDecoder::load` returns it).
    pub fn for_decoder(
        opts: &CacheOptions,
        model_dir: &Path,
        reader: &dyn LatentReader,
        fingerprint: &str,
    ) -> Result<Option<Self>> {
        if opts.max_bytes == 0 {
            return Ok(None);
        }
        let files = crate::cascade::decoder_files(model_dir)?;
        let digest = digest::files_digest(&files, Some(&opts.dir.join(digest::MEMO_DIR)))?;
        Self::open(
            opts,
            reader.llm(),
            fingerprint,
            &digest,
            reader.frame_version(),
        )
    }

    /// [`PrefixCache::open`] with the model key and geometry given.
    pub fn with_key(opts: &CacheOptions, model: ModelKey, shape: KvShape) -> Result<Option<Self>> {
        if opts.max_bytes == 0 {
            return Ok(None);
        }
        let stored = opts.kv_dtype.dtype(shape.dtype);
        if !matches!(stored, DType::F32 | DType::F16 | DType::BF16) {
            return Err(assemble_unsupported(stored));
        }
        let disk = Disk::open(&opts.dir)?;
        let counters = Arc::new(Counters::default());
        if let Ok((_, l)) = disk.list() {
            counters.disk_bytes.store(l.bytes, Ordering::Relaxed);
        }
        Ok(Some(PrefixCache {
            inner: Arc::new(Inner {
                disk,
                max_bytes: opts.max_bytes,
                model,
                shape,
                stored,
                memory: Mutex::new(memory::Memory::new(opts.memory_bytes)),
                counters,
            }),
        }))
    }

    pub fn dir(&self) -> &Path {
        self.inner.disk.dir()
    }

    pub fn model_key(&self) -> &ModelKey {
        &self.inner.model
    }

    /// The dtype blocks are stored in.
    pub fn stored_dtype(&self) -> DType {
        self.inner.stored
    }

    pub fn shape(&self) -> &KvShape {
        &self.inner.shape
    }

    /// The running totals (shared: `c3 serve` renders them).
    pub fn counters(&self) -> Arc<Counters> {
        self.inner.counters.clone()
    }

    /// The chain keys of `prompt`'s blocks, `content[i]` being the digest
    /// of block `i`'s stored latents.
    pub fn keys(&self, prompt: &Prompt, content: &[[u8; 32]]) -> Vec<BlockKey> {
        chain(&self.inner.model, prompt, content)
    }

    fn header(&self, key: BlockKey, seg: &std::ops::Range<usize>) -> Header {
        let s = &self.inner.shape;
        Header {
            key,
            start: seg.start as u64,
            positions: seg.len() as u32,
            layers: s.layers as u32,
            kv_heads: s.kv_heads as u32,
            head_dim: s.head_dim as u32,
            dtype: self.inner.stored,
        }
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, memory::Memory> {
        // A panic elsewhere leaves the map consistent: keep using it.
        self.inner.memory.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Resumes `prompt` from its longest stored prefix: finds blocks `0, 1,
    /// …` (memory first, then the directory) until one is missing or bad,
    /// and rebuilds their keys and values with room for the rest of the
    /// prompt and `extra` more positions. The resumed positions stop at
    /// least the decoder's prefill floor ([`KvShape::prefill_floor`]) short
    /// of the prompt's end, inside the last block if need be (a block's
    /// first positions are a valid prefix on their own), so the rest runs
    /// the products a whole prefill would.
    pub fn resume(&self, prompt: &Prompt, keys: &[BlockKey], extra: usize) -> Result<Resumed> {
        let segs = prompt.segments();
        let floor = self.inner.shape.prefill_floor;
        let limit = prompt.ids.len().saturating_sub(floor);
        let mut found: Vec<Payload> = Vec::new();
        let mut headers = Vec::new();
        let mut corrupt = 0;
        let mut from_memory = 0;
        for (key, seg) in keys.iter().zip(&segs).take_while(|(_, s)| s.start < limit) {
            let h = self.header(*key, seg);
            if let Some(p) = self.memory().get(key) {
                found.push(Payload::Held(p));
                headers.push(h);
                from_memory += 1;
                continue;
            }
            match self.inner.disk.read(&h)? {
                dir::Found::Block(map) => {
                    let mut mem = self.memory();
                    if mem.enabled() {
                        let held: Arc<[u8]> = file::payload_of(&map).into();
                        mem.put(*key, h.start, held.clone());
                        found.push(Payload::Held(held));
                    } else {
                        found.push(Payload::Mapped(map));
                    }
                    headers.push(h);
                }
                dir::Found::Missing => break,
                dir::Found::Removed(_) => {
                    corrupt += 1;
                    break;
                }
            }
        }
        let c = &self.inner.counters;
        let n = found.len();
        Counters::add(&c.hits, n as u64);
        Counters::add(&c.memory_hits, from_memory);
        Counters::add(&c.misses, (keys.len() - n) as u64);
        Counters::add(&c.corrupt, corrupt);
        c.memory_bytes
            .store(self.memory().bytes(), Ordering::Relaxed);
        let positions = segs.get(n.wrapping_sub(1)).map_or(0, |s| s.end.min(limit));
        let whole = segs[..n].iter().take_while(|s| s.end <= positions).count();
        if n > 0 {
            self.inner.disk.touch(&headers, SystemTime::now());
        }
        let bytes: u64 = found.iter().map(|p| p.bytes().len() as u64).sum();
        Counters::add(&c.bytes_read, bytes);
        Counters::add(&c.cached_positions, positions as u64);
        let slices: Vec<&[u8]> = found.iter().map(Payload::bytes).collect();
        let lens: Vec<usize> = segs[..n].iter().map(|s| s.len()).collect();
        let reserve = prompt.ids.len() - positions + extra;
        let kv = if n == 0 {
            KvCache::new()
        } else {
            assemble::resume(
                &slices,
                &lens,
                positions,
                &self.inner.shape,
                self.inner.stored,
                reserve,
            )?
        };
        Ok(Resumed {
            kv,
            blocks: n,
            whole,
            positions,
            bytes,
            corrupt,
        })
    }

    /// Stores blocks `from..` of `prompt` (keys `keys`), whose keys and
    /// values `kv` now holds; marks every block of the prompt used now, then
    /// evicts to the cap. Blocks that would not fit under the cap together
    /// with the ones before them are not written.
    pub fn store(
        &self,
        prompt: &Prompt,
        keys: &[BlockKey],
        from: usize,
        kv: &KvCache,
    ) -> Result<Stored> {
        let segs = prompt.segments();
        let mut out = Stored::default();
        let mut headers: Vec<Header> = Vec::new();
        let mut total = 0u64;
        for (i, (key, seg)) in keys.iter().zip(&segs).enumerate() {
            let h = self.header(*key, seg);
            total += h.file_bytes();
            if total > self.inner.max_bytes {
                break;
            }
            headers.push(h);
            // A block held back by the prefill floor was not read, but it
            // may be there: a file of the right size is not written again
            // (a damaged one is found when it is next read).
            if i < from || self.inner.disk.has(&h) {
                continue;
            }
            let payload = assemble::payload(
                kv,
                &self.inner.shape,
                seg.start,
                seg.len(),
                self.inner.stored,
            )?;
            out.bytes += self.inner.disk.write(&h, &payload)?;
            out.blocks += 1;
            let mut mem = self.memory();
            if mem.enabled() {
                mem.put(*key, h.start, payload.into());
            }
        }
        self.inner.disk.touch(&headers, SystemTime::now());
        let (files, bytes, left) = self.inner.disk.evict(self.inner.max_bytes)?;
        out.evicted = files;
        let c = &self.inner.counters;
        Counters::add(&c.blocks_written, out.blocks as u64);
        Counters::add(&c.bytes_written, out.bytes);
        Counters::add(&c.evictions, files);
        Counters::add(&c.evicted_bytes, bytes);
        c.disk_bytes.store(left, Ordering::Relaxed);
        c.memory_bytes
            .store(self.memory().bytes(), Ordering::Relaxed);
        Ok(out)
    }

    /// How many of `prompt`'s blocks (keys `keys`) have a file of the right
    /// size, from the first on (nothing is read: a warm-up that finds them
    /// all has nothing to do).
    pub fn present(&self, prompt: &Prompt, keys: &[BlockKey]) -> usize {
        let segs = prompt.segments();
        keys.iter()
            .zip(&segs)
            .take_while(|(k, s)| {
                self.memory().contains(k) || self.inner.disk.has(&self.header(**k, s))
            })
            .count()
    }

    /// Counts positions a prompt prefilled while using the cache.
    pub fn count_prefilled(&self, positions: usize) {
        Counters::add(&self.inner.counters.prefilled_positions, positions as u64);
    }
}

fn assemble_unsupported(d: DType) -> Error {
    Error::Input(format!(
        "keys and values in {d:?}: the prefix cache stores f32, f16 or bf16"
    ))
}

/// Time since `t` in milliseconds.
pub fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}
