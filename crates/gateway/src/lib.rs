//! The MCP Gateway HTTP service.
//!
//! * [`config`] — [`GatewayConfig`]: every flag and environment variable.
//! * [`routes`] — the HTTP surface: `/tools/*`, `/resources/*`, `/admin/*`, `/health`; one
//!   `router()` per area. Handlers are thin: extract, one call into [`mcp_domain::Service`],
//!   answer.
//! * [`extract`] — where a request becomes an [`mcp_domain::Actor`]: authentication, the
//!   per-agent rate limit, the acting agent and its task scope ([`extract::Caller::resolve`]).
//! * [`auth`] — HS256 bearer tokens: verification and minting.
//! * [`mcp`] — the Model Context Protocol at `/mcp` (rmcp, Streamable HTTP): the same tools
//!   and resources, with resource subscriptions.
//! * [`live`] — live event streams (SSE, WebSocket) and their fan-out [`live::Hub`].
//! * [`ui`] — the web console at `/ui/` (assets compiled into the binary).
//! * [`edge`] — what is refused or bounded before a route: request bodies that are too
//!   large, stall or are malformed (4xx, never 503).
//! * [`error`] — [`ApiError`]: status and `{"detail","code"}` body from the shared code table.
//! * [`data_lock`] — the embedded data directory's lock: one process per SQLite file.
//! * this file — start-up (the stores `DATABASE_URL`/`REDIS_URL` name, or the embedded ones;
//!   migrations), [`serve`] with graceful shutdown.

pub mod auth;
pub mod config;
pub mod data_lock;
pub mod edge;
pub mod error;
pub mod extract;
pub mod live;
pub mod mcp;
pub mod oauth;
pub mod openapi;
pub mod routes;
pub mod ui;

pub use config::GatewayConfig;
pub use error::ApiError;

use crate::auth::{Authenticator, MIN_SECRET_BYTES};
use crate::config::DurableBackend;
use anyhow::Context;
use mcp_domain::Service;
use mcp_domain::store::durable::DurableOps;
use mcp_domain::store::memory::MemoryStore;
use mcp_domain::store::postgres::{PgConfig, PgStore};
use mcp_domain::store::redis::{RedisConfig, RedisStore};
use mcp_domain::store::sqlite::{SqliteConfig, SqliteStore};
use mcp_domain::store::{Durable, Hot};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// What every handler can reach: [`AppStateFields`] behind an `Arc`, so that a clone is one
/// reference count. (axum's router clones the state of a route's every method handler and
/// layer for each request it routes — 17 clones of the whole struct for one tool call, a
/// few thousand instructions: issue #19.) Its fields are read through `Deref`.
#[derive(Clone)]
pub struct AppState(Arc<AppStateFields>);

impl std::ops::Deref for AppState {
    type Target = AppStateFields;

    fn deref(&self) -> &AppStateFields {
        &self.0
    }
}

/// The fields of [`AppState`].
pub struct AppStateFields {
    /// The operations every door calls.
    pub service: Service,
    /// Upper bound of one request (503 past it).
    pub request_timeout: Duration,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Longest wait for the next byte of a request body (408 past it).
    pub body_read_timeout: Duration,
    /// The budget of large request bodies in flight; `None`: unbounded.
    pub large_bodies: Option<Arc<edge::body::LargeBodies>>,
    /// `/mcp`: its settings and its process-wide subscribers.
    pub mcp: mcp::McpState,
    /// Live event streams: the fan-out hub and its knobs.
    pub live: live::LiveState,
    /// The tokens accepted (static HS256, the authorization server's, both, or none:
    /// authentication off).
    pub auth: Arc<auth::Tokens>,
    /// Requests per agent per window (`RATE_LIMIT_REQUESTS`/`RATE_LIMIT_WINDOW_SECS`).
    pub rate_limit: Option<RateLimit>,
    /// Browser origins allowed by CORS (empty: none).
    pub cors_origins: Vec<String>,
    /// The `Host`/`Origin` check in front of every route (DNS rebinding, foreign pages).
    pub rebinding: Arc<routes::rebinding::RebindingGuard>,
    /// One INFO line per request (`ACCESS_LOG`).
    pub access_log: bool,
    /// Header-read and idle timeouts, the connection cap (`edge::conn`).
    pub connections: edge::conn::ConnSettings,
}

/// The domain service alone, for handlers that need nothing else (`State<Service>`: a
/// handler's state is cloned per request, and the whole `AppState` costs more to clone).
impl axum::extract::FromRef<AppState> for Service {
    fn from_ref(state: &AppState) -> Service {
        state.service.clone()
    }
}

