//! `log_step`, `subscribe_logs` and the `tasks://{id}/logs` resource.
//!
//! A step is appended to the task's capped Redis stream and to the sync outbox in one atomic
//! script (with its event); the push loop persists it to Postgres idempotently on its stream
//! id. A hot store without an outbox (the embedded mode's in-process one) only appends it and
//! emits; the step is then written to the durable store (SQLite, group-committed with the
//! other writes in flight) before the call answers, so an acknowledged step survives a crash.
//! Reading pages newest-first through the stream and continues into Postgres for steps the
//! stream no longer holds.

use super::Service;
use crate::actor::Actor;
use crate::error::{DomainError, Result};
use crate::ids::TaskId;
use crate::store::durable::{OutboxBatch, StepRecord};
use crate::store::hot::Emit;
use chrono::{SecondsFormat, Utc};
use mcp_api::requests::{LogStepRequest, SubscribeLogsRequest};
use mcp_api::responses::{LogStepResponse, LoggedStep, SubscribeLogsResponse, TaskLogs};
use mcp_api::{EventType, StreamId};
use serde_json::{Value, json};

/// Most steps one page returns.
pub(super) const MAX_LOG_PAGE: usize = 1000;
/// How an envelope with null data ends (`data` is its last field).
const NULL_DATA: &str = ",\"data\":null}";

/// Counts the bytes written to it.
struct Count(usize);

impl std::io::Write for Count {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The step as stored and published: the client's object with the server's fields set
/// (`server`: sorted by key, each overriding a client field of its name), as JSON — byte for
/// byte `serde_json`'s text of the object with those fields inserted (a `BTreeMap`: keys in
/// order) — and the length of the client's object as JSON (what the size limit counts),
/// both from one pass over the step (issue #19: it was serialised once to measure it and
/// once more with the fields inserted).
fn write_step(
    client: &serde_json::Map<String, Value>,
    server: &[(&str, &str); 3],
) -> Result<(String, usize)> {
    fn entry<V: serde::Serialize + ?Sized>(out: &mut Vec<u8>, key: &str, value: &V) -> Result<()> {
        out.push(if out.is_empty() { b'{' } else { b',' });
        serde_json::to_writer(&mut *out, key).map_err(DomainError::internal)?;
        out.push(b':');
        serde_json::to_writer(&mut *out, value).map_err(DomainError::internal)
    }
    let mut out = Vec::with_capacity(256);
    // The client's object: its braces, and a comma between two entries.
    let mut client_len = 2 + client.len().saturating_sub(1);
    let mut server_fields = server.iter().peekable();
    for (key, value) in client {
        while let Some((k, v)) = server_fields.next_if(|(k, _)| *k < key.as_str()) {
            entry(&mut out, k, v)?;
        }
        if server_fields
            .peek()
            .is_some_and(|(k, _)| *k == key.as_str())
        {
            // Overridden by the server's field (written next): counted, not written.
            let mut n = Count(0);
            serde_json::to_writer(&mut n, key).map_err(DomainError::internal)?;
            serde_json::to_writer(&mut n, value).map_err(DomainError::internal)?;
            client_len += n.0 + 1;
            continue;
        }
        let before = out.len() + 1; // the brace or comma is not the entry's
        entry(&mut out, key, value)?;
        client_len += out.len() - before;
    }
    for (k, v) in server_fields {
        entry(&mut out, k, v)?;
    }
    out.push(b'}');
    let json = String::from_utf8(out).map_err(DomainError::internal)?;
    Ok((json, client_len))
}

/// Whether a JSON value holds a NUL character in any string or key.
fn holds_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        _ => false,
    }
}

/// The `step_logged` event of a step, split around its stream id (which only the hot store
/// knows): its data is `{"id": <stream id>, "step": <the step>}`. The envelope is built
/// with null data (its last field), which the data's text then replaces, so the step is
/// serialised once and never copied as a value. (The same bytes as the envelope of that
/// data split around a placeholder id, at a fifth of the instructions: issue #19.)
fn step_event(task: &TaskId, agent: &str, step_json: &str) -> Result<(String, String)> {
    let mut prefix = crate::events::envelope(EventType::StepLogged, task, agent, Value::Null);
    if !prefix.ends_with(NULL_DATA) {
        return Err(DomainError::internal(
            "the step event's envelope changed shape",
        ));
    }
    prefix.truncate(prefix.len() - "null}".len());
    prefix.push_str("{\"id\":\"");
    let mut suffix = String::with_capacity(step_json.len() + 16);
    for part in ["\",\"step\":", step_json, "}}"] {
        suffix.push_str(part);
    }
    Ok((prefix, suffix))
}

