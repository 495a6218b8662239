//! `c3 train`: flags, reading the data, the memory plan, progress lines and
//! the report. The training itself is `c3::train`.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use c3::train::data::{Dataset, Limits, Order};
use c3::train::load::{LoraConfig, Selection, LORA_TARGETS};
use c3::train::optim::AdamConfig;
use c3::train::params::Part;
use c3::train::plan::{capacity, gib};
use c3::train::records::{read_files, Origin};
use c3::train::run::{self, Job, OutDir, Progress, RunOptions, StepReport};
use c3::train::save::SaveOptions;
use c3::train::sources::{chunk_records, store_chunks, text_chunks, Mix};
use c3::train::state::{dtype_name, EvalRecord, Recipe};
use candle_core::DType;
use clap::ValueEnum;
use serde_json::json;

use super::common::ModelCtx;

/// A line on standard output. A reader that went away (`c3 train --json |
/// head`) must not stop a training run, so a failed write is dropped.
macro_rules! say {
    ($($t:tt)*) => {{
        let _ = writeln!(super::common::Out::new(), $($t)*);
    }};
}

/// A line on standard error, never a panic when it is closed.
macro_rules! say_err {
    ($($t:tt)*) => {{
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}

#[derive(Copy, Clone, Debug, ValueEnum, PartialEq, Eq)]
pub enum OrderArg {
    /// A seeded permutation per epoch (upstream's Trainer shuffles).
    Shuffle,
    /// The records' order in the files, every epoch.
    File,
}

#[derive(Copy, Clone, Debug, ValueEnum, PartialEq, Eq)]
pub enum SaveDtype {
    F32,
    Bf16,
    F16,
}

#[derive(Copy, Clone, Debug, ValueEnum, PartialEq, Eq)]
pub enum ComputeDtype {
    /// f32 on the CPU, bf16 on a GPU.
    Auto,
    F32,
    Bf16,
}

/// Train or fine-tune the C3 cascade of --model (upstream's recipe by default).
#[derive(clap::Args, Debug)]
#[command(after_help = "Recipe, data formats, memory plans and examples: docs/training.md")]
pub struct TrainArgs {
    /// Training records: upstream's JSON array (train_test_data.json) or
    /// JSON Lines of the same objects. Several files are read in order.
    #[arg(long, value_name = "FILE", num_args = 1..)]
    pub data: Vec<PathBuf>,
    /// Also make records from every chunk of the current store (--store).
    #[arg(long)]
    pub from_store: bool,
    /// Also make records from these files or directories, chunked as
    /// `c3 ingest` chunks them.
    #[arg(long, value_name = "PATH", num_args = 1..)]
    pub from_text: Vec<PathBuf>,
    /// Record kinds made from --from-store / --from-text chunks: reconstruction
    /// (the chunk repeated) and continuation (the first 40-70% of the chunk's
    /// tokens in, the rest out), as shares.
    #[arg(
        long,
        value_name = "reconstruct=R,continue=C",
        default_value = "reconstruct=0.7,continue=0.3"
    )]
    pub mix: Mix,
    /// Chunk size for --from-text [default: 1000, as ingest].
    #[arg(long, value_name = "N")]
    pub chunk_tokens: Option<usize>,
    /// Output directory: the trained checkpoint (released layout), the loss
    /// curve (loss.svg) and the run's record and state (train/).
    #[arg(long, value_name = "DIR", required_unless_present = "plot")]
    pub out: Option<PathBuf>,
    /// Optimizer steps to run (instead of --epochs).
    #[arg(long, value_name = "N", conflicts_with = "epochs")]
    pub steps: Option<usize>,
    /// Passes over the data [default: 5, upstream's].
    #[arg(long, value_name = "E")]
    pub epochs: Option<f64>,
    /// Peak learning rate.
    #[arg(long, default_value_t = 1e-5)]
    pub lr: f64,
    /// Records per micro-batch.
    #[arg(long, value_name = "B", default_value_t = 2)]
    pub micro_batch: usize,
    /// Micro-batches per optimizer step (the step's gradient is the mean of
    /// their mean losses' gradients).
    #[arg(long, value_name = "G", default_value_t = 16)]
    pub grad_accum: usize,
    /// Share of the steps spent warming the learning rate up from 0 (then a
    /// cosine to 0); the first step runs at lr 0 as upstream's does.
    #[arg(long, default_value_t = 0.01)]
    pub warmup_ratio: f64,
    /// AdamW's decoupled weight decay (not on biases and norm weights).
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Clip the global gradient norm to this (0: no clipping).
    #[arg(long, default_value_t = 1.0)]
    pub max_grad_norm: f64,
    /// Record order in each epoch.
    #[arg(long, value_enum, default_value_t = OrderArg::Shuffle)]
    pub order: OrderArg,
    /// Seed of the shuffle, the --mix choice and LoRA's initialisation.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Records whose decoder ids reach this many are skipped and counted
    /// (never cut), as upstream's model_max_length.
    #[arg(long, value_name = "N", default_value_t = 8192)]
    pub max_length: usize,
    /// What trains: `all` (upstream's recipe), or a comma-separated list of
    /// encoder, queries, projector, decoder.
    #[arg(long, value_name = "all|LIST", default_value = "all")]
    pub train: String,
    /// The decoder's learning rate as a multiple of --lr (its own parameter group).
    #[arg(long, value_name = "R", default_value_t = 1.0)]
    pub decoder_lr_ratio: f64,
    /// Train rank-R LoRA adapters on the encoder's and decoder's linear
    /// layers (those in --train) instead of their weights; merged on save.
    #[arg(long, value_name = "R")]
    pub lora_rank: Option<usize>,
    /// LoRA's alpha (the adapter's output is scaled by alpha / rank) [default: the rank].
    #[arg(long, value_name = "A", requires = "lora_rank")]
    pub lora_alpha: Option<f64>,
    /// Linear layers LoRA adapts: q, k, v, o, gate, up, down.
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "q,k,v,o,gate,up,down"
    )]
    pub lora_targets: Vec<String>,
    /// Also write the LoRA adapters alone (OUT/lora/).
    #[arg(long, requires = "lora_rank")]
    pub lora_keep: bool,
    /// Save the resumable training state every N steps (0: never).
    #[arg(long, value_name = "N", default_value_t = 500)]
    pub save_every: usize,
    /// Continue the run recorded in --out (from the start when nothing was
    /// saved yet; a finished run is reported and left as it is).
    #[arg(long)]
    pub resume: bool,
    /// Records to evaluate on (loss and teacher-forced token accuracy),
    /// before training, every --eval-every steps and at the end.
    #[arg(long, value_name = "FILE")]
    pub eval_data: Option<PathBuf>,
    /// Evaluate every N steps (0: only before and after).
    #[arg(long, value_name = "N", default_value_t = 0, requires = "eval_data")]
    pub eval_every: usize,
    /// One JSON object per step and evaluation, then the final report.
    #[arg(long)]
    pub json: bool,
    /// Dtype of the saved checkpoint (f32: the master weights as trained).
    #[arg(long, value_enum, default_value_t = SaveDtype::F32)]
    pub save_dtype: SaveDtype,
    /// Keep only each block's input and recompute the block in the backward
    /// pass (less memory, about a third more compute).
    #[arg(long)]
    pub gradient_checkpointing: bool,
    /// Dtype of the forward and backward products (master weights and
    /// moments are f32 in any case).
    #[arg(long, value_enum, default_value_t = ComputeDtype::Auto)]
    pub compute_dtype: ComputeDtype,
    /// Records per forward pass [default: 1 on the CPU (no padding), the
    /// micro-batch on a GPU]; the gradient is the same either way.
    #[arg(long, value_name = "N")]
    pub pack: Option<usize>,
    /// Print the parameter counts and the memory plan, then stop.
    #[arg(long)]
    pub dry_run: bool,
    /// Memory to plan for, in GB (default: what the device reports).
    #[arg(long, value_name = "GB")]
    pub memory: Option<f64>,
    /// Only write DIR/loss.svg from the run recorded in DIR.
    #[arg(long, value_name = "DIR")]
    pub plot: Option<PathBuf>,
}

