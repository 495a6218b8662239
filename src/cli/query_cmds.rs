//! Query commands: ask, expand, eval.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use c3::eval::{self, diff, Sample};
use c3::generate::GenOptions;
use c3::query::{self, AnswerModel, AskRequest, Mode, Reader};
use c3::retrieve::Pick;
use c3::store::Store;
use serde_json::json;

use super::common::{
    gen_options, load_decoder, load_reader, note_stop, open, print_piece, where_arg, AskArgs,
    ModeArg, ModelCtx, Out, SampleArgs,
};

#[derive(clap::Args, Debug)]
pub struct ExpandArgs {
    /// Document id or source path.
    pub doc: String,
    /// Only this chunk.
    #[arg(long, value_name = "N", conflicts_with = "all")]
    pub chunk: Option<u32>,
    /// Every chunk (the default).
    #[arg(long)]
    pub all: bool,
    /// Most tokens to generate per chunk.
    #[arg(long, default_value_t = c3::generate::DEFAULT_MAX_NEW_TOKENS)]
    pub max_new_tokens: usize,
    /// Show a word diff against the stored text, with precision and edit similarity.
    #[arg(long)]
    pub diff: bool,
    /// Print the generated ids (one JSON array per chunk) instead of text.
    #[arg(long, conflicts_with = "diff")]
    pub ids: bool,
    #[command(flatten)]
    pub sample: SampleArgs,
    /// Print a JSON array (text, metrics) instead.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// Evaluate N chunks drawn at random (seeded) instead of all.
    #[arg(long, value_name = "N")]
    pub sample: Option<usize>,
    /// Seed for --sample.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Only these documents.
    #[arg(long = "doc", value_name = "ID", num_args = 1..)]
    pub docs: Vec<String>,
    /// Evaluate the .txt files of DIR (e.g. Fox page ground truths) instead of the store.
    #[arg(long, value_name = "DIR")]
    pub texts: Option<PathBuf>,
    /// Most tokens to generate per chunk.
    #[arg(long, default_value_t = c3::generate::DEFAULT_MAX_NEW_TOKENS)]
    pub max_new_tokens: usize,
    /// Print the table (and every sample) as JSON.
    #[arg(long)]
    pub json: bool,
}

fn resolve_docs(store: &Store, specs: &[String]) -> anyhow::Result<Vec<u64>> {
    specs.iter().map(|s| Ok(store.resolve(s)?.id)).collect()
}

/// `c3 ask`.
pub fn run_ask(store_dir: &Path, ctx: &ModelCtx, a: &AskArgs) -> anyhow::Result<i32> {
    if a.question.trim().is_empty() {
        bail!("the question is empty");
    }
    // Every setting is checked before a model loads.
    let gen = gen_options(a.max_new_tokens, &a.sample, a.repetition_penalty)?;
    if let Some(file) = &a.text {
        return super::oneshot::run(ctx, file, a, &gen);
    }
    let mode = match (a.mode, &a.answer_model) {
        (Some(ModeArg::Latent), Some(_)) => {
            bail!("--answer-model reads text: use it with --mode text")
        }
        (Some(ModeArg::Latent), None) | (None, None) => Mode::Latent,
        _ => Mode::Text,
    };
    let filter = where_arg(&a.filters)?;
    let store = open(store_dir)?;
    let docs = resolve_docs(&store, &a.docs)?;
    let docs = store.select(&filter)?.narrow(&docs, &filter)?;
    let req = AskRequest {
        question: a.question.clone(),
        docs,
        pick: a.top_k.map_or(Pick::All, Pick::TopK),
        mode,
        gen: gen.clone(),
        progress: true,
    };
    let (dec, plain);
    let mut kv = None;
    let reader = match &a.answer_model {
        Some(arg) => {
            let path = ctx.answer_model_path(arg)?;
            plain = AnswerModel::load(&path, ctx.dtype, &ctx.device()?)
                .with_context(|| format!("loading --answer-model {}", arg.display()))?;
            Reader::Plain(&plain)
        }
        None => {
            let check = (mode == Mode::Latent).then_some(&store);
            let fp;
            (dec, fp) = load_decoder(ctx, check)?;
            if mode == Mode::Latent {
                // The cache only ever speeds an answer up: one that cannot
                // be opened is a warning.
                kv = ctx
                    .open_kv_cache(store_dir, &dec, &fp, 0)
                    .unwrap_or_else(|e| {
                        c3::note!("c3: warning: prefix cache not used: {e:#}");
                        None
                    });
            }
            Reader::Latent(dec.reader())
        }
    };
    let prepared = query::prepare_with(&store, reader, &req, kv.as_ref())?;
    if let Some(w) = &prepared.warning {
        c3::note!("c3: warning: {w}");
    }
    if prepared.dropped > 0 {
        c3::note!(
            "c3: the selection does not fit the model's positions with --max-new-tokens {}: \
             using the {} best-scoring chunks, {} left out",
            a.max_new_tokens,
            prepared.chunks.len(),
            prepared.dropped
        );
    }
    c3::note!(
        "c3: {} chunks, prompt of {} positions ({} mode){}",
        prepared.chunks.len(),
        prepared.prompt_tokens(),
        if mode == Mode::Latent {
            "latent"
        } else {
            "text"
        },
        match prepared.cached_positions() {
            0 => String::new(),
            n => format!(", {n} of them from the prefix cache"),
        }
    );
    let mut out = Out::new();
    let streaming = !a.json && !a.ids;
    let res = prepared.run(reader, &gen, |piece| {
        !streaming || print_piece(&mut out, piece)
    })?;
    if let Some(e) = res.kv_cache.as_ref().and_then(|u| u.error.as_ref()) {
        c3::note!("c3: warning: {e}");
    }
    note_stop("the answer", res.stop);
    if a.ids {
        writeln!(out, "{}", serde_json::to_string(&res.ids)?)?;
    } else if a.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&res)?)?;
    } else {
        writeln!(out)?;
        let t = &res.timings;
        c3::note!(
            "c3: {} tokens; first token after {:.0} ms ({:.0} ms prefill), {:.1} tokens/s; \
             {} latent positions for {} text tokens",
            t.generated_tokens,
            t.time_to_first_token_ms,
            t.first_token_ms,
            t.tokens_per_s,
            res.latent_tokens,
            res.text_tokens_replaced
        );
    }
    Ok(0)
}

