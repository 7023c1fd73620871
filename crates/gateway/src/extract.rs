//! The one place where a request becomes an [`Actor`]. Every door — REST tools
//! ([`ToolCall`]), resources and admin routes ([`Caller`]), and the MCP endpoint and live
//! streams, which call [`Caller::resolve`] with the request's parts — goes through here, so
//! authentication, the rate limit and the acting agent are decided the same way everywhere.
//!
//! * **Authentication on** (`JWT_SECRET` set): the request must carry `Authorization: Bearer
//!   <token>` (or, for a `GET` only — browsers' `EventSource` and WebSocket cannot set headers
//!   — an `access_token` query parameter). The token's agent is the actor, with the token's
//!   role and task scope. A request naming another `agent_id` (body or query) is refused
//!   with 403 `forbidden`, as is a task outside the scope. Bad tokens: 401 `unauthorized`.
//! * **Authentication off**: every caller is trusted (admin, every task). The acting agent is
//!   the body's (or query's) `agent_id`, else the task id itself (the original's clients send
//!   only `task_id`).
//!
//! Then the per-agent rate limit (429 `rate_limited` with `Retry-After`), counted in Redis
//! per agent — per client address with authentication off, loopback clients exempt.

use crate::AppState;
use crate::auth::Identity;
use crate::edge::body::BodyProgress;
use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{Method, header};
use mcp_api::ErrorCode;
use mcp_api::ToolRequest;
use mcp_domain::{Actor, AgentId, DomainError, TaskId};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::net::SocketAddr;

/// Who is calling, before a task is known: the verified token's identity (authentication
/// on) or nobody in particular (off), and the request id for the audit trail.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The token's identity; `None` with authentication off.
    identity: Option<Identity>,
    /// The `x-request-id` header (set by the request-id layer), for the audit trail.
    request_id: Option<String>,
    /// Where the access log learns the acting agent (absent when it is off).
    agent_slot: Option<crate::routes::access::AgentSlot>,
}

impl Caller {
    /// Authenticates the request and counts it against its agent's rate. The result is
    /// cached in the request's extensions, so a request is resolved (and counted) once
    /// whichever extractor or middleware asks first.
    pub async fn resolve(state: &AppState, parts: &Parts) -> Result<Caller, ApiError> {
        if let Some(c) = parts.extensions.get::<Caller>() {
            return Ok(c.clone());
        }
        let request_id = parts
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            // A client-chosen id is kept only if it is short and plain (it goes to the audit).
            .filter(|v| v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
            .map(str::to_owned);
        let identity = if state.auth.enabled() {
            let now = chrono::Utc::now().timestamp();
            let verified = match bearer_token(parts) {
                Some(t) => state.auth.verify(t, now).await,
                None => Err(crate::auth::AuthError::Missing),
            };
            match verified {
                Ok(id) => Some(id),
                Err(crate::auth::AuthError::IssuerUnavailable(cause)) => {
                    tracing::warn!(%cause, "authorization server unavailable");
                    return Err(ApiError::unavailable(
                        "the authorization server is unreachable; retry later",
                    ));
                }
                Err(e) => {
                    metrics::counter!("mcp_auth_refused_total", "reason" => e.reason())
                        .increment(1);
                    return Err(unauthorized(state, &e));
                }
            }
        } else {
            None
        };
        let caller = Caller {
            identity,
            request_id,
            agent_slot: parts
                .extensions
                .get::<crate::routes::access::AgentSlot>()
                .cloned(),
        };
        if let (Some(slot), Some(id)) = (&caller.agent_slot, &caller.identity) {
            slot.set(id.agent.as_str());
        }
        caller.check_rate(state, parts).await?;
        Ok(caller)
    }

    /// Counts the request in its subject's window; 429 past the limit. A Redis failure lets
    /// the request through (the operation itself will meet the outage and answer 503).
    async fn check_rate(&self, state: &AppState, parts: &Parts) -> Result<(), ApiError> {
        let Some(limit) = state.rate_limit else {
            return Ok(());
        };
        let subject = match &self.identity {
            Some(id) => id.agent.to_string(),
            None => match parts.extensions.get::<ConnectInfo<SocketAddr>>() {
                // Without authentication there is no agent to tell apart: every local agent
                // shares the loopback address, so counting it would throttle them all
                // together. Loopback callers are trusted like everything else then.
                Some(ConnectInfo(addr)) if addr.ip().is_loopback() => return Ok(()),
                Some(ConnectInfo(addr)) => format!("ip:{}", addr.ip()),
                None => "ip:unknown".to_owned(),
            },
        };
        match state.service.rate_check(&subject, limit.window).await {
            Ok(w) if w.count <= limit.requests => Ok(()),
            Ok(w) => {
                let rest = w.resets_in;
                metrics::counter!("mcp_rate_limited_total").increment(1);
                let secs = rest.as_millis().div_ceil(1000).max(1) as u64;
                let mut e = ApiError::new(
                    ErrorCode::RateLimited,
                    format!(
                        "over {} requests per {} s; retry after {secs} s",
                        limit.requests,
                        limit.window.as_secs()
                    ),
                );
                e.context.insert("retry_after".into(), Value::from(secs));
                Err(e)
            }
            Err(e) => {
                tracing::debug!(error = %e, "rate limit not checked: redis unavailable");
                Ok(())
            }
        }
    }

    /// The verified identity, when authentication is on.
    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_ref()
    }

