//! The hot seam: caches, leases, streams, pub/sub, presence, the sync outbox and the MCP
//! session state, and the records that cross it. One trait per capability:
//! * [`HotBackend`]: the store itself (what it is, its health, whether it has an outbox);
//! * [`EventLog`]: each task's event stream, by [`StreamId`], and its live channel (typed
//!   [`TaskEvent`]s to every [`UpdatesSource`]);
//! * [`StepLog`]: each task's step stream;
//! * [`FileCache`]: hot copies of files;
//! * [`Leases`]: claims, wait queues, renewals, releases (wake-ups through a [`WakeSource`]);
//! * [`RateLimit`], [`TaskCache`], [`Collaboration`] (presence and membership);
//!
//! [`HotOps`] names those together: what the operations need.
//! * [`Outbox`]: the sync outbox, only in a store that lives apart from its durable store
//!   ([`HotBackend::outbox`]);
//! * [`HotSync`]: what the pull loop refreshes (task rows, agents' presence);
//! * [`McpSessions`]: the MCP door's sessions, subscriptions and listen cancellations.
//!
//! Two backends implement it:
//! [`super::redis::RedisStore`] (shared by every gateway instance) and
//! [`super::memory::MemoryStore`] (embedded mode: one process). Both pass one behaviour suite
//! (`crates/testkit/tests/stores/main.rs`).
//!
//! The contract every backend keeps:
//! * each method is atomic: no other call observes half of it (Redis: one Lua script or
//!   MULTI, in one hash slot; in-process: one critical section) — except for what lives with
//!   an agent or an MCP session rather than the task (presence, an agent's task set, a
//!   session's list of its subscriptions), which Redis writes beside the task's step;
//! * a hot copy never moves backwards: a file's in version, a task row's in change number
//!   (`change_seq`, see [`cached_task_json`]);
//! * a lease is re-entrant for its owner (unless the claim says it is not: an anonymous
//!   caller's), refused to others while it lives, and released or renewed only by its owner
//!   (or by force); it expires on its own. A directory lease (`src/api/`) conflicts with
//!   every lease of another owner beneath it and above it, and refuses writes beneath it;
//! * a path's waiters are granted in arrival order: while a path has live waiters, only the
//!   first may take it, and a claim without a ticket is refused; a waiter that stops
//!   checking in drops out after its liveness;
//! * stream ids are `<ms>-<seq>` and strictly increase per stream; capped streams keep at
//!   least their cap of newest entries;
//! * every emitted event is appended to the task's event stream and published to every
//!   [`UpdatesSource`], which yields it as a typed [`TaskEvent`] whose id is the entry's id
//!   (on the Redis channel, the seed's contract, it travels as the event's JSON with that
//!   `id`; the in-process store hands over the id and the envelope as they are);
//! * a store with an outbox ([`HotBackend::outbox`]: Redis, which lives apart from the durable
//!   store) queues a step or an audit record in the same atomic step as its event; its
//!   entries are delivered to one consumer of a group at a time, stay pending until
//!   acknowledged, and can be claimed from an idle consumer. A store without one (in-process)
//!   keeps no record for the durable store: the operations write it there themselves.

use crate::error::Result;
use crate::ids::{AgentId, TaskId};
use crate::path::{FilePath, LeasePath};
use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use mcp_api::responses::{Collaborator, TaskState};
use mcp_api::{Event, StreamId};
use std::collections::HashMap;
use std::time::Duration;

/// An event to emit: the envelope (without id) and who/where, plus an optional audit record.
pub struct Emit<'a> {
    /// The task whose stream and channel the event goes to.
    pub task: &'a TaskId,
    /// The acting agent, whose presence (and collaboration activity) the event touches.
    pub agent: &'a str,
    /// The envelope JSON object without `id`.
    pub envelope: String,
    /// Audit record for the outbox (JSON), if this change is audited through the outbox. Only
    /// a store with an outbox ([`HotBackend::outbox`]) is handed one; a store without one ignores it.
    pub audit: Option<String>,
    /// Cap of the task's event stream.
    pub events_cap: usize,
}

/// A file's hot copy.
#[derive(Debug, Clone)]
pub struct HotFile {
    /// The cached version (a tombstone keeps the version of its delete).
    pub version: i64,
    /// The file was deleted: this copy is its tombstone.
    pub deleted: bool,
    /// The content ('' for a tombstone).
    pub content: String,
    /// Hex SHA-256 of the content.
    pub sha256: String,
    /// Size of the content in bytes.
    pub size: i64,
}

/// A hot read's answer ([`FileCache::file`]).
#[derive(Debug, Clone)]
pub enum HotRead {
    /// The cache holds a copy.
    Hit(HotFile),
    /// It holds none: the reader reads the durable store and refills the cache with what it
    /// read, presenting this ([`FileCache::cache_file`]).
    Miss(Refill),
}

impl HotRead {
    /// The copy, when the cache held one.
    pub fn hit(self) -> Option<HotFile> {
        match self {
            HotRead::Hit(f) => Some(f),
            HotRead::Miss(_) => None,
        }
    }
}

/// What a refill after a miss presents: the hot layer's era at the miss (on Redis, the
/// validation marker: the server the layer was validated on). A refill from an era that
/// ended — the server was replaced and the layer rebuilt while the reader was reading the
/// durable store — is refused: what it read may predate a change whose refresh the old
/// server took with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refill {
    pub(crate) era: String,
}

