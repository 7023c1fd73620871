//! The hot store of the embedded mode: everything [`super::redis::RedisStore`] keeps in Redis,
//! kept in this process. It answers exactly as the Redis store does (the same scripts'
//! semantics, the same edge cases); what differs is only what one process cannot share:
//! [`HotBackend::shared`] is false, and the data lives as long as the process.
//!
//! * One [`std::sync::Mutex`] guards the whole state and every method is one critical section
//!   (never held across an `.await`): what a Lua script makes atomic in Redis is atomic here.
//! * Stream ids are `XADD *`'s: `<ms>-<seq>`, strictly increasing per stream even within one
//!   millisecond or when the clock steps back. Capped streams are trimmed exactly to their cap
//!   (Redis's `MAXLEN ~` may keep a few more).
//! * Entries with a TTL (leases, hot file copies, cached task rows, rate windows, MCP sessions
//!   and subscription sets) are absent once expired, on every access; expired entries nobody
//!   reads are swept at most once a second, inside whatever call comes next.
//! * There is no sync outbox ([`HotBackend::outbox`] is `None`): the store lives in the process
//!   beside its durable store, so the operations write each step and audit record to the
//!   durable store themselves, in the call that acknowledges it ([`crate::Service`]); nothing
//!   waits here for a push loop, and a crash loses no acknowledged step.
//! * Pub/sub is a bounded broadcast channel. A subscriber that falls behind by more than its
//!   capacity loses its subscription ([`UpdatesSource::next`] answers `None`), as a Redis
//!   client dropped for its output buffer would: the live-event hub subscribes again and
//!   resynchronises its watchers.

mod state;
mod stream;
mod ttl;

#[cfg(test)]
mod tests;

use crate::error::{DomainError, Result};
use crate::ids::{AgentId, TaskId};
use crate::path::{FilePath, LeasePath};
use crate::store::hot::{
    AgentSeen, CacheFile, Claim, ClaimOutcome, Collaboration, Emit, EventLog, FileCache,
    FiledSession, FiledSubscription, HotBackend, HotRead, HotSync, Interest, LISTEN_CANCEL_KEPT,
    Lease, LeasePage, Leases, McpSession, McpSessionFile, McpSessions, MemoryUsage, MessageSource,
    Outbox, PendingWrite, Presence, RateLimit, RateWindow, Refill, Refreshed, Released, Renewed,
    StepIds, StepLog, StoredEvent, StoredStep, SubScope, Subscriber, TaskCache, TaskEvent,
    TaskRefresh, UpdatesPing, UpdatesSource, WakeSource,
};
use crate::store::redis::keys::{parse_session_record, session_record};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mcp_api::responses::{Collaborator, TaskState};
use mcp_api::{Event, StreamId};
use state::{Now, State};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::Duration;
use tokio::sync::broadcast;

/// Messages a subscriber may fall behind by before it loses its subscription.
pub const UPDATES_CAPACITY: usize = 4096;

/// Memory estimate: the fixed cost counted per string, beside its bytes.
const STRING_OVERHEAD: usize = 24;
/// Memory estimate: the fixed cost counted per map entry or stream entry.
const ENTRY_OVERHEAD: usize = 48;

const BACKEND: &str = "in-process";

struct Inner {
    state: Mutex<State>,
    /// Where MCP sessions are written through to, so they outlive the process (embedded
    /// mode: the SQLite file). Unset: they live as long as the process.
    session_file: OnceLock<Arc<dyn McpSessionFile>>,
    /// Each filed session's expiry as last written (ms), so a use moves it in the file at
    /// most every [`TOUCH_EVERY_MS`].
    filed_expiry: Mutex<HashMap<String, i64>>,
    /// When this store was made (ms since the epoch): its event streams begin here.
    started_ms: i64,
    /// Cancellations of `subscriptions/listen` requests (one process: to itself).
    listen_cancels: broadcast::Sender<String>,
    /// Their records: name -> (when made, ms; kept until).
    listen_cancelled: Mutex<HashMap<String, (i64, std::time::Instant)>>,
}

