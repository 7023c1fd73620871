//! The hot side of the sync service (crates/sync): the outbox consumer group and the task
//! cache the pull loop keeps fresh.
//!
//! Push: the outbox stream is read through one consumer group, so several sync processes
//! share it without reading an entry twice; an entry stays pending until the loop has
//! committed it to Postgres, then it is acknowledged and deleted in one step. Entries left
//! pending by a crashed consumer are claimed after an idle time (`XAUTOCLAIM`), and a
//! consumer left with nothing pending and idle past that time (one per restarted pusher) is
//! removed from the group.
//!
//! Pull: a task row is cached only when it is newer than what the cache holds, and its
//! `task_updated` event is emitted by the same script, so two sync processes racing on one
//! row publish it once, and a late, older copy never overwrites a newer one.

use super::hot::{HotSync, OutboxDepth, OutboxEntry, Refreshed, TaskRefresh, cached_task_json};
use super::redis::RedisStore;
use crate::error::Result;
use crate::ids::TaskId;
use async_trait::async_trait;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamPendingReply, StreamReadReply};
use redis::{AsyncCommands, Script};
use std::sync::LazyLock;
use std::time::Duration;

const EMIT: &str = include_str!("lua/emit.lua");

/// Caches a task row unless the cache holds the same or a higher change number, and emits
/// its event when asked. KEYS[1..5] and ARGV[1..6] are the emit fragment's; KEYS[6] the
/// task's cache key; ARGV[7] the row (JSON with its `change_seq`), ARGV[8] its change number,
/// ARGV[9] the TTL, ARGV[10] '1' to emit. Answers 1 (cached), 0 (same row held), -1 (a newer
/// row held). (Change numbers stay far below 2^53, so Lua's numbers hold them exactly.)
static REFRESH_TASK_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{EMIT}\n{}",
        r#"
local cur = redis.call('GET', KEYS[6])
if cur then
  local ok, row = pcall(cjson.decode, cur)
  local held = 0
  if ok and type(row) == 'table' then held = tonumber(row['change_seq']) or 0 end
  local new = tonumber(ARGV[8])
  if held == new then return 0 end
  if held > new then return -1 end
end
redis.call('SET', KEYS[6], ARGV[7], 'EX', ARGV[9])
if ARGV[10] == '1' then emit(ARGV[3]) end
return 1
"#
    ))
});

/// Removes the group's dead consumers: every one but ARGV[2] with no pending entry and an
/// `idle` (as `XINFO CONSUMERS` reports it: time since it last read or claimed) over ARGV[3] ms. KEYS[1] the outbox;
/// ARGV[1] the group. One script, so no consumer can read between the check and the removal
/// (`XGROUP DELCONSUMER` drops a consumer's pending entries with it). Answers the names
/// removed; nothing when the group does not exist.
static REMOVE_DEAD_CONSUMERS_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local ok, consumers = pcall(redis.call, 'XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
if not ok then return {} end
local removed = {}
local min_idle = tonumber(ARGV[3])
for _, c in ipairs(consumers) do
  local f = {}
  for i = 1, #c, 2 do f[c[i]] = c[i + 1] end
  if f['name'] ~= ARGV[2] and tonumber(f['pending']) == 0 and tonumber(f['idle']) > min_idle then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], f['name'])
    removed[#removed + 1] = f['name']
  end
end
return removed
"#,
    )
});

/// Moves an agent's presence forward (never backwards) from its durable row.
/// KEYS[1] presence hash; ARGV[1] last seen (ms); ARGV[2] current task or ''.
static REFRESH_AGENT_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local cur = tonumber(redis.call('HGET', KEYS[1], 'last_seen') or '0') or 0
if tonumber(ARGV[1]) <= cur then return 0 end
redis.call('HSET', KEYS[1], 'last_seen', ARGV[1])
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'task', ARGV[2]) end
return 1
"#,
    )
});

fn value_to_string(v: &redis::Value) -> String {
    match v {
        redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        redis::Value::SimpleString(s) => s.clone(),
        redis::Value::Int(i) => i.to_string(),
        other => format!("{other:?}"),
    }
}

