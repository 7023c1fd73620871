//! The hot store's contract (`store/hot.rs`), on every hot backend.

use crate::fixtures::{HotFixture, hot};
use chrono::{Duration as TimeDelta, Utc};
use mcp_api::responses::TaskState;
use mcp_api::{Event, EventType, StreamId};
use mcp_domain::events::envelope;
use mcp_domain::store::Hot;
use mcp_domain::store::hot::{
    AgentSeen, CacheFile, Claim, ClaimOutcome, Emit, HotRead, Interest, Lease, LeasePage,
    McpSession, NewFence, PendingWrite, Presence, QueuePlace, RateWindow, Refill, Refreshed,
    Released, Renewed, StepIds, SubScope, TaskRefresh, Waiter,
};
use mcp_domain::{AgentId, FilePath, LeasePath, TaskId};
use serde_json::{Value, json};
use std::time::Duration;

crate::per_backend!(hot; [redis, redis_cluster, memory];
    hot_copies_never_move_backwards,
    writers_drop_the_hot_copy_unless_another_holds_the_lease,
    a_refill_never_hides_a_write_in_flight,
    leases_are_reentrant_exclusive_and_expire,
    an_unidentified_claim_never_reenters,
    a_tasks_live_leases_are_listed,
    waiters_are_granted_in_arrival_order,
    a_waiter_that_stops_checking_in_drops_out,
    a_grant_whose_waiter_left_is_released,
    directory_leases_conflict_above_and_beneath,
    events_are_appended_published_and_replayed,
    a_subscription_reads_only_the_events_wanted,
    steps_page_newest_first_and_reach_the_outbox,
    streams_keep_at_least_their_cap,
    presence_and_collaboration,
    rate_windows_count_and_reset,
    task_rows_refresh_in_order,
    one_refresh_applies_a_tasks_rows_in_order,
    outbox_group_delivers_once_and_hands_over,
    mcp_sessions_and_subscriptions,
);

fn task(id: &str) -> TaskId {
    TaskId::parse(id).unwrap()
}

fn path(p: &str) -> FilePath {
    FilePath::parse(p).unwrap()
}

fn cached(version: i64, content: &str) -> CacheFile<'_> {
    CacheFile {
        version,
        deleted: false,
        content,
        sha256: "sha",
        size: content.len() as i64,
        updated_by: "a1",
        updated_at: Utc::now(),
        ttl_secs: 60,
    }
}

fn emit<'a>(t: &'a TaskId, agent: &'a str, data: Value) -> Emit<'a> {
    Emit {
        task: t,
        agent,
        envelope: envelope(EventType::FileWritten, t, agent, data),
        audit: None,
        events_cap: 1000,
    }
}

async fn hot_copies_never_move_backwards(f: &HotFixture) {
    let s = &f.store;
    let (t, p) = (task("t"), path("a"));
    let r = missed(s, &t, &p).await;
    s.cache_file(&t, &p, &cached(2, "two"), &r).await.unwrap();
    s.cache_file(&t, &p, &cached(1, "one"), &r).await.unwrap();
    let f2 = s.file(&t, &p).await.unwrap().hit().unwrap();
    assert_eq!(
        (f2.version, f2.content.as_str(), f2.deleted),
        (2, "two", false)
    );
    assert_eq!((f2.sha256.as_str(), f2.size), ("sha", 3));
    let id = s
        .file_changed(
            &p,
            &cached(3, "three"),
            &PendingWrite::new(60),
            &emit(&t, "a1", json!({"v": 3})),
        )
        .await
        .unwrap();
    assert!(id > StreamId::ZERO, "{id}");
    assert_eq!(
        s.file(&t, &p).await.unwrap().hit().unwrap().content,
        "three"
    );
    // A late refresh after a newer commit: the event still goes out, the copy stays.
    s.file_changed(
        &p,
        &cached(2, "stale"),
        &PendingWrite::new(60),
        &emit(&t, "a1", json!({"v": 2})),
    )
    .await
    .unwrap();
    assert_eq!(s.file(&t, &p).await.unwrap().hit().unwrap().version, 3);
    assert_eq!(
        s.events_after(&t, StreamId::ZERO, 10).await.unwrap().len(),
        2
    );
    let tomb = CacheFile {
        deleted: true,
        ..cached(4, "")
    };
    s.cache_file(&t, &p, &tomb, &r).await.unwrap();
    let gone = s.file(&t, &p).await.unwrap().hit().unwrap();
    assert!(gone.deleted);
    assert_eq!(gone.version, 4);
    // Expiry.
    let short = CacheFile {
        ttl_secs: 1,
        ..cached(1, "x")
    };
    let rb = missed(s, &t, &path("b")).await;
    s.cache_file(&t, &path("b"), &short, &rb).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert!(
        s.file(&t, &path("b")).await.unwrap().hit().is_none(),
        "expired"
    );
}

async fn writers_drop_the_hot_copy_unless_another_holds_the_lease(f: &HotFixture) {
    let s = &f.store;
    let (t, p) = (task("t"), path("a"));
    let r = missed(s, &t, &p).await;
    s.cache_file(&t, &p, &cached(1, "x"), &r).await.unwrap();
    let w = PendingWrite::new(60);
    assert!(s.lease_for_write(&t, &p, "a1", &w).await.unwrap().is_none());
    assert!(
        s.file(&t, &p).await.unwrap().hit().is_none(),
        "free: copy dropped"
    );
    let ttl = Duration::from_secs(30);
    granted(claim(s, &t, &LeasePath::file(&p), "a1", ttl, Some((7, "tok"))).await);
    s.write_abandoned(&t, &p, &w).await.unwrap();
    let r = missed(s, &t, &p).await;
    s.cache_file(&t, &p, &cached(1, "x"), &r).await.unwrap();
    let other = s
        .lease_for_write(&t, &p, "a2", &PendingWrite::new(60))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((other.owner.as_str(), other.fence), ("a1", 7));
    assert!(other.expires_at > Utc::now());
    assert!(
        s.file(&t, &p).await.unwrap().hit().is_some(),
        "refused writer keeps the copy"
    );
    let own = s
        .lease_for_write(&t, &p, "a1", &PendingWrite::new(60))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(own.fence, 7);
    assert!(
        s.file(&t, &p).await.unwrap().hit().is_none(),
        "holder: copy dropped"
    );
}

