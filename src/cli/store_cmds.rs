//! Store commands: ingest, ls, show, rm, stats, check, export, import.
//!
//! Each returns the process exit code: 0 on success, 1 when some input
//! failed or a check found problems. Errors that stop the command are `Err`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use c3::cascade::{Compressor, Family};
use c3::chunk::{Chunker, WARN_CHUNK_TOKENS};
use c3::ingest::{self, IngestOptions, Input, Shard};
use c3::store::export;
use serde_json::json;
use text_splitter::ChunkSizer;

use super::common::{
    default_batch, doc_json, load_encoder, meta_arg, open, open_or_create, refresh_index, select,
    warm_store, where_arg, ModelCtx, Out, ASK_MAX_NEW_TOKENS,
};

#[derive(clap::Args, Debug)]
pub struct IngestArgs {
    /// Files and directories to ingest; `-` reads standard input.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<String>,
    /// Label for standard input (stored as `stdin:LABEL`; its extension picks the splitter).
    #[arg(long, value_name = "LABEL", default_value = "-")]
    pub name: String,
    /// Maximum tokens per chunk [default: 1000 for C3, whose fidelity drops
    /// above that; an LCLM model's encoder window (1024), so a chunk is one window].
    #[arg(long, value_name = "N")]
    pub chunk_tokens: Option<usize>,
    /// Chunks per encoder call, encoded in padded forwards of similar-length
    /// chunks [default: 1 with the CPU's i16 encoder, 4 with a dense one on
    /// the CPU, 8 on a GPU]. Progress and the ETA advance per call.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub batch: Option<u16>,
    /// Inputs larger than this many bytes are read and chunked in sections.
    #[arg(long, value_name = "BYTES", default_value_t = 8 << 20, hide = true)]
    pub section_bytes: usize,
    /// Remove stored documents under PATHs whose files are gone.
    #[arg(long)]
    pub prune: bool,
    /// Ingest only shard I of N: the documents whose source path hashes
    /// there (XXH3-64 of the canonical path, mod N), so N processes with the
    /// same PATHs split the corpus with no coordination. `auto/N` takes I
    /// from JOB_COMPLETION_INDEX (Kubernetes Indexed Jobs). Combine the
    /// shards' stores with `c3 merge`.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// Then fill the prefix cache for every document, as `c3 warm --all`
    /// does (loads the decoder once the encoder is done), so the first
    /// question is fast too.
    #[arg(long)]
    pub warm: bool,
    /// Set a metadata key on every document stored (repeat for more):
    /// `key=value`, the value a number, `true`/`false`, or text (`key="2001"`
    /// keeps digits as text). Also replaces the metadata of unchanged
    /// documents; without --meta a replaced document keeps its metadata.
    #[arg(long = "meta", value_name = "KEY=VALUE")]
    pub meta: Vec<String>,
    /// Print a JSON summary on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct LsArgs {
    /// Only documents whose metadata matches (`key=value`, `key!=value`,
    /// `key>n`, `key<n`, `key in [a,b]`; repeat: all must hold).
    #[arg(long = "where", value_name = "COND")]
    pub filters: Vec<String>,
    /// Print a JSON array.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct RmArgs {
    /// Document ids or source paths.
    #[arg(required = true)]
    pub docs: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct StatsArgs {
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// Output file (safetensors with a JSON Lines manifest).
    pub file: PathBuf,
    /// Only documents whose metadata matches (as `c3 ls --where`).
    #[arg(long = "where", value_name = "COND")]
    pub filters: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// A file written by `c3 export`.
    pub file: PathBuf,
    #[arg(long)]
    pub json: bool,
}

/// `c3 ingest`.
pub fn run_ingest(store_dir: &Path, ctx: &ModelCtx, args: &IngestArgs) -> anyhow::Result<i32> {
    // A bad --shard, --name or --meta is reported before the model loads.
    shard_arg(args)?;
    meta_arg(&args.meta)?;
    if args.warm && ctx.kv_cache_size == 0 {
        anyhow::bail!("--warm fills the prefix cache, which --kv-cache-size 0 turns off");
    }
    name_arg(args)?;
    let (enc, n) = load_encoder(ctx, args.chunk_tokens)?;
    let (code, summary) = ingest_with(store_dir, enc.compressor(), enc.tokenizer(), n, args)?;
    // The encoder goes before the decoder loads: both at once would double
    // the peak memory.
    drop(enc);
    let warmed = match args.warm {
        true => Some(warm_store(
            store_dir,
            ctx,
            &[],
            ASK_MAX_NEW_TOKENS,
            args.json,
        )?),
        false => None,
    };
    if let Some(mut v) = summary {
        if let Some(w) = warmed {
            v["warm"] = serde_json::to_value(w)?;
        }
        writeln!(Out::new(), "{}", serde_json::to_string_pretty(&v)?)?;
    }
    Ok(code)
}

/// `--name` follows the server's rule for names (no control characters:
/// it is stored as the source and printed by `ls` and `show`).
fn name_arg(args: &IngestArgs) -> anyhow::Result<()> {
    if args.paths.iter().any(|p| p == "-") {
        ingest::check_name(&args.name)
            .map_err(|e| anyhow::anyhow!("--name {}: {e}", c3::term::name(&args.name)))?;
    }
    Ok(())
}

/// `--shard` parsed, `auto` resolved from the environment.
fn shard_arg(args: &IngestArgs) -> anyhow::Result<Option<Shard>> {
    let Some(spec) = &args.shard else {
        return Ok(None);
    };
    let shard = Shard::parse(spec, |k| std::env::var(k).ok())?;
    if args.paths.iter().any(|p| p == "-") {
        anyhow::bail!(
            "--shard {spec}: standard input (`-`) cannot be sharded: shards split files by path"
        );
    }
    Ok(Some(shard))
}

/// `c3 ingest` with an already loaded model, chunks of at most
/// `chunk_tokens` tokens. Returns the exit code and, with `--json`, the
/// summary to print.
pub fn ingest_with<S: ChunkSizer>(
    store_dir: &Path,
    model: &dyn Compressor,
    sizer: S,
    chunk_tokens: usize,
    args: &IngestArgs,
) -> anyhow::Result<(i32, Option<serde_json::Value>)> {
    name_arg(args)?;
    if model.family() == Family::C3 && chunk_tokens > WARN_CHUNK_TOKENS {
        c3::note!(
            "c3: warning: --chunk-tokens {chunk_tokens} is above {WARN_CHUNK_TOKENS}: C3 loses the end of longer chunks"
        );
    }
    let chunker = Chunker::new(sizer, chunk_tokens)?;
    let inputs: Vec<Input> = args
        .paths
        .iter()
        .map(|p| {
            if p == "-" {
                Input::Stdin {
                    label: args.name.clone(),
                }
            } else {
                Input::Path(PathBuf::from(p))
            }
        })
        .collect();
    let store = open_or_create(store_dir)?;
    let opts = IngestOptions {
        prune: args.prune,
        batch_size: args.batch.map_or_else(|| default_batch(model), usize::from),
        progress: !args.json,
        section_bytes: args.section_bytes,
        shard: shard_arg(args)?,
        metadata: meta_arg(&args.meta)?,
        ..IngestOptions::default()
    };
    let report = ingest::ingest(&store, model, &chunker, &inputs, &opts)?;
    refresh_index(&store, !args.json);
    if args.json {
        let mut v = serde_json::to_value(&report)?;
        // Where, with which dense product (on the CPU: OpenBLAS when found,
        // else built-in) and in which precision the encoder ran: they set
        // encode_seconds.
        let device = model.device();
        v["device"] = json!(match device.location() {
            candle_core::DeviceLocation::Cpu => "cpu".to_string(),
            candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
            candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
        });
        v["dense_product"] = json!(if device.is_cpu() {
            c3::kernels::blas::backend().to_string()
        } else {
            "candle (cuBLAS)".to_string()
        });
        v["encoder_precision"] =
            json!(model.quant().map_or("dense".to_string(), |q| q.to_string()));
        v["family"] = json!(model.family());
        v["chunk_tokens"] = json!(chunk_tokens);
        // Which microkernel the i16 products ran (picked by CPU features).
        v["encoder_kernel"] = json!(match model.quant() {
            Some(c3::model::Quant::I16) => c3::model::quant::i16_kernel_name().unwrap_or("dense"),
            _ => "dense",
        });
        return Ok((if report.ok() { 0 } else { 1 }, Some(v)));
    } else {
        if let Some(s) = &report.shard {
            c3::note!(
                "c3: shard {}/{}: {} of {} files",
                s.index,
                s.count,
                s.files,
                s.files_total
            );
        }
        c3::note!(
            "c3: {} added, {} replaced, {} unchanged{}, {} pruned, {} failed; {} chunks, {} tokens in {:.1}s",
            report.added,
            report.replaced,
            report.unchanged,
            match report.metadata_updated {
                0 => String::new(),
                n => format!(" ({n} more with new metadata)"),
            },
            report.pruned,
            report.failed.len(),
            report.chunks,
            report.tokens,
            report.seconds
        );
    }
    Ok((if report.ok() { 0 } else { 1 }, None))
}

/// `c3 ls`.
pub fn run_ls(store_dir: &Path, args: &LsArgs) -> anyhow::Result<i32> {
    let filter = where_arg(&args.filters)?;
    let store = open(store_dir)?;
    let sel = select(&store, &filter)?;
    let mut out = Out::new();
    if args.json {
        let docs = sel
            .docs
            .iter()
            .map(|d| doc_json(&store, d))
            .collect::<anyhow::Result<Vec<_>>>()?;
        writeln!(out, "{}", serde_json::to_string_pretty(&docs)?)?;
        return Ok(0);
    }
    writeln!(
        out,
        "{:>6} {:>7} {:>9} {:>10}  {:<12} SOURCE",
        "ID", "CHUNKS", "TOKENS", "BYTES", "KIND"
    )?;
    for d in &sel.docs {
        let meta = store.metadata(d.id)?;
        writeln!(
            out,
            "{:>6} {:>7} {:>9} {:>10}  {:<12} {}{}",
            d.id,
            d.chunk_count,
            d.token_count,
            d.size,
            c3::term::name(&d.kind),
            c3::term::name(&d.source),
            if meta.is_empty() {
                String::new()
            } else {
                format!("  {}", c3::term::name(&meta.to_string()))
            }
        )?;
    }
    Ok(0)
}

/// `c3 rm`.
pub fn run_rm(store_dir: &Path, args: &RmArgs) -> anyhow::Result<i32> {
    let store = open(store_dir)?;
    for spec in &args.docs {
        let d = store.resolve(spec)?;
        store
            .remove(d.id)
            .with_context(|| format!("removing doc {}", d.id))?;
        c3::note!("c3: removed doc {} ({})", d.id, c3::term::name(&d.source));
    }
    refresh_index(&store, true);
    Ok(0)
}

/// `c3 stats`.
pub fn run_stats(store_dir: &Path, args: &StatsArgs) -> anyhow::Result<i32> {
    let store = open(store_dir)?;
    let s = store.stats()?;
    let model = store.meta()?.model;
    let mut out = Out::new();
    if args.json {
        let mut v = serde_json::to_value(&s)?;
        v["model"] = json!(model.map(|m| json!({
            "fingerprint": m.fingerprint, "latent_len": m.latent_len, "hidden_size": m.hidden_size
        })));
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
    } else {
        writeln!(out, "documents          {}", s.documents)?;
        writeln!(out, "chunks             {}", s.chunks)?;
        writeln!(out, "text bytes         {}", s.text_bytes)?;
        writeln!(out, "text tokens        {}", s.text_tokens)?;
        writeln!(out, "latent tokens      {}", s.latent_tokens)?;
        writeln!(out, "compression ratio  {:.2}x", s.compression_ratio)?;
        writeln!(out, "bytes on disk      {}", s.bytes_on_disk)?;
        if let Some(m) = model {
            writeln!(
                out,
                "model              {} ({} x {})",
                c3::term::name(&m.fingerprint),
                m.latent_len,
                m.hidden_size
            )?;
        }
    }
    Ok(0)
}

/// `c3 check`.
pub fn run_check(store_dir: &Path, args: &CheckArgs) -> anyhow::Result<i32> {
    let store = match open(store_dir) {
        Ok(s) => s,
        Err(e) => return check_unopenable(store_dir, e, args),
    };
    let r = store.check()?;
    let index = c3::retrieve::index::check(&store)?;
    let ok = r.ok() && index.problems.is_empty();
    let mut out = Out::new();
    if args.json {
        let mut v = serde_json::to_value(&r)?;
        v["index"] = serde_json::to_value(&index)?;
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
    } else {
        for l in &r.lost {
            writeln!(
                out,
                "lost: doc {} {} ({}): {}",
                l.doc.id,
                c3::store::shown(&l.doc.source),
                l.status,
                l.detail
            )?;
        }
        for p in r.problems.iter().chain(&index.problems) {
            writeln!(out, "{}", c3::term::name(&p.to_string()))?;
        }
        if !r.ok() {
            c3::note!(
                "c3: the store is refused for writing until it is repaired: `c3 --store {} \
                 recover --dry-run` says what recovery would do",
                store_dir.display()
            );
        }
        c3::note!("c3: search index: {}", index.status);
        c3::note!(
            "c3: checked {} documents, {} chunks, {} latents: {}",
            r.documents,
            r.chunks,
            r.latents,
            if ok {
                "ok".to_string()
            } else {
                format!("{} problems", r.problems.len() + index.problems.len())
            }
        );
    }
    Ok(if ok { 0 } else { 1 })
}

/// `c3 check` of a store whose database cannot be opened: what its
/// manifest says was there is what is lost. Other errors (locked, no
/// store, newer schema) stop the command as before.
fn check_unopenable(store_dir: &Path, e: anyhow::Error, args: &CheckArgs) -> anyhow::Result<i32> {
    let damaged = e.chain().any(|c| {
        matches!(
            c.downcast_ref::<c3::Error>(),
            Some(
                c3::Error::DatabaseDamaged { .. }
                    | c3::Error::Migrate(c3_migrations::MigrateError::Open { .. })
            )
        )
    });
    if !damaged {
        return Err(e);
    }
    let problem = format!("{e:#}");
    let lost: Vec<c3::store::manifest::ManifestDoc> = match c3::store::manifest::load(store_dir) {
        c3::store::manifest::Loaded::Present(r) => r.state.docs.into_values().collect(),
        _ => Vec::new(),
    };
    if args.json {
        let v = json!({
            "documents": 0, "chunks": 0, "latents": 0,
            "manifest": "damaged",
            "database": "unreadable",
            "lost": lost.iter().map(|d| {
                let mut v = serde_json::to_value(d).unwrap_or_default();
                v["status"] = json!("unreadable");
                v["detail"] = json!("the database cannot be opened");
                v
            }).collect::<Vec<_>>(),
            "problems": [problem],
        });
        writeln!(Out::new(), "{}", serde_json::to_string_pretty(&v)?)?;
    } else {
        for d in &lost {
            writeln!(
                Out::new(),
                "lost: doc {} {} (unreadable): the database cannot be opened",
                d.id,
                c3::store::shown(&d.source)
            )?;
        }
        writeln!(Out::new(), "{problem}")?;
        c3::note!(
            "c3: the database cannot be opened; its manifest names {} documents",
            lost.len()
        );
    }
    Ok(1)
}

/// `c3 export`.
pub fn run_export(store_dir: &Path, args: &ExportArgs) -> anyhow::Result<i32> {
    let filter = where_arg(&args.filters)?;
    let store = open(store_dir)?;
    let t = if filter.is_empty() {
        export::export(&store, &args.file)?
    } else {
        let ids = select(&store, &filter)?.ids();
        export::export_docs(&store, &args.file, Some(&ids))?
    };
    c3::note!(
        "c3: exported {} documents, {} chunks ({} bytes) to {}",
        t.documents,
        t.chunks,
        t.bytes,
        c3::term::name(&args.file.display().to_string())
    );
    Ok(0)
}

/// `c3 import`: the whole file is checked before the store is opened (or
/// created), so a damaged export changes nothing and creates nothing.
pub fn run_import(store_dir: &Path, args: &ImportArgs) -> anyhow::Result<i32> {
    let mut file = export::verify(&args.file)?;
    let existed = store_dir.join(c3_migrations::DB_DIR).exists();
    let created_dir = !store_dir.exists();
    let imported = open_or_create(store_dir).and_then(|store| {
        let t = export::import_verified(&store, &mut file)?;
        Ok((store, t))
    });
    let (store, t) = match imported {
        Ok(x) => x,
        Err(e) => {
            // Leave nothing behind where there was nothing.
            if !existed {
                let _ = std::fs::remove_dir_all(store_dir.join(c3_migrations::DB_DIR));
                for f in [
                    c3::store::manifest::BASE_FILE,
                    c3::store::manifest::LOG_FILE,
                ] {
                    let _ = std::fs::remove_file(store_dir.join(f));
                }
                if created_dir {
                    let _ = std::fs::remove_dir_all(store_dir);
                }
            }
            return Err(e);
        }
    };
    refresh_index(&store, !args.json);
    if args.json {
        writeln!(Out::new(), "{}", serde_json::to_string_pretty(&t)?)?;
    } else {
        c3::note!(
            "c3: imported {} documents, {} chunks; {} unchanged{}",
            t.documents,
            t.chunks,
            t.skipped_unchanged,
            match t.metadata_updated {
                0 => String::new(),
                n => format!(", {n} with new metadata"),
            }
        );
    }
    Ok(0)
}
