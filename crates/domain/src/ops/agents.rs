//! The `agents://{id}/status` resource: presence from Redis (touched by every event the agent
//! causes), falling back to the durable `agents` row.

use super::Service;
use crate::actor::Actor;
use crate::error::{DomainError, Result};
use crate::ids::AgentId;
use crate::store::durable::Presence;
use chrono::{DateTime, Utc};
use mcp_api::responses::AgentStatus;

/// An agent not seen for this many activity windows is `offline` (1 h with the default 5 min).
pub(super) const OFFLINE_AFTER_WINDOWS: i64 = 12;

impl Service {
    /// Any caller may ask about any agent, but the answer names only tasks in the caller's
    /// scope (an agent's other tasks are none of its business).
    pub async fn agent_status(&self, actor: &Actor, agent_id: &str) -> Result<AgentStatus> {
        let agent = AgentId::parse(agent_id)?;
        let mut presence = self.hot.presence(&agent).await?;
        if presence.last_seen.is_none() && presence.tasks.is_empty() {
            presence = self
                .durable
                .agent(agent.as_str())
                .await?
                .ok_or_else(|| DomainError::AgentNotFound(agent.to_string()))?;
        }
        let Presence {
            last_seen,
            task,
            mut tasks,
        } = presence;
        tasks.retain(|t| actor.may_access(t));
        let current = task.filter(|t| actor.may_access(t));
        Ok(AgentStatus {
            agent_id: agent.to_string(),
            status: self.presence_status(last_seen).to_owned(),
            last_seen,
            tasks,
            current_task: current,
        })
    }
}

impl Service {
    /// `active` (seen within the activity window), `idle` (within [`OFFLINE_AFTER_WINDOWS`]
    /// windows), or `offline` (not seen for longer, or never).
    pub(super) fn presence_status(&self, last_seen: Option<DateTime<Utc>>) -> &'static str {
        let window = self.limits.active_window_secs;
        match last_seen.map(|t| (Utc::now() - t).num_seconds()) {
            Some(ago) if ago <= window => "active",
            Some(ago) if ago <= window.saturating_mul(OFFLINE_AFTER_WINDOWS) => "idle",
            _ => "offline",
        }
    }
}
