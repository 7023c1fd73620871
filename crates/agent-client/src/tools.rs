//! Tool definitions for LLM function calling, and the dispatcher that runs the calls.
//!
//! [`AgentTools::specs`] describes every gateway tool (`mcp_api::TOOLS`) with a JSON Schema
//! of its input; [`AgentTools::anthropic`] and [`AgentTools::openai`] put them in the shapes
//! those APIs take (`{name, description, input_schema}`;
//! `{type: "function", function: {name, description, parameters}}`).
//! [`AgentTools::call`] runs a call the model made and returns a [`ToolOutcome`]: the
//! gateway's success body, or a failure with its code — a write refused by another agent's
//! lock, a read of a missing file, bad arguments are failures (`is_error`), never success.
//!
//! Bound to a task ([`AgentTools::for_task`]), the schemas leave `task_id` out and every call
//! acts on that task (a `task_id` the model invents is overwritten). The acting agent is
//! always the client's (`agent_id` in the arguments is dropped), and `force` releases are
//! not offered to models.

use crate::client::GatewayClient;
use crate::error::ClientError;
use mcp_api::ErrorCode;
use mcp_api::requests::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

/// One tool, described for a model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolSpec {
    /// The wire name (`file_write`…).
    pub name: &'static str,
    /// What the tool does, for the model.
    pub description: String,
    /// JSON Schema (draft 2020-12 subset) of the arguments object.
    pub input_schema: Value,
}

/// The gateway tools for one agent; see the module documentation.
#[derive(Debug, Clone)]
pub struct AgentTools {
    client: GatewayClient,
    task_id: Option<String>,
}

/// The result of one tool call.
#[derive(Debug)]
pub struct ToolOutcome {
    /// The tool's canonical name (aliases resolved), or the unknown name as called.
    pub tool: String,
    /// The gateway's success body, or why the call failed.
    pub result: Result<Value, ClientError>,
}

impl ToolOutcome {
    /// Whether the tool did what was asked.
    pub fn is_success(&self) -> bool {
        self.result.is_ok()
    }

    /// Whether the call failed (Anthropic's `is_error`).
    pub fn is_error(&self) -> bool {
        self.result.is_err()
    }

    /// The outcome as JSON: the success body (with `"success": true`), or
    /// `{"success": false, "error": {"code", "status", "detail", …context}}`.
    pub fn to_json(&self) -> Value {
        match &self.result {
            Ok(v) => v.clone(),
            Err(e) => json!({"success": false, "tool": self.tool, "error": e.to_json()}),
        }
    }

    /// The outcome as the text a model reads.
    pub fn to_text(&self) -> String {
        self.to_json().to_string()
    }

    /// An Anthropic `tool_result` content block answering the `tool_use` block `tool_use_id`.
    pub fn anthropic_result(&self, tool_use_id: &str) -> Value {
        json!({
            "type": "tool_result",
            "tool_use_id": tool_use_id,
            "content": self.to_text(),
            "is_error": self.is_error(),
        })
    }

    /// An OpenAI `tool` message answering the tool call `tool_call_id`.
    pub fn openai_message(&self, tool_call_id: &str) -> Value {
        json!({"role": "tool", "tool_call_id": tool_call_id, "content": self.to_text()})
    }
}

impl AgentTools {
    /// Tools that take `task_id` as an argument.
    pub fn new(client: GatewayClient) -> AgentTools {
        AgentTools {
            client,
            task_id: None,
        }
    }

    /// Tools bound to `task_id`: the schemas omit it and every call acts on it.
    pub fn for_task(client: GatewayClient, task_id: &str) -> AgentTools {
        AgentTools {
            client,
            task_id: Some(task_id.to_owned()),
        }
    }

    /// Every gateway tool, in registry order.
    pub fn specs(&self) -> Vec<ToolSpec> {
        mcp_api::TOOLS
            .iter()
            .filter_map(|t| {
                let (properties, required) = arguments(t.name)?;
                Some(ToolSpec {
                    name: t.name,
                    description: t.description.to_owned(),
                    input_schema: self.schema(properties, required),
                })
            })
            .collect()
    }

    /// The specs as Anthropic's `tools` array: `[{name, description, input_schema}]`.
    pub fn anthropic(&self) -> Value {
        Value::Array(
            self.specs()
                .into_iter()
                .map(|s| json!({"name": s.name, "description": s.description, "input_schema": s.input_schema}))
                .collect(),
        )
    }