/// `c3 expand`.
pub fn run_expand(store_dir: &Path, ctx: &ModelCtx, a: &ExpandArgs) -> anyhow::Result<i32> {
    ctx.check_reconstruct().context("`c3 expand`")?;
    let store = open(store_dir)?;
    let doc = store.resolve(&a.doc)?;
    let chunks: Vec<u32> = match a.chunk {
        Some(c) => vec![c],
        None => (0..doc.chunk_count).collect(),
    };
    if let Some(chunk) = a.chunk.filter(|&c| c >= doc.chunk_count) {
        return Err(c3::Error::NoChunk {
            doc: doc.id,
            chunk,
            count: doc.chunk_count,
        }
        .into());
    }
    let opts = gen_options(a.max_new_tokens, &a.sample, None)?;
    let dec = load_reader(ctx, Some(&store))?;
    let mut out = Out::new();
    let stream_text = !a.json && !a.ids && !a.diff;
    let mut rows = Vec::new();
    for (i, &c) in chunks.iter().enumerate() {
        if chunks.len() > 1 {
            c3::note!("c3: doc {} chunk {c} ({}/{})", doc.id, i + 1, chunks.len());
        }
        let g = query::expand_chunk(&store, dec.reader(), doc.id, c, &opts, |piece| {
            !stream_text || print_piece(&mut out, piece)
        })?;
        note_stop(&format!("doc {} chunk {c}", doc.id), g.stop);
        if stream_text {
            writeln!(out)?;
            continue;
        }
        if a.ids {
            writeln!(out, "{}", serde_json::to_string(&g.ids)?)?;
            continue;
        }
        let rec = store.chunk_record(doc.id, c)?;
        let original = store.chunk_text(&rec)?;
        let p = eval::precision(&g.text, &original);
        let e = eval::edit_similarity(&g.text, &original);
        if a.json {
            rows.push(json!({
                "doc": doc.id, "chunk": c, "text": g.text, "text_tokens": rec.tokens,
                "generated_tokens": g.ids.len(), "stop": g.stop, "precision": p,
                "edit_similarity": e,
            }));
        } else {
            let shown = diff::render(&diff::word_diff(&original, &g.text));
            writeln!(out, "{}", out.text(&shown))?;
            writeln!(
                out,
                "-- doc {} chunk {c}: precision {:.1}%, edit similarity {:.1}% ({} text tokens)",
                doc.id,
                p * 100.0,
                e * 100.0,
                rec.tokens
            )?;
        }
    }
    if a.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
    }
    Ok(0)
}

/// Seeded choice of `n` of `total` indices, returned sorted.
fn sample_indices(total: usize, n: usize, seed: u64) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..total).collect();
    let mut state = seed ^ 0x9e37_79b9_7f4a_7c15;
    // Partial Fisher–Yates with splitmix64.
    for i in 0..n.min(total) {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let j = i + (z % (total - i) as u64) as usize;
        idx.swap(i, j);
    }
    idx.truncate(n.min(total));
    idx.sort_unstable();
    idx
}