/// A reader misses and reads the durable store (v1) just before a writer commits v2; the
/// writer's refresh after its commit is lost (a Redis failover, a timeout, a cancelled
/// request). The reader's refill of v1, landing after the writer began, must not be served:
/// v2 was acknowledged.
async fn a_refill_never_hides_a_write_in_flight(f: &HotFixture) {
    let s = &f.store;
    let (t, p) = (task("t"), path("a"));
    let r = missed(s, &t, &p).await;
    let w = PendingWrite::new(60);
    assert!(s.lease_for_write(&t, &p, "a1", &w).await.unwrap().is_none());
    s.cache_file(&t, &p, &cached(1, "one"), &r).await.unwrap();
    let served = s.file(&t, &p).await.unwrap().hit();
    assert!(
        served.is_none(),
        "a refill from before the write is served: v{:?}",
        served.map(|f| f.version)
    );
    // Nor is a refill after a miss while the change is under way.
    let r = missed(s, &t, &p).await;
    s.cache_file(&t, &p, &cached(1, "one"), &r).await.unwrap();
    assert!(s.file(&t, &p).await.unwrap().hit().is_none());
    // A second change settles while the first is still under way: no copy yet.
    let w2 = PendingWrite::new(60);
    assert!(
        s.lease_for_write(&t, &p, "a2", &w2)
            .await
            .unwrap()
            .is_none()
    );
    s.file_changed(&p, &cached(2, "two"), &w2, &emit(&t, "a2", json!({})))
        .await
        .unwrap();
    assert!(s.file(&t, &p).await.unwrap().hit().is_none());
    // The first is refused and settles: refills are taken again.
    s.write_abandoned(&t, &p, &w).await.unwrap();
    let r = missed(s, &t, &p).await;
    s.cache_file(&t, &p, &cached(2, "two"), &r).await.unwrap();
    assert_eq!(s.file(&t, &p).await.unwrap().hit().unwrap().version, 2);
    // A change that never settles (its refresh lost) stops counting when its mark lapses.
    let lost = PendingWrite::new(1);
    assert!(
        s.lease_for_write(&t, &p, "a1", &lost)
            .await
            .unwrap()
            .is_none()
    );
    let r = missed(s, &t, &p).await;
    s.cache_file(&t, &p, &cached(3, "three"), &r).await.unwrap();
    assert!(s.file(&t, &p).await.unwrap().hit().is_none());
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = missed(s, &t, &p).await;
    s.cache_file(&t, &p, &cached(3, "three"), &r).await.unwrap();
    assert_eq!(s.file(&t, &p).await.unwrap().hit().unwrap().version, 3);
}

/// The ticket a reader that missed holds.
async fn missed(s: &Hot, t: &TaskId, p: &FilePath) -> Refill {
    match s.file(t, p).await.unwrap() {
        HotRead::Miss(r) => r,
        HotRead::Hit(f) => panic!("a hot copy of v{}", f.version),
    }
}

async fn leases_are_reentrant_exclusive_and_expire(f: &HotFixture) {
    let s = &f.store;
    let (t, p) = (task("t"), path("a"));
    let ttl = Duration::from_secs(30);
    assert!(matches!(
        claim(s, &t, &LeasePath::file(&p), "a1", ttl, None).await,
        ClaimOutcome::NeedFence
    ));
    let lease = granted(claim(s, &t, &LeasePath::file(&p), "a1", ttl, Some((5, "tok5"))).await);
    assert_eq!(
        (lease.owner.as_str(), lease.fence, lease.token.as_str()),
        ("a1", 5, "tok5")
    );
    let expected = Utc::now() + TimeDelta::seconds(30);
    assert!((lease.expires_at - expected).num_seconds().abs() <= 2);
    match claim(s, &t, &LeasePath::file(&p), "a1", ttl * 2, None).await {
        ClaimOutcome::Reentrant(l) => {
            assert_eq!((l.fence, l.token.as_str()), (5, "tok5"));
            assert!(l.expires_at > lease.expires_at);
        }
        other => panic!("{other:?}"),
    }
    match claim(s, &t, &LeasePath::file(&p), "a2", ttl, Some((6, "tok6"))).await {
        ClaimOutcome::HeldByOther {
            owner, expires_at, ..
        } => {
            assert_eq!(owner, "a1");
            assert!(expires_at > Utc::now());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        s.renew(&t, &LeasePath::file(&p), "a2", Some(ttl), ttl)
            .await
            .unwrap(),
        Err(Some("a1".to_owned()))
    );
    let Renewed {
        lease: renewed,
        length,
    } = s
        .renew(&t, &LeasePath::file(&p), "a1", Some(ttl), ttl)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((renewed.fence, length), (5, ttl));
    // Issue #21 item 4: without a length, a renewal keeps the lease's own (here that of the
    // last renewal, 90 s), never the fallback.
    s.renew(&t, &LeasePath::file(&p), "a1", Some(ttl * 3), ttl)
        .await
        .unwrap()
        .unwrap();
    let Renewed {
        lease: kept,
        length,
    } = s
        .renew(&t, &LeasePath::file(&p), "a1", None, ttl)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(length, ttl * 3, "the lease's own length");
    let left = (kept.expires_at - Utc::now()).num_seconds();
    assert!((85..=90).contains(&left), "{left}");
    // ... and a re-entrant claim sets the length the next renewal keeps.
    claim(s, &t, &LeasePath::file(&p), "a1", ttl * 2, None).await;
    let Renewed { length, .. } = s
        .renew(&t, &LeasePath::file(&p), "a1", None, ttl)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(length, ttl * 2);
    assert_eq!(
        s.release(&t, &LeasePath::file(&p), "a2", false)
            .await
            .unwrap(),
        Err(Some("a1".to_owned()))
    );
    assert_eq!(
        s.release(&t, &LeasePath::file(&p), "a1", false)
            .await
            .unwrap(),
        Ok(Released {
            owner: "a1".to_owned(),
            fence: 5
        })
    );
    assert_eq!(
        s.release(&t, &LeasePath::file(&p), "a1", false)
            .await
            .unwrap(),
        Err(None)
    );
    assert_eq!(
        s.renew(&t, &LeasePath::file(&p), "a1", None, ttl)
            .await
            .unwrap(),
        Err(None)
    );
    // Force release by anyone.
    claim(s, &t, &LeasePath::file(&p), "a1", ttl, Some((8, "t8"))).await;
    assert_eq!(
        s.release(&t, &LeasePath::file(&p), "admin", true)
            .await
            .unwrap(),
        Ok(Released {
            owner: "a1".to_owned(),
            fence: 8
        })
    );
    // Expiry frees the path.
    claim(
        s,
        &t,
        &LeasePath::file(&p),
        "a1",
        Duration::from_millis(200),
        Some((9, "t9")),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        s.lease_for_write(&t, &p, "a2", &PendingWrite::new(60))
            .await
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        claim(s, &t, &LeasePath::file(&p), "a2", ttl, None).await,
        ClaimOutcome::NeedFence
    ));
    // Paths and tasks are independent leases.
    granted(
        claim(
            s,
            &t,
            &LeasePath::file(&path("b")),
            "a3",
            ttl,
            Some((10, "t10")),
        )
        .await,
    );
    granted(
        claim(
            s,
            &task("u"),
            &LeasePath::file(&path("b")),
            "a4",
            ttl,
            Some((11, "t11")),
        )
        .await,
    );
}

