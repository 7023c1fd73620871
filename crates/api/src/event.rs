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
    /// A file change refused because of another agent's work (lease, fence, version).
    WriteRefused,
    /// A claim refused because another agent holds the lease.
    ClaimRefused,
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
            EventType::WriteRefused => "write_refused",
            EventType::ClaimRefused => "claim_refused",
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
            "write_refused" => EventType::WriteRefused,
            "claim_refused" => EventType::ClaimRefused,
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// The Redis stream entry id (`"1700000000000-0"`): the resume point. Absent on
    /// foreign events that were only published, never appended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The kind of change, e.g. `file_written` (foreign publishers may send others).
    #[serde(rename = "type")]
    #[schemars(with = "String")]
    pub kind: EventType,
    pub task_id: String,
    /// The acting agent; absent on events from foreign publishers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    pub timestamp: DateTime<Utc>,
    #[serde(default)]
    pub data: Value,
}

/// A position in a task's event stream: a Redis stream entry id `"<ms>-<seq>"`. Event ids,
/// `Last-Event-ID`, `since` and `resume_from` are all stream ids; ordering them is ordering
/// the events of one task.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

impl StreamId {
    /// Before every event: resuming from it replays the whole (capped) stream.
    pub const ZERO: StreamId = StreamId { ms: 0, seq: 0 };

    /// Parses `"<ms>-<seq>"`, or `"0"` for [`StreamId::ZERO`].
    pub fn parse(s: &str) -> Option<StreamId> {
        if s == "0" {
            return Some(StreamId::ZERO);
        }
        let (ms, seq) = s.split_once('-')?;
        let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        if !digits(ms) || !digits(seq) {
            return None;
        }
        Some(StreamId {
            ms: ms.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_parse_and_order() {
        assert_eq!(StreamId::parse("0"), Some(StreamId::ZERO));
        let a = StreamId::parse("1700000000000-2").unwrap();
        let b = StreamId::parse("1700000000001-0").unwrap();
        assert!(a < b);
        assert_eq!(a.to_string(), "1700000000000-2");
        for bad in ["", "-", "1-", "-1", "a-1", "1-2-3", "1", "+1-0", " 1-0"] {
            assert_eq!(StreamId::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn foreign_events_parse_without_id() {
        let e: Event = serde_json::from_str(
            r#"{"type":"task_assigned","taskId":"t1","timestamp":"2024-01-01T00:00:00.000Z","data":{"agent":"coder"}}"#,
        )
        .unwrap();
        assert_eq!(e.kind, EventType::Other("task_assigned".into()));
        assert_eq!(e.id, None);
        assert_eq!(e.agent_id, None);
    }
}
