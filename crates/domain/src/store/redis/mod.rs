//! The hot store: Redis. Kept here: hot copies of files and task rows (caches, refilled from
//! Postgres on a miss), file leases (authoritative while they live; fences come from Postgres),
//! the capped step-log and event streams, collaboration membership and presence, and the sync
//! outbox (records the push loop persists to Postgres). Every multi-key change is one Lua
//! script, so it is atomic and one round trip; its keys share one hash slot (`keys.rs`), so
//! the same scripts run on a Redis Cluster.

pub mod conn;
pub mod keys;
pub mod mcp;
pub mod sync;

use self::conn::{ConnSettings, RedisConn};
use self::keys::Keys;
use super::hot::{
    CacheFile, Claim, ClaimOutcome, Collaboration, Emit, EventLog, FileCache, HeldLease,
    HotBackend, HotFile, HotRead, Interest, Lease, LeaseEvent, LeasePage, Leases, MemoryUsage,
    MessageSource, NewFence, Outbox, PendingWrite, Presence, QueuePlace, RateLimit, RateWindow,
    Refill, Released, Renewed, StepIds, StepLog, StoredEvent, StoredStep, TaskCache, TaskEvent,
    UpdatesPing, UpdatesSource, WakeSource, ms_to_time,
};
use crate::error::{DomainError, Result};
use crate::ids::{AgentId, TaskId};
use crate::path::{FilePath, LeasePath};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mcp_api::StreamId;
use mcp_api::responses::{Collaborator, TaskState};
use redis::{AsyncCommands, Script};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

const EMIT: &str = include_str!("lua/emit.lua");
const CACHE_FILE: &str = include_str!("lua/cache_file.lua");
pub(super) const CACHED_TASK_SEQ: &str = include_str!("lua/cached_task_seq.lua");

static EMIT_SCRIPT: LazyLock<Script> =
    LazyLock::new(|| Script::new(&format!("{EMIT}\nreturn emit(ARGV[3])")));
static FILE_CHANGED_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{EMIT}\n{CACHE_FILE}\nredis.call('HDEL', KEYS[5], 'w:' .. ARGV[9])\n\
         cache_file(KEYS[5], ARGV[7], ARGV[8], 10)\nreturn emit(ARGV[3])"
    ))
});
static CACHE_FILE_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{CACHE_FILE}\nif redis.call('GET', KEYS[2]) ~= ARGV[3] then return 0 end\n\
         return cache_file(KEYS[1], ARGV[1], ARGV[2], 4)"
    ))
});
static LOG_STEP_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{EMIT}\n{}",
        r#"
local sid = redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[7], '*', 's', ARGV[8])
redis.call('XADD', KEYS[4], '*', 'kind', 'step', 'task', ARGV[5], 'sid', sid, 'agent', ARGV[4], 'step', ARGV[8])
local eid = emit(ARGV[3] .. sid .. ARGV[9])
return {sid, eid}
"#
    ))
});
/// Caches a task row unless the cache holds the same or a higher change number (the pull
/// loop's refresh, without the event). KEYS[1] the task's cache key; ARGV[1] the row (JSON
/// with its `change_seq`), ARGV[2] its change number, ARGV[3] the TTL. Answers 1 when cached.
static CACHE_TASK_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{CACHED_TASK_SEQ}\n{}",
        r#"
local held = cached_task_seq(KEYS[1])
if held and held >= tonumber(ARGV[2]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
return 1
"#
    ))
});
/// Touches an agent's presence (`lua/presence.lua`), beside the script of an event it caused.
static PRESENCE_SCRIPT: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/presence.lua")));
const HOT_GUARD: &str = include_str!("lua/hot_guard.lua");

/// A script that first checks the hot layer is validated on this server (`lua/hot_guard.lua`;
/// its last key is `hot:validated`): run through [`RedisStore::guarded`].
fn guarded_script(body: &str) -> Script {
    Script::new(&format!("{HOT_GUARD}\n{body}"))
}

const LEASE_INDEX: &str = include_str!("lua/lease_index.lua");

/// A lease script (`body`: KEYS[1] the lease), guarded, that also keeps the task's lease index
/// (KEYS[2], `lua/lease_index.lua`) in the same atomic step: `then` runs on the script's
/// answer `r` (a lease's expiry is `r[4]`).
fn lease_script(body: &str, then: &str) -> Script {
    lease_script_with("", body, then)
}

/// [`lease_script`] with more fragments (`fragments`: functions `then` may call).
fn lease_script_with(fragments: &str, body: &str, then: &str) -> Script {
    guarded_script(&format!(
        "{LEASE_INDEX}\n{fragments}\nlocal function lease_body()\n{body}\nend\n\
         local r = lease_body()\n{then}\nreturn r"
    ))
}

const LEASE_EVENT: &str = include_str!("lua/lease_event.lua");

/// A [`lease_script`] that may also emit the lease's event (`lua/lease_event.lua`).
fn lease_event_script(body: &str, then: &str) -> Script {
    lease_script_with(&format!("{EMIT}\n{LEASE_EVENT}"), body, then)
}

/// `lua/claim.lua`; a grant emits its event when the call brings one (the expiry is its
/// value), and answers the event's id as `r[5]`.
static CLAIM_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    lease_event_script(
        include_str!("lua/claim.lua"),
        "if r[1] == 'granted' or r[1] == 'reentrant' then index_lease(r[4]) end\n\
         if r[1] == 'granted' then\n\
           r[5] = lease_event(3, 10, '\"' .. iso_ms(tonumber(r[4])) .. '\"') or nil\n\
         end",
    )
});
static RENEW_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    lease_script(
        include_str!("lua/renew.lua"),
        "if r[1] == 'renewed' then index_lease(r[4]) end",
    )
});
static LIST_LEASES_SCRIPT: LazyLock<Script> =
    LazyLock::new(|| guarded_script(include_str!("lua/list_leases.lua")));
static WRITER_CHECK_SCRIPT: LazyLock<Script> =
    LazyLock::new(|| guarded_script(include_str!("lua/writer_check.lua")));
/// The guard alone, run in one `MULTI` with a plain read ([`RedisStore::guarded_read`]), so
/// that the value read does not pass through Lua (a large hot copy would be copied twice).
/// The guard alone; answers the marker (the era a read was answered in, see [`Refill`]).
static GUARD_SCRIPT: LazyLock<Script> =
    LazyLock::new(|| guarded_script("return redis.call('GET', KEYS[#KEYS])"));
static HOT_DROP_SCRIPT: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/hot_drop.lua")));
static REBUILD_SLOT_SCRIPT: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/rebuild_slot.lua")));
static HOT_VALIDATE_SCRIPT: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/hot_validate.lua")));
/// Keys per `hot_drop.lua` call (and the `SCAN` page size) while rebuilding.
const REBUILD_BATCH: usize = 500;
/// One hit on a fixed rate window: counts it, starts the window (TTL) on its first hit, and
/// answers the count and the window's remaining milliseconds.
static RATE_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local n = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {n, ttl}
"#,
    )
});
/// `lua/release.lua`; a release emits its event when the call brings one (the fence is its
/// value), and answers the event's id as `r[4]`.
static RELEASE_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    lease_event_script(
        include_str!("lua/release.lua"),
        "if r[1] == 'released' then\n\
           unindex_lease()\n\
           r[4] = lease_event(2, 3, r[3]) or nil\n\
         end",
    )
});
static LEAVE_QUEUE_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    lease_script(
        include_str!("lua/leave_queue.lua"),
        "if r[1] == 'released' then unindex_lease() end",
    )
});

/// How to reach Redis and how long to wait for it.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `REDIS_URL`; its scheme chooses a single server, Sentinel or Cluster.
    pub url: String,
    /// Prefix of every key and channel (tests use a unique one each).
    pub key_prefix: String,
    /// Upper bound for one command's answer; past it the request fails as `unavailable`.
    pub response_timeout: Duration,
    /// Upper bound for (re)connecting.
    pub connect_timeout: Duration,
    /// Replicas that must confirm (`WAIT`) a write whose loss would matter before it is
    /// acknowledged (`REDIS_MIN_REPLICAS`); 0: none, the write is acknowledged by the primary.
    pub min_replicas: u32,
}

