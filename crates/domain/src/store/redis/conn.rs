//! The hot store's connection to Redis, whatever the topology behind `REDIS_URL`.
//!
//! [`RedisConn`] is the one handle every Redis command of the store (and of `mcp-sync`) goes
//! through: it implements [`redis::aio::ConnectionLike`], so `query_async`, `invoke_async`
//! and [`redis::AsyncCommands`] take it like any connection, and it opens the store's pub/sub
//! connections ([`RedisConn::pubsub`]). Cloning it is cheap (a multiplexed connection).
//!
//! Variants: one server (`redis://`), a primary behind Sentinels (`redis+sentinel://`), a
//! Redis Cluster (`redis+cluster://`; the store then names a few keys per hash slot, see
//! `keys.rs`). One variant per topology. To add one: a variant holding its (cheaply clonable) connection,
//! its arm in [`RedisConn::open`] (chosen by the URL's scheme), in the three
//! `ConnectionLike` methods and in [`RedisConn::pubsub`]; errors during a topology change
//! should come out as I/O or `TRYAGAIN`-like errors, which `DomainError` maps to
//! `unavailable` (503 + `Retry-After`).

use crate::error::{DomainError, Result};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, Pipeline, RedisFuture, Value};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// How to reach Redis: the URL and the bounds of connecting and of one command.
#[derive(Debug, Clone)]
pub struct ConnSettings {
    /// `REDIS_URL`; its scheme chooses a single server, Sentinel or Cluster.
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
        /// The managed connection every command goes through.
        conn: ConnectionManager,
        /// For connections of their own (pub/sub).
        client: redis::Client,
        /// Bound for opening a pub/sub connection.
        connect_timeout: Duration,
    },
    /// A primary watched by Redis Sentinels (`redis+sentinel://`): see [`SentinelConn`].
    Sentinel(Arc<SentinelConn>),
    /// A Redis Cluster (`redis+cluster://host:port[,host:port…]`, the seed nodes): the
    /// cluster client routes each command (and each pipeline, whose commands must share one
    /// hash slot: see `keys.rs`) to the primary of its slot and follows `MOVED`/`ASK` and
    /// failovers by itself.
    Cluster {
        /// The cluster connection every command goes through.
        conn: redis::cluster_async::ClusterConnection,
        /// One client per seed node, for the pub/sub connection (plain `PUBLISH` on a cluster
        /// reaches the subscribers of every node, so any one node will do).
        seeds: Vec<redis::Client>,
        /// Bound for opening a pub/sub connection.
        connect_timeout: Duration,
    },
}

