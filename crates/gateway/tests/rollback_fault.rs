//! The rollback fault test of the real binaries (issue 14, acceptance): two `mcp-gateway`
//! processes over one Postgres database and one private, persisted `redis-server`. Writers
//! take leases and write their files through both gateways while readers read them; in the
//! middle of the run a copy of Redis's files is taken, the writes go on, then Redis is killed
//! (`SIGKILL`) and restarted from the older copy, and the writes go on again. Then:
//! * no read ever returned an older version than one already acknowledged for that file;
//! * every file read at the end (through both gateways) holds its newest durable version,
//!   which is at least the newest acknowledged one (0 lost writes);
//! * every file's revisions carry non-decreasing fences (leases stayed safe by fence).

use mcp_domain::store::postgres::{PgConfig, PgStore};
use mcp_testkit::ledger::{WriteLedger, call_tool};
use mcp_testkit::{PrivateRedis, TestDb, free_port};
use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Writers per shared path (they contend for its lease) and shared paths.
const PATHS: usize = 6;
const WRITERS_PER_PATH: usize = 2;
const READERS: usize = 4;

struct Gateway {
    child: Child,
    base: String,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_gateway(db: &TestDb, redis: &PrivateRedis, run_sync: bool) -> Gateway {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_mcp-gateway"))
        .env("DATABASE_URL", &db.url)
        .env("REDIS_URL", redis.url())
        .env("MCP_GATEWAY_PORT", port.to_string())
        .env("RUN_SYNC", run_sync.to_string())
        .env("REDIS_TIMEOUT_MS", "1000")
        .env("REQUEST_TIMEOUT_SECS", "5")
        .env("RATE_LIMIT_REQUESTS", "100000000")
        .env("PG_MAX_CONNECTIONS", "8")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the gateway binary starts");
    let gw = Gateway {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    mcp_testkit::wait_healthy(&gw.base, Duration::from_secs(60)).await;
    gw
}

/// One writer: claim the path's lease, write with its fence, read back, release; again.
async fn writer(
    id: usize,
    path: String,
    gws: Arc<Vec<String>>,
    ledger: Arc<WriteLedger>,
    stop: Arc<AtomicBool>,
) {
    let http = reqwest::Client::new();
    let agent = format!("w{id}");
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let base = &gws[(id + n as usize) % gws.len()];
        let lease = json!({"task_id": "t", "path": path, "agent_id": agent, "timeout_sec": 5});
        let claim = call_tool(&http, base, "claim_file", &lease).await;
        if claim.0 != 200 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let content = format!("{agent}-{n}");
        let write = json!({"task_id": "t", "path": path, "agent_id": agent, "content": content,
                           "fence": claim.1["fence"]});
        let got = call_tool(&http, base, "file_write", &write).await;
        if got.0 == 200 {
            let version = got.1["version"]
                .as_i64()
                .expect("a write answers its version");
            ledger.ack(&path, version, &content);
            let floor = ledger.acked_version(&path);
            let other = &gws[(id + n as usize + 1) % gws.len()];
            let read = json!({"task_id": "t", "path": path});
            let r = call_tool(&http, other, "file_read", &read).await;
            ledger.check_read(&path, floor, &r, other);
        }
        call_tool(&http, base, "release_file", &lease).await;
    }
}

/// One reader: reads random paths through alternating gateways.
async fn reader(id: usize, gws: Arc<Vec<String>>, ledger: Arc<WriteLedger>, stop: Arc<AtomicBool>) {
    let http = reqwest::Client::new();
    let mut n = id;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let path = format!("f{}.txt", n % PATHS);
        let floor = ledger.acked_version(&path);
        let base = &gws[n % gws.len()];
        let r = call_tool(
            &http,
            base,
            "file_read",
            &json!({"task_id": "t", "path": path}),
        )
        .await;
        ledger.check_read(&path, floor, &r, base);
        if r.0 != 200 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_rolled_back_mid_run_serves_no_stale_read_and_loses_no_write() {
    let mut redis = PrivateRedis::start_persistent().expect("redis-server on the PATH");
    let db = TestDb::create().await;
    let a = start_gateway(&db, &redis, true).await;
    let b = start_gateway(&db, &redis, false).await;
    let gws = Arc::new(vec![a.base.clone(), b.base.clone()]);
    let ledger = Arc::new(WriteLedger::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for p in 0..PATHS {
        for w in 0..WRITERS_PER_PATH {
            workers.push(tokio::spawn(writer(
                p * WRITERS_PER_PATH + w,
                format!("f{p}.txt"),
                gws.clone(),
                ledger.clone(),
                stop.clone(),
            )));
        }
    }
    for r in 0..READERS {
        workers.push(tokio::spawn(reader(
            r,
            gws.clone(),
            ledger.clone(),
            stop.clone(),
        )));
    }

    tokio::time::sleep(Duration::from_secs(2)).await;
    let older = redis.snapshot();
    let at_copy = ledger.acked_writes();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before_kill = ledger.acked_writes();
    redis.stop();
    redis.restore(&older);
    assert!(redis.restart(), "redis restarts from the older copy");
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let total = ledger.acked_writes();
    assert!(
        before_kill > at_copy && total > before_kill,
        "writes acknowledged: {at_copy} at the copy, {before_kill} before the kill, {total} in \
         all: the run must write between the copy and the kill, and after the restart"
    );

    let stale = ledger.stale_reads();
    assert!(
        stale.is_empty(),
        "{} reads (of {}) older than the acknowledged version: {stale:?}",
        stale.len(),
        ledger.reads()
    );

    let pg = PgStore::connect(&PgConfig {
        url: db.url.clone(),
        max_connections: 2,
        acquire_timeout: Duration::from_secs(10),
    })
    .await
    .unwrap();
    let paths: Vec<String> = (0..PATHS).map(|p| format!("f{p}.txt")).collect();
    let bases: Vec<&str> = gws.iter().map(String::as_str).collect();
    ledger.assert_durable(pg.pool(), "t", &paths, &bases).await;
    eprintln!(
        "rollback fault run: {total} writes acknowledged ({at_copy} at the copy, {before_kill} \
         before the kill), {} reads checked, 0 stale",
        ledger.reads()
    );
}
