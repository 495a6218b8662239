//! The one thread that owns the model. HTTP handlers hand it jobs through a
//! bounded queue ([`WorkerHandle::submit`]: a full queue is an immediate
//! 429, never a wait); each ask or expand gets its events back on its own
//! channel, and its [`Cancel`] is checked at every generated token,
//! so a client that goes away (its receiver dropped) stops its generation.
//! Ingest jobs report to the [`Jobs`] table and check their cancel flag
//! before every encoder call.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};
use tokio::sync::mpsc::UnboundedSender;

use super::error::ApiError;
use super::ingest::{ingest_text, Stopped};
use super::jobs::JobState;
use super::metrics::TokenClock;
use super::Shared;
use crate::cascade::{AnyDecoder, AnyEncoder};
use crate::chunk::Chunker;
use crate::docmeta::Metadata;
use crate::generate::GenOptions;
use crate::query::{self, AskRequest, AskResult, Reader};
use crate::retrieve::ChunkIndex;
use crate::store::Store;

/// What the worker loads and owns: the decoder (ask, expand, chat) and the
/// encoder (ingest).
pub struct Engine {
    pub decoder: AnyDecoder,
    pub encoder: AnyEncoder,
    /// Most tokens per chunk for ingest.
    pub chunk_tokens: usize,
    /// Chunks per encoder call.
    pub batch: usize,
    /// The decoder's prefix cache (`None`: off).
    pub kv: Option<crate::kvcache::PrefixCache>,
}

impl Engine {
    pub fn reader(&self) -> Reader<'_> {
        Reader::Latent(self.decoder.reader())
    }
}

/// Loads the engine on the worker thread (so `/health` answers 503 while it
/// runs). An error is a message for the log.
pub type Loader = Box<dyn FnOnce(&Store) -> Result<Engine, String> + Send>;

/// What a generating job sends back, in order: `Chunks` (ask) or
/// `ChunkStart` (expand), `Token`s, then one `AskDone`/`ExpandDone` or
/// `Error`.
#[derive(Debug)]
pub enum Event {
    Chunks(Value),
    ChunkStart(u32),
    Token(String),
    AskDone(Box<AskResult>),
    ExpandDone(Value),
    WarmDone(Value),
    Error(ApiError),
}

/// A request's stop signal: set when its HTTP side goes away (the handler
/// or stream guard is dropped), also true when its event receiver is gone
/// or the server is shutting down.
#[derive(Clone)]
pub struct Cancel {
    flag: Arc<AtomicBool>,
}

