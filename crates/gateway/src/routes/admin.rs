//! `/admin/*`: task administration for deployments without an orchestrator.

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{Caller, json_body};
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::routing::{patch, post};
use axum::{Json, Router};
use mcp_api::requests::{CreateTaskRequest, UpdateTaskRequest};
use mcp_api::responses::TaskState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/tasks", post(create_task))
        .route("/admin/tasks/{task_id}", patch(update_task))
}

async fn create_task(
    State(s): State<AppState>,
    caller: Caller,
    req: Request,
) -> Result<(StatusCode, Json<TaskState>), ApiError> {
    let body: CreateTaskRequest = json_body(req, &s).await?;
    let actor = caller.actor(None, Some("admin"))?;
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
    let actor = caller.actor(None, Some("admin"))?;
    Ok(Json(s.service.update_task(&actor, &task_id, body).await?))
}
