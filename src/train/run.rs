//! A training run from start to finish: the output directory's state
//! (fresh, resumable, finished), the step loop with evaluation and atomic
//! saves, and the trained checkpoint, loss curve and report at the end.
//! What a run prints is the caller's: it hands [`Progress`] each step.

use super::data::{Batches, Dataset};
use super::example::Example;
use super::load::{load_checkpoint, Selection};
use super::model::{C3Net, PassOptions};
use super::optim::{AdamW, Schedule};
use super::params::{Params, Part};
use super::plan::{self, MemoryPlan, PartCount, PlanInput};
use super::save::{save_checkpoint, SaveOptions};
use super::state::{self, EvalRecord, Recipe, RunState, StepRecord};
use super::step::{accumulate, apply, StepLr};
use crate::cascade::c3::checkpoint::C3Checkpoint;
use crate::{Error, Result};
use candle_core::{DType, Device};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Name of the loss curve written into the output directory.
pub const PLOT_FILE: &str = "loss.svg";

/// How a run behaves (none of it changes the weights).
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub out: PathBuf,
    /// Save the resumable state every this many steps (0: never).
    pub save_every: usize,
    /// Evaluate every this many steps (0: only before and after).
    pub eval_every: usize,
    /// Gradient checkpointing (recompute each block in the backward pass).
    pub recompute: bool,
    pub save: SaveOptions,
}

/// One step as the caller sees it.
pub struct StepReport<'a> {
    pub record: &'a StepRecord,
    pub total_steps: usize,
    /// Tokens read per second in this process.
    pub tokens_per_s: f64,
    /// Seconds left at this process's pace.
    pub eta_s: f64,
}

/// Where a run tells what it does.
pub trait Progress {
    fn step(&mut self, r: &StepReport);
    fn eval(&mut self, e: &EvalRecord);
    /// A sentence worth showing (a skipped step, a save, a resume).
    fn note(&mut self, msg: &str);
}

/// What `--out` holds.
pub enum OutDir {
    /// Nothing of a run yet: start from step 0.
    Fresh,
    /// A run with saved state: continue it.
    Resume(Box<RunState>),
    /// A finished run: report it, change nothing.
    Finished(Box<RunState>),
}

fn is_empty_dir(dir: &Path) -> Result<bool> {
    Ok(std::fs::read_dir(dir)
        .map_err(Error::io(dir))?
        .next()
        .is_none())
}

/// What `out` holds, refusing a directory a run must not write into:
/// without `resume`, anything but a missing or empty directory; with it,
/// a directory that holds a model but no run.
pub fn inspect_out(out: &Path, resume: bool) -> Result<OutDir> {
    if !out.exists() {
        return Ok(OutDir::Fresh);
    }
    if !out.is_dir() {
        return Err(Error::OutputTaken {
            dir: out.to_path_buf(),
            holds: "not a directory".into(),
        });
    }
    if is_empty_dir(out)? {
        return Ok(OutDir::Fresh);
    }
    let run = state::read_run(out)?;
    let saved = state::read_state_header(out)?;
    let taken = |holds: &str| {
        Err(Error::OutputTaken {
            dir: out.to_path_buf(),
            holds: holds.into(),
        })
    };
    if !resume {
        return match (&run, &saved) {
            (Some(r), _) if r.finished => taken("holds a finished training run"),
            (Some(_), _) | (_, Some(_)) => taken("holds an unfinished training run"),
            _ if out.join("config.json").exists() => taken("holds a model"),
            _ => taken("is not empty"),
        };
    }
    match (run, saved) {
        (Some(r), _) if r.finished => Ok(OutDir::Finished(Box::new(r))),
        (_, Some(s)) => Ok(OutDir::Resume(Box::new(s))),
        _ if out.join("config.json").exists() => taken("holds a model and no training run"),
        // Killed before the first save: nothing to continue from.
        _ => Ok(OutDir::Fresh),
    }
}

