//! The Rust client of the MCP Gateway, for agents (the counterpart of the original's Python
//! agent client and its CrewAI tool wrappers).
//!
//! It depends on the wire contract (`mcp-api`) only: requests, responses, error codes and the
//! event envelope are the gateway's own types, re-exported here ([`requests`], [`responses`],
//! [`tools`]), so a program needs this crate alone. The crate README's example
//! (`examples/quickstart.rs`) is run against a real gateway by the tests.
//!
//! # Map
//!
//! * [`GatewayClient`] (`client.rs`) — one typed method per tool, resource, admin route and
//!   `/health`; pooled connections, bearer token, per-request timeout.
//! * [`ClientError`] (`error.rs`) — a refusal keeps the gateway's HTTP status and its stable
//!   [`ErrorCode`]; transport failures are `unavailable`.
//! * [`RetryPolicy`] (`retry.rs`) — bounded retries with jittered backoff: idempotent calls on
//!   any transient failure, every call on 429/503 (waiting at least `Retry-After`).
//! * [`LockGuard`] (`lock.rs`) — a lease that renews itself in the background and is released
//!   when the guard is released or dropped; writes through it carry the lease's fence.
//! * [`ExecutionLogger`] (`logger.rs`) — joins a task's collaboration, logs
//!   `action`/`action_input`/`observation` steps, leaves at the end.
//! * [`EventSubscription`] (`events.rs`) — a task's live events (Server-Sent Events), resuming
//!   by itself after disconnects and cut-offs without gap or duplicate; it tells an observer
//!   what its connection does ([`StreamStatus`], `SubscribeOptions::on_status`).
//! * [`Workspace`] (`workspace/`) — read/write/edit/list/delete a task's files, through the
//!   gateway ([`GatewayWorkspace`]) or in a local directory ([`LocalWorkspace`]), chosen by
//!   `USE_MCP` ([`DualWorkspace::from_env`]): the seed's rollback plan.
//! * [`AgentTools`] (`tools.rs`) — the gateway tools as JSON-Schema function definitions for
//!   Anthropic and OpenAI models, and a dispatcher that runs the calls a model makes.
//! * [`ClientConfig`], [`WorkspaceMode`] (`config.rs`) — configuration from code or from
//!   `MCP_GATEWAY_URL`, `MCP_GATEWAY_TOKEN`, `MCP_GATEWAY_TIMEOUT`, `MCP_GATEWAY_RETRIES`,
//!   `MCP_AGENT_ID`, `USE_MCP`, `MCP_LOCAL_WORKSPACE`.
//!
//! # Example
//!
//! ```no_run
//! use mcp_agent_client::{ClientConfig, GatewayClient, Workspace};
//! use serde_json::json;
//!
//! # async fn run() -> Result<(), mcp_agent_client::ClientError> {
//! let client = GatewayClient::new(
//!     ClientConfig::new("http://127.0.0.1:8001").with_agent("coder-1"),
//! )?;
//!
//! // Join the task's session; every step is visible to the other agents.
//! let mut log = client.execution_logger("task-42").await?;
//!
//! // Lease the file while editing it; the guard renews the lease in the background.
//! let lock = client.lock("task-42", "src/app.py", Some(Duration::from_secs(60))).await?;
//! let files = client.workspace("task-42");
//! let current = files.read("src/app.py").await?;
//! let updated = current.content.replace("TODO", "done");
//! lock.write(updated).await?; // presents the lease's fence
//! log.log("file_write", json!({"path": "src/app.py"}), "replaced the TODO").await?;
//! lock.release().await?;
//!
//! // Refusals carry the gateway's code.
//! match files.read("missing.txt").await {
//!     Err(e) if e.code() == mcp_agent_client::ErrorCode::FileNotFound => {}
//!     other => panic!("{other:?}"),
//! }
//! log.finish().await?;
//! # Ok(())
//! # }
//! ```
//!
//! For a model, the same operations as tools:
//!
//! ```no_run
//! # async fn run(client: mcp_agent_client::GatewayClient) {
//! use mcp_agent_client::AgentTools;
//! let tools = AgentTools::for_task(client, "task-42");
//! let definitions = tools.anthropic(); // pass as `tools` to the Messages API
//! let outcome = tools
//!     .call("file_write", serde_json::json!({"path": "a.py", "content": "print(1)"}))
//!     .await;
//! let reply = outcome.anthropic_result("toolu_01"); // `is_error` set on any failure
//! # let _ = (definitions, reply);
//! # }
//! ```

pub mod client;
pub mod config;
pub mod error;
pub mod events;
pub mod lock;
pub mod logger;
pub mod retry;
pub mod tools;
pub mod workspace;

pub use client::{GatewayClient, LogsQuery};
pub use config::{ClientConfig, WorkspaceMode};
pub use error::{ClientError, Result, TransportKind};
pub use events::{
    EventSubscription, SseMessage, SseParser, StatusObserver, StreamStatus, SubscribeOptions,
};
pub use lock::{LeaseState, LockGuard};
pub use logger::ExecutionLogger;
pub use mcp_api::{ErrorBody, ErrorCode, Event, EventType, StreamId, TOOLS, Tool, ToolRequest};
/// The wire types, re-exported so that typed calls need this crate only: the request bodies
/// (`requests::FileWriteRequest`…), the success bodies (`responses::…`) and the tool
/// registry (`tools::FileWrite`…, for [`GatewayClient::call`], re-exported into [`tools`]
/// beside the LLM tool definitions).
pub use mcp_api::{requests, responses};
pub use retry::RetryPolicy;
pub use tools::{AgentTools, ToolOutcome, ToolSpec};
pub use workspace::path;
pub use workspace::{
    Change, DualWorkspace, FileContent, FileEntry, GatewayWorkspace, LocalWorkspace, Workspace,
};
