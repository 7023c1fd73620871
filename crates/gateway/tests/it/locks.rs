//! Leases: re-entrancy, conflicts, compare-and-act release/renew, fencing, expiry.

use crate::{assert_error, ok, stream_json};
use mcp_testkit::TestGateway;
use serde_json::{Value, json};

crate::in_both_modes!(
    lease_length_is_validated,
    an_expired_lease_passes_on_and_the_old_holders_late_write_is_stale,
    fences_increase_across_paths_and_tasks,
    locks_are_per_task_and_the_original_clients_lock_as_their_task,
    forged_fences_are_refused_and_never_lock_holders_out,
    a_pausing_holder_cannot_overwrite_a_newer_holders_work,
    two_anonymous_agents_of_one_task_exclude_each_other,
);

fn req(agent: &str, path: &str, extra: Value) -> Value {
    let mut b = json!({"task_id": "t", "path": path, "agent_id": agent});
    b.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    b
}

#[tokio::test]
async fn owner_reclaiming_refreshes_the_same_lease() {
    let gw = TestGateway::spawn().await;
    let first = ok(gw
        .tool(
            "claim_file",
            req("coder", "a.py", json!({"timeout_sec": 30})),
        )
        .await);
    assert_eq!(
        (first["locked"].as_bool(), first["owner"].as_str()),
        (Some(true), Some("coder"))
    );
    let again = ok(gw
        .tool(
            "claim_file",
            req("coder", "./a.py", json!({"timeout_sec": 120})),
        )
        .await);
    assert_eq!(again["fence"], first["fence"]);
    assert_eq!(again["lock_token"], first["lock_token"]);
    assert!(again["expires_at"].as_str() > first["expires_at"].as_str());
    assert_eq!(again["timeout_sec"], 120);
    let ttl: i64 = redis::cmd("PTTL")
        .arg(
            mcp_domain::store::redis::keys::Keys::new(gw.redis.prefix.clone())
                .lock(&"t".parse_task(), &"a.py".parse_path()),
        )
        .query_async(&mut gw.redis.connection().await)
        .await
        .unwrap();
    assert!(ttl > 60_000, "the re-claim did not refresh the TTL: {ttl}");
}

#[tokio::test]
async fn another_agent_is_refused_claim_write_renew_and_release() {
    let gw = TestGateway::spawn().await;
    let lease = ok(gw.tool("claim_file", req("coder", "a.py", json!({}))).await);
    assert_eq!(lease["timeout_sec"], 60, "the default lease is 60 s");
    let c = gw.tool("claim_file", req("qa", "a.py", json!({}))).await;
    assert_error(&c, 409, "locked");
    assert_eq!(c.1["holder"], "coder");
    assert!(c.1["expires_at"].is_string());
    assert_error(
        &gw.tool("file_write", req("qa", "a.py", json!({"content": "x"})))
            .await,
        409,
        "locked",
    );
    assert_error(
        &gw.tool("delete_file", req("qa", "a.py", json!({}))).await,
        409,
        "locked",
    );
    assert_error(
        &gw.tool("renew_file", req("qa", "a.py", json!({}))).await,
        409,
        "lock_not_held",
    );
    let rel = gw.tool("release_file", req("qa", "a.py", json!({}))).await;
    assert_error(&rel, 409, "lock_not_held");
    assert_eq!(rel.1["holder"], "coder");
    // The holder writes (its write carries the fence) and releases.
    ok(gw
        .tool(
            "file_write",
            req("coder", "a.py", json!({"content": "mine"})),
        )
        .await);
    let (fence,): (i64,) = sqlx::query_as("SELECT last_fence FROM files WHERE path = 'a.py'")
        .fetch_one(gw.pg.pool())
        .await
        .unwrap();
    assert_eq!(fence, lease["fence"].as_i64().unwrap());
    let renewed = ok(gw
        .tool(
            "renew_file",
            req("coder", "a.py", json!({"timeout_sec": 10})),
        )
        .await);
    assert_eq!(renewed["fence"], lease["fence"]);
    let released = ok(gw
        .tool("release_file", req("coder", "a.py", json!({})))
        .await);
    assert_eq!(released["locked"], false);
    assert_error(
        &gw.tool("release_file", req("coder", "a.py", json!({})))
            .await,
        409,
        "lock_not_held",
    );
    // Free again: the other agent may take it, with a higher fence.
    let qa = ok(gw.tool("claim_file", req("qa", "a.py", json!({}))).await);
    assert!(qa["fence"].as_i64() > lease["fence"].as_i64());
}