/// A change of one file under way, from the check before its durable commit
/// ([`Leases::lease_for_write`]) until it settles ([`FileCache::file_changed`] after the
/// commit, [`FileCache::write_abandoned`] when refused). While any change of a file is under
/// way the file has no hot copy and refills are refused, so that a refresh lost after the
/// commit (a failover, a timeout, a cancelled request) cannot leave an older copy served. A
/// change that never settles stops counting after `ttl_secs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingWrite {
    /// A random id of this change.
    pub token: u64,
    /// How long it counts as under way at most (longer than any commit takes).
    pub ttl_secs: u64,
}

impl PendingWrite {
    /// A new change's mark, counting as under way for at most `ttl_secs`.
    pub fn new(ttl_secs: u64) -> PendingWrite {
        PendingWrite {
            token: rand::random(),
            ttl_secs: ttl_secs.max(1),
        }
    }
}

/// A file's state to cache (also the tombstone of a deleted file).
pub struct CacheFile<'a> {
    /// The committed version; an older one than the cache holds is not cached.
    pub version: i64,
    /// The file was deleted: cache a tombstone.
    pub deleted: bool,
    /// The content ('' for a tombstone).
    pub content: &'a str,
    /// Hex SHA-256 of the content.
    pub sha256: &'a str,
    /// Size of the content in bytes.
    pub size: i64,
    /// The agent of the change.
    pub updated_by: &'a str,
    /// When the change committed.
    pub updated_at: DateTime<Utc>,
    /// How long the copy stays cached.
    pub ttl_secs: u64,
}

/// A live lease.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    /// The path it covers ([`LeasePath`]: a directory's ends in `/`). For a write, the
    /// file's own lease or a directory lease above it.
    pub path: String,
    /// The agent that holds it.
    pub owner: String,
    /// The fencing token it was granted with; the writes made under it carry it.
    pub fence: i64,
    /// A random id of this grant (`lock_token` on the wire); re-entrant claims keep it.
    pub token: String,
    /// When it ends unless renewed.
    pub expires_at: DateTime<Utc>,
}

/// A live lease as a listing shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldLease {
    /// The normalised path.
    pub path: String,
    /// The agent that holds it.
    pub owner: String,
    /// The fencing token it was granted with.
    pub fence: i64,
    /// When it was granted (re-entrant claims and renewals keep it).
    pub acquired_at: DateTime<Utc>,
    /// When it ends unless renewed.
    pub expires_at: DateTime<Utc>,
    /// Milliseconds until it expires, by the store's clock.
    pub ttl_ms: i64,
    /// The agents waiting for it (`claim_file` with `wait_sec`), the next to be granted first.
    pub waiters: Vec<String>,
}

/// The answer of a claim.
#[derive(Debug)]
pub enum ClaimOutcome {
    /// Free, and now the caller's, with the fence the claim brought.
    Granted(Lease),
    /// Already held by the same owner: refreshed.
    Reentrant(Lease),
    /// A conflicting lease of another owner: on the path, on a directory above it, or (for a
    /// directory) on a path beneath it.
    HeldByOther {
        /// The agent that holds the conflicting lease.
        owner: String,
        /// When the conflicting lease ends.
        expires_at: DateTime<Utc>,
        /// The conflicting lease's path.
        path: String,
        /// The caller's place in the path's wait queue.
        queue: QueuePlace,
    },
    /// Nothing conflicts, but the path is promised to the waiters queued before the caller;
    /// `next` is the agent of the first of them.
    Queued {
        /// The agent of the first waiter.
        next: String,
        /// The caller's place in the path's wait queue.
        queue: QueuePlace,
    },
    /// Free, but a fence is needed to take it.
    NeedFence,
}

/// The caller's place in a path's wait queue, as a refused claim found it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueuePlace {
    /// The caller's position, 1 for the next to be granted; `None` without a ticket.
    pub position: Option<u64>,
    /// How many wait on the path (the caller included).
    pub waiters: u64,
    /// The ticket's arrival (its rank in the queue: store time in microseconds), given back
    /// at every later check so that a queue the store lost is rebuilt in arrival order.
    pub arrival: Option<i64>,
}

/// A claim that waits: its ticket in the path's queue.
#[derive(Debug, Clone, Copy)]
pub struct Waiter<'a> {
    /// Unique per waiting request.
    pub ticket: &'a str,
    /// The arrival the first check answered (`None` before it).
    pub arrival: Option<i64>,
    /// How long the ticket stays queued without another check (the waiting gateway checks
    /// more often; a gateway that dies leaves tickets that drop out after this).
    pub liveness: Duration,
}

/// An agent's hot presence (the same record as its durable one).
pub use super::durable::Presence;

/// One outbox entry: its id and its fields.
#[derive(Debug, Clone)]
pub struct OutboxEntry {
    /// The entry's stream id, what it is acknowledged by.
    pub id: String,
    /// The entry's fields (`kind` and the record's; see `mcp-sync`'s `decode.rs`).
    pub fields: HashMap<String, String>,
}