/// The hot store on Redis: caches, leases, streams and the sync outbox (module docs).
#[derive(Clone)]
pub struct RedisStore {
    /// Every command goes through it; it also opens the pub/sub connections.
    conn: RedisConn,
    /// Bound of one command, for the pub/sub connections too.
    response_timeout: Duration,
    /// With `REDIS_MIN_REPLICAS` > 0: where confirmed writes go ([`RedisStore::confirmed`]).
    replicas: Option<Replicas>,
    keys: Keys,
    /// One rollback rebuild at a time in this process: requests that detect the rollback
    /// together wait for the first one's rebuild instead of each scanning the key space.
    rebuilding: Arc<tokio::sync::Mutex<()>>,
    /// On a cluster: the outbox slots this process added to the index, and when (see
    /// [`RedisStore::register_outbox`]).
    outbox_registered: Arc<std::sync::Mutex<HashMap<u16, std::time::Instant>>>,
    /// The presence this process last touched for each agent: the task and when (see
    /// [`RedisStore::touch_presence`]).
    presence_touched: Arc<std::sync::Mutex<HashMap<String, (TaskId, std::time::Instant)>>>,
}

/// How long an agent's presence touched by this process is taken as fresh: its next events
/// on the same task within it do not touch it again (presence is a hint read in seconds;
/// touching it was a second Redis command on every event: issue #19).
const PRESENCE_FRESH: Duration = Duration::from_secs(1);

/// Agents whose last touch [`RedisStore::presence_touched`] remembers, at most (then it
/// starts again, empty).
const PRESENCE_REMEMBERED: usize = 10_000;

/// How long a slot this process added to a cluster's outbox index is taken to be there;
/// after it, the next record of the slot adds it again (should a failover have lost it).
const OUTBOX_REGISTRATION: Duration = Duration::from_secs(30);

/// Replicas that must confirm a write ([`RedisStore::confirmed`]).
#[derive(Clone)]
struct Replicas {
    conn: RedisConn,
    min: u32,
    /// How long `WAIT` waits for them.
    timeout: Duration,
}

/// An entry id a script answered (`XADD`'s).
fn stream_id(id: &str) -> Result<StreamId> {
    StreamId::parse(id).ok_or_else(|| DomainError::internal(format!("not a stream id: {id:?}")))
}

fn parse_ms(s: &str) -> DateTime<Utc> {
    ms_to_time(s.parse::<f64>().unwrap_or(0.0) as i64)
}

impl RedisStore {
    /// Connects (bounded by `connect_timeout`). The connection manager reconnects by itself
    /// after an outage; while Redis is away, commands fail fast as `unavailable`.
    pub async fn connect(cfg: &RedisConfig) -> Result<RedisStore> {
        let conn = RedisConn::open(&ConnSettings {
            url: cfg.url.clone(),
            response_timeout: cfg.response_timeout,
            connect_timeout: cfg.connect_timeout,
        })
        .await?;
        let replicas = match cfg.min_replicas {
            0 => None,
            min => Some(Replicas {
                // A connection of its own: `WAIT` blocks the connection it is sent on.
                conn: RedisConn::open(&ConnSettings {
                    url: cfg.url.clone(),
                    response_timeout: cfg.response_timeout,
                    connect_timeout: cfg.connect_timeout,
                })
                .await?,
                min,
                timeout: cfg.response_timeout / 2,
            }),
        };
        let keys = if conn.is_cluster() {
            Keys::for_cluster(cfg.key_prefix.clone())
        } else {
            Keys::new(cfg.key_prefix.clone())
        };
        let store = RedisStore {
            conn,
            replicas,
            response_timeout: cfg.response_timeout,
            keys,
            rebuilding: Arc::default(),
            outbox_registered: Arc::default(),
            presence_touched: Arc::default(),
        };
        // Validate (or rebuild) now rather than on the first request; should it fail, the
        // first guarded call does it. (A cluster's slots are validated one by one, when a
        // guarded call first meets each: `RedisStore::rebuild_slot`.)
        if !store.keys.cluster()
            && let Err(e) = store.rebuild_hot().await
        {
            tracing::warn!(error = %e, "hot layer not validated at start");
        }
        Ok(store)
    }

    /// The names of the store's keys and channels.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// A connection handle (cheap: multiplexed). For the sync loops and tests.
    pub fn connection(&self) -> RedisConn {
        self.conn.clone()
    }

