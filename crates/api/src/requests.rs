//! Request bodies of `POST /tools/*` and the admin API.
//!
//! Field names and defaults are the original gateway's; additions are optional so that an
//! agent written for the original keeps working. Unknown fields are ignored (serde's default).
//! `agent_id` is accepted everywhere: with authentication off it names the acting agent;
//! with authentication on it must match the token's agent.

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::messages::{
    AckMessageRequest, Importance, ReadMessagesRequest, Recipients, SendMessageRequest,
};

/// `POST /tools/file_read`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FileReadRequest {
    /// The task whose namespace holds the file.
    pub task_id: String,
    /// Path relative to the task's namespace.
    pub path: String,
    /// The acting agent. With authentication off it names the actor (default: the task id);
    /// with authentication on it must match the token's agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
}

/// `POST /tools/file_write`: create or replace a file.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FileWriteRequest {
    /// The task acted on (1–128 characters of `[A-Za-z0-9._:@-]`).
    pub task_id: String,
    /// File path relative to the task's namespace, normalised (`./a.py` is `a.py`); `..`,
    /// absolute paths, backslashes and control characters are refused (`invalid_path`).
    pub path: String,
    /// The full new content (UTF-8 text).
    pub content: String,
    /// Optimistic concurrency: write only if the file is at this version (0 = create only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_version: Option<i64>,
    /// The fencing token of the caller's live lease on this path (from `claim_file`). A lease
    /// holder's writes carry it by themselves; a presented fence that is not the caller's live
    /// lease's (expired, released, another's, forged) is refused (`stale_fence`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fence: Option<i64>,
    /// The acting agent. With authentication off it names the actor (default: the task id);
    /// with authentication on it must match the token's agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
}

/// `POST /tools/file_edit`: replace `old_string` by `new_string`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FileEditRequest {
    /// The task acted on (1–128 characters of `[A-Za-z0-9._:@-]`).
    pub task_id: String,
    /// File path relative to the task's namespace, normalised (`./a.py` is `a.py`); `..`,
    /// absolute paths, backslashes and control characters are refused (`invalid_path`).
    pub path: String,
    /// Text to find; must occur exactly once unless `replace_all`.
    #[serde(alias = "old_content")]
    pub old_string: String,
    /// Replacement text.
    #[serde(alias = "new_content")]
    pub new_string: String,
    /// Replace every occurrence instead of requiring exactly one.
    #[serde(default)]
    pub replace_all: bool,
    /// Optimistic concurrency, as for `file_write`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_version: Option<i64>,
    /// The fencing token of the caller's live lease on this path (from `claim_file`). A lease
    /// holder's writes carry it by themselves; a presented fence that is not the caller's live
    /// lease's (expired, released, another's, forged) is refused (`stale_fence`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fence: Option<i64>,
    /// The acting agent. With authentication off it names the actor (default: the task id);
    /// with authentication on it must match the token's agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
}

/// `POST /tools/delete_file`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DeleteFileRequest {
    /// The task acted on (1–128 characters of `[A-Za-z0-9._:@-]`).
    pub task_id: String,
    /// File path relative to the task's namespace, normalised (`./a.py` is `a.py`); `..`,
    /// absolute paths, backslashes and control characters are refused (`invalid_path`).
    pub path: String,
    /// Optimistic concurrency: act only if the file is at this version (`0`: only if it does
    /// not exist); otherwise `version_conflict`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_version: Option<i64>,
    /// The fencing token of the caller's live lease on this path (from `claim_file`). A lease
    /// holder's writes carry it by themselves; a presented fence that is not the caller's live
    /// lease's (expired, released, another's, forged) is refused (`stale_fence`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fence: Option<i64>,
    /// The acting agent. With authentication off it names the actor (default: the task id);
    /// with authentication on it must match the token's agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
}

/// `POST /tools/list_files`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ListFilesRequest {
    /// The task acted on (1–128 characters of `[A-Za-z0-9._:@-]`).
    pub task_id: String,
    /// Only paths under this directory prefix (normalised like a path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// The acting agent. With authentication off it names the actor (default: the task id);
    /// with authentication on it must match the token's agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
}

/// `POST /tools/file_history`: a file's revisions, newest first.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FileHistoryRequest {
    /// The task whose namespace holds the file.
    pub task_id: String,
    /// Path relative to the task's namespace (normalised like every path). A deleted file
    /// keeps its history.
    pub path: String,
    /// Only revisions older than this version (paging: the previous answer's `next_before`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_version: Option<i64>,
    /// At most this many revisions, 1–500 (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    /// The acting agent. With authentication off it names the actor (default: the task id);
    /// with authentication on it must match the token's agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
}

