//! `c3 merge --out DIR SRC...`.

use std::path::PathBuf;

use c3::merge;

#[derive(clap::Args, Debug)]
pub struct MergeArgs {
    /// The new store to write (must not exist, or be empty). Built in
    /// DIR.merging and renamed when complete; a killed merge resumes there.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Store directories and `c3 export` files of one model.
    #[arg(required = true, value_name = "SRC")]
    pub inputs: Vec<PathBuf>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `c3 merge`. The global `--store` is not used: inputs and output are named.
pub fn run(args: &MergeArgs) -> anyhow::Result<i32> {
    let r = merge::merge(&args.out, &args.inputs, !args.json)?;
    if args.json {
        use std::io::Write;
        writeln!(
            super::common::Out::new(),
            "{}",
            serde_json::to_string_pretty(&r)?
        )?;
        return Ok(0);
    }
    for x in &r.replaced {
        c3::note!(
            "c3: {}: kept the newer document from {} (ingested at {}), dropped the one from {} ({})",
            c3::term::name(&x.source),
            x.kept,
            super::common::rfc3339(x.kept_ingested_at_ms),
            x.dropped,
            super::common::rfc3339(x.dropped_ingested_at_ms)
        );
    }
    c3::note!(
        "c3: merged {} inputs into {}: {} documents, {} chunks ({} replaced, {} duplicates{}) in {:.1}s, {:.0} chunks/s",
        r.inputs.len(),
        r.out,
        r.documents,
        r.chunks,
        r.replaced.len(),
        r.duplicates,
        if r.resumed_documents > 0 {
            format!(", {} documents from the interrupted run", r.resumed_documents)
        } else {
            String::new()
        },
        r.seconds,
        r.chunks_per_second
    );
    Ok(0)
}
