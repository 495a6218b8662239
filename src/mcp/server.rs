//! The MCP server: each tool is the `/v1` route of the same name run on
//! `c3 serve`'s state (its worker, queue, jobs and limits); documents are
//! resources.

use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, PaginatedRequestParams,
    ProgressNotificationParam, ProgressToken, ReadResourceRequestParams, ReadResourceResponse,
    ReadResourceResult, Resource, ResourceContents, ResourceTemplate, ServerCapabilities,
    ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use serde_json::{json, Map, Value};

use super::paths;
use super::tools;
use crate::docmeta::{Filter, Metadata};
use crate::serve::ingest::{check_name, check_text};
use crate::serve::jobs::JobState;
use crate::serve::routes::{self, blocking, Knobs, OneOrMany, ASK_MAX_NEW_TOKENS};
use crate::serve::worker::{Event, FilesJob, Job};
use crate::serve::{ApiError, AppState};

/// One MCP session's handler (cheap to clone: it holds the shared state).
#[derive(Clone)]
pub struct C3Mcp {
    state: AppState,
}

/// What a tool gives back: its structured result, or a message for the
/// agent (a tool error, never a protocol error).
type ToolOut = Result<Value, String>;

fn api(e: ApiError) -> String {
    e.message
}

fn lib(e: crate::Error) -> String {
    ApiError::from(e).message
}

fn filter_of(w: Option<Map<String, Value>>) -> Result<Filter, String> {
    Filter::from_json(&w.map(Value::Object).unwrap_or(Value::Null)).map_err(lib)
}

fn metadata_of(m: Option<Map<String, Value>>) -> Result<Option<Metadata>, String> {
    m.map(|m| Metadata::from_json(&Value::Object(m)))
        .transpose()
        .map_err(lib)
}

impl C3Mcp {
    pub fn new(state: AppState) -> Self {
        C3Mcp { state }
    }

    async fn run_tool(
        &self,
        name: &str,
        args: Option<Map<String, Value>>,
        ctx: &RequestContext<RoleServer>,
    ) -> ToolOut {
        match name {
            "search" => self.search(tools::parse(name, args)?).await,
            "ask" => self.ask(tools::parse(name, args)?, ctx).await,
            "expand" => self.expand(tools::parse(name, args)?, ctx).await,
            "add" => self.add(tools::parse(name, args)?, ctx).await,
            "add_path" => self.add_path(tools::parse(name, args)?, ctx).await,
            "sync" => self.sync(tools::parse(name, args)?, ctx).await,
            "list" => self.list(tools::parse(name, args)?).await,
            "delete" => self.delete(tools::parse(name, args)?).await,
            "stats" => {
                let _: tools::StatsArgs = tools::parse(name, args)?;
                self.stats().await
            }
            other => Err(format!(
                "unknown tool `{}`; the tools are {}",
                crate::term::name(other),
                tools::names().join(", ")
            )),
        }
    }

    async fn search(&self, a: tools::SearchArgs) -> ToolOut {
        let filter = filter_of(a.filter)?;
        routes::search_json(&self.state, a.query, a.top_k, filter)
            .await
            .map_err(api)
    }

    async fn ask(&self, a: tools::AskArgs, ctx: &RequestContext<RoleServer>) -> ToolOut {
        let s = &self.state;
        let gen = Knobs {
            max_new_tokens: a.max_new_tokens,
            temperature: None,
            top_p: None,
            seed: None,
        }
        .gen(ASK_MAX_NEW_TOKENS, s.cfg.max_new_tokens)
        .map_err(api)?;
        let total = gen.max_new_tokens;
        let filter = filter_of(a.filter)?;
        let req = routes::ask_request(
            s,
            a.question,
            (a.doc.map(|d| OneOrMany::One(d.spec())), filter),
            routes::parse_pick(a.all, a.top_k).map_err(api)?,
            routes::parse_mode(a.mode.as_deref()).map_err(api)?,
            gen,
        )
        .await
        .map_err(api)?;
        let (mut rx, guard) = routes::start_ask(s, req).map_err(api)?;
        let progress = Progress::of(ctx);
        let mut tokens = 0u64;
        loop {
            let ev = tokio::select! {
                ev = rx.recv() => ev,
                _ = ctx.ct.cancelled() => {
                    drop(guard);
                    return Err("cancelled by the client".into());
                }
            };
            match ev {
                Some(Event::Token(_)) => {
                    tokens += 1;
                    progress
                        .send(ctx, tokens, Some(total as u64), "generating the answer")
                        .await;
                }
                Some(Event::AskDone(r)) => {
                    drop(guard);
                    return serde_json::to_value(&*r).map_err(|e| e.to_string());
                }
                Some(Event::Error(e)) => return Err(e.message),
                Some(_) => {}
                None => return Err("the model worker ended the request without an answer".into()),
            }
        }
    }