/// `--train all|LIST`.
fn parse_parts(s: &str) -> Result<Vec<Part>> {
    if s.trim() == "all" {
        return Ok(Part::ALL.to_vec());
    }
    let mut out = Vec::new();
    for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let p = Part::parse(name).with_context(|| {
            format!(
                "--train: unknown part `{}` (expected `all`, or a comma-separated list of \
                 encoder, queries, projector, decoder)",
                name.escape_debug()
            )
        })?;
        if !out.contains(&p) {
            out.push(p);
        }
    }
    if out.is_empty() {
        bail!("--train: no part named (expected `all`, or parts such as `queries,projector`)");
    }
    Ok(out)
}

fn selection(a: &TrainArgs) -> Result<Selection> {
    let parts = parse_parts(&a.train)?;
    let lora = match a.lora_rank {
        None => None,
        Some(0) => bail!("--lora-rank must be at least 1"),
        Some(rank) => {
            for t in &a.lora_targets {
                if !LORA_TARGETS.contains(&t.as_str()) {
                    bail!(
                        "--lora-targets: unknown layer `{}` (expected q, k, v, o, gate, up, down)",
                        t.escape_debug()
                    );
                }
            }
            if !parts
                .iter()
                .any(|p| matches!(p, Part::Encoder | Part::Decoder))
            {
                bail!("--lora-rank adapts the encoder or decoder: add one of them to --train");
            }
            Some(LoraConfig {
                rank,
                alpha: a.lora_alpha.unwrap_or(rank as f64),
                targets: a.lora_targets.clone(),
            })
        }
    };
    Ok(Selection {
        parts: parts.into_iter().collect(),
        lora,
    })
}