    /// Runs a script whose write must not be lost (it appends to the outbox: a step, an audit
    /// record, an event). With `REDIS_MIN_REPLICAS` = n > 0 it is followed by `WAIT n t` in
    /// the same pipeline on a connection of its own (`WAIT` covers every earlier write of its
    /// connection, and blocks that connection meanwhile); fewer than n confirmations within
    /// t (half `REDIS_TIMEOUT_MS`) answer `unavailable`: the write is on the primary and may
    /// still be kept, but it is not acknowledged as safe from a failover.
    async fn confirmed<T: redis::FromRedisValue>(&self, call: &ScriptCall<'_>) -> Result<T> {
        let Some(r) = &self.replicas else {
            let mut c = self.conn.clone();
            return Ok(call.invoke(&mut c).await?);
        };
        let mut c = r.conn.clone();
        for attempt in 0..2 {
            let mut pipe = redis::pipe();
            pipe.add_command(call.cmd.clone())
                .cmd("WAIT")
                .arg(r.min)
                .arg(r.timeout.as_millis().max(1) as u64);
            match pipe.query_async::<(T, u32)>(&mut c).await {
                Ok((v, n)) if n >= r.min => return Ok(v),
                Ok((_, n)) => {
                    metrics::counter!("mcp_redis_unconfirmed_writes_total").increment(1);
                    return Err(DomainError::Unavailable {
                        backend: "redis",
                        cause: format!(
                            "{n} of the {} replicas REDIS_MIN_REPLICAS requires confirmed the \
                             write within {} ms",
                            r.min,
                            r.timeout.as_millis()
                        ),
                    });
                }
                Err(e) if attempt == 0 && e.kind() == redis::ErrorKind::NoScriptError => {
                    let _: String = call.script.load_async(&mut c).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(DomainError::internal(
            "a loaded script is still unknown to Redis",
        ))
    }

    /// An event script's call: its four keys, then `more_keys`, then its six arguments; the
    /// caller adds the script's own arguments (`more_bytes`: about how many bytes they take).
    fn emit_call<'s>(
        &self,
        script: &'s Script,
        e: &Emit<'_>,
        more_keys: &[&str],
        more_bytes: usize,
    ) -> ScriptCall<'s> {
        let keys = [
            self.keys.events(e.task),
            self.keys.collab_members(e.task),
            self.keys.collab_activity(e.task),
            self.keys.outbox_of(e.task),
        ];
        let channel = self.keys.channel(e.task);
        let audit = e.audit.as_deref().unwrap_or("");
        let bytes = keys.iter().map(String::len).sum::<usize>()
            + more_keys.iter().map(|k| k.len()).sum::<usize>()
            + channel.len()
            + e.envelope.len()
            + e.agent.len()
            + e.task.as_str().len()
            + audit.len()
            + 24
            + more_bytes;
        let mut call = ScriptCall::new(script, keys.len() + more_keys.len(), bytes);
        for k in &keys {
            call.arg(k);
        }
        for k in more_keys {
            call.arg(k);
        }
        call.arg(channel)
            .arg(e.events_cap)
            .arg(e.envelope.as_str())
            .arg(e.agent)
            .arg(e.task.as_str())
            .arg(audit);
        call
    }

    /// Runs a guarded script (see [`guarded_script`]; `hot:validated` is added as its last
    /// key). When the guard answers `ROLLBACK` (Redis restarted, was restored or failed over
    /// since the layer was last validated), nothing was changed: the hot layer is rebuilt and
    /// the script runs once more.
    /// `anchor` is one of the script's keys: on a cluster, the marker of its slot is used.
    async fn guarded<T: redis::FromRedisValue>(
        &self,
        mut inv: redis::ScriptInvocation<'_>,
        anchor: &str,
    ) -> Result<T> {
        let marker = self.keys.hot_validated_for(anchor);
        inv.key(&marker);
        let mut c = self.conn.clone();
        match inv.invoke_async(&mut c).await {
            Err(e) if is_rollback(&e) => {}
            r => return Ok(r?),
        }
        self.rebuild_marked(&marker).await?;
        match inv.invoke_async(&mut c).await {
            Err(e) if is_rollback(&e) => Err(rolled_back_again()),
            r => Ok(r?),
        }
    }

    /// [`RedisStore::guarded`] for a [`ScriptCall`], whose last key is `marker`.
    async fn guarded_call<T: redis::FromRedisValue>(
        &self,
        call: &ScriptCall<'_>,
        marker: &str,
    ) -> Result<T> {
        let mut c = self.conn.clone();
        match call.invoke(&mut c).await {
            Err(e) if is_rollback(&e) => {}
            r => return Ok(r?),
        }
        self.rebuild_marked(marker).await?;
        match call.invoke(&mut c).await {
            Err(e) if is_rollback(&e) => Err(rolled_back_again()),
            r => Ok(r?),
        }
    }

    /// Runs `read` in one transaction (`MULTI`) after the guard, so it is answered only from
    /// a validated hot layer; otherwise as [`RedisStore::guarded`]: rebuild, then read again.
    /// `anchor`: the key `read` reads (on a cluster, the marker of its slot is used).
    /// Answers the marker too: the era of the answer ([`Refill`]).
    async fn guarded_read<T: redis::FromRedisValue>(
        &self,
        read: redis::Cmd,
        anchor: &str,
    ) -> Result<(String, T)> {
        let marker = self.keys.hot_validated_for(anchor);
        let mut rebuilt = false;
        for _ in 0..4 {
            let mut pipe = redis::pipe();
            pipe.atomic()
                .cmd("EVALSHA")
                .arg(GUARD_SCRIPT.get_hash())
                .arg(1)
                .arg(&marker)
                .add_command(read.clone());
            let mut c = self.conn.clone();
            match pipe.query_async::<(String, T)>(&mut c).await {
                Ok(v) => return Ok(v),
                Err(e) if e.kind() == redis::ErrorKind::NoScriptError => {
                    let _: String = GUARD_SCRIPT.prepare_invoke().load_async(&mut c).await?;
                }
                Err(e) if is_rollback(&e) && !rebuilt => {
                    self.rebuild_marked(&marker).await?;
                    rebuilt = true;
                }
                Err(e) if is_rollback(&e) => break,
                Err(e) => return Err(e.into()),
            }
        }
        Err(rolled_back_again())
    }

    /// Runs an event's script (through [`RedisStore::confirmed`]) and touches the acting
    /// agent's presence beside it: the presence lives in the agent's slot, not the task's, so
    /// it is a command of its own, sent concurrently (on one server both share a round trip
    /// on the multiplexed connection). Presence is a hint: its failure is not the event's.
    async fn emitting<T: redis::FromRedisValue>(
        &self,
        call: &ScriptCall<'_>,
        e: &Emit<'_>,
    ) -> Result<T> {
        self.beside_presence(e, self.confirmed(call)).await
    }

    /// Runs `script`, a script that emits `e` (its outbox slot registered first), with the
    /// acting agent's presence touched beside it (see [`RedisStore::emitting`]).
    async fn beside_presence<T>(
        &self,
        e: &Emit<'_>,
        script: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        self.register_outbox(e.task).await?;
        let (r, presence) = tokio::join!(script, self.touch_presence(e.agent, e.task));
        if let Err(err) = presence {
            tracing::debug!(error = %err, agent = e.agent, "presence not touched");
        }
        r
    }

    /// The keys of a lease's event in a lease script (`lua/lease_event.lua`): as
    /// [`RedisStore::emit_call`]'s, all in the task's slot.
    fn lease_event_keys(&self, task: &TaskId) -> [String; 4] {
        [
            self.keys.events(task),
            self.keys.collab_members(task),
            self.keys.collab_activity(task),
            self.keys.outbox_of(task),
        ]
    }

    /// The arguments of a lease's event (`lua/lease_event.lua`).
    fn lease_event_args(&self, inv: &mut redis::ScriptInvocation<'_>, ev: &LeaseEvent<'_>) {
        let e = &ev.emit;
        inv.arg(self.keys.channel(e.task))
            .arg(e.events_cap)
            .arg(e.envelope.as_str())
            .arg(e.agent)
            .arg(e.task.as_str())
            .arg(e.audit.as_deref().unwrap_or(""))
            .arg(ev.envelope_after.as_str())
            .arg(ev.audit_after.as_deref().unwrap_or(""));
    }

    /// `lua/claim.lua`, with the grant's event when `event` is given; answers whether the
    /// event was emitted (a grant).
    async fn claim_call(
        &self,
        claim: &Claim<'_>,
        event: Option<&LeaseEvent<'_>>,
    ) -> Result<(ClaimOutcome, bool)> {
        let (task, path, owner, waiter) = (claim.task, claim.path, claim.owner, claim.waiter);
        let (fence_arg, token_arg) = match claim.fence {
            Some(NewFence { fence, token }) => (fence.to_string(), token),
            None => (String::new(), ""),
        };
        let prefix = self.keys.lock_prefix(task);
        let mut inv = CLAIM_SCRIPT.prepare_invoke();
        inv.key(self.keys.lease(task, path))
            .key(self.keys.lease_index(task))
            .key(self.keys.lease_queue(task, path));
        for k in self.lease_event_keys(task) {
            inv.key(k);
        }
        for dir in path.ancestors() {
            inv.key(format!("{prefix}{dir}"));
        }
        inv.arg(owner)
            .arg(claim.ttl.as_millis() as u64)
            .arg(fence_arg)
            .arg(token_arg)
            .arg(if claim.reentrant { "1" } else { "0" })
            .arg(waiter.map_or("", |w| w.ticket))
            .arg(
                waiter
                    .and_then(|w| w.arrival)
                    .map(|a| a.to_string())
                    .unwrap_or_default(),
            )
            .arg(waiter.map_or(0, |w| w.liveness.as_millis().max(1) as u64))
            .arg(self.keys.lease_waiter_prefix(task))
            .arg(if path.is_dir() { "1" } else { "0" });
        if let Some(ev) = event {
            self.lease_event_args(&mut inv, ev);
        }
        let r: Vec<String> = self.guarded(inv, &self.keys.lease(task, path)).await?;
        let lease = |r: &[String]| Lease {
            path: path.to_string(),
            owner: owner.to_owned(),
            fence: r[1].parse().unwrap_or(0),
            token: r[2].clone(),
            expires_at: parse_ms(&r[3]),
        };
        let place = |r: &[String]| {
            let num = |i: usize| r.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            QueuePlace {
                position: Some(num(4)).filter(|p| *p > 0),
                waiters: num(5),
                arrival: r.get(6).and_then(|v| v.parse().ok()),
            }
        };
        let emitted = event.is_some() && r.first().is_some_and(|a| a == "granted") && r.len() > 4;
        let outcome = match r.first().map(String::as_str) {
            Some("granted") => ClaimOutcome::Granted(lease(&r)),
            Some("reentrant") => ClaimOutcome::Reentrant(lease(&r)),
            Some("held") => ClaimOutcome::HeldByOther {
                owner: r[1].clone(),
                expires_at: parse_ms(r.get(2).map(String::as_str).unwrap_or("0")),
                path: r
                    .get(3)
                    .and_then(|k| k.strip_prefix(prefix.as_str()))
                    .unwrap_or(path.as_str())
                    .to_owned(),
                queue: place(&r),
            },
            Some("queued") => ClaimOutcome::Queued {
                next: r[1].clone(),
                queue: place(&r),
            },
            Some("need_fence") => ClaimOutcome::NeedFence,
            other => {
                return Err(DomainError::internal(format!(
                    "claim script answered {other:?}"
                )));
            }
        };
        Ok((outcome, emitted))
    }

    /// `lua/release.lua`, with the release's event when `event` is given; answers whether
    /// the event was emitted (a release).
    async fn release_call(
        &self,
        task: &TaskId,
        path: &LeasePath,
        owner: &str,
        force: bool,
        event: Option<&LeaseEvent<'_>>,
    ) -> Result<(std::result::Result<Released, Option<String>>, bool)> {
        let mut inv = RELEASE_SCRIPT.prepare_invoke();
        inv.key(self.keys.lease(task, path))
            .key(self.keys.lease_index(task));
        for k in self.lease_event_keys(task) {
            inv.key(k);
        }
        inv.arg(owner)
            .arg(if force { "1" } else { "0" })
            .arg(self.keys.lease_wake(task));
        if let Some(ev) = event {
            self.lease_event_args(&mut inv, ev);
        }
        let r: Vec<String> = self.guarded(inv, &self.keys.lease(task, path)).await?;
        Ok(match r.first().map(String::as_str) {
            Some("released") => (
                Ok(Released {
                    owner: r[1].clone(),
                    fence: r[2].parse().unwrap_or(0),
                }),
                event.is_some() && r.len() > 3,
            ),
            _ => (Err(r.get(1).filter(|h| !h.is_empty()).cloned()), false),
        })
    }

    /// Marks `agent` as seen now (Redis's clock), acting on `task`; not again within
    /// [`PRESENCE_FRESH`] of this process's last touch for the same task.
    async fn touch_presence(&self, agent: &str, task: &TaskId) -> Result<()> {
        let now = std::time::Instant::now();
        {
            let mut touched = self
                .presence_touched
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some((last, at)) = touched.get_mut(agent) {
                if last == task && now.duration_since(*at) < PRESENCE_FRESH {
                    return Ok(());
                }
                (*last, *at) = (task.clone(), now);
            } else {
                if touched.len() >= PRESENCE_REMEMBERED {
                    touched.clear();
                }
                touched.insert(agent.to_owned(), (task.clone(), now));
            }
        }
        let mut c = self.conn.clone();
        let _: i64 = PRESENCE_SCRIPT
            .key(self.keys.agent(agent))
            .arg(task.as_str())
            .invoke_async(&mut c)
            .await?;
        Ok(())
    }

    /// On a cluster: adds the task's slot to the outbox index ([`Keys::outbox_slots`])
    /// before a record goes to that slot's outbox, so that the push loop reads it. Once per
    /// slot and [`OUTBOX_REGISTRATION`] in each process (`SADD` is idempotent; repeating it
    /// restores an index entry a failover lost). Nothing on one server (one outbox).
    async fn register_outbox(&self, task: &TaskId) -> Result<()> {
        if !self.keys.cluster() {
            return Ok(());
        }
        let slot = self.keys.task_slot(task);
        let fresh = self
            .outbox_registered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&slot)
            .is_some_and(|at| at.elapsed() < OUTBOX_REGISTRATION);
        if fresh {
            return Ok(());
        }
        let mut c = self.conn.clone();
        let _: i64 = c.sadd(self.keys.outbox_slots(), slot).await?;
        self.outbox_registered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(slot, std::time::Instant::now());
        Ok(())
    }

