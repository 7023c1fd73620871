//! The durable store of the embedded mode: one SQLite file, the same contract as
//! [`super::postgres::PgStore`] (see [`super::durable`]) and the same answers, refusals and
//! edge cases. Its schema is `migrations/sqlite/`.
//!
//! How it keeps the contract without a server:
//! * **one writer.** Every write runs on a pool of exactly one connection, inside
//!   `BEGIN IMMEDIATE` (the write lock is taken at the start, so a transaction never fails
//!   half-way with `SQLITE_BUSY` because another one wrote first). Writers of this process
//!   queue for that connection; another process (an operator's `sqlite3` shell) is waited for
//!   up to the busy timeout. Not getting the lock in time is `unavailable`. A conditional file
//!   change reads the row, decides, writes the row, its revision and its audit record in that
//!   one transaction, so the checks and the change are atomic, exactly like Postgres's
//!   statements.
//! * **group commit** ([`super::group`]): file changes and fence grants queue for the writer;
//!   those that arrive while a batch commits share the next transaction (one fsync with
//!   `synchronous=FULL`), each change in its own savepoint, so a refused one (version, fence,
//!   quota) rolls back alone; every answer waits for the commit.
//! * **readers in WAL mode**: a pool of read connections (`query_only`) that never block the
//!   writer and always see every committed transaction.
//! * **timestamps** come from this process's clock (UTC, truncated to microseconds like
//!   Postgres's `timestamptz`) and are stored as fixed-width text
//!   (`YYYY-MM-DDTHH:MM:SS.ffffffZ`), so text order is time order. [`DurableSync::db_now`]
//!   is the same clock. The change feed does not read them: it pages by `change_seq`, a
//!   counter triggers bump inside the write transaction (one writer: commit order).
//! * **change notifications** are in-process: every committed change of tasks or agents made
//!   through this store wakes the [`DurableSync::listen_changes`] listeners.
//! * **NUL characters**, which Postgres cannot store in text or jsonb, are refused here too
//!   (`invalid_argument`), before anything is written.

use super::durable::{
    AgentActivity, AgentListFilter, AgentRow, AuditFilter, AuditRecord, ChangeListener, Committed,
    DEAD_LETTERS, DeadLetter, DurableOps, DurableSync, FeedMark, FeedRow, FileChange, OutboxBatch,
    PersistedStep, Presence, RevisionOp, StepRecord, StoredFile, StoredRevision, TaskListFilter,
    TaskRow, contains_pattern, stream_id_columns, stream_id_of_columns,
};
use super::group::{Batcher, GroupCommitStats, OwnedChange, for_each_job};
use crate::error::{DomainError, Result};
use crate::ids::TaskId;
use crate::path::FilePath;
use async_trait::async_trait;
use chrono::{DateTime, Datelike, SubsecRound, Utc};
use mcp_api::StreamId;
use mcp_api::requests::{CreateTaskRequest, UpdateTaskRequest};
use mcp_api::responses::{AuditEntry, Collaborator, FileInfo, TaskState, TaskSummary};
use serde_json::Value;
use sqlx::SqliteConnection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, Sqlite, SqlitePool, Transaction};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

mod messages;
mod sessions;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

/// Where the embedded store keeps its file, and how it waits.
#[derive(Debug, Clone)]
pub struct SqliteConfig {
    /// The database file (created, with its parent directories, when missing).
    pub path: PathBuf,
    /// Read connections (writes always go through one connection of their own).
    pub max_connections: u32,
    /// How long a call waits for the database (the write lock, held by another writer of this
    /// process or of another one, or a free connection) before failing as `unavailable`.
    pub busy_timeout: Duration,
    /// `true` (SQLite `synchronous=FULL`, the default): every commit is on disk before it is
    /// acknowledged, so it survives a power loss or an OS crash — one fsync per write. `false`
    /// (`synchronous=NORMAL`): the log is synced at checkpoints only; a commit survives a crash
    /// of this process but the last ones may be lost with the machine. Up to twice the write
    /// throughput (docs/BENCHMARKS.md, "Embedded mode").
    pub sync_every_commit: bool,
}

impl SqliteConfig {
    /// The file at `path`, with 4 read connections and a 5 s busy timeout.
    pub fn at(path: impl Into<PathBuf>) -> SqliteConfig {
        SqliteConfig {
            path: path.into(),
            max_connections: 4,
            busy_timeout: Duration::from_secs(5),
            sync_every_commit: true,
        }
    }
}

/// The embedded durable store. Cheap to clone: clones share the pools and the notifier.
#[derive(Clone)]
pub struct SqliteStore {
    /// Exactly one connection: every write transaction.
    writer: SqlitePool,
    /// Group commit of file changes and fence grants ([`Write`]).
    writes: Arc<Batcher<Write, Result<Written>>>,
    /// Read-only (`query_only`) connections.
    reader: SqlitePool,
    /// Bumped after every commit that changed tasks or agents.
    changes: Arc<watch::Sender<u64>>,
}

/// `sqlx` results classified as the SQLite store's errors (not Postgres's).
trait Db<T> {
    fn db(self) -> Result<T>;
}

impl<T> Db<T> for std::result::Result<T, sqlx::Error> {
    fn db(self) -> Result<T> {
        self.map_err(DomainError::from_sqlite)
    }
}

/// The store's clock: now, at Postgres's precision (microseconds).
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// A timestamp as stored: fixed-width UTC text, so text order is time order. Times outside
/// years 0–9999 (which no stored row has) are clamped to the ends of that range, so they
/// still compare as before or after every stored time.
fn ts(t: DateTime<Utc>) -> String {
    match t.year() {
        ..0 => "0000-01-01T00:00:00.000000Z".to_owned(),
        10_000.. => "9999-12-31T23:59:59.999999Z".to_owned(),
        _ => t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
    }
}

fn revision_from_row(r: &SqliteRow) -> Result<StoredRevision> {
    let op: String = r.try_get("op").db()?;
    Ok(StoredRevision {
        version: r.try_get("version").db()?,
        op: RevisionOp::parse(&op)
            .ok_or_else(|| DomainError::internal(format!("revision op {op:?}")))?,
        agent_id: r.try_get("agent_id").db()?,
        fence: r.try_get("fence").db()?,
        size: r.try_get("size").db()?,
        sha256: r.try_get("sha256").db()?,
        created_at: r.try_get("created_at").db()?,
        content: r.try_get("content").db()?,
        diff: r.try_get("diff").db()?,
    })
}

/// Refuses text Postgres could not store (a NUL character), with Postgres's answer.
fn no_nul<'a>(texts: impl IntoIterator<Item = Option<&'a str>>) -> Result<()> {
    if texts.into_iter().flatten().any(|t| t.contains('\0')) {
        return Err(DomainError::nul_text());
    }
    Ok(())
}

