//! Client configuration, from code or from the environment variables the original agents
//! used (`USE_MCP`, `MCP_GATEWAY_URL`, `MCP_GATEWAY_TIMEOUT`) plus ours.
//!
//! | Variable | Default | Meaning |
//! |---|---|---|
//! | `MCP_GATEWAY_URL` | `http://127.0.0.1:8001` | Base URL of the gateway. |
//! | `MCP_GATEWAY_TOKEN` | – | Bearer token sent as `Authorization: Bearer …`. |
//! | `MCP_GATEWAY_TIMEOUT` | `30` | Upper bound of one request, seconds (fractions allowed). |
//! | `MCP_GATEWAY_RETRIES` | `4` | Attempts per call, the first included (1 = no retry). |
//! | `MCP_AGENT_ID` | – | The acting agent, sent as `agent_id` (used while the gateway runs without authentication). |
//! | `USE_MCP` | `false` | Dual mode: `true` = files through the gateway, `false` = a local directory. |
//! | `MCP_LOCAL_WORKSPACE` | `workspace` | Local mode: root directory; a task's files live in `<root>/<task_id>/`. |

use crate::error::{ClientError, Result};
use crate::retry::RetryPolicy;
use std::path::PathBuf;
use std::time::Duration;

/// The gateway URL used when `MCP_GATEWAY_URL` is not set: the gateway's own default
/// listen address. (The original's deployments set `http://mcp-gateway:8001` explicitly.)
pub const DEFAULT_GATEWAY_URL: &str = "http://127.0.0.1:8001";

/// How a [`GatewayClient`](crate::GatewayClient) reaches the gateway. Its `Debug` output
/// never shows the token (configurations end up in logs).
#[derive(Clone)]
pub struct ClientConfig {
    /// Base URL, e.g. `http://mcp-gateway:8001` (a path prefix is kept).
    pub base_url: String,
    /// Bearer token; the gateway's JWT when authentication is on.
    pub token: Option<String>,
    /// The acting agent, filled into every request that names none. With authentication on
    /// the token names the agent and this may stay empty.
    pub agent_id: Option<String>,
    /// Upper bound of one request (not of a live event stream).
    pub timeout: Duration,
    /// Upper bound of opening a connection.
    pub connect_timeout: Duration,
    /// Retries of failed calls (see [`crate::retry`]).
    pub retry: RetryPolicy,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("base_url", &self.base_url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("agent_id", &self.agent_id)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("retry", &self.retry)
            .finish()
    }
}

impl Default for ClientConfig {
    /// The configuration of a gateway at [`DEFAULT_GATEWAY_URL`], with the defaults.
    fn default() -> ClientConfig {
        ClientConfig::new(DEFAULT_GATEWAY_URL)
    }
}

impl ClientConfig {
    /// A configuration for `base_url` with the defaults: no token, 30 s timeout, 4 attempts.
    pub fn new(base_url: impl Into<String>) -> ClientConfig {
        ClientConfig {
            base_url: base_url.into(),
            token: None,
            agent_id: None,
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            retry: RetryPolicy::default(),
        }
    }

    /// Reads `MCP_GATEWAY_URL`, `MCP_GATEWAY_TOKEN`, `MCP_GATEWAY_TIMEOUT`,
    /// `MCP_GATEWAY_RETRIES` and `MCP_AGENT_ID` (see the module table).
    pub fn from_env() -> Result<ClientConfig> {
        ClientConfig::from_lookup(|k| std::env::var(k).ok())
    }

    /// As [`ClientConfig::from_env`], reading variables through `get` (for tests and for
    /// programs with their own configuration source).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<ClientConfig> {
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let mut c = ClientConfig::new(
            get("MCP_GATEWAY_URL").unwrap_or_else(|| DEFAULT_GATEWAY_URL.to_owned()),
        );
        c.token = get("MCP_GATEWAY_TOKEN");
        c.agent_id = get("MCP_AGENT_ID");
        if let Some(t) = get("MCP_GATEWAY_TIMEOUT") {
            c.timeout = parse_seconds("MCP_GATEWAY_TIMEOUT", &t)?;
        }
        if let Some(r) = get("MCP_GATEWAY_RETRIES") {
            let n: u32 = r.trim().parse().map_err(|_| {
                ClientError::Config(format!("MCP_GATEWAY_RETRIES must be a number, got {r:?}"))
            })?;
            c.retry = RetryPolicy::attempts(n);
        }
        Ok(c)
    }

    /// Sets the bearer token.
    pub fn with_token(mut self, token: impl Into<String>) -> ClientConfig {
        self.token = Some(token.into());
        self
    }

    /// Sets the acting agent.
    pub fn with_agent(mut self, agent_id: impl Into<String>) -> ClientConfig {
        self.agent_id = Some(agent_id.into());
        self
    }

    /// Sets the per-request timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> ClientConfig {
        self.timeout = timeout;
        self
    }

    /// Sets the upper bound of opening a connection.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> ClientConfig {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> ClientConfig {
        self.retry = retry;
        self
    }
}

