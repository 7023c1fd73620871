//! `logs tail`, `logs follow` and `watch`: a task's log and its live events.
//!
//! `logs follow` opens the event subscription first and reads the recent steps second, so
//! no step falls between the two; steps printed from the tail are skipped when their event
//! arrives. Both streams survive disconnects (the client's subscription resumes by itself),
//! and say on stderr what the connection does ([`crate::stream_observer`]).

use crate::cli::LogsCommand;
use crate::{Activity, EXIT_OK, Out, no_such_task, stream_observer, task_exists};
use mcp_agent_client::{ClientError, Event, GatewayClient, LogsQuery, SubscribeOptions};
use mcp_api::responses::TaskLogs;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::io::Write;

/// One step as a line: `<id> <time> <agent> <action> <rest>`.
fn step_line(id: &str, step: &Value) -> String {
    let s = |k: &str| {
        step.get(k)
            .and_then(Value::as_str)
            .unwrap_or("-")
            .to_owned()
    };
    let mut rest = step.as_object().cloned().unwrap_or_default();
    for k in ["timestamp", "agent_id", "task_id", "action"] {
        rest.remove(k);
    }
    format!(
        "{id}  {}  {}  {}  {}",
        s("timestamp"),
        s("agent_id"),
        s("action"),
        truncate(&Value::Object(rest).to_string(), 300)
    )
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push('…');
        t
    }
}

fn print_line(line: impl std::fmt::Display) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

/// Says on stderr that a followed task does not exist yet (the command waits for it).
async fn note_if_unknown(c: &GatewayClient, task: &str, out: Out) -> Result<(), ClientError> {
    if !task_exists(c, task).await? {
        out.progress(format!(
            "mcpctl: {task} has no task row, files or log steps yet; waiting for its first event"
        ));
    }
    Ok(())
}

/// A task's newest `limit` steps.
async fn newest_steps(
    c: &GatewayClient,
    task: &str,
    limit: usize,
) -> Result<TaskLogs, ClientError> {
    let query = LogsQuery {
        before: None,
        limit: Some(limit),
    };
    c.task_logs(task, &query).await
}

/// `logs tail` (the newest steps) and `logs follow` (then new steps as they are logged).
pub async fn logs(
    c: &GatewayClient,
    cmd: LogsCommand,
    out: Out,
    activity: &Activity,
) -> Result<u8, ClientError> {
    match cmd {
        LogsCommand::Tail { task, limit } => {
            let logs = newest_steps(c, &task, limit).await?;
            if logs.steps.is_empty() && !task_exists(c, &task).await? {
                return Err(no_such_task(&task));
            }
            if out.json {
                out.emit(
                    &serde_json::to_value(&logs).unwrap_or(Value::Null),
                    String::new,
                );
            } else {
                for s in &logs.steps {
                    print_line(step_line(&s.id, &s.step));
                }
            }
            Ok(EXIT_OK)
        }
        LogsCommand::Follow { task, limit, count } => {
            let url = c.base_url().to_string();
            let mut sub = c.subscribe(
                &task,
                SubscribeOptions {
                    types: vec!["step_logged".into()],
                    on_status: Some(stream_observer(&task, &url, out, activity)),
                    ..SubscribeOptions::default()
                },
            );
            sub.connect_now().await?;
            let logs = newest_steps(c, &task, limit).await?;
            let mut seen = HashSet::new();
            for s in &logs.steps {
                seen.insert(s.id.clone());
                emit_step(&s.id, &s.step, out);
            }
            if logs.steps.is_empty() {
                note_if_unknown(c, &task, out).await?;
            }
            out.progress(format!("following the log of {task} (Ctrl-C to stop)"));
            let mut printed = 0u64;
            while count.is_none_or(|n| printed < n) {
                let e = sub.next().await?;
                let id = e.data.get("id").and_then(Value::as_str).unwrap_or_default();
                if !seen.insert(id.to_owned()) {
                    continue;
                }
                let step = e.data.get("step").cloned().unwrap_or(Value::Null);
                emit_step(id, &step, out);
                printed += 1;
            }
            Ok(EXIT_OK)
        }
    }
}

fn emit_step(id: &str, step: &Value, out: Out) {
    if out.json {
        print_line(json!({"id": id, "step": step}));
    } else {
        print_line(step_line(id, step));
    }
}

/// One event as a line: `<time> <type> <agent> <summary>`.
fn event_line(e: &Event) -> String {
    let summary = match e.data.get("path").and_then(Value::as_str) {
        Some(p) => {
            let mut s = p.to_owned();
            if let Some(v) = e.data.get("version") {
                s.push_str(&format!(" v{v}"));
            }
            s
        }
        None => truncate(&e.data.to_string(), 200),
    };
    format!(
        "{}  {:<14} {:<16} {}",
        e.timestamp.format("%Y-%m-%d %H:%M:%S%.3f"),
        e.kind.as_str(),
        e.agent_id.as_deref().unwrap_or("-"),
        summary
    )
}

/// `watch`: prints `task`'s live events (only `types`, if any; after `since` first) until
/// interrupted, `count` events or the deadline.
pub async fn watch(
    c: &GatewayClient,
    task: &str,
    types: Vec<String>,
    since: Option<String>,
    count: Option<u64>,
    out: Out,
    activity: &Activity,
) -> Result<u8, ClientError> {
    let url = c.base_url().to_string();
    let mut sub = c.subscribe(
        task,
        SubscribeOptions {
            since,
            types,
            on_status: Some(stream_observer(task, &url, out, activity)),
            ..SubscribeOptions::default()
        },
    );
    sub.connect_now().await?;
    note_if_unknown(c, task, out).await?;
    out.progress(format!("watching {task} (Ctrl-C to stop)"));
    let mut printed = 0u64;
    while count.is_none_or(|n| printed < n) {
        let e = sub.next().await?;
        if out.json {
            print_line(serde_json::to_value(&e).unwrap_or(Value::Null));
        } else {
            print_line(event_line(&e));
        }
        printed += 1;
    }
    Ok(EXIT_OK)
}
