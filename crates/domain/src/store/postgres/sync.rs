//! The durable side of the sync service (crates/sync): every statement the push and pull loops
//! run against Postgres. Push: outbox records (steps, audit records) inserted in batches,
//! idempotently (steps on their (task, stream id), audit records on `source_id`, the outbox
//! entry id), so a redelivered or twice-claimed entry is written once; records that cannot be
//! persisted go to `dead_letters`. Pull: tasks and agents paged by their change-feed mark
//! `(change_xid, change_seq)` (set by a trigger, migration `…_change_feed.sql`; keyset paging,
//! never `DESC LIMIT`), each row saying whether its transaction is older than every one still
//! running; and task deletions from the `task_deletions` tombstones a trigger writes.

use super::{PgStore, task_from_row};
use crate::error::Result;
use crate::store::durable::{
    AgentRow, AuditRecord, ChangeListener, DEAD_LETTERS, DeadLetter, DurableSync, FeedMark,
    FeedRow, OutboxBatch, StepRecord,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mcp_api::responses::TaskState;
use sqlx::Row;
use std::collections::BTreeMap;

/// The channel the `*_notify_sync` triggers notify (migration `..._sync_notify.sql`).
pub const CHANGES_CHANNEL: &str = "mcp_sync_changes";

/// Postgres notifications that tasks or agents changed.
struct PgChangeListener {
    listener: sqlx::postgres::PgListener,
}

#[async_trait]
impl ChangeListener for PgChangeListener {
    async fn changed(&mut self) -> Result<()> {
        self.listener.recv().await?;
        while self.listener.next_buffered().is_some() {}
        Ok(())
    }
}

const INSERT_STEPS: &str = "
INSERT INTO step_logs (task_id, stream_id, id_ms, id_seq, agent_id, step, logged_at)
SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::text[],
                     $6::jsonb[], $7::timestamptz[])
ON CONFLICT (task_id, stream_id) DO NOTHING";

const INSERT_AUDITS: &str = "
INSERT INTO audit_log (source_id, at, actor, action, task_id, path, version, fence, request_id,
                       detail)
SELECT * FROM UNNEST($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::text[],
                     $6::text[], $7::bigint[], $8::bigint[], $9::text[], $10::jsonb[])
ON CONFLICT (source_id) DO NOTHING";

const INSERT_DEAD: &str = "
INSERT INTO dead_letters (source_id, kind, payload, error)
SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[])
ON CONFLICT (source_id) DO NOTHING";

async fn insert_steps<'c, E>(ex: E, steps: &[StepRecord]) -> Result<u64>
where
    E: sqlx::PgExecutor<'c>,
{
    if steps.is_empty() {
        return Ok(0);
    }
    let r = sqlx::query(INSERT_STEPS)
        .bind(steps.iter().map(|s| s.task_id.clone()).collect::<Vec<_>>())
        .bind(
            steps
                .iter()
                .map(|s| s.stream_id.clone())
                .collect::<Vec<_>>(),
        )
        .bind(steps.iter().map(|s| s.id_ms).collect::<Vec<_>>())
        .bind(steps.iter().map(|s| s.id_seq).collect::<Vec<_>>())
        .bind(steps.iter().map(|s| s.agent_id.clone()).collect::<Vec<_>>())
        .bind(steps.iter().map(|s| s.step.clone()).collect::<Vec<_>>())
        .bind(steps.iter().map(|s| s.logged_at).collect::<Vec<_>>())
        .execute(ex)
        .await?;
    Ok(r.rows_affected())
}

async fn insert_audits<'c, E>(ex: E, audits: &[AuditRecord]) -> Result<u64>
where
    E: sqlx::PgExecutor<'c>,
{
    if audits.is_empty() {
        return Ok(0);
    }
    let r = sqlx::query(INSERT_AUDITS)
        .bind(
            audits
                .iter()
                .map(|a| a.source_id.clone())
                .collect::<Vec<_>>(),
        )
        .bind(audits.iter().map(|a| a.at).collect::<Vec<_>>())
        .bind(audits.iter().map(|a| a.actor.clone()).collect::<Vec<_>>())
        .bind(audits.iter().map(|a| a.action.clone()).collect::<Vec<_>>())
        .bind(audits.iter().map(|a| a.task_id.clone()).collect::<Vec<_>>())
        .bind(audits.iter().map(|a| a.path.clone()).collect::<Vec<_>>())
        .bind(audits.iter().map(|a| a.version).collect::<Vec<_>>())
        .bind(audits.iter().map(|a| a.fence).collect::<Vec<_>>())
        .bind(
            audits
                .iter()
                .map(|a| a.request_id.clone())
                .collect::<Vec<_>>(),
        )
        .bind(audits.iter().map(|a| a.detail.clone()).collect::<Vec<_>>())
        .execute(ex)
        .await?;
    Ok(r.rows_affected())
}

