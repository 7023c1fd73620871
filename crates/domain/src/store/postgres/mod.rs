//! The durable store: PostgreSQL, the source of truth. Kept here: files and every revision,
//! tasks, agents, collaboration membership, persisted step logs, the audit log, and the
//! fence sequence. File changes are committed in groups ([`super::group`]): concurrent changes
//! go to Postgres in one call of `mcp_change_files` (one transaction, one WAL flush), which
//! applies each in its own subtransaction: its conditional upsert, its revision and its audit
//! record commit together or not at all, its version, fence and quota checks run inside the
//! database (no read-then-write race), and its refusal is its own. A batch that fails as a
//! whole is retried (a deadlock with another process's batch) or its changes are made one by
//! one (the one-statement CTEs below), so one change can never fail another.

use super::durable::{
    AgentActivity, AgentListFilter, AuditFilter, Committed, DurableOps, FileChange, PersistedStep,
    Presence, RevisionOp, StoredFile, StoredRevision, TaskListFilter, TaskRow, contains_pattern,
    stream_id_columns, stream_id_of_columns,
};
use super::group::{Batcher, GroupCommitStats, OwnedChange, for_each_job};
use crate::error::{DomainError, Result};
use crate::ids::TaskId;
use crate::path::FilePath;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mcp_api::StreamId;
use mcp_api::requests::{CreateTaskRequest, UpdateTaskRequest};
use mcp_api::responses::{AuditEntry, Collaborator, FileInfo, TaskState, TaskSummary};
use serde_json::Value;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgPool, Postgres, Row};
use std::str::FromStr;
use std::time::{Duration, Instant};

pub mod hosts;
mod messages;
pub mod sync;

use hosts::PgTargets;
use std::sync::Arc;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// How to reach Postgres.
#[derive(Debug, Clone)]
pub struct PgConfig {
    /// `DATABASE_URL`, possibly with several hosts (see `hosts.rs`).
    pub url: String,
    /// Upper bound of the pool's connections.
    pub max_connections: u32,
    /// How long a request waits for a pooled connection before failing as `unavailable`.
    pub acquire_timeout: Duration,
}

/// The revision and audit rows written with every file change. A write's and an edit's
/// revision keep the full content (with size and hash; an edit its diff too), a delete's none.
const CHANGE_TAIL: &str = "
, rev AS (
    INSERT INTO file_revisions (task_id, path, version, op, agent_id, fence, content, diff,
                                sha256, size)
    SELECT $1, $2, version, $9, $6, $7, CASE WHEN $9 <> 'delete' THEN $3 END, $10,
           CASE WHEN $9 <> 'delete' THEN $4 END, CASE WHEN $9 <> 'delete' THEN $5::bigint END
    FROM up
), aud AS (
    INSERT INTO audit_log (actor, action, task_id, path, version, fence, request_id)
    SELECT $6, $11, $1, $2, version, $7, $12 FROM up
)
SELECT version, updated_at FROM up";

/// The quota settings the usage trigger reads, local to this statement's transaction. Every
/// change statement reads a row of `cfg`, so the settings are in place before its row changes.
const QUOTA_CFG: &str = "
WITH cfg AS (
    SELECT set_config('mcp.max_task_files', COALESCE($13::bigint::text, ''), true) AS f,
           set_config('mcp.max_task_bytes', COALESCE($14::bigint::text, ''), true) AS b
)";

/// Create or replace (`expected_version` absent or 0).
const UPSERT_FILE: &str = "
, up AS (
    INSERT INTO files AS f (task_id, path, version, content, sha256, size, updated_by, updated_at,
                            last_fence, deleted)
    SELECT $1, $2, 1, $3, $4, $5, $6, now(), COALESCE($7, 0), false FROM cfg
    ON CONFLICT (task_id, path) DO UPDATE SET
        version = f.version + 1, content = EXCLUDED.content, sha256 = EXCLUDED.sha256,
        size = EXCLUDED.size, updated_by = EXCLUDED.updated_by, updated_at = now(),
        last_fence = GREATEST(f.last_fence, EXCLUDED.last_fence), deleted = false
    WHERE ($8::bigint IS NULL OR ($8 = 0 AND f.deleted))
      AND ($7::bigint IS NULL OR $7 >= f.last_fence)
      AND ($7::bigint IS NOT NULL OR $8::bigint IS NOT NULL OR f.last_fence <= 0)
    RETURNING f.version, f.updated_at
)";

/// Change an existing, live file (at `expected_version` when given); also used for deletes.
const UPDATE_FILE: &str = "
, up AS (
    UPDATE files f SET
        version = f.version + 1, content = $3, sha256 = $4, size = $5, updated_by = $6,
        updated_at = now(), last_fence = GREATEST(f.last_fence, COALESCE($7, 0)),
        deleted = ($9 = 'delete')
    FROM cfg
    WHERE f.task_id = $1 AND f.path = $2 AND NOT f.deleted
      AND ($8::bigint IS NULL OR f.version = $8)
      AND ($7::bigint IS NULL OR $7 >= f.last_fence)
      AND ($7::bigint IS NOT NULL OR $8::bigint IS NOT NULL OR f.last_fence <= 0)
    RETURNING f.version, f.updated_at
)";