fn check_numbers(a: &TrainArgs) -> Result<()> {
    let positive = [
        ("--micro-batch", a.micro_batch),
        ("--grad-accum", a.grad_accum),
        ("--max-length", a.max_length),
    ];
    for (flag, v) in positive {
        if v == 0 {
            bail!("{flag} must be at least 1");
        }
    }
    if a.steps == Some(0) {
        bail!("--steps must be at least 1");
    }
    if let Some(e) = a.epochs {
        if !(e.is_finite() && e > 0.0) {
            bail!("--epochs must be a positive number");
        }
    }
    if !(a.lr.is_finite() && a.lr >= 0.0) {
        bail!("--lr must be a number of 0 or more");
    }
    if !(0.0..=1.0).contains(&a.warmup_ratio) {
        bail!("--warmup-ratio must lie in 0..1");
    }
    if !(a.decoder_lr_ratio.is_finite() && a.decoder_lr_ratio >= 0.0) {
        bail!("--decoder-lr-ratio must be a number of 0 or more");
    }
    Ok(())
}

/// Escapes control characters of a name shown on a terminal.
fn esc(s: &str) -> String {
    s.chars()
        .flat_map(|c| match c.is_control() {
            true => c.escape_default().collect::<Vec<_>>(),
            false => vec![c],
        })
        .collect()
}

