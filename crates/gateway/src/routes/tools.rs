//! `POST /tools/*`: the original contract's tools and ours. Each handler extracts, makes one
//! call to the domain, and answers.

use crate::AppState;
use crate::error::ApiError;
use crate::extract::ToolCall;
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use mcp_api::requests::*;
use mcp_api::responses::*;

type Reply<T> = Result<Json<T>, ApiError>;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/tools/file_read", post(file_read))
        .route("/tools/file_write", post(file_write))
        .route("/tools/file_edit", post(file_edit))
        .route("/tools/list_files", post(list_files))
        .route("/tools/delete_file", post(delete_file))
        .route("/tools/claim_file", post(claim_file))
        .route("/tools/renew_file", post(renew_file))
        .route("/tools/release_file", post(release_file))
        .route("/tools/log_step", post(log_step))
        .route("/tools/subscribe_logs", post(subscribe_logs))
        .route("/tools/join_collaboration", post(join_collab))
        .route("/tools/join_collab", post(join_collab))
        .route("/tools/leave_collaboration", post(leave_collab))
        .route("/tools/leave_collab", post(leave_collab))
}

async fn file_read(
    State(s): State<AppState>,
    c: ToolCall<FileReadRequest>,
) -> Reply<FileReadResponse> {
    Ok(Json(s.service.file_read(&c.actor, c.body).await?))
}

async fn file_write(
    State(s): State<AppState>,
    c: ToolCall<FileWriteRequest>,
) -> Reply<FileWriteResponse> {
    Ok(Json(s.service.file_write(&c.actor, c.body).await?))
}

async fn file_edit(
    State(s): State<AppState>,
    c: ToolCall<FileEditRequest>,
) -> Reply<FileEditResponse> {
    Ok(Json(s.service.file_edit(&c.actor, c.body).await?))
}

async fn list_files(
    State(s): State<AppState>,
    c: ToolCall<ListFilesRequest>,
) -> Reply<ListFilesResponse> {
    Ok(Json(s.service.list_files(&c.actor, c.body).await?))
}

async fn delete_file(
    State(s): State<AppState>,
    c: ToolCall<DeleteFileRequest>,
) -> Reply<DeleteFileResponse> {
    Ok(Json(s.service.delete_file(&c.actor, c.body).await?))
}

async fn claim_file(
    State(s): State<AppState>,
    c: ToolCall<ClaimFileRequest>,
) -> Reply<LockResponse> {
    Ok(Json(s.service.claim_file(&c.actor, c.body).await?))
}

async fn renew_file(
    State(s): State<AppState>,
    c: ToolCall<RenewFileRequest>,
) -> Reply<LockResponse> {
    Ok(Json(s.service.renew_file(&c.actor, c.body).await?))
}

async fn release_file(
    State(s): State<AppState>,
    c: ToolCall<ReleaseFileRequest>,
) -> Reply<ReleaseResponse> {
    Ok(Json(s.service.release_file(&c.actor, c.body).await?))
}

async fn log_step(
    State(s): State<AppState>,
    c: ToolCall<LogStepRequest>,
) -> Reply<LogStepResponse> {
    Ok(Json(s.service.log_step(&c.actor, c.body).await?))
}

async fn subscribe_logs(
    State(s): State<AppState>,
    c: ToolCall<SubscribeLogsRequest>,
) -> Reply<SubscribeLogsResponse> {
    Ok(Json(s.service.subscribe_logs(&c.actor, c.body).await?))
}

async fn join_collab(
    State(s): State<AppState>,
    c: ToolCall<CollaborationRequest>,
) -> Reply<CollaborationResponse> {
    Ok(Json(s.service.join_collab(&c.actor, c.body).await?))
}

async fn leave_collab(
    State(s): State<AppState>,
    c: ToolCall<CollaborationRequest>,
) -> Reply<CollaborationResponse> {
    Ok(Json(s.service.leave_collab(&c.actor, c.body).await?))
}
