//! Everything the in-process hot store holds, and every operation on it. Each method here is
//! what one Redis script (or one atomic pipeline) does; [`super::MemoryStore`] runs each under
//! the one lock, so none is observed half done. Entries are named by the Redis store's key
//! names ([`Keys`] without prefix) where the Redis store gives them a TTL.

use super::stream::{self, MAX_ID, Stream};
use super::ttl::{TtlMap, deadline};
use super::{ENTRY_OVERHEAD, STRING_OVERHEAD};
use crate::error::{DomainError, Result};
use crate::ids::{AgentId, TaskId};
use crate::path::{FilePath, LeasePath};
use crate::store::hot::{
    AgentSeen, CacheFile, Claim, ClaimOutcome, Emit, HeldLease, HotFile, HotRead, Lease, LeasePage,
    NewFence, PendingWrite, Presence, QueuePlace, RateWindow, Refill, Refreshed, Released, Renewed,
    StepIds, StoredEvent, StoredStep, SubScope, Subscriber, TaskRefresh, cached_task_json,
    cached_task_seq, ms_to_time,
};
use crate::store::redis::keys::{
    Keys, parse_subscription_entry, session_entry, split_session_entry, subscription_entry,
};
use chrono::Utc;
use mcp_api::responses::{Collaborator, TaskState};
use mcp_api::{Event, StreamId};
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

/// Expired entries nobody reads are dropped at most this often (inside some call).
pub(super) const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Bound of the broadcast channel's capacity (its ring is allocated up front).
const MAX_UPDATES_CAPACITY: usize = 1 << 20;

/// Wake-ups a lease waiters' subscriber may fall behind by (it then resubscribes and wakes
/// every waiter, which check again).
const LEASE_WAKES_CAPACITY: usize = 1024;

/// The time of one call: monotonic for TTLs and idle times, wall-clock milliseconds for stream
/// ids, lease expiries and presence.
#[derive(Debug, Clone, Copy)]
pub(super) struct Now {
    pub(super) at: Instant,
    pub(super) ms: i64,
}

impl Now {
    pub(super) fn get() -> Now {
        Now {
            at: Instant::now(),
            ms: Utc::now().timestamp_millis(),
        }
    }
}

/// A file's entry, as its Redis hash: the hot copy, or the marks of the changes of the file
/// under way (`writer_check.lua`), never both.
enum FileSlot {
    Copy(FileCopy),
    Writing(Vec<u64>),
}

/// A file's hot copy: the fields of the Redis hash that are read back.
struct FileCopy {
    version: i64,
    deleted: bool,
    content: String,
    sha256: String,
    size: i64,
}

struct LeaseRec {
    owner: String,
    fence: i64,
    token: String,
    /// When it was granted (ms); re-entrant claims and renewals keep it.
    acquired_at: i64,
    expires_at: i64,
    /// The lease's length (of its last grant or renewal): what a renewal without one keeps.
    ttl_ms: u64,
    /// The waiter ticket it was granted to ('' for a claim that did not wait).
    ticket: String,
}

/// A path's wait queue.
#[derive(Default)]
struct Queue {
    /// The task's waiter key prefix (`lockw:{task}:`): + ticket = the ticket's liveness key.
    waiter_prefix: String,
    /// (arrival µs, ticket), in arrival order.
    tickets: Vec<(i64, String)>,
}

#[derive(Default)]
struct AgentRec {
    last_seen: Option<i64>,
    task: Option<String>,
}

/// The event an [`State::emit_event`] appends.
struct EmitArgs<'a> {
    task: &'a TaskId,
    agent: &'a str,
    envelope: String,
    events_cap: usize,
}

pub(super) struct State {
    keys: Keys,
    /// Hot file copies, by `file:{task}:path`.
    files: TtlMap<FileSlot>,
    /// Leases, by `lock:{task}:path` (a directory's path ends in `/`).
    leases: TtlMap<LeaseRec>,
    /// Wait queues, by `lockq:{task}:path`.
    queues: HashMap<String, Queue>,
    /// Waiters' liveness, by `lockw:{task}:ticket`: the waiting agent.
    waiters: TtlMap<String>,
    /// Where lease wake-ups are published.
    lease_wakes: broadcast::Sender<(TaskId, String)>,
    /// Cached task rows (JSON), by `task:id`.
    tasks: TtlMap<String>,
    /// Rate windows' counters, by `rate:{subject}`.
    rates: TtlMap<u64>,
    /// MCP session states, by `mcp_session:{id}`.
    sessions: TtlMap<String>,
    /// MCP subscription indexes (task's, agent's) and sessions' subscription lists, by key.
    sets: TtlMap<BTreeSet<String>>,
    /// Event streams (envelopes without id), by task.
    events: HashMap<String, Stream<String>>,
    /// Step-log streams (step JSON), by task.
    logs: HashMap<String, Stream<String>>,
    /// Collaboration members: task → agent → joined (ms).
    members: HashMap<String, HashMap<String, i64>>,
    /// Collaboration activity: task → agent → last active (ms).
    activity: HashMap<String, HashMap<String, i64>>,
    /// Presence, by agent.
    agents: HashMap<String, AgentRec>,
    /// The tasks an agent collaborates on.
    agent_tasks: HashMap<String, BTreeSet<String>>,
    /// When the task cache was marked warm (ms).
    sync_warm: Option<i64>,
    /// Where every emitted event is published: its task, its id and its envelope (no id).
    updates: broadcast::Sender<Published>,
    last_sweep: Option<Instant>,
}

