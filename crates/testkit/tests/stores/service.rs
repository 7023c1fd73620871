//! The operations over each backend combination the gateway supports: what only shows when
//! both stores work together (write-through and refill, leases fenced by the durable
//! sequence, steps that move from the hot stream to the durable log, the task cache the pull
//! loop keeps).

use crate::fixtures::{ServiceFixture, conflict, service};
use mcp_api::requests::{
    ClaimFileRequest, CreateTaskRequest, DeleteFileRequest, FileEditRequest, FileHistoryRequest,
    FileRevisionRequest, FileWriteRequest, ListLeasesRequest, LogStepRequest, UpdateTaskRequest,
};
use mcp_domain::store::durable::AuditFilter;
use mcp_domain::{Actor, AgentId, DomainError, TaskId};
use mcp_sync::{PullLoop, PushLoop, SyncSettings};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::time::Duration;

crate::per_backend!(service; [deployed, embedded];
    files_write_through_and_refill,
    every_version_is_readable_and_diffable,
    list_leases_shows_who_holds_what,
    an_expired_holder_is_fenced_out,
    presented_fences_must_be_the_writers_live_lease,
    an_expired_holder_cannot_overwrite_a_newer_holders_work,
    steps_move_from_the_hot_stream_to_the_durable_log,
    lease_audit_records_reach_the_durable_log_once,
    task_changes_reach_the_cache_and_the_watchers,
    a_backdated_task_change_reaches_the_cache,
    concurrent_task_changes_leave_the_cache_at_the_newest_state,
);

fn agent(name: &str) -> Actor {
    Actor::trusted(AgentId::parse(name).unwrap())
}

fn req<T: DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

/// `agent` claims file `a` of task `t` for `secs` seconds.
fn claim_a(agent: &str, secs: i64) -> ClaimFileRequest {
    req(json!({"task_id": "t", "path": "a", "timeout_sec": secs, "agent_id": agent}))
}

/// An edit of `path` in task `t`, replacing `old` by `new`.
fn edit_req(path: &str, old: &str, new: &str) -> FileEditRequest {
    req(json!({"task_id": "t", "path": path, "old_string": old, "new_string": new}))
}

/// A request that names only a task and a path (a read, a delete, a history).
fn on_path<T: DeserializeOwned>(task: &str, path: &str) -> T {
    req(json!({"task_id": task, "path": path}))
}

async fn files_write_through_and_refill(f: &ServiceFixture) {
    let svc = &f.service;
    let a1 = agent("a1");
    let w = svc
        .file_write(
            &a1,
            req::<FileWriteRequest>(
                json!({"task_id": "t", "path": "./src/a.py", "content": "x = 1\n"}),
            ),
        )
        .await
        .unwrap();
    assert_eq!((w.path.as_str(), w.version), ("src/a.py", 1));
    let r = svc.file_read(&a1, on_path("t", "src/a.py")).await.unwrap();
    assert_eq!((r.content.as_str(), r.version), ("x = 1\n", 1));
    assert_eq!(r.sha256, w.sha256);
    let e = svc
        .file_edit(&a1, edit_req("src/a.py", "1", "2"))
        .await
        .unwrap();
    assert_eq!(e.version, 2);
    // The hot copy follows every commit; dropped, it is refilled from the durable store.
    let hot = f.hot_file("t", "src/a.py").await.unwrap();
    assert_eq!((hot.version, hot.content.as_str()), (2, "x = 2\n"));
    f.drop_hot_file("t", "src/a.py").await;
    let r = svc.file_read(&a1, on_path("t", "src/a.py")).await.unwrap();
    assert_eq!((r.content.as_str(), r.version), ("x = 2\n", 2));
    assert_eq!(
        f.hot_file("t", "src/a.py").await.unwrap().version,
        2,
        "refilled"
    );
    let err = svc
        .file_write(
            &a1,
            req::<FileWriteRequest>(json!({
                "task_id": "t", "path": "src/a.py", "content": "y", "expected_version": 1
            })),
        )
        .await
        .unwrap_err();
    assert_eq!(conflict(err).1, Some(2));
    let err = svc.file_read(&a1, on_path("t", "nope")).await.unwrap_err();
    assert!(matches!(err, DomainError::FileNotFound(_)), "{err:?}");
}

