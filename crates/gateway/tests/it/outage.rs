//! Backend outages: with Redis stopped, requests answer 503 `unavailable` with `Retry-After`
//! within the request timeout (no hang, no 500), and the gateway recovers by itself when
//! Redis returns.

use crate::{assert_error, ok};
use mcp_testkit::{PrivateRedis, TestDb, TestGateway, TestRedis};
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test]
async fn redis_outage_gives_503_with_retry_after_and_recovers_without_restart() {
    let Some(mut redis) = PrivateRedis::start() else {
        panic!("redis-server is needed on the PATH for the outage test");
    };
    let gw = TestGateway::spawn_on(TestDb::create().await, TestRedis::on(redis.url()), |c| {
        c.redis_timeout_ms = 500;
        c.request_timeout_secs = 3;
    })
    .await;
    ok(gw
        .tool(
            "file_write",
            json!({"task_id": "t", "path": "a", "content": "before"}),
        )
        .await);

    redis.stop();
    for (tool, body) in [
        ("file_read", json!({"task_id": "t", "path": "a"})),
        (
            "file_write",
            json!({"task_id": "t", "path": "a", "content": "during"}),
        ),
        ("claim_file", json!({"task_id": "t", "path": "a"})),
        ("log_step", json!({"task_id": "t", "step": {}})),
    ] {
        let started = Instant::now();
        let resp = gw
            .http
            .post(format!("{}/tools/{tool}", gw.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        // A bound against hanging, far above the configured 3 s request timeout.
        assert!(started.elapsed() < Duration::from_secs(10), "{tool} hung");
        assert_eq!(
            resp.headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()),
            Some("1"),
            "{tool}"
        );
        let got = (resp.status().as_u16(), resp.json().await.unwrap());
        assert_error(&got, 503, "unavailable");
    }
    let (status, health) = gw.get("/health").await;
    assert_eq!(status, 503);
    assert_eq!(
        (health["status"].as_str(), health["redis"].as_str()),
        (Some("unhealthy"), Some("disconnected"))
    );

    assert!(redis.restart(), "redis restarts");
    // Redis came back empty (no persistence): reads refill from Postgres.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let got = gw
            .tool("file_read", json!({"task_id": "t", "path": "a"}))
            .await;
        if got.0 == 200 {
            assert_eq!(
                got.1["content"], "before",
                "the write refused during the outage left nothing"
            );
            break;
        }
        assert!(Instant::now() < deadline, "no recovery: {got:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ok(gw
        .tool(
            "file_write",
            json!({"task_id": "t", "path": "a", "content": "after"}),
        )
        .await);
    assert_eq!(gw.get("/health").await.0, 200);
}