/// How much the outbox holds.
#[derive(Debug, Clone, Copy, Default)]
pub struct OutboxDepth {
    /// Entries in the stream (delivered or not; committed ones are deleted).
    pub length: u64,
    /// Entries delivered to a consumer and not yet acknowledged.
    pub pending: u64,
}

/// A task row to cache; with an envelope (JSON without `id`) its event is emitted when the
/// row is newer than the cache.
pub struct TaskRefresh<'a> {
    /// The task.
    pub id: TaskId,
    /// The row as the durable store holds it.
    pub task: &'a TaskState,
    /// The row's change number ([`crate::store::durable::TaskRow::seq`]): "newer" is a higher
    /// one, never a later `updated_at` (a writer's clock).
    pub seq: i64,
    /// The event to emit (JSON without `id`) when the row is cached, if any.
    pub envelope: Option<String>,
}

/// The member of a cached task row that holds its change number.
pub const TASK_SEQ_FIELD: &str = "change_seq";

/// A task row as the hot stores cache it: the row's JSON plus its change number
/// ([`TASK_SEQ_FIELD`]), which the ordered stores compare; a reader parses it as a
/// [`TaskState`] and ignores the extra member. A cached row without one counts as 0.
pub fn cached_task_json(task: &TaskState, seq: i64) -> Result<String> {
    let mut v = serde_json::to_value(task).map_err(crate::error::DomainError::internal)?;
    if let Some(map) = v.as_object_mut() {
        map.insert(TASK_SEQ_FIELD.into(), seq.into());
    }
    serde_json::to_string(&v).map_err(crate::error::DomainError::internal)
}

/// The change number of a cached task row ([`cached_task_json`]); 0 when it has none.
pub fn cached_task_seq(json: &str) -> i64 {
    serde_json::from_str::<serde_json::Value>(json)
        .ok()
        .and_then(|v| v.get(TASK_SEQ_FIELD)?.as_i64())
        .unwrap_or(0)
}

/// What a refresh found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refreshed {
    /// Cached (and emitted, when asked).
    Changed,
    /// The cache already held this row.
    Unchanged,
    /// The cache holds a newer row; nothing done.
    Older,
}

/// Which index an MCP subscription lives in: the task's or the agent's.
#[derive(Debug, Clone, Copy)]
pub enum SubScope<'a> {
    /// One task's subscriptions.
    Task(&'a TaskId),
    /// One agent's subscriptions (its status and its inbox).
    Agent(&'a AgentId),
}

impl SubScope<'_> {
    /// The scope as a [`FiledSubscription`] spells it: `task:<id>` or `agent:<id>`.
    pub fn filed(&self) -> String {
        match self {
            SubScope::Task(t) => format!("task:{}", t.as_str()),
            SubScope::Agent(a) => format!("agent:{}", a.as_str()),
        }
    }
}

/// One MCP session's subscription to one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscriber {
    /// The MCP session that subscribed.
    pub session: String,
    /// The resource's canonical key (normalised URI), what events are matched against.
    pub key: String,
    /// The URI exactly as the client subscribed to it, what the notification names.
    pub uri: String,
}

/// Milliseconds since the epoch as a time (0 for out of range).
pub fn ms_to_time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// One event of a task's update channel, read once where it arrives (in the store's
/// subscription, once per gateway process), never handed on as text.
#[derive(Debug, Clone)]
pub struct TaskEvent {
    /// The task whose channel carried it.
    pub task: TaskId,
    /// Its position in the task's event stream (`event.id`, parsed); `None` for a message
    /// another system published in the seed's shape (not in the stream, not replayable).
    pub id: Option<StreamId>,
    /// The event, its `id` set when it has one.
    pub event: Event,
}

impl TaskEvent {
    /// A message as published on `task`'s channel, read once
    /// ([`crate::events::parse_published`]): its id is the event's `id`, when it has one.
    /// `None` (logged) for a message that is not an event.
    pub fn published(task: TaskId, payload: &str) -> Option<TaskEvent> {
        let Some(event) = crate::events::parse_published(&task, payload) else {
            tracing::debug!(task = %task, "ignored a message that is not an event");
            return None;
        };
        Some(TaskEvent {
            id: event.id.as_deref().and_then(StreamId::parse),
            task,
            event,
        })
    }
}

/// What a subscriber reads of the update channels. A message nobody wants is skipped before
/// it is parsed (issue #19: every event this process publishes comes back through its own
/// subscription, watched or not, and reading it cost as much as a tenth of a step).
pub trait Interest: Sync {
    /// Whether every event of `task` is wanted (someone watches the task).
    fn task(&self, task: &TaskId) -> bool;
    /// Whether an event of kind `kind` is wanted although its task is not.
    fn kind(&self, kind: &str) -> bool;
}

impl dyn Interest + '_ {
    /// Whether the message `payload`, published on `task`'s channel, is to be read: its task
    /// is wanted, or its `type` ([`crate::events::published_kind`]) is, or its `type` cannot
    /// be told without reading it whole. A message without a `type` is not an event: never.
    pub fn wants(&self, task: &TaskId, payload: &str) -> bool {
        self.task(task)
            || match crate::events::published_kind(payload) {
                Some(Some(kind)) => self.kind(&kind),
                Some(None) => false,
                None => true,
            }
    }
}

/// Every event ([`UpdatesSource::next`]).
pub struct Everything;