/// The per-agent request rate: at most `requests` per fixed `window`, counted in Redis so
/// that it holds across gateway instances.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    /// Requests allowed per window (`RATE_LIMIT_REQUESTS`).
    pub requests: u64,
    /// The window (`RATE_LIMIT_WINDOW_SECS`).
    pub window: Duration,
}

impl AppState {
    /// Builds the state and starts the live-event hub's Redis subscription (so it must run
    /// inside a Tokio runtime).
    pub fn new(service: Service, cfg: &GatewayConfig) -> AppState {
        let hub = live::Hub::start(
            service.clone(),
            live::HubConfig {
                queue_capacity: cfg.live_queue_capacity,
                ..live::HubConfig::default()
            },
        );
        live::inbox::start(&hub, service.inbox.clone());
        AppState(Arc::new(AppStateFields {
            mcp: mcp::McpState::new(cfg.mcp(), &service, hub.clone()),
            service,
            request_timeout: cfg.request_timeout(),
            max_body_bytes: cfg.max_body_bytes(),
            body_read_timeout: Duration::from_secs(cfg.body_read_timeout_secs.max(1)),
            large_bodies: edge::body::LargeBodies::new(
                cfg.large_body_bytes,
                cfg.large_body_budget_bytes,
                Duration::from_millis(cfg.large_body_wait_ms),
            )
            .map(Arc::new),
            live: live::LiveState {
                hub,
                keepalive: Duration::from_secs(cfg.live_keepalive_secs.max(1)),
                ws_max_subscriptions: cfg.live_ws_max_subscriptions,
            },
            auth: Arc::new(auth::Tokens {
                static_key: cfg
                    .jwt_secret
                    .clone()
                    .map(|s| Authenticator::new(s, cfg.accept_legacy_tokens)),
                // An invalid OAUTH_ROLE_MAP stopped the start already (`check_exposure`).
                oauth: cfg
                    .oauth()
                    .ok()
                    .flatten()
                    .map(|c| Arc::new(oauth::OAuth::new(c))),
            }),
            rate_limit: (cfg.rate_limit_requests > 0 && cfg.rate_limit_window_secs > 0).then(
                || RateLimit {
                    requests: cfg.rate_limit_requests,
                    window: Duration::from_secs(cfg.rate_limit_window_secs),
                },
            ),
            cors_origins: cfg.cors_origins(),
            rebinding: Arc::new(cfg.rebinding_guard()),
            access_log: cfg.access_log,
            connections: cfg.connections(),
        }))
    }

    /// The fields, to adjust before the state is shared (cloned); `None` after.
    pub fn fields_mut(&mut self) -> Option<&mut AppStateFields> {
        Arc::get_mut(&mut self.0)
    }
}

/// Retries `f` until it succeeds or `deadline` passes (backends may start after us).
async fn with_retry<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = mcp_domain::Result<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(error = %e, "{what} not ready yet; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(anyhow::anyhow!("{what}: {e:?}")),
        }
    }
}

/// Connects Postgres (creating the database if needed) and applies the migrations.
async fn connect_postgres(cfg: &GatewayConfig, url: &str) -> anyhow::Result<PgStore> {
    let startup = Duration::from_secs(cfg.startup_timeout_secs);
    with_retry("postgres", startup, || {
        PgStore::create_database_if_missing(url)
    })
    .await?;
    let pg = PgStore::connect(&PgConfig {
        url: url.to_owned(),
        max_connections: cfg.pg_max_connections,
        acquire_timeout: Duration::from_millis(cfg.pg_acquire_timeout_ms),
    })
    .await
    .context("DATABASE_URL")?;
    with_retry("postgres migrations", startup, || pg.migrate()).await?;
    Ok(pg)
}

/// Opens the durable store the configuration names (Postgres, or the embedded mode's SQLite
/// file) and applies its migrations.
pub async fn connect_durable(cfg: &GatewayConfig) -> anyhow::Result<Durable> {
    Ok(open_durable(cfg).await?.0)
}

/// The durable store, and the SQLite store again when it is one (the embedded mode keeps its
/// MCP sessions there too).
async fn open_durable(cfg: &GatewayConfig) -> anyhow::Result<(Durable, Option<SqliteStore>)> {
    Ok(match cfg.durable_backend() {
        DurableBackend::Postgres(url) => (Arc::new(connect_postgres(cfg, &url).await?), None),
        DurableBackend::Sqlite(path) => {
            let store = SqliteStore::open(&SqliteConfig {
                sync_every_commit: cfg.sqlite_synchronous == "full",
                ..SqliteConfig::at(path.clone())
            })
            .await
            .map_err(|e| anyhow::anyhow!("{e:?}"))
            .with_context(|| format!("opening the SQLite file {}", path.display()))?;
            store
                .migrate()
                .await
                .map_err(|e| anyhow::anyhow!("SQLite migrations: {e:?}"))?;
            (Arc::new(store.clone()), Some(store))
        }
    })
}