impl RedisConn {
    /// Connects to what `REDIS_URL` names (bounded by the connect timeout).
    pub async fn open(s: &ConnSettings) -> Result<RedisConn> {
        if let Some(rest) = s.url.strip_prefix("redis+sentinel://") {
            let target = SentinelTarget::parse(rest)?;
            return Ok(RedisConn::Sentinel(SentinelConn::open(target, s).await?));
        }
        if let Some(rest) = s.url.strip_prefix("redis+cluster://") {
            return RedisConn::open_cluster(rest, s).await;
        }
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

    /// Whether this is a Redis Cluster (its keys are named per slot where it matters:
    /// `Keys::for_cluster`).
    pub fn is_cluster(&self) -> bool {
        matches!(self, RedisConn::Cluster { .. })
    }

    async fn open_cluster(rest: &str, s: &ConnSettings) -> Result<RedisConn> {
        let nodes = cluster_nodes(rest)?;
        let seeds = nodes
            .iter()
            .map(|n| redis::Client::open(n.as_str()))
            .collect::<redis::RedisResult<Vec<_>>>()
            .map_err(|e| DomainError::InvalidArgument(format!("REDIS_URL: {e}")))?;
        let client = redis::cluster::ClusterClientBuilder::new(nodes)
            .connection_timeout(s.connect_timeout)
            .response_timeout(s.response_timeout)
            .retries(3)
            .build()
            .map_err(|e| DomainError::InvalidArgument(format!("REDIS_URL: {e}")))?;
        let conn = tokio::time::timeout(s.connect_timeout * 2, client.get_async_connection())
            .await
            .map_err(|_| DomainError::Unavailable {
                backend: "redis",
                cause: "cluster connect timed out".into(),
            })??;
        Ok(RedisConn::Cluster {
            conn,
            seeds,
            connect_timeout: s.connect_timeout,
        })
    }

    /// A connection of its own for pub/sub (bounded by the connect timeout), to the server
    /// that takes the store's writes (on a cluster, the first seed node that answers).
    pub async fn pubsub(&self) -> Result<redis::aio::PubSub> {
        match self {
            RedisConn::Cluster {
                seeds,
                connect_timeout,
                ..
            } => {
                let mut last = String::from("no seed node");
                for seed in seeds {
                    match tokio::time::timeout(*connect_timeout, seed.get_async_pubsub()).await {
                        Ok(Ok(p)) => return Ok(p),
                        Ok(Err(e)) => last = e.to_string(),
                        Err(_) => last = "pub/sub connect timed out".into(),
                    }
                }
                Err(DomainError::Unavailable {
                    backend: "redis",
                    cause: format!("no cluster node for pub/sub: {last}"),
                })
            }
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
            RedisConn::Sentinel(s) => s.pubsub().await,
        }
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConn::Single { conn, .. } => conn.req_packed_command(cmd),
            RedisConn::Cluster { conn, .. } => conn.req_packed_command(cmd),
            RedisConn::Sentinel(s) => {
                let s = s.clone();
                Box::pin(async move {
                    s.run(|mut c| async move { c.req_packed_command(cmd).await })
                        .await
                })
            }
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
            RedisConn::Cluster { conn, .. } => conn.req_packed_commands(cmd, offset, count),
            RedisConn::Sentinel(s) => {
                let s = s.clone();
                Box::pin(async move {
                    s.run(|mut c| async move { c.req_packed_commands(cmd, offset, count).await })
                        .await
                })
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Single { conn, .. } => conn.get_db(),
            RedisConn::Sentinel(s) => s.target.db,
            RedisConn::Cluster { .. } => 0,
        }
    }
}

/// The node URLs a `redis+cluster://[user[:password]@]host:port[,host:port…]` URL names
/// (the credentials apply to every node; a cluster has no databases).
pub fn cluster_nodes(rest: &str) -> Result<Vec<String>> {
    let bad = |why: &str| {
        DomainError::InvalidArgument(format!(
            "REDIS_URL: {why}; expected redis+cluster://[user:password@]host:port[,host:port...]"
        ))
    };
    let authority = rest.trim_end_matches('/');
    if authority.contains('/') {
        return Err(bad("a cluster has no database or path"));
    }
    let (auth, hosts) = match authority.rsplit_once('@') {
        Some((u, h)) => (format!("{u}@"), h),
        None => (String::new(), authority),
    };
    let nodes: Vec<String> = hosts
        .split(',')
        .filter(|h| !h.is_empty())
        .map(|h| {
            if h.rsplit_once(':')
                .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
            {
                format!("redis://{auth}{h}")
            } else {
                format!("redis://{auth}{h}:6379")
            }
        })
        .collect();
    if nodes.is_empty() {
        return Err(bad("no node address"));
    }
    Ok(nodes)
}

/// What a `redis+sentinel://[user[:password]@]host:port[,host:port…]/<master-name>[/<db>]` URL
/// names. The credentials are the data nodes' (the Sentinels are asked without any).
#[derive(Debug, Clone, PartialEq)]
pub struct SentinelTarget {
    /// The Sentinels to ask, in the URL's order.
    pub(crate) sentinels: Vec<(String, u16)>,
    /// The master name the Sentinels watch.
    pub(crate) master: String,
    /// The database number (`SELECT`) on the data nodes.
    pub(crate) db: i64,
    /// `user:password` or `:password` as written in the URL (percent-encoded), or empty.
    userinfo: String,
}

impl SentinelTarget {
    /// Parses what follows `redis+sentinel://`.
    pub fn parse(rest: &str) -> Result<SentinelTarget> {
        let bad = |why: &str| {
            DomainError::InvalidArgument(format!(
                "REDIS_URL: {why}; expected redis+sentinel://[user:password@]host:port[,host:port...]/<master-name>[/<db>]"
            ))
        };
        let (authority, path) = rest.split_once('/').ok_or_else(|| bad("no master name"))?;
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((u, h)) => (u.to_owned(), h),
            None => (String::new(), authority),
        };
        let mut sentinels = Vec::new();
        for h in hosts.split(',').filter(|h| !h.is_empty()) {
            let (host, port) = match h.rsplit_once(':') {
                Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => (
                    host,
                    port.parse::<u16>()
                        .map_err(|_| bad(&format!("bad port in {h:?}")))?,
                ),
                _ => (h, 26379),
            };
            let host = host.trim_start_matches('[').trim_end_matches(']');
            if host.is_empty() {
                return Err(bad(&format!("no host in {h:?}")));
            }
            sentinels.push((host.to_owned(), port));
        }
        if sentinels.is_empty() {
            return Err(bad("no Sentinel address"));
        }
        let mut parts = path.split('/');
        let master = parts.next().unwrap_or_default().to_owned();
        if master.is_empty() {
            return Err(bad("no master name"));
        }
        let db = match parts.next() {
            None | Some("") => 0,
            Some(d) => d.parse().map_err(|_| bad(&format!("bad database {d:?}")))?,
        };
        if parts.next().is_some_and(|p| !p.is_empty()) {
            return Err(bad("too many path segments"));
        }
        Ok(SentinelTarget {
            sentinels,
            master,
            db,
            userinfo,
        })
    }

