//! `task list`, `agents`, `audit`: finding tasks and agents, and who did what. One page per
//! call (the gateway's order: most recent first); text is a table, `--json` the answer as it
//! is. When more pages exist, stderr names the cursor (or id) that fetches the next one.

use crate::{EXIT_OK, Out};
use chrono::{DateTime, Utc};
use mcp_agent_client::{ClientError, ErrorCode, GatewayClient};
use mcp_api::requests::{AgentListQuery, AuditQuery, TaskListQuery};

/// A time for a table: UTC, to the second.
fn when(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "-".into(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
}

fn or_dash(v: Option<&str>) -> &str {
    v.filter(|s| !s.is_empty()).unwrap_or("-")
}

/// Shortens `s` to `max` characters (with an ellipsis).
fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

fn json<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

/// `task list`: one page of tasks, a table (or the page as JSON) and the next cursor.
pub async fn tasks(c: &GatewayClient, q: TaskListQuery, out: Out) -> Result<u8, ClientError> {
    let page = c.list_tasks(&q).await?;
    out.emit(&json(&page), || {
        let mut s = format!(
            "{:<24} {:<12} {:<28} {:>5} {:>6}  {:<19}  {}",
            "TASK", "STATUS", "TITLE", "FILES", "STEPS", "LAST ACTIVITY (UTC)", "AGENTS"
        );
        for t in &page.tasks {
            s.push_str(&format!(
                "\n{:<24} {:<12} {:<28} {:>5} {:>6}  {:<19}  {}",
                cut(&t.task_id, 24),
                cut(or_dash(t.status.as_deref()), 12),
                cut(or_dash(t.title.as_deref()), 28),
                t.file_count,
                t.step_count,
                when(Some(t.last_activity)),
                if t.agents.is_empty() {
                    "-".to_owned()
                } else {
                    t.agents.join(",")
                }
            ));
        }
        s
    });
    out.progress(match &page.next_cursor {
        Some(cur) => format!(
            "{} of {} task(s); next page: --cursor {cur}",
            page.tasks.len(),
            page.total
        ),
        None => format!("{} of {} task(s)", page.tasks.len(), page.total),
    });
    Ok(EXIT_OK)
}

/// `agents`: one page of agents, a table (or the page as JSON) and the next cursor.
pub async fn agents(c: &GatewayClient, q: AgentListQuery, out: Out) -> Result<u8, ClientError> {
    let page = c.list_agents(&q).await?;
    out.emit(&json(&page), || {
        let mut s = format!(
            "{:<24} {:<8} {:<19}  {:<14} {:<20} {}",
            "AGENT", "STATUS", "LAST SEEN (UTC)", "LAST ACTION", "LAST TASK", "TASKS"
        );
        for a in &page.agents {
            s.push_str(&format!(
                "\n{:<24} {:<8} {:<19}  {:<14} {:<20} {}",
                cut(&a.agent_id, 24),
                a.status,
                when(a.last_seen),
                cut(or_dash(a.last_action.as_deref()), 14),
                cut(or_dash(a.last_task.as_deref()), 20),
                if a.tasks.is_empty() {
                    "-".to_owned()
                } else {
                    a.tasks.join(",")
                }
            ));
        }
        s
    });
    out.progress(match &page.next_cursor {
        Some(cur) => format!(
            "{} of {} agent(s); next page: --cursor {cur}",
            page.agents.len(),
            page.total
        ),
        None => format!("{} of {} agent(s)", page.agents.len(), page.total),
    });
    Ok(EXIT_OK)
}

/// The audit query from the command line (`since` as RFC 3339).
pub fn audit_query(
    task: Option<String>,
    agent: Option<String>,
    action: Option<String>,
    since: Option<String>,
    before_id: Option<i64>,
    limit: Option<i64>,
) -> Result<AuditQuery, ClientError> {
    let since = match since {
        None => None,
        Some(s) => Some(
            DateTime::parse_from_rfc3339(&s)
                .map_err(|e| {
                    ClientError::refused(
                        ErrorCode::InvalidArgument,
                        format!("--since {s:?} is not an RFC 3339 time: {e}"),
                    )
                })?
                .with_timezone(&Utc),
        ),
    };
    Ok(AuditQuery {
        task,
        agent,
        action,
        since,
        before_id,
        limit,
    })
}

/// `audit`: one page of audit records, newest first, a table (or the page as JSON).
pub async fn audit(c: &GatewayClient, q: AuditQuery, out: Out) -> Result<u8, ClientError> {
    let limit = q.limit.unwrap_or(100);
    let log = c.audit(&q).await?;
    out.emit(&json(&log), || {
        let mut s = format!(
            "{:>7}  {:<19}  {:<16} {:<18} {:<16} {:<24} {:>7} {:>6}  {}",
            "ID", "AT (UTC)", "ACTOR", "ACTION", "TASK", "PATH", "VERSION", "FENCE", "REQUEST"
        );
        for e in &log.entries {
            s.push_str(&format!(
                "\n{:>7}  {:<19}  {:<16} {:<18} {:<16} {:<24} {:>7} {:>6}  {}",
                e.id,
                when(Some(e.at)),
                cut(&e.actor, 16),
                cut(&e.action, 18),
                cut(or_dash(e.task_id.as_deref()), 16),
                cut(or_dash(e.path.as_deref()), 24),
                e.version.map_or_else(|| "-".into(), |v| v.to_string()),
                e.fence.map_or_else(|| "-".into(), |v| v.to_string()),
                or_dash(e.request_id.as_deref()),
            ));
        }
        s
    });
    match log.entries.last() {
        Some(last) if log.entries.len() as i64 >= limit => out.progress(format!(
            "{} record(s); older ones: --before-id {}",
            log.entries.len(),
            last.id
        )),
        _ => out.progress(format!("{} record(s)", log.entries.len())),
    }
    Ok(EXIT_OK)
}
