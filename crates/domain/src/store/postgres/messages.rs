//! Messages in Postgres ([`DurableMessages`]): `messages`, `message_recipients` (one row per
//! direct recipient, so an inbox is an index range) and `message_reads` (read state per
//! reader). Migration `…_messages.sql`.
//!
//! **Ids in commit order.** A reader's cursor is the last id it saw, so a message must never
//! become visible below an id already read: with a plain sequence, a transaction that drew
//! id 10 could commit after one that drew 11 and was read. Each insert therefore first takes
//! one transaction-level advisory lock ([`SEND_LOCK`]) and draws its id under it; Postgres
//! makes a commit visible before it releases the transaction's locks, so the next sender
//! draws its id only after the previous message is visible. Sends are serialised for the
//! length of one short insert.

use super::PgStore;
use crate::error::Result;
use crate::store::durable::{DurableMessages, InboxQuery, NewMessage, StoredMessage};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::postgres::PgRow;

/// The advisory lock key that orders message inserts ("mcp msgs" in ASCII).
const SEND_LOCK: i64 = 0x6d63_7020_6d73_6773;

const COLUMNS: &str = "m.id, m.task_id, m.sender, m.broadcast, m.to_agents, m.subject, m.body, \
                       m.thread_id, m.reply_to, m.importance, m.sent_at";

fn message_from(r: &PgRow) -> Result<StoredMessage> {
    Ok(StoredMessage {
        id: r.try_get("id")?,
        task_id: r.try_get("task_id")?,
        from: r.try_get("sender")?,
        broadcast: r.try_get("broadcast")?,
        to: r.try_get("to_agents")?,
        subject: r.try_get("subject")?,
        body: r.try_get("body")?,
        thread_id: r.try_get("thread_id")?,
        reply_to: r.try_get("reply_to")?,
        importance: r.try_get("importance")?,
        sent_at: r.try_get("sent_at")?,
        read_at: r.try_get("read_at")?,
    })
}

#[async_trait]
impl DurableMessages for PgStore {
    async fn send_message(&self, m: &NewMessage<'_>) -> Result<StoredMessage> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(SEND_LOCK)
            .execute(&mut *tx)
            .await?;
        let row = sqlx::query(&format!(
            "WITH n AS (
                SELECT nextval(pg_get_serial_sequence('messages', 'id')) AS id
            ), m AS (
                INSERT INTO messages (id, task_id, sender, broadcast, to_agents, subject, body,
                                      thread_id, reply_to, importance)
                SELECT n.id, $1, $2, $3, $4, $5, $6, COALESCE($7, n.id::text), $8, $9 FROM n
                RETURNING *
            ), r AS (
                INSERT INTO message_recipients (agent_id, message_id)
                SELECT a, m.id FROM m, unnest($4::text[]) AS a
            ), aud AS (
                INSERT INTO audit_log (actor, action, task_id, request_id, detail)
                SELECT $2, 'send_message', $1, $10,
                       jsonb_build_object('message_id', m.id, 'to',
                           CASE WHEN $3 THEN to_jsonb(ARRAY['*']) ELSE to_jsonb($4::text[]) END,
                           'thread_id', m.thread_id)
                FROM m
            )
            SELECT {COLUMNS}, NULL::timestamptz AS read_at FROM m"
        ))
        .bind(m.task.as_str())
        .bind(m.from)
        .bind(m.broadcast)
        .bind(m.to)
        .bind(m.subject)
        .bind(m.body)
        .bind(m.thread_id)
        .bind(m.reply_to)
        .bind(m.importance)
        .bind(m.request_id)
        .fetch_one(&mut *tx)
        .await?;
        let stored = message_from(&row)?;
        tx.commit().await?;
        Ok(stored)
    }

    async fn inbox(&self, q: &InboxQuery<'_>) -> Result<Vec<StoredMessage>> {
        // Two index ranges: the reader's direct messages, and broadcasts by others.
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS}, rd.read_at FROM messages m
             LEFT JOIN message_reads rd ON rd.message_id = m.id AND rd.agent_id = $1
             WHERE m.id IN (
                 SELECT message_id FROM message_recipients WHERE agent_id = $1 AND message_id > $2
                 UNION ALL
                 SELECT id FROM messages WHERE broadcast AND id > $2 AND sender <> $1
             )
               AND ($3::text IS NULL OR m.task_id = $3)
               AND ($4::text[] IS NULL OR m.task_id = ANY($4))
               AND (NOT $5 OR rd.read_at IS NULL)
             ORDER BY m.id
             LIMIT $6"
        ))
        .bind(q.agent)
        .bind(q.after)
        .bind(q.task)
        .bind(q.tasks_in)
        .bind(q.unread_only)
        .bind(q.limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(message_from).collect()
    }

    async fn message_for(
        &self,
        id: i64,
        reader: &str,
        tasks_in: Option<&[String]>,
    ) -> Result<Option<StoredMessage>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS}, rd.read_at FROM messages m
             LEFT JOIN message_reads rd ON rd.message_id = m.id AND rd.agent_id = $2
             WHERE m.id = $1
               AND (m.broadcast OR m.sender = $2 OR EXISTS (
                   SELECT 1 FROM message_recipients x WHERE x.agent_id = $2 AND x.message_id = m.id))
               AND ($3::text[] IS NULL OR m.task_id = ANY($3))"
        ))
        .bind(id)
        .bind(reader)
        .bind(tasks_in)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(message_from).transpose()
    }

    async fn ack_message(&self, id: i64, reader: &str) -> Result<DateTime<Utc>> {
        let inserted: Option<DateTime<Utc>> = sqlx::query_scalar(
            "INSERT INTO message_reads (agent_id, message_id) VALUES ($2, $1)
             ON CONFLICT (agent_id, message_id) DO NOTHING
             RETURNING read_at",
        )
        .bind(id)
        .bind(reader)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(at) = inserted {
            return Ok(at);
        }
        // Acknowledged before (by this call's twin, maybe a moment ago): a new statement
        // sees its row.
        let at = sqlx::query_scalar(
            "SELECT read_at FROM message_reads WHERE agent_id = $2 AND message_id = $1",
        )
        .bind(id)
        .bind(reader)
        .fetch_one(&self.pool)
        .await?;
        Ok(at)
    }
}