/// The usage trigger's refusal (SQLSTATE `MCPQ1`, message `files`/`bytes`, detail = the limit)
/// becomes `QuotaExceeded`; any other error is classified as usual.
fn quota_error(e: sqlx::Error) -> DomainError {
    let sqlx::Error::Database(db) = &e else {
        return e.into();
    };
    if db.code().as_deref() == Some("MCPQ1") {
        let limit = db
            .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
            .and_then(|pg| pg.detail())
            .and_then(|d| d.parse().ok())
            .unwrap_or(0);
        return DomainError::QuotaExceeded {
            what: db.message().to_owned(),
            limit,
        };
    }
    e.into()
}

const TASK_COLUMNS: &str = "id, title, description, status, assigned_agent_id, complexity, \
                            created_at, updated_at, change_seq";

pub(super) fn task_from_row(r: &sqlx::postgres::PgRow) -> Result<TaskState> {
    Ok(TaskState {
        id: r.try_get("id")?,
        title: r.try_get("title")?,
        description: r.try_get("description")?,
        status: r.try_get("status")?,
        assigned_agent_id: r.try_get("assigned_agent_id")?,
        complexity: r.try_get("complexity")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// A task row with its change number (a query selecting [`TASK_COLUMNS`]).
pub(super) fn task_row_from(r: &sqlx::postgres::PgRow) -> Result<TaskRow> {
    Ok(TaskRow {
        state: task_from_row(r)?,
        seq: r.try_get("change_seq")?,
    })
}

fn revision_from_row(r: &sqlx::postgres::PgRow) -> Result<StoredRevision> {
    let op: String = r.try_get("op")?;
    Ok(StoredRevision {
        version: r.try_get("version")?,
        op: RevisionOp::parse(&op)
            .ok_or_else(|| DomainError::internal(format!("revision op {op:?}")))?,
        agent_id: r.try_get("agent_id")?,
        fence: r.try_get("fence")?,
        size: r.try_get("size")?,
        sha256: r.try_get("sha256")?,
        created_at: r.try_get("created_at")?,
        content: r.try_get("content")?,
        diff: r.try_get("diff")?,
    })
}

/// The durable store on Postgres: every SQL statement of the gateway, over one pool.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    /// With several hosts in `DATABASE_URL` (or `target_session_attrs`): what keeps the pool
    /// on the right one; its watcher ends with the last clone of the store.
    _failover: Option<Arc<hosts::Failover>>,
    /// Group commit of file changes (module docs).
    files: Arc<Batcher<OwnedChange, Result<Committed>>>,
}

/// At most this many changes per batch: each is a subtransaction, and a backend caches the
/// ids of 64 (more would slow every concurrent snapshot down).
const MAX_BATCH: usize = 64;

/// A pooled connection idle for this long is pinged before it is handed out
/// ([`PgStore::connect`]); one used more recently is not.
const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

/// How often a batch that met a deadlock (with another gateway's batch) is tried again
/// before its changes are answered `unavailable`.
const BATCH_ATTEMPTS: usize = 3;

/// The connection the batches of file changes go through, kept from one batch to the next
/// (batches run one at a time): taking a connection from the pool and giving it back cost a
/// ping each way (sqlx tests a connection it takes back), a round trip and a few thousand
/// instructions a batch (issue #19). One kept idle for `PING_AFTER_IDLE` is pinged before it
/// is used again, and replaced when it does not answer; one whose batch failed goes back to
/// the pool, and so does one kept for `KEEP_FOR` (the pool's rules — its lifetime, the host
/// it connects to — then apply to it again).
struct Writer {
    pool: PgPool,
    kept: std::sync::Mutex<Option<Kept>>,
    /// How long one connection is kept (`KEEP_FOR`).
    keep_for: Duration,
}

/// The kept connection, when it was taken from the pool and when it was last used.
struct Kept {
    conn: PoolConnection<Postgres>,
    taken: Instant,
    used: Instant,
}

/// How long the batches keep one connection before giving it back to the pool.
const KEEP_FOR: Duration = Duration::from_secs(60);

impl Writer {
    fn new(pool: PgPool, keep_for: Duration) -> Arc<Writer> {
        Arc::new(Writer {
            pool,
            kept: std::sync::Mutex::new(None),
            keep_for,
        })
    }

    /// The kept connection when it is sound, else one from the pool; and when it was taken
    /// from the pool.
    async fn connection(
        &self,
    ) -> std::result::Result<(PoolConnection<Postgres>, Instant), sqlx::Error> {
        let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(mut k) = kept
            && k.taken.elapsed() < self.keep_for
            && (k.used.elapsed() < PING_AFTER_IDLE || k.conn.ping().await.is_ok())
        {
            return Ok((k.conn, k.taken));
        }
        Ok((self.pool.acquire().await?, Instant::now()))
    }

    /// Keeps `conn` (taken from the pool at `taken`) for the next batch.
    fn keep(&self, conn: PoolConnection<Postgres>, taken: Instant) {
        let used = Instant::now();
        *self.kept.lock().unwrap_or_else(|p| p.into_inner()) = Some(Kept { conn, taken, used });
    }
}

/// Applies a batch of changes in one transaction (`mcp_change_files`); each answer is its
/// change's own. A batch the database refused as a whole (an error answer: nothing of it was
/// committed) is retried on a deadlock or a serialization failure, and otherwise made change
/// by change, so that whatever made it fail fails only its own change. A batch whose outcome
/// is unknown (the connection lost) is answered `unavailable`, change by change, and never
/// made again.
async fn commit_batch(writer: Arc<Writer>, jobs: Vec<OwnedChange>) -> Vec<Result<Committed>> {
    let (pool, jobs) = (&writer.pool, &jobs[..]);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let failed = match writer.connection().await {
            Ok((mut conn, taken)) => match change_files(&mut conn, jobs).await {
                Ok(answers) => {
                    writer.keep(conn, taken);
                    return answers;
                }
                // Back to the pool, which tests it as it takes it back.
                Err(e) => e,
            },
            Err(e) => e,
        };
        let refused_whole = matches!(&failed, sqlx::Error::Database(_));
        let error = DomainError::from(failed);
        match error {
            DomainError::Unavailable { .. } if refused_whole && attempt < BATCH_ATTEMPTS => {
                continue;
            }
            DomainError::Internal(_) if refused_whole => {
                tracing::warn!(changes = jobs.len(), error = %error, "file change batch refused whole; one by one");
                let mut answers = Vec::with_capacity(jobs.len());
                for job in jobs {
                    answers.push(change_one(pool, &job.change()).await);
                }
                return answers;
            }
            error => return jobs.iter().map(|_| Err(for_each_job(&error))).collect(),
        }
    }
}

/// One call of `mcp_change_files` (the migration `…_group_commit.sql`) in its own transaction:
/// an answer per change, in order.
async fn change_files(
    conn: &mut sqlx::PgConnection,
    jobs: &[OwnedChange],
) -> std::result::Result<Vec<Result<Committed>>, sqlx::Error> {
    let changes: Vec<FileChange<'_>> = jobs.iter().map(OwnedChange::change).collect();
    let col =
        |f: for<'a> fn(&'a FileChange<'a>) -> &'a str| changes.iter().map(f).collect::<Vec<&str>>();
    let opt =
        |f: fn(&FileChange<'_>) -> Option<i64>| changes.iter().map(f).collect::<Vec<Option<i64>>>();
    let rows = sqlx::query(
        "SELECT * FROM mcp_change_files($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,
                                        $14)",
    )
    .bind(col(|c| c.task.as_str()))
    .bind(col(|c| c.path.as_str()))
    .bind(col(|c| c.op.as_str()))
    .bind(col(|c| c.content))
    .bind(col(|c| c.sha256))
    .bind(changes.iter().map(|c| c.size).collect::<Vec<i64>>())
    .bind(col(|c| c.agent))
    .bind(opt(|c| c.fence))
    .bind(opt(|c| c.expected_version))
    .bind(
        changes
            .iter()
            .map(|c| c.diff)
            .collect::<Vec<Option<&str>>>(),
    )
    .bind(col(|c| c.op.audit_action()))
    .bind(
        changes
            .iter()
            .map(|c| c.request_id)
            .collect::<Vec<Option<&str>>>(),
    )
    .bind(opt(|c| c.max_task_files))
    .bind(opt(|c| c.max_task_bytes))
    .fetch_all(conn)
    .await?;
    if rows.len() != changes.len() {
        let e = DomainError::internal(format!(
            "mcp_change_files answered {} rows for {} changes",
            rows.len(),
            changes.len()
        ));
        return Ok(changes.iter().map(|_| Err(for_each_job(&e))).collect());
    }
    Ok(rows
        .iter()
        .zip(&changes)
        .map(|(r, c)| answer(r, c))
        .collect())
}

/// One change's answer from its row of `mcp_change_files`.
fn answer(r: &sqlx::postgres::PgRow, c: &FileChange<'_>) -> Result<Committed> {
    if let Some(code) = r.try_get::<Option<String>, _>("r_err_code")? {
        let message: Option<String> = r.try_get("r_err_message")?;
        let detail: Option<String> = r.try_get("r_err_detail")?;
        return Err(match code.as_str() {
            // The usage trigger's refusal (see [`quota_error`]).
            "MCPQ1" => DomainError::QuotaExceeded {
                what: message.unwrap_or_default(),
                limit: detail.and_then(|d| d.parse().ok()).unwrap_or(0),
            },
            "22021" | "22P05" => DomainError::nul_text(),
            _ => {
                DomainError::Internal(format!("postgres: {code}: {}", message.unwrap_or_default()))
            }
        });
    }
    if r.try_get("r_refused")? {
        let version: Option<i64> = r.try_get("r_cur_version")?;
        let deleted: Option<bool> = r.try_get("r_cur_deleted")?;
        let last_fence: Option<i64> = r.try_get("r_cur_last_fence")?;
        return Err(
            c.refusal(version.map(|v| (v, deleted.unwrap_or(false), last_fence.unwrap_or(0))))
        );
    }
    Ok(Committed {
        version: r.try_get("r_version")?,
        updated_at: r.try_get("r_updated_at")?,
    })
}

/// One change on its own, in one statement (the CTEs above): the fallback of a batch refused
/// whole.
async fn change_one(pool: &PgPool, c: &FileChange<'_>) -> Result<Committed> {
    let head = match (c.op, c.expected_version) {
        (RevisionOp::Delete, _) | (_, Some(1..)) => UPDATE_FILE,
        _ => UPSERT_FILE,
    };
    let sql = format!("{QUOTA_CFG}{head}{CHANGE_TAIL}");
    let row: Option<(i64, DateTime<Utc>)> = sqlx::query_as(&sql)
        .bind(c.task.as_str())
        .bind(c.path.as_str())
        .bind(c.content)
        .bind(c.sha256)
        .bind(c.size)
        .bind(c.agent)
        .bind(c.fence)
        .bind(c.expected_version)
        .bind(c.op.as_str())
        .bind(c.diff)
        .bind(c.op.audit_action())
        .bind(c.request_id)
        .bind(c.max_task_files)
        .bind(c.max_task_bytes)
        .fetch_optional(pool)
        .await
        .map_err(quota_error)?;
    if let Some((version, updated_at)) = row {
        return Ok(Committed {
            version,
            updated_at,
        });
    }
    // Refused: say why.
    let current: Option<(i64, bool, i64)> = sqlx::query_as(
        "SELECT version, deleted, last_fence FROM files WHERE task_id = $1 AND path = $2",
    )
    .bind(c.task.as_str())
    .bind(c.path.as_str())
    .fetch_optional(pool)
    .await?;
    Err(c.refusal(current))
}

impl PgStore {
    /// Connects a pool (creating the database first if it does not exist yet). Connections are
    /// made lazily, so the process starts while Postgres is down and recovers when it returns.
    /// A URL listing several hosts is followed across restarts and switchovers
    /// ([`hosts`]).
    pub async fn connect(cfg: &PgConfig) -> Result<PgStore> {
        let targets = hosts::parse(&cfg.url)?;
        let quiet = |o: PgConnectOptions| {
            // Postgres' NOTICEs (`trigger … does not exist, skipping` from the migrations'
            // `DROP … IF EXISTS`) are not news: sqlx would log each at INFO.
            o.options([("client_min_messages", "warning")])
        };
        let options = PgPoolOptions::new()
            .max_connections(cfg.max_connections)
            .acquire_timeout(cfg.acquire_timeout)
            // By default sqlx pings every connection it hands out (a round trip, and ~3,500
            // instructions, before every pooled query, issue #19). It also pings each one it
            // takes back, and drops one that does not answer: a connection used within the
            // last `PING_AFTER_IDLE` answered then, and is handed out as it is. One idle for
            // longer may have been broken meanwhile (a restart, a failover): it is pinged, and
            // replaced when it does not answer.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_AFTER_IDLE {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            });
        if !targets.needs_failover() {
            let opts = quiet(
                PgConnectOptions::from_str(&cfg.url)
                    .map_err(|e| DomainError::InvalidArgument(format!("DATABASE_URL: {e}")))?,
            );
            return Ok(PgStore::new(options.connect_lazy_with(opts), None));
        }
        let mut targets = targets;
        for (_, o) in &mut targets.hosts {
            *o = quiet(o.clone());
        }
        let failover = hosts::Failover::new(targets);
        let admit = failover.clone();
        let pool = options
            .after_connect(move |conn, _| {
                let admit = admit.clone();
                Box::pin(async move { admit.admit(conn).await })
            })
            .connect_lazy_with(failover.current_options());
        // The first look before serving: the pool starts on the right host when one answers.
        let _ = failover.point(&pool).await;
        tokio::spawn(hosts::watch(Arc::downgrade(&failover), pool.clone()));
        Ok(PgStore::new(pool, Some(failover)))
    }

    fn new(pool: PgPool, failover: Option<Arc<hosts::Failover>>) -> PgStore {
        let files = Batcher::new(
            "postgres",
            MAX_BATCH,
            Writer::new(pool.clone(), KEEP_FOR),
            commit_batch,
        );
        PgStore {
            pool,
            _failover: failover,
            files,
        }
    }

    /// Creates the database named in `url` when it is missing (connecting to `postgres`; with
    /// several hosts, on the first that fits `target_session_attrs`).
    pub async fn create_database_if_missing(url: &str) -> Result<()> {
        let targets = hosts::parse(url)?;
        let Some(name) = targets
            .hosts
            .first()
            .and_then(|(_, o)| o.get_database().map(str::to_owned))
        else {
            return Ok(());
        };
        let failover = hosts::Failover::new(PgTargets {
            hosts: targets
                .hosts
                .iter()
                .map(|(label, o)| (label.clone(), o.clone().database("postgres")))
                .collect(),
            attrs: targets.attrs,
        });
        let mut conn = match failover.first_fitting().await {
            Some(c) => c,
            // None answers (as it should): the error of the first host, to retry on.
            None => sqlx::PgConnection::connect_with(&failover.current_options()).await?,
        };
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(&name)
                .fetch_one(&mut conn)
                .await?;
        if !exists {
            let quoted = name.replace('"', "\"\"");
            let created = sqlx::query(&format!("CREATE DATABASE \"{quoted}\""))
                .execute(&mut conn)
                .await;
            match created {
                Ok(_) => {}
                // Another process created it in the meantime.
                Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42P04") => {}
                Err(e) => return Err(e.into()),
            }
        }
        conn.close().await?;
        Ok(())
    }

    /// The pool, for the sync loops and tests.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

#[async_trait]
impl DurableOps for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn shared(&self) -> bool {
        true
    }

    /// Applies the embedded migrations (idempotent; safe from several processes at once).
    async fn migrate(&self) -> Result<()> {
        MIGRATOR.run(&self.pool).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) => DomainError::from(e),
            other => DomainError::internal(format!("migration: {other}")),
        })
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// A new fencing token (monotonic for the whole deployment).
    async fn next_fence(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT nextval('lock_fence_seq')")
            .fetch_one(&self.pool)
            .await?)
    }

    /// Applies a conditional file change, in a batch with the changes that arrive while the
    /// previous batch commits; refuses it with `version_conflict`, `stale_fence`,
    /// `file_not_found` or `quota_exceeded` when its condition does not hold.
    async fn change_file(&self, c: &FileChange<'_>) -> Result<Committed> {
        // Text Postgres cannot store would fail the batch's parameters as a whole.
        // (`memchr`'s vectorised search: `str::contains` goes a word at a time.)
        let texts = [Some(c.content), Some(c.agent), c.diff, c.request_id];
        if texts
            .into_iter()
            .flatten()
            .any(|t| memchr::memchr(0, t.as_bytes()).is_some())
        {
            return Err(DomainError::nul_text());
        }
        self.files
            .submit(OwnedChange::of(c))
            .await
            .unwrap_or_else(|| Err(DomainError::internal("the file change batch failed")))
    }

    fn group_commit_stats(&self) -> GroupCommitStats {
        self.files.stats()
    }

    async fn file(&self, task: &TaskId, path: &FilePath) -> Result<Option<StoredFile>> {
        let row = sqlx::query(
            "SELECT version, content, sha256, size, updated_by, updated_at, deleted
             FROM files WHERE task_id = $1 AND path = $2",
        )
        .bind(task.as_str())
        .bind(path.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(StoredFile {
                version: r.try_get("version")?,
                content: r.try_get("content")?,
                sha256: r.try_get("sha256")?,
                size: r.try_get("size")?,
                updated_by: r.try_get("updated_by")?,
                updated_at: r.try_get("updated_at")?,
                deleted: r.try_get("deleted")?,
            })
        })
        .transpose()
    }

    /// Live files of a task, by path; only those under `prefix` (a directory) when given.
    async fn revisions(
        &self,
        task: &TaskId,
        path: &FilePath,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<StoredRevision>> {
        let rows = sqlx::query(
            "SELECT version, op, agent_id, fence, size, sha256, created_at,
                    NULL::text AS content, NULL::text AS diff
             FROM file_revisions
             WHERE task_id = $1 AND path = $2 AND ($3::bigint IS NULL OR version < $3)
             ORDER BY version DESC LIMIT $4",
        )
        .bind(task.as_str())
        .bind(path.as_str())
        .bind(before)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
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
             WHERE task_id = $1 AND path = $2 AND version <= $3
               AND version >= COALESCE((
                   SELECT max(version) FROM file_revisions
                   WHERE task_id = $1 AND path = $2 AND version <= $3
                     AND (content IS NOT NULL OR op <> 'edit')), 1)
             ORDER BY version DESC LIMIT $4",
        )
        .bind(task.as_str())
        .bind(path.as_str())
        .bind(version)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(revision_from_row).collect()
    }

    async fn list_files(&self, task: &TaskId, prefix: Option<&FilePath>) -> Result<Vec<FileInfo>> {
        let rows = sqlx::query(
            "SELECT path, version, size, sha256, updated_by, updated_at FROM files
             WHERE task_id = $1 AND NOT deleted
               AND ($2::text IS NULL OR path = $2 OR left(path, length($2) + 1) = $2 || '/')
             ORDER BY path",
        )
        .bind(task.as_str())
        .bind(prefix.map(FilePath::as_str))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(FileInfo {
                    path: r.try_get("path")?,
                    version: r.try_get("version")?,
                    size: r.try_get("size")?,
                    sha256: r.try_get("sha256")?,
                    updated_by: r.try_get("updated_by")?,
                    updated_at: r.try_get("updated_at")?,
                })
            })
            .collect()
    }

    async fn task(&self, task: &TaskId) -> Result<Option<TaskRow>> {
        let row = sqlx::query(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1"))
            .bind(task.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(task_row_from).transpose()
    }

    /// Task ids after `after` in id order, at most `limit` (a page of the task list).
    async fn task_ids(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        let ids: Vec<(String,)> =
            sqlx::query_as("SELECT id FROM tasks WHERE id > $1 ORDER BY id LIMIT $2")
                .bind(after.unwrap_or(""))
                .bind(limit as i64)
                .fetch_all(&self.pool)
                .await?;
        Ok(ids.into_iter().map(|(id,)| id).collect())
    }

    async fn create_task(
        &self,
        id: &TaskId,
        req: &CreateTaskRequest,
        actor: &str,
        request_id: Option<&str>,
    ) -> Result<TaskRow> {
        let sql = format!(
            "WITH t AS (
                INSERT INTO tasks (id, title, description, status, assigned_agent_id, complexity)
                VALUES ($1, $2, $3, COALESCE($4, 'pending'), $5, $6)
                RETURNING {TASK_COLUMNS}
            ), aud AS (
                INSERT INTO audit_log (actor, action, task_id, request_id)
                SELECT $7, 'task_create', id, $8 FROM t
            )
            SELECT * FROM t"
        );
        let row = sqlx::query(&sql)
            .bind(id.as_str())
            .bind(&req.title)
            .bind(&req.description)
            .bind(&req.status)
            .bind(&req.assigned_agent_id)
            .bind(req.complexity)
            .bind(actor)
            .bind(request_id)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| match e {
                sqlx::Error::Database(db) if db.is_unique_violation() => {
                    DomainError::TaskExists(id.to_string())
                }
                other => other.into(),
            })?;
        task_row_from(&row)
    }

    async fn update_task(
        &self,
        id: &TaskId,
        req: &UpdateTaskRequest,
        actor: &str,
        request_id: Option<&str>,
    ) -> Result<Option<TaskRow>> {
        let sql = format!(
            "WITH t AS (
                UPDATE tasks SET
                    title = COALESCE($2, title),
                    description = CASE WHEN $3 THEN $4 ELSE description END,
                    status = COALESCE($5, status),
                    assigned_agent_id = CASE WHEN $6 THEN $7 ELSE assigned_agent_id END,
                    complexity = CASE WHEN $8 THEN $9 ELSE complexity END,
                    updated_at = now()
                WHERE id = $1
                RETURNING {TASK_COLUMNS}
            ), aud AS (
                INSERT INTO audit_log (actor, action, task_id, request_id)
                SELECT $10, 'task_update', id, $11 FROM t
            )
            SELECT * FROM t"
        );
        let row = sqlx::query(&sql)
            .bind(id.as_str())
            .bind(&req.title)
            .bind(req.description.is_some())
            .bind(req.description.clone().flatten())
            .bind(&req.status)
            .bind(req.assigned_agent_id.is_some())
            .bind(req.assigned_agent_id.clone().flatten())
            .bind(req.complexity.is_some())
            .bind(req.complexity.flatten())
            .bind(actor)
            .bind(request_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(task_row_from).transpose()
    }

    /// Records a join (a re-join after leaving starts a new session). Returns the join time.
    async fn join(
        &self,
        task: &TaskId,
        agent: &str,
        request_id: Option<&str>,
    ) -> Result<DateTime<Utc>> {
        let joined: DateTime<Utc> = sqlx::query_scalar(
            "WITH c AS (
                INSERT INTO collaborators AS c (task_id, agent_id, joined_at, last_active)
                VALUES ($1, $2, now(), now())
                ON CONFLICT (task_id, agent_id) DO UPDATE SET
                    joined_at = CASE WHEN c.left_at IS NULL THEN c.joined_at ELSE now() END,
                    last_active = now(), left_at = NULL
                RETURNING joined_at
            ), a AS (
                INSERT INTO agents (id, current_task_id, last_seen) VALUES ($2, $1, now())
                ON CONFLICT (id) DO UPDATE SET current_task_id = $1, last_seen = now(),
                    updated_at = now()
            ), aud AS (
                INSERT INTO audit_log (actor, action, task_id, request_id)
                VALUES ($2, 'join_collab', $1, $3)
            )
            SELECT joined_at FROM c",
        )
        .bind(task.as_str())
        .bind(agent)
        .bind(request_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(joined)
    }

    /// Records a leave; `false` when the agent was not a member.
    async fn leave(&self, task: &TaskId, agent: &str, request_id: Option<&str>) -> Result<bool> {
        let left: Option<String> = sqlx::query_scalar(
            "WITH c AS (
                UPDATE collaborators SET left_at = now(), last_active = now()
                WHERE task_id = $1 AND agent_id = $2 AND left_at IS NULL
                RETURNING agent_id
            ), a AS (
                UPDATE agents SET last_seen = now(), updated_at = now() WHERE id = $2
            ), aud AS (
                INSERT INTO audit_log (actor, action, task_id, request_id)
                VALUES ($2, 'leave_collab', $1, $3)
            )
            SELECT agent_id FROM c",
        )
        .bind(task.as_str())
        .bind(agent)
        .bind(request_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(left.is_some())
    }

    async fn collaborators(&self, task: &TaskId) -> Result<Vec<Collaborator>> {
        let rows: Vec<(String, DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
            "SELECT agent_id, joined_at, last_active FROM collaborators
             WHERE task_id = $1 AND left_at IS NULL ORDER BY joined_at, agent_id",
        )
        .bind(task.as_str())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(agent_id, joined_at, last_active)| Collaborator {
                agent_id,
                joined_at,
                last_active,
            })
            .collect())
    }

    /// An agent's durable record: (last seen, current task, tasks it collaborates on), or
    /// `None` when the agent never joined anything.
    async fn agent(&self, agent: &str) -> Result<Option<Presence>> {
        let row: Option<(Option<DateTime<Utc>>, Option<String>)> =
            sqlx::query_as("SELECT last_seen, current_task_id FROM agents WHERE id = $1")
                .bind(agent)
                .fetch_optional(&self.pool)
                .await?;
        let Some((last_seen, current)) = row else {
            return Ok(None);
        };
        let tasks: Vec<String> = sqlx::query_scalar(
            "SELECT task_id FROM collaborators WHERE agent_id = $1 AND left_at IS NULL ORDER BY task_id",
        )
        .bind(agent)
        .fetch_all(&self.pool)
        .await?;
        Ok(Some(Presence {
            last_seen,
            task: current,
            tasks,
        }))
    }

    /// Audit records matching `q`, newest first.
    async fn audit(&self, q: &AuditFilter<'_>) -> Result<Vec<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT id, at, actor, action, task_id, path, version, fence, request_id
             FROM audit_log
             WHERE ($1::text IS NULL OR task_id = $1)
               AND ($2::text[] IS NULL OR task_id = ANY($2))
               AND ($3::text IS NULL OR actor = $3)
               AND ($4::text IS NULL OR action = $4)
               AND ($5::timestamptz IS NULL OR at >= $5)
               AND ($6::bigint IS NULL OR id < $6)
             ORDER BY id DESC LIMIT $7",
        )
        .bind(q.task)
        .bind(q.tasks_in)
        .bind(q.agent)
        .bind(q.action)
        .bind(q.since)
        .bind(q.before_id)
        .bind(q.limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    id: r.try_get("id")?,
                    at: r.try_get("at")?,
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    task_id: r.try_get("task_id")?,
                    path: r.try_get("path")?,
                    version: r.try_get("version")?,
                    fence: r.try_get("fence")?,
                    request_id: r.try_get("request_id")?,
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
        let rows: Vec<(i64, i64, Value)> = sqlx::query_as(
            "SELECT id_ms, id_seq, step FROM step_logs
             WHERE task_id = $1 AND (id_ms, id_seq) < ($2, $3)
             ORDER BY id_ms DESC, id_seq DESC LIMIT $4",
        )
        .bind(task.as_str())
        .bind(ms)
        .bind(seq)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(ms, seq, step)| PersistedStep {
                id: stream_id_of_columns(ms, seq),
                step,
            })
            .collect())
    }

    async fn list_tasks(&self, q: &TaskListFilter<'_>) -> Result<(Vec<TaskSummary>, i64)> {
        // The filters, shared by the page and the count ($1–$4).
        const MATCHING: &str = "
            FROM task_activity a
            LEFT JOIN tasks t ON t.id = a.task_id
            LEFT JOIN task_usage u ON u.task_id = a.task_id
            WHERE ($1::text[] IS NULL OR a.task_id = ANY($1))
              AND ($2::text IS NULL OR a.task_id ILIKE $2 OR t.title ILIKE $2)
              AND ($3::text IS NULL OR t.status = $3)
              AND ($4::text IS NULL OR t.assigned_agent_id = $4 OR EXISTS (
                    SELECT 1 FROM collaborators c
                    WHERE c.task_id = a.task_id AND c.agent_id = $4 AND c.left_at IS NULL))";
        let text = q.text.map(contains_pattern);
        let (after_at, after_id) = q.after.unzip();
        let rows = sqlx::query(&format!(
            "SELECT a.task_id, t.title, t.status, t.assigned_agent_id, a.steps, a.first_seen,
                    a.last_activity, COALESCE(u.files, 0) AS files,
                    ARRAY(SELECT c.agent_id FROM collaborators c
                          WHERE c.task_id = a.task_id AND c.left_at IS NULL
                          ORDER BY c.agent_id) AS agents
             {MATCHING}
               AND ($5::timestamptz IS NULL OR (a.last_activity, a.task_id) < ($5, $6))
             ORDER BY a.last_activity DESC, a.task_id DESC LIMIT $7"
        ))
        .bind(q.tasks_in)
        .bind(&text)
        .bind(q.status)
        .bind(q.agent)
        .bind(after_at)
        .bind(after_id)
        .bind(q.limit)
        .fetch_all(&self.pool)
        .await?;
        let tasks = rows
            .iter()
            .map(|r| {
                Ok(TaskSummary {
                    task_id: r.try_get("task_id")?,
                    title: r.try_get("title")?,
                    status: r.try_get("status")?,
                    assigned_agent_id: r.try_get("assigned_agent_id")?,
                    agents: r.try_get("agents")?,
                    // Leases are the hot store's: `Service::list_tasks` counts them.
                    lease_count: 0,
                    file_count: r.try_get("files")?,
                    step_count: r.try_get("steps")?,
                    first_seen: r.try_get("first_seen")?,
                    last_activity: r.try_get("last_activity")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let total: i64 = sqlx::query_scalar(&format!("SELECT count(*) {MATCHING}"))
            .bind(q.tasks_in)
            .bind(&text)
            .bind(q.status)
            .bind(q.agent)
            .fetch_one(&self.pool)
            .await?;
        Ok((tasks, total))
    }

    async fn list_agents(&self, q: &AgentListFilter<'_>) -> Result<(Vec<AgentActivity>, i64)> {
        // An agent is on a task when it is in its session or last acted on it.
        const MATCHING: &str = "
            FROM agent_activity g
            WHERE g.last_action <> ''
              AND ($1::text IS NULL OR g.agent_id ILIKE $1)
              AND ($2::text[] IS NULL OR g.last_task = ANY($2) OR EXISTS (
                    SELECT 1 FROM collaborators c
                    WHERE c.agent_id = g.agent_id AND c.task_id = ANY($2) AND c.left_at IS NULL))
              AND ($3::text IS NULL OR g.last_task = $3 OR EXISTS (
                    SELECT 1 FROM collaborators c
                    WHERE c.agent_id = g.agent_id AND c.task_id = $3 AND c.left_at IS NULL))";
        let text = q.text.map(contains_pattern);
        let (after_at, after_id) = q.after.unzip();
        let rows = sqlx::query(&format!(
            "SELECT g.agent_id, g.last_seen, g.last_task, g.last_action,
                    ARRAY(SELECT c.task_id FROM collaborators c
                          WHERE c.agent_id = g.agent_id AND c.left_at IS NULL
                          ORDER BY c.task_id) AS tasks
             {MATCHING}
               AND ($4::timestamptz IS NULL OR (g.last_seen, g.agent_id) < ($4, $5))
             ORDER BY g.last_seen DESC, g.agent_id DESC LIMIT $6"
        ))
        .bind(&text)
        .bind(q.tasks_in)
        .bind(q.task)
        .bind(after_at)
        .bind(after_id)
        .bind(q.limit)
        .fetch_all(&self.pool)
        .await?;
        let agents = rows
            .iter()
            .map(|r| {
                Ok(AgentActivity {
                    agent_id: r.try_get("agent_id")?,
                    last_seen: r.try_get("last_seen")?,
                    last_task: r.try_get("last_task")?,
                    last_action: r.try_get("last_action")?,
                    tasks: r.try_get("tasks")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let total: i64 = sqlx::query_scalar(&format!("SELECT count(*) {MATCHING}"))
            .bind(&text)
            .bind(q.tasks_in)
            .bind(q.task)
            .fetch_one(&self.pool)
            .await?;
        Ok((agents, total))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test command's `DATABASE_URL` (its `postgres` database: nothing is created).
    async fn pool() -> PgPool {
        let url = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        PgPoolOptions::new()
            .max_connections(2)
            .connect(&url)
            .await
            .expect("Postgres (DATABASE_URL)")
    }

    async fn backend(conn: &mut PoolConnection<Postgres>) -> i32 {
        sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut **conn)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn the_batches_keep_their_connection_then_give_it_back() {
        let writer = Writer::new(pool().await, Duration::from_secs(60));
        let (mut conn, taken) = writer.connection().await.unwrap();
        let first = backend(&mut conn).await;
        writer.keep(conn, taken);
        let (mut conn, again) = writer.connection().await.unwrap();
        assert_eq!((backend(&mut conn).await, again), (first, taken), "kept");
        drop(conn);
        // Not kept (a failed batch): the next batch takes one from the pool.
        let (_conn, fresh) = writer.connection().await.unwrap();
        assert!(fresh > taken);

        // Kept for its time: given back, and one taken from the pool afresh.
        let writer = Writer::new(pool().await, Duration::ZERO);
        let (conn, taken) = writer.connection().await.unwrap();
        writer.keep(conn, taken);
        let (_conn, next) = writer.connection().await.unwrap();
        assert!(next > taken, "taken afresh from the pool");
    }
}
