//! The read APIs of a file's past and a task's leases over HTTP, in both modes: `file_history`,
//! `file_revision` (any version's content, a diff between two, versions stored before
//! revisions kept content), `list_leases`.

use crate::{assert_error, ok};
use mcp_testkit::TestGateway;
use serde_json::{Value, json};
use sqlx::Connection;
use std::collections::BTreeSet;

crate::in_both_modes!(
    a_files_history_and_any_version_over_http,
    edits_stored_as_diffs_only_are_replayed,
    leases_are_listed_with_holder_and_time_left,
);

fn keys(v: &Value) -> BTreeSet<&str> {
    v.as_object().unwrap().keys().map(String::as_str).collect()
}

async fn a_files_history_and_any_version_over_http(gw: TestGateway) {
    let w = ok(gw
        .tool(
            "file_write",
            json!({"task_id": "t1", "path": "src/a.py", "content": "x = 1\n", "agent_id": "coder"}),
        )
        .await);
    let e = ok(gw
        .tool(
            "file_edit",
            json!({"task_id": "t1", "path": "src/a.py", "old_string": "1", "new_string": "2",
                   "agent_id": "qa"}),
        )
        .await);
    let h = ok(gw
        .tool(
            "file_history",
            json!({"task_id": "t1", "path": "./src//a.py"}),
        )
        .await);
    assert_eq!(
        keys(&h),
        BTreeSet::from(["success", "task_id", "path", "revisions"])
    );
    assert_eq!(
        (h["success"].as_bool(), h["path"].as_str()),
        (Some(true), Some("src/a.py"))
    );
    let newest = &h["revisions"][0];
    assert_eq!(
        keys(newest),
        BTreeSet::from([
            "version",
            "op",
            "agent_id",
            "fence",
            "size",
            "sha256",
            "created_at"
        ])
    );
    assert_eq!(
        (
            newest["version"].as_i64(),
            newest["op"].as_str(),
            newest["agent_id"].as_str()
        ),
        (Some(2), Some("edit"), Some("qa"))
    );
    assert_eq!(
        (newest["sha256"].clone(), newest["size"].as_i64()),
        (e["sha256"].clone(), Some(6))
    );
    assert_eq!(h["revisions"][1]["sha256"], w["sha256"]);
    assert_eq!(h["revisions"][1]["op"], "write");
    let page = ok(gw
        .tool(
            "file_history",
            json!({"task_id": "t1", "path": "src/a.py", "limit": 1}),
        )
        .await);
    assert_eq!(
        (
            page["revisions"].as_array().unwrap().len(),
            page["next_before"].as_i64()
        ),
        (1, Some(2))
    );

    let v1 = ok(gw
        .tool(
            "file_revision",
            json!({"task_id": "t1", "path": "src/a.py", "version": 1}),
        )
        .await);
    assert_eq!(
        keys(&v1),
        BTreeSet::from([
            "success",
            "task_id",
            "path",
            "version",
            "op",
            "agent_id",
            "fence",
            "created_at",
            "content",
            "sha256",
            "size"
        ])
    );
    assert_eq!(
        (v1["content"].as_str(), v1["agent_id"].as_str()),
        (Some("x = 1\n"), Some("coder"))
    );
    let v2 = ok(gw
        .tool(
            "file_revision",
            json!({"task_id": "t1", "path": "src/a.py", "version": 2, "diff_from": 1}),
        )
        .await);
    assert_eq!(
        (v2["content"].as_str(), v2["diff_from"].as_i64()),
        (Some("x = 2\n"), Some(1))
    );
    assert_eq!(
        v2["diff"], e["diff"],
        "consecutive versions: the edit's own diff"
    );

    // A deleted version has no content; the file keeps its history.
    ok(gw
        .tool("delete_file", json!({"task_id": "t1", "path": "src/a.py"}))
        .await);
    let v3 = ok(gw
        .tool(
            "file_revision",
            json!({"task_id": "t1", "path": "src/a.py", "version": 3, "diff_from": 2}),
        )
        .await);
    assert_eq!(
        (v3["op"].as_str(), v3["content"].clone()),
        (Some("delete"), Value::Null)
    );
    assert!(v3["diff"].as_str().unwrap().contains("-x = 2\n"));

    // Refusals.
    let missing = gw
        .tool(
            "file_revision",
            json!({"task_id": "t1", "path": "src/a.py", "version": 9}),
        )
        .await;
    assert_error(&missing, 404, "revision_not_found");
    assert_eq!(
        (
            missing.1["version"].as_i64(),
            missing.1["latest_version"].as_i64()
        ),
        (Some(9), Some(3))
    );
    assert_error(
        &gw.tool(
            "file_revision",
            json!({"task_id": "t1", "path": "b.py", "version": 1}),
        )
        .await,
        404,
        "file_not_found",
    );
    assert_error(
        &gw.tool("file_history", json!({"task_id": "t2", "path": "src/a.py"}))
            .await,
        404,
        "file_not_found",
    );
    for bad in [
        json!({"task_id": "t1", "path": "src/a.py", "limit": 0}),
        json!({"task_id": "t1", "path": "src/a.py", "limit": 501}),
    ] {
        assert_error(&gw.tool("file_history", bad).await, 400, "invalid_argument");
    }
    for bad in [
        json!({"task_id": "t1", "path": "src/a.py", "version": 0}),
        json!({"task_id": "t1", "path": "src/a.py", "version": 1, "diff_from": -1}),
        json!({"task_id": "t1", "path": "src/a.py"}),
    ] {
        assert_error(
            &gw.tool("file_revision", bad).await,
            400,
            "invalid_argument",
        );
    }
    assert_error(
        &gw.tool("file_history", json!({"task_id": "t1", "path": "../x"}))
            .await,
        400,
        "invalid_path",
    );
}

