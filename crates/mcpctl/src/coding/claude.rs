//! `mcpctl hook claude`: one Claude Code hook event on stdin, the answer Claude Code
//! documents on stdout (always exit 0; a payload that is not a hook event exits 1, which
//! Claude Code shows without blocking anything).
//!
//! | event | what happens | answer |
//! |---|---|---|
//! | `PreToolUse` of `Edit`, `Write`, `MultiEdit`, `NotebookEdit` on a file of a git checkout | `claim_file` of its path relative to the checkout's root (re-entrant: a claim of a path the agent holds renews it) | nothing when granted (Claude Code's own permission rules apply); `permissionDecision: "deny"` naming the holder and its expiry when another agent holds it |
//! | `PostToolUse` of those tools | `log_step` (tool, path, a short summary); with `publish`, `file_write` of the new content presenting the lease's fence | nothing, or a `systemMessage` when publishing failed |
//! | `SessionStart` | `join_collaboration`; `list_leases` | `additionalContext`: who the agent is, its task, the files other agents hold now |
//! | `Stop` | releases the session's leases (unless `release_on_stop = false`) | nothing |
//! | `SessionEnd` | releases the session's leases, `leave_collaboration` | nothing |
//!
//! A granted edit gets no `permissionDecision` on purpose: `"allow"` would also skip the
//! user's permission prompt, which is not this hook's to decide.
//!
//! Files outside a git checkout, inside `.git`, or with a path the gateway refuses are not
//! governed: the edit goes ahead (the last with a warning). When the gateway cannot decide
//! within the time limit (unreachable, no answer, credentials refused) the configured policy
//! applies: `allow` (a `systemMessage` warning) or `deny` (with the reason).

use super::config::{Policy, Settings};
use super::repo::Checkout;
use super::state::{LeaseRecord, SessionLeases};
use crate::cli::{AgentArgs, Global};
use mcp_agent_client::requests::{
    AckMessageRequest, ClaimFileRequest, CollaborationRequest, FileWriteRequest, ListLeasesRequest,
    LogStepRequest, ReadMessagesRequest, ReleaseFileRequest,
};
use mcp_agent_client::{ClientError, ErrorCode, GatewayClient};
use serde::Deserialize;
use serde_json::{Value, json};
use std::future::Future;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The tools whose file a lease governs, and the `tool_input` field naming the file.
const GOVERNED: &[(&str, &str)] = &[
    ("Edit", "file_path"),
    ("Write", "file_path"),
    ("MultiEdit", "file_path"),
    ("NotebookEdit", "notebook_path"),
];

/// The `matcher` of the tool events in `.claude/settings.json`.
pub const TOOL_MATCHER: &str = "Edit|Write|MultiEdit|NotebookEdit";

/// The fields of a hook event this hook reads (Claude Code sends more).
#[derive(Debug, Deserialize)]
pub struct HookEvent {
    /// The Claude Code session (its leases are recorded under it).
    #[serde(default)]
    pub session_id: String,
    /// The session's working directory: where the repository is found and relative paths
    /// start.
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    /// Which event: `PreToolUse`, `PostToolUse`, `SessionStart`, `Stop`, `SessionEnd`, ….
    pub hook_event_name: String,
    /// The tool of a tool event (`Edit`, `Write`, …).
    #[serde(default)]
    pub tool_name: Option<String>,
    /// The tool's arguments, among them the path it edits.
    #[serde(default)]
    pub tool_input: Option<Value>,
}

/// Reads the event from stdin, answers on stdout.
pub async fn run(g: &Global, a: &AgentArgs) -> ExitCode {
    let mut input = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut input) {
        eprintln!("mcpctl hook claude: cannot read the event from stdin: {e}");
        return ExitCode::from(crate::EXIT_FAILURE);
    }
    let event: HookEvent = match serde_json::from_str(&input) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("mcpctl hook claude: stdin is not a Claude Code hook event: {e}");
            return ExitCode::from(crate::EXIT_FAILURE);
        }
    };
    if let Some(answer) = answer(g, a, &event).await {
        println!("{answer}");
    }
    ExitCode::from(crate::EXIT_OK)
}

