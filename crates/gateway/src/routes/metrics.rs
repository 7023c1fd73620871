//! `GET /metrics` (Prometheus text format) and the layer that measures every routed request.
//!
//! Everything any crate of the process records with the `metrics` macros lands in one
//! recorder (`mcp_process::metrics_handle`): the sync loops' lag and outbox gauges when
//! they run in this process, lock conflicts from the domain, the live streams' watchers. A
//! scrape first refreshes the gauges that describe the backends (Redis memory ratio, outbox
//! length, reachability), bounded by a short timeout so a backend outage never hangs it.

use crate::AppState;
use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::time::{Duration, Instant};

pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    s.service
        .export_backend_gauges(Duration::from_millis(500))
        .await;
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        mcp_process::render_metrics(),
    )
}

/// Counts and times a routed request: `mcp_http_requests_total` and
/// `mcp_http_request_duration_seconds` by method, route template (never the raw path, so the
/// label set stays small) and status. Streams are timed until their headers.
pub async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let started = Instant::now();
    let mut response = next.run(req).await;
    // For the access log, outside the router.
    response
        .extensions_mut()
        .insert(super::access::RouteTemplate(route.clone()));
    let status = response.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!("mcp_http_requests_total", &labels).increment(1);
    metrics::histogram!("mcp_http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}
