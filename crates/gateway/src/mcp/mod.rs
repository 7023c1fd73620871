//! The Model Context Protocol door: `/mcp`, Streamable HTTP, protocol generations 2025-11-25
//! (and the earlier ones rmcp knows) and 2026-07-28 on one endpoint, served by the official
//! Rust SDK `rmcp`, which stays behind this module.
//!
//! * [`handler`] — the `ServerHandler`: tools, resources, subscriptions; the caller of every
//!   request comes from its HTTP parts through [`crate::extract::Caller`], as for REST.
//! * [`tools`] — the tool list (from `mcp_api::TOOLS`, with JSON Schemas) and dispatch to the
//!   same `Service` methods as `POST /tools/*`.
//! * [`resources`] — resource URIs, templates, reads, and which resources an event changes.
//! * [`notify`] — resource-update notifications, from the live-event hub's tap.
//! * [`sessions`] — 2025-11-25 sessions kept in Redis, so any instance serves any request.
//! * [`jsonrpc`] — JSON-RPC errors for bodies rmcp would refuse with a bare HTTP status.
//!
//! Instances share nothing in memory: 2026-07-28 requests are stateless, and a 2025-11-25
//! session is restored from Redis by whichever instance receives its request. `Host` and
//! `Origin` are checked before, for every route alike (`routes::rebinding`; a foreign origin
//! gets 403); credentials are checked first by the REST door's `Caller` extraction (its HTTP
//! error, e.g. 401).

pub mod handler;
pub mod jsonrpc;
pub mod notify;
pub mod resources;
pub mod sessions;
pub mod tools;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::Caller;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use mcp_domain::Service;
use notify::Hub;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use sessions::SESSION_TTL;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The settings of `/mcp`.
#[derive(Debug, Clone)]
pub struct McpConfig {
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
}

/// What `/mcp` keeps per gateway process.
#[derive(Clone)]
pub struct McpState {
    /// `/mcp`'s settings.
    pub config: McpConfig,
    /// The process's MCP subscribers (resource updates, cancellations).
    pub hub: Arc<Hub>,
    /// Ends the MCP streams when the gateway shuts down (they would hold the drain open).
    pub shutdown: CancellationToken,
}

impl McpState {
    /// `live` is the process's live-event hub, the source of resource-update notifications.
    pub fn new(config: McpConfig, service: &Service, live: crate::live::Hub) -> McpState {
        let shutdown = CancellationToken::new();
        McpState {
            config,
            hub: Hub::new(service, live, shutdown.clone()),
            shutdown,
        }
    }
}

/// `/mcp` for the gateway's router.
pub fn router(state: &AppState) -> Router<AppState> {
    let mcp = &state.mcp;
    let mut config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(true)
        .with_max_request_body_bytes(mcp.config.max_body_bytes)
        .with_cancellation_token(mcp.shutdown.child_token())
        // The gateway's own layer checks Host and Origin for every route, `/mcp` included
        // (`routes::rebinding`).
        .disable_allowed_hosts()
        .disable_allowed_origins();
    config.session_store = Some(Arc::new(sessions::HotSessionStore::new(
        mcp.hub.store().clone(),
    )));
    let handler_state = state.clone();
    let hub = mcp.hub.clone();
    let service = StreamableHttpService::new(
        move || Ok(handler::GatewayMcp::new(handler_state.clone(), hub.clone())),
        Arc::new(sessions::GatewaySessions::new(mcp.hub.clone())),
        config,
    );
    Router::new()
        .route_service("/mcp", service)
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            jsonrpc::guard,
        ))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate))
}

/// Refuses, at the HTTP level and before rmcp sees it, a request whose credentials the REST
/// door would refuse (the same `Caller` extraction); each MCP request derives its actor from
/// the same parts again. With authentication on, a request naming a session (`POST`, `GET`,
/// `DELETE` with `Mcp-Session-Id`) is served only for the agent that created the session:
/// for anyone else the session does not exist (404, rmcp's answer to an unknown session).
/// The request runs with its agent as [`sessions::CREATOR`], so a session it creates is
/// recorded as that agent's.
async fn authenticate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let caller = match Caller::from_request_parts(&mut parts, &state).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let agent = caller.identity().map(|id| id.agent.to_string());
    if let (Some(agent), Some(session)) = (&agent, parts.headers.get(SESSION_HEADER)) {
        let session = session.to_str().unwrap_or("");
        match state
            .mcp
            .hub
            .store()
            .load_session(session, SESSION_TTL)
            .await
        {
            Ok(Some(record)) if record.owner.as_deref() == Some(agent.as_str()) => {}
            Ok(_) => return unknown_session(),
            Err(e) => return ApiError::from(e).into_response(),
        }
    }
    let deadline = caller.token_deadline();
    let req = Request::from_parts(parts, body);
    let response = sessions::CREATOR.scope(agent, next.run(req)).await;
    match deadline {
        Some(d) if is_event_stream(&response) => end_stream_at(response, d),
        _ => response,
    }
}

fn is_event_stream(response: &Response) -> bool {
    response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"))
}

/// A streamed answer (the 2025-11-25 `GET` stream, a 2026-07-28 `subscriptions/listen`)
/// that ends when the caller's token expires, since the token then gets 401 on every
/// request: after its last complete message, with the SSE comment `: token expired`. The
/// client reconnects with a new token (a 2025-11-25 session lives on).
fn end_stream_at(response: Response, deadline: tokio::time::Instant) -> Response {
    let (parts, body) = response.into_parts();
    let sleep = Box::pin(tokio::time::sleep_until(deadline));
    let ended =
        futures::stream::unfold(Some((body.into_data_stream(), sleep)), |state| async move {
            let (mut messages, mut sleep) = state?;
            tokio::select! {
                item = messages.next() => item.map(|i| (i, Some((messages, sleep)))),
                _ = &mut sleep => {
                    metrics::counter!("mcp_live_cutoffs_total", "reason" => "token_expired")
                        .increment(1);
                    Some((Ok(Bytes::from_static(b": token expired\n\n")), None))
                }
            }
        });
    Response::from_parts(parts, Body::from_stream(ended))
}

/// The session header of the 2025-11-25 generation.
const SESSION_HEADER: &str = "mcp-session-id";

/// rmcp's answer to a session it does not know (MCP: 404 for unknown or ended sessions).
fn unknown_session() -> Response {
    (
        axum::http::StatusCode::NOT_FOUND,
        "Not Found: Session not found",
    )
        .into_response()
}
