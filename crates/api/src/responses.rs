//! Success bodies. Each is a superset of the original gateway's body for the same route:
//! the original's fields keep their names and types, ours are added beside them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::messages::{AckMessageResponse, Message, ReadMessagesResponse, SendMessageResponse};

/// `file_read`: the original's `{success, task_id, path, content}` plus version and digest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FileReadResponse {
    /// Always `true` on a success answer (errors are HTTP errors or MCP tool errors).
    pub success: bool,
    /// The task acted on.
    pub task_id: String,
    /// The normalised path.
    pub path: String,
    /// The file content (UTF-8 text).
    pub content: String,
    /// Monotonic per file, starting at 1.
    pub version: i64,
    /// Hex SHA-256 of the content's UTF-8 bytes.
    pub sha256: String,
    /// Size in bytes.
    pub size: i64,
}

/// `file_write`: the original's `{success, task_id, path, bytes}` plus the new version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FileWriteResponse {
    /// Always `true` on a success answer (errors are HTTP errors or MCP tool errors).
    pub success: bool,
    /// The task acted on.
    pub task_id: String,
    /// The normalised path.
    pub path: String,
    /// Bytes written.
    pub bytes: i64,
    /// The file's version: 1 at creation, +1 on every write, edit and delete.
    pub version: i64,
    /// Hex SHA-256 of the content's UTF-8 bytes.
    pub sha256: String,
}

/// `file_edit`: the new version and the unified diff of the change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FileEditResponse {
    /// Always `true` on a success answer (errors are HTTP errors or MCP tool errors).
    pub success: bool,
    /// The task acted on.
    pub task_id: String,
    /// The normalised path.
    pub path: String,
    /// The file's version: 1 at creation, +1 on every write, edit and delete.
    pub version: i64,
    /// Hex SHA-256 of the content's UTF-8 bytes.
    pub sha256: String,
    /// Size in bytes after the edit.
    pub bytes: i64,
    /// How many occurrences were replaced.
    pub replacements: i64,
    /// Unified diff from the previous version.
    pub diff: String,
}

/// `delete_file`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DeleteFileResponse {
    /// Always `true` on a success answer (errors are HTTP errors or MCP tool errors).
    pub success: bool,
    /// The task acted on.
    pub task_id: String,
    /// The normalised path.
    pub path: String,
    /// Always `true`: the file is now a tombstone.
    pub deleted: bool,
    /// The version of the deletion (the file's last version + 1).
    pub version: i64,
}

/// One entry of a task's file listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FileInfo {
    /// The normalised path.
    pub path: String,
    /// The file's version: 1 at creation, +1 on every write, edit and delete.
    pub version: i64,
    /// Size of the content in bytes.
    pub size: i64,
    /// Hex SHA-256 of the content's UTF-8 bytes.
    pub sha256: String,
    /// The agent of the last change, when known.
    pub updated_by: Option<String>,
    /// Time of the last change.
    pub updated_at: DateTime<Utc>,
}

/// `list_files` and `GET /resources/tasks/{id}/files`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ListFilesResponse {
    /// Always `true` on a success answer (errors are HTTP errors or MCP tool errors).
    pub success: bool,
    /// The task acted on.
    pub task_id: String,
    /// Live files (deleted ones are left out), by path.
    pub files: Vec<FileInfo>,
}

/// One revision of a file, as `file_history` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RevisionInfo {
    /// The file's version this revision made.
    pub version: i64,
    /// What made it: `write`, `edit` or `delete`.
    pub op: String,
    /// The agent that made it, when known.
    pub agent_id: Option<String>,
    /// The fence of the lease it was made under, if any.
    pub fence: Option<i64>,
    /// Size of the content in bytes (absent for a delete, and for revisions stored before
    /// revisions recorded it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
    /// Hex SHA-256 of the content (absent as `size` is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// When it was committed.
    pub created_at: DateTime<Utc>,
}

