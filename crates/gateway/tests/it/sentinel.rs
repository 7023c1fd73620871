//! Redis Sentinel (issue 20, acceptance): a gateway configured with
//! `redis+sentinel://…/mymaster` over a primary, its replica and three Sentinels (private
//! `redis-server` processes on loopback, `SentinelGroup`), plus Postgres as usual. Writers
//! claim leases and write with their fences, steppers log steps, readers read, all at once;
//! the primary is killed (`SIGKILL`) in the middle; the Sentinels promote the replica and the
//! gateway follows it without a restart. Then:
//! * the gateway carried on: writes and steps were acknowledged after the failover;
//! * 0 lost acknowledged writes: Postgres and reads through the gateway hold the newest
//!   acknowledged version of every file (or a newer one);
//! * 0 stale reads: no read returned a version older than one acknowledged before it was sent;
//! * 0 overlapping lease holders by fence: no fence was granted to two agents, and every file's
//!   revisions carry non-decreasing fences;
//! * with `REDIS_MIN_REPLICAS=1`, 0 lost acknowledged steps: every step the gateway
//!   acknowledged reaches Postgres. Just before the kill the replica is cut off (stalled with
//!   `SIGSTOP`, its link dropped by the primary), so with 0 the steps acknowledged meanwhile
//!   are lost with the primary: that run asserts it sees some.

use mcp_testkit::ledger::{WriteLedger, call_tool};
use mcp_testkit::{SentinelGroup, TestDb, TestGateway, TestRedis};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const PATHS: usize = 4;
const WRITERS_PER_PATH: usize = 2;
const READERS: usize = 2;
const STEPPERS: usize = 3;

/// What the run saw.
#[derive(Default)]
struct Ledger {
    /// Acknowledged writes and stale reads.
    writes: WriteLedger,
    /// (path, fence) → the agent it was granted to.
    grants: Mutex<HashMap<(String, i64), String>>,
    overlaps: Mutex<Vec<String>>,
    /// Ids of acknowledged steps.
    steps: Mutex<Vec<String>>,
    /// Answers that were neither a success nor `unavailable` with `Retry-After` (a hang is
    /// status 0).
    bad_answers: Mutex<Vec<String>>,
    /// The last 503 answer (to say why, should the run not carry on).
    last_refusal: Mutex<String>,
}

impl Ledger {
    fn grant(&self, path: &str, fence: i64, agent: &str) {
        let mut g = self.grants.lock().unwrap();
        if let Some(other) = g.insert((path.to_owned(), fence), agent.to_owned())
            && other != agent
        {
            self.overlaps.lock().unwrap().push(format!(
                "{path}: fence {fence} granted to {other} and {agent}"
            ));
        }
    }

    /// Records an answer that is neither a success nor an expected refusal.
    fn check_answer(&self, what: &str, got: &(u16, Value)) {
        let expected = match got.0 {
            200 => true,
            // A refusal that is part of the protocol (held by another, stale fence, …).
            409 | 423 => true,
            503 => got.1["code"] == "unavailable",
            _ => false,
        };
        if got.0 == 503 {
            *self.last_refusal.lock().unwrap() = format!("{what}: {}", got.1);
        }
        if !expected {
            self.bad_answers
                .lock()
                .unwrap()
                .push(format!("{what}: {} {}", got.0, got.1));
        }
    }
}

async fn writer(id: usize, path: String, base: String, ledger: Arc<Ledger>, stop: Arc<AtomicBool>) {
    let http = reqwest::Client::new();
    let agent = format!("w{id}");
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let lease = json!({"task_id": "t", "path": path, "agent_id": agent, "timeout_sec": 5});
        let claim = call_tool(&http, &base, "claim_file", &lease).await;
        ledger.check_answer("claim_file", &claim);
        if claim.0 != 200 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let fence = claim.1["fence"]
            .as_i64()
            .expect("a claim answers its fence");
        ledger.grant(&path, fence, &agent);
        let content = format!("{agent}-{n}");
        let write = json!({"task_id": "t", "path": path, "agent_id": agent, "content": content,
                           "fence": fence});
        let got = call_tool(&http, &base, "file_write", &write).await;
        ledger.check_answer("file_write", &got);
        if got.0 == 200 {
            let version = got.1["version"]
                .as_i64()
                .expect("a write answers its version");
            ledger.writes.ack(&path, version, &content);
            let floor = ledger.writes.acked_version(&path);
            let read = json!({"task_id": "t", "path": path});
            let r = call_tool(&http, &base, "file_read", &read).await;
            ledger.check_answer("file_read", &r);
            ledger.writes.check_read(&path, floor, &r, "writer");
        }
        let released = call_tool(&http, &base, "release_file", &lease).await;
        ledger.check_answer("release_file", &released);
    }
}

