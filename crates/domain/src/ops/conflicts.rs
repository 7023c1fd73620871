//! Conflicts made visible: when an agent's change or claim is refused because of another
//! agent's work — a lease someone else holds (`locked`), a fence older than the file has seen
//! (`stale_fence`), a version that moved on (`version_conflict`), a leased file written without
//! its lease (`lease_required`) — the refusal becomes an event on the task (`write_refused`,
//! `claim_refused`), so the people watching see agents fighting over a file. The refused call
//! still answers with its error; recording it never changes that answer.

use super::Service;
use crate::actor::Actor;
use crate::error::{DomainError, Result};
use crate::ids::TaskId;
use mcp_api::{ErrorCode, EventType};
use serde_json::{Value, json};

impl Service {
    /// Passes `result` through; a refusal caused by another agent is first recorded as an event
    /// of `op` (the tool's name) on the task. Other errors (bad input, scope, outages) are not
    /// conflicts and are not recorded.
    pub(super) async fn witness<T>(
        &self,
        actor: &Actor,
        task: &TaskId,
        path: &str,
        op: &'static str,
        result: Result<T>,
    ) -> Result<T> {
        let Err(err) = result else { return result };
        let Some(data) = refusal_data(&err, path, op) else {
            return Err(err);
        };
        let kind = if op == "claim_file" {
            EventType::ClaimRefused
        } else {
            EventType::WriteRefused
        };
        if let Err(e) = self.emit(actor, task, kind, data, None).await {
            tracing::warn!(task = %task, error = %e, "could not record a refusal event");
        }
        Err(err)
    }
}

/// The event's data for a refusal that is a conflict, else `None`.
fn refusal_data(err: &DomainError, path: &str, op: &str) -> Option<Value> {
    let code = err.code();
    if !matches!(
        code,
        ErrorCode::Locked
            | ErrorCode::StaleFence
            | ErrorCode::VersionConflict
            | ErrorCode::LeaseRequired
    ) {
        return None;
    }
    let mut data = json!({
        "path": path,
        "op": op,
        "code": code.as_str(),
        "detail": err.to_string(),
    });
    match err {
        DomainError::Locked {
            holder, expires_at, ..
        } => {
            data["holder"] = json!(holder);
            data["expires_at"] = json!(expires_at);
        }
        DomainError::StaleFence { fence, last_fence } => {
            data["fence"] = json!(fence);
            data["last_fence"] = json!(last_fence);
        }
        DomainError::VersionConflict { expected, current } => {
            data["expected_version"] = json!(expected);
            data["current_version"] = json!(current);
        }
        _ => {}
    }
    Some(data)
}
