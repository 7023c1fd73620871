//! The quick start of the crate README (`crates/agent-client/README.md` shows this file
//! verbatim; `tests/it/readme.rs` checks that and runs `run` against a real gateway).
//!
//! `MCP_GATEWAY_URL=http://127.0.0.1:8001 cargo run -p mcp-agent-client --example quickstart`

use mcp_agent_client::requests::{FileEditRequest, FileReadRequest, FileWriteRequest};
use mcp_agent_client::tools::{FileRead, FileWrite};
use mcp_agent_client::{ClientConfig, ClientError, ErrorCode, GatewayClient};
use serde_json::json;
use std::time::Duration;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), ClientError> {
    // MCP_GATEWAY_URL, MCP_GATEWAY_TOKEN, MCP_AGENT_ID…; the defaults reach a local gateway.
    let config = ClientConfig::from_env()?.with_timeout(Duration::from_secs(10));
    let client = GatewayClient::new(config.with_agent("quickstart"))?;
    run(&client, "quickstart").await
}

/// Writes, reads, edits and leases a file of `task`, and logs what it did.
pub async fn run(client: &GatewayClient, task: &str) -> Result<(), ClientError> {
    // Any tool, typed by the registry: request and response types come with it.
    let written = client
        .call::<FileWrite>(FileWriteRequest::new(task, "src/app.py", "print('TODO')\n"))
        .await?;
    let read = client
        .call::<FileRead>(FileReadRequest::new(task, "src/app.py"))
        .await?;
    assert_eq!(read.version, written.version);

    // Every tool also has a named shorthand; optional fields by struct update.
    let edited = client
        .file_edit(FileEditRequest {
            expected_version: Some(read.version),
            ..FileEditRequest::new(task, "src/app.py", "TODO", "done")
        })
        .await?;
    println!("{}", edited.diff);

    // A lease that renews itself until released; writes through it carry its fence.
    let lock = client
        .lock(task, "src/app.py", Some(Duration::from_secs(30)))
        .await?;
    lock.write("print('done, under lease')\n").await?;
    lock.release().await?;

    // Steps everyone in the task sees, live.
    let mut log = client.execution_logger(task).await?;
    log.log(
        "file_edit",
        json!({"path": "src/app.py"}),
        "replaced the TODO",
    )
    .await?;
    log.finish().await?;

    // Refusals carry the gateway's stable code.
    match client
        .call::<FileRead>(FileReadRequest::new(task, "missing.txt"))
        .await
    {
        Err(e) if e.code() == ErrorCode::FileNotFound => Ok(()),
        other => panic!("expected file_not_found, got {other:?}"),
    }
}
