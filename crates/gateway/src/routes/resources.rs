//! `GET /resources/*`: the MCP resources over plain HTTP (`tasks://{id}/state|logs|files`,
//! `workspace://{id}/{path}`, `agents://{id}/status`, `collaboration://{id}`), and the task and
//! agent lists.

use crate::AppState;
use crate::error::ApiError;
use crate::extract::Caller;
use crate::extract::{Path, Query};
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use mcp_api::requests::{AgentListQuery, FileReadRequest, ListFilesRequest, TaskListQuery};
use mcp_api::responses::*;
use serde::Deserialize;

type Reply<T> = Result<Json<T>, ApiError>;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/resources/tasks", get(list_tasks))
        .route("/resources/agents", get(list_agents))
        .route("/resources/tasks/{task_id}/state", get(task_state))
        .route("/resources/tasks/{task_id}/logs", get(task_logs))
        .route("/resources/tasks/{task_id}/files", get(task_files))
        .route(
            "/resources/workspace/{task_id}/{*path}",
            get(workspace_file),
        )
        .route("/resources/agents/{agent_id}/status", get(agent_status))
        .route("/resources/collaboration/{task_id}", get(collaboration))
}

/// Query parameters every resource accepts.
#[derive(Debug, Deserialize)]
struct AgentQuery {
    /// The acting agent (with authentication off; with it on, only the token's agent).
    agent_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct LogsQuery {
    agent_id: Option<String>,
    /// Steps older than this step id.
    before: Option<String>,
    /// Page size, 1–1000 (default 100).
    limit: Option<usize>,
}

/// `GET /resources/tasks?q=&status=&agent=&limit=&cursor=`: the tasks the caller may see,
/// most recently active first.
async fn list_tasks(
    State(s): State<AppState>,
    caller: Caller,
    Query(q): Query<TaskListQuery>,
) -> Reply<TaskList> {
    let actor = caller.actor(None, None)?;
    Ok(Json(s.service.list_tasks(&actor, q).await?))
}

/// `GET /resources/agents?q=&task=&limit=&cursor=`: agents on the tasks the caller may see,
/// most recently seen first.
async fn list_agents(
    State(s): State<AppState>,
    caller: Caller,
    Query(q): Query<AgentListQuery>,
) -> Reply<AgentList> {
    let actor = caller.actor(None, None)?;
    Ok(Json(s.service.list_agents(&actor, q).await?))
}

async fn task_state(
    State(s): State<AppState>,
    caller: Caller,
    Path(task_id): Path<String>,
    Query(q): Query<AgentQuery>,
) -> Reply<TaskState> {
    let actor = caller.actor(Some(&task_id), q.agent_id.as_deref())?;
    Ok(Json(s.service.task_state(&actor, &task_id).await?))
}

async fn task_logs(
    State(s): State<AppState>,
    caller: Caller,
    Path(task_id): Path<String>,
    Query(q): Query<LogsQuery>,
) -> Reply<TaskLogs> {
    let actor = caller.actor(Some(&task_id), q.agent_id.as_deref())?;
    let limit = q.limit.unwrap_or(100);
    Ok(Json(
        s.service
            .task_logs(&actor, &task_id, q.before.as_deref(), limit)
            .await?,
    ))
}

async fn task_files(
    State(s): State<AppState>,
    caller: Caller,
    Path(task_id): Path<String>,
    Query(q): Query<AgentQuery>,
) -> Reply<ListFilesResponse> {
    let actor = caller.actor(Some(&task_id), q.agent_id.as_deref())?;
    let req = ListFilesRequest {
        task_id,
        prefix: None,
        agent_id: None,
    };
    Ok(Json(s.service.list_files(&actor, req).await?))
}

async fn workspace_file(
    State(s): State<AppState>,
    caller: Caller,
    Path((task_id, path)): Path<(String, String)>,
    Query(q): Query<AgentQuery>,
) -> Reply<FileReadResponse> {
    let actor = caller.actor(Some(&task_id), q.agent_id.as_deref())?;
    let req = FileReadRequest {
        task_id,
        path,
        agent_id: None,
    };
    Ok(Json(s.service.file_read(&actor, req).await?))
}

async fn agent_status(
    State(s): State<AppState>,
    caller: Caller,
    Path(agent_id): Path<String>,
) -> Reply<AgentStatus> {
    // Anyone may ask about any agent; the answer lists only tasks in the caller's scope.
    let actor = caller.actor(None, None)?;
    Ok(Json(s.service.agent_status(&actor, &agent_id).await?))
}

async fn collaboration(
    State(s): State<AppState>,
    caller: Caller,
    Path(task_id): Path<String>,
    Query(q): Query<AgentQuery>,
) -> Reply<CollaborationState> {
    let actor = caller.actor(Some(&task_id), q.agent_id.as_deref())?;
    Ok(Json(s.service.collaboration(&actor, &task_id).await?))
}
