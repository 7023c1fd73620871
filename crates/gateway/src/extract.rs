//! The one place where a request becomes an [`Actor`]. Every handler receives its actor
//! through [`ToolCall`] (tools: JSON body) or [`Caller`] (resources), so authentication
//! plugs in here without touching a handler.
//!
//! Authentication is not built yet: every caller is trusted. The acting agent is the body's
//! (or query's) `agent_id`, else the task id itself (the original's clients send only
//! `task_id`).

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use mcp_api::ErrorCode;
use mcp_api::requests::*;
use mcp_domain::{Actor, AgentId, TaskId};
use serde::de::DeserializeOwned;

/// What the request tells about its caller, before a task is known.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The `x-request-id` header (set by the request-id layer), for the audit trail.
    request_id: Option<String>,
}

impl Caller {
    /// The actor for a request on `task_id`, naming `agent_id` (if any).
    pub fn actor(&self, task_id: Option<&str>, agent_id: Option<&str>) -> Result<Actor, ApiError> {
        let agent = match (agent_id, task_id) {
            (Some(a), _) => AgentId::parse(a)?,
            (None, Some(t)) => AgentId::for_task(&TaskId::parse(t)?),
            (None, None) => AgentId::parse("anonymous")?,
        };
        let mut actor = Actor::trusted(agent);
        actor.request_id = self.request_id.clone();
        Ok(actor)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Caller {
            request_id: parts
                .headers
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        })
    }
}

/// A tool request: names the task it acts on and, optionally, the agent.
pub trait ToolRequest: DeserializeOwned {
    fn task_id(&self) -> &str;
    fn agent_id(&self) -> Option<&str>;
}

macro_rules! tool_request {
    ($($t:ty),* $(,)?) => {$(
        impl ToolRequest for $t {
            fn task_id(&self) -> &str { &self.task_id }
            fn agent_id(&self) -> Option<&str> { self.agent_id.as_deref() }
        }
    )*};
}

tool_request!(
    FileReadRequest,
    FileWriteRequest,
    FileEditRequest,
    DeleteFileRequest,
    ListFilesRequest,
    ClaimFileRequest,
    RenewFileRequest,
    ReleaseFileRequest,
    LogStepRequest,
    SubscribeLogsRequest,
    CollaborationRequest,
);

/// A parsed JSON body and the actor it acts as.
pub struct ToolCall<T> {
    pub actor: Actor,
    pub body: T,
}

/// Parses a JSON body: 413 `too_large` past the body limit, 400 `invalid_argument` when it is
/// not the expected JSON (the message names the field, never internals).
pub async fn json_body<T: DeserializeOwned, S: Send + Sync>(
    req: Request,
    state: &S,
) -> Result<T, ApiError> {
    let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(ErrorCode::TooLarge, "request body is over the size limit")
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

impl<S: Send + Sync, T: ToolRequest> FromRequest<S> for ToolCall<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let caller = Caller::from_request_parts(&mut parts, state).await?;
        let body: T = json_body(Request::from_parts(parts, body), state).await?;
        let actor = caller.actor(Some(body.task_id()), body.agent_id())?;
        Ok(ToolCall { actor, body })
    }
}
