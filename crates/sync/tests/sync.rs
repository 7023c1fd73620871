//! The sync loops against real Postgres and Redis (each test: its own database and key
//! prefix). Loops are stepped with `try_run_once`; no test depends on timing. Rows are
//! written with plain SQL where the orchestrator would write them directly.

use futures::StreamExt;
use mcp_domain::store::prelude::*;
use mcp_domain::{Actor, AgentId};
use mcp_sync::{PullLoop, PullSettings, PushLoop, PushSettings, SyncSettings};
use mcp_testkit::TestStores;
use redis::AsyncCommands;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// This test's stores (a fresh database and key prefix), with the shorthands below.
struct Env(TestStores);

impl std::ops::Deref for Env {
    type Target = TestStores;
    fn deref(&self) -> &TestStores {
        &self.0
    }
}

async fn env() -> Env {
    Env(TestStores::new().await)
}

fn push_settings(consumer: &str, batch_size: usize, claim_idle: Duration) -> PushSettings {
    PushSettings {
        consumer: consumer.into(),
        batch_size,
        claim_idle,
        ..SyncSettings::default().push
    }
}

fn pull_settings() -> PullSettings {
    PullSettings {
        page_size: 1000,
        overlap: Duration::from_secs(10),
        ..SyncSettings::default().pull
    }
}

impl Env {
    fn push(&self, consumer: &str, batch: usize, claim_idle: Duration) -> PushLoop {
        PushLoop::new(
            Arc::new(self.pg.clone()),
            Arc::new(self.hot.clone()),
            push_settings(consumer, batch, claim_idle),
        )
    }

    fn pull(&self) -> PullLoop {
        PullLoop::new(
            Arc::new(self.pg.clone()),
            Arc::new(self.hot.clone()),
            pull_settings(),
        )
    }

    /// Logs `n` steps through the real operation, spread over a few tasks.
    async fn log_steps(&self, n: usize) {
        let service = self.service();
        let actor = Actor::trusted(AgentId::parse("agent-1").unwrap());
        futures::stream::iter(0..n)
            .for_each_concurrent(16, |i| {
                let (service, actor) = (&service, &actor);
                async move {
                    service
                        .log_step(
                            actor,
                            mcp_api::requests::LogStepRequest {
                                task_id: format!("task-{}", i % 7),
                                step: json!({"n": i}),
                                agent_id: None,
                            },
                        )
                        .await
                        .unwrap();
                }
            })
            .await;
    }

    async fn xadd(&self, fields: &[(&str, &str)]) -> String {
        let mut c = self.redis.connection().await;
        c.xadd(self.hot.keys().outbox(), "*", fields).await.unwrap()
    }

    async fn scalar(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(self.pg.pool())
            .await
            .unwrap()
    }

    async fn exec(&self, sql: &str) {
        sqlx::query(sql).execute(self.pg.pool()).await.unwrap();
    }

    async fn cached_tasks(&self) -> usize {
        let mut c = self.redis.connection().await;
        let keys: Vec<String> = c
            .keys(format!("{}task:*", self.redis.prefix))
            .await
            .unwrap();
        keys.len()
    }

    async fn cached(&self, id: &str) -> bool {
        let mut c = self.redis.connection().await;
        c.exists(format!("{}task:{id}", self.redis.prefix))
            .await
            .unwrap()
    }

    async fn outbox_len(&self) -> u64 {
        let mut c = self.redis.connection().await;
        c.xlen(self.hot.keys().outbox()).await.unwrap()
    }
}

/// Steps the loop until a run reads nothing.
async fn drain(p: &mut PushLoop) -> usize {
    let mut total = 0;
    loop {
        let o = p.try_run_once().await.unwrap();
        if o.read == 0 {
            return total;
        }
        total += o.read;
    }
}

