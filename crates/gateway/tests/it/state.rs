//! Step logs, events, collaboration, tasks, agents, health.

use crate::{assert_error, ok};
use futures::StreamExt;
use mcp_testkit::TestGateway;
use serde_json::{Value, json};

crate::in_both_modes!(logs_resource_pages_in_order,);

#[tokio::test]
async fn log_step_sets_timestamp_task_and_agent_itself() {
    let gw = TestGateway::spawn().await;
    let body = json!({"task_id": "t", "agent_id": "coder", "step": {"action": "run", "task_id": "evil", "timestamp": "1999", "agent_id": "mallory"}});
    let r = ok(gw.tool("log_step", body).await);
    assert_eq!(r["step"]["task_id"], "t");
    assert_eq!(r["step"]["agent_id"], "coder");
    assert_eq!(r["step"]["action"], "run");
    let ts = r["step"]["timestamp"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(ts).is_ok() && ts.ends_with('Z'),
        "{ts}"
    );
    let id = r["id"].as_str().unwrap();
    // In the task's stream and in the outbox, atomically.
    let mut conn = gw.redis.connection().await;
    let logged: usize = redis::cmd("XLEN")
        .arg(format!("{0}logs:{{{0}task:t}}", gw.redis.prefix))
        .query_async(&mut conn)
        .await
        .unwrap();
    let outbox = crate::xrange(&mut conn, &format!("{}outbox", gw.redis.prefix)).await;
    assert_eq!(logged, 1);
    assert_eq!(outbox.ids.len(), 1);
    let sid: String = outbox.ids[0].get("sid").unwrap();
    assert_eq!(sid, id);
    assert_error(
        &gw.tool("log_step", json!({"task_id": "t", "step": "not an object"}))
            .await,
        400,
        "invalid_argument",
    );
    assert_error(
        &gw.tool("log_step", json!({"task_id": "t", "step": [1]}))
            .await,
        400,
        "invalid_argument",
    );
}

async fn logs_resource_pages_in_order(gw: TestGateway) {
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            ok(gw
                .tool("log_step", json!({"task_id": "t", "step": {"n": i}}))
                .await)["id"]
                .clone(),
        );
    }
    let all = ok(gw.get("/resources/tasks/t/logs").await);
    let got: Vec<Value> = all["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].clone())
        .collect();
    assert_eq!(got, ids);
    let page = ok(gw
        .get(&format!(
            "/resources/tasks/t/logs?limit=2&before={}",
            ids[4].as_str().unwrap()
        ))
        .await);
    let got: Vec<i64> = page["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"]["n"].as_i64().unwrap())
        .collect();
    assert_eq!(got, [2, 3]);
    for (path, status, code) in [
        ("/resources/tasks/t/logs?limit=0", 400, "invalid_argument"),
        (
            "/resources/tasks/t/logs?before=yesterday",
            400,
            "invalid_argument",
        ),
    ] {
        assert_error(&gw.get(path).await, status, code);
    }
    assert_eq!(
        ok(gw.get("/resources/tasks/other/logs").await)["steps"],
        json!([])
    );
}

