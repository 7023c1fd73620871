//! The settings of the hooks and the guard: where the gateway is, who the agent is, which
//! task a repository maps to, how long a lease lasts, what to do when the gateway does not
//! answer.
//!
//! Three sources, the first that says wins: the command line or its environment variable
//! (`--task`/`MCP_HOOK_TASK`, …, and the global `--url`/`MCP_GATEWAY_URL`,
//! `--token`/`MCP_GATEWAY_TOKEN`, `--agent`/`MCP_AGENT_ID`); the checkout's
//! [`CONFIG_FILE`] (`.mcp-gateway.toml` at its root, committed so every clone and worktree
//! maps to the same task); the defaults. The token is never read from the file (it is
//! committed; secrets stay in the environment).
//!
//! The agent: `--agent`/`MCP_AGENT_ID`, else the file's `agent`, else the agent the token
//! names, else `claude-<worktree directory name>` — so two worktrees of one repository are
//! two agents without any setting, and the pre-commit guard of a worktree recognises the
//! leases of the Claude Code session working there as its own.

use super::repo::{Checkout, sanitize_id};
use crate::cli::{AgentArgs, Global};
use base64::Engine;
use mcp_agent_client::{ClientConfig, ClientError, GatewayClient, RetryPolicy};
use serde::Deserialize;
use std::time::Duration;

/// The configuration file, at the root of a checkout.
pub const CONFIG_FILE: &str = ".mcp-gateway.toml";

/// The lease length when none is configured, seconds: long enough to cover the pause
/// between two edits of one file, short enough that a crashed session's files come free.
pub const DEFAULT_LEASE_SEC: i64 = 300;

/// The upper bound of one hook's whole answer when none is configured, seconds (Claude Code
/// waits for `init claude`'s `timeout`, 10 s, before it gives up on a hook).
pub const DEFAULT_HOOK_TIMEOUT_SEC: f64 = 5.0;

/// What to do with an edit when the gateway cannot decide (unreachable, no answer in time,
/// refusing the credentials).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Let the edit happen, unguarded, with a warning the user sees.
    #[default]
    Allow,
    /// Refuse the edit, saying why.
    Deny,
}

impl Policy {
    /// Its name in `.mcp-gateway.toml` and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Allow => "allow",
            Policy::Deny => "deny",
        }
    }
}

/// [`CONFIG_FILE`] as written (every key optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The gateway's base URL.
    pub url: Option<String>,
    /// `repo`, `branch`, or a task id.
    pub task: Option<String>,
    /// The agent id (better left to the environment or the default: the file is shared).
    pub agent: Option<String>,
    /// Lease length, seconds (1–3600).
    pub lease_sec: Option<i64>,
    /// Publish each edited file's new content to the gateway.
    pub publish: Option<bool>,
    /// `allow` or `deny`.
    pub on_unreachable: Option<Policy>,
    /// Upper bound of one hook's answer, seconds.
    pub timeout_sec: Option<f64>,
    /// Release the session's leases when Claude Code stops (end of each turn).
    pub release_on_stop: Option<bool>,
}

impl FileConfig {
    /// The checkout's file; an absent file is the empty configuration.
    pub fn load(checkout: &Checkout) -> Result<FileConfig, ClientError> {
        let path = checkout.root.join(CONFIG_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text)
                .map_err(|e| ClientError::Config(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(FileConfig::default()),
            Err(e) => Err(ClientError::Config(format!("{}: {e}", path.display()))),
        }
    }
}

/// The resolved settings for one checkout.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The gateway's base URL.
    pub url: String,
    /// The bearer token, if any (from the environment or `--token`, never from the file).
    pub token: Option<String>,
    /// The agent the leases are claimed for.
    pub agent: String,
    /// The task the repository maps to.
    pub task: String,
    /// Lease length, seconds.
    pub lease_sec: i64,
    /// Publish each edited file's new content to the gateway.
    pub publish: bool,
    /// What to do with an edit when the gateway cannot decide.
    pub on_unreachable: Policy,
    /// Upper bound of one hook's (or the guard's) whole exchange with the gateway.
    pub timeout: Duration,
    /// Release the session's leases when Claude Code stops (default true).
    pub release_on_stop: bool,
}

