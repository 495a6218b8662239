//! `c3 tokenize`, `c3 encode`, `c3 repeat`: the model on one chunk of text.

use super::input::read_text;
use anyhow::{bail, Context, Result};
use c3::decode::{C3Decoder, GenOptions, Sampling};
use c3::encode::encoder::TRAINED_TOKENS;
use c3::encode::C3Encoder;
use c3::family::Family;
use c3::lclm::{LclmCheckpoint, LclmEncoder};
use c3::model::C3Checkpoint;
use candle_core::{DType, Device};
use clap::Args;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub struct ModelCtx {
    /// `--model` as given: a directory or a hub repo id.
    pub model: Option<PathBuf>,
    /// `--download`: fetch a hub repo the cache lacks.
    pub download: bool,
    /// `model` resolved to a directory, once.
    pub resolved: std::sync::OnceLock<PathBuf>,
    pub dtype: DType,
    pub decoder_quant: Option<c3::model::Quant>,
    pub encoder_precision: c3::options::EncoderPrecision,
    pub device: c3::options::DeviceArg,
}

impl ModelCtx {
    /// `--model` as a directory (a hub repo id is looked up in the cache).
    pub fn model_dir(&self) -> Result<&Path> {
        if let Some(p) = self.resolved.get() {
            return Ok(p);
        }
        let arg = self.model.as_deref().context(
            "no model: pass --model DIR|ORG/NAME or set C3_MODEL (see README: Getting the real \
             weights)",
        )?;
        let dir = c3::hub::resolve_model(arg, self.download)?;
        Ok(self.resolved.get_or_init(|| dir))
    }

    /// `--answer-model` as a path (a hub repo id is looked up in the cache).
    pub fn answer_model_path(&self, arg: &Path) -> Result<PathBuf> {
        Ok(c3::hub::resolve_model(arg, self.download)?)
    }

    /// The cascade family of `--model` (from its layout).
    pub fn family(&self) -> Result<Family> {
        Ok(c3::family::detect(self.model_dir()?)?)
    }

    /// The C3 checkpoint of `--model`; an LCLM one is refused by name.
    pub fn checkpoint(&self) -> Result<C3Checkpoint> {
        let dir = self.model_dir()?;
        if c3::lclm::is_lclm_dir(dir) {
            bail!(
                "{} is an LCLM checkpoint; this needs a C3 one (config.json + llm1/)",
                dir.display()
            );
        }
        Ok(C3Checkpoint::open(dir)?)
    }

    pub fn lclm_checkpoint(&self) -> Result<LclmCheckpoint> {
        Ok(LclmCheckpoint::open(self.model_dir()?)?)
    }

    /// LCLM's encoder (and adapter) in `--encoder-precision`.
    pub fn lclm_encoder(&self, ckpt: &LclmCheckpoint, device: &Device) -> Result<LclmEncoder> {
        let quant = self.encoder_precision.quant(self.dtype, device)?;
        Ok(LclmEncoder::load(ckpt, self.dtype, device, quant)?)
    }

    /// The device models load on (`--device`).
    pub fn device(&self) -> Result<Device> {
        Ok(self.device.device()?)
    }

    /// The encoder of `ckpt` on `device`, in `--encoder-precision`.
    pub fn encoder(&self, ckpt: &C3Checkpoint, device: &Device) -> Result<C3Encoder> {
        let quant = self.encoder_precision.quant(self.dtype, device)?;
        Ok(C3Encoder::load_quantized(ckpt, self.dtype, device, quant)?)
    }
}

#[derive(Args, Debug)]
pub struct TokenizeArgs {
    /// Text file, or - for stdin.
    #[arg(long, default_value = "-", value_name = "FILE|-")]
    pub text: PathBuf,
}

#[derive(Args, Debug)]
pub struct EncodeArgs {
    /// Text file, or - for stdin.
    #[arg(long, default_value = "-", value_name = "FILE|-")]
    pub text: PathBuf,
    /// Output .npy file (little-endian f32).
    #[arg(long, value_name = "FILE.npy")]
    pub out: PathBuf,
    /// Write the raw encoder states [32, H_enc] instead of the projected
    /// latents [32, H_dec] (LCLM: the pooled states [n, H_enc] instead of
    /// the adapted latents [n, H_dec]).
    #[arg(long)]
    pub raw: bool,
}

#[derive(Args, Debug)]
pub struct RepeatArgs {
    /// Text file, or - for stdin.
    #[arg(long, default_value = "-", value_name = "FILE|-")]
    pub text: PathBuf,
    /// Most tokens to generate.
    #[arg(long, default_value_t = c3::decode::decoder::DEFAULT_MAX_NEW_TOKENS)]
    pub max_new_tokens: usize,
    /// Print the generated ids as a JSON array instead of the text.
    #[arg(long)]
    pub ids: bool,
    /// Sample with this temperature instead of greedy decoding.
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Nucleus mass kept when sampling.
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Keep only the K most likely tokens when sampling.
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..))]
    pub sample_top_k: Option<u64>,
    /// Seed for sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn sampling(temperature: Option<f32>, top_p: f32, top_k: Option<u64>, seed: u64) -> Sampling {
    match temperature {
        Some(t) if t > 0.0 => Sampling::TopP {
            temperature: t,
            top_p: top_p.clamp(f32::MIN_POSITIVE, 1.0),
            top_k: top_k.map(|k| k as usize),
            seed,
        },
        _ => Sampling::Greedy,
    }
}