async fn every_version_is_readable_and_diffable(f: &ServiceFixture) {
    let svc = &f.service;
    let (coder, qa) = (agent("coder"), agent("qa"));
    let write = |content: &str| {
        req::<FileWriteRequest>(json!({"task_id": "t", "path": "a.py", "content": content}))
    };
    let edit = |old: &str, new: &str| {
        req::<FileEditRequest>(
            json!({"task_id": "t", "path": "a.py", "old_string": old, "new_string": new}),
        )
    };
    svc.file_write(&coder, write("x = 1\ny = 2\n"))
        .await
        .unwrap();
    let e2 = svc.file_edit(&qa, edit("x = 1", "x = 10")).await.unwrap();
    svc.file_edit(&coder, edit("y = 2\n", "")).await.unwrap();
    svc.delete_file(&coder, on_path("t", "a.py")).await.unwrap();
    svc.file_write(&qa, write("back\n")).await.unwrap();

    let history = |before: Option<i64>, limit: Option<i64>| {
        req::<FileHistoryRequest>(json!({
            "task_id": "t", "path": "./a.py", "before_version": before, "limit": limit
        }))
    };
    let h = svc.file_history(&qa, history(None, None)).await.unwrap();
    assert_eq!((h.path.as_str(), h.next_before), ("a.py", None));
    let listed: Vec<(i64, &str, Option<&str>)> = h
        .revisions
        .iter()
        .map(|r| (r.version, r.op.as_str(), r.agent_id.as_deref()))
        .collect();
    assert_eq!(
        listed,
        [
            (5, "write", Some("qa")),
            (4, "delete", Some("coder")),
            (3, "edit", Some("coder")),
            (2, "edit", Some("qa")),
            (1, "write", Some("coder")),
        ]
    );
    assert_eq!(h.revisions[3].sha256.as_deref(), Some(e2.sha256.as_str()));
    // Paging: two at a time, then on from next_before.
    let p1 = svc.file_history(&qa, history(None, Some(2))).await.unwrap();
    assert_eq!(p1.revisions.len(), 2);
    assert_eq!(p1.next_before, Some(4));
    let p2 = svc
        .file_history(&qa, history(p1.next_before, Some(3)))
        .await
        .unwrap();
    let versions: Vec<i64> = p2.revisions.iter().map(|r| r.version).collect();
    assert_eq!((versions, p2.next_before), (vec![3, 2, 1], None));
    for bad in [0, 501] {
        let err = svc
            .file_history(&qa, history(None, Some(bad)))
            .await
            .unwrap_err();
        assert!(matches!(err, DomainError::InvalidArgument(_)), "{err:?}");
    }

    let revision = |version: i64, diff_from: Option<i64>| {
        req::<FileRevisionRequest>(json!({
            "task_id": "t", "path": "a.py", "version": version, "diff_from": diff_from
        }))
    };
    let expected = [
        (1, Some("x = 1\ny = 2\n")),
        (2, Some("x = 10\ny = 2\n")),
        (3, Some("x = 10\n")),
        (4, None),
        (5, Some("back\n")),
    ];
    for (version, content) in expected {
        let r = svc
            .file_revision(&qa, revision(version, None))
            .await
            .unwrap();
        assert_eq!((r.version, r.content.as_deref()), (version, content));
        assert_eq!(r.size, content.map(|c| c.len() as i64));
        assert_eq!(r.diff, None);
    }
    // The diff between two versions, either way; a delete counts as empty.
    let d = svc.file_revision(&qa, revision(3, Some(1))).await.unwrap();
    let diff = d.diff.unwrap();
    assert!(diff.starts_with("--- a/a.py\n+++ b/a.py\n"), "{diff}");
    assert!(
        diff.contains("-x = 1\n") && diff.contains("-y = 2\n"),
        "{diff}"
    );
    assert!(diff.contains("+x = 10\n"), "{diff}");
    assert_eq!(d.diff_from, Some(1));
    let back = svc.file_revision(&qa, revision(1, Some(3))).await.unwrap();
    assert!(back.diff.unwrap().contains("+y = 2\n"));
    let gone = svc.file_revision(&qa, revision(4, Some(3))).await.unwrap();
    assert!(gone.diff.unwrap().contains("-x = 10\n"));
    // The diff of an edit between consecutive versions is the edit's own.
    let own = svc.file_revision(&qa, revision(2, Some(1))).await.unwrap();
    assert_eq!(own.diff.as_deref(), Some(e2.diff.as_str()));

    // Unknown versions and files.
    let err = svc.file_revision(&qa, revision(9, None)).await.unwrap_err();
    assert!(
        matches!(
            err,
            DomainError::RevisionNotFound {
                version: 9,
                latest: 5,
                ..
            }
        ),
        "{err:?}"
    );
    let err = svc
        .file_revision(&qa, revision(2, Some(7)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, DomainError::RevisionNotFound { version: 7, .. }),
        "{err:?}"
    );
    let err = svc.file_revision(&qa, revision(0, None)).await.unwrap_err();
    assert!(matches!(err, DomainError::InvalidArgument(_)), "{err:?}");
    let err = svc
        .file_revision(
            &qa,
            req(json!({"task_id": "t", "path": "nope", "version": 1})),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, DomainError::FileNotFound(_)), "{err:?}");
    let err = svc
        .file_history(&qa, req(json!({"task_id": "t", "path": "nope"})))
        .await
        .unwrap_err();
    assert!(matches!(err, DomainError::FileNotFound(_)), "{err:?}");
    // Another task's namespace has no such file.
    let err = svc
        .file_history(&qa, req(json!({"task_id": "t2", "path": "a.py"})))
        .await
        .unwrap_err();
    assert!(matches!(err, DomainError::FileNotFound(_)), "{err:?}");
}