/// Whether a JSON value holds a NUL anywhere (a key or a string), which jsonb refuses.
fn json_has_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(json_has_nul),
        Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || json_has_nul(v)),
        _ => false,
    }
}

fn no_nul_json(v: &Value) -> Result<()> {
    if json_has_nul(v) {
        return Err(DomainError::nul_text());
    }
    Ok(())
}

fn json_text(v: &Value) -> Result<String> {
    serde_json::to_string(v).map_err(|e| DomainError::internal(format!("sqlite: json: {e}")))
}

const TASK_COLUMNS: &str = "id, title, description, status, assigned_agent_id, complexity, \
                            created_at, updated_at, change_seq";

fn task_from_row(r: &SqliteRow) -> Result<TaskState> {
    Ok(TaskState {
        id: r.try_get("id").db()?,
        title: r.try_get("title").db()?,
        description: r.try_get("description").db()?,
        status: r.try_get("status").db()?,
        assigned_agent_id: r.try_get("assigned_agent_id").db()?,
        complexity: r.try_get("complexity").db()?,
        created_at: r.try_get("created_at").db()?,
        updated_at: r.try_get("updated_at").db()?,
    })
}

/// A task row with its change number (a query selecting [`TASK_COLUMNS`]).
fn task_row_from(r: &SqliteRow) -> Result<TaskRow> {
    Ok(TaskRow {
        state: task_from_row(r)?,
        seq: r.try_get("change_seq").db()?,
    })
}

