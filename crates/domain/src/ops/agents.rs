//! The `agents://{id}/status` resource: presence from Redis (touched by every event the agent
//! causes), falling back to the durable `agents` row.

use super::Service;
use crate::actor::Actor;
use crate::error::{DomainError, Result};
use crate::ids::AgentId;
use chrono::Utc;
use mcp_api::responses::AgentStatus;

impl Service {
    /// Any caller may ask about any agent, but the answer names only tasks in the caller's
    /// scope (an agent's other tasks are none of its business).
    pub async fn agent_status(&self, actor: &Actor, agent_id: &str) -> Result<AgentStatus> {
        let agent = AgentId::parse(agent_id)?;
        let (mut last_seen, mut current, mut tasks) = self.hot.presence(&agent).await?;
        if last_seen.is_none() && tasks.is_empty() {
            let Some((seen, cur, t)) = self.durable.agent(agent.as_str()).await? else {
                return Err(DomainError::AgentNotFound(agent.to_string()));
            };
            (last_seen, current, tasks) = (seen, cur, t);
        }
        tasks.retain(|t| actor.may_access(t));
        current = current.filter(|t| actor.may_access(t));
        let status = match last_seen {
            Some(t) if (Utc::now() - t).num_seconds() <= self.limits.active_window_secs => "active",
            Some(_) => "idle",
            None => "offline",
        };
        Ok(AgentStatus {
            agent_id: agent.to_string(),
            status: status.to_owned(),
            last_seen,
            tasks,
            current_task: current,
        })
    }
}
