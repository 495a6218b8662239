//! Encode: text chunk → 32 latent rows (C3 compression).

use candle_core::Tensor;

/// What the memory store needs from a compression model. Implemented by the
/// C3 encoder; tests may substitute a fake.
pub trait Compressor {
    /// Stable hex hash identifying the model (encoder config, `Q`, projector):
    /// latents from different models must never be mixed in one store.
    fn fingerprint(&self) -> String;
    /// Number of latent rows per chunk (32 in the C3 release); for a family
    /// whose count varies with the text (LCLM), the most one chunk gets.
    fn latent_len(&self) -> usize;
    /// The cascade family's name (`c3`, `lclm`), for reports.
    fn family(&self) -> &'static str {
        "c3"
    }
    /// Latent rows of a chunk of `tokens` encoder tokens.
    fn latent_rows(&self, tokens: usize) -> usize {
        let _ = tokens;
        self.latent_len()
    }
    /// Encoder hidden size (H_enc).
    fn hidden_size(&self) -> usize;
    /// Compress each text to its raw encoder states, a `[latent_rows, H_enc]`
    /// tensor in the checkpoint dtype, on the CPU (C3: the query rows; LCLM:
    /// the pooled states, before the adapter).
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
