//! The durable seam: what the domain and the sync loops need from the source of truth, and
//! the records that cross it. Two backends implement it: [`super::postgres::PgStore`]
//! (deployments) and [`super::sqlite::SqliteStore`] (embedded mode). Both pass one behaviour
//! suite (`crates/testkit/tests/stores/main.rs`).
//!
//! The contract every backend keeps:
//! * a file change is conditional and atomic: the version and fence checks, the new row, its
//!   revision and its audit record commit together or not at all, and a refusal says why
//!   (`version_conflict`, `stale_fence`, `file_not_found`, `quota_exceeded`); changes may share
//!   a transaction (group commit, [`super::group`]), but each keeps its own checks and its own
//!   answer, and none is answered before the transaction that holds it has committed;
//! * versions only grow, across delete and re-create (a deleted file keeps a tombstone row);
//! * fences come from one monotonic sequence;
//! * outbox records are written idempotently (steps on (task, stream id), audit records on
//!   their source id), so a redelivered entry lands once;
//! * tasks and agents are read in change-feed order ([`FeedMark`]), a marker the store
//!   assigns to every committed change (never a writer's clock), and every change of them
//!   wakes [`DurableSync::listen_changes`] listeners.

use crate::error::{DomainError, Result};
use crate::ids::TaskId;
use crate::path::FilePath;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mcp_api::StreamId;
use mcp_api::requests::{CreateTaskRequest, UpdateTaskRequest};
use mcp_api::responses::{AuditEntry, Collaborator, FileInfo, TaskState, TaskSummary};
use serde_json::Value;

/// Which kind of change a revision records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevisionOp {
    /// A whole new content (`file_write`).
    Write,
    /// A replacement inside the content (`file_edit`); its revision keeps the diff too.
    Edit,
    /// A delete (`delete_file`): the row becomes a tombstone and the revision has no content.
    Delete,
}

impl RevisionOp {
    /// The revision's `op` column.
    pub fn as_str(self) -> &'static str {
        match self {
            RevisionOp::Write => "write",
            RevisionOp::Edit => "edit",
            RevisionOp::Delete => "delete",
        }
    }

    /// The op a revision's `op` column names.
    pub fn parse(s: &str) -> Option<RevisionOp> {
        match s {
            "write" => Some(RevisionOp::Write),
            "edit" => Some(RevisionOp::Edit),
            "delete" => Some(RevisionOp::Delete),
            _ => None,
        }
    }

    /// The audit record's `action`.
    pub fn audit_action(self) -> &'static str {
        match self {
            RevisionOp::Write => "file_write",
            RevisionOp::Edit => "file_edit",
            RevisionOp::Delete => "delete_file",
        }
    }
}

/// One conditional change of a file.
pub struct FileChange<'a> {
    /// The task the file belongs to.
    pub task: &'a TaskId,
    /// The file's normalised path.
    pub path: &'a FilePath,
    /// The kind of change, recorded in the revision and the audit.
    pub op: RevisionOp,
    /// New content ('' for a delete).
    pub content: &'a str,
    /// Hex SHA-256 of `content`.
    pub sha256: &'a str,
    /// Size of `content` in bytes.
    pub size: i64,
    /// The writer, recorded as `updated_by`, in the revision and the audit.
    pub agent: &'a str,
    /// The writer's lease fence, when it holds the lease (the operation has checked that it
    /// is the fence of the writer's live lease). `None`: an unleased change, which a file
    /// written under a lease (`last_fence` > 0) accepts only with `expected_version`.
    pub fence: Option<i64>,
    /// `None`: any version; `Some(0)`: only if the file does not exist; `Some(n)`: only at n.
    pub expected_version: Option<i64>,
    /// Unified diff, stored for edits.
    pub diff: Option<&'a str>,
    /// Correlates the audit record with the request's logs.
    pub request_id: Option<&'a str>,
    /// The task's quotas (live files, live bytes); `None`: unlimited. A change that grows the
    /// task past one is refused as `quota_exceeded`; shrinking changes always pass.
    pub max_task_files: Option<i64>,
    /// The task's byte quota (see `max_task_files`).
    pub max_task_bytes: Option<i64>,
}

