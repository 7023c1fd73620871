//! The task and agent lists (`GET /resources/tasks`, `GET /resources/agents`): what a person or
//! an orchestrator reads to find work in progress without knowing ids in advance. Pages come
//! from the durable activity indexes (`task_activity`, `agent_activity`, kept by triggers),
//! most recent first, with a keyset cursor; live lease counts and presence come from the hot
//! store.

use super::Service;
use super::locks::MAX_LISTED_LEASES;
use crate::actor::Actor;
use crate::error::{DomainError, Result};
use crate::ids::{AgentId, TaskId};
use crate::store::durable::{AgentListFilter, TaskListFilter};
use chrono::{DateTime, SecondsFormat, Utc};
use mcp_api::requests::{AgentListQuery, TaskListQuery};
use mcp_api::responses::{AgentList, AgentSummary, TaskList};

/// Most entries one list page returns.
pub const MAX_LIST_PAGE: i64 = 200;
/// Page size when the query names none.
const DEFAULT_LIST_PAGE: i64 = 50;
/// Longest search text.
const MAX_SEARCH_CHARS: usize = 200;

impl Service {
    /// A page of the tasks the actor may see, most recently active first.
    pub async fn list_tasks(&self, actor: &Actor, q: TaskListQuery) -> Result<TaskList> {
        let limit = page_size(q.limit)?;
        let text = search_text(q.q.as_deref())?;
        let agent = q.agent.as_deref().map(AgentId::parse).transpose()?;
        let after = q.cursor.as_deref().map(parse_cursor).transpose()?;
        let status = q.status.as_deref().filter(|s| !s.is_empty());
        let (mut tasks, total) = self
            .durable
            .list_tasks(&TaskListFilter {
                tasks_in: actor.scope(),
                text,
                status,
                agent: agent.as_ref().map(AgentId::as_str),
                after: after.as_ref().map(|(at, id)| (*at, id.as_str())),
                limit: limit + 1,
            })
            .await?;
        let next_cursor = next_page(&mut tasks, limit, |t| cursor(t.last_activity, &t.task_id));
        for t in &mut tasks {
            let task = TaskId::parse(&t.task_id)?;
            let page = self.hot.leases(&task, MAX_LISTED_LEASES).await?;
            t.lease_count = page.leases.len() as i64;
        }
        Ok(TaskList {
            success: true,
            tasks,
            total,
            next_cursor,
        })
    }

    /// A page of the agents on tasks the actor may see, most recently seen first, with their
    /// status as `agents://{id}/status` reports it.
    pub async fn list_agents(&self, actor: &Actor, q: AgentListQuery) -> Result<AgentList> {
        let limit = page_size(q.limit)?;
        let text = search_text(q.q.as_deref())?;
        let task = q.task.as_deref().map(|t| actor.task(t)).transpose()?;
        let after = q.cursor.as_deref().map(parse_cursor).transpose()?;
        let (mut rows, total) = self
            .durable
            .list_agents(&AgentListFilter {
                tasks_in: actor.scope(),
                text,
                task: task.as_ref().map(TaskId::as_str),
                after: after.as_ref().map(|(at, id)| (*at, id.as_str())),
                limit: limit + 1,
            })
            .await?;
        let next_cursor = next_page(&mut rows, limit, |a| cursor(a.last_seen, &a.agent_id));
        let mut agents = Vec::with_capacity(rows.len());
        for row in rows {
            // The hot presence is newer than the durable record (steps reach Postgres a
            // sync interval later).
            // (An audit actor that is not an agent id, e.g. written by an operator, has none.)
            let hot_seen = match AgentId::parse(&row.agent_id) {
                Ok(agent) => self.hot.presence(&agent).await?.last_seen,
                Err(_) => None,
            };
            let last_seen = hot_seen.map_or(row.last_seen, |h| h.max(row.last_seen));
            let mut tasks = row.tasks;
            tasks.retain(|t| actor.may_access(t));
            agents.push(AgentSummary {
                status: self.presence_status(Some(last_seen)).to_owned(),
                agent_id: row.agent_id,
                last_seen: Some(last_seen),
                last_action: Some(row.last_action),
                last_task: row.last_task.filter(|t| actor.may_access(t)),
                tasks,
            });
        }
        Ok(AgentList {
            success: true,
            agents,
            total,
            next_cursor,
        })
    }
}

fn page_size(limit: Option<i64>) -> Result<i64> {
    let limit = limit.unwrap_or(DEFAULT_LIST_PAGE);
    if !(1..=MAX_LIST_PAGE).contains(&limit) {
        return Err(DomainError::InvalidArgument(format!(
            "limit must be between 1 and {MAX_LIST_PAGE}"
        )));
    }
    Ok(limit)
}

fn search_text(q: Option<&str>) -> Result<Option<&str>> {
    let q = q.map(str::trim).filter(|q| !q.is_empty());
    if q.is_some_and(|q| q.chars().count() > MAX_SEARCH_CHARS) {
        return Err(DomainError::InvalidArgument(format!(
            "q must be at most {MAX_SEARCH_CHARS} characters"
        )));
    }
    Ok(q)
}

/// Keeps the first `limit` rows (the query asked for one more) and names the cursor of the
/// next page when there is one.
fn next_page<T>(rows: &mut Vec<T>, limit: i64, cursor: impl Fn(&T) -> String) -> Option<String> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    if rows.len() <= limit {
        return None;
    }
    rows.truncate(limit);
    rows.last().map(cursor)
}

/// A list cursor: the last entry's time and id (`2026-12-06T03:00:00.123456Z|t1`).
fn cursor(at: DateTime<Utc>, id: &str) -> String {
    format!("{}|{id}", at.to_rfc3339_opts(SecondsFormat::Micros, true))
}

fn parse_cursor(c: &str) -> Result<(DateTime<Utc>, String)> {
    let bad = || DomainError::InvalidArgument("cursor is not one this list returned".into());
    let (at, id) = c.split_once('|').ok_or_else(bad)?;
    let at = DateTime::parse_from_rfc3339(at).map_err(|_| bad())?;
    if id.is_empty() {
        return Err(bad());
    }
    Ok((at.with_timezone(&Utc), id.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let at = DateTime::parse_from_rfc3339("2026-12-06T03:00:00.123456Z")
            .unwrap()
            .with_timezone(&Utc);
        let c = cursor(at, "task|with|bars");
        assert_eq!(c, "2026-12-06T03:00:00.123456Z|task|with|bars");
        assert_eq!(parse_cursor(&c).unwrap(), (at, "task|with|bars".to_owned()));
        for bad in ["", "x", "2026-12-06T03:00:00Z|", "yesterday|t1"] {
            assert!(parse_cursor(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_page_keeps_its_limit_and_names_the_next() {
        let mut rows = vec![1, 2, 3];
        assert_eq!(next_page(&mut rows, 2, |r| r.to_string()), Some("2".into()));
        assert_eq!(rows, [1, 2]);
        let mut rows = vec![1, 2];
        assert_eq!(next_page(&mut rows, 2, |r| r.to_string()), None);
    }
}
