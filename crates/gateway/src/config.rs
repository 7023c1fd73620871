//! The gateway's configuration: flags, each with an environment variable. Nothing below
//! `main` reads the environment; everything arrives through [`GatewayConfig`].

use crate::auth::Secret;
use clap::{Args, Parser, Subcommand};
use mcp_domain::Limits;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// The `mcp-gateway` command line: a command and the configuration.
#[derive(Debug, Parser)]
#[command(
    name = "mcp-gateway",
    version,
    about = "Shared task state for cooperating AI agents"
)]
pub struct Cli {
    /// What to do; `None`: serve.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The flags and environment variables every command reads.
    #[command(flatten)]
    pub config: GatewayConfig,
}

/// The commands of `mcp-gateway`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve HTTP (the default).
    Serve,
    /// Apply the database migrations and exit.
    Migrate,
    /// Print a bearer token signed with `JWT_SECRET`.
    Token(TokenArgs),
    /// Print a shell completion script (`mcp-gateway completions bash`).
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff; `mcp-gateway man > mcp-gateway.1`).
    Man,
}

/// `mcp-gateway token`: mint a token for an agent.
#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// The agent the token names (`agent_id` claim).
    #[arg(long)]
    pub agent: String,
    /// A task the token may touch; repeat it or separate with commas; `*` for every task.
    #[arg(long = "task", required = true, value_delimiter = ',')]
    pub tasks: Vec<String>,
    /// `agent` (read and write), `observer` (read only) or `admin`.
    #[arg(long, default_value = "agent")]
    pub role: String,
    /// Lifetime: `90s`, `15m`, `1h`, `7d`.
    #[arg(long, default_value = "1h")]
    pub ttl: String,
}

/// Every setting of the gateway: a flag each, with its environment variable.
#[derive(Debug, Clone, Args)]
pub struct GatewayConfig {
    /// Address to listen on.
    #[arg(long, env = "MCP_GATEWAY_HOST", default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Port to listen on (also read from `PORT` when this is unset).
    #[arg(long, env = "MCP_GATEWAY_PORT")]
    pub port: Option<u16>,
    /// The platform's port variable, used when `MCP_GATEWAY_PORT` is unset.
    #[arg(long = "legacy-port", env = "PORT", hide = true)]
    pub legacy_port: Option<u16>,
    /// Allow listening on a non-loopback address without authentication.
    #[arg(long, env = "ALLOW_UNAUTHENTICATED_REMOTE", default_value_t = false)]
    pub allow_unauthenticated_remote: bool,

