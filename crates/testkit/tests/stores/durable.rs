//! The durable store's contract (`store/durable.rs`), on every durable backend.

use crate::fixtures::{DurableFixture, Raw, conflict, durable, durable_raw};
use chrono::{Duration as TimeDelta, Utc};
use mcp_api::StreamId;
use mcp_api::requests::{CreateTaskRequest, UpdateTaskRequest};
use mcp_api::responses::AuditEntry;
use mcp_domain::store::Durable;
use mcp_domain::store::durable::{
    AgentListFilter, AuditFilter, AuditRecord, DeadLetter, FeedMark, FileChange, OutboxBatch,
    PersistedStep, Presence, RevisionOp, StepRecord, TaskListFilter,
};
use mcp_domain::store::group::GroupCommitStats;
use mcp_domain::{DomainError, FilePath, TaskId};
use serde_json::json;
use std::time::Duration;

crate::per_backend!(durable; [postgres, sqlite];
    versions_grow_and_conditions_hold,
    revisions_list_newest_first_and_keep_every_content,
    fences_are_monotonic_and_refuse_stale_writers,
    blind_changes_of_a_fenced_file_need_a_lease_or_a_condition,
    quotas_refuse_growth_but_never_shrinking,
    nul_characters_are_invalid_arguments,
    concurrent_conditional_writers_have_one_winner,
    listing_respects_directories,
    every_change_is_audited_and_filterable,
    tasks_create_update_and_page,
    collaboration_join_leave_rejoin,
    outbox_records_land_once,
    change_listeners_wake_on_task_and_agent_changes,
    task_and_agent_lists_follow_activity,
    outbox_batches_and_writers_never_deadlock,
);

crate::per_backend!(durable_raw; [postgres, sqlite];
    group_commit_gives_each_change_its_own_verdict,
);

fn task(id: &str) -> TaskId {
    TaskId::parse(id).unwrap()
}

fn path(p: &str) -> FilePath {
    FilePath::parse(p).unwrap()
}

/// A change of `content` by agent `a1`, with no condition, fence or quota.
fn change<'a>(t: &'a TaskId, p: &'a FilePath, op: RevisionOp, content: &'a str) -> FileChange<'a> {
    FileChange {
        task: t,
        path: p,
        op,
        content,
        sha256: "sha",
        size: content.len() as i64,
        agent: "a1",
        fence: None,
        expected_version: None,
        diff: None,
        request_id: None,
        max_task_files: None,
        max_task_bytes: None,
    }
}

