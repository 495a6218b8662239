//! `c3 ask --text FILE "QUESTION"`: compress one file whole and answer over
//! it without a store, for either family.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Result};
use c3::cascade::Prompt;
use c3::chunk::DocKind;
use c3::generate::Generation;
use serde_json::json;

use super::common::{gen_options, load_reader, print_piece, AskArgs, ModelCtx};
use super::input::read_text;

pub fn run(ctx: &ModelCtx, file: &Path, a: &AskArgs) -> Result<i32> {
    let started = Instant::now();
    // Only one model is in memory at a time: the encoder is gone before the
    // decoder loads.
    let (raw, tokens) = {
        let enc = ctx.load_encoder()?;
        eprintln!("c3: compressing {}", file.display());
        enc.compress_whole(&read_text(file)?, DocKind::from_path(file))?
    };
    let dec = load_reader(ctx, None)?;
    let reader = dec.reader();
    let latents = raw
        .iter()
        .map(|r| reader.adapt(r))
        .collect::<c3::Result<Vec<_>>>()?;
    let rows: Vec<usize> = latents.iter().map(|l| l.dims()[0]).collect();
    let prompt: Prompt = reader.latent_prompt(&[rows], &a.question)?;
    let mut gen_opts = gen_options(a.max_new_tokens, &a.sample);
    gen_opts.repetition_penalty = a.repetition_penalty;
    if prompt.ids.len() + gen_opts.max_new_tokens > reader.max_positions() {
        bail!(
            "{} compresses to a prompt of {} positions, which with --max-new-tokens {} does not \
             fit the decoder's {}: ingest it and ask with --top-k",
            file.display(),
            prompt.ids.len(),
            gen_opts.max_new_tokens,
            reader.max_positions()
        );
    }
    eprintln!(
        "c3: {tokens} tokens as {} latent positions, prompt of {} positions",
        prompt.latent_positions(),
        prompt.ids.len()
    );
    let mut out = std::io::stdout().lock();
    let streaming = !a.json && !a.ids;
    let gen: Generation = c3::query::stream::stream_text(
        reader,
        &mut |piece| !streaming || print_piece(&mut out, piece),
        |cb| reader.generate(&prompt, &latents, &gen_opts, cb),
    )?;
    if a.ids {
        writeln!(out, "{}", serde_json::to_string(&gen.ids)?)?;
    } else if a.json {
        let v = json!({
            "answer": gen.text,
            "family": reader.family().name(),
            "compression_ratio": reader.ratio(),
            "text_tokens": tokens,
            "latent_tokens": prompt.latent_positions(),
            "prompt_tokens": prompt.ids.len(),
            "generated_tokens": gen.ids.len(),
            "total_ms": started.elapsed().as_secs_f64() * 1e3,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
    } else {
        writeln!(out)?;
    }
    Ok(0)
}
