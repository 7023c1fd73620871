//! Integration tests of the gateway over real Postgres and Redis (see `mcp-testkit`): every
//! route and every error code. One test binary, one module per area.

mod audit;
mod contract;
mod files;
mod fuzz;
mod limits;
mod live;
mod locks;
mod mcp;
mod metrics;
mod outage;
mod security;
mod security_doors;
mod state;

use serde_json::Value;

/// Asserts an error answer: status, `code`, and a non-empty `detail`.
#[track_caller]
pub fn assert_error(got: &(u16, Value), status: u16, code: &str) {
    assert_eq!(got.0, status, "unexpected status; body: {}", got.1);
    assert_eq!(got.1["code"], code, "unexpected code; body: {}", got.1);
    assert!(
        got.1["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "error without detail: {}",
        got.1
    );
}

/// Asserts a 200 answer and returns its body.
#[track_caller]
pub fn ok(got: (u16, Value)) -> Value {
    assert_eq!(got.0, 200, "expected success, got {}", got.1);
    assert_eq!(got.1["success"], true, "{}", got.1);
    got.1
}