    /// The outbox streams that may hold records, with their slot on a cluster: the one
    /// outbox of one server; on a cluster, those of the slots in the index.
    pub(super) async fn outbox_streams(&self) -> Result<Vec<(Option<u16>, String)>> {
        if !self.keys.cluster() {
            return Ok(vec![(None, self.keys.outbox())]);
        }
        let mut c = self.conn.clone();
        let mut slots: Vec<u16> = c.smembers(self.keys.outbox_slots()).await?;
        slots.sort_unstable();
        Ok(slots
            .into_iter()
            .map(|s| (Some(s), self.keys.outbox_shard(s)))
            .collect())
    }

    /// Rebuilds what the rollback marker `marker` guards: the whole hot layer on one server
    /// ([`RedisStore::rebuild_hot`]), the marker's slot on a cluster
    /// ([`RedisStore::rebuild_slot`]).
    async fn rebuild_marked(&self, marker: &str) -> Result<()> {
        if self.keys.cluster() {
            self.rebuild_slot(marker).await
        } else {
            self.rebuild_hot().await
        }
    }

    /// A cluster's rebuild after a rollback, one hash slot at a time (`lua/rebuild_slot.lua`,
    /// one script on the slot's primary: it drops the slot's hot copies, leases, lease
    /// indexes and task rows and validates the slot's marker for this primary, atomically).
    /// When it dropped something, `sync:warm` is dropped too, so the pull loop warms the task
    /// cache again.
    async fn rebuild_slot(&self, marker: &str) -> Result<()> {
        let slot = keys::key_slot(marker.as_bytes());
        let mut inv = REBUILD_SLOT_SCRIPT.prepare_invoke();
        inv.key(marker).arg(slot);
        for p in self.keys.rebuilt_on_rollback() {
            inv.arg(p);
        }
        let mut c = self.conn.clone();
        let dropped: i64 = inv.invoke_async(&mut c).await?;
        if dropped > 0 {
            let _: i64 = c.del(self.keys.sync_warm()).await?;
            metrics::counter!("mcp_hot_rebuilds_total").increment(1);
            tracing::warn!(
                dropped,
                slot,
                "hot layer rebuilt for a cluster slot: its primary is a server it was not \
                 validated on (restart, restore or failover); hot copies, leases and task \
                 rows dropped"
            );
        }
        Ok(())
    }

    /// After Redis went back in time (or on a server never validated): drops every hot file
    /// copy, lease and cached task row under this prefix, drops `sync:warm` (the pull loop
    /// warms the task cache again), then marks the layer validated for this server. Safe when
    /// several instances detect at once: each batch deletes only while the layer is not yet
    /// validated on the server the rebuild started on, and the first to finish validates it.
    pub async fn rebuild_hot(&self) -> Result<()> {
        let _one_at_a_time = self.rebuilding.lock().await;
        for _ in 0..3 {
            let mut c = self.conn.clone();
            let replid = self.replication_id().await?;
            let validated: Option<String> = c.get(self.keys.hot_validated()).await?;
            if validated.as_deref() == Some(replid.as_str()) {
                return Ok(());
            }
            let Some(dropped) = self.drop_hot(&replid).await? else {
                continue;
            };
            let done: i64 = HOT_VALIDATE_SCRIPT
                .key(self.keys.hot_validated())
                .key(self.keys.sync_warm())
                .arg(&replid)
                .invoke_async(&mut c)
                .await?;
            if done == 1 {
                metrics::counter!("mcp_hot_rebuilds_total").increment(1);
                if dropped > 0 {
                    tracing::warn!(
                        dropped,
                        server = %replid,
                        "hot layer rebuilt: Redis is a server it was not validated on \
                         (restart, restore or failover); hot copies, leases and task rows \
                         dropped"
                    );
                } else {
                    tracing::info!(server = %replid, "hot layer validated on this Redis server");
                }
                return Ok(());
            }
        }
        Err(DomainError::Unavailable {
            backend: "redis",
            cause: "Redis kept changing during the hot-layer rebuild".into(),
        })
    }

    /// The server's `master_replid`: new at every start and every promotion.
    async fn replication_id(&self) -> Result<String> {
        let mut c = self.conn.clone();
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut c)
            .await?;
        info.lines()
            .find_map(|l| l.strip_prefix("master_replid:"))
            .map(|v| v.trim().to_owned())
            .ok_or_else(|| DomainError::internal("INFO replication has no master_replid"))
    }

    /// Deletes the keys [`Keys::rebuilt_on_rollback`] names, in batches. `Some(count)` when
    /// done (or when another instance validated the layer meanwhile), `None` when the server
    /// changed during the scan.
    async fn drop_hot(&self, replid: &str) -> Result<Option<u64>> {
        let mut c = self.conn.clone();
        let prefixes = self.keys.rebuilt_on_rollback();
        let pattern = self.keys.scan_all_pattern();
        let mut cursor = 0u64;
        let mut dropped = 0u64;
        loop {
            let (next, found): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(REBUILD_BATCH)
                .query_async(&mut c)
                .await?;
            let batch: Vec<&String> = found
                .iter()
                .filter(|k| prefixes.iter().any(|p| k.starts_with(p.as_str())))
                .collect();
            if !batch.is_empty() {
                let mut inv = HOT_DROP_SCRIPT.prepare_invoke();
                inv.key(self.keys.hot_validated()).arg(replid);
                for k in batch {
                    inv.key(k.as_str());
                }
                match inv.invoke_async::<i64>(&mut c).await? {
                    -1 => return Ok(None),
                    -2 => return Ok(Some(dropped)),
                    n => dropped += n.max(0) as u64,
                }
            }
            if next == 0 {
                return Ok(Some(dropped));
            }
            cursor = next;
        }
    }

    /// A connection of its own, subscribed (`PSUBSCRIBE`) to `pattern`; when Redis goes away
    /// the subscription ends and its holder opens a new one.
    async fn psubscribe(&self, pattern: String, channels: Channels) -> Result<UpdatesSubscription> {
        let timeout = |cause: &str| DomainError::Unavailable {
            backend: "redis",
            cause: cause.into(),
        };
        let mut pubsub = self.conn.pubsub().await?;
        tokio::time::timeout(self.response_timeout, pubsub.psubscribe(pattern))
            .await
            .map_err(|_| timeout("PSUBSCRIBE timed out"))??;
        let (sink, stream) = pubsub.split();
        Ok(UpdatesSubscription {
            sink,
            stream,
            keys: self.keys.clone(),
            channels,
            timeout: self.response_timeout,
        })
    }

    /// A connection of its own, subscribed (`SUBSCRIBE`) to one channel.
    pub(super) async fn subscribe_channel(
        &self,
        channel: String,
    ) -> Result<Box<dyn MessageSource>> {
        let timeout = |cause: &str| DomainError::Unavailable {
            backend: "redis",
            cause: cause.into(),
        };
        let mut pubsub = self.conn.pubsub().await?;
        tokio::time::timeout(self.response_timeout, pubsub.subscribe(channel))
            .await
            .map_err(|_| timeout("SUBSCRIBE timed out"))??;
        let (sink, stream) = pubsub.split();
        Ok(Box::new(ChannelSubscription {
            sink,
            stream,
            timeout: self.response_timeout,
        }))
    }

    /// `XRANGE key start end COUNT count` (or `XREVRANGE key end start …`, newest first): the
    /// entries that carry `field`, as (entry id, its value).
    pub(super) async fn stream_range(
        &self,
        command: &str,
        key: String,
        start: &str,
        end: &str,
        count: usize,
        field: &str,
    ) -> Result<Vec<(StreamId, String)>> {
        let mut c = self.conn.clone();
        let reply: redis::streams::StreamRangeReply = redis::cmd(command)
            .arg(key)
            .arg(start)
            .arg(end)
            .arg("COUNT")
            .arg(count)
            .query_async(&mut c)
            .await?;
        Ok(reply
            .ids
            .into_iter()
            .filter_map(|e| {
                let value: Option<String> = e.get(field);
                Some((StreamId::parse(&e.id)?, value?))
            })
            .collect())
    }
}

