//! The `tasks://{id}/state` resource and the admin API that creates and updates tasks.
//! Reads come from the hot cache (TTL), falling back to Postgres and refilling on a miss.

use super::Service;
use crate::actor::Actor;
use crate::error::{DomainError, Result};
use crate::ids::TaskId;
use crate::store::durable::TaskRow;
use mcp_api::EventType;
use mcp_api::requests::{CreateTaskRequest, UpdateTaskRequest};
use mcp_api::responses::TaskState;
use serde_json::json;

impl Service {
    /// The `tasks://{id}/state` resource: the task's state and its sequence number.
    pub async fn task_state(&self, actor: &Actor, task_id: &str) -> Result<TaskState> {
        let task = actor.task(task_id)?;
        if let Some(state) = self.hot.task(&task).await? {
            return Ok(state);
        }
        let row = self
            .durable
            .task(&task)
            .await?
            .ok_or_else(|| DomainError::TaskNotFound(task.to_string()))?;
        self.hot
            .cache_task(&row.state, row.seq, self.limits.task_cache_ttl_secs)
            .await?;
        Ok(row.state)
    }

    /// A page of the ids of the tasks the actor may see, in id order, after `after`: the
    /// task list behind MCP `resources/list`.
    pub async fn task_ids(
        &self,
        actor: &Actor,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>> {
        match &actor.tasks {
            Some(scope) if !scope.iter().any(|t| t == "*") => {
                let mut ids: Vec<String> = scope
                    .iter()
                    .filter(|t| after.is_none_or(|a| t.as_str() > a))
                    .cloned()
                    .collect();
                ids.sort();
                ids.dedup();
                ids.truncate(limit);
                Ok(ids)
            }
            _ => self.durable.task_ids(after, limit).await,
        }
    }

    /// Creates a task (admin only), with a new UUID when the request names no id.
    pub async fn create_task(&self, actor: &Actor, req: CreateTaskRequest) -> Result<TaskState> {
        actor.ensure_admin()?;
        let id = match req.id.as_deref() {
            Some(id) => TaskId::parse(id)?,
            None => TaskId::parse(&uuid::Uuid::new_v4().to_string())?,
        };
        actor.ensure_task(&id)?;
        let TaskRow { state, seq } = self
            .durable
            .create_task(&id, &req, actor.agent.as_str(), actor.request_id.as_deref())
            .await?;
        self.hot
            .cache_task(&state, seq, self.limits.task_cache_ttl_secs)
            .await?;
        self.emit(
            actor,
            &id,
            EventType::TaskCreated,
            json!({"task": state}),
            None,
        )
        .await?;
        Ok(state)
    }

    /// Changes a task's state (admin only).
    pub async fn update_task(
        &self,
        actor: &Actor,
        task_id: &str,
        req: UpdateTaskRequest,
    ) -> Result<TaskState> {
        actor.ensure_admin()?;
        let task = actor.task(task_id)?;
        let TaskRow { state, seq } = self
            .durable
            .update_task(
                &task,
                &req,
                actor.agent.as_str(),
                actor.request_id.as_deref(),
            )
            .await?
            .ok_or_else(|| DomainError::TaskNotFound(task.to_string()))?;
        self.hot
            .cache_task(&state, seq, self.limits.task_cache_ttl_secs)
            .await?;
        self.emit(
            actor,
            &task,
            EventType::TaskUpdated,
            json!({"changes": req, "task": state}),
            None,
        )
        .await?;
        Ok(state)
    }
}