/// Reads a task back inside the transaction that changed it: `RETURNING` would not show the
/// `change_seq` the trigger set after the change.
async fn task_in(tx: &mut Transaction<'_, Sqlite>, id: &TaskId) -> Result<TaskRow> {
    let row = sqlx::query(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?1"))
        .bind(id.as_str())
        .fetch_one(&mut **tx)
        .await
        .db()?;
    task_row_from(&row)
}

/// A file's row as a change sees it before deciding.
struct Current {
    version: i64,
    deleted: bool,
    last_fence: i64,
    size: i64,
}

const INSERT_AUDIT: &str = "
INSERT INTO audit_log (at, actor, action, task_id, path, version, fence, request_id)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";

/// The audit record of a change made through the operations (no source id, no detail).
#[allow(clippy::too_many_arguments)]
async fn audit_row(
    tx: &mut Transaction<'static, Sqlite>,
    at: &str,
    actor: &str,
    action: &str,
    task: &str,
    path: Option<&str>,
    version: Option<i64>,
    fence: Option<i64>,
    request_id: Option<&str>,
) -> Result<()> {
    sqlx::query(INSERT_AUDIT)
        .bind(at)
        .bind(actor)
        .bind(action)
        .bind(task)
        .bind(path)
        .bind(version)
        .bind(fence)
        .bind(request_id)
        .execute(&mut **tx)
        .await
        .db()?;
    Ok(())
}

const INSERT_STEP: &str = "
INSERT INTO step_logs (task_id, stream_id, id_ms, id_seq, agent_id, step, logged_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
ON CONFLICT (task_id, stream_id) DO NOTHING";

const INSERT_OUTBOX_AUDIT: &str = "
INSERT INTO audit_log (source_id, at, actor, action, task_id, path, version, fence, request_id,
                       detail)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
ON CONFLICT (source_id) DO NOTHING";

const INSERT_DEAD: &str = "
INSERT INTO dead_letters (source_id, kind, payload, error, at) VALUES (?1, ?2, ?3, ?4, ?5)
ON CONFLICT (source_id) DO NOTHING";

fn check_step(s: &StepRecord) -> Result<()> {
    no_nul([
        Some(s.task_id.as_str()),
        Some(s.stream_id.as_str()),
        s.agent_id.as_deref(),
    ])?;
    no_nul_json(&s.step)
}

fn check_audit(a: &AuditRecord) -> Result<()> {
    no_nul([
        Some(a.source_id.as_str()),
        Some(a.actor.as_str()),
        Some(a.action.as_str()),
        a.task_id.as_deref(),
        a.path.as_deref(),
        a.request_id.as_deref(),
    ])?;
    no_nul_json(&a.detail)
}

fn check_dead(d: &DeadLetter) -> Result<()> {
    no_nul([
        Some(d.source_id.as_str()),
        d.kind.as_deref(),
        Some(d.payload.as_str()),
        Some(d.error.as_str()),
    ])
}

/// Inserts a step unless present; `true` when new. (Checked for NUL by the caller.)
async fn insert_step_in(tx: &mut Transaction<'static, Sqlite>, s: &StepRecord) -> Result<bool> {
    insert_step_at(tx, s).await
}

async fn insert_step_at(conn: &mut SqliteConnection, s: &StepRecord) -> Result<bool> {
    let r = sqlx::query(INSERT_STEP)
        .bind(&s.task_id)
        .bind(&s.stream_id)
        .bind(s.id_ms)
        .bind(s.id_seq)
        .bind(&s.agent_id)
        .bind(json_text(&s.step)?)
        .bind(ts(s.logged_at))
        .execute(&mut *conn)
        .await
        .db()?;
    Ok(r.rows_affected() > 0)
}

/// Inserts an outbox audit record unless present; `true` when new.
async fn insert_audit_in(tx: &mut Transaction<'static, Sqlite>, a: &AuditRecord) -> Result<bool> {
    insert_audit_at(tx, a).await
}

async fn insert_audit_at(conn: &mut SqliteConnection, a: &AuditRecord) -> Result<bool> {
    let r = sqlx::query(INSERT_OUTBOX_AUDIT)
        .bind(&a.source_id)
        .bind(ts(a.at))
        .bind(&a.actor)
        .bind(&a.action)
        .bind(&a.task_id)
        .bind(&a.path)
        .bind(a.version)
        .bind(a.fence)
        .bind(&a.request_id)
        .bind(json_text(&a.detail)?)
        .execute(&mut *conn)
        .await
        .db()?;
    Ok(r.rows_affected() > 0)
}

/// Inserts a dead letter unless present; `true` when new.
async fn insert_dead_in(
    tx: &mut Transaction<'static, Sqlite>,
    d: &DeadLetter,
    at: &str,
) -> Result<bool> {
    insert_dead_at(tx, d, at).await
}

async fn insert_dead_at(conn: &mut SqliteConnection, d: &DeadLetter, at: &str) -> Result<bool> {
    let r = sqlx::query(INSERT_DEAD)
        .bind(&d.source_id)
        .bind(&d.kind)
        .bind(&d.payload)
        .bind(&d.error)
        .bind(at)
        .execute(&mut *conn)
        .await
        .db()?;
    Ok(r.rows_affected() > 0)
}

/// A write that goes through group commit: queued writes share one `BEGIN IMMEDIATE`
/// transaction and one commit (one fsync with `synchronous=FULL`), each in its own savepoint,
/// and none is answered before that commit.
pub(crate) enum Write {
    Change(Box<OwnedChange>),
    Fence,
    /// Steps, audit records and dead letters (checked for NUL before they are queued): the
    /// push loop's batches, and in the embedded mode each `log_step` and audited event, so
    /// that concurrent steps share one commit.
    Records(Box<OutboxBatch>),
}

/// What a [`Write`] committed.
pub(crate) enum Written {
    Change(Committed),
    Fence(i64),
    Records,
}

/// At most this many writes per batch (the write lock is held for the whole batch).
const MAX_BATCH: usize = 128;

/// Runs a batch of writes in one transaction: one answer per write, in order. A change refused
/// (its version, fence or quota) rolls back its savepoint alone. When the transaction itself
/// fails (the write lock not obtained, an I/O error, the commit), every write of the batch is
/// answered with that failure and none was committed.
async fn commit_batch(writer: SqlitePool, jobs: Vec<Write>) -> Vec<Result<Written>> {
    let (writer, jobs) = (&writer, &jobs[..]);
    let failed = |e: &DomainError| jobs.iter().map(|_| Err(for_each_job(e))).collect();
    let mut tx = match writer.begin_with("BEGIN IMMEDIATE").await.db() {
        Ok(tx) => tx,
        Err(e) => return failed(&e),
    };
    let mut answers = Vec::with_capacity(jobs.len());
    for job in jobs {
        let answer = match job {
            Write::Fence => sqlx::query_scalar(
                "UPDATE fence_seq SET value = value + 1 WHERE id = 1 RETURNING value",
            )
            .fetch_one(&mut *tx)
            .await
            .db()
            .map(Written::Fence)
            .map_err(Broken),
            Write::Change(c) => in_savepoint(&mut tx, &c.change()).await,
            Write::Records(b) => records_in_savepoint(&mut tx, b).await,
        };
        match answer {
            Ok(a) => answers.push(Ok(a)),
            // The transaction is broken: nothing of the batch will commit.
            Err(Broken(e)) => {
                let _ = tx.rollback().await;
                return failed(&e);
            }
            Err(Refused(e)) => answers.push(Err(e)),
        }
    }
    if let Err(e) = tx.commit().await.db() {
        return failed(&e);
    }
    answers
}

/// Why a write of a batch has no commit to wait for.
enum Failed {
    /// Its own answer (a refusal): the batch goes on.
    Refused(DomainError),
    /// The transaction cannot go on.
    Broken(DomainError),
}
use Failed::{Broken, Refused};

impl From<DomainError> for Failed {
    fn from(e: DomainError) -> Failed {
        Broken(e)
    }
}

/// One change in its own savepoint: released when it is made, rolled back when it is refused.
async fn in_savepoint(
    tx: &mut Transaction<'static, Sqlite>,
    c: &FileChange<'_>,
) -> std::result::Result<Written, Failed> {
    let mut sp = sqlx::Connection::begin(&mut **tx).await.db()?;
    match apply_change(&mut sp, c).await {
        Ok(done) => {
            sp.commit().await.db()?;
            Ok(Written::Change(done))
        }
        Err(e) => {
            sp.rollback().await.db()?;
            Err(Refused(e))
        }
    }
}

/// A batch of records in its own savepoint: all of it is written (records already present
/// skipped) or, when a statement fails, none of it, and the other writes go on.
async fn records_in_savepoint(
    tx: &mut Transaction<'static, Sqlite>,
    b: &OutboxBatch,
) -> std::result::Result<Written, Failed> {
    let mut sp = sqlx::Connection::begin(&mut **tx).await.db()?;
    let at = ts(now());
    let written: Result<()> = async {
        for s in &b.steps {
            insert_step_at(&mut sp, s).await?;
        }
        for a in &b.audits {
            insert_audit_at(&mut sp, a).await?;
        }
        for d in &b.dead {
            insert_dead_at(&mut sp, d, &at).await?;
        }
        Ok(())
    }
    .await;
    match written {
        Ok(()) => {
            sp.commit().await.db()?;
            Ok(Written::Records)
        }
        Err(e) => {
            sp.rollback().await.db()?;
            Err(Refused(e))
        }
    }
}

/// One conditional file change inside the batch's transaction (in its own savepoint, which
/// the caller releases or rolls back): reads the row, decides, writes the row, its revision
/// and its audit record. A refusal may have written (a quota is checked after the change):
/// rolling the savepoint back undoes it.
async fn apply_change(conn: &mut SqliteConnection, c: &FileChange<'_>) -> Result<Committed> {
    let at = now();
    let at_text = ts(at);
    let cur: Option<Current> = sqlx::query(
        "SELECT version, deleted, last_fence, size FROM files WHERE task_id = ?1 AND path = ?2",
    )
    .bind(c.task.as_str())
    .bind(c.path.as_str())
    .fetch_optional(&mut *conn)
    .await
    .db()?
    .map(|r| {
        Ok::<_, DomainError>(Current {
            version: r.try_get("version").db()?,
            deleted: r.try_get("deleted").db()?,
            last_fence: r.try_get("last_fence").db()?,
            size: r.try_get("size").db()?,
        })
    })
    .transpose()?;
    // The fence order, and the fence rule's part 3 (a blind change of a file written
    // under a lease needs a lease or a condition), as in Postgres's statements.
    let fence_ok =
        |cur: &Current| c.fence.is_none_or(|f| f >= cur.last_fence) && c.lease_ok(cur.last_fence);
    // The same two paths as Postgres's statements: create-or-replace (no expected version,
    // or 0: only over a missing or deleted file), or change a live file (deletes, and
    // writes at an expected version).
    let update_path = matches!(
        (c.op, c.expected_version),
        (RevisionOp::Delete, _) | (_, Some(1..))
    );
    let allowed = match &cur {
        None => !update_path,
        Some(cur) if update_path => {
            !cur.deleted && c.expected_version.is_none_or(|e| e == cur.version) && fence_ok(cur)
        }
        Some(cur) => {
            (c.expected_version.is_none() || (c.expected_version == Some(0) && cur.deleted))
                && fence_ok(cur)
        }
    };
    if !allowed {
        return Err(c.refusal(cur.as_ref().map(|r| (r.version, r.deleted, r.last_fence))));
    }
    let deleted = c.op == RevisionOp::Delete;
    let version: i64 = match &cur {
        None => {
            sqlx::query(
                "INSERT INTO files (task_id, path, version, content, sha256, size, updated_by,
                                    updated_at, last_fence, deleted)
                 VALUES (?1, ?2, 1, ?3, ?4, ?5, ?6, ?7, ?8, 0)",
            )
            .bind(c.task.as_str())
            .bind(c.path.as_str())
            .bind(c.content)
            .bind(c.sha256)
            .bind(c.size)
            .bind(c.agent)
            .bind(&at_text)
            .bind(c.fence.unwrap_or(0))
            .execute(&mut *conn)
            .await
            .db()?;
            1
        }
        Some(_) => sqlx::query_scalar(
            "UPDATE files SET
                version = version + 1, content = ?3, sha256 = ?4, size = ?5, updated_by = ?6,
                updated_at = ?7, last_fence = max(last_fence, ?8), deleted = ?9
             WHERE task_id = ?1 AND path = ?2
             RETURNING version",
        )
        .bind(c.task.as_str())
        .bind(c.path.as_str())
        .bind(c.content)
        .bind(c.sha256)
        .bind(c.size)
        .bind(c.agent)
        .bind(&at_text)
        .bind(c.fence.unwrap_or(0))
        .bind(deleted)
        .fetch_one(&mut *conn)
        .await
        .db()?,
    };
    // Quotas: the usage triggers have counted the change; a change that grew the task
    // past a limit is rolled back (shrinking changes always pass).
    let (old_files, old_bytes) = match &cur {
        Some(cur) if !cur.deleted => (1, cur.size),
        _ => (0, 0),
    };
    let (new_files, new_bytes) = if deleted { (0, 0) } else { (1, c.size) };
    let (d_files, d_bytes) = (new_files - old_files, new_bytes - old_bytes);
    let check_files = c.max_task_files.filter(|_| d_files > 0);
    let check_bytes = c.max_task_bytes.filter(|_| d_bytes > 0);
    if check_files.is_some() || check_bytes.is_some() {
        let (files, bytes): (i64, i64) =
            sqlx::query_as("SELECT files, bytes FROM task_usage WHERE task_id = ?1")
                .bind(c.task.as_str())
                .fetch_optional(&mut *conn)
                .await
                .db()?
                .unwrap_or((0, 0));
        let over = match (check_files, check_bytes) {
            (Some(limit), _) if files > limit => Some(("files", limit)),
            (_, Some(limit)) if bytes > limit => Some(("bytes", limit)),
            _ => None,
        };
        if let Some((what, limit)) = over {
            return Err(DomainError::QuotaExceeded {
                what: what.to_owned(),
                limit,
            });
        }
    }
    // A write's and an edit's revision keep the full content, size and hash (an edit
    // its diff too); a delete's none.
    sqlx::query(
        "INSERT INTO file_revisions (task_id, path, version, op, agent_id, fence, content,
                                     diff, created_at, sha256, size)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )
    .bind(c.task.as_str())
    .bind(c.path.as_str())
    .bind(version)
    .bind(c.op.as_str())
    .bind(c.agent)
    .bind(c.fence)
    .bind((!deleted).then_some(c.content))
    .bind(c.diff)
    .bind(&at_text)
    .bind((!deleted).then_some(c.sha256))
    .bind((!deleted).then_some(c.size))
    .execute(&mut *conn)
    .await
    .db()?;
    sqlx::query(INSERT_AUDIT)
        .bind(&at_text)
        .bind(c.agent)
        .bind(c.op.audit_action())
        .bind(c.task.as_str())
        .bind(c.path.as_str())
        .bind(version)
        .bind(c.fence)
        .bind(c.request_id)
        .execute(&mut *conn)
        .await
        .db()?;
    Ok(Committed {
        version,
        updated_at: at,
    })
}

