//! What is specific to the in-process backend: its ids, its clocks, its sweeping, its
//! broadcast channel and its consumer groups. (The behaviour shared with Redis is checked by
//! the cross-backend suite.)

use super::state::{Now, SWEEP_EVERY, State};
use super::stream::next_id;
use super::*;
use crate::store::hot::{CacheFile, PendingWrite, Refill, ms_to_time};
use std::time::Instant;

fn task(s: &str) -> TaskId {
    TaskId::parse(s).unwrap()
}

fn path(s: &str) -> FilePath {
    FilePath::parse(s).unwrap()
}

fn ev<'a>(t: &'a TaskId, agent: &'a str, audit: Option<&str>) -> Emit<'a> {
    Emit {
        task: t,
        agent,
        envelope: format!(
            r#"{{"type":"file_written","taskId":"{t}","agentId":"{agent}","timestamp":"2024-01-01T00:00:00Z","data":{{}}}}"#
        ),
        audit: audit.map(str::to_owned),
        events_cap: 100,
    }
}

fn file(version: i64, ttl_secs: u64) -> CacheFile<'static> {
    CacheFile {
        version,
        deleted: false,
        content: "hello",
        sha256: "abc",
        size: 5,
        updated_by: "a1",
        updated_at: Utc::now(),
        ttl_secs,
    }
}

#[test]
fn new_needs_no_runtime_and_clones_share_state() {
    let a = MemoryStore::new();
    let b = a.clone();
    a.with(|s, now| s.set_sync_warm(now));
    assert!(b.with(|s, _| s.sync_is_warm()));
}

#[test]
fn next_id_is_xadd_star() {
    let last = StreamId { ms: 100, seq: 7 };
    assert_eq!(next_id(last, 101), Some(StreamId { ms: 101, seq: 0 }));
    // Same millisecond, and a clock that stepped back: the sequence moves on.
    assert_eq!(next_id(last, 100), Some(StreamId { ms: 100, seq: 8 }));
    assert_eq!(next_id(last, 5), Some(StreamId { ms: 100, seq: 8 }));
    let full = StreamId {
        ms: 100,
        seq: u64::MAX,
    };
    assert_eq!(next_id(full, 100), Some(StreamId { ms: 101, seq: 0 }));
    assert_eq!(next_id(stream::MAX_ID, 0), None);
}

#[test]
fn stream_ids_strictly_increase_within_one_millisecond() {
    let mut s = State::new(16);
    let t = task("t1");
    let now = Now::get();
    // The same instant for every call: one millisecond.
    let ids: Vec<StreamId> = (0..5)
        .map(|_| s.emit(&ev(&t, "a1", Some("{}")), &now).unwrap())
        .collect();
    assert_eq!(ids[0].ms, now.ms as u64);
    for w in ids.windows(2) {
        assert_eq!(
            w[1],
            StreamId {
                ms: w[0].ms,
                seq: w[0].seq + 1
            }
        );
    }
    // A clock that went back does not make ids go back.
    let earlier = Now {
        at: now.at,
        ms: now.ms - 10_000,
    };
    let back = s.emit(&ev(&t, "a1", None), &earlier).unwrap();
    assert!(back > ids[4]);
    // The step log numbers its own entries.
    let ids = s
        .log_step(&ev(&t, "a1", None), "}", "{}", 10, &now)
        .unwrap();
    assert_eq!(
        ids.step,
        StreamId {
            ms: now.ms as u64,
            seq: 0
        }
    );
    assert!(ids.event > back);
}

#[tokio::test]
async fn stream_ids_strictly_increase_through_the_store() {
    let store = MemoryStore::new();
    let t = task("t1");
    let mut last = StreamId::ZERO;
    for _ in 0..500 {
        let next = store.emit(&ev(&t, "a1", None)).await.unwrap();
        assert!(next > last, "{next} after {last}");
        last = next;
    }
    let tail = store.events_tail(&t).await.unwrap().unwrap();
    assert_eq!(tail, last);
}

