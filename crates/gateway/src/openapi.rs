//! The OpenAPI 3.1 document of the REST API, served at `GET /openapi.json`.
//!
//! Built once per process from the same sources as the routes: the tool operations come from
//! the registry (`mcp_api::tools`, one operation per name and alias, schemas from the wire
//! types via `schemars`), the rest (resources, admin, health, metrics, live streams) is listed
//! here beside the routers that serve them. Every operation names the error statuses it can
//! answer, each with the one error body `{"detail","code",…}` and, for 429 and 503, the
//! `Retry-After` header. `tests/golden/openapi.json` pins the document and schemathesis
//! (`scripts/schemathesis.sh`) checks a running gateway against it.

use crate::routes::tools::{Perform, ToolVisitor, visit_tools};
use mcp_api::requests::{
    AgentListQuery, AuditQuery, CreateTaskRequest, TaskListQuery, UpdateTaskRequest,
};
use mcp_api::responses::*;
use mcp_api::{ErrorBody, ErrorCode, Event};
use schemars::JsonSchema;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{Map, Value, json};
use std::sync::OnceLock;

/// The document, built on first use.
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(build)
}

/// A task id as the gateway accepts it (`mcp_api::names`).
const TASK_ID_PATTERN: &str = "^[A-Za-z0-9._:@-]{1,128}$";

/// The error statuses, each with the codes that answer with it.
fn error_codes(status: u16) -> Vec<&'static str> {
    ErrorCode::ALL
        .iter()
        .filter(|c| c.http_status() == status)
        .map(|c| c.as_str())
        .collect()
}

struct Doc {
    generator: SchemaGenerator,
    paths: Map<String, Value>,
}

impl Doc {
    fn schema<T: JsonSchema>(&mut self) -> Value {
        self.generator.subschema_for::<T>().to_value()
    }

    fn json_body<T: JsonSchema>(&mut self) -> Value {
        json!({"content": {"application/json": {"schema": self.schema::<T>()}}})
    }

    fn add(&mut self, path: &str, method: &str, op: Value) {
        let entry = self
            .paths
            .entry(path.to_owned())
            .or_insert_with(|| json!({}));
        entry[method] = op;
    }
}

/// `responses` of an operation: the success answers given, plus one entry per error status.
fn responses(success: Value, errors: &[u16]) -> Value {
    let mut r = success.as_object().cloned().unwrap_or_default();
    for s in errors {
        r.insert(
            s.to_string(),
            json!({"$ref": format!("#/components/responses/E{s}")}),
        );
    }
    Value::Object(r)
}

fn ok(schema: Value) -> Value {
    json!({"description": "OK", "content": {"application/json": {"schema": schema}}})
}

fn path_param(name: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": description, "schema": schema})
}

fn task_param() -> Value {
    path_param(
        "task_id",
        "The task (1–128 characters of `[A-Za-z0-9._:@-]`).",
        json!({"type": "string", "pattern": TASK_ID_PATTERN}),
    )
}

fn query(name: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": description, "schema": schema})
}

fn agent_query() -> Value {
    query(
        "agent_id",
        "The acting agent (authentication off); with authentication on it must be the token's agent.",
        json!({"type": "string"}),
    )
}

/// Statuses every authenticated operation can answer: a bad token, a refused agent or task,
/// the rate limit, a backend outage or the request timeout, and a bug.
const COMMON: [u16; 5] = [401, 403, 429, 500, 503];

fn with_common(extra: &[u16]) -> Vec<u16> {
    let mut all: Vec<u16> = extra.iter().chain(COMMON.iter()).copied().collect();
    all.sort_unstable();
    all.dedup();
    all
}