/// `file_history`: a file's revisions, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FileHistoryResponse {
    /// Always `true` on a success answer (errors are HTTP errors or MCP tool errors).
    pub success: bool,
    /// The task acted on.
    pub task_id: String,
    /// The normalised path.
    pub path: String,
    /// Revisions, newest first.
    pub revisions: Vec<RevisionInfo>,
    /// When older revisions exist: the `before_version` that reads the next page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_before: Option<i64>,
}

/// `file_revision`: one revision's full content (and a diff when asked).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FileRevisionResponse {
    /// Always `true` on a success answer (errors are HTTP errors or MCP tool errors).
    pub success: bool,
    /// The task acted on.
    pub task_id: String,
    /// The normalised path.
    pub path: String,
    /// The version read.
    pub version: i64,
    /// What made it: `write`, `edit` or `delete`.
    pub op: String,
    /// The agent that made it, when known.
    pub agent_id: Option<String>,
    /// The fence of the lease it was made under, if any.
    pub fence: Option<i64>,
    /// When it was committed.
    pub created_at: DateTime<Utc>,
    /// The file's full content at this version; `null` when the version is a delete.
    pub content: Option<String>,
    /// Hex SHA-256 of `content` (absent for a delete).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Size of `content` in bytes (absent for a delete).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
    /// The version the diff starts from (the request's `diff_from`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff_from: Option<i64>,
    /// Unified diff from version `diff_from` to this version (a deleted version counts as
    /// empty content), when `diff_from` was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
}

/// One live lease, as `list_leases` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LeaseInfo {
    /// The normalised path the lease covers.
    pub path: String,
    /// The agent holding it.
    pub holder: String,
    /// Its fencing token.
    pub fence: i64,
    /// When it was granted (re-entrant claims and renewals keep this time).
    pub acquired_at: DateTime<Utc>,
    /// When it ends unless renewed.
    pub expires_at: DateTime<Utc>,
    /// Milliseconds until `expires_at`, by the lease store's clock.
    pub ttl_ms_left: i64,
    /// A directory lease: `path` ends in `/` and the lease covers everything beneath it.
    #[serde(default)]
    pub recursive: bool,
    /// Agents waiting for the lease (`claim_file` with `wait_sec`), the next to be granted
    /// first.
    #[serde(default)]
    pub waiters: Vec<String>,
}

/// `list_leases`: the task's live leases, by path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ListLeasesResponse {
    /// Always `true` on a success answer (errors are HTTP errors or MCP tool errors).
    pub success: bool,
    /// The task acted on.
    pub task_id: String,
    /// Live leases, by path.
    pub leases: Vec<LeaseInfo>,
    /// `true` when the task holds more live leases than one answer lists (1,000); those
    /// expiring soonest are listed.
    #[serde(default)]
    pub truncated: bool,
}

/// `claim_file` / `renew_file`: the original's `{success, task_id, path, locked:true}` plus
/// the lease: owner, fencing token and expiry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LockResponse {
    /// Always `true` on a success answer (errors are HTTP errors or MCP tool errors).
    pub success: bool,
    /// The task acted on.
    pub task_id: String,
    /// The normalised path.
    pub path: String,
    /// Whether the caller now holds the lease.
    pub locked: bool,
    /// The lease holder: the acting agent.
    pub owner: String,
    /// Fencing token: monotonic across the whole deployment; writes carry it.
    pub fence: i64,
    /// Opaque id of this lease (the same across re-entrant claims and renewals).
    pub lock_token: String,
    /// When the lease ends unless renewed.
    pub expires_at: DateTime<Utc>,
    /// The lease length granted, in seconds.
    pub timeout_sec: i64,
    /// A directory lease (`path` ends in `/`): it covers everything beneath it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recursive: bool,
    /// With `wait_sec`: how long the claim waited in the path's queue, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waited_ms: Option<u64>,
}

