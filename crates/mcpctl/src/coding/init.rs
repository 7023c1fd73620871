//! `mcpctl init claude` and `mcpctl init git`: install the hooks into a repository.
//! Both are idempotent (a second run changes nothing and says so) and merge with what is
//! there.
//!
//! `init claude` writes, at the checkout's root:
//! * `.claude/settings.json`: `mcpctl hook claude` on `PreToolUse` and `PostToolUse` (matcher
//!   `Edit|Write|MultiEdit|NotebookEdit`), `SessionStart`, `Stop` and `SessionEnd`. Other
//!   keys and other hooks are kept; an entry of ours (a command ending in `hook claude`) is
//!   updated in place rather than added twice.
//! * `.mcp.json`: the gateway as the MCP server `mcp-gateway` (`{type: "http", url}`; with a
//!   token configured, an `Authorization` header that expands `${MCP_GATEWAY_TOKEN}` when
//!   Claude Code reads it — the token itself is never written).
//! * `.mcp-gateway.toml`, when absent: the repository's settings with the task spelled out,
//!   so every clone and worktree maps to the same task.
//!
//! `init git` installs `mcpctl guard` as the `pre-commit` hook in the hooks directory
//! `git rev-parse --git-path hooks` names — the common one, shared by every worktree (or
//! `core.hooksPath`). A pre-commit hook that is not ours is left alone (exit 4, saying how to
//! chain it) unless `--force`, which keeps it as `pre-commit.orig` and runs it first.

use super::claude::TOOL_MATCHER;
use super::config::{CONFIG_FILE, Settings};
use super::repo::Checkout;
use crate::cli::{AgentArgs, Global};
use crate::{EXIT_CONFLICT, EXIT_OK, Out};
use mcp_agent_client::ClientError;
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};

/// The first line that marks a `pre-commit` hook as ours.
const GIT_HOOK_MARKER: &str = "# mcp-gateway guard, installed by `mcpctl init git`";

/// What happened to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Created,
    Updated,
    Unchanged,
}

impl Change {
    fn as_str(self) -> &'static str {
        match self {
            Change::Created => "created",
            Change::Updated => "updated",
            Change::Unchanged => "unchanged",
        }
    }
}

fn checkout_of(dir: Option<&Path>) -> Result<Checkout, ClientError> {
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None => std::env::current_dir()?,
    };
    Checkout::find(&dir)
        .ok_or_else(|| ClientError::Config(format!("{} is not in a git repository", dir.display())))
}

/// `command` as one shell word (Claude Code and git run hooks through a shell).
fn shell_word(command: &str) -> String {
    let plain = !command.is_empty()
        && command
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:@,".contains(c));
    if plain {
        command.to_owned()
    } else {
        format!("'{}'", command.replace('\'', r"'\''"))
    }
}

/// Writes `text` to `path` when it differs from what is there.
fn write_if_changed(path: &Path, text: &str) -> Result<Change, ClientError> {
    let change = match std::fs::read_to_string(path) {
        Ok(old) if old == text => return Ok(Change::Unchanged),
        Ok(_) => Change::Updated,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Change::Created,
        Err(e) => return Err(e.into()),
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, text)?;
    Ok(change)
}

/// A JSON file's object (an absent file is `{}`); anything but an object is refused.
fn read_json_object(path: &Path) -> Result<Map<String, Value>, ClientError> {
    match std::fs::read_to_string(path) {
        Ok(text) if text.trim().is_empty() => Ok(Map::new()),
        Ok(text) => match serde_json::from_str(&text) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) => Err(ClientError::Config(format!(
                "{} is not a JSON object; not changed",
                path.display()
            ))),
            Err(e) => Err(ClientError::Config(format!(
                "{} is not valid JSON ({e}); not changed",
                path.display()
            ))),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Map::new()),
        Err(e) => Err(e.into()),
    }
}

