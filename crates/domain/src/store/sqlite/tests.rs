//! What is specific to the SQLite backend: one writer under concurrency, the fence sequence,
//! quotas kept in Rust, NUL refusals, migrations and reopening, the in-process notifier.
//! (The behaviour shared with Postgres is the cross-backend suite's.)

use super::*;
use futures::FutureExt;
use std::path::{Path, PathBuf};

/// A fresh directory per test, removed at the end (also when the test fails).
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let dir = std::env::temp_dir().join(format!("mcp-sqlite-{}", uuid::Uuid::new_v4()));
        TempDir(dir)
    }

    /// The database file, two directories down (which `open` creates).
    fn db(&self) -> PathBuf {
        self.0.join("data").join("nested").join("gateway.db")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn open(path: &Path) -> SqliteStore {
    let store = SqliteStore::open(&SqliteConfig {
        path: path.to_owned(),
        max_connections: 4,
        busy_timeout: Duration::from_secs(10),
        sync_every_commit: true,
    })
    .await
    .expect("open");
    store.migrate().await.expect("migrate");
    store
}

fn task(id: &str) -> TaskId {
    TaskId::parse(id).unwrap()
}

fn path(p: &str) -> FilePath {
    FilePath::parse(p).unwrap()
}

/// A write of `content` by `agent` (sha256 and size are not checked by the store).
fn write<'a>(
    t: &'a TaskId,
    p: &'a FilePath,
    content: &'a str,
    expected_version: Option<i64>,
) -> FileChange<'a> {
    FileChange {
        task: t,
        path: p,
        op: RevisionOp::Write,
        content,
        sha256: "00",
        size: content.len() as i64,
        agent: "agent-1",
        fence: None,
        expected_version,
        diff: None,
        request_id: None,
        max_task_files: None,
        max_task_bytes: None,
    }
}

fn delete<'a>(t: &'a TaskId, p: &'a FilePath) -> FileChange<'a> {
    FileChange {
        op: RevisionOp::Delete,
        size: 0,
        ..write(t, p, "", None)
    }
}