/// An emitted event as the in-process channel carries it: its task, its stream id and its
/// envelope without id, each as it is (never spliced into one text).
pub(super) type Published = (TaskId, StreamId, String);

/// A TTL in whole seconds, as `EXPIRE`/`EX` take it.
fn secs(ttl_secs: u64, now: Instant) -> Option<Instant> {
    deadline(now, Duration::from_secs(ttl_secs))
}

/// `ttl.as_secs().max(1)`: the MCP entries' TTL, whole seconds and at least one.
fn mcp_deadline(ttl: Duration, now: Instant) -> Option<Instant> {
    secs(ttl.as_secs().max(1), now)
}

fn string_bytes(s: &str) -> usize {
    s.len() + STRING_OVERHEAD
}

impl State {
    pub(super) fn new(updates_capacity: usize) -> State {
        let (updates, _) = broadcast::channel(updates_capacity.clamp(1, MAX_UPDATES_CAPACITY));
        let (lease_wakes, _) = broadcast::channel(LEASE_WAKES_CAPACITY);
        State {
            keys: Keys::default(),
            files: TtlMap::default(),
            leases: TtlMap::default(),
            queues: HashMap::new(),
            waiters: TtlMap::default(),
            lease_wakes,
            tasks: TtlMap::default(),
            rates: TtlMap::default(),
            sessions: TtlMap::default(),
            sets: TtlMap::default(),
            events: HashMap::new(),
            logs: HashMap::new(),
            members: HashMap::new(),
            activity: HashMap::new(),
            agents: HashMap::new(),
            agent_tasks: HashMap::new(),
            sync_warm: None,
            updates,
            last_sweep: None,
        }
    }

    pub(super) fn updates_receiver(&self) -> broadcast::Receiver<Published> {
        self.updates.subscribe()
    }

    pub(super) fn lease_wakes_receiver(&self) -> broadcast::Receiver<(TaskId, String)> {
        self.lease_wakes.subscribe()
    }

    // ----- housekeeping -----

    /// Sweeps when the last sweep is at least [`SWEEP_EVERY`] old.
    pub(super) fn maybe_sweep(&mut self, now: Instant) {
        if self
            .last_sweep
            .is_none_or(|t| now.saturating_duration_since(t) >= SWEEP_EVERY)
        {
            self.sweep(now);
        }
    }

    /// Drops every expired entry; answers how many.
    pub(super) fn sweep(&mut self, now: Instant) -> usize {
        self.last_sweep = Some(now);
        let waiters = self.waiters.sweep(now);
        let live = &self.waiters;
        self.queues.retain(|_, q| {
            let prefix = &q.waiter_prefix;
            q.tickets
                .retain(|(_, t)| live.peek(&format!("{prefix}{t}"), now).is_some());
            !q.tickets.is_empty()
        });
        waiters
            + self.files.sweep(now)
            + self.leases.sweep(now)
            + self.tasks.sweep(now)
            + self.rates.sweep(now)
            + self.sessions.sweep(now)
            + self.sets.sweep(now)
    }

    /// Entries that expire, swept or not yet (for tests).
    #[cfg(test)]
    pub(super) fn expiring_entries(&self) -> usize {
        self.files.len()
            + self.leases.len()
            + self.waiters.len()
            + self.tasks.len()
            + self.rates.len()
            + self.sessions.len()
            + self.sets.len()
    }

    #[cfg(test)]
    pub(super) fn set_last_sweep(&mut self, at: Option<Instant>) {
        self.last_sweep = at;
    }