fn build() -> Value {
    let settings = SchemaSettings::draft2020_12().with(|s| {
        s.definitions_path = "/components/schemas".into();
    });
    let mut doc = Doc {
        generator: settings.into_generator(),
        paths: Map::new(),
    };

    struct Tools<'a>(&'a mut Doc);
    impl ToolVisitor for Tools<'_> {
        fn visit<T: Perform>(&mut self) {
            let doc = &mut *self.0;
            let body = doc.json_body::<T::Request>();
            let ok = doc.json_body::<T::Response>();
            // A mutation may conflict (versions, leases, fences) or exceed a quota.
            let errors: &[u16] = if T::MUTATES {
                &[400, 404, 409, 413]
            } else {
                &[400, 404, 413]
            };
            for name in std::iter::once(T::NAME).chain(T::ALIASES.iter().copied()) {
                let mut description = T::DESCRIPTION.to_owned();
                if name != T::NAME {
                    description.push_str(&format!(" Alias of `{}`.", T::NAME));
                }
                let mut ok = ok.clone();
                ok["description"] = json!("The tool did what was asked.");
                let op = json!({
                    "tags": ["tools"],
                    "operationId": name,
                    "summary": format!("Tool `{name}`"),
                    "description": description,
                    "requestBody": {"required": true, "content": body["content"].clone()},
                    "responses": responses(json!({"200": ok}), &with_common(errors)),
                    "x-mutates": T::MUTATES,
                    "x-idempotent": T::IDEMPOTENT,
                });
                doc.add(&format!("/tools/{name}"), "post", op);
            }
        }
    }
    visit_tools(&mut Tools(&mut doc));

    resources(&mut doc);
    admin(&mut doc);
    operations(&mut doc);

    let mut schemas = doc.generator.take_definitions(true);
    schemas.sort_keys();
    let mut components_responses = Map::new();
    let error_ref = json!({"$ref": "#/components/schemas/ErrorBody"});
    for status in [400u16, 401, 403, 404, 405, 409, 413, 429, 500, 503] {
        let codes = error_codes(status);
        let mut r = json!({
            "description": format!("Refused: `code` is one of {}.", codes.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")),
            "content": {"application/json": {"schema": error_ref.clone()}},
        });
        if status == 429 || status == 503 {
            r["headers"] = json!({"Retry-After": {
                "description": "Seconds to wait before retrying.",
                "schema": {"type": "integer", "minimum": 0}
            }});
        }
        components_responses.insert(format!("E{status}"), r);
    }
    let mut paths = doc.paths;
    paths.sort_keys();
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "MCP Gateway",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The REST API of the MCP Gateway: tools (`POST /tools/*`, from the tool registry), resources, admin, health, metrics and live event streams. The MCP endpoint (`/mcp`, JSON-RPC over Streamable HTTP) serves the same tools and is described by MCP's own `tools/list`, not here. Every error answers `{\"detail\",\"code\",…}` with a stable `code` (docs/ERRORS.md); 429 and 503 carry `Retry-After`.",
            "license": {"name": "MIT", "identifier": "MIT"}
        },
        "tags": [
            {"name": "tools", "description": "The agents' operations (the tool registry)."},
            {"name": "resources", "description": "The task and agent lists; reads of a task's state, logs, files and collaborators."},
            {"name": "admin", "description": "Task management and the audit trail (admin role)."},
            {"name": "live", "description": "Live event streams (SSE, WebSocket)."},
            {"name": "operations", "description": "Health, metrics and this document."}
        ],
        "security": [{}, {"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": components_responses,
            "securitySchemes": {"bearer": {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": "Required when the gateway runs with JWT_SECRET; ignored otherwise."
            }}
        }
    })
}

