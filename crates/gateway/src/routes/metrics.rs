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
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::collections::HashMap;
use std::sync::{LazyLock, RwLock};
use std::time::{Duration, Instant};

pub(super) fn router() -> Router<AppState> {
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
pub(super) async fn track(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().cloned();
    let method = req.method().clone();
    let started = Instant::now();
    let mut response = next.run(req).await;
    let status = response.status().as_u16();
    let route_str = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let (requests, duration) = handles(&method, route_str, status);
    requests.increment(1);
    duration.record(started.elapsed().as_secs_f64());
    // For the access log, outside the router.
    if let Some(route) = route {
        response
            .extensions_mut()
            .insert(super::access::RouteTemplate(route));
    }
    response
}

/// The metric handles of one label set (method, route template, status).
type Handles = (metrics::Counter, metrics::Histogram);

/// Route template → (method, status, handles) of each label set seen on it.
type HandleMap = HashMap<String, Vec<(Method, u16, Handles)>>;

/// Handles by route template, then (method, status): a label set is registered once, on its
/// first request. (Registering through the macros on every request built the key from three
/// owned strings, hashed it, cloned it and looked it up: most of this layer's cost.)
static HANDLES: LazyLock<RwLock<HandleMap>> = LazyLock::new(RwLock::default);

fn handles(method: &Method, route: &str, status: u16) -> Handles {
    let find = |map: &HandleMap| {
        map.get(route)?
            .iter()
            .find(|(m, s, _)| m == method && *s == status)
            .map(|(_, _, h)| h.clone())
    };
    if let Some(h) = find(&HANDLES.read().unwrap_or_else(|p| p.into_inner())) {
        return h;
    }
    let mut map = HANDLES.write().unwrap_or_else(|p| p.into_inner());
    if let Some(h) = find(&map) {
        return h;
    }
    let labels = [
        ("method", method.as_str().to_owned()),
        ("route", route.to_owned()),
        ("status", status.to_string()),
    ];
    let h = (
        metrics::counter!("mcp_http_requests_total", &labels),
        metrics::histogram!("mcp_http_request_duration_seconds", &labels),
    );
    map.entry(route.to_owned())
        .or_default()
        .push((method.clone(), status, h.clone()));
    h
}
