//! `POST /v1/warm`: fill the prefix cache for documents on the model
//! worker, answering what was warmed when it is done.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::error::ApiError;
use super::routes::{
    blocking, collect, no_answer, parse_json, resolve_docs, start, OneOrMany, ASK_MAX_NEW_TOKENS,
};
use super::worker::{Event, Job};
use super::AppState;
use crate::query::WarmRequest;

/// The body: the documents as `/v1/ask` names them (`doc`: an id, a source
/// or a list; none or `all: true`: every document) and the answer length the
/// questions will use.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarmBody {
    #[serde(default, alias = "docs")]
    doc: Option<OneOrMany>,
    all: Option<bool>,
    max_new_tokens: Option<usize>,
}

pub async fn warm(
    State(s): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let b: WarmBody = parse_json(body)?;
    if b.all == Some(true) && b.doc.is_some() {
        return Err(ApiError::bad_request(
            "all and doc exclude each other: give one",
        ));
    }
    let max_new_tokens = b.max_new_tokens.unwrap_or(ASK_MAX_NEW_TOKENS);
    if max_new_tokens == 0 {
        return Err(ApiError::bad_request("max_new_tokens must be at least 1"));
    }
    let specs = b.doc.map(OneOrMany::specs).unwrap_or_default();
    let docs = blocking(&s, move |store| resolve_docs(store, &specs)).await?;
    let req = WarmRequest {
        docs,
        max_new_tokens,
    };
    let (mut rx, guard) = start(&s, |cancel, tx| Job::Warm { req, cancel, tx })?;
    let ev = collect(&s, &mut rx).await?;
    drop(guard);
    match ev {
        Event::WarmDone(v) => Ok(Json(v).into_response()),
        _ => Err(no_answer(&s)),
    }
}