impl FileChange<'_> {
    /// Whether this change may touch a file whose `last_fence` is `last_fence` without a
    /// lease (the fence rule, part 3): it carries a fence, or a condition, or the file has
    /// never been written under a lease. Unleased collaboration keeps last-write-wins; a
    /// blind change can never overwrite what a lease holder wrote.
    pub fn lease_ok(&self, last_fence: i64) -> bool {
        self.fence.is_some() || self.expected_version.is_some() || last_fence <= 0
    }

    /// Why this change was refused, given the file's current row (version, deleted,
    /// last fence; `None` when it has none): a stale fence first, then a delete of a missing
    /// file, then a blind change of a file written under a lease, else a version conflict.
    /// Every backend answers with this one rule.
    pub fn refusal(&self, current: Option<(i64, bool, i64)>) -> DomainError {
        let (version, deleted, last_fence) = current.unwrap_or((0, true, 0));
        if let Some(fence) = self.fence.filter(|f| *f < last_fence) {
            return DomainError::StaleFence { fence, last_fence };
        }
        if self.op == RevisionOp::Delete && deleted {
            return DomainError::FileNotFound(self.path.to_string());
        }
        if !self.lease_ok(last_fence) {
            return DomainError::LeaseRequired {
                path: self.path.to_string(),
                last_fence,
            };
        }
        DomainError::VersionConflict {
            expected: self.expected_version,
            current: (!deleted).then_some(version),
        }
    }
}

/// Which audit records to return (every field optional but `limit`).
#[derive(Debug, Default)]
pub struct AuditFilter<'a> {
    /// Only this task's records.
    pub task: Option<&'a str>,
    /// Only these tasks (the caller's scope), when the caller does not see every task.
    pub tasks_in: Option<&'a [String]>,
    /// Only this agent's records.
    pub agent: Option<&'a str>,
    /// Only this action's (`file_write`, `claim_file`, …).
    pub action: Option<&'a str>,
    /// Only records at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Records older than this id (paging).
    pub before_id: Option<i64>,
    /// At most this many records.
    pub limit: i64,
}

/// Which tasks a list page holds (`task_activity`, most recently active first).
#[derive(Debug, Default)]
pub struct TaskListFilter<'a> {
    /// Only these tasks (the caller's scope), when the caller does not see every task.
    pub tasks_in: Option<&'a [String]>,
    /// Id or title contains this text (case-insensitive).
    pub text: Option<&'a str>,
    /// Only tasks with this status.
    pub status: Option<&'a str>,
    /// Assigned to this agent, or with it in the session.
    pub agent: Option<&'a str>,
    /// Only tasks after this one in list order (its last activity and id): the cursor.
    pub after: Option<(DateTime<Utc>, &'a str)>,
    /// At most this many tasks.
    pub limit: i64,
}

/// Which agents a list page holds (`agent_activity`, most recently seen first).
#[derive(Debug, Default)]
pub struct AgentListFilter<'a> {
    /// Only agents on these tasks (the caller's scope), when it does not see every task.
    pub tasks_in: Option<&'a [String]>,
    /// Id contains this text (case-insensitive).
    pub text: Option<&'a str>,
    /// On this task: in its session, or last acting on it.
    pub task: Option<&'a str>,
    /// Only agents after this one in list order (last seen and id): the cursor.
    pub after: Option<(DateTime<Utc>, &'a str)>,
    /// At most this many agents.
    pub limit: i64,
}

/// An agent's recorded activity: its last recorded action and its sessions.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentActivity {
    /// The agent's id.
    pub agent_id: String,
    /// When it last acted.
    pub last_seen: DateTime<Utc>,
    /// The task of its last action.
    pub last_task: Option<String>,
    /// Its last recorded action.
    pub last_action: String,
    /// Tasks whose session it is in, by id.
    pub tasks: Vec<String>,
}