    /// When the caller's token stops being accepted (authentication on): the instant a
    /// stream opened with it must end, since the same token then gets 401 on every request.
    pub fn token_deadline(&self) -> Option<tokio::time::Instant> {
        let id = self.identity.as_ref()?;
        Some(tokio::time::Instant::now() + id.remaining(chrono::Utc::now().timestamp_millis()))
    }

    /// The actor for a request on `task_id` (if it names one) that names `agent_id` (if it
    /// does). With authentication on: the token's agent, role and scope; another `agent_id`,
    /// or a task outside the scope, is 403 `forbidden`.
    pub fn actor(&self, task_id: Option<&str>, agent_id: Option<&str>) -> Result<Actor, ApiError> {
        let Some(id) = &self.identity else {
            // The task is parsed here only when it names the agent; the operation parses it
            // otherwise (once either way: `Actor::task`).
            let mut actor = match (agent_id, task_id) {
                (Some(a), _) => Actor::trusted(AgentId::parse(a)?),
                (None, Some(t)) => {
                    let task = TaskId::parse(t)?;
                    Actor::anonymous(AgentId::for_task(&task)).with_checked_task(task)
                }
                (None, None) => Actor::anonymous(AgentId::parse("anonymous")?),
            };
            actor.request_id = self.request_id.clone();
            self.note_agent(&actor);
            return Ok(actor);
        };
        if let Some(claimed) = agent_id.filter(|a| *a != id.agent.as_str()) {
            return Err(DomainError::Forbidden(format!(
                "agent_id '{claimed}' is not the authenticated agent"
            ))
            .into());
        }
        let actor = Actor {
            agent: id.agent.clone(),
            role: id.role,
            tasks: id.tasks.clone(),
            request_id: self.request_id.clone(),
            anonymous: false,
            checked_task: None,
        };
        self.note_agent(&actor);
        // Refused here, before the operation: the task travels in the actor, so the
        // operation neither parses nor checks it again.
        let Some(t) = task_id else {
            return Ok(actor);
        };
        let task = actor.task(t)?;
        Ok(actor.with_checked_task(task))
    }

    /// Tells the access log who acts (the first actor of the request).
    fn note_agent(&self, actor: &Actor) {
        if let Some(slot) = &self.agent_slot {
            slot.set(actor.agent.as_str());
        }
    }

    /// The actor of an admin route: the token's (the operation checks the role), or with
    /// authentication off the trusted agent `admin`.
    pub fn admin_actor(&self) -> Result<Actor, ApiError> {
        match &self.identity {
            Some(_) => self.actor(None, None),
            None => self.actor(None, Some("admin")),
        }
    }
}

