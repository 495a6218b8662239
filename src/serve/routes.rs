//! The `/v1` handlers: documents, jobs, stats, check, ask, expand; `/health`
//! and `/metrics`.

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream::{self, Stream};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use super::error::{kind_for, ApiError};
use super::ingest::{check_name, check_text};
use super::jobs::JobState;
use super::worker::{Cancel, CancelOnDrop, Event, Job};
use super::AppState;
use crate::docmeta::{Filter, Metadata};
use crate::generate::{GenOptions, GenRequest};
use crate::query::{AskRequest, Mode};
use crate::retrieve::Pick;
use crate::store::{DocRecord, Store};

/// Default answer length of `ask` and chat completions (as `c3 ask`).
pub const ASK_MAX_NEW_TOKENS: usize = 512;

type ApiResult<T> = Result<T, ApiError>;

/// Runs a store operation on the blocking pool (never on the model thread).
pub async fn blocking<T: Send + 'static>(
    s: &AppState,
    f: impl FnOnce(&Store) -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    let store = s.shared.store.clone();
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|e| ApiError::internal(format!("store task failed: {e}")))?
}

fn body_error(e: BytesRejection) -> ApiError {
    ApiError::new(e.status(), kind_for(e.status()), e.body_text())
}

/// A JSON body: the body limit's and the parser's errors named.
pub fn parse_json<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> ApiResult<T> {
    let body = body.map_err(body_error)?;
    if body.is_empty() {
        return Err(ApiError::bad_request(
            "the request body is empty: send JSON",
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(&body);
    let v = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let what = match inner.classify() {
            serde_json::error::Category::Data if path == "." => "wrong JSON body".to_string(),
            serde_json::error::Category::Data => format!("wrong field `{path}` in the JSON body"),
            serde_json::error::Category::Eof => "the JSON body ends early".to_string(),
            _ => "the body is not valid JSON".to_string(),
        };
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("{what}: {inner}"),
        )
    })?;
    de.end().map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not valid JSON: {e}"),
        )
    })?;
    Ok(v)
}

pub async fn health(State(s): State<AppState>) -> Response {
    if let Some(e) = s.shared.load_error() {
        return ApiError::unavailable("model_load_failed", format!("the model did not load: {e}"))
            .into_response();
    }
    if s.shared.shutting_down() {
        return ApiError::unavailable("shutting_down", "the server is shutting down")
            .into_response();
    }
    if !s.shared.ready() {
        return ApiError::unavailable("loading", "the model is loading").into_response();
    }
    Json(json!({"status": "ok"})).into_response()
}

pub async fn metrics(State(s): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        s.shared.metrics.render(),
    )
        .into_response()
}

/// A document as `c3 ls --json` shows it, with its metadata.
pub fn doc_json(store: &Store, d: &DocRecord) -> crate::Result<Value> {
    Ok(crate::store::listing::doc_json(d, &store.metadata(d.id)?))
}

/// A `where` filter given as JSON text (a query parameter).
pub fn parse_where_text(raw: Option<&str>) -> ApiResult<Filter> {
    match raw {
        None => Ok(Filter::default()),
        Some(t) => {
            let v: Value = serde_json::from_str(t).map_err(|e| {
                ApiError::bad_request(format!(
                    "`where` is not JSON ({e}): send a URL-encoded JSON object such as \
                     {{\"kind\":\"license\"}}"
                ))
            })?;
            Ok(Filter::from_json(&v)?)
        }
    }
}

fn doc_id(raw: &str) -> ApiResult<u64> {
    raw.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "document id `{raw}` is not a number (ids are listed by GET /v1/documents)"
        ))
    })
}

