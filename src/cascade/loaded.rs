//! Loading a model of either family from its checkpoint directory, and the
//! few family-dependent steps front ends need (chunk size, tokenizer,
//! whole-file encoding), so that no front end names a family's types.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use text_splitter::ChunkSizer;

use super::c3::{C3Checkpoint, C3Decoder, C3Encoder, ENCODER_DIR, TRAINED_TOKENS};
use super::interface::{Compressor, Family, LatentReader};
use super::lclm::{is_lclm_dir, LclmCheckpoint, LclmDecoder, LclmEncoder};
use crate::chunk::{Chunker, DocKind, DEFAULT_CHUNK_TOKENS};
use crate::model::Quant;
use crate::tokenize::{C3Tokenizer, HfTokenizer};
use crate::{Error, Result};

/// Which family the checkpoint at `dir` is: `model_config.json` +
/// `encoder/` + `decoder/` + `adapter/` is LCLM, `config.json` + `llm1/` is C3.
pub fn detect(dir: &Path) -> Result<Family> {
    if is_lclm_dir(dir) {
        return Ok(Family::Lclm);
    }
    if dir.join("config.json").is_file() && dir.join(ENCODER_DIR).is_dir() {
        return Ok(Family::C3);
    }
    let what = if dir.is_dir() {
        "is neither a C3 checkpoint (config.json + llm1/) nor an LCLM one \
         (model_config.json + encoder/ + decoder/ + adapter/)"
    } else {
        "is not a directory (expected a C3 or LCLM checkpoint)"
    };
    Err(Error::Checkpoint {
        path: dir.to_path_buf(),
        msg: what.into(),
    })
}

/// The files that decide what the decoder of the checkpoint at `dir`
/// computes (weights, configuration, projector or adapter), in a fixed
/// order: the prefix cache keys its blocks by their digest.
pub fn decoder_files(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    match detect(dir)? {
        Family::C3 => C3Checkpoint::open(dir)?.decoder_files(),
        Family::Lclm => LclmCheckpoint::open(dir)?.decoder_files(),
    }
}

/// The tokenizer a family's encoder reads memory text with (chunk sizes
/// are counted in its ids).
#[derive(Clone, Copy)]
pub enum TextTokenizer<'a> {
    C3(&'a C3Tokenizer),
    Lclm(&'a HfTokenizer),
}

impl TextTokenizer<'_> {
    /// Plain-text ids: never a control id.
    pub fn encode_text(&self, text: &str) -> Result<Vec<u32>> {
        match self {
            TextTokenizer::C3(t) => t.encode_text(text),
            TextTokenizer::Lclm(t) => t.encode_text(text),
        }
    }
}

impl ChunkSizer for TextTokenizer<'_> {
    fn size(&self, chunk: &str) -> usize {
        match self {
            TextTokenizer::C3(t) => t.size(chunk),
            TextTokenizer::Lclm(t) => t.size(chunk),
        }
    }
}

/// The encoder tokenizer's ids of `text` for the checkpoint at `dir`,
/// without loading any weights (`c3 tokenize`).
pub fn tokenize(dir: &Path, text: &str) -> Result<Vec<u32>> {
    match detect(dir)? {
        Family::C3 => C3Checkpoint::open(dir)?.tokenizer()?.encode_text(text),
        Family::Lclm => LclmCheckpoint::open(dir)?
            .encoder_tokenizer()?
            .encode_text(text),
    }
}

/// One text encoded whole by `AnyEncoder::encode_text`.
pub struct Encoded {
    /// Encoder tokens of the text.
    pub tokens: usize,
    /// Encoder windows the text took (LCLM; C3 reads one chunk at once).
    pub windows: Option<usize>,
    /// Raw states: C3's [32, H_enc] query rows; LCLM's pooled [n, H_enc].
    pub raw: Tensor,
}

/// A loaded encoder of either family (ingest).
pub enum AnyEncoder {
    C3(Box<C3Encoder>),
    Lclm(Box<LclmEncoder>),
}

impl AnyEncoder {
    /// Loads the encoder of the checkpoint at `dir` (C3: encoder, `Q` and
    /// projector; LCLM: encoder and adapter), matrices in `quant` if given.
    pub fn load(dir: &Path, dtype: DType, device: &Device, quant: Option<Quant>) -> Result<Self> {
        Ok(match detect(dir)? {
            Family::C3 => {
                let ckpt = C3Checkpoint::open(dir)?;
                AnyEncoder::C3(Box::new(C3Encoder::load_quantized(
                    &ckpt, dtype, device, quant,
                )?))
            }
            Family::Lclm => {
                let ckpt = LclmCheckpoint::open(dir)?;
                AnyEncoder::Lclm(Box::new(LclmEncoder::load(&ckpt, dtype, device, quant)?))
            }
        })
    }

    pub fn compressor(&self) -> &dyn Compressor {
        match self {
            AnyEncoder::C3(e) => &**e,
            AnyEncoder::Lclm(e) => &**e,
        }
    }

    pub fn family(&self) -> Family {
        self.compressor().family()
    }