async fn list_leases_shows_who_holds_what(f: &ServiceFixture) {
    let svc = &f.service;
    let list = || req::<ListLeasesRequest>(json!({"task_id": "t"}));
    assert!(
        svc.list_leases(&agent("qa"), list())
            .await
            .unwrap()
            .leases
            .is_empty()
    );
    let claim =
        |p: &str| req::<ClaimFileRequest>(json!({"task_id": "t", "path": p, "timeout_sec": 30}));
    let b = svc
        .claim_file(&agent("coder"), claim("./src/b.py"))
        .await
        .unwrap();
    let a = svc.claim_file(&agent("qa"), claim("a.py")).await.unwrap();
    let l = svc.list_leases(&agent("watcher"), list()).await.unwrap();
    let listed: Vec<(&str, &str, i64)> = l
        .leases
        .iter()
        .map(|l| (l.path.as_str(), l.holder.as_str(), l.fence))
        .collect();
    assert_eq!(
        listed,
        [("a.py", "qa", a.fence), ("src/b.py", "coder", b.fence)]
    );
    assert_eq!(l.leases[1].expires_at, b.expires_at);
    assert!(
        l.leases
            .iter()
            .all(|l| l.ttl_ms_left > 0 && l.ttl_ms_left <= 30_000)
    );
    assert!(!l.truncated);
    svc.release_file(&agent("qa"), on_path("t", "a.py"))
        .await
        .unwrap();
    let l = svc.list_leases(&agent("qa"), list()).await.unwrap();
    assert_eq!(l.leases.len(), 1);
    assert_eq!(l.leases[0].holder, "coder");
}