/// `release_file`: the original's `{success, task_id, path, locked:false}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReleaseResponse {
    /// Always `true` on a success answer (errors are HTTP errors or MCP tool errors).
    pub success: bool,
    /// The task acted on.
    pub task_id: String,
    /// The normalised path.
    pub path: String,
    /// Whether the caller now holds the lease.
    pub locked: bool,
}

/// `log_step`: the original's `{success, task_id, step}` plus the stream id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LogStepResponse {
    /// Always `true` on a success answer (errors are HTTP errors or MCP tool errors).
    pub success: bool,
    /// The task acted on.
    pub task_id: String,
    /// The stored step, with server-set `timestamp`, `task_id` and `agent_id`.
    pub step: Value,
    /// Stream id of the step (idempotency key of its persistence).
    pub id: String,
}

/// `subscribe_logs`: where to listen. `channel` is the Redis pub/sub channel of the
/// original; `stream_url` the gateway's live event stream for the task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SubscribeLogsResponse {
    /// Always `true` on a success answer (errors are HTTP errors or MCP tool errors).
    pub success: bool,
    /// The task acted on.
    pub task_id: String,
    /// The Redis pub/sub channel of the task's events (`task:{task_id}:updates`).
    pub channel: String,
    /// A human-readable hint.
    pub message: String,
    /// The gateway's live event stream of the task (Server-Sent Events).
    pub stream_url: String,
}

/// `join_collaboration` / `leave_collaboration`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CollaborationResponse {
    /// Always `true` on a success answer (errors are HTTP errors or MCP tool errors).
    pub success: bool,
    /// The task acted on.
    pub task_id: String,
    /// The agent.
    pub agent_id: String,
}

/// A collaborator of a task's session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Collaborator {
    /// The agent.
    pub agent_id: String,
    /// When the agent joined.
    pub joined_at: DateTime<Utc>,
    /// The agent's last activity in this task.
    pub last_active: DateTime<Utc>,
}

/// `GET /resources/collaboration/{task_id}`: `agents` is the original's list of agent ids;
/// `members` adds join time and last activity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CollaborationState {
    /// Always `true` on a success answer (errors are HTTP errors or MCP tool errors).
    pub success: bool,
    /// The task acted on.
    pub task_id: String,
    /// The ids of the members (the original's field).
    pub agents: Vec<String>,
    /// The members with join time and last activity.
    pub members: Vec<Collaborator>,
}

/// The task row, snake_case, as the orchestrator's `tasks` table holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TaskState {
    /// The task id.
    pub id: String,
    /// Short title.
    pub title: String,
    /// Longer description.
    pub description: Option<String>,
    /// Status (`pending` unless set).
    pub status: String,
    /// The agent the task is assigned to.
    pub assigned_agent_id: Option<String>,
    /// Estimated complexity.
    pub complexity: Option<f64>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last update time.
    pub updated_at: DateTime<Utc>,
}

/// One logged step with its stream id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LoggedStep {
    /// The step's stream id.
    pub id: String,
    /// The stored step object.
    pub step: Value,
}

/// `GET /resources/tasks/{id}/logs`: newest-last page of steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TaskLogs {
    /// Always `true` on a success answer (errors are HTTP errors or MCP tool errors).
    pub success: bool,
    /// The task acted on.
    pub task_id: String,
    /// Steps, oldest first.
    pub steps: Vec<LoggedStep>,
}

/// `GET /resources/agents/{id}/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AgentStatus {
    /// The agent.
    pub agent_id: String,
    /// `active` (seen within the activity window, 5 min by default), `idle`, or `offline`
    /// (not seen for twelve windows, or never here).
    pub status: String,
    /// Last time the agent acted, if ever.
    pub last_seen: Option<DateTime<Utc>>,
    /// Tasks whose collaboration the agent is part of.
    pub tasks: Vec<String>,
    /// The task the agent acted on most recently.
    pub current_task: Option<String>,
}