/// Both stores of a gateway: the [`Service`] owns them, and the built-in sync loops take them.
#[derive(Clone)]
pub struct Stores {
    /// The durable store (Postgres, or the embedded SQLite file).
    pub durable: Durable,
    /// The hot store (Redis, or the in-process one).
    pub hot: Hot,
}

impl Stores {
    /// The domain service over these stores, with the configuration's limits.
    pub fn service(&self, cfg: &GatewayConfig) -> Service {
        Service::new(self.durable.clone(), self.hot.clone(), cfg.limits())
    }
}

/// Connects both stores the configuration names. The embedded mode (SQLite and the
/// in-process hot store) keeps its MCP sessions in the SQLite file, so they outlive a restart
/// as deployed ones live on in Redis.
pub async fn connect(cfg: &GatewayConfig) -> anyhow::Result<Stores> {
    let (durable, sqlite) = open_durable(cfg).await?;
    let hot: Hot = match cfg.redis() {
        Some(url) => {
            let redis_cfg = RedisConfig {
                url: url.to_owned(),
                key_prefix: cfg.redis_key_prefix.clone(),
                response_timeout: Duration::from_millis(cfg.redis_timeout_ms),
                connect_timeout: Duration::from_millis(cfg.redis_timeout_ms),
                min_replicas: cfg.redis_min_replicas,
            };
            let startup = Duration::from_secs(cfg.startup_timeout_secs);
            Arc::new(with_retry("redis", startup, || RedisStore::connect(&redis_cfg)).await?)
        }
        None => {
            let memory = MemoryStore::new();
            if let Some(file) = sqlite {
                memory.keep_sessions_in(Arc::new(file)).await.map_err(|e| {
                    anyhow::anyhow!("reading the MCP sessions of the SQLite file: {e:?}")
                })?;
            }
            Arc::new(memory)
        }
    };
    Ok(Stores { durable, hot })
}

/// Says at start which stores serve, and that an embedded one allows a single instance.
fn announce_stores(cfg: &GatewayConfig, service: &Service) {
    let (durable, hot) = service.backends();
    tracing::info!(durable, hot, "stores connected");
    if service.embedded() {
        let file = match cfg.durable_backend() {
            DurableBackend::Sqlite(path) => path.display().to_string(),
            DurableBackend::Postgres(_) => "-".into(),
        };
        tracing::warn!(
            durable,
            hot,
            sqlite_file = %file,
            "embedded mode: SINGLE INSTANCE ONLY. State lives in this process and its local \
             file, whose directory this process has locked (a second gateway on it exits). Set \
             DATABASE_URL and REDIS_URL to run several gateways."
        );
    }
}

/// Refuses an unauthenticated gateway on a non-loopback address unless explicitly allowed,
/// and a secret too short to resist guessing; says at start which mode it runs in.
pub fn check_exposure(cfg: &GatewayConfig) -> anyhow::Result<()> {
    let addr = cfg.listen_addr();
    if let Some(oauth) = cfg.oauth()? {
        tracing::info!(
            %addr,
            issuer = %oauth.issuer,
            audience = %oauth.audience,
            static_tokens = cfg.jwt_secret.is_some(),
            "authentication ON: tokens of the authorization server (RS256/ES256) are accepted"
        );
        if cfg.jwt_secret.is_none() {
            return Ok(());
        }
    }
    if let Some(secret) = &cfg.jwt_secret {
        let len = secret.expose().len();
        if len < MIN_SECRET_BYTES {
            anyhow::bail!("JWT_SECRET is {len} bytes; it must be at least {MIN_SECRET_BYTES}");
        }
        if len < 32 {
            tracing::warn!("JWT_SECRET is shorter than 32 bytes; use a longer random secret");
        }
        tracing::info!(
            %addr,
            legacy_tokens = cfg.accept_legacy_tokens,
            "authentication ON: every request needs a bearer token (HS256)"
        );
        return Ok(());
    }
    tracing::warn!(%addr, "authentication OFF: every caller is trusted (set JWT_SECRET to turn it on)");
    if !addr.ip().is_loopback() && !cfg.allow_unauthenticated_remote {
        anyhow::bail!(
            "refusing to listen on {addr} without authentication; \
             set ALLOW_UNAUTHENTICATED_REMOTE=true to accept that risk"
        );
    }
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "listening on a non-loopback address WITHOUT authentication");
    }
    Ok(())
}