impl Cancel {
    pub fn new() -> Self {
        Cancel {
            flag: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn cancel(&self) {
        self.flag.store(true, Ordering::Relaxed);
    }

    pub fn is_set(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }
}

impl Default for Cancel {
    fn default() -> Self {
        Self::new()
    }
}

/// Sets its [`Cancel`] when dropped: held by the handler future or the
/// response stream, so a dropped connection cancels the work.
pub struct CancelOnDrop(pub Cancel);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

pub enum Job {
    Ask {
        req: AskRequest,
        cancel: Cancel,
        tx: UnboundedSender<Event>,
        /// When the request came (time to first token counts from here).
        received: Instant,
    },
    Expand {
        received: Instant,
        doc: u64,
        /// None: every chunk.
        chunk: Option<u32>,
        gen: GenOptions,
        cancel: Cancel,
        tx: UnboundedSender<Event>,
    },
    Ingest {
        id: u64,
        name: String,
        text: String,
        /// `Some`: the document's metadata; `None`: keep a replaced
        /// document's.
        metadata: Option<Metadata>,
    },
    /// Files and folders the server reads itself (MCP `add_path`, `sync`).
    Files { id: u64, req: FilesJob },
    /// Fill the prefix cache for documents (`POST /v1/warm`).
    Warm {
        req: crate::query::WarmRequest,
        cancel: Cancel,
        tx: UnboundedSender<Event>,
    },
}

impl Job {
    fn reply_error(&self, e: ApiError) {
        match self {
            Job::Ask { tx, .. } | Job::Expand { tx, .. } | Job::Warm { tx, .. } => {
                let _ = tx.send(Event::Error(e));
            }
            Job::Ingest { .. } | Job::Files { .. } => {}
        }
    }
}

/// Files and folders to ingest, on paths already checked against the
/// allowed roots.
#[derive(Debug, Clone)]
pub struct FilesJob {
    pub paths: Vec<PathBuf>,
    /// `c3 sync`: report new / changed / unchanged / removed.
    pub sync: bool,
    /// With `sync`: remove documents from under `paths` that are gone.
    pub prune: bool,
    pub metadata: Option<Metadata>,
    /// The allowed roots (canonical): files a walk reaches outside them
    /// through a symlink are skipped.
    pub confine: Vec<PathBuf>,
}

/// The handlers' end of the queue.
#[derive(Clone)]
pub struct WorkerHandle {
    tx: SyncSender<Job>,
    capacity: usize,
}

impl WorkerHandle {
    /// Queues `job`, or answers at once: 429 when the queue is full, 503 when
    /// the server is stopping.
    pub fn submit(&self, shared: &Shared, job: Job) -> Result<(), ApiError> {
        if shared.shutting_down() {
            return Err(ApiError::unavailable(
                "shutting_down",
                "the server is shutting down",
            ));
        }
        shared.metrics.queue_depth.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(e) => {
                shared.metrics.queue_depth.fetch_sub(1, Ordering::Relaxed);
                match e {
                    TrySendError::Full(_) => {
                        shared.metrics.rejected_busy.fetch_add(1, Ordering::Relaxed);
                        Err(ApiError::busy(self.capacity))
                    }
                    TrySendError::Disconnected(_) => Err(ApiError::unavailable(
                        "worker_stopped",
                        "the model worker has stopped",
                    )),
                }
            }
        }
    }
}

/// Starts the worker thread; it loads the engine, then runs jobs until
/// every [`WorkerHandle`] is dropped.
pub fn spawn(
    shared: Arc<Shared>,
    loader: Loader,
    queue: usize,
) -> std::io::Result<(WorkerHandle, std::thread::JoinHandle<()>)> {
    let (tx, rx) = sync_channel(queue.max(1));
    let join = std::thread::Builder::new()
        .name("c3-model".into())
        .spawn(move || run(shared, loader, rx))?;
    Ok((
        WorkerHandle {
            tx,
            capacity: queue.max(1),
        },
        join,
    ))
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}

fn run(shared: Arc<Shared>, loader: Loader, rx: Receiver<Job>) {
    let t0 = Instant::now();
    let engine = match catch_unwind(AssertUnwindSafe(|| loader(&shared.store))) {
        Ok(Ok(e)) => e,
        Ok(Err(msg)) => return shared.load_failed(msg),
        Err(p) => return shared.load_failed(format!("panic: {}", panic_message(&*p))),
    };
    tracing::info!("model loaded in {:.2?}", t0.elapsed());
    if let Some(kv) = &engine.kv {
        tracing::info!("prefix cache in {}", kv.dir().display());
        shared.metrics.set_kv(kv.counters());
    }
    shared.set_ready();
    while let Ok(job) = rx.recv() {
        shared.metrics.queue_depth.fetch_sub(1, Ordering::Relaxed);
        if shared.shutting_down() {
            cancelled_at_shutdown(&shared, job);
            continue;
        }
        shared.metrics.jobs_running.store(1, Ordering::Relaxed);
        // A panic in the model code answers this request with a 500; the
        // worker goes on with the next.
        let (reply, ingest_id) = match &job {
            Job::Ask { tx, .. } | Job::Expand { tx, .. } | Job::Warm { tx, .. } => {
                (Some(tx.clone()), None)
            }
            Job::Ingest { id, .. } | Job::Files { id, .. } => (None, Some(*id)),
        };
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| handle(&shared, &engine, job))) {
            let msg = format!("the model worker failed: {}", panic_message(&*p));
            tracing::error!("{msg}");
            if let Some(tx) = reply {
                let _ = tx.send(Event::Error(ApiError::internal(msg.clone())));
            }
            if let Some(id) = ingest_id {
                shared.jobs.finish(id, JobState::Failed, None, Some(msg));
            }
        }
        shared.metrics.jobs_running.store(0, Ordering::Relaxed);
    }
    tracing::info!("model worker stopped");
}