impl Interest for Everything {
    fn task(&self, _: &TaskId) -> bool {
        true
    }
    fn kind(&self, _: &str) -> bool {
        true
    }
}

/// The process-wide subscription to every task's update channel.
#[async_trait]
pub trait UpdatesSource: Send {
    /// The next event that `interest` wants; the others are skipped unread. Messages that are
    /// not events (no `type`) are skipped. `None` once the subscription is lost (the caller
    /// subscribes again and resynchronises its watchers).
    async fn next_wanted(&mut self, interest: &dyn Interest) -> Option<TaskEvent>;

    /// The next event, whatever it is.
    async fn next(&mut self) -> Option<TaskEvent> {
        self.next_wanted(&Everything).await
    }

    /// A handle that checks the subscription is alive (a silent, half-open connection only
    /// shows itself when probed).
    fn pinger(&self) -> Box<dyn UpdatesPing>;
}

/// The process-wide subscription to every task's lease wake-ups
/// ([`Leases::subscribe_lease_wakes`]).
#[async_trait]
pub trait WakeSource: Send {
    /// The task of the next wake-up; `None` once the subscription is lost (subscribe again).
    async fn next(&mut self) -> Option<TaskId>;

    /// A handle that checks the subscription is alive.
    fn pinger(&self) -> Box<dyn UpdatesPing>;
}

/// See [`UpdatesSource::pinger`].
#[async_trait]
pub trait UpdatesPing: Send {
    /// Fails when the subscription's connection does not answer.
    async fn ping(&mut self) -> Result<()>;
}

/// A subscription to one pub/sub channel: its payloads.
#[async_trait]
pub trait MessageSource: Send {
    /// The next payload; `None` once the subscription is lost (subscribe again).
    async fn next(&mut self) -> Option<String>;

    /// A handle that checks the subscription is alive.
    fn pinger(&self) -> Box<dyn UpdatesPing>;
}

/// What the operations ([`crate::Service`]) and the gateway need from the hot store: every
/// capability below. A backend implements each; this trait only names them together.
pub trait HotOps:
    HotBackend + EventLog + StepLog + FileCache + Leases + RateLimit + TaskCache + Collaboration
{
}
impl<T> HotOps for T where
    T: HotBackend + EventLog + StepLog + FileCache + Leases + RateLimit + TaskCache + Collaboration
{
}

/// Memory a hot store uses, and the limit it is measured against (bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryUsage {
    /// Bytes in use.
    pub used: u64,
    /// `maxmemory` (Redis), or the machine's memory when none is set; 0 when unknown.
    pub limit: u64,
}

/// The store itself: what it is, whether it is up, what it can do.
#[async_trait]
pub trait HotBackend: Send + Sync + 'static {
    /// The backend's name as `/health` and the start-up log report it (`redis`, `in-process`).
    fn backend(&self) -> &'static str;

    /// Whether several gateway processes can share this store.
    fn shared(&self) -> bool;

    /// Whether the store answers.
    async fn ping(&self) -> Result<()>;

    /// The eviction policy, when the backend has one and lets us read it.
    async fn maxmemory_policy(&self) -> Result<Option<String>>;

    /// Why the store refuses writes for lack of memory (a full Redis: `maxmemory` reached and
    /// nothing it may evict), found by a write; `None` when a write succeeds.
    async fn refuses_writes(&self) -> Result<Option<String>>;

    /// Memory in use and the limit it is measured against.
    async fn memory_usage(&self) -> Result<MemoryUsage>;

    /// The sync outbox, where the store has one: a hot store that lives apart from the
    /// durable store (Redis) queues steps and audit records there for the push loop. `None`:
    /// the store lives in the gateway's process beside its durable store (embedded mode), and
    /// the operations write those records to the durable store themselves, in the call that
    /// acknowledges them ([`crate::Service`]).
    fn outbox(&self) -> Option<&dyn Outbox>;
}

/// One entry of a task's event stream: its id and its envelope (JSON without `id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Its id in the task's event stream.
    pub id: StreamId,
    /// The event's JSON without `id`.
    pub envelope: String,
}

/// The event log: each task's capped event stream and its pub/sub channel.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// The pub/sub channel a task's events are published on (the seed's
    /// `task:{id}:updates`, under the deployment's key prefix).
    fn channel(&self, task: &TaskId) -> String;

    /// Appends the event to the task's stream, publishes it, touches the agent's presence and
    /// (if it is a member) its collaboration activity, queues the audit record (in the outbox,
    /// where the store has one). Returns the event's id.
    async fn emit(&self, e: &Emit<'_>) -> Result<StreamId>;

    /// Up to `count` entries of the task's event stream strictly after `after`, oldest first.
    /// The replay source of live streams.
    async fn events_after(
        &self,
        task: &TaskId,
        after: StreamId,
        count: usize,
    ) -> Result<Vec<StoredEvent>>;

    /// The id of the task's newest event, `None` when its stream is empty or missing.
    async fn events_tail(&self, task: &TaskId) -> Result<Option<StreamId>>;

    /// A subscription to every task's update channel. The live-event hub holds one per
    /// process.
    async fn subscribe_updates(&self) -> Result<Box<dyn UpdatesSource>>;
}