/// Serves on `listener` until `shutdown` is cancelled, then stops accepting, ends the live
/// streams (each with a reconnect hint) and finishes in-flight requests.
pub async fn serve_on(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // Long-lived MCP streams would hold the drain open: end them when shutdown starts.
    let mcp_shutdown = state.mcp.shutdown.clone();
    let hub = state.live.hub.clone();
    let connections = state.connections;
    let app = routes::router(state);
    // Live streams never finish by themselves: end them (with a reconnect hint) when
    // shutdown starts, or the graceful drain would wait for them forever.
    let closing_hub = hub.clone();
    let draining = shutdown.clone();
    tokio::spawn(async move {
        draining.cancelled().await;
        mcp_shutdown.cancel();
        closing_hub.close();
    });
    edge::conn::serve(listener, app, connections, shutdown).await;
    hub.close();
    // WebSockets live outside the HTTP server's drain: give them time to say goodbye.
    hub.wait_idle(Duration::from_secs(3)).await;
    Ok(())
}

/// Start-up and run: backends, migrations, listener; returns after a graceful shutdown.
pub async fn serve(cfg: GatewayConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    check_exposure(&cfg)?;
    let fd_limit = edge::conn::raise_fd_limit();
    // Held until serve returns (the process's end releases it too).
    let _data_lock = data_lock::lock_data_dir(&cfg)?;
    let stores = connect(&cfg).await?;
    let service = stores.service(&cfg);
    announce_stores(&cfg, &service);
    let addr = cfg.listen_addr();
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let mode = if cfg.auth_enabled() { "on" } else { "off" };
    tracing::info!(%addr, authentication = mode, "mcp-gateway listening");
    // The sync loops stop after the server has drained, then flush the outbox (a Redis one;
    // the embedded mode has none: its steps are in SQLite before they are acknowledged).
    let sync_cancel = CancellationToken::new();
    // An embedded store has no other process that could sync it (an in-process task cache;
    // a local SQLite file that a separate mcp-sync cannot reach).
    let embedded = service.embedded();
    let run_sync = cfg.run_sync || embedded;
    if !cfg.run_sync && run_sync {
        tracing::warn!("RUN_SYNC=false ignored: an embedded store is synced by this process");
    }
    let sync = run_sync.then(|| {
        let settings = cfg
            .loops
            .settings(cfg.task_cache_ttl, cfg.events_stream_maxlen);
        mcp_sync::spawn(
            stores.durable.clone(),
            stores.hot.clone(),
            settings,
            sync_cancel.clone(),
        )
    });
    let mut state = AppState::new(service, &cfg);
    let reserve = edge::conn::FD_RESERVE + u64::from(cfg.pg_max_connections);
    state
        .fields_mut()
        .context("the state is not shared yet")?
        .connections
        .max_connections = edge::conn::effective_cap(cfg.max_connections, fd_limit, reserve);
    tracing::info!(
        max_connections = state.connections.max_connections,
        header_read_timeout_secs = state.connections.header_read_timeout.as_secs(),
        idle_timeout_secs = state.connections.idle_timeout.as_secs(),
        "connection limits"
    );
    let served = serve_on(listener, state, shutdown).await;
    sync_cancel.cancel();
    if let Some(sync) = sync {
        let _ = sync.await;
    }
    served
}

/// `mcp-gateway token`: a token signed with the configured `JWT_SECRET`.
pub fn mint_token(cfg: &GatewayConfig, args: &config::TokenArgs) -> anyhow::Result<String> {
    let secret = cfg
        .jwt_secret
        .clone()
        .context("JWT_SECRET is not set: there is nothing to sign tokens with")?;
    let role = auth::parse_role(&args.role)
        .with_context(|| format!("--role '{}': use agent, observer or admin", args.role))?;
    let ttl = auth::parse_ttl(&args.ttl).map_err(anyhow::Error::msg)?;
    mcp_domain::AgentId::parse(&args.agent).context("--agent")?;
    let tasks: Vec<String> = args.tasks.iter().map(|t| t.trim().to_owned()).collect();
    for t in tasks.iter().filter(|t| *t != "*") {
        mcp_domain::TaskId::parse(t).with_context(|| format!("--task '{t}'"))?;
    }
    let auth = Authenticator::new(secret, cfg.accept_legacy_tokens);
    let scope = (!tasks.iter().any(|t| t == "*")).then_some(tasks);
    let mut claims = Authenticator::claims_for(&args.agent, scope, role, ttl);
    if claims.tasks.is_none() {
        claims.tasks = Some(auth::TaskScope::One("*".into()));
    }
    Ok(auth.mint(&claims))
}

/// Cancels `token` on SIGINT or SIGTERM.
pub fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        mcp_process::shutdown_signal().await;
        tracing::info!("shutdown requested; finishing in-flight requests");
        token.cancel();
    });
}

pub use mcp_process::init_tracing;
