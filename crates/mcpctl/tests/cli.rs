//! End-to-end tests of the real `mcpctl` binary against a running gateway (real Postgres and
//! Redis): each command's exit code, its text output and its `--json` output.

use mcp_agent_client::{ClientConfig, GatewayClient, GatewayWorkspace};
use mcp_testkit::TestGateway;
use serde_json::{Value, json};
use std::process::Stdio;

mod common;
use common::Run;

impl Run {
    #[track_caller]
    fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    /// One JSON value a line (a `--json` stream).
    #[track_caller]
    fn json_lines(&self) -> Vec<Value> {
        let lines = self.stdout.lines();
        lines.map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    /// The run, once it failed with exit `code` and (with `--json`) error `error_code`.
    #[track_caller]
    fn failed(self, code: i32, error_code: &str) -> Run {
        assert_failed(&self, code, error_code);
        self
    }

    #[track_caller]
    fn ok(self) -> Run {
        assert_eq!(self.code, 0, "{self:?}");
        self
    }
}

fn command(base: &str, agent: &str, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_mcpctl"));
    cmd.args(args)
        .env("MCP_GATEWAY_URL", base)
        .env("MCP_AGENT_ID", agent)
        .env("MCP_GATEWAY_RETRIES", "2")
        .env_remove("MCP_GATEWAY_TOKEN")
        .env_remove("MCP_GATEWAY_TIMEOUT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

async fn run_as(gw: &TestGateway, agent: &str, args: &[&str], stdin: Option<&str>) -> Run {
    run_at(&gw.base, agent, args, stdin).await
}

async fn run_at(base: &str, agent: &str, args: &[&str], stdin: Option<&str>) -> Run {
    common::run(command(base, agent, args), stdin.unwrap_or_default()).await
}

async fn run(gw: &TestGateway, args: &[&str]) -> Run {
    As(gw, "cli").run(args).await
}

/// The `--json` answer of a run that succeeds.
async fn ok_json(gw: &TestGateway, args: &[&str]) -> Value {
    As(gw, "cli").json(args).await
}

/// The `--json` answer of a list command once its `total` reaches `min` (the lists follow
/// the writes; polled for up to five seconds).
async fn poll_total(gw: &TestGateway, args: &[&str], min: i64) -> Value {
    let mut listed = Value::Null;
    for _ in 0..50 {
        listed = ok_json(gw, args).await;
        if listed["total"].as_i64() >= Some(min) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    listed
}

/// A fresh directory name under the system's temporary directory, and its display form.
fn scratch_dir(label: &str) -> (std::path::PathBuf, String) {
    let dir = std::env::temp_dir().join(format!("{label}-{}", uuid::Uuid::new_v4().simple()));
    let d = dir.display().to_string();
    (dir, d)
}

/// A user of the CLI acting as one agent, with nothing on stdin.
struct As<'a>(&'a TestGateway, &'a str);

impl As<'_> {
    async fn run(&self, args: &[&str]) -> Run {
        run_as(self.0, self.1, args, None).await
    }

    /// The `--json` answer of a run that succeeds.
    async fn json(&self, args: &[&str]) -> Value {
        self.run(args).await.ok().json()
    }
}

fn client(gw: &TestGateway, agent: &str) -> GatewayClient {
    GatewayClient::new(ClientConfig::new(gw.base.clone()).with_agent(agent)).unwrap()
}

/// Task `t1`'s workspace as `coder`, with `files` (path, content) written in order.
async fn coder_workspace(gw: &TestGateway, files: &[(&str, &str)]) -> GatewayWorkspace {
    use mcp_agent_client::Workspace;
    let ws = client(gw, "coder").workspace("t1");
    for (path, content) in files {
        ws.write(path, content).await.unwrap();
    }
    ws
}

/// The string field `key` of every object in the JSON array `list`.
#[track_caller]
fn column<'a>(list: &'a Value, key: &str) -> Vec<&'a str> {
    let items = list.as_array().unwrap().iter();
    items.map(|item| item[key].as_str().unwrap()).collect()
}

/// A checked-out file's content.
#[track_caller]
fn read(dir: &std::path::Path, path: &str) -> String {
    std::fs::read_to_string(dir.join(path)).unwrap()
}

#[track_caller]
fn assert_failed(r: &Run, code: i32, error_code: &str) {
    assert_eq!(r.code, code, "{r:?}");
    assert!(!r.stderr.is_empty(), "a failure says why on stderr: {r:?}");
    if r.stdout.trim_start().starts_with('{') {
        let j = r.json();
        assert_eq!(j["success"], false, "{r:?}");
        assert_eq!(j["error"]["code"], error_code, "{r:?}");
    }
}

#[tokio::test]
async fn health_text_and_json() {
    let gw = TestGateway::spawn().await;
    let r = run(&gw, &["health"]).await.ok();
    assert!(
        r.stdout.contains("redis connected, postgres connected"),
        "{r:?}"
    );
    let j = ok_json(&gw, &["health", "--json"]).await;
    assert_eq!(
        (j["redis"].as_str(), j["postgres"].as_str()),
        (Some("connected"), Some("connected"))
    );
}

#[tokio::test]
async fn usage_errors_and_an_unreachable_gateway() {
    let r = run_at("http://127.0.0.1:9", "cli", &["file", "read"], None).await;
    assert_eq!(r.code, 2, "{r:?}");
    let port = mcp_testkit::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let r = run_at(&base, "cli", &["--json", "file", "read", "t1", "a"], None).await;
    assert_failed(&r, 6, "unavailable");
    assert_eq!(r.json()["error"]["attempts"], 2);
    // A URL that is not http(s) is a usage error; an https:// one is tried (over TLS).
    let r = run_at("ftp://example.invalid", "cli", &["health"], None).await;
    assert_eq!(r.code, 2, "{r:?}");
    let r = run_at("https://example.invalid", "cli", &["health"], None).await;
    assert_eq!(r.code, 6, "{r:?}");
}

#[tokio::test]
async fn task_create_and_show() {
    let gw = TestGateway::spawn().await;
    let j = ok_json(
        &gw,
        &[
            "task", "create", "--id", "t1", "--title", "Fix it", "--json",
        ],
    )
    .await;
    assert_eq!(
        (j["id"].as_str(), j["status"].as_str()),
        (Some("t1"), Some("pending"))
    );
    let again = run(&gw, &["--json", "task", "create", "--id", "t1"]).await;
    assert_failed(&again, 4, "already_exists");

    let r = run(&gw, &["task", "show", "t1"]).await.ok();
    assert!(r.stdout.contains("title:       Fix it"), "{r:?}");
    assert!(r.stdout.contains("status:      pending"), "{r:?}");
    assert_eq!(
        ok_json(&gw, &["task", "show", "t1", "--json"]).await["title"],
        "Fix it"
    );
    run(&gw, &["--json", "task", "show", "nope"])
        .await
        .failed(3, "task_not_found");
}

#[tokio::test]
async fn file_commands() {
    let gw = TestGateway::spawn().await;
    let content = "def f():\n    return 1\n";
    let r = run_as(
        &gw,
        "cli",
        &["file", "write", "t1", "./src//f.py"],
        Some(content),
    )
    .await
    .ok();
    assert_eq!(r.stdout.trim(), "wrote src/f.py: version 1, 22 bytes");

    let r = run(&gw, &["file", "read", "t1", "src/f.py"]).await.ok();
    assert_eq!(r.stdout, content, "read prints the content exactly");
    let j = ok_json(&gw, &["file", "read", "t1", "src/f.py", "--json"]).await;
    assert_eq!(
        (j["content"].as_str(), j["version"].as_i64()),
        (Some(content), Some(1))
    );

    let r = run(
        &gw,
        &[
            "file", "edit", "t1", "src/f.py", "--old", "return 1", "--new", "return 2",
        ],
    )
    .await
    .ok();
    assert!(
        r.stdout.contains("-    return 1") && r.stdout.contains("+    return 2"),
        "{r:?}"
    );
    assert!(
        r.stdout
            .contains("edited src/f.py: 1 replacement(s), version 2"),
        "{r:?}"
    );
    assert_failed(
        &run(
            &gw,
            &[
                "--json", "file", "edit", "t1", "src/f.py", "--old", "zzz", "--new", "y",
            ],
        )
        .await,
        4,
        "edit_no_match",
    );

    run(
        &gw,
        &["file", "write", "t1", "README.md", "--content", "hi"],
    )
    .await
    .ok();
    let r = run(&gw, &["file", "ls", "t1"]).await.ok();
    let lines: Vec<_> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{r:?}");
    assert!(lines[0].contains("PATH"));
    assert!(r.stdout.contains("src/f.py") && r.stdout.contains("README.md"));
    let j = ok_json(&gw, &["file", "ls", "t1", "src", "--json"]).await;
    assert_eq!(j["files"].as_array().unwrap().len(), 1);
    assert_eq!(j["files"][0]["updated_by"], "cli");

    run(
        &gw,
        &[
            "--json",
            "file",
            "write",
            "t1",
            "src/f.py",
            "--content",
            "x",
            "--expected-version",
            "1",
        ],
    )
    .await
    .failed(4, "version_conflict");
    run(
        &gw,
        &[
            "--json",
            "file",
            "write",
            "t1",
            "../escape",
            "--content",
            "x",
        ],
    )
    .await
    .failed(5, "invalid_path");

    let j = ok_json(&gw, &["file", "rm", "t1", "README.md", "--json"]).await;
    assert_eq!(j["deleted"], true);
    let r = run(&gw, &["file", "read", "t1", "README.md"]).await;
    assert_failed(&r, 3, "file_not_found");
    assert!(r.stderr.contains("file_not_found"), "{r:?}");
    run(&gw, &["--json", "file", "rm", "t1", "README.md"])
        .await
        .failed(3, "file_not_found");
}

/// Issue #17: `lock claim --recursive` leases a directory; `--wait` waits in the path's queue
/// and is served when the holder releases.
#[tokio::test]
async fn lock_claim_waits_and_leases_directories() {
    let gw = TestGateway::spawn().await;
    let (agent_a, agent_b) = (As(&gw, "agent-a"), As(&gw, "agent-b"));
    let j = agent_a
        .json(&["--json", "lock", "claim", "t1", "src", "--recursive"])
        .await;
    assert_eq!(
        (j["path"].as_str(), j["recursive"].as_bool()),
        (Some("src/"), Some(true))
    );
    let r = agent_b
        .run(&["--json", "lock", "claim", "t1", "src/a.py"])
        .await;
    assert_failed(&r, 4, "locked");
    assert_eq!(r.json()["error"]["lease_path"], "src/");
    let waiting = agent_b.run(&["lock", "claim", "t1", "src/a.py", "--wait", "20"]);
    let release = async {
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        agent_a
            .run(&["lock", "release", "t1", "src", "--recursive"])
            .await
            .ok();
    };
    let (r, ()) = tokio::join!(waiting, release);
    let r = r.ok();
    assert!(r.stdout.contains("locked src/a.py for agent-b"), "{r:?}");
    assert!(r.stdout.contains("after waiting"), "{r:?}");
    let list = agent_a.run(&["lock", "list", "t1"]).await.ok();
    assert!(list.stdout.contains("src/a.py"), "{list:?}");
}

#[tokio::test]
async fn lock_commands() {
    let gw = TestGateway::spawn().await;
    let (agent_a, agent_b) = (As(&gw, "agent-a"), As(&gw, "agent-b"));
    let j = agent_a
        .json(&["--json", "lock", "claim", "t1", "a.py", "--ttl", "30"])
        .await;
    assert_eq!(
        (j["owner"].as_str(), j["timeout_sec"].as_i64()),
        (Some("agent-a"), Some(30))
    );
    let fence = j["fence"].as_i64().unwrap();

    let r = agent_b
        .run(&["--json", "lock", "claim", "t1", "a.py"])
        .await;
    assert_failed(&r, 4, "locked");
    assert_eq!(r.json()["error"]["holder"], "agent-a");
    let r = agent_b
        .run(&["file", "write", "t1", "a.py", "--content", "x"])
        .await;
    assert_failed(&r, 4, "locked");

    let r = agent_a
        .run(&["lock", "renew", "t1", "a.py", "--ttl", "40"])
        .await
        .ok();
    assert!(
        r.stdout
            .contains(&format!("locked a.py for agent-a: 40 s, fence {fence}")),
        "{r:?}"
    );
    let fence_arg = fence.to_string();
    agent_a
        .run(&[
            "file",
            "write",
            "t1",
            "a.py",
            "--content",
            "mine",
            "--fence",
            &fence_arg,
        ])
        .await
        .ok();

    assert_failed(
        &agent_b
            .run(&["--json", "lock", "release", "t1", "a.py"])
            .await,
        4,
        "lock_not_held",
    );
    let r = agent_a.run(&["lock", "release", "t1", "a.py"]).await.ok();
    assert_eq!(r.stdout.trim(), "released a.py");
    agent_b.run(&["lock", "claim", "t1", "a.py"]).await.ok();
    assert_failed(
        &agent_b
            .run(&["--json", "lock", "claim", "t1", "a.py", "--ttl", "0"])
            .await,
        5,
        "invalid_argument",
    );
}

/// Issue #21 item 4: a renewal without `--ttl` keeps the lease's own length (it shortened a
/// 120 s lease to the 60 s default); with `--ttl` it takes the new length, which the next
/// renewal without one keeps.
#[tokio::test]
async fn a_renewal_keeps_the_leases_length() {
    let gw = TestGateway::spawn().await;
    let lock = |args: &'static [&'static str]| {
        let gw = &gw;
        async move {
            let j = run_as(gw, "agent-a", args, None).await.ok().json();
            let left = chrono::DateTime::parse_from_rfc3339(j["expires_at"].as_str().unwrap())
                .unwrap()
                .signed_duration_since(chrono::Utc::now())
                .num_seconds();
            (j["timeout_sec"].as_i64().unwrap(), left)
        }
    };
    let (ttl, left) = lock(&["--json", "lock", "claim", "t1", "a.py", "--ttl", "120"]).await;
    assert_eq!(ttl, 120);
    assert!((110..=120).contains(&left), "{left}");
    let (ttl, left) = lock(&["--json", "lock", "renew", "t1", "a.py"]).await;
    assert_eq!(ttl, 120, "a renewal without --ttl keeps the lease's length");
    assert!((110..=120).contains(&left), "{left}");
    let (ttl, _) = lock(&["--json", "lock", "renew", "t1", "a.py", "--ttl", "300"]).await;
    assert_eq!(ttl, 300);
    let (ttl, left) = lock(&["--json", "lock", "renew", "t1", "a.py"]).await;
    assert_eq!(ttl, 300);
    assert!((290..=300).contains(&left), "{left}");
}