/// A run's inputs.
pub struct Job {
    pub ckpt: C3Checkpoint,
    pub data: Dataset,
    pub eval: Option<Dataset>,
    pub recipe: Recipe,
    pub sel: Selection,
    pub device: Device,
    pub dtype: DType,
    pub opts: RunOptions,
}

/// The final report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub out: String,
    pub steps: usize,
    pub total_steps: usize,
    pub records: usize,
    /// Records left out because they do not fit (never cut).
    pub skipped_records: usize,
    pub skipped: Vec<String>,
    pub nonfinite_steps: usize,
    pub tokens: usize,
    pub targets: usize,
    pub seconds: f64,
    pub peak_rss_bytes: Option<u64>,
    pub final_loss: Option<f64>,
    pub eval: Option<EvalRecord>,
    pub trainable_params: u64,
    pub files: Vec<String>,
    /// The step this process resumed from (None: it started the run).
    pub resumed_from: Option<usize>,
}

/// Parameter counts and the memory plan of a job (configs only).
pub fn job_plan(job: &Job) -> (Vec<PartCount>, MemoryPlan) {
    let (te, td) = job.data.longest();
    let pack = job.recipe.pack;
    let rows = {
        let mut t: Vec<usize> = job
            .data
            .examples
            .iter()
            .map(Example::target_count)
            .collect();
        t.sort_unstable_by(|a, b| b.cmp(a));
        t.iter().take(pack).sum()
    };
    let input = PlanInput {
        encoder: &job.ckpt.encoder_config,
        decoder: &job.ckpt.config.llm,
        latent_len: job.ckpt.latent_len(),
        sel: &job.sel,
        compute: job.dtype,
        pack,
        enc_len: te,
        dec_len: td,
        label_rows: rows,
        recompute: job.opts.recompute,
    };
    let lm_head = !job.ckpt.config.llm.tie_word_embeddings;
    (plan::count(&input, lm_head), plan::memory(&input, lm_head))
}

/// Peak resident memory of this process (Linux), in bytes.
pub fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? << 10)
}

/// Loss and token accuracy over `data`, `pack` records per forward.
pub fn evaluate(
    net: &C3Net,
    params: &Params,
    data: &Dataset,
    pack: usize,
    step: usize,
) -> Result<EvalRecord> {
    let (mut loss, mut correct, mut rows) = (0.0, 0usize, 0usize);
    for chunk in data.examples.chunks(pack.max(1)) {
        let refs: Vec<&Example> = chunk.iter().collect();
        let s = net.evaluate(params, &refs)?;
        loss += s.loss;
        correct += s.correct;
        rows += s.rows;
    }
    Ok(EvalRecord {
        step,
        loss: loss / rows.max(1) as f64,
        accuracy: correct as f64 / rows.max(1) as f64,
        targets: rows,
    })
}

/// The loss curve of a run record.
pub fn plot(st: &RunState, title: &str) -> String {
    let train: Vec<(f64, f64)> = st
        .log
        .iter()
        .map(|r| ((r.step + 1) as f64, r.stats.loss))
        .collect();
    let eval: Vec<(f64, f64)> = st.evals.iter().map(|e| (e.step as f64, e.loss)).collect();
    super::plot::loss_svg(title, &train, &eval)
}

/// Writes `DIR/loss.svg` from `DIR/train/run.json` (`c3 train --plot`).
pub fn plot_dir(dir: &Path) -> Result<PathBuf> {
    let st = state::read_run(dir)?.ok_or_else(|| {
        Error::Input(format!(
            "{}: no training run here (no {}/{})",
            dir.display(),
            state::TRAIN_DIR,
            state::RUN_FILE
        ))
    })?;
    let path = dir.join(PLOT_FILE);
    super::st_write::write_atomic(&path, plot(&st, &dir.display().to_string()).as_bytes())?;
    Ok(path)
}

