//! `ApiError`: the one way an error leaves the gateway. Status from the code table in
//! `mcp-api`, body `{"detail","code",...context}`, `Retry-After` on 429/503,
//! `WWW-Authenticate` on 401. Server-side
//! causes are logged here, once, and never sent.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mcp_api::{ErrorBody, ErrorCode};
use mcp_domain::DomainError;
use serde_json::{Map, Value};

/// An error answer: its code picks the status, the body is `{"detail","code",...context}`.
#[derive(Debug)]
pub struct ApiError {
    /// The stable code (and through it the HTTP status).
    pub code: ErrorCode,
    /// A sentence for people.
    pub detail: String,
    /// Extra fields of the body (e.g. `retry_after`, also sent as `Retry-After` on 429/503).
    pub context: Map<String, Value>,
}

impl ApiError {
    /// An error with no context.
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> ApiError {
        ApiError {
            code,
            detail: detail.into(),
            context: Map::new(),
        }
    }

    /// A 503 `unavailable`, to be retried after a second.
    pub fn unavailable(detail: impl Into<String>) -> ApiError {
        let mut e = ApiError::new(ErrorCode::Unavailable, detail);
        e.context.insert("retry_after".into(), Value::from(1));
        e
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> ApiError {
        match &e {
            DomainError::Unavailable { backend, cause } => {
                tracing::warn!(backend, cause, "backend unavailable");
            }
            DomainError::Internal(cause) => tracing::error!(cause, "internal error"),
            DomainError::Forbidden(_) => {
                metrics::counter!("mcp_auth_refused_total", "reason" => "forbidden").increment(1);
            }
            _ => {}
        }
        ApiError {
            code: e.code(),
            detail: e.detail(),
            context: e.context(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let retry_after = self.context.get("retry_after").and_then(Value::as_u64);
        let challenge =
            (self.code == ErrorCode::Unauthorized).then(|| www_authenticate(&self.context));
        let body = ErrorBody {
            detail: self.detail,
            code: self.code,
            context: self.context,
        };
        let mut resp = (status, Json(body)).into_response();
        if self.code.is_retryable() {
            let secs = retry_after.unwrap_or(1).to_string();
            if let Ok(v) = HeaderValue::from_str(&secs) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        if let Some(Ok(v)) = challenge.map(|c| HeaderValue::from_str(&c)) {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        resp
    }
}

/// The `WWW-Authenticate` challenge of a 401 (RFC 6750, MCP authorization): the resource
/// metadata, scope and error the context names, when the gateway has an authorization server.
fn www_authenticate(context: &Map<String, Value>) -> String {
    let mut challenge = String::from("Bearer realm=\"mcp-gateway\"");
    for key in ["resource_metadata", "scope", "error"] {
        if let Some(v) = context.get(key).and_then(Value::as_str) {
            // Quoted-string: no quotes or backslashes inside (URLs and scope names have none).
            let v: String = v.chars().filter(|c| !matches!(c, '"' | '\\')).collect();
            challenge.push_str(&format!(", {key}=\"{v}\""));
        }
    }
    challenge
}
