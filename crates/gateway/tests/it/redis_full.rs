//! A full Redis (`maxmemory` reached under `noeviction`: every write is refused with `OOM
//! command not allowed …`) is a backend outage, like a Redis that is down: 503 `unavailable`
//! with `Retry-After`, `/health` says why, the metrics count the refusals, and everything
//! works again, with nothing acknowledged lost, once Redis has room. On a private
//! `redis-server` (the shared one is never starved).

use crate::{assert_error, ok, sample, scrape};
use mcp_testkit::{PrivateRedis, TestDb, TestGateway, TestRedis};
use serde_json::{Value, json};

async fn config_set(redis: &PrivateRedis, name: &str, value: &str) {
    let mut c = TestRedis::on(redis.url()).connection().await;
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg(name)
        .arg(value)
        .query_async(&mut c)
        .await
        .expect("CONFIG SET");
}

/// Asserts a refusal as an outage: 503, `unavailable`, `Retry-After: 1`.
#[track_caller]
fn assert_outage(what: &str, a: mcp_testkit::Answer) {
    assert_eq!(
        a.headers.get("retry-after").and_then(|v| v.to_str().ok()),
        Some("1"),
        "{what}: no Retry-After; body {}",
        a.body
    );
    assert_error(&(a.status, a.body), 503, "unavailable");
}

#[tokio::test]
async fn a_full_redis_is_an_outage_with_retry_after_health_and_metrics_and_loses_nothing() {
    let redis = PrivateRedis::start().expect("redis-server on the PATH");
    let gw = TestGateway::spawn_on(TestDb::create().await, TestRedis::on(redis.url()), |c| {
        c.redis_timeout_ms = 1000;
        c.run_sync = false;
    })
    .await;
    // Acknowledged before Redis fills up: a file, a task, two steps, a lease.
    ok(gw
        .tool(
            "file_write",
            json!({"task_id": "t", "path": "a.py", "content": "v1"}),
        )
        .await);
    let created = gw
        .call(
            reqwest::Method::POST,
            "/admin/tasks",
            None,
            Some(&json!({"id": "t", "title": "Full"})),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let mut steps = Vec::new();
    for n in 0..2 {
        let s = ok(gw
            .tool("log_step", json!({"task_id": "t", "step": {"n": n}}))
            .await);
        steps.push(s["id"].clone());
    }
    let lease = ok(gw
        .tool(
            "claim_file",
            json!({"task_id": "t", "path": "held.py", "agent_id": "coder"}),
        )
        .await);

    // The task row leaves the cache (so its read must refill it), then Redis is full.
    let mut c = TestRedis::on(redis.url()).connection().await;
    let _: () = redis::cmd("DEL")
        .arg(format!("{}task:t", gw.redis.prefix))
        .query_async(&mut c)
        .await
        .unwrap();
    config_set(&redis, "maxmemory-policy", "noeviction").await;
    config_set(&redis, "maxmemory", "1").await;

    let post = |tool: &str, body: Value| {
        let path = format!("/tools/{tool}");
        let gw = &gw;
        async move {
            gw.call(reqwest::Method::POST, &path, None, Some(&body))
                .await
        }
    };
    assert_outage(
        "log_step",
        post("log_step", json!({"task_id": "t", "step": {"n": 9}})).await,
    );
    assert_outage(
        "claim_file",
        post(
            "claim_file",
            json!({"task_id": "t", "path": "b.py", "agent_id": "qa"}),
        )
        .await,
    );
    assert_outage(
        "task state",
        gw.call(reqwest::Method::GET, "/resources/tasks/t/state", None, None)
            .await,
    );

    // A file write commits to Postgres first: it is either acknowledged (its event is what
    // the full Redis loses) or refused as an outage; never a 500.
    let during = post(
        "file_write",
        json!({"task_id": "t", "path": "c.py", "content": "during"}),
    )
    .await;
    println!(
        "file_write while Redis is full: {} {}",
        during.status, during.body
    );
    let write_acked = match during.status {
        200 => true,
        503 => false,
        other => panic!("file_write while Redis is full: {other} {}", during.body),
    };

    let (status, health) = gw.get("/health").await;
    assert_eq!(status, 503, "{health}");
    assert_eq!(health["status"], "unhealthy", "{health}");
    assert_eq!(health["redis"], "full", "{health}");
    assert!(
        health["warnings"].as_array().is_some_and(|w| w
            .iter()
            .any(|w| w.as_str().is_some_and(|w| w.contains("memory")))),
        "/health does not say why: {health}"
    );

    let text = scrape(&gw).await;
    assert!(
        sample(&text, "mcp_backend_full_refusals_total{backend=\"redis\"}")
            .is_some_and(|n| n >= 3.0),
        "refusals not counted:\n{text}"
    );
    assert_eq!(
        sample(&text, "mcp_backend_full{backend=\"redis\"}"),
        Some(1.0),
        "{text}"
    );

    // Room again: everything works, and what was acknowledged is all there.
    config_set(&redis, "maxmemory", "0").await;
    assert_eq!(gw.get("/health").await.0, 200);
    let read = ok(gw
        .tool("file_read", json!({"task_id": "t", "path": "a.py"}))
        .await);
    assert_eq!(read["content"], "v1");
    if write_acked {
        let c = ok(gw
            .tool("file_read", json!({"task_id": "t", "path": "c.py"}))
            .await);
        assert_eq!(c["content"], "during", "an acknowledged write was lost");
    }
    let (status, state) = gw.get("/resources/tasks/t/state").await;
    assert_eq!((status, state["title"].clone()), (200, json!("Full")));
    ok(gw
        .tool("log_step", json!({"task_id": "t", "step": {"n": 2}}))
        .await);
    ok(gw
        .tool(
            "claim_file",
            json!({"task_id": "t", "path": "b.py", "agent_id": "qa"}),
        )
        .await);
    // The lease taken before is still held, with its fence.
    let again = ok(gw
        .tool(
            "claim_file",
            json!({"task_id": "t", "path": "held.py", "agent_id": "coder"}),
        )
        .await);
    assert_eq!(again["fence"], lease["fence"]);
    let (_, logs) = gw.get("/resources/tasks/t/logs").await;
    let ids: Vec<Value> = logs["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["id"].clone())
        .collect();
    for id in &steps {
        assert!(ids.contains(id), "acknowledged step {id} lost: {logs}");
    }
    let text = scrape(&gw).await;
    assert_eq!(
        sample(&text, "mcp_backend_full{backend=\"redis\"}"),
        Some(0.0)
    );
}
