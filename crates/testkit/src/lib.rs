//! The test harness, shared by every crate's integration tests.
//!
//! Tests talk to the real Postgres and Redis named by `DATABASE_URL` / `REDIS_URL`
//! (defaults: the local servers), and each isolates itself so that tests run in parallel on
//! shared servers: [`TestDb`] is a fresh database, dropped at the end; [`TestRedis`] is a
//! unique key prefix, whose keys are deleted at the end. Nothing else is ever flushed or
//! dropped. [`TestStores`] connects the domain's stores to both; [`TestGateway`] runs a real
//! gateway on an ephemeral port over both, with authentication off ([`TestGateway::spawn`]) or
//! on ([`TestGateway::spawn_secured`], whose [`TestGateway::token`] mints tokens and
//! [`TestGateway::call`] sends them).
//! [`browser::Browser`] is a headless Chromium driven through WebDriver (console tests).
//! [`PrivateRedis`] is a throwaway `redis-server` a test may stop and restart (outages);
//! [`SentinelGroup`] a primary, a replica and three Sentinels (failovers);
//! [`PrivateCluster`] a Redis Cluster of three primaries.

/// The roles a test token can carry ([`TestGateway::token`]).
pub use mcp_domain::Role;
pub mod browser;
pub mod ledger;
pub mod oauth;

use mcp_domain::store::durable::DurableOps;
use mcp_domain::store::postgres::{PgConfig, PgStore};
use mcp_domain::store::redis::{RedisConfig, RedisStore};
use mcp_domain::store::{Durable, Hot};
use mcp_domain::{Limits, Service};
use mcp_gateway::auth::{Authenticator, Claims, Secret};
use mcp_gateway::{AppState, GatewayConfig};
use serde_json::Value;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The Postgres server tests use (any database on it; tests create their own).
pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// The Redis server tests use.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A port on 127.0.0.1 that was free a moment ago, for a child process to listen on.
pub fn free_port() -> u16 {
    try_free_port().expect("a free port on 127.0.0.1")
}

/// Waits until the gateway at `base` answers `GET /health` with 200; panics after `within`.
pub async fn wait_healthy(base: &str, within: Duration) {
    let deadline = std::time::Instant::now() + within;
    while !reqwest::get(format!("{base}/health"))
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the gateway did not become healthy"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn with_database(url: &str, db: &str) -> String {
    // Replace the path of the URL (the database name), keeping any query string.
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{db}", &base[..host_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// A fresh database, dropped (with its connections) when this guard drops.
pub struct TestDb {
    /// The database's name (`mcpgw_t_` and a UUID).
    pub name: String,
    /// Its connection URL: [`database_url`] with this database.
    pub url: String,
}

impl TestDb {
    /// Creates a database with a unique name on the [`database_url`] server.
    pub async fn create() -> TestDb {
        let name = format!("mcpgw_t_{}", uuid::Uuid::new_v4().simple());
        let url = with_database(&database_url(), &name);
        mcp_domain::store::postgres::PgStore::create_database_if_missing(&url)
            .await
            .unwrap_or_else(|e| {
                panic!("cannot create a test database on {}: {e:?}", database_url())
            });
        TestDb { name, url }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin = with_database(&database_url(), "postgres");
        let name = self.name.clone();
        // Drop runs outside any runtime we may use; do the async work on a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                use sqlx::Connection;
                let mut c = sqlx::PgConnection::connect(&admin).await.ok()?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .execute(&mut c)
                    .await
                    .ok()
            })
        })
        .join();
    }
}

/// A unique Redis key prefix; its keys are deleted when this guard drops.
pub struct TestRedis {
    /// The Redis server.
    pub url: String,
    /// The prefix of every key and channel of this test (`t`, a UUID and `:`).
    pub prefix: String,
}

impl TestRedis {
    /// A fresh prefix on the [`redis_url`] server.
    pub fn new() -> TestRedis {
        TestRedis::on(redis_url())
    }