    /// Bytes held, roughly: the strings' lengths plus a fixed overhead per string and entry.
    pub(super) fn bytes(&self) -> usize {
        let files: usize = self
            .files
            .iter()
            .map(|(k, f)| {
                string_bytes(k)
                    + ENTRY_OVERHEAD
                    + match f {
                        FileSlot::Copy(f) => string_bytes(&f.content) + string_bytes(&f.sha256),
                        FileSlot::Writing(w) => w.len() * STRING_OVERHEAD,
                    }
            })
            .sum();
        let leases: usize = self
            .leases
            .iter()
            .map(|(k, l)| string_bytes(k) + string_bytes(&l.owner) + string_bytes(&l.token))
            .map(|b| b + ENTRY_OVERHEAD)
            .sum();
        let strings = |m: &TtlMap<String>| -> usize {
            m.iter()
                .map(|(k, v)| string_bytes(k) + string_bytes(v) + ENTRY_OVERHEAD)
                .sum()
        };
        let rates: usize = self
            .rates
            .iter()
            .map(|(k, _)| string_bytes(k) + ENTRY_OVERHEAD)
            .sum();
        let sets: usize = self
            .sets
            .iter()
            .map(|(k, s)| {
                string_bytes(k) + ENTRY_OVERHEAD + s.iter().map(|e| string_bytes(e)).sum::<usize>()
            })
            .sum();
        let streams = |m: &HashMap<String, Stream<String>>| -> usize {
            m.iter()
                .map(|(k, s)| {
                    string_bytes(k)
                        + ENTRY_OVERHEAD
                        + s.values()
                            .map(|v| string_bytes(v) + ENTRY_OVERHEAD)
                            .sum::<usize>()
                })
                .sum()
        };
        let hashes = |m: &HashMap<String, HashMap<String, i64>>| -> usize {
            m.iter()
                .map(|(k, h)| {
                    string_bytes(k)
                        + ENTRY_OVERHEAD
                        + h.keys()
                            .map(|a| string_bytes(a) + ENTRY_OVERHEAD)
                            .sum::<usize>()
                })
                .sum()
        };
        let agents: usize = self
            .agents
            .iter()
            .map(|(k, a)| {
                string_bytes(k) + ENTRY_OVERHEAD + a.task.as_deref().map_or(0, string_bytes)
            })
            .sum();
        let agent_tasks: usize = self
            .agent_tasks
            .iter()
            .map(|(k, s)| {
                string_bytes(k) + ENTRY_OVERHEAD + s.iter().map(|t| string_bytes(t)).sum::<usize>()
            })
            .sum();
        files
            + leases
            + strings(&self.tasks)
            + rates
            + strings(&self.sessions)
            + sets
            + streams(&self.events)
            + streams(&self.logs)
            + hashes(&self.members)
            + hashes(&self.activity)
            + agents
            + agent_tasks
    }

    // ----- events -----

    /// `emit.lua`: appends to the task's capped event stream, publishes it (id and envelope), touches the agent's presence and (if a member) its collaboration activity. (No
    /// outbox here: the operations write audit records to the durable store themselves.)
    fn emit_event(&mut self, a: EmitArgs<'_>, now: &Now) -> Result<StreamId> {
        let task = a.task.as_str();
        let stream = self.events.entry(task.to_owned()).or_default();
        let id = stream.next_id(now.ms)?;
        if self.updates.receiver_count() > 0 {
            // No receiver is not an error: nobody listens.
            let _ = self.updates.send((a.task.clone(), id, a.envelope.clone()));
        }
        stream.push(id, a.envelope, Some(a.events_cap));
        let agent = self.agents.entry(a.agent.to_owned()).or_default();
        agent.last_seen = Some(now.ms);
        agent.task = Some(task.to_owned());
        if self
            .members
            .get(task)
            .is_some_and(|m| m.contains_key(a.agent))
        {
            self.activity
                .entry(task.to_owned())
                .or_default()
                .insert(a.agent.to_owned(), now.ms);
        }
        Ok(id)
    }

    pub(super) fn emit(&mut self, e: &Emit<'_>, now: &Now) -> Result<StreamId> {
        self.emit_event(
            EmitArgs {
                task: e.task,
                agent: e.agent,
                envelope: e.envelope.clone(),
                events_cap: e.events_cap,
            },
            now,
        )
    }

    pub(super) fn log_step(
        &mut self,
        e: &Emit<'_>,
        envelope_suffix: &str,
        step_json: &str,
        logs_cap: usize,
        now: &Now,
    ) -> Result<StepIds> {
        let task = e.task.as_str();
        let sid = self.logs.entry(task.to_owned()).or_default().add(
            step_json.to_owned(),
            now.ms,
            Some(logs_cap),
        )?;
        let event = self.emit_event(
            EmitArgs {
                task: e.task,
                agent: e.agent,
                envelope: format!("{}{sid}{envelope_suffix}", e.envelope),
                events_cap: e.events_cap,
            },
            now,
        )?;
        Ok(StepIds { step: sid, event })
    }

    pub(super) fn steps_before(
        &self,
        task: &TaskId,
        before: Option<StreamId>,
        count: usize,
    ) -> Result<Vec<StoredStep>> {
        // `XREVRANGE logs (before - COUNT count`: the end is checked first.
        let end = match before {
            None => MAX_ID,
            Some(b) => stream::before(b)?,
        };
        let Some(s) = self.logs.get(task.as_str()) else {
            return Ok(Vec::new());
        };
        Ok(s.range(StreamId::ZERO, end)
            .rev()
            .take(count)
            .map(|(id, step)| StoredStep {
                id: *id,
                json: step.clone(),
            })
            .collect())
    }

    pub(super) fn events_after(
        &self,
        task: &TaskId,
        after: StreamId,
        count: usize,
    ) -> Result<Vec<StoredEvent>> {
        let start = stream::after(after)?;
        let Some(s) = self.events.get(task.as_str()) else {
            return Ok(Vec::new());
        };
        Ok(s.range(start, MAX_ID)
            .take(count)
            .map(|(id, env)| StoredEvent {
                id: *id,
                envelope: env.clone(),
            })
            .collect())
    }

    pub(super) fn events_tail(&self, task: &TaskId) -> Option<StreamId> {
        self.events.get(task.as_str()).and_then(Stream::last_entry)
    }