    /// A client of the data node at `host:port`, with the URL's credentials and database.
    fn node_client(&self, host: &str, port: u16) -> redis::RedisResult<redis::Client> {
        let auth = if self.userinfo.is_empty() {
            String::new()
        } else {
            format!("{}@", self.userinfo)
        };
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        redis::Client::open(format!("redis://{auth}{host}:{port}/{}", self.db))
    }
}

/// How often the Sentinels are asked, besides after an error, whether the primary moved.
const SENTINEL_POLL: Duration = Duration::from_millis(1000);
/// After a failed discovery, calls fail fast with its error for this long instead of each
/// asking the Sentinels again (a failover takes seconds; requests come by thousands).
const DISCOVERY_BACKOFF: Duration = Duration::from_millis(100);

/// A primary found through Redis Sentinel, followed across failovers without a restart.
///
/// Every command runs on a multiplexed connection to the server the Sentinels name as the
/// master, which was checked to answer `ROLE` = `master` when connecting. When a command fails
/// in a way that says the server is gone or demoted (I/O error, dropped connection, timeout,
/// `READONLY`), the connection is dropped, so the next command asks the Sentinels again;
/// meanwhile, and while no Sentinel names a reachable primary, commands fail as I/O errors,
/// which the store answers as `unavailable` (503 + `Retry-After`). A command refused with
/// `READONLY` did nothing, so it is sent once more to the new primary; any other failed
/// command is not repeated (it may have been applied). A background task also asks the
/// Sentinels every second, so a switch that breaks no connection is followed too.
pub struct SentinelConn {
    target: SentinelTarget,
    settings: ConnSettings,
    primary: Mutex<Option<Primary>>,
    /// One discovery at a time; holds the last failure (when, why) for [`DISCOVERY_BACKOFF`].
    discovery: tokio::sync::Mutex<Option<(Instant, String)>>,
}

#[derive(Clone)]
struct Primary {
    addr: (String, u16),
    conn: redis::aio::MultiplexedConnection,
    client: redis::Client,
    /// Counts connections made, so a failure only drops the connection it happened on.
    generation: u64,
}