    async fn expand(&self, a: tools::ExpandArgs, ctx: &RequestContext<RoleServer>) -> ToolOut {
        let s = &self.state;
        let spec = a.doc.spec();
        let chunk = a.chunk;
        let (id, text) = blocking(s, move |store| {
            let id = routes::resolve_docs(store, &[spec])?[0];
            let d = store
                .document(id)?
                .ok_or_else(|| ApiError::not_found(format!("no document {id} in the store")))?;
            if chunk >= d.chunk_count {
                return Err(ApiError::not_found(format!(
                    "document {id} has {} chunks (0..={}); there is no chunk {chunk}",
                    d.chunk_count,
                    d.chunk_count.saturating_sub(1)
                )));
            }
            let c = store.chunk_record(id, chunk)?;
            let text = store.chunk_text(&c)?;
            Ok((
                id,
                json!({"doc": id, "source": d.source, "chunk": chunk, "start": c.start,
                       "end": c.end, "tokens": c.tokens, "text": text}),
            ))
        })
        .await
        .map_err(api)?;
        if !a.reconstruct.unwrap_or(false) {
            if a.max_new_tokens.is_some() {
                return Err("max_new_tokens goes with reconstruct: true".into());
            }
            return Ok(text);
        }
        let gen = Knobs {
            max_new_tokens: a.max_new_tokens,
            temperature: None,
            top_p: None,
            seed: None,
        }
        .gen(
            crate::generate::DEFAULT_MAX_NEW_TOKENS,
            s.cfg.max_new_tokens,
        )
        .map_err(api)?;
        let (mut rx, guard) = routes::start(s, |cancel, tx| Job::Expand {
            received: std::time::Instant::now(),
            doc: id,
            chunk: Some(chunk),
            gen,
            cancel,
            tx,
        })
        .map_err(api)?;
        let ev = tokio::select! {
            ev = routes::collect(s, &mut rx) => ev,
            _ = ctx.ct.cancelled() => {
                drop(guard);
                return Err("cancelled by the client".into());
            }
        };
        match ev.map_err(api)? {
            Event::ExpandDone(mut v) => {
                v["stored_text"] = text["text"].clone();
                Ok(v)
            }
            _ => Err("the model worker ended the request without an answer".into()),
        }
    }

    async fn add(&self, a: tools::AddArgs, ctx: &RequestContext<RoleServer>) -> ToolOut {
        let s = &self.state;
        let metadata = metadata_of(a.metadata)?;
        check_name(&a.name)?;
        check_text(a.text.as_bytes())?;
        let (id, _) = s.shared.jobs.create(&a.name, a.text.len() as u64);
        let job = Job::Ingest {
            id,
            name: a.name,
            text: a.text,
            metadata,
        };
        if let Err(e) = s.worker.submit(&s.shared, job) {
            s.shared.jobs.forget(id);
            return Err(e.message);
        }
        self.wait(id, ctx).await
    }

    fn roots(&self) -> &[std::path::PathBuf] {
        &self.state.cfg.allow_paths
    }

    async fn add_path(&self, a: tools::AddPathArgs, ctx: &RequestContext<RoleServer>) -> ToolOut {
        let path = paths::check(self.roots(), &a.path).map_err(lib)?;
        let req = FilesJob {
            paths: vec![path],
            sync: false,
            prune: false,
            metadata: metadata_of(a.metadata)?,
            confine: self.roots().to_vec(),
        };
        self.files("paths", &a.path, req, ctx).await
    }

    async fn sync(&self, a: tools::SyncArgs, ctx: &RequestContext<RoleServer>) -> ToolOut {
        let given = match a.paths {
            Some(p) if p.is_empty() => {
                return Err("`paths` is empty: name a path, or leave it out for every root".into())
            }
            Some(p) => p,
            None if self.roots().is_empty() => {
                return Err(paths::check(&[], ".").map_err(lib).unwrap_err())
            }
            None => self
                .roots()
                .iter()
                .map(|r| r.display().to_string())
                .collect(),
        };
        let checked = given
            .iter()
            .map(|p| paths::check(self.roots(), p))
            .collect::<crate::Result<Vec<_>>>()
            .map_err(lib)?;
        let req = FilesJob {
            paths: checked,
            sync: true,
            prune: a.prune.unwrap_or(false),
            metadata: metadata_of(a.metadata)?,
            confine: self.roots().to_vec(),
        };
        self.files("sync", &given.join(" "), req, ctx).await
    }

