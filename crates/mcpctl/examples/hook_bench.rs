//! Measures the round trip of a Claude Code `PreToolUse` hook as Claude Code pays it: start
//! `mcpctl hook claude`, write the event to its stdin, read its answer, wait for its exit.
//! Against a real gateway spawned in this process over the test Postgres and Redis (a fresh
//! database and key prefix), in a real git repository with a second worktree.
//!
//! Kinds, interleaved in rotating order in every round:
//! * **granted**: an `Edit` of a file the agent already holds (the re-entrant claim that
//!   renews the lease: the steady state of a session editing);
//! * **denied**: an `Edit` of that file by the other worktree's agent (`locked`);
//! * **floor, not governed**: a `Bash` event (no repository lookup, no request): process start,
//!   runtime, reading and answering the event;
//! * **floor, `/bin/true`**: starting and reaping a process at all.
//!
//! ```sh
//! cargo build --release -p mcpctl --bin mcpctl --example hook_bench
//! target/release/examples/hook_bench --runs 200
//! ```
//! (`--bin PATH` names another `mcpctl`; by default the one beside this example's directory.)

use mcp_testkit::{TestDir, TestGateway};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;
use tokio::io::AsyncWriteExt;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn git(dir: &Path, args: &[&str]) {
    let ok = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.com")
        .env("GIT_COMMITTER_NAME", "bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.com")
        .status()
        .expect("git runs")
        .success();
    assert!(ok, "git {args:?}");
}

/// One run of `program args` with `stdin`; its wall time in µs and its stdout.
async fn time(program: &Path, args: &[&str], dir: &Path, base: &str, stdin: &str) -> (f64, String) {
    let t = Instant::now();
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("MCP_GATEWAY_URL", base)
        .env_remove("MCP_AGENT_ID")
        .env_remove("MCP_GATEWAY_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut input = child.stdin.take().unwrap();
    let _ = input.write_all(stdin.as_bytes()).await;
    drop(input);
    let out = child.wait_with_output().await.expect("wait");
    (
        t.elapsed().as_secs_f64() * 1e6,
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main]
async fn main() {
    let runs: usize = arg("--runs").and_then(|v| v.parse().ok()).unwrap_or(200);
    let bin = arg("--bin").map(PathBuf::from).unwrap_or_else(|| {
        let exe = std::env::current_exe().unwrap();
        exe.parent().unwrap().parent().unwrap().join("mcpctl")
    });
    assert!(bin.is_file(), "no mcpctl at {} (--bin)", bin.display());
    // The hooks run in the repository's directory.
    let bin = bin.canonicalize().unwrap();
    let gw = TestGateway::spawn().await;
    let tmp = TestDir::new();
    let base_dir = tmp.path.canonicalize().unwrap();
    let a = base_dir.join("app");
    std::fs::create_dir_all(a.join("src")).unwrap();
    git(&a, &["init", "-q", "-b", "main"]);
    std::fs::write(a.join("src/lib.rs"), "x\n").unwrap();
    git(&a, &["add", "."]);
    git(&a, &["commit", "-q", "-m", "first"]);
    let b = base_dir.join("app-b");
    git(
        &a,
        &["worktree", "add", "-q", b.to_str().unwrap(), "-b", "b"],
    );

    let event = |dir: &Path, session: &str, tool: &str| {
        let input = if tool == "Bash" {
            json!({"command": "ls"})
        } else {
            json!({"file_path": dir.join("src/lib.rs"), "old_string": "x", "new_string": "y"})
        };
        json!({"session_id": session, "transcript_path": "/tmp/t.jsonl", "cwd": dir,
               "hook_event_name": "PreToolUse", "tool_name": tool, "tool_input": input})
        .to_string()
    };
    let granted = event(&a, "bench-a", "Edit");
    let denied = event(&b, "bench-b", "Edit");
    let floor = event(&a, "bench-a", "Bash");
    let hook = ["hook", "claude"];
    let truebin = Path::new("/bin/true");

    // The first claim (a new lease), then warm-up.
    let (_, out) = time(&bin, &hook, &a, &gw.base, &granted).await;
    assert!(out.trim().is_empty(), "granted: {out}");
    let (_, out) = time(&bin, &hook, &b, &gw.base, &denied).await;
    assert!(out.contains("\"deny\""), "denied: {out}");
    for _ in 0..10 {
        time(&bin, &hook, &a, &gw.base, &granted).await;
    }

    let mut samples: [Vec<f64>; 4] = Default::default();
    for i in 0..runs {
        for k in 0..4 {
            let kind = (i + k) % 4;
            let (us, out) = match kind {
                0 => time(&bin, &hook, &a, &gw.base, &granted).await,
                1 => time(&bin, &hook, &b, &gw.base, &denied).await,
                2 => time(&bin, &hook, &a, &gw.base, &floor).await,
                _ => time(truebin, &[], &a, &gw.base, "").await,
            };
            match kind {
                0 => assert!(out.trim().is_empty(), "granted: {out}"),
                1 => assert!(out.contains("\"deny\""), "denied: {out}"),
                _ => {}
            }
            samples[kind].push(us);
        }
    }
    let names = [
        "PreToolUse Edit, granted (re-entrant claim)",
        "PreToolUse Edit, denied (held by the other worktree)",
        "floor: PreToolUse Bash, not governed (no request)",
        "floor: /bin/true",
    ];
    println!("{runs} runs each, interleaved; wall time per hook, ms");
    println!("{:<56} {:>8} {:>8} {:>8}", "kind", "p50", "p99", "max");
    for (name, s) in names.iter().zip(samples.iter_mut()) {
        s.sort_by(|x, y| x.total_cmp(y));
        println!(
            "{:<56} {:>8.2} {:>8.2} {:>8.2}",
            name,
            percentile(s, 0.5) / 1000.0,
            percentile(s, 0.99) / 1000.0,
            s[s.len() - 1] / 1000.0
        );
    }
}