impl SqliteStore {
    /// Opens (creating when missing: the parent directories, the file) the database at
    /// `cfg.path`. The schema is applied by [`DurableOps::migrate`].
    pub async fn open(cfg: &SqliteConfig) -> Result<SqliteStore> {
        if let Some(dir) = cfg.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| DomainError::Unavailable {
                    backend: "sqlite",
                    cause: format!("cannot create {}: {e}", dir.display()),
                })?;
        }
        let base = SqliteConnectOptions::new()
            .filename(&cfg.path)
            .busy_timeout(cfg.busy_timeout);
        // synchronous=FULL (the default): with WAL, every commit syncs the log to disk before it is
        // acknowledged, so a change a client was told is committed survives a power loss or an
        // OS crash, as with Postgres (`synchronous_commit = on`). NORMAL would only survive a
        // crash of this process and could roll back the last acknowledged versions, which the
        // clients (and versions that "only grow") cannot tell apart from a lost write. The price
        // is one fsync per write transaction; writes here are per tool call, not per byte.
        let writer_opts = base
            .clone()
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(if cfg.sync_every_commit {
                SqliteSynchronous::Full
            } else {
                SqliteSynchronous::Normal
            });
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(cfg.busy_timeout)
            .connect_with(writer_opts)
            .await
            .db()?;
        // The journal mode is stored in the file (set by the writer above); readers only read.
        let reader_opts = base.pragma("query_only", "ON");
        let reader = SqlitePoolOptions::new()
            .max_connections(cfg.max_connections.max(1))
            .acquire_timeout(cfg.busy_timeout)
            .connect_lazy_with(reader_opts);
        let writes = Batcher::new("sqlite", MAX_BATCH, writer.clone(), commit_batch);
        Ok(SqliteStore {
            writer,
            writes,
            reader,
            changes: Arc::new(watch::Sender::new(0)),
        })
    }

    /// The writer pool (one connection), for an operator's or a test's own statements.
    /// Changes made through it do not wake change listeners.
    pub fn pool(&self) -> &SqlitePool {
        &self.writer
    }

    /// Closes both pools (waits for the connections in use to return).
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }

    /// Queues a write for the next batch and waits for its answer.
    async fn write(&self, w: Write) -> Result<Written> {
        self.writes
            .submit(w)
            .await
            .unwrap_or_else(|| Err(DomainError::internal("sqlite: the write batch failed")))
    }

    /// A write transaction holding the write lock from its start.
    async fn begin(&self) -> Result<Transaction<'static, Sqlite>> {
        self.writer.begin_with("BEGIN IMMEDIATE").await.db()
    }

    /// Wakes the change listeners (after a commit that touched tasks or agents).
    fn notify(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }
}

