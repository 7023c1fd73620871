//! The command line: global options (each with its environment variable) and the commands.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Command-line tool of the MCP Gateway: tasks, files, locks, logs, live events, checkouts.
///
/// Exit codes: 0 success; 1 other failure (internal error, unexpected answer, local I/O);
/// 2 usage error; 3 not found (task, file, agent, route); 4 conflict (locked, version
/// conflict, stale fence, lock not held, edit no match/ambiguous, already exists; a checkout
/// that would overwrite local edits); 5 invalid input (bad argument or path, too large);
/// 6 gateway unavailable (unreachable, 503, rate limited, retries exhausted); 7 unauthorized
/// or forbidden; 8 a streaming command's --timeout passed.
///
/// Unknown tasks: a task exists when it has a task row, a file or a log step. `checkout`,
/// `logs tail` and `task show` exit 3 for one that does not; `watch`, `logs follow` and
/// `checkout --follow` wait for it (saying so on stderr) until interrupted or --timeout.
///
/// Streaming commands (`watch`, `logs follow`, `checkout --follow`) say on stderr what the
/// connection does: connecting, each failed attempt and the wait before the next, a lost
/// connection, and where a reconnect resumed (not with --quiet).
#[derive(Debug, Parser)]
#[command(name = "mcpctl", version, about, long_about)]
pub struct Cli {
    /// The options every command takes.
    #[command(flatten)]
    pub global: Global,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Options of every command.
#[derive(Debug, Args)]
pub struct Global {
    /// Base URL of the gateway (default http://127.0.0.1:8001; for `hook`, `guard` and
    /// `init`, the `url` of the repository's `.mcp-gateway.toml` before that).
    #[arg(long, global = true, env = "MCP_GATEWAY_URL")]
    pub url: Option<String>,
    /// Bearer token (the gateway's JWT when authentication is on).
    #[arg(long, global = true, env = "MCP_GATEWAY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The acting agent (sent as `agent_id`; used while the gateway runs without authentication).
    #[arg(long, global = true, env = "MCP_AGENT_ID")]
    pub agent: Option<String>,
    /// Seconds. One-call commands: upper bound of each request (default 30). Streaming
    /// commands (`watch`, `logs follow`, `checkout --follow`): upper bound of the whole
    /// command, connecting and retrying included; when it passes they stop with exit 8
    /// (without it they run until interrupted or until --count).
    #[arg(long, global = true, env = "MCP_GATEWAY_TIMEOUT")]
    pub timeout: Option<String>,
    /// Attempts per call, the first included (1 = no retry).
    #[arg(long, global = true, env = "MCP_GATEWAY_RETRIES", default_value_t = 4)]
    pub retries: u32,
    /// Print JSON (one object, or one object per line for streams) instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// No progress messages on stderr.
    #[arg(long, short, global = true)]
    pub quiet: bool,
}

/// The commands of `mcpctl`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the gateway and its backends (exit 6 when unhealthy).
    Health,
    /// Print a shell completion script (e.g. `mcpctl completions bash >
    /// /etc/bash_completion.d/mcpctl`, or `source <(mcpctl completions zsh)`).
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff; `mcpctl man > mcpctl.1 && man ./mcpctl.1`).
    Man,
    /// A Coder and a QA agent working on a new task, colliding on a lease and resolving it;
    /// prints the console URL to watch it (the two agents act by `agent_id`, so it needs a
    /// gateway with authentication off, as the embedded default is).
    Demo {
        /// The task to create (default: a new `demo-…` id).
        #[arg(long)]
        task: Option<String>,
        /// Pause between steps, in milliseconds (0: as fast as the gateway answers).
        #[arg(long, default_value_t = 1200)]
        pace_ms: u64,
    },
    /// Create and show tasks.
    #[command(subcommand)]
    Task(TaskCommand),
    /// Read, write, edit, list and delete a task's files; their history, versions and diffs.
    #[command(subcommand)]
    File(FileCommand),
    /// Claim, renew, release and list file leases.
    #[command(subcommand)]
    Lock(LockCommand),
    /// A task's execution log.
    #[command(subcommand)]
    Logs(LogsCommand),
    /// Print a task's live events as they happen (until interrupted, --count or --timeout).
    Watch {
        /// The task to watch.
        task: String,
        /// Only these event types (comma-separated, e.g. `file_written,step_logged`).
        #[arg(long, value_delimiter = ',')]
        types: Vec<String>,
        /// Replay the events after this event id first (`0` = all that are kept).
        #[arg(long)]
        since: Option<String>,
        /// Stop after this many events.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Send a message to agents of a task, or to everyone on it (`--to '*'`).
    Send {
        /// The task whose agents receive it.
        task: String,
        /// Recipients: agent ids (comma-separated), or `*` for everyone on the task.
        #[arg(long, value_delimiter = ',', required = true)]
        to: Vec<String>,
        /// One line saying what it is about.
        #[arg(long, short)]
        subject: String,
        /// The message; read from standard input when absent.
        #[arg(long, short)]
        body: Option<String>,
        /// The conversation (default: that of --reply-to, else a new one).
        #[arg(long)]
        thread: Option<String>,
        /// The id of the message this one answers.
        #[arg(long)]
        reply_to: Option<i64>,
        /// low, normal, high or urgent.
        #[arg(long, value_parser = parse_importance)]
        importance: Option<mcp_api::requests::Importance>,
    },
    /// Print your unread messages (all tasks, or one); with --wait, wait for the first to
    /// arrive (a long poll, at most 60 s).
    Inbox {
        /// Only this task's messages.
        #[arg(long)]
        task: Option<String>,
        /// Seconds to wait for a message when none is there (0-60).
        #[arg(long)]
        wait: Option<f64>,
        /// Only messages after this cursor (printed on stderr by the previous call).
        #[arg(long)]
        after: Option<i64>,
        /// Most messages to print, 1-500 (default 100).
        #[arg(long, short = 'n')]
        limit: Option<usize>,
        /// Also the messages already acknowledged.
        #[arg(long)]
        all: bool,
        /// Acknowledge the messages printed (they are then no longer unread).
        #[arg(long)]
        ack: bool,
    },
    /// List agents, most recently seen first (`GET /resources/agents`).
    Agents {
        /// Only agents whose id contains this text.
        #[arg(long)]
        q: Option<String>,
        /// Only agents on this task.
        #[arg(long)]
        task: Option<String>,
        /// Page size, 1-200 (default 50).
        #[arg(long)]
        limit: Option<i64>,
        /// The next page: the cursor the previous page printed.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// The audit trail, newest first (`GET /admin/audit`; admin only with authentication on).
    Audit {
        /// Only records of this task.
        #[arg(long)]
        task: Option<String>,
        /// Only records of this acting agent.
        #[arg(long = "by")]
        by: Option<String>,
        /// Only this action (`file_write`, `claim_file`, ...).
        #[arg(long)]
        action: Option<String>,
        /// Only records at or after this time (RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// Only records with an id below this one (the next page).
        #[arg(long)]
        before_id: Option<i64>,
        /// How many, 1-1000 (default 100).
        #[arg(long, short = 'n')]
        limit: Option<i64>,
    },
    /// Answer one hook event of a coding agent (stdin → stdout), e.g. `mcpctl hook claude`.
    #[command(subcommand)]
    Hook(HookCommand),
    /// Refuse a commit whose staged files another agent leases (the pre-commit hook that
    /// `mcpctl init git` installs): exit 4 naming the files and holders, 0 otherwise.
    Guard {
        /// The repository's task, lease and gateway settings.
        #[command(flatten)]
        agent: AgentArgs,
    },
    /// Install the hooks into a repository (idempotent; merges with what is there).
    #[command(subcommand)]
    Init(InitCommand),
    /// Copy a task's files into a directory; with `--follow`, keep it in sync.
    ///
    /// Local edits are kept: a file changed in the directory since checkout wrote it (or
    /// there before, with other content) is not overwritten or removed; the checkout refuses
    /// with exit 4 and names the files (with --follow: that change is skipped, with a
    /// warning). --force overwrites them. What checkout wrote is recorded in
    /// `.mcpctl-checkout.json` in the directory.
    Checkout {
        /// The task whose files to copy.
        task: String,
        /// The directory to write into (created if missing).
        dir: PathBuf,
        /// Only files under this directory of the task.
        #[arg(long)]
        prefix: Option<String>,
        /// Keep applying the gateway's changes (writes, edits, deletes) until interrupted.
        #[arg(long)]
        follow: bool,
        /// With `--follow`: stop after this many applied (or skipped) changes.
        #[arg(long)]
        count: Option<u64>,
        /// Overwrite (and remove) files edited locally.
        #[arg(long)]
        force: bool,
    },
}

/// `mcpctl task`.
#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// Create a task (admin API).
    Create {
        /// The task id (generated when absent).
        #[arg(long)]
        id: Option<String>,
        /// A short title.
        #[arg(long, default_value = "")]
        title: String,
        /// A longer description.
        #[arg(long)]
        description: Option<String>,
        /// Initial status (default `pending`).
        #[arg(long)]
        status: Option<String>,
        /// Agent the task is assigned to.
        #[arg(long)]
        assign: Option<String>,
        /// An estimate of the task's complexity (any scale the team uses).
        #[arg(long)]
        complexity: Option<f64>,
    },
    /// Show a task's state (its task row; exit 3 when it has none).
    Show {
        /// The task id.
        task: String,
    },
    /// List tasks, most recently active first (`GET /resources/tasks`).
    List {
        /// Only tasks whose id or title contains this text.
        #[arg(long)]
        q: Option<String>,
        /// Only tasks with this status.
        #[arg(long)]
        status: Option<String>,
        /// Only tasks assigned to this agent or with it in their session.
        #[arg(long = "with-agent")]
        with_agent: Option<String>,
        /// Page size, 1-200 (default 50).
        #[arg(long)]
        limit: Option<i64>,
        /// The next page: the cursor the previous page printed.
        #[arg(long)]
        cursor: Option<String>,
    },
}

