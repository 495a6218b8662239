//! `c3 serve`: the store and the model as an HTTP service (tokio + axum).
//!
//! - [`worker`]: the one thread that owns the model, its bounded queue and
//!   the per-request cancel flags.
//! - [`routes`]: the `/v1` API (documents, jobs, ask, expand, stats, check),
//!   [`openai`]: `/v1/models` and `/v1/chat/completions`.
//! - [`http`]: the key check, request metrics and the rule that every error
//!   answer carries `{"error":{"code","type","message"}}`.
//! - [`guard`]: what a web page must not do (foreign `Host`, foreign
//!   `Origin`, bodies a form can send), [`conn`]: connection limits and
//!   the request-head deadline.
//! - [`metrics`]: `/metrics` in Prometheus text (the prefix cache's
//!   counters included), [`jobs`]: ingest jobs.
//! - [`warm`]: `POST /v1/warm`, filling the prefix cache on the worker.
//!
//! Store reads run on tokio's blocking pool straight against the shared
//! [`Store`] (sled is safe to read from many threads), so they never wait for
//! the model.

pub mod conn;
pub mod error;
pub mod guard;
pub mod http;
pub mod ingest;
pub mod jobs;
pub mod metrics;
pub mod openai;
pub mod routes;
pub mod warm;
pub mod worker;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::store::Store;
pub use error::{ApiError, ServeError};
pub use worker::{Engine, Loader};

/// File in the store directory that names the running server (so a second
/// process that finds the store locked can say where it is).
pub const SERVE_FILE: &str = "serve.json";

/// How the server runs (the `c3 serve` flags).
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub addr: String,
    pub api_key: Option<String>,
    /// Listen on a non-loopback address without a key, on purpose.
    pub allow_unauthenticated: bool,
    /// `/metrics` without the key (for scrapers that cannot send one).
    pub metrics_open: bool,
    /// Model jobs that may wait for the worker.
    pub queue: usize,
    pub max_body: usize,
    pub cors_origins: Vec<String>,
    /// More names the server answers to without a key (`--allow-host`).
    pub allow_hosts: Vec<String>,
    /// Longest a request may take until its answer starts (streams are not cut).
    pub timeout: Duration,
    /// Longest a client may take to send a request head (and longest an
    /// idle keep-alive connection stays open).
    pub header_timeout: Duration,
    /// Longest a client may take to send a request body.
    pub body_timeout: Duration,
    /// Connections served at once; more wait until one ends.
    pub max_connections: usize,
    /// Most tokens one request may ask to generate (per chunk for expand).
    pub max_new_tokens: usize,
    /// Interval of `:` keep-alive comments in event streams.
    pub keep_alive: Duration,
    /// Model name for `/v1/models` and chat completions.
    pub model_id: String,
    /// Print the bound address as JSON on stdout.
    pub json: bool,
    /// Directories (canonical) whose files agents may have the server read
    /// (MCP `add_path`, `sync`; `--allow-path`). Empty: none.
    pub allow_paths: Vec<PathBuf>,
    /// Serve only `/health` and the mounted routes (`c3 mcp --http`), not
    /// the `/v1` API.
    pub mount_only: bool,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            addr: "127.0.0.1:8377".into(),
            api_key: None,
            allow_unauthenticated: false,
            metrics_open: false,
            queue: 16,
            max_body: 16 << 20,
            cors_origins: Vec::new(),
            allow_hosts: Vec::new(),
            timeout: Duration::from_secs(600),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
            max_connections: 256,
            max_new_tokens: crate::generate::DEFAULT_MAX_NEW_TOKENS,
            keep_alive: Duration::from_secs(10),
            model_id: "c3".into(),
            json: false,
            allow_paths: Vec::new(),
            mount_only: false,
        }
    }
}

/// What the handlers and the worker share.
pub struct Shared {
    pub store: Arc<Store>,
    pub metrics: metrics::Metrics,
    pub jobs: jobs::Jobs,
    ready: AtomicBool,
    load_error: Mutex<Option<String>>,
    shutdown: AtomicBool,
    /// Wakes the server when it must stop by itself (the model did not load).
    stop: tokio::sync::Notify,
}

impl Shared {
    pub fn new(store: Arc<Store>) -> Self {
        Shared {
            store,
            metrics: metrics::Metrics::default(),
            jobs: jobs::Jobs::default(),
            ready: AtomicBool::new(false),
            load_error: Mutex::new(None),
            shutdown: AtomicBool::new(false),
            stop: tokio::sync::Notify::new(),
        }
    }

    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    pub fn load_error(&self) -> Option<String> {
        self.load_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn load_failed(&self, msg: String) {
        tracing::error!("the model did not load: {msg}");
        *self.load_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(msg);
        self.stop.notify_one();
    }

    pub fn shutting_down(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }

    /// Stop taking work and cancel what runs or waits.
    pub fn begin_shutdown(&self) {
        self.shutdown.store(true, Ordering::Release);
        self.jobs.cancel_all();
    }
}

/// The state every handler gets.
#[derive(Clone)]
pub struct AppState {
    pub shared: Arc<Shared>,
    pub worker: worker::WorkerHandle,
    pub cfg: Arc<ServeConfig>,
    /// The browser guard, with the address the server listens on.
    pub guard: Arc<guard::Policy>,
}

/// Routes another room serves under this server's guard, key and limits
/// (MCP at `/mcp`): given the state, the routes to merge. The server names
/// no such room; its caller hands the mount in.
pub type Mount = Box<dyn FnOnce(&AppState) -> axum::Router<AppState> + Send>;

/// Resolves when SIGINT (Ctrl-C) or SIGTERM arrives.
async fn signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Removes the server file when the server ends, however it ends.
struct ServeFile(PathBuf);

impl Drop for ServeFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs the server until SIGTERM or Ctrl-C: binds `cfg.addr`, prints the
/// bound address on stdout (first line), loads the model on the worker
/// thread with `loader`, serves, then stops taking requests, cancels
/// running work (nothing half-written becomes visible), flushes the store.
pub fn run(
    cfg: ServeConfig,
    store: Store,
    loader: Loader,
    mount: Option<Mount>,
) -> Result<(), ServeError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("c3-http")
        .build()?;
    rt.block_on(serve(cfg, store, loader, mount))
}