fn report_of(
    st: &RunState,
    job_out: &Path,
    data: Option<&Dataset>,
    files: Vec<String>,
    resumed: Option<usize>,
    trainable: u64,
) -> Report {
    let (records, skipped_records, skipped) = match data {
        Some(d) => (
            d.len(),
            d.too_long.len(),
            d.too_long
                .iter()
                .take(20)
                .map(|t| {
                    format!(
                        "{} ({} decoder ids, {} encoder ids)",
                        t.origin, t.decoder_ids, t.encoder_ids
                    )
                })
                .collect(),
        ),
        None => (st.recipe.records, 0, Vec::new()),
    };
    Report {
        out: job_out.display().to_string(),
        steps: st.step,
        total_steps: st.recipe.total_steps,
        records,
        skipped_records,
        skipped,
        nonfinite_steps: st.nonfinite_steps,
        tokens: st.log.iter().map(|r| r.tokens).sum(),
        targets: st.log.iter().map(|r| r.targets).sum(),
        seconds: st.seconds,
        peak_rss_bytes: peak_rss(),
        final_loss: st.log.last().map(|r| r.stats.loss),
        eval: st.evals.last().cloned(),
        trainable_params: trainable,
        files,
        resumed_from: resumed,
    }
}

/// The report of a finished run, as recorded.
pub fn finished_report(st: &RunState) -> serde_json::Value {
    st.report
        .clone()
        .unwrap_or_else(|| serde_json::json!({"steps": st.step, "finished": true}))
}

/// Runs (or continues) the job to the end.
pub fn run(job: Job, start: OutDir, progress: &mut dyn Progress) -> Result<Report> {
    let out = job.opts.out.clone();
    let model_sig = state::model_signature(&job.ckpt.dir)?;
    let (mut params, net) =
        load_checkpoint(&job.ckpt, &job.sel, job.dtype, &job.device, job.recipe.seed)?;
    let trainable: u64 = params
        .trainable_ids()
        .iter()
        .map(|&i| params.get(i).elem_count() as u64)
        .sum();
    if trainable == 0 {
        return Err(Error::Input(
            "nothing trains (check --train and --lora-targets)".into(),
        ));
    }
    let mut opt = AdamW::new(job.recipe.adam);
    let (mut st, resumed) = match start {
        OutDir::Finished(_) => unreachable!("a finished run is reported, not run"),
        OutDir::Fresh => (
            RunState {
                version: 1,
                recipe: job.recipe.clone(),
                model: job.ckpt.dir.display().to_string(),
                model_signature: model_sig,
                step: 0,
                adam_t: 0,
                log: Vec::new(),
                evals: Vec::new(),
                nonfinite_steps: 0,
                seconds: 0.0,
                finished: false,
                report: None,
            },
            None,
        ),
        OutDir::Resume(s) => {
            let s = *s;
            check_same_run(&s, &job.recipe, &model_sig, &out)?;
            state::restore(&out, &s, &mut params, &mut opt)?;
            progress.note(&format!(
                "resuming at step {} of {}",
                s.step, s.recipe.total_steps
            ));
            let step = s.step;
            (s, Some(step))
        }
    };
    let r = &job.recipe;
    let batches = Batches {
        records: job.data.len(),
        micro_batch: r.micro_batch,
        grad_accum: r.grad_accum,
        order: r.order,
        seed: r.seed,
    };
    let sched = Schedule::new(r.lr, r.warmup_ratio, r.total_steps);
    let pass = PassOptions {
        recompute: job.opts.recompute,
    };
    if let (Some(ev), true) = (&job.eval, st.step == 0 && st.evals.is_empty()) {
        let e = evaluate(&net, &params, ev, r.pack, 0)?;
        progress.eval(&e);
        st.evals.push(e);
    }
    let started = Instant::now();
    let seconds_before = st.seconds;
    let (first_step, mut tokens_here) = (st.step, 0usize);
    while st.step < r.total_steps {
        let micro: Vec<Vec<&Example>> = batches
            .step(st.step)
            .into_iter()
            .map(|mb| mb.into_iter().map(|i| &job.data.examples[i]).collect())
            .collect();
        let acc = accumulate(&net, &params, &micro, r.pack, pass)?;
        let lr = StepLr {
            lr: sched.lr(st.step),
            decoder_ratio: r.decoder_lr_ratio,
        };
        let stats = apply(&mut params, &mut opt, &acc, lr, r.max_grad_norm)?;
        drop(acc);
        if stats.skipped {
            st.nonfinite_steps += 1;
            progress.note(&format!(
                "step {}: loss {} / gradient norm {} not finite; step skipped (weights unchanged)",
                st.step, stats.loss, stats.grad_norm
            ));
        }
        let tokens: usize = micro
            .iter()
            .flatten()
            .map(|e| e.enc_ids.len() + e.dec_ids.len())
            .sum();
        let targets: usize = micro.iter().flatten().map(|e| e.target_count()).sum();
        tokens_here += tokens;
        st.log.push(StepRecord {
            step: st.step,
            stats,
            tokens,
            targets,
        });
        st.step += 1;
        st.adam_t = opt.t;
        let elapsed = started.elapsed().as_secs_f64();
        st.seconds = seconds_before + elapsed;
        let done_here = (st.step - first_step) as f64;
        progress.step(&StepReport {
            record: st.log.last().expect("just pushed"),
            total_steps: r.total_steps,
            tokens_per_s: tokens_here as f64 / elapsed.max(1e-9),
            eta_s: elapsed / done_here * (r.total_steps - st.step) as f64,
        });
        let last = st.step == r.total_steps;
        if let Some(ev) = &job.eval {
            if (job.opts.eval_every > 0 && st.step % job.opts.eval_every == 0) || last {
                let e = evaluate(&net, &params, ev, r.pack, st.step)?;
                progress.eval(&e);
                st.evals.push(e);
            }
        }
        if job.opts.save_every > 0 && st.step % job.opts.save_every == 0 && !last {
            state::save(&out, &st, &params, &opt)?;
            progress.note(&format!("state saved at step {}", st.step));
        }
    }
    // The end: state first (a kill during the checkpoint write resumes
    // here and writes it again), then the model, the picture, the record.
    // With --save-every 0 nothing is saved: a kill now loses the run.
    let saved = resumed == Some(st.step) && state::state_path(&out).is_file();
    if job.opts.save_every > 0 && !saved {
        state::save(&out, &st, &params, &opt)?;
    }
    let lora = job.recipe.lora.as_ref();
    let files = save_checkpoint(&job.ckpt, &params, lora, &out, job.opts.save)?;
    let svg = out.join(PLOT_FILE);
    super::st_write::write_atomic(&svg, plot(&st, &out.display().to_string()).as_bytes())?;
    let mut names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    names.push(svg.display().to_string());
    let report = report_of(&st, &out, Some(&job.data), names, resumed, trainable);
    st.finished = true;
    st.report = Some(serde_json::to_value(&report).expect("the report serialises"));
    state::write_run(&out, &st)?;
    state::remove_state(&out);
    Ok(report)
}