fn cancelled_at_shutdown(shared: &Shared, job: Job) {
    job.reply_error(ApiError::unavailable(
        "shutting_down",
        "the server is shutting down; the request was not run",
    ));
    if let Job::Ingest { id, .. } | Job::Files { id, .. } = job {
        shared.jobs.finish(
            id,
            JobState::Cancelled,
            None,
            Some("cancelled: the server shut down before the job ran".into()),
        );
    }
}

fn handle(shared: &Shared, engine: &Engine, job: Job) {
    match job {
        Job::Ask {
            req,
            cancel,
            tx,
            received,
        } => ask(shared, engine, &req, &cancel, &tx, received),
        Job::Expand {
            received,
            doc,
            chunk,
            gen,
            cancel,
            tx,
        } => expand(shared, engine, (doc, chunk), &gen, &cancel, &tx, received),
        Job::Ingest {
            id,
            name,
            text,
            metadata,
        } => ingest(shared, engine, id, &name, &text, metadata.as_ref()),
        Job::Files { id, req } => files(shared, engine, id, &req),
        Job::Warm { req, cancel, tx } => warm(shared, engine, &req, &cancel, &tx),
    }
}

/// Fills the prefix cache; cancellation is checked between prefill steps
/// (what is stored stays).
fn warm(
    shared: &Shared,
    engine: &Engine,
    req: &crate::query::WarmRequest,
    cancel: &Cancel,
    tx: &UnboundedSender<Event>,
) {
    let Some(kv) = &engine.kv else {
        let _ = tx.send(Event::Error(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "cache_off",
            "the prefix cache is off (the server runs with --kv-cache-size 0)",
        )));
        return;
    };
    let mut go_on = |_: usize, _: usize| !stop(shared, cancel, tx);
    match query::warm(&shared.store, engine.decoder.reader(), kv, req, &mut go_on) {
        Ok(r) => {
            let _ = tx.send(Event::WarmDone(json!(r)));
        }
        Err(e) => {
            let _ = tx.send(Event::Error(e.into()));
        }
    }
}

/// Whether a generation should stop now.
fn stop(shared: &Shared, cancel: &Cancel, tx: &UnboundedSender<Event>) -> bool {
    cancel.is_set() || tx.is_closed() || shared.shutting_down()
}

/// A generation stopped early: counted, and a client that is still there
/// (the server is shutting down) is told why its answer ends.
fn cut_short(shared: &Shared, tx: &UnboundedSender<Event>) {
    shared
        .metrics
        .generations_cancelled
        .fetch_add(1, Ordering::Relaxed);
    if shared.shutting_down() {
        let _ = tx.send(Event::Error(ApiError::unavailable(
            "shutting_down",
            "the server is shutting down; the answer was cut short",
        )));
    }
}

fn ask(
    shared: &Shared,
    engine: &Engine,
    req: &AskRequest,
    cancel: &Cancel,
    tx: &UnboundedSender<Event>,
    received: Instant,
) {
    if stop(shared, cancel, tx) {
        return;
    }
    let mut clock = TokenClock::new(received);
    let reader = engine.reader();
    let prepared = match query::prepare_with(&shared.store, reader, req, engine.kv.as_ref()) {
        Ok(p) => p,
        Err(e) => {
            let _ = tx.send(Event::Error(e.into()));
            return;
        }
    };
    let _ = tx.send(Event::Chunks(json!({
        "chunks": prepared.chunks,
        "prompt_tokens": prepared.prompt_tokens(),
        "dropped": prepared.dropped,
        "warning": prepared.warning,
        "mode": prepared.mode,
    })));
    let mut stopped = false;
    // Cancellation is checked before every generated token, not only when
    // one completes printable text.
    let res = prepared.run_until(
        reader,
        &req.gen,
        || {
            clock.tick();
            !stop(shared, cancel, tx)
        },
        |piece| {
            if stop(shared, cancel, tx) || tx.send(Event::Token(piece.to_string())).is_err() {
                stopped = true;
                return false;
            }
            true
        },
    );
    match res {
        Ok(r) => {
            shared
                .metrics
                .generation(r.timings.generated_tokens, &clock);
            if stopped || stop(shared, cancel, tx) {
                cut_short(shared, tx);
                return;
            }
            let _ = tx.send(Event::AskDone(Box::new(r)));
        }
        Err(e) => {
            let _ = tx.send(Event::Error(e.into()));
        }
    }
}