impl Service {
    /// Appends a step to the task's log and emits it; the step is durable once it answers (module docs).
    pub async fn log_step(&self, actor: &Actor, req: LogStepRequest) -> Result<LogStepResponse> {
        let task = actor.write_task(&req.task_id)?;
        let Value::Object(mut step) = req.step else {
            return Err(DomainError::InvalidArgument(
                "step must be a JSON object".into(),
            ));
        };
        // Server-set fields: never trusted from the client.
        let timestamp = Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true);
        let (step_json, size) = write_step(
            &step,
            &[
                ("agent_id", actor.agent.as_str()),
                ("task_id", task.as_str()),
                ("timestamp", &timestamp),
            ],
        )?;
        // Postgres jsonb cannot hold U+0000; refused now rather than dead-lettered by the push.
        if step.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)) {
            return Err(DomainError::InvalidArgument(
                "step must not contain NUL characters (U+0000)".into(),
            ));
        }
        if size > self.limits.max_step_bytes {
            return Err(DomainError::TooLarge {
                what: "step",
                actual: size,
                limit: self.limits.max_step_bytes,
            });
        }
        // The answer's (and the embedded mode's record's) copy of what `step_json` says.
        step.insert("timestamp".into(), Value::String(timestamp));
        step.insert("task_id".into(), json!(task.as_str()));
        step.insert("agent_id".into(), json!(actor.agent.as_str()));
        let step = Value::Object(step);
        let (prefix, suffix) = step_event(&task, actor.agent.as_str(), &step_json)?;
        let ids = self
            .hot
            .log_step(
                &Emit {
                    task: &task,
                    agent: actor.agent.as_str(),
                    envelope: prefix,
                    audit: None,
                    events_cap: self.limits.events_stream_cap,
                },
                &suffix,
                &step_json,
                self.limits.logs_stream_cap,
            )
            .await?;
        if self.hot.outbox().is_none() {
            // No outbox to carry it (the embedded mode): durable before it is acknowledged.
            let record = StepRecord::logged(
                task.as_str(),
                ids.step,
                Some(actor.agent.as_str()),
                step.clone(),
            )
            .ok_or_else(|| {
                DomainError::internal(format!("step id {} is out of range", ids.step))
            })?;
            self.persist_direct(OutboxBatch {
                steps: vec![record],
                ..OutboxBatch::default()
            })
            .await?;
        }
        Ok(LogStepResponse {
            success: true,
            task_id: task.to_string(),
            step,
            id: ids.step.to_string(),
        })
    }

    /// Tells the caller where to follow the task's events: the stream URL, and the Redis channel when the hot store is shared.
    pub async fn subscribe_logs(
        &self,
        actor: &Actor,
        req: SubscribeLogsRequest,
    ) -> Result<SubscribeLogsResponse> {
        let task = actor.task(&req.task_id)?;
        let channel = self.hot.channel(&task);
        let stream_url = format!("/tasks/{task}/events");
        let redis = if self.hot.shared() {
            format!("Subscribe to Redis channel {channel}, or stream")
        } else {
            "Stream".to_owned()
        };
        Ok(SubscribeLogsResponse {
            success: true,
            task_id: task.to_string(),
            message: format!(
                "{redis} {stream_url} (Server-Sent Events) or subscribe on /ws (WebSocket)"
            ),
            channel,
            stream_url,
        })
    }

    /// Up to `limit` steps older than `before` (a step id), oldest first.
    pub async fn task_logs(
        &self,
        actor: &Actor,
        task_id: &str,
        before: Option<&str>,
        limit: usize,
    ) -> Result<TaskLogs> {
        let task = actor.task(task_id)?;
        if !(1..=MAX_LOG_PAGE).contains(&limit) {
            return Err(DomainError::InvalidArgument(format!(
                "limit must be between 1 and {MAX_LOG_PAGE}"
            )));
        }
        // THE client stream-id rule (mcp_api): the stores only ever see a canonical id that
        // leaves room below it and fits the durable step log.
        let before = before
            .map(|b| {
                StreamId::parse_page_bound(b)
                    .map_err(|why| DomainError::InvalidArgument(format!("before: {why}")))
            })
            .transpose()?;
        let hot = self.hot.steps_before(&task, before, limit).await?;
        let older_than = hot.last().map(|s| s.id).or(before);
        let mut steps: Vec<LoggedStep> = hot
            .into_iter()
            .map(|s| LoggedStep {
                id: s.id.to_string(),
                step: serde_json::from_str(&s.json).unwrap_or(Value::String(s.json)),
            })
            .collect();
        if steps.len() < limit {
            let rest = self
                .durable
                .steps_before(&task, older_than, limit - steps.len())
                .await?;
            steps.extend(rest.into_iter().map(|s| LoggedStep {
                id: s.id.to_string(),
                step: s.step,
            }));
        }
        steps.reverse();
        Ok(TaskLogs {
            success: true,
            task_id: task.to_string(),
            steps,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEP_ID_PLACEHOLDER: &str = "\u{0}step-id\u{0}";

    /// The timestamp of an envelope, blanked (two envelopes are made at two instants).
    fn untimed(s: &str) -> String {
        let at = s.find("\"timestamp\":\"").expect("timestamp") + 13;
        let end = at + s[at..].find('"').expect("end");
        format!("{}T{}", &s[..at], &s[end..])
    }

    #[test]
    fn a_step_event_is_byte_for_byte_the_envelope_split_around_a_placeholder() {
        // How it was built before issue #19: the envelope of `{"id": placeholder, "step":
        // null}` split around the placeholder, and `null` replaced by the step.
        let task = TaskId::parse("t-1").expect("task");
        let step = json!({"action": "run \"x\"", "é": "\u{1}", "n": 3.5, "z": {"a": [1, null]}});
        let step_json = step.to_string();
        let (p, s) = crate::events::envelope_around(
            EventType::StepLogged,
            &task,
            "coder",
            json!({"id": STEP_ID_PLACEHOLDER, "step": null}),
            STEP_ID_PLACEHOLDER,
        );
        let s = s.strip_prefix("\",\"step\":null").expect("shape");
        let (prefix, suffix) = step_event(&task, "coder", &step_json).expect("event");
        assert_eq!(untimed(&prefix), untimed(&p));
        assert_eq!(suffix, format!("\",\"step\":{step_json}{s}"));
    }

    #[test]
    fn a_stored_step_is_byte_for_byte_the_object_with_the_server_fields_inserted() {
        let server = [
            ("agent_id", "coder"),
            ("task_id", "t-1"),
            ("timestamp", "2026-12-06T18:00:00.000001Z"),
        ];
        for client in [
            json!({}),
            json!({"action": "work", "agent": "a", "n": 1, "pad": "xxxx"}),
            json!({"a": 1, "agent_id": "spoofed", "b": [true, null], "task": "t", "task_id": 5,
                   "tasks": {"x": "\"\\\n"}, "timestamp": "then", "tz": 1.5, "é": "ü", "\u{1f}": -3}),
            json!({"zzz": {"nested": {"deep": [1, 2, {"k": "v"}]}}}),
            json!({"AGENT": 1, "_": 2, "agent_ic": 3, "agent_id_": 4, "timestamps": 5}),
        ] {
            let Value::Object(map) = client else {
                unreachable!()
            };
            let (json, size) = write_step(&map, &server).expect("step");
            assert_eq!(
                size,
                Value::Object(map.clone()).to_string().len(),
                "{map:?}"
            );
            let mut inserted = map.clone();
            for (k, v) in server {
                inserted.insert(k.into(), json!(v));
            }
            assert_eq!(json, Value::Object(inserted).to_string());
        }
    }

    #[test]
    fn a_step_event_is_the_envelope_of_its_step() {
        let task = TaskId::parse("t-1").expect("task");
        let step = json!({"action": "run \"x\"", "n": 3, "nested": {"a": [1, null]}});
        let (prefix, suffix) = step_event(&task, "coder", &step.to_string()).expect("event");
        let event: Value =
            serde_json::from_str(&format!("{prefix}1700000000000-5{suffix}")).expect("json");
        let (p, s) = crate::events::envelope_around(
            EventType::StepLogged,
            &task,
            "coder",
            json!({"id": STEP_ID_PLACEHOLDER, "step": step}),
            STEP_ID_PLACEHOLDER,
        );
        let mut expected: Value =
            serde_json::from_str(&format!("{p}1700000000000-5{s}")).expect("json");
        expected["timestamp"] = event["timestamp"].clone();
        assert_eq!(event, expected);
        assert_eq!(event["data"]["step"], step);
        assert_eq!(event["data"]["id"], "1700000000000-5");
    }
}
