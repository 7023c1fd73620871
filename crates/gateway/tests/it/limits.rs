//! Limits: the per-agent request rate (shared by gateway instances), body/file/step sizes,
//! and per-task quotas (exact under concurrency). Refused requests leave nothing behind.

use crate::assert_error;
use mcp_domain::Role;
use mcp_testkit::TestGateway;
use serde_json::json;

#[tokio::test]
async fn an_agent_over_the_rate_gets_429_with_retry_after_and_others_are_unaffected() {
    let gw = TestGateway::spawn_secured_with(|c| {
        c.rate_limit_requests = 5;
        // A long window: the whole burst below lands in one window.
        c.rate_limit_window_secs = 300;
    })
    .await;
    let alice = gw.token("alice", &["t1"], Role::Agent);
    let bob = gw.token("bob", &["t1"], Role::Agent);
    // A second gateway instance over the same Redis and database: the count is shared.
    let second = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = mcp_gateway::AppState::new(gw.service.clone(), &gw.config);
        let stop = tokio_util::sync::CancellationToken::new();
        tokio::spawn(mcp_gateway::serve_on(listener, state, stop.clone()));
        (format!("http://{addr}"), stop.drop_guard())
    };
    let mut statuses = Vec::new();
    for i in 0..12 {
        let base = if i % 2 == 0 { &gw.base } else { &second.0 };
        let r = gw
            .http
            .post(format!("{base}/tools/list_files"))
            .bearer_auth(&alice)
            .json(&json!({"task_id": "t1"}))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        if status == 429 {
            let retry: u64 = r.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=300).contains(&retry), "Retry-After {retry}");
            let body: serde_json::Value = r.json().await.unwrap();
            assert_eq!(body["code"], "rate_limited");
            assert_eq!(body["retry_after"], retry);
        }
        statuses.push(status);
    }
    assert_eq!(&statuses[..5], &[200; 5], "{statuses:?}");
    assert_eq!(&statuses[5..], &[429; 7], "{statuses:?}");
    // Bob has his own budget.
    let b = gw
        .tool_as(&bob, "list_files", json!({"task_id": "t1"}))
        .await;
    assert_eq!(b.0, 200, "{}", b.1);
}

#[tokio::test]
async fn oversized_bodies_files_and_steps_get_413_and_leave_nothing_behind() {
    let gw = TestGateway::spawn_secured_with(|c| {
        c.max_file_bytes = 1000;
        c.max_step_bytes = 200;
        c.max_body_bytes = Some(4096);
    })
    .await;
    let alice = gw.token("alice", &["t1"], Role::Agent);
    let big_file = "x".repeat(1001);
    assert_error(
        &gw.tool_as(
            &alice,
            "file_write",
            json!({"task_id": "t1", "path": "big", "content": big_file}),
        )
        .await,
        413,
        "too_large",
    );
    assert_error(
        &gw.tool_as(
            &alice,
            "log_step",
            json!({"task_id": "t1", "step": {"blob": "y".repeat(300)}}),
        )
        .await,
        413,
        "too_large",
    );
    assert_error(
        &gw.tool_as(
            &alice,
            "file_write",
            json!({"task_id": "t1", "path": "body", "content": "z".repeat(5000)}),
        )
        .await,
        413,
        "too_large",
    );
    // An edit that would grow the file past the limit.
    let w = gw
        .tool_as(
            &alice,
            "file_write",
            json!({"task_id": "t1", "path": "grow", "content": "ab"}),
        )
        .await;
    assert_eq!(w.0, 200, "{}", w.1);
    assert_error(
        &gw.tool_as(
            &alice,
            "file_edit",
            json!({"task_id": "t1", "path": "grow", "old_string": "a", "new_string": "a".repeat(1000)}),
        )
        .await,
        413,
        "too_large",
    );
    let pool = gw.pg.pool();
    let files: Vec<(String, i64)> = sqlx::query_as("SELECT path, version FROM files")
        .fetch_all(pool)
        .await
        .unwrap();
    assert_eq!(files, vec![("grow".to_owned(), 1)]);
    let revisions = count(pool, "SELECT count(*) FROM file_revisions").await;
    assert_eq!(revisions, 1);
    let mut c = gw.redis.connection().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}*", gw.redis.prefix))
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(
        keys.iter()
            .all(|k| !k.contains("logs:") && !k.contains(":big") && !k.contains(":body")),
        "{keys:?}"
    );
}