/// The answer to one event (`None`: print nothing).
pub async fn answer(g: &Global, a: &AgentArgs, event: &HookEvent) -> Option<Value> {
    match event.hook_event_name.as_str() {
        "PreToolUse" => pre_tool_use(g, a, event).await,
        "PostToolUse" => post_tool_use(g, a, event).await,
        "SessionStart" => session_start(g, a, event).await,
        "Stop" => end(g, a, event, false).await,
        "SessionEnd" => end(g, a, event, true).await,
        _ => None,
    }
}

/// Everything an event acting on one checkout needs.
struct Ctx {
    checkout: Checkout,
    settings: Settings,
    client: GatewayClient,
    leases: SessionLeases,
}

impl Ctx {
    /// The context of the checkout holding `at`; `Ok(None)` outside any checkout.
    fn new(
        g: &Global,
        a: &AgentArgs,
        event: &HookEvent,
        at: &Path,
    ) -> Result<Option<Ctx>, ClientError> {
        let Some(checkout) = Checkout::find(at) else {
            return Ok(None);
        };
        let settings = Settings::resolve(g, a, &checkout)?;
        let client = settings.client()?;
        let leases = SessionLeases::open(&checkout, &event.session_id);
        Ok(Some(Ctx {
            checkout,
            settings,
            client,
            leases,
        }))
    }

    /// Runs `work` within the time limit; a timeout is [`Outcome::NoAnswer`].
    async fn bounded<T>(&self, work: impl Future<Output = Result<T, ClientError>>) -> Outcome<T> {
        match tokio::time::timeout(self.settings.timeout, work).await {
            Ok(Ok(v)) => Outcome::Done(v),
            Ok(Err(e)) => Outcome::Failed(e),
            Err(_) => Outcome::NoAnswer,
        }
    }

    /// Why the gateway could not decide, in words.
    fn why(&self, o: &Outcome<impl Sized>) -> String {
        match o {
            Outcome::NoAnswer => format!(
                "no answer from {} within {} s",
                self.settings.url,
                self.settings.timeout.as_secs_f64()
            ),
            Outcome::Failed(e) => e.to_string(),
            Outcome::Done(_) => String::new(),
        }
    }
}

enum Outcome<T> {
    Done(T),
    Failed(ClientError),
    NoAnswer,
}

/// The governed file of a tool event: its absolute path (`None` for other tools, or an
/// input without the path).
fn governed_file(event: &HookEvent) -> Option<PathBuf> {
    let tool = event.tool_name.as_deref()?;
    let field = GOVERNED.iter().find(|(t, _)| *t == tool)?.1;
    let raw = event.tool_input.as_ref()?.get(field)?.as_str()?;
    let p = Path::new(raw);
    Some(if p.is_absolute() {
        p.to_path_buf()
    } else {
        event.cwd.clone().unwrap_or_default().join(p)
    })
}

fn pre_tool_output(decision: &str, reason: &str) -> Value {
    json!({"hookSpecificOutput": {
        "hookEventName": "PreToolUse",
        "permissionDecision": decision,
        "permissionDecisionReason": reason,
    }})
}

fn warning(text: String) -> Value {
    json!({"systemMessage": text})
}

/// A governed file's context and path; `Err(answer)` when there is nothing to govern or
/// the configuration is broken (then the edit goes ahead with a warning: a broken file
/// must not lock the session out of fixing it).
fn target(g: &Global, a: &AgentArgs, event: &HookEvent) -> Result<(Ctx, String), Option<Value>> {
    let file = governed_file(event).ok_or(None)?;
    let ctx = match Ctx::new(g, a, event, &file) {
        Ok(Some(ctx)) => ctx,
        Ok(None) => return Err(None),
        Err(e) => {
            return Err(Some(warning(format!(
                "mcp-gateway: {} is not guarded: {e}",
                file.display()
            ))));
        }
    };
    let rel = ctx.checkout.relative(&file).ok_or(None)?;
    Ok((ctx, rel))
}