/// Merges `value` into the JSON file at `path` with `merge`; writes it only when it changed.
fn merge_json_file(
    path: &Path,
    merge: impl FnOnce(&mut Map<String, Value>) -> Result<(), ClientError>,
) -> Result<Change, ClientError> {
    let existed = path.exists();
    let before = read_json_object(path)?;
    let mut after = before.clone();
    merge(&mut after)?;
    if existed && after == before {
        return Ok(Change::Unchanged);
    }
    let mut text = serde_json::to_string_pretty(&Value::Object(after)).unwrap_or_default();
    text.push('\n');
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, text)?;
    Ok(if existed {
        Change::Updated
    } else {
        Change::Created
    })
}

/// Whether a hook command is `mcpctl hook claude` (under any path to the binary).
fn is_our_hook(hook: &Value) -> bool {
    hook.get("command")
        .and_then(Value::as_str)
        .is_some_and(|c| c.trim_end().ends_with(" hook claude"))
}

/// Puts our hook into `settings.hooks[event]`: updates an entry of ours in place, else adds
/// a matcher group of its own.
fn merge_hook(
    hooks: &mut Map<String, Value>,
    event: &str,
    matcher: Option<&str>,
    hook: &Value,
) -> Result<(), ClientError> {
    let groups = hooks
        .entry(event.to_owned())
        .or_insert_with(|| Value::Array(Vec::new()));
    let Value::Array(groups) = groups else {
        return Err(ClientError::Config(format!(
            "hooks.{event} in .claude/settings.json is not a list; not changed"
        )));
    };
    let same_matcher = |g: &Value| g.get("matcher").and_then(Value::as_str) == matcher;
    let mut placed = false;
    for group in groups.iter_mut() {
        let fits = same_matcher(group);
        let Some(Value::Array(list)) = group.get_mut("hooks") else {
            continue;
        };
        let ours = if fits && !placed {
            list.iter_mut().find(|h| is_our_hook(h))
        } else {
            None
        };
        if let Some(ours) = ours {
            *ours = hook.clone();
            placed = true;
            // Any second copy in this group goes.
            let mut seen = false;
            list.retain(|h| !is_our_hook(h) || !std::mem::replace(&mut seen, true));
            continue;
        }
        // Ours under another matcher (or a duplicate): removed, ours is placed once.
        list.retain(|h| !is_our_hook(h));
    }
    groups.retain(|g| {
        g.get("hooks")
            .and_then(Value::as_array)
            .is_none_or(|l| !l.is_empty())
    });
    if !placed {
        let mut group = Map::new();
        if let Some(m) = matcher {
            group.insert("matcher".into(), Value::String(m.to_owned()));
        }
        group.insert("hooks".into(), Value::Array(vec![hook.clone()]));
        groups.push(Value::Object(group));
    }
    Ok(())
}

/// The hook events `init claude` installs, with their matcher.
const EVENTS: &[(&str, Option<&str>)] = &[
    ("PreToolUse", Some(TOOL_MATCHER)),
    ("PostToolUse", Some(TOOL_MATCHER)),
    ("SessionStart", None),
    ("Stop", None),
    ("SessionEnd", None),
];