pub fn tokenize(ctx: &ModelCtx, a: &TokenizeArgs) -> Result<i32> {
    let family = ctx.family()?;
    let text = read_text(&a.text)?;
    let ids = match family {
        Family::C3 => ctx.checkpoint()?.tokenizer()?.encode_text(&text)?,
        Family::Lclm => ctx
            .lclm_checkpoint()?
            .encoder_tokenizer()?
            .encode_text(&text)?,
    };
    println!("{}", serde_json::to_string(&ids)?);
    Ok(0)
}

/// Tokenizes `path`'s text and encodes it, warning when it is longer than C3
/// was trained on.
fn encode_file(enc: &C3Encoder, path: &Path) -> Result<candle_core::Tensor> {
    let text = read_text(path)?;
    let ids = enc.tokenizer().encode_text(&text)?;
    if ids.len() > TRAINED_TOKENS {
        eprintln!(
            "warning: {} tokens in one chunk; C3 was trained on up to ~{TRAINED_TOKENS} \
             and loses the end of longer chunks (use `c3 ingest` to chunk long input)",
            ids.len()
        );
    }
    let t0 = Instant::now();
    let raw = enc.encode_ids(&ids)?;
    eprintln!(
        "encoded {} tokens into {} latents in {:.2?}",
        ids.len(),
        raw.dims()[0],
        t0.elapsed()
    );
    Ok(raw)
}

/// LCLM's pooled states of a whole memory text (all its windows).
pub fn lclm_encode_file(enc: &LclmEncoder, path: &Path) -> Result<candle_core::Tensor> {
    let text = read_text(path)?;
    let ids = enc.encode_text_ids(&text)?;
    let t0 = Instant::now();
    let e = enc.encode_ids(&ids)?;
    eprintln!(
        "encoded {} tokens ({} windows) into {} latents in {:.2?}",
        ids.len(),
        enc.config().windows(ids.len()).len(),
        e.pooled.dims()[0],
        t0.elapsed()
    );
    Ok(e.pooled)
}

pub fn encode(ctx: &ModelCtx, a: &EncodeArgs) -> Result<i32> {
    let out = match ctx.family()? {
        Family::C3 => {
            let ckpt = ctx.checkpoint()?;
            let enc = ctx.encoder(&ckpt, &ctx.device()?)?;
            let raw = encode_file(&enc, &a.text)?;
            if a.raw {
                raw
            } else {
                enc.project(&raw)?
            }
        }
        Family::Lclm => {
            let ckpt = ctx.lclm_checkpoint()?;
            let enc = ctx.lclm_encoder(&ckpt, &ctx.device()?)?;
            let pooled = lclm_encode_file(&enc, &a.text)?;
            if a.raw {
                pooled
            } else {
                enc.adapt(&pooled)?
            }
        }
    };
    let shape = out.dims().to_vec();
    let data = out.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    c3::npy::write_f32(&a.out, &shape, &data)?;
    Ok(0)
}

/// Why LCLM has no `repeat` / `expand` / `eval`.
pub const LCLM_NO_RECONSTRUCTION: &str = "the LCLM releases were trained to answer, not to \
     reconstruct: there is no documented reconstruction prompt for them. Use `c3 ask` (latent \
     mode), or `c3 show DOC --chunk N` for a chunk's stored text";

pub fn repeat(ctx: &ModelCtx, a: &RepeatArgs) -> Result<i32> {
    if ctx.family()? == Family::Lclm {
        bail!("`c3 repeat`: {LCLM_NO_RECONSTRUCTION}");
    }
    let ckpt = ctx.checkpoint()?;
    let dev = ctx.device()?;
    let enc = ctx.encoder(&ckpt, &dev)?;
    let raw = encode_file(&enc, &a.text)?;
    // One path for `repeat` and `expand`: the raw states rounded to the
    // checkpoint's storage dtype (what the store keeps; bf16 for the
    // release), then projected. So `c3 expand` of a stored chunk equals
    // `c3 repeat` of its text. (Rounding keeps all 40 golden ids.)
    let raw = raw.to_dtype(enc.storage_dtype())?;
    drop(enc);
    let dec = C3Decoder::load_quantized(&ckpt, ctx.dtype, &dev, ctx.decoder_quant)?;
    let opts = GenOptions {
        max_new_tokens: a.max_new_tokens,
        sampling: sampling(a.temperature, a.top_p, a.sample_top_k, a.seed),
        ..GenOptions::default()
    };
    let t0 = Instant::now();
    let gen = dec.repeat(&raw, &opts, |_| true)?;
    eprintln!("generated {} tokens in {:.2?}", gen.ids.len(), t0.elapsed());
    if a.ids {
        println!("{}", serde_json::to_string(&gen.ids)?);
    } else {
        println!("{}", gen.text);
    }
    Ok(0)
}