/// A `LIKE` pattern matching any text that contains `text` (`\` escapes the wildcards).
pub fn contains_pattern(text: &str) -> String {
    let mut p = String::with_capacity(text.len() + 2);
    p.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// A committed change.
#[derive(Debug, Clone, Copy)]
pub struct Committed {
    /// The file's version after the change.
    pub version: i64,
    /// When the change committed (the store's clock).
    pub updated_at: DateTime<Utc>,
}

/// A file as stored.
#[derive(Debug, Clone)]
pub struct StoredFile {
    /// The current version (a tombstone keeps the version of its delete).
    pub version: i64,
    /// The content ('' for a tombstone).
    pub content: String,
    /// Hex SHA-256 of the content.
    pub sha256: String,
    /// Size of the content in bytes.
    pub size: i64,
    /// The agent of the last change.
    pub updated_by: Option<String>,
    /// When the last change committed.
    pub updated_at: DateTime<Utc>,
    /// The file was deleted: this row is its tombstone.
    pub deleted: bool,
}

/// One revision of a file as stored. Every write and edit revision carries the full
/// content, its size and hash — except edits committed before revisions did
/// (`…_revision_content.sql`), which carry only their `diff`: their content is the previous
/// version's with the diff applied. A delete carries no content.
#[derive(Debug, Clone)]
pub struct StoredRevision {
    /// The version this revision made.
    pub version: i64,
    /// The kind of change.
    pub op: RevisionOp,
    /// The agent that made it.
    pub agent_id: Option<String>,
    /// The lease fence it was made under, if any.
    pub fence: Option<i64>,
    /// Size of the new content in bytes (none for a delete).
    pub size: Option<i64>,
    /// Hex SHA-256 of the new content (none for a delete).
    pub sha256: Option<String>,
    /// When it committed.
    pub created_at: DateTime<Utc>,
    /// The full content (loaded by [`DurableOps::revision_chain`] only).
    pub content: Option<String>,
    /// An edit's unified diff from the previous version (loaded by
    /// [`DurableOps::revision_chain`] only).
    pub diff: Option<String>,
}

impl StoredRevision {
    /// Whether this revision's content can be known without an older one: it carries it, or
    /// it is a delete (no content). Only an edit stored as a diff needs the previous version.
    pub fn is_base(&self) -> bool {
        self.content.is_some() || self.op != RevisionOp::Edit
    }
}

/// Where an agent was last seen: its durable record (`DurableOps::agent`) and its hot
/// presence (`Collaboration::presence`) alike.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Presence {
    /// When it last acted.
    pub last_seen: Option<DateTime<Utc>>,
    /// The task it last acted on (its current task).
    pub task: Option<String>,
    /// The tasks it collaborates on, sorted.
    pub tasks: Vec<String>,
}

/// A step to insert: from the outbox (deployed mode), or straight from `log_step` (embedded).
#[derive(Debug, Clone)]
pub struct StepRecord {
    /// The task whose log holds the step.
    pub task_id: String,
    /// The step's id in the task's log stream (`<ms>-<seq>`), its idempotency key with the
    /// task.
    pub stream_id: String,
    /// The stream id's milliseconds part (a column of its own, for ordering).
    pub id_ms: i64,
    /// The stream id's sequence part.
    pub id_seq: i64,
    /// Who logged it (`None` when nobody was named).
    pub agent_id: Option<String>,
    /// The step object as logged.
    pub step: Value,
    /// When it was logged (the stream id's milliseconds).
    pub logged_at: DateTime<Utc>,
}

/// An audit record to insert: from the outbox (deployed mode), or straight from the
/// operation that audits (embedded).
#[derive(Debug, Clone)]
pub struct AuditRecord {
    /// The idempotency key: the outbox entry id, or (written straight, once) a fresh
    /// `direct:<uuid>`.
    pub source_id: String,
    /// When the audited action happened.
    pub at: DateTime<Utc>,
    /// Who acted.
    pub actor: String,
    /// What was done (`file_write`, `claim_file`, …).
    pub action: String,
    /// The task acted on, if any.
    pub task_id: Option<String>,
    /// The file or lease path acted on, if any.
    pub path: Option<String>,
    /// The file version the action made, if any.
    pub version: Option<i64>,
    /// The lease fence involved, if any.
    pub fence: Option<i64>,
    /// Correlates the record with the request's logs.
    pub request_id: Option<String>,
    /// The whole record as it arrived.
    pub detail: Value,
}

/// A step as the durable step log answers it.
#[derive(Debug, Clone, PartialEq)]
pub struct PersistedStep {
    /// Its id in the task's log stream.
    pub id: StreamId,
    /// The step object as logged.
    pub step: Value,
}