/// Every training record the flags name, in order: files, then the store's
/// chunks, then the text files' chunks.
fn gather(
    ctx_store: &Path,
    a: &TrainArgs,
    tok: &c3::tokenize::C3Tokenizer,
) -> Result<Vec<(Origin, c3::train::example::Record)>> {
    let mut recs = read_files(&a.data)?;
    let mut chunks = Vec::new();
    if a.from_store {
        let store = super::common::open(ctx_store)?;
        chunks.extend(store_chunks(&store)?);
    }
    if !a.from_text.is_empty() {
        let n = a.chunk_tokens.unwrap_or(c3::chunk::DEFAULT_CHUNK_TOKENS);
        chunks.extend(text_chunks(&a.from_text, tok, n)?);
    }
    if !chunks.is_empty() {
        recs.extend(chunk_records(chunks, tok, a.mix, a.seed)?);
    } else if a.from_store || !a.from_text.is_empty() {
        bail!("--from-store / --from-text found no text to train on");
    }
    Ok(recs)
}

/// Progress on stderr (a line that updates in place on a terminal, a line
/// per step otherwise) or JSON objects on stdout.
struct Printer {
    json: bool,
    tty: bool,
}

fn clock(s: f64) -> String {
    if !s.is_finite() {
        return "?".into();
    }
    let s = s.round() as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

impl Progress for Printer {
    fn step(&mut self, r: &StepReport) {
        let s = &r.record.stats;
        if self.json {
            let mut v = serde_json::to_value(r.record).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.insert("event".into(), "step".into());
                o.insert("total_steps".into(), r.total_steps.into());
                o.insert("tokens_per_s".into(), json!(r.tokens_per_s));
                o.insert("eta_s".into(), json!(r.eta_s));
            }
            say!("{v}");
            return;
        }
        let line = format!(
            "step {}/{}  loss {:.4}  lr {:.2e}  {:.0} tok/s  ETA {}",
            r.record.step + 1,
            r.total_steps,
            s.loss,
            s.lr,
            r.tokens_per_s,
            clock(r.eta_s)
        );
        let mut err = std::io::stderr();
        match self.tty {
            true => {
                let _ = write!(err, "\r\x1b[2K{line}");
                let _ = err.flush();
            }
            false => {
                let _ = writeln!(err, "{line}");
            }
        }
    }

    fn eval(&mut self, e: &EvalRecord) {
        if self.json {
            let mut v = serde_json::to_value(e).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.insert("event".into(), "eval".into());
            }
            say!("{v}");
            return;
        }
        self.note(&format!(
            "eval after step {}: loss {:.4}, token accuracy {:.4} over {} targets",
            e.step, e.loss, e.accuracy, e.targets
        ));
    }

    fn note(&mut self, msg: &str) {
        let lead = if self.tty && !self.json {
            "\r\x1b[2K"
        } else {
            ""
        };
        say_err!("{lead}c3 train: {msg}");
    }
}

fn print_report(v: &serde_json::Value, json_out: bool) {
    if json_out {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            o.insert("event".into(), "report".into());
        }
        say!("{v}");
        return;
    }
    let g = |k: &str| v.get(k).cloned().unwrap_or(serde_json::Value::Null);
    say!(
        "trained {} of {} steps in {:.1} s",
        g("steps"),
        g("total_steps"),
        g("seconds").as_f64().unwrap_or(0.0)
    );
    say!(
        "records {}, skipped (too long) {}, non-finite steps {}, tokens {}",
        g("records"),
        g("skipped_records"),
        g("nonfinite_steps"),
        g("tokens")
    );
    if let Some(l) = g("final_loss").as_f64() {
        say!("final loss {l:.4}");
    }
    if let Some(e) = v.get("eval").filter(|e| !e.is_null()) {
        say!(
            "eval loss {:.4}, token accuracy {:.4}",
            e["loss"].as_f64().unwrap_or(f64::NAN),
            e["accuracy"].as_f64().unwrap_or(f64::NAN)
        );
    }
    if let Some(b) = g("peak_rss_bytes").as_u64() {
        say!("peak memory {}", gib(b));
    }
    for s in g("skipped").as_array().into_iter().flatten() {
        say!("skipped: {}", esc(s.as_str().unwrap_or_default()));
    }
    say!(
        "model written to {}",
        esc(g("out").as_str().unwrap_or_default())
    );
}