async fn an_expired_holder_is_fenced_out(f: &ServiceFixture) {
    let svc = &f.service;
    let (a1, a2) = (agent("a1"), agent("a2"));
    let first = svc.claim_file(&a1, claim_a("a1", 1)).await.unwrap();
    let err = svc.claim_file(&a2, claim_a("a2", 30)).await.unwrap_err();
    assert!(matches!(err, DomainError::Locked { .. }), "{err:?}");
    let err = svc
        .file_write(
            &a2,
            req::<FileWriteRequest>(json!({"task_id": "t", "path": "a", "content": "a2"})),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, DomainError::Locked { .. }), "{err:?}");
    svc.file_write(
        &a1,
        req::<FileWriteRequest>(json!({"task_id": "t", "path": "a", "content": "a1"})),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let second = svc.claim_file(&a2, claim_a("a2", 30)).await.unwrap();
    assert!(second.fence > first.fence, "fences come from one sequence");
    svc.file_write(
        &a2,
        req::<FileWriteRequest>(json!({"task_id": "t", "path": "a", "content": "a2"})),
    )
    .await
    .unwrap();
    // The expired holder's late write, presenting its old fence, is refused.
    let err = svc
        .file_write(
            &a1,
            req::<FileWriteRequest>(json!({
                "task_id": "t", "path": "a", "content": "late", "fence": first.fence
            })),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            DomainError::Locked { .. } | DomainError::StaleFence { .. }
        ),
        "{err:?}"
    );
    let r = svc.file_read(&a1, on_path("t", "a")).await.unwrap();
    assert_eq!(r.content, "a2");
}

/// The fence rule, part 1: a presented fence must be the fence of the writer's own live lease
/// on the path. A forged fence (the largest number, a negative one, 0) on a free path, another
/// agent's fence, a fence of another path: refused, nothing changed, and the real holder's
/// write, edit and delete pass afterwards (a forged fence never raised `last_fence`).
async fn presented_fences_must_be_the_writers_live_lease(f: &ServiceFixture) {
    let svc = &f.service;
    let (a1, a2) = (agent("a1"), agent("a2"));
    let write = |path: &str, fence: i64| {
        req::<FileWriteRequest>(
            json!({"task_id": "t", "path": path, "content": "forged", "fence": fence}),
        )
    };
    for forged in [i64::MAX, 1_000_000, -1, 0] {
        let err = svc.file_write(&a2, write("a", forged)).await.unwrap_err();
        assert!(
            matches!(
                err,
                DomainError::FenceNotHeld { .. } | DomainError::InvalidArgument(_)
            ),
            "fence {forged}: {err:?}"
        );
    }
    let err = svc
        .delete_file(
            &a2,
            req::<DeleteFileRequest>(json!({"task_id": "t", "path": "a", "fence": i64::MAX})),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, DomainError::FenceNotHeld { .. }), "{err:?}");
    let t = TaskId::parse("t").unwrap();
    let a = mcp_domain::FilePath::parse("a").unwrap();
    assert!(f.durable.file(&t, &a).await.unwrap().is_none());
    // The real holder.
    let claim = |who: &str, path: &str| {
        req::<ClaimFileRequest>(json!({"task_id": "t", "path": path, "agent_id": who}))
    };
    let lease = svc.claim_file(&a1, claim("a1", "a")).await.unwrap();
    let w = svc.file_write(&a1, write("a", lease.fence)).await.unwrap();
    assert_eq!(w.version, 1);
    svc.file_edit(
        &a1,
        req::<FileEditRequest>(json!({
            "task_id": "t", "path": "a", "old_string": "forged", "new_string": "mine",
            "fence": lease.fence
        })),
    )
    .await
    .unwrap();
    // Another agent presenting the holder's fence: the path is the holder's.
    let err = svc
        .file_write(&a2, write("a", lease.fence))
        .await
        .unwrap_err();
    assert!(matches!(err, DomainError::Locked { .. }), "{err:?}");
    // The holder's fence on another path (free, or its own lease there): not that lease's.
    let err = svc
        .file_write(&a1, write("b", lease.fence))
        .await
        .unwrap_err();
    assert!(matches!(err, DomainError::FenceNotHeld { .. }), "{err:?}");
    let b = svc.claim_file(&a1, claim("a1", "b")).await.unwrap();
    let err = svc
        .file_write(&a1, write("b", lease.fence))
        .await
        .unwrap_err();
    match err {
        DomainError::FenceNotHeld { fence, lease_fence } => {
            assert_eq!((fence, lease_fence), (lease.fence, Some(b.fence)))
        }
        other => panic!("{other:?}"),
    }
    // A forged fence from the holder itself, higher than its lease's: refused too.
    let err = svc
        .file_write(&a1, write("a", lease.fence + 1))
        .await
        .unwrap_err();
    assert!(matches!(err, DomainError::FenceNotHeld { .. }), "{err:?}");
    let d = svc
        .delete_file(
            &a1,
            req::<DeleteFileRequest>(json!({"task_id": "t", "path": "a", "fence": lease.fence})),
        )
        .await
        .unwrap();
    assert_eq!(d.version, 3);
    let row = f.durable.file(&t, &a).await.unwrap().unwrap();
    assert!(row.deleted);
}

