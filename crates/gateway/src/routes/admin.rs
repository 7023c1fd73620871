//! `/admin/*`: task administration for deployments without an orchestrator, and the audit
//! trail. Admin role only (with authentication off every caller is admin).

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{Caller, json_body};
use crate::extract::{Path, Query};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use mcp_api::requests::{AuditQuery, CreateTaskRequest, UpdateTaskRequest};
use mcp_api::responses::{AuditLog, TaskState};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/tasks", post(create_task))
        .route("/admin/tasks/{task_id}", patch(update_task))
        .route("/admin/audit", get(audit))
}

async fn create_task(
    State(s): State<AppState>,
    caller: Caller,
    req: Request,
) -> Result<(StatusCode, Json<TaskState>), ApiError> {
    let body: CreateTaskRequest = json_body(req, &s).await?;
    let actor = caller.admin_actor()?;
    Ok((
        StatusCode::CREATED,
        Json(s.service.create_task(&actor, body).await?),
    ))
}

async fn update_task(
    State(s): State<AppState>,
    caller: Caller,
    Path(task_id): Path<String>,
    req: Request,
) -> Result<Json<TaskState>, ApiError> {
    let body: UpdateTaskRequest = json_body(req, &s).await?;
    let actor = caller.admin_actor()?;
    Ok(Json(s.service.update_task(&actor, &task_id, body).await?))
}

/// `GET /admin/audit?task=&agent=&action=&since=&before_id=&limit=`: newest first.
async fn audit(
    State(s): State<AppState>,
    caller: Caller,
    Query(q): Query<AuditQuery>,
) -> Result<Json<AuditLog>, ApiError> {
    let actor = caller.admin_actor()?;
    Ok(Json(s.service.audit(&actor, q).await?))
}