#[test]
fn capped_streams_keep_their_newest_entries_and_exist_once_emptied() {
    let mut s = State::new(16);
    let t = task("t1");
    let now = Now::get();
    let mut ids = Vec::new();
    for _ in 0..5 {
        let mut e = ev(&t, "a1", None);
        e.events_cap = 3;
        ids.push(s.emit(&e, &now).unwrap());
    }
    let kept: Vec<StreamId> = s
        .events_after(&t, StreamId::ZERO, 10)
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(kept, ids[2..]);
    let u = task("t2");
    let mut e = ev(&u, "a1", None);
    e.events_cap = 0;
    s.emit(&e, &now).unwrap();
    assert_eq!(s.events_tail(&u), None);
}

/// `now` moved on by `ms` milliseconds (both clocks).
fn after_ms(now: &Now, ms: u64) -> Now {
    Now {
        at: now.at + Duration::from_millis(ms),
        ms: now.ms + ms as i64,
    }
}

#[test]
fn leases_live_for_their_ttl() {
    let mut s = State::new(16);
    let (t, p) = (task("t1"), path("a.txt"));
    let ttl = Duration::from_millis(60);
    let t0 = Now::get();
    let granted = s.claim(
        &Claim::new(&t, &LeasePath::file(&p), "a1", ttl).fenced(1, "tok"),
        &t0,
    );
    assert!(
        matches!(granted, ClaimOutcome::Granted(ref l) if l.expires_at == ms_to_time(t0.ms + 60))
    );
    let held = s.claim(
        &Claim::new(&t, &LeasePath::file(&p), "a2", ttl).fenced(2, "x"),
        &after_ms(&t0, 59),
    );
    assert!(matches!(held, ClaimOutcome::HeldByOther { ref owner, .. } if owner == "a1"));
    // Renewed at 40 ms: lives until 100.
    let Renewed {
        lease: renewed,
        length,
    } = s
        .renew(&t, &LeasePath::file(&p), "a1", None, &after_ms(&t0, 40))
        .unwrap();
    assert_eq!(
        (renewed.fence, renewed.token.as_str(), length),
        (1, "tok", ttl)
    );
    // Claimed again at 80 ms: re-entrant, same fence and token, lives until 140.
    let again = s.claim(
        &Claim::new(&t, &LeasePath::file(&p), "a1", ttl),
        &after_ms(&t0, 80),
    );
    assert!(matches!(again, ClaimOutcome::Reentrant(ref l) if l.fence == 1 && l.token == "tok"));
    let live = s
        .lease_for_write(&t, &p, "a1", &PendingWrite::new(60), &after_ms(&t0, 139))
        .unwrap();
    assert_eq!(
        (live.owner.as_str(), live.fence, live.expires_at),
        ("a1", 1, ms_to_time(t0.ms + 140))
    );
    assert_eq!(
        s.lease_for_write(&t, &p, "a1", &PendingWrite::new(60), &after_ms(&t0, 140)),
        None
    );
    let late = after_ms(&t0, 140);
    assert_eq!(
        s.renew(&t, &LeasePath::file(&p), "a1", Some(ttl), &late),
        Err(None)
    );
    assert_eq!(
        s.release(&t, &LeasePath::file(&p), "a1", true, &late),
        Err(None)
    );
    let again = s.claim(
        &Claim::new(&t, &LeasePath::file(&p), "a2", ttl).fenced(2, "x"),
        &late,
    );
    assert!(matches!(again, ClaimOutcome::Granted(ref l) if l.fence == 2));
    // A zero TTL grants a lease that is gone at once, as PEXPIRE 0 deletes the key.
    let q = path("b.txt");
    let zero = s.claim(
        &Claim::new(&t, &LeasePath::file(&q), "a1", Duration::ZERO).fenced(3, "z"),
        &late,
    );
    assert!(matches!(zero, ClaimOutcome::Granted(_)));
    assert_eq!(
        s.release(&t, &LeasePath::file(&q), "a1", false, &late),
        Err(None)
    );
}

