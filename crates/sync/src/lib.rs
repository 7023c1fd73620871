//! The sync service of the MCP Gateway (DESIGN §7): the loops that keep the durable store (the
//! truth: Postgres, or the embedded SQLite file) and the hot store (Redis, or in-process) in
//! step. They see the stores only through their seams (`mcp_domain::store`).
//!
//! * [`push`] — [`PushLoop`]: the Redis outbox (steps, audit records) → Postgres, in batches,
//!   through a consumer group, acknowledged only after commit; poison entries become dead
//!   letters; a crashed pusher's entries are claimed.
//! * [`pull`] — [`PullLoop`]: changed tasks and agents → the hot cache and `task_updated`
//!   events; deletions; a full rebuild when Redis lost its data.
//! * [`decode`] — outbox entries checked one by one before any write.
//! * [`config`] — [`SyncConfig`], the `mcp-sync` binary's flags and environment variables, and
//!   [`LoopArgs`], the loops' own, which the gateway's built-in loops read too.
//! * this file — [`SyncSettings`] and [`spawn`], which runs both loops (the gateway embeds
//!   them this way when `RUN_SYNC` is on).
//!
//! Every SQL statement and Redis key the loops use lives in the domain's stores
//! (`store::postgres::sync`, `store::redis::sync`).

pub mod config;
pub mod decode;
pub mod pull;
pub mod push;

pub use config::{LoopArgs, SyncConfig};
pub use pull::{PullLoop, PullOutcome, PullSettings};
pub use push::{PushLoop, PushOutcome, PushSettings};

use mcp_domain::DomainError;
use mcp_domain::store::{Durable, Hot};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The sync service's one error: a store failed (an outage is `DomainError::Unavailable`).
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// A store call failed.
    #[error(transparent)]
    Store(#[from] DomainError),
}

/// The sync loops' result, failing with [`SyncError`].
pub type Result<T, E = SyncError> = std::result::Result<T, E>;

/// Both loops' settings.
#[derive(Debug, Clone)]
pub struct SyncSettings {
    /// The push loop's settings (outbox → Postgres).
    pub push: PushSettings,
    /// The pull loop's settings (Postgres → hot cache).
    pub pull: PullSettings,
}

/// A consumer name unique to this process (pending entries of a previous incarnation are
/// claimed after the idle time).
pub fn default_consumer_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("mcp-sync-{}-{nanos:08x}", std::process::id())
}

impl Default for SyncSettings {
    fn default() -> Self {
        SyncSettings {
            push: PushSettings {
                group: "mcp-sync".into(),
                consumer: default_consumer_name(),
                batch_size: 500,
                interval: Duration::from_millis(5000),
                claim_idle: Duration::from_secs(30),
            },
            pull: PullSettings {
                interval: Duration::from_millis(1000),
                page_size: 1000,
                overlap: Duration::from_secs(10),
                task_ttl_secs: 3600,
                events_cap: 10_000,
                agent: "mcp-sync".into(),
                listen: true,
            },
        }
    }
}

/// Runs both loops until `cancel`; the handle completes once the push loop has flushed.
pub fn spawn(
    durable: Durable,
    hot: Hot,
    settings: SyncSettings,
    cancel: CancellationToken,
) -> JoinHandle<()> {
    let push = PushLoop::new(durable.clone(), hot.clone(), settings.push);
    let pull = PullLoop::new(durable, hot, settings.pull);
    tokio::spawn(async move {
        tokio::join!(push.run(cancel.clone()), pull.run(cancel));
    })
}