/// Runs `body` with the server's state (worker, queue, jobs, limits) but
/// no listener: `c3 mcp` over stdio. Ends when `body` ends, SIGTERM or
/// Ctrl-C arrives, or the model does not load; then cancels running work
/// and flushes the store as [`run`] does.
pub fn run_embedded<F>(
    cfg: ServeConfig,
    store: Store,
    loader: Loader,
    body: impl FnOnce(AppState) -> F,
) -> Result<(), ServeError>
where
    F: std::future::Future<Output = Result<(), String>> + Send,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("c3-embedded")
        .build()?;
    rt.block_on(async move {
        let store = Arc::new(store);
        let shared = Arc::new(Shared::new(store.clone()));
        let (worker, join) = worker::spawn(shared.clone(), loader, cfg.queue)?;
        let state = AppState {
            shared: shared.clone(),
            worker,
            cfg: Arc::new(cfg),
            guard: Arc::new(guard::Policy::default()),
        };
        let ended = tokio::select! {
            r = body(state) => r,
            _ = signal() => Ok(()),
            _ = shared.stop.notified() => Ok(()),
        };
        shared.begin_shutdown();
        let joined = tokio::task::spawn_blocking(move || join.join()).await;
        if !matches!(joined, Ok(Ok(()))) {
            tracing::error!("the model worker ended abnormally");
        }
        store.flush()?;
        if let Some(msg) = shared.load_error() {
            return Err(ServeError::Load(msg));
        }
        ended.map_err(ServeError::Session)
    })
}

async fn serve(
    cfg: ServeConfig,
    store: Store,
    loader: Loader,
    mount: Option<Mount>,
) -> Result<(), ServeError> {
    let bind_err = |err| ServeError::Bind {
        addr: cfg.addr.clone(),
        err,
    };
    // Checked before binding: a refused address is never opened.
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(&cfg.addr)
        .await
        .map_err(bind_err)?
        .collect();
    if let Some(open) = addrs.iter().find(|a| !a.ip().is_loopback()) {
        if cfg.api_key.is_none() && !cfg.allow_unauthenticated {
            return Err(ServeError::NoKey {
                addr: open.to_string(),
            });
        }
    }
    let listener = tokio::net::TcpListener::bind(&addrs[..])
        .await
        .map_err(bind_err)?;
    let addr: SocketAddr = listener.local_addr()?;
    let store = Arc::new(store);
    let file = store.dir().join(SERVE_FILE);
    let info = serde_json::json!({
        "addr": addr.to_string(),
        "url": format!("http://{addr}"),
        "pid": std::process::id(),
    });
    std::fs::write(&file, format!("{info}\n"))?;
    let _file = ServeFile(file);
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        if cfg.json {
            writeln!(out, "{info}")?;
        } else {
            writeln!(out, "c3 serve: listening on http://{addr}")?;
        }
        out.flush()?;
    }
    tracing::info!("listening on http://{addr}; loading the model");

    let shared = Arc::new(Shared::new(store.clone()));
    let (worker, join) = worker::spawn(shared.clone(), loader, cfg.queue)?;
    let policy = guard::Policy::new(
        cfg.api_key.is_some(),
        vec![addr.ip()],
        &cfg.allow_hosts,
        &cfg.cors_origins,
    );
    let limits = conn::Limits {
        max_connections: cfg.max_connections,
        header_timeout: cfg.header_timeout,
    };
    let state = AppState {
        shared: shared.clone(),
        worker,
        cfg: Arc::new(cfg),
        guard: Arc::new(policy),
    };
    let extra = mount.map(|m| m(&state));
    let app = http::app(state, extra);
    let stopping = shared.clone();
    let shutdown = async move {
        tokio::select! {
            _ = signal() => tracing::info!("stopping: finishing or cancelling running work"),
            _ = stopping.stop.notified() => {},
        }
        stopping.begin_shutdown();
    };
    conn::serve(listener, app, limits, shutdown).await;
    // Every queue sender is gone with the router: the worker drains the
    // queue (cancelling what waits) and ends.
    shared.begin_shutdown();
    let joined = tokio::task::spawn_blocking(move || join.join()).await;
    if !matches!(joined, Ok(Ok(()))) {
        tracing::error!("the model worker ended abnormally");
    }
    store.flush()?;
    tracing::info!("stopped; store flushed");
    match shared.load_error() {
        Some(msg) => Err(ServeError::Load(msg)),
        None => Ok(()),
    }
}

/// For a store that is locked: where the server holding it listens, from
/// its [`SERVE_FILE`] (`None` when there is none).
pub fn running_server(store_dir: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(store_dir.join(SERVE_FILE)).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    Some(format!(
        "{} (pid {})",
        v["url"].as_str()?,
        v["pid"].as_u64().unwrap_or(0)
    ))
}