async fn pre_tool_use(g: &Global, a: &AgentArgs, event: &HookEvent) -> Option<Value> {
    let (ctx, rel) = match target(g, a, event) {
        Ok(t) => t,
        Err(answer) => return answer,
    };
    let s = &ctx.settings;
    let claim = ctx
        .bounded(ctx.client.claim_file(ClaimFileRequest {
            task_id: s.task.clone(),
            path: rel.clone(),
            timeout_sec: Some(s.lease_sec),
            ..Default::default()
        }))
        .await;
    match claim {
        Outcome::Done(lease) => {
            let record = LeaseRecord {
                task_id: lease.task_id,
                path: lease.path,
                agent: lease.owner,
                fence: lease.fence,
                expires_at: lease.expires_at.to_rfc3339(),
            };
            if let Err(e) = ctx.leases.record(&record) {
                return Some(warning(format!(
                    "mcp-gateway: leased {rel}, but cannot record it for release at the end of the session: {e}"
                )));
            }
            None
        }
        Outcome::Failed(e) if e.code() == ErrorCode::Locked => {
            Some(pre_tool_output("deny", &locked_reason(&rel, s, &e)))
        }
        Outcome::Failed(e) if matches!(e.code(), ErrorCode::InvalidPath | ErrorCode::TooLarge) => {
            Some(warning(format!(
                "mcp-gateway: {rel} is not guarded (the gateway refuses the path: {e})"
            )))
        }
        other => {
            let why = ctx.why(&other);
            Some(match s.on_unreachable {
                Policy::Allow => warning(format!(
                    "mcp-gateway: the lease on {rel} could not be taken ({why}); the edit goes ahead unguarded (on_unreachable = allow)"
                )),
                Policy::Deny => pre_tool_output(
                    "deny",
                    &format!(
                        "Editing {rel} is refused: the coordination gateway could not take its lease ({why}), and this repository's policy (on_unreachable = deny) forbids unguarded edits. Tell the user the gateway at {} is not answering; try again later.",
                        s.url
                    ),
                ),
            })
        }
    }
}

/// The reason of a denied edit, for the model: who holds the file, until when, and what to
/// do instead.
fn locked_reason(rel: &str, s: &Settings, e: &ClientError) -> String {
    let ctx = match e {
        ClientError::Refused { context, .. } => Some(context),
        _ => None,
    };
    let field = |k: &str| ctx.and_then(|c| c.get(k));
    let holder = field("holder")
        .and_then(Value::as_str)
        .unwrap_or("another agent");
    let until = field("expires_at")
        .and_then(Value::as_str)
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| {
            let left = (t.with_timezone(&chrono::Utc) - chrono::Utc::now())
                .num_seconds()
                .max(0);
            format!(
                " until {} UTC ({left} s from now, renewed while it keeps editing)",
                t.with_timezone(&chrono::Utc).format("%H:%M:%S")
            )
        })
        .unwrap_or_default();
    // A directory lease above the file (or, for a directory, a lease beneath it).
    let through = match field("lease_path").and_then(Value::as_str) {
        Some(p) if p != rel => format!(" (through its lease on {p})"),
        _ => String::new(),
    };
    let queue = match (
        field("queue_position").and_then(Value::as_i64),
        field("waiters").and_then(Value::as_i64),
    ) {
        (Some(p), _) => format!(" You are number {p} in the queue for it."),
        (None, Some(n)) if n > 0 => format!(" {n} other agent(s) are waiting for it."),
        _ => String::new(),
    };
    format!(
        "{rel} is being edited by agent {holder}{through}, which holds its lease in task {task}{until}; you are agent {me}.{queue} Do not edit this file now: work on other files first and try it again later (the lease is released when {holder} stops or its session ends), or ask {holder} to release it, or ask the user.",
        task = s.task,
        me = s.agent,
    )
}

/// A short summary of what a tool did to a file, for the log.
fn summary(tool: &str, input: &Value) -> String {
    let text = |k: &str| input.get(k).and_then(Value::as_str).unwrap_or("");
    let lines = |s: &str| s.lines().count();
    match tool {
        "Edit" => format!(
            "replaced {} line(s) with {} line(s){}",
            lines(text("old_string")),
            lines(text("new_string")),
            if input.get("replace_all").and_then(Value::as_bool) == Some(true) {
                ", every occurrence"
            } else {
                ""
            }
        ),
        "MultiEdit" => format!(
            "{} edit(s)",
            input
                .get("edits")
                .and_then(Value::as_array)
                .map_or(0, Vec::len)
        ),
        "Write" => format!(
            "wrote {} byte(s), {} line(s)",
            text("content").len(),
            lines(text("content"))
        ),
        "NotebookEdit" => format!(
            "{} cell {}",
            input
                .get("edit_mode")
                .and_then(Value::as_str)
                .unwrap_or("replace"),
            input.get("cell_id").and_then(Value::as_str).unwrap_or("-")
        ),
        _ => String::new(),
    }
}

