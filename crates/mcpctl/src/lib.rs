//! `mcpctl`: the gateway from a shell, built on `mcp-agent-client`.
//!
//! * `cli.rs` — the commands and options (clap; every global option has an environment
//!   variable, the same ones the agent client reads).
//! * `commands.rs` — health, tasks, files, locks, logs: one client call each, printed.
//! * `live.rs` — `logs follow` and `watch`: live events over the client's resuming
//!   subscription; what the stream is doing (connecting, retrying, resumed) on stderr.
//! * `checkout.rs` — a task's files into a directory, kept in sync with `--follow`; local
//!   edits are never overwritten without `--force`.
//! * `lists.rs` — `task list`, `agents`, `audit`: tables over the gateway's list routes.
//! * `demo.rs` — `mcpctl demo`: a Coder and a QA agent at work, to watch in the console.
//! * `messages.rs` — `send` and `inbox` (with `--wait`, a long poll): messages between agents.
//! * `coding/` — `hook claude`, `guard`, `init claude|git`: leases enforced inside Claude
//!   Code and at `git commit` for agents editing local checkouts (docs/CODING_AGENTS.md).
//!
//! Unknown tasks, one rule: a task exists when it has a task row, a file or a log step
//! ([`task_exists`]). Commands that read a snapshot (`checkout`, `logs tail`, `task show`)
//! exit 3 for a task that does not; commands that follow a task (`watch`, `logs follow`,
//! `checkout --follow`) wait for it, saying so on stderr, until `--timeout` (exit 8).
//!
//! Output is text for humans by default and JSON with `--json` (one object per command; one
//! object per line for streams). Errors go to stderr (and, with `--json`, as
//! `{"success": false, "error": {…}}` to stdout); the exit code says what kind of failure it
//! was ([`exit_code`], documented in `--help`).

pub mod checkout;
pub mod cli;
pub mod coding;
pub mod commands;
pub mod demo;
pub mod lists;
pub mod live;
pub mod messages;

use cli::{Cli, Command};
use mcp_agent_client::{
    ClientConfig, ClientError, ErrorCode, GatewayClient, RetryPolicy, config::parse_seconds,
};
use serde_json::{Value, json};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
/// A streaming command's `--timeout` passed before it finished.
pub const EXIT_TIMEOUT: u8 = 8;

/// The per-request timeout when `--timeout` is not given, seconds.
const DEFAULT_REQUEST_TIMEOUT: &str = "30";