/// `POST /tools/file_revision`: one revision's full content, and optionally its diff from
/// another revision.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FileRevisionRequest {
    /// The task whose namespace holds the file.
    pub task_id: String,
    /// Path relative to the task's namespace (normalised like every path).
    pub path: String,
    /// The version to read (1 = the first write; see `file_history`).
    pub version: i64,
    /// Also answer the unified diff from this version to `version` (a deleted version
    /// counts as empty content).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff_from: Option<i64>,
    /// The acting agent. With authentication off it names the actor (default: the task id);
    /// with authentication on it must match the token's agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
}

/// `POST /tools/list_leases`: the task's live leases.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ListLeasesRequest {
    /// The task whose leases to list.
    pub task_id: String,
    /// The acting agent. With authentication off it names the actor (default: the task id);
    /// with authentication on it must match the token's agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
}

/// `POST /tools/claim_file`: take (or refresh) the lease on a path.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ClaimFileRequest {
    /// The task acted on (1–128 characters of `[A-Za-z0-9._:@-]`).
    pub task_id: String,
    /// File path relative to the task's namespace, normalised (`./a.py` is `a.py`); `..`,
    /// absolute paths, backslashes and control characters are refused (`invalid_path`).
    pub path: String,
    /// Lease length in seconds, 1–3600; the gateway's `FILE_LOCK_TIMEOUT` (60) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_sec: Option<i64>,
    /// Seconds to wait, 0–60, when another agent holds the path (or a conflicting directory
    /// lease): the caller joins the path's FIFO queue and is granted the lease as soon as it
    /// is released or expires and the waiters before it were served; `locked` (with the
    /// holder and the caller's `queue_position`) only when the wait runs out. 0 or absent:
    /// answer at once. A claim that does not wait is refused while others wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_sec: Option<i64>,
    /// Lease a directory: `path` names a directory (`src/api/`; the trailing `/` is optional)
    /// and the lease covers everything beneath it. It conflicts with other agents' leases
    /// beneath it and above it, and refuses their writes beneath it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recursive: bool,
    /// The acting agent. With authentication off it names the actor (default: the task id);
    /// with authentication on it must match the token's agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
}

/// `POST /tools/renew_file`: extend a lease the caller holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RenewFileRequest {
    /// The task acted on (1–128 characters of `[A-Za-z0-9._:@-]`).
    pub task_id: String,
    /// File path relative to the task's namespace, normalised (`./a.py` is `a.py`); `..`,
    /// absolute paths, backslashes and control characters are refused (`invalid_path`).
    pub path: String,
    /// New lease length in seconds, 1–3600; when absent the lease keeps its own length (that
    /// of its claim or last renewal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_sec: Option<i64>,
    /// The lease is a directory lease (`claim_file` with `recursive`): `path` names the
    /// directory.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recursive: bool,
    /// The acting agent. With authentication off it names the actor (default: the task id);
    /// with authentication on it must match the token's agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
}

/// `POST /tools/release_file`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReleaseFileRequest {
    /// The task acted on (1–128 characters of `[A-Za-z0-9._:@-]`).
    pub task_id: String,
    /// File path relative to the task's namespace, normalised (`./a.py` is `a.py`); `..`,
    /// absolute paths, backslashes and control characters are refused (`invalid_path`).
    pub path: String,
    /// Admin only: release whoever holds it.
    #[serde(default)]
    pub force: bool,
    /// The lease is a directory lease (`claim_file` with `recursive`): `path` names the
    /// directory.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recursive: bool,
    /// The acting agent. With authentication off it names the actor (default: the task id);
    /// with authentication on it must match the token's agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
}

/// `POST /tools/log_step`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LogStepRequest {
    /// The task acted on (1–128 characters of `[A-Za-z0-9._:@-]`).
    pub task_id: String,
    /// A JSON object (≤ 64 KiB). `timestamp` and `task_id` are set by the server.
    #[schemars(with = "serde_json::Map<String, Value>")]
    pub step: Value,
    /// The acting agent. With authentication off it names the actor (default: the task id);
    /// with authentication on it must match the token's agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
}

/// `POST /tools/subscribe_logs`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SubscribeLogsRequest {
    /// The task acted on (1–128 characters of `[A-Za-z0-9._:@-]`).
    pub task_id: String,
    /// The acting agent. With authentication off it names the actor (default: the task id);
    /// with authentication on it must match the token's agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
}

/// `POST /tools/join_collaboration` (alias `join_collab`) and `leave_collaboration`
/// (alias `leave_collab`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CollaborationRequest {
    /// The task acted on (1–128 characters of `[A-Za-z0-9._:@-]`).
    pub task_id: String,
    /// The joining agent; required by the original, optional here when a token names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
}

/// `POST /admin/tasks`: create a task (for deployments without an orchestrator).
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CreateTaskRequest {
    /// The task id; generated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// A short title.
    #[serde(default)]
    pub title: String,
    /// A longer description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Defaults to `"pending"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The agent the task is assigned to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assigned_agent_id: Option<String>,
    /// An estimate of the task's complexity (any scale the team uses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complexity: Option<f64>,
}