    /// HS256 secret of bearer tokens; authentication is on when it is set (at least 16 bytes,
    /// 32 or more recommended).
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<Secret>,
    /// Accept tokens without a `tasks` claim (the original gateway's `agent_id` + `exp`
    /// tokens); they reach every task, with the role they name (default `agent`).
    #[arg(long, env = "ACCEPT_LEGACY_TOKENS", default_value_t = true, action = clap::ArgAction::Set)]
    pub accept_legacy_tokens: bool,
    /// The issuer URL of the operator's OAuth 2.0 / OpenID Connect authorization server
    /// (Keycloak, Auth0, Entra ID, Dex, …): its RS256/ES256 tokens are accepted (authentication
    /// is on); its metadata and keys are discovered from it. Works beside JWT_SECRET.
    #[arg(long, env = "OAUTH_ISSUER")]
    pub oauth_issuer: Option<String>,
    /// The audience (`aud`) the issuer's tokens must carry; default: `{PUBLIC_URL}/mcp`.
    #[arg(long, env = "OAUTH_AUDIENCE")]
    pub oauth_audience: Option<String>,
    /// The claim naming the agent.
    #[arg(long, env = "OAUTH_AGENT_CLAIM", default_value = "sub")]
    pub oauth_agent_claim: String,
    /// The claim listing the tasks the token reaches (a list or a space-separated string;
    /// absent or `*`: every task).
    #[arg(long, env = "OAUTH_TASKS_CLAIM", default_value = "tasks")]
    pub oauth_tasks_claim: String,
    /// The claim naming the role (`admin`, `observer`, `agent`, or a name OAUTH_ROLE_MAP maps;
    /// a string or a list, the strongest wins; absent: `agent`).
    #[arg(long, env = "OAUTH_ROLE_CLAIM", default_value = "role")]
    pub oauth_role_claim: String,
    /// Issuer role or group names mapped to gateway roles, e.g. `mcp-admins=admin,auditors=observer`.
    #[arg(
        long,
        env = "OAUTH_ROLE_MAP",
        value_delimiter = ',',
        default_value = ""
    )]
    pub oauth_role_map: Vec<String>,
    /// Scopes announced in the resource metadata and in `WWW-Authenticate` (comma-separated).
    #[arg(
        long,
        env = "OAUTH_SCOPES_SUPPORTED",
        value_delimiter = ',',
        default_value = ""
    )]
    pub oauth_scopes_supported: Vec<String>,
    /// Least seconds between two fetches of the issuer's keys caused by an unknown key id
    /// (a rotation is picked up on the first token signed with the new key).
    #[arg(long, env = "OAUTH_JWKS_MIN_REFRESH_SECS", default_value_t = 10)]
    pub oauth_jwks_min_refresh_secs: u64,
    /// The gateway's public base URL as clients reach it (e.g. `https://mcp.example.com`): the
    /// OAuth resource is `{PUBLIC_URL}/mcp`. Default: `http://{MCP_GATEWAY_HOST}:{port}`.
    #[arg(long, env = "PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Requests one agent may make per rate window, on all gateway instances together
    /// (0: no limit). With authentication off the client address is the agent, and loopback
    /// clients are not limited.
    #[arg(long, env = "RATE_LIMIT_REQUESTS", default_value_t = 1200)]
    pub rate_limit_requests: u64,
    /// Length of the rate window, in seconds.
    #[arg(long, env = "RATE_LIMIT_WINDOW_SECS", default_value_t = 60)]
    pub rate_limit_window_secs: u64,
    /// Browser origins allowed to call the gateway (comma-separated, `*` for any); empty: no
    /// CORS headers, so browsers refuse cross-origin calls.
    #[arg(long, env = "CORS_ORIGINS", value_delimiter = ',', default_value = "")]
    pub cors_origins: Vec<String>,

    /// PostgreSQL URL (the database is created if missing). Unset: the embedded mode's
    /// SQLite file `DATA_DIR/mcp-gateway.db`; a `sqlite:PATH` URL names another file.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// Directory of the embedded mode's SQLite file (created if missing).
    #[arg(long, env = "DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// SQLite commits: `full` syncs each to disk before answering (survives a power loss);
    /// `normal` syncs at checkpoints (survives a crash of the process only; faster writes).
    #[arg(long, env = "SQLITE_SYNCHRONOUS", default_value = "full", value_parser = ["full", "normal"])]
    pub sqlite_synchronous: String,
    /// Largest number of pooled Postgres connections.
    #[arg(long, env = "PG_MAX_CONNECTIONS", default_value_t = 32)]
    pub pg_max_connections: u32,
    /// How long a request waits for a Postgres connection before answering 503, in ms.
    #[arg(long, env = "PG_ACQUIRE_TIMEOUT_MS", default_value_t = 3000)]
    pub pg_acquire_timeout_ms: u64,

    /// Redis URL. Unset: the in-process hot layer (embedded mode: one gateway process only).
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,
    /// Prefix of every Redis key and channel (to share one Redis between deployments).
    #[arg(long, env = "REDIS_KEY_PREFIX", default_value = "")]
    pub redis_key_prefix: String,
    /// How long one Redis command may take before the request answers 503, in ms.
    #[arg(long, env = "REDIS_TIMEOUT_MS", default_value_t = 2000)]
    pub redis_timeout_ms: u64,
    /// Replicas that must confirm (Redis `WAIT`) a step, an audit record or an event before it
    /// is acknowledged; when fewer confirm within half `REDIS_TIMEOUT_MS` the request answers
    /// 503. 0: acknowledged by the primary alone (a failover may lose the last writes).
    #[arg(long, env = "REDIS_MIN_REPLICAS", default_value_t = 0)]
    pub redis_min_replicas: u32,

    /// Upper bound of one request (past it: 503 with Retry-After), in seconds.
    #[arg(long, env = "REQUEST_TIMEOUT_SECS", default_value_t = 10)]
    pub request_timeout_secs: u64,
    /// Longest wait for the next byte of a request body, in seconds; past it the request
    /// is answered 408 `request_timeout` (the client stalled, not a backend).
    #[arg(long, env = "BODY_READ_TIMEOUT_SECS", default_value_t = 5)]
    pub body_read_timeout_secs: u64,
    /// Longest time a connection may take to send a whole request head, in seconds (counted
    /// from the accept, or from the first byte of a next request on a kept-alive
    /// connection); past it the connection is closed.
    #[arg(long, env = "HEADER_READ_TIMEOUT_SECS", default_value_t = 10)]
    pub header_read_timeout_secs: u64,
    /// Longest time a kept-alive connection stays open with no request in flight, in
    /// seconds. Live streams are requests in flight: never cut by it.
    #[arg(long, env = "IDLE_TIMEOUT_SECS", default_value_t = 60)]
    pub idle_timeout_secs: u64,
    /// Most open client connections (WebSockets included). At the cap a new connection
    /// takes the place of the oldest idle one; if all are busy it gets 503 and is closed.
    /// Lowered at start to fit the open-file limit.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,
    /// Request bodies longer than this, in bytes, draw on the large-body budget (by their
    /// `Content-Length`; a body of unknown length counts as `MAX_BODY_BYTES`).
    #[arg(long, env = "LARGE_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub large_body_bytes: usize,
    /// Total length of the large request bodies the gateway works on at once, in bytes (0:
    /// no bound). A large body that does not fit waits for room (up to
    /// `LARGE_BODY_WAIT_MS`), then gets 503 `unavailable` with `Retry-After`. Each byte of
    /// a body in flight costs about 5.5 bytes of memory (docs/BENCHMARKS.md): the default
    /// 64 MiB (eight 8 MiB writes at once) bounds that to about 360 MB.
    #[arg(long, env = "LARGE_BODY_BUDGET_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub large_body_budget_bytes: usize,
    /// How long a large body waits for room in the budget before 503, in ms.
    #[arg(long, env = "LARGE_BODY_WAIT_MS", default_value_t = 5000)]
    pub large_body_wait_ms: u64,
    /// How long start-up waits for the backends before giving up, in seconds.
    #[arg(long, env = "STARTUP_TIMEOUT_SECS", default_value_t = 30)]
    pub startup_timeout_secs: u64,

    /// Lifetime of a cached task row, in seconds.
    #[arg(long, env = "TASK_CACHE_TTL", default_value_t = 3600)]
    pub task_cache_ttl: u64,
    /// Lifetime of a file's hot copy in Redis, in seconds.
    #[arg(long, env = "FILE_CACHE_TTL", default_value_t = 3600)]
    pub file_cache_ttl: u64,
    /// Default lease of `claim_file` when the request names none, in seconds.
    #[arg(long, env = "FILE_LOCK_TIMEOUT", default_value_t = 60)]
    pub file_lock_timeout: i64,
    /// Longest lease `claim_file` grants, in seconds.
    #[arg(long, env = "MAX_LOCK_TIMEOUT", default_value_t = 3600)]
    pub max_lock_timeout: i64,
    /// Largest file, in bytes.
    #[arg(long, env = "MAX_FILE_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub max_file_bytes: usize,
    /// Largest step object, in bytes.
    #[arg(long, env = "MAX_STEP_BYTES", default_value_t = 64 * 1024)]
    pub max_step_bytes: usize,
    /// Largest request body, in bytes (default: room for the largest file, JSON-escaped).
    #[arg(long, env = "MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Most live files in one task (413 `quota_exceeded` past it; 0: no limit).
    #[arg(long, env = "MAX_TASK_FILES", default_value_t = 10_000)]
    pub max_task_files: i64,
    /// Most live bytes in one task (413 `quota_exceeded` past it; 0: no limit).
    #[arg(long, env = "MAX_TASK_BYTES", default_value_t = 1024 * 1024 * 1024)]
    pub max_task_bytes: i64,
    /// Entries kept in each task's event stream (the resume window of live streams).
    #[arg(long, env = "EVENTS_STREAM_MAXLEN", default_value_t = 10_000)]
    pub events_stream_maxlen: usize,
    /// Entries kept in each task's step-log stream (older steps are read from Postgres).
    #[arg(long, env = "LOGS_STREAM_MAXLEN", default_value_t = 10_000)]
    pub logs_stream_maxlen: usize,

    /// `Host` values the gateway answers while authentication is off (comma-separated host or
    /// host:port; `*` = any); others get 403. Protects against DNS rebinding; list the names
    /// clients use to reach the gateway. Default: `localhost,127.0.0.1,::1`.
    #[arg(long, env = "ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Option<Vec<String>>,
    /// The earlier name of `ALLOWED_HOSTS` (read when that is unset).
    #[arg(long, env = "MCP_ALLOWED_HOSTS", value_delimiter = ',', hide = true)]
    pub mcp_allowed_hosts: Option<Vec<String>>,
    /// Browser origins allowed to send requests (comma-separated `scheme://host[:port]`,
    /// `:*` = any port), besides `CORS_ORIGINS` and the gateway's own origin. A request with
    /// another `Origin` gets 403; one without `Origin` passes. Default:
    /// `http://localhost:*,http://127.0.0.1:*,http://[::1]:*`.
    #[arg(long, env = "ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Option<Vec<String>>,
    /// The earlier name of `ALLOWED_ORIGINS` (read when that is unset).
    #[arg(long, env = "MCP_ALLOWED_ORIGINS", value_delimiter = ',', hide = true)]
    pub mcp_allowed_origins: Option<Vec<String>>,

    /// Live streams: events queued per watcher; a watcher that falls further behind is cut
    /// off (it resumes from its last event id).
    #[arg(long, env = "LIVE_QUEUE_CAPACITY", default_value_t = 1024)]
    pub live_queue_capacity: usize,
    /// Live streams: interval of SSE keep-alive comments and WebSocket pings, in seconds.
    #[arg(long, env = "LIVE_KEEPALIVE_SECS", default_value_t = 15)]
    pub live_keepalive_secs: u64,
    /// Live streams: most task subscriptions on one WebSocket.
    #[arg(long, env = "LIVE_WS_MAX_SUBSCRIPTIONS", default_value_t = 100)]
    pub live_ws_max_subscriptions: usize,

    /// Log format: `text` or `json`.
    #[arg(long, env = "LOG_FORMAT", default_value = "text")]
    pub log_format: String,

    /// One INFO log line per request (target `access`: method, route template, status,
    /// latency in ms, request id, agent); `false` turns it off.
    #[arg(long, env = "ACCESS_LOG", default_value_t = true, action = clap::ArgAction::Set)]
    pub access_log: bool,

    /// Run the sync loops (outbox push, task cache pull) inside this process; turn off when a
    /// separate `mcp-sync` runs.
    #[arg(long, env = "RUN_SYNC", default_value_t = true, action = clap::ArgAction::Set)]
    pub run_sync: bool,

    /// The built-in sync loops' timing and names: `mcp-sync`'s variables (`PUSH_INTERVAL_MS`,
    /// `PULL_INTERVAL_MS`, `PUSH_BATCH_SIZE`, `CONSUMER_GROUP`, …).
    #[command(flatten)]
    pub loops: mcp_sync::LoopArgs,
}

