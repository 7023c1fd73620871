//! Messages in SQLite ([`DurableMessages`]): the same tables and answers as Postgres
//! (`store/postgres/messages.rs`), recipients kept as a JSON array beside the
//! `message_recipients` rows. One writer, so `AUTOINCREMENT` ids are in commit order.

use super::{Db, SqliteStore, audit_row, json_list, json_strings, no_nul, now, ts};
use crate::error::Result;
use crate::store::durable::{DurableMessages, InboxQuery, NewMessage, StoredMessage};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

const COLUMNS: &str = "m.id, m.task_id, m.sender, m.broadcast, m.to_agents, m.subject, m.body, \
                       m.thread_id, m.reply_to, m.importance, m.sent_at";

fn message_from(r: &SqliteRow) -> Result<StoredMessage> {
    Ok(StoredMessage {
        id: r.try_get("id").db()?,
        task_id: r.try_get("task_id").db()?,
        from: r.try_get("sender").db()?,
        broadcast: r.try_get("broadcast").db()?,
        to: json_strings(r.try_get("to_agents").db()?)?,
        subject: r.try_get("subject").db()?,
        body: r.try_get("body").db()?,
        thread_id: r.try_get("thread_id").db()?,
        reply_to: r.try_get("reply_to").db()?,
        importance: r.try_get("importance").db()?,
        sent_at: r.try_get("sent_at").db()?,
        read_at: r.try_get("read_at").db()?,
    })
}

#[async_trait]
impl DurableMessages for SqliteStore {
    async fn send_message(&self, m: &NewMessage<'_>) -> Result<StoredMessage> {
        no_nul(
            [
                Some(m.task.as_str()),
                Some(m.from),
                Some(m.subject),
                Some(m.body),
                m.thread_id,
                m.request_id,
            ]
            .into_iter()
            .chain(m.to.iter().map(|a| Some(a.as_str()))),
        )?;
        let to = json_list(Some(m.to))?.unwrap_or_else(|| "[]".into());
        let mut tx = self.begin().await?;
        let at = ts(now());
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO messages (task_id, sender, broadcast, to_agents, subject, body,
                                   thread_id, reply_to, importance, sent_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, COALESCE(?7, ''), ?8, ?9, ?10)
             RETURNING id",
        )
        .bind(m.task.as_str())
        .bind(m.from)
        .bind(m.broadcast)
        .bind(&to)
        .bind(m.subject)
        .bind(m.body)
        .bind(m.thread_id)
        .bind(m.reply_to)
        .bind(m.importance)
        .bind(&at)
        .fetch_one(&mut *tx)
        .await
        .db()?;
        if m.thread_id.is_none() {
            sqlx::query("UPDATE messages SET thread_id = CAST(id AS TEXT) WHERE id = ?1")
                .bind(id)
                .execute(&mut *tx)
                .await
                .db()?;
        }
        for agent in m.to {
            sqlx::query("INSERT INTO message_recipients (agent_id, message_id) VALUES (?1, ?2)")
                .bind(agent)
                .bind(id)
                .execute(&mut *tx)
                .await
                .db()?;
        }
        audit_row(
            &mut tx,
            &at,
            m.from,
            "send_message",
            m.task.as_str(),
            None,
            None,
            None,
            m.request_id,
        )
        .await?;
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS}, NULL AS read_at FROM messages m WHERE m.id = ?1"
        ))
        .bind(id)
        .fetch_one(&mut *tx)
        .await
        .db()?;
        let stored = message_from(&row)?;
        tx.commit().await.db()?;
        Ok(stored)
    }

    async fn inbox(&self, q: &InboxQuery<'_>) -> Result<Vec<StoredMessage>> {
        no_nul([Some(q.agent), q.task])?;
        let tasks_in = json_list(q.tasks_in)?;
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS}, rd.read_at FROM messages m
             LEFT JOIN message_reads rd ON rd.message_id = m.id AND rd.agent_id = ?1
             WHERE m.id IN (
                 SELECT message_id FROM message_recipients WHERE agent_id = ?1 AND message_id > ?2
                 UNION ALL
                 SELECT id FROM messages WHERE broadcast AND id > ?2 AND sender <> ?1
             )
               AND (?3 IS NULL OR m.task_id = ?3)
               AND (?4 IS NULL OR m.task_id IN (SELECT value FROM json_each(?4)))
               AND (NOT ?5 OR rd.read_at IS NULL)
             ORDER BY m.id
             LIMIT ?6"
        ))
        .bind(q.agent)
        .bind(q.after)
        .bind(q.task)
        .bind(&tasks_in)
        .bind(q.unread_only)
        .bind(q.limit)
        .fetch_all(&self.reader)
        .await
        .db()?;
        rows.iter().map(message_from).collect()
    }

    async fn message_for(
        &self,
        id: i64,
        reader: &str,
        tasks_in: Option<&[String]>,
    ) -> Result<Option<StoredMessage>> {
        no_nul([Some(reader)])?;
        let tasks_in = json_list(tasks_in)?;
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS}, rd.read_at FROM messages m
             LEFT JOIN message_reads rd ON rd.message_id = m.id AND rd.agent_id = ?2
             WHERE m.id = ?1
               AND (m.broadcast OR m.sender = ?2 OR EXISTS (
                   SELECT 1 FROM message_recipients x WHERE x.agent_id = ?2 AND x.message_id = m.id))
               AND (?3 IS NULL OR m.task_id IN (SELECT value FROM json_each(?3)))"
        ))
        .bind(id)
        .bind(reader)
        .bind(&tasks_in)
        .fetch_optional(&self.reader)
        .await
        .db()?;
        row.as_ref().map(message_from).transpose()
    }

    async fn ack_message(&self, id: i64, reader: &str) -> Result<DateTime<Utc>> {
        no_nul([Some(reader)])?;
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO message_reads (agent_id, message_id, read_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (agent_id, message_id) DO NOTHING",
        )
        .bind(reader)
        .bind(id)
        .bind(ts(now()))
        .execute(&mut *tx)
        .await
        .db()?;
        let at: DateTime<Utc> = sqlx::query_scalar(
            "SELECT read_at FROM message_reads WHERE agent_id = ?1 AND message_id = ?2",
        )
        .bind(reader)
        .bind(id)
        .fetch_one(&mut *tx)
        .await
        .db()?;
        tx.commit().await.db()?;
        Ok(at)
    }
}
