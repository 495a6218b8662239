//! `c3 tokenize`, `c3 encode`, `c3 repeat`: the model on one chunk of text.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use c3::cascade::AnyDecoder;
use candle_core::DType;
use clap::Args;

use super::common::{gen_options, note_stop, ModelCtx, Out, SampleArgs};
use super::input::read_text;

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
    #[arg(long, default_value_t = c3::generate::DEFAULT_MAX_NEW_TOKENS)]
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

pub fn tokenize(ctx: &ModelCtx, a: &TokenizeArgs) -> Result<i32> {
    let dir = ctx.model_dir()?;
    let ids = c3::cascade::tokenize(dir, &read_text(&a.text)?)?;
    writeln!(Out::new(), "{}", serde_json::to_string(&ids)?)?;
    Ok(0)
}

/// `text` encoded whole (C3: one chunk; LCLM: all its windows), with a
/// warning when it is longer than the family was trained on.
fn encode_text(enc: &c3::cascade::AnyEncoder, text: &str) -> Result<c3::cascade::Encoded> {
    let t0 = Instant::now();
    let e = enc.encode_text(text)?;
    if let Some(limit) = enc.trained_tokens().filter(|&n| e.tokens > n) {
        c3::note!(
            "warning: {} tokens in one chunk; C3 was trained on up to ~{limit} \
             and loses the end of longer chunks (use `c3 ingest` to chunk long input)",
            e.tokens
        );
    }
    let windows = e
        .windows
        .map(|w| format!(" ({w} windows)"))
        .unwrap_or_default();
    c3::note!(
        "encoded {} tokens{windows} into {} latents in {:.2?}",
        e.tokens,
        e.raw.dims()[0],
        t0.elapsed()
    );
    Ok(e)
}

pub fn encode(ctx: &ModelCtx, a: &EncodeArgs) -> Result<i32> {
    ctx.model_dir()?;
    let enc = ctx.load_encoder()?;
    let raw = encode_text(&enc, &read_text(&a.text)?)?.raw;
    let out = if a.raw {
        raw
    } else {
        enc.to_decoder_space(&raw)?
    };
    let shape = out.dims().to_vec();
    let data = out.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    c3::npy::write_f32(&a.out, &shape, &data)?;
    Ok(0)
}

pub fn repeat(ctx: &ModelCtx, a: &RepeatArgs) -> Result<i32> {
    ctx.check_reconstruct()?;
    let sample = SampleArgs {
        temperature: a.temperature,
        top_p: a.top_p,
        sample_top_k: a.sample_top_k,
        seed: a.seed,
    };
    // Every setting is checked before a model loads.
    let opts = gen_options(a.max_new_tokens, &sample, None)?;
    let enc = ctx.load_encoder()?;
    let raw = encode_text(&enc, &read_text(&a.text)?)?.raw;
    // One path for `repeat` and `expand`: the raw states rounded to the
    // checkpoint's storage dtype (what the store keeps; bf16 for the
    // release), then projected. So `c3 expand` of a stored chunk equals
    // `c3 repeat` of its text. (Rounding keeps all 40 golden ids.)
    let raw = raw.to_dtype(enc.storage_dtype())?;
    drop(enc);
    let (dec, _) = AnyDecoder::load(
        ctx.model_dir()?,
        ctx.dtype,
        &ctx.device()?,
        ctx.decoder_quant,
    )?;
    let t0 = Instant::now();
    let gen = dec.reader().reconstruct(&raw, &opts, &mut |_| true)?;
    c3::note!("generated {} tokens in {:.2?}", gen.ids.len(), t0.elapsed());
    note_stop("the reconstruction", gen.stop);
    let mut out = Out::new();
    if a.ids {
        writeln!(out, "{}", serde_json::to_string(&gen.ids)?)?;
    } else {
        writeln!(out, "{}", out.text(&gen.text))?;
    }
    Ok(0)
}