/// `c3 eval`.
pub fn run_eval(store_dir: &Path, ctx: &ModelCtx, a: &EvalArgs) -> anyhow::Result<i32> {
    ctx.check_reconstruct().context("`c3 eval`")?;
    let opts = gen_options(
        a.max_new_tokens,
        &SampleArgs {
            temperature: None,
            top_p: 1.0,
            sample_top_k: None,
            seed: 0,
        },
        None,
    )?;
    let samples = match &a.texts {
        Some(dir) => eval_texts(ctx, dir, a, &opts)?,
        None => eval_store(store_dir, ctx, a, &opts)?,
    };
    let rows = eval::table(&samples);
    let mut out = Out::new();
    if a.json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&json!({ "rows": rows, "samples": samples }))?
        )?;
    } else {
        write!(out, "{}", eval::render_table(&rows))?;
    }
    Ok(0)
}

fn eval_store(
    store_dir: &Path,
    ctx: &ModelCtx,
    a: &EvalArgs,
    opts: &GenOptions,
) -> anyhow::Result<Vec<Sample>> {
    let store = open(store_dir)?;
    let docs = resolve_docs(&store, &a.docs)?;
    let mut all = Vec::new();
    for d in store.documents() {
        let d = d?;
        if docs.is_empty() || docs.contains(&d.id) {
            all.extend((0..d.chunk_count).map(|c| (d.id, c)));
        }
    }
    if all.is_empty() {
        bail!("no chunks to evaluate (the store or the selected documents are empty)");
    }
    let picked: Vec<(u64, u32)> = match a.sample {
        Some(0) => bail!("--sample must be at least 1"),
        Some(n) => sample_indices(all.len(), n, a.seed)
            .into_iter()
            .map(|i| all[i])
            .collect(),
        None => all,
    };
    let dec = load_reader(ctx, Some(&store))?;
    let mut samples = Vec::with_capacity(picked.len());
    for (i, &(doc, c)) in picked.iter().enumerate() {
        c3::note!("c3: eval {}/{}: doc {doc} chunk {c}", i + 1, picked.len());
        let rec = store.chunk_record(doc, c)?;
        let original = store.chunk_text(&rec)?;
        let g = query::expand_chunk(&store, dec.reader(), doc, c, opts, |_| true)?;
        note_stop(&format!("doc {doc} chunk {c}"), g.stop);
        samples.push(Sample {
            label: format!("doc {doc} chunk {c}"),
            text_tokens: rec.tokens as usize,
            latent_tokens: store.latent(doc, c)?.dims()[0],
            precision: eval::precision(&g.text, &original),
            edit_similarity: eval::edit_similarity(&g.text, &original),
        });
    }
    Ok(samples)
}

fn eval_texts(
    ctx: &ModelCtx,
    dir: &Path,
    a: &EvalArgs,
    opts: &GenOptions,
) -> anyhow::Result<Vec<Sample>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading --texts {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "txt") && p.is_file())
        .collect();
    files.sort();
    if let Some(n) = a.sample {
        let keep = sample_indices(files.len(), n, a.seed);
        files = keep.into_iter().map(|i| files[i].clone()).collect();
    }
    if files.is_empty() {
        bail!("no .txt files in {}", dir.display());
    }
    // Compress everything first so only one model is in memory at a time.
    let enc = ctx.load_encoder()?;
    let mut encoded = Vec::new();
    for (i, f) in files.iter().enumerate() {
        c3::note!(
            "c3: compress {}/{}: {}",
            i + 1,
            files.len(),
            c3::term::name(&f.display().to_string())
        );
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        if text.trim().is_empty() {
            c3::note!(
                "c3: warning: {} is empty, skipped",
                c3::term::name(&f.display().to_string())
            );
            continue;
        }
        let tokens = enc.tokenizer().encode_text(&text)?.len();
        let raw = enc
            .compressor()
            .compress(&[&text])
            .with_context(|| format!("compressing {}", f.display()))?
            .remove(0);
        encoded.push((f.display().to_string(), text, tokens, raw));
    }
    drop(enc);
    let dec = load_reader(ctx, None)?;
    let mut samples = Vec::new();
    for (i, (label, text, tokens, raw)) in encoded.iter().enumerate() {
        c3::note!(
            "c3: reconstruct {}/{}: {}",
            i + 1,
            encoded.len(),
            c3::term::name(label)
        );
        let g = dec.reader().reconstruct(raw, opts, &mut |_| true)?;
        note_stop(label, g.stop);
        samples.push(Sample {
            label: label.clone(),
            text_tokens: *tokens,
            latent_tokens: raw.dims()[0],
            precision: eval::precision(&g.text, text),
            edit_similarity: eval::edit_similarity(&g.text, text),
        });
    }
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::sample_indices;

    #[test]
    fn sampling_is_seeded_distinct_and_bounded() {
        let a = sample_indices(100, 10, 7);
        assert_eq!(a, sample_indices(100, 10, 7));
        assert_ne!(a, sample_indices(100, 10, 8));
        assert_eq!(a.len(), 10);
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(sample_indices(3, 10, 1), vec![0, 1, 2]);
    }
}
