//! One fixture per backend, each over fresh, isolated state: a new Postgres database, a new
//! Redis key prefix, a new SQLite file in a temporary directory, a new in-process store.

use mcp_domain::store::hot::{HotFile, PendingWrite};
use mcp_domain::store::memory::MemoryStore;
use mcp_domain::store::postgres::{PgConfig, PgStore};
use mcp_domain::store::redis::{RedisConfig, RedisStore};
use mcp_domain::store::sqlite::{SqliteConfig, SqliteStore};
use mcp_domain::store::{Durable, Hot};
use mcp_domain::{DomainError, FilePath, Limits, Service, TaskId};
use mcp_testkit::{PrivateCluster, TestDb, TestDir, TestRedis};
use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

/// The backends (and, for the service tests, backend combinations) a test runs on; the
/// lower-case names become the test names.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy)]
pub(crate) enum Backend {
    postgres,
    sqlite,
    redis,
    /// Redis Cluster: three primaries of a private cluster started for the test.
    redis_cluster,
    memory,
    /// Postgres + Redis.
    deployed,
    /// SQLite + in-process.
    embedded,
}

/// Whatever must live as long as the store (a database dropped after, a prefix cleaned up, a
/// directory removed).
type Keep = Box<dyn Any + Send + Sync>;

pub(crate) struct DurableFixture {
    pub store: Durable,
    _keep: Keep,
}

pub(crate) struct HotFixture {
    pub store: Hot,
    _keep: Keep,
}

pub(crate) struct ServiceFixture {
    pub service: Service,
    /// The stores the service owns, for tests that look at them directly.
    pub durable: Durable,
    pub hot: Hot,
    /// The durable store itself, for statements a test runs as an orchestrator or an
    /// operator would (behind the gateway's back).
    pub raw: Raw,
    _hot: HotFixture,
    _durable: DurableFixture,
}

/// A durable backend's own connection pool.
#[derive(Clone)]
pub(crate) enum Raw {
    Postgres(PgStore),
    Sqlite(SqliteStore),
}

impl Raw {
    /// Runs one statement: `pg` on Postgres, `sqlite` on SQLite (their dialects differ).
    pub(crate) async fn exec(&self, pg: &str, sqlite: &str) {
        match self {
            Raw::Postgres(s) => {
                sqlx::query(pg).execute(s.pool()).await.expect(pg);
            }
            Raw::Sqlite(s) => {
                sqlx::query(sqlite).execute(s.pool()).await.expect(sqlite);
            }
        }
    }
}

async fn postgres() -> DurableFixture {
    postgres_raw().await.0
}

async fn postgres_raw() -> (DurableFixture, Raw) {
    let db = TestDb::create().await;
    let pg = PgStore::connect(&PgConfig {
        url: db.url.clone(),
        max_connections: 8,
        acquire_timeout: Duration::from_secs(10),
    })
    .await
    .expect("postgres");
    let raw = Raw::Postgres(pg.clone());
    let f = DurableFixture {
        store: Arc::new(pg),
        _keep: Box::new(db),
    }
    .migrated()
    .await;
    (f, raw)
}

async fn sqlite() -> DurableFixture {
    sqlite_raw().await.0
}

async fn sqlite_raw() -> (DurableFixture, Raw) {
    let dir = TestDir::new();
    let store = SqliteStore::open(&SqliteConfig::at(dir.path.join("gateway.db")))
        .await
        .expect("sqlite");
    let raw = Raw::Sqlite(store.clone());
    let f = DurableFixture {
        store: Arc::new(store),
        _keep: Box::new(dir),
    }
    .migrated()
    .await;
    (f, raw)
}

impl DurableFixture {
    async fn migrated(self) -> DurableFixture {
        self.store.migrate().await.expect("migrations");
        self
    }
}

async fn redis() -> HotFixture {
    let prefix = TestRedis::new();
    let store = RedisStore::connect(&RedisConfig {
        url: prefix.url.clone(),
        key_prefix: prefix.prefix.clone(),
        response_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(5),
        min_replicas: 0,
    })
    .await
    .expect("redis");
    HotFixture {
        store: Arc::new(store),
        _keep: Box::new(prefix),
    }
}

async fn redis_cluster() -> HotFixture {
    let cluster = PrivateCluster::start()
        .await
        .expect("redis-server and redis-cli on the PATH");
    let store = RedisStore::connect(&RedisConfig {
        url: cluster.url(),
        key_prefix: format!("t{}:", uuid::Uuid::new_v4().simple()),
        response_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(5),
        min_replicas: 0,
    })
    .await
    .expect("redis cluster");
    HotFixture {
        store: Arc::new(store),
        _keep: Box::new(cluster),
    }
}

fn memory() -> HotFixture {
    HotFixture {
        store: Arc::new(MemoryStore::new()),
        _keep: Box::new(()),
    }
}

pub(crate) async fn durable(backend: Backend) -> DurableFixture {
    match backend {
        Backend::postgres => postgres().await,
        Backend::sqlite => sqlite().await,
        other => panic!("{other:?} is not a durable backend"),
    }
}

/// A durable backend with its own connection pool (statements behind the store's back).
pub(crate) async fn durable_raw(backend: Backend) -> (DurableFixture, Raw) {
    match backend {
        Backend::postgres => postgres_raw().await,
        Backend::sqlite => sqlite_raw().await,
        other => panic!("{other:?} is not a durable backend"),
    }
}

pub(crate) async fn hot(backend: Backend) -> HotFixture {
    match backend {
        Backend::redis => redis().await,
        Backend::redis_cluster => redis_cluster().await,
        Backend::memory => memory(),
        other => panic!("{other:?} is not a hot backend"),
    }
}

pub(crate) async fn service(backend: Backend) -> ServiceFixture {
    let ((durable, raw), hot) = match backend {
        Backend::deployed => (postgres_raw().await, redis().await),
        Backend::embedded => (sqlite_raw().await, memory()),
        other => panic!("{other:?} is not a backend combination"),
    };
    ServiceFixture {
        service: Service::new(durable.store.clone(), hot.store.clone(), Limits::default()),
        durable: durable.store.clone(),
        hot: hot.store.clone(),
        raw,
        _hot: hot,
        _durable: durable,
    }
}

impl ServiceFixture {
    pub(crate) async fn hot_file(&self, task: &str, path: &str) -> Option<HotFile> {
        self.hot
            .file(
                &TaskId::parse(task).unwrap(),
                &FilePath::parse(path).unwrap(),
            )
            .await
            .unwrap()
            .hit()
    }

    /// Drops a file's hot copy, as an expiry or a Redis restart would: a writer's check
    /// drops it when no lease is held.
    pub(crate) async fn drop_hot_file(&self, task: &str, path: &str) {
        let (task, path) = (TaskId::parse(task).unwrap(), FilePath::parse(path).unwrap());
        let write = PendingWrite::new(60);
        let lease = self
            .hot
            .lease_for_write(&task, &path, "nobody", &write)
            .await
            .unwrap();
        assert!(lease.is_none());
        self.hot
            .write_abandoned(&task, &path, &write)
            .await
            .unwrap();
        assert!(self.hot_file(task.as_str(), path.as_str()).await.is_none());
    }
}

/// The versions a `VersionConflict` names, `(expected, current)`; any other error fails the test.
#[track_caller]
pub(crate) fn conflict(err: DomainError) -> (Option<i64>, Option<i64>) {
    match err {
        DomainError::VersionConflict { expected, current } => (expected, current),
        other => panic!("expected a version conflict, got {other:?}"),
    }
}