fn with_quota(c: FileChange<'_>, files: i64, bytes: i64) -> FileChange<'_> {
    FileChange {
        max_task_files: Some(files),
        max_task_bytes: Some(bytes),
        ..c
    }
}

async fn count(store: &SqliteStore, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(store.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn concurrent_writers_have_one_winner_per_version() {
    let dir = TempDir::new();
    let store = open(&dir.db()).await;
    let t = task("t1");
    let p = path("src/main.rs");
    // Round 0 creates (expected 0), the next ones replace at the version just committed.
    for expected in 0..4i64 {
        let mut writers = Vec::new();
        for w in 0..20 {
            let (store, t, p) = (store.clone(), t.clone(), p.clone());
            writers.push(tokio::spawn(async move {
                let content = format!("round {expected} writer {w}");
                store
                    .change_file(&write(&t, &p, &content, Some(expected)))
                    .await
            }));
        }
        let mut winners = 0;
        for w in writers {
            match w.await.unwrap() {
                Ok(c) => {
                    assert_eq!(c.version, expected + 1);
                    winners += 1;
                }
                Err(DomainError::VersionConflict {
                    expected: e,
                    current,
                }) => {
                    assert_eq!(e, Some(expected));
                    assert_eq!(current, Some(expected + 1));
                }
                Err(other) => panic!("unexpected refusal: {other:?}"),
            }
        }
        assert_eq!(winners, 1, "round {expected}");
    }
    let stored = store.file(&t, &p).await.unwrap().unwrap();
    assert_eq!(stored.version, 4);
    assert!(stored.content.starts_with("round 3 writer "));
    assert_eq!(
        count(&store, "SELECT count(*) FROM file_revisions").await,
        4
    );
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM audit_log WHERE action = 'file_write'"
        )
        .await,
        4
    );

    // Unconditional writers all win, each with its own version.
    let mut writers = Vec::new();
    for w in 0..20 {
        let (store, t, p) = (store.clone(), t.clone(), p.clone());
        writers.push(tokio::spawn(async move {
            let content = format!("free writer {w}");
            store.change_file(&write(&t, &p, &content, None)).await
        }));
    }
    let mut versions = Vec::new();
    for w in writers {
        versions.push(w.await.unwrap().unwrap().version);
    }
    versions.sort_unstable();
    assert_eq!(versions, (5..25).collect::<Vec<_>>());
    store.close().await;
}

#[tokio::test]
async fn concurrent_fences_strictly_increase_without_duplicates() {
    let dir = TempDir::new();
    let store = open(&dir.db()).await;
    let mut callers = Vec::new();
    for _ in 0..16 {
        let store = store.clone();
        callers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for _ in 0..25 {
                mine.push(store.next_fence().await.unwrap());
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for c in callers {
        let mine = c.await.unwrap();
        assert!(mine.windows(2).all(|w| w[0] < w[1]), "{mine:?}");
        all.extend(mine);
    }
    all.sort_unstable();
    // A fresh sequence starts at 1, like Postgres's.
    assert_eq!(all, (1..=400).collect::<Vec<_>>());
    store.close().await;
}

#[tokio::test]
async fn quotas_refuse_growth_and_allow_shrinking() {
    let dir = TempDir::new();
    let store = open(&dir.db()).await;
    let t = task("quota");
    let (a, b, c) = (path("a.txt"), path("b.txt"), path("c.txt"));
    let (t, a, b, c) = (&t, &a, &b, &c);
    let limited = |change| with_quota(change, 2, 10);
    store
        .change_file(&limited(write(t, a, "aaaa", None)))
        .await
        .unwrap();
    store
        .change_file(&limited(write(t, b, "bbbb", None)))
        .await
        .unwrap();
    // A third file: over the files quota.
    let err = store
        .change_file(&limited(write(t, c, "c", None)))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DomainError::QuotaExceeded { what, limit: 2 } if what == "files"),
        "{err:?}"
    );
    // Nothing of the refused change remains.
    assert!(store.file(t, c).await.unwrap().is_none());
    assert_eq!(
        count(&store, "SELECT count(*) FROM file_revisions").await,
        2
    );
    assert_eq!(count(&store, "SELECT count(*) FROM audit_log").await, 2);
    assert_eq!(
        count(
            &store,
            "SELECT files FROM task_usage WHERE task_id = 'quota'"
        )
        .await,
        2
    );

    // Growing a file past the bytes quota (4 + 7 > 10).
    let err = store
        .change_file(&limited(write(t, b, "bbbbbbb", None)))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DomainError::QuotaExceeded { what, limit: 10 } if what == "bytes"),
        "{err:?}"
    );
    assert_eq!(store.file(t, b).await.unwrap().unwrap().version, 1);
    // Within it (4 + 6 = 10).
    store
        .change_file(&limited(write(t, b, "bbbbbb", None)))
        .await
        .unwrap();

    // Over a lowered quota, shrinking still passes, and so does a delete.
    let lowered = |change| with_quota(change, 1, 3);
    store
        .change_file(&lowered(write(t, b, "bbbbb", None)))
        .await
        .unwrap();
    store.change_file(&lowered(delete(t, a))).await.unwrap();
    assert_eq!(
        sqlx::query_as::<_, (i64, i64)>("SELECT files, bytes FROM task_usage WHERE task_id = ?1")
            .bind("quota")
            .fetch_one(store.pool())
            .await
            .unwrap(),
        (1, 5)
    );
    // A re-created file counts again; unlimited changes are never refused.
    let err = store
        .change_file(&lowered(write(t, a, "a", Some(0))))
        .await
        .unwrap_err();
    assert!(matches!(err, DomainError::QuotaExceeded { .. }), "{err:?}");
    let created = store.change_file(&write(t, a, "a", Some(0))).await.unwrap();
    assert_eq!(
        created.version, 3,
        "versions grow across delete and re-create"
    );
    store.close().await;
}