    /// The specs as OpenAI's `tools` array:
    /// `[{type: "function", function: {name, description, parameters}}]`.
    pub fn openai(&self) -> Value {
        Value::Array(
            self.specs()
                .into_iter()
                .map(|s| {
                    json!({"type": "function", "function": {
                        "name": s.name, "description": s.description, "parameters": s.input_schema
                    }})
                })
                .collect(),
        )
    }

    fn schema(&self, mut properties: Map<String, Value>, mut required: Vec<&str>) -> Value {
        if self.task_id.is_none() {
            properties.insert(
                "task_id".into(),
                json!({
                    "type": "string",
                    "description": "The task to act on: 1-128 characters of [A-Za-z0-9._:@-].",
                    "pattern": "^[A-Za-z0-9._:@-]{1,128}$"
                }),
            );
            required.insert(0, "task_id");
        }
        json!({
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": false,
        })
    }

    /// Runs the tool `name` (or an alias) with the model's arguments.
    pub async fn call(&self, name: &str, args: Value) -> ToolOutcome {
        let canonical = mcp_api::TOOLS
            .iter()
            .find(|t| t.name == name || t.aliases.contains(&name))
            .map(|t| t.name);
        let Some(tool) = canonical else {
            return ToolOutcome {
                tool: name.to_owned(),
                result: Err(ClientError::refused(
                    ErrorCode::NotFound,
                    format!("no tool named {name:?}"),
                )),
            };
        };
        let result = self.dispatch(tool, args).await;
        ToolOutcome {
            tool: tool.to_owned(),
            result,
        }
    }

    /// As [`AgentTools::call`], with the arguments as a JSON string (OpenAI's
    /// `function.arguments`).
    pub async fn call_json(&self, name: &str, args: &str) -> ToolOutcome {
        let args = if args.trim().is_empty() {
            Ok(json!({}))
        } else {
            serde_json::from_str(args)
        };
        match args {
            Ok(v) => self.call(name, v).await,
            Err(e) => ToolOutcome {
                tool: name.to_owned(),
                result: Err(ClientError::refused(
                    ErrorCode::InvalidArgument,
                    format!("arguments are not JSON: {e}"),
                )),
            },
        }
    }

    async fn dispatch(&self, tool: &str, args: Value) -> Result<Value, ClientError> {
        let mut args = match args {
            Value::Object(m) => m,
            Value::Null => Map::new(),
            _ => {
                return Err(ClientError::refused(
                    ErrorCode::InvalidArgument,
                    "arguments must be a JSON object",
                ));
            }
        };
        args.remove("agent_id");
        if let Some(t) = &self.task_id {
            args.insert("task_id".into(), Value::String(t.clone()));
        }
        let args = Value::Object(args);
        let c = &self.client;
        match tool {
            "file_read" => out(c.file_read(parse(args)?).await),
            "file_write" => out(c.file_write(parse(args)?).await),
            "file_edit" => out(c.file_edit(parse(args)?).await),
            "list_files" => out(c.list_files(parse(args)?).await),
            "delete_file" => out(c.delete_file(parse(args)?).await),
            "claim_file" => out(c.claim_file(parse(args)?).await),
            "renew_file" => out(c.renew_file(parse(args)?).await),
            "release_file" => {
                let mut req: ReleaseFileRequest = parse(args)?;
                req.force = false;
                out(c.release_file(req).await)
            }
            "log_step" => out(c.log_step(parse(args)?).await),
            "subscribe_logs" => out(c.subscribe_logs(parse(args)?).await),
            "join_collaboration" => out(c.join_collaboration(parse(args)?).await),
            "leave_collaboration" => out(c.leave_collaboration(parse(args)?).await),
            other => Err(ClientError::refused(
                ErrorCode::NotFound,
                format!("the client has no dispatcher for {other:?}"),
            )),
        }
    }
}

fn parse<T: DeserializeOwned>(args: Value) -> Result<T, ClientError> {
    serde_json::from_value(args).map_err(|e| {
        ClientError::refused(ErrorCode::InvalidArgument, format!("bad arguments: {e}"))
    })
}

fn out<T: Serialize>(r: Result<T, ClientError>) -> Result<Value, ClientError> {
    let v = r?;
    serde_json::to_value(v).map_err(|e| ClientError::Decode {
        status: 200,
        message: e.to_string(),
    })
}