fn resources(doc: &mut Doc) {
    let s = doc.schema::<TaskList>();
    let op = json!({
        "tags": ["resources"], "operationId": "list_tasks",
        "summary": "The tasks the caller may see, most recently active first (paged, filtered).",
        "parameters": query_params::<TaskListQuery>(),
        "responses": responses(json!({"200": ok(s)}), &with_common(&[400])),
    });
    doc.add("/resources/tasks", "get", op);

    let s = doc.schema::<AgentList>();
    let op = json!({
        "tags": ["resources"], "operationId": "list_agents",
        "summary": "Agents on the tasks the caller may see, most recently seen first (paged, filtered).",
        "parameters": query_params::<AgentListQuery>(),
        "responses": responses(json!({"200": ok(s)}), &with_common(&[400])),
    });
    doc.add("/resources/agents", "get", op);

    let s = doc.schema::<TaskState>();
    let op = json!({
        "tags": ["resources"], "operationId": "task_state",
        "summary": "A task: status, assignment, files, collaborators.",
        "parameters": [task_param(), agent_query()],
        "responses": responses(json!({"200": ok(s)}), &with_common(&[400, 404])),
    });
    doc.add("/resources/tasks/{task_id}/state", "get", op);

    let s = doc.schema::<TaskLogs>();
    let op = json!({
        "tags": ["resources"], "operationId": "task_logs",
        "summary": "A page of the task's logged steps, oldest first.",
        "parameters": [
            task_param(),
            agent_query(),
            query("before", "Only steps older than this step id (paging backwards).", json!({"type": "string"})),
            query("limit", "Page size, 1–1000 (default 100).", json!({"type": "integer", "minimum": 1, "maximum": 1000})),
        ],
        "responses": responses(json!({"200": ok(s)}), &with_common(&[400, 404])),
    });
    doc.add("/resources/tasks/{task_id}/logs", "get", op);

    let s = doc.schema::<ListFilesResponse>();
    let op = json!({
        "tags": ["resources"], "operationId": "task_files",
        "summary": "The task's files (as `list_files`).",
        "parameters": [task_param(), agent_query()],
        "responses": responses(json!({"200": ok(s)}), &with_common(&[400, 404])),
    });
    doc.add("/resources/tasks/{task_id}/files", "get", op);

    let s = doc.schema::<FileReadResponse>();
    let op = json!({
        "tags": ["resources"], "operationId": "workspace_file",
        "summary": "One file of the task (as `file_read`).",
        "parameters": [
            task_param(),
            path_param("path", "The file's path in the task (may contain `/`).", json!({"type": "string"})),
            agent_query(),
        ],
        "responses": responses(json!({"200": ok(s)}), &with_common(&[400, 404])),
    });
    doc.add("/resources/workspace/{task_id}/{path}", "get", op);

    let s = doc.schema::<AgentStatus>();
    let op = json!({
        "tags": ["resources"], "operationId": "agent_status",
        "summary": "An agent's presence and current task.",
        "parameters": [path_param("agent_id", "The agent.", json!({"type": "string"}))],
        "responses": responses(json!({"200": ok(s)}), &with_common(&[400, 404])),
    });
    doc.add("/resources/agents/{agent_id}/status", "get", op);

    let s = doc.schema::<CollaborationState>();
    let op = json!({
        "tags": ["resources"], "operationId": "collaboration",
        "summary": "The task's collaboration session: who is in it.",
        "parameters": [task_param(), agent_query()],
        "responses": responses(json!({"200": ok(s)}), &with_common(&[400, 404])),
    });
    doc.add("/resources/collaboration/{task_id}", "get", op);
}

/// One query parameter per field of a query struct (all optional), from its JSON Schema.
fn query_params<Q: schemars::JsonSchema>() -> Vec<Value> {
    let q = schemars::schema_for!(Q).to_value();
    q["properties"]
        .as_object()
        .map(|props| {
            props
                .iter()
                .map(|(name, schema)| {
                    let mut schema = schema.clone();
                    let description = schema
                        .as_object_mut()
                        .and_then(|m| m.remove("description"))
                        .unwrap_or(json!(""));
                    json!({"name": name, "in": "query", "required": false,
                           "description": description, "schema": schema})
                })
                .collect()
        })
        .unwrap_or_default()
}

