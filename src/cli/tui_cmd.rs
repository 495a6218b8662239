//! `c3 tui`: starts the `c3-tui` binary installed next to `c3` (the TUI
//! crate depends on `c3`, so it is a separate program), passing on the
//! global options.

use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::Command;

use super::common::ModelCtx;

#[derive(clap::Args, Debug)]
pub struct TuiArgs {
    /// Further `c3-tui` options (see `c3-tui --help`), e.g. --max-new-tokens N.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ARGS"
    )]
    pub args: Vec<std::ffi::OsString>,
}

pub fn run(store: &Path, ctx: &ModelCtx, args: &TuiArgs) -> Result<i32> {
    let me = std::env::current_exe().context("cannot find the c3 executable")?;
    let exe = me.with_file_name(format!("c3-tui{}", std::env::consts::EXE_SUFFIX));
    if !exe.is_file() {
        bail!(
            "{} not found: build it with `cargo build -p c3-tui` (or install it beside c3)",
            exe.display()
        );
    }
    let mut cmd = Command::new(&exe);
    cmd.arg("--store").arg(store);
    if ctx.model.is_some() {
        cmd.arg("--model").arg(ctx.model_dir()?);
    }
    let dtype = match ctx.dtype {
        candle_core::DType::F16 => "f16",
        candle_core::DType::BF16 => "bf16",
        _ => "f32",
    };
    cmd.arg("--dtype").arg(dtype);
    if let Some(q) = ctx.decoder_quant {
        cmd.arg("--decoder-quant").arg(q.to_string());
    }
    cmd.args(&args.args);
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let err = cmd.exec();
        Err(err).with_context(|| format!("cannot start {}", exe.display()))
    }
    #[cfg(not(unix))]
    {
        let status = cmd
            .status()
            .with_context(|| format!("cannot start {}", exe.display()))?;
        Ok(status.code().unwrap_or(1))
    }
}
