//! Request bodies at the edge (issue #14, item 9). Every request body is wrapped in a
//! [`WatchedBody`] that records whether the gateway is, right now, waiting on the client for
//! more bytes ([`BodyProgress`], in the request's extensions). Three refusals follow:
//!
//! * a `Content-Length` over `MAX_BODY_BYTES` is 413 `too_large` before a byte is read
//!   ([`guard`]): waiting for 99,999,999,999 bytes that will never come is what made the
//!   request time out as a 503 before;
//! * a body with no new byte for `BODY_READ_TIMEOUT_SECS` ends in an error that the body
//!   extractor (`extract::json_body`) answers with 408 `request_timeout`;
//! * the request timeout (`routes::request_timeout`) answers 408 instead of 503 when it
//!   finds the gateway waiting on the client's body (a slow drip), because the backends were
//!   not what it waited for.
//!
//! A body that hyper cannot parse (a malformed chunk) errors the same way and is a 400.

use crate::AppState;
use crate::error::ApiError;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};
use mcp_api::ErrorCode;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Sleep;

/// Where the reading of one request body stands (shared by the body and whoever answers).
#[derive(Debug, Clone, Default)]
pub struct BodyProgress(Arc<AtomicU8>);

/// Not polled yet, or the last poll got a frame: the gateway is not waiting on the client.
const IDLE: u8 = 0;
/// The last poll found no byte available: the gateway waits on the client.
const WAITING: u8 = 1;
/// Read to the end.
const DONE: u8 = 2;
/// Ended by the body-read timeout.
const TIMED_OUT: u8 = 3;

impl BodyProgress {
    /// Whether the gateway is waiting on the client for more of the body (or gave up on it).
    pub fn waiting_on_client(&self) -> bool {
        matches!(self.0.load(Ordering::Relaxed), WAITING | TIMED_OUT)
    }

    /// Whether the body-read timeout ended the body.
    pub fn timed_out(&self) -> bool {
        self.0.load(Ordering::Relaxed) == TIMED_OUT
    }

    fn set(&self, state: u8) {
        self.0.store(state, Ordering::Relaxed);
    }
}

/// The error a [`WatchedBody`] ends with when no byte came for the body-read timeout.
#[derive(Debug, thiserror::Error)]
#[error("no byte of the request body arrived for {0:?}")]
pub struct BodyReadTimeout(Duration);

/// A request body that ends with [`BodyReadTimeout`] when the client stops sending, and
/// keeps its [`BodyProgress`] up to date.
pub struct WatchedBody {
    inner: Body,
    idle_timeout: Duration,
    /// Armed while the inner body has nothing to give.
    sleep: Option<Pin<Box<Sleep>>>,
    progress: BodyProgress,
}

impl HttpBody for WatchedBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(item) => {
                this.sleep = None;
                this.progress.set(match &item {
                    None => DONE,
                    Some(_) => IDLE,
                });
                Poll::Ready(item.map(|r| r.map_err(Into::into)))
            }
            Poll::Pending => {
                this.progress.set(WAITING);
                let idle = this.idle_timeout;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.progress.set(TIMED_OUT);
                        Poll::Ready(Some(Err(Box::new(BodyReadTimeout(idle)))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The middleware: 413 for a declared length over the limit, else the body watched.
pub async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(len) = declared
        && len > state.max_body_bytes as u64
    {
        let mut e = ApiError::new(
            ErrorCode::TooLarge,
            format!(
                "request body of {len} bytes is over the limit of {} bytes",
                state.max_body_bytes
            ),
        );
        e.context.insert(
            "limit".into(),
            serde_json::Value::from(state.max_body_bytes),
        );
        return axum::response::IntoResponse::into_response(e);
    }
    let (mut parts, body) = req.into_parts();
    let progress = BodyProgress::default();
    if body.is_end_stream() {
        progress.set(DONE);
    }
    parts.extensions.insert(progress.clone());
    let body = Body::new(WatchedBody {
        inner: body,
        idle_timeout: state.body_read_timeout,
        sleep: None,
        progress,
    });
    next.run(Request::from_parts(parts, body)).await
}

/// The answer to a request whose body stopped arriving.
pub fn request_timeout() -> ApiError {
    ApiError::new(
        ErrorCode::RequestTimeout,
        "the request body stopped arriving before it was complete",
    )
}
