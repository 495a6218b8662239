//! `c3 cache stats|clear`: what the prefix cache holds, and emptying it.
//! Neither opens the store or loads a model, so both work while `c3 serve`
//! holds the store.

use std::io::Write;
use std::path::Path;

use c3::kvcache::Disk;
use serde_json::json;

use super::common::{ModelCtx, Out};

#[derive(clap::Args, Debug)]
pub struct CacheArgs {
    #[command(subcommand)]
    pub action: CacheAction,
}

#[derive(clap::Subcommand, Debug)]
pub enum CacheAction {
    /// Blocks, bytes and the cap of the cache directory.
    Stats {
        /// Also read every block and check it (size, header, checksum),
        /// removing the damaged ones.
        #[arg(long)]
        verify: bool,
        /// Print a JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Remove every cached block (the next questions prefill again).
    Clear {
        /// Print a JSON object.
        #[arg(long)]
        json: bool,
    },
}

/// `c3 cache`.
pub fn run(store_dir: &Path, ctx: &ModelCtx, a: &CacheArgs) -> anyhow::Result<i32> {
    let opts = ctx.kv_options(store_dir, 0);
    let dir = &opts.dir;
    let shown = dir.display().to_string().escape_debug().to_string();
    match a.action {
        CacheAction::Stats { verify, json } => {
            let disk = dir.is_dir().then(|| Disk::open(dir)).transpose()?;
            let checked = match (&disk, verify) {
                (Some(d), true) => Some(d.verify()?),
                (None, true) => Some((0, 0)),
                _ => None,
            };
            let listing = match &disk {
                Some(d) => d.list()?.1,
                None => Default::default(),
            };
            if json {
                let v = json!({
                    "dir": dir,
                    "blocks": listing.blocks,
                    "bytes": listing.bytes,
                    "max_bytes": opts.max_bytes,
                    "enabled": opts.max_bytes > 0,
                    "temp_files": listing.temp_files,
                    "temp_bytes": listing.temp_bytes,
                    "verified": checked.map(|(ok, bad)| json!({"sound": ok, "removed": bad})),
                });
                writeln!(Out::new(), "{}", serde_json::to_string_pretty(&v)?)?;
            } else {
                writeln!(
                    Out::new(),
                    "{shown}: {} blocks, {:.1} MB of {:.1} MB{}",
                    listing.blocks,
                    listing.bytes as f64 / 1e6,
                    opts.max_bytes as f64 / 1e6,
                    if opts.max_bytes == 0 {
                        " (the cache is off: --kv-cache-size 0)"
                    } else {
                        ""
                    }
                )?;
                if let Some((ok, bad)) = checked {
                    writeln!(Out::new(), "verified: {ok} sound, {bad} damaged (removed)")?;
                }
            }
        }
        CacheAction::Clear { json } => {
            let (files, bytes) = if dir.is_dir() {
                Disk::open(dir)?.clear()?
            } else {
                (0, 0)
            };
            if json {
                let v = json!({"dir": dir, "removed_files": files, "removed_bytes": bytes});
                writeln!(Out::new(), "{}", serde_json::to_string_pretty(&v)?)?;
            } else {
                writeln!(
                    Out::new(),
                    "{shown}: removed {files} files ({:.1} MB)",
                    bytes as f64 / 1e6
                )?;
            }
        }
    }
    Ok(0)
}
