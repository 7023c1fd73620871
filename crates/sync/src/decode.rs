//! Turning outbox entries into records: each entry is checked on its own before any write,
//! so a malformed one becomes a dead letter instead of failing its batch.
//!
//! Two kinds arrive (see the domain's `log_step` and `emit.lua`): `step` with fields `task`,
//! `sid` (the step's id in `logs:{task}`), `agent`, `step` (a JSON object); and `audit` with
//! `payload`, a JSON object with at least `actor` and `action`.

use mcp_api::StreamId;
use mcp_domain::store::durable::{AuditRecord, DeadLetter, StepRecord};
use mcp_domain::store::hot::{OutboxEntry, ms_to_time};
use serde_json::Value;

/// What one entry becomes.
#[derive(Debug, Clone)]
pub enum Decoded {
    /// A `step` entry: an execution step for `step_logs`.
    Step(StepRecord),
    /// An `audit` entry: an audit record.
    Audit(AuditRecord),
    /// A malformed entry, kept as a dead letter with the reason.
    Dead(DeadLetter),
}

/// The time (ms since the epoch) an outbox entry was added: the `<ms>` of its id
/// `<ms>-<seq>` (on a Redis Cluster `<ms>-<seq>@<slot>`).
pub(crate) fn entry_millis(id: &str) -> Option<u64> {
    id.split_once('-').and_then(|(ms, _)| ms.parse().ok())
}

/// A dead letter for `entry`, with the reason.
pub fn dead_letter(entry: &OutboxEntry, error: impl Into<String>) -> DeadLetter {
    let mut fields: Vec<(&String, &String)> = entry.fields.iter().collect();
    fields.sort();
    let payload: serde_json::Map<String, Value> = fields
        .into_iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    DeadLetter {
        source_id: entry.id.clone(),
        kind: entry.fields.get("kind").cloned(),
        payload: Value::Object(payload).to_string(),
        error: error.into(),
    }
}

/// Checks and converts one entry.
pub fn decode(entry: &OutboxEntry) -> Decoded {
    let result = match entry.fields.get("kind").map(String::as_str) {
        Some("step") => decode_step(entry).map(Decoded::Step),
        Some("audit") => decode_audit(entry).map(Decoded::Audit),
        Some(other) => Err(format!("unknown kind '{other}'")),
        None => Err("no kind".to_owned()),
    };
    result.unwrap_or_else(|e| Decoded::Dead(dead_letter(entry, e)))
}

fn field<'a>(entry: &'a OutboxEntry, name: &str) -> Result<&'a str, String> {
    entry
        .fields
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("missing field '{name}'"))
}

fn decode_step(entry: &OutboxEntry) -> Result<StepRecord, String> {
    let task = field(entry, "task")?;
    let sid = field(entry, "sid")?;
    let step: Value = serde_json::from_str(field(entry, "step")?)
        .map_err(|e| format!("step is not JSON: {e}"))?;
    if !step.is_object() {
        return Err("step is not a JSON object".into());
    }
    StreamId::parse(sid)
        .and_then(|id| {
            StepRecord::logged(
                task,
                id,
                entry.fields.get("agent").map(String::as_str),
                step,
            )
        })
        .ok_or_else(|| format!("sid '{sid}' is not a stream id"))
}

fn decode_audit(entry: &OutboxEntry) -> Result<AuditRecord, String> {
    let payload: Value = serde_json::from_str(field(entry, "payload")?)
        .map_err(|e| format!("payload is not JSON: {e}"))?;
    let fallback = ms_to_time(entry_millis(&entry.id).map_or(0, |ms| ms as i64));
    AuditRecord::from_payload(entry.id.clone(), payload, fallback)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn entry(fields: &[(&str, &str)]) -> OutboxEntry {
        OutboxEntry {
            id: "1700000000000-3".into(),
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>(),
        }
    }

    #[test]
    fn steps_and_audits_decode_and_bad_entries_become_dead_letters() {
        let ok = entry(&[
            ("kind", "step"),
            ("task", "t1"),
            ("sid", "1700000000001-2"),
            ("agent", "a"),
            ("step", r#"{"x":1}"#),
        ]);
        assert!(
            matches!(decode(&ok), Decoded::Step(s) if s.id_ms == 1700000000001 && s.id_seq == 2)
        );
        let audit = entry(&[
            ("kind", "audit"),
            (
                "payload",
                r#"{"actor":"a","action":"claim_file","fence":7,"path":"p"}"#,
            ),
        ]);
        assert!(matches!(decode(&audit), Decoded::Audit(a) if a.fence == Some(7)));
        for bad in [
            entry(&[
                ("kind", "step"),
                ("task", "t1"),
                ("sid", "x"),
                ("step", "{}"),
            ]),
            entry(&[
                ("kind", "step"),
                ("task", "t1"),
                ("sid", "1-1"),
                ("step", "{nope"),
            ]),
            entry(&[("kind", "audit"), ("payload", r#"{"actor":"a"}"#)]),
            entry(&[("kind", "weird")]),
            entry(&[]),
        ] {
            assert!(matches!(decode(&bad), Decoded::Dead(_)), "{bad:?}");
        }
    }
}