/// One step of a task's log: its id and its JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredStep {
    /// Its id in the task's log stream.
    pub id: StreamId,
    /// The step object as JSON.
    pub json: String,
}

/// What [`StepLog::log_step`] appended: the step's id in the task's log and its event's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepIds {
    /// The step's id in the task's log stream.
    pub step: StreamId,
    /// Its event's id in the task's event stream.
    pub event: StreamId,
}

/// The step log: each task's capped stream of steps (and their events).
#[async_trait]
pub trait StepLog: Send + Sync + 'static {
    /// Appends a step to the task's log stream and (where the store has one) to the outbox,
    /// and emits its event, in one atomic step. The event's envelope is `e.envelope` + step
    /// id + `envelope_suffix` (the step id is only known inside).
    async fn log_step(
        &self,
        e: &Emit<'_>,
        envelope_suffix: &str,
        step_json: &str,
        logs_cap: usize,
    ) -> Result<StepIds>;

    /// Newest-first page of steps strictly older than `before` (all of them without one).
    async fn steps_before(
        &self,
        task: &TaskId,
        before: Option<StreamId>,
        count: usize,
    ) -> Result<Vec<StoredStep>>;
}

/// The file cache: hot copies of files, never moved backwards.
#[async_trait]
pub trait FileCache: Send + Sync + 'static {
    /// After a durable file change: settle `write` and, unless another change of the file is
    /// still under way, refresh the hot copy (never backwards); emit the event; in one atomic
    /// step. Returns the event's id.
    async fn file_changed(
        &self,
        path: &FilePath,
        file: &CacheFile<'_>,
        write: &PendingWrite,
        e: &Emit<'_>,
    ) -> Result<StreamId>;

    /// Settles a change that did not commit (refused by the durable store).
    async fn write_abandoned(
        &self,
        task: &TaskId,
        path: &FilePath,
        write: &PendingWrite,
    ) -> Result<()>;

    /// Refills a file's hot copy after a miss, with what the reader read from the durable
    /// store: never backwards, never while a change of the file is under way, never from an
    /// era that ended ([`Refill`]).
    async fn cache_file(
        &self,
        task: &TaskId,
        path: &FilePath,
        file: &CacheFile<'_>,
        refill: &Refill,
    ) -> Result<()>;

    /// A file's hot copy, or a miss with what its refill presents.
    async fn file(&self, task: &TaskId, path: &FilePath) -> Result<HotRead>;
}

/// The fence a claim takes the lease with (the durable store's next number for the task) and
/// the lease's token.
#[derive(Debug, Clone, Copy)]
pub struct NewFence<'a> {
    /// The fencing token, from the durable store's sequence.
    pub fence: i64,
    /// A random id of the grant ([`Lease::token`]).
    pub token: &'a str,
}

/// A claim of a lease ([`Leases::claim`]).
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    /// The task the path belongs to.
    pub task: &'a TaskId,
    /// The file or directory to lease.
    pub path: &'a LeasePath,
    /// Who claims.
    pub owner: &'a str,
    /// How long the lease lives unless renewed.
    pub ttl: Duration,
    /// Needed to take a free lease; without it a free path answers `NeedFence`.
    pub fence: Option<NewFence<'a>>,
    /// Whether the owner's own lease is refreshed (a caller without an identity cannot prove
    /// it is the holder: its claims are not).
    pub reentrant: bool,
    /// The claim's ticket in the path's wait queue, when it waits.
    pub waiter: Option<&'a Waiter<'a>>,
}

impl<'a> Claim<'a> {
    /// A re-entrant claim of `path` by `owner` for `ttl`, without a fence and not waiting.
    pub fn new(task: &'a TaskId, path: &'a LeasePath, owner: &'a str, ttl: Duration) -> Self {
        Claim {
            task,
            path,
            owner,
            ttl,
            fence: None,
            reentrant: true,
            waiter: None,
        }
    }

    /// The claim with the fence (and token) to take a free lease with.
    pub fn fenced(self, fence: i64, token: &'a str) -> Self {
        Claim {
            fence: Some(NewFence { fence, token }),
            ..self
        }
    }

    /// The claim waiting in the path's queue with `waiter`'s ticket.
    pub fn waiting(self, waiter: &'a Waiter<'a>) -> Self {
        Claim {
            waiter: Some(waiter),
            ..self
        }
    }

    /// The claim, refused like another owner's while the owner holds the lease.
    pub fn not_reentrant(self) -> Self {
        Claim {
            reentrant: false,
            ..self
        }
    }
}

/// A lease's event, to be emitted in the same atomic step as the grant or release that causes
/// it, where the store can ([`Leases::claim_announcing`], [`Leases::release_announcing`]).
/// Its envelope (and audit record) are complete but for one value that only that step knows,
/// whose JSON text goes between the two halves: a grant's expiry (a JSON string), a release's
/// fence (a number).
pub struct LeaseEvent<'a> {
    /// The event; its `envelope` is the text before the value, and so is its `audit` when
    /// `audit_after` is given (else the audit record is complete as it is).
    pub emit: Emit<'a>,
    /// The envelope's text after the value.
    pub envelope_after: String,
    /// The audit record's text after the value, when the value is in it too.
    pub audit_after: Option<String>,
}