#[tokio::test]
async fn nul_characters_are_refused_like_postgres() {
    let dir = TempDir::new();
    let store = open(&dir.db()).await;
    let t = task("nul");
    let p = path("f.txt");
    let is_nul_refusal = |e: &DomainError| {
        matches!(e, DomainError::InvalidArgument(m)
            if m == "text must not contain NUL characters (U+0000)")
    };

    let err = store
        .change_file(&write(&t, &p, "a\0b", None))
        .await
        .unwrap_err();
    assert!(is_nul_refusal(&err), "{err:?}");
    let err = store
        .change_file(&FileChange {
            op: RevisionOp::Edit,
            diff: Some("-a\n+\0"),
            ..write(&t, &p, "ab", None)
        })
        .await
        .unwrap_err();
    assert!(is_nul_refusal(&err), "{err:?}");
    assert!(store.file(&t, &p).await.unwrap().is_none());

    let req = CreateTaskRequest {
        title: "bad\0title".into(),
        ..CreateTaskRequest::default()
    };
    let err = store
        .create_task(&t, &req, "admin", None)
        .await
        .unwrap_err();
    assert!(is_nul_refusal(&err), "{err:?}");
    assert!(store.task(&t).await.unwrap().is_none());

    let step = |id: &str, step: Value| StepRecord {
        task_id: "nul".into(),
        stream_id: id.into(),
        id_ms: 1,
        id_seq: id.len() as i64,
        agent_id: None,
        step,
        logged_at: Utc::now(),
    };
    let good = step("1-0", serde_json::json!({"action": "ok"}));
    let bad = step("1-1", serde_json::json!({"nested": ["x\u{0}y"]}));
    let err = store.insert_step(&bad).await.unwrap_err();
    assert!(is_nul_refusal(&err), "{err:?}");
    // A batch with one bad record writes nothing.
    let batch = OutboxBatch {
        steps: vec![good.clone(), bad],
        ..OutboxBatch::default()
    };
    let err = store.persist_outbox_batch(&batch).await.unwrap_err();
    assert!(is_nul_refusal(&err), "{err:?}");
    assert_eq!(count(&store, "SELECT count(*) FROM step_logs").await, 0);
    assert!(store.insert_step(&good).await.unwrap());
    assert!(!store.insert_step(&good).await.unwrap(), "idempotent");
    store.close().await;
}

#[tokio::test]
async fn migrations_are_idempotent_and_reopening_keeps_the_data() {
    let dir = TempDir::new();
    let t = task("keep");
    let p = path("notes.md");
    {
        let store = open(&dir.db()).await;
        store.migrate().await.expect("second migrate");
        store.change_file(&write(&t, &p, "v1", None)).await.unwrap();
        store.change_file(&delete(&t, &p)).await.unwrap();
        store
            .create_task(&t, &CreateTaskRequest::default(), "admin", None)
            .await
            .unwrap();
        assert_eq!(store.next_fence().await.unwrap(), 1);
        store.close().await;
    }
    assert!(dir.db().is_file());
    let store = open(&dir.db()).await;
    let stored = store.file(&t, &p).await.unwrap().unwrap();
    assert!(stored.deleted);
    assert_eq!(stored.version, 2);
    assert_eq!(
        store.task(&t).await.unwrap().unwrap().state.status,
        "pending"
    );
    assert_eq!(store.next_fence().await.unwrap(), 2, "the sequence goes on");
    let again = store
        .change_file(&write(&t, &p, "v3", Some(0)))
        .await
        .unwrap();
    assert_eq!(again.version, 3);
    let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(journal, "wal");
    store.close().await;
}

#[tokio::test]
async fn the_change_listener_wakes_once_per_burst() {
    let dir = TempDir::new();
    let store = open(&dir.db()).await;
    let t = task("listened");
    let mut listener = store.listen_changes().await.unwrap();
    assert!(listener.changed().now_or_never().is_none(), "no change yet");

    let writer = store.clone();
    let t2 = t.clone();
    tokio::spawn(async move {
        writer
            .create_task(&t2, &CreateTaskRequest::default(), "admin", None)
            .await
            .unwrap();
    });
    tokio::time::timeout(Duration::from_secs(10), listener.changed())
        .await
        .expect("woken by the task creation")
        .unwrap();

    // A burst (join: agents; update: tasks) wakes once; file changes do not wake.
    store.join(&t, "agent-1", None).await.unwrap();
    store
        .update_task(
            &t,
            &UpdateTaskRequest {
                status: Some("running".into()),
                ..UpdateTaskRequest::default()
            },
            "admin",
            None,
        )
        .await
        .unwrap();
    listener
        .changed()
        .now_or_never()
        .expect("buffered")
        .unwrap();
    assert!(listener.changed().now_or_never().is_none(), "burst taken");
    store
        .change_file(&write(&t, &path("x"), "x", None))
        .await
        .unwrap();
    assert!(listener.changed().now_or_never().is_none());
    store.leave(&t, "agent-1", None).await.unwrap();
    listener.changed().now_or_never().expect("leave").unwrap();
    store.close().await;
}