#[tokio::test]
async fn file_history_show_and_diff() {
    let gw = TestGateway::spawn().await;
    let coder = As(&gw, "coder");
    let qa = As(&gw, "qa");
    coder
        .run(&["file", "write", "t1", "a.py", "--content", "x = 1\ny = 2\n"])
        .await
        .ok();
    qa.run(&[
        "file", "edit", "t1", "a.py", "--old", "y = 2", "--new", "y = 3",
    ])
    .await
    .ok();

    let r = run(&gw, &["file", "history", "t1", "./a.py"]).await.ok();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{r:?}");
    assert!(
        lines[0].contains("VERSION") && lines[0].contains("AGENT"),
        "{r:?}"
    );
    let cols = |l: &str| {
        l.split_whitespace()
            .take(3)
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(cols(lines[1]), ["2", "edit", "qa"], "{r:?}");
    assert_eq!(cols(lines[2]), ["1", "write", "coder"], "{r:?}");
    let j = ok_json(&gw, &["--json", "file", "history", "t1", "a.py", "-n", "1"]).await;
    assert_eq!(
        (
            j["revisions"][0]["version"].as_i64(),
            j["next_before"].as_i64()
        ),
        (Some(2), Some(2))
    );

    let r = run(&gw, &["file", "show", "t1", "a.py", "--version", "1"])
        .await
        .ok();
    assert_eq!(r.stdout, "x = 1\ny = 2\n");
    let j = ok_json(
        &gw,
        &["--json", "file", "show", "t1", "a.py", "--version", "2"],
    )
    .await;
    assert_eq!(
        (j["content"].as_str(), j["agent_id"].as_str()),
        (Some("x = 1\ny = 3\n"), Some("qa"))
    );

    let r = run(&gw, &["file", "diff", "t1", "a.py", "1", "2"])
        .await
        .ok();
    assert!(r.stdout.starts_with("--- a/a.py\n+++ b/a.py\n"), "{r:?}");
    assert!(r.stdout.contains("-y = 2\n+y = 3\n"), "{r:?}");
    let j = ok_json(&gw, &["--json", "file", "diff", "t1", "a.py", "2", "1"]).await;
    assert!(
        j["diff"].as_str().unwrap().contains("-y = 3\n+y = 2\n"),
        "{j}"
    );

    assert_failed(
        &run(
            &gw,
            &["--json", "file", "show", "t1", "a.py", "--version", "7"],
        )
        .await,
        3,
        "revision_not_found",
    );
    run(&gw, &["--json", "file", "history", "t1", "nope.py"])
        .await
        .failed(3, "file_not_found");
    run(&gw, &["--json", "file", "history", "t1", "a.py", "-n", "0"])
        .await
        .failed(5, "invalid_argument");
}

#[tokio::test]
async fn lock_list() {
    let gw = TestGateway::spawn().await;
    let (agent_a, agent_b) = (As(&gw, "agent-a"), As(&gw, "agent-b"));
    let r = run(&gw, &["lock", "list", "t1"]).await.ok();
    assert_eq!(r.stdout.lines().count(), 1, "only the header: {r:?}");
    agent_a
        .run(&["lock", "claim", "t1", "src/a.py", "--ttl", "30"])
        .await
        .ok();
    agent_b.run(&["lock", "claim", "t1", "b.py"]).await.ok();
    let r = run(&gw, &["lock", "list", "t1"]).await.ok();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{r:?}");
    assert!(
        lines[0].contains("HOLDER") && lines[0].contains("PATH"),
        "{r:?}"
    );
    assert!(
        lines[1].starts_with("agent-b") && lines[1].ends_with("b.py"),
        "{r:?}"
    );
    assert!(
        lines[2].starts_with("agent-a") && lines[2].ends_with("src/a.py"),
        "{r:?}"
    );
    let j = ok_json(&gw, &["--json", "lock", "list", "t1"]).await;
    let leases = j["leases"].as_array().unwrap();
    assert_eq!(
        (leases[1]["path"].as_str(), leases[1]["holder"].as_str()),
        (Some("src/a.py"), Some("agent-a"))
    );
    assert!(leases[1]["ttl_ms_left"].as_i64().unwrap() <= 30_000);
    run(&gw, &["--json", "lock", "list", "bad id"])
        .await
        .failed(5, "invalid_argument");
}

#[tokio::test]
async fn logs_tail() {
    let gw = TestGateway::spawn().await;
    let mut log = client(&gw, "coder").execution_logger("t1").await.unwrap();
    for i in 0..3 {
        log.log("run_tests", json!({"n": i}), format!("pass {i}"))
            .await
            .unwrap();
    }
    let j = ok_json(&gw, &["logs", "tail", "t1", "-n", "2", "--json"]).await;
    let steps = j["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[1]["step"]["observation"], "pass 2");
    let r = run(&gw, &["logs", "tail", "t1"]).await.ok();
    let lines: Vec<_> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{r:?}");
    assert!(
        lines[0].contains("coder") && lines[0].contains("run_tests") && lines[0].contains("pass 0"),
        "{r:?}"
    );
    log.finish().await.unwrap();
}

#[tokio::test]
async fn checkout_copies_the_files() {
    let gw = TestGateway::spawn().await;
    let c = client(&gw, "coder");
    let ws = c.workspace("t1");
    use mcp_agent_client::Workspace;
    ws.write("src/main.rs", "fn main() {}\n").await.unwrap();
    ws.write("src/lib/mod.rs", "pub mod x;\n").await.unwrap();
    ws.write("README.md", "# t1\n").await.unwrap();
    ws.write("gone.txt", "x").await.unwrap();
    ws.delete("gone.txt").await.unwrap();

    let (dir, d) = scratch_dir("mcpctl-co");
    let r = run(&gw, &["checkout", "t1", &d]).await.ok();
    assert!(r.stdout.contains("checked out 3 file(s) of t1"), "{r:?}");
    assert!(
        r.stderr.contains("checkout: [3/3]"),
        "progress on stderr: {r:?}"
    );
    assert_eq!(read(&dir, "src/main.rs"), "fn main() {}\n");
    assert_eq!(read(&dir, "src/lib/mod.rs"), "pub mod x;\n");
    assert!(!dir.join("gone.txt").exists());

    let sub = dir.join("only-src");
    let j = run(
        &gw,
        &[
            "checkout",
            "t1",
            &sub.display().to_string(),
            "--prefix",
            "src",
            "--json",
            "-q",
        ],
    )
    .await
    .ok();
    assert!(j.stderr.is_empty(), "--quiet: {j:?}");
    let files = j.json()["files"].as_array().unwrap().clone();
    assert_eq!(files.len(), 2);
    assert!(!sub.join("README.md").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Starts a streaming command and waits until its stderr says it is live (`ready`).
async fn start_streaming(gw: &TestGateway, args: &[&str], ready: &str) -> tokio::process::Child {
    use tokio::io::AsyncBufReadExt;
    let mut child = command(&gw.base, "cli", args).spawn().expect("mcpctl runs");
    let stderr = child.stderr.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    let wait = async {
        let mut seen = String::new();
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains(ready) {
                return;
            }
            seen.push_str(&line);
            seen.push('\n');
        }
        panic!("mcpctl ended before saying {ready:?}; stderr: {seen}");
    };
    tokio::time::timeout(std::time::Duration::from_secs(20), wait)
        .await
        .expect("mcpctl gets ready");
    // Keep draining stderr so the child never blocks on it.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    child
}

async fn finish(child: tokio::process::Child) -> Run {
    let out = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("mcpctl ends after --count")
        .unwrap();
    // Its stderr was drained while it ran, and the run is not timed.
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::new(),
        took: std::time::Duration::ZERO,
    }
}

#[tokio::test]
async fn watch_prints_live_events() {
    let gw = TestGateway::spawn().await;
    // Nothing happened in t1 yet: the watch opens anyway and sees the first change.
    let child = start_streaming(
        &gw,
        &["watch", "t1", "--count", "2", "--json"],
        "watching t1",
    )
    .await;
    let ws = client(&gw, "coder").workspace("t1");
    use mcp_agent_client::Workspace;
    ws.write("a.py", "1").await.unwrap();
    ws.edit("a.py", "1", "2", false).await.unwrap();
    let r = finish(child).await.ok();
    let events = r.json_lines();
    assert_eq!(events.len(), 2, "{r:?}");
    assert_eq!(
        (events[0]["type"].as_str(), events[1]["type"].as_str()),
        (Some("file_written"), Some("file_edited"))
    );
    assert_eq!(events[1]["data"]["path"], "a.py");

    // Text output, replaying from the start and filtered by type.
    let r = run(
        &gw,
        &[
            "watch",
            "t1",
            "--since",
            "0",
            "--types",
            "file_edited",
            "--count",
            "1",
        ],
    )
    .await
    .ok();
    assert!(
        r.stdout.contains("file_edited")
            && r.stdout.contains("coder")
            && r.stdout.contains("a.py v2"),
        "{r:?}"
    );
}

#[tokio::test]
async fn logs_follow_prints_past_then_new_steps_once() {
    let gw = TestGateway::spawn().await;
    let mut log = client(&gw, "coder").execution_logger("t1").await.unwrap();
    log.log("before", json!({}), "old").await.unwrap();
    let child = start_streaming(
        &gw,
        &["logs", "follow", "t1", "--count", "2", "--json"],
        "following the log",
    )
    .await;
    log.log("after", json!({}), "new 1").await.unwrap();
    log.log("after", json!({}), "new 2").await.unwrap();
    let r = finish(child).await.ok();
    let steps = r.json_lines();
    let observations: Vec<_> = steps
        .iter()
        .map(|s| s["step"]["observation"].as_str().unwrap())
        .collect();
    assert_eq!(observations, ["old", "new 1", "new 2"], "{r:?}");
    log.finish().await.unwrap();
}

#[tokio::test]
async fn checkout_follow_keeps_the_directory_in_sync() {
    let gw = TestGateway::spawn().await;
    let ws = coder_workspace(&gw, &[("keep.txt", "v1"), ("drop.txt", "bye")]).await;
    use mcp_agent_client::Workspace;
    let (dir, d) = scratch_dir("mcpctl-fo");
    let child = start_streaming(
        &gw,
        &["checkout", "t1", &d, "--follow", "--count", "3"],
        "following t1",
    )
    .await;
    assert_eq!(read(&dir, "drop.txt"), "bye");

    ws.write("src/new.rs", "fn new() {}").await.unwrap();
    ws.edit("keep.txt", "v1", "v2", false).await.unwrap();
    ws.delete("drop.txt").await.unwrap();
    let r = finish(child).await.ok();
    assert!(r.stdout.contains("updated src/new.rs (version 1)"), "{r:?}");
    assert!(r.stdout.contains("removed drop.txt"), "{r:?}");
    assert_eq!(read(&dir, "src/new.rs"), "fn new() {}");
    assert_eq!(read(&dir, "keep.txt"), "v2");
    assert!(!dir.join("drop.txt").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_token_is_sent_and_refusals_exit_7() {
    let gw = TestGateway::spawn_secured().await;
    let token = gw.token("coder", &["t1"], mcp_testkit::Role::Agent);
    let mut cmd = command(
        &gw.base,
        "",
        &["--json", "file", "write", "t1", "a", "--content", "x"],
    );
    cmd.env("MCP_GATEWAY_TOKEN", &token);
    let out = cmd.output().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    let r = run(&gw, &["--json", "file", "read", "t1", "a"]).await;
    assert_failed(&r, 7, "unauthorized");
    // With authentication on, an agent other than the token's is refused.
    let r = run(
        &gw,
        &[
            "--json",
            "--token",
            &token,
            "--agent",
            "someone-else",
            "file",
            "read",
            "t1",
            "a",
        ],
    )
    .await;
    assert_failed(&r, 7, "forbidden");
    let r = As(&gw, "")
        .run(&["--json", "--token", &token, "file", "read", "t2", "a"])
        .await;
    assert_failed(&r, 7, "forbidden");
    let r = As(&gw, "")
        .run(&["--token", &token, "file", "read", "t1", "a"])
        .await
        .ok();
    assert_eq!(r.stdout, "x");
    let r = run(
        &gw,
        &[
            "--token", &token, "--agent", "coder", "file", "read", "t1", "a",
        ],
    )
    .await
    .ok();
    assert_eq!(r.stdout, "x", "the token's own agent may be named");
}

/// `mcpctl demo`: two agents, a lease conflict seen twice and resolved, the task done; the
/// console URL on stderr; the events on the task say the same.
#[tokio::test]
async fn the_demo_plays_a_coder_and_a_qa_through_a_conflict() {
    let gw = TestGateway::spawn_embedded().await;
    let someone = As(&gw, "someone");
    let run = someone
        .run(&["demo", "--task", "demo-t", "--pace-ms", "0"])
        .await
        .ok();
    assert!(
        run.stderr
            .contains(&format!("{}/ui/#/task/demo-t", gw.base)),
        "{run:?}"
    );
    assert!(
        run.stdout.contains("2 conflicts seen and resolved"),
        "{run:?}"
    );
    let (status, state) = gw.get("/resources/tasks/demo-t/state").await;
    assert_eq!((status, state["status"].as_str()), (200, Some("done")));
    let (_, file) = gw.get("/resources/workspace/demo-t/src/greet.py").await;
    assert_eq!(file["version"], 3);
    assert!(file["content"].as_str().unwrap().contains("Hello, {name}!"));
    let (_, page) = gw.get("/resources/agents?task=demo-t").await;
    let agents = column(&page["agents"], "agent_id");
    assert!(
        agents.contains(&"coder") && agents.contains(&"qa"),
        "{page}"
    );
    let events = gw
        .http
        .get(format!("{}/tasks/demo-t/events?since=0", gw.base))
        .timeout(std::time::Duration::from_secs(2))
        .send()
        .await
        .unwrap();
    // The stream stays open; read what arrives in time and count the refusals.
    let mut body = String::new();
    let mut events = events;
    while let Ok(Ok(Some(chunk))) =
        tokio::time::timeout(std::time::Duration::from_millis(500), events.chunk()).await
    {
        body.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(body.contains("event: write_refused"), "{body}");
    assert!(body.contains("event: claim_refused"), "{body}");
    assert_eq!(body.matches("event: agent_left").count(), 2, "{body}");
}

/// A port nobody listens on.
fn dead_base() -> String {
    let port = mcp_testkit::free_port();
    format!("http://127.0.0.1:{port}")
}

/// Issue #21 item 1: the streaming commands against a gateway that is down say what they do
/// (connecting, each failed attempt and the wait before the next) and stop at `--timeout`
/// with exit 8 — they hung silently.
#[tokio::test]
async fn streaming_commands_against_a_gateway_that_is_down_say_so_and_time_out() {
    let base = dead_base();
    let (dir, d) = scratch_dir("mcpctl-down");
    for args in [
        vec!["watch", "t1", "--timeout", "2"],
        vec!["logs", "follow", "t1", "--timeout", "2"],
        vec!["checkout", "t1", d.as_str(), "--follow", "--timeout", "2"],
    ] {
        let started = std::time::Instant::now();
        let r = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            run_at(&base, "cli", &args, None),
        )
        .await
        .unwrap_or_else(|_| panic!("{args:?} ends by itself"));
        assert_eq!(r.code, 8, "{args:?}: {r:?}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "{args:?}"
        );
        assert!(
            r.stderr.contains(&format!("connecting to {base}/")),
            "{args:?}: {r:?}"
        );
        assert!(
            r.stderr.contains("attempt 1 failed") && r.stderr.contains("retrying in"),
            "{args:?}: {r:?}"
        );
        assert!(
            r.stderr.contains("timed out after 2 s (--timeout)"),
            "{args:?}: {r:?}"
        );
    }
    assert!(!dir.exists(), "nothing was checked out");
    // With --json the timeout is an error object on stdout.
    let r = run_at(
        &base,
        "cli",
        &["--json", "watch", "t1", "--timeout", "1"],
        None,
    )
    .await;
    assert_failed(&r, 8, "timeout");
    // --quiet: only the final sentence.
    let r = run_at(&base, "cli", &["-q", "watch", "t1", "--timeout", "1"], None).await;
    assert_eq!(r.code, 8, "{r:?}");
    assert_eq!(r.stderr.lines().count(), 1, "{r:?}");
}

/// A streaming command that collects its stderr, for tests that read it while it runs.
struct Streaming {
    child: tokio::process::Child,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Streaming {
    async fn start(base: &str, args: &[&str]) -> Streaming {
        use tokio::io::AsyncBufReadExt;
        let mut child = command(base, "cli", args).spawn().expect("mcpctl runs");
        let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = stderr.clone();
        tokio::spawn(async move {
            while let Ok(Some(l)) = lines.next_line().await {
                let mut s = sink.lock().unwrap();
                s.push_str(&l);
                s.push('\n');
            }
        });
        Streaming { child, stderr }
    }

    /// Waits until stderr contains `text` (panics after 20 s, with what it said).
    async fn wait_for(&self, text: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !self.stderr.lock().unwrap().contains(text) {
            assert!(
                std::time::Instant::now() < deadline,
                "stderr never said {text:?}: {}",
                self.stderr.lock().unwrap()
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    async fn finish(self) -> Run {
        let mut run = finish(self.child).await;
        run.stderr = self.stderr.lock().unwrap().clone();
        run
    }
}

/// Issue #21 item 1: a running watch that loses the gateway says so, says each retry, and
/// where it resumed once the gateway is back; no event is lost.
#[tokio::test]
async fn a_watch_says_when_it_loses_the_gateway_and_where_it_resumed() {
    let mut gw = TestGateway::spawn().await;
    let ws = client(&gw, "coder").workspace("t1");
    use mcp_agent_client::Workspace;
    ws.write("a.py", "1").await.unwrap();
    let w = Streaming::start(
        &gw.base,
        &[
            "watch",
            "t1",
            "--since",
            "0",
            "--count",
            "2",
            "--timeout",
            "60",
        ],
    )
    .await;
    w.wait_for("watching t1").await;
    gw.stop().await;
    w.wait_for("connection lost").await;
    w.wait_for("retrying in").await;
    gw.start().await;
    ws.write("a.py", "2").await.unwrap();
    let r = w.finish().await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("a.py v2"), "{r:?}");
    assert!(
        r.stderr.contains("reconnected; resumed after event "),
        "{r:?}"
    );
}

/// Issue #21 item 3: a second checkout does not overwrite a file edited locally (it did,
/// silently): it refuses with exit 4 before writing anything, naming the file; files that
/// were not edited locally are updated by the next checkout that may run; --force
/// overwrites.
#[tokio::test]
async fn checkout_keeps_local_edits_unless_forced() {
    let gw = TestGateway::spawn().await;
    let ws = coder_workspace(&gw, &[("mine.txt", "v1"), ("theirs.txt", "v1")]).await;
    use mcp_agent_client::Workspace;
    let (dir, d) = scratch_dir("mcpctl-keep");
    run(&gw, &["checkout", "t1", &d]).await.ok();
    // Unchanged on both sides: a second checkout is fine.
    run(&gw, &["checkout", "t1", &d]).await.ok();

    std::fs::write(dir.join("mine.txt"), "my local edit").unwrap();
    ws.write("mine.txt", "v2").await.unwrap();
    ws.write("theirs.txt", "v2").await.unwrap();
    let r = run(&gw, &["checkout", "t1", &d]).await;
    assert_eq!(r.code, 4, "{r:?}");
    assert!(
        r.stderr.contains("mine.txt") && r.stderr.contains("--force"),
        "{r:?}"
    );
    assert_eq!(
        read(&dir, "mine.txt"),
        "my local edit",
        "the local edit survives"
    );
    assert_eq!(read(&dir, "theirs.txt"), "v1", "nothing was written");
    let j = run(&gw, &["--json", "checkout", "t1", &d]).await;
    assert_failed(&j, 4, "local_changes");
    assert_eq!(j.json()["error"]["files"], json!(["mine.txt"]));

    // A file that was there before the first checkout, with other content, is kept too.
    let other = dir.join("fresh");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("theirs.txt"), "not from the gateway").unwrap();
    let r = run(&gw, &["checkout", "t1", &other.display().to_string()]).await;
    assert_eq!(r.code, 4, "{r:?}");

    // --force overwrites.
    let r = run(&gw, &["checkout", "t1", &d, "--force"]).await.ok();
    assert!(r.stdout.contains("checked out 2 file(s)"), "{r:?}");
    assert_eq!(read(&dir, "mine.txt"), "v2");
    assert_eq!(read(&dir, "theirs.txt"), "v2");

    // --follow: a change of a file edited locally is skipped with a warning.
    std::fs::write(dir.join("mine.txt"), "edited again").unwrap();
    let follow = [
        "checkout",
        "t1",
        &d,
        "--follow",
        "--count",
        "2",
        "--timeout",
        "60",
    ];
    let f = Streaming::start(&gw.base, &follow).await;
    // The snapshot refuses first: the follow needs --force or a clean directory.
    let r = f.finish().await;
    assert_eq!(r.code, 4, "{r:?}");
    std::fs::write(dir.join("mine.txt"), "v2").unwrap();
    let f = Streaming::start(&gw.base, &follow).await;
    f.wait_for("following t1").await;
    std::fs::write(dir.join("mine.txt"), "edited while following").unwrap();
    ws.write("mine.txt", "v3").await.unwrap();
    ws.write("theirs.txt", "v3").await.unwrap();
    let r = f.finish().await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("kept local edits of mine.txt"), "{r:?}");
    assert!(
        r.stderr
            .contains("warning: kept the local edits of mine.txt"),
        "{r:?}"
    );
    assert_eq!(read(&dir, "mine.txt"), "edited while following");
    assert_eq!(read(&dir, "theirs.txt"), "v3");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue #21 item 3: one rule for unknown tasks. `checkout nope` exited 0 with an empty
/// folder and `logs tail nope` exited 0; now the snapshot commands exit 3, and the following
/// commands wait for the task, saying so, until --timeout.
#[tokio::test]
async fn unknown_tasks_one_rule() {
    let gw = TestGateway::spawn().await;
    let (dir, d) = scratch_dir("mcpctl-nope");
    let r = run(&gw, &["--json", "checkout", "nope", &d]).await;
    assert_failed(&r, 3, "task_not_found");
    assert!(r.stderr.contains("no such task: nope"), "{r:?}");
    assert!(!dir.exists(), "no empty folder is left behind");
    let r = run(&gw, &["--json", "logs", "tail", "nope"]).await;
    assert_failed(&r, 3, "task_not_found");
    let r = run(&gw, &["--json", "task", "show", "nope"]).await;
    assert_failed(&r, 3, "task_not_found");
    for args in [
        vec!["watch", "nope", "--timeout", "2"],
        vec!["logs", "follow", "nope", "--timeout", "2"],
        vec!["checkout", "nope", d.as_str(), "--follow", "--timeout", "2"],
    ] {
        let r = run(&gw, &args).await;
        assert_eq!(r.code, 8, "{args:?}: {r:?}");
        assert!(
            r.stderr
                .contains("nope has no task row, files or log steps yet"),
            "{r:?}"
        );
    }
    // A task with only a file, only a step, or only a row exists.
    let ws = client(&gw, "coder").workspace("f");
    use mcp_agent_client::Workspace;
    ws.write("a", "x").await.unwrap();
    let mut log = client(&gw, "coder").execution_logger("s").await.unwrap();
    log.log("x", json!({}), "y").await.unwrap();
    run(&gw, &["task", "create", "--id", "r"]).await.ok();
    run(&gw, &["logs", "tail", "f"]).await.ok();
    run(&gw, &["logs", "tail", "r"]).await.ok();
    let empty = dir.join("r");
    run(&gw, &["checkout", "s", &empty.display().to_string()])
        .await
        .ok();
    run(
        &gw,
        &["checkout", "r", &dir.join("r2").display().to_string()],
    )
    .await
    .ok();
    log.finish().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue #21 item 2: finding a task without knowing its id — `task list`, `agents`, `audit`,
/// as tables and as JSON.
#[tokio::test]
async fn task_list_agents_and_audit() {
    let gw = TestGateway::spawn().await;
    run(
        &gw,
        &[
            "task",
            "create",
            "--id",
            "parser",
            "--title",
            "Build the parser",
        ],
    )
    .await
    .ok();
    let ws = client(&gw, "coder").workspace("parser");
    use mcp_agent_client::Workspace;
    ws.write("src/lib.rs", "fn main() {}").await.unwrap();
    client(&gw, "qa")
        .workspace("no-row")
        .write("t.txt", "x")
        .await
        .unwrap();

    // Durable activity, read back through the lists (polled: they follow the writes).
    let listed = poll_total(&gw, &["--json", "task", "list"], 2).await;
    let ids = column(&listed["tasks"], "task_id");
    assert!(
        ids.contains(&"parser") && ids.contains(&"no-row"),
        "{listed}"
    );
    let r = run(&gw, &["task", "list"]).await.ok();
    let header = r.stdout.lines().next().unwrap_or_default();
    assert!(
        header.starts_with("TASK") && header.contains("LAST ACTIVITY"),
        "{r:?}"
    );
    assert!(
        r.stdout
            .lines()
            .any(|l| l.starts_with("parser") && l.contains("Build the parser")),
        "{r:?}"
    );
    assert!(r.stderr.contains("task(s)"), "{r:?}");
    let r = ok_json(&gw, &["--json", "task", "list", "--q", "pars"]).await;
    assert_eq!(r["tasks"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r["tasks"][0]["task_id"], "parser");

    let agents = poll_total(&gw, &["--json", "agents"], 2).await;
    let names = column(&agents["agents"], "agent_id");
    assert!(
        names.contains(&"coder") && names.contains(&"qa"),
        "{agents}"
    );
    let r = run(&gw, &["agents"]).await.ok();
    assert!(r.stdout.lines().any(|l| l.starts_with("coder")), "{r:?}");

    let j = ok_json(&gw, &["--json", "audit", "--task", "parser"]).await;
    let entries = j["entries"].as_array().unwrap();
    assert!(
        entries.iter().any(|e| e["action"] == "file_write"
            && e["actor"] == "coder"
            && e["path"] == "src/lib.rs"),
        "{j}"
    );
    let r = run(&gw, &["audit", "--by", "coder", "-n", "5"]).await.ok();
    assert!(
        r.stdout.contains("file_write") && r.stdout.contains("src/lib.rs"),
        "{r:?}"
    );
    let r = run(&gw, &["--json", "audit", "--since", "yesterday"]).await;
    assert_failed(&r, 5, "invalid_argument");
}

/// Issue #21 item 12: shell completions and the manual page, from the binary.
#[tokio::test]
async fn completions_and_man_page() {
    let base = dead_base();
    let r = run_at(&base, "cli", &["completions", "bash"], None)
        .await
        .ok();
    assert!(
        r.stdout.contains("_mcpctl()") && r.stdout.contains("checkout"),
        "{r:?}"
    );
    let r = run_at(&base, "cli", &["completions", "zsh"], None)
        .await
        .ok();
    assert!(r.stdout.starts_with("#compdef mcpctl"), "{r:?}");
    let r = run_at(&base, "cli", &["man"], None).await.ok();
    assert!(
        r.stdout.contains(".TH") && r.stdout.contains("checkout"),
        "{r:?}"
    );
    let r = run_at(&base, "cli", &["completions", "tcsh"], None).await;
    assert_eq!(r.code, 2, "{r:?}");
}

/// Runs the binary in a pseudo-terminal (util-linux `script`), as a person at a terminal
/// would: what the terminal received (stdout and stderr together), and the exit code.
async fn run_in_terminal(gw: &TestGateway, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let line = std::iter::once(env!("CARGO_BIN_EXE_mcpctl"))
        .chain(args.iter().copied())
        .map(quote)
        .collect::<Vec<_>>()
        .join(" ");
    let mut cmd = tokio::process::Command::new("script");
    cmd.args(["-qfec", &line, "/dev/null"])
        .env("MCP_GATEWAY_URL", &gw.base)
        .env("MCP_AGENT_ID", "cli")
        .env("TERM", "xterm-256color")
        .env_remove("NO_COLOR")
        .env_remove("CLICOLOR")
        .env_remove("MCP_GATEWAY_TOKEN")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .await
        .expect("`script` (util-linux) runs the command in a terminal");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// `text` without its ANSI escape sequences (`ESC [ … letter`): what a terminal shows.
fn visible(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Issue #21 item 12: at a terminal, `checkout` draws a progress bar (instead of one line a
/// file, which pipes and logs still get: `checkout_copies_the_files`) and the demo colours
/// its agents and the refusals; `NO_COLOR` turns colour off.
#[tokio::test]
async fn at_a_terminal_checkout_draws_a_bar_and_the_demo_has_colour() {
    let gw = TestGateway::spawn().await;
    let ws = client(&gw, "coder").workspace("t1");
    use mcp_agent_client::Workspace;
    for i in 0..12 {
        ws.write(&format!("src/f{i}.rs"), "x").await.unwrap();
    }
    let (dir, _) = scratch_dir("mcpctl-tty");
    let (code, screen) =
        run_in_terminal(&gw, &["checkout", "t1", &dir.display().to_string()], &[]).await;
    assert_eq!(code, 0, "{screen}");
    assert!(
        screen.contains("/12 src/f"),
        "a bar with the file: {screen:?}"
    );
    assert!(
        !screen.contains("checkout: [1/12]"),
        "no line a file: {screen:?}"
    );
    // The bar is gone when the result is printed: the result starts its own line.
    let result = screen
        .find("checked out 12 file(s) of t1")
        .expect("the result");
    let line_start = screen[..result].rfind(['\r', '\n']).map_or(0, |i| i + 1);
    assert_eq!(visible(&screen[line_start..result]), "", "{screen:?}");
    let _ = std::fs::remove_dir_all(&dir);

    let (code, screen) = run_in_terminal(&gw, &["demo", "--pace-ms", "0"], &[]).await;
    assert_eq!(code, 0, "{screen}");
    let cyan_coder = format!(
        "{}",
        console::style("coder").cyan().bold().force_styling(true)
    );
    assert!(
        screen.contains(&cyan_coder),
        "the coder in cyan: {screen:?}"
    );
    let red = format!(
        "{}",
        console::style("refused").red().bold().force_styling(true)
    );
    assert!(screen.contains(&red), "refusals in red: {screen:?}");

    let (code, screen) =
        run_in_terminal(&gw, &["demo", "--pace-ms", "0"], &[("NO_COLOR", "1")]).await;
    assert_eq!(code, 0, "{screen}");
    assert!(screen.contains("refused"), "{screen:?}");
    assert!(
        !screen.contains('\u{1b}'),
        "NO_COLOR: no escapes: {screen:?}"
    );
}

/// `mcpctl send` and `mcpctl inbox` (issue #17): text and JSON, the body from stdin, a long
/// poll with `--wait`, `--ack`.
#[tokio::test]
async fn send_and_inbox() {
    let gw = TestGateway::spawn().await;
    let bob = As(&gw, "bob");
    let carol = As(&gw, "carol");
    let sent = run_as(
        &gw,
        "alice",
        &[
            "send",
            "t1",
            "--to",
            "bob,carol",
            "-s",
            "review a.py",
            "--importance",
            "high",
        ],
        Some("line 3\nlooks wrong\n"),
    )
    .await
    .ok();
    assert!(sent.stdout.starts_with("sent message "), "{sent:?}");
    assert!(sent.stdout.contains("to bob, carol"), "{sent:?}");

    let inbox = bob.run(&["inbox"]).await.ok();
    assert!(
        inbox
            .stdout
            .contains("alice -> bob, carol (high): review a.py"),
        "{inbox:?}"
    );
    assert!(inbox.stdout.contains("\n    looks wrong"), "{inbox:?}");
    assert!(inbox.stderr.contains("cursor "), "{inbox:?}");

    // --ack: printed once, then no longer unread.
    bob.run(&["inbox", "--ack"]).await.ok();
    let empty = bob.run(&["inbox", "--json"]).await.ok();
    assert_eq!(empty.json()["messages"], json!([]));
    let all = bob.run(&["inbox", "--all", "--json"]).await.ok();
    assert!(all.json()["messages"][0]["read_at"].is_string());
    let cursor = all.json()["cursor"].as_i64().unwrap().to_string();

    // --wait: a long poll that the next message ends.
    let waiting = tokio::spawn({
        let base = gw.base.clone();
        async move {
            run_at(
                &base,
                "bob",
                &["inbox", "--wait", "30", "--after", &cursor, "--json"],
                None,
            )
            .await
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    assert!(!waiting.is_finished());
    let everyone = carol
        .run(&[
            "send", "t1", "--to", "*", "-s", "lunch", "-b", "now", "--json",
        ])
        .await
        .ok();
    assert_eq!(everyone.json()["to"], json!(["*"]));
    let got = tokio::time::timeout(std::time::Duration::from_secs(10), waiting)
        .await
        .expect("the long poll ends with the message")
        .unwrap()
        .ok();
    assert_eq!(got.json()["messages"][0]["subject"], "lunch");

    // Refusals: exit 5 for a bad argument.
    let bad = bob.run(&["inbox", "--wait", "61"]).await;
    assert_failed(&bad, 5, "invalid_argument");
    let bad = bob
        .run(&["send", "t1", "--to", "a b", "-s", "x", "-b", ""])
        .await;
    assert_failed(&bad, 5, "invalid_argument");
}
