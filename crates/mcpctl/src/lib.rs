//! `mcpctl`: the gateway from a shell, built on `mcp-agent-client`.
//!
//! * `cli.rs` — the commands and options (clap; every global option has an environment
//!   variable, the same ones the agent client reads).
//! * `commands.rs` — health, tasks, files, locks, logs: one client call each, printed.
//! * `live.rs` — `logs follow` and `watch`: live events over the client's resuming
//!   subscription.
//! * `checkout.rs` — a task's files into a directory, kept in sync with `--follow`.
//! * `demo.rs` — `mcpctl demo`: a Coder and a QA agent at work, to watch in the console.
//!
//! Output is text for humans by default and JSON with `--json` (one object per command; one
//! object per line for streams). Errors go to stderr (and, with `--json`, as
//! `{"success": false, "error": {…}}` to stdout); the exit code says what kind of failure it
//! was ([`exit_code`], documented in `--help`).

pub mod checkout;
pub mod cli;
pub mod commands;
pub mod demo;
pub mod live;

use cli::{Cli, Command};
use mcp_agent_client::{
    ClientConfig, ClientError, ErrorCode, GatewayClient, RetryPolicy, config::parse_seconds,
};
use serde_json::{Value, json};
use std::process::ExitCode;

/// Success.
pub const EXIT_OK: u8 = 0;
/// Any failure not listed below: internal error, unexpected answer, local I/O.
pub const EXIT_FAILURE: u8 = 1;
/// Usage error (bad flags, bad configuration).
pub const EXIT_USAGE: u8 = 2;
/// The task, file, agent or route does not exist.
pub const EXIT_NOT_FOUND: u8 = 3;
/// A conflict: locked, version conflict, stale fence, lock not held, edit no match or
/// ambiguous, already exists.
pub const EXIT_CONFLICT: u8 = 4;
/// Invalid input: a bad argument or path, too large.
pub const EXIT_INVALID: u8 = 5;
/// The gateway is unavailable: unreachable, 503, rate limited, retries exhausted.
pub const EXIT_UNAVAILABLE: u8 = 6;
/// Unauthorized or forbidden.
pub const EXIT_DENIED: u8 = 7;

/// The exit code of a failure.
pub fn exit_code(e: &ClientError) -> u8 {
    if matches!(e, ClientError::Config(_)) {
        return EXIT_USAGE;
    }
    use ErrorCode::*;
    match e.code() {
        TaskNotFound | FileNotFound | AgentNotFound | NotFound => EXIT_NOT_FOUND,
        VersionConflict | Locked | StaleFence | LeaseRequired | LockNotHeld | EditNoMatch
        | EditAmbiguous | AlreadyExists => EXIT_CONFLICT,
        InvalidArgument | InvalidPath | TooLarge | QuotaExceeded => EXIT_INVALID,
        Unavailable | RateLimited | RequestTimeout => EXIT_UNAVAILABLE,
        Unauthorized | Forbidden => EXIT_DENIED,
        // `method_not_allowed`, `internal`, and codes of a newer gateway.
        _ => EXIT_FAILURE,
    }
}

/// How to print.
#[derive(Debug, Clone, Copy)]
pub struct Out {
    pub json: bool,
    pub quiet: bool,
}

impl Out {
    /// Prints a result: `value` with `--json`, else the text `human` makes.
    pub fn emit(&self, value: &Value, human: impl FnOnce() -> String) {
        if self.json {
            println!("{value}");
        } else {
            let text = human();
            if !text.is_empty() {
                println!("{text}");
            }
        }
    }

    /// A progress message on stderr (not with `--quiet`).
    pub fn progress(&self, msg: impl std::fmt::Display) {
        if !self.quiet {
            eprintln!("{msg}");
        }
    }
}

/// Builds the client from the global options.
pub fn client(g: &cli::Global) -> Result<GatewayClient, ClientError> {
    let mut config = ClientConfig::new(g.url.clone())
        .with_timeout(parse_seconds("--timeout", &g.timeout)?)
        .with_retry(RetryPolicy::attempts(g.retries));
    config.token = g.token.clone().filter(|t| !t.is_empty());
    config.agent_id = g.agent.clone().filter(|a| !a.is_empty());
    GatewayClient::new(config)
}

/// Runs a parsed command line; returns the process exit code.
pub async fn run(cli: Cli) -> ExitCode {
    let out = Out {
        json: cli.global.json,
        quiet: cli.global.quiet,
    };
    let result = match client(&cli.global) {
        Ok(c) => dispatch(&c, cli.command, out).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            report(&e, out);
            ExitCode::from(exit_code(&e))
        }
    }
}

async fn dispatch(c: &GatewayClient, cmd: Command, out: Out) -> Result<u8, ClientError> {
    match cmd {
        Command::Health => commands::health(c, out).await,
        Command::Task(t) => commands::task(c, t, out).await,
        Command::File(f) => commands::file(c, f, out).await,
        Command::Lock(l) => commands::lock(c, l, out).await,
        Command::Logs(l) => live::logs(c, l, out).await,
        Command::Watch {
            task,
            types,
            since,
            count,
        } => live::watch(c, &task, types, since, count, out).await,
        Command::Checkout {
            task,
            dir,
            prefix,
            follow,
            count,
        } => checkout::checkout(c, &task, &dir, prefix.as_deref(), follow, count, out).await,
        Command::Demo { task, pace_ms } => {
            let task = task.unwrap_or_else(|| format!("demo-{}", demo_suffix()));
            demo::demo(c, &task, std::time::Duration::from_millis(pace_ms), out).await
        }
    }
}

/// A short suffix that makes a demo's task id new (seconds and nanoseconds of now, base 36).
fn demo_suffix() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut n = now.as_secs() % 1_000_000 * 1000 + u64::from(now.subsec_millis());
    let mut s = String::new();
    while n > 0 {
        s.insert(0, char::from_digit((n % 36) as u32, 36).unwrap_or('0'));
        n /= 36;
    }
    s
}

/// Prints a failure: a sentence on stderr, and with `--json` the error object on stdout.
pub fn report(e: &ClientError, out: Out) {
    if out.json {
        println!("{}", json!({"success": false, "error": e.to_json()}));
    }
    eprintln!("mcpctl: {e}");
}
