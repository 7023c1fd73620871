//! Redis going back in time: a persisted private `redis-server` is killed (`SIGKILL`) and
//! restarted from an older copy of its files, as after restoring a backup, a power loss under
//! `appendfsync everysec` or a failover to a lagging replica. Reads must not serve the older
//! hot copies, and leases the older files bring back must not block anyone (see "Rollback
//! detection" in `docs/ARCHITECTURE.md`).

use crate::ok;
use mcp_testkit::{PrivateRedis, TestDb, TestGateway, TestRedis};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// A gateway (sync loops off: the test drives every change) over a persisted private Redis.
async fn gateway(redis: &PrivateRedis) -> TestGateway {
    TestGateway::spawn_on(TestDb::create().await, TestRedis::on(redis.url()), |c| {
        c.redis_timeout_ms = 1000;
        c.run_sync = false;
    })
    .await
}

/// Kills Redis, puts `snapshot` back in place of its files and starts it again.
fn roll_back(redis: &mut PrivateRedis, snapshot: &mcp_testkit::TestDir) {
    redis.stop();
    redis.restore(snapshot);
    assert!(redis.restart(), "redis restarts from the older files");
}

/// Calls `tool` until it answers something other than 503 (the connection manager
/// reconnecting after the restart), for at most 10 s.
async fn call_through_reconnect(gw: &TestGateway, tool: &str, body: Value) -> (u16, Value) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = gw.tool(tool, body.clone()).await;
        if got.0 != 503 || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_read_after_redis_rolls_back_returns_the_newest_acknowledged_version() {
    let mut redis = PrivateRedis::start_persistent().expect("redis-server on the PATH");
    let gw = gateway(&redis).await;
    let file = json!({"task_id": "t", "path": "a.py"});
    ok(gw
        .tool(
            "file_write",
            json!({"task_id": "t", "path": "a.py", "content": "v1"}),
        )
        .await);
    assert_eq!(
        ok(gw.tool("file_read", file.clone()).await)["content"],
        "v1"
    );
    let before = redis.snapshot();
    ok(gw
        .tool(
            "file_write",
            json!({"task_id": "t", "path": "a.py", "content": "v2"}),
        )
        .await);
    assert_eq!(
        ok(gw.tool("file_read", file.clone()).await)["content"],
        "v2"
    );

    roll_back(&mut redis, &before);
    let read = ok(call_through_reconnect(&gw, "file_read", file.clone()).await);
    assert_eq!(
        (read["content"].as_str(), read["version"].as_i64()),
        (Some("v2"), Some(2)),
        "a read after the rollback served an older version than the acknowledged one"
    );
    // The rebuilt hot layer serves (and caches) the newest version from now on.
    let again = ok(gw.tool("file_read", file).await);
    assert_eq!(again["content"], "v2");
}

#[tokio::test]
async fn a_released_lease_brought_back_by_a_rollback_does_not_block_a_new_claim() {
    let mut redis = PrivateRedis::start_persistent().expect("redis-server on the PATH");
    let gw = gateway(&redis).await;
    let claim = |agent: &str| json!({"task_id": "t", "path": "a.py", "agent_id": agent});
    let first = ok(gw.tool("claim_file", claim("coder")).await);
    let before = redis.snapshot();
    ok(gw.tool("release_file", claim("coder")).await);

    roll_back(&mut redis, &before);
    let second = ok(call_through_reconnect(&gw, "claim_file", claim("qa")).await);
    assert_eq!(second["owner"], "qa");
    assert!(
        second["fence"].as_i64() > first["fence"].as_i64(),
        "fences come from the durable sequence: {first} then {second}"
    );
    // The write path sees the new lease, not the resurrected one.
    ok(gw
        .tool(
            "file_write",
            json!({"task_id": "t", "path": "a.py", "content": "x", "agent_id": "qa",
                   "fence": second["fence"]}),
        )
        .await);
}

#[tokio::test]
async fn a_lease_list_after_a_rollback_shows_no_resurrected_lease() {
    let mut redis = PrivateRedis::start_persistent().expect("redis-server on the PATH");
    let gw = gateway(&redis).await;
    let claim = json!({"task_id": "t", "path": "a.py", "agent_id": "coder"});
    ok(gw.tool("claim_file", claim.clone()).await);
    let list = json!({"task_id": "t"});
    assert_eq!(
        ok(gw.tool("list_leases", list.clone()).await)["leases"][0]["holder"],
        "coder"
    );
    let before = redis.snapshot();
    ok(gw.tool("release_file", claim).await);

    roll_back(&mut redis, &before);
    let listed = ok(call_through_reconnect(&gw, "list_leases", list).await);
    assert_eq!(
        listed["leases"],
        json!([]),
        "the listing served a lease the rollback brought back"
    );
}