#[async_trait]
impl HotBackend for RedisStore {
    fn backend(&self) -> &'static str {
        "redis"
    }

    fn shared(&self) -> bool {
        true
    }

    async fn ping(&self) -> Result<()> {
        let mut c = self.conn.clone();
        let _: String = redis::cmd("PING").query_async(&mut c).await?;
        Ok(())
    }

    /// `maxmemory-policy`, when the server lets us read it.
    async fn maxmemory_policy(&self) -> Result<Option<String>> {
        let mut c = self.conn.clone();
        let v: redis::RedisResult<Vec<String>> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory-policy")
            .query_async(&mut c)
            .await;
        match v {
            Ok(v) => Ok(v.get(1).cloned()),
            Err(e) if e.kind() == redis::ErrorKind::ResponseError => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// A write of a short-lived probe key: `OOM command not allowed` means Redis is full
    /// (reported, not counted as a refusal of a client's call).
    async fn refuses_writes(&self) -> Result<Option<String>> {
        let mut c = self.conn.clone();
        let probe: redis::RedisResult<()> = redis::cmd("SET")
            .arg(self.keys.health_probe())
            .arg(1)
            .arg("PX")
            .arg(10_000)
            .query_async(&mut c)
            .await;
        match probe {
            Ok(()) => Ok(None),
            Err(e) if crate::error::is_out_of_memory(&e) => Ok(Some(
                "redis is out of memory (maxmemory reached, nothing it may evict): it refuses \
                 writes, so log_step, claims and cache refills answer 503; raise maxmemory or \
                 free memory"
                    .into(),
            )),
            Err(e) => Err(e.into()),
        }
    }

    fn outbox(&self) -> Option<&dyn Outbox> {
        Some(self)
    }

    /// Memory in use and the limit it is measured against (`maxmemory`, or the machine's
    /// memory when Redis has no limit), from `INFO memory`.
    /// On a cluster: the primary nearest its limit (the cluster client asks every primary
    /// and answers each one's `INFO`, by address).
    async fn memory_usage(&self) -> Result<MemoryUsage> {
        let mut c = self.conn.clone();
        let usage = |info: &str| {
            let field = |name: &str| {
                info.lines()
                    .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(0)
            };
            let limit = match field("maxmemory") {
                0 => field("total_system_memory"),
                m => m,
            };
            MemoryUsage {
                used: field("used_memory"),
                limit,
            }
        };
        if self.keys.cluster() {
            let by_node: HashMap<String, String> =
                redis::cmd("INFO").arg("memory").query_async(&mut c).await?;
            let ratio = |m: &MemoryUsage| m.used as f64 / m.limit.max(1) as f64;
            return by_node
                .values()
                .map(|info| usage(info))
                .max_by(|a, b| ratio(a).total_cmp(&ratio(b)))
                .ok_or_else(|| DomainError::internal("no cluster primary answered INFO"));
        }
        let info: String = redis::cmd("INFO").arg("memory").query_async(&mut c).await?;
        Ok(usage(&info))
    }
}

#[async_trait]
impl EventLog for RedisStore {
    fn channel(&self, task: &TaskId) -> String {
        self.keys.channel(task)
    }

    /// Appends the event to the task's stream, publishes it, touches presence. Returns its id.
    async fn emit(&self, e: &Emit<'_>) -> Result<StreamId> {
        let id: String = self
            .emitting(&self.emit_call(&EMIT_SCRIPT, e, &[], 0), e)
            .await?;
        stream_id(&id)
    }

    async fn events_after(
        &self,
        task: &TaskId,
        after: StreamId,
        count: usize,
    ) -> Result<Vec<StoredEvent>> {
        let from = format!("({after}");
        let entries = self
            .stream_range("XRANGE", self.keys.events(task), &from, "+", count, "e")
            .await?;
        Ok(entries
            .into_iter()
            .map(|(id, envelope)| StoredEvent { id, envelope })
            .collect())
    }

    async fn events_tail(&self, task: &TaskId) -> Result<Option<StreamId>> {
        let newest = self
            .stream_range("XREVRANGE", self.keys.events(task), "+", "-", 1, "e")
            .await?;
        Ok(newest.into_iter().next().map(|(id, _)| id))
    }

    /// A connection of its own, subscribed (`PSUBSCRIBE`) to every task channel under this
    /// prefix. The live-event hub holds exactly one per process; when Redis goes away the
    /// subscription ends and the hub opens a new one.
    async fn subscribe_updates(&self) -> Result<Box<dyn UpdatesSource>> {
        let sub = self
            .psubscribe(self.keys.channel_pattern(), Channels::TaskUpdates)
            .await?;
        Ok(Box::new(sub))
    }
}

#[async_trait]
impl StepLog for RedisStore {
    /// Appends a step to the task's log stream and to the outbox, and emits its event, in one
    /// atomic step. `envelope` is split around the step id, which only Redis knows.
    async fn log_step(
        &self,
        e: &Emit<'_>,
        envelope_suffix: &str,
        step_json: &str,
        logs_cap: usize,
    ) -> Result<StepIds> {
        let logs = self.keys.logs(e.task);
        let mut call = self.emit_call(
            &LOG_STEP_SCRIPT,
            e,
            &[&logs],
            step_json.len() + envelope_suffix.len() + 24,
        );
        call.arg(logs_cap).arg(step_json).arg(envelope_suffix);
        let (step, event): (String, String) = self.emitting(&call, e).await?;
        Ok(StepIds {
            step: stream_id(&step)?,
            event: stream_id(&event)?,
        })
    }

    async fn steps_before(
        &self,
        task: &TaskId,
        before: Option<StreamId>,
        count: usize,
    ) -> Result<Vec<StoredStep>> {
        let end = before.map_or_else(|| "+".to_owned(), |b| format!("({b}"));
        let entries = self
            .stream_range("XREVRANGE", self.keys.logs(task), &end, "-", count, "s")
            .await?;
        Ok(entries
            .into_iter()
            .map(|(id, json)| StoredStep { id, json })
            .collect())
    }
}

#[async_trait]
impl FileCache for RedisStore {
    /// After a durable file change: refresh the hot copy (never backwards) and emit the event,
    /// in one atomic step.
    async fn file_changed(
        &self,
        path: &FilePath,
        file: &CacheFile<'_>,
        write: &PendingWrite,
        e: &Emit<'_>,
    ) -> Result<StreamId> {
        let key = self.keys.file(e.task, path);
        let more = file.content.len() + file.sha256.len() + file.updated_by.len() + 128;
        let mut call = self.emit_call(&FILE_CHANGED_SCRIPT, e, &[&key], more);
        call.arg(file.version).arg(file.ttl_secs).arg(write.token);
        push_file_fields(&mut call, file);
        let id: String = self.emitting(&call, e).await?;
        stream_id(&id)
    }

    async fn write_abandoned(
        &self,
        task: &TaskId,
        path: &FilePath,
        write: &PendingWrite,
    ) -> Result<()> {
        let mut c = self.conn.clone();
        let _: i64 = c
            .hdel(self.keys.file(task, path), format!("w:{}", write.token))
            .await?;
        Ok(())
    }

    /// Refills a file's hot copy after a miss (see [`FileCache::cache_file`]).
    async fn cache_file(
        &self,
        task: &TaskId,
        path: &FilePath,
        file: &CacheFile<'_>,
        refill: &Refill,
    ) -> Result<()> {
        let mut c = self.conn.clone();
        let key = self.keys.file(task, path);
        let mut inv = CACHE_FILE_SCRIPT.prepare_invoke();
        inv.key(&key)
            .key(self.keys.hot_validated_for(&key))
            .arg(file.version)
            .arg(file.ttl_secs)
            .arg(&refill.era);
        push_file_fields(&mut inv, file);
        let _: i64 = inv.invoke_async(&mut c).await?;
        Ok(())
    }

    async fn file(&self, task: &TaskId, path: &FilePath) -> Result<HotRead> {
        // Only the fields a read answers with (not `updated_by`/`updated_at`), into typed
        // values: no map of owned field names per read.
        let key = self.keys.file(task, path);
        let mut read = redis::cmd("HMGET");
        read.arg(&key)
            .arg("version")
            .arg("deleted")
            .arg("content")
            .arg("sha256")
            .arg("size");
        type Fields = (
            Option<i64>,
            Option<i64>,
            Option<String>,
            Option<String>,
            Option<i64>,
        );
        let (era, (version, deleted, content, sha256, size)): (_, Fields) =
            self.guarded_read(read, &key).await?;
        let Some(version) = version else {
            return Ok(HotRead::Miss(Refill { era }));
        };
        Ok(HotRead::Hit(HotFile {
            version,
            deleted: deleted == Some(1),
            content: content.unwrap_or_default(),
            sha256: sha256.unwrap_or_default(),
            size: size.unwrap_or(0),
        }))
    }
}

#[async_trait]
impl Leases for RedisStore {
    /// The live lease on a path, if any, read before a durable change by `writer`; when the
    /// writer may write, the hot copy is dropped (see `writer_check.lua`).
    async fn lease_for_write(
        &self,
        task: &TaskId,
        path: &FilePath,
        writer: &str,
        write: &PendingWrite,
    ) -> Result<Option<Lease>> {
        let lease_path = LeasePath::file(path);
        let (lock, file) = (self.keys.lock(task, path), self.keys.file(task, path));
        let prefix = self.keys.lock_prefix(task);
        let marker = self.keys.hot_validated_for(&lock);
        let dirs = lease_path.ancestors().count();
        let bytes = lock.len() * (2 + dirs) + file.len() + marker.len() + writer.len() + 64;
        let mut call = ScriptCall::new(&WRITER_CHECK_SCRIPT, 3 + dirs, bytes);
        call.arg(&lock).arg(&file);
        for dir in lease_path.ancestors() {
            call.arg(format!("{prefix}{dir}"));
        }
        call.arg(&marker)
            .arg(writer)
            .arg(write.token)
            .arg(write.ttl_secs);
        let v: (
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
        ) = self.guarded_call(&call, &marker).await?;
        Ok(match v {
            (Some(owner), Some(fence), expires, key) => Some(Lease {
                path: key
                    .as_deref()
                    .and_then(|k| k.strip_prefix(prefix.as_str()))
                    .unwrap_or(path.as_str())
                    .to_owned(),
                owner,
                fence: fence.parse().unwrap_or(0),
                token: String::new(),
                expires_at: parse_ms(&expires.unwrap_or_default()),
            }),
            _ => None,
        })
    }

    async fn claim(&self, claim: &Claim<'_>) -> Result<ClaimOutcome> {
        Ok(self.claim_call(claim, None).await?.0)
    }

    /// The claim with its grant's event in the same script (`lua/lease_event.lua`), the
    /// agent's presence touched beside it (as [`RedisStore::emitting`] does). With
    /// `REDIS_MIN_REPLICAS` the event is left to the caller: the claim script is not followed
    /// by `WAIT`.
    async fn claim_announcing(
        &self,
        claim: &Claim<'_>,
        event: &LeaseEvent<'_>,
    ) -> Result<(ClaimOutcome, bool)> {
        if self.replicas.is_some() {
            return self.claim_call(claim, None).await;
        }
        self.beside_presence(&event.emit, self.claim_call(claim, Some(event)))
            .await
    }

    async fn leave_queue(
        &self,
        task: &TaskId,
        path: &LeasePath,
        ticket: &str,
    ) -> Result<Option<Released>> {
        let mut inv = LEAVE_QUEUE_SCRIPT.prepare_invoke();
        inv.key(self.keys.lease(task, path))
            .key(self.keys.lease_index(task))
            .key(self.keys.lease_queue(task, path))
            .arg(ticket)
            .arg(self.keys.lease_waiter_prefix(task))
            .arg(self.keys.lease_wake(task));
        let r: Vec<String> = self.guarded(inv, &self.keys.lease(task, path)).await?;
        Ok(match r.first().map(String::as_str) {
            Some("released") => Some(Released {
                owner: r.get(1).cloned().unwrap_or_default(),
                fence: r.get(2).and_then(|f| f.parse().ok()).unwrap_or(0),
            }),
            _ => None,
        })
    }

    /// A connection of its own, subscribed (`PSUBSCRIBE`) to every task's lease wake-up
    /// channel: the lease waiters of this process hold one while any of them waits.
    async fn subscribe_lease_wakes(&self) -> Result<Box<dyn WakeSource>> {
        let sub = self
            .psubscribe(self.keys.lease_wake_pattern(), Channels::LeaseWakes)
            .await?;
        Ok(Box::new(sub))
    }

    /// Renews the owner's lease (for its own length when `ttl` is `None`: `ttl_ms` in the
    /// lease hash). `Err(holder)` when the caller does not hold it.
    async fn renew(
        &self,
        task: &TaskId,
        path: &LeasePath,
        owner: &str,
        ttl: Option<Duration>,
        fallback: Duration,
    ) -> Result<Result<Renewed, Option<String>>> {
        let mut inv = RENEW_SCRIPT.prepare_invoke();
        inv.key(self.keys.lease(task, path))
            .key(self.keys.lease_index(task))
            .arg(owner)
            .arg(
                ttl.map(|t| (t.as_millis() as u64).to_string())
                    .unwrap_or_default(),
            )
            .arg(fallback.as_millis() as u64);
        let r: Vec<String> = self.guarded(inv, &self.keys.lease(task, path)).await?;
        Ok(match r.first().map(String::as_str) {
            Some("renewed") => Ok(Renewed {
                lease: Lease {
                    path: path.to_string(),
                    owner: owner.to_owned(),
                    fence: r[1].parse().unwrap_or(0),
                    token: r[2].clone(),
                    expires_at: parse_ms(&r[3]),
                },
                length: Duration::from_millis(r.get(4).and_then(|t| t.parse().ok()).unwrap_or(0)),
            }),
            _ => Err(r.get(1).filter(|h| !h.is_empty()).cloned()),
        })
    }

    async fn release(
        &self,
        task: &TaskId,
        path: &LeasePath,
        owner: &str,
        force: bool,
    ) -> Result<Result<Released, Option<String>>> {
        Ok(self.release_call(task, path, owner, force, None).await?.0)
    }

    /// The release with its event in the same script (`lua/lease_event.lua`), the agent's
    /// presence touched beside it; as [`RedisStore::claim_announcing`].
    async fn release_announcing(
        &self,
        task: &TaskId,
        path: &LeasePath,
        owner: &str,
        event: &LeaseEvent<'_>,
    ) -> Result<(Result<Released, Option<String>>, bool)> {
        if self.replicas.is_some() {
            return self.release_call(task, path, owner, false, None).await;
        }
        let release = self.release_call(task, path, owner, false, Some(event));
        self.beside_presence(&event.emit, release).await
    }

    /// The task's live leases from its lease index (`lua/list_leases.lua`), behind the
    /// rollback guard like every read of a lease.
    async fn leases(&self, task: &TaskId, limit: usize) -> Result<LeasePage> {
        let prefix = self.keys.lock_prefix(task);
        let mut inv = LIST_LEASES_SCRIPT.prepare_invoke();
        inv.key(self.keys.lease_index(task))
            .arg(limit)
            .arg(&prefix)
            .arg(self.keys.lease_queue_prefix(task))
            .arg(self.keys.lease_waiter_prefix(task));
        let r: Vec<String> = self.guarded(inv, &self.keys.lease_index(task)).await?;
        let (Some(now), Some(more)) = (r.first(), r.get(1)) else {
            return Err(DomainError::internal("list_leases answered nothing"));
        };
        let now: i64 = now.parse().unwrap_or(0);
        let mut leases = Vec::new();
        let mut rest = &r[2..];
        while rest.len() >= 6 {
            let n: usize = rest[5].parse().unwrap_or(0);
            let waiters = rest.get(6..6 + n).unwrap_or_default().to_vec();
            let expires: i64 = rest[4].parse().unwrap_or(0);
            if let Some(path) = rest[0].strip_prefix(prefix.as_str()) {
                leases.push(HeldLease {
                    path: path.to_owned(),
                    owner: rest[1].clone(),
                    fence: rest[2].parse().unwrap_or(0),
                    acquired_at: parse_ms(&rest[3]),
                    expires_at: ms_to_time(expires),
                    ttl_ms: (expires - now).max(0),
                    waiters,
                });
            }
            rest = rest.get(6 + n..).unwrap_or_default();
        }
        Ok(LeasePage {
            leases,
            more: more == "1",
        })
    }
}

#[async_trait]
impl RateLimit for RedisStore {
    /// One script, so concurrent requests on any gateway instance count exactly once each.
    async fn rate_hit(&self, subject: &str, window: Duration) -> Result<RateWindow> {
        let mut c = self.conn.clone();
        let (n, ttl_ms): (u64, i64) = RATE_SCRIPT
            .prepare_invoke()
            .key(self.keys.rate(subject))
            .arg(window.as_millis().max(1) as u64)
            .invoke_async(&mut c)
            .await?;
        Ok(RateWindow {
            count: n,
            resets_in: Duration::from_millis(ttl_ms.max(0) as u64),
        })
    }
}

#[async_trait]
impl TaskCache for RedisStore {
    async fn task(&self, task: &TaskId) -> Result<Option<TaskState>> {
        let mut read = redis::cmd("GET");
        read.arg(self.keys.task(task));
        let (_, v): (_, Option<String>) = self.guarded_read(read, &self.keys.task(task)).await?;
        Ok(v.and_then(|s| serde_json::from_str(&s).ok()))
    }

    async fn cache_task(&self, task: &TaskState, seq: i64, ttl_secs: u64) -> Result<()> {
        let mut c = self.conn.clone();
        let id = TaskId::parse(&task.id)?;
        let json = super::hot::cached_task_json(task, seq)?;
        let _: i64 = CACHE_TASK_SCRIPT
            .key(self.keys.task(&id))
            .arg(json)
            .arg(seq)
            .arg(ttl_secs)
            .invoke_async(&mut c)
            .await?;
        Ok(())
    }
}

#[async_trait]
impl Collaboration for RedisStore {
    /// Records membership (members and activity in one transaction in the task's slot; the
    /// agent's task set, in the agent's slot, beside it).
    async fn join(&self, task: &TaskId, agent: &AgentId, joined_at: DateTime<Utc>) -> Result<()> {
        let (mut c, mut a) = (self.conn.clone(), self.conn.clone());
        let ms = joined_at.timestamp_millis();
        let mut members = redis::pipe();
        members
            .atomic()
            .hset(self.keys.collab_members(task), agent.as_str(), ms)
            .hset(self.keys.collab_activity(task), agent.as_str(), ms);
        let (m, t): (redis::RedisResult<()>, redis::RedisResult<()>) = tokio::join!(
            members.query_async(&mut c),
            a.sadd(self.keys.agent_tasks(agent), task.as_str())
        );
        m?;
        t?;
        Ok(())
    }

    async fn leave(&self, task: &TaskId, agent: &AgentId) -> Result<()> {
        let (mut c, mut a) = (self.conn.clone(), self.conn.clone());
        let mut members = redis::pipe();
        members
            .atomic()
            .hdel(self.keys.collab_members(task), agent.as_str())
            .hdel(self.keys.collab_activity(task), agent.as_str());
        let (m, t): (redis::RedisResult<()>, redis::RedisResult<()>) = tokio::join!(
            members.query_async(&mut c),
            a.srem(self.keys.agent_tasks(agent), task.as_str())
        );
        m?;
        t?;
        Ok(())
    }

    /// The task's collaborators, or `None` when Redis holds no membership for it (a cold cache
    /// after a flush and an empty session look alike; the caller then asks Postgres).
    async fn collaborators(&self, task: &TaskId) -> Result<Option<Vec<Collaborator>>> {
        let mut c = self.conn.clone();
        let (members, activity): (HashMap<String, i64>, HashMap<String, i64>) = redis::pipe()
            .hgetall(self.keys.collab_members(task))
            .hgetall(self.keys.collab_activity(task))
            .query_async(&mut c)
            .await?;
        if members.is_empty() {
            return Ok(None);
        }
        let mut out: Vec<Collaborator> = members
            .into_iter()
            .map(|(agent, joined)| Collaborator {
                last_active: ms_to_time(*activity.get(&agent).unwrap_or(&joined)),
                joined_at: ms_to_time(joined),
                agent_id: agent,
            })
            .collect();
        out.sort_by(|a, b| (a.joined_at, &a.agent_id).cmp(&(b.joined_at, &b.agent_id)));
        Ok(Some(out))
    }

    /// An agent's presence: (last seen, last task) and the tasks it collaborates on.
    async fn presence(&self, agent: &AgentId) -> Result<Presence> {
        let mut c = self.conn.clone();
        let ((seen, task), mut tasks): ((Option<i64>, Option<String>), Vec<String>) = redis::pipe()
            .hget(self.keys.agent(agent.as_str()), &["last_seen", "task"])
            .smembers(self.keys.agent_tasks(agent))
            .query_async(&mut c)
            .await?;
        tasks.sort();
        Ok(Presence {
            last_seen: seen.map(ms_to_time),
            task,
            tasks,
        })
    }
}

/// Which channels a subscription follows.
#[derive(Clone, Copy)]
enum Channels {
    /// Every task's `task:{id}:updates` (the live-event hub's).
    TaskUpdates,
    /// Every task's `lease_wake:{id}` (the lease waiters').
    LeaseWakes,
}

/// A process-wide subscription to one channel of every task.
struct UpdatesSubscription {
    sink: redis::aio::PubSubSink,
    stream: redis::aio::PubSubStream,
    keys: Keys,
    channels: Channels,
    timeout: Duration,
}

impl UpdatesSubscription {
    /// The next message: its task and its payload. Messages on channels that name no valid
    /// task are skipped.
    async fn next_message(&mut self) -> Option<(TaskId, redis::Msg)> {
        use futures::StreamExt;
        loop {
            let msg = self.stream.next().await?;
            let channel = msg.get_channel_name();
            let task = match self.channels {
                Channels::TaskUpdates => self.keys.task_of_channel(channel),
                Channels::LeaseWakes => self.keys.task_of_lease_wake(channel),
            };
            if let Some(task) = task {
                return Some((task, msg));
            }
        }
    }

    fn updates_pinger(&self) -> Box<dyn UpdatesPing> {
        Box::new(UpdatesPinger {
            sink: self.sink.clone(),
            timeout: self.timeout,
        })
    }
}

#[async_trait]
impl UpdatesSource for UpdatesSubscription {
    /// Each message is read here, once per process: the channel carries the event's JSON with
    /// its `id` (the seed's contract, shared with other publishers), parsed into a
    /// [`TaskEvent`]; a message that is not an event is skipped.
    async fn next_wanted(&mut self, interest: &dyn Interest) -> Option<TaskEvent> {
        loop {
            let (task, msg) = self.next_message().await?;
            // Checked with `from_utf8` (a few instructions a byte less than the lossy scan
            // for the valid UTF-8 that every event is); anything else is read lossily.
            let bytes = msg.get_payload_bytes();
            let payload = match std::str::from_utf8(bytes) {
                Ok(text) => Cow::Borrowed(text),
                Err(_) => String::from_utf8_lossy(bytes),
            };
            if !interest.wants(&task, &payload) {
                continue;
            }
            if let Some(event) = TaskEvent::published(task, &payload) {
                return Some(event);
            }
        }
    }

    fn pinger(&self) -> Box<dyn UpdatesPing> {
        self.updates_pinger()
    }
}

#[async_trait]
impl WakeSource for UpdatesSubscription {
    async fn next(&mut self) -> Option<TaskId> {
        self.next_message().await.map(|(task, _)| task)
    }

    fn pinger(&self) -> Box<dyn UpdatesPing> {
        self.updates_pinger()
    }
}

/// A subscription to one channel ([`RedisStore::subscribe_channel`]).
struct ChannelSubscription {
    sink: redis::aio::PubSubSink,
    stream: redis::aio::PubSubStream,
    timeout: Duration,
}

#[async_trait]
impl MessageSource for ChannelSubscription {
    async fn next(&mut self) -> Option<String> {
        use futures::StreamExt;
        let msg = self.stream.next().await?;
        Some(String::from_utf8_lossy(msg.get_payload_bytes()).into_owned())
    }

    fn pinger(&self) -> Box<dyn UpdatesPing> {
        Box::new(UpdatesPinger {
            sink: self.sink.clone(),
            timeout: self.timeout,
        })
    }
}

/// Pings the subscription's connection; see [`UpdatesSource::pinger`].
struct UpdatesPinger {
    sink: redis::aio::PubSubSink,
    timeout: Duration,
}

#[async_trait]
impl UpdatesPing for UpdatesPinger {
    async fn ping(&mut self) -> Result<()> {
        let _: redis::Value = tokio::time::timeout(self.timeout, self.sink.ping())
            .await
            .map_err(|_| DomainError::Unavailable {
                backend: "redis",
                cause: "pub/sub PING timed out".into(),
            })??;
        Ok(())
    }
}

fn push_file_fields(inv: &mut impl ScriptArgs, f: &CacheFile<'_>) {
    inv.arg("deleted")
        .arg(if f.deleted { "1" } else { "0" })
        .arg("content")
        .arg(f.content)
        .arg("sha256")
        .arg(f.sha256)
        .arg("size")
        .arg(f.size)
        .arg("updated_by")
        .arg(f.updated_by)
        .arg("updated_at")
        .arg(f.updated_at.timestamp_millis());
}

/// A script's `EVALSHA` with its keys and arguments written straight into one command, in
/// one buffer sized up front: a `redis::ScriptInvocation` keeps every key and argument in a
/// `Vec` of its own and copies them all once more into the command it sends (issue #19).
/// The same bytes on the wire.
struct ScriptCall<'s> {
    script: &'s Script,
    cmd: redis::Cmd,
}