/// How far a session's expiry may run ahead of the file's before a use writes it there.
const TOUCH_EVERY_MS: i64 = 10 * 60 * 1000;

/// The in-process hot store. Cheap to clone (every clone shares the state); creating one
/// needs no Tokio runtime.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::with_updates_capacity(UPDATES_CAPACITY)
    }

    /// A store whose update subscribers may fall behind by `capacity` messages (at least 1,
    /// at most 2^20).
    pub fn with_updates_capacity(capacity: usize) -> MemoryStore {
        MemoryStore {
            inner: Arc::new(Inner {
                state: Mutex::new(State::new(capacity)),
                session_file: OnceLock::new(),
                filed_expiry: Mutex::default(),
                started_ms: Utc::now().timestamp_millis(),
                listen_cancels: broadcast::channel(256).0,
                listen_cancelled: Mutex::default(),
            }),
        }
    }

    /// Runs `f` as one critical section, after sweeping expired entries when due. A poisoned
    /// lock (a panic inside an earlier section) is taken over: every section leaves the state
    /// consistent at each step, as a failed Redis script leaves its keys.
    fn with<T>(&self, f: impl FnOnce(&mut State, &Now) -> T) -> T {
        let mut state = self
            .inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = Now::get();
        state.maybe_sweep(now.at);
        f(&mut state, &now)
    }
}

impl MemoryStore {
    /// Keeps this store's MCP sessions and subscriptions in `file` as well: what `file` holds
    /// (unexpired) is loaded now, and every change from now on is written through, so the
    /// sessions outlive the process (issue #15 item 6). Called once, before serving.
    pub async fn keep_sessions_in(&self, file: Arc<dyn McpSessionFile>) -> Result<()> {
        let now_ms = Utc::now().timestamp_millis();
        let (sessions, subscriptions) = file.filed_sessions(now_ms).await?;
        let mut expiry: HashMap<&str, i64> = HashMap::new();
        self.with(|s, now| {
            for f in &sessions {
                let ttl = Duration::from_millis((f.expires_at_ms - now_ms).max(1) as u64);
                s.save_session(&f.id, &session_record(&f.record), ttl, now);
                expiry.insert(&f.id, f.expires_at_ms);
            }
            for sub in &subscriptions {
                let Some(until) = expiry.get(sub.session.as_str()) else {
                    continue;
                };
                let ttl = Duration::from_millis((until - now_ms).max(1) as u64);
                let (task, agent);
                let scope = match sub.scope.split_once(':') {
                    Some(("task", id)) => match TaskId::parse(id) {
                        Ok(t) => {
                            task = t;
                            SubScope::Task(&task)
                        }
                        Err(_) => continue,
                    },
                    Some(("agent", id)) => match AgentId::parse(id) {
                        Ok(a) => {
                            agent = a;
                            SubScope::Agent(&agent)
                        }
                        Err(_) => continue,
                    },
                    _ => continue,
                };
                s.subscribe(&sub.session, scope, &sub.key, &sub.uri, ttl, now);
            }
        });
        *self.filed_expiry() = expiry
            .into_iter()
            .map(|(id, until)| (id.to_owned(), until))
            .collect();
        tracing::info!(
            sessions = sessions.len(),
            subscriptions = subscriptions.len(),
            "MCP sessions restored from the data file"
        );
        let _ = self.inner.session_file.set(file);
        Ok(())
    }

    fn session_file(&self) -> Option<&Arc<dyn McpSessionFile>> {
        self.inner.session_file.get()
    }