async fn a_tasks_live_leases_are_listed(f: &HotFixture) {
    let s = &f.store;
    let t = task("t");
    let secs = Duration::from_secs;
    assert_eq!(s.leases(&t, 10).await.unwrap(), LeasePage::default());
    let before = Utc::now() - TimeDelta::seconds(2);
    for (p, owner, fence, ttl) in [("a", "a1", 5, 30), ("b", "a2", 6, 10), ("d/e", "a1", 7, 20)] {
        granted(
            claim(
                s,
                &t,
                &LeasePath::file(&path(p)),
                owner,
                secs(ttl),
                Some((fence, "tok")),
            )
            .await,
        );
    }
    // Another task's lease of the same path is not this task's.
    claim(
        s,
        &task("t2"),
        &LeasePath::file(&path("a")),
        "a9",
        secs(30),
        Some((8, "x")),
    )
    .await;
    let LeasePage { leases, more } = s.leases(&t, 10).await.unwrap();
    assert!(!more);
    let listed: Vec<(&str, &str, i64)> = leases
        .iter()
        .map(|l| (l.path.as_str(), l.owner.as_str(), l.fence))
        .collect();
    // Soonest expiry first.
    assert_eq!(listed, [("b", "a2", 6), ("d/e", "a1", 7), ("a", "a1", 5)]);
    let a = &leases[2];
    assert!(a.acquired_at >= before && a.acquired_at <= Utc::now());
    let length = (a.expires_at - a.acquired_at).num_milliseconds();
    assert!((29_000..=31_000).contains(&length), "{length}");
    assert!(a.ttl_ms > 25_000 && a.ttl_ms <= 30_000, "{}", a.ttl_ms);
    // A re-entrant claim and a renewal move the expiry and keep the grant time.
    let granted_b = leases[0].acquired_at;
    tokio::time::sleep(Duration::from_millis(20)).await;
    claim(s, &t, &LeasePath::file(&path("b")), "a2", secs(60), None).await;
    let LeasePage { leases, .. } = s.leases(&t, 10).await.unwrap();
    let b = leases.last().unwrap();
    assert_eq!((b.path.as_str(), b.acquired_at), ("b", granted_b));
    assert!(b.ttl_ms > 50_000, "{}", b.ttl_ms);
    s.renew(
        &t,
        &LeasePath::file(&path("b")),
        "a2",
        Some(secs(5)),
        secs(5),
    )
    .await
    .unwrap()
    .unwrap();
    let LeasePage { leases, .. } = s.leases(&t, 10).await.unwrap();
    assert_eq!(
        (leases[0].path.as_str(), leases[0].acquired_at),
        ("b", granted_b)
    );
    assert!(leases[0].ttl_ms <= 5_000);
    // A limit lists the soonest and says there are more.
    let LeasePage { leases: two, more } = s.leases(&t, 2).await.unwrap();
    assert_eq!((two.len(), more), (2, true));
    // Released (by the holder or by force) and expired leases are gone.
    s.release(&t, &LeasePath::file(&path("b")), "a2", false)
        .await
        .unwrap()
        .unwrap();
    s.release(&t, &LeasePath::file(&path("d/e")), "admin", true)
        .await
        .unwrap()
        .unwrap();
    claim(
        s,
        &t,
        &LeasePath::file(&path("c")),
        "a3",
        Duration::from_millis(200),
        Some((9, "t9")),
    )
    .await;
    assert_eq!(s.leases(&t, 10).await.unwrap().leases.len(), 2);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let LeasePage { leases, more } = s.leases(&t, 10).await.unwrap();
    let paths: Vec<&str> = leases.iter().map(|l| l.path.as_str()).collect();
    assert_eq!((paths, more), (vec!["a"], false));
    assert_eq!(
        s.leases(&task("t2"), 10).await.unwrap().leases[0].owner,
        "a9"
    );
}

/// Issue #14 item 16: a claim that says it may not re-enter (a caller without an identity)
/// is refused while the same owner name holds the lease; renew and release stay possible, and
/// a re-entrant claim of the same owner still re-enters.
async fn an_unidentified_claim_never_reenters(f: &HotFixture) {
    let s = &f.store;
    let (t, p) = (task("t"), path("a"));
    let ttl = Duration::from_secs(30);
    let granted = match s
        .claim(
            &Claim::new(&t, &LeasePath::file(&p), "t", ttl)
                .fenced(3, "tok3")
                .not_reentrant(),
        )
        .await
        .unwrap()
    {
        ClaimOutcome::Granted(l) => l,
        other => panic!("{other:?}"),
    };
    match s
        .claim(&Claim::new(&t, &LeasePath::file(&p), "t", ttl).not_reentrant())
        .await
        .unwrap()
    {
        ClaimOutcome::HeldByOther {
            owner, expires_at, ..
        } => {
            assert_eq!((owner.as_str(), expires_at), ("t", granted.expires_at));
        }
        other => panic!("{other:?}"),
    }
    let Renewed { lease: renewed, .. } = s
        .renew(&t, &LeasePath::file(&p), "t", Some(ttl), ttl)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(renewed.fence, 3);
    assert!(matches!(
        claim(s, &t, &LeasePath::file(&p), "t", ttl, None).await,
        ClaimOutcome::Reentrant(_)
    ));
    assert_eq!(
        s.release(&t, &LeasePath::file(&p), "t", false)
            .await
            .unwrap(),
        Ok(Released {
            owner: "t".to_owned(),
            fence: 3
        })
    );
    assert!(matches!(
        s.claim(&Claim::new(&t, &LeasePath::file(&p), "t", ttl).not_reentrant())
            .await
            .unwrap(),
        ClaimOutcome::NeedFence
    ));
}