/// Refuses to continue a run with another recipe, data or model.
fn check_same_run(saved: &RunState, recipe: &Recipe, model_sig: &str, out: &Path) -> Result<()> {
    if saved.model_signature != model_sig {
        return Err(Error::Input(format!(
            "{}: the run was started from another model ({}); resume with that --model",
            out.display(),
            saved.model
        )));
    }
    let (a, b) = (
        serde_json::to_value(&saved.recipe).expect("serialises"),
        serde_json::to_value(recipe).expect("serialises"),
    );
    if a != b {
        let diff: Vec<String> = a
            .as_object()
            .expect("object")
            .iter()
            .filter(|(k, v)| b.get(k.as_str()) != Some(v))
            .map(|(k, v)| {
                format!(
                    "{k}: run {v}, now {}",
                    b.get(k.as_str()).unwrap_or(&serde_json::Value::Null)
                )
            })
            .collect();
        return Err(Error::Input(format!(
            "{}: --resume with settings or data other than the run's ({}); pass the run's own flags and data",
            out.display(),
            diff.join("; ")
        )));
    }
    Ok(())
}

/// The trainable parts as names, in order.
pub fn part_names(sel: &Selection) -> Vec<String> {
    Part::ALL
        .into_iter()
        .filter(|p| sel.parts.contains(p))
        .map(|p| p.name().to_string())
        .collect()
}