#[tokio::test]
async fn leases_expire_on_the_clock() {
    let store = MemoryStore::new();
    let (t, p) = (task("t1"), path("a.txt"));
    let ttl = Duration::from_millis(50);
    let granted = store
        .claim(&Claim::new(&t, &LeasePath::file(&p), "a1", ttl).fenced(1, "tok"))
        .await
        .unwrap();
    assert!(matches!(granted, ClaimOutcome::Granted(_)));
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(
        store
            .renew(&t, &LeasePath::file(&p), "a1", Some(ttl), ttl)
            .await
            .unwrap(),
        Err(None)
    );
    assert!(
        store
            .lease_for_write(&t, &p, "a2", &PendingWrite::new(60))
            .await
            .unwrap()
            .is_none()
    );
    let again = store
        .claim(&Claim::new(&t, &LeasePath::file(&p), "a2", ttl).fenced(2, "x"))
        .await
        .unwrap();
    assert!(matches!(again, ClaimOutcome::Granted(ref l) if l.fence == 2));
}

#[test]
fn hot_copies_and_task_rows_expire() {
    let mut s = State::new(16);
    let (t, p) = (task("t1"), path("a.txt"));
    let now = Now::get();
    s.cache_file(&t, &p, &file(2, 5), &now);
    // Never backwards.
    s.cache_file(&t, &p, &file(1, 5), &now);
    assert_eq!(s.file(&t, &p, &now).hit().unwrap().version, 2);
    let row = TaskState {
        id: "t1".into(),
        title: "x".into(),
        description: None,
        status: "pending".into(),
        assigned_agent_id: None,
        complexity: None,
        created_at: Utc::now(),
        updated_at: Utc::now(),
    };
    s.cache_task(&row, 1, 5, &now).unwrap();
    assert!(s.task(&t, &now).is_some());
    assert!(s.cache_task(&row, 2, 0, &now).is_err());
    let later = Now {
        at: now.at + Duration::from_secs(5),
        ms: now.ms + 5000,
    };
    assert!(s.file(&t, &p, &later).hit().is_none());
    assert!(s.task(&t, &later).is_none());
    // An expired copy is no newer than anything: an older version may fill the cache again.
    s.cache_file(&t, &p, &file(1, 5), &later);
    assert_eq!(s.file(&t, &p, &later).hit().unwrap().version, 1);
}

#[tokio::test]
async fn rate_windows_expire() {
    let store = MemoryStore::new();
    let long = Duration::from_secs(60);
    let first = |resets_in| RateWindow {
        count: 1,
        resets_in,
    };
    assert_eq!(store.rate_hit("a1", long).await.unwrap(), first(long));
    let second = store.rate_hit("a1", long).await.unwrap();
    assert_eq!(second.count, 2);
    assert!(second.resets_in <= long);
    assert_eq!(store.rate_hit("a2", long).await.unwrap().count, 1);
    let short = Duration::from_millis(50);
    assert_eq!(store.rate_hit("a3", short).await.unwrap(), first(short));
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(store.rate_hit("a3", short).await.unwrap(), first(short));
    // A zero window lasts a millisecond.
    assert_eq!(
        store.rate_hit("a4", Duration::ZERO).await.unwrap(),
        first(Duration::from_millis(1))
    );
}

#[tokio::test]
async fn mcp_entries_expire_in_whole_seconds() {
    let store = MemoryStore::new();
    let t = task("t1");
    // As in Redis, a TTL under a second lasts a second.
    let ttl = Duration::from_millis(50);
    store.save_session("s1", &unbound("{}"), ttl).await.unwrap();
    store
        .subscribe("s1", SubScope::Task(&t), "k", "u", ttl)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(
        store.load_session("s1", ttl).await.unwrap(),
        Some(unbound("{}"))
    );
    assert_eq!(
        store.subscribers(SubScope::Task(&t)).await.unwrap().len(),
        1
    );
    let later = Now {
        at: Instant::now() + Duration::from_secs(2),
        ms: 0,
    };
    store.with(|s, _| {
        assert_eq!(s.load_session("s1", ttl, &later), None);
        assert!(s.subscribers(SubScope::Task(&t), &later).is_empty());
    });
}