fn io_error(what: &'static str, detail: String) -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::IoError, what, detail))
}

/// Whether `e` says the server is gone, unreachable or no longer the primary.
fn lost_primary(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
        || is_read_only(e)
}

/// `READONLY You can't write against a read only replica` (also from inside a script).
pub(crate) fn is_read_only(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::ReadOnly || e.to_string().contains("READONLY")
}

impl SentinelConn {
    async fn open(target: SentinelTarget, settings: &ConnSettings) -> Result<Arc<SentinelConn>> {
        let conn = Arc::new(SentinelConn {
            target,
            settings: settings.clone(),
            primary: Mutex::new(None),
            discovery: tokio::sync::Mutex::new(None),
        });
        conn.current().await.map_err(|e| DomainError::Unavailable {
            backend: "redis",
            cause: format!("no primary through the Sentinels: {e}"),
        })?;
        tokio::spawn(watch(Arc::downgrade(&conn)));
        Ok(conn)
    }

    /// Runs `f` on the primary's connection; see the type's documentation.
    async fn run<T, F, Fut>(&self, f: F) -> redis::RedisResult<T>
    where
        F: Fn(redis::aio::MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let p = self.current().await?;
        match f(p.conn.clone()).await {
            Err(e) if lost_primary(&e) => {
                self.forget(p.generation);
                if !is_read_only(&e) {
                    return Err(e);
                }
                let p = self.current().await?;
                let r = f(p.conn.clone()).await;
                if r.as_ref().is_err_and(lost_primary) {
                    self.forget(p.generation);
                }
                r
            }
            r => r,
        }
    }

    /// Drops the connection of `generation` (when it is still the current one).
    fn forget(&self, generation: u64) {
        let mut p = self.primary.lock().unwrap_or_else(|e| e.into_inner());
        if p.as_ref().is_some_and(|p| p.generation == generation) {
            *p = None;
        }
    }

    fn cached(&self) -> Option<Primary> {
        self.primary
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The primary's connection: the current one, or a new one to the server the Sentinels
    /// name now.
    async fn current(&self) -> redis::RedisResult<Primary> {
        if let Some(p) = self.cached() {
            return Ok(p);
        }
        let mut last_failure = self.discovery.lock().await;
        if let Some(p) = self.cached() {
            return Ok(p);
        }
        if let Some((at, why)) = last_failure.as_ref()
            && at.elapsed() < DISCOVERY_BACKOFF
        {
            return Err(io_error("no Redis primary", why.clone()));
        }
        match self.connect_primary().await {
            Ok(p) => {
                *last_failure = None;
                let mut slot = self.primary.lock().unwrap_or_else(|e| e.into_inner());
                *slot = Some(p.clone());
                Ok(p)
            }
            Err(e) => {
                *last_failure = Some((Instant::now(), e.to_string()));
                Err(e)
            }
        }
    }

    /// Asks the Sentinels in turn for the master's address (the first that answers wins).
    async fn master_addr(&self) -> redis::RedisResult<(String, u16)> {
        let mut errors = Vec::new();
        for (host, port) in &self.target.sentinels {
            match self.ask_sentinel(host, *port).await {
                Ok(addr) => return Ok(addr),
                Err(e) => errors.push(format!("{host}:{port}: {e}")),
            }
        }
        Err(io_error(
            "no Sentinel answered with the primary",
            errors.join("; "),
        ))
    }

    async fn ask_sentinel(&self, host: &str, port: u16) -> redis::RedisResult<(String, u16)> {
        let client = redis::Client::open(redis::ConnectionInfo {
            addr: redis::ConnectionAddr::Tcp(host.to_owned(), port),
            redis: Default::default(),
        })?;
        let cfg = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(self.settings.connect_timeout)
            .set_response_timeout(self.settings.response_timeout);
        let mut c = client
            .get_multiplexed_async_connection_with_config(&cfg)
            .await?;
        let addr: Option<(String, u16)> = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(&self.target.master)
            .query_async(&mut c)
            .await?;
        addr.ok_or_else(|| io_error("Sentinel knows no such master", self.target.master.clone()))
    }

    /// Connects to the master the Sentinels name and checks it is one (`ROLE`).
    async fn connect_primary(&self) -> redis::RedisResult<Primary> {
        let (host, port) = self.master_addr().await?;
        let client = self.target.node_client(&host, port)?;
        let cfg = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(self.settings.connect_timeout)
            .set_response_timeout(self.settings.response_timeout);
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&cfg)
            .await?;
        let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut conn).await?;
        let is_master = matches!(role.first(), Some(redis::Value::BulkString(r)) if r == b"master")
            || matches!(role.first(), Some(redis::Value::SimpleString(r)) if r == "master");
        if !is_master {
            return Err(io_error(
                "the server the Sentinels name is not (yet) a primary",
                format!("{host}:{port}"),
            ));
        }
        static GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let generation = GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(primary = %format!("{host}:{port}"), master = %self.target.master,
            "connected to the Redis primary named by the Sentinels");
        Ok(Primary {
            addr: (host, port),
            conn,
            client,
            generation,
        })
    }

    async fn pubsub(&self) -> Result<redis::aio::PubSub> {
        let p = self.current().await?;
        Ok(
            tokio::time::timeout(self.settings.connect_timeout, p.client.get_async_pubsub())
                .await
                .map_err(|_| DomainError::Unavailable {
                    backend: "redis",
                    cause: "pub/sub connect timed out".into(),
                })??,
        )
    }
}