    /// A fresh prefix on the server at `url` (e.g. a [`PrivateRedis`]).
    pub fn on(url: String) -> TestRedis {
        TestRedis {
            url,
            prefix: format!("t{}:", uuid::Uuid::new_v4().simple()),
        }
    }

    /// A new connection to the server (keys are not prefixed for you).
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url.as_str())
            .expect("redis url")
            .get_multiplexed_async_connection()
            .await
            .expect("redis connection")
    }
}

impl Default for TestRedis {
    fn default() -> Self {
        TestRedis::new()
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let url = self.url.clone();
        let pattern = format!("{}*", self.prefix);
        let _ = std::thread::spawn(move || -> redis::RedisResult<()> {
            let mut c =
                redis::Client::open(url)?.get_connection_with_timeout(Duration::from_secs(2))?;
            let keys: Vec<String> = redis::cmd("KEYS").arg(&pattern).query(&mut c)?;
            for chunk in keys.chunks(500) {
                let _: () = redis::cmd("DEL").arg(chunk).query(&mut c)?;
            }
            Ok(())
        })
        .join();
    }
}

/// A fresh directory under the system's temporary directory, removed with everything in it
/// when dropped (for SQLite files and the embedded gateway's `DATA_DIR`).
pub struct TestDir {
    /// The directory (it exists).
    pub path: std::path::PathBuf,
}