async fn post_tool_use(g: &Global, a: &AgentArgs, event: &HookEvent) -> Option<Value> {
    let (ctx, rel) = match target(g, a, event) {
        Ok(t) => t,
        Err(answer) => return answer,
    };
    let s = &ctx.settings;
    let tool = event.tool_name.as_deref().unwrap_or("");
    let observation = summary(tool, event.tool_input.as_ref().unwrap_or(&Value::Null));
    let mut problems = Vec::new();
    let step = json!({
        "action": tool,
        "action_input": {"path": rel},
        "observation": observation,
        "source": "claude-code",
        "session_id": event.session_id,
    });
    let logged = ctx
        .bounded(ctx.client.log_step(LogStepRequest {
            task_id: s.task.clone(),
            step,
            ..Default::default()
        }))
        .await;
    if !matches!(logged, Outcome::Done(_)) {
        problems.push(format!("the step was not logged ({})", ctx.why(&logged)));
    }
    let published = if s.publish {
        publish(&ctx, &rel, governed_file(event)).await
    } else {
        None
    };
    problems.extend(published);
    if problems.is_empty() {
        None
    } else {
        Some(warning(format!(
            "mcp-gateway: {rel}: {}",
            problems.join("; ")
        )))
    }
}

/// Publishes the file's content on disk with the session's lease fence; a problem in words.
async fn publish(ctx: &Ctx, rel: &str, file: Option<PathBuf>) -> Option<String> {
    let s = &ctx.settings;
    let Some(lease) = ctx.leases.get(&s.task, rel) else {
        return Some("not published: this session holds no lease on it".into());
    };
    let content = match tokio::fs::read_to_string(file?).await {
        Ok(c) => c,
        Err(e) => return Some(format!("not published: {e}")),
    };
    let written = ctx
        .bounded(ctx.client.file_write(FileWriteRequest {
            task_id: s.task.clone(),
            path: rel.to_owned(),
            content,
            fence: Some(lease.fence),
            agent_id: Some(lease.agent),
            ..Default::default()
        }))
        .await;
    match written {
        Outcome::Done(_) => None,
        other => Some(format!("not published ({})", ctx.why(&other))),
    }
}

