//! OpenAI-compatible `GET /v1/models` and `POST /v1/chat/completions`.
//!
//! The last user message is the question; the chunks are chosen from the
//! store as `c3 ask` chooses them (every chunk, or the BM25 top K), and a
//! `c3` object in the request may set `top_k`, `all`, `doc` and `mode`.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::sse::Event as SseEvent;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiError;
use super::routes::{
    ask_request, collect, event_stream, parse_json, parse_mode, parse_pick, sse_response,
    start_ask, Knobs, OneOrMany, ASK_MAX_NEW_TOKENS,
};
use super::worker::Event;
use super::AppState;
use crate::generate::StopReason;
use crate::query::AskResult;

/// Numbers completion ids within this process.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn now_s() -> i64 {
    crate::store::now_ms() / 1000
}

pub async fn models(State(s): State<AppState>) -> Json<Value> {
    Json(json!({
        "object": "list",
        "data": [{
            "id": s.cfg.model_id,
            "object": "model",
            "created": 0,
            "owned_by": "c3",
        }],
    }))
}

/// Message content: a string, or a list of parts of which the text parts count.
#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Deserialize)]
struct Part {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
struct Message {
    role: String,
    #[serde(default)]
    content: Option<Content>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct C3Ext {
    top_k: Option<usize>,
    all: Option<bool>,
    #[serde(alias = "docs")]
    doc: Option<OneOrMany>,
    mode: Option<String>,
    /// Metadata filter, as `/v1/ask`'s `where`.
    #[serde(rename = "where")]
    filter: Option<serde_json::Value>,
}

#[derive(Deserialize, Default)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

/// The fields c3 reads; others (`user`, penalties, …) are accepted and ignored.
#[derive(Deserialize)]
struct ChatBody {
    #[serde(default)]
    model: Option<String>,
    messages: Vec<Message>,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    max_tokens: Option<usize>,
    max_completion_tokens: Option<usize>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    seed: Option<u64>,
    n: Option<u32>,
    #[serde(default)]
    c3: Option<C3Ext>,
}

/// The text of the last user message.
fn question(messages: &[Message]) -> Result<String, ApiError> {
    let m = messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .ok_or_else(|| ApiError::bad_request("messages has no user message (the question)"))?;
    let text = match &m.content {
        Some(Content::Text(t)) => t.clone(),
        Some(Content::Parts(parts)) => {
            if let Some(p) = parts.iter().find(|p| p.kind != "text") {
                return Err(ApiError::bad_request(format!(
                    "content part of type `{}`: only text is read",
                    p.kind
                )));
            }
            parts
                .iter()
                .filter_map(|p| p.text.as_deref())
                .collect::<Vec<_>>()
                .join("\n")
        }
        None => String::new(),
    };
    if text.trim().is_empty() {
        return Err(ApiError::bad_request(
            "the last user message is empty (it is the question)",
        ));
    }
    Ok(text)
}

/// OpenAI's `finish_reason`: `length` when a limit (the new tokens or the
/// positions) cut the answer.
fn finish_reason(r: &AskResult) -> &'static str {
    match r.stop {
        StopReason::MaxNewTokens | StopReason::PositionLimit => "length",
        StopReason::End | StopReason::Cancelled => "stop",
    }
}

fn usage(r: &AskResult) -> Value {
    let completion = r.timings.generated_tokens.max(r.ids.len());
    json!({
        "prompt_tokens": r.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": r.prompt_tokens + completion,
        "latent_tokens": r.latent_tokens,
        "text_tokens_replaced": r.text_tokens_replaced,
        // OpenAI's field for prompt positions served from a cache.
        "prompt_tokens_details": {"cached_tokens": r.cached_positions},
    })
}

fn c3_info(r: &AskResult) -> Value {
    json!({"chunks": r.chunks, "dropped": r.dropped, "mode": r.mode, "timings": r.timings})
}

pub async fn chat_completions(
    State(s): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let b: ChatBody = parse_json(body)?;
    if b.n.is_some_and(|n| n != 1) {
        return Err(ApiError::bad_request("n must be 1"));
    }
    let q = question(&b.messages)?;
    let ext = b.c3.unwrap_or_default();
    let gen = Knobs {
        max_new_tokens: b.max_completion_tokens.or(b.max_tokens),
        temperature: b.temperature,
        top_p: b.top_p,
        seed: b.seed,
    }
    .gen(ASK_MAX_NEW_TOKENS, s.cfg.max_new_tokens)?;
    let filter =
        crate::docmeta::Filter::from_json(ext.filter.as_ref().unwrap_or(&serde_json::Value::Null))?;
    let req = ask_request(
        &s,
        q,
        (ext.doc, filter),
        parse_pick(ext.all, ext.top_k)?,
        parse_mode(ext.mode.as_deref())?,
        gen,
    )
    .await?;
    let model = b.model.unwrap_or_else(|| s.cfg.model_id.clone());
    let id = format!(
        "chatcmpl-{:x}-{}",
        crate::store::now_ms(),
        NEXT_ID.fetch_add(1, Ordering::Relaxed)
    );
    let created = now_s();
    let (mut rx, guard) = start_ask(&s, req)?;
    if !b.stream {
        let ev = collect(&s, &mut rx).await?;
        drop(guard);
        let Event::AskDone(r) = ev else {
            return Err(ApiError::internal("the worker sent no answer"));
        };
        return Ok(Json(json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": r.answer},
                "finish_reason": finish_reason(&r),
                "logprobs": null,
            }],
            "usage": usage(&r),
            "c3": c3_info(&r),
        }))
        .into_response());
    }
    let first = match rx.recv().await {
        Some(Event::Error(e)) => return Err(e),
        Some(ev) => ev,
        None => return Err(ApiError::internal("the worker sent no answer")),
    };
    let include_usage = b.stream_options.is_some_and(|o| o.include_usage);
    let base = json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
    });
    let chunk = {
        let base = base.clone();
        move |delta: Value, finish: Option<&str>| {
            let mut v = base.clone();
            v["choices"] =
                json!([{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": null}]);
            SseEvent::default().data(v.to_string())
        }
    };
    let to_sse = move |e: Event| -> Vec<SseEvent> {
        match e {
            Event::Chunks(_) => vec![chunk(json!({"role": "assistant", "content": ""}), None)],
            Event::Token(t) => vec![chunk(json!({"content": t}), None)],
            Event::AskDone(r) => {
                let mut v = vec![chunk(json!({}), Some(finish_reason(&r)))];
                if include_usage {
                    let mut last = base.clone();
                    last["choices"] = json!([]);
                    last["usage"] = usage(&r);
                    last["c3"] = c3_info(&r);
                    v.push(SseEvent::default().data(last.to_string()));
                }
                v
            }
            Event::Error(e) => vec![SseEvent::default().data(e.body().to_string())],
            Event::ChunkStart(_) | Event::ExpandDone(_) | Event::WarmDone(_) => Vec::new(),
        }
    };
    let stream = event_stream(
        first,
        rx,
        guard,
        Box::new(to_sse),
        Some(SseEvent::default().data("[DONE]")),
    );
    Ok(sse_response(&s, stream))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CHAT: &str = r#"{"model": "c3", "messages": [{"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Who?"}]}], "max_tokens": 24,
        "temperature": 0.2, "top_p": 0.9, "seed": 1, "n": 1, "stream": true,
        "stream_options": {"include_usage": true}, "c3": {"top_k": 2, "doc": [0], "mode": "text"}}"#;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        // Issue 21: a mangled chat body is parsed or refused, never a panic.
        #[test]
        fn mangled_chat_bodies_are_parsed_or_refused(
            seed in prop::collection::vec((any::<u16>(), any::<u8>()), 1..6),
        ) {
            let m = crate::serve::routes::tests::mutate(CHAT, &seed);
            if let Ok(b) = parse_json::<ChatBody>(Ok(Bytes::from(m))) {
                let _ = question(&b.messages);
                let _ = Knobs {
                    max_new_tokens: b.max_completion_tokens.or(b.max_tokens),
                    temperature: b.temperature,
                    top_p: b.top_p,
                    seed: b.seed,
                }
                .gen(ASK_MAX_NEW_TOKENS, 4096);
                if let Some(ext) = b.c3 {
                    let _ = parse_pick(ext.all, ext.top_k);
                    let _ = parse_mode(ext.mode.as_deref());
                }
            }
        }
    }
}
