//! MCP resources: the URIs (`tasks://{id}/state|logs|files`, `workspace://{id}/{path}`,
//! `agents://{id}/status`, `collaboration://{id}`, `inbox://{agent_id}`, and the lists
//! `tasks://list` and `agents://list`), their templates, reading one (the same `Service` methods as
//! `GET /resources/*`), and which resources an event changes (what subscribers are notified
//! of). The lists are read, not subscribed (they change with every action on every task).

use crate::AppState;
use crate::error::ApiError;
use crate::extract::Caller;
use mcp_api::requests::{AgentListQuery, FileReadRequest, ListFilesRequest, TaskListQuery};
use mcp_api::{ErrorCode, Event, EventType};
use mcp_domain::store::hot::SubScope;
use mcp_domain::{AgentId, FilePath, TaskId};
use rmcp::model::{MetaObject, ReadResourceResult, Resource, ResourceContents, ResourceTemplate};
use serde::Serialize;

const JSON: &str = "application/json";

/// A parsed resource URI. Ids and paths are validated and normalised, so
/// [`ResourceUri::key`] is one string per resource whatever spelling the client used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceUri {
    /// `tasks://{id}/state`: the task row.
    TaskState(TaskId),
    /// `tasks://{id}/logs`: the task's newest execution steps.
    TaskLogs(TaskId),
    /// `tasks://{id}/files`: the task's file list.
    TaskFiles(TaskId),
    /// `workspace://{id}/{path}`: one file's content.
    Workspace(TaskId, FilePath),
    /// `agents://{id}/status`: an agent's health and current tasks.
    AgentStatus(AgentId),
    /// `collaboration://{id}`: who is co-working on the task.
    Collaboration(TaskId),
    /// An agent's unread messages (the agent itself, or an admin).
    Inbox(AgentId),
    /// The first page of `GET /resources/tasks`.
    TaskList,
    /// The first page of `GET /resources/agents`.
    AgentList,
}

impl ResourceUri {
    /// Parses a URI; `invalid_argument` (or `invalid_path`) when it names no resource.
    pub fn parse(uri: &str) -> Result<ResourceUri, ApiError> {
        let unknown = || {
            ApiError::new(
                ErrorCode::InvalidArgument,
                format!("'{uri}' is not a resource of this server"),
            )
        };
        let (scheme, rest) = uri.split_once("://").ok_or_else(unknown)?;
        let task = |id: &str| TaskId::parse(&percent_decode(id)?).map_err(ApiError::from);
        match (scheme, rest) {
            ("tasks", "list") => return Ok(ResourceUri::TaskList),
            ("agents", "list") => return Ok(ResourceUri::AgentList),
            _ => {}
        }
        match scheme {
            "tasks" => {
                let (id, what) = rest.split_once('/').ok_or_else(unknown)?;
                match what {
                    "state" => Ok(ResourceUri::TaskState(task(id)?)),
                    "logs" => Ok(ResourceUri::TaskLogs(task(id)?)),
                    "files" => Ok(ResourceUri::TaskFiles(task(id)?)),
                    _ => Err(unknown()),
                }
            }
            "workspace" => {
                let (id, path) = rest.split_once('/').ok_or_else(unknown)?;
                let path = FilePath::parse(&percent_decode(path)?)?;
                Ok(ResourceUri::Workspace(task(id)?, path))
            }
            "agents" => {
                let (id, what) = rest.split_once('/').ok_or_else(unknown)?;
                if what != "status" {
                    return Err(unknown());
                }
                Ok(ResourceUri::AgentStatus(AgentId::parse(&percent_decode(
                    id,
                )?)?))
            }
            "collaboration" => Ok(ResourceUri::Collaboration(task(rest)?)),
            "inbox" => Ok(ResourceUri::Inbox(AgentId::parse(&percent_decode(rest)?)?)),
            _ => Err(unknown()),
        }
    }

    /// The canonical spelling: subscriptions are matched on it.
    pub fn key(&self) -> String {
        match self {
            ResourceUri::TaskState(t) => format!("tasks://{t}/state"),
            ResourceUri::TaskLogs(t) => format!("tasks://{t}/logs"),
            ResourceUri::TaskFiles(t) => format!("tasks://{t}/files"),
            ResourceUri::Workspace(t, p) => format!("workspace://{t}/{p}"),
            ResourceUri::AgentStatus(a) => format!("agents://{a}/status"),
            ResourceUri::Collaboration(t) => format!("collaboration://{t}"),
            ResourceUri::Inbox(a) => format!("inbox://{a}"),
            ResourceUri::TaskList => "tasks://list".to_owned(),
            ResourceUri::AgentList => "agents://list".to_owned(),
        }
    }