/// The bearer token: the `Authorization` header, or for a `GET` the `access_token` query
/// parameter.
/// The 401 for a refused token. With an authorization server, its context names the resource
/// metadata (and scopes) that `WWW-Authenticate` announces (MCP authorization, RFC 9728);
/// without one, it says plainly that a static bearer token is needed.
fn unauthorized(state: &AppState, e: &crate::auth::AuthError) -> ApiError {
    let missing = matches!(e, crate::auth::AuthError::Missing);
    match &state.auth.oauth {
        Some(oauth) => {
            let mut err = ApiError::new(ErrorCode::Unauthorized, e.to_string());
            err.context.insert(
                "resource_metadata".into(),
                oauth.config.metadata_url().into(),
            );
            if !oauth.config.scopes_supported.is_empty() {
                err.context.insert(
                    "scope".into(),
                    oauth.config.scopes_supported.join(" ").into(),
                );
            }
            if !missing {
                err.context.insert("error".into(), "invalid_token".into());
            }
            err
        }
        None if missing => ApiError::new(
            ErrorCode::Unauthorized,
            "authentication required: this gateway takes a static bearer token, sent as \
             'Authorization: Bearer <token>' (an operator makes one with `mcp-gateway token`); \
             it has no OAuth authorization server",
        ),
        None => ApiError::new(ErrorCode::Unauthorized, e.to_string()),
    }
}

fn bearer_token(parts: &Parts) -> Option<&str> {
    if let Some(h) = parts.headers.get(header::AUTHORIZATION) {
        let h = h.to_str().ok()?;
        let (scheme, token) = h.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim())
            .filter(|t| !t.is_empty());
    }
    if parts.method != Method::GET {
        return None;
    }
    parts
        .uri
        .query()?
        .split('&')
        .find_map(|kv| kv.strip_prefix("access_token="))
        .filter(|t| !t.is_empty())
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let caller = Caller::resolve(state, parts).await?;
        parts.extensions.insert(caller.clone());
        Ok(caller)
    }
}

/// A parsed JSON body and the actor it acts as.
pub struct ToolCall<T> {
    /// Who the call acts as (the caller, resolved).
    pub actor: Actor,
    /// The request body.
    pub body: T,
}

/// Parses a JSON body: 413 `too_large` past the body limit, 408 `request_timeout` when the
/// body stopped arriving (`edge::body`), 400 `invalid_argument` when it cannot be read (a
/// malformed chunk) or is not the expected JSON (the message names the field, never
/// internals).
pub async fn json_body<T: DeserializeOwned, S: Send + Sync>(
    req: Request,
    state: &S,
) -> Result<T, ApiError> {
    let progress = req.extensions().get::<BodyProgress>().cloned();
    let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(ErrorCode::TooLarge, "request body is over the size limit")
        } else if progress.as_ref().is_some_and(BodyProgress::timed_out) {
            crate::edge::body::request_timeout()
        } else {
            ApiError::new(
                ErrorCode::InvalidArgument,
                "could not read the request body",
            )
        }
    })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidArgument,
            format!("invalid JSON body: {e}"),
        )
    })
}

impl<T: ToolRequest> FromRequest<AppState> for ToolCall<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        // Authenticate before reading the body: an unauthenticated caller costs no parsing.
        let (mut parts, body) = req.into_parts();
        let caller = Caller::from_request_parts(&mut parts, state).await?;
        let deadline = parts
            .extensions
            .get::<crate::routes::RequestDeadline>()
            .cloned();
        let body: T = json_body(Request::from_parts(parts, body), state).await?;
        let actor = caller.actor(body.task_id(), body.agent_id())?;
        if let (Some(deadline), Some(wait)) = (deadline, body.wait()) {
            deadline.extend(wait);
        }
        Ok(ToolCall { actor, body })
    }
}

/// `axum::extract::Query` whose rejection is the gateway's error body (400
/// `invalid_argument`), not axum's plain text: a query that does not parse is the client's
/// fault and answers like every other refusal (the OpenAPI document promises JSON).
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| Query(v))
            .map_err(|e| {
                ApiError::new(
                    ErrorCode::InvalidArgument,
                    format!("invalid query string: {}", e.body_text()),
                )
            })
    }
}

/// `axum::extract::Path` with the gateway's error body as its rejection (a segment that is
/// not valid percent-encoded UTF-8 is 400 `invalid_argument`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| Path(v))
            .map_err(|e| {
                ApiError::new(
                    ErrorCode::InvalidArgument,
                    format!("invalid path parameter: {}", e.body_text()),
                )
            })
    }
}