async fn events_are_appended_published_and_replayed(f: &HotFixture) {
    let s = &f.store;
    let (t, u) = (task("t"), task("u"));
    let mut sub = s.subscribe_updates().await.unwrap();
    sub.pinger().ping().await.unwrap();
    assert_eq!(s.events_tail(&t).await.unwrap(), None);
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(s.emit(&emit(&t, "a1", json!({"i": i}))).await.unwrap());
    }
    s.emit(&emit(&u, "a1", json!({"i": 99}))).await.unwrap();
    let parsed = ids.clone();
    assert!(parsed.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    assert_eq!(s.events_tail(&t).await.unwrap(), Some(ids[4]));
    // Published in order per task, each as a typed event with its stream id. (Order across
    // tasks is not kept on a Redis Cluster: two tasks' events may come from two nodes.)
    let mut others = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let got = loop {
            let got = tokio::time::timeout(Duration::from_secs(5), sub.next())
                .await
                .expect("published")
                .expect("subscription alive");
            if got.task == t {
                break got;
            }
            others.push(got.task);
        };
        assert_eq!(got.task, t);
        assert_eq!(got.id, Some(parsed[i]));
        let event: Event = got.event;
        assert_eq!(event.id, Some(id.to_string()));
        assert_eq!(event.data, json!({"i": i}));
        assert_eq!(event.kind, EventType::FileWritten);
    }
    if others.is_empty() {
        others.push(sub.next().await.unwrap().task);
    }
    assert_eq!(others, [u]);
    // Replay strictly after a position, oldest first, bounded.
    let after = s.events_after(&t, parsed[1], 2).await.unwrap();
    let got: Vec<StreamId> = after.iter().map(|e| e.id).collect();
    assert_eq!(got, [ids[2], ids[3]]);
    let envelope: Value = serde_json::from_str(&after[0].envelope).unwrap();
    assert_eq!(envelope["data"], json!({"i": 2}));
    assert!(envelope.get("id").is_none(), "stored without id");
    assert!(s.events_after(&t, parsed[4], 10).await.unwrap().is_empty());
    // The MCP catch-up read: events at or after a time.
    let since = s.events_since(&t, parsed[3].ms as i64, 10).await.unwrap();
    assert!(since.len() >= 2);
    assert_eq!(since.last().unwrap().id, Some(ids[4].to_string()));
    assert!(
        s.events_since(&t, parsed[4].ms as i64 + 60_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Watched: task `w`, and `message_sent` events of any task.
struct WatchedAndMessages;

impl Interest for WatchedAndMessages {
    fn task(&self, task: &TaskId) -> bool {
        task.as_str() == "w"
    }
    fn kind(&self, kind: &str) -> bool {
        kind == "message_sent"
    }
}

async fn a_subscription_reads_only_the_events_wanted(f: &HotFixture) {
    let s = &f.store;
    let (w, u) = (task("w"), task("u"));
    let mut sub = s.subscribe_updates().await.unwrap();
    sub.pinger().ping().await.unwrap();
    let message = |t, n: i64| Emit {
        envelope: envelope(EventType::MessageSent, t, "a1", json!({"n": n})),
        ..emit(t, "a1", Value::Null)
    };
    s.emit(&emit(&u, "a1", json!({"n": 1}))).await.unwrap();
    s.emit(&message(&u, 2)).await.unwrap();
    s.emit(&emit(&w, "a1", json!({"n": 3}))).await.unwrap();
    s.emit(&emit(&u, "a1", json!({"n": 4}))).await.unwrap();
    s.emit(&message(&u, 5)).await.unwrap();
    // Each task's events come in order (tasks may interleave on a Redis Cluster): once `u`'s
    // last message is here, every event of `u` before it has been read or skipped.
    let mut got = Vec::new();
    while got.len() < 3 {
        let e = tokio::time::timeout(Duration::from_secs(5), sub.next_wanted(&WatchedAndMessages))
            .await
            .expect("published")
            .expect("subscription alive");
        got.push((e.task.to_string(), e.event.kind, e.event.data["n"].clone()));
    }
    got.sort_by_key(|(t, _, n)| (t.clone(), n.as_i64()));
    assert_eq!(
        got,
        [
            ("u".into(), EventType::MessageSent, json!(2)),
            ("u".into(), EventType::MessageSent, json!(5)),
            ("w".into(), EventType::FileWritten, json!(3)),
        ]
    );
}

async fn steps_page_newest_first_and_reach_the_outbox(f: &HotFixture) {
    let s = &f.store;
    let t = task("t");
    let outbox = s.outbox();
    if let Some(o) = outbox {
        o.outbox_create_group("g").await.unwrap();
    }
    let mut sub = s.subscribe_updates().await.unwrap();
    let mut step_ids = Vec::new();
    for i in 0..4 {
        let (head, tail) = mcp_domain::events::envelope_around(
            EventType::StepLogged,
            &t,
            "a1",
            json!({"step_id": "\u{1}", "n": i}),
            "\u{1}",
        );
        let e = Emit {
            envelope: head,
            ..emit(&t, "a1", Value::Null)
        };
        let StepIds {
            step: sid,
            event: eid,
        } = s
            .log_step(&e, &tail, &json!({"n": i}).to_string(), 1000)
            .await
            .unwrap();
        let event: Event = tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await
            .unwrap()
            .unwrap()
            .event;
        assert_eq!(event.id, Some(eid.to_string()));
        assert_eq!(
            event.data["step_id"],
            json!(sid.to_string()),
            "the step id is in the event"
        );
        step_ids.push(sid);
    }
    let newest = s.steps_before(&t, None, 3).await.unwrap();
    let got: Vec<StreamId> = newest.iter().map(|s| s.id).collect();
    assert_eq!(got, [step_ids[3], step_ids[2], step_ids[1]]);
    assert_eq!(newest[0].json, json!({"n": 3}).to_string());
    let older = s.steps_before(&t, Some(step_ids[1]), 10).await.unwrap();
    assert_eq!(older.len(), 1);
    assert_eq!(older[0].id, step_ids[0]);
    // Each step is in the outbox with what the push loop needs (where the store has one: the
    // in-process store has none, and keeps no record for the durable store).
    let Some(o) = outbox else {
        assert!(!s.shared());
        return;
    };
    let entries = o.outbox_read_new("g", "c1", 100).await.unwrap();
    assert_eq!(entries.len(), 4);
    let first = &entries[0].fields;
    assert_eq!(first.get("kind").map(String::as_str), Some("step"));
    assert_eq!(first.get("task").map(String::as_str), Some("t"));
    assert_eq!(first.get("sid"), Some(&step_ids[0].to_string()));
    assert_eq!(first.get("agent").map(String::as_str), Some("a1"));
    assert_eq!(
        first.get("step").map(String::as_str),
        Some(json!({"n": 0}).to_string().as_str())
    );
    assert_eq!(o.outbox_length().await.unwrap(), 4);
}

async fn streams_keep_at_least_their_cap(f: &HotFixture) {
    let s = &f.store;
    let t = task("t");
    let mut last = StreamId::ZERO;
    for i in 0..300 {
        last = s
            .emit(&Emit {
                events_cap: 10,
                ..emit(&t, "a1", json!({"i": i}))
            })
            .await
            .unwrap();
    }
    let kept = s.events_after(&t, StreamId::ZERO, 1000).await.unwrap();
    assert!(kept.len() >= 10, "kept {}", kept.len());
    assert!(kept.len() < 300, "never trimmed");
    assert_eq!(kept.last().unwrap().id, last);
}

async fn presence_and_collaboration(f: &HotFixture) {
    let s = &f.store;
    let (t, u) = (task("t"), task("u"));
    let (a1, a2) = (AgentId::parse("a1").unwrap(), AgentId::parse("a2").unwrap());
    assert!(s.collaborators(&t).await.unwrap().is_none());
    let Presence {
        last_seen: seen,
        task: current,
        tasks,
    } = s.presence(&a1).await.unwrap();
    assert!(seen.is_none() && current.is_none() && tasks.is_empty());
    let joined = Utc::now() - TimeDelta::seconds(60);
    s.join(&t, &a1, joined).await.unwrap();
    s.join(&t, &a2, joined + TimeDelta::seconds(1))
        .await
        .unwrap();
    s.join(&u, &a1, joined).await.unwrap();
    let members = s.collaborators(&t).await.unwrap().unwrap();
    let ids: Vec<&str> = members.iter().map(|c| c.agent_id.as_str()).collect();
    assert_eq!(ids, ["a1", "a2"]);
    assert_eq!(
        members[0].joined_at.timestamp_millis(),
        joined.timestamp_millis()
    );
    assert_eq!(members[0].last_active, members[0].joined_at);
    // Emitting as a member touches its activity and its presence.
    s.emit(&emit(&t, "a1", json!({}))).await.unwrap();
    let members = s.collaborators(&t).await.unwrap().unwrap();
    assert!(members[0].last_active > members[0].joined_at);
    let Presence {
        last_seen: seen,
        task: current,
        tasks,
    } = s.presence(&a1).await.unwrap();
    assert!(seen.unwrap() > Utc::now() - TimeDelta::seconds(10));
    assert_eq!(current.as_deref(), Some("t"));
    assert_eq!(tasks, ["t", "u"]);
    // Acting on another task moves the presence there at once (however recent the last
    // touch: a store may skip touching it again for the same task).
    s.emit(&emit(&u, "a1", json!({}))).await.unwrap();
    assert_eq!(s.presence(&a1).await.unwrap().task.as_deref(), Some("u"));
    s.emit(&emit(&t, "a1", json!({}))).await.unwrap();
    assert_eq!(s.presence(&a1).await.unwrap().task.as_deref(), Some("t"));
    // A non-member's event touches presence only.
    s.emit(&emit(&t, "a3", json!({}))).await.unwrap();
    assert_eq!(s.collaborators(&t).await.unwrap().unwrap().len(), 2);
    let a3 = AgentId::parse("a3").unwrap();
    assert!(s.presence(&a3).await.unwrap().last_seen.is_some());
    s.leave(&t, &a1).await.unwrap();
    let ids: Vec<String> = s
        .collaborators(&t)
        .await
        .unwrap()
        .unwrap()
        .into_iter()
        .map(|c| c.agent_id)
        .collect();
    assert_eq!(ids, ["a2"]);
    assert_eq!(s.presence(&a1).await.unwrap().tasks, ["u"]);
    s.leave(&t, &a2).await.unwrap();
    assert!(s.collaborators(&t).await.unwrap().is_none());
    // Presence moves forward only.
    let future = Utc::now() + TimeDelta::hours(1);
    let seen = |last_seen_ms: i64, task: &str| AgentSeen {
        agent: "a2".into(),
        last_seen_ms,
        task: Some(task.into()),
    };
    s.refresh_agents(&[seen(future.timestamp_millis(), "u")])
        .await
        .unwrap();
    s.refresh_agents(&[seen(1, "t")]).await.unwrap();
    let Presence {
        last_seen: seen,
        task: current,
        ..
    } = s.presence(&a2).await.unwrap();
    assert_eq!(seen.unwrap().timestamp_millis(), future.timestamp_millis());
    assert_eq!(current.as_deref(), Some("u"));
}

async fn rate_windows_count_and_reset(f: &HotFixture) {
    let s = &f.store;
    let window = Duration::from_millis(400);
    let RateWindow {
        count: n1,
        resets_in: left,
    } = s.rate_hit("agent:a1", window).await.unwrap();
    assert_eq!(n1, 1);
    assert!(left <= window && left > Duration::ZERO, "{left:?}");
    assert_eq!(s.rate_hit("agent:a1", window).await.unwrap().count, 2);
    assert_eq!(s.rate_hit("agent:a2", window).await.unwrap().count, 1);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        s.rate_hit("agent:a1", window).await.unwrap().count,
        1,
        "a new window"
    );
}

fn task_row(id: &str, title: &str, updated_at: chrono::DateTime<Utc>) -> TaskState {
    TaskState {
        id: id.into(),
        title: title.into(),
        description: None,
        status: "pending".into(),
        assigned_agent_id: None,
        complexity: None,
        created_at: updated_at,
        updated_at,
    }
}

/// A refresh of `row` (change number `seq`) that emits its `task_updated` event when it
/// changes the cache.
fn refresh(row: &TaskState, seq: i64) -> TaskRefresh<'_> {
    let id = TaskId::parse(&row.id).unwrap();
    TaskRefresh {
        seq,
        envelope: Some(envelope(
            EventType::TaskUpdated,
            &id,
            "sync",
            json!({"title": row.title}),
        )),
        id,
        task: row,
    }
}