/// A lease that was released: who held it and its fence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released {
    /// The agent that held it.
    pub owner: String,
    /// The fencing token it was granted with.
    pub fence: i64,
}

/// A renewed lease and the length it was renewed for.
#[derive(Debug, Clone, PartialEq)]
pub struct Renewed {
    /// The lease with its new expiry.
    pub lease: Lease,
    /// The length it was renewed for (and keeps for its next renewal).
    pub length: Duration,
}

/// A page of a task's live leases.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LeasePage {
    /// Soonest expiry first.
    pub leases: Vec<HeldLease>,
    /// Whether the task holds more than the page.
    pub more: bool,
}

/// Leases: claims, wait queues, renewals, releases, the lease that governs a write.
#[async_trait]
pub trait Leases: Send + Sync + 'static {
    /// The lease that governs a write of the file by `writer`, if any, read before a durable
    /// change: another owner's lease on the file or on a directory above it (the write is
    /// refused), else the writer's own (the file's, or else the nearest directory's above
    /// it). When the writer may write, its change is marked under way ([`PendingWrite`]) and
    /// the hot copy dropped in the same step, so no reader keeps serving, or refills, the old
    /// version should the refresh after the commit be lost.
    async fn lease_for_write(
        &self,
        task: &TaskId,
        path: &FilePath,
        writer: &str,
        write: &PendingWrite,
    ) -> Result<Option<Lease>>;

    /// Claims a lease for `ttl`: free and with a fence → granted; held by `owner` →
    /// re-entrant (TTL refreshed, same fence and token) when `reentrant`, else refused like
    /// another owner; held by another, or a conflicting directory lease above it or (for a
    /// directory) any lease of another beneath it → refused; free without a fence →
    /// `NeedFence`, nothing changed.
    ///
    /// The path's wait queue: a `waiter` joins it (at its `arrival` when it has one) unless
    /// it is granted at once, and checks in (its liveness refreshed); waiters whose liveness
    /// lapsed are dropped from its head. While live waiters are queued, only the first may be
    /// granted (`NeedFence` is answered to it alone); anyone else is answered `Queued`. A
    /// grant (or a re-entrant claim) takes the waiter's ticket out of the queue.
    async fn claim(&self, claim: &Claim<'_>) -> Result<ClaimOutcome>;

    /// [`Leases::claim`], and on a grant `event` emitted in the same atomic step (the value
    /// it lacks: the lease's expiry). Answers whether it was emitted: a store that does not
    /// fold it (the default, and Redis with `REDIS_MIN_REPLICAS`) leaves it to the caller, as
    /// it does every event of an outcome other than a grant.
    async fn claim_announcing(
        &self,
        claim: &Claim<'_>,
        event: &LeaseEvent<'_>,
    ) -> Result<(ClaimOutcome, bool)> {
        let _ = event;
        Ok((self.claim(claim).await?, false))
    }

    /// Takes a waiter's ticket out of the path's queue (it gave up, timed out or went away).
    /// Should the lease have been granted to that very ticket (a grant whose answer never
    /// reached the waiter), it is released too and returned. When the waiter was first in
    /// line, or a lease was released, the task's waiters are woken.
    async fn leave_queue(
        &self,
        task: &TaskId,
        path: &LeasePath,
        ticket: &str,
    ) -> Result<Option<Released>>;

    /// A subscription to every task's lease wake-ups (a release, a waiter leaving the head
    /// of a queue). A process with waiters holds one.
    async fn subscribe_lease_wakes(&self) -> Result<Box<dyn WakeSource>>;

    /// Renews the owner's lease for `ttl`, or, when `None`, for the lease's own length (the
    /// length of its last grant or renewal; `fallback` for a lease that has none recorded).
    /// `Err(holder)` when the caller does not hold it.
    async fn renew(
        &self,
        task: &TaskId,
        path: &LeasePath,
        owner: &str,
        ttl: Option<Duration>,
        fallback: Duration,
    ) -> Result<std::result::Result<Renewed, Option<String>>>;

    /// Releases the owner's lease (any lease with `force`) and wakes the task's waiters.
    /// `Err(holder)` when not held by the caller.
    async fn release(
        &self,
        task: &TaskId,
        path: &LeasePath,
        owner: &str,
        force: bool,
    ) -> Result<std::result::Result<Released, Option<String>>>;

    /// [`Leases::release`] of the owner's own lease (not forced), and on a release `event`
    /// emitted in the same atomic step (the value it lacks: the lease's fence). Answers
    /// whether it was emitted (see [`Leases::claim_announcing`]).
    async fn release_announcing(
        &self,
        task: &TaskId,
        path: &LeasePath,
        owner: &str,
        event: &LeaseEvent<'_>,
    ) -> Result<(std::result::Result<Released, Option<String>>, bool)> {
        let _ = event;
        Ok((self.release(task, path, owner, false).await?, false))
    }

    /// The task's live leases, soonest expiry first: at most `limit`. Read from a per-task
    /// index, never by scanning every lease.
    async fn leases(&self, task: &TaskId, limit: usize) -> Result<LeasePage>;
}

/// One request counted in its rate window ([`RateLimit::rate_hit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateWindow {
    /// Requests in the window so far, this one included.
    pub count: u64,
    /// Time until the window ends.
    pub resets_in: Duration,
}