/// `mcpctl file`.
#[derive(Debug, Subcommand)]
pub enum FileCommand {
    /// Print a file's content.
    Read {
        /// The task id.
        task: String,
        /// The path in the task.
        path: String,
    },
    /// Write a file from `--content` or standard input.
    Write {
        /// The task id.
        task: String,
        /// The path in the task.
        path: String,
        /// The content; read from standard input when absent.
        #[arg(long)]
        content: Option<String>,
        /// Only if the file is at this version (0 = only if it does not exist).
        #[arg(long)]
        expected_version: Option<i64>,
        /// Present this lease fence (from `lock claim`).
        #[arg(long)]
        fence: Option<i64>,
    },
    /// Replace `--old` by `--new` in a file; prints the diff.
    Edit {
        /// The task id.
        task: String,
        /// The path in the task.
        path: String,
        /// The text to replace; it must occur exactly once unless --replace-all.
        #[arg(long)]
        old: String,
        /// The replacement text.
        #[arg(long)]
        new: String,
        /// Replace every occurrence.
        #[arg(long)]
        replace_all: bool,
        /// Only if the file is at this version.
        #[arg(long)]
        expected_version: Option<i64>,
        /// Present this lease fence (from `lock claim`).
        #[arg(long)]
        fence: Option<i64>,
    },
    /// List files (optionally under a directory).
    Ls {
        /// The task id.
        task: String,
        /// Only files under this directory.
        prefix: Option<String>,
    },
    /// A file's revisions, newest first: version, op, agent, fence, size, time.
    History {
        /// The task id.
        task: String,
        /// The path in the task.
        path: String,
        /// Only revisions older than this version (the previous page's last).
        #[arg(long)]
        before: Option<i64>,
        /// How many revisions (1-500).
        #[arg(long, short = 'n', default_value_t = 50)]
        limit: i64,
    },
    /// Print a file's content at one version (a deleted version prints nothing).
    Show {
        /// The task id.
        task: String,
        /// The path in the task.
        path: String,
        /// The version to print (see `file history`).
        #[arg(long)]
        version: i64,
    },
    /// Print the unified diff of a file from version FROM to version TO.
    Diff {
        /// The task id.
        task: String,
        /// The path in the task.
        path: String,
        /// The version to diff from.
        from: i64,
        /// The version to diff to.
        to: i64,
    },
    /// Delete a file.
    Rm {
        /// The task id.
        task: String,
        /// The path in the task.
        path: String,
        /// Only if the file is at this version.
        #[arg(long)]
        expected_version: Option<i64>,
        /// Present this lease fence (from `lock claim`).
        #[arg(long)]
        fence: Option<i64>,
    },
}

