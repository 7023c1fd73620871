//! Coding agents on local checkouts (docs/CODING_AGENTS.md): leases enforced inside Claude
//! Code by its hooks, and a pre-commit guard for every other agent.
//!
//! * `repo.rs` — a file's checkout and its path relative to the checkout's root (the lease
//!   key, the same in every worktree and clone), read from `.git` without starting `git`.
//! * `config.rs` — gateway, agent, task mapping (`repo`/`branch`/an id), lease length,
//!   publishing and the unreachable-gateway policy, from flags/environment and
//!   `.mcp-gateway.toml`.
//! * `state.rs` — the leases each Claude Code session took (released at its end).
//! * `claude.rs` — `mcpctl hook claude`: one hook event in, Claude Code's answer out.
//! * `guard.rs` — `mcpctl guard`: refuses a commit of files another agent leases.
//! * `init.rs` — `mcpctl init claude` (`.claude/settings.json`, `.mcp.json`,
//!   `.mcp-gateway.toml`) and `mcpctl init git` (the pre-commit hook).
//!
//! These commands build their own client (short timeouts, one retry) instead of the global
//! one: a hook answers within seconds, whatever `MCP_GATEWAY_TIMEOUT` says.

pub mod claude;
pub mod config;
pub mod guard;
pub mod init;
pub mod repo;
pub mod state;
