//! The operations: one function per tool or resource, shared by every door (REST, MCP,
//! streams). Each validates its input (ids, paths, limits), checks the actor, talks to the
//! stores, emits its event, and returns the wire response. Nothing here knows HTTP.
//!
//! The docs below name the two stores by their deployed backends, "Postgres" (the durable store)
//! and "Redis" (the hot store); the embedded backends (SQLite, in-process) keep the same
//! contracts (`store/durable.rs`, `store/hot.rs`), so every sentence holds for them too.

mod agents;
mod audit;
mod collab;
mod conflicts;
mod files;
mod health;
mod history;
mod lease_wait;
mod lists;
mod live;
mod locks;
mod logs;
mod messages;
mod tasks;

pub use health::HealthReport;
pub use lease_wait::MAX_WAIT_SECS;
pub use lists::MAX_LIST_PAGE;
pub use messages::{MAX_MESSAGE_BODY_BYTES, MAX_READ_LIMIT, MAX_RECIPIENTS, MAX_SUBJECT_CHARS};

use crate::actor::Actor;
use crate::error::Result;
use crate::ids::TaskId;
use crate::inbox::InboxBell;
use crate::store::durable::{AuditRecord, OutboxBatch};
use crate::store::hot::{Emit, LeaseEvent, McpSessions, RateWindow, UpdatesSource};
use crate::store::{Durable, Hot};
use mcp_api::responses::Collaborator;
use mcp_api::{EventType, StreamId};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// Limits and lifetimes the operations enforce.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest file content, in bytes (`too_large` above).
    pub max_file_bytes: usize,
    /// Largest step object, serialised, in bytes.
    pub max_step_bytes: usize,
    /// Entries kept in a task's event stream (the resume window of live streams).
    pub events_stream_cap: usize,
    /// Entries kept in a task's step-log stream (older ones are read from Postgres).
    pub logs_stream_cap: usize,
    /// Lifetime of a cached task row, in seconds.
    pub task_cache_ttl_secs: u64,
    /// Lifetime of a file's hot copy, in seconds.
    pub file_cache_ttl_secs: u64,
    /// Lease length when `claim_file` names none, in seconds (`FILE_LOCK_TIMEOUT`).
    pub default_lock_timeout_secs: i64,
    /// Longest lease `claim_file` grants, in seconds.
    pub max_lock_timeout_secs: i64,
    /// An agent seen within this many seconds is `active`.
    pub active_window_secs: i64,
    /// Most live files one task may hold (`quota_exceeded` above); `None`: unlimited.
    pub max_task_files: Option<i64>,
    /// Most live bytes one task may hold; `None`: unlimited.
    pub max_task_bytes: Option<i64>,
    /// How long a file change counts as under way at most, in seconds: longer than any
    /// commit takes ([`crate::store::hot::PendingWrite`]). While it does, the file is read
    /// from the durable store.
    pub pending_write_ttl_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_bytes: 8 * 1024 * 1024,
            max_step_bytes: 64 * 1024,
            events_stream_cap: 10_000,
            logs_stream_cap: 10_000,
            task_cache_ttl_secs: 3600,
            file_cache_ttl_secs: 3600,
            default_lock_timeout_secs: 60,
            max_lock_timeout_secs: 3600,
            active_window_secs: 300,
            max_task_files: Some(10_000),
            max_task_bytes: Some(1024 * 1024 * 1024),
            pending_write_ttl_secs: 60,
        }
    }
}

/// The gateway's domain: both stores (whichever backends) and the limits. Cheap to clone.
/// It owns its stores: the doors reach them only through its methods (the operations, and
/// the few capabilities below that a door needs: the rate count, the update feed, the MCP
/// session state).
#[derive(Clone)]
pub struct Service {
    durable: Durable,
    hot: Hot,
    /// Bounds on what one request may ask for (sizes, lease lengths, task quotas).
    pub limits: Limits,
    /// This process's long-polling `read_messages` calls, woken when a message arrives.
    pub inbox: Arc<InboxBell>,
    /// Wake-ups of this process's lease waiters (`claim_file` with `wait_sec`).
    wakes: Arc<lease_wait::LeaseWakes>,
}

impl Service {
    /// The domain over these stores; the doors hold it in their state.
    pub fn new(durable: Durable, hot: Hot, limits: Limits) -> Service {
        Service {
            wakes: std::sync::Arc::new(lease_wait::LeaseWakes::new(hot.clone())),
            durable,
            hot,
            limits,
            inbox: Arc::default(),
        }
    }

    /// The backends serving, as (durable, hot): `postgres`/`sqlite`, `redis`/`memory`.
    pub fn backends(&self) -> (&'static str, &'static str) {
        (self.durable.backend(), self.hot.backend())
    }

    /// Whether a store is embedded (this process's SQLite file or in-process hot layer), so
    /// that only this process may serve and sync them.
    pub fn embedded(&self) -> bool {
        !self.durable.shared() || !self.hot.shared()
    }