/// `mcpctl lock`.
#[derive(Debug, Subcommand)]
pub enum LockCommand {
    /// Take (or refresh) the lease on a path.
    Claim {
        /// The task id.
        task: String,
        /// The path in the task.
        path: String,
        /// Lease length, seconds (the gateway's default when absent).
        #[arg(long)]
        ttl: Option<i64>,
        /// Wait up to SECS (0-60) in the path's queue while another agent holds it.
        #[arg(long, value_name = "SECS")]
        wait: Option<i64>,
        /// Lease the directory PATH and everything beneath it.
        #[arg(long)]
        recursive: bool,
    },
    /// Extend a lease you hold.
    Renew {
        /// The task id.
        task: String,
        /// The path in the task.
        path: String,
        /// New lease length, seconds (the lease keeps its own length when absent).
        #[arg(long)]
        ttl: Option<i64>,
        /// The lease is a directory lease.
        #[arg(long)]
        recursive: bool,
    },
    /// Release a lease you hold (`--force`: whoever holds it; admin only).
    Release {
        /// The task id.
        task: String,
        /// The path in the task.
        path: String,
        /// Release it whoever holds it (admin only).
        #[arg(long)]
        force: bool,
        /// The lease is a directory lease.
        #[arg(long)]
        recursive: bool,
    },
    /// List a task's live leases: path (a directory's ends in `/`), holder, fence, expiry,
    /// time left, waiters.
    List {
        /// The task id.
        task: String,
    },
}

