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
    /// A file was written (created or replaced).
    FileWritten,
    /// A file was edited in place (`file_edit`).
    FileEdited,
    /// A file was deleted.
    FileDeleted,
    /// A lease was granted (`claim_file`).
    LockAcquired,
    /// A lease was renewed, or claimed again by its holder.
    LockRenewed,
    /// A lease was released: by its holder, by an admin's force, or because the waiter it was granted to had gone away.
    LockReleased,
    /// An agent logged a step.
    StepLogged,
    /// An agent joined the task's collaboration.
    AgentJoined,
    /// An agent left the task's collaboration.
    AgentLeft,
    /// The task was created.
    TaskCreated,
    /// The task's fields changed.
    TaskUpdated,
    /// A file change refused because of another agent's work (lease, fence, version).
    WriteRefused,
    /// A claim refused because another agent holds the lease.
    ClaimRefused,
    /// A message was sent on the task (metadata only: a direct message's subject and body
    /// are for its recipients, not for every watcher of the task).
    MessageSent,
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
            EventType::MessageSent => "message_sent",
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
            "message_sent" => EventType::MessageSent,
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
    /// The task the event belongs to.
    pub task_id: String,
    /// The acting agent; absent on events from foreign publishers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// When the gateway emitted it.
    pub timestamp: DateTime<Utc>,
    /// What changed: the event type's own fields (path, version, fence, step…).
    #[serde(default)]
    pub data: Value,
}

/// A position in a task's event stream: a Redis stream entry id `"<ms>-<seq>"`. Event ids,
/// `Last-Event-ID`, `since` and `resume_from` are all stream ids; ordering them is ordering
/// the events of one task.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId {
    /// Milliseconds since the Unix epoch (the stream's clock).
    pub ms: u64,
    /// Sequence number within that millisecond.
    pub seq: u64,
}

impl StreamId {
    /// Before every event: resuming from it replays the whole (capped) stream.
    pub const ZERO: StreamId = StreamId { ms: 0, seq: 0 };

    /// The largest part a client may send: the durable step log keeps both parts of an id
    /// as signed 64-bit integers, so no id above this was ever stored.
    pub const MAX_PART: u64 = i64::MAX as u64;

    /// How far past the gateway's clock a resume point may lie. Ids are the milliseconds of
    /// the store's clock when the entry was added (a clock that went back keeps the last
    /// millisecond), so an id a day ahead was never issued: a watcher there would wait,
    /// silently, for events that all sort before it.
    pub const RESUME_AHEAD_MS: u64 = 24 * 60 * 60 * 1000;

    /// Parses `"<ms>-<seq>"`, or `"0"` for [`StreamId::ZERO`]. Lenient about the range: for
    /// ids read back from a store. Ids from clients go through [`StreamId::parse_client`]
    /// (or its two uses below) instead.
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

impl StreamId {
    /// An id sent by a client (THE rule of every door: REST paging, SSE `since` and
    /// `Last-Event-ID`, WebSocket `since`): `"0"` or `"<ms>-<seq>"` in plain digits, each
    /// part at most [`StreamId::MAX_PART`]. The error is the `invalid_argument` detail.
    pub fn parse_client(s: &str) -> Result<StreamId, &'static str> {
        const MALFORMED: &str = "a stream id looks like 1700000000000-0 (or 0)";
        // 19 digits each way is i64::MAX's length; anything longer is out of range anyway.
        if s.len() > 64 {
            return Err("the stream id is out of range");
        }
        if s == "0" {
            return Ok(StreamId::ZERO);
        }
        let (ms, seq) = s.split_once('-').ok_or(MALFORMED)?;
        let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        if !digits(ms) || !digits(seq) {
            return Err(MALFORMED);
        }
        let part = |p: &str| {
            p.parse::<u64>()
                .ok()
                .filter(|v| *v <= StreamId::MAX_PART)
                .ok_or("the stream id is out of range (each part at most 9223372036854775807)")
        };
        Ok(StreamId {
            ms: part(ms)?,
            seq: part(seq)?,
        })
    }

    /// A resume point (`since`, `Last-Event-ID`): an exclusive lower bound, so `0`/`0-0`
    /// means the whole stream. Also refused: a point more than [`StreamId::RESUME_AHEAD_MS`]
    /// past `now_ms` (the gateway's clock), which no stream has reached.
    pub fn parse_resume_point(s: &str, now_ms: u64) -> Result<StreamId, &'static str> {
        let id = StreamId::parse_client(s)?;
        if id.ms > now_ms.saturating_add(StreamId::RESUME_AHEAD_MS) {
            return Err("the resume point lies in the future: no stream has reached it");
        }
        Ok(id)
    }

    /// A page bound (`before`): an exclusive upper bound, so it must leave room below it —
    /// nothing is older than `0-0`.
    pub fn parse_page_bound(s: &str) -> Result<StreamId, &'static str> {
        match StreamId::parse_client(s)? {
            StreamId::ZERO => Err("nothing is older than 0-0: before must be a step id"),
            id => Ok(id),
        }
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
    fn client_ids_are_checked_for_syntax_and_range() {
        let max = "9223372036854775807-9223372036854775807";
        assert_eq!(
            StreamId::parse_client(max),
            Ok(StreamId {
                ms: StreamId::MAX_PART,
                seq: StreamId::MAX_PART
            })
        );
        assert_eq!(StreamId::parse_client("0-0"), Ok(StreamId::ZERO));
        for bad in [
            "",
            "-",
            "1-",
            "+1-0",
            "1-+0",
            " 1-0",
            "1",
            "1-2-3",
            "9223372036854775808-0",
            "0-9223372036854775808",
            "18446744073709551615-18446744073709551615",
            "99999999999999999999999-0",
        ] {
            assert!(StreamId::parse_client(bad).is_err(), "{bad:?}");
        }
        let now = 1_700_000_000_000;
        assert!(StreamId::parse_resume_point("0", now).is_ok());
        assert!(StreamId::parse_resume_point("1700000000000-5", now).is_ok());
        let ahead = now + StreamId::RESUME_AHEAD_MS;
        assert!(StreamId::parse_resume_point(&format!("{ahead}-0"), now).is_ok());
        assert!(StreamId::parse_resume_point(&format!("{}-0", ahead + 1), now).is_err());
        assert!(StreamId::parse_page_bound("0").is_err());
        assert!(StreamId::parse_page_bound("0-0").is_err());
        assert_eq!(
            StreamId::parse_page_bound("0-1"),
            Ok(StreamId { ms: 0, seq: 1 })
        );
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