    /// The tokenizer chunk sizes are counted in.
    pub fn tokenizer(&self) -> TextTokenizer<'_> {
        match self {
            AnyEncoder::C3(e) => TextTokenizer::C3(e.tokenizer()),
            AnyEncoder::Lclm(e) => TextTokenizer::Lclm(e.tokenizer()),
        }
    }

    /// The family's chunk size when none is given: C3's 1000 tokens, or
    /// LCLM's encoder window (a chunk is then one window).
    pub fn default_chunk_tokens(&self) -> usize {
        match self {
            AnyEncoder::C3(_) => DEFAULT_CHUNK_TOKENS,
            AnyEncoder::Lclm(e) => e.config().encoder_window_size,
        }
    }

    /// Most tokens one chunk may have (C3: the encoder's positions less the
    /// frame; LCLM: none, a long chunk takes several windows).
    pub fn max_chunk_tokens(&self) -> Option<usize> {
        match self {
            AnyEncoder::C3(e) => Some(e.max_text_tokens()),
            AnyEncoder::Lclm(_) => None,
        }
    }

    /// Above this many tokens in one chunk the family loses the end of it
    /// (C3 was trained on chunks up to ~1300 tokens).
    pub fn trained_tokens(&self) -> Option<usize> {
        match self {
            AnyEncoder::C3(_) => Some(TRAINED_TOKENS),
            AnyEncoder::Lclm(_) => None,
        }
    }

    /// The dtype raw states are stored in (the checkpoint's own).
    pub fn storage_dtype(&self) -> DType {
        match self {
            AnyEncoder::C3(e) => e.storage_dtype(),
            AnyEncoder::Lclm(e) => e.storage_dtype(),
        }
    }

    /// `text` encoded whole, as `c3 encode` writes it: C3 as one chunk,
    /// LCLM as one memory span over all its windows.
    pub fn encode_text(&self, text: &str) -> Result<Encoded> {
        match self {
            AnyEncoder::C3(e) => {
                let ids = e.tokenizer().encode_text(text)?;
                Ok(Encoded {
                    tokens: ids.len(),
                    windows: None,
                    raw: e.encode_ids(&ids)?,
                })
            }
            AnyEncoder::Lclm(e) => {
                let ids = e.encode_text_ids(text)?;
                let windows = e.config().windows(ids.len()).len();
                Ok(Encoded {
                    tokens: ids.len(),
                    windows: Some(windows),
                    raw: e.encode_ids(&ids)?.pooled,
                })
            }
        }
    }

    /// Raw states into the decoder's space (C3: the projector; LCLM: the
    /// adapter), as the decoder reads them.
    pub fn to_decoder_space(&self, raw: &Tensor) -> Result<Tensor> {
        match self {
            AnyEncoder::C3(e) => e.project(raw),
            AnyEncoder::Lclm(e) => e.adapt(raw),
        }
    }

    /// A whole file's stored-form blocks for one prompt, without a store:
    /// C3 chunks it (1000 tokens) and gives one block per chunk; LCLM
    /// encodes all its windows as one memory span. Returns the blocks (in
    /// the storage dtype) and the text's encoder tokens.
    pub fn compress_whole(&self, text: &str, kind: DocKind) -> Result<(Vec<Tensor>, usize)> {
        match self {
            AnyEncoder::C3(e) => {
                let chunker = Chunker::new(e.tokenizer(), DEFAULT_CHUNK_TOKENS)?;
                let chunks = chunker.split(text, kind);
                let tokens = chunks.iter().map(|c| c.tokens).sum();
                let texts: Vec<&str> = chunks.iter().map(|c| &text[c.start..c.end]).collect();
                Ok((e.compress(&texts)?, tokens))
            }
            AnyEncoder::Lclm(_) => {
                let enc = self.encode_text(text)?;
                Ok((vec![enc.raw.to_dtype(self.storage_dtype())?], enc.tokens))
            }
        }
    }
}

/// A loaded decoder of either family.
pub enum AnyDecoder {
    C3(Box<C3Decoder>),
    Lclm(Box<LclmDecoder>),
}

impl AnyDecoder {
    /// Loads the decoder of the checkpoint at `dir` (matrices quantized to
    /// `quant`) and the fingerprint of the latents it reads, which a store
    /// compares with its own.
    pub fn load(
        dir: &Path,
        dtype: DType,
        device: &Device,
        quant: Option<Quant>,
    ) -> Result<(AnyDecoder, String)> {
        match detect(dir)? {
            Family::C3 => {
                let ckpt = C3Checkpoint::open(dir)?;
                let w = ckpt.decoder_weights(dtype, device)?;
                let fp = ckpt.fingerprint(&w)?;
                let dec = C3Decoder::from_weights_quantized(
                    &ckpt.config.llm,
                    ckpt.latent_len(),
                    ckpt.encoder_config.hidden_size,
                    &w,
                    ckpt.tokenizer()?,
                    quant,
                )?;
                Ok((AnyDecoder::C3(Box::new(dec)), fp))
            }
            Family::Lclm => {
                let ckpt = LclmCheckpoint::open(dir)?;
                // Mapping the encoder reads only the norms the fingerprint hashes.
                let fp = ckpt.fingerprint(
                    &ckpt.encoder_weights(dtype, device)?,
                    &ckpt.adapter_weights(dtype, device)?,
                )?;
                let dec = LclmDecoder::load(&ckpt, dtype, device, quant)?;
                Ok((AnyDecoder::Lclm(Box::new(dec)), fp))
            }
        }
    }

    pub fn reader(&self) -> &dyn LatentReader {
        match self {
            AnyDecoder::C3(d) => &**d,
            AnyDecoder::Lclm(d) => &**d,
        }
    }
}
