//! [`McpSessions`] in Redis: what the MCP door (`/mcp`) shares between gateway instances: session state (so a
//! session opened on one instance is served by any other) and the resource subscriptions of
//! those sessions (so the instance that holds a session's notification stream learns what a
//! `resources/subscribe` on another instance asked for), and the catch-up read of a task's
//! recent events for a new listener.
//!
//! Nothing here is durable truth: a lost session makes the client initialise again, a lost
//! subscription stops its notifications. Everything carries a TTL.

use super::RedisStore;
use super::keys::{
    parse_session_record, parse_subscription_entry, session_entry, session_record,
    split_session_entry, subscription_entry,
};
use crate::error::Result;
use crate::ids::TaskId;
use crate::store::hot::{
    LISTEN_CANCEL_KEPT, McpSession, McpSessions, MessageSource, SubScope, Subscriber,
};
use async_trait::async_trait;
use mcp_api::Event;
use redis::{AsyncCommands, Script};
use std::sync::LazyLock;
use std::time::Duration;

/// Removes a session, its subscription list, and each of its entries from the indexes.
static DROP_SESSION_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local entries = redis.call('SMEMBERS', KEYS[2])
for _, e in ipairs(entries) do
  local sep = string.find(e, '\31', 1, true)
  if sep then
    redis.call('SREM', string.sub(e, 1, sep - 1), string.sub(e, sep + 1))
  end
end
return redis.call('DEL', KEYS[1], KEYS[2])
"#,
    )
});

#[async_trait]
impl McpSessions for RedisStore {
    /// Saves a session's record for `ttl`.
    async fn save_session(&self, session: &str, record: &McpSession, ttl: Duration) -> Result<()> {
        let mut c = self.connection();
        let _: () = redis::cmd("SET")
            .arg(self.keys().mcp_session(session))
            .arg(session_record(record))
            .arg("EX")
            .arg(ttl.as_secs().max(1))
            .query_async(&mut c)
            .await?;
        Ok(())
    }

    /// A session's record, extending its life by `ttl` (and that of its subscription list).
    async fn load_session(&self, session: &str, ttl: Duration) -> Result<Option<McpSession>> {
        let mut c = self.connection();
        let secs = ttl.as_secs().max(1);
        let (state, _): (Option<String>, i64) = redis::pipe()
            .cmd("GETEX")
            .arg(self.keys().mcp_session(session))
            .arg("EX")
            .arg(secs)
            .cmd("EXPIRE")
            .arg(self.keys().mcp_session_subs(session))
            .arg(secs)
            .query_async(&mut c)
            .await?;
        Ok(state.map(parse_session_record))
    }

    /// Forgets a session and every subscription it held. On a cluster the indexes live in
    /// the slots of their tasks and agents, not the session's: the session's list is read,
    /// each entry removed from its index, then the session forgotten (an index entry a
    /// concurrent `subscribe` adds meanwhile lives until its TTL).
    async fn drop_session(&self, session: &str) -> Result<()> {
        let mut c = self.connection();
        if self.keys().cluster() {
            let own = self.keys().mcp_session_subs(session);
            let entries: Vec<String> = c.smembers(&own).await?;
            let removals =
                entries
                    .iter()
                    .filter_map(|e| split_session_entry(e))
                    .map(|(index, entry)| {
                        let mut c = self.connection();
                        async move { c.srem::<_, _, i64>(index, entry).await }
                    });
            for r in futures::future::join_all(removals).await {
                r?;
            }
            let _: i64 = c.del(self.keys().mcp_session(session)).await?;
            let _: i64 = c.del(own).await?;
            return Ok(());
        }
        let _: i64 = DROP_SESSION_SCRIPT
            .key(self.keys().mcp_session(session))
            .key(self.keys().mcp_session_subs(session))
            .invoke_async(&mut c)
            .await?;
        Ok(())
    }

