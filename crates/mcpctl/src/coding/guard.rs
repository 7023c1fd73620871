//! `mcpctl guard`: the pre-commit check for agents without hooks of their own (Codex,
//! Cursor, a person): refuses a commit whose staged files another agent leases.
//!
//! The staged paths (`git diff --cached --name-only`, renames as a delete and an add, so
//! both names count) are relative to the repository's root, as the leases are. A lease held
//! by this checkout's own agent (see `config.rs`) does not count; a directory lease
//! (`src/api/`) covers everything beneath it. Exit 0 allows the commit, 4 refuses it (the
//! files, holders and expiries on stderr); when the gateway cannot answer in time the
//! configured policy decides (`allow`: a warning, exit 0; `deny`: exit 6).

use super::config::{Policy, Settings};
use super::repo::Checkout;
use crate::cli::{AgentArgs, Global};
use crate::{EXIT_CONFLICT, EXIT_FAILURE, EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE};
use mcp_agent_client::requests::ListLeasesRequest;
use std::process::ExitCode;

/// Runs the check in the checkout holding the current directory.
pub async fn run(g: &Global, a: &AgentArgs) -> ExitCode {
    ExitCode::from(check(g, a).await)
}

async fn check(g: &Global, a: &AgentArgs) -> u8 {
    let cwd = std::env::current_dir().unwrap_or_default();
    let Some(checkout) = Checkout::find(&cwd) else {
        eprintln!("mcpctl guard: {} is not in a git repository", cwd.display());
        return EXIT_USAGE;
    };
    let staged = match staged_paths(&checkout) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("mcpctl guard: cannot list the staged files: {e}");
            return EXIT_FAILURE;
        }
    };
    if staged.is_empty() {
        return EXIT_OK;
    }
    let settings = match Settings::resolve(g, a, &checkout) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("mcpctl guard: {e}");
            return EXIT_USAGE;
        }
    };
    let client = match settings.client() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mcpctl guard: {e}");
            return EXIT_USAGE;
        }
    };
    let listed = tokio::time::timeout(
        settings.timeout,
        client.list_leases(ListLeasesRequest::new(settings.task.clone())),
    )
    .await;
    let leases = match listed {
        Ok(Ok(l)) => l.leases,
        other => {
            let why = match other {
                Ok(Err(e)) => e.to_string(),
                _ => format!("no answer within {} s", settings.timeout.as_secs_f64()),
            };
            return match settings.on_unreachable {
                Policy::Allow => {
                    eprintln!(
                        "mcpctl guard: warning: leases not checked, the gateway could not answer ({why}); committing anyway (on_unreachable = allow)"
                    );
                    EXIT_OK
                }
                Policy::Deny => {
                    eprintln!(
                        "mcpctl guard: commit refused: the leases could not be checked ({why}) and on_unreachable = deny (git commit --no-verify skips this check)"
                    );
                    EXIT_UNAVAILABLE
                }
            };
        }
    };
    let mut conflicts = Vec::new();
    for path in &staged {
        for l in &leases {
            let covers = l.path == *path || (l.path.ends_with('/') && path.starts_with(&l.path));
            if covers && l.holder != settings.agent {
                conflicts.push(format!(
                    "  {path}: leased by {} until {} UTC",
                    l.holder,
                    l.expires_at.format("%H:%M:%S")
                ));
            }
        }
    }
    if conflicts.is_empty() {
        return EXIT_OK;
    }
    eprintln!(
        "mcpctl guard: commit refused: other agents are editing staged files (task {}, you are {}):\n{}\nWait until their leases end or ask them to release, or unstage those files (git restore --staged <file>). git commit --no-verify skips this check.",
        settings.task,
        settings.agent,
        conflicts.join("\n")
    );
    EXIT_CONFLICT
}

/// The staged paths, relative to the repository's root.
fn staged_paths(checkout: &Checkout) -> std::io::Result<Vec<String>> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(&checkout.root)
        .args([
            "diff",
            "--cached",
            "--name-only",
            "-z",
            "--no-renames",
            "--no-relative",
        ])
        .output()?;
    if !out.status.success() {
        return Err(std::io::Error::other(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ));
    }
    Ok(out
        .stdout
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect())
}