    pub(super) fn events_since(&self, task: &TaskId, since_ms: i64, limit: usize) -> Vec<Event> {
        let Some(s) = self.events.get(task.as_str()) else {
            return Vec::new();
        };
        let start = StreamId {
            ms: u64::try_from(since_ms).unwrap_or(0),
            seq: 0,
        };
        s.range(start, MAX_ID)
            .take(limit)
            .filter_map(|(id, raw)| {
                let mut event: Event = serde_json::from_str(raw).ok()?;
                event.id = Some(id.to_string());
                Some(event)
            })
            .collect()
    }

    // ----- files and leases -----

    /// `cache_file.lua`: replaces the hot copy unless it holds the same or a newer version,
    /// or changes of the file are under way.
    fn cache_file_at(&mut self, key: &str, f: &CacheFile<'_>, now: &Now) {
        let current = match self.files.get(key, now.at) {
            Some(FileSlot::Writing(_)) => return,
            Some(FileSlot::Copy(c)) => c.version,
            None => 0,
        };
        if f.version <= current {
            return;
        }
        self.files.insert(
            key,
            FileSlot::Copy(FileCopy {
                version: f.version,
                deleted: f.deleted,
                content: f.content.to_owned(),
                sha256: f.sha256.to_owned(),
                size: f.size,
            }),
            secs(f.ttl_secs, now.at),
        );
    }

    /// A refill after a miss. The in-process layer lives as long as the process: its era
    /// never ends, so every [`Refill`] it handed out is current.
    pub(super) fn cache_file(
        &mut self,
        task: &TaskId,
        path: &FilePath,
        f: &CacheFile<'_>,
        now: &Now,
    ) {
        let key = self.keys.file(task, path);
        self.cache_file_at(&key, f, now);
    }

    /// Takes `write`'s mark off the file (`HDEL key w:<token>`).
    fn settle(&mut self, key: &str, write: &PendingWrite, now: &Now) {
        if let Some(FileSlot::Writing(w)) = self.files.get_mut(key, now.at) {
            w.retain(|t| *t != write.token);
            if w.is_empty() {
                self.files.remove(key, now.at);
            }
        }
    }

    pub(super) fn file_changed(
        &mut self,
        path: &FilePath,
        f: &CacheFile<'_>,
        write: &PendingWrite,
        e: &Emit<'_>,
        now: &Now,
    ) -> Result<StreamId> {
        let key = self.keys.file(e.task, path);
        self.settle(&key, write, now);
        self.cache_file_at(&key, f, now);
        self.emit(e, now)
    }

    pub(super) fn write_abandoned(
        &mut self,
        task: &TaskId,
        path: &FilePath,
        write: &PendingWrite,
        now: &Now,
    ) {
        let key = self.keys.file(task, path);
        self.settle(&key, write, now);
    }

    pub(super) fn file(&mut self, task: &TaskId, path: &FilePath, now: &Now) -> HotRead {
        let key = self.keys.file(task, path);
        match self.files.get(&key, now.at) {
            Some(FileSlot::Copy(f)) => HotRead::Hit(HotFile {
                version: f.version,
                deleted: f.deleted,
                content: f.content.clone(),
                sha256: f.sha256.clone(),
                size: f.size,
            }),
            _ => HotRead::Miss(Refill { era: String::new() }),
        }
    }

    /// `writer_check.lua`: another owner's lease on the file or a directory above it (the
    /// write is refused); else the writer's own, the file's or the nearest directory's.
    pub(super) fn lease_for_write(
        &mut self,
        task: &TaskId,
        path: &FilePath,
        writer: &str,
        write: &PendingWrite,
        now: &Now,
    ) -> Option<Lease> {
        let file = LeasePath::file(path);
        let mut candidates = vec![file.as_str().to_owned()];
        candidates.extend(file.ancestors().rev().map(str::to_owned));
        let mut own = None;
        for p in candidates {
            let key = format!("{}{p}", self.keys.lock_prefix(task));
            let Some(l) = self.leases.get(&key, now.at) else {
                continue;
            };
            let lease = Lease {
                path: p,
                owner: l.owner.clone(),
                fence: l.fence,
                // The script reads no token.
                token: String::new(),
                expires_at: ms_to_time(l.expires_at),
            };
            if lease.owner != writer {
                return Some(lease);
            }
            own.get_or_insert(lease);
        }
        let key = self.keys.file(task, path);
        let until = secs(write.ttl_secs, now.at);
        match self.files.get_mut(&key, now.at) {
            Some(FileSlot::Writing(w)) => {
                w.push(write.token);
                // Extended, never shortened (`writer_check.lua`: `EXPIRE` when `TTL` is less).
                let current = self.files.deadline_of(&key, now.at).flatten();
                self.files.expire(&key, current.max(until), now.at);
            }
            _ => self
                .files
                .insert(&key, FileSlot::Writing(vec![write.token]), until),
        }
        own
    }

