//! The embedded mode's MCP sessions in the SQLite file ([`McpSessionFile`], issue #15 item
//! 6): the in-process hot store writes each session and subscription through to
//! `mcp_sessions` / `mcp_subscriptions` and reads them back when the gateway starts, so a
//! restart does not end the sessions of connected clients.

use super::{Db, SqliteStore};
use crate::error::Result;
use crate::store::hot::{FiledSession, FiledSubscription, McpSession, McpSessionFile};
use async_trait::async_trait;
use sqlx::Row;

impl SqliteStore {
    /// Runs one statement on a subscription's four columns (`?1`-`?4`: session, scope, key,
    /// uri) in its own write transaction.
    async fn subscription_statement(&self, sql: &str, sub: &FiledSubscription) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query(sql)
            .bind(&sub.session)
            .bind(&sub.scope)
            .bind(&sub.key)
            .bind(&sub.uri)
            .execute(&mut *tx)
            .await
            .db()?;
        tx.commit().await.db()
    }
}

#[async_trait]
impl McpSessionFile for SqliteStore {
    async fn file_session(&self, s: &FiledSession) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO mcp_sessions (id, owner, state, expires_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (id) DO UPDATE SET owner = excluded.owner, state = excluded.state,
                                            expires_at = excluded.expires_at",
        )
        .bind(&s.id)
        .bind(s.record.owner.as_deref())
        .bind(&s.record.state)
        .bind(s.expires_at_ms)
        .execute(&mut *tx)
        .await
        .db()?;
        tx.commit().await.db()
    }

    async fn touch_session(&self, session: &str, expires_at_ms: i64) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE mcp_sessions SET expires_at = ?2 WHERE id = ?1")
            .bind(session)
            .bind(expires_at_ms)
            .execute(&mut *tx)
            .await
            .db()?;
        tx.commit().await.db()
    }

    async fn unfile_session(&self, session: &str) -> Result<()> {
        let mut tx = self.begin().await?;
        for sql in [
            "DELETE FROM mcp_subscriptions WHERE session = ?1",
            "DELETE FROM mcp_sessions WHERE id = ?1",
        ] {
            sqlx::query(sql)
                .bind(session)
                .execute(&mut *tx)
                .await
                .db()?;
        }
        tx.commit().await.db()
    }

    async fn file_subscription(&self, sub: &FiledSubscription) -> Result<()> {
        self.subscription_statement(
            "INSERT INTO mcp_subscriptions (session, scope, key, uri) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT DO NOTHING",
            sub,
        )
        .await
    }

    async fn unfile_subscription(&self, sub: &FiledSubscription) -> Result<()> {
        self.subscription_statement(
            "DELETE FROM mcp_subscriptions
             WHERE session = ?1 AND scope = ?2 AND key = ?3 AND uri = ?4",
            sub,
        )
        .await
    }

    async fn filed_sessions(
        &self,
        now_ms: i64,
    ) -> Result<(Vec<FiledSession>, Vec<FiledSubscription>)> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "DELETE FROM mcp_subscriptions WHERE session NOT IN
               (SELECT id FROM mcp_sessions WHERE expires_at > ?1)",
        )
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .db()?;
        sqlx::query("DELETE FROM mcp_sessions WHERE expires_at <= ?1")
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .db()?;
        let sessions = sqlx::query("SELECT id, owner, state, expires_at FROM mcp_sessions")
            .fetch_all(&mut *tx)
            .await
            .db()?
            .iter()
            .map(|r| {
                Ok(FiledSession {
                    id: r.try_get("id").db()?,
                    record: McpSession {
                        owner: r.try_get("owner").db()?,
                        state: r.try_get("state").db()?,
                    },
                    expires_at_ms: r.try_get("expires_at").db()?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let subscriptions = sqlx::query("SELECT session, scope, key, uri FROM mcp_subscriptions")
            .fetch_all(&mut *tx)
            .await
            .db()?
            .iter()
            .map(|r| {
                Ok(FiledSubscription {
                    session: r.try_get("session").db()?,
                    scope: r.try_get("scope").db()?,
                    key: r.try_get("key").db()?,
                    uri: r.try_get("uri").db()?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        tx.commit().await.db()?;
        Ok((sessions, subscriptions))
    }
}