fn expand(
    shared: &Shared,
    engine: &Engine,
    (doc, chunk): (u64, Option<u32>),
    gen: &GenOptions,
    cancel: &Cancel,
    tx: &UnboundedSender<Event>,
    received: Instant,
) {
    let store = &shared.store;
    let d = match store.document(doc) {
        Ok(Some(d)) => d,
        Ok(None) => {
            let _ = tx.send(Event::Error(
                crate::Error::NoDocument {
                    spec: doc.to_string(),
                    store: store.dir().to_path_buf(),
                }
                .into(),
            ));
            return;
        }
        Err(e) => {
            let _ = tx.send(Event::Error(e.into()));
            return;
        }
    };
    if let Err(e) = engine.decoder.reader().family().check_reconstruct() {
        let _ = tx.send(Event::Error(e.into()));
        return;
    }
    let chunks: Vec<u32> = match chunk {
        Some(c) if c >= d.chunk_count => {
            let _ = tx.send(Event::Error(ApiError::bad_request(format!(
                "document {doc} has {} chunks (0..={}); there is no chunk {c}",
                d.chunk_count,
                d.chunk_count.saturating_sub(1)
            ))));
            return;
        }
        Some(c) => vec![c],
        None => (0..d.chunk_count).collect(),
    };
    let mut rows = Vec::new();
    for c in chunks {
        if stop(shared, cancel, tx) {
            cut_short(shared, tx);
            return;
        }
        let _ = tx.send(Event::ChunkStart(c));
        // The first chunk's first token counts from the request; each
        // later chunk's from its own start.
        let mut clock = TokenClock::new(if rows.is_empty() {
            received
        } else {
            Instant::now()
        });
        let mut stopped = false;
        let g = query::expand_chunk(store, engine.decoder.reader(), doc, c, gen, |piece| {
            clock.tick();
            if stop(shared, cancel, tx) || tx.send(Event::Token(piece.to_string())).is_err() {
                stopped = true;
                return false;
            }
            true
        });
        let g = match g {
            Ok(g) => g,
            Err(e) => {
                let _ = tx.send(Event::Error(e.into()));
                return;
            }
        };
        shared.metrics.generation(g.ids.len(), &clock);
        if stopped {
            cut_short(shared, tx);
            return;
        }
        let (tokens, original) = match store
            .chunk_record(doc, c)
            .and_then(|r| Ok((r.tokens, store.chunk_text(&r)?)))
        {
            Ok(x) => x,
            Err(e) => {
                let _ = tx.send(Event::Error(e.into()));
                return;
            }
        };
        rows.push(json!({
            "doc": doc, "chunk": c, "text": g.text, "ids": g.ids, "text_tokens": tokens,
            "generated_tokens": g.ids.len(), "stop": g.stop,
            "precision": crate::eval::precision(&g.text, &original),
            "edit_similarity": crate::eval::edit_similarity(&g.text, &original),
        }));
    }
    let _ = tx.send(Event::ExpandDone(json!({"doc": doc, "chunks": rows})));
}

/// Chunks `text` with `sizer` (the model's own tokenizer) and ingests it.
fn chunk_and_ingest<S: text_splitter::ChunkSizer>(
    shared: &Shared,
    engine: &Engine,
    model: &dyn crate::cascade::Compressor,
    sizer: S,
    (name, text, metadata): (&str, &str, Option<&Metadata>),
    progress: &mut dyn FnMut(u64, u64) -> bool,
) -> std::result::Result<super::ingest::Outcome, Stopped> {
    let chunker = Chunker::new(sizer, engine.chunk_tokens)?;
    ingest_text(
        &shared.store,
        model,
        &chunker,
        name,
        text,
        metadata,
        engine.batch,
        progress,
    )
}