    /// The task the resource belongs to (none for an agent's status).
    pub fn task(&self) -> Option<&TaskId> {
        match self {
            ResourceUri::TaskState(t)
            | ResourceUri::TaskLogs(t)
            | ResourceUri::TaskFiles(t)
            | ResourceUri::Workspace(t, _)
            | ResourceUri::Collaboration(t) => Some(t),
            ResourceUri::AgentStatus(_)
            | ResourceUri::Inbox(_)
            | ResourceUri::TaskList
            | ResourceUri::AgentList => None,
        }
    }

    /// The subscription index this resource is kept in; `None` for the lists, which cannot be
    /// subscribed.
    pub fn scope(&self) -> Option<SubScope<'_>> {
        match self {
            ResourceUri::AgentStatus(a) | ResourceUri::Inbox(a) => Some(SubScope::Agent(a)),
            ResourceUri::TaskList | ResourceUri::AgentList => None,
            _ => self.task().map(SubScope::Task),
        }
    }

    /// Reads the resource as `caller`, through the same operations as `GET /resources/*`.
    pub async fn read(
        &self,
        state: &AppState,
        caller: &Caller,
        uri: &str,
    ) -> Result<ReadResourceResult, ApiError> {
        let s = &state.service;
        let actor = match self {
            ResourceUri::AgentStatus(a) => caller.actor(None, Some(a.as_str()))?,
            ResourceUri::Inbox(_) => caller.actor(None, None)?,
            _ => caller.actor(self.task().map(TaskId::as_str), None)?,
        };
        let contents = match self {
            ResourceUri::TaskState(t) => json(uri, &s.task_state(&actor, t.as_str()).await?)?,
            ResourceUri::TaskLogs(t) => {
                json(uri, &s.task_logs(&actor, t.as_str(), None, 100).await?)?
            }
            ResourceUri::TaskFiles(t) => {
                let req = ListFilesRequest {
                    task_id: t.to_string(),
                    prefix: None,
                    agent_id: None,
                };
                json(uri, &s.list_files(&actor, req).await?)?
            }
            ResourceUri::Workspace(t, p) => {
                let req = FileReadRequest {
                    task_id: t.to_string(),
                    path: p.to_string(),
                    agent_id: None,
                };
                let file = s.file_read(&actor, req).await?;
                let mut meta = MetaObject::new();
                meta.0.insert("version".into(), file.version.into());
                meta.0.insert("sha256".into(), file.sha256.clone().into());
                meta.0.insert("size".into(), file.size.into());
                ResourceContents::text(file.content, uri)
                    .with_mime_type(mime_of(p.as_str()))
                    .with_meta(meta)
            }
            ResourceUri::AgentStatus(a) => json(uri, &s.agent_status(&actor, a.as_str()).await?)?,
            ResourceUri::Collaboration(t) => {
                json(uri, &s.collaboration(&actor, t.as_str()).await?)?
            }
            ResourceUri::Inbox(a) => json(uri, &s.inbox_of(&actor, a.as_str()).await?)?,
            ResourceUri::TaskList => {
                json(uri, &s.list_tasks(&actor, TaskListQuery::default()).await?)?
            }
            ResourceUri::AgentList => json(
                uri,
                &s.list_agents(&actor, AgentListQuery::default()).await?,
            )?,
        };
        Ok(ReadResourceResult::new(vec![contents]))
    }
}

/// A JSON resource body.
fn json<T: Serialize>(uri: &str, value: &T) -> Result<ResourceContents, ApiError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| ApiError::from(mcp_domain::DomainError::Internal(e.to_string())))?;
    Ok(ResourceContents::text(text, uri).with_mime_type(JSON))
}

/// A text MIME type from a file name's extension (the content is always UTF-8 text).
fn mime_of(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("json") => "application/json",
        Some("md") => "text/markdown",
        Some("html" | "htm") => "text/html",
        Some("css") => "text/css",
        Some("js" | "mjs") => "text/javascript",
        Some("py") => "text/x-python",
        Some("rs") => "text/x-rust",
        Some("csv") => "text/csv",
        Some("xml") => "application/xml",
        Some("yaml" | "yml") => "application/yaml",
        _ => "text/plain",
    }
}

