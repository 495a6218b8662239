//! `c3 recover`: repair a store that `c3 check` found damaged.
//!
//! Exit code: 0 when every document came back (or nothing was wrong), 1
//! when some could not be recovered (they are listed).

use std::io::Write;
use std::path::{Path, PathBuf};

use c3::store::recover::{self, Action, ModelReencoder, Planned};
use serde_json::json;

use super::common::{default_batch, load_encoder, open, refresh_index, ModelCtx, Out};

#[derive(clap::Args, Debug)]
pub struct RecoverArgs {
    /// Restore documents from this file written by `c3 export` (those the
    /// database lost; every one it holds when the store has no manifest).
    #[arg(long, value_name = "FILE")]
    pub from_export: Option<PathBuf>,
    /// Say what would be done, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print a JSON report on stdout.
    #[arg(long)]
    pub json: bool,
}

fn action_name(a: Action) -> &'static str {
    match a {
        Action::Keep => "keep",
        Action::FromExport => "from export",
        Action::Reingest => "re-ingest",
        Action::Drop => "DROP",
    }
}

fn print_docs(docs: &[Planned]) -> std::io::Result<()> {
    for d in docs {
        writeln!(
            Out::new(),
            "{:>6}  {:<11}  {}  {}",
            d.id,
            action_name(d.action),
            c3::store::shown(&d.source),
            d.detail
        )?;
    }
    Ok(())
}

/// `c3 recover`.
pub fn run(store_dir: &Path, ctx: &ModelCtx, args: &RecoverArgs) -> anyhow::Result<i32> {
    let plan = recover::plan(store_dir, args.from_export.as_deref())?;
    if !plan.damaged {
        if args.json {
            writeln!(
                Out::new(),
                "{}",
                serde_json::to_string_pretty(&json!({"damaged": false, "plan": plan}))?
            )?;
        } else {
            c3::note!(
                "c3: store {} is intact: nothing to recover",
                store_dir.display()
            );
        }
        return Ok(0);
    }
    if args.dry_run {
        if args.json {
            writeln!(Out::new(), "{}", serde_json::to_string_pretty(&plan)?)?;
        } else {
            for p in &plan.problems {
                writeln!(Out::new(), "problem: {p}")?;
            }
            print_docs(&plan.documents)?;
            c3::note!(
                "c3: would keep {}, restore {} from the export, re-ingest {}, drop {} (dry run: \
                 nothing changed)",
                plan.count(Action::Keep),
                plan.count(Action::FromExport),
                plan.count(Action::Reingest),
                plan.count(Action::Drop)
            );
        }
        return Ok(0);
    }
    let encoder = if plan.count(Action::Reingest) > 0 && ctx.model.is_some() {
        Some(load_encoder(ctx, None)?.0)
    } else {
        None
    };
    let reencoder = encoder.as_ref().map(|e| ModelReencoder {
        model: e.compressor(),
        sizer: e.tokenizer(),
        batch_size: default_batch(e.compressor()),
    });
    let outcome = recover::apply(
        plan,
        reencoder.as_ref().map(|r| r as &dyn recover::Reencoder),
        !args.json,
    )?;
    let store = open(store_dir)?;
    refresh_index(&store, !args.json);
    if args.json {
        writeln!(Out::new(), "{}", serde_json::to_string_pretty(&outcome)?)?;
    } else {
        print_docs(&outcome.documents)?;
        c3::note!(
            "c3: recovered {}: kept {}, restored {} from the export, re-ingested {}, dropped {}; \
             the damaged files are in {}",
            store_dir.display(),
            outcome.kept,
            outcome.from_export,
            outcome.reingested,
            outcome.dropped,
            outcome
                .backup
                .as_ref()
                .map_or("(none)".into(), |b| b.display().to_string())
        );
    }
    Ok(if outcome.dropped == 0 { 0 } else { 1 })
}