/// `mcpctl logs`.
#[derive(Debug, Subcommand)]
pub enum LogsCommand {
    /// Print the newest steps, oldest first (exit 3 for a task that does not exist).
    Tail {
        /// The task id.
        task: String,
        /// How many steps (1-1000).
        #[arg(long, short = 'n', default_value_t = 20)]
        limit: usize,
    },
    /// Print the newest steps, then new ones as they are logged (until interrupted).
    Follow {
        /// The task id.
        task: String,
        /// How many past steps to print first.
        #[arg(long, short = 'n', default_value_t = 20)]
        limit: usize,
        /// Stop after this many new steps.
        #[arg(long)]
        count: Option<u64>,
    },
}

/// `--importance`: one of the four levels.
fn parse_importance(s: &str) -> Result<mcp_api::requests::Importance, String> {
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .map_err(|_| format!("'{s}' is not one of low, normal, high, urgent"))
}

/// The settings of the coding-agent commands (`hook`, `guard`, `init`) beside the global
/// ones; each overrides the repository's `.mcp-gateway.toml` (docs/CODING_AGENTS.md).
#[derive(Debug, Clone, Default, Args)]
pub struct AgentArgs {
    /// The task the repository maps to: `repo` (one task for every clone and worktree, the
    /// default), `branch` (`<repo>:<branch>`), or a task id.
    #[arg(long, env = "MCP_HOOK_TASK")]
    pub task: Option<String>,
    /// Lease length, seconds (1-3600, default 300); each edit renews it.
    #[arg(long, env = "MCP_HOOK_LEASE_SEC")]
    pub lease_sec: Option<i64>,
    /// Publish each edited file's new content to the gateway (`true`/`false`, default false).
    #[arg(long, env = "MCP_HOOK_PUBLISH", value_parser = clap::builder::BoolishValueParser::new())]
    pub publish: Option<bool>,
    /// When the gateway cannot answer in time: `allow` the edit with a warning (default) or
    /// `deny` it.
    #[arg(long, env = "MCP_HOOK_ON_UNREACHABLE", value_enum)]
    pub on_unreachable: Option<crate::coding::config::Policy>,
    /// Upper bound of the whole answer, seconds (default 5).
    #[arg(long, env = "MCP_HOOK_TIMEOUT")]
    pub hook_timeout: Option<String>,
}

/// `mcpctl hook`: one subcommand per coding agent.
#[derive(Debug, Subcommand)]
pub enum HookCommand {
    /// A Claude Code hook event on stdin, Claude Code's answer on stdout: PreToolUse of
    /// Edit/Write/MultiEdit/NotebookEdit claims the file (denied, naming the holder, when
    /// another agent holds it), PostToolUse logs a step (and publishes with `--publish`),
    /// SessionStart joins the task, Stop and SessionEnd release the session's leases.
    Claude {
        /// The repository's task, lease and gateway settings.
        #[command(flatten)]
        agent: AgentArgs,
    },
}

/// `mcpctl init`: one subcommand per tool to install hooks into.
#[derive(Debug, Subcommand)]
pub enum InitCommand {
    /// Write the hooks into `.claude/settings.json`, the gateway into `.mcp.json`, and
    /// `.mcp-gateway.toml` when absent, at the repository's root.
    Claude {
        /// A directory in the repository (default: the current one).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// How the hooks start mcpctl (a name on PATH, or a path).
        #[arg(long, default_value = "mcpctl")]
        command: String,
        /// Seconds Claude Code waits for a hook before going on without it.
        #[arg(long, default_value_t = 10)]
        claude_timeout: u64,
        /// The settings written into `.mcp-gateway.toml` when it is created.
        #[command(flatten)]
        agent: AgentArgs,
    },
    /// Install `mcpctl guard` as the pre-commit hook, in the hooks directory every worktree
    /// of the repository shares.
    Git {
        /// A directory in the repository (default: the current one).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// How the hook starts mcpctl (a name on PATH, or a path).
        #[arg(long, default_value = "mcpctl")]
        command: String,
        /// Replace a pre-commit hook that is not mcpctl's (it is kept as pre-commit.orig
        /// and run first).
        #[arg(long)]
        force: bool,
    },
}