/// The exit code of a failure.
pub fn exit_code(e: &ClientError) -> u8 {
    if matches!(e, ClientError::Config(_)) {
        return EXIT_USAGE;
    }
    use ErrorCode::*;
    match e.code() {
        TaskNotFound | FileNotFound | RevisionNotFound | AgentNotFound | MessageNotFound
        | NotFound => EXIT_NOT_FOUND,
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
    /// `--json`: print JSON instead of text.
    pub json: bool,
    /// `--quiet`: no progress messages on stderr.
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

    /// Whether stderr is a terminal a person watches, showing colour: progress bars and
    /// colour then, plain lines otherwise (a pipe, a file, `--quiet`, `NO_COLOR`, `TERM=dumb`).
    pub fn fancy(&self) -> bool {
        !self.quiet
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            && console::Term::stderr().features().is_attended()
            && console::colors_enabled_stderr()
    }

    /// `text` in `style` when stderr is [`fancy`](Out::fancy), as it is otherwise.
    pub fn paint(&self, text: impl std::fmt::Display, style: &console::Style) -> String {
        if self.fancy() {
            style.apply_to(text).force_styling(true).to_string()
        } else {
            text.to_string()
        }
    }

    /// A progress bar of `len` steps on stderr when it is [`fancy`](Out::fancy); `None`
    /// otherwise (the caller then prints plain progress lines).
    pub fn bar(&self, len: u64, what: &str) -> Option<indicatif::ProgressBar> {
        if !self.fancy() {
            return None;
        }
        let bar = indicatif::ProgressBar::new(len).with_prefix(what.to_owned());
        let style = indicatif::ProgressStyle::with_template(
            "{prefix:.bold} [{bar:30.cyan/blue}] {pos}/{len} {wide_msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        Some(bar)
    }
}

/// Builds the client from the global options.
pub fn client(g: &cli::Global) -> Result<GatewayClient, ClientError> {
    let timeout = g.timeout.as_deref().unwrap_or(DEFAULT_REQUEST_TIMEOUT);
    let url = g
        .url
        .clone()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| mcp_agent_client::config::DEFAULT_GATEWAY_URL.to_owned());
    let mut config = ClientConfig::new(url)
        .with_timeout(parse_seconds("--timeout", timeout)?)
        .with_retry(RetryPolicy::attempts(g.retries));
    config.token = g.token.clone().filter(|t| !t.is_empty());
    config.agent_id = g.agent.clone().filter(|a| !a.is_empty());
    GatewayClient::new(config)
}

/// What a streaming command is doing right now, in words ("connecting to …", "waiting for
/// events …"): what the `--timeout` message says it was doing when time ran out.
#[derive(Debug, Clone, Default)]
pub struct Activity(Arc<Mutex<String>>);

impl Activity {
    /// Says what the command is doing now.
    pub fn set(&self, doing: impl Into<String>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = doing.into();
    }

    /// What the command was last said to be doing.
    pub fn get(&self) -> String {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Whether the command follows a task until interrupted (then `--timeout` bounds all of it).
fn streams(cmd: &Command) -> bool {
    matches!(
        cmd,
        Command::Watch { .. }
            | Command::Logs(cli::LogsCommand::Follow { .. })
            | Command::Checkout { follow: true, .. }
    )
}

/// Runs a parsed command line; returns the process exit code.
pub async fn run(cli: Cli) -> ExitCode {
    let out = Out {
        json: cli.global.json,
        quiet: cli.global.quiet,
    };
    // A streaming command's `--timeout` bounds the whole command (one-call commands: each
    // request).
    let deadline = match (&cli.global.timeout, streams(&cli.command)) {
        (Some(t), true) => match parse_seconds("--timeout", t) {
            Ok(d) => Some(d),
            Err(e) => {
                report(&e, out);
                return ExitCode::from(exit_code(&e));
            }
        },
        _ => None,
    };
    match &cli.command {
        Command::Completions { shell } => return print_completions(*shell),
        Command::Man => return print_man(),
        // The coding-agent commands build their own client (see `coding`).
        Command::Hook(cli::HookCommand::Claude { agent }) => {
            return coding::claude::run(&cli.global, agent).await;
        }
        Command::Guard { agent } => return coding::guard::run(&cli.global, agent).await,
        Command::Init(init) => {
            let result = match init {
                cli::InitCommand::Claude {
                    dir,
                    command,
                    claude_timeout,
                    agent,
                } => coding::init::init_claude(
                    &cli.global,
                    agent,
                    dir.as_deref(),
                    command,
                    *claude_timeout,
                    out,
                ),
                cli::InitCommand::Git {
                    dir,
                    command,
                    force,
                } => coding::init::init_git(dir.as_deref(), command, *force, out),
            };
            return match result {
                Ok(code) => ExitCode::from(code),
                Err(e) => {
                    report(&e, out);
                    ExitCode::from(exit_code(&e))
                }
            };
        }
        _ => {}
    }
    let activity = Activity::default();
    let result = match client(&cli.global) {
        Ok(c) => {
            let work = dispatch(&c, cli.command, out, &activity);
            match deadline {
                None => work.await,
                Some(d) => match tokio::time::timeout(d, work).await {
                    Ok(r) => r,
                    Err(_) => return timed_out(d, &activity.get(), out),
                },
            }
        }
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

/// `mcpctl completions SHELL`: the completion script on stdout.
fn print_completions(shell: clap_complete::Shell) -> ExitCode {
    use clap::CommandFactory;
    clap_complete::generate(shell, &mut Cli::command(), "mcpctl", &mut std::io::stdout());
    ExitCode::from(EXIT_OK)
}

/// `mcpctl man`: the manual page (roff) on stdout.
fn print_man() -> ExitCode {
    use clap::CommandFactory;
    match clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()) {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(e) => {
            eprintln!("mcpctl: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// The end of a streaming command whose `--timeout` passed: says so (and what it was
/// doing), exit 8.
fn timed_out(after: Duration, doing: &str, out: Out) -> ExitCode {
    let detail = format!(
        "timed out after {} s (--timeout) while {}",
        after.as_secs_f64(),
        if doing.is_empty() { "starting" } else { doing }
    );
    if out.json {
        println!(
            "{}",
            json!({"success": false, "error": {"code": "timeout", "detail": detail}})
        );
    }
    eprintln!("mcpctl: {detail}");
    ExitCode::from(EXIT_TIMEOUT)
}

async fn dispatch(
    c: &GatewayClient,
    cmd: Command,
    out: Out,
    activity: &Activity,
) -> Result<u8, ClientError> {
    match cmd {
        Command::Health => commands::health(c, out).await,
        // Answered before a client is built (`run`).
        Command::Completions { .. }
        | Command::Man
        | Command::Hook(_)
        | Command::Guard { .. }
        | Command::Init(_) => Ok(EXIT_OK),
        Command::Task(t) => commands::task(c, t, out).await,
        Command::File(f) => commands::file(c, f, out).await,
        Command::Lock(l) => commands::lock(c, l, out).await,
        Command::Send {
            task,
            to,
            subject,
            body,
            thread,
            reply_to,
            importance,
        } => {
            let send = messages::Send {
                task,
                to,
                subject,
                body,
                thread,
                reply_to,
                importance,
            };
            messages::send(c, send, out).await
        }
        Command::Inbox {
            task,
            wait,
            after,
            limit,
            all,
            ack,
        } => {
            let inbox = messages::Inbox {
                task,
                after,
                wait,
                limit,
                all,
                ack,
            };
            messages::inbox(c, inbox, out).await
        }
        Command::Logs(l) => live::logs(c, l, out, activity).await,
        Command::Watch {
            task,
            types,
            since,
            count,
        } => live::watch(c, &task, types, since, count, out, activity).await,
        Command::Checkout {
            task,
            dir,
            prefix,
            follow,
            count,
            force,
        } => {
            let opts = checkout::Options {
                prefix,
                follow,
                count,
                force,
            };
            checkout::checkout(c, &task, &dir, opts, out, activity).await
        }
        Command::Agents {
            q,
            task,
            limit,
            cursor,
        } => {
            let query = mcp_api::requests::AgentListQuery {
                q,
                task,
                limit,
                cursor,
            };
            lists::agents(c, query, out).await
        }
        Command::Audit {
            task,
            by,
            action,
            since,
            before_id,
            limit,
        } => {
            let query = lists::audit_query(task, by, action, since, before_id, limit)?;
            lists::audit(c, query, out).await
        }
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

/// Whether `task` exists: it has a task row, a file or a log step (see the crate
/// documentation). Other failures are returned as they are.
pub async fn task_exists(c: &GatewayClient, task: &str) -> Result<bool, ClientError> {
    match c.task_state(task).await {
        Ok(_) => return Ok(true),
        Err(e) if e.code() == ErrorCode::TaskNotFound => {}
        Err(e) => return Err(e),
    }
    if !c.task_files(task).await?.files.is_empty() {
        return Ok(true);
    }
    let one = mcp_agent_client::LogsQuery {
        before: None,
        limit: Some(1),
    };
    Ok(!c.task_logs(task, &one).await?.steps.is_empty())
}

/// The refusal of a snapshot command for a task that does not exist (exit 3).
pub fn no_such_task(task: &str) -> ClientError {
    ClientError::refused(
        ErrorCode::TaskNotFound,
        format!("no such task: {task} (no task row, no files, no log steps)"),
    )
}

/// Reports a subscription's state on stderr (not with `--quiet`) and keeps `activity` up to
/// date, for the streaming commands.
pub fn stream_observer(
    task: &str,
    url: &str,
    out: Out,
    activity: &Activity,
) -> mcp_agent_client::StatusObserver {
    use mcp_agent_client::StreamStatus;
    let (task, url, activity) = (task.to_owned(), url.to_owned(), activity.clone());
    mcp_agent_client::StatusObserver::new(move |s| match s {
        StreamStatus::Connecting { attempt: 1 } => {
            activity.set(format!("connecting to {url} for the events of {task}"));
            out.progress(format!(
                "mcpctl: connecting to {url} for the events of {task}"
            ));
        }
        StreamStatus::Connecting { .. } => {}
        StreamStatus::Connected {
            reconnect: true,
            resumed_after,
        } => {
            activity.set(format!("waiting for events of {task}"));
            out.progress(match resumed_after {
                Some(id) => format!("mcpctl: reconnected; resumed after event {id}"),
                None => "mcpctl: reconnected".to_owned(),
            });
        }
        StreamStatus::Connected { .. } => activity.set(format!("waiting for events of {task}")),
        StreamStatus::Disconnected { reason } => {
            activity.set(format!("reconnecting to {url} ({reason})"));
            out.progress(format!("mcpctl: connection lost ({reason}); reconnecting"));
        }
        StreamStatus::Retrying {
            attempt,
            delay,
            error,
        } => {
            activity.set(format!(
                "retrying to reach {url} (attempt {attempt} failed: {error})"
            ));
            out.progress(format!(
                "mcpctl: attempt {attempt} failed ({error}); retrying in {:.1} s",
                delay.as_secs_f64()
            ));
        }
    })
}

/// Prints a failure: a sentence on stderr, and with `--json` the error object on stdout.
pub fn report(e: &ClientError, out: Out) {
    if out.json {
        println!("{}", json!({"success": false, "error": e.to_json()}));
    }
    eprintln!("mcpctl: {e}");
}
