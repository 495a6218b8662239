//! `c3 ask --text FILE "QUESTION"`: compress one file whole and answer over
//! it without a store, for either family.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use c3::cascade::Prompt;
use c3::chunk::DocKind;
use c3::generate::{check_room, GenOptions, Generation};
use serde_json::json;

use super::common::{load_reader, note_stop, print_piece, AskArgs, ModelCtx, Out};
use super::input::read_text;

pub fn run(ctx: &ModelCtx, file: &Path, a: &AskArgs, gen_opts: &GenOptions) -> Result<i32> {
    let started = Instant::now();
    // Only one model is in memory at a time: the encoder is gone before the
    // decoder loads.
    let (raw, tokens) = {
        let enc = ctx.load_encoder()?;
        c3::note!(
            "c3: compressing {}",
            c3::term::name(&file.display().to_string())
        );
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
    if let Err(e) = check_room(
        gen_opts.max_new_tokens,
        prompt.ids.len(),
        reader.max_positions(),
    ) {
        return Err(anyhow::Error::from(e).context(format!(
            "{} compresses to a prompt of {} positions (ingest it and ask with --top-k)",
            c3::term::name(&file.display().to_string()),
            prompt.ids.len()
        )));
    }
    c3::note!(
        "c3: {tokens} tokens as {} latent positions, prompt of {} positions",
        prompt.latent_positions(),
        prompt.ids.len()
    );
    let mut out = Out::new();
    let streaming = !a.json && !a.ids;
    let gen: Generation = c3::query::stream::stream_text(
        reader,
        &mut |piece| !streaming || print_piece(&mut out, piece),
        |cb| reader.generate(&prompt, &latents, gen_opts, cb),
    )?;
    note_stop("the answer", gen.stop);
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
            "stop": gen.stop,
            "total_ms": started.elapsed().as_secs_f64() * 1e3,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
    } else {
        writeln!(out)?;
    }
    Ok(0)
}