#[tokio::test]
async fn a_poison_entry_is_dead_lettered_and_its_batch_mates_commit() {
    let env = env().await;
    env.log_steps(10).await;
    // Not JSON at all: caught before the transaction.
    env.xadd(&[
        ("kind", "step"),
        ("task", "task-x"),
        ("sid", "1700000000000-0"),
        ("step", "{not json"),
    ])
    .await;
    // Valid JSON that Postgres refuses (jsonb has no \u0000): fails the batch transaction.
    env.xadd(&[
        ("kind", "step"),
        ("task", "task-x"),
        ("sid", "1700000000000-1"),
        ("step", r#"{"bad":"\u0000"}"#),
    ])
    .await;
    env.xadd(&[("kind", "mystery")]).await;
    env.log_steps(5).await;

    let mut push = env.push("c1", 100, Duration::from_secs(30));
    let o = push.try_run_once().await.unwrap();
    assert_eq!(o.read, 18);
    assert_eq!(o.persisted, 15);
    assert_eq!(o.dead, 3);
    assert_eq!(env.scalar("SELECT count(*) FROM step_logs").await, 15);
    let dead = env.pg.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 3);
    assert!(dead.iter().any(|d| d.error.contains("not JSON")));
    assert!(dead.iter().any(|d| d.kind.as_deref() == Some("mystery")));
    // Everything was acknowledged: nothing is read again.
    assert_eq!(env.outbox_len().await, 0);
    assert_eq!(push.try_run_once().await.unwrap().read, 0);
}

#[tokio::test]
async fn logged_steps_and_audit_records_reach_postgres_exactly_once() {
    let env = env().await;
    env.log_steps(50_000).await;
    env.xadd(&[(
        "kind",
        "audit",
    ), (
        "payload",
        r#"{"actor":"a1","action":"claim_file","task_id":"task-1","path":"src/a.py","fence":3,"at":"2026-11-24T10:00:00Z"}"#,
    )])
    .await;
    let mut push = env.push("c1", 500, Duration::from_secs(30));
    assert_eq!(drain(&mut push).await, 50_001);
    assert_eq!(env.scalar("SELECT count(*) FROM step_logs").await, 50_000);
    assert_eq!(
        env.scalar("SELECT count(DISTINCT (step->>'n')) FROM step_logs")
            .await,
        50_000
    );
    assert_eq!(
        env.scalar("SELECT count(*) FROM audit_log WHERE source_id IS NOT NULL AND fence = 3")
            .await,
        1
    );
    assert_eq!(env.outbox_len().await, 0);
}

#[tokio::test]
async fn two_push_loops_on_one_outbox_write_each_step_once() {
    let env = env().await;
    env.log_steps(5_000).await;
    // A zero claim time makes each loop steal the other's in-flight entries: the worst case
    // for duplicates, which the idempotent inserts must absorb.
    let mut a = env.push("a", 300, Duration::ZERO);
    let mut b = env.push("b", 300, Duration::ZERO);
    let (ra, rb) = tokio::join!(drain(&mut a), drain(&mut b));
    assert!(ra + rb >= 5_000);
    // Whatever one stopped early on is finished by the other.
    drain(&mut a).await;
    drain(&mut b).await;
    assert_eq!(env.scalar("SELECT count(*) FROM step_logs").await, 5_000);
    assert_eq!(
        env.scalar("SELECT count(DISTINCT (step->>'n')) FROM step_logs")
            .await,
        5_000
    );
    assert_eq!(env.outbox_len().await, 0);
}

#[tokio::test]
async fn a_crashed_consumers_pending_entries_are_claimed() {
    let env = env().await;
    env.log_steps(120).await;
    env.hot.outbox_create_group("mcp-sync").await.unwrap();
    // A consumer reads 100 entries and dies before committing.
    let taken = env
        .hot
        .outbox_read_new("mcp-sync", "crashed", 100)
        .await
        .unwrap();
    assert_eq!(taken.len(), 100);
    assert_eq!(env.hot.outbox_depth("mcp-sync").await.unwrap().pending, 100);
    // With a long idle time they are left alone...
    let mut patient = env.push("patient", 500, Duration::from_secs(3600));
    let o = patient.try_run_once().await.unwrap();
    assert_eq!((o.read, o.claimed), (20, 0));
    // ...past it, they are taken over and written.
    let mut other = env.push("other", 500, Duration::ZERO);
    let o = other.try_run_once().await.unwrap();
    assert_eq!((o.read, o.claimed), (100, 100));
    assert_eq!(env.scalar("SELECT count(*) FROM step_logs").await, 120);
    assert_eq!(o.depth.pending, 0);
    assert_eq!(o.depth.length, 0);
}

