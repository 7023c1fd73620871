//! Building event envelopes (the JSON the hot store appends and publishes).

use crate::ids::TaskId;
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use mcp_api::{Event, EventType, StreamId};
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

/// Reads a message published on a task channel: the gateway's own event (with its stream id),
/// or a foreign one in the seed's shape `{"type","taskId","timestamp","data"}` (no id; a
/// missing `taskId` is the channel's task, a missing or unreadable `timestamp` is now). `None`
/// when it is not an event at all (no `type`). The Redis store reads each message with it
/// once, where the message arrives ([`crate::store::hot::UpdatesSource`]).
pub fn parse_published(task: &TaskId, payload: &str) -> Option<Event> {
    if payload.trim_start().starts_with('{')
        && let Ok(p) = serde_json::from_str::<Published>(payload)
    {
        return p.into_event(task);
    }
    parse_published_value(task, payload)
}

/// [`parse_published`] through a [`Value`]: what any message that [`Published`] does not
/// read (a field of another type, a repeated key) is read by, as it always was.
fn parse_published_value(task: &TaskId, payload: &str) -> Option<Event> {
    let value: Value = serde_json::from_str(payload).ok()?;
    let obj = value.as_object()?;
    let text = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_owned);
    Published {
        kind: Some(text("type")?),
        id: text("id"),
        task_id: text("taskId"),
        agent_id: text("agentId"),
        timestamp: obj.get("timestamp").cloned(),
        data: obj.get("data").cloned(),
    }
    .into_event(task)
}

/// The fields of a published event, read straight from its JSON: no map of the envelope
/// is built and `data` is not copied out of one (issue #19: every event this process
/// publishes comes back through its subscription). A message it cannot read (e.g. `id` not
/// a string, a key twice) goes through [`parse_published_value`], so both read the same.
#[derive(serde::Deserialize)]
struct Published {
    #[serde(rename = "type")]
    kind: Option<String>,
    id: Option<String>,
    #[serde(rename = "taskId")]
    task_id: Option<String>,
    #[serde(rename = "agentId")]
    agent_id: Option<String>,
    timestamp: Option<Value>,
    data: Option<Value>,
}

impl Published {
    fn into_event(self, task: &TaskId) -> Option<Event> {
        let kind = EventType::parse(&self.kind?);
        Some(Event {
            // Only a well-formed stream id is a position in the stream.
            id: self.id.filter(|id| StreamId::parse(id).is_some()),
            kind,
            task_id: self.task_id.unwrap_or_else(|| task.to_string()),
            agent_id: self.agent_id,
            timestamp: self
                .timestamp
                .as_ref()
                .and_then(parse_timestamp)
                .unwrap_or_else(Utc::now),
            data: self.data.unwrap_or(Value::Null),
        })
    }
}

/// RFC 3339; an ISO time without offset (Python's `isoformat()`), taken as UTC; or epoch
/// milliseconds / seconds.
fn parse_timestamp(v: &Value) -> Option<DateTime<Utc>> {
    match v {
        Value::String(s) => DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .ok()
            .or_else(|| {
                NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
                    .ok()
                    .map(|n| n.and_utc())
            }),
        Value::Number(n) => {
            let n = n.as_f64()?;
            let ms = if n > 1e11 { n } else { n * 1000.0 };
            Utc.timestamp_millis_opt(ms as i64).single()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcp_api::EventType;

    fn t() -> TaskId {
        TaskId::parse("t1").unwrap()
    }

    #[test]
    fn the_direct_read_and_the_value_read_agree() {
        let fixed = |mut e: Event| {
            // A missing or unreadable timestamp is "now": not comparable.
            e.timestamp = Utc.timestamp_millis_opt(0).unwrap();
            e
        };
        for payload in [
            r#"{"id":"1700000000000-3","type":"step_logged","taskId":"t1","agentId":"a","timestamp":"2024-01-01T00:00:00.5Z","data":{"id":"1700000000000-3","step":{"a":[1,null,"\u00e9"],"n":1e3}}}"#,
            r#" {"type":"task_assigned","timestamp":"2024-05-01T10:00:00.123456","data":{"agent":"qa"},"extra":[1]}"#,
            r#"{"type":"x","id":"not-an-id","timestamp":1700000000}"#,
            r#"{"type":"x","id":null,"taskId":null,"agentId":null,"timestamp":null,"data":null}"#,
            r#"{"type":"x","data":"text"}"#,
        ] {
            let direct: Published = serde_json::from_str(payload).expect(payload);
            assert_eq!(
                direct.into_event(&t()).map(fixed),
                parse_published_value(&t(), payload).map(fixed),
                "{payload}"
            );
        }
        // Read through the Value (the direct read refuses them): the same answers as before.
        for payload in [
            r#"{"type":"x","id":5}"#,
            r#"{"type":"a","type":"b","taskId":"t2"}"#,
            r#"{"type":7}"#,
        ] {
            assert!(
                serde_json::from_str::<Published>(payload).is_err(),
                "{payload}"
            );
        }
        let e = parse_published(&t(), r#"{"type":"a","type":"b","taskId":"t2"}"#).unwrap();
        assert_eq!(
            (e.kind, e.task_id.as_str()),
            (EventType::Other("b".into()), "t2")
        );
        assert_eq!(
            parse_published(&t(), r#"{"type":"x","id":5}"#).unwrap().id,
            None
        );
        assert!(parse_published(&t(), r#"{"type":7}"#).is_none());
        assert!(parse_published(&t(), r#"["x"]"#).is_none());
    }

    #[test]
    fn own_events_keep_their_stream_id() {
        let e = parse_published(
            &t(),
            r#"{"id":"1700000000000-3","type":"file_written","taskId":"t1","agentId":"a","timestamp":"2024-01-01T00:00:00Z","data":{"path":"x"}}"#,
        )
        .unwrap();
        assert_eq!(e.id.as_deref(), Some("1700000000000-3"));
        assert_eq!(e.kind, EventType::FileWritten);
        assert_eq!(e.agent_id.as_deref(), Some("a"));
    }

    #[test]
    fn foreign_events_in_the_seed_shape_are_read_leniently() {
        let e = parse_published(
            &t(),
            r#"{"type":"task_assigned","timestamp":"2024-05-01T10:00:00.123456","data":{"agent":"qa"}}"#,
        )
        .unwrap();
        assert_eq!(e.id, None);
        assert_eq!(e.task_id, "t1");
        assert_eq!(e.kind, EventType::Other("task_assigned".into()));
        assert_eq!(e.timestamp.to_rfc3339(), "2024-05-01T10:00:00.123456+00:00");
        let e = parse_published(
            &t(),
            r#"{"type":"x","id":"not-an-id","timestamp":1700000000}"#,
        )
        .unwrap();
        assert_eq!(e.id, None);
        assert_eq!(e.timestamp.timestamp(), 1_700_000_000);
        assert!(parse_published(&t(), r#"{"hello":1}"#).is_none());
        assert!(parse_published(&t(), "not json").is_none());
    }
}