/// Parses a positive number of seconds, fractions allowed (`"30"`, `"2.5"`).
pub fn parse_seconds(name: &str, raw: &str) -> Result<Duration> {
    raw.trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0 && *s < 1e9)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| {
            ClientError::Config(format!(
                "{name} must be a positive number of seconds, got {raw:?}"
            ))
        })
}

/// Where an agent's files live: the dual mode of the seed's rollback plan
/// ("set `USE_MCP=false` and agents fall back to local files").
#[derive(Debug, Clone)]
pub enum WorkspaceMode {
    /// Through the gateway (`USE_MCP=true`).
    Gateway(ClientConfig),
    /// In a local directory (`USE_MCP` false or unset): `<root>/<task_id>/`.
    Local {
        /// The directory holding one folder per task.
        root: PathBuf,
    },
}

impl WorkspaceMode {
    /// Reads `USE_MCP`, then either the client variables or `MCP_LOCAL_WORKSPACE`.
    pub fn from_env() -> Result<WorkspaceMode> {
        WorkspaceMode::from_lookup(|k| std::env::var(k).ok())
    }

    /// As [`WorkspaceMode::from_env`], reading variables through `get`.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<WorkspaceMode> {
        let use_mcp = match get("USE_MCP").as_deref().map(str::trim) {
            None | Some("") => false,
            Some(v) => parse_bool(v).ok_or_else(|| {
                ClientError::Config(format!("USE_MCP must be true or false, got {v:?}"))
            })?,
        };
        if use_mcp {
            Ok(WorkspaceMode::Gateway(ClientConfig::from_lookup(get)?))
        } else {
            let root = get("MCP_LOCAL_WORKSPACE")
                .filter(|v| !v.trim().is_empty())
                .unwrap_or_else(|| "workspace".to_owned());
            Ok(WorkspaceMode::Local { root: root.into() })
        }
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn defaults_and_overrides() {
        let c = ClientConfig::from_lookup(env(&[])).unwrap();
        assert_eq!(c.base_url, DEFAULT_GATEWAY_URL);
        assert_eq!(c.timeout, Duration::from_secs(30));
        let c = ClientConfig::from_lookup(env(&[
            ("MCP_GATEWAY_URL", "http://gw:9000"),
            ("MCP_GATEWAY_TIMEOUT", "2.5"),
            ("MCP_GATEWAY_TOKEN", "tok"),
            ("MCP_GATEWAY_RETRIES", "1"),
        ]))
        .unwrap();
        assert_eq!(c.base_url, "http://gw:9000");
        assert_eq!(c.timeout, Duration::from_millis(2500));
        assert_eq!(c.token.as_deref(), Some("tok"));
        assert_eq!(c.retry.max_attempts, 1);
        assert!(ClientConfig::from_lookup(env(&[("MCP_GATEWAY_TIMEOUT", "-1")])).is_err());
    }

    #[test]
    fn debug_output_hides_the_token() {
        let c = ClientConfig::new("http://gw:1").with_token("s3cr3t-token");
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cr3t-token"), "{shown}");
        assert!(
            shown.contains("<redacted>") && shown.contains("http://gw:1"),
            "{shown}"
        );
        let shown = format!("{:?}", WorkspaceMode::Gateway(c));
        assert!(!shown.contains("s3cr3t-token"), "{shown}");
    }

    #[test]
    fn use_mcp_chooses_the_mode() {
        let local = WorkspaceMode::from_lookup(env(&[("MCP_LOCAL_WORKSPACE", "/tmp/w")]));
        assert!(
            matches!(local, Ok(WorkspaceMode::Local { root }) if root == std::path::Path::new("/tmp/w"))
        );
        let gw = WorkspaceMode::from_lookup(env(&[
            ("USE_MCP", "true"),
            ("MCP_GATEWAY_URL", "http://gw:1"),
        ]));
        assert!(matches!(gw, Ok(WorkspaceMode::Gateway(c)) if c.base_url == "http://gw:1"));
        assert!(WorkspaceMode::from_lookup(env(&[("USE_MCP", "maybe")])).is_err());
    }
}
