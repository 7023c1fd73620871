//! The client's one error type. A refusal keeps the gateway's HTTP status and its stable
//! [`ErrorCode`] (the same table the gateway answers from, `mcp_api::error`), so a caller
//! branches on `err.code()` whether the answer came from the gateway, from the local
//! workspace, or from the network failing underneath.

use mcp_api::{ErrorBody, ErrorCode};
use serde_json::{Map, Value};
use std::time::Duration;

/// Everything a call can fail with. New kinds may be added: a `match` needs a `_` arm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The gateway (or the local workspace, with the same codes) refused the request.
    #[error("{code} ({status}): {detail}")]
    Refused {
        /// The HTTP status (for the local workspace: the status the gateway would answer).
        status: u16,
        /// The stable machine-readable code.
        code: ErrorCode,
        /// The human-readable sentence.
        detail: String,
        /// Context fields of the body (`current_version`, `holder`, `expires_at`, …).
        context: Map<String, Value>,
        /// The server's `Retry-After`, when it sent one (429 and 503).
        retry_after: Option<Duration>,
    },
    /// No answer: the gateway could not be reached, or did not answer in time.
    #[error("cannot reach the gateway at {url}: {message}")]
    Transport {
        /// The URL of the failed request.
        url: String,
        /// What went wrong, for humans.
        message: String,
        /// What kind of failure it was; decides whether a retry is safe.
        kind: TransportKind,
    },
    /// The gateway answered success with a body this client does not understand.
    #[error("unexpected answer from the gateway (HTTP {status}): {message}")]
    Decode {
        /// The HTTP status of the answer.
        status: u16,
        /// What did not parse.
        message: String,
    },
    /// A retryable failure persisted through every attempt the retry policy allows.
    #[error("gave up after {attempts} attempts: {last}")]
    GaveUp {
        /// How many requests were sent.
        attempts: u32,
        /// The failure of the last attempt.
        last: Box<ClientError>,
    },
    /// The client was configured wrongly (bad URL, bad environment variable).
    #[error("invalid client configuration: {0}")]
    Config(String),
    /// The local workspace hit an I/O error that has no gateway equivalent.
    #[error("local workspace I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// Why a request got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// The connection could not be opened: the request was certainly not processed.
    Connect,
    /// No answer within the timeout: the request may or may not have been processed.
    Timeout,
    /// The connection broke during the exchange: the request may have been processed.
    Other,
}

/// Result of a client call.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

impl ClientError {
    /// A refusal with the status the gateway gives `code`; used by the local workspace and
    /// by the client's own argument checks.
    pub fn refused(code: ErrorCode, detail: impl Into<String>) -> ClientError {
        ClientError::Refused {
            status: code.http_status(),
            code,
            detail: detail.into(),
            context: Map::new(),
            retry_after: None,
        }
    }

    /// Builds the error of a non-2xx answer from its status, its body and `Retry-After`.
    /// A body that is not the gateway's `{"detail","code"}` (a proxy's page, axum's plain
    /// text) gets the code its status implies.
    pub(crate) fn from_answer(status: u16, body: &[u8], retry_after: Option<Duration>) -> Self {
        match serde_json::from_slice::<ErrorBody>(body) {
            Ok(mut b) => {
                if b.code == ErrorCode::Unknown {
                    // A newer gateway's code: kept for the caller, which branches on the status.
                    let raw = serde_json::from_slice::<Value>(body)
                        .ok()
                        .and_then(|v| v.get("code").cloned())
                        .unwrap_or(Value::Null);
                    b.context.insert("unknown_code".into(), raw);
                }
                let retry_after = retry_after.or_else(|| {
                    b.context
                        .get("retry_after")
                        .and_then(Value::as_u64)
                        .map(Duration::from_secs)
                });
                ClientError::Refused {
                    status,
                    code: b.code,
                    detail: b.detail,
                    context: b.context,
                    retry_after,
                }
            }
            Err(_) => {
                let text = String::from_utf8_lossy(body);
                let text = text.trim();
                let detail = if text.is_empty() {
                    format!("HTTP {status}")
                } else {
                    text.chars().take(300).collect()
                };
                ClientError::Refused {
                    status,
                    code: code_for_status(status),
                    detail,
                    context: Map::new(),
                    retry_after,
                }
            }
        }
    }