impl TestDir {
    /// Creates a directory with a unique name.
    pub fn new() -> TestDir {
        let path = std::env::temp_dir().join(format!("mcp-test-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path).expect("create a temporary directory");
        TestDir { path }
    }
}

impl Default for TestDir {
    fn default() -> Self {
        TestDir::new()
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The domain's stores over a fresh, migrated database and a fresh key prefix (for tests of
/// the sync loops and of the stores themselves, below the HTTP layer).
pub struct TestStores {
    /// The durable store, migrated.
    pub pg: PgStore,
    /// The hot store, under [`TestStores::redis`]'s prefix.
    pub hot: RedisStore,
    /// The key prefix (its keys are deleted when this drops).
    pub redis: TestRedis,
    /// The database (dropped when this drops).
    pub db: TestDb,
}

impl TestStores {
    /// With at most 8 pooled Postgres connections.
    pub async fn new() -> TestStores {
        TestStores::with_pool(8).await
    }

    /// With at most `max_connections` pooled Postgres connections.
    pub async fn with_pool(max_connections: u32) -> TestStores {
        let db = TestDb::create().await;
        let redis = TestRedis::new();
        let pg = PgStore::connect(&PgConfig {
            url: db.url.clone(),
            max_connections,
            acquire_timeout: Duration::from_secs(10),
        })
        .await
        .expect("postgres");
        pg.migrate().await.expect("migrations");
        let hot = RedisStore::connect(&RedisConfig {
            url: redis.url.clone(),
            key_prefix: redis.prefix.clone(),
            response_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            min_replicas: 0,
        })
        .await
        .expect("redis");
        TestStores { pg, hot, redis, db }
    }

    /// Both stores as the shared handles the service and the sync loops take.
    pub fn handles(&self) -> (Durable, Hot) {
        (Arc::new(self.pg.clone()), Arc::new(self.hot.clone()))
    }

    /// The operations over these stores, with the default limits.
    pub fn service(&self) -> Service {
        let (durable, hot) = self.handles();
        Service::new(durable, hot, Limits::default())
    }
}

/// A gateway served on an ephemeral port, over its own database and key prefix.
pub struct TestGateway {
    /// The address it listens on (kept across [`TestGateway::restart`]).
    pub addr: SocketAddr,
    /// `http://` and [`TestGateway::addr`], the prefix of every request URL.
    pub base: String,
    /// The client [`TestGateway::tool`], [`TestGateway::get`] and [`TestGateway::call`] use.
    pub http: reqwest::Client,
    /// The operations the gateway serves (a new one after each [`TestGateway::start`]).
    pub service: Service,
    /// The stores the service owns, for tests that look at them directly or run the sync
    /// loops beside the gateway.
    pub stores: mcp_gateway::Stores,
    /// A pool on the gateway's database, for tests that check rows directly.
    pub pg: PgStore,
    /// The configuration it was started with, after the test's adjustments.
    pub config: GatewayConfig,
    shutdown: CancellationToken,
    /// The serving task, awaited by [`TestGateway::restart`] so the port is free again.
    server: tokio::task::JoinHandle<()>,
    /// Its key prefix (unused by an embedded gateway).
    pub redis: TestRedis,
    /// Its database (unused by an embedded gateway).
    pub db: TestDb,
    /// The data directory of an embedded gateway ([`TestGateway::spawn_embedded`]).
    pub data: Option<TestDir>,
}

/// The secret of [`TestGateway::spawn_secured`] gateways.
pub const TEST_JWT_SECRET: &str = "test-secret-0123456789abcdef-0123456789";

/// An answer: status, headers, JSON body (`Null` when the body is not JSON).
pub struct Answer {
    /// The HTTP status code.
    pub status: u16,
    /// The response headers.
    pub headers: reqwest::header::HeaderMap,
    /// The body as JSON, `Null` when it is not JSON.
    pub body: Value,
}

impl TestGateway {
    /// A gateway with authentication off and the default configuration, over a fresh
    /// database and key prefix.
    pub async fn spawn() -> TestGateway {
        TestGateway::spawn_with(|_| {}).await
    }

    /// A gateway in embedded mode: no `DATABASE_URL`, no `REDIS_URL`, so a SQLite file in a
    /// fresh directory and the in-process hot layer. (`db`, `redis` and `pg` are then unused.)
    pub async fn spawn_embedded() -> TestGateway {
        let data = TestDir::new();
        let dir = data.path.clone();
        let mut gw = TestGateway::spawn_with(move |c| {
            c.database_url = None;
            c.redis_url = None;
            c.data_dir = dir;
        })
        .await;
        gw.data = Some(data);
        gw
    }

    /// A gateway with authentication on (secret [`TEST_JWT_SECRET`]).
    pub async fn spawn_secured() -> TestGateway {
        TestGateway::spawn_secured_with(|_| {}).await
    }

    /// A gateway with authentication on and a configuration adjusted by `tweak`.
    pub async fn spawn_secured_with(tweak: impl FnOnce(&mut GatewayConfig)) -> TestGateway {
        TestGateway::spawn_with(|c| {
            c.jwt_secret = Some(TEST_JWT_SECRET.parse().expect("secret"));
            tweak(c);
        })
        .await
    }

    fn authenticator(&self) -> Authenticator {
        let secret = self
            .config
            .jwt_secret
            .clone()
            .unwrap_or_else(|| TEST_JWT_SECRET.parse::<Secret>().expect("secret"));
        Authenticator::new(secret, true)
    }

    /// A token for `agent` on `tasks` (`["*"]` for every task) with `role`, valid for an hour.
    pub fn token(&self, agent: &str, tasks: &[&str], role: Role) -> String {
        let tasks = tasks.iter().map(|t| t.to_string()).collect();
        self.mint(&Authenticator::claims_for(
            agent,
            Some(tasks),
            role,
            Duration::from_secs(3600),
        ))
    }

    /// A token with exactly these claims, signed with the gateway's secret.
    pub fn mint(&self, claims: &Claims) -> String {
        self.authenticator().mint(claims)
    }

    /// Any request: `method` on `path`, with a bearer `token` and a JSON `body` when given.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Answer {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let r = req.send().await.expect("request");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = r.json().await.unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            body,
        }
    }

    /// `POST /tools/{tool}` with a bearer token: (status, body).
    pub async fn tool_as(&self, token: &str, tool: &str, body: Value) -> (u16, Value) {
        let a = self
            .call(
                reqwest::Method::POST,
                &format!("/tools/{tool}"),
                Some(token),
                Some(&body),
            )
            .await;
        (a.status, a.body)
    }

    /// `GET {path}` with a bearer token: (status, body).
    pub async fn get_as(&self, token: &str, path: &str) -> (u16, Value) {
        let a = self
            .call(reqwest::Method::GET, path, Some(token), None)
            .await;
        (a.status, a.body)
    }

    /// Spawns with a configuration adjusted by `tweak` (limits, timeouts, backends).
    pub async fn spawn_with(tweak: impl FnOnce(&mut GatewayConfig)) -> TestGateway {
        let db = TestDb::create().await;
        let redis = TestRedis::new();
        TestGateway::spawn_on(db, redis, tweak).await
    }

    /// Another instance over this one's database and key prefix, with its secret: a second
    /// replica behind a load balancer. Its guards name this one's database and prefix.
    pub async fn another_instance(&self) -> TestGateway {
        let secret = self.config.jwt_secret.clone();
        TestGateway::spawn_on(
            TestDb {
                name: "mcpgw_t_shared_not_owned".into(),
                url: self.db.url.clone(),
            },
            TestRedis {
                url: self.redis.url.clone(),
                prefix: self.redis.prefix.clone(),
            },
            move |c| c.jwt_secret = secret,
        )
        .await
    }

    /// Spawns over an existing database and key prefix (e.g. a second instance).
    pub async fn spawn_on(
        db: TestDb,
        redis: TestRedis,
        tweak: impl FnOnce(&mut GatewayConfig),
    ) -> TestGateway {
        let mut config = GatewayConfig::defaults();
        config.database_url = Some(db.url.clone());
        config.redis_url = Some(redis.url.clone());
        config.redis_key_prefix = redis.prefix.clone();
        config.pg_max_connections = 8;
        config.port = Some(0);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        // Its public URL (the OAuth resource) is where it really listens, unless set.
        config.public_url = Some(format!("http://{addr}"));
        tweak(&mut config);
        let stores = mcp_gateway::connect(&config)
            .await
            .expect("gateway connects to the test backends");
        let service = stores.service(&config);
        let shutdown = CancellationToken::new();
        let server = serve(listener, &service, &config, &shutdown);
        let pg = PgStore::connect(&PgConfig {
            url: db.url.clone(),
            max_connections: 4,
            acquire_timeout: Duration::from_secs(10),
        })
        .await
        .expect("postgres");
        TestGateway {
            addr,
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
            service,
            stores,
            pg,
            config,
            shutdown,
            server,
            redis,
            db,
            data: None,
        }
    }

    /// `POST /tools/{tool}` with a JSON body: (status, body).
    pub async fn tool(&self, tool: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/tools/{tool}", self.base))
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// `GET {path}`: (status, body).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

impl TestGateway {
    /// Stops this gateway (a graceful shutdown, as on SIGTERM) and starts a new one with the
    /// same configuration on the same address, as an operator's restart would. (Deployed mode:
    /// an embedded gateway's in-process state would not survive it.)
    pub async fn restart(&mut self) {
        self.stop().await;
        self.start().await;
    }

    /// Stops serving (a graceful shutdown); [`TestGateway::start`] serves again.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        let old = std::mem::replace(&mut self.server, tokio::spawn(async {}));
        let _ = tokio::time::timeout(Duration::from_secs(10), old).await;
    }

    /// Serves again on the same address, over a new connection to the same backends.
    pub async fn start(&mut self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(_) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("cannot bind {} again: {e}", self.addr),
            }
        };
        self.stores = mcp_gateway::connect(&self.config)
            .await
            .expect("gateway reconnects to its backends");
        self.service = self.stores.service(&self.config);
        self.shutdown = CancellationToken::new();
        self.server = serve(listener, &self.service, &self.config, &self.shutdown);
    }
}

/// Serves a gateway on `listener` until `shutdown`.
fn serve(
    listener: tokio::net::TcpListener,
    service: &Service,
    config: &GatewayConfig,
    shutdown: &CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let state = AppState::new(service.clone(), config);
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        let _ = mcp_gateway::serve_on(listener, state, shutdown).await;
    })
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A throwaway `redis-server` on a free port, which a test may stop and start again.
pub struct PrivateRedis {
    /// Its loopback port (the same after a restart).
    pub port: u16,
    child: Option<Child>,
    /// Extra server arguments, repeated at each restart (persistence, memory limits).
    args: Vec<String>,
    /// The primary's port when the server (re)starts as a replica.
    replica_of: Option<u16>,
    /// The server's working directory (its AOF/RDB files), removed at the end.
    pub dir: TestDir,
}