async fn insert_dead<'c, E>(ex: E, dead: &[DeadLetter]) -> Result<u64>
where
    E: sqlx::PgExecutor<'c>,
{
    if dead.is_empty() {
        return Ok(0);
    }
    let r = sqlx::query(INSERT_DEAD)
        .bind(dead.iter().map(|d| d.source_id.clone()).collect::<Vec<_>>())
        .bind(dead.iter().map(|d| d.kind.clone()).collect::<Vec<_>>())
        .bind(dead.iter().map(|d| d.payload.clone()).collect::<Vec<_>>())
        .bind(dead.iter().map(|d| d.error.clone()).collect::<Vec<_>>())
        .execute(ex)
        .await?;
    Ok(r.rows_affected())
}

/// A feed row's `(xid, change_seq)`.
fn mark_of(r: &sqlx::postgres::PgRow) -> Result<FeedMark> {
    Ok(FeedMark {
        xid: r.try_get("xid")?,
        seq: r.try_get("change_seq")?,
    })
}

/// Up to `limit` rows of `table` (its `columns`, read by `row`) after `after` in
/// `(change_xid, change_seq)` order, each with its mark and whether it is settled: the change
/// feed of tasks and agents alike.
async fn feed_after<T>(
    store: &PgStore,
    table: &str,
    columns: &str,
    after: FeedMark,
    limit: usize,
    row: impl Fn(&sqlx::postgres::PgRow) -> Result<T>,
) -> Result<Vec<FeedRow<T>>> {
    let rows = sqlx::query(&format!(
        "SELECT {columns}, change_seq, change_xid::text::bigint AS xid,
                change_xid < pg_snapshot_xmin(pg_current_snapshot()) AS settled
         FROM {table} WHERE (change_xid, change_seq) > ($1::text::xid8, $2)
         ORDER BY change_xid, change_seq LIMIT $3"
    ))
    .bind(after.xid.to_string())
    .bind(after.seq)
    .bind(limit as i64)
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(FeedRow {
                mark: mark_of(r)?,
                settled: r.try_get("settled")?,
                row: row(r)?,
            })
        })
        .collect()
}

#[async_trait]
impl DurableSync for PgStore {
    /// Writes a whole batch (steps, audit records, dead letters) in one transaction; records
    /// already present are skipped. Either all of it commits or none of it does.
    async fn persist_outbox_batch(&self, batch: &OutboxBatch) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        lock_activity(&mut tx, batch).await?;
        insert_steps(&mut *tx, &batch.steps).await?;
        insert_audits(&mut *tx, &batch.audits).await?;
        insert_dead(&mut *tx, &batch.dead).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Inserts one step on its own (the fallback when a batch fails). `true` when new.
    async fn insert_step(&self, step: &StepRecord) -> Result<bool> {
        Ok(insert_steps(self.pool(), std::slice::from_ref(step)).await? > 0)
    }

    /// Inserts one audit record on its own (the fallback when a batch fails). `true` when new.
    async fn insert_audit(&self, audit: &AuditRecord) -> Result<bool> {
        Ok(insert_audits(self.pool(), std::slice::from_ref(audit)).await? > 0)
    }

    /// Records an entry that cannot be persisted. `true` when new.
    async fn insert_dead_letter(&self, dead: &DeadLetter) -> Result<bool> {
        Ok(insert_dead(self.pool(), std::slice::from_ref(dead)).await? > 0)
    }

    /// Dead letters, oldest first: (source id, kind, payload, error).
    async fn dead_letters(&self) -> Result<Vec<DeadLetter>> {
        let rows = sqlx::query_as(DEAD_LETTERS).fetch_all(self.pool()).await?;
        Ok(rows.into_iter().map(DeadLetter::from_row).collect())
    }

    /// Up to `limit` tasks after `after` in `(change_xid, change_seq)` order, each with
    /// whether it is settled (its transaction is older than the oldest one still running in
    /// this statement's snapshot: nothing can commit under it any more).
    async fn tasks_after(&self, after: FeedMark, limit: usize) -> Result<Vec<FeedRow<TaskState>>> {
        feed_after(
            self,
            "tasks",
            "id, title, description, status, assigned_agent_id, complexity, created_at, updated_at",
            after,
            limit,
            task_from_row,
        )
        .await
    }

    /// Up to `limit` agents after `after` in `(change_xid, change_seq)` order (see
    /// [`DurableSync::tasks_after`]).
    async fn agents_after(&self, after: FeedMark, limit: usize) -> Result<Vec<FeedRow<AgentRow>>> {
        feed_after(
            self,
            "agents",
            "id, current_task_id, last_seen, updated_at",
            after,
            limit,
            |r| {
                Ok(AgentRow {
                    id: r.try_get("id")?,
                    current_task_id: r.try_get("current_task_id")?,
                    last_seen: r.try_get("last_seen")?,
                    updated_at: r.try_get("updated_at")?,
                })
            },
        )
        .await
    }