fn entry_from(s: StreamId) -> OutboxEntry {
    OutboxEntry {
        fields: s
            .map
            .iter()
            .map(|(k, v)| (k.clone(), value_to_string(v)))
            .collect(),
        id: s.id,
    }
}

fn is_nogroup(e: &redis::RedisError) -> bool {
    e.code() == Some("NOGROUP") || e.to_string().contains("NOGROUP")
}

impl RedisStore {
    async fn outbox_read(
        &self,
        group: &str,
        consumer: &str,
        from: &str,
        count: usize,
    ) -> Result<Vec<OutboxEntry>> {
        let key = self.keys().outbox();
        for attempt in 0..2 {
            let mut c = self.connection();
            let r: redis::RedisResult<Option<StreamReadReply>> = redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(group)
                .arg(consumer)
                .arg("COUNT")
                .arg(count)
                .arg("STREAMS")
                .arg(&key)
                .arg(from)
                .query_async(&mut c)
                .await;
            match r {
                Ok(reply) => {
                    return Ok(reply
                        .map(|r| r.keys.into_iter().flat_map(|k| k.ids).map(entry_from))
                        .into_iter()
                        .flatten()
                        .collect());
                }
                // Redis lost the stream and its group: make them again.
                Err(e) if attempt == 0 && is_nogroup(&e) => {
                    self.outbox_create_group(group).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Vec::new())
    }
}

#[async_trait]
impl HotSync for RedisStore {
    /// Creates the consumer group on the outbox (and the stream), unless it exists.
    async fn outbox_create_group(&self, group: &str) -> Result<()> {
        let mut c = self.connection();
        let r: redis::RedisResult<()> = c
            .xgroup_create_mkstream(self.keys().outbox(), group, "0")
            .await;
        match r {
            Ok(()) => Ok(()),
            Err(e) if e.code() == Some("BUSYGROUP") || e.to_string().contains("BUSYGROUP") => {
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// This consumer's own delivered, unacknowledged entries (after a failed commit).
    async fn outbox_read_pending(
        &self,
        group: &str,
        consumer: &str,
        count: usize,
    ) -> Result<Vec<OutboxEntry>> {
        self.outbox_read(group, consumer, "0", count).await
    }

    /// Up to `count` entries never delivered to any consumer of the group (no blocking).
    async fn outbox_read_new(
        &self,
        group: &str,
        consumer: &str,
        count: usize,
    ) -> Result<Vec<OutboxEntry>> {
        self.outbox_read(group, consumer, ">", count).await
    }

    /// Takes over up to `count` entries pending in another consumer for longer than
    /// `min_idle` (a crashed or stuck pusher's).
    async fn outbox_claim_idle(
        &self,
        group: &str,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<OutboxEntry>> {
        let mut c = self.connection();
        let r: redis::RedisResult<StreamAutoClaimReply> = redis::cmd("XAUTOCLAIM")
            .arg(self.keys().outbox())
            .arg(group)
            .arg(consumer)
            .arg(min_idle.as_millis() as u64)
            .arg("0-0")
            .arg("COUNT")
            .arg(count)
            .query_async(&mut c)
            .await;
        match r {
            Ok(reply) => Ok(reply.claimed.into_iter().map(entry_from).collect()),
            Err(e) if is_nogroup(&e) => {
                self.outbox_create_group(group).await?;
                Ok(Vec::new())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// `XINFO CONSUMERS` and `XGROUP DELCONSUMER` in one script (see
    /// [`REMOVE_DEAD_CONSUMERS_SCRIPT`]).
    async fn outbox_remove_dead_consumers(
        &self,
        group: &str,
        consumer: &str,
        min_idle: Duration,
    ) -> Result<Vec<String>> {
        let mut c = self.connection();
        Ok(REMOVE_DEAD_CONSUMERS_SCRIPT
            .key(self.keys().outbox())
            .arg(group)
            .arg(consumer)
            .arg(min_idle.as_millis() as u64)
            .invoke_async(&mut c)
            .await?)
    }

    /// Acknowledges and deletes committed entries, in one step.
    async fn outbox_ack(&self, group: &str, ids: &[String]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let key = self.keys().outbox();
        let mut c = self.connection();
        let _: () = redis::pipe()
            .atomic()
            .xack(&key, group, ids)
            .ignore()
            .xdel(&key, ids)
            .ignore()
            .query_async(&mut c)
            .await?;
        Ok(())
    }

    /// The outbox's length and the group's pending count.
    async fn outbox_depth(&self, group: &str) -> Result<OutboxDepth> {
        let key = self.keys().outbox();
        let mut c = self.connection();
        let length: u64 = c.xlen(&key).await?;
        let pending: redis::RedisResult<StreamPendingReply> = c.xpending(&key, group).await;
        let pending = match pending {
            Ok(p) => p.count() as u64,
            Err(e) if is_nogroup(&e) => 0,
            Err(e) => return Err(e.into()),
        };
        Ok(OutboxDepth { length, pending })
    }

    /// Caches task rows that are newer than the cache (emitting their events when they carry
    /// an envelope), in one round trip. One answer per row, in order.
    async fn refresh_tasks(
        &self,
        rows: &[TaskRefresh<'_>],
        agent: &str,
        ttl_secs: u64,
        events_cap: usize,
    ) -> Result<Vec<Refreshed>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let keys = self.keys();
        let mut invocations = Vec::with_capacity(rows.len());
        for r in rows {
            let json = cached_task_json(r.task, r.seq)?;
            let mut inv = REFRESH_TASK_SCRIPT.prepare_invoke();
            inv.key(keys.events(&r.id))
                .key(keys.agent(agent))
                .key(keys.collab_members(&r.id))
                .key(keys.collab_activity(&r.id))
                .key(keys.outbox())
                .key(keys.task(&r.id))
                .arg(keys.channel(&r.id))
                .arg(events_cap)
                .arg(r.envelope.as_deref().unwrap_or("{}"))
                .arg(agent)
                .arg(r.id.as_str())
                .arg("")
                .arg(json)
                .arg(r.seq)
                .arg(ttl_secs)
                .arg(if r.envelope.is_some() { "1" } else { "0" });
            invocations.push(inv);
        }
        let mut pipe = redis::pipe();
        pipe.load_script(&REFRESH_TASK_SCRIPT).ignore();
        for inv in &invocations {
            pipe.invoke_script(inv);
        }
        let mut c = self.connection();
        let answers: Vec<i64> = pipe.query_async(&mut c).await?;
        Ok(answers
            .into_iter()
            .map(|a| match a {
                1 => Refreshed::Changed,
                0 => Refreshed::Unchanged,
                _ => Refreshed::Older,
            })
            .collect())
    }

    /// Drops cached task rows (deleted tasks).
    async fn delete_cached_tasks(&self, ids: &[TaskId]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut c = self.connection();
        let keys: Vec<String> = ids.iter().map(|id| self.keys().task(id)).collect();
        let _: () = c.del(keys).await?;
        Ok(())
    }

    /// Moves agents' presence forward from their durable rows: (agent, last seen ms, task).
    async fn refresh_agents(&self, agents: &[(String, i64, Option<String>)]) -> Result<()> {
        if agents.is_empty() {
            return Ok(());
        }
        let mut invocations = Vec::with_capacity(agents.len());
        for (agent, seen_ms, task) in agents {
            let mut inv = REFRESH_AGENT_SCRIPT.prepare_invoke();
            inv.key(self.keys().agent(agent))
                .arg(*seen_ms)
                .arg(task.as_deref().unwrap_or(""));
            invocations.push(inv);
        }
        let mut pipe = redis::pipe();
        pipe.load_script(&REFRESH_AGENT_SCRIPT).ignore();
        for inv in &invocations {
            pipe.invoke_script(inv).ignore();
        }
        let mut c = self.connection();
        let _: () = pipe.query_async(&mut c).await?;
        Ok(())
    }

    /// Whether the task cache is known to be warm (the marker survives only while Redis keeps
    /// its data).
    async fn sync_is_warm(&self) -> Result<bool> {
        let mut c = self.connection();
        Ok(c.exists(self.keys().sync_warm()).await?)
    }

    /// Records that the task cache was warmed.
    async fn set_sync_warm(&self) -> Result<()> {
        let mut c = self.connection();
        let now = chrono::Utc::now().timestamp_millis();
        let _: () = c.set(self.keys().sync_warm(), now).await?;
        Ok(())
    }
}
