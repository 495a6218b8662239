//! Errors of the HTTP service: [`ApiError`] is what a client sees (always
//! `{"error":{"code":…,"type":…,"message":…}}`), [`ServeError`] what stops
//! the server from starting or running.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Why the server could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {err}")]
    Bind { addr: String, err: std::io::Error },
    #[error(
        "refusing to listen on {addr} without an API key: anyone who can reach it could read \
         and change the store. Pass --api-key-file F (or set C3_API_KEY), or \
         --allow-unauthenticated to do this on purpose"
    )]
    NoKey { addr: String },
    #[error("the model did not load: {0}")]
    Load(String),
    /// An embedded session (`c3 mcp` over stdio) ended with an error.
    #[error("the session ended: {0}")]
    Session(String),
    #[error("{0}")]
    Io(std::io::Error),
    #[error("{0}")]
    Lib(crate::Error),
}

impl From<std::io::Error> for ServeError {
    fn from(e: std::io::Error) -> Self {
        ServeError::Io(e)
    }
}

impl From<crate::Error> for ServeError {
    fn from(e: crate::Error) -> Self {
        ServeError::Lib(e)
    }
}

/// An error answer: HTTP status, a short machine-readable type and a
/// message naming what was wrong.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
    /// Seconds for `Retry-After` (429, 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    pub fn busy(depth: usize) -> Self {
        ApiError {
            retry_after: Some(1),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "queue_full",
                format!("the model queue is full ({depth} jobs waiting): retry later"),
            )
        }
    }

    pub fn unavailable(kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            retry_after: Some(1),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, kind, message)
        }
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {"code": self.status.as_u16(), "type": self.kind, "message": self.message}})
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.kind,
            self.message
        )
    }
}

impl From<crate::Error> for ApiError {
    /// Library errors: a missing document or chunk is 404, bad input and
    /// what the model cannot do are the client's (400), a store another
    /// process holds is 503, everything else the server's (500).
    fn from(e: crate::Error) -> Self {
        use crate::Error as E;
        let message = e.to_string();
        match e {
            // The store's path is the server's business, not the client's.
            E::NoDocument { spec, .. } => {
                Self::not_found(format!("no document `{spec}` in the store"))
            }
            E::NoChunk { .. } | E::NoMatch { .. } => Self::not_found(message),
            E::Input(m) => Self::bad_request(m),
            E::BadMetadata { .. } | E::BadFilter { .. } | E::PathNotAllowed { .. } => {
                Self::bad_request(message)
            }
            E::NoReconstruction { .. }
            | E::ModelMismatch { .. }
            | E::GenSetting { .. }
            | E::NoRoom { .. } => Self::bad_request(message),
            ref l if l.is_store_locked() => Self::unavailable("store_locked", message),
            // The store refuses writes until its operator repairs it: the
            // request was fine, the server's state is not.
            E::Damaged { .. } => Self::new(StatusCode::CONFLICT, "store_damaged", message),
            E::ReadOnly { .. } => Self::new(StatusCode::CONFLICT, "store_read_only", message),
            _ => Self::internal(message),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(self.body())).into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

/// The error type for a status that reached the client without a JSON body
/// of ours (unknown route, wrong method, a layer's 413 or 408).
pub fn kind_for(status: StatusCode) -> &'static str {
    match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        StatusCode::REQUEST_TIMEOUT => "timeout",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::TOO_MANY_REQUESTS => "queue_full",
        s if s.is_client_error() => "invalid_request",
        _ => "internal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_errors_get_their_status_from_the_variant() {
        let damaged = crate::Error::Damaged {
            dir: "s".into(),
            summary: "1 document lost".into(),
        };
        let read_only = crate::Error::ReadOnly {
            dir: "s".into(),
            why: "no write permission".into(),
        };
        let missing = crate::Error::NoDocument {
            spec: "7".into(),
            store: "/srv/secret/store".into(),
        };
        assert_eq!(ApiError::from(damaged).kind, "store_damaged");
        assert_eq!(ApiError::from(read_only).status, StatusCode::CONFLICT);
        let e = ApiError::from(missing);
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        assert!(!e.message.contains("/srv/secret"), "{}", e.message);
    }
}
