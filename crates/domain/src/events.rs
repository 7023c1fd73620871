//! Building event envelopes (the JSON the hot store appends and publishes).

use crate::ids::TaskId;
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use mcp_api::{Event, EventType, StreamId};
use serde::Serialize;
use serde_json::Value;
use std::borrow::Cow;

/// The envelope without `id` (Redis assigns it when appending to the stream): an
/// [`Event`]'s JSON, whatever serialises as its `data` (a typed struct, not only a [`Value`]
/// map: issue #19).
pub fn envelope(kind: EventType, task: &TaskId, agent: &str, data: impl Serialize) -> String {
    /// [`Event`] as it is written: the same fields, in the same order, borrowed.
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Outgoing<'a, D> {
        #[serde(rename = "type")]
        kind: EventType,
        task_id: &'a str,
        agent_id: &'a str,
        timestamp: DateTime<Utc>,
        data: D,
    }
    serde_json::to_string(&Outgoing {
        kind,
        task_id: task.as_str(),
        agent_id: agent,
        timestamp: Utc::now(),
        data,
    })
    .expect("an event always serialises")
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

/// JSON text split around the one JSON string `placeholder` stands for (its quotes too), for a
/// value that only the hot store's script knows and writes in between (a lease's expiry or
/// fence): `None` unless the placeholder's text occurs exactly once (a caller then builds
/// the text when the value is known).
pub fn split_around_value(text: &str, placeholder: &str) -> Option<(String, String)> {
    let quoted = serde_json::to_string(placeholder).expect("a string serialises");
    let (before, after) = text.split_once(quoted.as_str())?;
    if after.contains(quoted.as_str()) {
        return None;
    }
    Some((before.to_owned(), after.to_owned()))
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

/// The `type` of a message published on a task channel, read without building the event
/// (the envelope's other fields and `data` are skipped, not copied): `Some(Some(kind))`,
/// `Some(None)` when it has no `type` (it is not an event), and `None` when it cannot be
/// told so (not an object, a repeated or non-string `type`...): then it is read whole.
pub fn published_kind(payload: &str) -> Option<Option<Cow<'_, str>>> {
    if let Some(kind) = own_kind(payload) {
        return Some(Some(Cow::Borrowed(kind)));
    }
    #[derive(serde::Deserialize)]
    struct Kind<'a> {
        #[serde(rename = "type", borrow)]
        kind: Option<Cow<'a, str>>,
    }
    serde_json::from_str::<Kind>(payload).ok().map(|k| k.kind)
}