fn get_doc(store: &Store, id: u64) -> ApiResult<DocRecord> {
    store
        .document(id)?
        .ok_or_else(|| ApiError::not_found(format!("no document {id} in the store")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// A JSON object (URL-encoded): the metadata filter.
    #[serde(rename = "where")]
    filter: Option<String>,
}

pub async fn list_documents(
    State(s): State<AppState>,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let filter = parse_where_text(q.filter.as_deref())?;
    let v = blocking(&s, move |store| {
        let sel = store.select(&filter)?;
        let docs = sel
            .docs
            .iter()
            .map(|d| doc_json(store, d))
            .collect::<crate::Result<Vec<_>>>()?;
        let mut v = json!({"object": "list", "data": docs});
        if let Some(w) = sel.note() {
            v["warning"] = json!(w);
        }
        Ok(v)
    })
    .await?;
    Ok(Json(v))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShowQuery {
    chunk: Option<u32>,
    #[serde(default)]
    text: bool,
}

pub async fn show_document(
    State(s): State<AppState>,
    Path(id): Path<String>,
    q: Result<Query<ShowQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let id = doc_id(&id)?;
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let v = blocking(&s, move |store| {
        let d = get_doc(store, id)?;
        if let Some(n) = q.chunk {
            if n >= d.chunk_count {
                return Err(ApiError::not_found(format!(
                    "document {id} has {} chunks (0..={}); there is no chunk {n}",
                    d.chunk_count,
                    d.chunk_count.saturating_sub(1)
                )));
            }
            let c = store.chunk_record(id, n)?;
            let mut v = json!({
                "doc": id, "source": d.source, "chunk": n,
                "start": c.start, "end": c.end, "tokens": c.tokens,
            });
            if q.text {
                v["text"] = json!(store.chunk_text(&c)?);
            }
            return Ok(v);
        }
        let chunks = (0..d.chunk_count)
            .map(|n| store.chunk_record(id, n))
            .collect::<crate::Result<Vec<_>>>()?;
        let mut v = doc_json(store, &d)?;
        v["chunk_list"] = chunks
            .iter()
            .map(
                |c| json!({"chunk": c.ordinal, "start": c.start, "end": c.end, "tokens": c.tokens}),
            )
            .collect();
        if q.text {
            let mut t = String::with_capacity(d.size as usize);
            for c in &chunks {
                t.push_str(&store.chunk_text(c)?);
            }
            v["text"] = json!(t);
        }
        Ok(v)
    })
    .await?;
    Ok(Json(v))
}

pub async fn delete_document(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = doc_id(&id)?;
    let v = blocking(&s, move |store| {
        let d = get_doc(store, id)?;
        if !store.remove(id)? {
            return Err(ApiError::not_found(format!(
                "no document {id} in the store"
            )));
        }
        Ok(json!({"id": id, "source": d.source, "deleted": true}))
    })
    .await?;
    Ok(Json(v))
}

pub async fn stats(State(s): State<AppState>) -> ApiResult<Json<Value>> {
    let v = blocking(&s, |store| {
        let st = store.stats()?;
        let model = store.meta()?.model;
        let mut v = serde_json::to_value(&st).map_err(|e| ApiError::internal(e.to_string()))?;
        v["model"] = json!(model.map(|m| json!({
            "fingerprint": m.fingerprint, "latent_len": m.latent_len, "hidden_size": m.hidden_size
        })));
        Ok(v)
    })
    .await?;
    Ok(Json(v))
}

pub async fn check(State(s): State<AppState>) -> ApiResult<Json<Value>> {
    let v = blocking(&s, |store| {
        let r = store.check()?;
        let index = crate::retrieve::index::check(store)?;
        let ok = r.ok() && index.problems.is_empty();
        let mut v = serde_json::to_value(&r).map_err(|e| ApiError::internal(e.to_string()))?;
        v["index"] = serde_json::to_value(&index).map_err(|e| ApiError::internal(e.to_string()))?;
        v["ok"] = json!(ok);
        Ok(v)
    })
    .await?;
    Ok(Json(v))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddQuery {
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddBody {
    name: String,
    text: String,
    /// The document's metadata: a flat JSON object.
    metadata: Option<Value>,
}

/// `POST /v1/documents`: JSON `{name, text}`, or the raw text with `?name=`.
pub async fn add_document(
    State(s): State<AppState>,
    q: Result<Query<AddQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let (name, text, metadata) = if is_json {
        let b: AddBody = parse_json(body)?;
        let metadata = b.metadata.as_ref().map(Metadata::from_json).transpose()?;
        (q.name.unwrap_or(b.name), b.text, metadata)
    } else {
        let body = body.map_err(body_error)?;
        let name = q.name.ok_or_else(|| {
            ApiError::bad_request(
                "a raw text body needs ?name=NAME (or send JSON {\"name\":…,\"text\":…})",
            )
        })?;
        let text = check_text(&body)
            .map_err(ApiError::bad_request)?
            .to_string();
        (name, text, None)
    };
    check_name(&name).map_err(ApiError::bad_request)?;
    check_text(text.as_bytes()).map_err(ApiError::bad_request)?;
    let (id, _) = s.shared.jobs.create(&name, text.len() as u64);
    if let Err(e) = s.worker.submit(
        &s.shared,
        Job::Ingest {
            id,
            name,
            text,
            metadata,
        },
    ) {
        s.shared.jobs.forget(id);
        return Err(e);
    }
    let job = s
        .shared
        .jobs
        .get(id)
        .ok_or_else(|| ApiError::internal("the job vanished"))?;
    let mut r = (StatusCode::ACCEPTED, Json(job)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/v1/jobs/{id}")) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    Ok(r)
}

fn job_id(raw: &str) -> ApiResult<u64> {
    raw.parse()
        .map_err(|_| ApiError::bad_request(format!("job id `{raw}` is not a number")))
}

pub async fn get_job(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let id = job_id(&id)?;
    s.shared.jobs.get(id).map(Json).ok_or_else(|| {
        ApiError::not_found(format!("no job {id} (finished jobs are kept for a while)"))
    })
}

pub async fn cancel_job(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let id = job_id(&id)?;
    let (state, v) = s
        .shared
        .jobs
        .cancel(id)
        .ok_or_else(|| ApiError::not_found(format!("no job {id}")))?;
    if state.finished() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "job_finished",
            format!(
                "job {id} already ended ({})",
                json!(state).as_str().unwrap_or("")
            ),
        ));
    }
    debug_assert!(state == JobState::Queued || state == JobState::Running);
    Ok((StatusCode::ACCEPTED, Json(v)).into_response())
}

/// A document named by id or by source.
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub enum DocSpec {
    Id(u64),
    Name(String),
}

#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub enum OneOrMany {
    One(DocSpec),
    Many(Vec<DocSpec>),
}

impl OneOrMany {
    pub fn specs(self) -> Vec<DocSpec> {
        match self {
            OneOrMany::One(d) => vec![d],
            OneOrMany::Many(v) => v,
        }
    }
}

/// Resolves document specs to ids (404 for an unknown one).
pub fn resolve_docs(store: &Store, specs: &[DocSpec]) -> ApiResult<Vec<u64>> {
    specs
        .iter()
        .map(|s| match s {
            DocSpec::Id(id) => get_doc(store, *id).map(|d| d.id),
            DocSpec::Name(n) => store
                .resolve(n)
                .map(|d| d.id)
                .map_err(|_| ApiError::not_found(format!("no document `{n}` in the store"))),
        })
        .collect()
}

/// Generation knobs shared by ask, expand and chat.
#[derive(Debug, Clone, Copy)]
pub struct Knobs {
    pub max_new_tokens: Option<usize>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub seed: Option<u64>,
}

impl Knobs {
    /// The request's options: the library's one validation
    /// ([`GenRequest::options`], as the CLI and the TUI use), after this
    /// server's `--max-new-tokens` cap, which keeps one request from
    /// holding the model for long (a default above the cap is lowered to it).
    pub fn gen(&self, default_max: usize, cap: usize) -> ApiResult<GenOptions> {
        if let Some(n) = self.max_new_tokens.filter(|&n| n > cap) {
            return Err(ApiError::bad_request(format!(
                "max_new_tokens {n} is above this server's limit of {cap} (c3 serve \
                 --max-new-tokens)"
            )));
        }
        Ok(GenRequest {
            max_new_tokens: self.max_new_tokens,
            temperature: self.temperature,
            top_p: self.top_p,
            seed: self.seed,
            ..GenRequest::default()
        }
        .options(default_max.min(cap))?)
    }
}

/// The retrieval part of a question: which documents, how many chunks, mode.
pub fn parse_mode(mode: Option<&str>) -> ApiResult<Mode> {
    match mode {
        None | Some("latent") => Ok(Mode::Latent),
        Some("text") => Ok(Mode::Text),
        Some(m) => Err(ApiError::bad_request(format!(
            "mode `{m}`: expected \"latent\" or \"text\""
        ))),
    }
}

pub fn parse_pick(all: Option<bool>, top_k: Option<usize>) -> ApiResult<Pick> {
    match (all, top_k) {
        (Some(true), Some(_)) => Err(ApiError::bad_request(
            "all and top_k exclude each other: give one",
        )),
        (_, Some(0)) => Err(ApiError::bad_request("top_k must be at least 1")),
        (_, Some(k)) => Ok(Pick::TopK(k)),
        _ => Ok(Pick::All),
    }
}

/// `POST /v1/ask`: the fields of `c3 ask --json`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AskBody {
    question: String,
    #[serde(default, alias = "docs")]
    doc: Option<OneOrMany>,
    all: Option<bool>,
    top_k: Option<usize>,
    mode: Option<String>,
    max_new_tokens: Option<usize>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    seed: Option<u64>,
    #[serde(default)]
    stream: bool,
    /// Metadata filter: only documents it selects.
    #[serde(rename = "where")]
    filter: Option<Value>,
}

/// Builds an [`AskRequest`] (documents resolved against the store, then
/// narrowed by the metadata filter).
pub async fn ask_request(
    s: &AppState,
    question: String,
    (doc, filter): (Option<OneOrMany>, Filter),
    pick: Pick,
    mode: Mode,
    gen: GenOptions,
) -> ApiResult<AskRequest> {
    if question.trim().is_empty() {
        return Err(ApiError::bad_request("the question is empty"));
    }
    let specs = doc.map(OneOrMany::specs).unwrap_or_default();
    let docs = blocking(s, move |store| {
        let ids = resolve_docs(store, &specs)?;
        Ok(store.select(&filter)?.narrow(&ids, &filter)?)
    })
    .await?;
    Ok(AskRequest {
        question,
        docs,
        pick,
        mode,
        gen,
        progress: false,
    })
}

/// Queues a generating job and returns its event receiver and the guard
/// that cancels it when dropped.
pub fn start(
    s: &AppState,
    make: impl FnOnce(Cancel, tokio::sync::mpsc::UnboundedSender<Event>) -> Job,
) -> ApiResult<(UnboundedReceiver<Event>, CancelOnDrop)> {
    let (tx, rx) = unbounded_channel();
    let cancel = Cancel::new();
    s.worker.submit(&s.shared, make(cancel.clone(), tx))?;
    Ok((rx, CancelOnDrop(cancel)))
}

/// [`start`] for an ask (the chat route's too), received now.
pub fn start_ask(
    s: &AppState,
    req: AskRequest,
) -> ApiResult<(UnboundedReceiver<Event>, CancelOnDrop)> {
    start(s, |cancel, tx| Job::Ask {
        req,
        cancel,
        tx,
        received: std::time::Instant::now(),
    })
}

/// What the worker's channel said when it closed without an answer.
pub(super) fn no_answer(s: &AppState) -> ApiError {
    if s.shared.shutting_down() {
        ApiError::unavailable(
            "shutting_down",
            "the server stopped before the answer was complete",
        )
    } else {
        ApiError::internal("the model worker ended the request without an answer")
    }
}

/// Waits for the first event: an error before any output is an HTTP error.
pub(super) async fn first_event(
    s: &AppState,
    rx: &mut UnboundedReceiver<Event>,
) -> ApiResult<Event> {
    match rx.recv().await {
        Some(Event::Error(e)) => Err(e),
        Some(ev) => Ok(ev),
        None => Err(no_answer(s)),
    }
}

/// Collects a non-streamed answer.
pub async fn collect(s: &AppState, rx: &mut UnboundedReceiver<Event>) -> ApiResult<Event> {
    loop {
        match rx.recv().await {
            Some(Event::Error(e)) => return Err(e),
            Some(ev @ (Event::AskDone(_) | Event::ExpandDone(_) | Event::WarmDone(_))) => {
                return Ok(ev)
            }
            Some(_) => {}
            None => return Err(no_answer(s)),
        }
    }
}

/// Turns one worker event into the SSE events a route sends.
pub type ToSse = Box<dyn FnMut(Event) -> Vec<SseEvent> + Send>;

struct StreamState {
    rx: UnboundedReceiver<Event>,
    _guard: CancelOnDrop,
    pending: VecDeque<SseEvent>,
    tail: Option<SseEvent>,
    ended: bool,
    to_sse: ToSse,
}

/// An event stream: the first event, then the rest of the channel up to
/// its final event, then `tail`. The guard lives as long as the stream, so
/// a client that goes away cancels the generation.
pub fn event_stream(
    first: Event,
    rx: UnboundedReceiver<Event>,
    guard: CancelOnDrop,
    mut to_sse: ToSse,
    tail: Option<SseEvent>,
) -> impl Stream<Item = Result<SseEvent, Infallible>> + Send + 'static {
    let st = StreamState {
        rx,
        _guard: guard,
        pending: to_sse(first).into(),
        tail,
        ended: false,
        to_sse,
    };
    stream::unfold(st, |mut st| async move {
        loop {
            if let Some(ev) = st.pending.pop_front() {
                return Some((Ok(ev), st));
            }
            if st.ended {
                return None;
            }
            let next = st.rx.recv().await;
            let last = !matches!(
                next,
                Some(Event::Chunks(_) | Event::ChunkStart(_) | Event::Token(_))
            );
            if let Some(e) = next {
                let evs = (st.to_sse)(e);
                st.pending.extend(evs);
            }
            if last {
                st.ended = true;
                let tail = st.tail.take();
                st.pending.extend(tail);
            }
        }
    })
}