/// The fence rule, parts 1 and 3: a holder whose lease expired cannot overwrite what a newer
/// holder wrote, whether it presents its old fence or none; a conditional write gets
/// `version_conflict`, and passes only once it is based on the current version.
async fn an_expired_holder_cannot_overwrite_a_newer_holders_work(f: &ServiceFixture) {
    let svc = &f.service;
    let (a1, a2) = (agent("a1"), agent("a2"));
    let write = |content: &str, extra: Value| {
        let mut b = json!({"task_id": "t", "path": "a", "content": content});
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        req::<FileWriteRequest>(b)
    };
    // The holder writes, then pauses past its lease: its old fence is no longer a live lease's.
    let write_and_lapse = async |holder: &Actor, content: &str, stale_fence: i64| {
        svc.file_write(holder, write(content, json!({})))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1300)).await;
        let err = svc
            .file_write(&a1, write("late", json!({"fence": stale_fence})))
            .await
            .unwrap_err();
        assert!(matches!(err, DomainError::FenceNotHeld { .. }), "{err:?}");
    };
    let old = svc.claim_file(&a1, claim_a("a1", 1)).await.unwrap();
    write_and_lapse(&a1, "v1", old.fence).await;
    let new = svc.claim_file(&a2, claim_a("a2", 1)).await.unwrap();
    assert!(new.fence > old.fence);
    // Nobody holds it now. With the old fence (above), without a fence, or as a blind delete:
    // refused.
    write_and_lapse(&a2, "v2", old.fence).await;
    let err = svc
        .file_write(&a1, write("late", json!({})))
        .await
        .unwrap_err();
    match err {
        DomainError::LeaseRequired { last_fence, .. } => assert_eq!(last_fence, new.fence),
        other => panic!("{other:?}"),
    }
    let err = svc.delete_file(&a1, on_path("t", "a")).await.unwrap_err();
    assert!(matches!(err, DomainError::LeaseRequired { .. }), "{err:?}");
    // Conditional on the version it last saw (1): the newer holder's version 2 is there.
    let err = svc
        .file_write(&a1, write("late", json!({"expected_version": 1})))
        .await
        .unwrap_err();
    assert_eq!(conflict(err).1, Some(2));
    let r = svc.file_read(&a1, on_path("t", "a")).await.unwrap();
    assert_eq!((r.content.as_str(), r.version), ("v2", 2));
    // An edit is conditional: it passes on top of the newer holder's work.
    let e = svc.file_edit(&a1, edit_req("a", "v2", "v3")).await.unwrap();
    assert_eq!(e.version, 3);
}

