//! `c3 mcp`: the store as an MCP server, over stdio (the default: what a
//! desktop agent or an IDE launches) or streamable HTTP (`--http ADDR`).

use std::path::Path;

use c3::store::Store;

use super::common::ModelCtx;
use super::serve_cmd::{config, init_tracing, loader, ServerArgs};

#[derive(clap::Args, Debug)]
pub struct McpArgs {
    /// Serve MCP over streamable HTTP at http://ADDR/mcp instead of stdio
    /// (with the guard and the key of `c3 serve`; port 0: any free port,
    /// the bound address is printed).
    #[arg(long, value_name = "HOST:PORT")]
    pub http: Option<String>,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// `c3 mcp`.
pub fn run(store_dir: &Path, ctx: ModelCtx, a: &McpArgs) -> anyhow::Result<i32> {
    let mut cfg = config(&ctx, &a.server, a.http.clone().unwrap_or_default())?;
    // Logs go to stderr: over stdio, stdout carries the protocol only.
    init_tracing();
    let store = Store::open(store_dir)?;
    let loader = loader(ctx, &a.server);
    match &a.http {
        Some(_) => {
            cfg.mount_only = true;
            c3::serve::run(cfg, store, loader, Some(Box::new(c3::mcp::mount)))?;
        }
        None => c3::serve::run_embedded(cfg, store, loader, c3::mcp::serve_stdio)?,
    }
    Ok(0)
}