/// Asks the Sentinels every [`SENTINEL_POLL`] where the master is, and drops the connection
/// when it is elsewhere; ends with the connection.
async fn watch(conn: Weak<SentinelConn>) {
    loop {
        tokio::time::sleep(SENTINEL_POLL).await;
        let Some(conn) = conn.upgrade() else { return };
        let Some(current) = conn.cached() else {
            continue;
        };
        if let Ok(addr) = conn.master_addr().await
            && addr != current.addr
        {
            tracing::warn!(from = %format!("{}:{}", current.addr.0, current.addr.1),
                to = %format!("{}:{}", addr.0, addr.1), "the Sentinels moved the Redis primary");
            conn.forget(current.generation);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_are_parsed() {
        assert_eq!(
            cluster_nodes("a:7000,b,[::1]:7002").unwrap(),
            vec!["redis://a:7000", "redis://b:6379", "redis://[::1]:7002"]
        );
        assert_eq!(cluster_nodes(":pw@a:1/").unwrap(), vec!["redis://:pw@a:1"]);
        for bad in ["", ",", "a:1/0"] {
            assert!(
                matches!(cluster_nodes(bad), Err(DomainError::InvalidArgument(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn sentinel_urls_are_parsed() {
        let t = SentinelTarget::parse("a:26379,b:26380,[::1]:7/mymaster/2").unwrap();
        assert_eq!(
            t.sentinels,
            vec![
                ("a".to_owned(), 26379),
                ("b".to_owned(), 26380),
                ("::1".to_owned(), 7)
            ]
        );
        assert_eq!((t.master.as_str(), t.db), ("mymaster", 2));
        let t = SentinelTarget::parse(":secret@s1/m").unwrap();
        assert_eq!(t.sentinels, vec![("s1".to_owned(), 26379)]);
        assert_eq!(
            (t.master.as_str(), t.db, t.userinfo.as_str()),
            ("m", 0, ":secret")
        );
        for bad in ["s1:1", "s1:1/", "/m", "s1:x/m", "s1:1/m/x", "s1:1/m/0/z"] {
            assert!(
                matches!(
                    SentinelTarget::parse(bad),
                    Err(DomainError::InvalidArgument(_))
                ),
                "{bad}"
            );
        }
    }
}