/// `c` by the holder of fence `fence`.
fn with_fence(fence: i64, c: FileChange<'_>) -> FileChange<'_> {
    FileChange {
        fence: Some(fence),
        ..c
    }
}

/// The paths of task `t`'s live files (and directories), in listing order.
async fn live_paths(s: &Durable, t: &TaskId) -> Vec<String> {
    let files = s.list_files(t, None).await.unwrap();
    files.into_iter().map(|f| f.path).collect()
}

/// The agents collaborating on task `t`.
async fn collaborators_of(s: &Durable, t: &TaskId) -> Vec<String> {
    let rows = s.collaborators(t).await.unwrap();
    rows.into_iter().map(|c| c.agent_id).collect()
}

/// The audit records `filter` selects.
async fn audit_rows(s: &Durable, filter: AuditFilter<'_>) -> Vec<AuditEntry> {
    s.audit(&filter).await.unwrap()
}

/// `c`, on the condition that the file is at version `v` (`0`: that it does not exist).
fn at(v: i64, c: FileChange<'_>) -> FileChange<'_> {
    FileChange {
        expected_version: Some(v),
        ..c
    }
}

async fn versions_grow_and_conditions_hold(f: &DurableFixture) {
    let s = &f.store;
    let (t, p) = (task("t1"), path("src/a.py"));
    assert!(s.file(&t, &p).await.unwrap().is_none());
    let v1 = s
        .change_file(&at(0, change(&t, &p, RevisionOp::Write, "one")))
        .await
        .unwrap();
    assert_eq!(v1.version, 1);
    // Create-only on an existing file: refused, with the current version.
    let err = s
        .change_file(&at(0, change(&t, &p, RevisionOp::Write, "again")))
        .await
        .unwrap_err();
    assert_eq!(conflict(err), (Some(0), Some(1)));
    let v2 = s
        .change_file(&change(&t, &p, RevisionOp::Write, "two"))
        .await
        .unwrap();
    assert_eq!(v2.version, 2);
    assert!(v2.updated_at >= v1.updated_at);
    let v3 = s
        .change_file(&FileChange {
            expected_version: Some(2),
            diff: Some("@@ -1 +1 @@"),
            ..change(&t, &p, RevisionOp::Edit, "three")
        })
        .await
        .unwrap();
    assert_eq!(v3.version, 3);
    let err = s
        .change_file(&at(2, change(&t, &p, RevisionOp::Edit, "late")))
        .await
        .unwrap_err();
    assert_eq!(conflict(err), (Some(2), Some(3)));
    let stored = s.file(&t, &p).await.unwrap().unwrap();
    assert_eq!(
        (stored.version, stored.content.as_str(), stored.deleted),
        (3, "three", false)
    );
    assert_eq!(stored.updated_by.as_deref(), Some("a1"));
    assert_eq!(stored.size, 5);
    // Delete keeps a tombstone at the next version; deleting again finds nothing.
    let v4 = s
        .change_file(&change(&t, &p, RevisionOp::Delete, ""))
        .await
        .unwrap();
    assert_eq!(v4.version, 4);
    let tomb = s.file(&t, &p).await.unwrap().unwrap();
    assert!(tomb.deleted);
    let err = s
        .change_file(&change(&t, &p, RevisionOp::Delete, ""))
        .await
        .unwrap_err();
    assert!(matches!(err, DomainError::FileNotFound(_)), "{err:?}");
    // An edit of a deleted file at its old version: conflict, no current version.
    let err = s
        .change_file(&at(3, change(&t, &p, RevisionOp::Edit, "x")))
        .await
        .unwrap_err();
    assert_eq!(conflict(err), (Some(3), None));
    // Re-creating continues the versions.
    let v5 = s
        .change_file(&at(0, change(&t, &p, RevisionOp::Write, "back")))
        .await
        .unwrap();
    assert_eq!(v5.version, 5);
    // Deleting a file that never existed.
    let err = s
        .change_file(&change(&t, &path("nope"), RevisionOp::Delete, ""))
        .await
        .unwrap_err();
    assert!(matches!(err, DomainError::FileNotFound(_)), "{err:?}");
    // Another task's file of the same path is another file.
    assert!(s.file(&task("t2"), &p).await.unwrap().is_none());
}

async fn revisions_list_newest_first_and_keep_every_content(f: &DurableFixture) {
    let s = &f.store;
    let (t, p) = (task("t1"), path("src/a.py"));
    assert!(s.revisions(&t, &p, None, 10).await.unwrap().is_empty());
    assert!(s.revision_chain(&t, &p, 1, 10).await.unwrap().is_empty());
    s.change_file(&change(&t, &p, RevisionOp::Write, "one\n"))
        .await
        .unwrap();
    s.change_file(&FileChange {
        expected_version: Some(1),
        diff: Some("the diff"),
        fence: None,
        agent: "a2",
        ..change(&t, &p, RevisionOp::Edit, "two\n")
    })
    .await
    .unwrap();
    s.change_file(&change(&t, &p, RevisionOp::Delete, ""))
        .await
        .unwrap();
    s.change_file(&change(&t, &p, RevisionOp::Write, "four\n"))
        .await
        .unwrap();
    // Another file and another task's file of the same path are other histories.
    s.change_file(&change(&t, &path("b"), RevisionOp::Write, "b"))
        .await
        .unwrap();
    s.change_file(&change(&task("t2"), &p, RevisionOp::Write, "other"))
        .await
        .unwrap();

    let all = s.revisions(&t, &p, None, 10).await.unwrap();
    let listed: Vec<(i64, RevisionOp, Option<&str>, Option<i64>)> = all
        .iter()
        .map(|r| (r.version, r.op, r.agent_id.as_deref(), r.size))
        .collect();
    assert_eq!(
        listed,
        [
            (4, RevisionOp::Write, Some("a1"), Some(5)),
            (3, RevisionOp::Delete, Some("a1"), None),
            (2, RevisionOp::Edit, Some("a2"), Some(4)),
            (1, RevisionOp::Write, Some("a1"), Some(4)),
        ]
    );
    assert!(all.iter().all(|r| r.content.is_none() && r.diff.is_none()));
    assert_eq!(all[0].sha256.as_deref(), Some("sha"));
    assert!(all[0].created_at >= all[3].created_at);
    // Paging: older than a version, at most a limit.
    let page: Vec<i64> = s
        .revisions(&t, &p, Some(3), 1)
        .await
        .unwrap()
        .iter()
        .map(|r| r.version)
        .collect();
    assert_eq!(page, [2]);
    assert!(s.revisions(&t, &p, Some(1), 10).await.unwrap().is_empty());

    // Every write and edit carries its content (an edit its diff too): one row per version.
    let two = s.revision_chain(&t, &p, 2, 10).await.unwrap();
    assert_eq!(two.len(), 1, "{two:?}");
    assert_eq!(
        (
            two[0].version,
            two[0].content.as_deref(),
            two[0].diff.as_deref()
        ),
        (2, Some("two\n"), Some("the diff"))
    );
    let three = s.revision_chain(&t, &p, 3, 10).await.unwrap();
    assert_eq!(
        (three.len(), three[0].op, three[0].content.as_deref()),
        (1, RevisionOp::Delete, None)
    );
    // A version past the newest: the chain starts at an older one.
    let past = s.revision_chain(&t, &p, 9, 10).await.unwrap();
    assert_eq!(past.first().map(|r| r.version), Some(4));
}

async fn fences_are_monotonic_and_refuse_stale_writers(f: &DurableFixture) {
    let s = &f.store;
    let mut last = 0;
    for _ in 0..20 {
        let fence = s.next_fence().await.unwrap();
        assert!(fence > last, "{fence} after {last}");
        last = fence;
    }
    let (t, p) = (task("t1"), path("a"));
    let high = s.next_fence().await.unwrap();
    s.change_file(&with_fence(high, change(&t, &p, RevisionOp::Write, "x")))
        .await
        .unwrap();
    let err = s
        .change_file(&with_fence(
            high - 1,
            change(&t, &p, RevisionOp::Write, "late"),
        ))
        .await
        .unwrap_err();
    match err {
        DomainError::StaleFence { fence, last_fence } => {
            assert_eq!((fence, last_fence), (high - 1, high))
        }
        other => panic!("{other:?}"),
    }
    // A stale fence is reported before a version conflict.
    let err = s
        .change_file(&FileChange {
            fence: Some(high - 1),
            expected_version: Some(7),
            ..change(&t, &p, RevisionOp::Edit, "late")
        })
        .await
        .unwrap_err();
    assert!(matches!(err, DomainError::StaleFence { .. }), "{err:?}");
    // The same fence again, and a conditional write without a lease, pass.
    let same = s
        .change_file(&with_fence(high, change(&t, &p, RevisionOp::Write, "y")))
        .await
        .unwrap();
    let free = s
        .change_file(&at(2, change(&t, &p, RevisionOp::Write, "z")))
        .await
        .unwrap();
    assert_eq!((same.version, free.version), (2, 3));
    // Deletes are fenced too.
    let err = s
        .change_file(&with_fence(1, change(&t, &p, RevisionOp::Delete, "")))
        .await
        .unwrap_err();
    assert!(matches!(err, DomainError::StaleFence { .. }), "{err:?}");
}

/// The fence rule, part 3 (docs/ARCHITECTURE.md "The fence rule"): once a file has been
/// written under a lease (`last_fence` > 0), a change without a fence must be conditional
/// (`expected_version`), else it is refused with `lease_required` and changes nothing; a file
/// never written under a lease keeps last-write-wins.
async fn blind_changes_of_a_fenced_file_need_a_lease_or_a_condition(f: &DurableFixture) {
    let s = &f.store;
    let t = task("t1");
    // Never fenced: blind writes and deletes pass, as before.
    let free = path("free");
    for content in ["a", "b"] {
        s.change_file(&change(&t, &free, RevisionOp::Write, content))
            .await
            .unwrap();
    }
    s.change_file(&change(&t, &free, RevisionOp::Delete, ""))
        .await
        .unwrap();
    // Written under a lease.
    let p = path("fenced");
    let fence = s.next_fence().await.unwrap();
    s.change_file(&with_fence(
        fence,
        change(&t, &p, RevisionOp::Write, "holder"),
    ))
    .await
    .unwrap();
    for blind in [
        change(&t, &p, RevisionOp::Write, "late"),
        change(&t, &p, RevisionOp::Delete, ""),
    ] {
        match s.change_file(&blind).await.unwrap_err() {
            DomainError::LeaseRequired { path, last_fence } => {
                assert_eq!((path.as_str(), last_fence), ("fenced", fence));
            }
            other => panic!("{:?}: {other:?}", blind.op),
        }
    }
    let row = s.file(&t, &p).await.unwrap().unwrap();
    assert_eq!((row.version, row.content.as_str()), (1, "holder"));
    // A conditional change passes when nothing changed, and conflicts when something did.
    let err = s
        .change_file(&at(7, change(&t, &p, RevisionOp::Write, "late")))
        .await
        .unwrap_err();
    assert_eq!(conflict(err).1, Some(1));
    let v2 = s
        .change_file(&at(1, change(&t, &p, RevisionOp::Edit, "edited")))
        .await
        .unwrap();
    assert_eq!(v2.version, 2);
    // The fence is remembered across a conditional delete: re-creating the file blindly is
    // refused, re-creating it only-if-absent (`expected_version: 0`) is a condition and passes.
    s.change_file(&at(2, change(&t, &p, RevisionOp::Delete, "")))
        .await
        .unwrap();
    let err = s
        .change_file(&change(&t, &p, RevisionOp::Write, "blind"))
        .await
        .unwrap_err();
    assert!(matches!(err, DomainError::LeaseRequired { .. }), "{err:?}");
    let v4 = s
        .change_file(&at(0, change(&t, &p, RevisionOp::Write, "again")))
        .await
        .unwrap();
    assert_eq!(v4.version, 4);
    // A newer holder's fence passes, without a condition.
    let next = s.next_fence().await.unwrap();
    s.change_file(&with_fence(
        next,
        change(&t, &p, RevisionOp::Write, "next holder"),
    ))
    .await
    .unwrap();
}

/// `c` under the quotas (live files, live bytes).
fn quota(c: FileChange<'_>, files: i64, bytes: i64) -> FileChange<'_> {
    FileChange {
        max_task_files: Some(files),
        max_task_bytes: Some(bytes),
        ..c
    }
}

async fn quotas_refuse_growth_but_never_shrinking(f: &DurableFixture) {
    let s = &f.store;
    let (t, a, b, c) = (task("q"), path("a"), path("b"), path("c"));
    s.change_file(&quota(change(&t, &a, RevisionOp::Write, "1234"), 2, 10))
        .await
        .unwrap();
    s.change_file(&quota(change(&t, &b, RevisionOp::Write, "1234"), 2, 10))
        .await
        .unwrap();
    let err = s
        .change_file(&quota(change(&t, &c, RevisionOp::Write, "1"), 2, 10))
        .await
        .unwrap_err();
    match &err {
        DomainError::QuotaExceeded { what, limit } => {
            assert_eq!((what.as_str(), *limit), ("files", 2))
        }
        other => panic!("{other:?}"),
    }
    assert!(
        s.file(&t, &c).await.unwrap().is_none(),
        "a refused change left a row"
    );
    let err = s
        .change_file(&quota(
            change(&t, &a, RevisionOp::Write, "123456789"),
            2,
            10,
        ))
        .await
        .unwrap_err();
    match &err {
        DomainError::QuotaExceeded { what, limit } => {
            assert_eq!((what.as_str(), *limit), ("bytes", 10))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.file(&t, &a).await.unwrap().unwrap().version, 1);
    // Shrinking passes even under a lowered quota; deleting frees room.
    s.change_file(&quota(change(&t, &a, RevisionOp::Write, "12"), 1, 1))
        .await
        .unwrap();
    s.change_file(&quota(change(&t, &b, RevisionOp::Delete, ""), 1, 1))
        .await
        .unwrap();
    s.change_file(&quota(change(&t, &c, RevisionOp::Write, "1"), 2, 10))
        .await
        .unwrap();
    // Another task has its own usage.
    s.change_file(&quota(
        change(&task("q2"), &a, RevisionOp::Write, "1"),
        1,
        1,
    ))
    .await
    .unwrap();
}

async fn nul_characters_are_invalid_arguments(f: &DurableFixture) {
    let s = &f.store;
    let (t, p) = (task("t"), path("a"));
    let err = s
        .change_file(&change(&t, &p, RevisionOp::Write, "a\0b"))
        .await
        .unwrap_err();
    assert!(matches!(err, DomainError::InvalidArgument(_)), "{err:?}");
    assert!(s.file(&t, &p).await.unwrap().is_none());
}

async fn concurrent_conditional_writers_have_one_winner(f: &DurableFixture) {
    let s = f.store.clone();
    let (t, p) = (task("race"), path("f"));
    s.change_file(&change(&t, &p, RevisionOp::Write, "base"))
        .await
        .unwrap();
    let mut writers = Vec::new();
    for i in 0..20 {
        let s = s.clone();
        let (t, p) = (t.clone(), p.clone());
        writers.push(tokio::spawn(async move {
            let content = format!("writer {i}");
            s.change_file(&at(1, change(&t, &p, RevisionOp::Edit, &content)))
                .await
        }));
    }
    let mut won = 0;
    for w in writers {
        match w.await.unwrap() {
            Ok(c) => {
                assert_eq!(c.version, 2);
                won += 1;
            }
            Err(DomainError::VersionConflict {
                current: Some(2), ..
            }) => {}
            Err(e) => panic!("unexpected refusal: {e:?}"),
        }
    }
    assert_eq!(won, 1);
    // Unconditional writers all land, each at its own version.
    let mut writers = Vec::new();
    for i in 0..10 {
        let s = s.clone();
        let (t, p) = (t.clone(), p.clone());
        writers.push(tokio::spawn(async move {
            let content = format!("w{i}");
            s.change_file(&change(&t, &p, RevisionOp::Write, &content))
                .await
                .unwrap()
                .version
        }));
    }
    let mut versions = Vec::new();
    for w in writers {
        versions.push(w.await.unwrap());
    }
    versions.sort();
    assert_eq!(versions, (3..13).collect::<Vec<_>>());
}

async fn listing_respects_directories(f: &DurableFixture) {
    let s = &f.store;
    let t = task("t");
    for p in ["src/a.py", "src/b/c.py", "srcx/d.py", "src", "top.md"] {
        s.change_file(&change(&t, &path(p), RevisionOp::Write, "x"))
            .await
            .unwrap();
    }
    s.change_file(&change(&t, &path("src/gone.py"), RevisionOp::Write, "x"))
        .await
        .unwrap();
    s.change_file(&change(&t, &path("src/gone.py"), RevisionOp::Delete, ""))
        .await
        .unwrap();
    let all = live_paths(s, &t).await;
    assert_eq!(
        all,
        ["src", "src/a.py", "src/b/c.py", "srcx/d.py", "top.md"]
    );
    let under: Vec<String> = s
        .list_files(&t, Some(&path("src")))
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.path)
        .collect();
    assert_eq!(under, ["src", "src/a.py", "src/b/c.py"]);
    let info = &s.list_files(&t, Some(&path("top.md"))).await.unwrap()[0];
    assert_eq!(
        (info.version, info.size, info.updated_by.as_deref()),
        (1, 1, Some("a1"))
    );
    assert!(s.list_files(&task("empty"), None).await.unwrap().is_empty());
}

async fn every_change_is_audited_and_filterable(f: &DurableFixture) {
    let s = &f.store;
    let (t, p) = (task("t"), path("a"));
    let fence = s.next_fence().await.unwrap();
    s.change_file(&FileChange {
        fence: Some(fence),
        request_id: Some("r1"),
        ..change(&t, &p, RevisionOp::Write, "x")
    })
    .await
    .unwrap();
    s.change_file(&FileChange {
        agent: "a2",
        // Unleased, so conditional: the file was written under a lease (the fence rule).
        expected_version: Some(1),
        ..change(&t, &p, RevisionOp::Delete, "")
    })
    .await
    .unwrap();
    s.change_file(&change(&task("other"), &p, RevisionOp::Write, "x"))
        .await
        .unwrap();
    let all = audit_rows(
        s,
        AuditFilter {
            limit: 100,
            ..AuditFilter::default()
        },
    )
    .await;
    assert_eq!(all.len(), 3);
    assert!(all.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    let write = all
        .iter()
        .find(|e| e.action == "file_write" && e.task_id.as_deref() == Some("t"))
        .unwrap();
    assert_eq!(write.actor, "a1");
    assert_eq!(write.path.as_deref(), Some("a"));
    assert_eq!((write.version, write.fence), (Some(1), Some(fence)));
    assert_eq!(write.request_id.as_deref(), Some("r1"));
    let by_agent = audit_rows(
        s,
        AuditFilter {
            agent: Some("a2"),
            limit: 100,
            ..AuditFilter::default()
        },
    )
    .await;
    assert_eq!(by_agent.len(), 1);
    assert_eq!(by_agent[0].action, "delete_file");
    assert_eq!(by_agent[0].version, Some(2));
    let scope = vec!["other".to_owned()];
    let scoped = audit_rows(
        s,
        AuditFilter {
            tasks_in: Some(&scope),
            limit: 100,
            ..AuditFilter::default()
        },
    )
    .await;
    assert_eq!(scoped.len(), 1);
    let page = audit_rows(
        s,
        AuditFilter {
            task: Some("t"),
            before_id: Some(all[0].id),
            limit: 1,
            ..AuditFilter::default()
        },
    )
    .await;
    assert_eq!(page.len(), 1);
    assert!(page[0].id < all[0].id);
    let recent = audit_rows(
        s,
        AuditFilter {
            since: Some(Utc::now() + TimeDelta::hours(1)),
            limit: 100,
            ..AuditFilter::default()
        },
    )
    .await;
    assert!(recent.is_empty());
    let actions = audit_rows(
        s,
        AuditFilter {
            action: Some("file_write"),
            limit: 100,
            ..AuditFilter::default()
        },
    )
    .await;
    assert_eq!(actions.len(), 2);
}

async fn tasks_create_update_and_page(f: &DurableFixture) {
    let s = &f.store;
    let before = s.db_now().await.unwrap();
    let created = s
        .create_task(
            &task("t1"),
            &CreateTaskRequest {
                title: "Build it".into(),
                description: Some("desc".into()),
                assigned_agent_id: Some("coder".into()),
                complexity: Some(0.5),
                ..CreateTaskRequest::default()
            },
            "admin",
            Some("req-1"),
        )
        .await
        .unwrap();
    let created_seq = created.seq;
    let created = created.state;
    assert_eq!(created.id, "t1");
    assert_eq!(created.status, "pending");
    assert_eq!(created.description.as_deref(), Some("desc"));
    assert!(created.created_at >= before - TimeDelta::seconds(1));
    let err = s
        .create_task(&task("t1"), &CreateTaskRequest::default(), "admin", None)
        .await
        .unwrap_err();
    assert!(matches!(err, DomainError::TaskExists(_)), "{err:?}");
    tokio::time::sleep(Duration::from_millis(5)).await;
    let updated = s
        .update_task(
            &task("t1"),
            &UpdateTaskRequest {
                status: Some("in_progress".into()),
                description: Some(None),
                ..UpdateTaskRequest::default()
            },
            "admin",
            None,
        )
        .await
        .unwrap()
        .unwrap();
    assert!(
        updated.seq > created_seq,
        "each change takes a higher number"
    );
    assert_eq!(s.task(&task("t1")).await.unwrap().unwrap(), updated);
    let updated_seq = updated.seq;
    let updated = updated.state;
    assert_eq!(updated.status, "in_progress");
    assert_eq!(updated.title, "Build it", "absent fields are kept");
    assert_eq!(updated.description, None, "null clears");
    assert_eq!(updated.assigned_agent_id.as_deref(), Some("coder"));
    assert!(updated.updated_at > created.updated_at);
    assert!(
        s.update_task(&task("nope"), &UpdateTaskRequest::default(), "admin", None)
            .await
            .unwrap()
            .is_none()
    );
    assert!(s.task(&task("nope")).await.unwrap().is_none());
    for id in ["t3", "t2", "t4"] {
        s.create_task(&task(id), &CreateTaskRequest::default(), "admin", None)
            .await
            .unwrap();
    }
    assert_eq!(s.task_ids(None, 2).await.unwrap(), ["t1", "t2"]);
    assert_eq!(s.task_ids(Some("t2"), 10).await.unwrap(), ["t3", "t4"]);
    // The change feed, in commit order: t1 was updated before the others were created.
    let page = s.tasks_after(FeedMark::default(), 10).await.unwrap();
    let order: Vec<&str> = page.iter().map(|t| t.row.id.as_str()).collect();
    assert_eq!(order, ["t1", "t3", "t2", "t4"]);
    assert!(page.windows(2).all(|w| w[0].mark < w[1].mark));
    assert_eq!(page[0].mark.seq, updated_seq);
    // (Whether a row is settled depends on every transaction of the Postgres cluster, which
    // other tests share: not asserted here; `mcp-sync`'s late-commit test covers it.)
    let rest = s.tasks_after(page[0].mark, 10).await.unwrap();
    assert_eq!(rest.len(), 3);
    // A change stamped in the past still comes last in the feed.
    s.update_task(
        &task("t3"),
        &UpdateTaskRequest {
            status: Some("late".into()),
            ..UpdateTaskRequest::default()
        },
        "admin",
        None,
    )
    .await
    .unwrap();
    let tail = s.tasks_after(page[3].mark, 10).await.unwrap();
    let order: Vec<&str> = tail.iter().map(|t| t.row.id.as_str()).collect();
    assert_eq!(order, ["t3"]);
    let audits = audit_rows(
        s,
        AuditFilter {
            task: Some("t1"),
            limit: 10,
            ..AuditFilter::default()
        },
    )
    .await;
    let actions: Vec<&str> = audits.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(actions, ["task_update", "task_create"]);
    assert_eq!(audits[1].request_id.as_deref(), Some("req-1"));
}

async fn collaboration_join_leave_rejoin(f: &DurableFixture) {
    let s = &f.store;
    let t = task("t");
    assert!(s.agent("a1").await.unwrap().is_none());
    let first = s.join(&t, "a1", None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let again = s.join(&t, "a1", None).await.unwrap();
    assert_eq!(first, again, "joining twice keeps the join time");
    s.join(&t, "a2", None).await.unwrap();
    s.join(&task("u"), "a1", None).await.unwrap();
    let members = collaborators_of(s, &t).await;
    assert_eq!(members, ["a1", "a2"]);
    let Presence {
        last_seen: seen,
        task: current,
        tasks,
    } = s.agent("a1").await.unwrap().unwrap();
    assert!(seen.is_some());
    assert_eq!(current.as_deref(), Some("u"));
    assert_eq!(tasks, ["t", "u"]);
    assert!(s.leave(&t, "a1", None).await.unwrap());
    assert!(
        !s.leave(&t, "a1", None).await.unwrap(),
        "not a member any more"
    );
    assert!(!s.leave(&t, "ghost", None).await.unwrap());
    let members = collaborators_of(s, &t).await;
    assert_eq!(members, ["a2"]);
    assert_eq!(s.agent("a1").await.unwrap().unwrap().tasks, ["u"]);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let rejoined = s.join(&t, "a1", None).await.unwrap();
    assert!(rejoined > first, "a re-join starts a new session");
    let actions: Vec<String> = audit_rows(
        s,
        AuditFilter {
            task: Some("t"),
            agent: Some("a1"),
            limit: 10,
            ..AuditFilter::default()
        },
    )
    .await
    .into_iter()
    .map(|a| a.action)
    .collect();
    assert_eq!(
        actions,
        [
            "join_collab",
            "leave_collab",
            "leave_collab",
            "join_collab",
            "join_collab"
        ]
    );
    let agents = s.agents_after(FeedMark::default(), 10).await.unwrap();
    let ids: Vec<&str> = agents.iter().map(|a| a.row.id.as_str()).collect();
    assert!(ids.contains(&"a1") && ids.contains(&"a2"), "{ids:?}");
}

fn step(task: &str, ms: i64, seq: i64) -> StepRecord {
    StepRecord {
        task_id: task.into(),
        stream_id: format!("{ms}-{seq}"),
        id_ms: ms,
        id_seq: seq,
        agent_id: Some("a1".into()),
        step: json!({"n": ms * 10 + seq}),
        logged_at: Utc::now(),
    }
}

async fn outbox_records_land_once(f: &DurableFixture) {
    let s = &f.store;
    let audit = AuditRecord {
        source_id: "9-0".into(),
        at: Utc::now(),
        actor: "a1".into(),
        action: "claim_file".into(),
        task_id: Some("t".into()),
        path: Some("a".into()),
        version: None,
        fence: Some(4),
        request_id: None,
        detail: json!({"action": "claim_file"}),
    };
    let batch = OutboxBatch {
        steps: vec![
            step("t", 1, 0),
            step("t", 1, 1),
            step("t", 2, 0),
            step("u", 1, 0),
        ],
        audits: vec![audit.clone()],
        dead: vec![DeadLetter {
            source_id: "8-0".into(),
            kind: Some("bogus".into()),
            payload: "{}".into(),
            error: "unknown kind".into(),
        }],
    };
    s.persist_outbox_batch(&batch).await.unwrap();
    s.persist_outbox_batch(&batch).await.unwrap();
    assert!(!s.insert_step(&step("t", 1, 0)).await.unwrap());
    assert!(s.insert_step(&step("t", 3, 0)).await.unwrap());
    assert!(!s.insert_audit(&audit).await.unwrap());
    let newest: Vec<String> = s
        .steps_before(&task("t"), None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id.to_string())
        .collect();
    assert_eq!(newest, ["3-0", "2-0", "1-1", "1-0"]);
    let page = s
        .steps_before(&task("t"), Some(StreamId { ms: 2, seq: 0 }), 10)
        .await
        .unwrap();
    assert_eq!(page.len(), 2);
    assert_eq!(
        page[0],
        PersistedStep {
            id: StreamId { ms: 1, seq: 1 },
            step: json!({"n": 11})
        }
    );
    let audits = audit_rows(
        s,
        AuditFilter {
            action: Some("claim_file"),
            limit: 10,
            ..AuditFilter::default()
        },
    )
    .await;
    assert_eq!(audits.len(), 1);
    assert_eq!(audits[0].fence, Some(4));
    let dead = s.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 1);
    assert!(!s.insert_dead_letter(&batch.dead[0]).await.unwrap());
    assert_eq!(dead[0].source_id, "8-0");
}

async fn change_listeners_wake_on_task_and_agent_changes(f: &DurableFixture) {
    let s = &f.store;
    let mut listener = s.listen_changes().await.unwrap();
    s.create_task(&task("t"), &CreateTaskRequest::default(), "admin", None)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), listener.changed())
        .await
        .expect("woken by a task change")
        .unwrap();
    s.join(&task("t"), "a1", None).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), listener.changed())
        .await
        .expect("woken by an agent change")
        .unwrap();
}