    fn filed_expiry(&self) -> std::sync::MutexGuard<'_, HashMap<String, i64>> {
        self.inner
            .filed_expiry
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

fn expiry_ms(ttl: Duration) -> i64 {
    Utc::now().timestamp_millis() + ttl.as_millis().min(i64::MAX as u128) as i64
}

/// The machine's memory (`MemTotal` of /proc/meminfo, bytes), 0 when unreadable.
fn total_memory() -> u64 {
    static TOTAL: OnceLock<u64> = OnceLock::new();
    *TOTAL.get_or_init(|| {
        std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|info| {
                info.lines().find_map(|l| {
                    let kb = l.strip_prefix("MemTotal:")?.trim().strip_suffix("kB")?;
                    kb.trim().parse::<u64>().ok()
                })
            })
            .map_or(0, |kb| kb.saturating_mul(1024))
    })
}

/// The subscription [`McpSessions::subscribe_listen_cancels`] answers.
struct Messages {
    rx: broadcast::Receiver<String>,
    store: Weak<Inner>,
}

#[async_trait]
impl MessageSource for Messages {
    async fn next(&mut self) -> Option<String> {
        // Lagged: messages were lost, so the subscription is; closed: the store is gone.
        self.rx.recv().await.ok()
    }

    fn pinger(&self) -> Box<dyn UpdatesPing> {
        Box::new(Pinger {
            store: self.store.clone(),
        })
    }
}

/// The subscriptions [`EventLog::subscribe_updates`] (of [`state::Published`]) and
/// [`Leases::subscribe_lease_wakes`] (of (task, path)) answer.
struct Updates<T> {
    rx: broadcast::Receiver<T>,
    store: Weak<Inner>,
    lost: bool,
}

impl<T: Clone + Send> Updates<T> {
    fn new(rx: broadcast::Receiver<T>, store: &Arc<Inner>) -> Updates<T> {
        Updates {
            rx,
            store: Arc::downgrade(store),
            lost: false,
        }
    }

    async fn recv(&mut self) -> Option<T> {
        if self.lost {
            return None;
        }
        match self.rx.recv().await {
            Ok(m) => Some(m),
            // Lagged: messages were lost, so the subscription is; closed: the store is gone.
            Err(_) => {
                self.lost = true;
                None
            }
        }
    }

    fn pinger(&self) -> Box<dyn UpdatesPing> {
        Box::new(Pinger {
            store: self.store.clone(),
        })
    }
}

#[async_trait]
impl UpdatesSource for Updates<state::Published> {
    /// The event as the store appended it: its envelope read once, its id as it is.
    async fn next_wanted(&mut self, interest: &dyn Interest) -> Option<TaskEvent> {
        loop {
            let (task, id, envelope) = self.recv().await?;
            if !interest.wants(&task, &envelope) {
                continue;
            }
            match serde_json::from_str::<Event>(&envelope) {
                Ok(mut event) => {
                    event.id = Some(id.to_string());
                    return Some(TaskEvent {
                        task,
                        id: Some(id),
                        event,
                    });
                }
                Err(e) => tracing::warn!(task = %task, %id, error = %e, "unreadable event skipped"),
            }
        }
    }

    fn pinger(&self) -> Box<dyn UpdatesPing> {
        Updates::pinger(self)
    }
}

#[async_trait]
impl WakeSource for Updates<(TaskId, String)> {
    async fn next(&mut self) -> Option<TaskId> {
        self.recv().await.map(|(task, _)| task)
    }

    fn pinger(&self) -> Box<dyn UpdatesPing> {
        Updates::pinger(self)
    }
}

struct Pinger {
    store: Weak<Inner>,
}

#[async_trait]
impl UpdatesPing for Pinger {
    async fn ping(&mut self) -> Result<()> {
        match self.store.upgrade() {
            Some(_) => Ok(()),
            None => Err(DomainError::Unavailable {
                backend: BACKEND,
                cause: "the in-process store was dropped".into(),
            }),
        }
    }
}