#[test]
fn sweeping_removes_expired_entries() {
    let mut s = State::new(16);
    let (t, p) = (task("t1"), path("a.txt"));
    let now = Now::get();
    s.claim(
        &Claim::new(&t, &LeasePath::file(&p), "a1", Duration::from_millis(50)).fenced(1, "x"),
        &now,
    );
    s.cache_file(&t, &p, &file(1, 1), &now);
    s.cache_task(
        &TaskState {
            id: "t1".into(),
            title: "x".into(),
            description: None,
            status: "pending".into(),
            assigned_agent_id: None,
            complexity: None,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        },
        1,
        1,
        &now,
    )
    .unwrap();
    s.rate_hit("a1", Duration::from_millis(50), &now);
    s.save_session("s1", "{}", Duration::from_secs(1), &now);
    s.subscribe(
        "s1",
        SubScope::Task(&t),
        "k",
        "u",
        Duration::from_secs(1),
        &now,
    );
    // The long-lived one stays.
    s.rate_hit("a2", Duration::from_secs(60), &now);
    assert_eq!(s.expiring_entries(), 8);
    assert_eq!(s.sweep(now.at + Duration::from_millis(500)), 2);
    assert_eq!(s.sweep(now.at + Duration::from_secs(2)), 5);
    assert_eq!(s.expiring_entries(), 1);
}

#[test]
fn calls_sweep_at_most_once_a_second() {
    let store = MemoryStore::new();
    let (t, p) = (task("t1"), path("a.txt"));
    store.with(|s, now| {
        s.claim(
            &Claim::new(&t, &LeasePath::file(&p), "a1", Duration::from_millis(50)).fenced(1, "x"),
            now,
        );
        s.rate_hit("a1", Duration::from_millis(50), now);
        s.rate_hit("a2", Duration::from_secs(60), now);
    });
    std::thread::sleep(Duration::from_millis(80));
    // The last sweep was under a second ago: the expired entries nobody read are still held.
    store.with(|s, _| assert_eq!(s.expiring_entries(), 3));
    // Once a sweep is due, whatever call comes next drops them.
    store.with(|s, _| s.set_last_sweep(Instant::now().checked_sub(SWEEP_EVERY)));
    store.with(|s, _| assert_eq!(s.expiring_entries(), 1));
}

#[tokio::test]
async fn subscribers_get_each_event_with_its_id() {
    let store = MemoryStore::new();
    let mut sub = store.subscribe_updates().await.unwrap();
    let t = task("t1");
    let e = ev(&t, "a1", None);
    let eid = store.emit(&e).await.unwrap();
    let got = sub.next().await.unwrap();
    assert_eq!(got.task, t);
    assert_eq!(got.id, Some(eid));
    let mut expected: Event = serde_json::from_str(&e.envelope).unwrap();
    expected.id = Some(eid.to_string());
    assert_eq!(got.event, expected);
    assert!(sub.pinger().ping().await.is_ok());
}

#[tokio::test]
async fn a_lagging_subscriber_loses_its_subscription() {
    let store = MemoryStore::with_updates_capacity(2);
    let mut slow = store.subscribe_updates().await.unwrap();
    let t = task("t1");
    for _ in 0..5 {
        store.emit(&ev(&t, "a1", None)).await.unwrap();
    }
    assert!(slow.next().await.is_none());
    // Lost for good: it does not resume after the gap.
    store.emit(&ev(&t, "a1", None)).await.unwrap();
    assert!(slow.next().await.is_none());
    // A new subscription works.
    let mut fresh = store.subscribe_updates().await.unwrap();
    let eid = store.emit(&ev(&t, "a1", None)).await.unwrap();
    assert_eq!(fresh.next().await.unwrap().id, Some(eid));
}

