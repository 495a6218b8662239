//! Test doubles shared by the store tests.
#![allow(dead_code)]

use std::time::Duration;

use c3::encode::Compressor;
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
                let vals: Vec<f32> = bytes
                    .chunks_exact(4)
                    .map(|b| {
                        (u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64 / u32::MAX as f64
                            * 2.0
                            - 1.0) as f32
                    })
                    .collect();
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