/// One refresh holding many rows of one task, on a store that has run no script yet (a
/// fresh store, or one restarted: its script cache is empty): each row is applied after the
/// one before it, so every newer row changes the cache and its event follows the previous
/// one's. (On a Redis Cluster the rows once ran concurrently, and the retries after `NOSCRIPT`
/// could overtake each other.)
async fn one_refresh_applies_a_tasks_rows_in_order(f: &HotFixture) {
    let s = &f.store;
    let now = Utc::now();
    // (A first read validates the hot layer, as a gateway's first request does: Redis
    // rebuilds a layer it finds unvalidated, dropping caches written before.)
    assert!(s.task(&task("r")).await.unwrap().is_none());
    let rows: Vec<TaskState> = (1..=40)
        .map(|i| task_row("r", &format!("v{i}"), now))
        .collect();
    let refreshes: Vec<TaskRefresh<'_>> = rows
        .iter()
        .zip(1..)
        .map(|(row, seq)| refresh(row, seq))
        .collect();
    let answers = s.refresh_tasks(&refreshes, "sync", 60, 100).await.unwrap();
    assert_eq!(answers, vec![Refreshed::Changed; 40]);
    let titles: Vec<Value> = s
        .events_after(&task("r"), StreamId::ZERO, 100)
        .await
        .unwrap()
        .iter()
        .map(|e| serde_json::from_str::<Value>(&e.envelope).unwrap()["data"]["title"].clone())
        .collect();
    let expected: Vec<Value> = (1..=40).map(|i| json!(format!("v{i}"))).collect();
    assert_eq!(titles, expected);
    assert_eq!(s.task(&task("r")).await.unwrap().unwrap().title, "v40");
}