/// The arguments of each tool besides `task_id`: (properties, required).
fn arguments(tool: &str) -> Option<(Map<String, Value>, Vec<&'static str>)> {
    let path = json!({"type": "string", "description": "File path relative to the task, e.g. \"src/app.py\". No \"..\", no leading \"/\"."});
    let expected = json!({"type": "integer", "minimum": 0, "description": "Only if the file is at this version (0 = only if it does not exist yet); otherwise the call fails with version_conflict."});
    let timeout = json!({"type": "integer", "minimum": 1, "maximum": 3600, "description": "Lease length in seconds (default 60)."});
    let (props, required): (Value, Vec<&str>) = match tool {
        "file_read" => (json!({"path": path}), vec!["path"]),
        "file_write" => (
            json!({
                "path": path,
                "content": {"type": "string", "description": "The complete new content of the file."},
                "expected_version": expected,
            }),
            vec!["path", "content"],
        ),
        "file_edit" => (
            json!({
                "path": path,
                "old_string": {"type": "string", "description": "Exact text to replace; must occur exactly once unless replace_all."},
                "new_string": {"type": "string", "description": "The replacement text."},
                "replace_all": {"type": "boolean", "description": "Replace every occurrence (default false)."},
                "expected_version": expected,
            }),
            vec!["path", "old_string", "new_string"],
        ),
        "list_files" => (
            json!({"prefix": {"type": "string", "description": "Only files under this directory (default: all)."}}),
            vec![],
        ),
        "delete_file" => (
            json!({"path": path, "expected_version": expected}),
            vec!["path"],
        ),
        "claim_file" | "renew_file" => {
            (json!({"path": path, "timeout_sec": timeout}), vec!["path"])
        }
        "release_file" => (json!({"path": path}), vec!["path"]),
        "log_step" => (
            json!({"step": {
                "type": "object",
                "description": "The step, e.g. {\"action\": ..., \"action_input\": ..., \"observation\": ...}.",
            }}),
            vec!["step"],
        ),
        "subscribe_logs" | "join_collaboration" | "leave_collaboration" => (json!({}), vec![]),
        _ => return None,
    };
    match props {
        Value::Object(m) => Some((m, required)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ClientConfig;

    fn tools(task: Option<&str>) -> AgentTools {
        let c = GatewayClient::new(ClientConfig::new("http://127.0.0.1:9")).unwrap();
        match task {
            Some(t) => AgentTools::for_task(c, t),
            None => AgentTools::new(c),
        }
    }

    #[test]
    fn every_registry_tool_has_a_spec() {
        let specs = tools(None).specs();
        let names: Vec<_> = specs.iter().map(|s| s.name).collect();
        let registry: Vec<_> = mcp_api::TOOLS.iter().map(|t| t.name).collect();
        assert_eq!(names, registry);
        for s in &specs {
            assert_eq!(s.input_schema["type"], "object");
            assert_eq!(s.input_schema["required"][0], "task_id", "{}", s.name);
            // Every required argument is described.
            for r in s.input_schema["required"].as_array().unwrap() {
                assert!(
                    s.input_schema["properties"][r.as_str().unwrap()].is_object(),
                    "{}: {r}",
                    s.name
                );
            }
        }
    }

    #[test]
    fn bound_tools_omit_the_task() {
        for s in tools(Some("t1")).specs() {
            assert!(s.input_schema["properties"].get("task_id").is_none());
            assert!(
                !s.input_schema["required"]
                    .as_array()
                    .unwrap()
                    .contains(&json!("task_id"))
            );
        }
    }

    #[test]
    fn provider_shapes() {
        let t = tools(None);
        let a = t.anthropic();
        assert_eq!(a[0]["name"], "file_read");
        assert!(a[0]["input_schema"]["properties"]["path"].is_object());
        let o = t.openai();
        assert_eq!(o[1]["type"], "function");
        assert_eq!(o[1]["function"]["name"], "file_write");
        assert!(o[1]["function"]["parameters"]["properties"]["content"].is_object());
    }

    #[tokio::test]
    async fn unknown_tools_and_bad_arguments_fail_without_a_request() {
        let t = tools(Some("t1"));
        let o = t.call("rm_rf", json!({})).await;
        assert!(o.is_error());
        assert_eq!(o.to_json()["error"]["code"], "not_found");
        let o = t.call("file_write", json!({"path": "a"})).await;
        assert_eq!(o.to_json()["error"]["code"], "invalid_argument");
        let o = t.call_json("file_read", "{not json").await;
        assert_eq!(o.to_json()["success"], false);
        assert_eq!(o.anthropic_result("x")["is_error"], true);
    }
}
