//! The audit trail's read side (`GET /admin/audit`). Records are written by the operations
//! themselves: file changes, task changes, joins and leaves in the same Postgres statement as
//! the change; leases and step logs through the Redis outbox (persisted by the sync push loop,
//! so they appear here a few seconds later).

use super::Service;
use crate::actor::Actor;
use crate::error::{DomainError, Result};
use crate::ids::{AgentId, TaskId};
use crate::store::durable::AuditFilter;
use mcp_api::requests::AuditQuery;
use mcp_api::responses::AuditLog;

/// Most records one page returns.
pub(super) const MAX_AUDIT_PAGE: i64 = 1000;

impl Service {
    /// Audit records matching `q`, newest first. Admin only; an admin limited to some tasks
    /// sees only their records.
    pub async fn audit(&self, actor: &Actor, q: AuditQuery) -> Result<AuditLog> {
        actor.ensure_admin()?;
        let limit = q.limit.unwrap_or(100);
        if !(1..=MAX_AUDIT_PAGE).contains(&limit) {
            return Err(DomainError::InvalidArgument(format!(
                "limit must be between 1 and {MAX_AUDIT_PAGE}"
            )));
        }
        let task = q.task.as_deref().map(|t| actor.task(t)).transpose()?;
        let agent = q.agent.as_deref().map(AgentId::parse).transpose()?;
        let entries = self
            .durable
            .audit(&AuditFilter {
                task: task.as_ref().map(TaskId::as_str),
                tasks_in: actor.scope(),
                agent: agent.as_ref().map(AgentId::as_str),
                action: q.action.as_deref(),
                since: q.since,
                before_id: q.before_id,
                limit,
            })
            .await?;
        Ok(AuditLog {
            success: true,
            entries,
        })
    }
}