async fn session_start(g: &Global, a: &AgentArgs, event: &HookEvent) -> Option<Value> {
    let cwd = event.cwd.clone()?;
    let ctx = match Ctx::new(g, a, event, &cwd) {
        Ok(Some(ctx)) => ctx,
        Ok(None) => return None,
        Err(e) => return Some(warning(format!("mcp-gateway: edits are not guarded: {e}"))),
    };
    let s = &ctx.settings;
    let work = async {
        ctx.client
            .join_collaboration(CollaborationRequest {
                task_id: s.task.clone(),
                ..Default::default()
            })
            .await?;
        let leases = ctx
            .client
            .list_leases(ListLeasesRequest::new(s.task.clone()))
            .await?;
        // Unread messages to this agent on the task: shown to the model once, so acknowledged.
        let inbox = ctx
            .client
            .read_messages(ReadMessagesRequest {
                task_id: Some(s.task.clone()),
                unread_only: true,
                limit: Some(SHOWN_MESSAGES),
                ..Default::default()
            })
            .await?;
        for m in &inbox.messages {
            ctx.client
                .ack_message(AckMessageRequest {
                    message_id: m.id,
                    task_id: Some(m.task_id.clone()),
                    ..Default::default()
                })
                .await?;
        }
        Ok((leases, inbox.messages))
    };
    let mut text = format!(
        "mcp-gateway: this session is agent {agent} on task {task} (gateway {url}). Before each Edit, Write, MultiEdit or NotebookEdit of a file in this repository a lease on its path (relative to the repository root) is taken for you for {lease} s, renewed while you keep editing and released when you stop; an edit of a file another agent holds is refused, naming the holder.{publish} When you call the mcp-gateway MCP tools, use task_id {task} and agent_id {agent}.",
        agent = s.agent,
        task = s.task,
        url = s.url,
        lease = s.lease_sec,
        publish = if s.publish {
            " Each edited file's new content is published to the gateway."
        } else {
            ""
        },
    );
    match ctx.bounded(work).await {
        Outcome::Done((list, messages)) => {
            for m in &messages {
                let body: String = m.body.chars().take(SHOWN_BODY_CHARS).collect();
                let cut = if body.len() < m.body.len() { "…" } else { "" };
                text.push_str(&format!(
                    "\nUnread message {id} from {from} ({importance}): \"{subject}\": {body}{cut}",
                    id = m.id,
                    from = m.from,
                    importance = serde_json::to_value(m.importance)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    subject = m.subject,
                ));
            }
            let others: Vec<String> = list
                .leases
                .iter()
                .filter(|l| l.holder != s.agent)
                .map(|l| {
                    format!(
                        "{} ({} until {} UTC)",
                        l.path,
                        l.holder,
                        l.expires_at.format("%H:%M:%S")
                    )
                })
                .collect();
            if !others.is_empty() {
                text.push_str(&format!(
                    " Files other agents are editing now: {}.",
                    others.join(", ")
                ));
            }
        }
        other => {
            let why = ctx.why(&other);
            text = format!(
                "mcp-gateway: the gateway could not be reached ({why}); until it answers, edits are {} (on_unreachable = {}).",
                match s.on_unreachable {
                    Policy::Allow => "not guarded by leases",
                    Policy::Deny => "refused",
                },
                s.on_unreachable.as_str()
            );
        }
    }
    Some(json!({"hookSpecificOutput": {
        "hookEventName": "SessionStart",
        "additionalContext": text,
    }}))
}

/// Most unread messages a session start shows (the rest stay unread: `read_messages`).
const SHOWN_MESSAGES: usize = 20;
/// Longest body shown of each, in characters.
const SHOWN_BODY_CHARS: usize = 2_000;

/// `Stop` (`leave` false) and `SessionEnd` (`leave` true): release the session's leases;
/// at the session's end also leave the task and forget the session.
async fn end(g: &Global, a: &AgentArgs, event: &HookEvent, leave: bool) -> Option<Value> {
    let cwd = event.cwd.clone()?;
    let ctx = match Ctx::new(g, a, event, &cwd) {
        Ok(Some(ctx)) => ctx,
        Ok(None) => return None,
        Err(e) => return Some(warning(format!("mcp-gateway: {e}"))),
    };
    if !leave && !ctx.settings.release_on_stop {
        return None;
    }
    let work = async {
        for lease in ctx.leases.all() {
            let released = ctx
                .client
                .release_file(ReleaseFileRequest {
                    task_id: lease.task_id.clone(),
                    path: lease.path.clone(),
                    agent_id: Some(lease.agent.clone()),
                    ..Default::default()
                })
                .await;
            match released {
                // Gone already (expired, or released by an admin): nothing to keep.
                Ok(_) => ctx.leases.forget(&lease.task_id, &lease.path),
                Err(e @ ClientError::Refused { .. }) if !e.code().is_retryable() => {
                    ctx.leases.forget(&lease.task_id, &lease.path)
                }
                Err(e) => return Err(e),
            }
        }
        if leave {
            ctx.client
                .leave_collaboration(CollaborationRequest {
                    task_id: ctx.settings.task.clone(),
                    ..Default::default()
                })
                .await?;
        }
        Ok(())
    };
    let outcome = ctx.bounded(work).await;
    if leave {
        ctx.leases.forget_all();
    }
    match outcome {
        Outcome::Done(()) => None,
        other => Some(warning(format!(
            "mcp-gateway: the session's leases were not all released ({}); they expire by themselves within {} s",
            ctx.why(&other),
            ctx.settings.lease_sec
        ))),
    }
}