async fn lease_length_is_validated(gw: TestGateway) {
    for bad in [json!(0), json!(-5), json!(100000), json!("ten"), json!(1.5)] {
        assert_error(
            &gw.tool("claim_file", req("a", "f", json!({"timeout_sec": bad})))
                .await,
            400,
            "invalid_argument",
        );
    }
    assert_error(
        &gw.tool("renew_file", req("a", "f", json!({"timeout_sec": 0})))
            .await,
        400,
        "invalid_argument",
    );
    ok(gw
        .tool("claim_file", req("a", "f", json!({"timeout_sec": 3600})))
        .await);
}

/// `slow` claims `f` for a second and writes `v1`, then pauses past its lease (real Redis TTLs
/// cannot be paused: the test waits the second out). Its fence.
async fn slow_writes_and_pauses(gw: &TestGateway) -> i64 {
    let old = ok(gw
        .tool("claim_file", req("slow", "f", json!({"timeout_sec": 1})))
        .await);
    ok(gw
        .tool("file_write", req("slow", "f", json!({"content": "v1"})))
        .await);
    tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
    old["fence"].as_i64().unwrap()
}

async fn an_expired_lease_passes_on_and_the_old_holders_late_write_is_stale(gw: TestGateway) {
    let old_fence = slow_writes_and_pauses(&gw).await;
    let new = ok(gw
        .tool("claim_file", req("fast", "f", json!({"timeout_sec": 60})))
        .await);
    assert!(new["fence"].as_i64().unwrap() > old_fence);
    // While the new holder holds it, the old holder is refused as locked.
    assert_error(
        &gw.tool(
            "file_write",
            req("slow", "f", json!({"content": "late", "fence": old_fence})),
        )
        .await,
        409,
        "locked",
    );
    ok(gw
        .tool("file_write", req("fast", "f", json!({"content": "v2"})))
        .await);
    ok(gw.tool("release_file", req("fast", "f", json!({}))).await);
    // Once free, the old holder's late write still carries its old fence, which is no live
    // lease's any more: refused.
    let late = gw
        .tool(
            "file_write",
            req("slow", "f", json!({"content": "late", "fence": old_fence})),
        )
        .await;
    assert_error(&late, 409, "stale_fence");
    assert_eq!(late.1["fence"], old_fence);
    assert_eq!(late.1["lease_fence"], Value::Null);
    let late_edit = gw
        .tool(
            "file_edit",
            req(
                "slow",
                "f",
                json!({"old_string": "v2", "new_string": "x", "fence": old_fence}),
            ),
        )
        .await;
    assert_error(&late_edit, 409, "stale_fence");
    let r = ok(gw
        .tool("file_read", json!({"task_id": "t", "path": "f"}))
        .await);
    assert_eq!(r["content"], "v2");
}

async fn forged_fences_are_refused_and_never_lock_holders_out(gw: TestGateway) {
    // A forged fence on a free path: the largest number, a large one, negative, zero.
    for forged in [json!(i64::MAX), json!(1_000_000), json!(-1), json!(0)] {
        let w = gw
            .tool(
                "file_write",
                req("mallory", "f", json!({"content": "x", "fence": forged})),
            )
            .await;
        if forged.as_i64().unwrap() > 0 {
            assert_error(&w, 409, "stale_fence");
            assert!(
                w.1["detail"].as_str().unwrap().contains("no live lease"),
                "{}",
                w.1
            );
        } else {
            assert_error(&w, 400, "invalid_argument");
        }
    }
    assert_error(
        &gw.tool(
            "delete_file",
            req("mallory", "f", json!({"fence": i64::MAX})),
        )
        .await,
        409,
        "stale_fence",
    );
    assert_error(
        &gw.tool("file_read", json!({"task_id": "t", "path": "f"}))
            .await,
        404,
        "file_not_found",
    );
    // The real holder writes, edits and deletes, presenting its fence or not.
    let lease = ok(gw.tool("claim_file", req("coder", "f", json!({}))).await);
    let fence = lease["fence"].as_i64().unwrap();
    ok(gw
        .tool(
            "file_write",
            req("coder", "f", json!({"content": "v1", "fence": fence})),
        )
        .await);
    ok(gw
        .tool(
            "file_edit",
            req(
                "coder",
                "f",
                json!({"old_string": "v1", "new_string": "v2", "fence": fence}),
            ),
        )
        .await);
    // Another agent presenting the holder's fence is refused (the path is the holder's).
    assert_error(
        &gw.tool(
            "file_write",
            req("mallory", "f", json!({"content": "x", "fence": fence})),
        )
        .await,
        409,
        "locked",
    );
    // The holder's own fence, but not its lease's (forged upwards): refused, with the reason.
    let up = gw
        .tool(
            "file_write",
            req("coder", "f", json!({"content": "x", "fence": fence + 1})),
        )
        .await;
    assert_error(&up, 409, "stale_fence");
    assert!(
        up.1["detail"]
            .as_str()
            .unwrap()
            .contains("not your lease's fence"),
        "{}",
        up.1
    );
    assert_eq!(up.1["lease_fence"], fence);
    ok(gw
        .tool("delete_file", req("coder", "f", json!({"fence": fence})))
        .await);
    ok(gw
        .tool("file_write", req("coder", "f", json!({"content": "v4"})))
        .await);
}

