//! Test doubles shared by the store tests.
#![allow(dead_code)]

use std::time::Duration;

use c3::cascade::Compressor;
use c3::store::{DocRecord, ModelRecord, NewDoc, Store};
use candle_core::{DType, Device, Tensor};

/// Deterministic stand-in for the C3 encoder: each chunk's states are drawn
/// from blake3's XOF keyed by the text, so equal texts give equal latents and
/// any change in a chunk's text changes its latents.
pub struct FakeCompressor {
    pub fingerprint: String,
    pub latent_len: usize,
    pub hidden: usize,
    pub dtype: DType,
    /// Per-chunk delay, to make runs long enough to interrupt.
    pub delay: Duration,
}

impl FakeCompressor {
    pub fn new(fingerprint: &str) -> Self {
        FakeCompressor {
            fingerprint: fingerprint.into(),
            latent_len: 32,
            hidden: 16,
            dtype: DType::BF16,
            delay: Duration::ZERO,
        }
    }
}

impl Compressor for FakeCompressor {
    fn family(&self) -> c3::cascade::Family {
        c3::cascade::Family::C3
    }

    fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }
    fn latent_len(&self) -> usize {
        self.latent_len
    }
    fn hidden_size(&self) -> usize {
        self.hidden
    }
    fn compress(&self, texts: &[&str]) -> c3::Result<Vec<Tensor>> {
        texts
            .iter()
            .map(|t| {
                if t.contains("FAIL_ENCODE") {
                    return Err(c3::Error::Input("fake encoder refuses this text".into()));
                }
                std::thread::sleep(self.delay);
                let n = self.latent_len * self.hidden;
                let mut bytes = vec![0u8; n * 4];
                blake3::Hasher::new()
                    .update(t.as_bytes())
                    .finalize_xof()
                    .fill(&mut bytes);
                let mut vals: Vec<f32> = bytes
                    .chunks_exact(4)
                    .map(|b| {
                        (u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64 / u32::MAX as f64
                            * 2.0
                            - 1.0) as f32
                    })
                    .collect();
                // A broken encoder, for the tests that latents stay finite.
                if t.contains("NAN_LATENT") {
                    vals[n / 2] = f32::NAN;
                }
                Ok(
                    Tensor::from_vec(vals, (self.latent_len, self.hidden), &Device::Cpu)?
                        .to_dtype(self.dtype)?,
                )
            })
            .collect()
    }
}

/// Rough token counter for tests: one token per 4 bytes, at least one per
/// non-empty piece (monotonic, like a real tokenizer).
pub struct ByteSizer;

impl text_splitter::ChunkSizer for ByteSizer {
    fn size(&self, chunk: &str) -> usize {
        chunk.len().div_ceil(4)
    }
}

pub fn corpus(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/corpus")
        .join(name)
}

pub fn model(c: &FakeCompressor) -> ModelRecord {
    ModelRecord {
        fingerprint: c.fingerprint(),
        latent_len: c.latent_len as u32,
        hidden_size: c.hidden as u32,
    }
}

/// Store `pieces` as one document of `source` through the writer API.
pub fn put_doc(store: &Store, enc: &FakeCompressor, source: &str, pieces: &[&str]) -> DocRecord {
    let lat = enc.compress(pieces).unwrap();
    commit_doc(store, source, pieces, &lat, |p| p.len() as u32)
}

/// Store `pieces` with their `latents` as one document of `source`, each
/// chunk counted as `tokens(piece)` tokens.
pub fn commit_doc(
    store: &Store,
    source: &str,
    pieces: &[&str],
    latents: &[Tensor],
    tokens: impl Fn(&str) -> u32,
) -> DocRecord {
    let text: String = pieces.concat();
    let mut w = store.begin(None).unwrap();
    let mut pos = 0u64;
    for (p, l) in pieces.iter().zip(latents) {
        w.put_chunk(pos, tokens(p), p, l).unwrap();
        pos += p.len() as u64;
    }
    w.commit(NewDoc {
        source: source.into(),
        content_hash: *blake3::hash(text.as_bytes()).as_bytes(),
        size: text.len() as u64,
        mtime_ms: Some(1),
        ingested_at_ms: 2,
        kind: "text".into(),
        chunk_tokens: 1000,
        metadata: Default::default(),
    })
    .unwrap()
}
