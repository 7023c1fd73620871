//! The HTTP surface: one `router()` per area, assembled here with the shared layers (request
//! id, CORS, tracing, the Host/Origin check of [`rebinding`], body limit and body guard
//! (`edge::body`), request timeout -> 503 (408 when the client's body is what it waits for),
//! request metrics), the access log (`access.rs`, one INFO line per request) and a JSON 404 fallback. Authentication and the rate limit are not a layer: they happen in the extractors
//! (`extract.rs`), which every authenticated route uses (`/mcp` and the live streams too);
//! `/health` and `/metrics` need no token.

pub(crate) mod access;
mod admin;
pub(crate) mod answer;
mod health;
mod metrics;
pub mod rebinding;
mod resources;
pub(crate) mod tools;

use crate::AppState;
use crate::edge::body::BodyProgress;
use crate::error::ApiError;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use mcp_api::ErrorCode;
use tower::ServiceBuilder;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};

/// The whole HTTP surface: every area's routes, the fallbacks, and the layers in front of
/// them (request timeout, body guard and limit, Host/Origin check, tracing, CORS, access
/// log, request ids).
pub fn router(state: AppState) -> Router {
    // Installs the process's metrics recorder before the first request is measured.
    mcp_process::metrics_handle();
    let max_body = state.max_body_bytes;
    let routes = Router::new()
        .merge(tools::router())
        .merge(resources::router())
        .merge(admin::router())
        .merge(health::router())
        .merge(crate::oauth::router())
        .merge(crate::live::router())
        .merge(metrics::router())
        .merge(crate::ui::router())
        .merge(crate::mcp::router(&state))
        .route_layer(middleware::from_fn(metrics::track))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state.clone());
    // The shared layers wrap the routed router once, as one service, instead of each route
    // through `Router::layer`: that boxes every layer around every route, and axum clones a
    // route's whole chain of boxes for each request it routes (~85 allocations and ~35,000
    // instructions a request, issue #19). None of them reads what routing adds to the
    // request (the access log takes the route template from the response, `metrics::track`).
    // The first layer is the outermost, as the last `Router::layer` was.
    let layered = ServiceBuilder::new()
        .layer(SetRequestIdLayer::x_request_id(RandomRequestId))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(middleware::from_fn_with_state(
            state.access_log,
            access::log,
        ))
        .layer(cors(&state.cors_origins))
        .layer(middleware::from_fn_with_state(
            state.rebinding.clone(),
            rebinding::guard,
        ))
        .layer(DefaultBodyLimit::max(max_body))
        // The layers' state is cloned for every request: an `Arc`, not the whole `AppState`.
        .layer(middleware::from_fn_with_state(
            std::sync::Arc::new(state.clone()),
            crate::edge::body::guard,
        ))
        .layer(middleware::from_fn_with_state(
            state.request_timeout,
            request_timeout,
        ))
        .service(routes);
    Router::new().fallback_service(layered)
}

/// The id of a request that came without `x-request-id`: a random (version 4) UUID, as
/// `MakeRequestUuid` made, but from the thread's random generator rather than a `getrandom`
/// system call per request.
#[derive(Debug, Clone, Copy)]
struct RandomRequestId;

impl MakeRequestId for RandomRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
        let mut text = uuid::Uuid::encode_buffer();
        HeaderValue::from_str(id.hyphenated().encode_lower(&mut text))
            .ok()
            .map(RequestId::new)
    }
}

/// CORS: off (no headers, so browsers refuse cross-origin calls) unless `CORS_ORIGINS` names
/// origins; `*` allows any origin (bearer tokens are not cookies, so no credentials mode).
fn cors(origins: &[String]) -> CorsLayer {
    if origins.is_empty() {
        return CorsLayer::new();
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("last-event-id"),
            HeaderName::from_static("x-request-id"),
            HeaderName::from_static("mcp-session-id"),
            HeaderName::from_static("mcp-protocol-version"),
        ])
        .expose_headers([
            HeaderName::from_static("x-request-id"),
            header::RETRY_AFTER,
            HeaderName::from_static("mcp-session-id"),
        ])
        .max_age(std::time::Duration::from_secs(600))
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "this route does not accept that method",
    )
}

/// Bounds the time to a response: past it the caller gets 503 `unavailable` with
/// `Retry-After` instead of a hang — or 408 `request_timeout` when what the request was
/// waiting for is the rest of the client's own body (`edge::body`). (Streams are bounded
/// only until their headers.) A tool call that waits by design (a long poll: the request's
/// [`mcp_api::ToolRequest::wait`]) gets that much more time, through the
/// [`RequestDeadline`] its extractor finds in the request.
async fn request_timeout(
    State(timeout): State<std::time::Duration>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let body = req.extensions().get::<BodyProgress>().cloned();
    let deadline = RequestDeadline::new(timeout);
    req.extensions_mut().insert(deadline.clone());
    let run = next.run(req);
    tokio::pin!(run);
    loop {
        let at = deadline.at();
        tokio::select! {
            response = &mut run => return Ok(response),
            () = tokio::time::sleep_until(at) => {
                if deadline.at() > at {
                    continue; // extended meanwhile
                }
                return Err(match body {
                    Some(b) if b.waiting_on_client() => crate::edge::body::request_timeout(),
                    _ => ApiError::unavailable("the request timed out waiting for a backend"),
                });
            }
        }
    }
}

/// The instant a request must be answered by (in the request's extensions), which a
/// handler that waits by design extends by its wait.
#[derive(Clone)]
pub struct RequestDeadline(std::sync::Arc<std::sync::Mutex<tokio::time::Instant>>);

impl RequestDeadline {
    fn new(timeout: std::time::Duration) -> RequestDeadline {
        RequestDeadline(std::sync::Arc::new(std::sync::Mutex::new(
            tokio::time::Instant::now() + timeout,
        )))
    }

    fn at(&self) -> tokio::time::Instant {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Gives the request `wait` more time.
    pub fn extend(&self, wait: std::time::Duration) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) += wait;
    }
}
