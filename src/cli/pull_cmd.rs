//! `c3 pull`: a checkpoint from the Hugging Face hub into the local cache.

use anyhow::{Context, Result};
use c3::hub::{HubEnv, RepoSpec};
use clap::Args;

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
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(0);
    }
    for f in &report.files {
        let status = match f.status {
            c3::hub::pull::FileStatus::Cached => "cached",
            c3::hub::pull::FileStatus::Downloaded => "downloaded",
        };
        println!("{status:>10}  {:>12}  {}", f.bytes, f.path);
    }
    let total: u64 = report.files.iter().map(|f| f.bytes).sum();
    println!(
        "{} at commit {}: {} files, {} bytes, checksums verified{}",
        spec,
        report.commit,
        report.files.len(),
        total,
        if report.offline { " (offline)" } else { "" }
    );
    println!("snapshot: {}", report.snapshot.display());
    println!("use it:   c3 --model {} ...", a.repo);
    Ok(0)
}