    /// The first live lease among `keys` held by someone other than `me` (or by `me` when it
    /// may not re-enter): (owner, expires_at ms, key).
    fn conflict_among<'k>(
        &mut self,
        keys: impl Iterator<Item = &'k str>,
        me: &str,
        reentrant: bool,
        now: &Now,
    ) -> Option<(String, i64, String)> {
        for key in keys {
            if let Some(l) = self.leases.get(key, now.at)
                && (l.owner != me || !reentrant)
            {
                return Some((l.owner.clone(), l.expires_at, key.to_owned()));
            }
        }
        None
    }

    /// `claim.lua`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn claim(&mut self, c: &Claim<'_>, now: &Now) -> ClaimOutcome {
        let Claim {
            task,
            path,
            owner,
            ttl,
            fence,
            reentrant,
            waiter,
        } = *c;
        let key = self.keys.lease(task, path);
        let queue_key = self.keys.lease_queue(task, path);
        let lock_prefix = self.keys.lock_prefix(task);
        let ttl_ms = ttl.as_millis() as u64;
        let exp = now
            .ms
            .saturating_add(i64::try_from(ttl_ms).unwrap_or(i64::MAX));
        let until = deadline(now.at, Duration::from_millis(ttl_ms));
        let ticket = waiter.map(|w| w.ticket);
        // The path itself.
        let mut conflict = None;
        if let Some(l) = self.leases.get_mut(&key, now.at) {
            if l.owner == owner && reentrant {
                l.expires_at = exp;
                l.ttl_ms = ttl_ms;
                let lease = Lease {
                    path: path.to_string(),
                    owner: owner.to_owned(),
                    fence: l.fence,
                    token: l.token.clone(),
                    expires_at: ms_to_time(exp),
                };
                self.leases.expire(&key, until, now.at);
                if let Some(t) = ticket {
                    self.drop_ticket(task, &queue_key, t);
                }
                return ClaimOutcome::Reentrant(lease);
            }
            conflict = Some((l.owner.clone(), l.expires_at, key.clone()));
        }
        // The directories above it.
        if conflict.is_none() {
            let above: Vec<String> = path
                .ancestors()
                .map(|d| format!("{lock_prefix}{d}"))
                .collect();
            conflict = self.conflict_among(above.iter().map(String::as_str), owner, reentrant, now);
        }
        // A directory: the task's leases beneath it.
        if conflict.is_none() && path.is_dir() {
            let beneath: Vec<String> = self
                .leases
                .live_with_prefix(&key, now.at)
                .map(|(k, _)| k.clone())
                .filter(|k| *k != key)
                .collect();
            conflict =
                self.conflict_among(beneath.iter().map(String::as_str), owner, reentrant, now);
        }
        // A waiter checks in.
        let mut arrival = None;
        if let Some(w) = waiter {
            let wkey = format!("{}{}", self.keys.lease_waiter_prefix(task), w.ticket);
            self.waiters
                .insert(&wkey, owner.to_owned(), deadline(now.at, w.liveness));
            let queue = self.queues.entry(queue_key.clone()).or_default();
            queue.waiter_prefix = self.keys.lease_waiter_prefix(task);
            let queue = &mut queue.tickets;
            let at = match queue.iter().find(|(_, t)| t == w.ticket) {
                Some((a, _)) => *a,
                None => {
                    let a = w.arrival.unwrap_or_else(|| {
                        let us = now.ms.saturating_mul(1000);
                        queue.last().map_or(us, |(last, _)| us.max(last + 1))
                    });
                    let at = queue.partition_point(|(b, _)| *b <= a);
                    queue.insert(at, (a, w.ticket.to_owned()));
                    a
                }
            };
            arrival = Some(at);
        }
        // The live waiters, in order.
        let waiter_prefix = self.keys.lease_waiter_prefix(task);
        let mut live: Vec<(String, String)> = Vec::new();
        if let Some(queue) = self.queues.get_mut(&queue_key) {
            let waiters = &mut self.waiters;
            queue.tickets.retain(|(_, t)| {
                match waiters.get(&format!("{waiter_prefix}{t}"), now.at) {
                    Some(who) => {
                        live.push((t.clone(), who.clone()));
                        true
                    }
                    None => false,
                }
            });
            if queue.tickets.is_empty() {
                self.queues.remove(&queue_key);
            }
        }
        let place = QueuePlace {
            position: ticket
                .and_then(|t| live.iter().position(|(lt, _)| lt == t))
                .map(|p| p as u64 + 1),
            waiters: live.len() as u64,
            arrival,
        };
        if let Some((holder, expires, ckey)) = conflict {
            return ClaimOutcome::HeldByOther {
                owner: holder,
                expires_at: ms_to_time(expires),
                path: ckey
                    .strip_prefix(lock_prefix.as_str())
                    .unwrap_or(path.as_str())
                    .to_owned(),
                queue: place,
            };
        }
        if let Some((first, who)) = live.first()
            && Some(first.as_str()) != ticket
        {
            return ClaimOutcome::Queued {
                next: who.clone(),
                queue: place,
            };
        }
        let Some(NewFence { fence, token }) = fence else {
            return ClaimOutcome::NeedFence;
        };
        self.leases.insert(
            &key,
            LeaseRec {
                owner: owner.to_owned(),
                fence,
                token: token.to_owned(),
                acquired_at: now.ms,
                expires_at: exp,
                ttl_ms,
                ticket: ticket.unwrap_or_default().to_owned(),
            },
            until,
        );
        if let Some(t) = ticket {
            self.drop_ticket(task, &queue_key, t);
        }
        ClaimOutcome::Granted(Lease {
            path: path.to_string(),
            owner: owner.to_owned(),
            fence,
            token: token.to_owned(),
            expires_at: ms_to_time(exp),
        })
    }

    /// Takes a ticket out of its queue and drops its liveness.
    fn drop_ticket(&mut self, task: &TaskId, queue_key: &str, ticket: &str) {
        if let Some(queue) = self.queues.get_mut(queue_key) {
            queue.tickets.retain(|(_, t)| t != ticket);
            if queue.tickets.is_empty() {
                self.queues.remove(queue_key);
            }
        }
        let wkey = format!("{}{ticket}", self.keys.lease_waiter_prefix(task));
        self.waiters.remove(&wkey, Instant::now());
    }

    /// `leave_queue.lua`.
    pub(super) fn leave_queue(
        &mut self,
        task: &TaskId,
        path: &LeasePath,
        ticket: &str,
        now: &Now,
    ) -> Option<Released> {
        let key = self.keys.lease(task, path);
        self.drop_ticket(task, &self.keys.lease_queue(task, path), ticket);
        let granted_to_it = self
            .leases
            .get(&key, now.at)
            .is_some_and(|l| l.ticket == ticket);
        let released = if granted_to_it {
            self.leases.remove(&key, now.at).map(|l| Released {
                owner: l.owner,
                fence: l.fence,
            })
        } else {
            None
        };
        self.wake(task, &key);
        released
    }

    fn wake(&self, task: &TaskId, key: &str) {
        let _ = self.lease_wakes.send((task.clone(), key.to_owned()));
    }

    /// `renew.lua`: for `ttl`, or the lease's own length when `None`.
    pub(super) fn renew(
        &mut self,
        task: &TaskId,
        path: &LeasePath,
        owner: &str,
        ttl: Option<Duration>,
        now: &Now,
    ) -> std::result::Result<Renewed, Option<String>> {
        let key = self.keys.lease(task, path);
        let (lease, ttl_ms) = match self.leases.get_mut(&key, now.at) {
            None => return Err(None),
            Some(l) if l.owner != owner => {
                return Err(Some(l.owner.clone()).filter(|h| !h.is_empty()));
            }
            Some(l) => {
                let ttl_ms = ttl.map_or(l.ttl_ms, |t| t.as_millis() as u64);
                let exp = now
                    .ms
                    .saturating_add(i64::try_from(ttl_ms).unwrap_or(i64::MAX));
                l.expires_at = exp;
                l.ttl_ms = ttl_ms;
                let lease = Lease {
                    path: path.to_string(),
                    owner: owner.to_owned(),
                    fence: l.fence,
                    token: l.token.clone(),
                    expires_at: ms_to_time(exp),
                };
                (lease, ttl_ms)
            }
        };
        self.leases.expire(
            &key,
            deadline(now.at, Duration::from_millis(ttl_ms)),
            now.at,
        );
        Ok(Renewed {
            lease,
            length: Duration::from_millis(ttl_ms),
        })
    }

    /// `release.lua`.
    pub(super) fn release(
        &mut self,
        task: &TaskId,
        path: &LeasePath,
        owner: &str,
        force: bool,
        now: &Now,
    ) -> std::result::Result<Released, Option<String>> {
        let key = self.keys.lease(task, path);
        match self.leases.get(&key, now.at) {
            None => return Err(None),
            Some(l) if l.owner != owner && !force => {
                return Err(Some(l.owner.clone()).filter(|h| !h.is_empty()));
            }
            Some(_) => {}
        }
        match self.leases.remove(&key, now.at) {
            Some(l) => {
                self.wake(task, &key);
                Ok(Released {
                    owner: l.owner,
                    fence: l.fence,
                })
            }
            None => Err(None),
        }
    }

    /// `list_leases.lua`: the task's live leases, soonest expiry first, at most `limit`, and
    /// whether there are more, each with its live waiters. (Walks this process's leases;
    /// Redis reads a per-task index.)
    pub(super) fn leases(&self, task: &TaskId, limit: usize, now: &Now) -> LeasePage {
        let prefix = self.keys.lock_prefix(task);
        let queue_prefix = self.keys.lease_queue_prefix(task);
        let waiter_prefix = self.keys.lease_waiter_prefix(task);
        let mut all: Vec<HeldLease> = self
            .leases
            .live_with_prefix(&prefix, now.at)
            .map(|(key, l)| {
                let path = &key[prefix.len()..];
                let waiters = self
                    .queues
                    .get(&format!("{queue_prefix}{path}"))
                    .map(|q| {
                        q.tickets
                            .iter()
                            .filter_map(|(_, t)| {
                                self.waiters
                                    .peek(&format!("{waiter_prefix}{t}"), now.at)
                                    .cloned()
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                HeldLease {
                    path: path.to_owned(),
                    owner: l.owner.clone(),
                    fence: l.fence,
                    acquired_at: ms_to_time(l.acquired_at),
                    expires_at: ms_to_time(l.expires_at),
                    ttl_ms: (l.expires_at - now.ms).max(0),
                    waiters,
                }
            })
            .collect();
        all.sort_by(|a, b| (a.expires_at, &a.path).cmp(&(b.expires_at, &b.path)));
        let more = all.len() > limit;
        all.truncate(limit);
        LeasePage { leases: all, more }
    }

    // ----- rate windows, tasks -----

    /// The rate script: counts the hit, starts the window on its first hit.
    pub(super) fn rate_hit(&mut self, subject: &str, window: Duration, now: &Now) -> RateWindow {
        let key = self.keys.rate(subject);
        let window_ms = (window.as_millis().max(1)) as u64;
        let n = {
            let n = self.rates.get_or_insert_with(&key, now.at, || 0);
            *n += 1;
            *n
        };
        let left = match self.rates.deadline_of(&key, now.at) {
            Some(Some(d)) => d.saturating_duration_since(now.at).as_millis() as u64,
            _ => {
                self.rates.expire(
                    &key,
                    deadline(now.at, Duration::from_millis(window_ms)),
                    now.at,
                );
                window_ms
            }
        };
        RateWindow {
            count: n,
            resets_in: Duration::from_millis(left),
        }
    }

    pub(super) fn task(&mut self, task: &TaskId, now: &Now) -> Option<TaskState> {
        let key = self.keys.task(task);
        self.tasks
            .get(&key, now.at)
            .and_then(|s| serde_json::from_str(s).ok())
    }

    pub(super) fn cache_task(
        &mut self,
        task: &TaskState,
        seq: i64,
        ttl_secs: u64,
        now: &Now,
    ) -> Result<()> {
        let id = TaskId::parse(&task.id)?;
        let json = cached_task_json(task, seq)?;
        if ttl_secs == 0 {
            return Err(zero_expiry());
        }
        let key = self.keys.task(&id);
        if self
            .tasks
            .get(&key, now.at)
            .is_some_and(|cur| cached_task_seq(cur) >= seq)
        {
            return Ok(());
        }
        self.tasks.insert(&key, json, secs(ttl_secs, now.at));
        Ok(())
    }

    pub(super) fn refresh_tasks(
        &mut self,
        rows: &[TaskRefresh<'_>],
        agent: &str,
        ttl_secs: u64,
        events_cap: usize,
        now: &Now,
    ) -> Result<Vec<Refreshed>> {
        let jsons = rows
            .iter()
            .map(|r| cached_task_json(r.task, r.seq))
            .collect::<Result<Vec<String>>>()?;
        let mut answers = Vec::with_capacity(rows.len());
        // Like the pipelined scripts: a row that fails does not stop the others; the call
        // then fails.
        let mut failed = false;
        for (r, json) in rows.iter().zip(jsons) {
            let key = self.keys.task(&r.id);
            let new = r.seq;
            if let Some(cur) = self.tasks.get(&key, now.at) {
                let held = cached_task_seq(cur);
                if held == new {
                    answers.push(Refreshed::Unchanged);
                    continue;
                }
                if held > new {
                    answers.push(Refreshed::Older);
                    continue;
                }
            }
            if ttl_secs == 0 {
                failed = true;
                continue;
            }
            self.tasks.insert(&key, json, secs(ttl_secs, now.at));
            if let Some(envelope) = &r.envelope {
                self.emit_event(
                    EmitArgs {
                        task: &r.id,
                        agent,
                        envelope: envelope.clone(),
                        events_cap,
                    },
                    now,
                )?;
            }
            answers.push(Refreshed::Changed);
        }
        if failed {
            return Err(zero_expiry());
        }
        Ok(answers)
    }

    pub(super) fn delete_cached_tasks(&mut self, ids: &[TaskId], now: &Now) {
        for id in ids {
            self.tasks.remove(&self.keys.task(id), now.at);
        }
    }

    pub(super) fn sync_is_warm(&self) -> bool {
        self.sync_warm.is_some()
    }

    pub(super) fn set_sync_warm(&mut self, now: &Now) {
        self.sync_warm = Some(now.ms);
    }

    // ----- collaboration and presence -----

    pub(super) fn join(&mut self, task: &TaskId, agent: &AgentId, joined_ms: i64) {
        let (t, a) = (task.as_str(), agent.as_str());
        self.members
            .entry(t.to_owned())
            .or_default()
            .insert(a.to_owned(), joined_ms);
        self.activity
            .entry(t.to_owned())
            .or_default()
            .insert(a.to_owned(), joined_ms);
        self.agent_tasks
            .entry(a.to_owned())
            .or_default()
            .insert(t.to_owned());
    }

    pub(super) fn leave(&mut self, task: &TaskId, agent: &AgentId) {
        let (t, a) = (task.as_str(), agent.as_str());
        for hash in [&mut self.members, &mut self.activity] {
            if let Some(h) = hash.get_mut(t) {
                h.remove(a);
                if h.is_empty() {
                    hash.remove(t);
                }
            }
        }
        if let Some(s) = self.agent_tasks.get_mut(a) {
            s.remove(t);
            if s.is_empty() {
                self.agent_tasks.remove(a);
            }
        }
    }

    pub(super) fn collaborators(&self, task: &TaskId) -> Option<Vec<Collaborator>> {
        let members = self.members.get(task.as_str()).filter(|m| !m.is_empty())?;
        let activity = self.activity.get(task.as_str());
        let mut out: Vec<Collaborator> = members
            .iter()
            .map(|(agent, &joined)| Collaborator {
                last_active: ms_to_time(
                    activity
                        .and_then(|a| a.get(agent))
                        .copied()
                        .unwrap_or(joined),
                ),
                joined_at: ms_to_time(joined),
                agent_id: agent.clone(),
            })
            .collect();
        out.sort_by(|a, b| (a.joined_at, &a.agent_id).cmp(&(b.joined_at, &b.agent_id)));
        Some(out)
    }

    pub(super) fn presence(&self, agent: &AgentId) -> Presence {
        let rec = self.agents.get(agent.as_str());
        let tasks = self
            .agent_tasks
            .get(agent.as_str())
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        Presence {
            last_seen: rec.and_then(|r| r.last_seen).map(ms_to_time),
            task: rec.and_then(|r| r.task.clone()),
            tasks,
        }
    }

    /// The agent-refresh script, per agent: presence moves forward only.
    pub(super) fn refresh_agents(&mut self, agents: &[AgentSeen]) {
        for AgentSeen {
            agent,
            last_seen_ms: seen_ms,
            task,
        } in agents
        {
            let rec = self.agents.get(agent.as_str());
            let cur = rec.and_then(|r| r.last_seen).unwrap_or(0);
            if *seen_ms <= cur {
                continue;
            }
            let rec = self.agents.entry(agent.clone()).or_default();
            rec.last_seen = Some(*seen_ms);
            if let Some(t) = task.as_deref().filter(|t| !t.is_empty()) {
                rec.task = Some(t.to_owned());
            }
        }
    }

    // ----- MCP sessions -----

    pub(super) fn save_session(&mut self, session: &str, state: &str, ttl: Duration, now: &Now) {
        let key = self.keys.mcp_session(session);
        self.sessions
            .insert(&key, state.to_owned(), mcp_deadline(ttl, now.at));
    }

    pub(super) fn load_session(
        &mut self,
        session: &str,
        ttl: Duration,
        now: &Now,
    ) -> Option<String> {
        let until = mcp_deadline(ttl, now.at);
        let key = self.keys.mcp_session(session);
        let state = self.sessions.get(&key, now.at).cloned();
        self.sessions.expire(&key, until, now.at);
        self.sets
            .expire(&self.keys.mcp_session_subs(session), until, now.at);
        state
    }

    pub(super) fn drop_session(&mut self, session: &str, now: &Now) {
        let own = self.keys.mcp_session_subs(session);
        if let Some(entries) = self.sets.remove(&own, now.at) {
            for e in entries {
                if let Some((index, entry)) = split_session_entry(&e) {
                    self.set_remove(index, entry, now);
                }
            }
        }
        self.sessions
            .remove(&self.keys.mcp_session(session), now.at);
    }

    /// `SREM`: an emptied set is removed.
    fn set_remove(&mut self, key: &str, member: &str, now: &Now) {
        if let Some(s) = self.sets.get_mut(key, now.at) {
            s.remove(member);
            if s.is_empty() {
                self.sets.remove(key, now.at);
            }
        }
    }

    /// `SADD` then `EXPIRE`.
    fn set_add(&mut self, key: &str, member: String, until: Option<Instant>, now: &Now) {
        self.sets
            .get_or_insert_with(key, now.at, BTreeSet::new)
            .insert(member);
        self.sets.expire(key, until, now.at);
    }

    pub(super) fn subscribe(
        &mut self,
        session: &str,
        scope: SubScope<'_>,
        key: &str,
        uri: &str,
        ttl: Duration,
        now: &Now,
    ) {
        let index = self.keys.mcp_subs(scope);
        let entry = subscription_entry(session, key, uri);
        let own = self.keys.mcp_session_subs(session);
        let until = mcp_deadline(ttl, now.at);
        self.set_add(&index, entry.clone(), until, now);
        self.set_add(&own, session_entry(&index, &entry), until, now);
    }

    pub(super) fn unsubscribe(
        &mut self,
        session: &str,
        scope: SubScope<'_>,
        key: &str,
        uri: &str,
        now: &Now,
    ) {
        let index = self.keys.mcp_subs(scope);
        let entry = subscription_entry(session, key, uri);
        self.set_remove(&index, &entry, now);
        let own = self.keys.mcp_session_subs(session);
        self.set_remove(&own, &session_entry(&index, &entry), now);
    }

    pub(super) fn subscribers(&mut self, scope: SubScope<'_>, now: &Now) -> Vec<Subscriber> {
        let index = self.keys.mcp_subs(scope);
        self.sets
            .get(&index, now.at)
            .map(|s| {
                s.iter()
                    .filter_map(|e| parse_subscription_entry(e))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub(super) fn session_subscriptions(&mut self, session: &str, now: &Now) -> Vec<Subscriber> {
        let own = self.keys.mcp_session_subs(session);
        self.sets
            .get(&own, now.at)
            .map(|s| {
                s.iter()
                    .filter_map(|e| split_session_entry(e))
                    .filter_map(|(_, entry)| parse_subscription_entry(entry))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// What Redis answers `SET … EX 0`.
fn zero_expiry() -> DomainError {
    DomainError::internal("in-process store: invalid expire time in 'set' command")
}