    async fn files(
        &self,
        kind: &'static str,
        name: &str,
        req: FilesJob,
        ctx: &RequestContext<RoleServer>,
    ) -> ToolOut {
        let s = &self.state;
        let (id, _) = s.shared.jobs.create_kind(kind, name, 0);
        if let Err(e) = s.worker.submit(&s.shared, Job::Files { id, req }) {
            s.shared.jobs.forget(id);
            return Err(e.message);
        }
        self.wait(id, ctx).await
    }

    /// Waits for ingest job `id`, sending progress notifications when the
    /// client asked for them, and cancelling the job when the client
    /// cancels the call. The job's record (`GET /v1/jobs/{id}`) is the
    /// result; a failed or cancelled job is a tool error.
    async fn wait(&self, id: u64, ctx: &RequestContext<RoleServer>) -> ToolOut {
        let jobs = &self.state.shared.jobs;
        let progress = Progress::of(ctx);
        let mut cancelled = false;
        progress.send(ctx, 0, None, "queued").await;
        loop {
            let Some((state, done)) = jobs.status(id) else {
                return Err(format!("job {id} is gone"));
            };
            if state.finished() {
                if let Some((d, t)) = done {
                    progress.send(ctx, d, Some(t), "finished").await;
                }
                break;
            }
            if let Some(msg) = self.state.shared.load_error() {
                return Err(format!("the model did not load: {msg}"));
            }
            if let Some((d, t)) = done {
                let what = match state {
                    JobState::Queued => "queued",
                    _ => "storing",
                };
                progress.send(ctx, d, Some(t), what).await;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = ctx.ct.cancelled(), if !cancelled => {
                    cancelled = true;
                    jobs.cancel(id);
                }
            }
        }
        let v = jobs.get(id).ok_or_else(|| format!("job {id} is gone"))?;
        match v["state"].as_str() {
            Some("done") => Ok(v),
            Some(state) => Err(format!(
                "job {id} {state}: {}",
                v["error"].as_str().unwrap_or("no reason given")
            )),
            None => Err(format!("job {id} has no state")),
        }
    }

    async fn list(&self, a: tools::ListArgs) -> ToolOut {
        let filter = filter_of(a.filter)?;
        blocking(&self.state, move |store| {
            let sel = store.select(&filter)?;
            let docs = sel
                .docs
                .iter()
                .map(|d| routes::doc_json(store, d))
                .collect::<crate::Result<Vec<_>>>()?;
            let mut v = json!({"documents": docs});
            if let Some(w) = sel.note() {
                v["warning"] = json!(w);
            }
            Ok(v)
        })
        .await
        .map_err(api)
    }

    async fn delete(&self, a: tools::DeleteArgs) -> ToolOut {
        let spec = a.doc.spec();
        blocking(&self.state, move |store| {
            let id = routes::resolve_docs(store, &[spec])?[0];
            let d = store
                .document(id)?
                .ok_or_else(|| ApiError::not_found(format!("no document {id} in the store")))?;
            if !store.remove(id)? {
                return Err(ApiError::not_found(format!(
                    "no document {id} in the store"
                )));
            }
            Ok(json!({"id": id, "source": d.source, "deleted": true}))
        })
        .await
        .map_err(api)
    }

    async fn stats(&self) -> ToolOut {
        blocking(&self.state, |store| {
            let st = store.stats()?;
            let model = store.meta()?.model;
            let mut v = serde_json::to_value(&st).map_err(|e| ApiError::internal(e.to_string()))?;
            v["model"] = json!(model.map(|m| json!({
                "fingerprint": m.fingerprint, "latent_len": m.latent_len,
                "hidden_size": m.hidden_size
            })));
            Ok(v)
        })
        .await
        .map_err(api)
    }

