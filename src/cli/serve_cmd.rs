//! `c3 serve`: flags, the API key, and the model load handed to the
//! server's worker thread (`c3::serve`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use c3::serve::{Engine, Loader, ServeConfig};
use c3::store::Store;

use super::common::{default_batch, load_decoder, load_encoder, ModelCtx};

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on (port 0: any free port; the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:8377", value_name = "HOST:PORT")]
    pub addr: String,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// What `c3 serve` and `c3 mcp` share: the key, limits, queue and model
/// settings of the server state both run on.
#[derive(clap::Args, Debug)]
pub struct ServerArgs {
    /// File holding the API key clients send as `Authorization: Bearer KEY`
    /// (or set C3_API_KEY). Without a key, only a loopback address is allowed.
    #[arg(long, value_name = "FILE")]
    pub api_key_file: Option<PathBuf>,
    /// Listen on a non-loopback address without an API key, on purpose.
    #[arg(long)]
    pub allow_unauthenticated: bool,
    /// Serve /metrics without the key (for scrapers that cannot send one).
    #[arg(long)]
    pub metrics_no_key: bool,
    /// Model jobs (ask, expand, ingest) that may wait; more answer 429.
    #[arg(long, default_value_t = 16, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..))]
    pub queue: u16,
    /// Largest request body in bytes; larger answer 413.
    #[arg(long, default_value_t = 16 << 20, value_name = "BYTES")]
    pub max_body: usize,
    /// Allow browsers from these origins (CORS), e.g. http://localhost:3000.
    /// A request from any other origin is refused (403).
    #[arg(long = "cors-origin", value_name = "ORIGIN", num_args = 1..)]
    pub cors_origins: Vec<String>,
    /// Without a key, answer to these host names too (the `Host` header),
    /// besides loopback names and the listening address.
    #[arg(long = "allow-host", value_name = "NAME", num_args = 1..)]
    pub allow_hosts: Vec<String>,
    /// Longest a request may wait for its answer to start, in seconds.
    #[arg(long, default_value_t = 600, value_name = "SECS")]
    pub timeout: u64,
    /// Longest a client may take to send a request's head, in seconds (an
    /// idle keep-alive connection is closed after as long).
    #[arg(long, default_value_t = 10.0, value_name = "SECS", value_parser = parse_secs)]
    pub header_timeout: f64,
    /// Longest a client may take to send a request's body, in seconds (408).
    #[arg(long, default_value_t = 60.0, value_name = "SECS", value_parser = parse_secs)]
    pub body_timeout: f64,
    /// Connections served at once; more wait until one ends.
    #[arg(long, default_value_t = 256, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Most tokens one request may ask to generate (ask, chat; expand per
    /// chunk); a larger `max_new_tokens` is refused (400).
    #[arg(long, default_value_t = c3::generate::DEFAULT_MAX_NEW_TOKENS, value_name = "N",
          value_parser = parse_max_new)]
    pub max_new_tokens: usize,
    /// Seconds between `:` keep-alive comments in event streams (fractions
    /// allowed, at least 0.01).
    #[arg(long, default_value_t = 10.0, value_name = "SECS", hide = true,
          value_parser = parse_keep_alive)]
    pub keep_alive: f64,
    /// Maximum tokens per chunk for documents added over HTTP [default: as
    /// for `c3 ingest`: 1000 for C3, the encoder window for LCLM].
    #[arg(long, value_name = "N")]
    pub chunk_tokens: Option<usize>,
    /// Chunks per encoder call for ingest (default as for `c3 ingest`).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub batch: Option<u16>,
    /// Most bytes of prefix-cache blocks the server keeps in memory over
    /// the cache directory (the most recently used; K/M/G suffixes; 0: read
    /// every hit from the directory).
    #[arg(long, default_value = "1G", value_name = "SIZE",
          value_parser = c3::options::parse_size)]
    pub kv_cache_memory: u64,
    /// Print the bound address as one JSON line on stdout.
    #[arg(long)]
    pub json: bool,
    /// A folder whose files MCP clients may have the server read (the
    /// `add_path` and `sync` tools; repeat for more). Without it the server
    /// reads no files.
    #[arg(long = "allow-path", value_name = "DIR")]
    pub allow_paths: Vec<PathBuf>,
}

/// The API key: `--api-key-file`, else `C3_API_KEY`, else none.
fn api_key(a: &ServerArgs) -> anyhow::Result<Option<String>> {
    let key = match &a.api_key_file {
        Some(f) => Some(
            std::fs::read_to_string(f)
                .with_context(|| format!("reading --api-key-file {}", f.display()))?,
        ),
        None => std::env::var("C3_API_KEY").ok(),
    };
    match key.map(|k| k.trim().to_string()) {
        Some(k) if k.is_empty() => bail!("the API key is empty (--api-key-file or C3_API_KEY)"),
        k => Ok(k),
    }
}