fn ingest(
    shared: &Shared,
    engine: &Engine,
    id: u64,
    name: &str,
    text: &str,
    metadata: Option<&Metadata>,
) {
    let jobs = &shared.jobs;
    let cancel = jobs.cancel_flag(id);
    let cancelled =
        || cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed)) || shared.shutting_down();
    if cancelled() {
        jobs.finish(
            id,
            JobState::Cancelled,
            None,
            Some("cancelled before it started".into()),
        );
        return;
    }
    jobs.start(id);

    let mut last = 0u64;
    let mut progress = |done: u64, total: u64| {
        jobs.progress(id, done, total);
        shared
            .metrics
            .chunks_ingested
            .fetch_add(done.saturating_sub(last), Ordering::Relaxed);
        last = done;
        !cancelled()
    };
    let res = chunk_and_ingest(
        shared,
        engine,
        engine.encoder.compressor(),
        engine.encoder.tokenizer(),
        (name, text, metadata),
        &mut progress,
    );
    match res {
        Ok(o) => {
            if o.action != super::ingest::Action::Unchanged {
                if let Err(e) = ChunkIndex::open_synced(&shared.store, false) {
                    tracing::warn!("search index not updated ({e}); the next ask rebuilds it");
                }
            }
            jobs.finish(id, JobState::Done, serde_json::to_value(&o).ok(), None);
        }
        Err(Stopped::Cancelled) => jobs.finish(
            id,
            JobState::Cancelled,
            None,
            Some("cancelled; nothing of the new text was stored".into()),
        ),
        Err(Stopped::Failed(e)) => jobs.finish(id, JobState::Failed, None, Some(e.to_string())),
    }
}

/// Ingests files and folders (MCP `add_path`, `sync`): progress in bytes
/// of the files found, cancellation before every encoder call (the
/// document in progress is not committed; those before it stay).
fn files(shared: &Shared, engine: &Engine, id: u64, req: &FilesJob) {
    let jobs = shared.jobs.clone();
    let Some(cancel) = jobs.cancel_flag(id) else {
        return;
    };
    if cancel.load(Ordering::Relaxed) || shared.shutting_down() {
        jobs.finish(
            id,
            JobState::Cancelled,
            None,
            Some("cancelled before it started".into()),
        );
        return;
    }
    jobs.start(id);
    let watch = {
        let (jobs, cancel) = (jobs.clone(), cancel.clone());
        crate::ingest::Watch(Arc::new(move |t: &crate::ingest::Tick| {
            jobs.progress_files(id, t.chunks_done, t.bytes_done, t.bytes_total);
            !cancel.load(Ordering::Relaxed)
        }))
    };
    let opts = crate::ingest::IngestOptions {
        batch_size: engine.batch,
        prune: req.prune,
        metadata: req.metadata.clone(),
        confine: Some(req.confine.clone()),
        watch: Some(watch),
        ..Default::default()
    };
    let run = || -> crate::Result<(Value, bool, u64)> {
        let chunker = Chunker::new(engine.encoder.tokenizer(), engine.chunk_tokens)?;
        let model = engine.encoder.compressor();
        let store = &shared.store;
        if req.sync {
            let r = crate::ingest::sync(store, model, &chunker, &req.paths, &opts)?;
            let changed = r.new + r.changed + r.removed + r.metadata_updated > 0;
            Ok((json!(r), changed, r.chunks))
        } else {
            let inputs: Vec<crate::ingest::Input> = req
                .paths
                .iter()
                .map(|p| crate::ingest::Input::Path(p.clone()))
                .collect();
            let r = crate::ingest::ingest(store, model, &chunker, &inputs, &opts)?;
            let changed = r.added + r.replaced + r.pruned + r.metadata_updated > 0;
            Ok((json!(r), changed, r.chunks))
        }
    };
    match run() {
        Ok((report, changed, chunks)) => {
            shared
                .metrics
                .chunks_ingested
                .fetch_add(chunks, Ordering::Relaxed);
            if changed {
                if let Err(e) = ChunkIndex::open_synced(&shared.store, false) {
                    tracing::warn!("search index not updated ({e}); the next ask rebuilds it");
                }
            }
            if cancel.load(Ordering::Relaxed) {
                jobs.finish(
                    id,
                    JobState::Cancelled,
                    Some(report),
                    Some(
                        "cancelled; the documents finished before it stay, nothing of the one \
                         in progress was stored"
                            .into(),
                    ),
                );
            } else {
                jobs.finish(id, JobState::Done, Some(report), None);
            }
        }
        Err(e) => jobs.finish(id, JobState::Failed, None, Some(e.to_string())),
    }
}
