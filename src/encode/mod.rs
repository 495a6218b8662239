//! Encode: text chunk → 32 latent rows (C3 compression).

use candle_core::Tensor;

/// What the memory store needs from a compression model. Implemented by the
/// C3 encoder; tests may substitute a fake.
pub trait Compressor {
    /// Stable hex hash identifying the model (encoder config, `Q`, projector):
    /// latents from different models must never be mixed in one store.
    fn fingerprint(&self) -> String;
    /// Number of latent rows per chunk (32 in the release).
    fn latent_len(&self) -> usize;
    /// Encoder hidden size (H_enc).
    fn hidden_size(&self) -> usize;
    /// Compress each text to its raw encoder states, a `[latent_len, H_enc]`
    /// tensor in the checkpoint dtype, on the CPU.
    fn compress(&self, texts: &[&str]) -> crate::Result<Vec<Tensor>>;
    /// Where the model runs (reported by `c3 ingest --json`).
    fn device(&self) -> candle_core::Device {
        candle_core::Device::Cpu
    }
    /// The format the model's matrices are held in (`None`: dense), for
    /// `c3 ingest`'s default batch and its `--json` report.
    fn quant(&self) -> Option<crate::model::Quant> {
        None
    }
}

pub mod encoder;
pub use encoder::C3Encoder;