/// The rate limit: fixed windows shared by every instance.
#[async_trait]
pub trait RateLimit: Send + Sync + 'static {
    /// Counts one request of `subject` in its current fixed window of length `window`.
    async fn rate_hit(&self, subject: &str, window: Duration) -> Result<RateWindow>;
}

/// The task cache: cached task rows, ordered by change number.
#[async_trait]
pub trait TaskCache: Send + Sync + 'static {
    /// The cached task row.
    async fn task(&self, task: &TaskId) -> Result<Option<TaskState>>;

    /// Caches a task row for `ttl_secs` unless the cache holds the same or a higher change
    /// number `seq` (a refill after a miss, or the admin API's own write, never puts back an
    /// older row than the pull loop cached).
    async fn cache_task(&self, task: &TaskState, seq: i64, ttl_secs: u64) -> Result<()>;
}

/// Presence and collaboration: who is in a task, who was seen when.
#[async_trait]
pub trait Collaboration: Send + Sync + 'static {
    /// Records membership (members, activity, the agent's task set).
    async fn join(&self, task: &TaskId, agent: &AgentId, joined_at: DateTime<Utc>) -> Result<()>;

    /// Ends membership (members, activity, the agent's task set).
    async fn leave(&self, task: &TaskId, agent: &AgentId) -> Result<()>;

    /// The task's collaborators by join time then id, or `None` when the store holds no
    /// membership for it (the caller then asks the durable store).
    async fn collaborators(&self, task: &TaskId) -> Result<Option<Vec<Collaborator>>>;

    /// An agent's presence.
    async fn presence(&self, agent: &AgentId) -> Result<Presence>;
}

/// The sync outbox of a hot store that lives apart from the durable store ([`HotBackend::outbox`]):
/// a stream read through consumer groups by the push loop. Entries are delivered to one
/// consumer of a group at a time, stay pending until acknowledged, and can be claimed from an
/// idle consumer.
#[async_trait]
pub trait Outbox: Send + Sync {
    /// Entries waiting in the outbox (delivered to a pusher or not).
    async fn outbox_length(&self) -> Result<u64>;

    /// Creates the consumer group on the outbox (and the outbox), unless it exists.
    async fn outbox_create_group(&self, group: &str) -> Result<()>;

    /// This consumer's own delivered, unacknowledged entries (after a failed commit).
    async fn outbox_read_pending(
        &self,
        group: &str,
        consumer: &str,
        count: usize,
    ) -> Result<Vec<OutboxEntry>>;

    /// Up to `count` entries never delivered to any consumer of the group (no blocking); they
    /// become pending in `consumer`.
    async fn outbox_read_new(
        &self,
        group: &str,
        consumer: &str,
        count: usize,
    ) -> Result<Vec<OutboxEntry>>;

    /// Takes over up to `count` entries pending in any consumer for longer than `min_idle`.
    async fn outbox_claim_idle(
        &self,
        group: &str,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<OutboxEntry>>;

    /// Removes the group's consumers other than `consumer` that hold no pending entry and
    /// have been idle (`XINFO CONSUMERS` `idle`) longer than `min_idle`: the consumers of
    /// pushers that restarted or died, each of which leaves one behind. Checked and removed in
    /// one atomic step, so a consumer that reads between the check and the removal is never
    /// removed with entries pending. Returns the names removed.
    async fn outbox_remove_dead_consumers(
        &self,
        group: &str,
        consumer: &str,
        min_idle: Duration,
    ) -> Result<Vec<String>>;

    /// Acknowledges and deletes committed entries, in one step.
    async fn outbox_ack(&self, group: &str, ids: &[String]) -> Result<()>;

    /// The outbox's length and the group's pending count.
    async fn outbox_depth(&self, group: &str) -> Result<OutboxDepth>;
}

/// An agent's presence as the durable store last saw it ([`HotSync::refresh_agents`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSeen {
    /// The agent's id.
    pub agent: String,
    /// When it last acted, in milliseconds since the epoch.
    pub last_seen_ms: i64,
    /// The task it last acted on.
    pub task: Option<String>,
}

/// What the sync loops need from the hot store: the ordered cache refresh.
#[async_trait]
pub trait HotSync: Send + Sync + 'static {
    /// Caches task rows that are newer (by change number) than the cache, emitting their events
    /// (as `agent`) when they carry an envelope. One answer per row, in order.
    async fn refresh_tasks(
        &self,
        rows: &[TaskRefresh<'_>],
        agent: &str,
        ttl_secs: u64,
        events_cap: usize,
    ) -> Result<Vec<Refreshed>>;

    /// Drops cached task rows (deleted tasks).
    async fn delete_cached_tasks(&self, ids: &[TaskId]) -> Result<()>;

    /// Moves agents' presence forward (never backwards).
    async fn refresh_agents(&self, agents: &[AgentSeen]) -> Result<()>;

    /// Whether the task cache is known to be warm (the marker lives only as long as the
    /// store's data).
    async fn sync_is_warm(&self) -> Result<bool>;

    /// Records that the task cache was warmed.
    async fn set_sync_warm(&self) -> Result<()>;
}

/// An MCP session as the hot store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpSession {
    /// The agent that created the session (authentication on): the session exists for that
    /// agent only. `None`: unbound (authentication off, or a record written before sessions
    /// were bound to their creator).
    pub owner: Option<String>,
    /// What the session is restored from (the client's `initialize` parameters, JSON).
    pub state: String,
}