async fn reader(id: usize, base: String, ledger: Arc<Ledger>, stop: Arc<AtomicBool>) {
    let http = reqwest::Client::new();
    let mut n = id;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let path = format!("f{}.txt", n % PATHS);
        let floor = ledger.writes.acked_version(&path);
        let r = call_tool(
            &http,
            &base,
            "file_read",
            &json!({"task_id": "t", "path": path}),
        )
        .await;
        if r.0 != 404 {
            ledger.check_answer("file_read", &r);
        }
        ledger.writes.check_read(&path, floor, &r, "reader");
        if r.0 != 200 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn stepper(id: usize, base: String, ledger: Arc<Ledger>, stop: Arc<AtomicBool>) {
    let http = reqwest::Client::new();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let step = json!({"task_id": "t", "agent_id": format!("s{id}"), "step": {"n": n}});
        let got = call_tool(&http, &base, "log_step", &step).await;
        ledger.check_answer("log_step", &got);
        match got.1["id"].as_str() {
            Some(sid) if got.0 == 200 => ledger.steps.lock().unwrap().push(sid.to_owned()),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Runs the load, kills the primary, lets the Sentinels fail over, runs on; checks the
/// invariants and answers the number of acknowledged steps missing from Postgres.
async fn failover_under_load(min_replicas: u32) -> usize {
    let mut group = SentinelGroup::start()
        .await
        .expect("redis-server on the PATH");
    let db = TestDb::create().await;
    let gw = TestGateway::spawn_on(db, TestRedis::on(group.url()), |c| {
        c.redis_timeout_ms = 1000;
        c.redis_min_replicas = min_replicas;
        c.rate_limit_requests = 0;
    })
    .await;
    // The sync loops, as `mcp-gateway` runs them (steps reach Postgres through the outbox).
    let _sync = crate::lists::run_sync(&gw);
    let ledger = Arc::new(Ledger::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for p in 0..PATHS {
        for w in 0..WRITERS_PER_PATH {
            workers.push(tokio::spawn(writer(
                p * WRITERS_PER_PATH + w,
                format!("f{p}.txt"),
                gw.base.clone(),
                ledger.clone(),
                stop.clone(),
            )));
        }
    }
    for r in 0..READERS {
        workers.push(tokio::spawn(reader(
            r,
            gw.base.clone(),
            ledger.clone(),
            stop.clone(),
        )));
    }
    for s in 0..STEPPERS {
        workers.push(tokio::spawn(stepper(
            s,
            gw.base.clone(),
            ledger.clone(),
            stop.clone(),
        )));
    }

    tokio::time::sleep(Duration::from_secs(2)).await;
    let old = group
        .primary_port()
        .await
        .expect("the Sentinels name a primary");
    let writes_before = ledger.writes.acked_writes();
    // The replica falls behind: it stalls and the primary drops its link, so what the primary
    // acknowledges from now on exists nowhere else; then the primary dies.
    let replica = group.servers.iter().find(|s| s.port != old).unwrap().port;
    group.server(replica).signal("STOP");
    let mut c = TestRedis::on(format!("redis://127.0.0.1:{old}"))
        .connection()
        .await;
    let _: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("replica")
        .query_async(&mut c)
        .await
        .expect("CLIENT KILL");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let steps_before = ledger.steps.lock().unwrap().len();
    group.server(old).stop();
    group.server(replica).signal("CONT");
    let new = group.await_failover(old, Duration::from_secs(30)).await;
    if min_replicas > 0 {
        // The new primary has no replica left: the old one comes back as its replica (as a
        // Sentinel would reconfigure it), so writes can be confirmed again.
        assert!(
            group.server(old).restart_as_replica_of(new),
            "the old primary restarts as a replica"
        );
    }
    let writes_at_failover = ledger.writes.acked_writes();
    let steps_at_failover = ledger.steps.lock().unwrap().len();
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let writes = ledger.writes.acked_writes();
    let steps: Vec<String> = ledger.steps.lock().unwrap().clone();
    assert!(
        writes_before > 0 && steps_before > 0,
        "the run wrote and logged before the kill ({writes_before} writes, {steps_before} steps)"
    );
    assert!(
        writes > writes_at_failover && steps.len() > steps_at_failover,
        "the gateway carried on after the failover: {writes} writes acknowledged in all, \
         {writes_at_failover} when the failover completed; {} steps, {steps_at_failover}; \
         the last refusal: {}",
        steps.len(),
        ledger.last_refusal.lock().unwrap()
    );
    let bad = ledger.bad_answers.lock().unwrap().clone();
    assert!(
        bad.is_empty(),
        "answers other than success or 503 unavailable during the failover: {bad:?}"
    );
    let stale = ledger.writes.stale_reads();
    assert!(
        stale.is_empty(),
        "{} reads (of {}) older than the acknowledged version: {stale:?}",
        stale.len(),
        ledger.writes.reads()
    );
    let overlaps = ledger.overlaps.lock().unwrap().clone();
    assert!(
        overlaps.is_empty(),
        "lease holders overlapped: {overlaps:?}"
    );

    let paths: Vec<String> = (0..PATHS).map(|p| format!("f{p}.txt")).collect();
    ledger
        .writes
        .assert_durable(gw.pg.pool(), "t", &paths, &[&gw.base])
        .await;

    // Steps reach Postgres through the outbox; wait for the push loop to drain it.
    for _ in 0..100 {
        let outbox = gw.stores.hot.outbox().expect("redis has an outbox");
        if outbox.outbox_length().await.is_ok_and(|n| n == 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stored: Vec<String> =
        sqlx::query_scalar("SELECT stream_id FROM step_logs WHERE task_id = 't'")
            .fetch_all(gw.pg.pool())
            .await
            .unwrap();
    let stored: HashSet<String> = stored.into_iter().collect();
    let missing = steps.iter().filter(|s| !stored.contains(*s)).count();
    eprintln!(
        "sentinel failover (REDIS_MIN_REPLICAS={min_replicas}): primary :{old} killed, :{new} \
         promoted; {writes} writes acknowledged ({writes_before} before the kill, \
         {writes_at_failover} when the failover completed), {} reads checked, 0 stale; {} steps \
         acknowledged ({steps_before} before the kill), {missing} missing from Postgres",
        ledger.writes.reads(),
        steps.len()
    );
    missing
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sentinel_failover_under_load_loses_no_write_and_serves_no_stale_read() {
    // Without replica confirmation, the steps the primary acknowledged while its replica was
    // cut off are lost with it: the window DEPLOYMENT.md documents. Seeing it here also shows
    // that the count below can see a loss. The other invariants hold regardless.
    let missing = failover_under_load(0).await;
    assert!(
        missing > 0,
        "steps acknowledged by a primary cut off from its replica survived its death"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_min_replicas_a_sentinel_failover_loses_no_acknowledged_step() {
    let missing = failover_under_load(1).await;
    assert_eq!(missing, 0, "acknowledged steps lost in the failover");
}

/// The live-event hub's subscription follows the failover: an event that is only published
/// (never appended to a stream, so no catch-up could bring it) on the new primary reaches a
/// watcher that subscribed before the old one died.
#[tokio::test]
async fn live_streams_resubscribe_on_the_new_primary() {
    let mut group = SentinelGroup::start()
        .await
        .expect("redis-server on the PATH");
    let gw = TestGateway::spawn_on(TestDb::create().await, TestRedis::on(group.url()), |c| {
        c.redis_timeout_ms = 1000;
    })
    .await;
    let http = reqwest::Client::new();
    let step = json!({"task_id": "t", "step": {"n": 0}});
    let first = call_tool(&http, &gw.base, "log_step", &step).await;
    assert_eq!(first.0, 200, "{}", first.1);
    let mut sse =
        crate::live::SseReader::open(&format!("{}/tasks/t/events?since=0", gw.base), None).await;
    let m = sse.next().await.expect("the first step's event");
    assert_eq!(m.data["data"]["id"], first.1["id"]);

    let old = group.primary_port().await.expect("a primary");
    group.server(old).stop();
    let new = group.await_failover(old, Duration::from_secs(30)).await;

    // Published again and again until it arrives: the hub resubscribes when it notices.
    let channel = format!("{}task:t:updates", gw.redis.prefix);
    let foreign = json!({"type": "task_assigned", "taskId": "t",
                         "timestamp": "2026-01-01T10:00:00.000Z", "data": {"agent": "qa"}});
    let publisher = tokio::spawn(async move {
        let mut c = TestRedis::on(format!("redis://127.0.0.1:{new}"))
            .connection()
            .await;
        loop {
            let _: redis::RedisResult<i64> = redis::cmd("PUBLISH")
                .arg(&channel)
                .arg(foreign.to_string())
                .query_async(&mut c)
                .await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let got = loop {
        let m = sse.next().await.expect("the stream survives the failover");
        if m.event == "task_assigned" {
            break m;
        }
    };
    publisher.abort();
    assert_eq!(got.data["data"]["agent"], "qa");
}