impl Settings {
    /// Resolves the settings of `checkout` (see the module documentation for the order).
    pub fn resolve(
        g: &Global,
        a: &AgentArgs,
        checkout: &Checkout,
    ) -> Result<Settings, ClientError> {
        let file = FileConfig::load(checkout)?;
        let nonempty = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
        let url = nonempty(&g.url)
            .or(file.url)
            .unwrap_or_else(|| mcp_agent_client::config::DEFAULT_GATEWAY_URL.to_owned());
        let token = nonempty(&g.token);
        let agent = match nonempty(&g.agent).or(file.agent) {
            Some(a) => a,
            None => match token.as_deref().and_then(token_agent) {
                Some(a) => a,
                None => format!(
                    "claude-{}",
                    sanitize_id(&checkout.worktree_name(), "checkout")
                ),
            },
        };
        if !mcp_api::names::is_valid_id(&agent) {
            return Err(ClientError::Config(format!(
                "agent id {agent:?} must be 1-128 characters of [A-Za-z0-9._:@-]"
            )));
        }
        let task = task_id(
            nonempty(&a.task).or(file.task).as_deref().unwrap_or("repo"),
            checkout,
        )?;
        let lease_sec = a.lease_sec.or(file.lease_sec).unwrap_or(DEFAULT_LEASE_SEC);
        if !(1..=3600).contains(&lease_sec) {
            return Err(ClientError::Config(format!(
                "lease_sec must be between 1 and 3600, got {lease_sec}"
            )));
        }
        let timeout = match &a.hook_timeout {
            Some(t) => mcp_agent_client::config::parse_seconds("--hook-timeout", t)?,
            None => {
                let s = file.timeout_sec.unwrap_or(DEFAULT_HOOK_TIMEOUT_SEC);
                mcp_agent_client::config::parse_seconds("timeout_sec", &s.to_string())?
            }
        };
        Ok(Settings {
            url,
            token,
            agent,
            task,
            lease_sec,
            publish: a.publish.or(file.publish).unwrap_or(false),
            on_unreachable: a.on_unreachable.or(file.on_unreachable).unwrap_or_default(),
            timeout,
            release_on_stop: file.release_on_stop.unwrap_or(true),
        })
    }

    /// A client that gives up quickly: each request bounded by the hook's time limit, one
    /// retry of a refused connection or a 503 (a hook answers within seconds; the policy
    /// decides past that).
    pub fn client(&self) -> Result<GatewayClient, ClientError> {
        let mut config = ClientConfig::new(self.url.clone())
            .with_timeout(self.timeout)
            .with_connect_timeout(self.timeout.min(Duration::from_secs(2)))
            .with_retry(RetryPolicy {
                max_attempts: 2,
                base_delay: Duration::from_millis(100),
                max_delay: Duration::from_millis(500),
                max_retry_after: Duration::from_secs(1),
            })
            .with_agent(self.agent.clone());
        config.token = self.token.clone();
        GatewayClient::new(config)
    }
}

/// The task of `checkout` for the mapping `raw`: `repo` (the repository's name), `branch`
/// (`<repo>:<branch>`; the repository's name on a detached HEAD), or a task id as it is.
pub fn task_id(raw: &str, checkout: &Checkout) -> Result<String, ClientError> {
    let repo = sanitize_id(&checkout.repo_name(), "repo");
    let task = match raw.trim() {
        "repo" => repo,
        "branch" => match checkout.branch() {
            Some(b) => sanitize_id(&format!("{repo}:{b}"), "repo"),
            None => repo,
        },
        other => other.to_owned(),
    };
    if mcp_api::names::is_valid_id(&task) {
        Ok(task)
    } else {
        Err(ClientError::Config(format!(
            "task {task:?} must be `repo`, `branch`, or 1-128 characters of [A-Za-z0-9._:@-]"
        )))
    }
}

/// The agent a bearer token names (its `agent_id`, else `sub`), read without verifying it
/// (the gateway verifies; this only says who "I" am when comparing lease holders).
pub fn token_agent(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims
        .get("agent_id")
        .or_else(|| claims.get("sub"))
        .and_then(|v| v.as_str())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_its_agent() {
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"agent_id":"coder-1","exp":1}"#);
        assert_eq!(
            token_agent(&format!("h.{claims}.sig")).as_deref(),
            Some("coder-1")
        );
        let sub = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"sub":"s"}"#);
        assert_eq!(token_agent(&format!("h.{sub}.sig")).as_deref(), Some("s"));
        assert_eq!(token_agent("not-a-jwt"), None);
    }

    #[test]
    fn the_file_refuses_unknown_keys() {
        assert!(toml::from_str::<FileConfig>("task = \"repo\"\npublish = true").is_ok());
        assert!(toml::from_str::<FileConfig>("tsak = \"repo\"").is_err());
        let f: FileConfig = toml::from_str("on_unreachable = \"deny\"").unwrap();
        assert_eq!(f.on_unreachable, Some(Policy::Deny));
    }
}