async fn a_pausing_holder_cannot_overwrite_a_newer_holders_work(gw: TestGateway) {
    let old_fence = slow_writes_and_pauses(&gw).await;
    ok(gw
        .tool("claim_file", req("fast", "f", json!({"timeout_sec": 1})))
        .await);
    ok(gw
        .tool("file_write", req("fast", "f", json!({"content": "v2"})))
        .await);
    tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
    // Both leases expired; the pausing holder wakes up and writes.
    assert_error(
        &gw.tool(
            "file_write",
            req("slow", "f", json!({"content": "late", "fence": old_fence})),
        )
        .await,
        409,
        "stale_fence",
    );
    let blind = gw
        .tool("file_write", req("slow", "f", json!({"content": "late"})))
        .await;
    assert_error(&blind, 409, "lease_required");
    assert!(
        blind.1["detail"]
            .as_str()
            .unwrap()
            .contains("expected_version"),
        "{}",
        blind.1
    );
    assert_error(
        &gw.tool("delete_file", req("slow", "f", json!({}))).await,
        409,
        "lease_required",
    );
    assert_error(
        &gw.tool(
            "file_write",
            req(
                "slow",
                "f",
                json!({"content": "late", "expected_version": 1}),
            ),
        )
        .await,
        409,
        "version_conflict",
    );
    let r = ok(gw
        .tool("file_read", json!({"task_id": "t", "path": "f"}))
        .await);
    assert_eq!(
        (r["content"].as_str(), r["version"].as_i64()),
        (Some("v2"), Some(2))
    );
    // Conditional on what it has read, it may write.
    ok(gw
        .tool(
            "file_write",
            req("slow", "f", json!({"content": "v3", "expected_version": 2})),
        )
        .await);
}

async fn two_anonymous_agents_of_one_task_exclude_each_other(gw: TestGateway) {
    // The seed's flow: the Coder and the QA of task t send only task_id (no token, no
    // agent_id), so both act as the task. The Coder's lease must still lock the QA out.
    let coder = ok(gw
        .tool("claim_file", json!({"task_id": "t", "path": "src/app.py"}))
        .await);
    assert_eq!(coder["owner"], "t");
    let qa = gw
        .tool(
            "claim_file",
            json!({"task_id": "t", "path": "./src/app.py"}),
        )
        .await;
    assert_error(&qa, 409, "locked");
    assert_eq!(qa.1["holder"], "t");
    // Renew and release stay possible (the name is all an anonymous caller has).
    let renewed = ok(gw
        .tool(
            "renew_file",
            json!({"task_id": "t", "path": "src/app.py", "timeout_sec": 30}),
        )
        .await);
    assert_eq!(renewed["fence"], coder["fence"]);
    ok(gw
        .tool(
            "release_file",
            json!({"task_id": "t", "path": "src/app.py"}),
        )
        .await);
    let qa = ok(gw
        .tool("claim_file", json!({"task_id": "t", "path": "src/app.py"}))
        .await);
    assert!(qa["fence"].as_i64() > coder["fence"].as_i64());
    // Identified agents keep re-entrant leases.
    let first = ok(gw.tool("claim_file", req("coder", "b.py", json!({}))).await);
    let again = ok(gw.tool("claim_file", req("coder", "b.py", json!({}))).await);
    assert_eq!(again["fence"], first["fence"]);
}