/// Makes the task's edit revisions look like those committed before revisions kept every
/// version's content (`…_revision_content.sql`): the diff only, no content, size or hash.
async fn make_edits_diff_only(gw: &TestGateway) {
    let sql = "UPDATE file_revisions SET content = NULL, sha256 = NULL, size = NULL \
               WHERE op = 'edit'";
    match &gw.data {
        Some(dir) => {
            let url = format!("sqlite://{}", dir.path.join("mcp-gateway.db").display());
            let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
            sqlx::query(sql).execute(&mut c).await.unwrap();
            c.close().await.unwrap();
        }
        None => {
            sqlx::query(sql).execute(gw.pg.pool()).await.unwrap();
        }
    }
}

async fn edits_stored_as_diffs_only_are_replayed(gw: TestGateway) {
    let t = |extra: Value| {
        let mut b = json!({"task_id": "t1", "path": "a.txt"});
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        b
    };
    let edit = |old: &str, new: &str| t(json!({"old_string": old, "new_string": new}));
    let mut expected = vec![];
    ok(gw
        .tool("file_write", t(json!({"content": "a\nb\nc\nd"})))
        .await);
    expected.push("a\nb\nc\nd");
    ok(gw.tool("file_edit", edit("b\n", "B\r\n")).await);
    expected.push("a\nB\r\nc\nd");
    ok(gw.tool("file_edit", edit("d", "d\n")).await);
    expected.push("a\nB\r\nc\nd\n");
    ok(gw.tool("file_write", t(json!({"content": "new\n"}))).await);
    expected.push("new\n");
    ok(gw.tool("file_edit", edit("new", "newer")).await);
    expected.push("newer\n");
    make_edits_diff_only(&gw).await;

    let h = ok(gw.tool("file_history", t(json!({}))).await);
    let sizes: Vec<Option<i64>> = h["revisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["size"].as_i64())
        .collect();
    assert_eq!(sizes, [None, Some(4), None, None, Some(7)], "{h}");
    for (i, content) in expected.iter().enumerate() {
        let version = i as i64 + 1;
        let r = ok(gw
            .tool("file_revision", t(json!({"version": version})))
            .await);
        assert_eq!(r["content"].as_str(), Some(*content), "version {version}");
        assert_eq!(
            r["size"].as_i64(),
            Some(content.len() as i64),
            "version {version}"
        );
        assert_eq!(r["sha256"].as_str().map(str::len), Some(64));
    }
    let r = ok(gw
        .tool("file_revision", t(json!({"version": 3, "diff_from": 1})))
        .await);
    let diff = r["diff"].as_str().unwrap();
    assert!(diff.contains("-b\n+B\r\n"), "{diff}");
    // The newest version read back equals the file as it is.
    let read = ok(gw.tool("file_read", t(json!({}))).await);
    let newest = ok(gw.tool("file_revision", t(json!({"version": 5}))).await);
    assert_eq!(
        (newest["content"].clone(), newest["sha256"].clone()),
        (read["content"].clone(), read["sha256"].clone())
    );
}

async fn leases_are_listed_with_holder_and_time_left(gw: TestGateway) {
    let list = || gw.tool("list_leases", json!({"task_id": "t1"}));
    let empty = ok(list().await);
    assert_eq!(
        keys(&empty),
        BTreeSet::from(["success", "task_id", "leases", "truncated"])
    );
    assert_eq!(empty["leases"], json!([]));
    let claim = |path: &str, agent: &str| json!({"task_id": "t1", "path": path, "agent_id": agent, "timeout_sec": 30});
    let b = ok(gw.tool("claim_file", claim("./src/b.py", "qa")).await);
    let a = ok(gw.tool("claim_file", claim("a.py", "coder")).await);
    ok(gw
        .tool(
            "claim_file",
            json!({"task_id": "t2", "path": "a.py", "agent_id": "x"}),
        )
        .await);
    let l = ok(list().await);
    let leases = l["leases"].as_array().unwrap();
    assert_eq!(leases.len(), 2, "{l}");
    assert_eq!(
        keys(&leases[0]),
        BTreeSet::from([
            "path",
            "holder",
            "fence",
            "acquired_at",
            "expires_at",
            "ttl_ms_left",
            "recursive",
            "waiters"
        ])
    );
    assert_eq!(
        (
            leases[0]["recursive"].as_bool(),
            leases[0]["waiters"].as_array().map(Vec::len)
        ),
        (Some(false), Some(0))
    );
    let seen: Vec<(&str, &str, i64)> = leases
        .iter()
        .map(|l| {
            (
                l["path"].as_str().unwrap(),
                l["holder"].as_str().unwrap(),
                l["fence"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("a.py", "coder", a["fence"].as_i64().unwrap()),
            ("src/b.py", "qa", b["fence"].as_i64().unwrap())
        ]
    );
    assert_eq!(leases[1]["expires_at"], b["expires_at"]);
    let left = leases[0]["ttl_ms_left"].as_i64().unwrap();
    assert!(left > 0 && left <= 30_000, "{left}");
    assert_eq!(l["truncated"], false);
    ok(gw
        .tool(
            "release_file",
            json!({"task_id": "t1", "path": "a.py", "agent_id": "coder"}),
        )
        .await);
    let l = ok(list().await);
    assert_eq!(l["leases"].as_array().unwrap().len(), 1);
    assert_eq!(l["leases"][0]["holder"], "qa");
    assert_error(
        &gw.tool("list_leases", json!({"task_id": "bad id"})).await,
        400,
        "invalid_argument",
    );
}
