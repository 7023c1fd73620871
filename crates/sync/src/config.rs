//! The `mcp-sync` binary's configuration: flags, each with an environment variable. Nothing
//! below `main` reads the environment.

use crate::{PullSettings, PushSettings, SyncSettings};
use clap::{Args, Parser};
use std::time::Duration;

/// The `mcp-sync` binary's flags and environment variables.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "mcp-sync",
    version,
    about = "Keeps Postgres and the Redis hot layer of the MCP Gateway in step"
)]
pub struct SyncConfig {
    /// PostgreSQL URL (the database is created and migrated if needed).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/mcp_gateway"
    )]
    pub database_url: String,
    /// Largest number of pooled Postgres connections.
    #[arg(long, env = "SYNC_PG_MAX_CONNECTIONS", default_value_t = 4)]
    pub pg_max_connections: u32,
    /// Redis URL.
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    /// Prefix of every Redis key and channel (the gateway's `REDIS_KEY_PREFIX`).
    #[arg(long, env = "REDIS_KEY_PREFIX", default_value = "")]
    pub redis_key_prefix: String,
    /// How long one Redis command may take, in ms.
    #[arg(long, env = "REDIS_TIMEOUT_MS", default_value_t = 2000)]
    pub redis_timeout_ms: u64,
    /// How the loops run (shared with the gateway's built-in loops).
    #[command(flatten)]
    pub loops: LoopArgs,
    /// Serve Prometheus metrics on this address (`GET /metrics`), e.g. `127.0.0.1:9101`.
    #[arg(long, env = "SYNC_METRICS_ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Lifetime of a cached task row, in seconds (the gateway's `TASK_CACHE_TTL`).
    #[arg(long, env = "TASK_CACHE_TTL", default_value_t = 3600)]
    pub task_cache_ttl: u64,
    /// Entries kept in each task's event stream (the gateway's `EVENTS_STREAM_MAXLEN`).
    #[arg(long, env = "EVENTS_STREAM_MAXLEN", default_value_t = 10_000)]
    pub events_stream_maxlen: usize,
    /// Log format: `text` or `json`.
    #[arg(long, env = "LOG_FORMAT", default_value = "text")]
    pub log_format: String,
}

impl SyncConfig {
    /// Both loops' settings, from the flags.
    pub fn settings(&self) -> SyncSettings {
        self.loops
            .settings(self.task_cache_ttl, self.events_stream_maxlen)
    }
}

/// The sync loops' timing and names: the flags of `mcp-sync`, and of the gateway, whose
/// built-in loops (`RUN_SYNC`) read the same variables.
#[derive(Debug, Clone, Args)]
pub struct LoopArgs {
    /// Time between two pushes of the outbox to Postgres, in ms (sooner past a batch).
    #[arg(long, env = "PUSH_INTERVAL_MS", default_value_t = 5000)]
    pub push_interval_ms: u64,
    /// Time between two pulls of changed tasks and agents, in ms.
    #[arg(long, env = "PULL_INTERVAL_MS", default_value_t = 1000)]
    pub pull_interval_ms: u64,
    /// Most outbox entries one transaction writes.
    #[arg(long, env = "PUSH_BATCH_SIZE", default_value_t = 500)]
    pub push_batch_size: usize,
    /// Consumer group on the outbox, shared by every sync process.
    #[arg(long, env = "CONSUMER_GROUP", default_value = "mcp-sync")]
    pub consumer_group: String,
    /// This process's consumer name (default: unique per process).
    #[arg(long, env = "CONSUMER_NAME")]
    pub consumer_name: Option<String>,
    /// Entries pending in another consumer for this long are taken over, in ms.
    #[arg(long, env = "CLAIM_IDLE_MS", default_value_t = 30_000)]
    pub claim_idle_ms: u64,
    /// Also pull as soon as Postgres notifies a change to tasks or agents (LISTEN/NOTIFY).
    #[arg(long, env = "PULL_ON_NOTIFY", default_value_t = true, action = clap::ArgAction::Set)]
    pub pull_on_notify: bool,
    /// Rows per query of the pull loop.
    #[arg(long, env = "PULL_PAGE_SIZE", default_value_t = 1000)]
    pub pull_page_size: usize,
    /// How far back each pull reads task deletion tombstones again (a deletion that commits
    /// late), in ms. Tasks and agents follow the change feed and need no overlap.
    #[arg(long, env = "PULL_OVERLAP_MS", default_value_t = 10_000)]
    pub pull_overlap_ms: u64,
}

impl LoopArgs {
    /// The loops' settings; the cache lifetime and stream cap are the gateway's own settings
    /// (`TASK_CACHE_TTL`, `EVENTS_STREAM_MAXLEN`), which both processes read.
    pub fn settings(&self, task_cache_ttl: u64, events_stream_maxlen: usize) -> SyncSettings {
        let defaults = SyncSettings::default();
        SyncSettings {
            push: PushSettings {
                group: self.consumer_group.clone(),
                consumer: self.consumer_name.clone().unwrap_or(defaults.push.consumer),
                batch_size: self.push_batch_size.max(1),
                interval: Duration::from_millis(self.push_interval_ms),
                claim_idle: Duration::from_millis(self.claim_idle_ms),
            },
            pull: PullSettings {
                interval: Duration::from_millis(self.pull_interval_ms),
                page_size: self.pull_page_size.max(1),
                overlap: Duration::from_millis(self.pull_overlap_ms),
                task_ttl_secs: task_cache_ttl,
                events_cap: events_stream_maxlen,
                agent: defaults.pull.agent,
                listen: self.pull_on_notify,
            },
        }
    }
}