/// Loads what the server's worker owns: the decoder (checked against the
/// store's model, as `c3 ask` does) and the encoder. The one place to change
/// when the model family changes.
fn model_loader(
    ctx: ModelCtx,
    chunk_tokens: Option<usize>,
    batch: Option<u16>,
    kv_memory: u64,
) -> Loader {
    Box::new(move |store: &Store| {
        let load = || -> anyhow::Result<Engine> {
            let (decoder, fp) = load_decoder(&ctx, Some(store))?;
            // The cache only ever speeds answers up: one that cannot be
            // opened is logged, and the server runs without it.
            let kv = ctx
                .open_kv_cache(store.dir(), &decoder, &fp, kv_memory)
                .unwrap_or_else(|e| {
                    tracing::warn!("prefix cache not used: {e:#}");
                    None
                });
            let (encoder, chunk_tokens) = load_encoder(&ctx, chunk_tokens)?;
            let batch = batch.map_or_else(|| default_batch(encoder.compressor()), usize::from);
            Ok(Engine {
                decoder,
                encoder,
                chunk_tokens,
                batch,
                kv,
            })
        };
        load().map_err(|e| format!("{e:#}"))
    })
}

/// `--keep-alive`: seconds from 0.01 to a day.
fn parse_keep_alive(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.01..=86_400.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?}: expected seconds from 0.01 to 86400")),
    }
}

/// `--header-timeout`, `--body-timeout`: seconds from 0.1 to a day.
fn parse_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.1..=86_400.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?}: expected seconds from 0.1 to 86400")),
    }
}

/// `--max-new-tokens`: the library's rule for the value.
fn parse_max_new(s: &str) -> Result<usize, String> {
    let n: usize = s
        .parse()
        .map_err(|_| format!("{s:?}: expected a whole number"))?;
    c3::generate::GenRequest {
        max_new_tokens: Some(n),
        ..Default::default()
    }
    .options(n)
    .map(|o| o.max_new_tokens)
    .map_err(|e| e.to_string())
}

/// `c3 serve`.
pub fn run(store_dir: &Path, ctx: ModelCtx, a: &ServeArgs) -> anyhow::Result<i32> {
    let cfg = config(&ctx, &a.server, a.addr.clone())?;
    init_tracing();
    let store = Store::open(store_dir)?;
    c3::serve::run(
        cfg,
        store,
        loader(ctx, &a.server),
        Some(Box::new(c3::mcp::mount)),
    )?;
    Ok(0)
}

/// The server's configuration from its flags (the model must be given).
pub fn config(ctx: &ModelCtx, a: &ServerArgs, addr: String) -> anyhow::Result<ServeConfig> {
    if ctx.model.is_none() {
        bail!("no model: pass --model DIR|ORG/NAME or set C3_MODEL (see README: Getting the real weights)");
    }
    // A hub repo id names the model as the hub does; a directory by its name.
    let given = ctx.model.as_deref().and_then(|m| m.to_str()).unwrap_or("");
    let model_id = match c3::hub::RepoSpec::parse(given) {
        Some(spec) if !std::path::Path::new(given).exists() => spec.id,
        _ => ctx
            .model
            .as_deref()
            .and_then(|m| m.file_name())
            .map_or_else(|| "c3".to_string(), |n| n.to_string_lossy().into_owned()),
    };
    ctx.model_dir()?;
    Ok(ServeConfig {
        addr,
        api_key: api_key(a)?,
        allow_unauthenticated: a.allow_unauthenticated,
        metrics_open: a.metrics_no_key,
        queue: a.queue as usize,
        max_body: a.max_body,
        cors_origins: a.cors_origins.clone(),
        allow_hosts: a.allow_hosts.clone(),
        timeout: Duration::from_secs(a.timeout.max(1)),
        header_timeout: Duration::from_secs_f64(a.header_timeout),
        body_timeout: Duration::from_secs_f64(a.body_timeout),
        max_connections: a.max_connections as usize,
        max_new_tokens: a.max_new_tokens,
        keep_alive: Duration::from_secs_f64(a.keep_alive),
        model_id,
        json: a.json,
        allow_paths: c3::mcp::paths::roots(&a.allow_paths)?,
        mount_only: false,
    })
}

/// The worker's model load for these flags.
pub fn loader(ctx: ModelCtx, a: &ServerArgs) -> Loader {
    model_loader(ctx, a.chunk_tokens, a.batch, a.kv_cache_memory)
}

/// Logs to stderr; `RUST_LOG` sets the level (default info; the MCP SDK's
/// own per-message lines only from warn).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rmcp=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}

/// A store that another process holds: name the running server when it is
/// one (its `serve.json` in the store directory).
pub fn explain_lock(store_dir: &Path, e: anyhow::Error) -> anyhow::Error {
    let locked = e.chain().any(|c| {
        c.downcast_ref::<c3::Error>()
            .is_some_and(c3::Error::is_store_locked)
    });
    if !locked {
        return e;
    }
    match c3::serve::running_server(store_dir) {
        Some(at) => e.context(format!(
            "store {} is held by a running `c3 serve` at {at}: use its HTTP API, or stop it first",
            store_dir.display()
        )),
        // The error already says the store is in use.
        None => e,
    }
}