impl PrivateRedis {
    /// Starts one without persistence; `None` when no `redis-server` binary is on the PATH.
    pub fn start() -> Option<PrivateRedis> {
        PrivateRedis::start_with(&["--save", "", "--appendonly", "no"])
    }

    /// Starts one with these extra arguments (e.g. `--appendonly yes`, `--maxmemory 2mb`);
    /// its files live in [`PrivateRedis::dir`].
    pub fn start_with(args: &[&str]) -> Option<PrivateRedis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        PrivateRedis::start_on(port, args)
    }

    /// Starts one on `port` with these extra arguments.
    pub fn start_on(port: u16, args: &[&str]) -> Option<PrivateRedis> {
        let mut r = PrivateRedis {
            port,
            child: None,
            args: args.iter().map(|a| a.to_string()).collect(),
            replica_of: None,
            dir: TestDir::new(),
        };
        r.restart().then_some(r)
    }

    /// Persisted to an append-only file, fsynced at every write: what a copy of its files
    /// ([`PrivateRedis::snapshot`]) holds is exactly what it had acknowledged.
    pub fn start_persistent() -> Option<PrivateRedis> {
        PrivateRedis::start_with(&[
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
        ])
    }

    /// Its `redis://` URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on the same port and directory; waits until it answers.
    pub fn restart(&mut self) -> bool {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&self.dir.path)
            .args(&self.args)
            .args(
                self.replica_of
                    .map(|p| {
                        vec![
                            "--replicaof".to_owned(),
                            "127.0.0.1".to_owned(),
                            p.to_string(),
                        ]
                    })
                    .unwrap_or_default(),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let Ok(child) = child else { return false };
        self.child = Some(child);
        for _ in 0..100 {
            if redis_answers(self.port) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Starts the server again as a replica of the server on `primary` (as a Sentinel would
    /// reconfigure an old primary that comes back after a failover).
    pub fn restart_as_replica_of(&mut self, primary: u16) -> bool {
        self.replica_of = Some(primary);
        self.restart()
    }

    /// Sends the server a signal (`STOP`, `CONT`: a server that stalls and comes back).
    pub fn signal(&self, signal: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(c.id().to_string())
                .status();
        }
    }

    /// Kills the server (an outage; `SIGKILL`, so like a power loss for what was not synced).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A copy of the server's files as they are now (an older backup to restore later).
    pub fn snapshot(&self) -> TestDir {
        let copy = TestDir::new();
        copy_tree(&self.dir.path, &copy.path);
        copy
    }

    /// Replaces the server's files with `snapshot` (stop it first): the next start loads the
    /// older data, as after restoring a backup or failing over to a lagging replica.
    pub fn restore(&mut self, snapshot: &TestDir) {
        let _ = std::fs::remove_dir_all(&self.dir.path);
        std::fs::create_dir_all(&self.dir.path).expect("recreate the redis directory");
        copy_tree(&snapshot.path, &self.dir.path);
    }
}

/// A Redis primary, its replica and three Sentinels watching them, each a process of its own
/// on a free loopback port (for failover tests). Sentinel timings are short: a primary that
/// stops answering is down after [`SentinelGroup::DOWN_AFTER_MS`] and replaced within a few
/// seconds. Everything is killed when dropped.
pub struct SentinelGroup {
    /// The servers: the first is the primary at the start, the second its replica.
    pub servers: Vec<PrivateRedis>,
    /// The three Sentinels.
    pub sentinels: Vec<PrivateSentinel>,
}

/// One `redis-server --sentinel` process and its (rewritten by Sentinel) configuration file.
pub struct PrivateSentinel {
    /// Its loopback port.
    pub port: u16,
    child: Child,
    _dir: TestDir,
}

impl Drop for PrivateSentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn try_free_port() -> Option<u16> {
    Some(
        std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port(),
    )
}

impl SentinelGroup {
    /// The name the Sentinels know the primary by.
    pub const MASTER: &'static str = "mymaster";
    /// The Sentinels' `down-after-milliseconds`: how long a server may not answer before it
    /// is considered down.
    pub const DOWN_AFTER_MS: u64 = 1000;

    /// Starts the primary, the replica and three Sentinels (quorum 2) and waits until the
    /// replica is in sync and every Sentinel knows the replica and the other two Sentinels.
    /// `None` when no `redis-server` binary is on the PATH.
    pub async fn start() -> Option<SentinelGroup> {
        // No 5 s wait before a full synchronisation (a returning old primary resyncs at once).
        let args = [
            "--save",
            "",
            "--appendonly",
            "no",
            "--repl-diskless-sync-delay",
            "0",
        ];
        let primary = PrivateRedis::start_with(&args)?;
        let mut replica = PrivateRedis::start_with(&args)?;
        replica.stop();
        if !replica.restart_as_replica_of(primary.port) {
            return None;
        }
        let mut sentinels = Vec::new();
        for _ in 0..3 {
            let port = try_free_port()?;
            let dir = TestDir::new();
            let conf = dir.path.join("sentinel.conf");
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                     sentinel monitor {m} 127.0.0.1 {p} 2\n\
                     sentinel down-after-milliseconds {m} {down}\n\
                     sentinel failover-timeout {m} 3000\n\
                     sentinel parallel-syncs {m} 1\n",
                    dir = dir.path.display(),
                    m = Self::MASTER,
                    p = primary.port,
                    down = Self::DOWN_AFTER_MS,
                ),
            )
            .ok()?;
            let child = Command::new("redis-server")
                .arg(&conf)
                .arg("--sentinel")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .ok()?;
            sentinels.push(PrivateSentinel {
                port,
                child,
                _dir: dir,
            });
        }
        let group = SentinelGroup {
            servers: vec![primary, replica],
            sentinels,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !group.settled().await {
            assert!(
                std::time::Instant::now() < deadline,
                "the Sentinel group did not settle within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Some(group)
    }

    /// `redis+sentinel://` naming the three Sentinels and the primary's name.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        format!("redis+sentinel://{}/{}", hosts.join(","), Self::MASTER)
    }

    async fn sentinel_query<T: redis::FromRedisValue>(port: u16, args: &[&str]) -> Option<T> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
        let cfg = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Duration::from_secs(1))
            .set_response_timeout(Duration::from_secs(1));
        let mut c = client
            .get_multiplexed_async_connection_with_config(&cfg)
            .await
            .ok()?;
        redis::cmd("SENTINEL")
            .arg(args)
            .query_async(&mut c)
            .await
            .ok()
    }

    /// Whether the replica is in sync and every Sentinel sees one replica and two peers.
    async fn settled(&self) -> bool {
        let Ok(info) = replication_info(self.servers[1].port).await else {
            return false;
        };
        if !info.contains("master_link_status:up") {
            return false;
        }
        for s in &self.sentinels {
            let replicas: Option<Vec<redis::Value>> =
                Self::sentinel_query(s.port, &["replicas", Self::MASTER]).await;
            let peers: Option<Vec<redis::Value>> =
                Self::sentinel_query(s.port, &["sentinels", Self::MASTER]).await;
            if replicas.map(|r| r.len()) != Some(1) || peers.map(|p| p.len()) != Some(2) {
                return false;
            }
        }
        true
    }

    /// The port of the server the Sentinels name as the primary now (the first Sentinel that
    /// answers).
    pub async fn primary_port(&self) -> Option<u16> {
        for s in &self.sentinels {
            let addr: Option<Option<(String, u16)>> =
                Self::sentinel_query(s.port, &["get-master-addr-by-name", Self::MASTER]).await;
            if let Some(Some((_, port))) = addr {
                return Some(port);
            }
        }
        None
    }

    /// Waits until every Sentinel names another primary than `old` and that server answers
    /// as a primary; its port.
    pub async fn await_failover(&self, old: u16, within: Duration) -> u16 {
        let deadline = std::time::Instant::now() + within;
        loop {
            let mut named = Vec::new();
            for s in &self.sentinels {
                let addr: Option<Option<(String, u16)>> =
                    Self::sentinel_query(s.port, &["get-master-addr-by-name", Self::MASTER]).await;
                named.push(addr.flatten().map(|a| a.1));
            }
            if let Some(Some(new)) = named.first()
                && *new != old
                && named.iter().all(|n| *n == Some(*new))
                && replication_info(*new)
                    .await
                    .is_ok_and(|i| i.contains("role:master"))
            {
                return *new;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no failover within {within:?}: the Sentinels name {named:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The server on `port`.
    pub fn server(&mut self, port: u16) -> &mut PrivateRedis {
        self.servers
            .iter_mut()
            .find(|s| s.port == port)
            .expect("a server of the group")
    }
}

/// A Redis Cluster of three primaries (no replicas), each a `redis-server --cluster-enabled
/// yes` process on a free loopback port (its cluster bus on port + 10000), joined by
/// `redis-cli --cluster create`; killed when dropped. Its [`PrivateCluster::url`] is a
/// `redis+cluster://` URL naming every node.
pub struct PrivateCluster {
    /// The three primaries.
    pub nodes: Vec<PrivateRedis>,
}

impl PrivateCluster {
    /// Starts the nodes, creates the cluster and waits until every node reports
    /// `cluster_state:ok`. `None` when `redis-server` or `redis-cli` is missing.
    pub async fn start() -> Option<PrivateCluster> {
        let mut nodes = Vec::new();
        let mut tries = 0;
        while nodes.len() < 3 {
            tries += 1;
            assert!(tries < 50, "no free port pairs for a cluster");
            let Some(port) = try_free_port() else {
                continue;
            };
            // The cluster bus listens on port + 10000.
            if port > 55_000 || std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_err() {
                continue;
            }
            let node = PrivateRedis::start_on(
                port,
                &[
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                ],
            )?;
            nodes.push(node);
        }
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .ok()?;
        assert!(created.success(), "redis-cli --cluster create failed");
        let cluster = PrivateCluster { nodes };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !cluster.settled().await {
            assert!(
                std::time::Instant::now() < deadline,
                "the cluster did not settle within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Some(cluster)
    }

    /// Whether every node reports the cluster ok and knows all three primaries.
    async fn settled(&self) -> bool {
        for n in &self.nodes {
            let Ok(client) = redis::Client::open(n.url()) else {
                return false;
            };
            let Ok(mut c) = client.get_multiplexed_async_connection().await else {
                return false;
            };
            let info: redis::RedisResult<String> =
                redis::cmd("CLUSTER").arg("INFO").query_async(&mut c).await;
            let Ok(info) = info else { return false };
            if !info.contains("cluster_state:ok") || !info.contains("cluster_known_nodes:3") {
                return false;
            }
        }
        true
    }

    /// `redis+cluster://` naming every node.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis+cluster://{}", hosts.join(","))
    }
}

/// `INFO replication` of the server on `port`.
pub async fn replication_info(port: u16) -> redis::RedisResult<String> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
    let cfg = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Duration::from_secs(1))
        .set_response_timeout(Duration::from_secs(1));
    let mut c = client
        .get_multiplexed_async_connection_with_config(&cfg)
        .await?;
    redis::cmd("INFO")
        .arg("replication")
        .query_async(&mut c)
        .await
}

/// Whether a Redis server on `port` answers `PING` (not just accepts connections: a server
/// still loading its files answers `LOADING`).
fn redis_answers(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 64];
    s.write_all(b"PING\r\n").is_ok()
        && s.read(&mut buf)
            .is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
}

/// Copies a directory tree (files and subdirectories).
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    for entry in std::fs::read_dir(from).expect("read directory") {
        let entry = entry.expect("directory entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            std::fs::create_dir_all(&target).expect("create directory");
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_replaced() {
        assert_eq!(
            with_database("postgres://u@h:5432/postgres", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            with_database("postgres://u@h:5432", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            with_database("postgres://u@h/db?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
    }
}