fn sse_json(name: &str, v: &Value) -> SseEvent {
    SseEvent::default().event(name).data(v.to_string())
}

/// The SSE form of ask and expand events.
fn api_sse(e: Event) -> Vec<SseEvent> {
    vec![match e {
        Event::Chunks(v) => sse_json("chunks", &v),
        Event::ChunkStart(c) => sse_json("chunk", &json!({"chunk": c})),
        Event::Token(t) => sse_json("token", &json!({"text": t})),
        Event::AskDone(r) => sse_json("done", &serde_json::to_value(&*r).unwrap_or(Value::Null)),
        Event::ExpandDone(v) | Event::WarmDone(v) => sse_json("done", &v),
        Event::Error(e) => sse_json("error", &e.body()),
    }]
}

pub fn sse_response(
    s: &AppState,
    stream: impl Stream<Item = Result<SseEvent, Infallible>> + Send + 'static,
) -> Response {
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(s.cfg.keep_alive))
        .into_response()
}

pub async fn ask(
    State(s): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let b: AskBody = parse_json(body)?;
    let gen = Knobs {
        max_new_tokens: b.max_new_tokens,
        temperature: b.temperature,
        top_p: b.top_p,
        seed: b.seed,
    }
    .gen(ASK_MAX_NEW_TOKENS, s.cfg.max_new_tokens)?;
    let filter = Filter::from_json(b.filter.as_ref().unwrap_or(&Value::Null))?;
    let req = ask_request(
        &s,
        b.question,
        (b.doc, filter),
        parse_pick(b.all, b.top_k)?,
        parse_mode(b.mode.as_deref())?,
        gen,
    )
    .await?;
    let (mut rx, guard) = start_ask(&s, req)?;
    if !b.stream {
        let ev = collect(&s, &mut rx).await?;
        drop(guard);
        return match ev {
            Event::AskDone(r) => Ok(Json(&*r).into_response()),
            _ => Err(no_answer(&s)),
        };
    }
    let first = first_event(&s, &mut rx).await?;
    let stream = event_stream(first, rx, guard, Box::new(api_sse), None);
    Ok(sse_response(&s, stream))
}

