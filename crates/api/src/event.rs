//! The event envelope: one shape for every change, wherever it travels.
//!
//! An event is appended to the task's Redis stream `events:{task}` (whose entry id becomes
//! the event `id`, so a watcher can resume without gap or duplicate) and published on
//! `task:{task}:updates`. Foreign publishers (an orchestrator) may publish the seed's shape
//! `{"type","taskId","timestamp","data"}` on that channel; it parses into the same struct
//! with `id` and `agentId` absent.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The kinds of change the gateway emits. Unknown kinds (from foreign publishers)
/// are kept verbatim in [`EventType::Other`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EventType {
    FileWritten,
    FileEdited,
    FileDeleted,
    LockAcquired,
    LockRenewed,
    LockReleased,
    StepLogged,
    AgentJoined,
    AgentLeft,
    TaskCreated,
    TaskUpdated,
    /// A type this version does not know, e.g. `task_assigned` from the orchestrator.
    Other(String),
}

impl EventType {
    /// The wire name, e.g. `"file_written"`.
    pub fn as_str(&self) -> &str {
        match self {
            EventType::FileWritten => "file_written",
            EventType::FileEdited => "file_edited",
            EventType::FileDeleted => "file_deleted",
            EventType::LockAcquired => "lock_acquired",
            EventType::LockRenewed => "lock_renewed",
            EventType::LockReleased => "lock_released",
            EventType::StepLogged => "step_logged",
            EventType::AgentJoined => "agent_joined",
            EventType::AgentLeft => "agent_left",
            EventType::TaskCreated => "task_created",
            EventType::TaskUpdated => "task_updated",
            EventType::Other(s) => s,
        }
    }

    /// Parses a wire name; never fails (unknown names become [`EventType::Other`]).
    pub fn parse(s: &str) -> EventType {
        match s {
            "file_written" => EventType::FileWritten,
            "file_edited" => EventType::FileEdited,
            "file_deleted" => EventType::FileDeleted,
            "lock_acquired" => EventType::LockAcquired,
            "lock_renewed" => EventType::LockRenewed,
            "lock_released" => EventType::LockReleased,
            "step_logged" => EventType::StepLogged,
            "agent_joined" => EventType::AgentJoined,
            "agent_left" => EventType::AgentLeft,
            "task_created" => EventType::TaskCreated,
            "task_updated" => EventType::TaskUpdated,
            other => EventType::Other(other.to_owned()),
        }
    }
}

impl Serialize for EventType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(EventType::parse(&s))
    }
}

/// `{"id","type","taskId","agentId","timestamp","data"}` — camelCase, as in the seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// The Redis stream entry id (`"1700000000000-0"`): the resume point. Absent on
    /// foreign events that were only published, never appended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub task_id: String,
    /// The acting agent; absent on events from foreign publishers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    pub timestamp: DateTime<Utc>,
    #[serde(default)]
    pub data: Value,
}
