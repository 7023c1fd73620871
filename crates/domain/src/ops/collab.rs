//! `join_collab` / `leave_collab` (and the original's `*_collaboration` names) and the
//! `collaboration://{id}` resource. Membership is written through to Postgres (joins are
//! rare and must survive Redis), then mirrored in Redis, where activity is tracked.

use super::Service;
use crate::actor::Actor;
use crate::error::Result;
use mcp_api::EventType;
use mcp_api::requests::CollaborationRequest;
use mcp_api::responses::{CollaborationResponse, CollaborationState};
use serde_json::json;

impl Service {
    /// Joins the actor to the task's collaboration: durable first, then mirrored in the hot store.
    pub async fn join_collab(
        &self,
        actor: &Actor,
        req: CollaborationRequest,
    ) -> Result<CollaborationResponse> {
        let task = actor.write_task(&req.task_id)?;
        let joined_at = self
            .durable
            .join(&task, actor.agent.as_str(), actor.request_id.as_deref())
            .await?;
        self.hot.join(&task, &actor.agent, joined_at).await?;
        self.emit(
            actor,
            &task,
            EventType::AgentJoined,
            json!({"agent_id": actor.agent.as_str(), "joined_at": joined_at}),
            None,
        )
        .await?;
        Ok(CollaborationResponse {
            success: true,
            task_id: task.to_string(),
            agent_id: actor.agent.to_string(),
        })
    }

    /// Leaving is idempotent: leaving a session one is not in succeeds and emits nothing.
    pub async fn leave_collab(
        &self,
        actor: &Actor,
        req: CollaborationRequest,
    ) -> Result<CollaborationResponse> {
        let task = actor.write_task(&req.task_id)?;
        let was_member = self
            .durable
            .leave(&task, actor.agent.as_str(), actor.request_id.as_deref())
            .await?;
        self.hot.leave(&task, &actor.agent).await?;
        if was_member {
            self.emit(
                actor,
                &task,
                EventType::AgentLeft,
                json!({"agent_id": actor.agent.as_str()}),
                None,
            )
            .await?;
        }
        Ok(CollaborationResponse {
            success: true,
            task_id: task.to_string(),
            agent_id: actor.agent.to_string(),
        })
    }

    /// The `collaboration://{id}` resource: who has joined the task and who is active.
    pub async fn collaboration(&self, actor: &Actor, task_id: &str) -> Result<CollaborationState> {
        let task = actor.task(task_id)?;
        let members = match self.hot.collaborators(&task).await? {
            Some(m) => m,
            None => self.durable.collaborators(&task).await?,
        };
        Ok(CollaborationState {
            success: true,
            task_id: task.to_string(),
            agents: members.iter().map(|m| m.agent_id.clone()).collect(),
            members,
        })
    }
}