/// A session as kept in a [`McpSessionFile`]: its id, its record and when it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FiledSession {
    /// The session id (`Mcp-Session-Id`).
    pub id: String,
    /// The session's record.
    pub record: McpSession,
    /// Milliseconds since the epoch.
    pub expires_at_ms: i64,
}

/// A subscription as kept in a [`McpSessionFile`]: `scope` is `task:<id>` or `agent:<id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FiledSubscription {
    /// The session id.
    pub session: String,
    /// `task:<id>` or `agent:<id>` ([`SubScope::filed`]).
    pub scope: String,
    /// The resource's canonical key ([`Subscriber::key`]).
    pub key: String,
    /// The URI as the client subscribed to it ([`Subscriber::uri`]).
    pub uri: String,
}

/// Where an in-process hot store keeps its MCP sessions so that they outlive the process
/// (embedded mode: the SQLite file; issue #15 item 6). The in-process store writes each
/// change through to it and reads it back once, when it is opened.
#[async_trait]
pub trait McpSessionFile: Send + Sync + 'static {
    /// Saves (or replaces) a session's record and expiry.
    async fn file_session(&self, session: &FiledSession) -> Result<()>;
    /// Moves a session's expiry.
    async fn touch_session(&self, session: &str, expires_at_ms: i64) -> Result<()>;
    /// Forgets a session and its subscriptions.
    async fn unfile_session(&self, session: &str) -> Result<()>;
    /// Saves a subscription.
    async fn file_subscription(&self, sub: &FiledSubscription) -> Result<()>;
    /// Forgets a subscription.
    async fn unfile_subscription(&self, sub: &FiledSubscription) -> Result<()>;
    /// Every session that expires after `now_ms`, and their subscriptions; expired sessions
    /// (and their subscriptions) are deleted.
    async fn filed_sessions(
        &self,
        now_ms: i64,
    ) -> Result<(Vec<FiledSession>, Vec<FiledSubscription>)>;
}

/// How long the hot store records a cancellation of a `subscriptions/listen`
/// ([`McpSessions::publish_listen_cancel`]).
pub const LISTEN_CANCEL_KEPT: Duration = Duration::from_secs(10);

/// What the MCP door (`/mcp`) shares between gateway instances: session state (so any
/// instance serves a session) and resource subscriptions. Nothing here is durable truth:
/// everything carries a TTL.
#[async_trait]
pub trait McpSessions: Send + Sync + 'static {
    /// Saves a session's record (its state and its creator) for `ttl`.
    async fn save_session(&self, session: &str, record: &McpSession, ttl: Duration) -> Result<()>;

    /// A session's record, extending its life by `ttl` (and that of its subscription list).
    async fn load_session(&self, session: &str, ttl: Duration) -> Result<Option<McpSession>>;

    /// Forgets a session and every subscription it held.
    async fn drop_session(&self, session: &str) -> Result<()>;

    /// Records that `session` subscribes to the resource `key` (as `uri`), for `ttl`.
    async fn subscribe(
        &self,
        session: &str,
        scope: SubScope<'_>,
        key: &str,
        uri: &str,
        ttl: Duration,
    ) -> Result<()>;

    /// Removes the subscription `subscribe` recorded (nothing when there is none).
    async fn unsubscribe(
        &self,
        session: &str,
        scope: SubScope<'_>,
        key: &str,
        uri: &str,
    ) -> Result<()>;

    /// Every subscription to a resource of this task (or agent).
    async fn subscribers(&self, scope: SubScope<'_>) -> Result<Vec<Subscriber>>;

    /// Every subscription one session holds (what a reconnecting stream catches up on).
    async fn session_subscriptions(&self, session: &str) -> Result<Vec<Subscriber>>;

    /// Events of one task appended at or after `since_ms` (store time, ms), oldest first, at
    /// most `limit`, with their ids: a subscriber's catch-up for the moments before its
    /// registration.
    async fn events_since(&self, task: &TaskId, since_ms: i64, limit: usize) -> Result<Vec<Event>>;

    /// Publishes one cancellation of a 2026-07-28 `subscriptions/listen` (`name`: the
    /// gateway's payload) to every gateway process sharing this store, this one included, and
    /// records it, with when it was made (`at_ms`), for [`LISTEN_CANCEL_KEPT`]: a listen
    /// being registered when it is published checks that record once it subscribed.
    async fn publish_listen_cancel(&self, name: &str, at_ms: i64) -> Result<()>;

    /// When (ms) the latest recorded cancellation of `name` was made, if one is kept.
    async fn listen_cancelled_at(&self, name: &str) -> Result<Option<i64>>;

    /// A subscription to those cancellations; a process holds one once it serves a listen.
    async fn subscribe_listen_cancels(&self) -> Result<Box<dyn MessageSource>>;

    /// From when (ms since the epoch) the task event streams are complete: a reader resuming
    /// from an earlier position may have missed events the store no longer has. `None`: as
    /// far back as the streams reach (Redis). The in-process store answers its own start,
    /// since its streams begin empty with each process.
    fn events_complete_since_ms(&self) -> Option<i64> {
        None
    }
}