/// The kind of the gateway's own event as its scripts publish it (`{"id":"<stream
/// id>","type":"<kind>",…`) or as the in-process store hands it over (without the `id`),
/// read from its place: nothing after it can be another `type` (neither `"type"` nor a `\u`
/// escape, which could spell one, occurs again), so the whole read would find this one.
/// `None` for any other message (serde reads it then): issue #19, a step's kind read through
/// serde cost 5,500 instructions.
fn own_kind(payload: &str) -> Option<&str> {
    let mut rest = payload.strip_prefix('{')?;
    if let Some(id) = rest.strip_prefix(r#""id":""#) {
        let id_end = id.find('"')?;
        if !id[..id_end]
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'-')
        {
            return None;
        }
        rest = id[id_end..].strip_prefix(r#"","#)?;
    }
    let rest = rest.strip_prefix(r#""type":""#)?;
    let kind_end = rest.find('"')?;
    let (kind, after) = rest.split_at(kind_end);
    let plain = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_';
    let unambiguous = !kind.is_empty()
        && kind.bytes().all(plain)
        && memchr::memmem::find(after.as_bytes(), br#""type""#).is_none()
        && memchr::memmem::find(after.as_bytes(), br"\u").is_none();
    unambiguous.then_some(kind)
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

    /// What `published_kind` tells must be what the whole read would find: a kind it reads
    /// is the event's kind, and a message it finds no `type` in is no event.
    fn kind_agrees(payload: &str) {
        match published_kind(payload) {
            Some(Some(kind)) => assert_eq!(
                parse_published(&t(), payload).map(|e| e.kind.as_str().to_owned()),
                Some(kind.into_owned()),
                "{payload}"
            ),
            Some(None) => assert!(parse_published(&t(), payload).is_none(), "{payload}"),
            None => {}
        }
    }

    #[test]
    fn the_kind_is_read_without_the_event() {
        let own = r#"{"id":"1700000000000-3","type":"step_logged","taskId":"t1","agentId":"a","timestamp":"2024-01-01T00:00:00Z","data":{"type":"not this","step":{"type":[1]}}}"#;
        assert_eq!(published_kind(own), Some(Some("step_logged".into())));
        let data_first = r#"{"data":{"type":"inner"},"type":"message_sent"}"#;
        assert_eq!(
            published_kind(data_first),
            Some(Some("message_sent".into()))
        );
        assert_eq!(
            published_kind(r#"{"type":"a\u0062"}"#),
            Some(Some("ab".into()))
        );
        assert_eq!(published_kind(r#"{"data":{"type":"x"}}"#), Some(None));
        // Not told: read whole (and found to be an event, or not).
        for unsure in [
            r#"{"type":"a","type":"b"}"#,
            r#"{"type":7}"#,
            "[1]",
            "not json",
        ] {
            assert_eq!(published_kind(unsure), None, "{unsure}");
        }
        for payload in [
            own,
            data_first,
            r#"{"data":{"type":"x"}}"#,
            r#"{"type":"a\u0062"}"#,
        ] {
            kind_agrees(payload);
        }
    }

    #[test]
    fn the_gateways_own_events_are_read_in_place() {
        let own = r#"{"id":"1700000000000-3","type":"file_written","taskId":"t1","agentId":"a","timestamp":"2024-01-01T00:00:00Z","data":{"path":"x","n":[1,{"k":null}]}}"#;
        assert_eq!(own_kind(own), Some("file_written"));
        kind_agrees(own);
        let stored = envelope(
            EventType::StepLogged,
            &t(),
            "a",
            serde_json::json!({"n": 1}),
        );
        assert_eq!(own_kind(&stored), Some("step_logged"));
        kind_agrees(&stored);
        // Anything after the kind that could be another `type` is left to serde.
        for (payload, kind) in [
            (
                r#"{"id":"1-0","type":"file_written","type":"message_sent"}"#,
                None,
            ),
            (
                r#"{"id":"1-0","type":"file_written","t\u0079pe":"message_sent"}"#,
                None,
            ),
            (
                r#"{"id":"1-0","type":"step_logged","data":{"type":"x"}}"#,
                Some("step_logged"),
            ),
            (r#"{"id":"1-0","type":"x\u0062","data":{}}"#, Some("xb")),
            (r#"{"id":"x","type":"file_written"}"#, Some("file_written")),
        ] {
            assert_eq!(own_kind(payload), None, "{payload}");
            let read = published_kind(payload).map(|k| k.map(Cow::into_owned));
            assert_eq!(read, kind.map(|k| Some(k.to_owned())), "{payload}");
            kind_agrees(payload);
        }
    }

    proptest::proptest! {
        /// Objects of repeated, nested, mistyped and escaped `type`s, in any order.
        #[test]
        fn the_kind_read_alone_agrees_with_the_whole_read(
            fields in proptest::collection::vec(
                (
                    proptest::sample::select(vec!["type", "id", "data", "taskId", r"t\u0079pe"]),
                    proptest::sample::select(vec![
                        r#""message_sent""#, r#""step_\u006cogged""#, "7", "null",
                        r#"{"type":"inner"}"#, r#"["type"]"#, r#""1700000000000-1""#,
                    ]),
                ),
                0..5,
            ),
            own in proptest::bool::ANY,
        ) {
            let mut body: Vec<String> =
                fields.iter().map(|(k, v)| format!(r#""{k}":{v}"#)).collect();
            if own {
                // The gateway's own shape first: read in place unless something after it
                // could be another `type`.
                body.insert(0, r#""id":"1700000000000-1","type":"file_written""#.into());
            }
            kind_agrees(&format!("{{{}}}", body.join(",")));
        }
    }

    #[test]
    fn an_envelope_is_the_events_json() {
        let data = serde_json::json!({"path": "a\"b", "n": [1, null], "z": {"é": true}});
        let text = envelope(EventType::FileWritten, &t(), "coder", &data);
        let event: Event = serde_json::from_str(&text).expect("an event");
        assert_eq!(
            (event.id.as_deref(), &event.kind, event.task_id.as_str()),
            (None, &EventType::FileWritten, "t1")
        );
        assert_eq!(
            (event.agent_id.as_deref(), &event.data),
            (Some("coder"), &data)
        );
        // Byte for byte what the event itself serialises to.
        assert_eq!(serde_json::to_string(&event).expect("json"), text);
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