/// Decodes `%XX` escapes (a URI template expands reserved characters that way); the result
/// must be UTF-8.
fn percent_decode(s: &str) -> Result<String, ApiError> {
    let bad = || {
        ApiError::new(
            ErrorCode::InvalidArgument,
            "the resource URI holds a malformed percent-escape",
        )
    };
    if !s.contains('%') {
        return Ok(s.to_owned());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or_else(bad)?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

/// The resource templates (RFC 6570), one per kind of resource.
pub fn templates() -> Vec<ResourceTemplate> {
    let t = |uri: &str, name: &str, description: &str, mime: &str| {
        ResourceTemplate::new(uri, name)
            .with_description(description)
            .with_mime_type(mime)
    };
    vec![
        t(
            "tasks://{task_id}/state",
            "task-state",
            "The task row: status, assigned agent, complexity, timestamps.",
            JSON,
        ),
        t(
            "tasks://{task_id}/logs",
            "task-logs",
            "The task's newest 100 execution steps, oldest first.",
            JSON,
        ),
        t(
            "tasks://{task_id}/files",
            "task-files",
            "The task's files: path, version, size, sha256, last writer.",
            JSON,
        ),
        t(
            "workspace://{task_id}/{+path}",
            "workspace-file",
            "One file of the task's workspace: its content (version and sha256 in _meta).",
            "text/plain",
        ),
        t(
            "agents://{agent_id}/status",
            "agent-status",
            "An agent's health (active, idle, offline), last activity and current tasks.",
            JSON,
        ),
        t(
            "collaboration://{task_id}",
            "collaboration",
            "Who is co-working on the task: members with join time and last activity.",
            JSON,
        ),
        t(
            "inbox://{agent_id}",
            "inbox",
            "An agent's unread messages, oldest first (yours; an admin may read anyone's). \
             Subscribe to hear when a message arrives.",
            JSON,
        ),
    ]
}

/// The task and agent lists (listed first by `resources/list`).
pub fn list_resources() -> Vec<Resource> {
    vec![
        Resource::new("tasks://list", "tasks")
            .with_description(
                "The tasks you may see, most recently active first (the first 50; \
                 GET /resources/tasks pages and filters).",
            )
            .with_mime_type(JSON),
        Resource::new("agents://list", "agents")
            .with_description(
                "Agents on those tasks, most recently seen first: status, sessions, last action.",
            )
            .with_mime_type(JSON),
    ]
}

/// The concrete resources of one task (listed by `resources/list`).
pub fn task_resources(task: &str) -> Vec<Resource> {
    let r = |uri: String, name: String, description: &str| {
        Resource::new(uri, name)
            .with_description(description)
            .with_mime_type(JSON)
    };
    vec![
        r(
            format!("tasks://{task}/state"),
            format!("{task} state"),
            "The task row.",
        ),
        r(
            format!("tasks://{task}/logs"),
            format!("{task} logs"),
            "The task's newest execution steps.",
        ),
        r(
            format!("tasks://{task}/files"),
            format!("{task} files"),
            "The task's files.",
        ),
        r(
            format!("collaboration://{task}"),
            format!("{task} collaboration"),
            "Who is co-working on the task.",
        ),
    ]
}

/// The canonical keys of the resources an event changes.
pub fn changed_by(event: &Event) -> Vec<String> {
    let task = &event.task_id;
    let path = event.data.get("path").and_then(|p| p.as_str());
    let mut keys = Vec::new();
    match &event.kind {
        EventType::FileWritten | EventType::FileEdited | EventType::FileDeleted => {
            if let Some(path) = path {
                keys.push(format!("workspace://{task}/{path}"));
            }
            keys.push(format!("tasks://{task}/files"));
        }
        EventType::StepLogged => keys.push(format!("tasks://{task}/logs")),
        EventType::AgentJoined | EventType::AgentLeft => {
            keys.push(format!("collaboration://{task}"))
        }
        EventType::TaskCreated | EventType::TaskUpdated => {
            keys.push(format!("tasks://{task}/state"))
        }
        // The recipients' inboxes; a message for everyone is expanded by the notifier (it
        // knows who is on the task).
        EventType::MessageSent => keys.extend(
            message_recipients(event)
                .into_iter()
                .flatten()
                .map(|a| format!("inbox://{a}")),
        ),
        // Leases and refusals change no resource's content; foreign events name none we know.
        EventType::LockAcquired
        | EventType::LockRenewed
        | EventType::LockReleased
        | EventType::WriteRefused
        | EventType::ClaimRefused
        | EventType::Other(_) => {}
    }
    // Any action of an agent moves its last activity.
    if let Some(agent) = &event.agent_id {
        keys.push(format!("agents://{agent}/status"));
    }
    keys
}

/// The recipients of a `message_sent` event: `Some(ids)`, or `None` for everyone on the
/// task (and for any other event: nobody).
pub fn message_recipients(event: &Event) -> Option<Vec<String>> {
    if event.kind != EventType::MessageSent {
        return Some(Vec::new());
    }
    let to: Vec<String> = event
        .data
        .get("to")
        .and_then(|t| t.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if to.iter().any(|a| a == mcp_api::messages::EVERYONE) {
        None
    } else {
        Some(to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: EventType, data: serde_json::Value) -> Event {
        Event {
            id: None,
            kind,
            task_id: "t1".into(),
            agent_id: Some("a1".into()),
            timestamp: chrono::Utc::now(),
            data,
        }
    }

    #[test]
    fn events_name_the_resources_they_change() {
        let changed = |kind, data| changed_by(&event(kind, data));
        assert_eq!(
            changed(
                EventType::FileEdited,
                serde_json::json!({"path": "src/a.py"})
            ),
            [
                "workspace://t1/src/a.py",
                "tasks://t1/files",
                "agents://a1/status"
            ]
        );
        assert_eq!(
            changed(EventType::StepLogged, serde_json::json!({})),
            ["tasks://t1/logs", "agents://a1/status"]
        );
        assert_eq!(
            changed(EventType::AgentJoined, serde_json::json!({})),
            ["collaboration://t1", "agents://a1/status"]
        );
        assert_eq!(
            changed(EventType::TaskUpdated, serde_json::json!({})),
            ["tasks://t1/state", "agents://a1/status"]
        );
        assert_eq!(
            changed(EventType::LockAcquired, serde_json::json!({"path": "x"})),
            ["agents://a1/status"]
        );
        assert_eq!(
            changed(
                EventType::MessageSent,
                serde_json::json!({"to": ["b", "c"]})
            ),
            ["inbox://b", "inbox://c", "agents://a1/status"]
        );
        assert_eq!(
            changed(EventType::MessageSent, serde_json::json!({"to": ["*"]})),
            ["agents://a1/status"]
        );
    }

    #[test]
    fn uris_parse_to_one_canonical_key() {
        let k = |u: &str| ResourceUri::parse(u).map(|r| r.key()).map_err(|e| e.code);
        assert_eq!(
            k("workspace://t1/./src//a.py"),
            Ok("workspace://t1/src/a.py".into())
        );
        assert_eq!(
            k("workspace://t1/my%20file.py"),
            Ok("workspace://t1/my file.py".into())
        );
        assert_eq!(k("tasks://t1/state"), Ok("tasks://t1/state".into()));
        assert_eq!(k("collaboration://t1"), Ok("collaboration://t1".into()));
        assert_eq!(k("agents://a1/status"), Ok("agents://a1/status".into()));
        assert_eq!(k("inbox://a1"), Ok("inbox://a1".into()));
        assert_eq!(k("inbox://bad id"), Err(ErrorCode::InvalidArgument));
        assert_eq!(k("tasks://list"), Ok("tasks://list".into()));
        assert_eq!(k("agents://list"), Ok("agents://list".into()));
        assert_eq!(k("tasks://list/state"), Ok("tasks://list/state".into()));
        assert!(
            ResourceUri::parse("tasks://list")
                .unwrap()
                .scope()
                .is_none()
        );
        assert_eq!(k("workspace://t1/../x"), Err(ErrorCode::InvalidPath));
        assert_eq!(k("tasks://t1/other"), Err(ErrorCode::InvalidArgument));
        assert_eq!(k("tasks://bad id/state"), Err(ErrorCode::InvalidArgument));
        assert_eq!(k("http://x/y"), Err(ErrorCode::InvalidArgument));
        assert_eq!(k("workspace://t1/%zz"), Err(ErrorCode::InvalidArgument));
    }
}