#[tokio::test]
async fn every_change_is_published_with_its_stream_id() {
    let gw = TestGateway::spawn().await;
    let client = redis::Client::open(gw.redis.url.as_str()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub
        .subscribe(format!("{}task:t:updates", gw.redis.prefix))
        .await
        .unwrap();
    let mut messages = pubsub.into_on_message();
    ok(gw
        .tool(
            "join_collaboration",
            json!({"task_id": "t", "agent_id": "coder"}),
        )
        .await);
    ok(gw
        .tool(
            "file_write",
            json!({"task_id": "t", "path": "a", "content": "x", "agent_id": "coder"}),
        )
        .await);
    ok(gw.tool("file_edit", json!({"task_id": "t", "path": "a", "old_string": "x", "new_string": "y", "agent_id": "coder"})).await);
    ok(gw
        .tool(
            "log_step",
            json!({"task_id": "t", "step": {"k": 1}, "agent_id": "coder"}),
        )
        .await);
    ok(gw
        .tool(
            "delete_file",
            json!({"task_id": "t", "path": "a", "agent_id": "coder"}),
        )
        .await);
    ok(gw
        .tool(
            "leave_collaboration",
            json!({"task_id": "t", "agent_id": "coder"}),
        )
        .await);
    let mut seen = Vec::new();
    let mut published = Vec::new();
    while seen.len() < 6 {
        let msg = tokio::time::timeout(std::time::Duration::from_secs(5), messages.next())
            .await
            .expect("event in time")
            .unwrap();
        let payload = msg.get_payload::<String>().unwrap();
        let event: mcp_api::Event = serde_json::from_str(&payload).unwrap();
        assert_eq!(event.task_id, "t");
        assert_eq!(event.agent_id.as_deref(), Some("coder"));
        assert!(event.id.is_some());
        seen.push(event);
        published.push(payload);
    }
    // The seed's contract, byte for byte: each message is the stream entry's envelope with
    // its entry id as the first member, nothing else changed.
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let entries = crate::xrange(
        &mut conn,
        &format!("{0}events:{{{0}task:t}}", gw.redis.prefix),
    )
    .await;
    assert_eq!(entries.ids.len(), 6);
    for (entry, payload) in entries.ids.iter().zip(&published) {
        let envelope: String = entry.get("e").unwrap();
        assert_eq!(
            *payload,
            format!("{{\"id\":\"{}\",{}", entry.id, &envelope[1..])
        );
    }
    let kinds: Vec<&str> = seen.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "agent_joined",
            "file_written",
            "file_edited",
            "step_logged",
            "file_deleted",
            "agent_left"
        ]
    );
    let ids: Vec<&String> = seen.iter().map(|e| e.id.as_ref().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort_by_key(|i| mcp_api::StreamId::parse(i).unwrap());
    assert_eq!(ids, sorted, "event ids are in order");
    assert_eq!(seen[3].data["step"]["k"], 1);
    assert!(seen[3].data["id"].as_str().unwrap().contains('-'));
    assert_eq!(seen[1].data["version"], 1);
}

#[tokio::test]
async fn collaboration_membership_and_agent_status() {
    let gw = TestGateway::spawn().await;
    ok(gw
        .tool(
            "join_collaboration",
            json!({"task_id": "t", "agent_id": "coder"}),
        )
        .await);
    let j = ok(gw
        .tool("join_collab", json!({"task_id": "t", "agent_id": "qa"}))
        .await);
    assert_eq!(
        (j["task_id"].as_str(), j["agent_id"].as_str()),
        (Some("t"), Some("qa"))
    );
    let c = ok(gw.get("/resources/collaboration/t").await);
    assert_eq!(c["agents"], json!(["coder", "qa"]));
    assert!(c["members"][0]["joined_at"].is_string());
    ok(gw
        .tool("leave_collab", json!({"task_id": "t", "agent_id": "coder"}))
        .await);
    ok(gw
        .tool(
            "leave_collaboration",
            json!({"task_id": "t", "agent_id": "coder"}),
        )
        .await);
    assert_eq!(
        ok(gw.get("/resources/collaboration/t").await)["agents"],
        json!(["qa"])
    );
    assert_eq!(
        ok(gw.get("/resources/collaboration/empty").await)["agents"],
        json!([])
    );
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM collaborators WHERE left_at IS NULL")
        .fetch_one(gw.pg.pool())
        .await
        .unwrap();
    assert_eq!(n, 1, "membership is durable");
    let (status, body) = gw.get("/resources/agents/qa/status").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "active");
    assert_eq!(body["tasks"], json!(["t"]));
    assert_eq!(body["current_task"], "t");
    for (path, status, code) in [
        ("/resources/agents/nobody/status", 404, "agent_not_found"),
        ("/resources/agents/bad%20id/status", 400, "invalid_argument"),
    ] {
        assert_error(&gw.get(path).await, status, code);
    }
}