fn admin(doc: &mut Doc) {
    let task = doc.schema::<TaskState>();
    let body = doc.json_body::<CreateTaskRequest>();
    let op = json!({
        "tags": ["admin"], "operationId": "create_task",
        "summary": "Create a task (for deployments without an orchestrator).",
        "requestBody": {"required": true, "content": body["content"].clone()},
        "responses": responses(
            json!({"201": {"description": "Created", "content": {"application/json": {"schema": task.clone()}}}}),
            &with_common(&[400, 409, 413]),
        ),
    });
    doc.add("/admin/tasks", "post", op);

    let body = doc.json_body::<UpdateTaskRequest>();
    let op = json!({
        "tags": ["admin"], "operationId": "update_task",
        "summary": "Change some fields of a task (absent: kept; null: cleared).",
        "parameters": [task_param()],
        "requestBody": {"required": true, "content": body["content"].clone()},
        "responses": responses(
            json!({"200": {"description": "OK", "content": {"application/json": {"schema": task}}}}),
            &with_common(&[400, 404, 413]),
        ),
    });
    doc.add("/admin/tasks/{task_id}", "patch", op);

    let params = query_params::<AuditQuery>();
    let log = doc.schema::<AuditLog>();
    let op = json!({
        "tags": ["admin"], "operationId": "audit",
        "summary": "The audit trail, newest first, filtered.",
        "parameters": params,
        "responses": responses(
            json!({"200": {"description": "OK", "content": {"application/json": {"schema": log}}}}),
            &with_common(&[400]),
        ),
    });
    doc.add("/admin/audit", "get", op);
}

fn operations(doc: &mut Doc) {
    let health = doc.schema::<Health>();
    doc.add("/health", "get", json!({
        "tags": ["operations"], "operationId": "health",
        "summary": "Liveness and backend reachability (no token needed).",
        "security": [{}],
        "responses": {
            "200": {"description": "Serving (`healthy` or `degraded`).", "content": {"application/json": {"schema": health.clone()}}},
            "503": {"description": "`unhealthy`: a backend is unreachable.", "content": {"application/json": {"schema": health}}}
        }
    }));
    doc.add("/metrics", "get", json!({
        "tags": ["operations"], "operationId": "metrics",
        "summary": "Prometheus metrics in the text exposition format (no token needed).",
        "security": [{}],
        "responses": {
            "200": {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}},
            "503": {"$ref": "#/components/responses/E503"}
        }
    }));
    doc.add("/openapi.json", "get", json!({
        "tags": ["operations"], "operationId": "openapi",
        "summary": "This document.",
        "security": [{}],
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}
        }
    }));
    let event = doc.schema::<Event>();
    let _ = doc.schema::<ErrorBody>();
    doc.add("/tasks/{task_id}/events", "get", json!({
        "tags": ["live"], "operationId": "task_events",
        "summary": "The task's events as Server-Sent Events, resumable (`Last-Event-ID` or `since`).",
        "description": "Each SSE message has `id` (the stream id), `event` (the event type) and `data` (an `Event` as JSON). A stream runs until the client leaves or is cut off.",
        "parameters": [
            task_param(),
            agent_query(),
            query("since", "Resume after this event id (`0`: the whole stream; absent: from now).", json!({"type": "string"})),
            query("types", "Comma-separated event types to receive (absent: all).", json!({"type": "string"})),
            {"name": "Last-Event-ID", "in": "header", "required": false, "description": "Resume point; wins over `since`.", "schema": {"type": "string"}}
        ],
        "responses": responses(json!({"200": {
            "description": "An event stream.",
            "content": {"text/event-stream": {"itemSchema": event}}
        }}), &with_common(&[400, 404])),
    }));
    doc.add("/ws", "get", json!({
        "tags": ["live"], "operationId": "websocket",
        "summary": "A WebSocket of live events for any number of tasks (subscribe/unsubscribe messages).",
        "parameters": [agent_query()],
        "responses": responses(json!({"101": {"description": "Switching to the WebSocket protocol."}}), &with_common(&[400])),
    }));
}