async fn task_rows_refresh_in_order(f: &HotFixture) {
    let s = &f.store;
    let t = task("t");
    let now = Utc::now();
    // The newer row (higher change number) carries the older clock: the number decides.
    let v1 = task_row("t", "one", now);
    let v2 = task_row("t", "two", now - TimeDelta::seconds(3));
    let mut sub = s.subscribe_updates().await.unwrap();
    assert!(s.task(&t).await.unwrap().is_none());
    assert!(!s.sync_is_warm().await.unwrap());
    let answers = s
        .refresh_tasks(
            &[
                refresh(&v1, 1),
                refresh(&v1, 1),
                refresh(&v2, 2),
                refresh(&v1, 1),
            ],
            "sync",
            60,
            100,
        )
        .await
        .unwrap();
    assert_eq!(
        answers,
        [
            Refreshed::Changed,
            Refreshed::Unchanged,
            Refreshed::Changed,
            Refreshed::Older
        ]
    );
    assert_eq!(s.task(&t).await.unwrap().unwrap(), v2);
    // One event per change, none for the others.
    for title in ["one", "two"] {
        let event: Event = tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await
            .unwrap()
            .unwrap()
            .event;
        assert_eq!(event.data["title"], title);
    }
    assert_eq!(
        s.events_after(&t, StreamId::ZERO, 10).await.unwrap().len(),
        2
    );
    // Without an envelope (warming): cached, not emitted.
    let u = task_row("u", "quiet", now);
    let quiet = TaskRefresh {
        id: task("u"),
        task: &u,
        seq: 5,
        envelope: None,
    };
    assert_eq!(
        s.refresh_tasks(&[quiet], "sync", 60, 100).await.unwrap(),
        [Refreshed::Changed]
    );
    assert_eq!(s.events_tail(&task("u")).await.unwrap(), None);
    // A plain cache write (a refill, the admin API's) is ordered the same way: an older row
    // never replaces a newer one, a newer one does.
    s.cache_task(&v1, 1, 60).await.unwrap();
    assert_eq!(s.task(&t).await.unwrap().unwrap().title, "two");
    s.cache_task(&v1, 3, 60).await.unwrap();
    assert_eq!(s.task(&t).await.unwrap().unwrap().title, "one");
    assert_eq!(
        s.refresh_tasks(&[refresh(&v2, 2)], "sync", 60, 100)
            .await
            .unwrap(),
        [Refreshed::Older]
    );
    // Drops.
    s.delete_cached_tasks(&[t.clone(), task("u")])
        .await
        .unwrap();
    assert!(s.task(&t).await.unwrap().is_none());
    assert!(s.task(&task("u")).await.unwrap().is_none());
    s.set_sync_warm().await.unwrap();
    assert!(s.sync_is_warm().await.unwrap());
}