#[tokio::test]
async fn deleted_tasks_leave_a_tombstone_and_times_sort_as_text() {
    let dir = TempDir::new();
    let store = open(&dir.db()).await;
    let before = store.db_now().await.unwrap();
    for id in ["a", "b"] {
        store
            .create_task(&task(id), &CreateTaskRequest::default(), "admin", None)
            .await
            .unwrap();
    }
    // An operator deletes a task by hand: the trigger records it.
    sqlx::query("DELETE FROM tasks WHERE id = 'a'")
        .execute(store.pool())
        .await
        .unwrap();
    let gone = store.task_deletions_since(before).await.unwrap();
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].0, "a");
    assert!(
        gone[0].1 >= before,
        "never dated before a time read before it"
    );
    // Every stored time has the one fixed-width format.
    let widths: Vec<i64> = sqlx::query_scalar(
        "SELECT length(created_at) FROM tasks UNION ALL SELECT length(at) FROM audit_log
         UNION ALL SELECT length(deleted_at) FROM task_deletions",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert!(widths.iter().all(|w| *w == 27), "{widths:?}");
    assert_eq!(
        ts(DateTime::from_timestamp(-62_135_596_800, 0).unwrap()),
        "0001-01-01T00:00:00.000000Z"
    );
    assert_eq!(ts(DateTime::<Utc>::MIN_UTC), "0000-01-01T00:00:00.000000Z");
    // The change feed from the beginning sees the remaining task.
    let page = store.tasks_after(FeedMark::default(), 10).await.unwrap();
    assert_eq!(
        page.iter().map(|t| t.row.id.as_str()).collect::<Vec<_>>(),
        ["b"]
    );
    assert_eq!(
        store
            .prune_task_deletions(now() + chrono::Duration::seconds(1))
            .await
            .unwrap(),
        1
    );
    store.close().await;
}

#[tokio::test]
async fn a_held_write_lock_is_unavailable_not_an_error() {
    let dir = TempDir::new();
    let quick = |path: PathBuf| async move {
        let store = SqliteStore::open(&SqliteConfig {
            path,
            max_connections: 2,
            busy_timeout: Duration::from_millis(200),
            sync_every_commit: true,
        })
        .await
        .unwrap();
        store.migrate().await.unwrap();
        store
    };
    let a = quick(dir.db()).await;
    let b = quick(dir.db()).await;
    let t = task("locked");
    a.create_task(&t, &CreateTaskRequest::default(), "admin", None)
        .await
        .unwrap();
    let held = a.pool().begin_with("BEGIN IMMEDIATE").await.unwrap();
    let unavailable = |e: &DomainError| {
        matches!(
            e,
            DomainError::Unavailable {
                backend: "sqlite",
                ..
            }
        )
    };
    // This process's writer is busy: its queue times out.
    let err = a.next_fence().await.unwrap_err();
    assert!(unavailable(&err), "{err:?}");
    // Another process (here: other pools) waits for the lock, then gives up.
    let err = b
        .change_file(&write(&t, &path("f"), "f", None))
        .await
        .unwrap_err();
    assert!(unavailable(&err), "{err:?}");
    // Readers are not blocked by a writer.
    assert!(b.task(&t).await.unwrap().is_some());
    held.rollback().await.unwrap();
    assert_eq!(b.next_fence().await.unwrap(), 1);
    a.close().await;
    b.close().await;
}

#[test]
fn the_postgres_migrator_skips_the_sqlite_directory() {
    let pg = sqlx::migrate!("../../migrations");
    assert!(pg.iter().count() > 0);
    // Postgres's own schema names its sequence `lock_fence_seq`; only SQLite's has the table.
    let sqlite_only = "CREATE TABLE fence_seq";
    assert!(pg.iter().all(|m| !m.sql.contains(sqlite_only)));
    assert!(pg.iter().all(|m| m.description != "embedded"));
    assert!(MIGRATOR.iter().any(|m| m.sql.contains(sqlite_only)));
}