impl Env {
    /// The outbox group's consumers: (name, pending), by name.
    async fn consumers(&self) -> Vec<(String, usize)> {
        let mut c = self.redis.connection().await;
        let reply: redis::streams::StreamInfoConsumersReply = c
            .xinfo_consumers(self.hot.keys().outbox(), "mcp-sync")
            .await
            .unwrap();
        let mut v: Vec<(String, usize)> = reply
            .consumers
            .into_iter()
            .map(|c| (c.name, c.pending))
            .collect();
        v.sort();
        v
    }
}

/// Pushers that restarted (each process has its own consumer name) leave their consumers in
/// the group; the push loop removes those with nothing pending once they are idle past the
/// claim time, and never one with entries pending.
#[tokio::test]
async fn dead_consumers_are_removed_and_one_with_pending_entries_is_kept() {
    let env = env().await;
    let claim = Duration::from_millis(300);
    env.log_steps(30).await;
    // Three restarts: each incarnation ran and left its consumer behind.
    for life in ["gw-1", "gw-2", "gw-3"] {
        env.push(life, 500, Duration::from_secs(3600))
            .try_run_once()
            .await
            .unwrap();
    }
    // A pusher that died holding 10 entries.
    env.log_steps(10).await;
    let taken = env
        .hot
        .outbox_read_new("mcp-sync", "crashed", 100)
        .await
        .unwrap();
    assert_eq!(taken.len(), 10);
    tokio::time::sleep(claim * 2).await;
    // A live pusher that has just read an entry and committed it (nothing pending, idle
    // well under the claim time).
    env.log_steps(1).await;
    let read = env
        .hot
        .outbox_read_new("mcp-sync", "live", 100)
        .await
        .unwrap();
    assert_eq!(read.len(), 1);
    env.hot
        .outbox_ack("mcp-sync", &[read[0].id.clone()])
        .await
        .unwrap();
    let mut removed = env
        .hot
        .outbox_remove_dead_consumers("mcp-sync", "gw-4", claim)
        .await
        .unwrap();
    removed.sort();
    assert_eq!(removed, ["gw-1", "gw-2", "gw-3"]);
    assert_eq!(
        env.consumers().await,
        [("crashed".to_owned(), 10), ("live".to_owned(), 0)],
        "the consumer with pending entries and the live one are kept"
    );

    // Past the claim time again, the next pusher claims the dead one's entries, writes
    // them, and then removes it (nothing pending any more) and the now idle one.
    tokio::time::sleep(claim * 2).await;
    let mut next = env.push("gw-5", 500, claim);
    let o = next.try_run_once().await.unwrap();
    assert_eq!(o.claimed, 10);
    assert_eq!(o.consumers_removed, 2);
    assert_eq!(env.consumers().await, [("gw-5".to_owned(), 0)]);
    // 40 steps: 30 + 10 claimed from the dead one (the live one's was acknowledged unwritten).
    assert_eq!(env.scalar("SELECT count(*) FROM step_logs").await, 40);
    // Looked for at most once per claim time: at once again, nothing is examined.
    assert_eq!(next.try_run_once().await.unwrap().consumers_removed, 0);
}

/// As restarts do, through the loop alone: after the claim time, one iteration of the next
/// pusher leaves only itself in the group.
#[tokio::test]
async fn a_pusher_leaves_no_dead_consumer_of_earlier_restarts() {
    let env = env().await;
    let claim = Duration::from_millis(200);
    for life in 0..5 {
        env.log_steps(3).await;
        env.push(&format!("restart-{life}"), 500, Duration::from_secs(3600))
            .try_run_once()
            .await
            .unwrap();
    }
    assert_eq!(env.consumers().await.len(), 5);
    tokio::time::sleep(claim * 2).await;
    env.push("restart-5", 500, claim)
        .try_run_once()
        .await
        .unwrap();
    assert_eq!(env.consumers().await, [("restart-5".to_owned(), 0)]);
    assert_eq!(env.scalar("SELECT count(*) FROM step_logs").await, 15);
}

