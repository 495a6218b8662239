//! Where the Hugging Face cache is and how to reach the hub: the variables
//! the Python `huggingface_hub` reads, with the same defaults.

use std::path::PathBuf;

use crate::{Error, Result};

pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

#[derive(Debug, Clone)]
pub struct HubEnv {
    /// The `hub/` cache folder (`HF_HUB_CACHE`, else `$HF_HOME/hub`, else
    /// `~/.cache/huggingface/hub`).
    pub cache: PathBuf,
    /// `HF_ENDPOINT`, without a trailing slash.
    pub endpoint: String,
    /// `HF_HUB_OFFLINE` is set to a true value: nothing is ever fetched.
    pub offline: bool,
    /// `HF_TOKEN`, else the token file `huggingface-cli login` writes.
    pub token: Option<String>,
}

impl HubEnv {
    pub fn from_env() -> Result<HubEnv> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let home = || {
            dirs::home_dir()
                .ok_or_else(|| Error::Hub("no home directory: set HF_HOME or HF_HUB_CACHE".into()))
        };
        let hf_home = match var("HF_HOME") {
            Some(h) => PathBuf::from(h),
            None => home()?.join(".cache").join("huggingface"),
        };
        let cache = var("HF_HUB_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| hf_home.join("hub"));
        let endpoint = var("HF_ENDPOINT")
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string())
            .trim_end_matches('/')
            .to_string();
        let offline = var("HF_HUB_OFFLINE").is_some_and(|v| truthy(&v));
        let token_file = var("HF_TOKEN_PATH")
            .map(PathBuf::from)
            .unwrap_or_else(|| hf_home.join("token"));
        let token = var("HF_TOKEN").or_else(|| {
            std::fs::read_to_string(token_file)
                .ok()
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
        });
        Ok(HubEnv {
            cache,
            endpoint,
            offline,
            token,
        })
    }
}

/// huggingface_hub's reading of boolean variables.
fn truthy(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_uppercase().as_str(),
        "1" | "ON" | "YES" | "TRUE"
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn truthy_values() {
        for v in ["1", "on", "YES", "True "] {
            assert!(super::truthy(v), "{v}");
        }
        for v in ["0", "off", "no", ""] {
            assert!(!super::truthy(v), "{v}");
        }
    }
}
