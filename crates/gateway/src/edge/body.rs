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
//!
//! **Large bodies share a budget** (issue #14, item 10; [`LargeBodies`]). A write of an
//! 8 MiB file holds its content several times over while it is served (the body, the parsed
//! string, the Postgres and Redis command buffers: about 45 MB of RSS), so unbounded
//! concurrency of large writes is unbounded memory. A body declared longer than
//! `LARGE_BODY_BYTES` (or of unknown length, counted as `MAX_BODY_BYTES`) takes its length
//! from a semaphore of `LARGE_BODY_BUDGET_BYTES` before a byte of it is read, and gives it
//! back when the answer is ready. When it does not fit, the request waits (FIFO) up to
//! `LARGE_BODY_WAIT_MS` — its body stays in the client's socket meanwhile, costing nothing
//! here — then gets 503 `unavailable` with `Retry-After`: the gateway is overloaded, not the
//! client at fault, and nothing was done, so a retry is safe. Small requests never wait.

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
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
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

/// Unit of the large-body budget (a semaphore counts permits in `u32`).
const BUDGET_UNIT: usize = 64 * 1024;

/// The budget of large request bodies in flight: a semaphore of `budget` bytes (in
/// [`BUDGET_UNIT`]s) that bodies over `threshold` bytes draw their length from.
#[derive(Debug)]
pub struct LargeBodies {
    threshold: usize,
    units: u32,
    budget: Arc<Semaphore>,
    wait: Duration,
}

/// Room in the budget, held while the request is served; given back (and the gauge
/// `mcp_large_body_bytes_in_flight` updated) when dropped, also when the client goes away.
pub struct LargeBodyRoom {
    permit: OwnedSemaphorePermit,
    budget: Arc<Semaphore>,
    units: u32,
}

impl Drop for LargeBodyRoom {
    fn drop(&mut self) {
        let held = self.permit.num_permits();
        let in_use = (self.units as usize).saturating_sub(self.budget.available_permits() + held);
        metrics::gauge!("mcp_large_body_bytes_in_flight").set((in_use * BUDGET_UNIT) as f64);
    }
}

impl LargeBodies {
    /// `None` when `budget` is 0 (no bound).
    pub fn new(threshold: usize, budget: usize, wait: Duration) -> Option<LargeBodies> {
        if budget == 0 {
            return None;
        }
        let units = budget
            .div_ceil(BUDGET_UNIT)
            .min(Semaphore::MAX_PERMITS)
            .min(u32::MAX as usize) as u32;
        Some(LargeBodies {
            threshold,
            units,
            budget: Arc::new(Semaphore::new(units as usize)),
            wait,
        })
    }

    /// Takes room for a body of `len` bytes: `Ok(None)` when it is not large, `Ok(Some)` when
    /// it got room (within the wait), 503 `unavailable` when it did not. A body larger than
    /// the whole budget waits for all of it (it runs alone).
    pub async fn admit(&self, len: u64) -> Result<Option<LargeBodyRoom>, ApiError> {
        if len <= self.threshold as u64 {
            return Ok(None);
        }
        let want = usize::try_from(len)
            .unwrap_or(usize::MAX)
            .div_ceil(BUDGET_UNIT)
            .min(self.units as usize) as u32;
        match tokio::time::timeout(self.wait, self.budget.clone().acquire_many_owned(want)).await {
            Ok(Ok(permit)) => {
                metrics::gauge!("mcp_large_body_bytes_in_flight").set(self.in_use() as f64);
                Ok(Some(LargeBodyRoom {
                    permit,
                    budget: self.budget.clone(),
                    units: self.units,
                }))
            }
            _ => {
                metrics::counter!("mcp_large_bodies_refused_total").increment(1);
                Err(ApiError::unavailable(
                    "too many large request bodies in flight; retry later",
                ))
            }
        }
    }

    /// Bytes of the budget in use now (rounded up to the unit).
    pub fn in_use(&self) -> usize {
        (self.units as usize - self.budget.available_permits()) * BUDGET_UNIT
    }
}

/// The middleware: 413 for a declared length over the limit, a place in the large-body
/// budget for a large one, else the body watched.
pub async fn guard(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
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
    let _room = match &state.large_bodies {
        Some(budget) => {
            let len = match declared {
                Some(len) => len,
                None if body.is_end_stream() => 0,
                None => state.max_body_bytes as u64,
            };
            match budget.admit(len).await {
                Ok(room) => room,
                Err(e) => return axum::response::IntoResponse::into_response(e),
            }
        }
        None => None,
    };
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
