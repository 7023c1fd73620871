//! MCP tools: the registry `mcp_api::TOOLS`, each with the JSON Schemas of its request and
//! response types (from `schemars`), dispatched to the same `Service` methods as
//! `POST /tools/*`. A refusal of the operation (`locked`, `version_conflict`, bad arguments…)
//! is a tool result with `isError: true` whose structured content is the REST error body
//! `{"detail","code",…}`; only an unknown tool name is a protocol error.

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{Caller, ToolRequest};
use mcp_api::requests::*;
use mcp_api::responses::*;
use mcp_api::{ErrorBody, ErrorCode, TOOLS, ToolInfo};
use mcp_domain::{Actor, Service};
use rmcp::handler::server::common::{schema_for_input, schema_for_output};
use rmcp::model::{CallToolResult, JsonObject, Tool, ToolAnnotations};
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;
use std::future::Future;
use std::sync::Arc;

/// The registry entry for a wire name or alias.
pub fn find(name: &str) -> Option<&'static ToolInfo> {
    TOOLS
        .iter()
        .find(|t| t.name == name || t.aliases.contains(&name))
}

type Schemas = (Arc<JsonObject>, Arc<JsonObject>);

fn io<Req: JsonSchema + 'static, Resp: JsonSchema + 'static>() -> Schemas {
    (
        schema_for_input::<Req>().expect("request types are JSON objects"),
        schema_for_output::<Resp>(),
    )
}

/// Input and output schemas of a tool (by its registry name).
fn schemas(name: &str) -> Option<Schemas> {
    Some(match name {
        "file_read" => io::<FileReadRequest, FileReadResponse>(),
        "file_write" => io::<FileWriteRequest, FileWriteResponse>(),
        "file_edit" => io::<FileEditRequest, FileEditResponse>(),
        "list_files" => io::<ListFilesRequest, ListFilesResponse>(),
        "delete_file" => io::<DeleteFileRequest, DeleteFileResponse>(),
        "claim_file" => io::<ClaimFileRequest, LockResponse>(),
        "renew_file" => io::<RenewFileRequest, LockResponse>(),
        "release_file" => io::<ReleaseFileRequest, ReleaseResponse>(),
        "log_step" => io::<LogStepRequest, LogStepResponse>(),
        "subscribe_logs" => io::<SubscribeLogsRequest, SubscribeLogsResponse>(),
        "join_collaboration" | "leave_collaboration" => {
            io::<CollaborationRequest, CollaborationResponse>()
        }
        _ => return None,
    })
}

/// The tool list: every registry entry under its name (aliases are accepted by
/// `tools/call` but not listed, so a model sees each operation once).
pub fn list() -> Vec<Tool> {
    TOOLS
        .iter()
        .filter_map(|t| {
            let (input, output) = schemas(t.name)?;
            let destructive = matches!(t.name, "file_write" | "file_edit" | "delete_file");
            let idempotent = matches!(
                t.name,
                "claim_file" | "renew_file" | "join_collaboration" | "leave_collaboration"
            );
            let mut annotations = ToolAnnotations::new()
                .read_only(!t.mutates)
                .open_world(false);
            if t.mutates {
                annotations = annotations.destructive(destructive).idempotent(idempotent);
            }
            Some(
                Tool::new(t.name, t.description, input)
                    .with_raw_output_schema(output)
                    .with_annotations(annotations),
            )
        })
        .collect()
}

/// Runs one tool call; `None` when no tool has this name.
pub async fn call(
    state: &AppState,
    caller: &Caller,
    name: &str,
    args: Value,
) -> Option<CallToolResult> {
    let tool = find(name)?;
    let s = &state.service;
    let result = match tool.name {
        "file_read" => {
            run(s, caller, args, |s, a, r| async move {
                s.file_read(&a, r).await
            })
            .await
        }
        "file_write" => {
            run(s, caller, args, |s, a, r| async move {
                s.file_write(&a, r).await
            })
            .await
        }
        "file_edit" => {
            run(s, caller, args, |s, a, r| async move {
                s.file_edit(&a, r).await
            })
            .await
        }
        "list_files" => {
            run(s, caller, args, |s, a, r| async move {
                s.list_files(&a, r).await
            })
            .await
        }
        "delete_file" => {
            run(s, caller, args, |s, a, r| async move {
                s.delete_file(&a, r).await
            })
            .await
        }
        "claim_file" => {
            run(s, caller, args, |s, a, r| async move {
                s.claim_file(&a, r).await
            })
            .await
        }
        "renew_file" => {
            run(s, caller, args, |s, a, r| async move {
                s.renew_file(&a, r).await
            })
            .await
        }
        "release_file" => {
            run(s, caller, args, |s, a, r| async move {
                s.release_file(&a, r).await
            })
            .await
        }
        "log_step" => {
            run(
                s,
                caller,
                args,
                |s, a, r| async move { s.log_step(&a, r).await },
            )
            .await
        }
        "subscribe_logs" => {
            run(s, caller, args, |s, a, r| async move {
                s.subscribe_logs(&a, r).await
            })
            .await
        }
        "join_collaboration" => {
            run(s, caller, args, |s, a, r| async move {
                s.join_collab(&a, r).await
            })
            .await
        }
        "leave_collaboration" => {
            run(s, caller, args, |s, a, r| async move {
                s.leave_collab(&a, r).await
            })
            .await
        }
        _ => return None,
    };
    let outcome = match &result {
        Ok(_) => "ok",
        Err(e) => e.code.as_str(),
    };
    metrics::counter!("mcp_mcp_tool_calls_total", "tool" => tool.name, "outcome" => outcome)
        .increment(1);
    Some(match result {
        Ok(value) => CallToolResult::structured(value),
        Err(e) => CallToolResult::structured_error(error_body(e)),
    })
}

/// The REST error body of an error, as JSON.
pub fn error_body(e: ApiError) -> Value {
    let body = ErrorBody {
        detail: e.detail,
        code: e.code,
        context: e.context,
    };
    serde_json::to_value(body).unwrap_or(Value::Null)
}

/// Parses the arguments, resolves the actor the way REST does, runs the operation.
async fn run<Req, Resp, F, Fut>(
    service: &Service,
    caller: &Caller,
    args: Value,
    op: F,
) -> Result<Value, ApiError>
where
    Req: ToolRequest,
    Resp: Serialize,
    F: FnOnce(Service, Actor, Req) -> Fut,
    Fut: Future<Output = mcp_domain::Result<Resp>>,
{
    let req: Req = serde_json::from_value(args).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidArgument,
            format!("invalid arguments: {e}"),
        )
    })?;
    let actor = caller.actor(Some(req.task_id()), req.agent_id())?;
    let resp = op(service.clone(), actor, req).await?;
    serde_json::to_value(resp)
        .map_err(|e| ApiError::from(mcp_domain::DomainError::Internal(e.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_registered_tool_has_schemas() {
        for t in TOOLS {
            assert!(schemas(t.name).is_some(), "{} has no schemas", t.name);
        }
        assert_eq!(list().len(), TOOLS.len());
        assert_eq!(
            find("join_collab").map(|t| t.name),
            Some("join_collaboration")
        );
    }
}