/// The task and agent lists: every task anything happened in (created, a file, a member, a
/// step), most recently active first, filtered and paged; every agent that acted, with its
/// last action and its sessions.
async fn task_and_agent_lists_follow_activity(f: &DurableFixture) {
    let s = &f.store;
    let pause = || tokio::time::sleep(Duration::from_millis(5));
    s.create_task(
        &task("parser"),
        &CreateTaskRequest {
            title: "Build the 100% parser".into(),
            assigned_agent_id: Some("coder".into()),
            ..CreateTaskRequest::default()
        },
        "admin",
        None,
    )
    .await
    .unwrap();
    pause().await;
    // A task nobody created: agents just use it.
    let (t, p) = (task("scratch"), path("notes.md"));
    s.change_file(&change(&t, &p, RevisionOp::Write, "hello"))
        .await
        .unwrap();
    pause().await;
    s.join(&task("parser"), "qa", None).await.unwrap();
    pause().await;
    let step = |n: i64| StepRecord {
        task_id: "steps-only".into(),
        stream_id: format!("{n}-0"),
        id_ms: n,
        id_seq: 0,
        agent_id: Some("w1".into()),
        step: json!({"action": "x"}),
        logged_at: Utc::now(),
    };
    assert!(s.insert_step(&step(1)).await.unwrap());
    assert!(s.insert_step(&step(2)).await.unwrap());
    assert!(
        !s.insert_step(&step(2)).await.unwrap(),
        "a replay counts once"
    );

    let list = |f: TaskListFilter<'static>| async move {
        let (tasks, total) = s.list_tasks(&f).await.unwrap();
        let ids: Vec<String> = tasks.iter().map(|t| t.task_id.clone()).collect();
        (ids, total, tasks)
    };
    let all = || TaskListFilter {
        limit: 10,
        ..TaskListFilter::default()
    };
    let (ids, total, tasks) = list(all()).await;
    assert_eq!(
        ids,
        ["steps-only", "parser", "scratch"],
        "most recent first"
    );
    assert_eq!(total, 3);
    let parser = &tasks[1];
    assert_eq!(parser.title.as_deref(), Some("Build the 100% parser"));
    assert_eq!(parser.status.as_deref(), Some("pending"));
    assert_eq!(parser.assigned_agent_id.as_deref(), Some("coder"));
    assert_eq!(parser.agents, ["qa"]);
    assert_eq!((parser.file_count, parser.step_count), (0, 0));
    assert!(
        parser.last_activity > parser.first_seen,
        "the join came later"
    );
    assert_eq!((tasks[0].step_count, tasks[0].title.clone()), (2, None));
    assert_eq!((tasks[2].file_count, tasks[2].status.clone()), (1, None));

    // Filters: text (case-insensitive; wildcards are literal), status, agent, scope.
    let f = |text, status, agent, tasks_in| TaskListFilter {
        text,
        status,
        agent,
        tasks_in,
        limit: 10,
        ..TaskListFilter::default()
    };
    assert_eq!(
        list(f(Some("PARSER"), None, None, None)).await.0,
        ["parser"]
    );
    assert_eq!(list(f(Some("100%"), None, None, None)).await.0, ["parser"]);
    assert_eq!(list(f(Some("1_0"), None, None, None)).await.1, 0);
    assert_eq!(list(f(Some("%"), None, None, None)).await.0, ["parser"]);
    assert_eq!(
        list(f(None, Some("pending"), None, None)).await.0,
        ["parser"]
    );
    assert_eq!(list(f(None, None, Some("qa"), None)).await.0, ["parser"]);
    assert_eq!(list(f(None, None, Some("coder"), None)).await.0, ["parser"]);
    static SCOPE: std::sync::LazyLock<Vec<String>> =
        std::sync::LazyLock::new(|| vec!["scratch".into(), "elsewhere".into()]);
    let (ids, total, _) = list(f(None, None, None, Some(&SCOPE))).await;
    assert_eq!((ids, total), (vec!["scratch".to_owned()], 1));

    // Keyset pages: no entry twice, none missed.
    let (first, total, tasks) = list(TaskListFilter {
        limit: 2,
        ..TaskListFilter::default()
    })
    .await;
    assert_eq!((first.len(), total), (2, 3));
    let last = &tasks[1];
    let (rest, _, _) = s
        .list_tasks(&TaskListFilter {
            after: Some((last.last_activity, last.task_id.as_str())),
            limit: 2,
            ..TaskListFilter::default()
        })
        .await
        .map(|(t, n)| (t.into_iter().map(|t| t.task_id).collect::<Vec<_>>(), n, ()))
        .unwrap();
    assert_eq!(rest, ["scratch"]);

    // New activity moves a task to the top.
    pause().await;
    s.change_file(&change(&t, &p, RevisionOp::Edit, "hello again"))
        .await
        .unwrap();
    assert_eq!(list(all()).await.0[0], "scratch");

    // Agents: their last action, most recently seen first, and their sessions.
    let (agents, total) = s
        .list_agents(&AgentListFilter {
            limit: 10,
            ..AgentListFilter::default()
        })
        .await
        .unwrap();
    let seen: Vec<(&str, &str, Option<&str>)> = agents
        .iter()
        .map(|a| {
            (
                a.agent_id.as_str(),
                a.last_action.as_str(),
                a.last_task.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("a1", "file_edit", Some("scratch")),
            ("w1", "log_step", Some("steps-only")),
            ("qa", "join_collab", Some("parser")),
            ("admin", "task_create", Some("parser")),
        ]
    );
    assert_eq!(total, 4);
    assert_eq!(agents[2].tasks, ["parser"]);
    let on = |task, text| AgentListFilter {
        task,
        text,
        limit: 10,
        ..AgentListFilter::default()
    };
    let ids = |v: Vec<mcp_domain::store::durable::AgentActivity>| {
        v.into_iter().map(|a| a.agent_id).collect::<Vec<_>>()
    };
    let (v, _) = s.list_agents(&on(Some("parser"), None)).await.unwrap();
    assert_eq!(ids(v), ["qa", "admin"]);
    let (v, _) = s.list_agents(&on(None, Some("W"))).await.unwrap();
    assert_eq!(ids(v), ["w1"]);
    let (v, n) = s
        .list_agents(&AgentListFilter {
            tasks_in: Some(&SCOPE),
            limit: 10,
            ..AgentListFilter::default()
        })
        .await
        .unwrap();
    assert_eq!((ids(v), n), (vec!["a1".to_owned()], 1));
}