async fn outbox_group_delivers_once_and_hands_over(f: &HotFixture) {
    let s = &f.store;
    let Some(o) = s.outbox() else {
        // Only a store apart from its durable store has an outbox: the in-process one has none.
        assert!(!s.shared());
        return;
    };
    let t = task("t");
    o.outbox_create_group("g").await.unwrap();
    o.outbox_create_group("g").await.unwrap();
    for i in 0..5 {
        s.emit(&Emit {
            audit: Some(json!({"action": "claim_file", "i": i}).to_string()),
            ..emit(&t, "a1", json!({}))
        })
        .await
        .unwrap();
    }
    let depth = o.outbox_depth("g").await.unwrap();
    assert_eq!((depth.length, depth.pending), (5, 0));
    let first = o.outbox_read_new("g", "c1", 3).await.unwrap();
    assert_eq!(first.len(), 3);
    assert_eq!(
        first[0].fields.get("kind").map(String::as_str),
        Some("audit")
    );
    let payload: Value = serde_json::from_str(&first[0].fields["payload"]).unwrap();
    assert_eq!(payload["i"], 0);
    let rest = o.outbox_read_new("g", "c2", 10).await.unwrap();
    assert_eq!(rest.len(), 2, "never delivered twice");
    assert!(o.outbox_read_new("g", "c1", 10).await.unwrap().is_empty());
    assert_eq!(o.outbox_depth("g").await.unwrap().pending, 5);
    let mine: Vec<String> = o
        .outbox_read_pending("g", "c1", 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    let first_ids: Vec<String> = first.iter().map(|e| e.id.clone()).collect();
    assert_eq!(mine, first_ids);
    // c2 crashed: after the idle time its entries are taken over.
    assert!(
        o.outbox_claim_idle("g", "c1", Duration::from_secs(3600), 10)
            .await
            .unwrap()
            .is_empty()
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    let taken = o
        .outbox_claim_idle("g", "c1", Duration::from_millis(10), 10)
        .await
        .unwrap();
    assert_eq!(taken.len(), 5, "every idle entry, c1's own included");
    assert_eq!(o.outbox_read_pending("g", "c2", 10).await.unwrap().len(), 0);
    let all: Vec<String> = taken.iter().map(|e| e.id.clone()).collect();
    o.outbox_ack("g", &all[..4]).await.unwrap();
    let depth = o.outbox_depth("g").await.unwrap();
    assert_eq!((depth.length, depth.pending), (1, 1));
    o.outbox_ack("g", &all[4..]).await.unwrap();
    o.outbox_ack("g", &[]).await.unwrap();
    let depth = o.outbox_depth("g").await.unwrap();
    assert_eq!((depth.length, depth.pending), (0, 0));
    assert_eq!(o.outbox_length().await.unwrap(), 0);
    // A group that was never created is created on first read, from the outbox's start.
    s.emit(&Emit {
        audit: Some("{}".into()),
        ..emit(&t, "a1", json!({}))
    })
    .await
    .unwrap();
    assert_eq!(o.outbox_read_new("fresh", "c", 10).await.unwrap().len(), 1);
}

async fn mcp_sessions_and_subscriptions(f: &HotFixture) {
    let s = &f.store;
    let ttl = Duration::from_secs(60);
    assert_eq!(s.load_session("s1", ttl).await.unwrap(), None);
    let bound = McpSession {
        owner: Some("agent-1".into()),
        state: "{\"v\":1}".into(),
    };
    s.save_session("s1", &bound, ttl).await.unwrap();
    assert_eq!(s.load_session("s1", ttl).await.unwrap(), Some(bound));
    // Authentication off: a session without an owner.
    let unbound = McpSession {
        owner: None,
        state: "{\"v\":2}".into(),
    };
    s.save_session("s0", &unbound, ttl).await.unwrap();
    assert_eq!(s.load_session("s0", ttl).await.unwrap(), Some(unbound));
    let t = task("t");
    let a = AgentId::parse("a1").unwrap();
    s.subscribe(
        "s1",
        SubScope::Task(&t),
        "tasks://t/logs",
        "tasks://t/logs",
        ttl,
    )
    .await
    .unwrap();
    s.subscribe(
        "s1",
        SubScope::Agent(&a),
        "agents://a1/status",
        "agents://a1/status",
        ttl,
    )
    .await
    .unwrap();
    s.subscribe(
        "s2",
        SubScope::Task(&t),
        "tasks://t/logs",
        "tasks://t/logs?x",
        ttl,
    )
    .await
    .unwrap();
    let mut subs = s.subscribers(SubScope::Task(&t)).await.unwrap();
    subs.sort_by(|a, b| a.session.cmp(&b.session));
    assert_eq!(subs.len(), 2);
    assert_eq!(subs[1].uri, "tasks://t/logs?x");
    assert_eq!(subs[1].key, "tasks://t/logs");
    s.unsubscribe(
        "s2",
        SubScope::Task(&t),
        "tasks://t/logs",
        "tasks://t/logs?x",
    )
    .await
    .unwrap();
    assert_eq!(s.subscribers(SubScope::Task(&t)).await.unwrap().len(), 1);
    s.drop_session("s1").await.unwrap();
    assert_eq!(s.load_session("s1", ttl).await.unwrap(), None);
    assert!(s.subscribers(SubScope::Task(&t)).await.unwrap().is_empty());
    assert!(s.subscribers(SubScope::Agent(&a)).await.unwrap().is_empty());
    // Sessions expire.
    let short = McpSession {
        owner: None,
        state: "{}".into(),
    };
    s.save_session("s3", &short, Duration::from_secs(1))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(s.load_session("s3", ttl).await.unwrap(), None);
}

fn waiter(ticket: &str) -> Waiter<'_> {
    Waiter {
        ticket,
        arrival: None,
        liveness: Duration::from_secs(10),
    }
}

fn dir(p: &str) -> LeasePath {
    LeasePath::parse(p, true).unwrap()
}

fn file(p: &str) -> LeasePath {
    LeasePath::parse(p, false).unwrap()
}

/// What `owner`'s claim of `p` for `ttl` answers: re-entrant, not queued, presenting
/// `fence` (a fence and its token) once the store asked for one.
async fn claim(
    s: &Hot,
    t: &TaskId,
    p: &LeasePath,
    owner: &str,
    ttl: Duration,
    fence: Option<(i64, &str)>,
) -> ClaimOutcome {
    s.claim(&Claim {
        fence: fence.map(|(fence, token)| NewFence { fence, token }),
        ..Claim::new(t, p, owner, ttl)
    })
    .await
    .unwrap()
}

/// The lease a claim was granted (panics on anything else).
#[track_caller]
fn granted(outcome: ClaimOutcome) -> Lease {
    match outcome {
        ClaimOutcome::Granted(lease) => lease,
        other => panic!("not granted: {other:?}"),
    }
}

/// The place a refused claim answered (panics on anything else).
fn place(outcome: &ClaimOutcome) -> QueuePlace {
    match outcome {
        ClaimOutcome::HeldByOther { queue, .. } | ClaimOutcome::Queued { queue, .. } => *queue,
        other => panic!("not refused: {other:?}"),
    }
}

/// Issue #17 item 2: a path's waiters are served first come, first served: only the first
/// of them may take a free path, a claim without a ticket is refused while they wait, a grant
/// takes the ticket out, and a release or a leave wakes the task's waiters.
async fn waiters_are_granted_in_arrival_order(f: &HotFixture) {
    let s = &f.store;
    let (t, p) = (task("t"), file("a"));
    let ttl = Duration::from_secs(30);
    let mut wakes = s.subscribe_lease_wakes().await.unwrap();
    claim(s, &t, &p, "holder", ttl, Some((1, "h"))).await;
    // Two waiters join behind the holder, in order.
    let first = s
        .claim(&Claim::new(&t, &p, "w1", ttl).waiting(&waiter("k1")))
        .await
        .unwrap();
    match &first {
        ClaimOutcome::HeldByOther { owner, path, .. } => {
            assert_eq!((owner.as_str(), path.as_str()), ("holder", "a"));
        }
        other => panic!("{other:?}"),
    }
    let p1 = place(&first);
    assert_eq!((p1.position, p1.waiters), (Some(1), 1));
    assert!(p1.arrival.is_some());
    let p2 = place(
        &s.claim(&Claim::new(&t, &p, "w2", ttl).waiting(&waiter("k2")))
            .await
            .unwrap(),
    );
    assert_eq!((p2.position, p2.waiters), (Some(2), 2));
    assert!(p2.arrival > p1.arrival, "{p1:?} {p2:?}");
    // A check keeps the place; a claim without a ticket sees the queue, has no place.
    let again = place(
        &s.claim(&Claim::new(&t, &p, "w1", ttl).waiting(&waiter("k1")))
            .await
            .unwrap(),
    );
    assert_eq!((again.position, again.arrival), (Some(1), p1.arrival));
    let bare = place(&claim(s, &t, &p, "x", ttl, None).await);
    assert_eq!((bare.position, bare.waiters), (None, 2));
    let LeasePage { leases: listed, .. } = s.leases(&t, 10).await.unwrap();
    assert_eq!(listed[0].waiters, ["w1", "w2"]);
    // The release wakes the task's waiters; the path is promised to the first.
    s.release(&t, &p, "holder", false).await.unwrap().unwrap();
    let woken = tokio::time::timeout(Duration::from_secs(5), wakes.next())
        .await
        .expect("a wake-up")
        .expect("subscribed");
    assert_eq!(woken, t);
    for (who, ticket) in [("x", None), ("w2", Some("k2"))] {
        let w = ticket.map(waiter);
        match s
            .claim(&Claim {
                waiter: w.as_ref(),
                ..Claim::new(&t, &p, who, ttl).fenced(9, "no")
            })
            .await
            .unwrap()
        {
            ClaimOutcome::Queued { next, .. } => assert_eq!(next, "w1", "{who}"),
            other => panic!("{who}: {other:?}"),
        }
    }
    assert!(matches!(
        s.claim(&Claim::new(&t, &p, "w1", ttl).waiting(&waiter("k1")))
            .await
            .unwrap(),
        ClaimOutcome::NeedFence
    ));
    let granted = s
        .claim(
            &Claim::new(&t, &p, "w1", ttl)
                .fenced(2, "t2")
                .waiting(&waiter("k1")),
        )
        .await
        .unwrap();
    assert!(matches!(granted, ClaimOutcome::Granted(ref l) if l.fence == 2));
    // w1 is served and out of the queue: w2 is now first, behind w1's lease.
    let p2 = place(
        &s.claim(&Claim::new(&t, &p, "w2", ttl).waiting(&waiter("k2")))
            .await
            .unwrap(),
    );
    assert_eq!((p2.position, p2.waiters), (Some(1), 1));
    // w2 gives up: the queue is empty, and a plain claim works once the path is free.
    assert_eq!(s.leave_queue(&t, &p, "k2").await.unwrap(), None);
    s.release(&t, &p, "w1", false).await.unwrap().unwrap();
    assert!(matches!(
        claim(s, &t, &p, "x", ttl, None).await,
        ClaimOutcome::NeedFence
    ));
    assert!(s.leases(&t, 10).await.unwrap().leases.is_empty());
}

/// A waiter whose gateway stops checking in (it died) leaves the queue after its liveness,
/// and the next one is served.
async fn a_waiter_that_stops_checking_in_drops_out(f: &HotFixture) {
    let s = &f.store;
    let (t, p) = (task("t"), file("a"));
    let ttl = Duration::from_secs(30);
    claim(s, &t, &p, "holder", ttl, Some((1, "h"))).await;
    let short = Waiter {
        liveness: Duration::from_millis(300),
        ..waiter("dead")
    };
    s.claim(&Claim::new(&t, &p, "ghost", ttl).waiting(&short))
        .await
        .unwrap();
    let alive = place(
        &s.claim(&Claim::new(&t, &p, "w", ttl).waiting(&waiter("live")))
            .await
            .unwrap(),
    );
    assert_eq!(alive.position, Some(2));
    tokio::time::sleep(Duration::from_millis(600)).await;
    s.release(&t, &p, "holder", false).await.unwrap().unwrap();
    assert!(matches!(
        s.claim(&Claim::new(&t, &p, "w", ttl).waiting(&waiter("live")))
            .await
            .unwrap(),
        ClaimOutcome::NeedFence
    ));
    s.claim(
        &Claim::new(&t, &p, "w", ttl)
            .fenced(2, "w")
            .waiting(&waiter("live")),
    )
    .await
    .unwrap();
    s.claim(&Claim::new(&t, &p, "late", ttl).waiting(&waiter("late")))
        .await
        .unwrap();
    // A waiter that checks in again after its liveness lapsed rejoins at its arrival.
    let mut lost = short;
    lost.arrival = Some(1);
    lost.liveness = Duration::from_secs(10);
    let back = place(
        &s.claim(&Claim::new(&t, &p, "ghost", ttl).waiting(&lost))
            .await
            .unwrap(),
    );
    assert_eq!(
        back.position,
        Some(1),
        "its arrival is older than every other"
    );
}

/// A lease granted to a waiter whose answer never reached it (the request was dropped
/// meanwhile) is released when its ticket leaves.
async fn a_grant_whose_waiter_left_is_released(f: &HotFixture) {
    let s = &f.store;
    let (t, p) = (task("t"), file("a"));
    let ttl = Duration::from_secs(30);
    let granted = s
        .claim(
            &Claim::new(&t, &p, "w", ttl)
                .fenced(4, "t4")
                .waiting(&waiter("k")),
        )
        .await
        .unwrap();
    assert!(matches!(granted, ClaimOutcome::Granted(_)));
    assert_eq!(
        s.leave_queue(&t, &p, "k").await.unwrap(),
        Some(Released {
            owner: "w".to_owned(),
            fence: 4
        })
    );
    assert!(s.leases(&t, 10).await.unwrap().leases.is_empty());
    // A lease granted to another ticket (or to none) stays.
    claim(s, &t, &p, "w", ttl, Some((5, "t5"))).await;
    assert_eq!(s.leave_queue(&t, &p, "k").await.unwrap(), None);
    assert_eq!(s.leases(&t, 10).await.unwrap().leases.len(), 1);
}

/// Issue #17 item 2: a directory lease conflicts with other owners' leases beneath it and
/// above it, governs writes beneath it, and is listed with its trailing `/`.
async fn directory_leases_conflict_above_and_beneath(f: &HotFixture) {
    let s = &f.store;
    let t = task("t");
    let ttl = Duration::from_secs(30);
    let lease = granted(claim(s, &t, &dir("src"), "a1", ttl, Some((1, "d"))).await);
    assert_eq!(lease.path, "src/");
    // Beneath it: another owner is refused, naming the directory lease; the owner is not.
    for (p, who) in [(file("src/api/a.py"), "a2"), (dir("src/api"), "a2")] {
        match claim(s, &t, &p, who, ttl, Some((2, "x"))).await {
            ClaimOutcome::HeldByOther { owner, path, .. } => {
                assert_eq!((owner.as_str(), path.as_str()), ("a1", "src/"), "{p}");
            }
            other => panic!("{p}: {other:?}"),
        }
    }
    granted(claim(s, &t, &file("src/a.py"), "a1", ttl, Some((3, "own"))).await);
    // Writes beneath it: another writer meets the directory lease; the owner writes under
    // its nearest own lease.
    let refused = s
        .lease_for_write(&t, &path("src/b/c.py"), "a2", &PendingWrite::new(60))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (refused.owner.as_str(), refused.path.as_str(), refused.fence),
        ("a1", "src/", 1)
    );
    let own = s
        .lease_for_write(&t, &path("src/b/c.py"), "a1", &PendingWrite::new(60))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((own.path.as_str(), own.fence), ("src/", 1));
    let own_file = s
        .lease_for_write(&t, &path("src/a.py"), "a1", &PendingWrite::new(60))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((own_file.path.as_str(), own_file.fence), ("src/a.py", 3));
    assert!(
        s.lease_for_write(&t, &path("srcx/a.py"), "a2", &PendingWrite::new(60))
            .await
            .unwrap()
            .is_none(),
        "a sibling with the same prefix is not beneath src/"
    );
    // Above it: a file lease beneath blocks the directory, and the root-most directory too.
    claim(s, &t, &file("lib/x/y.py"), "a2", ttl, Some((4, "y"))).await;
    for d in ["lib", "lib/x"] {
        match claim(s, &t, &dir(d), "a1", ttl, Some((5, "z"))).await {
            ClaimOutcome::HeldByOther { owner, path, .. } => {
                assert_eq!((owner.as_str(), path.as_str()), ("a2", "lib/x/y.py"), "{d}");
            }
            other => panic!("{d}: {other:?}"),
        }
    }
    granted(claim(s, &t, &dir("li"), "a1", ttl, Some((6, "li"))).await);
    let LeasePage { leases, .. } = s.leases(&t, 10).await.unwrap();
    let mut paths: Vec<&str> = leases.iter().map(|l| l.path.as_str()).collect();
    paths.sort();
    assert_eq!(paths, ["li/", "lib/x/y.py", "src/", "src/a.py"]);
    // Released, it no longer covers anything; renew works on the directory's path.
    s.renew(&t, &dir("src"), "a1", Some(ttl), ttl)
        .await
        .unwrap()
        .unwrap();
    s.release(&t, &dir("src"), "a1", false)
        .await
        .unwrap()
        .unwrap();
    assert!(
        s.lease_for_write(&t, &path("src/b/c.py"), "a2", &PendingWrite::new(60))
            .await
            .unwrap()
            .is_none()
    );
    granted(claim(s, &t, &file("src/b/c.py"), "a2", ttl, Some((7, "c"))).await);
}

