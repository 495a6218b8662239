//! Models by hub name: `--model org/name[@revision]` resolved in the standard
//! Hugging Face cache (offline), and `c3 pull` to fill it. The only network
//! c3 ever uses, and only when asked (`c3 pull`, or `--download`).

pub mod cache;
pub mod checksum;
pub mod env;
pub mod listing;
pub mod pull;
pub mod spec;

use std::path::{Path, PathBuf};

pub use env::HubEnv;
pub use pull::{pull, PullReport};
pub use spec::RepoSpec;

use crate::{Error, Result};

/// The checkpoint `arg` names: an existing path as it is; else a hub repo id
/// resolved in the cache, fetched first only when `download` is set (and
/// `HF_HUB_OFFLINE` is not). Anything else is returned unchanged, for the
/// loaders to report as a missing directory.
pub fn resolve_model(arg: &Path, download: bool) -> Result<PathBuf> {
    if arg.exists() {
        return Ok(arg.to_path_buf());
    }
    let Some(spec) = arg.to_str().and_then(RepoSpec::parse) else {
        return Ok(arg.to_path_buf());
    };
    let env = HubEnv::from_env()?;
    if let Some(dir) = cache::snapshot(&env, &spec) {
        return Ok(dir);
    }
    if download && !env.offline {
        return Ok(pull(&env, &spec, true)?.snapshot);
    }
    let how = if env.offline {
        "HF_HUB_OFFLINE is set, so nothing is downloaded".to_string()
    } else {
        format!("fetch it with `c3 pull {spec}` (or pass --download)")
    };
    Err(Error::Hub(format!(
        "{} is neither a directory nor in the Hugging Face cache at {}: {how}",
        arg.display(),
        env.cache.display(),
    )))
}