/// A stream id as the step log's two columns (`id_ms`, `id_seq`); parts beyond them (never
/// stored) as their largest value.
pub fn stream_id_columns(id: StreamId) -> (i64, i64) {
    let part = |p: u64| i64::try_from(p).unwrap_or(i64::MAX);
    (part(id.ms), part(id.seq))
}

/// A stream id from the step log's two columns.
pub fn stream_id_of_columns(ms: i64, seq: i64) -> StreamId {
    StreamId {
        ms: u64::try_from(ms).unwrap_or(0),
        seq: u64::try_from(seq).unwrap_or(0),
    }
}

impl StepRecord {
    /// A step as the task's log stream holds it: its id there (which also tells when it was
    /// logged), who logged it and the step object. `None` for an id beyond what the step log
    /// keeps (each part a signed 64-bit number).
    pub fn logged(
        task_id: &str,
        id: StreamId,
        agent_id: Option<&str>,
        step: Value,
    ) -> Option<StepRecord> {
        let (id_ms, id_seq) = (i64::try_from(id.ms).ok()?, i64::try_from(id.seq).ok()?);
        Some(StepRecord {
            task_id: task_id.to_owned(),
            stream_id: id.to_string(),
            id_ms,
            id_seq,
            agent_id: agent_id.filter(|a| !a.is_empty()).map(str::to_owned),
            step,
            logged_at: chrono::TimeZone::timestamp_millis_opt(&Utc, id_ms)
                .single()
                .unwrap_or_default(),
        })
    }
}

impl AuditRecord {
    /// An audit record from its JSON object (at least `actor` and `action`; `task_id`,
    /// `path`, `version`, `fence`, `request_id` and `at` when it has them), under `source_id`;
    /// `fallback_at` when it names no time. The reason when it is not one.
    pub fn from_payload(
        source_id: String,
        payload: Value,
        fallback_at: DateTime<Utc>,
    ) -> std::result::Result<AuditRecord, String> {
        let Some(obj) = payload.as_object() else {
            return Err("payload is not a JSON object".into());
        };
        let text = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_owned);
        let actor = text("actor").ok_or("payload has no actor")?;
        let action = text("action").ok_or("payload has no action")?;
        let at = obj
            .get("at")
            .and_then(|v| serde_json::from_value::<DateTime<Utc>>(v.clone()).ok())
            .unwrap_or(fallback_at);
        Ok(AuditRecord {
            source_id,
            at,
            actor,
            action,
            task_id: text("task_id"),
            path: text("path"),
            version: obj.get("version").and_then(Value::as_i64),
            fence: obj.get("fence").and_then(Value::as_i64),
            request_id: text("request_id"),
            detail: payload,
        })
    }
}

/// An outbox entry that could not be persisted, kept for an operator.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The outbox entry's id.
    pub source_id: String,
    /// The entry's kind (`step`, `audit`), when it named one.
    pub kind: Option<String>,
    /// The entry's fields as a JSON object of strings.
    pub payload: String,
    /// Why it could not be persisted.
    pub error: String,
}

/// The dead letters, oldest first, as both SQL backends read them ([`DeadLetter::from_row`]).
pub const DEAD_LETTERS: &str =
    "SELECT source_id, kind, payload, error FROM dead_letters ORDER BY id";

impl DeadLetter {
    /// A row of [`DEAD_LETTERS`].
    pub fn from_row(
        (source_id, kind, payload, error): (String, Option<String>, String, String),
    ) -> DeadLetter {
        DeadLetter {
            source_id,
            kind,
            payload,
            error,
        }
    }
}

/// One batch of outbox records, written in one transaction.
#[derive(Debug, Clone, Default)]
pub struct OutboxBatch {
    /// Steps to insert.
    pub steps: Vec<StepRecord>,
    /// Audit records to insert.
    pub audits: Vec<AuditRecord>,
    /// Entries that cannot be persisted, kept for an operator.
    pub dead: Vec<DeadLetter>,
}

impl OutboxBatch {
    /// Whether there is nothing to write.
    pub(crate) fn is_empty(&self) -> bool {
        self.steps.is_empty() && self.audits.is_empty() && self.dead.is_empty()
    }
}

