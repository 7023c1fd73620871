//! MCP tools: the registry (`mcp_api::tools`), each with the JSON Schemas of its request and
//! response types (from `schemars`) and annotations from its constants, dispatched through
//! the same [`Perform`] as `POST /tools/*`. A refusal of the operation (`locked`, `version_conflict`, bad arguments…)
//! is a tool result with `isError: true` whose text content is the REST error body
//! `{"detail","code",…}` as JSON, and no structured content: a client checks structured
//! content against the tool's `outputSchema` (the success body), so an error body there makes
//! strict clients (the TypeScript SDK, the Inspector) throw instead of showing the refusal to
//! the model. Only an unknown tool name is a protocol error.

use crate::AppState;
use crate::error::ApiError;
use crate::extract::Caller;
use crate::routes::tools::{Perform, ToolVisitor, visit_tools};
use mcp_api::{ErrorBody, ErrorCode, ToolRequest};
use rmcp::handler::server::common::{schema_for_input, schema_for_output};
use rmcp::model::{CallToolResult, ContentBlock, Tool as McpTool, ToolAnnotations};
use serde_json::Value;

/// The MCP description of one registry tool: its name, description, the JSON Schemas of its
/// request and response, and annotations from its constants.
fn describe<T: Perform>() -> McpTool {
    let mut input =
        (*schema_for_input::<T::Request>().expect("request types are JSON objects")).clone();
    for field in input.values_mut() {
        mcp_api::tools::without_null_types(field);
    }
    let output = schema_for_output::<T::Response>();
    let mut annotations = ToolAnnotations::new()
        .read_only(!T::MUTATES)
        .open_world(false);
    if T::MUTATES {
        annotations = annotations
            .destructive(T::DESTRUCTIVE)
            .idempotent(T::IDEMPOTENT);
    }
    McpTool::new(T::NAME, T::DESCRIPTION, input)
        .with_raw_output_schema(output)
        .with_annotations(annotations)
}

/// The tool list: every registry entry under its name (aliases are accepted by
/// `tools/call` but not listed, so a model sees each operation once).
pub fn list() -> Vec<McpTool> {
    struct List(Vec<McpTool>);
    impl ToolVisitor for List {
        fn visit<T: Perform>(&mut self) {
            self.0.push(describe::<T>());
        }
    }
    let mut list = List(Vec::new());
    visit_tools(&mut list);
    list.0
}

/// Runs one tool call; `None` when no tool has this name.
/// `deadline`: the HTTP request's, which a long poll moves (see `routes::RequestDeadline`).
pub async fn call(
    state: &AppState,
    caller: &Caller,
    name: &str,
    args: Value,
    deadline: Option<crate::routes::RequestDeadline>,
) -> Option<CallToolResult> {
    /// Finds the tool `name` answers to and starts its call.
    struct Find<'a> {
        name: &'a str,
        found: Option<(&'static str, Pending<'a>)>,
        state: &'a AppState,
        caller: &'a Caller,
        args: Option<Value>,
        deadline: Option<crate::routes::RequestDeadline>,
    }
    impl ToolVisitor for Find<'_> {
        fn visit<T: Perform>(&mut self) {
            if self.found.is_none() && T::answers_to(self.name) {
                let args = self.args.take().unwrap_or(Value::Null);
                let fut = run::<T>(self.state, self.caller, args, self.deadline.take());
                self.found = Some((T::NAME, Box::pin(fut)));
            }
        }
    }
    let mut find = Find {
        name,
        found: None,
        state,
        caller,
        args: Some(args),
        deadline,
    };
    visit_tools(&mut find);
    let (tool, pending) = find.found?;
    let result = pending.await;
    let outcome = match &result {
        Ok(_) => "ok",
        Err(e) => e.code.as_str(),
    };
    metrics::counter!("mcp_tool_calls_total", "tool" => tool, "outcome" => outcome).increment(1);
    Some(match result {
        Ok(value) => CallToolResult::structured(value),
        Err(e) => CallToolResult::error(vec![ContentBlock::text(error_body(e).to_string())]),
    })
}

type Pending<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Value, ApiError>> + Send + 'a>>;

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
async fn run<T: Perform>(
    state: &AppState,
    caller: &Caller,
    args: Value,
    deadline: Option<crate::routes::RequestDeadline>,
) -> Result<Value, ApiError> {
    let req: T::Request = serde_json::from_value(args).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidArgument,
            format!("invalid arguments: {e}"),
        )
    })?;
    let actor = caller.actor(req.task_id(), req.agent_id())?;
    if let (Some(deadline), Some(wait)) = (deadline, req.wait()) {
        deadline.extend(wait);
    }
    let resp = T::perform(&state.service, &actor, req).await?;
    serde_json::to_value(resp)
        .map_err(|e| ApiError::from(mcp_domain::DomainError::Internal(e.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_registered_tool_is_listed_once() {
        let names: Vec<_> = list().into_iter().map(|t| t.name.to_string()).collect();
        let registry: Vec<_> = mcp_api::TOOLS.iter().map(|t| t.name.to_owned()).collect();
        assert_eq!(names, registry);
    }
}