pub fn run(store: &Path, ctx: &ModelCtx, a: &TrainArgs) -> Result<i32> {
    if let Some(dir) = &a.plot {
        let p = c3::train::run::plot_dir(dir)?;
        say!("{}", esc(&p.display().to_string()));
        return Ok(0);
    }
    let out = a.out.clone().context("--out DIR is required")?;
    if a.data.is_empty() && !a.from_store && a.from_text.is_empty() {
        bail!("no training data: pass --data FILE, --from-store or --from-text PATH");
    }
    check_numbers(a)?;
    let sel = selection(a)?;
    // Nothing below writes to --out until the run starts.
    let start = run::inspect_out(&out, a.resume)?;
    if let OutDir::Finished(st) = &start {
        if !a.json {
            say_err!(
                "c3 train: {} holds a finished run; nothing to do",
                esc(&out.display().to_string())
            );
        }
        print_report(&run::finished_report(st), a.json);
        return Ok(0);
    }
    let dir = ctx.model_dir()?.to_path_buf();
    let ckpt = c3::train::Checkpoint::open(&dir)?;
    let tok = ckpt.tokenizer()?;
    let device = ctx.device()?;
    let dtype = match a.compute_dtype {
        ComputeDtype::F32 => DType::F32,
        ComputeDtype::Bf16 => DType::BF16,
        ComputeDtype::Auto if device.is_cpu() => DType::F32,
        ComputeDtype::Auto => DType::BF16,
    };
    let limits = Limits {
        max_length: a.max_length,
        encoder_positions: ckpt.encoder_config.max_position_embeddings,
        decoder_positions: ckpt.config.llm.max_position_embeddings,
    };
    let records = gather(store, a, &tok)?;
    let data = Dataset::build(&tok, ckpt.latent_len(), records, limits)?;
    if data.is_empty() {
        bail!(
            "no record to train on ({} skipped as longer than --max-length {} or the model's positions)",
            data.too_long.len(),
            a.max_length
        );
    }
    let eval = match &a.eval_data {
        Some(p) => {
            let d = Dataset::build(
                &tok,
                ckpt.latent_len(),
                read_files(std::slice::from_ref(p))?,
                limits,
            )?;
            if d.is_empty() {
                bail!(
                    "--eval-data {}: no record fits",
                    esc(&p.display().to_string())
                );
            }
            Some(d)
        }
        None => None,
    };
    let pack = a
        .pack
        .unwrap_or(if device.is_cpu() { 1 } else { a.micro_batch })
        .max(1);
    let spe = data.len().div_ceil(a.micro_batch).div_ceil(a.grad_accum);
    let total_steps = match a.steps {
        Some(n) => n,
        None => ((a.epochs.unwrap_or(5.0) * spe as f64).ceil() as usize).max(1),
    };
    let recipe = Recipe {
        lr: a.lr,
        decoder_lr_ratio: a.decoder_lr_ratio,
        warmup_ratio: a.warmup_ratio,
        max_grad_norm: a.max_grad_norm,
        adam: AdamConfig {
            weight_decay: a.weight_decay,
            ..AdamConfig::default()
        },
        micro_batch: a.micro_batch,
        grad_accum: a.grad_accum,
        order: match a.order {
            OrderArg::File => Order::File,
            OrderArg::Shuffle => Order::Shuffle,
        },
        seed: a.seed,
        max_length: a.max_length,
        total_steps,
        train: run::part_names(&sel),
        lora: sel.lora.clone(),
        compute_dtype: dtype_name(dtype),
        pack,
        records: data.len(),
        data: data.signature(),
    };
    let save_dtype = match a.save_dtype {
        SaveDtype::F32 => DType::F32,
        SaveDtype::Bf16 => DType::BF16,
        SaveDtype::F16 => DType::F16,
    };
    let job = Job {
        ckpt,
        data,
        eval,
        recipe,
        sel,
        device: device.clone(),
        dtype,
        opts: RunOptions {
            out: out.clone(),
            save_every: a.save_every,
            eval_every: a.eval_every,
            recompute: a.gradient_checkpointing,
            save: SaveOptions {
                dtype: save_dtype,
                lora_keep: a.lora_keep,
            },
        },
    };
    let (counts, plan) = run::job_plan(&job);
    let cap = match a.memory {
        Some(gb) => Some((gb * 1e9) as u64),
        None => capacity(!device.is_cpu()),
    };
    let fits = cap.is_none_or(|c| plan.total <= c);
    if a.dry_run {
        print_plan(&job, &counts, &plan, cap, a.json);
        if !fits {
            bail!("this run would not fit: see the plan above");
        }
        return Ok(0);
    }
    if !fits {
        bail!(
            "the run needs about {} (weights {}, gradients {}, moments {}, activations {}) but \
             the device offers {}: train fewer parts (--train), use --lora-rank, \
             --gradient-checkpointing, a smaller --micro-batch / --pack or --max-length \
             (c3 train --dry-run shows the plan)",
            gib(plan.total),
            gib(plan.weights),
            gib(plan.gradients),
            gib(plan.moments),
            gib(plan.activations),
            gib(cap.unwrap_or(0))
        );
    }
    if !job.data.too_long.is_empty() && !a.json {
        say_err!(
            "c3 train: {} record(s) skipped as too long (listed in the report)",
            job.data.too_long.len()
        );
    }
    let mut printer = Printer {
        json: a.json,
        tty: std::io::stderr().is_terminal(),
    };
    let report = run::run(job, start, &mut printer)?;
    if printer.tty && !a.json {
        say_err!();
    }
    print_report(&serde_json::to_value(&report)?, a.json);
    Ok(0)
}