#[async_trait]
impl HotBackend for MemoryStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn shared(&self) -> bool {
        false
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }

    async fn maxmemory_policy(&self) -> Result<Option<String>> {
        Ok(None)
    }

    /// The in-process store has no memory limit of its own.
    async fn refuses_writes(&self) -> Result<Option<String>> {
        Ok(None)
    }

    /// None: the operations write steps and audit records to the durable store themselves.
    fn outbox(&self) -> Option<&dyn Outbox> {
        None
    }

    async fn memory_usage(&self) -> Result<MemoryUsage> {
        let used = self.with(|s, _| s.bytes() as u64);
        Ok(MemoryUsage {
            used,
            limit: total_memory(),
        })
    }
}

#[async_trait]
impl EventLog for MemoryStore {
    fn channel(&self, task: &TaskId) -> String {
        crate::store::redis::keys::Keys::default().channel(task)
    }

    async fn emit(&self, e: &Emit<'_>) -> Result<StreamId> {
        self.with(|s, now| s.emit(e, now))
    }

    async fn events_after(
        &self,
        task: &TaskId,
        after: StreamId,
        count: usize,
    ) -> Result<Vec<StoredEvent>> {
        self.with(|s, _| s.events_after(task, after, count))
    }

    async fn events_tail(&self, task: &TaskId) -> Result<Option<StreamId>> {
        Ok(self.with(|s, _| s.events_tail(task)))
    }

    async fn subscribe_updates(&self) -> Result<Box<dyn UpdatesSource>> {
        let rx = self.with(|s, _| s.updates_receiver());
        Ok(Box::new(Updates::new(rx, &self.inner)))
    }
}

#[async_trait]
impl StepLog for MemoryStore {
    async fn log_step(
        &self,
        e: &Emit<'_>,
        envelope_suffix: &str,
        step_json: &str,
        logs_cap: usize,
    ) -> Result<StepIds> {
        self.with(|s, now| s.log_step(e, envelope_suffix, step_json, logs_cap, now))
    }

    async fn steps_before(
        &self,
        task: &TaskId,
        before: Option<StreamId>,
        count: usize,
    ) -> Result<Vec<StoredStep>> {
        self.with(|s, _| s.steps_before(task, before, count))
    }
}

#[async_trait]
impl FileCache for MemoryStore {
    async fn file_changed(
        &self,
        path: &FilePath,
        file: &CacheFile<'_>,
        write: &PendingWrite,
        e: &Emit<'_>,
    ) -> Result<StreamId> {
        self.with(|s, now| s.file_changed(path, file, write, e, now))
    }

    async fn write_abandoned(
        &self,
        task: &TaskId,
        path: &FilePath,
        write: &PendingWrite,
    ) -> Result<()> {
        self.with(|s, now| s.write_abandoned(task, path, write, now));
        Ok(())
    }

    async fn cache_file(
        &self,
        task: &TaskId,
        path: &FilePath,
        file: &CacheFile<'_>,
        _refill: &Refill,
    ) -> Result<()> {
        self.with(|s, now| s.cache_file(task, path, file, now));
        Ok(())
    }

    async fn file(&self, task: &TaskId, path: &FilePath) -> Result<HotRead> {
        Ok(self.with(|s, now| s.file(task, path, now)))
    }
}

#[async_trait]
impl Leases for MemoryStore {
    async fn lease_for_write(
        &self,
        task: &TaskId,
        path: &FilePath,
        writer: &str,
        write: &PendingWrite,
    ) -> Result<Option<Lease>> {
        Ok(self.with(|s, now| s.lease_for_write(task, path, writer, write, now)))
    }

    async fn claim(&self, claim: &Claim<'_>) -> Result<ClaimOutcome> {
        Ok(self.with(|s, now| s.claim(claim, now)))
    }

    async fn leave_queue(
        &self,
        task: &TaskId,
        path: &LeasePath,
        ticket: &str,
    ) -> Result<Option<Released>> {
        Ok(self.with(|s, now| s.leave_queue(task, path, ticket, now)))
    }