impl<'s> ScriptCall<'s> {
    /// The call's first `keys` arguments are its keys (`numkeys`); `bytes`: about how many
    /// bytes its keys and arguments take.
    fn new(script: &'s Script, keys: usize, bytes: usize) -> ScriptCall<'s> {
        let mut cmd = redis::Cmd::with_capacity(3 + keys + 8, bytes + 64);
        cmd.arg("EVALSHA").arg(script.get_hash()).arg(keys);
        ScriptCall { script, cmd }
    }

    /// Runs the call; when Redis does not know the script (`NOSCRIPT`), loads it and runs
    /// the call once more (as `ScriptInvocation::invoke_async`).
    async fn invoke<T: redis::FromRedisValue>(
        &self,
        con: &mut impl redis::aio::ConnectionLike,
    ) -> redis::RedisResult<T> {
        match self.cmd.query_async(con).await {
            Err(e) if e.kind() == redis::ErrorKind::NoScriptError => {
                let _: String = self.script.load_async(con).await?;
                self.cmd.query_async(con).await
            }
            r => r,
        }
    }
}

/// What [`push_file_fields`] writes to: a script invocation or a [`ScriptCall`].
trait ScriptArgs {
    /// Appends one argument.
    fn arg<T: redis::ToRedisArgs>(&mut self, arg: T) -> &mut Self;
}

impl ScriptArgs for ScriptCall<'_> {
    fn arg<T: redis::ToRedisArgs>(&mut self, arg: T) -> &mut Self {
        self.cmd.arg(arg);
        self
    }
}