/// `POST /v1/search`: the best chunks for a query (BM25), no model.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchBody {
    query: String,
    top_k: Option<usize>,
    #[serde(rename = "where")]
    filter: Option<Value>,
}

/// Chunks `search` returns unless asked for another count.
pub const SEARCH_TOP_K: usize = 8;

/// Runs a search on the blocking pool: `c3 search --json`'s answer, with a
/// `warning` when the filter names keys no document has.
pub async fn search_json(
    s: &AppState,
    query: String,
    top_k: Option<usize>,
    filter: Filter,
) -> ApiResult<Value> {
    if query.trim().is_empty() {
        return Err(ApiError::bad_request("the query is empty"));
    }
    let k = match top_k {
        Some(0) => return Err(ApiError::bad_request("top_k must be at least 1")),
        Some(k) => k,
        None => SEARCH_TOP_K,
    };
    blocking(s, move |store| {
        let (docs, note) = if filter.is_empty() {
            (None, None)
        } else {
            let sel = store.select(&filter)?;
            (Some(sel.ids()), sel.note())
        };
        let hits = crate::retrieve::search(store, &query, docs.as_deref(), k)?;
        let mut v = json!({"query": query, "hits": hits});
        if let Some(n) = note {
            v["warning"] = json!(n);
        }
        Ok(v)
    })
    .await
}