#[tokio::test]
async fn a_burst_of_ten_thousand_tasks_between_two_pulls_is_cached_in_full() {
    let env = env().await;
    env.exec("INSERT INTO tasks (id, title) VALUES ('before', 'x')")
        .await;
    let mut pull = env.pull();
    let o = pull.try_run_once().await.unwrap();
    assert!(o.warmed);
    assert_eq!(env.cached_tasks().await, 1);
    env.exec(
        "INSERT INTO tasks (id, title) SELECT 'burst-' || g, 'b' FROM generate_series(1, 10000) g",
    )
    .await;
    let o = pull.try_run_once().await.unwrap();
    assert!(!o.warmed);
    assert_eq!(o.changed, 10_000);
    assert_eq!(env.cached_tasks().await, 10_001);
    // Nothing changed since: the next pull publishes nothing.
    assert_eq!(pull.try_run_once().await.unwrap().changed, 0);
}

#[tokio::test]
async fn a_row_committed_late_with_an_older_updated_at_is_picked_up() {
    let env = env().await;
    let mut pull = env.pull();
    pull.try_run_once().await.unwrap();
    env.exec("INSERT INTO tasks (id, title) VALUES ('new', 'x')")
        .await;
    assert_eq!(pull.try_run_once().await.unwrap().changed, 1);
    // Committed after 'new' was read, stamped 3 s earlier (its transaction began then).
    env.exec(
        "INSERT INTO tasks (id, title, updated_at) VALUES ('late', 'x', now() - interval '3 s')",
    )
    .await;
    let o = pull.try_run_once().await.unwrap();
    assert_eq!(o.changed, 1);
    assert!(env.cached("late").await);
    let mut c = env.redis.connection().await;
    let events: u64 = c
        .xlen(format!("{0}events:{{{0}task:late}}", env.redis.prefix))
        .await
        .unwrap();
    assert_eq!(events, 1, "one task_updated event for the late row");
}

/// A transaction that changed a task before another one did, and commits after the pull
/// read the other's change, is still seen. The old feed re-read a fixed window of
/// `updated_at` behind its watermark; with the window at 0 the test shows what a commit
/// later than any window met, without waiting that long.
#[tokio::test]
async fn a_change_committed_after_a_newer_one_was_pulled_is_seen() {
    let env = env().await;
    env.exec("INSERT INTO tasks (id, title) VALUES ('a', 'x'), ('b', 'x')")
        .await;
    let mut pull = PullLoop::new(
        Arc::new(env.pg.clone()),
        Arc::new(env.hot.clone()),
        PullSettings {
            overlap: Duration::ZERO,
            ..pull_settings()
        },
    );
    assert!(pull.try_run_once().await.unwrap().warmed);
    // A changes 'a' and stays open.
    let mut a = env.pg.pool().begin().await.unwrap();
    sqlx::query("UPDATE tasks SET status = 'late', updated_at = now() WHERE id = 'a'")
        .execute(&mut *a)
        .await
        .unwrap();
    // B changes 'b' and commits; the pull sees it.
    env.exec("UPDATE tasks SET status = 'b-done', updated_at = clock_timestamp() WHERE id = 'b'")
        .await;
    pull.try_run_once().await.unwrap();
    let status = |id: &'static str| {
        let hot = env.hot.clone();
        async move {
            hot.task(&mcp_domain::TaskId::parse(id).unwrap())
                .await
                .unwrap()
                .unwrap()
                .status
        }
    };
    assert_eq!(status("b").await, "b-done");
    assert_eq!(status("a").await, "pending", "A has not committed yet");
    a.commit().await.unwrap();
    pull.try_run_once().await.unwrap();
    assert_eq!(
        status("a").await,
        "late",
        "A's late commit reached the cache"
    );
    // Exactly one event each for the two changes (plus none from the warm-up).
    let mut c = env.redis.connection().await;
    for id in ["a", "b"] {
        let events: u64 = c
            .xlen(format!("{0}events:{{{0}task:{id}}}", env.redis.prefix))
            .await
            .unwrap();
        assert_eq!(events, 1, "one task_updated event for {id}");
    }
}

#[tokio::test]
async fn a_deleted_task_leaves_the_cache() {
    let env = env().await;
    env.exec("INSERT INTO tasks (id, title) VALUES ('keep', 'x'), ('gone', 'x')")
        .await;
    let mut pull = env.pull();
    pull.try_run_once().await.unwrap();
    assert!(env.cached("gone").await);
    env.exec("DELETE FROM tasks WHERE id = 'gone'").await;
    let o = pull.try_run_once().await.unwrap();
    assert_eq!(o.deleted, 1);
    assert!(!env.cached("gone").await);
    assert!(env.cached("keep").await);
}