/// An agent row as the pull loop sees it.
#[derive(Debug, Clone)]
pub struct AgentRow {
    /// The agent's id.
    pub id: String,
    /// The task it last acted on.
    pub current_task_id: Option<String>,
    /// When it last acted.
    pub last_seen: Option<DateTime<Utc>>,
    /// When the row last changed.
    pub updated_at: DateTime<Utc>,
}

/// A task row with its change number.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRow {
    /// The task as the wire shows it.
    pub state: TaskState,
    /// Grows with every committed change of the row, whoever made it and whatever its
    /// `updated_at` says (Postgres: `change_seq`, drawn from a sequence by a trigger; SQLite:
    /// a counter bumped by a trigger in the write transaction). The hot cache keeps the row
    /// with the highest one.
    pub seq: i64,
}

/// A place in the change feed of one table: rows are read in `(xid, seq)` order.
///
/// Postgres: `xid` is the row's writing transaction (`change_xid`, `pg_current_xact_id()`),
/// `seq` its `change_seq`. SQLite has one writer, so commit order is `seq` order: `xid` is
/// always 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FeedMark {
    /// The writing transaction (always 0 on SQLite).
    pub xid: i64,
    /// The row's change number (`change_seq`, see [`TaskRow::seq`]).
    pub seq: i64,
}

/// One row read from the change feed.
#[derive(Debug, Clone)]
pub struct FeedRow<T> {
    /// Where the row is in the feed.
    pub mark: FeedMark,
    /// No change can commit under this mark any more: its transaction is older than every
    /// transaction still running when the row was read (Postgres: `change_xid <
    /// pg_snapshot_xmin(pg_current_snapshot())`; SQLite: always). Only over settled rows
    /// may a reader move its cursor; a row read but not settled is applied and read again.
    pub settled: bool,
    /// The row as it was read.
    pub row: T,
}