#[tokio::test]
async fn a_dropped_store_ends_subscriptions_and_pings() {
    let store = MemoryStore::new();
    let mut sub = store.subscribe_updates().await.unwrap();
    let mut pinger = sub.pinger();
    drop(store);
    assert!(sub.next().await.is_none());
    assert!(pinger.ping().await.is_err());
}

#[tokio::test]
async fn log_step_writes_log_and_event_and_has_no_outbox() {
    let store = MemoryStore::new();
    let t = task("t1");
    let mut e = ev(&t, "a1", None);
    e.envelope = r#"{"type":"step_logged","data":{"id":""#.into();
    let StepIds {
        step: sid,
        event: eid,
    } = store
        .log_step(&e, r#""}}"#, r#"{"n":1}"#, 10)
        .await
        .unwrap();
    let sid2 = store
        .log_step(&e, r#""}}"#, r#"{"n":2}"#, 10)
        .await
        .unwrap()
        .step;
    // No outbox: the operations write the step to the durable store themselves.
    assert!(store.outbox().is_none());
    let events = store.events_after(&t, StreamId::ZERO, 10).await.unwrap();
    assert_eq!(
        events[0],
        StoredEvent {
            id: eid,
            envelope: format!(r#"{{"type":"step_logged","data":{{"id":"{sid}"}}}}"#)
        }
    );
    // Newest first, strictly before.
    let steps = store.steps_before(&t, None, 10).await.unwrap();
    assert_eq!(steps[0].id, sid2);
    assert_eq!(steps[1].id, sid);
    let older = store.steps_before(&t, Some(sid2), 10).await.unwrap();
    assert_eq!(
        older,
        vec![StoredStep {
            id: sid,
            json: r#"{"n":1}"#.to_owned()
        }]
    );
    assert!(store.steps_before(&t, None, 0).await.unwrap().is_empty());
    // As XREVRANGE: nothing precedes 0-0.
    assert!(
        store
            .steps_before(&t, Some(StreamId::ZERO), 10)
            .await
            .is_err()
    );
    assert!(store.events_after(&t, stream::MAX_ID, 10).await.is_err());
}

#[tokio::test]
async fn refresh_tasks_moves_the_cache_forward_only() {
    let store = MemoryStore::new();
    let t = task("t1");
    let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
    let row = |updated: &str| TaskState {
        id: "t1".into(),
        title: "x".into(),
        description: None,
        status: "pending".into(),
        assigned_agent_id: None,
        complexity: None,
        created_at: at("2024-01-01T00:00:00Z"),
        updated_at: at(updated),
    };
    // `b` is the newer change (higher number) though its clock says it is older.
    let (a, b) = (row("2024-01-01T00:00:02Z"), row("2024-01-01T00:00:01.5Z"));
    fn refresh(r: &TaskState, seq: i64, env: bool) -> TaskRefresh<'_> {
        TaskRefresh {
            id: TaskId::parse(&r.id).unwrap(),
            task: r,
            seq,
            envelope: env.then(|| r#"{"type":"task_updated"}"#.to_owned()),
        }
    }
    let got = store
        .refresh_tasks(
            &[refresh(&a, 1, true), refresh(&a, 1, true)],
            "sync",
            60,
            10,
        )
        .await
        .unwrap();
    assert_eq!(got, vec![Refreshed::Changed, Refreshed::Unchanged]);
    assert_eq!(
        store
            .events_after(&t, StreamId::ZERO, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    let got = store
        .refresh_tasks(
            &[refresh(&b, 2, false), refresh(&a, 1, true)],
            "sync",
            60,
            10,
        )
        .await
        .unwrap();
    assert_eq!(got, vec![Refreshed::Changed, Refreshed::Older]);
    assert_eq!(
        store.task(&t).await.unwrap().unwrap().updated_at,
        b.updated_at
    );
    assert_eq!(
        store
            .events_after(&t, StreamId::ZERO, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    let presence = store
        .presence(&AgentId::parse("sync").unwrap())
        .await
        .unwrap();
    assert!(presence.last_seen.is_some());
    assert_eq!(presence.task.as_deref(), Some("t1"));
}

#[tokio::test]
async fn dropping_a_session_removes_its_subscriptions() {
    let store = MemoryStore::new();
    let t = task("t1");
    let a = AgentId::parse("a1").unwrap();
    let ttl = Duration::from_secs(60);
    store.save_session("s1", &unbound("{}"), ttl).await.unwrap();
    store
        .subscribe("s1", SubScope::Task(&t), "k1", "u1", ttl)
        .await
        .unwrap();
    store
        .subscribe("s1", SubScope::Agent(&a), "k2", "u2", ttl)
        .await
        .unwrap();
    store
        .subscribe("s2", SubScope::Task(&t), "k1", "u1", ttl)
        .await
        .unwrap();
    assert_eq!(
        store.subscribers(SubScope::Task(&t)).await.unwrap().len(),
        2
    );
    store.drop_session("s1").await.unwrap();
    assert_eq!(
        store.subscribers(SubScope::Task(&t)).await.unwrap(),
        vec![Subscriber {
            session: "s2".into(),
            key: "k1".into(),
            uri: "u1".into()
        }]
    );
    assert!(
        store
            .subscribers(SubScope::Agent(&a))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.load_session("s1", ttl).await.unwrap(), None);
    store
        .unsubscribe("s2", SubScope::Task(&t), "k1", "u1")
        .await
        .unwrap();
    assert!(
        store
            .subscribers(SubScope::Task(&t))
            .await
            .unwrap()
            .is_empty()
    );
    store.with(|s, _| assert_eq!(s.expiring_entries(), 0));
}

#[tokio::test]
async fn events_since_reads_from_a_millisecond_with_ids() {
    let store = MemoryStore::new();
    let t = task("t1");
    let first = store.emit(&ev(&t, "a1", None)).await.unwrap();
    let second = store.emit(&ev(&t, "a1", None)).await.unwrap();
    let all = store.events_since(&t, 0, 10).await.unwrap();
    assert_eq!(
        all.iter()
            .map(|e| e.id.clone().unwrap())
            .collect::<Vec<_>>(),
        vec![first.to_string(), second.to_string()]
    );
    let from = second.ms as i64;
    let tail = store.events_since(&t, from, 10).await.unwrap();
    assert_eq!(tail.last().unwrap().id, Some(second.to_string()));
    assert!(
        store
            .events_since(&t, from + 1, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.events_since(&t, 0, 1).await.unwrap().len(), 1);
}

#[tokio::test]
async fn memory_usage_grows_with_what_is_held() {
    let store = MemoryStore::new();
    let before = store.memory_usage().await.unwrap().used;
    let t = task("t1");
    store
        .cache_file(
            &t,
            &path("big.txt"),
            &CacheFile {
                content: &"x".repeat(10_000),
                ..file(1, 60)
            },
            &Refill { era: String::new() },
        )
        .await
        .unwrap();
    let after = store.memory_usage().await.unwrap();
    assert!(after.used >= before + 10_000);
    if std::path::Path::new("/proc/meminfo").exists() {
        assert!(after.limit > 0);
    }
    assert_eq!(store.backend(), "in-process");
    assert!(!store.shared());
    assert_eq!(store.maxmemory_policy().await.unwrap(), None);
}

/// A session record without an owner (authentication off).
fn unbound(state: &str) -> crate::store::hot::McpSession {
    crate::store::hot::McpSession {
        owner: None,
        state: state.into(),
    }
}