/// One task of `GET /resources/tasks`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TaskSummary {
    /// The task.
    pub task_id: String,
    /// Its title (`None` for a task that agents use without anyone having created it).
    pub title: Option<String>,
    /// Its status, when it has a task row.
    pub status: Option<String>,
    /// The agent it is assigned to, if any.
    pub assigned_agent_id: Option<String>,
    /// Agents now in its collaboration session, by id.
    pub agents: Vec<String>,
    /// Live leases on its files (counted up to 1,000).
    pub lease_count: i64,
    /// Live (not deleted) files.
    pub file_count: i64,
    /// Persisted steps (deployed: up to one sync interval behind the event stream).
    pub step_count: i64,
    /// When anything first happened in it.
    pub first_seen: DateTime<Utc>,
    /// When anything last happened in it: a change, a member, a lease, a step.
    pub last_activity: DateTime<Utc>,
}

/// `GET /resources/tasks`: a page of the tasks the caller may see, most recently active first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TaskList {
    /// Always `true` on a success answer.
    pub success: bool,
    /// This page.
    pub tasks: Vec<TaskSummary>,
    /// How many tasks match the filters (all pages).
    pub total: i64,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// One agent of `GET /resources/agents`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AgentSummary {
    /// The agent.
    pub agent_id: String,
    /// `active` (seen within the activity window, 5 min by default), `idle`, or `offline`
    /// (not seen for twelve windows).
    pub status: String,
    /// Last time the agent acted.
    pub last_seen: Option<DateTime<Utc>>,
    /// Its last recorded action (`file_write`, `claim_file`, `log_step`, `join`, ...).
    pub last_action: Option<String>,
    /// The task of that action.
    pub last_task: Option<String>,
    /// Tasks whose collaboration session it is in (those the caller may see).
    pub tasks: Vec<String>,
}

/// `GET /resources/agents`: a page of agents, most recently seen first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AgentList {
    /// Always `true` on a success answer.
    pub success: bool,
    /// This page.
    pub agents: Vec<AgentSummary>,
    /// How many agents match the filters (all pages).
    pub total: i64,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// `GET /health`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Health {
    /// `healthy`, `degraded` (serving, with a warning) or `unhealthy`.
    pub status: String,
    /// The gateway's version.
    pub version: String,
    /// The hot store (the original's name): `connected` or `disconnected` for Redis, `full`
    /// when Redis answers but refuses writes for lack of memory (the gateway is then
    /// `unhealthy`); `embedded` when the in-process store stands in for it (no Redis is
    /// used), `disconnected` if that one fails.
    pub redis: String,
    /// The durable store (the original's name): `connected` or `disconnected` for Postgres;
    /// `embedded` when the SQLite file stands in for it (no Postgres is used), `disconnected`
    /// if that one fails.
    pub postgres: String,
    /// Which backends serve: `{"durable": "postgres"|"sqlite", "hot": "redis"|"in-process"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backends: Option<HealthBackends>,
    /// Human-readable warnings (e.g. a Redis eviction policy that may evict locks).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// The backends behind `/health`'s two stores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HealthBackends {
    /// The durable store: `postgres` or `sqlite`.
    pub durable: String,
    /// The hot store: `redis` or `in-process`.
    pub hot: String,
}

/// One audit record: who did what, where, with which version and fence, when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AuditEntry {
    /// The record's id (grows with every record).
    pub id: i64,
    /// When it was recorded.
    pub at: DateTime<Utc>,
    /// The acting agent (the token's agent when authentication is on).
    pub actor: String,
    /// What was done: the tool or admin action (`file_write`, `claim_file`, …).
    pub action: String,
    /// The task acted on, if any.
    pub task_id: Option<String>,
    /// The path acted on, if any.
    pub path: Option<String>,
    /// The file version the action produced, if any.
    pub version: Option<i64>,
    /// The fence presented or granted, if any.
    pub fence: Option<i64>,
    /// The request's `x-request-id`.
    pub request_id: Option<String>,
}

/// `GET /admin/audit`: matching records, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AuditLog {
    /// Always `true` on a success answer.
    pub success: bool,
    /// The matching records, newest first.
    pub entries: Vec<AuditEntry>,
}