    /// Records that `session` subscribes to the resource `key` (as `uri`), for `ttl`.
    async fn subscribe(
        &self,
        session: &str,
        scope: SubScope<'_>,
        key: &str,
        uri: &str,
        ttl: Duration,
    ) -> Result<()> {
        let index = self.keys().mcp_subs(scope);
        let entry = subscription_entry(session, key, uri);
        let own = self.keys().mcp_session_subs(session);
        let secs = ttl.as_secs().max(1);
        // The index lives in the task's (agent's) slot, the session's list in the session's:
        // one transaction in each, sent together.
        let (mut c, mut d) = (self.connection(), self.connection());
        let mut in_index = redis::pipe();
        in_index
            .atomic()
            .sadd(&index, &entry)
            .ignore()
            .expire(&index, secs as i64)
            .ignore();
        let mut in_own = redis::pipe();
        in_own
            .atomic()
            .sadd(&own, session_entry(&index, &entry))
            .ignore()
            .expire(&own, secs as i64)
            .ignore();
        let (a, b): (redis::RedisResult<()>, redis::RedisResult<()>) =
            tokio::join!(in_index.query_async(&mut c), in_own.query_async(&mut d));
        a?;
        b?;
        Ok(())
    }

    /// Removes the subscription `subscribe` recorded (nothing when there is none).
    async fn unsubscribe(
        &self,
        session: &str,
        scope: SubScope<'_>,
        key: &str,
        uri: &str,
    ) -> Result<()> {
        let index = self.keys().mcp_subs(scope);
        let entry = subscription_entry(session, key, uri);
        let (mut c, mut d) = (self.connection(), self.connection());
        let own = self.keys().mcp_session_subs(session);
        let (a, b): (redis::RedisResult<i64>, redis::RedisResult<i64>) = tokio::join!(
            c.srem(&index, &entry),
            d.srem(own, session_entry(&index, &entry))
        );
        a?;
        b?;
        Ok(())
    }

    /// Every subscription to a resource of this task (or agent).
    async fn subscribers(&self, scope: SubScope<'_>) -> Result<Vec<Subscriber>> {
        let mut c = self.connection();
        let entries: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.keys().mcp_subs(scope))
            .query_async(&mut c)
            .await?;
        Ok(entries
            .into_iter()
            .filter_map(|e| parse_subscription_entry(&e))
            .collect())
    }

    /// Every subscription one session holds: its own list names each index entry.
    async fn session_subscriptions(&self, session: &str) -> Result<Vec<Subscriber>> {
        let mut c = self.connection();
        let entries: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.keys().mcp_session_subs(session))
            .query_async(&mut c)
            .await?;
        Ok(entries
            .iter()
            .filter_map(|e| split_session_entry(e))
            .filter_map(|(_, entry)| parse_subscription_entry(entry))
            .collect())
    }

    /// The record (`SET … PX`), then the `PUBLISH` on the cancellation channel: whoever
    /// hears the message finds the record. (Two commands: a channel is not a key, and a
    /// cluster client routes a transaction by its keys.)
    async fn publish_listen_cancel(&self, name: &str, at_ms: i64) -> Result<()> {
        let mut c = self.connection();
        let _: () = redis::cmd("SET")
            .arg(self.keys().mcp_listen_cancelled(name))
            .arg(at_ms)
            .arg("PX")
            .arg(LISTEN_CANCEL_KEPT.as_millis() as u64)
            .query_async(&mut c)
            .await?;
        let _: i64 = redis::cmd("PUBLISH")
            .arg(self.keys().mcp_listen_cancels())
            .arg(name)
            .query_async(&mut c)
            .await?;
        Ok(())
    }

    async fn listen_cancelled_at(&self, name: &str) -> Result<Option<i64>> {
        let mut c = self.connection();
        Ok(redis::cmd("GET")
            .arg(self.keys().mcp_listen_cancelled(name))
            .query_async(&mut c)
            .await?)
    }

    /// A connection of its own, subscribed to the cancellation channel.
    async fn subscribe_listen_cancels(&self) -> Result<Box<dyn MessageSource>> {
        self.subscribe_channel(self.keys().mcp_listen_cancels())
            .await
    }

    /// Events of one task appended at or after `since_ms` (Redis time, ms), oldest first, at
    /// most `limit`: a subscriber's catch-up for the moments before its registration.
    async fn events_since(&self, task: &TaskId, since_ms: i64, limit: usize) -> Result<Vec<Event>> {
        let from = format!("{}-0", since_ms.max(0));
        let entries = self
            .stream_range("XRANGE", self.keys().events(task), &from, "+", limit, "e")
            .await?;
        Ok(entries
            .into_iter()
            .filter_map(|(id, raw)| {
                let mut event: Event = serde_json::from_str(&raw).ok()?;
                event.id = Some(id.to_string());
                Some(event)
            })
            .collect())
    }
}