    /// Tasks deleted after `since` that do not exist again (a re-created id keeps its cache):
    /// (task id, deletion time), oldest first.
    async fn task_deletions_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<(String, DateTime<Utc>)>> {
        Ok(sqlx::query_as(
            "SELECT d.task_id, max(d.deleted_at) AS at FROM task_deletions d
             WHERE d.deleted_at > $1
               AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.id = d.task_id)
             GROUP BY d.task_id ORDER BY at",
        )
        .bind(since)
        .fetch_all(self.pool())
        .await?)
    }

    /// Drops deletion tombstones older than `before` (their cache entries expired long ago).
    async fn prune_task_deletions(&self, before: DateTime<Utc>) -> Result<u64> {
        Ok(
            sqlx::query("DELETE FROM task_deletions WHERE deleted_at < $1")
                .bind(before)
                .execute(self.pool())
                .await?
                .rows_affected(),
        )
    }

    /// A dedicated connection listening for [`CHANGES_CHANNEL`] (a trigger notifies it when
    /// tasks or agents change), so the pull loop wakes at once instead of at its next tick.
    async fn listen_changes(&self) -> Result<Box<dyn ChangeListener>> {
        let mut listener = sqlx::postgres::PgListener::connect_with(self.pool()).await?;
        listener.listen(CHANGES_CHANNEL).await?;
        Ok(Box::new(PgChangeListener { listener }))
    }

    /// The database's clock (watermarks are compared with its timestamps, not ours).
    async fn db_now(&self) -> Result<DateTime<Utc>> {
        Ok(sqlx::query_scalar("SELECT clock_timestamp()")
            .fetch_one(self.pool())
            .await?)
    }
}

/// Takes the activity index rows a batch will touch (`task_activity`, then `agent_activity`,
/// each in id order, creating missing ones) before its statements run. The triggers of its
/// steps and its audit records then touch only rows it holds. Without this, a batch holding an
/// agent's row from its steps statement could wait for a task's row that a one-statement
/// writer (a join, a file change: task row, then agent row) holds while waiting for that
/// agent's row: a deadlock, which Postgres ends by failing one of them.
async fn lock_activity(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    batch: &OutboxBatch,
) -> Result<()> {
    // Each task and agent with the time of its earliest record in the batch (the first-seen
    // time of a row made here; the batch's records then move it forward).
    let mut tasks: BTreeMap<&str, DateTime<Utc>> = BTreeMap::new();
    let mut agents: BTreeMap<&str, DateTime<Utc>> = BTreeMap::new();
    fn note<'a>(map: &mut BTreeMap<&'a str, DateTime<Utc>>, key: &'a str, at: DateTime<Utc>) {
        let e = map.entry(key).or_insert(at);
        *e = (*e).min(at);
    }
    for s in &batch.steps {
        note(&mut tasks, s.task_id.as_str(), s.logged_at);
        if let Some(a) = &s.agent_id {
            note(&mut agents, a.as_str(), s.logged_at);
        }
    }
    for a in &batch.audits {
        if let Some(t) = &a.task_id {
            note(&mut tasks, t.as_str(), a.at);
        }
        note(&mut agents, a.actor.as_str(), a.at);
    }
    if tasks.is_empty() && agents.is_empty() {
        return Ok(());
    }
    let (task_ids, task_times): (Vec<&str>, Vec<DateTime<Utc>>) = tasks.into_iter().unzip();
    let (agent_ids, agent_times): (Vec<&str>, Vec<DateTime<Utc>>) = agents.into_iter().unzip();
    sqlx::query(
        "INSERT INTO task_activity (task_id, first_seen, last_activity)
         SELECT t, at, at FROM unnest($1::text[], $2::timestamptz[]) AS n(t, at) ORDER BY t
         ON CONFLICT DO NOTHING",
    )
    .bind(&task_ids)
    .bind(&task_times)
    .execute(&mut **tx)
    .await?;
    sqlx::query("SELECT 1 FROM task_activity WHERE task_id = ANY($1) ORDER BY task_id FOR UPDATE")
        .bind(&task_ids)
        .execute(&mut **tx)
        .await?;
    // A new agent's row waits, with no action, for the batch's records to fill it in; the
    // agent list leaves out a row without an action.
    sqlx::query(
        "INSERT INTO agent_activity (agent_id, last_seen, last_action)
         SELECT a, at, '' FROM unnest($1::text[], $2::timestamptz[]) AS n(a, at) ORDER BY a
         ON CONFLICT DO NOTHING",
    )
    .bind(&agent_ids)
    .bind(&agent_times)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "SELECT 1 FROM agent_activity WHERE agent_id = ANY($1) ORDER BY agent_id FOR UPDATE",
    )
    .bind(&agent_ids)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