#[tokio::test]
async fn task_state_comes_from_cache_or_postgres_and_admin_api_changes_it() {
    let gw = TestGateway::spawn().await;
    assert_error(
        &gw.get("/resources/tasks/t1/state").await,
        404,
        "task_not_found",
    );
    // The orchestrator writes the shared tasks table directly.
    sqlx::query("INSERT INTO tasks (id, title, status, complexity) VALUES ('t1', 'Fix bug', 'in_progress', 3.5)")
        .execute(gw.pg.pool())
        .await
        .unwrap();
    let s = gw.get("/resources/tasks/t1/state").await;
    assert_eq!(s.0, 200, "{}", s.1);
    assert_eq!(
        (
            s.1["title"].as_str(),
            s.1["status"].as_str(),
            s.1["complexity"].as_f64()
        ),
        (Some("Fix bug"), Some("in_progress"), Some(3.5))
    );
    let mut conn = gw.redis.connection().await;
    let ttl: i64 = redis::cmd("TTL")
        .arg(format!("{}task:t1", gw.redis.prefix))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl > 3000 && ttl <= 3600, "cached with the task TTL: {ttl}");

    let created = gw
        .http
        .post(format!("{}/admin/tasks", gw.base))
        .json(&json!({"id": "t2", "title": "New", "assigned_agent_id": "coder"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    let dup = gw
        .http
        .post(format!("{}/admin/tasks", gw.base))
        .json(&json!({"id": "t2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(dup.status().as_u16(), 409);
    assert_eq!(dup.json::<Value>().await.unwrap()["code"], "already_exists");
    let patched = gw
        .http
        .patch(format!("{}/admin/tasks/t2", gw.base))
        .json(&json!({"status": "done", "assigned_agent_id": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status().as_u16(), 200);
    let s = ok_state(gw.get("/resources/tasks/t2/state").await);
    assert_eq!(
        (s["status"].as_str(), s["assigned_agent_id"].clone()),
        (Some("done"), Value::Null)
    );
    assert_eq!(s["title"], "New");
    let missing = gw
        .http
        .patch(format!("{}/admin/tasks/nope", gw.base))
        .json(&json!({"status": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status().as_u16(), 404);
}

fn ok_state(got: (u16, Value)) -> Value {
    assert_eq!(got.0, 200, "{}", got.1);
    got.1
}

#[tokio::test]
async fn subscribe_logs_names_the_channel_and_the_stream() {
    let gw = TestGateway::spawn().await;
    let r = ok(gw.tool("subscribe_logs", json!({"task_id": "t"})).await);
    assert_eq!(r["channel"], format!("{}task:t:updates", gw.redis.prefix));
    assert_eq!(r["stream_url"], "/tasks/t/events");
    assert!(r["message"].is_string());
}

#[tokio::test]
async fn health_pings_both_backends_and_unknown_routes_are_json_404() {
    let gw = TestGateway::spawn().await;
    let (status, h) = gw.get("/health").await;
    assert_eq!(status, 200);
    assert!(h["status"] == "healthy" || h["status"] == "degraded", "{h}");
    assert_eq!(
        (h["redis"].as_str(), h["postgres"].as_str()),
        (Some("connected"), Some("connected"))
    );
    assert!(h["version"].is_string());
    assert_error(&gw.get("/nope").await, 404, "not_found");
    assert_error(&gw.tool("no_such_tool", json!({})).await, 404, "not_found");
    let wrong_method = gw
        .http
        .get(format!("{}/tools/file_read", gw.base))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_method.status().as_u16(), 405);
    assert_eq!(
        wrong_method.json::<Value>().await.unwrap()["code"],
        "method_not_allowed"
    );
}