    /// `c3://doc/{id}` (the whole text) or `c3://doc/{id}/chunk/{n}`.
    async fn read(&self, uri: &str) -> Result<String, McpError> {
        let not_found = |why: String| McpError::resource_not_found(why, Some(json!({"uri": uri})));
        let rest = uri.strip_prefix("c3://doc/").ok_or_else(|| {
            not_found(format!(
                "resource `{}`: c3 serves c3://doc/{{id}} and c3://doc/{{id}}/chunk/{{n}}",
                crate::term::name(uri)
            ))
        })?;
        let (doc, chunk) = match rest.split_once("/chunk/") {
            Some((d, c)) => (d, Some(c)),
            None => (rest, None),
        };
        let id: u64 = doc.parse().map_err(|_| {
            not_found(format!(
                "resource `{}`: `{}` is not a document id",
                crate::term::name(uri),
                crate::term::name(doc)
            ))
        })?;
        let chunk: Option<u32> = match chunk {
            None => None,
            Some(c) => Some(c.parse().map_err(|_| {
                not_found(format!(
                    "resource `{}`: `{}` is not a chunk index",
                    crate::term::name(uri),
                    crate::term::name(c)
                ))
            })?),
        };
        blocking(&self.state, move |store| {
            let d = store
                .document(id)?
                .ok_or_else(|| ApiError::not_found(format!("no document {id} in the store")))?;
            let range = match chunk {
                Some(c) if c >= d.chunk_count => {
                    return Err(ApiError::not_found(format!(
                        "document {id} has {} chunks; there is no chunk {c}",
                        d.chunk_count
                    )))
                }
                Some(c) => c..c + 1,
                None => 0..d.chunk_count,
            };
            let mut text = String::new();
            for n in range {
                text.push_str(&store.chunk_text(&store.chunk_record(id, n)?)?);
            }
            Ok(text)
        })
        .await
        .map_err(|e| not_found(e.message))
    }
}

/// Progress notifications for one call, when its client sent a token.
struct Progress(Option<ProgressToken>);

impl Progress {
    fn of(ctx: &RequestContext<RoleServer>) -> Self {
        Progress(ctx.meta.get_progress_token())
    }

    async fn send(
        &self,
        ctx: &RequestContext<RoleServer>,
        done: u64,
        total: Option<u64>,
        what: &str,
    ) {
        let Some(token) = &self.0 else {
            return;
        };
        let mut p = ProgressNotificationParam::new(token.clone(), done as f64);
        if let Some(t) = total {
            p = p.with_total(t as f64);
        }
        p.message = Some(what.to_string());
        // A client that is gone ends the call through its token.
        let _ = ctx.peer.notify_progress(p).await;
    }
}

impl ServerHandler for C3Mcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .build(),
        )
        .with_server_info(
            Implementation::new("c3", env!("CARGO_PKG_VERSION")).with_title("c3 compressed memory"),
        )
        .with_instructions(
            "c3 is a compressed long-context memory. `search` finds chunks (no model), `ask` \
             answers from the compressed memory, `expand` gives a chunk's stored text verbatim. \
             Documents are named by id (a number) or by name; `where` filters by metadata.",
        )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(tools::all()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let name = request.name.to_string();
        let out = self.run_tool(&name, request.arguments, &context).await;
        Ok(match out {
            Ok(v) => CallToolResult::structured(v),
            Err(msg) => CallToolResult::error(vec![ContentBlock::text(msg)]),
        }
        .into())
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        let docs = blocking(&self.state, |store| {
            Ok(store.documents().collect::<crate::Result<Vec<_>>>()?)
        })
        .await
        .map_err(|e| McpError::internal_error(e.message, None))?;
        Ok(ListResourcesResult::with_all_items(
            docs.into_iter()
                .map(|d| {
                    Resource::new(format!("c3://doc/{}", d.id), d.source.clone())
                        .with_description(format!(
                            "document {}: {} chunks, {} tokens",
                            d.id, d.chunk_count, d.token_count
                        ))
                        .with_mime_type("text/plain")
                        .with_size(d.size)
                })
                .collect(),
        ))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        Ok(ListResourceTemplatesResult::with_all_items(vec![
            ResourceTemplate::new("c3://doc/{id}", "document")
                .with_description("A stored document's text (id: a number from `list`).")
                .with_mime_type("text/plain"),
            ResourceTemplate::new("c3://doc/{id}/chunk/{n}", "chunk")
                .with_description("One chunk's stored text, verbatim (n from 0).")
                .with_mime_type("text/plain"),
        ]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let text = self.read(&request.uri).await?;
        Ok(ReadResourceResult::new(vec![ResourceContents::text(text, request.uri.clone())]).into())
    }
}