impl ScriptArgs for redis::ScriptInvocation<'_> {
    fn arg<T: redis::ToRedisArgs>(&mut self, arg: T) -> &mut Self {
        redis::ScriptInvocation::arg(self, arg)
    }
}

/// A guarded call that met the guard again after the hot layer's rebuild.
fn rolled_back_again() -> DomainError {
    DomainError::Unavailable {
        backend: "redis",
        cause: "the hot layer went back in time again during its rebuild".into(),
    }
}

/// The guard's answer when the hot layer is not validated on the current server.
fn is_rollback(e: &redis::RedisError) -> bool {
    e.code() == Some("ROLLBACK")
}

#[cfg(test)]
mod tests {
    use super::{ScriptArgs, ScriptCall};
    use redis::Script;

    /// A connection to `REDIS_URL`.
    async fn connection() -> redis::aio::MultiplexedConnection {
        let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        redis::Client::open(url)
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    /// A grant's event carries its expiry as `lua/lease_event.lua` writes it, byte for byte
    /// what chrono (the event's serialisation everywhere else) writes: whole seconds without
    /// a fraction, leap days, centuries, years before 1970. Against `REDIS_URL`.
    #[tokio::test]
    async fn the_scripts_expiry_is_chronos_text() {
        let mut con = connection().await;
        let script = Script::new(&format!(
            "{}\nlocal out = {{}}\nfor i, ms in ipairs(ARGV) do out[i] = iso_ms(tonumber(ms)) end\n\
             return out",
            super::LEASE_EVENT
        ));
        let now = chrono::Utc::now().timestamp_millis();
        let mut samples = vec![
            0,
            1,
            999,
            1_000,
            -1,
            -86_400_000,
            951_782_400_000,     // 2000-02-29
            951_868_799_999,     // 2000-02-29T23:59:59.999
            4_107_542_400_000,   // 2100-03-01
            253_402_300_799_999, // 9999-12-31T23:59:59.999
            now,
            now - now % 1_000,
        ];
        // Every day of four years (a leap year among them), at varying times of day.
        let day = 86_400_000_i64;
        samples.extend((0..1_461).map(|d| 1_704_067_200_000 + d * day + (d * 7_919_123) % day));
        let mut inv = script.prepare_invoke();
        for ms in &samples {
            inv.arg(ms);
        }
        let ours: Vec<String> = inv.invoke_async(&mut con).await.unwrap();
        for (ms, text) in samples.iter().zip(&ours) {
            let at = chrono::DateTime::from_timestamp_millis(*ms).unwrap();
            let chrono = serde_json::to_string(&at).unwrap();
            assert_eq!(format!("\"{text}\""), chrono, "{ms} ms");
        }
    }

    /// A [`ScriptCall`] sends what a `ScriptInvocation` sends (the script sees the same keys
    /// and arguments), and loads a script Redis does not know yet. Against `REDIS_URL`.
    #[tokio::test]
    async fn script_call_is_a_script_invocation() {
        let mut con = connection().await;
        // A script no Redis has seen: the first call meets NOSCRIPT.
        let body = format!(
            "-- {}\nreturn {{#KEYS, KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], #ARGV}}",
            uuid::Uuid::new_v4()
        );
        let script = Script::new(&body);
        let content = "x\r\n\0\u{e9}".repeat(1000);
        let mut call = ScriptCall::new(&script, 2, 16);
        call.arg("k1").arg("{k}2");
        call.arg(&content).arg(42_i64).arg("");
        let ours: Vec<redis::Value> = call.invoke(&mut con).await.unwrap();
        let mut inv = script.prepare_invoke();
        inv.key("k1").key("{k}2").arg(&content).arg(42_i64).arg("");
        let theirs: Vec<redis::Value> = inv.invoke_async(&mut con).await.unwrap();
        assert_eq!(ours, theirs);
        assert_eq!(ours.len(), 7);
        assert_eq!(ours[0], redis::Value::Int(2));
        assert_eq!(ours[6], redis::Value::Int(3));
        assert_eq!(ours[3], redis::Value::BulkString(content.into_bytes()));
    }
}