    async fn subscribe_lease_wakes(&self) -> Result<Box<dyn WakeSource>> {
        let rx = self.with(|s, _| s.lease_wakes_receiver());
        Ok(Box::new(Updates::new(rx, &self.inner)))
    }

    async fn renew(
        &self,
        task: &TaskId,
        path: &LeasePath,
        owner: &str,
        ttl: Option<Duration>,
        fallback: Duration,
    ) -> Result<std::result::Result<Renewed, Option<String>>> {
        // Every lease here was granted with its length recorded: no fallback is needed.
        let _ = fallback;
        Ok(self.with(|s, now| s.renew(task, path, owner, ttl, now)))
    }

    async fn release(
        &self,
        task: &TaskId,
        path: &LeasePath,
        owner: &str,
        force: bool,
    ) -> Result<std::result::Result<Released, Option<String>>> {
        Ok(self.with(|s, now| s.release(task, path, owner, force, now)))
    }

    async fn leases(&self, task: &TaskId, limit: usize) -> Result<LeasePage> {
        Ok(self.with(|s, now| s.leases(task, limit, now)))
    }
}

#[async_trait]
impl RateLimit for MemoryStore {
    async fn rate_hit(&self, subject: &str, window: Duration) -> Result<RateWindow> {
        Ok(self.with(|s, now| s.rate_hit(subject, window, now)))
    }
}

#[async_trait]
impl TaskCache for MemoryStore {
    async fn task(&self, task: &TaskId) -> Result<Option<TaskState>> {
        Ok(self.with(|s, now| s.task(task, now)))
    }

    async fn cache_task(&self, task: &TaskState, seq: i64, ttl_secs: u64) -> Result<()> {
        self.with(|s, now| s.cache_task(task, seq, ttl_secs, now))
    }
}

#[async_trait]
impl Collaboration for MemoryStore {
    async fn join(&self, task: &TaskId, agent: &AgentId, joined_at: DateTime<Utc>) -> Result<()> {
        self.with(|s, _| s.join(task, agent, joined_at.timestamp_millis()));
        Ok(())
    }

    async fn leave(&self, task: &TaskId, agent: &AgentId) -> Result<()> {
        self.with(|s, _| s.leave(task, agent));
        Ok(())
    }

    async fn collaborators(&self, task: &TaskId) -> Result<Option<Vec<Collaborator>>> {
        Ok(self.with(|s, _| s.collaborators(task)))
    }

    async fn presence(&self, agent: &AgentId) -> Result<Presence> {
        Ok(self.with(|s, _| s.presence(agent)))
    }
}

#[async_trait]
impl HotSync for MemoryStore {
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
        self.with(|s, now| s.refresh_tasks(rows, agent, ttl_secs, events_cap, now))
    }

    async fn delete_cached_tasks(&self, ids: &[TaskId]) -> Result<()> {
        self.with(|s, now| s.delete_cached_tasks(ids, now));
        Ok(())
    }

    async fn refresh_agents(&self, agents: &[AgentSeen]) -> Result<()> {
        self.with(|s, _| s.refresh_agents(agents));
        Ok(())
    }

    async fn sync_is_warm(&self) -> Result<bool> {
        Ok(self.with(|s, _| s.sync_is_warm()))
    }

    async fn set_sync_warm(&self) -> Result<()> {
        self.with(|s, now| s.set_sync_warm(now));
        Ok(())
    }
}

#[async_trait]
impl McpSessions for MemoryStore {
    async fn save_session(&self, session: &str, record: &McpSession, ttl: Duration) -> Result<()> {
        let value = session_record(record);
        self.with(|s, now| s.save_session(session, &value, ttl, now));
        if let Some(file) = self.session_file() {
            let expires_at_ms = expiry_ms(ttl);
            file.file_session(&FiledSession {
                id: session.to_owned(),
                record: record.clone(),
                expires_at_ms,
            })
            .await?;
            self.filed_expiry()
                .insert(session.to_owned(), expires_at_ms);
        }
        Ok(())
    }

