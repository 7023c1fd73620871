//! Tool definitions for LLM function calling, and the dispatcher that runs the calls.
//!
//! [`AgentTools::specs`] describes every tool of the registry (`mcp_api::tools`) with the
//! JSON Schema of its request type (less `agent_id`, `force` and `fence`, which are not the
//! model's to choose); [`AgentTools::anthropic`] and [`AgentTools::openai`] put them in the shapes
//! those APIs take (`{name, description, input_schema}`;
//! `{type: "function", function: {name, description, parameters}}`).
//! [`AgentTools::call`] runs a call the model made and returns a [`ToolOutcome`]: the
//! gateway's success body, or a failure with its code — a write refused by another agent's
//! lock, a read of a missing file, bad arguments are failures (`is_error`), never success.
//!
//! Bound to a task ([`AgentTools::for_task`]), the schemas leave `task_id` out and every call
//! acts on that task (a `task_id` the model invents is overwritten). The acting agent is
//! always the client's (`agent_id` in the arguments is dropped), `force` releases are
//! not offered to models, nor fences. [`AgentTools::call`] dispatches through the registry to
//! [`GatewayClient::call`], so a tool added there needs nothing here.

/// The registry's tool types (`FileWrite`, …, for `client.call::<FileWrite>(…)`) and
/// `TOOLS`, so that one import path serves both.
pub use mcp_api::tools::*;

use crate::client::GatewayClient;
use crate::error::ClientError;
use mcp_api::ErrorCode;
use mcp_api::{for_each_tool, tools};
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
        let mut specs = Vec::new();
        macro_rules! specs {
            ($($tool:ident => $method:ident { $($rest:tt)* }),* $(,)?) => {$(
                specs.push(self.spec::<tools::$tool>());
            )*};
        }
        for_each_tool!(specs);
        specs
    }

    /// The spec of one tool: the JSON Schema of its request (from the registry's types),
    /// less what the model does not choose (see [`HIDDEN`]).
    fn spec<T: Tool>(&self) -> ToolSpec {
        let mut schema = schemars::schema_for!(T::Request).to_value();
        mcp_api::tools::without_null_types(&mut schema);
        if let Some(m) = schema.as_object_mut() {
            m.remove("$schema");
            m.remove("title");
            m.insert("additionalProperties".into(), Value::Bool(false));
        }
        let hidden = |k: &str| HIDDEN.contains(&k) || (k == "task_id" && self.task_id.is_some());
        if let Some(Value::Object(p)) = schema.get_mut("properties") {
            p.retain(|k, _| !hidden(k));
        }
        if let Some(Value::Array(r)) = schema.get_mut("required") {
            r.retain(|k| !k.as_str().is_some_and(hidden));
        }
        ToolSpec {
            name: T::NAME,
            description: T::DESCRIPTION.to_owned(),
            input_schema: schema,
        }
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

    /// Runs the tool `name` (or an alias) with the model's arguments.
    pub async fn call(&self, name: &str, args: Value) -> ToolOutcome {
        let canonical = mcp_api::tools::find(name).map(|t| t.name);
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
        for k in HIDDEN {
            args.remove(*k);
        }
        if let Some(t) = &self.task_id {
            args.insert("task_id".into(), Value::String(t.clone()));
        }
        let args = Value::Object(args);
        let c = &self.client;
        macro_rules! dispatch {
            ($($tool:ident => $method:ident { $($rest:tt)* }),* $(,)?) => {$(
                if <tools::$tool as Tool>::answers_to(tool) {
                    return out(c.call::<tools::$tool>(parse(args)?).await);
                }
            )*};
        }
        for_each_tool!(dispatch);
        Err(ClientError::refused(
            ErrorCode::NotFound,
            format!("no tool named {tool:?}"),
        ))
    }
}

/// Request fields a model does not set: the acting agent is the client's, `force` releases
/// are for admins, and fences belong to [`LockGuard`](crate::LockGuard)s.
pub const HIDDEN: &[&str] = &["agent_id", "force", "fence"];

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
            assert!(
                s.input_schema["properties"]["task_id"].is_object(),
                "{}",
                s.name
            );
            // Every tool names its task first, but those that may span the caller's tasks.
            if !matches!(s.name, "read_messages" | "ack_message") {
                assert_eq!(s.input_schema["required"][0], "task_id", "{}", s.name);
            }
            // Every required argument is described.
            let none = Vec::new();
            for r in s.input_schema["required"].as_array().unwrap_or(&none) {
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
                    .is_some_and(|r| r.contains(&json!("task_id")))
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
