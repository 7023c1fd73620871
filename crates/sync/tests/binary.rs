//! The real `mcp-sync` binary: killed with SIGKILL in the middle of pushing, restarted, and
//! still every step lands in Postgres exactly once (the restart claims what the dead process
//! left pending; inserts are idempotent). It also serves its metrics on `SYNC_METRICS_ADDR`.

use mcp_domain::store::postgres::PgStore;
use mcp_domain::{Actor, AgentId};
use mcp_testkit::{TestDb, TestRedis, TestStores, free_port};
use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn start(db: &TestDb, redis: &TestRedis, consumer: &str, metrics_port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_mcp-sync"))
        .env("SYNC_METRICS_ADDR", format!("127.0.0.1:{metrics_port}"))
        .env("DATABASE_URL", &db.url)
        .env("REDIS_URL", &redis.url)
        .env("REDIS_KEY_PREFIX", &redis.prefix)
        .env("PUSH_BATCH_SIZE", "100")
        .env("PUSH_INTERVAL_MS", "20")
        .env("CLAIM_IDLE_MS", "0")
        .env("CONSUMER_NAME", consumer)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mcp-sync starts")
}

async fn count(pg: &PgStore, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pg.pool()).await.unwrap()
}

/// Waits (bounded) until `sql` answers at least `n`.
async fn wait_for(pg: &PgStore, sql: &str, n: i64) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let c = count(pg, sql).await;
        if c >= n || Instant::now() > deadline {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_killed_and_restarted_sync_writes_every_step_exactly_once() {
    let stores = TestStores::with_pool(4).await;
    let (db, redis, pg) = (&stores.db, &stores.redis, &stores.pg);
    let service = stores.service();
    let actor = Actor::trusted(AgentId::parse("agent-1").unwrap());
    let total = 3_000;
    for i in 0..total {
        service
            .log_step(
                &actor,
                mcp_api::requests::LogStepRequest {
                    task_id: format!("task-{}", i % 5),
                    step: json!({"n": i}),
                    agent_id: None,
                },
            )
            .await
            .unwrap();
    }
    const COUNT: &str = "SELECT count(*) FROM step_logs";
    let mut first = start(db, redis, "first", free_port());
    let seen = wait_for(pg, COUNT, 1).await;
    first.kill().expect("SIGKILL"); // Unix: SIGKILL, no flush.
    let _ = first.wait();
    assert!(seen >= 1, "the first process wrote nothing");

    let port = free_port();
    let mut second = start(db, redis, "second", port);
    let done = wait_for(pg, COUNT, total).await;
    let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .expect("the sync process serves /metrics")
        .text()
        .await
        .unwrap();
    second.kill().expect("kill");
    let _ = second.wait();
    assert_eq!(done, total);
    // The second process wrote what the first left (claimed or new), and says so.
    let persisted = metrics
        .lines()
        .find_map(|l| l.strip_prefix("mcp_sync_persisted_total "))
        .and_then(|v| v.parse::<f64>().ok());
    assert!(persisted.is_some_and(|n| n >= 1.0), "{metrics}");
    assert!(metrics.contains("mcp_sync_lag_seconds{loop=\"push\"}"));
    assert!(metrics.contains("mcp_sync_lag_seconds{loop=\"pull\"}"));
    assert_eq!(count(pg, COUNT).await, total);
    assert_eq!(
        count(pg, "SELECT count(DISTINCT (step->>'n')) FROM step_logs").await,
        total
    );
}