/// What the operations ([`crate::Service`]) need from the durable store.
#[async_trait]
pub trait DurableOps: Send + Sync + 'static {
    /// The backend's name as `/health` and the start-up log report it (`postgres`, `sqlite`).
    fn backend(&self) -> &'static str;

    /// Whether several gateway processes (on several machines) can share this store.
    fn shared(&self) -> bool;

    /// Applies the schema migrations (idempotent).
    async fn migrate(&self) -> Result<()>;

    /// Answers when the store can serve a query (for `/health`).
    async fn ping(&self) -> Result<()>;

    /// A new fencing token (monotonic for the whole deployment).
    async fn next_fence(&self) -> Result<i64>;

    /// Applies a conditional file change; refuses it with `version_conflict`, `stale_fence`,
    /// `file_not_found` or `quota_exceeded` when its condition does not hold.
    async fn change_file(&self, c: &FileChange<'_>) -> Result<Committed>;

    /// How many batches (transactions) and changes this store has committed by group commit
    /// ([`super::group`]); zeros for a store that commits each change on its own.
    fn group_commit_stats(&self) -> super::group::GroupCommitStats {
        super::group::GroupCommitStats::default()
    }

    /// A file's row (also a deleted file's tombstone).
    async fn file(&self, task: &TaskId, path: &FilePath) -> Result<Option<StoredFile>>;

    /// A file's revisions, newest first: at most `limit`, only those older than `before`
    /// (a version) when given. Without their content and diff.
    async fn revisions(
        &self,
        task: &TaskId,
        path: &FilePath,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<StoredRevision>>;

    /// What reading `version` of a file needs, newest first, with content and diff: the
    /// revisions at or below `version` down to the newest one that is a base
    /// ([`StoredRevision::is_base`]), at most `limit` of them. When the file has no revision
    /// `version`, the first row is an older one (or there is none).
    async fn revision_chain(
        &self,
        task: &TaskId,
        path: &FilePath,
        version: i64,
        limit: usize,
    ) -> Result<Vec<StoredRevision>>;

    /// Live files of a task, by path; only those under `prefix` (a directory) when given.
    async fn list_files(&self, task: &TaskId, prefix: Option<&FilePath>) -> Result<Vec<FileInfo>>;

    /// A task's row with its change number; `None` when it does not exist.
    async fn task(&self, task: &TaskId) -> Result<Option<TaskRow>>;

    /// Task ids after `after` in id order, at most `limit` (a page of the task list).
    async fn task_ids(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>>;

    /// Creates a task (status `pending` unless given) with its audit record; `task_exists`
    /// when the id is taken.
    async fn create_task(
        &self,
        id: &TaskId,
        req: &CreateTaskRequest,
        actor: &str,
        request_id: Option<&str>,
    ) -> Result<TaskRow>;

    /// Updates the fields the request names (a `Some(None)` clears a nullable one) and
    /// `updated_at`, with its audit record; `None` when the task does not exist.
    async fn update_task(
        &self,
        id: &TaskId,
        req: &UpdateTaskRequest,
        actor: &str,
        request_id: Option<&str>,
    ) -> Result<Option<TaskRow>>;

    /// Records a join (a re-join after leaving starts a new session; joining twice keeps the
    /// first join time), the agent's presence and an audit record. Returns the join time.
    async fn join(
        &self,
        task: &TaskId,
        agent: &str,
        request_id: Option<&str>,
    ) -> Result<DateTime<Utc>>;

    /// Records a leave (and an audit record); `false` when the agent was not a member.
    async fn leave(&self, task: &TaskId, agent: &str, request_id: Option<&str>) -> Result<bool>;

    /// Current members, by join time then agent id.
    async fn collaborators(&self, task: &TaskId) -> Result<Vec<Collaborator>>;

    /// An agent's durable record, or `None` when the agent never joined anything.
    async fn agent(&self, agent: &str) -> Result<Option<Presence>>;

    /// Audit records matching `q`, newest first.
    async fn audit(&self, q: &AuditFilter<'_>) -> Result<Vec<AuditEntry>>;

    /// Newest-first persisted steps strictly older than `before` (all of them without one).
    async fn steps_before(
        &self,
        task: &TaskId,
        before: Option<StreamId>,
        limit: usize,
    ) -> Result<Vec<PersistedStep>>;

    /// A page of tasks matching `q`, most recently active first, and how many match in all.
    async fn list_tasks(&self, q: &TaskListFilter<'_>) -> Result<(Vec<TaskSummary>, i64)>;

    /// A page of agents matching `q`, most recently seen first, and how many match in all.
    async fn list_agents(&self, q: &AgentListFilter<'_>) -> Result<(Vec<AgentActivity>, i64)>;
}

/// A message to store ([`DurableMessages::send_message`]).
#[derive(Debug, Clone)]
pub struct NewMessage<'a> {
    /// The task the message is sent on.
    pub task: &'a TaskId,
    /// The sender.
    pub from: &'a str,
    /// `true`: to everyone who may see the task (`to` is then empty).
    pub broadcast: bool,
    /// The recipients (validated agent ids, without duplicates).
    pub to: &'a [String],
    /// A one-line summary.
    pub subject: &'a str,
    /// The text.
    pub body: &'a str,
    /// `None`: a new thread, named by the message's own id.
    pub thread_id: Option<&'a str>,
    /// The message this one answers.
    pub reply_to: Option<i64>,
    /// `low`, `normal`, `high` or `urgent`.
    pub importance: &'a str,
    /// Correlates the audit record with the request's logs.
    pub request_id: Option<&'a str>,
}

/// A message as stored, with one reader's read state.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMessage {
    /// From one sequence; ids are assigned in commit order, so a reader that has seen id n
    /// never later finds a new message below n (its cursor is safe).
    pub id: i64,
    /// The task it was sent on.
    pub task_id: String,
    /// The sender.
    pub from: String,
    /// Sent to everyone who may see the task.
    pub broadcast: bool,
    /// The recipients (empty for a broadcast).
    pub to: Vec<String>,
    /// A one-line summary.
    pub subject: String,
    /// The text.
    pub body: String,
    /// The thread: the id of its first message, or the one the sender named.
    pub thread_id: String,
    /// The message this one answers.
    pub reply_to: Option<i64>,
    /// `low`, `normal`, `high` or `urgent`.
    pub importance: String,
    /// When it was stored.
    pub sent_at: DateTime<Utc>,
    /// When the reader acknowledged it (`None`: unread, or no reader asked).
    pub read_at: Option<DateTime<Utc>>,
}

/// Which messages an inbox read returns: those `agent` may read (addressed to it, or
/// broadcast on a task by someone else), after `after`, oldest first.
#[derive(Debug, Clone)]
pub struct InboxQuery<'a> {
    /// The reader.
    pub agent: &'a str,
    /// Only this task's.
    pub task: Option<&'a str>,
    /// Only these tasks' (the reader's scope), when it does not see every task.
    pub tasks_in: Option<&'a [String]>,
    /// Only ids above this one (the cursor).
    pub after: i64,
    /// Only those the reader has not acknowledged.
    pub unread_only: bool,
    /// At most this many messages.
    pub limit: i64,
}

/// What the message operations need from the durable store. Messages are written through
/// (acknowledged only once committed, with their audit record); ids come from one
/// sequence and are assigned in commit order.
#[async_trait]
pub trait DurableMessages: Send + Sync + 'static {
    /// Stores a message, its recipients and its audit record in one transaction; the
    /// thread is `thread_id`, else the message's own id. Returns the stored message.
    async fn send_message(&self, m: &NewMessage<'_>) -> Result<StoredMessage>;

    /// A page of the reader's inbox ([`InboxQuery`]), with the reader's read state.
    async fn inbox(&self, q: &InboxQuery<'_>) -> Result<Vec<StoredMessage>>;

    /// The message `id` if `reader` may read it: it sent it, it is a recipient, or it is a
    /// broadcast; and (with `tasks_in`) its task is in the reader's scope. With the reader's
    /// read state.
    async fn message_for(
        &self,
        id: i64,
        reader: &str,
        tasks_in: Option<&[String]>,
    ) -> Result<Option<StoredMessage>>;

    /// Marks message `id` read by `reader` (the first time only); returns when it was first
    /// acknowledged. The caller has checked that the reader may read it.
    async fn ack_message(&self, id: i64, reader: &str) -> Result<DateTime<Utc>>;
}

/// Wakes when tasks or agents changed in the durable store.
#[async_trait]
pub trait ChangeListener: Send {
    /// Waits for the next change notification, then takes every one already buffered (a
    /// burst wakes the loop once). Errors when the listener is lost and cannot be restored.
    async fn changed(&mut self) -> Result<()>;
}

/// What the sync loops (`crates/sync`) need from the durable store.
#[async_trait]
pub trait DurableSync: Send + Sync + 'static {
    /// Writes a whole batch (steps, audit records, dead letters) in one transaction; records
    /// already present are skipped. Either all of it commits or none of it does.
    async fn persist_outbox_batch(&self, batch: &OutboxBatch) -> Result<()>;

    /// Inserts one step on its own (the fallback when a batch fails). `true` when new.
    async fn insert_step(&self, step: &StepRecord) -> Result<bool>;

    /// Inserts one audit record on its own (the fallback when a batch fails). `true` when new.
    async fn insert_audit(&self, audit: &AuditRecord) -> Result<bool>;

    /// Records an entry that cannot be persisted. `true` when new.
    async fn insert_dead_letter(&self, dead: &DeadLetter) -> Result<bool>;

    /// Dead letters, oldest first.
    async fn dead_letters(&self) -> Result<Vec<DeadLetter>>;

    /// Up to `limit` tasks whose feed mark is strictly after `after`, in mark order (keyset
    /// paging: call again from the last row until a short page). Only committed rows are
    /// read; see [`FeedRow::settled`] for which of them a cursor may pass.
    async fn tasks_after(&self, after: FeedMark, limit: usize) -> Result<Vec<FeedRow<TaskState>>>;

    /// Up to `limit` agents whose feed mark is strictly after `after`, in mark order.
    async fn agents_after(&self, after: FeedMark, limit: usize) -> Result<Vec<FeedRow<AgentRow>>>;

    /// Tasks deleted after `since` that do not exist again (a re-created id keeps its cache):
    /// (task id, deletion time), oldest first.
    async fn task_deletions_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<(String, DateTime<Utc>)>>;

    /// Drops deletion tombstones older than `before`. Returns how many.
    async fn prune_task_deletions(&self, before: DateTime<Utc>) -> Result<u64>;

    /// A listener woken whenever tasks or agents change.
    async fn listen_changes(&self) -> Result<Box<dyn ChangeListener>>;

    /// The store's clock (watermarks are compared with its timestamps, not ours).
    async fn db_now(&self) -> Result<DateTime<Utc>>;
}
