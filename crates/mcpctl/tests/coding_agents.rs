//! Coding agents on local checkouts, end to end: the real `mcpctl` binary fed the hook
//! payloads Claude Code sends, for two sessions in two worktrees of one real git repository,
//! against a running gateway (real Postgres and Redis); `init` and the pre-commit guard
//! with real `git` commits.

use mcp_agent_client::requests::{FileHistoryRequest, ListLeasesRequest};
use mcp_agent_client::{ClientConfig, GatewayClient, LogsQuery};
use mcp_testkit::{TestDir, TestGateway};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

mod common;
use common::{Run, run};

impl Run {
    /// The hook's answer (`Value::Null` when it printed nothing).
    #[track_caller]
    fn answer(&self) -> Value {
        assert_eq!(self.code, 0, "a hook always exits 0: {self:?}");
        if self.stdout.trim().is_empty() {
            return Value::Null;
        }
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    /// The PreToolUse decision (`None`: no decision, Claude Code's own rules apply).
    #[track_caller]
    fn decision(&self) -> Option<String> {
        self.answer()["hookSpecificOutput"]["permissionDecision"]
            .as_str()
            .map(str::to_owned)
    }

    #[track_caller]
    fn reason(&self) -> String {
        self.answer()["hookSpecificOutput"]["permissionDecisionReason"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

fn git(dir: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .env_remove("MCP_AGENT_ID")
        .env_remove("MCP_GATEWAY_TOKEN")
        .output()
        .expect("git runs")
}

#[track_caller]
fn git_ok(dir: &Path, args: &[&str]) {
    let out = git(dir, args);
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A repository `app` (its main worktree, branch `main`) and a linked worktree `app-b`
/// (branch `b`), both holding `src/lib.rs`.
struct Repo {
    _tmp: TestDir,
    a: PathBuf,
    b: PathBuf,
}

impl Repo {
    fn new() -> Repo {
        let tmp = TestDir::new();
        let base = tmp.path.canonicalize().unwrap();
        let a = base.join("app");
        std::fs::create_dir_all(a.join("src")).unwrap();
        git_ok(&a, &["init", "-q", "-b", "main"]);
        std::fs::write(a.join("src/lib.rs"), "pub fn one() -> u32 { 1 }\n").unwrap();
        std::fs::write(a.join("README.md"), "app\n").unwrap();
        git_ok(&a, &["add", "."]);
        git_ok(&a, &["commit", "-q", "-m", "first"]);
        let b = base.join("app-b");
        git_ok(
            &a,
            &["worktree", "add", "-q", b.to_str().unwrap(), "-b", "b"],
        );
        Repo { _tmp: tmp, a, b }
    }
}

fn mcpctl(base: &str, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_mcpctl"));
    cmd.args(args)
        .current_dir(dir)
        .env("MCP_GATEWAY_URL", base)
        .env_remove("MCP_AGENT_ID")
        .env_remove("MCP_GATEWAY_TOKEN")
        .env_remove("MCP_GATEWAY_TIMEOUT")
        .env_remove("MCP_HOOK_TASK")
        .env_remove("MCP_HOOK_LEASE_SEC")
        .env_remove("MCP_HOOK_PUBLISH")
        .env_remove("MCP_HOOK_ON_UNREACHABLE")
        .env_remove("MCP_HOOK_TIMEOUT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// One Claude Code session working in one worktree.
struct Session {
    base: String,
    dir: PathBuf,
    id: String,
    env: Vec<(String, String)>,
}

impl Session {
    fn new(base: &str, dir: &Path) -> Session {
        Session {
            base: base.to_owned(),
            dir: dir.to_path_buf(),
            id: uuid::Uuid::new_v4().to_string(),
            env: Vec::new(),
        }
    }

    fn with_env(mut self, k: &str, v: &str) -> Session {
        self.env.push((k.into(), v.into()));
        self
    }

    /// Feeds `mcpctl hook claude` one event as Claude Code sends it.
    async fn hook(&self, event: &str, extra: Value) -> Run {
        let mut payload = json!({
            "session_id": self.id,
            "transcript_path": format!("/tmp/{}.jsonl", self.id),
            "cwd": self.dir,
            "permission_mode": "default",
            "hook_event_name": event,
        });
        if let (Value::Object(p), Value::Object(e)) = (&mut payload, extra) {
            p.extend(e);
        }
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let cmd = mcpctl(&self.base, &self.dir, &["hook", "claude"], &env);
        run(cmd, &payload.to_string()).await
    }

    async fn pre_edit(&self, rel: &str) -> Run {
        let file = self.dir.join(rel);
        self.hook(
            "PreToolUse",
            json!({"tool_name": "Edit", "tool_use_id": "toolu_1", "tool_input": {
                "file_path": file, "old_string": "1", "new_string": "2"}}),
        )
        .await
    }

    async fn post_edit(&self, rel: &str) -> Run {
        let file = self.dir.join(rel);
        self.hook(
            "PostToolUse",
            json!({"tool_name": "Edit", "tool_use_id": "toolu_1",
                "tool_input": {"file_path": file, "old_string": "1", "new_string": "2"},
                "tool_response": {"filePath": file, "success": true}}),
        )
        .await
    }
}

fn client(gw: &TestGateway, agent: &str) -> GatewayClient {
    GatewayClient::new(ClientConfig::new(gw.base.clone()).with_agent(agent)).unwrap()
}

async fn leases(gw: &TestGateway, task: &str) -> Vec<(String, String)> {
    client(gw, "observer")
        .list_leases(ListLeasesRequest::new(task.to_owned()))
        .await
        .unwrap()
        .leases
        .into_iter()
        .map(|l| (l.path, l.holder))
        .collect()
}

/// The acceptance scenario: two sessions in two worktrees exclude each other on one file.
#[tokio::test]
async fn two_worktrees_one_lease() {
    let gw = TestGateway::spawn().await;
    let repo = Repo::new();
    let a = Session::new(&gw.base, &repo.a);
    let b = Session::new(&gw.base, &repo.b);

    // SessionStart: joins the repository's task and tells the model who it is.
    let start = a.hook("SessionStart", json!({"source": "startup"})).await;
    let context = start.answer()["hookSpecificOutput"]["additionalContext"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(
        start.answer()["hookSpecificOutput"]["hookEventName"],
        "SessionStart"
    );
    assert!(
        context.contains("agent claude-app ") && context.contains("task app "),
        "{context}"
    );

    // A edits src/lib.rs: granted, with no decision (the user's own permission rules apply).
    let first = a.pre_edit("src/lib.rs").await;
    assert_eq!(first.decision(), None, "{first:?}");
    assert_eq!(
        leases(&gw, "app").await,
        vec![("src/lib.rs".to_owned(), "claude-app".to_owned())]
    );
    // Editing again renews (re-entrant), still granted.
    assert_eq!(a.pre_edit("src/lib.rs").await.decision(), None);

    // B, in the other worktree, is refused the same file, and told who holds it.
    let b_start = b.hook("SessionStart", json!({"source": "startup"})).await;
    let b_context = b_start.answer()["hookSpecificOutput"]["additionalContext"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        b_context.contains("src/lib.rs (claude-app until"),
        "B's session starts knowing what A edits: {b_context}"
    );
    let denied = b.pre_edit("src/lib.rs").await;
    assert_eq!(denied.decision().as_deref(), Some("deny"), "{denied:?}");
    let reason = denied.reason();
    assert!(
        reason.contains("claude-app") && reason.contains("src/lib.rs") && reason.contains("UTC"),
        "{reason}"
    );
    assert!(reason.contains("you are agent claude-app-b"), "{reason}");
    // Another file is B's to take.
    assert_eq!(b.pre_edit("README.md").await.decision(), None);

    // PostToolUse logs a step in the task.
    assert_eq!(a.post_edit("src/lib.rs").await.answer(), Value::Null);
    let logs = client(&gw, "observer")
        .task_logs(
            "app",
            &LogsQuery {
                before: None,
                limit: Some(50),
            },
        )
        .await
        .unwrap();
    let step = logs
        .steps
        .iter()
        .map(|s| serde_json::to_value(s).unwrap())
        .find(|s| s.to_string().contains("\"action\":\"Edit\""))
        .unwrap_or_else(|| panic!("no Edit step in {:?}", logs.steps));
    let text = step.to_string();
    assert!(
        text.contains("src/lib.rs") && text.contains("replaced 1 line(s) with 1 line(s)"),
        "{text}"
    );

    // A's turn ends (Stop): its lease goes, and B's edit is allowed.
    assert_eq!(
        a.hook("Stop", json!({"stop_hook_active": false}))
            .await
            .answer(),
        Value::Null
    );
    assert_eq!(b.pre_edit("src/lib.rs").await.decision(), None);
    // Now A is the one refused, naming B.
    let denied = a.pre_edit("src/lib.rs").await;
    assert!(denied.reason().contains("claude-app-b"), "{denied:?}");

    // SessionEnd leaves no lease behind.
    b.hook("SessionEnd", json!({"reason": "exit"}))
        .await
        .answer();
    a.hook("SessionEnd", json!({"reason": "exit"}))
        .await
        .answer();
    assert_eq!(leases(&gw, "app").await, vec![]);
    // And the session records are gone from the common git directory.
    let sessions = repo.a.join(".git/mcp-gateway/sessions");
    assert_eq!(
        std::fs::read_dir(&sessions).map(|d| d.count()).unwrap_or(0),
        0
    );
}

/// A session's end releases its leases even when it never stopped, and lets the other in.
#[tokio::test]
async fn session_end_frees_the_file_for_the_other_worktree() {
    let gw = TestGateway::spawn().await;
    let repo = Repo::new();
    let a = Session::new(&gw.base, &repo.a);
    let b = Session::new(&gw.base, &repo.b);
    // Write and NotebookEdit are governed too.
    let write = a
        .hook(
            "PreToolUse",
            json!({"tool_name": "Write", "tool_input": {
                "file_path": repo.a.join("src/new/mod.rs"), "content": "x"}}),
        )
        .await;
    assert_eq!(write.decision(), None);
    let nb = a
        .hook(
            "PreToolUse",
            json!({"tool_name": "NotebookEdit", "tool_input": {
                "notebook_path": repo.a.join("nb.ipynb"), "new_source": "x"}}),
        )
        .await;
    assert_eq!(nb.decision(), None);
    let denied = b
        .hook(
            "PreToolUse",
            json!({"tool_name": "MultiEdit", "tool_input": {
                "file_path": repo.b.join("src/new/mod.rs"), "edits": []}}),
        )
        .await;
    assert_eq!(denied.decision().as_deref(), Some("deny"));
    let mut held = leases(&gw, "app").await;
    held.sort();
    assert_eq!(
        held,
        vec![
            ("nb.ipynb".to_owned(), "claude-app".to_owned()),
            ("src/new/mod.rs".to_owned(), "claude-app".to_owned())
        ]
    );
    a.hook("SessionEnd", json!({"reason": "logout"}))
        .await
        .answer();
    assert_eq!(leases(&gw, "app").await, vec![]);
    assert_eq!(b.pre_edit("src/new/mod.rs").await.decision(), None);
}

/// What is not governed: other tools, files outside any repository, files inside `.git`.
#[tokio::test]
async fn only_edits_of_repository_files_are_governed() {
    let gw = TestGateway::spawn().await;
    let repo = Repo::new();
    let a = Session::new(&gw.base, &repo.a);
    let bash = a
        .hook(
            "PreToolUse",
            json!({"tool_name": "Bash", "tool_input": {"command": "ls"}}),
        )
        .await;
    assert_eq!(bash.answer(), Value::Null);
    let outside = TestDir::new();
    let r = a
        .hook(
            "PreToolUse",
            json!({"tool_name": "Write", "tool_input": {
                "file_path": outside.path.join("notes.txt"), "content": "x"}}),
        )
        .await;
    assert_eq!(r.answer(), Value::Null);
    let r = a
        .hook(
            "PreToolUse",
            json!({"tool_name": "Edit", "tool_input": {
                "file_path": repo.a.join(".git/config"), "old_string": "a", "new_string": "b"}}),
        )
        .await;
    assert_eq!(r.answer(), Value::Null);
    assert_eq!(leases(&gw, "app").await, vec![]);
    // A payload that is not a hook event: a non-blocking error (exit 1, stderr).
    let cmd = mcpctl(&gw.base, &repo.a, &["hook", "claude"], &[]);
    let r = run(cmd, "not json").await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("not a Claude Code hook event"), "{r:?}");
}

/// With `publish = true` each edit's new content reaches the gateway, written under the
/// lease's fence.
#[tokio::test]
async fn publish_writes_the_new_content_with_the_fence() {
    let gw = TestGateway::spawn().await;
    let repo = Repo::new();
    std::fs::write(
        repo.a.join(".mcp-gateway.toml"),
        "task = \"shared\"\npublish = true\nlease_sec = 120\n",
    )
    .unwrap();
    let a = Session::new(&gw.base, &repo.a);
    assert_eq!(a.pre_edit("src/lib.rs").await.decision(), None);
    let fence = client(&gw, "observer")
        .list_leases(ListLeasesRequest::new("shared".to_owned()))
        .await
        .unwrap()
        .leases[0]
        .fence;
    std::fs::write(repo.a.join("src/lib.rs"), "pub fn one() -> u32 { 2 }\n").unwrap();
    assert_eq!(a.post_edit("src/lib.rs").await.answer(), Value::Null);
    let c = client(&gw, "observer");
    let read = c
        .file_read(mcp_agent_client::requests::FileReadRequest {
            task_id: "shared".into(),
            path: "src/lib.rs".into(),
            agent_id: None,
        })
        .await
        .unwrap();
    assert_eq!(read.content, "pub fn one() -> u32 { 2 }\n");
    let history = c
        .file_history(FileHistoryRequest {
            task_id: "shared".into(),
            path: "src/lib.rs".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(history.revisions[0].fence, Some(fence));
    assert_eq!(history.revisions[0].agent_id.as_deref(), Some("claude-app"));
}

/// With the gateway down the configured policy applies, within the time limit: a closed
/// port (refused at once) and a port that accepts but never answers (the time limit).
#[tokio::test]
async fn an_unreachable_gateway_gets_the_configured_policy_in_time() {
    let repo = Repo::new();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    // Accepts connections (the kernel's backlog) and never answers.
    let silent_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent = format!("http://{}", silent_listener.local_addr().unwrap());

    let allow = Session::new(&closed, &repo.a);
    let r = allow.pre_edit("src/lib.rs").await;
    assert_eq!(r.decision(), None, "{r:?}");
    let warning = r.answer()["systemMessage"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        warning.contains("src/lib.rs") && warning.contains("on_unreachable = allow"),
        "{warning}"
    );
    assert!(r.took < Duration::from_secs(10), "{:?}", r.took);

    let deny = Session::new(&closed, &repo.a).with_env("MCP_HOOK_ON_UNREACHABLE", "deny");
    let r = deny.pre_edit("src/lib.rs").await;
    assert_eq!(r.decision().as_deref(), Some("deny"), "{r:?}");
    assert!(r.reason().contains("on_unreachable = deny"), "{r:?}");
    assert!(r.took < Duration::from_secs(10), "{:?}", r.took);

    // The policy from the repository's file, the limit from the environment.
    std::fs::write(
        repo.b.join(".mcp-gateway.toml"),
        "on_unreachable = \"deny\"\n",
    )
    .unwrap();
    let hanging = Session::new(&silent, &repo.b).with_env("MCP_HOOK_TIMEOUT", "1.5");
    let r = hanging.pre_edit("src/lib.rs").await;
    assert_eq!(r.decision().as_deref(), Some("deny"), "{r:?}");
    assert!(r.reason().contains("within 1.5 s"), "{r:?}");
    assert!(
        r.took >= Duration::from_millis(1400) && r.took < Duration::from_secs(10),
        "{:?}",
        r.took
    );
    // Session hooks do not hang either.
    let r = hanging
        .hook("SessionStart", json!({"source": "startup"}))
        .await;
    let context = r.answer()["hookSpecificOutput"]["additionalContext"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(context.contains("could not be reached"), "{context}");
    assert!(r.took < Duration::from_secs(10), "{:?}", r.took);
    drop(silent_listener);
}

/// `init claude` writes the hooks and the MCP server, merges with what is there, and a
/// second run changes nothing.
#[tokio::test]
async fn init_claude_merges_and_is_idempotent() {
    let repo = Repo::new();
    let claude_dir = repo.a.join(".claude");
    std::fs::create_dir_all(&claude_dir).unwrap();
    std::fs::write(
        claude_dir.join("settings.json"),
        r#"{"permissions": {"allow": ["Bash(cargo test:*)"]},
            "hooks": {"PreToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", "command": "./check.sh"}]}]}}"#,
    )
    .unwrap();
    std::fs::write(
        repo.a.join(".mcp.json"),
        r#"{"mcpServers": {"other": {"type": "stdio", "command": "other-server"}}}"#,
    )
    .unwrap();
    let init = || {
        mcpctl(
            "http://127.0.0.1:8001",
            &repo.a.join("src"),
            &["init", "claude", "--command", "/opt/mcp tools/mcpctl"],
            &[],
        )
    };
    let first = run(init(), "").await;
    assert_eq!(first.code, 0, "{first:?}");
    assert!(
        first.stdout.contains("updated   .claude/settings.json"),
        "{first:?}"
    );
    assert!(
        first.stdout.contains("created   .mcp-gateway.toml"),
        "{first:?}"
    );
    let settings: Value =
        serde_json::from_str(&std::fs::read_to_string(claude_dir.join("settings.json")).unwrap())
            .unwrap();
    assert_eq!(settings["permissions"]["allow"][0], "Bash(cargo test:*)");
    let ours =
        json!({"type": "command", "command": "'/opt/mcp tools/mcpctl' hook claude", "timeout": 10});
    assert_eq!(
        settings["hooks"]["PreToolUse"],
        json!([
            {"matcher": "Bash", "hooks": [{"type": "command", "command": "./check.sh"}]},
            {"matcher": "Edit|Write|MultiEdit|NotebookEdit", "hooks": [ours]},
        ])
    );
    for event in ["PostToolUse", "SessionStart", "Stop", "SessionEnd"] {
        assert_eq!(
            settings["hooks"][event].as_array().map(Vec::len),
            Some(1),
            "{event}: {settings}"
        );
        assert_eq!(settings["hooks"][event][0]["hooks"][0], ours, "{event}");
    }
    let mcp: Value =
        serde_json::from_str(&std::fs::read_to_string(repo.a.join(".mcp.json")).unwrap()).unwrap();
    assert_eq!(mcp["mcpServers"]["other"]["command"], "other-server");
    assert_eq!(
        mcp["mcpServers"]["mcp-gateway"],
        json!({"type": "http", "url": "http://127.0.0.1:8001/mcp"})
    );
    let config = std::fs::read_to_string(repo.a.join(".mcp-gateway.toml")).unwrap();
    assert!(config.contains("task = \"app\""), "{config}");

    let before: Vec<String> = [".claude/settings.json", ".mcp.json", ".mcp-gateway.toml"]
        .iter()
        .map(|f| std::fs::read_to_string(repo.a.join(f)).unwrap())
        .collect();
    let second = run(init(), "").await;
    assert_eq!(second.code, 0, "{second:?}");
    assert_eq!(second.stdout.matches("unchanged").count(), 3, "{second:?}");
    let after: Vec<String> = [".claude/settings.json", ".mcp.json", ".mcp-gateway.toml"]
        .iter()
        .map(|f| std::fs::read_to_string(repo.a.join(f)).unwrap())
        .collect();
    assert_eq!(before, after);

    // With a token configured, the server entry carries a header that expands it (the token
    // itself is never written).
    let with_token = mcpctl(
        "http://127.0.0.1:8001",
        &repo.b,
        &["init", "claude", "--json"],
        &[("MCP_GATEWAY_TOKEN", "secret-token-value")],
    );
    let r = run(with_token, "").await;
    assert_eq!(r.code, 0, "{r:?}");
    let mcp = std::fs::read_to_string(repo.b.join(".mcp.json")).unwrap();
    assert!(mcp.contains("Bearer ${MCP_GATEWAY_TOKEN}"), "{mcp}");
    assert!(!mcp.contains("secret-token-value"));
    // Outside a repository: a usage error.
    let nowhere = TestDir::new();
    let r = run(
        mcpctl(
            "http://127.0.0.1:8001",
            &nowhere.path,
            &["init", "claude"],
            &[],
        ),
        "",
    )
    .await;
    assert_eq!(r.code, 2, "{r:?}");
}

/// `init git` installs the guard once for every worktree; the guard refuses a commit of a
/// file another agent leases, naming it, and allows it once the lease is gone.
#[tokio::test]
async fn the_git_guard_refuses_commits_of_leased_files() {
    let gw = TestGateway::spawn().await;
    let repo = Repo::new();
    let bin = env!("CARGO_BIN_EXE_mcpctl");
    let init = || mcpctl(&gw.base, &repo.b, &["init", "git", "--command", bin], &[]);
    let r = run(init(), "").await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.starts_with("created"), "{r:?}");
    let hook = repo.a.join(".git/hooks/pre-commit");
    assert!(hook.is_file(), "installed in the common git directory");
    let r = run(init(), "").await;
    assert!(r.stdout.starts_with("unchanged"), "{r:?}");

    // The Claude session in worktree A edits src/lib.rs.
    let a = Session::new(&gw.base, &repo.a);
    assert_eq!(a.pre_edit("src/lib.rs").await.decision(), None);

    // Someone in worktree B commits a change of that file: refused, naming the holder.
    std::fs::write(repo.b.join("src/lib.rs"), "pub fn one() -> u32 { 3 }\n").unwrap();
    git_ok(&repo.b, &["add", "src/lib.rs"]);
    // Asynchronously: the gateway answering the guard runs on this test's runtime.
    let commit = |dir: &Path| {
        tokio::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["commit", "-q", "-m", "change"])
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .env("MCP_GATEWAY_URL", &gw.base)
            .env_remove("MCP_AGENT_ID")
            .env_remove("MCP_GATEWAY_TOKEN")
            .env_remove("MCP_HOOK_TASK")
            .output()
    };
    let refused = commit(&repo.b).await.unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains("src/lib.rs: leased by claude-app until"),
        "{stderr}"
    );

    // A's own commit of its leased file is not refused (its lease is its own).
    std::fs::write(repo.a.join("src/lib.rs"), "pub fn one() -> u32 { 4 }\n").unwrap();
    git_ok(&repo.a, &["add", "src/lib.rs"]);
    let own = commit(&repo.a).await.unwrap();
    assert!(
        own.status.success(),
        "{}",
        String::from_utf8_lossy(&own.stderr)
    );

    // Once A's session ends, B's commit goes through.
    a.hook("SessionEnd", json!({"reason": "exit"}))
        .await
        .answer();
    let allowed = commit(&repo.b).await.unwrap();
    assert!(
        allowed.status.success(),
        "{}",
        String::from_utf8_lossy(&allowed.stderr)
    );

    // A foreign pre-commit hook is not clobbered without --force, and is kept and run with it.
    std::fs::write(&hook, "#!/bin/sh\nexit 0\n").unwrap();
    let r = run(init(), "").await;
    assert_eq!(r.code, 4, "{r:?}");
    assert!(r.stderr.contains("not mcpctl's"), "{r:?}");
    let forced = mcpctl(
        &gw.base,
        &repo.b,
        &["init", "git", "--force", "--command", bin],
        &[],
    );
    let r = run(forced, "").await;
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        std::fs::read_to_string(repo.a.join(".git/hooks/pre-commit.orig")).unwrap(),
        "#!/bin/sh\nexit 0\n"
    );
}

/// SessionStart returns the agent's unread messages on the task as context, once: they are
/// acknowledged, so the next session start does not repeat them.
#[tokio::test]
async fn a_session_starts_with_its_unread_messages() {
    use mcp_agent_client::requests::{Recipients, SendMessageRequest};
    let gw = TestGateway::spawn().await;
    let repo = Repo::new();
    let a = Session::new(&gw.base, &repo.a);
    client(&gw, "qa")
        .send_message(SendMessageRequest {
            task_id: "app".into(),
            to: Recipients::Agents(vec!["claude-app".into()]),
            subject: "tests fail".into(),
            body: "test_greet expects 'Hello, Ada!'".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let context = |run: &Run| {
        run.answer()["hookSpecificOutput"]["additionalContext"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let first = context(&a.hook("SessionStart", json!({"source": "startup"})).await);
    assert!(
        first.contains("from qa")
            && first.contains("\"tests fail\"")
            && first.contains("expects 'Hello, Ada!'"),
        "{first}"
    );
    let again = context(&a.hook("SessionStart", json!({"source": "resume"})).await);
    assert!(!again.contains("tests fail"), "shown once: {again}");
}