/// The activity indexes are kept by triggers in writers' transactions: a one-statement writer
/// (a join, a file change) and a many-statement outbox batch (steps, then audits) over the same
/// tasks and agents, at once and over and over, must never deadlock (Postgres would abort one
/// of them after `deadlock_timeout`: a 500 for the writer).
async fn outbox_batches_and_writers_never_deadlock(f: &DurableFixture) {
    let s = &f.store;
    const TASKS: [&str; 4] = ["d0", "d1", "d2", "d3"];
    const AGENTS: [&str; 3] = ["x", "y", "z"];
    let batches = async {
        for i in 0..40usize {
            let step = |t: usize, a: usize, seq: i64| StepRecord {
                agent_id: Some(AGENTS[a % 3].into()),
                ..step(TASKS[t % 4], i as i64 + 1, seq)
            };
            let audit = |t: usize, a: usize, n: usize| AuditRecord {
                source_id: format!("{i}-{n}"),
                at: Utc::now(),
                actor: AGENTS[a % 3].into(),
                action: "claim_file".into(),
                task_id: Some(TASKS[t % 4].into()),
                path: Some("p".into()),
                version: None,
                fence: None,
                request_id: None,
                detail: json!({}),
            };
            let batch = OutboxBatch {
                steps: vec![step(i, i, 0), step(i + 1, i + 1, 1)],
                audits: vec![audit(i + 2, i + 2, 0), audit(i + 3, i, 1)],
                dead: vec![],
            };
            s.persist_outbox_batch(&batch).await.unwrap();
        }
    };
    let writer = |k: usize| async move {
        for i in 0..60usize {
            let t = task(TASKS[(i + k) % 4]);
            s.join(&t, AGENTS[(i / 4 + k) % 3], None).await.unwrap();
        }
    };
    tokio::join!(batches, writer(0), writer(1), writer(2));
    let (tasks, _) = s
        .list_tasks(&TaskListFilter {
            limit: 10,
            ..TaskListFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(tasks.iter().map(|t| t.step_count).sum::<i64>(), 80);
}

/// A deadlock or a serialization failure in Postgres (SQLSTATE 40P01, 40001) rolled the
/// transaction back and will likely pass on a retry: it is `unavailable` (503 with
/// Retry-After, which the client retries), not `internal` (500). Made here for real: two
/// transactions that take two rows' locks in opposite orders.
#[tokio::test]
async fn a_postgres_deadlock_is_retryable_not_internal() {
    let db = mcp_testkit::TestDb::create().await;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&db.url)
        .await
        .unwrap();
    for sql in [
        "CREATE TABLE pair (id int PRIMARY KEY, n int)",
        "INSERT INTO pair VALUES (1, 0), (2, 0)",
    ] {
        sqlx::query(sql).execute(&pool).await.unwrap();
    }
    let (mut a, mut b) = (pool.begin().await.unwrap(), pool.begin().await.unwrap());
    let bump = |id: i32| sqlx::query("UPDATE pair SET n = n + 1 WHERE id = $1").bind(id);
    bump(1).execute(&mut *a).await.unwrap();
    bump(2).execute(&mut *b).await.unwrap();
    // Each now waits for the other's row; Postgres aborts one of them after deadlock_timeout.
    let (ra, rb) = tokio::join!(bump(2).execute(&mut *a), bump(1).execute(&mut *b));
    let failed = match (ra, rb) {
        (Err(e), Ok(_)) | (Ok(_), Err(e)) => e,
        other => panic!("one of the two is aborted: {other:?}"),
    };
    let error = DomainError::from(failed);
    assert_eq!(error.code(), mcp_api::ErrorCode::Unavailable, "{error:?}");
    drop((a, b));
    pool.close().await;
}

/// The store's writer held behind its back, so that changes pile up in the group-commit queue:
/// Postgres's `files` locked against writes, SQLite's one writer connection taken.
enum Held {
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
}

async fn hold_writer(raw: &Raw) -> Held {
    match raw {
        Raw::Postgres(pg) => {
            let mut tx = pg.pool().begin().await.unwrap();
            sqlx::query("LOCK TABLE files IN EXCLUSIVE MODE")
                .execute(&mut *tx)
                .await
                .unwrap();
            Held::Postgres(tx)
        }
        Raw::Sqlite(lite) => Held::Sqlite(lite.pool().begin_with("BEGIN IMMEDIATE").await.unwrap()),
    }
}

async fn release_writer(held: Held) {
    match held {
        Held::Postgres(tx) => tx.rollback().await.unwrap(),
        Held::Sqlite(tx) => tx.rollback().await.unwrap(),
    }
}

/// Group commit (issue #19): changes that arrive while a batch commits share the next
/// transaction, and each keeps its own verdict: of a dozen concurrent changes, the stale
/// versions, the stale fence, the delete of a missing file and the files over the quota are
/// refused, each with its own reason and without a trace, and every other change commits with
/// its revision and audit record. The store's counters show the dozen took at most two
/// transactions (the first change's, which waited for the held writer, and one for the rest).
async fn group_commit_gives_each_change_its_own_verdict((f, raw): &(DurableFixture, Raw)) {
    let s = f.store.clone();
    let t = task("g");
    let (v, fenced) = (path("v"), path("fenced"));
    s.change_file(&change(&t, &v, RevisionOp::Write, "v1"))
        .await
        .unwrap();
    let fence = s.next_fence().await.unwrap();
    s.change_file(&with_fence(
        fence,
        change(&t, &fenced, RevisionOp::Write, "f1"),
    ))
    .await
    .unwrap();

    /// What a change of the pile-up is and what it must be answered.
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Kind {
        /// One of three edits of `v` at version 1: exactly one wins.
        Race,
        /// An edit of `v` at a version it never had.
        Stale,
        /// A write of `fenced` with a fence lower than its last one.
        StaleFence,
        /// A delete of a file that does not exist.
        Missing,
        /// A new file; the task's quota (5 live files, 2 already there) admits 3 of 6.
        New,
    }
    let kinds = [
        Kind::Race,
        Kind::New,
        Kind::Stale,
        Kind::New,
        Kind::Race,
        Kind::StaleFence,
        Kind::New,
        Kind::Missing,
        Kind::New,
        Kind::Race,
        Kind::New,
        Kind::New,
    ];
    let before = s.group_commit_stats();
    let held = hold_writer(raw).await;
    let mut changes = Vec::new();
    for (i, kind) in kinds.into_iter().enumerate() {
        let s = s.clone();
        let t = t.clone();
        changes.push(tokio::spawn(async move {
            let p = match kind {
                Kind::Race | Kind::Stale => path("v"),
                Kind::StaleFence => path("fenced"),
                Kind::Missing => path("missing"),
                Kind::New => path(&format!("new{i}")),
            };
            let content = format!("change {i}");
            let c = FileChange {
                max_task_files: Some(5),
                ..change(&t, &p, RevisionOp::Write, &content)
            };
            let c = match kind {
                Kind::Race => FileChange {
                    op: RevisionOp::Edit,
                    expected_version: Some(1),
                    ..c
                },
                Kind::Stale => FileChange {
                    op: RevisionOp::Edit,
                    expected_version: Some(7),
                    ..c
                },
                Kind::StaleFence => FileChange {
                    fence: Some(fence - 1),
                    ..c
                },
                Kind::Missing => FileChange {
                    op: RevisionOp::Delete,
                    content: "",
                    ..c
                },
                Kind::New => c,
            };
            let answer = s.change_file(&c).await;
            (kind, p, answer)
        }));
    }
    // Every change is submitted: in the first batch (waiting for the writer) or queued.
    let submitted = |st: GroupCommitStats| st.queued + st.running;
    for _ in 0..10_000 {
        if submitted(s.group_commit_stats()) >= kinds.len() as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(submitted(s.group_commit_stats()), kinds.len() as u64);
    release_writer(held).await;

    let (mut race_won, mut created, mut over_quota) = (0, Vec::new(), 0);
    for c in changes {
        let (kind, p, answer) = c.await.unwrap();
        match (kind, answer) {
            (Kind::Race, Ok(c)) => {
                assert_eq!(c.version, 2);
                race_won += 1;
            }
            (
                Kind::Race,
                Err(DomainError::VersionConflict {
                    current: Some(2), ..
                }),
            ) => {}
            (
                Kind::Stale,
                Err(DomainError::VersionConflict {
                    expected: Some(7), ..
                }),
            ) => {}
            (Kind::StaleFence, Err(DomainError::StaleFence { last_fence, .. })) => {
                assert_eq!(last_fence, fence)
            }
            (Kind::Missing, Err(DomainError::FileNotFound(_))) => {}
            (Kind::New, Ok(c)) => {
                assert_eq!(c.version, 1);
                created.push(p);
            }
            (Kind::New, Err(DomainError::QuotaExceeded { what, limit })) => {
                assert_eq!((what.as_str(), limit), ("files", 5));
                assert!(
                    s.file(&t, &p).await.unwrap().is_none(),
                    "{p} refused but there"
                );
                over_quota += 1;
            }
            (kind, answer) => panic!("{kind:?} answered {answer:?}"),
        }
    }
    assert_eq!((race_won, created.len(), over_quota), (1, 3, 3));
    let after = s.group_commit_stats();
    assert_eq!(after.jobs - before.jobs, kinds.len() as u64);
    assert!(
        after.batches - before.batches <= 2,
        "{} changes took {} transactions",
        kinds.len(),
        after.batches - before.batches
    );
    // What committed is there with its revision and its audit record; the refused left none.
    let live = live_paths(&s, &t).await;
    assert_eq!(live.len(), 5, "{live:?}");
    for p in &created {
        assert_eq!(s.revisions(&t, p, None, 10).await.unwrap().len(), 1);
    }
    assert_eq!(s.revisions(&t, &v, None, 10).await.unwrap().len(), 2);
    assert_eq!(s.revisions(&t, &fenced, None, 10).await.unwrap().len(), 1);
    let audited = audit_rows(
        &s,
        AuditFilter {
            task: Some("g"),
            limit: 100,
            ..AuditFilter::default()
        },
    )
    .await;
    // The two changes before, the race's winner and the three new files.
    assert_eq!(audited.len(), 6, "{audited:?}");
}