/// `mcpctl init claude`.
pub fn init_claude(
    g: &Global,
    a: &AgentArgs,
    dir: Option<&Path>,
    command: &str,
    claude_timeout: u64,
    out: Out,
) -> Result<u8, ClientError> {
    let checkout = checkout_of(dir)?;
    let settings = Settings::resolve(g, a, &checkout)?;
    let root = &checkout.root;
    let hook = json!({
        "type": "command",
        "command": format!("{} hook claude", shell_word(command)),
        "timeout": claude_timeout,
    });
    let settings_path = root.join(".claude").join("settings.json");
    let claude = merge_json_file(&settings_path, |m| {
        let hooks = m
            .entry("hooks")
            .or_insert_with(|| Value::Object(Map::new()));
        let Value::Object(hooks) = hooks else {
            return Err(ClientError::Config(
                "`hooks` in .claude/settings.json is not an object; not changed".into(),
            ));
        };
        for (event, matcher) in EVENTS {
            merge_hook(hooks, event, *matcher, &hook)?;
        }
        Ok(())
    })?;

    let mcp_path = root.join(".mcp.json");
    let url = format!("{}/mcp", settings.url.trim_end_matches('/'));
    let with_token = settings.token.is_some();
    let mcp = merge_json_file(&mcp_path, |m| {
        let servers = m
            .entry("mcpServers")
            .or_insert_with(|| Value::Object(Map::new()));
        let Value::Object(servers) = servers else {
            return Err(ClientError::Config(
                "`mcpServers` in .mcp.json is not an object; not changed".into(),
            ));
        };
        let entry = servers
            .entry("mcp-gateway")
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        if let Value::Object(e) = entry {
            e.insert("type".into(), json!("http"));
            e.insert("url".into(), json!(url));
            if with_token {
                let headers = e
                    .entry("headers")
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(h) = headers {
                    h.insert("Authorization".into(), json!("Bearer ${MCP_GATEWAY_TOKEN}"));
                }
            }
        }
        Ok(())
    })?;

    let config_path = root.join(CONFIG_FILE);
    let config = if config_path.exists() {
        Change::Unchanged
    } else {
        let task = a.task.clone().unwrap_or_else(|| settings.task.clone());
        write_if_changed(&config_path, &config_file(&settings, &task))?
    };

    let files = [
        (settings_path, claude),
        (mcp_path, mcp),
        (config_path, config),
    ];
    report(&files, root, out);
    Ok(EXIT_OK)
}

/// The text of a new [`CONFIG_FILE`].
fn config_file(s: &Settings, task: &str) -> String {
    format!(
        r#"# How this repository's Claude Code hooks (`mcpctl hook claude`) and pre-commit guard
# (`mcpctl guard`) reach the MCP Gateway; see docs/CODING_AGENTS.md. The environment
# overrides each key (MCP_GATEWAY_URL, MCP_HOOK_TASK, MCP_HOOK_LEASE_SEC, MCP_HOOK_PUBLISH,
# MCP_HOOK_ON_UNREACHABLE, MCP_HOOK_TIMEOUT); the agent id is MCP_AGENT_ID, else
# `claude-<worktree directory name>`; the token is MCP_GATEWAY_TOKEN (never put it here).
url = "{url}"
# The task every clone and worktree of this repository shares, so their leases exclude each
# other ("branch": one task per branch, `<repo>:<branch>`).
task = "{task}"
# Lease length in seconds; each edit renews it.
lease_sec = {lease}
# Publish each edited file's new content to the gateway (file_write with the lease's fence).
publish = {publish}
# When the gateway cannot answer in time: "allow" the edit with a warning, or "deny" it.
on_unreachable = "{policy}"
# Upper bound of one hook's answer, seconds.
timeout_sec = {timeout}
# Release the session's leases when Claude Code stops (each turn's end), not only when the
# session ends.
release_on_stop = {release}
"#,
        url = s.url,
        lease = s.lease_sec,
        publish = s.publish,
        policy = s.on_unreachable.as_str(),
        timeout = s.timeout.as_secs_f64(),
        release = s.release_on_stop,
    )
}

fn report(files: &[(PathBuf, Change)], root: &Path, out: Out) {
    let shown = |p: &Path| {
        p.strip_prefix(root)
            .unwrap_or(p)
            .to_string_lossy()
            .into_owned()
    };
    let list: Vec<Value> = files
        .iter()
        .map(|(p, c)| json!({"path": p.display().to_string(), "change": c.as_str()}))
        .collect();
    out.emit(&json!({"success": true, "files": list}), || {
        files
            .iter()
            .map(|(p, c)| format!("{:<9} {}", c.as_str(), shown(p)))
            .collect::<Vec<_>>()
            .join("\n")
    });
}