#[tokio::test]
async fn after_redis_loses_its_keys_a_pull_rebuilds_the_cache() {
    let env = env().await;
    env.exec("INSERT INTO tasks (id, title) SELECT 't' || g, 'x' FROM generate_series(1, 50) g")
        .await;
    let mut pull = env.pull();
    pull.try_run_once().await.unwrap();
    assert_eq!(env.cached_tasks().await, 50);
    // Only this test's keys.
    let mut c = env.redis.connection().await;
    let keys: Vec<String> = c.keys(format!("{}*", env.redis.prefix)).await.unwrap();
    let _: () = c.del(keys).await.unwrap();
    assert_eq!(env.cached_tasks().await, 0);
    let o = pull.try_run_once().await.unwrap();
    assert!(o.warmed);
    assert_eq!(env.cached_tasks().await, 50);
}

#[tokio::test]
async fn two_pull_loops_publish_each_change_once() {
    let env = env().await;
    let (mut a, mut b) = (env.pull(), env.pull());
    a.try_run_once().await.unwrap();
    b.try_run_once().await.unwrap();
    env.exec("INSERT INTO tasks (id, title) VALUES ('t1', 'x')")
        .await;
    assert_eq!(a.try_run_once().await.unwrap().changed, 1);
    assert_eq!(b.try_run_once().await.unwrap().changed, 0);
    // A row the gateway cached itself is recognised as unchanged too.
    env.exec("INSERT INTO tasks (id, title) VALUES ('t2', 'x')")
        .await;
    let row = env
        .pg
        .task(&mcp_domain::TaskId::parse("t2").unwrap())
        .await
        .unwrap()
        .unwrap();
    env.hot.cache_task(&row.state, row.seq, 60).await.unwrap();
    assert_eq!(a.try_run_once().await.unwrap().changed, 0);
    let mut c = env.redis.connection().await;
    let events: u64 = c
        .xlen(format!("{0}events:{{{0}task:t1}}", env.redis.prefix))
        .await
        .unwrap();
    assert_eq!(events, 1);
}

#[tokio::test]
async fn old_deletion_tombstones_are_pruned_and_recent_ones_kept() {
    let env = env().await;
    env.exec("INSERT INTO tasks (id, title) VALUES ('old', 'x'), ('new', 'x')")
        .await;
    env.exec("DELETE FROM tasks").await;
    // One tombstone older than a cache lifetime plus the overlap (1 h + 10 s here).
    env.exec(
        "UPDATE task_deletions SET deleted_at = clock_timestamp() - interval '2 hours'
         WHERE task_id = 'old'",
    )
    .await;
    env.pull().try_run_once().await.unwrap();
    let left: Vec<String> = sqlx::query_scalar("SELECT task_id FROM task_deletions")
        .fetch_all(env.pg.pool())
        .await
        .unwrap();
    assert_eq!(left, vec!["new".to_owned()]);
}

/// The loop runs with an interval far longer than the test may take, so only the
/// notification can make it pull the new row.
#[tokio::test]
async fn a_notified_change_is_pulled_without_waiting_for_the_interval() {
    let env = env().await;
    let settings = PullSettings {
        interval: Duration::from_secs(3600),
        ..pull_settings()
    };
    let pull = PullLoop::new(
        Arc::new(env.pg.clone()),
        Arc::new(env.hot.clone()),
        settings,
    );
    let cancel = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(pull.run(cancel.clone()));
    // The first pull warms the cache (and sets the warm marker); then the loop waits.
    let mut c = env.redis.connection().await;
    while !c
        .exists::<_, bool>(env.hot.keys().sync_warm())
        .await
        .unwrap()
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    env.exec("INSERT INTO tasks (id, title) VALUES ('notified', 'x')")
        .await;
    let waited = tokio::time::timeout(Duration::from_secs(60), async {
        while !env.cached("notified").await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    cancel.cancel();
    running.await.unwrap();
    assert!(
        waited.is_ok(),
        "the notification did not wake the pull loop"
    );
}