/// Where the source of truth lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DurableBackend {
    /// The Postgres server at this URL (`DATABASE_URL`).
    Postgres(String),
    /// The embedded mode's SQLite file.
    Sqlite(PathBuf),
}

/// A list variable's entries, trimmed, blanks dropped; `default` when it is unset or blank.
fn list(v: Option<&Vec<String>>, default: &[String]) -> Vec<String> {
    let set: Vec<String> = v
        .into_iter()
        .flatten()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    if set.is_empty() {
        default.to_vec()
    } else {
        set
    }
}

/// A set variable: trimmed, and `None` when blank (an empty `DATABASE_URL=` in `.env` means
/// unset).
fn set(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

impl GatewayConfig {
    /// The durable store `DATABASE_URL` names: Postgres, or a SQLite file (`sqlite:PATH`, or
    /// `DATA_DIR/mcp-gateway.db` when unset).
    pub fn durable_backend(&self) -> DurableBackend {
        match set(&self.database_url) {
            None => DurableBackend::Sqlite(self.data_dir.join("mcp-gateway.db")),
            Some(url) => match url.strip_prefix("sqlite:") {
                Some(path) => {
                    DurableBackend::Sqlite(PathBuf::from(path.strip_prefix("//").unwrap_or(path)))
                }
                None => DurableBackend::Postgres(url.to_owned()),
            },
        }
    }

    /// The Redis `REDIS_URL` names; `None`: the in-process hot layer.
    pub fn redis(&self) -> Option<&str> {
        set(&self.redis_url)
    }

    /// Where to listen: the host and `MCP_GATEWAY_PORT`, else `PORT`, else 8001.
    pub fn listen_addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.port.or(self.legacy_port).unwrap_or(8001))
    }

    /// The domain's limits (sizes, stream caps, cache lifetimes, lease timeouts), as
    /// configured.
    pub fn limits(&self) -> Limits {
        Limits {
            max_file_bytes: self.max_file_bytes,
            max_step_bytes: self.max_step_bytes,
            events_stream_cap: self.events_stream_maxlen,
            logs_stream_cap: self.logs_stream_maxlen,
            task_cache_ttl_secs: self.task_cache_ttl,
            file_cache_ttl_secs: self.file_cache_ttl,
            default_lock_timeout_secs: self.file_lock_timeout,
            max_lock_timeout_secs: self.max_lock_timeout,
            max_task_files: (self.max_task_files > 0).then_some(self.max_task_files),
            max_task_bytes: (self.max_task_bytes > 0).then_some(self.max_task_bytes),
            // A change's commit ends within its request (or is cut off with it).
            pending_write_ttl_secs: 2 * self.request_timeout_secs.max(5),
            ..Limits::default()
        }
    }

    /// The largest request body: `MAX_BODY_BYTES`, else twice the largest file (room for its
    /// JSON escaping) plus 64 KiB.
    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
            .unwrap_or(2 * self.max_file_bytes + 64 * 1024)
    }

    /// The upper bound of one request (`REQUEST_TIMEOUT_SECS`).
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }

    /// The bounds of connections, as configured (the cap before the open-file limit is
    /// applied, see `edge::conn::effective_cap`).
    pub fn connections(&self) -> crate::edge::conn::ConnSettings {
        crate::edge::conn::ConnSettings {
            max_connections: self.max_connections.max(1),
            header_read_timeout: Duration::from_secs(self.header_read_timeout_secs.max(1)),
            idle_timeout: Duration::from_secs(self.idle_timeout_secs.max(1)),
        }
    }

    /// The settings of `/mcp`.
    pub fn mcp(&self) -> crate::mcp::McpConfig {
        crate::mcp::McpConfig {
            max_body_bytes: self.max_body_bytes(),
        }
    }

    /// `ALLOWED_HOSTS`, else `MCP_ALLOWED_HOSTS`, else the loopback names (blanks dropped).
    pub fn allowed_hosts(&self) -> Vec<String> {
        let default = ["localhost", "127.0.0.1", "::1"].map(String::from);
        list(
            self.allowed_hosts
                .as_ref()
                .or(self.mcp_allowed_hosts.as_ref()),
            &default,
        )
    }

    /// `ALLOWED_ORIGINS`, else `MCP_ALLOWED_ORIGINS`, else the loopback origins on any port.
    pub fn allowed_origins(&self) -> Vec<String> {
        let default =
            ["http://localhost:*", "http://127.0.0.1:*", "http://[::1]:*"].map(String::from);
        list(
            self.allowed_origins
                .as_ref()
                .or(self.mcp_allowed_origins.as_ref()),
            &default,
        )
    }

    /// Whether requests need a token (a static secret or an authorization server is set).
    pub fn auth_enabled(&self) -> bool {
        self.jwt_secret.is_some() || self.oauth_issuer.is_some()
    }

    /// `PUBLIC_URL` without a trailing slash, or the listen address.
    pub fn public_url(&self) -> String {
        match &self.public_url {
            Some(u) => u.trim_end_matches('/').to_owned(),
            None => format!("http://{}", self.listen_addr()),
        }
    }

    /// The OAuth settings, when `OAUTH_ISSUER` is set; an `OAUTH_ROLE_MAP` entry that is not
    /// `name=role` is an error.
    pub fn oauth(&self) -> anyhow::Result<Option<crate::oauth::OAuthConfig>> {
        let Some(issuer) = self.oauth_issuer.clone() else {
            return Ok(None);
        };
        let public_url = self.public_url();
        let mut role_map = Vec::new();
        for entry in self
            .oauth_role_map
            .iter()
            .map(|e| e.trim())
            .filter(|e| !e.is_empty())
        {
            let role = entry.split_once('=').and_then(|(name, role)| {
                Some((
                    name.trim().to_owned(),
                    crate::auth::parse_role(role.trim())?,
                ))
            });
            match role {
                Some(r) => role_map.push(r),
                None => anyhow::bail!(
                    "OAUTH_ROLE_MAP entry '{entry}' is not name=role (role: admin, observer or agent)"
                ),
            }
        }
        Ok(Some(crate::oauth::OAuthConfig {
            audience: self
                .oauth_audience
                .clone()
                .unwrap_or_else(|| format!("{public_url}/mcp")),
            issuer,
            public_url,
            agent_claim: self.oauth_agent_claim.clone(),
            tasks_claim: self.oauth_tasks_claim.clone(),
            role_claim: self.oauth_role_claim.clone(),
            role_map,
            min_refresh: std::time::Duration::from_secs(self.oauth_jwks_min_refresh_secs),
            scopes_supported: self
                .oauth_scopes_supported
                .iter()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
        }))
    }

    /// The `Host`/`Origin` check of every route.
    pub fn rebinding_guard(&self) -> crate::routes::rebinding::RebindingGuard {
        crate::routes::rebinding::RebindingGuard::new(
            self.auth_enabled(),
            &self.allowed_hosts(),
            &self.allowed_origins(),
            &self.cors_origins(),
        )
    }

    /// The CORS origins configured (blank entries dropped).
    pub fn cors_origins(&self) -> Vec<String> {
        self.cors_origins
            .iter()
            .map(|o| o.trim().to_owned())
            .filter(|o| !o.is_empty())
            .collect()
    }

    /// A configuration with every default, for tests and embedding.
    pub fn defaults() -> GatewayConfig {
        Cli::parse_from(["mcp-gateway"]).config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(database_url: Option<&str>, redis_url: Option<&str>) -> GatewayConfig {
        let mut cfg = GatewayConfig::defaults();
        cfg.database_url = database_url.map(str::to_owned);
        cfg.redis_url = redis_url.map(str::to_owned);
        cfg.data_dir = PathBuf::from("var/state");
        cfg
    }

    #[test]
    fn unset_or_blank_urls_mean_the_embedded_stores() {
        let embedded = DurableBackend::Sqlite(PathBuf::from("var/state/mcp-gateway.db"));
        assert_eq!(with(None, None).durable_backend(), embedded);
        assert_eq!(with(Some("  "), None).durable_backend(), embedded);
        assert_eq!(with(None, None).redis(), None);
        assert_eq!(with(None, Some("")).redis(), None);
    }

    #[test]
    fn urls_name_their_backends() {
        let pg = "postgres://u@db:5432/mcp";
        assert_eq!(
            with(Some(pg), None).durable_backend(),
            DurableBackend::Postgres(pg.into())
        );
        assert_eq!(
            with(Some("sqlite:///srv/mcp.db"), None).durable_backend(),
            DurableBackend::Sqlite(PathBuf::from("/srv/mcp.db"))
        );
        assert_eq!(
            with(Some("sqlite:rel/mcp.db"), None).durable_backend(),
            DurableBackend::Sqlite(PathBuf::from("rel/mcp.db"))
        );
        assert_eq!(
            with(None, Some(" redis://cache:6379 ")).redis(),
            Some("redis://cache:6379")
        );
    }
}
