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
//! On a Redis Cluster the outbox is one stream per hash slot (a step goes to the outbox of its
//! task's slot, in the same script as the task's log): the push loop reads every stream the
//! index `outbox:slots` names, and an entry's id carries its slot (`<ms>-<seq>@<slot>`), so
//! that it is acknowledged in its own stream and two streams' equal ids stay distinct.
//!
//! Pull: a task row is cached only when it is newer than what the cache holds, and its
//! `task_updated` event is emitted by the same script, so two sync processes racing on one
//! row publish it once, and a late, older copy never overwrites a newer one.

use super::CACHED_TASK_SEQ;
use super::RedisStore;
use super::keys::key_slot;
use crate::error::Result;
use crate::ids::TaskId;
use crate::store::hot::{
    AgentSeen, HotSync, Outbox, OutboxDepth, OutboxEntry, Refreshed, TaskRefresh, cached_task_json,
};
use async_trait::async_trait;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamPendingReply, StreamReadReply};
use redis::{AsyncCommands, Script};
use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

const EMIT: &str = include_str!("lua/emit.lua");

/// Caches a task row unless the cache holds the same or a higher change number, and emits
/// its event when asked. KEYS[1..4] and ARGV[1..6] are the emit fragment's; KEYS[5] the
/// task's cache key (its name is the hash tag of the task's other keys: one slot); ARGV[7] the row (JSON with its `change_seq`), ARGV[8] its change number,
/// ARGV[9] the TTL, ARGV[10] '1' to emit. Answers 1 (cached), 0 (same row held), -1 (a newer
/// row held).
static REFRESH_TASK_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{EMIT}\n{CACHED_TASK_SEQ}\n{}",
        r#"
local held, new = cached_task_seq(KEYS[5]), tonumber(ARGV[8])
if held == new then return 0 end
if held and held > new then return -1 end
redis.call('SET', KEYS[5], ARGV[7], 'EX', ARGV[9])
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

/// An outbox entry of the stream of `slot` (a cluster's; `None`: the one outbox).
fn entry_from(slot: Option<u16>, s: StreamId) -> OutboxEntry {
    OutboxEntry {
        fields: s
            .map
            .iter()
            .map(|(k, v)| (k.clone(), value_to_string(v)))
            .collect(),
        id: match slot {
            Some(slot) => format!("{}@{slot}", s.id),
            None => s.id,
        },
    }
}

fn is_nogroup(e: &redis::RedisError) -> bool {
    e.code() == Some("NOGROUP") || e.to_string().contains("NOGROUP")
}

impl RedisStore {
    /// Up to `count` entries from the outbox streams, in turn.
    async fn outbox_read(
        &self,
        group: &str,
        consumer: &str,
        from: &str,
        count: usize,
    ) -> Result<Vec<OutboxEntry>> {
        let mut out = Vec::new();
        for (slot, key) in self.outbox_streams().await? {
            if out.len() >= count {
                break;
            }
            let left = count - out.len();
            out.extend(
                self.outbox_read_stream(slot, &key, group, consumer, from, left)
                    .await?,
            );
        }
        Ok(out)
    }