    /// Counts one request of `subject` in its fixed `window` (shared by every instance):
    /// the count in the window so far, and the time left in it.
    pub async fn rate_check(&self, subject: &str, window: Duration) -> Result<RateWindow> {
        self.hot.rate_hit(subject, window).await
    }

    /// A subscription to the task change notifications of every instance (the live hub's
    /// feed).
    pub async fn subscribe_updates(&self) -> Result<Box<dyn UpdatesSource>> {
        self.hot.subscribe_updates().await
    }

    /// What the MCP door keeps in the hot store (sessions, subscriptions, listen
    /// cancellations), and nothing else of it.
    pub fn mcp_sessions(&self) -> Arc<dyn McpSessions> {
        self.hot.clone()
    }

    /// The members of a task as the hot store knows them (`None`: not cached), without an
    /// actor's check: for notifying the members of an event already authorised.
    pub async fn members(&self, task: &TaskId) -> Result<Option<Vec<Collaborator>>> {
        self.hot.collaborators(task).await
    }

    /// Emits an event for a change that has no other Redis write to ride with. Its audit
    /// record rides with it into the hot store's outbox, or, for a hot store without one (the
    /// embedded mode), is written to the durable store before this answers.
    async fn emit(
        &self,
        actor: &Actor,
        task: &TaskId,
        kind: EventType,
        data: Value,
        audit: Option<Value>,
    ) -> Result<StreamId> {
        let audit = audit.map(|a| audit_record(actor, task, a));
        let outbox = self.hot.outbox().is_some();
        let id = self
            .hot
            .emit(&Emit {
                task,
                agent: actor.agent.as_str(),
                envelope: crate::events::envelope(kind, task, actor.agent.as_str(), data),
                audit: audit.as_ref().filter(|_| outbox).map(Value::to_string),
                events_cap: self.limits.events_stream_cap,
            })
            .await?;
        if let (false, Some(record)) = (outbox, audit) {
            self.persist_direct(OutboxBatch {
                audits: vec![direct_audit(record)?],
                ..OutboxBatch::default()
            })
            .await?;
        }
        Ok(id)
    }

    /// A lease's event for the hot store to emit in the lease's own script
    /// ([`LeaseEvent`]): `data` and `audit` hold [`LEASE_VALUE`] where the value only that
    /// script knows goes (the audit need not). `None` where the event is emitted the usual
    /// way: a hot store without an outbox (its audit record goes to the durable store from
    /// here, [`Service::emit`]), or a placeholder not found once.
    fn lease_event<'a>(
        &self,
        actor: &'a Actor,
        task: &'a TaskId,
        kind: EventType,
        data: Value,
        audit: Value,
    ) -> Option<LeaseEvent<'a>> {
        self.hot.outbox()?;
        let agent = actor.agent.as_str();
        let envelope = crate::events::envelope(kind, task, agent, data);
        let (envelope, envelope_after) = crate::events::split_around_value(&envelope, LEASE_VALUE)?;
        let audit = audit_record(actor, task, audit).to_string();
        let (audit, audit_after) = match crate::events::split_around_value(&audit, LEASE_VALUE) {
            Some((before, after)) => (before, Some(after)),
            // Present, but more than once.
            None if audit.contains(&serde_json::to_string(LEASE_VALUE).ok()?) => return None,
            None => (audit, None),
        };
        Some(LeaseEvent {
            emit: Emit {
                task,
                agent,
                envelope,
                audit: Some(audit),
                events_cap: self.limits.events_stream_cap,
            },
            envelope_after,
            audit_after,
        })
    }

    /// Writes records straight to the durable store (a hot store without an outbox): the
    /// batches of concurrent callers share one commit where the store groups them (SQLite).
    async fn persist_direct(&self, batch: OutboxBatch) -> Result<()> {
        self.durable.persist_outbox_batch(&batch).await
    }
}

/// Stands for the value a lease's event lacks until the lease's script runs
/// ([`Service::lease_event`]); NULs never occur in paths, agent or task ids.
pub(super) const LEASE_VALUE: &str = "\u{0}lease-value\u{0}";

/// An audit record written straight to the durable store, once: its idempotency key is a
/// fresh `direct:<uuid>` (an outbox's entry ids are per process here, and would repeat).
fn direct_audit(record: Value) -> Result<AuditRecord> {
    AuditRecord::from_payload(
        format!("direct:{}", uuid::Uuid::new_v4()),
        record,
        chrono::Utc::now(),
    )
    .map_err(crate::error::DomainError::internal)
}

/// An audit record: the actor, the task, the time, and the action's fields.
fn audit_record(actor: &Actor, task: &TaskId, fields: Value) -> Value {
    let mut record = serde_json::json!({
        "actor": actor.agent.as_str(),
        "task_id": task.as_str(),
        "request_id": actor.request_id,
        "at": chrono::Utc::now(),
    });
    if let (Some(r), Value::Object(f)) = (record.as_object_mut(), fields) {
        r.extend(f);
    }
    record
}