pub async fn search(
    State(s): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Value>> {
    let b: SearchBody = parse_json(body)?;
    let filter = Filter::from_json(b.filter.as_ref().unwrap_or(&Value::Null))?;
    Ok(Json(search_json(&s, b.query, b.top_k, filter).await?))
}

/// `POST /v1/expand`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpandBody {
    doc: DocSpec,
    chunk: Option<u32>,
    max_new_tokens: Option<usize>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    seed: Option<u64>,
    #[serde(default)]
    stream: bool,
}

pub async fn expand(
    State(s): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let b: ExpandBody = parse_json(body)?;
    let gen = Knobs {
        max_new_tokens: b.max_new_tokens,
        temperature: b.temperature,
        top_p: b.top_p,
        seed: b.seed,
    }
    .gen(
        crate::generate::DEFAULT_MAX_NEW_TOKENS,
        s.cfg.max_new_tokens,
    )?;
    let spec = b.doc.clone();
    let chunk = b.chunk;
    let doc = blocking(&s, move |store| {
        let id = resolve_docs(store, &[spec])?[0];
        let d = get_doc(store, id)?;
        if let Some(c) = chunk {
            if c >= d.chunk_count {
                return Err(ApiError::not_found(format!(
                    "document {id} has {} chunks (0..={}); there is no chunk {c}",
                    d.chunk_count,
                    d.chunk_count.saturating_sub(1)
                )));
            }
        }
        Ok(id)
    })
    .await?;
    let (mut rx, guard) = start(&s, |cancel, tx| Job::Expand {
        received: std::time::Instant::now(),
        doc,
        chunk,
        gen,
        cancel,
        tx,
    })?;
    if !b.stream {
        let ev = collect(&s, &mut rx).await?;
        drop(guard);
        return match ev {
            Event::ExpandDone(v) => Ok(Json(v).into_response()),
            _ => Err(no_answer(&s)),
        };
    }
    let first = first_event(&s, &mut rx).await?;
    let stream = event_stream(first, rx, guard, Box::new(api_sse), None);
    Ok(sse_response(&s, stream))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Numbers a hostile client may send.
    const NUMBERS: &[&str] = &[
        "0",
        "-1",
        "1e12",
        "1e400",
        "18446744073709551616",
        "4294967296",
        "NaN",
        "0.5",
        "null",
        "\"x\"",
        "[]",
        "{}",
    ];

    /// `base` with byte edits, a truncation and digit runs swapped for
    /// [`NUMBERS`], driven by `seed`.
    pub(crate) fn mutate(base: &str, seed: &[(u16, u8)]) -> Vec<u8> {
        let mut b = base.as_bytes().to_vec();
        for &(at, v) in seed {
            if b.is_empty() {
                break;
            }
            let i = at as usize % b.len();
            match v % 4 {
                0 => b[i] = v,
                1 => {
                    b.truncate(i);
                }
                2 => {
                    let n = NUMBERS[v as usize % NUMBERS.len()];
                    match b[i..].iter().position(u8::is_ascii_digit) {
                        Some(s) => {
                            let s = i + s;
                            let e = s + b[s..].iter().take_while(|c| c.is_ascii_digit()).count();
                            b.splice(s..e, n.bytes());
                        }
                        None => b.splice(i..i, n.bytes()).for_each(drop),
                    }
                }
                _ => b.insert(i, v),
            }
        }
        b
    }

    fn body(b: Vec<u8>) -> Result<Bytes, BytesRejection> {
        Ok(Bytes::from(b))
    }

    const ASK: &str = r#"{"question": "Who was never seen again?", "doc": [1, "book.txt"],
        "top_k": 4, "mode": "latent", "max_new_tokens": 24, "temperature": 0.7, "top_p": 0.9,
        "seed": 3, "stream": true}"#;
    const EXPAND: &str = r#"{"doc": "book.txt", "chunk": 1, "max_new_tokens": 40,
        "temperature": 0.5, "top_p": 1, "seed": 9, "stream": false}"#;
    const ADD: &str = r#"{"name": "notes.md", "text": "Some words.\nMore words."}"#;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        // Issue 21: any body, however mangled, is an answer or a JSON error
        // naming what is wrong; the generation values go through the one
        // validation. (The body is already bounded by --max-body.)
        #[test]
        fn mangled_bodies_are_parsed_or_refused(
            seed in prop::collection::vec((any::<u16>(), any::<u8>()), 1..6),
        ) {
            if let Ok(b) = parse_json::<AskBody>(body(mutate(ASK, &seed))) {
                let _ = Knobs {
                    max_new_tokens: b.max_new_tokens,
                    temperature: b.temperature,
                    top_p: b.top_p,
                    seed: b.seed,
                }
                .gen(ASK_MAX_NEW_TOKENS, 4096);
                let _ = parse_pick(b.all, b.top_k);
                let _ = parse_mode(b.mode.as_deref());
            }
            if let Ok(b) = parse_json::<ExpandBody>(body(mutate(EXPAND, &seed))) {
                let _ = Knobs {
                    max_new_tokens: b.max_new_tokens,
                    temperature: b.temperature,
                    top_p: b.top_p,
                    seed: b.seed,
                }
                .gen(crate::generate::DEFAULT_MAX_NEW_TOKENS, 4096);
            }
            if let Ok(b) = parse_json::<AddBody>(body(mutate(ADD, &seed))) {
                let _ = check_name(&b.name);
                let _ = check_text(b.text.as_bytes());
            }
        }
    }

    #[test]
    fn out_of_range_generation_values_are_refused() {
        let k = |max: Option<usize>, t: Option<f32>, p: Option<f32>| {
            Knobs {
                max_new_tokens: max,
                temperature: t,
                top_p: p,
                seed: None,
            }
            .gen(512, 4096)
        };
        assert!(k(None, None, None).is_ok());
        let e = k(Some(1_000_000_000_000), None, None).unwrap_err();
        assert!(e.message.contains("--max-new-tokens"), "{e}");
        for (t, p) in [
            (Some(f32::NAN), None),
            (Some(-1.0), None),
            (None, Some(5.0)),
        ] {
            assert_eq!(k(None, t, p).unwrap_err().status, StatusCode::BAD_REQUEST);
        }
        // A default above the server's cap is lowered to it.
        let o = Knobs {
            max_new_tokens: None,
            temperature: None,
            top_p: None,
            seed: None,
        }
        .gen(4096, 100)
        .unwrap();
        assert_eq!(o.max_new_tokens, 100);
    }
}