    /// The stable code of this failure. A transport failure is `unavailable` (as the gateway
    /// itself answers when its backend is unreachable); an answer not understood is
    /// `internal`; for [`ClientError::GaveUp`] the last attempt's code.
    pub fn code(&self) -> ErrorCode {
        match self {
            ClientError::Refused { code, .. } => *code,
            ClientError::Transport { .. } => ErrorCode::Unavailable,
            ClientError::Decode { .. } | ClientError::Io(_) => ErrorCode::Internal,
            ClientError::GaveUp { last, .. } => last.code(),
            ClientError::Config(_) => ErrorCode::InvalidArgument,
        }
    }

    /// The HTTP status of the answer, when there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Refused { status, .. } | ClientError::Decode { status, .. } => {
                Some(*status)
            }
            ClientError::GaveUp { last, .. } => last.status(),
            _ => None,
        }
    }

    /// The context fields of a refusal (empty otherwise).
    pub fn context(&self) -> Option<&Map<String, Value>> {
        match self {
            ClientError::Refused { context, .. } => Some(context),
            ClientError::GaveUp { last, .. } => last.context(),
            _ => None,
        }
    }

    /// The human-readable detail of a refusal, else the error's own message.
    pub fn detail(&self) -> String {
        match self {
            ClientError::Refused { detail, .. } => detail.clone(),
            other => other.to_string(),
        }
    }

    /// The JSON shape tools and `mcpctl --json` report a failure in:
    /// `{"code","status","detail",…context}`.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("code".into(), Value::from(self.code().as_str()));
        m.insert(
            "status".into(),
            self.status().map_or(Value::Null, Value::from),
        );
        m.insert("detail".into(), Value::from(self.detail()));
        if let ClientError::GaveUp { attempts, .. } = self {
            m.insert("attempts".into(), Value::from(*attempts));
        }
        if let Some(ctx) = self.context() {
            for (k, v) in ctx {
                m.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        Value::Object(m)
    }
}

/// The code a bare status implies, for answers without the gateway's error body.
fn code_for_status(status: u16) -> ErrorCode {
    match status {
        400 => ErrorCode::InvalidArgument,
        401 => ErrorCode::Unauthorized,
        403 => ErrorCode::Forbidden,
        404 => ErrorCode::NotFound,
        405 => ErrorCode::MethodNotAllowed,
        413 => ErrorCode::TooLarge,
        429 => ErrorCode::RateLimited,
        502..=504 => ErrorCode::Unavailable,
        _ => ErrorCode::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_body_keeps_code_and_context() {
        let body = br#"{"detail":"locked by b","code":"locked","holder":"b","expires_at":"x"}"#;
        let e = ClientError::from_answer(409, body, None);
        assert_eq!(e.code(), ErrorCode::Locked);
        assert_eq!(e.status(), Some(409));
        assert_eq!(e.context().unwrap()["holder"], "b");
        assert_eq!(e.to_json()["holder"], "b");
    }

    #[test]
    fn a_code_of_a_newer_gateway_is_unknown_and_kept() {
        let body = br#"{"detail":"renew first","code":"lease_expired_v2"}"#;
        let e = ClientError::from_answer(409, body, None);
        assert_eq!(e.code(), ErrorCode::Unknown);
        assert_eq!(e.status(), Some(409));
        assert_eq!(e.context().unwrap()["unknown_code"], "lease_expired_v2");
        let e = ClientError::from_answer(503, br#"{"detail":"x","code":"brand_new"}"#, None);
        assert!(crate::retry::should_retry(
            &e,
            crate::retry::Idempotency::Unsafe
        ));
    }

    #[test]
    fn foreign_bodies_get_the_code_of_their_status() {
        let e = ClientError::from_answer(502, b"<html>bad gateway</html>", None);
        assert_eq!(e.code(), ErrorCode::Unavailable);
        let e = ClientError::from_answer(400, b"Failed to deserialize query string", None);
        assert_eq!(e.code(), ErrorCode::InvalidArgument);
    }

    #[test]
    fn retry_after_falls_back_to_the_body() {
        let body = br#"{"detail":"redis is unavailable","code":"unavailable","retry_after":2}"#;
        match ClientError::from_answer(503, body, None) {
            ClientError::Refused { retry_after, .. } => {
                assert_eq!(retry_after, Some(Duration::from_secs(2)))
            }
            other => panic!("{other:?}"),
        }
    }
}