#[async_trait]
impl DurableOps for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn shared(&self) -> bool {
        false
    }

    async fn migrate(&self) -> Result<()> {
        MIGRATOR.run(&self.writer).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) => DomainError::from_sqlite(e),
            other => DomainError::internal(format!("migration: {other}")),
        })
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await.db()?;
        Ok(())
    }

    /// A new fence, drawn in a batch with the writes that arrive while the previous batch
    /// commits ([`Write`]): answered only once committed, so a fence handed out is never
    /// handed out again after a crash.
    async fn next_fence(&self) -> Result<i64> {
        match self.write(Write::Fence).await? {
            Written::Fence(fence) => Ok(fence),
            _ => Err(DomainError::internal(
                "sqlite: a fence answered another write",
            )),
        }
    }

    /// Applies a conditional file change, in a batch with the writes that arrive while the
    /// previous batch commits ([`Write`]).
    async fn change_file(&self, c: &FileChange<'_>) -> Result<Committed> {
        no_nul([
            Some(c.task.as_str()),
            Some(c.path.as_str()),
            Some(c.content),
            Some(c.sha256),
            Some(c.agent),
            c.diff,
            c.request_id,
        ])?;
        match self
            .write(Write::Change(Box::new(OwnedChange::of(c))))
            .await?
        {
            Written::Change(done) => Ok(done),
            _ => Err(DomainError::internal(
                "sqlite: a change answered another write",
            )),
        }
    }

    fn group_commit_stats(&self) -> GroupCommitStats {
        self.writes.stats()
    }

    async fn file(&self, task: &TaskId, path: &FilePath) -> Result<Option<StoredFile>> {
        let row = sqlx::query(
            "SELECT version, content, sha256, size, updated_by, updated_at, deleted
             FROM files WHERE task_id = ?1 AND path = ?2",
        )
        .bind(task.as_str())
        .bind(path.as_str())
        .fetch_optional(&self.reader)
        .await
        .db()?;
        row.map(|r| {
            Ok(StoredFile {
                version: r.try_get("version").db()?,
                content: r.try_get("content").db()?,
                sha256: r.try_get("sha256").db()?,
                size: r.try_get("size").db()?,
                updated_by: r.try_get("updated_by").db()?,
                updated_at: r.try_get("updated_at").db()?,
                deleted: r.try_get("deleted").db()?,
            })
        })
        .transpose()
    }

    async fn revisions(
        &self,
        task: &TaskId,
        path: &FilePath,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<StoredRevision>> {
        let rows = sqlx::query(
            "SELECT version, op, agent_id, fence, size, sha256, created_at,
                    NULL AS content, NULL AS diff
             FROM file_revisions
             WHERE task_id = ?1 AND path = ?2 AND (?3 IS NULL OR version < ?3)
             ORDER BY version DESC LIMIT ?4",
        )
        .bind(task.as_str())
        .bind(path.as_str())
        .bind(before)
        .bind(limit as i64)
        .fetch_all(&self.reader)
        .await
        .db()?;
        rows.iter().map(revision_from_row).collect()
    }

    async fn revision_chain(
        &self,
        task: &TaskId,
        path: &FilePath,
        version: i64,
        limit: usize,
    ) -> Result<Vec<StoredRevision>> {
        let rows = sqlx::query(
            "SELECT version, op, agent_id, fence, size, sha256, created_at, content, diff
             FROM file_revisions
             WHERE task_id = ?1 AND path = ?2 AND version <= ?3
               AND version >= COALESCE((
                   SELECT max(version) FROM file_revisions
                   WHERE task_id = ?1 AND path = ?2 AND version <= ?3
                     AND (content IS NOT NULL OR op <> 'edit')), 1)
             ORDER BY version DESC LIMIT ?4",
        )
        .bind(task.as_str())
        .bind(path.as_str())
        .bind(version)
        .bind(limit as i64)
        .fetch_all(&self.reader)
        .await
        .db()?;
        rows.iter().map(revision_from_row).collect()
    }

    async fn list_files(&self, task: &TaskId, prefix: Option<&FilePath>) -> Result<Vec<FileInfo>> {
        let rows = sqlx::query(
            "SELECT path, version, size, sha256, updated_by, updated_at FROM files
             WHERE task_id = ?1 AND NOT deleted
               AND (?2 IS NULL OR path = ?2 OR substr(path, 1, length(?2) + 1) = ?2 || '/')
             ORDER BY path",
        )
        .bind(task.as_str())
        .bind(prefix.map(FilePath::as_str))
        .fetch_all(&self.reader)
        .await
        .db()?;
        rows.iter()
            .map(|r| {
                Ok(FileInfo {
                    path: r.try_get("path").db()?,
                    version: r.try_get("version").db()?,
                    size: r.try_get("size").db()?,
                    sha256: r.try_get("sha256").db()?,
                    updated_by: r.try_get("updated_by").db()?,
                    updated_at: r.try_get("updated_at").db()?,
                })
            })
            .collect()
    }

    async fn task(&self, task: &TaskId) -> Result<Option<TaskRow>> {
        let row = sqlx::query(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?1"))
            .bind(task.as_str())
            .fetch_optional(&self.reader)
            .await
            .db()?;
        row.as_ref().map(task_row_from).transpose()
    }

    async fn task_ids(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        no_nul([after])?;
        sqlx::query_scalar("SELECT id FROM tasks WHERE id > ?1 ORDER BY id LIMIT ?2")
            .bind(after.unwrap_or(""))
            .bind(limit as i64)
            .fetch_all(&self.reader)
            .await
            .db()
    }

    async fn create_task(
        &self,
        id: &TaskId,
        req: &CreateTaskRequest,
        actor: &str,
        request_id: Option<&str>,
    ) -> Result<TaskRow> {
        no_nul([
            Some(id.as_str()),
            Some(req.title.as_str()),
            req.description.as_deref(),
            req.status.as_deref(),
            req.assigned_agent_id.as_deref(),
            Some(actor),
            request_id,
        ])?;
        let mut tx = self.begin().await?;
        let at = ts(now());
        sqlx::query(
            "INSERT INTO tasks (id, title, description, status, assigned_agent_id, complexity,
                                created_at, updated_at)
             VALUES (?1, ?2, ?3, COALESCE(?4, 'pending'), ?5, ?6, ?7, ?7)",
        )
        .bind(id.as_str())
        .bind(&req.title)
        .bind(&req.description)
        .bind(&req.status)
        .bind(&req.assigned_agent_id)
        .bind(req.complexity)
        .bind(&at)
        .execute(&mut *tx)
        .await
        .map_err(|e| match e {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                DomainError::TaskExists(id.to_string())
            }
            other => DomainError::from_sqlite(other),
        })?;
        let task = task_in(&mut tx, id).await?;
        audit_row(
            &mut tx,
            &at,
            actor,
            "task_create",
            id.as_str(),
            None,
            None,
            None,
            request_id,
        )
        .await?;
        tx.commit().await.db()?;
        self.notify();
        Ok(task)
    }

    async fn update_task(
        &self,
        id: &TaskId,
        req: &UpdateTaskRequest,
        actor: &str,
        request_id: Option<&str>,
    ) -> Result<Option<TaskRow>> {
        no_nul([
            Some(id.as_str()),
            req.title.as_deref(),
            req.description.as_ref().and_then(Option::as_deref),
            req.status.as_deref(),
            req.assigned_agent_id.as_ref().and_then(Option::as_deref),
            Some(actor),
            request_id,
        ])?;
        let mut tx = self.begin().await?;
        let at = ts(now());
        let changed = sqlx::query(
            "UPDATE tasks SET
                title = COALESCE(?2, title),
                description = CASE WHEN ?3 THEN ?4 ELSE description END,
                status = COALESCE(?5, status),
                assigned_agent_id = CASE WHEN ?6 THEN ?7 ELSE assigned_agent_id END,
                complexity = CASE WHEN ?8 THEN ?9 ELSE complexity END,
                updated_at = ?10
             WHERE id = ?1",
        )
        .bind(id.as_str())
        .bind(&req.title)
        .bind(req.description.is_some())
        .bind(req.description.clone().flatten())
        .bind(&req.status)
        .bind(req.assigned_agent_id.is_some())
        .bind(req.assigned_agent_id.clone().flatten())
        .bind(req.complexity.is_some())
        .bind(req.complexity.flatten())
        .bind(&at)
        .execute(&mut *tx)
        .await
        .db()?;
        let task = if changed.rows_affected() > 0 {
            Some(task_in(&mut tx, id).await?)
        } else {
            None
        };
        if task.is_some() {
            audit_row(
                &mut tx,
                &at,
                actor,
                "task_update",
                id.as_str(),
                None,
                None,
                None,
                request_id,
            )
            .await?;
        }
        tx.commit().await.db()?;
        self.notify();
        Ok(task)
    }

    async fn join(
        &self,
        task: &TaskId,
        agent: &str,
        request_id: Option<&str>,
    ) -> Result<DateTime<Utc>> {
        no_nul([Some(task.as_str()), Some(agent), request_id])?;
        let mut tx = self.begin().await?;
        let at = ts(now());
        let joined: DateTime<Utc> = sqlx::query_scalar(
            "INSERT INTO collaborators (task_id, agent_id, joined_at, last_active)
             VALUES (?1, ?2, ?3, ?3)
             ON CONFLICT (task_id, agent_id) DO UPDATE SET
                 joined_at = CASE WHEN left_at IS NULL THEN joined_at ELSE excluded.joined_at END,
                 last_active = excluded.last_active, left_at = NULL
             RETURNING joined_at",
        )
        .bind(task.as_str())
        .bind(agent)
        .bind(&at)
        .fetch_one(&mut *tx)
        .await
        .db()?;
        sqlx::query(
            "INSERT INTO agents (id, current_task_id, last_seen, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?3, ?3)
             ON CONFLICT (id) DO UPDATE SET current_task_id = excluded.current_task_id,
                 last_seen = excluded.last_seen, updated_at = excluded.updated_at",
        )
        .bind(agent)
        .bind(task.as_str())
        .bind(&at)
        .execute(&mut *tx)
        .await
        .db()?;
        audit_row(
            &mut tx,
            &at,
            agent,
            "join_collab",
            task.as_str(),
            None,
            None,
            None,
            request_id,
        )
        .await?;
        tx.commit().await.db()?;
        self.notify();
        Ok(joined)
    }

    async fn leave(&self, task: &TaskId, agent: &str, request_id: Option<&str>) -> Result<bool> {
        no_nul([Some(task.as_str()), Some(agent), request_id])?;
        let mut tx = self.begin().await?;
        let at = ts(now());
        let left: Option<String> = sqlx::query_scalar(
            "UPDATE collaborators SET left_at = ?3, last_active = ?3
             WHERE task_id = ?1 AND agent_id = ?2 AND left_at IS NULL
             RETURNING agent_id",
        )
        .bind(task.as_str())
        .bind(agent)
        .bind(&at)
        .fetch_optional(&mut *tx)
        .await
        .db()?;
        // As in Postgres: the agent's presence and the audit record, member or not.
        sqlx::query("UPDATE agents SET last_seen = ?2, updated_at = ?2 WHERE id = ?1")
            .bind(agent)
            .bind(&at)
            .execute(&mut *tx)
            .await
            .db()?;
        audit_row(
            &mut tx,
            &at,
            agent,
            "leave_collab",
            task.as_str(),
            None,
            None,
            None,
            request_id,
        )
        .await?;
        tx.commit().await.db()?;
        self.notify();
        Ok(left.is_some())
    }

    async fn collaborators(&self, task: &TaskId) -> Result<Vec<Collaborator>> {
        let rows: Vec<(String, DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
            "SELECT agent_id, joined_at, last_active FROM collaborators
             WHERE task_id = ?1 AND left_at IS NULL ORDER BY joined_at, agent_id",
        )
        .bind(task.as_str())
        .fetch_all(&self.reader)
        .await
        .db()?;
        Ok(rows
            .into_iter()
            .map(|(agent_id, joined_at, last_active)| Collaborator {
                agent_id,
                joined_at,
                last_active,
            })
            .collect())
    }

    async fn agent(&self, agent: &str) -> Result<Option<Presence>> {
        no_nul([Some(agent)])?;
        let row: Option<(Option<DateTime<Utc>>, Option<String>)> =
            sqlx::query_as("SELECT last_seen, current_task_id FROM agents WHERE id = ?1")
                .bind(agent)
                .fetch_optional(&self.reader)
                .await
                .db()?;
        let Some((last_seen, current)) = row else {
            return Ok(None);
        };
        let tasks: Vec<String> = sqlx::query_scalar(
            "SELECT task_id FROM collaborators WHERE agent_id = ?1 AND left_at IS NULL
             ORDER BY task_id",
        )
        .bind(agent)
        .fetch_all(&self.reader)
        .await
        .db()?;
        Ok(Some(Presence {
            last_seen,
            task: current,
            tasks,
        }))
    }

    async fn audit(&self, q: &AuditFilter<'_>) -> Result<Vec<AuditEntry>> {
        no_nul([q.task, q.agent, q.action])?;
        if q.limit < 0 {
            // Postgres refuses a negative LIMIT; SQLite would read it as "no limit".
            return Err(DomainError::internal("sqlite: LIMIT must not be negative"));
        }
        no_nul(q.tasks_in.into_iter().flatten().map(|t| Some(t.as_str())))?;
        let tasks_in = q
            .tasks_in
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| DomainError::internal(format!("sqlite: json: {e}")))?;
        let rows = sqlx::query(
            "SELECT id, at, actor, action, task_id, path, version, fence, request_id
             FROM audit_log
             WHERE (?1 IS NULL OR task_id = ?1)
               AND (?2 IS NULL OR task_id IN (SELECT value FROM json_each(?2)))
               AND (?3 IS NULL OR actor = ?3)
               AND (?4 IS NULL OR action = ?4)
               AND (?5 IS NULL OR at >= ?5)
               AND (?6 IS NULL OR id < ?6)
             ORDER BY id DESC LIMIT ?7",
        )
        .bind(q.task)
        .bind(tasks_in)
        .bind(q.agent)
        .bind(q.action)
        .bind(q.since.map(ts))
        .bind(q.before_id)
        .bind(q.limit)
        .fetch_all(&self.reader)
        .await
        .db()?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    id: r.try_get("id").db()?,
                    at: r.try_get("at").db()?,
                    actor: r.try_get("actor").db()?,
                    action: r.try_get("action").db()?,
                    task_id: r.try_get("task_id").db()?,
                    path: r.try_get("path").db()?,
                    version: r.try_get("version").db()?,
                    fence: r.try_get("fence").db()?,
                    request_id: r.try_get("request_id").db()?,
                })
            })
            .collect()
    }

    async fn steps_before(
        &self,
        task: &TaskId,
        before: Option<StreamId>,
        limit: usize,
    ) -> Result<Vec<PersistedStep>> {
        let (ms, seq) = before.map_or((i64::MAX, i64::MAX), stream_id_columns);
        let rows: Vec<(i64, i64, String)> = sqlx::query_as(
            "SELECT id_ms, id_seq, step FROM step_logs
             WHERE task_id = ?1 AND (id_ms, id_seq) < (?2, ?3)
             ORDER BY id_ms DESC, id_seq DESC LIMIT ?4",
        )
        .bind(task.as_str())
        .bind(ms)
        .bind(seq)
        .bind(limit as i64)
        .fetch_all(&self.reader)
        .await
        .db()?;
        rows.into_iter()
            .map(|(ms, seq, step)| {
                let id = stream_id_of_columns(ms, seq);
                let step = serde_json::from_str(&step).map_err(|e| {
                    DomainError::internal(format!("sqlite: step {id} is not JSON: {e}"))
                })?;
                Ok(PersistedStep { id, step })
            })
            .collect()
    }

    async fn list_tasks(&self, q: &TaskListFilter<'_>) -> Result<(Vec<TaskSummary>, i64)> {
        no_nul([q.text, q.status, q.agent, q.after.map(|a| a.1)])?;
        no_nul(q.tasks_in.into_iter().flatten().map(|t| Some(t.as_str())))?;
        // The filters, shared by the page and the count (?1–?4).
        const MATCHING: &str = "
            FROM task_activity a
            LEFT JOIN tasks t ON t.id = a.task_id
            LEFT JOIN task_usage u ON u.task_id = a.task_id
            WHERE (?1 IS NULL OR a.task_id IN (SELECT value FROM json_each(?1)))
              AND (?2 IS NULL OR a.task_id LIKE ?2 ESCAPE '\\' OR t.title LIKE ?2 ESCAPE '\\')
              AND (?3 IS NULL OR t.status = ?3)
              AND (?4 IS NULL OR t.assigned_agent_id = ?4 OR EXISTS (
                    SELECT 1 FROM collaborators c
                    WHERE c.task_id = a.task_id AND c.agent_id = ?4 AND c.left_at IS NULL))";
        let tasks_in = json_list(q.tasks_in)?;
        let text = q.text.map(contains_pattern);
        let (after_at, after_id) = q.after.unzip();
        let rows = sqlx::query(&format!(
            "SELECT a.task_id, t.title, t.status, t.assigned_agent_id, a.steps, a.first_seen,
                    a.last_activity, COALESCE(u.files, 0) AS files,
                    (SELECT json_group_array(agent_id) FROM (
                        SELECT c.agent_id FROM collaborators c
                        WHERE c.task_id = a.task_id AND c.left_at IS NULL
                        ORDER BY c.agent_id)) AS agents
             {MATCHING}
               AND (?5 IS NULL OR (a.last_activity, a.task_id) < (?5, ?6))
             ORDER BY a.last_activity DESC, a.task_id DESC LIMIT ?7"
        ))
        .bind(&tasks_in)
        .bind(&text)
        .bind(q.status)
        .bind(q.agent)
        .bind(after_at.map(ts))
        .bind(after_id)
        .bind(q.limit)
        .fetch_all(&self.reader)
        .await
        .db()?;
        let tasks = rows
            .iter()
            .map(|r| {
                Ok(TaskSummary {
                    task_id: r.try_get("task_id").db()?,
                    title: r.try_get("title").db()?,
                    status: r.try_get("status").db()?,
                    assigned_agent_id: r.try_get("assigned_agent_id").db()?,
                    agents: json_strings(r.try_get("agents").db()?)?,
                    // Leases are the hot store's: `Service::list_tasks` counts them.
                    lease_count: 0,
                    file_count: r.try_get("files").db()?,
                    step_count: r.try_get("steps").db()?,
                    first_seen: r.try_get("first_seen").db()?,
                    last_activity: r.try_get("last_activity").db()?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let total: i64 = sqlx::query_scalar(&format!("SELECT count(*) {MATCHING}"))
            .bind(&tasks_in)
            .bind(&text)
            .bind(q.status)
            .bind(q.agent)
            .fetch_one(&self.reader)
            .await
            .db()?;
        Ok((tasks, total))
    }

    async fn list_agents(&self, q: &AgentListFilter<'_>) -> Result<(Vec<AgentActivity>, i64)> {
        no_nul([q.text, q.task, q.after.map(|a| a.1)])?;
        no_nul(q.tasks_in.into_iter().flatten().map(|t| Some(t.as_str())))?;
        // An agent is on a task when it is in its session or last acted on it.
        const MATCHING: &str = "
            FROM agent_activity g
            WHERE (?1 IS NULL OR g.agent_id LIKE ?1 ESCAPE '\\')
              AND (?2 IS NULL OR g.last_task IN (SELECT value FROM json_each(?2)) OR EXISTS (
                    SELECT 1 FROM collaborators c
                    WHERE c.agent_id = g.agent_id AND c.left_at IS NULL
                      AND c.task_id IN (SELECT value FROM json_each(?2))))
              AND (?3 IS NULL OR g.last_task = ?3 OR EXISTS (
                    SELECT 1 FROM collaborators c
                    WHERE c.agent_id = g.agent_id AND c.task_id = ?3 AND c.left_at IS NULL))";
        let tasks_in = json_list(q.tasks_in)?;
        let text = q.text.map(contains_pattern);
        let (after_at, after_id) = q.after.unzip();
        let rows = sqlx::query(&format!(
            "SELECT g.agent_id, g.last_seen, g.last_task, g.last_action,
                    (SELECT json_group_array(task_id) FROM (
                        SELECT c.task_id FROM collaborators c
                        WHERE c.agent_id = g.agent_id AND c.left_at IS NULL
                        ORDER BY c.task_id)) AS tasks
             {MATCHING}
               AND (?4 IS NULL OR (g.last_seen, g.agent_id) < (?4, ?5))
             ORDER BY g.last_seen DESC, g.agent_id DESC LIMIT ?6"
        ))
        .bind(&text)
        .bind(&tasks_in)
        .bind(q.task)
        .bind(after_at.map(ts))
        .bind(after_id)
        .bind(q.limit)
        .fetch_all(&self.reader)
        .await
        .db()?;
        let agents = rows
            .iter()
            .map(|r| {
                Ok(AgentActivity {
                    agent_id: r.try_get("agent_id").db()?,
                    last_seen: r.try_get("last_seen").db()?,
                    last_task: r.try_get("last_task").db()?,
                    last_action: r.try_get("last_action").db()?,
                    tasks: json_strings(r.try_get("tasks").db()?)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let total: i64 = sqlx::query_scalar(&format!("SELECT count(*) {MATCHING}"))
            .bind(&text)
            .bind(&tasks_in)
            .bind(q.task)
            .fetch_one(&self.reader)
            .await
            .db()?;
        Ok((agents, total))
    }
}

/// A list of ids as a JSON array, for `json_each` (SQLite has no array parameters).
fn json_list(ids: Option<&[String]>) -> Result<Option<String>> {
    ids.map(serde_json::to_string)
        .transpose()
        .map_err(|e| DomainError::internal(format!("sqlite: json: {e}")))
}

/// A `json_group_array` of strings, decoded.
fn json_strings(text: String) -> Result<Vec<String>> {
    serde_json::from_str(&text)
        .map_err(|e| DomainError::internal(format!("sqlite: not a JSON array of strings: {e}")))
}

/// Wakes when a commit through this store changed tasks or agents.
struct Changes {
    rx: watch::Receiver<u64>,
}

#[async_trait]
impl ChangeListener for Changes {
    async fn changed(&mut self) -> Result<()> {
        // A watch channel keeps only the newest value: a burst of changes wakes us once.
        self.rx
            .changed()
            .await
            .map_err(|_| DomainError::Unavailable {
                backend: "sqlite",
                cause: "the store was closed".into(),
            })
    }
}

#[async_trait]
impl DurableSync for SqliteStore {
    async fn persist_outbox_batch(&self, batch: &OutboxBatch) -> Result<()> {
        // Like Postgres, a NUL anywhere refuses the whole batch before anything is written.
        batch.steps.iter().try_for_each(check_step)?;
        batch.audits.iter().try_for_each(check_audit)?;
        batch.dead.iter().try_for_each(check_dead)?;
        if batch.is_empty() {
            return Ok(());
        }
        // Group commit: batches that arrive together (concurrent steps of the embedded mode)
        // share one transaction and one fsync with the file changes queued beside them.
        self.write(Write::Records(Box::new(batch.clone())))
            .await
            .map(|_| ())
    }

    async fn insert_step(&self, step: &StepRecord) -> Result<bool> {
        check_step(step)?;
        let mut tx = self.begin().await?;
        let new = insert_step_in(&mut tx, step).await?;
        tx.commit().await.db()?;
        Ok(new)
    }

    async fn insert_audit(&self, audit: &AuditRecord) -> Result<bool> {
        check_audit(audit)?;
        let mut tx = self.begin().await?;
        let new = insert_audit_in(&mut tx, audit).await?;
        tx.commit().await.db()?;
        Ok(new)
    }

    async fn insert_dead_letter(&self, dead: &DeadLetter) -> Result<bool> {
        check_dead(dead)?;
        let mut tx = self.begin().await?;
        let new = insert_dead_in(&mut tx, dead, &ts(now())).await?;
        tx.commit().await.db()?;
        Ok(new)
    }

    async fn dead_letters(&self) -> Result<Vec<DeadLetter>> {
        let rows = sqlx::query_as(DEAD_LETTERS)
            .fetch_all(&self.reader)
            .await
            .db()?;
        Ok(rows.into_iter().map(DeadLetter::from_row).collect())
    }

    /// One writer: a row not committed yet can only commit with a higher `change_seq`, so
    /// every row read is settled.
    async fn tasks_after(&self, after: FeedMark, limit: usize) -> Result<Vec<FeedRow<TaskState>>> {
        let rows = sqlx::query(&format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE change_seq > ?1
             ORDER BY change_seq LIMIT ?2"
        ))
        .bind(after.seq)
        .bind(limit as i64)
        .fetch_all(&self.reader)
        .await
        .db()?;
        rows.iter()
            .map(|r| {
                let TaskRow { state, seq } = task_row_from(r)?;
                Ok(FeedRow {
                    mark: FeedMark { xid: 0, seq },
                    settled: true,
                    row: state,
                })
            })
            .collect()
    }

    async fn agents_after(&self, after: FeedMark, limit: usize) -> Result<Vec<FeedRow<AgentRow>>> {
        let rows = sqlx::query(
            "SELECT id, current_task_id, last_seen, updated_at, change_seq
             FROM agents WHERE change_seq > ?1
             ORDER BY change_seq LIMIT ?2",
        )
        .bind(after.seq)
        .bind(limit as i64)
        .fetch_all(&self.reader)
        .await
        .db()?;
        rows.iter()
            .map(|r| {
                Ok(FeedRow {
                    mark: FeedMark {
                        xid: 0,
                        seq: r.try_get("change_seq").db()?,
                    },
                    settled: true,
                    row: AgentRow {
                        id: r.try_get("id").db()?,
                        current_task_id: r.try_get("current_task_id").db()?,
                        last_seen: r.try_get("last_seen").db()?,
                        updated_at: r.try_get("updated_at").db()?,
                    },
                })
            })
            .collect()
    }

    async fn task_deletions_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<(String, DateTime<Utc>)>> {
        sqlx::query_as(
            "SELECT d.task_id, max(d.deleted_at) AS at FROM task_deletions d
             WHERE d.deleted_at > ?1
               AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.id = d.task_id)
             GROUP BY d.task_id ORDER BY at",
        )
        .bind(ts(since))
        .fetch_all(&self.reader)
        .await
        .db()
    }

    async fn prune_task_deletions(&self, before: DateTime<Utc>) -> Result<u64> {
        Ok(
            sqlx::query("DELETE FROM task_deletions WHERE deleted_at < ?1")
                .bind(ts(before))
                .execute(&self.writer)
                .await
                .db()?
                .rows_affected(),
        )
    }

    async fn listen_changes(&self) -> Result<Box<dyn ChangeListener>> {
        Ok(Box::new(Changes {
            rx: self.changes.subscribe(),
        }))
    }

    async fn db_now(&self) -> Result<DateTime<Utc>> {
        Ok(now())
    }
}

#[cfg(test)]
mod tests;