/// `PATCH /admin/tasks/{id}`: change some fields of a task. Absent fields are kept;
/// `null` clears a nullable field.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct UpdateTaskRequest {
    /// A new title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// A new description; `null` clears it.
    #[serde(
        default,
        with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<String>")]
    pub description: Option<Option<String>>,
    /// A new status (e.g. `in_progress`, `done`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The agent to assign; `null` unassigns.
    #[serde(
        default,
        with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<String>")]
    pub assigned_agent_id: Option<Option<String>>,
    /// A new complexity estimate; `null` clears it.
    #[serde(
        default,
        with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<f64>")]
    pub complexity: Option<Option<f64>>,
}

/// `GET /admin/audit` query: every filter optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AuditQuery {
    /// Only records of this task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// Only records whose actor is this agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Only this action (`file_write`, `claim_file`, `task_create`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Only records at or after this time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Only records with an id below this one (paging backwards).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_id: Option<i64>,
    /// Page size, 1–1000 (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
}

/// `GET /resources/tasks` query: every filter optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TaskListQuery {
    /// Only tasks whose id or title contains this text (case-insensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
    /// Only tasks with this status (`pending`, `in_progress`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Only tasks assigned to this agent or with it in their collaboration session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Page size, 1–200 (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// `GET /resources/agents` query: every filter optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AgentListQuery {
    /// Only agents whose id contains this text (case-insensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
    /// Only agents on this task (a member of its session, or last acting on it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// Page size, 1–200 (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

// ---- constructors: the required fields; the optional ones by struct update
// (`FileWriteRequest { expected_version: Some(3), ..FileWriteRequest::new("t", "a.py", "x") }`)
// or `with_agent`.

/// Declares each request's `new` (its required fields, each taking anything that converts;
/// the rest default) and `with_agent`.
macro_rules! constructors {
    ($($t:ident { $($f:ident: $ty:ty),+ $(,)? })*) => {$(
        impl $t {
            #[doc = concat!(
                "A request with its required fields (", stringify!($($f),+), "); the rest default."
            )]
            pub fn new($($f: impl Into<$ty>),+) -> $t {
                $t {
                    $($f: $f.into(),)+
                    ..Default::default()
                }
            }

            /// Names the acting agent.
            pub fn with_agent(mut self, agent_id: impl Into<String>) -> $t {
                self.agent_id = Some(agent_id.into());
                self
            }
        }
    )*};
}

constructors! {
    FileReadRequest { task_id: String, path: String }
    FileWriteRequest { task_id: String, path: String, content: String }
    FileEditRequest { task_id: String, path: String, old_string: String, new_string: String }
    DeleteFileRequest { task_id: String, path: String }
    ListFilesRequest { task_id: String }
    ClaimFileRequest { task_id: String, path: String }
    RenewFileRequest { task_id: String, path: String }
    FileHistoryRequest { task_id: String, path: String }
    FileRevisionRequest { task_id: String, path: String, version: i64 }
    ListLeasesRequest { task_id: String }
    ReleaseFileRequest { task_id: String, path: String }
    LogStepRequest { task_id: String, step: Value }
    SubscribeLogsRequest { task_id: String }
    CollaborationRequest { task_id: String }
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
mod double_option {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn deserialize<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
    where
        T: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Option::<T>::deserialize(d).map(Some)
    }

    pub(super) fn serialize<T: Serialize, S: Serializer>(
        v: &Option<Option<T>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(inner) => inner.serialize(s),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_accepts_the_agents_aliases() {
        let r: FileEditRequest = serde_json::from_value(serde_json::json!({
            "task_id": "t", "path": "a.py", "old_content": "x", "new_content": "y"
        }))
        .unwrap();
        assert_eq!((r.old_string.as_str(), r.new_string.as_str()), ("x", "y"));
        assert!(!r.replace_all);
    }

    #[test]
    fn constructors_fill_the_required_fields() {
        let w = FileWriteRequest {
            expected_version: Some(0),
            ..FileWriteRequest::new("t", "a.py", "x")
        }
        .with_agent("coder");
        assert_eq!((w.task_id.as_str(), w.path.as_str()), ("t", "a.py"));
        assert_eq!(
            (w.expected_version, w.agent_id.as_deref()),
            (Some(0), Some("coder"))
        );
        let s = LogStepRequest::new("t", serde_json::json!({"action": "x"}));
        assert_eq!(s.step["action"], "x");
    }

    #[test]
    fn claim_timeout_is_optional() {
        let r: ClaimFileRequest =
            serde_json::from_value(serde_json::json!({"task_id": "t", "path": "a"})).unwrap();
        assert_eq!(r.timeout_sec, None);
    }

    #[test]
    fn update_distinguishes_null_from_absent() {
        let r: UpdateTaskRequest =
            serde_json::from_value(serde_json::json!({"assigned_agent_id": null})).unwrap();
        assert_eq!(r.assigned_agent_id, Some(None));
        assert_eq!(r.description, None);
    }
}
