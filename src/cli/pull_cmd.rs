//! `c3 pull`: a checkpoint from the Hugging Face hub into the local cache.

use std::io::Write;

use anyhow::{Context, Result};
use c3::hub::{HubEnv, RepoSpec};
use clap::Args;

use super::common::Out;

#[derive(Args, Debug)]
pub struct PullArgs {
    /// Hub repository: `org/name` or `org/name@revision` (branch, tag, commit).
    #[arg(value_name = "ORG/NAME[@REV]")]
    pub repo: String,
    /// Print the result (snapshot directory, files, checksums verified) as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: &PullArgs) -> Result<i32> {
    let spec = RepoSpec::parse(&a.repo).with_context(|| {
        format!(
            "{:?} is not a hub repository id (org/name or org/name@revision)",
            a.repo
        )
    })?;
    let env = HubEnv::from_env()?;
    let report = c3::hub::pull(&env, &spec, true)?;
    let mut out = Out::new();
    if a.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
        return Ok(0);
    }
    for f in &report.files {
        let status = match f.status {
            c3::hub::pull::FileStatus::Cached => "cached",
            c3::hub::pull::FileStatus::Downloaded => "downloaded",
        };
        // File names come from the hub: shown escaped.
        writeln!(
            out,
            "{status:>10}  {:>12}  {}",
            f.bytes,
            c3::term::name(&f.path)
        )?;
    }
    let total: u64 = report.files.iter().map(|f| f.bytes).sum();
    writeln!(
        out,
        "{} at commit {}: {} files, {} bytes, checksums verified{}",
        spec,
        c3::term::name(&report.commit),
        report.files.len(),
        total,
        if report.offline { " (offline)" } else { "" }
    )?;
    let snapshot = report.snapshot.display().to_string();
    writeln!(out, "snapshot: {}", c3::term::name(&snapshot))?;
    writeln!(out, "use it:   c3 --model {} ...", c3::term::name(&a.repo))?;
    Ok(0)
}
