//! Live events: the two operations behind every live stream (SSE, WebSocket, MCP resource
//! subscriptions). [`Service::open_events`] decides whether an actor may watch a task;
//! [`Service::events_after`] reads the task's event stream after a resume point (replay
//! and catch-up). The in-memory fan-out of live events lives in the gateway (`live::Hub`).

use super::Service;
use crate::actor::Actor;
use crate::error::Result;
use crate::ids::TaskId;
use mcp_api::{Event, StreamId};

impl Service {
    /// Checks that `actor` may watch `task_id` (a valid id in its scope). The task need not
    /// exist yet: tasks need no row to be written to, so a watcher may open its stream before
    /// anything happened in the task and receives its first event and every one after.
    pub async fn open_events(&self, actor: &Actor, task_id: &str) -> Result<TaskId> {
        let task = actor.task(task_id)?;
        Ok(task)
    }

    /// Up to `count` events of `task` after `after`, oldest first, each with its stream id.
    /// Entries that do not parse as an envelope are skipped (logged).
    pub async fn events_after(
        &self,
        actor: &Actor,
        task: &TaskId,
        after: StreamId,
        count: usize,
    ) -> Result<Vec<(StreamId, Event)>> {
        actor.ensure_task(task)?;
        let entries = self.hot.events_after(task, after, count).await?;
        Ok(entries
            .into_iter()
            .filter_map(|entry| {
                let id = entry.id;
                match serde_json::from_str::<Event>(&entry.envelope) {
                    Ok(mut event) => {
                        event.id = Some(id.to_string());
                        Some((id, event))
                    }
                    Err(e) => {
                        tracing::warn!(task = %task, %id, error = %e, "unreadable event skipped");
                        None
                    }
                }
            })
            .collect())
    }

    /// The position of the task's newest event (`StreamId::ZERO` when it has none): where a
    /// watcher that asks for no replay starts.
    pub async fn events_tail(&self, actor: &Actor, task: &TaskId) -> Result<StreamId> {
        actor.ensure_task(task)?;
        Ok(self.hot.events_tail(task).await?.unwrap_or(StreamId::ZERO))
    }
}
