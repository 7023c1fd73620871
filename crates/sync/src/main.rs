//! `mcp-sync`: parse the configuration, start logging, connect both stores, run the push and
//! pull loops (and `/metrics` when `SYNC_METRICS_ADDR` is set) until SIGINT/SIGTERM, then
//! flush the outbox.

use anyhow::Context;
use clap::Parser;
use mcp_domain::store::durable::DurableOps;
use mcp_domain::store::postgres::{PgConfig, PgStore};
use mcp_domain::store::redis::{RedisConfig, RedisStore};
use mcp_sync::SyncConfig;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cfg = SyncConfig::parse();
    mcp_process::init_tracing(&cfg.log_format);
    mcp_process::metrics_handle();
    PgStore::create_database_if_missing(&cfg.database_url)
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))
        .context("DATABASE_URL")?;
    let pg = PgStore::connect(&PgConfig {
        url: cfg.database_url.clone(),
        max_connections: cfg.pg_max_connections,
        acquire_timeout: Duration::from_secs(5),
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    pg.migrate()
        .await
        .map_err(|e| anyhow::anyhow!("migrations: {e:?}"))?;
    let hot = RedisStore::connect(&RedisConfig {
        url: cfg.redis_url.clone(),
        key_prefix: cfg.redis_key_prefix.clone(),
        response_timeout: Duration::from_millis(cfg.redis_timeout_ms),
        connect_timeout: Duration::from_millis(cfg.redis_timeout_ms),
        min_replicas: 0,
    })
    .await
    .map_err(|e| anyhow::anyhow!("REDIS_URL: {e:?}"))?;
    let cancel = CancellationToken::new();
    let settings = cfg.settings();
    tracing::info!(consumer = %settings.push.consumer, "mcp-sync running");
    if let Some(addr) = cfg.metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("SYNC_METRICS_ADDR {addr}"))?;
        tracing::info!(%addr, "serving /metrics");
        tokio::spawn(mcp_process::serve_metrics(listener, cancel.clone()));
    }
    let loops = mcp_sync::spawn(Arc::new(pg), Arc::new(hot), settings, cancel.clone());
    mcp_process::shutdown_signal().await;
    tracing::info!("shutdown requested; flushing the outbox");
    cancel.cancel();
    loops.await.context("sync loops")?;
    Ok(())
}
