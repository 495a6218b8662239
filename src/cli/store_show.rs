//! `c3 show`: a document (metadata, chunk table, latent statistics, text) or
//! one chunk of it.

use std::fmt;
use std::io::Write;
use std::path::Path;

use anyhow::bail;
use c3::store::{export, latent};
use candle_core::{DType, Tensor};
use serde::Serialize;
use serde_json::json;

use super::common::{doc_json, open, rfc3339, Out};

#[derive(clap::Args, Debug)]
pub struct ShowArgs {
    /// Document id or source path.
    pub doc: String,
    /// Show one chunk (text, range, latent stats).
    #[arg(long, value_name = "N")]
    pub chunk: Option<u32>,
    /// Also print the whole document text.
    #[arg(long, conflicts_with = "chunk")]
    pub text: bool,
    #[arg(long)]
    pub json: bool,
}

/// Summary of latent values, computed in f32.
#[derive(Serialize)]
struct LatentStats {
    dtype: &'static str,
    shape: Vec<usize>,
    count: usize,
    mean: f64,
    std: f64,
    min: f32,
    max: f32,
    all_finite: bool,
}

impl LatentStats {
    fn of(ts: &[Tensor]) -> anyhow::Result<Option<Self>> {
        let Some(first) = ts.first() else {
            return Ok(None);
        };
        let flat = ts
            .iter()
            .map(|t| t.to_dtype(DType::F32)?.flatten_all())
            .collect::<candle_core::Result<Vec<_>>>()?;
        let v = Tensor::cat(&flat, 0)?.to_vec1::<f32>()?;
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
        Ok(Some(LatentStats {
            dtype: latent::dtype_name(first.dtype())?,
            shape: first.dims().to_vec(),
            count: ts.len(),
            mean,
            std: var.sqrt(),
            min: v.iter().copied().fold(f32::INFINITY, f32::min),
            max: v.iter().copied().fold(f32::NEG_INFINITY, f32::max),
            all_finite: v.iter().all(|x| x.is_finite()),
        }))
    }
}

impl fmt::Display for LatentStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} x {:?} {}: mean {:.4}, std {:.4}, min {:.4}, max {:.4}{}",
            self.count,
            self.shape,
            self.dtype,
            self.mean,
            self.std,
            self.min,
            self.max,
            if self.all_finite { "" } else { ", NOT FINITE" }
        )
    }
}

fn show_stats(s: &Option<LatentStats>) -> String {
    s.as_ref().map_or_else(|| "none".into(), |s| s.to_string())
}

/// `c3 show`.
pub fn run_show(store_dir: &Path, args: &ShowArgs) -> anyhow::Result<i32> {
    let store = open(store_dir)?;
    let d = store.resolve(&args.doc)?;
    let mut out = Out::new();
    let source = c3::term::name(&d.source);
    if let Some(n) = args.chunk {
        if n >= d.chunk_count {
            bail!(
                "doc {} ({source}) has {} chunks; there is no chunk {n}",
                d.id,
                d.chunk_count
            );
        }
        let c = store.chunk_record(d.id, n)?;
        let text = store.chunk_text(&c)?;
        let stats = LatentStats::of(&[store.latent(d.id, n)?])?;
        if args.json {
            let v = json!({
                "doc": d.id, "source": d.source, "metadata": store.metadata(d.id)?, "chunk": n,
                "start": c.start, "end": c.end, "tokens": c.tokens,
                "latents": stats, "text": text,
            });
            writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        } else {
            writeln!(
                out,
                "doc {} chunk {n} of {}: bytes {}..{}, {} tokens",
                d.id, d.chunk_count, c.start, c.end, c.tokens
            )?;
            writeln!(out, "source   {source}")?;
            writeln!(out, "latents  {}", show_stats(&stats))?;
            writeln!(out, "---")?;
            let text = out.text(&text).into_owned();
            out.write_all(text.as_bytes())?;
            writeln!(out)?;
        }
        return Ok(0);
    }
    let chunks = (0..d.chunk_count)
        .map(|n| store.chunk_record(d.id, n))
        .collect::<c3::Result<Vec<_>>>()?;
    let stats = LatentStats::of(&store.doc_latents(d.id)?)?;
    let text = if args.text {
        let mut s = String::with_capacity(d.size as usize);
        for c in &chunks {
            s.push_str(&store.chunk_text(c)?);
        }
        Some(s)
    } else {
        None
    };
    if args.json {
        let mut v = doc_json(&store, &d)?;
        v["chunk_list"] = chunks
            .iter()
            .map(
                |c| json!({"chunk": c.ordinal, "start": c.start, "end": c.end, "tokens": c.tokens}),
            )
            .collect();
        v["latents"] = json!(stats);
        if let Some(t) = text {
            v["text"] = json!(t);
        }
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(0);
    }
    writeln!(out, "doc {}  {source}", d.id)?;
    writeln!(
        out,
        "kind {}, {} bytes, {} tokens, {} chunks (window {})",
        c3::term::name(&d.kind),
        d.size,
        d.token_count,
        d.chunk_count,
        d.chunk_tokens
    )?;
    writeln!(out, "blake3   {}", export::hex(&d.content_hash))?;
    writeln!(out, "ingested {}", rfc3339(d.ingested_at_ms))?;
    let meta = store.metadata(d.id)?;
    if !meta.is_empty() {
        writeln!(out, "metadata {}", c3::term::name(&meta.to_string()))?;
    }
    writeln!(out, "latents  {}", show_stats(&stats))?;
    for c in &chunks {
        writeln!(
            out,
            "  chunk {:>4}  bytes {:>9}..{:<9} {:>5} tokens",
            c.ordinal, c.start, c.end, c.tokens
        )?;
    }
    if let Some(t) = text {
        writeln!(out, "---")?;
        let t = out.text(&t).into_owned();
        out.write_all(t.as_bytes())?;
    }
    Ok(0)
}
