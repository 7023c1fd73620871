//! `GET /resources/tasks` and `GET /resources/agents`: every task anything happened in, most
//! recently active first, filtered and paged; the agents with their status and last action;
//! both limited to what the caller's token may see.

use crate::{assert_error, in_both_modes};
use mcp_domain::Role;
use mcp_testkit::TestGateway;
use serde_json::{Value, json};
use std::time::Duration;

in_both_modes!(tasks_and_agents_are_listed_by_activity);

fn ids(page: &Value, list: &str, id: &str) -> Vec<String> {
    page[list]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t[id].as_str().unwrap().to_owned())
        .collect()
}

/// Polls `GET path` until `done` holds (steps reach the durable store a sync pass later).
async fn eventually(gw: &TestGateway, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..100 {
        let (status, body) = gw.get(path).await;
        assert_eq!(status, 200, "{body}");
        if done(&body) {
            return body;
        }
        last = body;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("GET {path} never showed what was expected; last answer: {last}");
}

/// Runs the sync loops beside a test gateway (as `mcp-gateway` does by default), pushing the
/// outbox every 100 ms, until the guard drops.
pub(crate) fn run_sync(gw: &TestGateway) -> tokio_util::sync::DropGuard {
    let cancel = tokio_util::sync::CancellationToken::new();
    let mut settings = mcp_sync::SyncSettings::default();
    settings.push.interval = Duration::from_millis(100);
    mcp_sync::spawn(
        gw.stores.durable.clone(),
        gw.stores.hot.clone(),
        settings,
        cancel.clone(),
    );
    cancel.drop_guard()
}

async fn tasks_and_agents_are_listed_by_activity(gw: TestGateway) {
    // Steps reach the durable store (and so the step counts) through the outbox.
    let _sync = run_sync(&gw);
    let created = gw
        .call(
            reqwest::Method::POST,
            "/admin/tasks",
            None,
            Some(&json!({"id": "parser", "title": "Build the parser",
                         "assigned_agent_id": "coder"})),
        )
        .await;
    assert_eq!(created.status, 201);
    let (s, _) = gw
        .tool(
            "join_collab",
            json!({"task_id": "parser", "agent_id": "qa"}),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = gw
        .tool(
            "claim_file",
            json!({"task_id": "parser", "path": "src/p.rs", "agent_id": "coder"}),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = gw
        .tool(
            "file_write",
            json!({"task_id": "scratch", "path": "a.md", "content": "x", "agent_id": "coder"}),
        )
        .await;
    assert_eq!(s, 200);
    for n in 0..3 {
        let (s, _) = gw
            .tool(
                "log_step",
                json!({"task_id": "busy", "agent_id": "w1", "step": {"n": n}}),
            )
            .await;
        assert_eq!(s, 200);
    }

    let page = eventually(&gw, "/resources/tasks", |p| {
        p["tasks"][0]["task_id"] == "busy" && p["tasks"][0]["step_count"] == 3
    })
    .await;
    assert_eq!(
        ids(&page, "tasks", "task_id"),
        ["busy", "scratch", "parser"]
    );
    assert_eq!(page["total"], 3);
    assert!(page.get("next_cursor").is_none(), "one page: {page}");
    let parser = &page["tasks"][2];
    assert_eq!(parser["title"], "Build the parser");
    assert_eq!(parser["status"], "pending");
    assert_eq!(parser["assigned_agent_id"], "coder");
    assert_eq!(parser["agents"], json!(["qa"]));
    assert_eq!(parser["lease_count"], 1);
    assert_eq!(page["tasks"][1]["lease_count"], 0);
    assert_eq!(page["tasks"][1]["file_count"], 1);
    assert_eq!(page["tasks"][1]["title"], Value::Null, "nobody created it");

    // Filters and pages.
    let (_, p) = gw.get("/resources/tasks?q=PARS").await;
    assert_eq!(ids(&p, "tasks", "task_id"), ["parser"]);
    let (_, p) = gw.get("/resources/tasks?agent=qa").await;
    assert_eq!(ids(&p, "tasks", "task_id"), ["parser"]);
    let (_, p) = gw.get("/resources/tasks?status=pending").await;
    assert_eq!(ids(&p, "tasks", "task_id"), ["parser"]);
    let (_, first) = gw.get("/resources/tasks?limit=2").await;
    assert_eq!(ids(&first, "tasks", "task_id"), ["busy", "scratch"]);
    let cursor = first["next_cursor"].as_str().expect("a next page");
    let (_, rest) = gw
        .get(&format!(
            "/resources/tasks?limit=2&cursor={}",
            urlencoding(cursor)
        ))
        .await;
    assert_eq!(ids(&rest, "tasks", "task_id"), ["parser"]);
    assert!(rest.get("next_cursor").is_none());

    // Bad input is the caller's fault.
    for bad in [
        "limit=0",
        "limit=201",
        "limit=x",
        "cursor=yesterday",
        "agent=a%20b",
    ] {
        assert_error(
            &gw.get(&format!("/resources/tasks?{bad}")).await,
            400,
            "invalid_argument",
        );
    }

    // Agents: most recently seen first, with their last action and sessions.
    let agents = eventually(&gw, "/resources/agents", |p| {
        p["agents"][0]["agent_id"] == "w1"
    })
    .await;
    assert_eq!(
        ids(&agents, "agents", "agent_id"),
        ["w1", "coder", "qa", "admin"]
    );
    let w1 = &agents["agents"][0];
    assert_eq!(w1["status"], "active");
    assert_eq!(w1["last_action"], "log_step");
    assert_eq!(w1["last_task"], "busy");
    assert_eq!(agents["agents"][2]["tasks"], json!(["parser"]));
    let (_, on) = gw.get("/resources/agents?task=parser").await;
    assert_eq!(ids(&on, "agents", "agent_id"), ["qa", "admin"]);
    assert_error(
        &gw.get("/resources/agents?limit=0").await,
        400,
        "invalid_argument",
    );
}

/// A token sees the tasks (and the agents of the tasks) in its scope, and nothing else.
#[tokio::test]
async fn a_token_lists_only_its_tasks() {
    let gw = TestGateway::spawn_secured().await;
    let alice = gw.token("alice", &["t1"], Role::Agent);
    let bob = gw.token("bob", &["t2"], Role::Agent);
    let watcher = gw.token("watcher", &["t1"], Role::Observer);
    let root = gw.token("root", &["*"], Role::Admin);
    for (token, task) in [(&alice, "t1"), (&bob, "t2")] {
        let (s, _) = gw
            .tool_as(
                token,
                "file_write",
                json!({"task_id": task, "path": "a", "content": "x"}),
            )
            .await;
        assert_eq!(s, 200);
    }
    let (s, page) = gw.get_as(&watcher, "/resources/tasks").await;
    assert_eq!(s, 200, "{page}");
    assert_eq!(ids(&page, "tasks", "task_id"), ["t1"]);
    assert_eq!(page["total"], 1);
    let (_, page) = gw.get_as(&watcher, "/resources/agents").await;
    assert_eq!(ids(&page, "agents", "agent_id"), ["alice"]);
    let (_, page) = gw.get_as(&root, "/resources/tasks").await;
    assert_eq!(ids(&page, "tasks", "task_id"), ["t2", "t1"]);
    assert_error(
        &gw.get_as(&watcher, "/resources/agents?task=t2").await,
        403,
        "forbidden",
    );
    let (s, _) = gw.get("/resources/tasks").await;
    assert_eq!(s, 401, "no token, no list");
}

fn urlencoding(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// 10,000 tasks (and 20,000 members): the first page, a filtered page and a page deep in the
/// list, each asked 20 times; prints the medians (docs/BENCHMARKS.md keeps a run's numbers).
/// Checks only that pages stay complete and in order; timings are reported, not asserted.
#[tokio::test]
async fn ten_thousand_tasks_page_by_cursor() {
    let gw = TestGateway::spawn().await;
    sqlx::query(
        "INSERT INTO tasks (id, title, status, assigned_agent_id)
         SELECT 'bulk-' || n, 'Bulk task ' || n, CASE WHEN n % 10 = 0 THEN 'done' ELSE 'pending' END,
                'agent-' || (n % 50)
         FROM generate_series(1, 10000) AS n",
    )
    .execute(gw.pg.pool())
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO collaborators (task_id, agent_id, joined_at, last_active)
         SELECT 'bulk-' || n, 'agent-' || (n % 50 + k), now(), now()
         FROM generate_series(1, 10000) AS n, generate_series(0, 1) AS k",
    )
    .execute(gw.pg.pool())
    .await
    .unwrap();
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let mut report = Vec::new();
    let mut deep_cursor = None;
    let mut floor = Duration::ZERO;
    for (name, path) in [
        // The floor: one task's state (a cached single-row read), same gateway, same run.
        (
            "floor: one task's state",
            "/resources/tasks/bulk-1/state".to_owned(),
        ),
        ("first page (50)", "/resources/tasks".to_owned()),
        ("status=done", "/resources/tasks?status=done".to_owned()),
        ("q=task 99", "/resources/tasks?q=task%2099".to_owned()),
        ("agent=agent-7", "/resources/tasks?agent=agent-7".to_owned()),
        ("page 100 (by cursor)", String::new()),
    ] {
        let path = if path.is_empty() {
            let c: String = deep_cursor.clone().expect("a cursor");
            format!("/resources/tasks?cursor={}", urlencoding(&c))
        } else {
            path
        };
        let mut times = Vec::new();
        let mut last = Value::Null;
        for _ in 0..20 {
            let start = std::time::Instant::now();
            let (status, body) = gw.get(&path).await;
            times.push(start.elapsed());
            assert_eq!(status, 200, "{body}");
            last = body;
        }
        if name.starts_with("floor") {
            floor = median(times);
            report.push(format!("{name}: median {floor:?}"));
            continue;
        }
        assert_eq!(last["tasks"].as_array().unwrap().len(), 50, "{name}");
        let m = median(times);
        report.push(format!(
            "{name}: median {m:?} ({:.1}x the floor)",
            m.as_secs_f64() / floor.as_secs_f64()
        ));
        if deep_cursor.is_none() {
            // Walk 99 pages to the 100th, checking order and that no page repeats an entry.
            let mut seen = std::collections::HashSet::new();
            let mut cursor: Option<String> = None;
            for _ in 0..99 {
                let p = match &cursor {
                    Some(c) => format!("/resources/tasks?cursor={}", urlencoding(c)),
                    None => "/resources/tasks".to_owned(),
                };
                let (_, page) = gw.get(&p).await;
                for id in ids(&page, "tasks", "task_id") {
                    assert!(seen.insert(id), "an entry on two pages");
                }
                cursor = page["next_cursor"].as_str().map(str::to_owned);
            }
            assert_eq!(seen.len(), 99 * 50);
            deep_cursor = cursor;
        }
    }
    assert_eq!(last_total(&gw).await, 10_000);
    println!(
        "GET /resources/tasks over 10,000 tasks:\n  {}",
        report.join("\n  ")
    );
}

async fn last_total(gw: &TestGateway) -> i64 {
    gw.get("/resources/tasks").await.1["total"]
        .as_i64()
        .unwrap()
}