    async fn load_session(&self, session: &str, ttl: Duration) -> Result<Option<McpSession>> {
        let found = self
            .with(|s, now| s.load_session(session, ttl, now))
            .map(parse_session_record);
        if let (Some(file), Some(_)) = (self.session_file(), &found) {
            let until = expiry_ms(ttl);
            let due = self
                .filed_expiry()
                .get(session)
                .is_none_or(|filed| until - filed > TOUCH_EVERY_MS);
            if due {
                // The session goes on in memory either way; only its life in the file is
                // not extended this time.
                match file.touch_session(session, until).await {
                    Ok(()) => {
                        self.filed_expiry().insert(session.to_owned(), until);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "extending an MCP session in the data file failed")
                    }
                }
            }
        }
        Ok(found)
    }

    async fn drop_session(&self, session: &str) -> Result<()> {
        self.with(|s, now| s.drop_session(session, now));
        if let Some(file) = self.session_file() {
            file.unfile_session(session).await?;
            self.filed_expiry().remove(session);
        }
        Ok(())
    }

    async fn subscribe(
        &self,
        session: &str,
        scope: SubScope<'_>,
        key: &str,
        uri: &str,
        ttl: Duration,
    ) -> Result<()> {
        self.with(|s, now| s.subscribe(session, scope, key, uri, ttl, now));
        if let Some(file) = self.session_file() {
            file.file_subscription(&filed(session, scope, key, uri))
                .await?;
        }
        Ok(())
    }

    async fn unsubscribe(
        &self,
        session: &str,
        scope: SubScope<'_>,
        key: &str,
        uri: &str,
    ) -> Result<()> {
        self.with(|s, now| s.unsubscribe(session, scope, key, uri, now));
        if let Some(file) = self.session_file() {
            file.unfile_subscription(&filed(session, scope, key, uri))
                .await?;
        }
        Ok(())
    }

    async fn subscribers(&self, scope: SubScope<'_>) -> Result<Vec<Subscriber>> {
        Ok(self.with(|s, now| s.subscribers(scope, now)))
    }

    async fn session_subscriptions(&self, session: &str) -> Result<Vec<Subscriber>> {
        Ok(self.with(|s, now| s.session_subscriptions(session, now)))
    }

    fn events_complete_since_ms(&self) -> Option<i64> {
        Some(self.inner.started_ms)
    }

    async fn publish_listen_cancel(&self, name: &str, at_ms: i64) -> Result<()> {
        {
            let now = std::time::Instant::now();
            let mut kept = self
                .inner
                .listen_cancelled
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            kept.retain(|_, (_, until)| *until > now);
            kept.insert(name.to_owned(), (at_ms, now + LISTEN_CANCEL_KEPT));
        }
        // No receiver is not an error: no listen is open.
        let _ = self.inner.listen_cancels.send(name.to_owned());
        Ok(())
    }

    async fn listen_cancelled_at(&self, name: &str) -> Result<Option<i64>> {
        let kept = self
            .inner
            .listen_cancelled
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Ok(kept
            .get(name)
            .filter(|(_, until)| *until > std::time::Instant::now())
            .map(|(at, _)| *at))
    }

    async fn subscribe_listen_cancels(&self) -> Result<Box<dyn MessageSource>> {
        Ok(Box::new(Messages {
            rx: self.inner.listen_cancels.subscribe(),
            store: Arc::downgrade(&self.inner),
        }))
    }

    async fn events_since(&self, task: &TaskId, since_ms: i64, limit: usize) -> Result<Vec<Event>> {
        Ok(self.with(|s, _| s.events_since(task, since_ms, limit)))
    }
}

fn filed(session: &str, scope: SubScope<'_>, key: &str, uri: &str) -> FiledSubscription {
    FiledSubscription {
        session: session.to_owned(),
        scope: scope.filed(),
        key: key.to_owned(),
        uri: uri.to_owned(),
    }
}
