//! The hot store's connection to Redis, whatever the topology behind `REDIS_URL`.
//!
//! [`RedisConn`] is the one handle every Redis command of the store (and of `mcp-sync`) goes
//! through: it implements [`redis::aio::ConnectionLike`], so `query_async`, `invoke_async`
//! and [`redis::AsyncCommands`] take it like any connection, and it opens the store's pub/sub
//! connections ([`RedisConn::pubsub`]). Cloning it is cheap (a multiplexed connection).
//!
//! One variant per topology. To add one: a variant holding its (cheaply clonable) connection,
//! its arm in [`RedisConn::open`] (chosen by the URL's scheme), in the three
//! `ConnectionLike` methods and in [`RedisConn::pubsub`]; errors during a topology change
//! should come out as I/O or `TRYAGAIN`-like errors, which `DomainError` maps to
//! `unavailable` (503 + `Retry-After`).

use crate::error::{DomainError, Result};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, Pipeline, RedisFuture, Value};
use std::time::Duration;

/// How to reach Redis: the URL and the bounds of connecting and of one command.
#[derive(Debug, Clone)]
pub struct ConnSettings {
    pub url: String,
    /// Upper bound for one command's answer; past it the request fails as `unavailable`.
    pub response_timeout: Duration,
    /// Upper bound for (re)connecting.
    pub connect_timeout: Duration,
}

/// The store's connection to Redis (see the module's documentation).
#[derive(Clone)]
pub enum RedisConn {
    /// One server (`redis://`, `rediss://`, `unix://`): a connection manager that reconnects
    /// by itself after an outage; while Redis is away, commands fail fast.
    Single {
        conn: ConnectionManager,
        /// For connections of their own (pub/sub).
        client: redis::Client,
        connect_timeout: Duration,
    },
}

impl RedisConn {
    /// Connects to what `REDIS_URL` names (bounded by the connect timeout).
    pub async fn open(s: &ConnSettings) -> Result<RedisConn> {
        let client = redis::Client::open(s.url.as_str())
            .map_err(|e| DomainError::InvalidArgument(format!("REDIS_URL: {e}")))?;
        let mgr_cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(s.connect_timeout)
            .set_response_timeout(s.response_timeout)
            .set_number_of_retries(1)
            .set_max_delay(500);
        let conn = tokio::time::timeout(
            s.connect_timeout * 2,
            ConnectionManager::new_with_config(client.clone(), mgr_cfg),
        )
        .await
        .map_err(|_| DomainError::Unavailable {
            backend: "redis",
            cause: "connect timed out".into(),
        })??;
        Ok(RedisConn::Single {
            conn,
            client,
            connect_timeout: s.connect_timeout,
        })
    }

    /// A connection of its own for pub/sub (bounded by the connect timeout), to the server
    /// that takes the store's writes.
    pub async fn pubsub(&self) -> Result<redis::aio::PubSub> {
        match self {
            RedisConn::Single {
                client,
                connect_timeout,
                ..
            } => Ok(
                tokio::time::timeout(*connect_timeout, client.get_async_pubsub())
                    .await
                    .map_err(|_| DomainError::Unavailable {
                        backend: "redis",
                        cause: "pub/sub connect timed out".into(),
                    })??,
            ),
        }
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConn::Single { conn, .. } => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConn::Single { conn, .. } => conn.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Single { conn, .. } => conn.get_db(),
        }
    }
}

