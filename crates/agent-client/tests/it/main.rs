//! Integration tests of the agent client against a real gateway over real Postgres and
//! Redis (`mcp-testkit`). One test binary, one module per area.

mod auth;
mod client;
mod events;
mod lock;
mod readme;
mod retry;
mod tools;
mod workspace_suite;

use mcp_agent_client::{ClientConfig, GatewayClient, RetryPolicy};
use mcp_testkit::TestGateway;

/// A client of `gw` acting as `agent`.
pub fn client_as(gw: &TestGateway, agent: &str) -> GatewayClient {
    GatewayClient::new(ClientConfig::new(gw.base.clone()).with_agent(agent)).expect("client")
}

/// A client of `gw` acting as `agent`, with its own retry policy.
pub fn client_with_retry(gw: &TestGateway, agent: &str, retry: RetryPolicy) -> GatewayClient {
    GatewayClient::new(
        ClientConfig::new(gw.base.clone())
            .with_agent(agent)
            .with_retry(retry),
    )
    .expect("client")
}

/// A plain claim of `path` in `task`: the default length, no wait, not recursive.
pub fn claim_req(task: &str, path: &str) -> mcp_api::requests::ClaimFileRequest {
    mcp_api::requests::ClaimFileRequest {
        task_id: task.into(),
        path: path.into(),
        ..Default::default()
    }
}