#[tokio::test]
async fn task_quotas_refuse_growth_but_allow_shrinking() {
    let gw = TestGateway::spawn_with(|c| {
        c.max_task_files = 3;
        c.max_task_bytes = 100;
    })
    .await;
    let write = |path: &str, content: String| {
        gw.tool(
            "file_write",
            json!({"task_id": "q", "path": path, "content": content}),
        )
    };
    for p in ["a", "b", "c"] {
        assert_eq!(write(p, "1234567890".into()).await.0, 200);
    }
    let refused = write("d", "1".into()).await;
    assert_error(&refused, 413, "quota_exceeded");
    assert_eq!(refused.1["quota"], "files");
    assert_eq!(refused.1["limit"], 3);
    // Rewriting an existing file adds no file; other tasks have their own quota.
    assert_eq!(write("a", "x".repeat(60)).await.0, 200);
    assert_eq!(
        gw.tool(
            "file_write",
            json!({"task_id": "other", "path": "d", "content": "1"})
        )
        .await
        .0,
        200
    );
    // 60 + 10 + 10 = 80 bytes; 31 more would pass 100.
    let refused = write("b", "y".repeat(41)).await;
    assert_error(&refused, 413, "quota_exceeded");
    assert_eq!(refused.1["quota"], "bytes");
    // Deleting frees room.
    assert_eq!(
        gw.tool("delete_file", json!({"task_id": "q", "path": "c"}))
            .await
            .0,
        200
    );
    assert_eq!(write("d", "1".into()).await.0, 200);
    let usage: (i64, i64) =
        sqlx::query_as("SELECT files, bytes FROM task_usage WHERE task_id = 'q'")
            .fetch_one(gw.pg.pool())
            .await
            .unwrap();
    assert_eq!(usage, (3, 71));
    // A refused write left no revision behind.
    let d_revisions = count(
        gw.pg.pool(),
        "SELECT count(*) FROM file_revisions WHERE task_id = 'q' AND path = 'd'",
    )
    .await;
    assert_eq!(d_revisions, 1);
}

#[tokio::test]
async fn concurrent_writers_cannot_overshoot_a_quota() {
    let gw = TestGateway::spawn_with(|c| {
        c.max_task_files = 5;
    })
    .await;
    let writes = (0..24).map(|i| {
        gw.tool(
            "file_write",
            json!({"task_id": "q", "path": format!("f{i}"), "content": "x"}),
        )
    });
    let answers = futures::future::join_all(writes).await;
    let ok = answers.iter().filter(|a| a.0 == 200).count();
    assert!(
        answers
            .iter()
            .all(|a| a.0 == 200 || a.1["code"] == "quota_exceeded"),
        "{answers:?}"
    );
    assert_eq!(ok, 5);
    let live = count(
        gw.pg.pool(),
        "SELECT count(*) FROM files WHERE task_id = 'q'",
    )
    .await;
    assert_eq!(live, 5);
}

/// With authentication off every local agent shares 127.0.0.1: loopback is not throttled.
#[tokio::test]
async fn without_authentication_loopback_callers_are_not_rate_limited() {
    let gw = TestGateway::spawn_with(|c| {
        c.rate_limit_requests = 3;
        c.rate_limit_window_secs = 60;
    })
    .await;
    for n in 0..10 {
        let r = gw
            .tool("log_step", json!({"task_id": "t", "step": {"n": n}}))
            .await;
        assert_eq!(r.0, 200, "{}", r.1);
    }
}

/// A `SELECT count(*) …` answered by `pool`.
async fn count(pool: &sqlx::PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}
