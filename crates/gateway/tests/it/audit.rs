//! The audit trail: every mutation recorded with actor, action, task, path, version, fence
//! and request id; `GET /admin/audit` filters, admin only.

use mcp_domain::Role;
use mcp_testkit::TestGateway;
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test]
async fn mutations_are_audited_with_the_token_agent_and_the_request_id() {
    let gw = TestGateway::spawn_secured().await;
    let admin = gw.token("root", &["*"], Role::Admin);
    let alice = gw.token("alice", &["t1"], Role::Agent);
    let scoped_admin = gw.token("lead", &["t2"], Role::Admin);

    let created = gw
        .call(
            Method::POST,
            "/admin/tasks",
            Some(&admin),
            Some(&json!({"id": "t1"})),
        )
        .await;
    assert_eq!(created.status, 201);
    let claim = gw
        .http
        .post(format!("{}/tools/claim_file", gw.base))
        .bearer_auth(&alice)
        .header("x-request-id", "req-claim-1")
        .json(&json!({"task_id": "t1", "path": "a.txt"}))
        .send()
        .await
        .unwrap();
    assert_eq!(claim.status(), 200);
    let fence = claim.json::<Value>().await.unwrap()["fence"]
        .as_i64()
        .unwrap();
    let write = gw
        .http
        .post(format!("{}/tools/file_write", gw.base))
        .bearer_auth(&alice)
        .header("x-request-id", "req-write-1")
        .json(&json!({"task_id": "t1", "path": "./a.txt", "content": "v1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(write.status(), 200);
    let (s, _) = gw
        .tool_as(
            &alice,
            "log_step",
            json!({"task_id": "t1", "step": {"n": 1}}),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = gw
        .tool_as(&alice, "join_collab", json!({"task_id": "t1"}))
        .await;
    assert_eq!(s, 200);

    // Lease and step records travel through the outbox: run the push loop once.
    let mut push = mcp_sync::PushLoop::new(
        gw.stores.durable.clone(),
        gw.stores.hot.clone(),
        mcp_sync::SyncSettings::default().push,
    );
    push.try_run_once().await.unwrap();

    let a = gw
        .call(Method::GET, "/admin/audit?task=t1", Some(&admin), None)
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let entries = a.body["entries"].as_array().unwrap().clone();
    let find = |action: &str| {
        entries
            .iter()
            .find(|e| e["action"] == action)
            .unwrap_or_else(|| panic!("no {action} in {entries:?}"))
            .clone()
    };
    let w = find("file_write");
    assert_eq!(w["actor"], "alice");
    assert_eq!(w["path"], "a.txt");
    assert_eq!(w["version"], 1);
    assert_eq!(w["fence"], fence);
    assert_eq!(w["request_id"], "req-write-1");
    let c = find("claim_file");
    assert_eq!(
        (c["actor"].clone(), c["fence"].clone()),
        (json!("alice"), json!(fence))
    );
    assert_eq!(c["request_id"], "req-claim-1");
    assert_eq!(find("task_create")["actor"], "root");
    // Steps are their own record (step_logs: agent, task, time, stream id), not duplicated.
    let steps: Vec<String> =
        sqlx::query_scalar("SELECT agent_id FROM step_logs WHERE task_id = 't1'")
            .fetch_all(gw.pg.pool())
            .await
            .unwrap();
    assert_eq!(steps, vec!["alice".to_owned()]);
    assert!(find("join_collab")["request_id"].is_string());

    // Filters.
    let a = gw
        .call(
            Method::GET,
            "/admin/audit?agent=alice&action=file_write&limit=1",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(a.body["entries"].as_array().unwrap().len(), 1, "{}", a.body);
    let a = gw
        .call(
            Method::GET,
            "/admin/audit?since=2999-01-01T00:00:00Z",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(a.body["entries"], json!([]));
    let a = gw
        .call(Method::GET, "/admin/audit?limit=0", Some(&admin), None)
        .await;
    assert_eq!(a.status, 400, "{}", a.body);

    // Admin only; an admin limited to t2 sees none of t1's records and may not ask for them.
    let a = gw
        .call(Method::GET, "/admin/audit", Some(&alice), None)
        .await;
    assert_eq!(a.status, 403);
    let a = gw
        .call(Method::GET, "/admin/audit", Some(&scoped_admin), None)
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["entries"], json!([]));
    let a = gw
        .call(
            Method::GET,
            "/admin/audit?task=t1",
            Some(&scoped_admin),
            None,
        )
        .await;
    assert_eq!(a.status, 403);
}