/// A reader misses on one Redis server and reads v1 from the durable store; a writer commits
/// v2 and its refresh goes to that server, which is then lost (a failover to a replica that
/// had not received it; here a restart without persistence) and the hot layer rebuilt on its
/// successor. The reader's refill of v1 arrives after that: it must not be served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refill_from_before_a_failover_is_refused() {
    use mcp_domain::store::redis::{RedisConfig, RedisStore};
    let mut server = mcp_testkit::PrivateRedis::start().expect("redis-server on the PATH");
    let s: Hot = std::sync::Arc::new(
        RedisStore::connect(&RedisConfig {
            url: server.url(),
            key_prefix: "t:".into(),
            response_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            min_replicas: 0,
        })
        .await
        .expect("redis"),
    );
    let (t, p) = (task("t"), path("a"));
    let r = missed(&s, &t, &p).await;
    server.stop();
    assert!(server.restart(), "redis-server restarts");
    // The first read on the new server rebuilds its hot layer (the connection may need a
    // moment to come back).
    let mut read = s.file(&t, &p).await;
    for _ in 0..50 {
        if read.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        read = s.file(&t, &p).await;
    }
    assert!(read.unwrap().hit().is_none());
    s.cache_file(&t, &p, &cached(1, "one"), &r).await.unwrap();
    let served = s.file(&t, &p).await.unwrap().hit();
    assert!(
        served.is_none(),
        "a refill from before the failover is served: v{:?}",
        served.map(|f| f.version)
    );
    // A refill after a miss in the new era is taken.
    let r = missed(&s, &t, &p).await;
    s.cache_file(&t, &p, &cached(1, "one"), &r).await.unwrap();
    assert_eq!(s.file(&t, &p).await.unwrap().hit().unwrap().version, 1);
}
