//! Building event envelopes (the JSON the hot store appends and publishes).

use crate::ids::TaskId;
use chrono::Utc;
use mcp_api::{Event, EventType};
use serde_json::Value;

/// The envelope without `id` (Redis assigns it when appending to the stream).
pub fn envelope(kind: EventType, task: &TaskId, agent: &str, data: Value) -> String {
    let event = Event {
        id: None,
        kind,
        task_id: task.to_string(),
        agent_id: Some(agent.to_owned()),
        timestamp: Utc::now(),
        data,
    };
    serde_json::to_string(&event).expect("an event always serialises")
}

/// An envelope split around a placeholder, for values only Redis knows (a step's stream id):
/// returns (text before the placeholder, text after it).
pub fn envelope_around(
    kind: EventType,
    task: &TaskId,
    agent: &str,
    data: Value,
    placeholder: &str,
) -> (String, String) {
    let full = envelope(kind, task, agent, data);
    let quoted = serde_json::to_string(placeholder).expect("a string serialises");
    let inner = &quoted[1..quoted.len() - 1];
    match full.split_once(inner) {
        Some((a, b)) => (a.to_owned(), b.to_owned()),
        None => (full, String::new()),
    }
}