async fn fences_increase_across_paths_and_tasks(gw: TestGateway) {
    let mut last = 0;
    for (i, path) in ["a", "b", "c", "d"].iter().enumerate() {
        let task = format!("t{i}");
        let l = ok(gw
            .tool(
                "claim_file",
                json!({"task_id": task, "path": path, "agent_id": "x"}),
            )
            .await);
        let f = l["fence"].as_i64().unwrap();
        assert!(f > last);
        last = f;
    }
}

async fn locks_are_per_task_and_the_original_clients_lock_as_their_task(gw: TestGateway) {
    // The original client sends only task_id: the task is the owner.
    let l = ok(gw
        .tool("claim_file", json!({"task_id": "t", "path": "a"}))
        .await);
    assert_eq!(l["owner"], "t");
    // Not re-entrant: another anonymous agent of the task would share the name.
    assert_error(
        &gw.tool("claim_file", json!({"task_id": "t", "path": "a"}))
            .await,
        409,
        "locked",
    );
    ok(gw
        .tool("claim_file", json!({"task_id": "other", "path": "a"}))
        .await);
    ok(gw
        .tool(
            "file_write",
            json!({"task_id": "t", "path": "a", "content": "x"}),
        )
        .await);
    ok(gw
        .tool("release_file", json!({"task_id": "t", "path": "a"}))
        .await);
}

#[tokio::test]
async fn lock_changes_are_events_and_audited_through_the_outbox() {
    let gw = TestGateway::spawn().await;
    ok(gw.tool("claim_file", req("coder", "a", json!({}))).await);
    ok(gw.tool("release_file", req("coder", "a", json!({}))).await);
    let mut conn = gw.redis.connection().await;
    let events = stream_json(
        &mut conn,
        &format!("{0}events:{{{0}task:t}}", gw.redis.prefix),
        "e",
    )
    .await;
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["lock_acquired", "lock_released"]);
    let outbox = stream_json(&mut conn, &format!("{}outbox", gw.redis.prefix), "payload").await;
    let actions: Vec<&str> = outbox
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["claim_file", "release_file"]);
}