fn print_plan(
    job: &Job,
    counts: &[c3::train::plan::PartCount],
    plan: &c3::train::plan::MemoryPlan,
    cap: Option<u64>,
    json_out: bool,
) {
    let device = if job.device.is_cpu() { "cpu" } else { "cuda" };
    if json_out {
        let v = json!({
            "event": "plan",
            "device": device,
            "compute_dtype": dtype_name(job.dtype),
            "parts": counts,
            "memory": plan,
            "capacity_bytes": cap,
            "fits": cap.is_none_or(|c| plan.total <= c),
            "records": job.data.len(),
            "skipped_records": job.data.too_long.len(),
            "total_steps": job.recipe.total_steps,
        });
        say!("{v}");
        return;
    }
    say!("{:<10} {:>16} {:>16}", "part", "parameters", "trainable");
    for c in counts {
        say!("{:<10} {:>16} {:>16}", c.part.name(), c.params, c.trainable);
    }
    let total: u64 = counts.iter().map(|c| c.params).sum();
    let trainable: u64 = counts.iter().map(|c| c.trainable).sum();
    say!("{:<10} {:>16} {:>16}", "total", total, trainable);
    say!();
    say!("memory plan ({device}, compute {}):", dtype_name(job.dtype));
    for (k, v) in [
        ("weights", plan.weights),
        ("gradients", plan.gradients),
        ("moments", plan.moments),
        ("activations", plan.activations),
        ("total", plan.total),
    ] {
        say!("  {k:<12} {:>12}", gib(v));
    }
    match cap {
        Some(c) => say!(
            "  {:<12} {:>12}  ({})",
            "available",
            gib(c),
            if plan.total <= c {
                "fits"
            } else {
                "does NOT fit"
            }
        ),
        None => say!("  available    unknown (pass --memory GB to check)"),
    }
    say!(
        "{} records ({} skipped as too long), {} steps",
        job.data.len(),
        job.data.too_long.len(),
        job.recipe.total_steps
    );
}