/// The `pre-commit` hook's text.
fn git_hook(command: &str) -> String {
    format!(
        r#"#!/bin/sh
{GIT_HOOK_MARKER}
# Refuses a commit that touches files another agent leases (docs/CODING_AGENTS.md).
# A hook that was here before runs first (pre-commit.orig). Skip once: git commit --no-verify.
hooks=$(dirname "$0")
if [ -x "$hooks/pre-commit.orig" ]; then
  "$hooks/pre-commit.orig" "$@" || exit $?
fi
exec {} guard
"#,
        shell_word(command)
    )
}

/// `mcpctl init git`.
pub fn init_git(
    dir: Option<&Path>,
    command: &str,
    force: bool,
    out: Out,
) -> Result<u8, ClientError> {
    let checkout = checkout_of(dir)?;
    let git = std::process::Command::new("git")
        .arg("-C")
        .arg(&checkout.root)
        .args(["rev-parse", "--git-path", "hooks"])
        .output()?;
    if !git.status.success() {
        return Err(ClientError::Config(format!(
            "git rev-parse --git-path hooks failed: {}",
            String::from_utf8_lossy(&git.stderr).trim()
        )));
    }
    let hooks_dir = checkout
        .root
        .join(String::from_utf8_lossy(&git.stdout).trim());
    let hook_path = hooks_dir.join("pre-commit");
    let text = git_hook(command);
    let foreign = std::fs::read_to_string(&hook_path).is_ok_and(|t| !t.contains(GIT_HOOK_MARKER));
    if foreign {
        let orig = hooks_dir.join("pre-commit.orig");
        if !force || orig.exists() {
            let detail = format!(
                "{} exists and is not mcpctl's; not changed. Add `{} guard || exit $?` to it, or run `mcpctl init git --force` to keep it as pre-commit.orig (run first) and install the guard{}",
                hook_path.display(),
                shell_word(command),
                if orig.exists() {
                    " (pre-commit.orig exists already: move it away first)"
                } else {
                    ""
                }
            );
            if out.json {
                println!(
                    "{}",
                    json!({"success": false, "error": {"code": "already_exists", "detail": detail}})
                );
            }
            eprintln!("mcpctl: {detail}");
            return Ok(EXIT_CONFLICT);
        }
        std::fs::rename(&hook_path, &orig)?;
        out.progress(format!("kept the previous hook as {}", orig.display()));
    }
    let change = write_if_changed(&hook_path, &text)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&hook_path, std::fs::Permissions::from_mode(0o755))?;
    }
    report(&[(hook_path, change)], &checkout.root, out);
    Ok(EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words() {
        assert_eq!(shell_word("mcpctl"), "mcpctl");
        assert_eq!(shell_word("/usr/local/bin/mcpctl"), "/usr/local/bin/mcpctl");
        assert_eq!(shell_word("/my tools/mcpctl"), "'/my tools/mcpctl'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
    }

    #[test]
    fn our_hook_is_placed_once_and_moves_to_its_matcher() {
        let hook = json!({"type": "command", "command": "mcpctl hook claude", "timeout": 10});
        let mut hooks = Map::new();
        hooks.insert(
            "PreToolUse".into(),
            json!([
                {"matcher": "Bash", "hooks": [{"type": "command", "command": "check.sh"},
                                               {"type": "command", "command": "/old/mcpctl hook claude"}]},
            ]),
        );
        merge_hook(&mut hooks, "PreToolUse", Some(TOOL_MATCHER), &hook).unwrap();
        let once = hooks.clone();
        merge_hook(&mut hooks, "PreToolUse", Some(TOOL_MATCHER), &hook).unwrap();
        assert_eq!(hooks, once, "idempotent");
        assert_eq!(
            hooks["PreToolUse"],
            json!([
                {"matcher": "Bash", "hooks": [{"type": "command", "command": "check.sh"}]},
                {"matcher": TOOL_MATCHER, "hooks": [hook]},
            ])
        );
    }
}