async fn steps_move_from_the_hot_stream_to_the_durable_log(f: &ServiceFixture) {
    let svc = &f.service;
    let a1 = agent("a1");
    let mut ids = Vec::new();
    for i in 0..30 {
        let r = svc
            .log_step(
                &a1,
                req::<LogStepRequest>(json!({"task_id": "t", "step": {"n": i}})),
            )
            .await
            .unwrap();
        ids.push(r.id);
    }
    // Through the outbox and the push loop, where the hot store has an outbox (Redis); without
    // one (in-process), each step was written to the durable store before it was acknowledged.
    if let Some(o) = f.hot.outbox() {
        let mut settings = SyncSettings::default().push;
        settings.batch_size = 7;
        let mut push = PushLoop::new(f.durable.clone(), f.hot.clone(), settings);
        let mut moved = 0;
        for _ in 0..20 {
            moved += push.try_run_once().await.unwrap().persisted;
            if moved >= 30 {
                break;
            }
        }
        assert_eq!(moved, 30);
        let depth = o.outbox_depth("mcp-sync").await.unwrap();
        assert_eq!((depth.length, depth.pending), (0, 0));
    }
    let durable = f
        .durable
        .steps_before(&TaskId::parse("t").unwrap(), None, 100)
        .await
        .unwrap();
    assert_eq!(durable.len(), 30);
    assert_eq!(durable[0].id.to_string(), ids[29]);
    // Pages read the same whichever store serves them.
    let page = svc.task_logs(&a1, "t", Some(&ids[10]), 5).await.unwrap();
    let got: Vec<&str> = page.steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        got,
        ids[5..10].iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert_eq!(page.steps[0].step["n"], 5);
    assert_eq!(page.steps[0].step["agent_id"], "a1");
}

/// A claim and a release are audited once each: through the outbox and the push
/// loop where the hot store has an outbox (Redis); without one (in-process), in the durable
/// store before each call answers.
async fn lease_audit_records_reach_the_durable_log_once(f: &ServiceFixture) {
    let svc = &f.service;
    let coder = agent("coder");
    let claim = req::<ClaimFileRequest>(json!({"task_id": "t", "path": "a.py", "timeout_sec": 30}));
    svc.claim_file(&coder, claim).await.unwrap();
    svc.release_file(&coder, on_path("t", "a.py"))
        .await
        .unwrap();
    if f.hot.outbox().is_some() {
        let mut push = PushLoop::new(
            f.durable.clone(),
            f.hot.clone(),
            SyncSettings::default().push,
        );
        push.try_run_once().await.unwrap();
    }
    let entries = f
        .durable
        .audit(&AuditFilter {
            task: Some("t"),
            tasks_in: None,
            agent: None,
            action: None,
            since: None,
            before_id: None,
            limit: 100,
        })
        .await
        .unwrap();
    let mut actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    actions.sort_unstable();
    assert_eq!(actions, ["claim_file", "release_file"], "{entries:?}");
    assert!(entries.iter().all(|e| e.actor == "coder"), "{entries:?}");
}

async fn task_changes_reach_the_cache_and_the_watchers(f: &ServiceFixture) {
    let svc = &f.service;
    let admin = agent("admin");
    svc.create_task(
        &admin,
        req::<CreateTaskRequest>(json!({"id": "t", "title": "one"})),
    )
    .await
    .unwrap();
    assert_eq!(svc.task_state(&admin, "t").await.unwrap().title, "one");
    let mut pull = PullLoop::new(
        f.durable.clone(),
        f.hot.clone(),
        SyncSettings::default().pull,
    );
    pull.try_run_once().await.unwrap();
    let t = TaskId::parse("t").unwrap();
    assert!(f.hot.sync_is_warm().await.unwrap());
    let before = f.hot.events_tail(&t).await.unwrap();
    svc.update_task(
        &admin,
        "t",
        req::<UpdateTaskRequest>(json!({"title": "two"})),
    )
    .await
    .unwrap();
    pull.try_run_once().await.unwrap();
    assert_eq!(f.hot.task(&t).await.unwrap().unwrap().title, "two");
    assert_eq!(svc.task_state(&admin, "t").await.unwrap().title, "two");
    let tail = f.hot.events_tail(&t).await.unwrap();
    assert_ne!(tail, before, "the change was announced");
}

