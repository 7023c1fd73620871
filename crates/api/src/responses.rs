//! Success bodies. Each is a superset of the original gateway's body for the same route:
//! the original's fields keep their names and types, ours are added beside them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `file_read`: the original's `{success, task_id, path, content}` plus version and digest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileReadResponse {
    pub success: bool,
    pub task_id: String,
    pub path: String,
    pub content: String,
    /// Monotonic per file, starting at 1.
    pub version: i64,
    /// Hex SHA-256 of the content's UTF-8 bytes.
    pub sha256: String,
    /// Size in bytes.
    pub size: i64,
}

/// `file_write`: the original's `{success, task_id, path, bytes}` plus the new version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileWriteResponse {
    pub success: bool,
    pub task_id: String,
    pub path: String,
    /// Bytes written.
    pub bytes: i64,
    pub version: i64,
    pub sha256: String,
}

/// `file_edit`: the new version and the unified diff of the change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileEditResponse {
    pub success: bool,
    pub task_id: String,
    pub path: String,
    pub version: i64,
    pub sha256: String,
    /// Size in bytes after the edit.
    pub bytes: i64,
    /// How many occurrences were replaced.
    pub replacements: i64,
    /// Unified diff from the previous version.
    pub diff: String,
}

/// `delete_file`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeleteFileResponse {
    pub success: bool,
    pub task_id: String,
    pub path: String,
    pub deleted: bool,
    /// The version of the deletion (the file's last version + 1).
    pub version: i64,
}

/// One entry of a task's file listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileInfo {
    pub path: String,
    pub version: i64,
    pub size: i64,
    pub sha256: String,
    pub updated_by: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// `list_files` and `GET /resources/tasks/{id}/files`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListFilesResponse {
    pub success: bool,
    pub task_id: String,
    pub files: Vec<FileInfo>,
}

/// `claim_file` / `renew_file`: the original's `{success, task_id, path, locked:true}` plus
/// the lease: owner, fencing token and expiry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockResponse {
    pub success: bool,
    pub task_id: String,
    pub path: String,
    pub locked: bool,
    pub owner: String,
    /// Fencing token: monotonic across the whole deployment; writes carry it.
    pub fence: i64,
    /// Opaque id of this lease (the same across re-entrant claims and renewals).
    pub lock_token: String,
    pub expires_at: DateTime<Utc>,
    pub timeout_sec: i64,
}

/// `release_file`: the original's `{success, task_id, path, locked:false}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseResponse {
    pub success: bool,
    pub task_id: String,
    pub path: String,
    pub locked: bool,
}

/// `log_step`: the original's `{success, task_id, step}` plus the stream id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogStepResponse {
    pub success: bool,
    pub task_id: String,
    /// The stored step, with server-set `timestamp`, `task_id` and `agent_id`.
    pub step: Value,
    /// Stream id of the step (idempotency key of its persistence).
    pub id: String,
}

/// `subscribe_logs`: where to listen. `channel` is the Redis pub/sub channel of the
/// original; `stream_url` the gateway's live event stream for the task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscribeLogsResponse {
    pub success: bool,
    pub task_id: String,
    pub channel: String,
    pub message: String,
    pub stream_url: String,
}

/// `join_collaboration` / `leave_collaboration`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollaborationResponse {
    pub success: bool,
    pub task_id: String,
    pub agent_id: String,
}

/// A collaborator of a task's session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Collaborator {
    pub agent_id: String,
    pub joined_at: DateTime<Utc>,
    pub last_active: DateTime<Utc>,
}

/// `GET /resources/collaboration/{task_id}`: `agents` is the original's list of agent ids;
/// `members` adds join time and last activity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollaborationState {
    pub success: bool,
    pub task_id: String,
    pub agents: Vec<String>,
    pub members: Vec<Collaborator>,
}

/// The task row, snake_case, as the orchestrator's `tasks` table holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskState {
    pub id: String,
    pub title: String,
    pub description: Option<String>,
    pub status: String,
    pub assigned_agent_id: Option<String>,
    pub complexity: Option<f64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One logged step with its stream id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoggedStep {
    pub id: String,
    pub step: Value,
}

/// `GET /resources/tasks/{id}/logs`: newest-last page of steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskLogs {
    pub success: bool,
    pub task_id: String,
    pub steps: Vec<LoggedStep>,
}

/// `GET /resources/agents/{id}/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentStatus {
    pub agent_id: String,
    /// `active` (seen within the activity window), `idle`, or `offline` (never seen here).
    pub status: String,
    pub last_seen: Option<DateTime<Utc>>,
    /// Tasks whose collaboration the agent is part of.
    pub tasks: Vec<String>,
    /// The task the agent acted on most recently.
    pub current_task: Option<String>,
}

/// `GET /health`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// `healthy`, `degraded` (serving, with a warning) or `unhealthy`.
    pub status: String,
    pub version: String,
    /// `connected` or `disconnected`.
    pub redis: String,
    pub postgres: String,
    /// Human-readable warnings (e.g. a Redis eviction policy that may evict locks).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}
