//! `c3 mcp`: the store as a Model Context Protocol server (the official
//! Rust SDK, rmcp), over stdio (`c3 mcp`) or streamable HTTP (`c3 mcp
//! --http ADDR`, and `/mcp` in `c3 serve`).
//!
//! - [`tools`]: the tools' arguments (their JSON Schemas) and descriptions.
//! - [`server`]: the handler: tools, progress and cancellation, documents
//!   as resources (`c3://doc/{id}`, `c3://doc/{id}/chunk/{n}`).
//! - [`paths`]: the `--allow-path` roots and the check of an agent's path.
//!
//! Invariant: MCP runs on `c3 serve`'s state — its one model worker, queue,
//! jobs, limits, and over HTTP its guard and key — and adds no way to the
//! model or the store that `/v1` lacks, except reading files under the
//! `--allow-path` roots.
//! Invariant: a tool never ends the session: every failure is a tool
//! result with `isError` and a message that names what was wrong.

pub mod paths;
pub mod server;
pub mod tools;

use std::sync::Arc;

use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::ServiceExt;

use crate::serve::AppState;
pub use server::C3Mcp;

/// The path MCP is served at over HTTP.
pub const HTTP_PATH: &str = "/mcp";

/// The `/mcp` route for `c3 serve` and `c3 mcp --http` (a
/// [`crate::serve::Mount`]). Host, Origin, Content-Type and the key are
/// checked by the server's layers before a request reaches it, so rmcp's
/// own Host list is off (it would refuse names `--allow-host` allows).
pub fn mount(state: &AppState) -> axum::Router<AppState> {
    let st = state.clone();
    let config = StreamableHttpServerConfig::default()
        .disable_allowed_hosts()
        .with_sse_keep_alive(Some(state.cfg.keep_alive))
        .with_max_request_body_bytes(state.cfg.max_body);
    let service = StreamableHttpService::new(
        move || Ok(C3Mcp::new(st.clone())),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    axum::Router::new().nest_service(HTTP_PATH, service)
}

/// Serves one MCP session on stdin / stdout until the client closes it.
pub async fn serve_stdio(state: AppState) -> Result<(), String> {
    let transport = rmcp::transport::io::stdio_pipes();
    let running = C3Mcp::new(state)
        .serve(transport)
        .await
        .map_err(|e| format!("MCP handshake failed: {e}"))?;
    running
        .waiting()
        .await
        .map(drop)
        .map_err(|e| format!("MCP session failed: {e}"))
}