fn pull_loop(f: &ServiceFixture) -> PullLoop {
    PullLoop::new(
        f.durable.clone(),
        f.hot.clone(),
        SyncSettings::default().pull,
    )
}

/// The change feed does not trust writers' clocks: a change stamped earlier than the row
/// already cached (an orchestrator with a slow clock, an explicit timestamp, a restore) is
/// still propagated.
async fn a_backdated_task_change_reaches_the_cache(f: &ServiceFixture) {
    let svc = &f.service;
    let admin = agent("admin");
    svc.create_task(&admin, req(json!({"id": "t", "title": "one"})))
        .await
        .unwrap();
    let mut pull = pull_loop(f);
    pull.try_run_once().await.unwrap();
    let t = TaskId::parse("t").unwrap();
    assert_eq!(f.hot.task(&t).await.unwrap().unwrap().status, "pending");
    f.raw
        .exec(
            "UPDATE tasks SET status = 'late', updated_at = now() - interval '3 seconds'
             WHERE id = 't'",
            "UPDATE tasks SET status = 'late',
                 updated_at = strftime('%Y-%m-%dT%H:%M:%f000Z', 'now', '-3 seconds')
             WHERE id = 't'",
        )
        .await;
    let before = f.hot.events_tail(&t).await.unwrap();
    pull.try_run_once().await.unwrap();
    assert_eq!(
        f.hot.task(&t).await.unwrap().unwrap().status,
        "late",
        "the backdated change reached the cache"
    );
    assert_eq!(svc.task_state(&admin, "t").await.unwrap().status, "late");
    let tail = f.hot.events_tail(&t).await.unwrap();
    assert_ne!(tail, before, "the change was announced");
}

/// Many writers change a few tasks at once, each change stamped with a random time up to
/// 5 s in the past, while a pull loop runs; after a last pull every cached row is the
/// durable one.
async fn concurrent_task_changes_leave_the_cache_at_the_newest_state(f: &ServiceFixture) {
    const TASKS: usize = 6;
    const WRITERS: usize = 8;
    const CHANGES: usize = 25;
    let svc = &f.service;
    let admin = agent("admin");
    for i in 0..TASKS {
        svc.create_task(&admin, req(json!({"id": format!("t{i}")})))
            .await
            .unwrap();
    }
    let mut pull = pull_loop(f);
    pull.try_run_once().await.unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let puller = {
        let stop = stop.clone();
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                pull.try_run_once().await.unwrap();
            }
            pull
        })
    };
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let raw = f.raw.clone();
            tokio::spawn(async move {
                for n in 0..CHANGES {
                    let id = format!("t{}", (w + n) % TASKS);
                    let status = format!("w{w}-n{n}");
                    raw.exec(
                        &format!(
                            "UPDATE tasks SET status = '{status}',
                                 updated_at = now() - random() * interval '5 seconds'
                             WHERE id = '{id}'"
                        ),
                        &format!(
                            "UPDATE tasks SET status = '{status}',
                                 updated_at = strftime('%Y-%m-%dT%H:%M:%f000Z', 'now',
                                     '-' || ((abs(random()) % 5000) / 1000.0) || ' seconds')
                             WHERE id = '{id}'"
                        ),
                    )
                    .await;
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut pull = puller.await.unwrap();
    pull.try_run_once().await.unwrap();
    for i in 0..TASKS {
        let t = TaskId::parse(&format!("t{i}")).unwrap();
        let durable = f.durable.task(&t).await.unwrap().unwrap().state;
        let cached = f.hot.task(&t).await.unwrap().unwrap();
        assert_eq!(cached, durable, "task t{i}: the cache holds the newest row");
    }
}