    async fn outbox_read_stream(
        &self,
        slot: Option<u16>,
        key: &str,
        group: &str,
        consumer: &str,
        from: &str,
        count: usize,
    ) -> Result<Vec<OutboxEntry>> {
        for attempt in 0..2 {
            let mut c = self.connection();
            let r: redis::RedisResult<Option<StreamReadReply>> = redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(group)
                .arg(consumer)
                .arg("COUNT")
                .arg(count)
                .arg("STREAMS")
                .arg(key)
                .arg(from)
                .query_async(&mut c)
                .await;
            match r {
                Ok(reply) => {
                    return Ok(reply
                        .map(|r| {
                            r.keys
                                .into_iter()
                                .flat_map(|k| k.ids)
                                .map(|id| entry_from(slot, id))
                        })
                        .into_iter()
                        .flatten()
                        .collect());
                }
                // Redis lost the stream and its group (or, on a cluster, a slot's outbox has
                // no group yet): make them.
                Err(e) if attempt == 0 && is_nogroup(&e) => {
                    self.create_group_on(key, group).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Vec::new())
    }

    /// Runs invocations of `script` (each on its own keys, in the hash slot given beside it),
    /// in order, answers in order: one pipeline on one server. On a cluster, whose pipelines
    /// must stay in one slot, the invocations of one slot run one after another and the slots
    /// concurrently (the cluster client sends them to their nodes at once): run together, a
    /// later invocation of a slot could overtake an earlier one (the retries after `NOSCRIPT`
    /// of a script the node does not hold yet race).
    async fn invoke_all<T: redis::FromRedisValue>(
        &self,
        script: &Script,
        invocations: &[(u16, redis::ScriptInvocation<'_>)],
    ) -> Result<Vec<T>> {
        if self.keys().cluster() {
            let mut by_slot: HashMap<u16, Vec<usize>> = HashMap::new();
            for (i, (slot, _)) in invocations.iter().enumerate() {
                by_slot.entry(*slot).or_default().push(i);
            }
            let runs = by_slot.into_values().map(|indexes| {
                let mut c = self.connection();
                async move {
                    let mut answers = Vec::with_capacity(indexes.len());
                    for i in indexes {
                        answers.push((i, invocations[i].1.invoke_async::<T>(&mut c).await?));
                    }
                    Ok::<_, redis::RedisError>(answers)
                }
            });
            let mut answers: Vec<(usize, T)> = Vec::with_capacity(invocations.len());
            for run in futures::future::join_all(runs).await {
                answers.extend(run?);
            }
            answers.sort_by_key(|(i, _)| *i);
            return Ok(answers.into_iter().map(|(_, a)| a).collect());
        }
        let mut pipe = redis::pipe();
        pipe.load_script(script).ignore();
        for (_, inv) in invocations {
            pipe.invoke_script(inv);
        }
        let mut c = self.connection();
        Ok(pipe.query_async(&mut c).await?)
    }

    /// Creates the consumer group on one outbox stream (and the stream), unless it exists.
    async fn create_group_on(&self, key: &str, group: &str) -> Result<()> {
        let mut c = self.connection();
        let r: redis::RedisResult<()> = c.xgroup_create_mkstream(key, group, "0").await;
        match r {
            Ok(()) => Ok(()),
            Err(e) if e.code() == Some("BUSYGROUP") || e.to_string().contains("BUSYGROUP") => {
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The stream an entry id names and the id within it (see [`entry_from`]).
    fn entry_stream<'i>(&self, id: &'i str) -> (String, &'i str) {
        match id.rsplit_once('@') {
            Some((id, slot)) if self.keys().cluster() => (
                self.keys().outbox_shard(slot.parse().unwrap_or_default()),
                id,
            ),
            _ => (self.keys().outbox(), id),
        }
    }
}

#[async_trait]
impl Outbox for RedisStore {
    /// Entries waiting in the sync outbox (delivered to a pusher or not; on a cluster, in
    /// every slot's outbox).
    async fn outbox_length(&self) -> Result<u64> {
        let mut c = self.connection();
        let mut n = 0;
        for (_, stream) in self.outbox_streams().await? {
            n += c.xlen::<_, u64>(stream).await?;
        }
        Ok(n)
    }

    /// Creates the consumer group on the outbox (and the stream), unless it exists (on a
    /// cluster, on every slot's outbox the index names; later ones get theirs when first
    /// read).
    async fn outbox_create_group(&self, group: &str) -> Result<()> {
        for (_, key) in self.outbox_streams().await? {
            self.create_group_on(&key, group).await?;
        }
        Ok(())
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
        let mut out = Vec::new();
        for (slot, key) in self.outbox_streams().await? {
            if out.len() >= count {
                break;
            }
            let mut c = self.connection();
            let r: redis::RedisResult<StreamAutoClaimReply> = redis::cmd("XAUTOCLAIM")
                .arg(&key)
                .arg(group)
                .arg(consumer)
                .arg(min_idle.as_millis() as u64)
                .arg("0-0")
                .arg("COUNT")
                .arg(count - out.len())
                .query_async(&mut c)
                .await;
            match r {
                Ok(reply) => out.extend(reply.claimed.into_iter().map(|id| entry_from(slot, id))),
                Err(e) if is_nogroup(&e) => self.create_group_on(&key, group).await?,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(out)
    }

    /// `XINFO CONSUMERS` and `XGROUP DELCONSUMER` in one script (see
    /// [`REMOVE_DEAD_CONSUMERS_SCRIPT`]).
    async fn outbox_remove_dead_consumers(
        &self,
        group: &str,
        consumer: &str,
        min_idle: Duration,
    ) -> Result<Vec<String>> {
        let mut removed: Vec<String> = Vec::new();
        for (_, key) in self.outbox_streams().await? {
            let mut c = self.connection();
            let names: Vec<String> = REMOVE_DEAD_CONSUMERS_SCRIPT
                .key(key)
                .arg(group)
                .arg(consumer)
                .arg(min_idle.as_millis() as u64)
                .invoke_async(&mut c)
                .await?;
            for n in names {
                if !removed.contains(&n) {
                    removed.push(n);
                }
            }
        }
        Ok(removed)
    }

    /// Acknowledges and deletes committed entries, in one step.
    async fn outbox_ack(&self, group: &str, ids: &[String]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut by_stream: HashMap<String, Vec<&str>> = HashMap::new();
        for id in ids {
            let (key, id) = self.entry_stream(id);
            by_stream.entry(key).or_default().push(id);
        }
        for (key, ids) in by_stream {
            let mut c = self.connection();
            let _: () = redis::pipe()
                .atomic()
                .xack(&key, group, &ids)
                .ignore()
                .xdel(&key, &ids)
                .ignore()
                .query_async(&mut c)
                .await?;
        }
        Ok(())
    }

    /// The outbox's length and the group's pending count.
    async fn outbox_depth(&self, group: &str) -> Result<OutboxDepth> {
        let mut depth = OutboxDepth {
            length: 0,
            pending: 0,
        };
        for (_, key) in self.outbox_streams().await? {
            let mut c = self.connection();
            depth.length += c.xlen::<_, u64>(&key).await?;
            let pending: redis::RedisResult<StreamPendingReply> = c.xpending(&key, group).await;
            depth.pending += match pending {
                Ok(p) => p.count() as u64,
                Err(e) if is_nogroup(&e) => 0,
                Err(e) => return Err(e.into()),
            };
        }
        Ok(depth)
    }
}

#[async_trait]
impl HotSync for RedisStore {
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
                .key(keys.collab_members(&r.id))
                .key(keys.collab_activity(&r.id))
                .key(keys.outbox_of(&r.id))
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
            invocations.push((keys.task_slot(&r.id), inv));
        }
        let answers: Vec<i64> = self.invoke_all(&REFRESH_TASK_SCRIPT, &invocations).await?;
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

    /// Moves agents' presence forward from their durable rows.
    async fn refresh_agents(&self, agents: &[AgentSeen]) -> Result<()> {
        if agents.is_empty() {
            return Ok(());
        }
        let mut invocations = Vec::with_capacity(agents.len());
        for a in agents {
            let key = self.keys().agent(&a.agent);
            let slot = key_slot(key.as_bytes());
            let mut inv = REFRESH_AGENT_SCRIPT.prepare_invoke();
            inv.key(key)
                .arg(a.last_seen_ms)
                .arg(a.task.as_deref().unwrap_or(""));
            invocations.push((slot, inv));
        }
        let _: Vec<i64> = self.invoke_all(&REFRESH_AGENT_SCRIPT, &invocations).await?;
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
