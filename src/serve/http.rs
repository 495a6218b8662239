//! The router and its layers, outermost first: tracing; request metrics
//! and JSON error bodies for every error answer (`track`); CORS for the
//! `--cors-origin` list; the browser guard (Host, Origin, Content-Type,
//! [`super::guard`]); reading the body under its own deadline and size limit
//! (`read_body`); the time limit until the answer starts; the API key
//! (protected routes only).

use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use super::error::{kind_for, ApiError};
use super::guard::RAW_TEXT_HEADER;
use super::{metrics, openai, routes, AppState};

/// The whole application.
/// `extra`: routes mounted beside the API (`/mcp`), behind the same guard,
/// key and limits.
pub fn app(state: AppState, extra: Option<Router<AppState>>) -> Router {
    let cfg = state.cfg.clone();
    let api = Router::new()
        .route(
            "/v1/documents",
            get(routes::list_documents).post(routes::add_document),
        )
        .route(
            "/v1/documents/{id}",
            get(routes::show_document).delete(routes::delete_document),
        )
        .route(
            "/v1/jobs/{id}",
            get(routes::get_job).delete(routes::cancel_job),
        )
        .route("/v1/stats", get(routes::stats))
        .route("/v1/check", get(routes::check))
        .route("/v1/ask", post(routes::ask))
        .route("/v1/search", post(routes::search))
        .route("/v1/expand", post(routes::expand))
        .route("/v1/warm", post(super::warm::warm))
        .route("/v1/models", get(openai::models))
        .route("/v1/chat/completions", post(openai::chat_completions));
    let protected = match (cfg.mount_only, extra) {
        (true, Some(extra)) => extra,
        (true, None) => Router::new(),
        (false, Some(extra)) => api.merge(extra),
        (false, None) => api,
    };
    let metrics = Router::new().route("/metrics", get(routes::metrics));
    let (protected, metrics) = if cfg.api_key.is_some() {
        let auth = middleware::from_fn_with_state(state.clone(), require_key);
        let m = if cfg.metrics_open {
            metrics
        } else {
            metrics.route_layer(auth.clone())
        };
        (protected.route_layer(auth), m)
    } else {
        (protected, metrics)
    };
    let mut app = Router::new()
        .route("/health", get(routes::health))
        .merge(protected)
        .merge(metrics)
        .fallback(unknown_route)
        .layer(DefaultBodyLimit::max(cfg.max_body))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            cfg.timeout,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), read_body))
        .layer(middleware::from_fn_with_state(state.clone(), guard));
    if !cfg.cors_origins.is_empty() {
        let origins: Vec<HeaderValue> = cfg
            .cors_origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        app = app.layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_methods([Method::GET, Method::POST, Method::DELETE])
                .allow_headers([
                    header::AUTHORIZATION,
                    header::CONTENT_TYPE,
                    HeaderName::from_static(RAW_TEXT_HEADER),
                ])
                .max_age(Duration::from_secs(3600)),
        );
    }
    app.layer(middleware::from_fn_with_state(state.clone(), track))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Refuses what a web page could send ([`super::guard`]) before any body
/// is read or any key compared.
async fn guard(State(s): State<AppState>, req: Request, next: Next) -> Response {
    match s.guard.check(req.method(), req.uri().path(), req.headers()) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// Reads the whole body before the handler runs, within `--body-timeout`
/// (a body trickled a byte at a time cannot hold a connection) and
/// `--max-body`; the handler gets it from memory.
async fn read_body(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let limit = s.cfg.max_body;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return too_large(limit);
    }
    let (parts, body) = req.into_parts();
    let read = Limited::new(body, limit).collect();
    let bytes = match tokio::time::timeout(s.cfg.body_timeout, read).await {
        Ok(Ok(c)) => c.to_bytes(),
        Ok(Err(e)) if e.is::<LengthLimitError>() => return too_large(limit),
        Ok(Err(e)) => {
            return ApiError::bad_request(format!("the request body could not be read: {e}"))
                .into_response()
        }
        Err(_) => {
            let mut r = ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!(
                    "the request body did not arrive within the server's limit of {:.1} s \
                     (--body-timeout)",
                    s.cfg.body_timeout.as_secs_f64()
                ),
            )
            .into_response();
            // What is left of the body is never read: the connection ends.
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return r;
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

fn too_large(limit: usize) -> Response {
    let mut r = ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        kind_for(StatusCode::PAYLOAD_TOO_LARGE),
        format!("the request body is larger than the server's limit of {limit} bytes (--max-body)"),
    )
    .into_response();
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

async fn unknown_route(req: Request) -> ApiError {
    ApiError::not_found(format!(
        "no route {} {} (see docs/serve.md)",
        req.method(),
        req.uri().path()
    ))
}

/// `Authorization: Bearer KEY` or `X-API-Key: KEY`, compared through their
/// blake3 hashes (constant time).
async fn require_key(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let Some(key) = s.cfg.api_key.as_deref() else {
        return next.run(req).await;
    };
    let h = req.headers();
    let given = h
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .or_else(|| h.get("x-api-key").and_then(|v| v.to_str().ok()))
        .map(str::trim);
    match given {
        Some(g) if blake3::hash(g.as_bytes()) == blake3::hash(key.as_bytes()) => {
            next.run(req).await
        }
        Some(_) => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the API key is wrong",
        )
        .into_response(),
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this route needs the API key: send `Authorization: Bearer KEY`",
        )
        .into_response(),
    }
}

/// Counts the request by route and status, and gives an error answer that
/// is not ours yet (a layer's 413 or 408, an extractor's rejection) the JSON
/// error body.
async fn track(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    // Unknown methods share one label: a client may invent them without end.
    let method = metrics::method_label(req.method());
    let method_name: String = req.method().as_str().chars().take(40).collect();
    let path = req.uri().path().to_string();
    let res = next.run(req).await;
    let status = res.status();
    let route = route.unwrap_or_else(|| {
        if status == StatusCode::NOT_FOUND {
            "unmatched".into()
        } else {
            "other".into()
        }
    });
    s.shared.metrics.request(&route, method, status.as_u16());
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if status.as_u16() < 400 || is_json {
        return res;
    }
    let (parts, body) = res.into_parts();
    let text = to_bytes(body, 16 << 10).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let message = match status {
        StatusCode::PAYLOAD_TOO_LARGE => format!(
            "the request body is larger than the server's limit of {} bytes (--max-body)",
            s.cfg.max_body
        ),
        StatusCode::REQUEST_TIMEOUT => format!(
            "the request took longer than the server's limit of {} s",
            s.cfg.timeout.as_secs()
        ),
        StatusCode::METHOD_NOT_ALLOWED => format!("method {method_name} is not allowed on {path}"),
        _ if !text.is_empty() => text,
        _ => status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_string(),
    };
    let mut fixed = ApiError::new(status, kind_for(status), message).into_response();
    for (k, v) in parts.headers.iter() {
        if k != header::CONTENT_TYPE && k != header::CONTENT_LENGTH {
            fixed.headers_mut().insert(k.clone(), v.clone());
        }
    }
    fixed
}