/// A grant's and an owner's release's events ride in the lease's own script
/// (`lua/lease_event.lua`, issue #19), which writes in the one value it alone knows (the
/// expiry, the fence): they carry what the gateway's own events carry — the lease's fence and
/// expiry as the claim answered them, the holder — in serde_json's text, and the audit
/// records hold the fence as a number. A re-entrant claim's and a forced release's events are
/// still the gateway's own; all of them land in the stream and the outbox in order.
#[tokio::test]
async fn lease_events_written_by_the_lease_scripts_are_the_gateways_events() {
    let gw = TestGateway::spawn().await;
    let t = |agent: &str, extra: Value| req(agent, "src/a.py", extra);
    let claimed = ok(gw
        .tool("claim_file", t("coder", json!({"timeout_sec": 30})))
        .await);
    let again = ok(gw
        .tool("claim_file", t("coder", json!({"timeout_sec": 40})))
        .await);
    ok(gw.tool("release_file", t("coder", json!({}))).await);
    let other = ok(gw
        .tool("claim_file", t("tester", json!({"timeout_sec": 30})))
        .await);
    ok(gw
        .tool("release_file", t("admin", json!({"force": true})))
        .await);
    let fence = claimed["fence"].as_i64().unwrap();
    assert!(other["fence"].as_i64().unwrap() > fence);

    let mut conn = gw.redis.connection().await;
    let key = format!("{0}events:{{{0}task:t}}", gw.redis.prefix);
    let raw: Vec<String> = crate::xrange(&mut conn, &key)
        .await
        .ids
        .iter()
        .map(|e| e.get::<String>("e").unwrap())
        .collect();
    let events: Vec<Value> = raw
        .iter()
        .map(|r| serde_json::from_str(r).unwrap())
        .collect();
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "lock_acquired",
            "lock_renewed",
            "lock_released",
            "lock_acquired",
            "lock_released"
        ]
    );
    for (text, e) in raw.iter().zip(&events) {
        // serde_json's text of the data, in place (the script wrote the value as serde_json would).
        assert!(text.contains(&e["data"].to_string()), "{text}");
        assert_eq!(e["taskId"], "t");
    }
    let data: Vec<&Value> = events.iter().map(|e| &e["data"]).collect();
    assert_eq!(
        *data[0],
        json!({"path": "src/a.py", "owner": "coder", "fence": fence,
               "expires_at": claimed["expires_at"], "timeout_sec": 30, "recursive": false})
    );
    assert_eq!(data[1]["expires_at"], again["expires_at"]);
    assert_eq!(
        *data[2],
        json!({"path": "src/a.py", "owner": "coder", "fence": fence, "forced": false})
    );
    assert_eq!(data[3]["expires_at"], other["expires_at"]);
    assert_eq!(
        *data[4],
        json!({"path": "src/a.py", "owner": "tester", "fence": other["fence"], "forced": true})
    );
    let agents: Vec<&str> = events
        .iter()
        .map(|e| e["agentId"].as_str().unwrap())
        .collect();
    assert_eq!(agents, ["coder", "coder", "coder", "tester", "admin"]);

    let raw: Vec<String> = crate::xrange(&mut conn, &format!("{}outbox", gw.redis.prefix))
        .await
        .ids
        .iter()
        .filter_map(|e| e.get::<String>("payload"))
        .collect();
    let audits: Vec<Value> = raw
        .iter()
        .map(|r| serde_json::from_str(r).unwrap())
        .collect();
    for (text, a) in raw.iter().zip(&audits) {
        assert_eq!(*text, a.to_string());
        assert_eq!(a["task_id"], "t");
        assert!(a["at"].is_string() && a["request_id"].is_string(), "{a}");
    }
    let brief: Vec<Value> = audits
        .iter()
        .map(|a| json!([a["action"], a["actor"], a["fence"], a.get("holder")]))
        .collect();
    assert_eq!(
        brief,
        [
            json!(["claim_file", "coder", fence, null]),
            json!(["claim_file", "coder", fence, null]),
            json!(["release_file", "coder", fence, "coder"]),
            json!(["claim_file", "tester", other["fence"], null]),
            json!(["force_release_file", "admin", other["fence"], "tester"]),
        ]
    );
}

/// Only a grant takes a fence: while Postgres cannot give one, what needs none is answered
/// from Redis as ever — the holder's re-entrant claim (same fence) and another agent's refusal
/// (`locked`, not an outage) — and a grant fails as an outage. (The sequence renamed away: a real failure of
/// `nextval` on the gateway's own database.)
#[tokio::test]
async fn without_a_fence_from_postgres_a_held_lease_is_still_reentered_and_refused() {
    use sqlx::Connection;
    let gw = TestGateway::spawn().await;
    let first = ok(gw.tool("claim_file", req("coder", "a.py", json!({}))).await);
    let mut pg = sqlx::PgConnection::connect(&gw.db.url).await.unwrap();
    sqlx::query("ALTER SEQUENCE lock_fence_seq RENAME TO lock_fence_seq_away")
        .execute(&mut pg)
        .await
        .unwrap();
    let again = ok(gw.tool("claim_file", req("coder", "a.py", json!({}))).await);
    assert_eq!(again["fence"], first["fence"]);
    let refused = gw
        .tool("claim_file", req("tester", "a.py", json!({})))
        .await;
    assert_error(&refused, 409, "locked");
    let free = gw
        .tool("claim_file", req("tester", "b.py", json!({})))
        .await;
    assert!(free.0 >= 500, "a grant without the sequence: {free:?}");
    sqlx::query("ALTER SEQUENCE lock_fence_seq_away RENAME TO lock_fence_seq")
        .execute(&mut pg)
        .await
        .unwrap();
    let granted = ok(gw
        .tool("claim_file", req("tester", "b.py", json!({})))
        .await);
    assert!(granted["fence"].as_i64() > first["fence"].as_i64());
}

trait ParseHelpers {
    fn parse_task(&self) -> mcp_domain::TaskId;
    fn parse_path(&self) -> mcp_domain::FilePath;
}

impl ParseHelpers for str {
    fn parse_task(&self) -> mcp_domain::TaskId {
        mcp_domain::TaskId::parse(self).unwrap()
    }
    fn parse_path(&self) -> mcp_domain::FilePath {
        mcp_domain::FilePath::parse(self).unwrap()
    }
}
