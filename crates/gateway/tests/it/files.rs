//! Files: normalisation, traversal, isolation, versions, races, edits, deletes, limits.

use crate::{assert_error, ok};
use mcp_api::names::REFUSED_PATHS;
use mcp_domain::store::durable::AuditFilter;
use mcp_domain::{FilePath, TaskId};
use mcp_testkit::TestGateway;
use serde_json::json;

crate::in_both_modes!(
    write_then_read_round_trips_with_version_and_digest,
    twenty_racing_writers_with_one_expected_version_have_one_winner,
    equivalent_spellings_name_one_file,
    tasks_cannot_see_each_others_files,
    expected_version_guards_writes,
    concurrent_edits_of_different_lines_all_land,
    deletes_hide_the_file_and_versions_continue,
    malformed_requests_get_400,
    nul_characters_are_refused_as_bad_input,
);

async fn write_then_read_round_trips_with_version_and_digest(gw: TestGateway) {
    let w = ok(gw
        .tool(
            "file_write",
            json!({"task_id": "t1", "path": "src/a.py", "content": "print('hé')\n"}),
        )
        .await);
    assert_eq!(w["bytes"], "print('hé')\n".len());
    assert_eq!(w["version"], 1);
    let r = ok(gw
        .tool("file_read", json!({"task_id": "t1", "path": "src/a.py"}))
        .await);
    assert_eq!(r["content"], "print('hé')\n");
    assert_eq!(r["version"], 1);
    assert_eq!(r["sha256"], w["sha256"]);
    assert_eq!(r["size"], w["bytes"]);
    // The durable store has it, not only the hot one.
    let stored = gw
        .stores
        .durable
        .file(
            &TaskId::parse("t1").unwrap(),
            &FilePath::parse("src/a.py").unwrap(),
        )
        .await
        .unwrap()
        .expect("a durable row");
    assert_eq!(stored.content, "print('hé')\n");
}

async fn equivalent_spellings_name_one_file(gw: TestGateway) {
    ok(gw
        .tool(
            "file_write",
            json!({"task_id": "t", "path": "a.py", "content": "1"}),
        )
        .await);
    let w = ok(gw
        .tool(
            "file_write",
            json!({"task_id": "t", "path": "./a.py", "content": "2"}),
        )
        .await);
    assert_eq!(
        (w["path"].as_str(), w["version"].as_i64()),
        (Some("a.py"), Some(2))
    );
    ok(gw
        .tool(
            "file_write",
            json!({"task_id": "t", "path": "x//a.py", "content": "3"}),
        )
        .await);
    let r = ok(gw
        .tool("file_read", json!({"task_id": "t", "path": "x/./a.py"}))
        .await);
    assert_eq!(r["content"], "3");
    let r = ok(gw
        .tool("file_read", json!({"task_id": "t", "path": "a.py"}))
        .await);
    assert_eq!(r["content"], "2");
    let list = ok(gw.tool("list_files", json!({"task_id": "t"})).await);
    let paths: Vec<&str> = list["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["a.py", "x/a.py"]);
    let under = ok(gw
        .tool("list_files", json!({"task_id": "t", "prefix": "x"}))
        .await);
    assert_eq!(under["files"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn traversal_corpus_is_refused_everywhere_and_writes_nothing() {
    let gw = TestGateway::spawn().await;
    for bad in REFUSED_PATHS {
        let p = json!({"task_id": "t", "path": bad});
        for (tool, mut body) in [
            ("file_write", json!({"content": "x"})),
            ("file_read", json!({})),
            ("file_edit", json!({"old_string": "a", "new_string": "b"})),
            ("delete_file", json!({})),
            ("claim_file", json!({})),
            ("renew_file", json!({})),
            ("release_file", json!({})),
        ] {
            body.as_object_mut()
                .unwrap()
                .extend(p.as_object().unwrap().clone());
            assert_error(&gw.tool(tool, body).await, 400, "invalid_path");
        }
    }
    for encoded in [
        "%2e%2e/x",
        "..%2fx",
        "%2e%2e%2fx",
        "a/%2e%2e/%2e%2e/b",
        "%2e%2e%5cx",
        "a%00b",
        "..%252fx",
        "../x",
        "a/../../b",
    ] {
        let got = raw_get(gw.addr, &format!("/resources/workspace/t/{encoded}")).await;
        assert!(
            (got.0 == 400 && got.1["code"] == "invalid_path")
                || (got.0 == 404 && got.1["code"] == "file_not_found"),
            "{encoded}: {got:?}"
        );
    }
    let long = "a/".repeat(600);
    assert_error(
        &gw.tool(
            "file_write",
            json!({"task_id": "t", "path": long, "content": "x"}),
        )
        .await,
        400,
        "invalid_path",
    );
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM files")
        .fetch_one(gw.pg.pool())
        .await
        .unwrap();
    assert_eq!(n, 0, "a refused path wrote something");
}

/// A GET sent byte for byte (HTTP clients normalise `..` and `%2e%2e` away before sending).
async fn raw_get(addr: std::net::SocketAddr, path: &str) -> (u16, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf);
    let status = text[9..12].parse().unwrap();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    (
        status,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

async fn tasks_cannot_see_each_others_files(gw: TestGateway) {
    ok(gw
        .tool(
            "file_write",
            json!({"task_id": "A", "path": "secret.txt", "content": "a"}),
        )
        .await);
    assert_error(
        &gw.tool("file_read", json!({"task_id": "B", "path": "secret.txt"}))
            .await,
        404,
        "file_not_found",
    );
    assert_error(
        &gw.get("/resources/workspace/B/secret.txt").await,
        404,
        "file_not_found",
    );
    let list = ok(gw.tool("list_files", json!({"task_id": "B"})).await);
    assert_eq!(list["files"], json!([]));
    assert_error(
        &gw.tool("delete_file", json!({"task_id": "B", "path": "secret.txt"}))
            .await,
        404,
        "file_not_found",
    );
    let r = ok(gw
        .tool("file_read", json!({"task_id": "A", "path": "secret.txt"}))
        .await);
    assert_eq!(r["content"], "a");
}

async fn expected_version_guards_writes(gw: TestGateway) {
    let t = |v: serde_json::Value| {
        let mut b = json!({"task_id": "t", "path": "f", "content": "c"});
        b.as_object_mut()
            .unwrap()
            .extend(v.as_object().unwrap().clone());
        b
    };
    ok(gw
        .tool("file_write", t(json!({"expected_version": 0})))
        .await);
    let again = gw
        .tool("file_write", t(json!({"expected_version": 0})))
        .await;
    assert_error(&again, 409, "version_conflict");
    assert_eq!(again.1["current_version"], 1);
    ok(gw
        .tool("file_write", t(json!({"expected_version": 1})))
        .await);
    assert_error(
        &gw.tool("file_write", t(json!({"expected_version": 1})))
            .await,
        409,
        "version_conflict",
    );
    assert_error(
        &gw.tool("file_write", t(json!({"expected_version": -1})))
            .await,
        400,
        "invalid_argument",
    );
    let missing = gw
        .tool(
            "file_write",
            json!({"task_id": "t", "path": "g", "content": "c", "expected_version": 3}),
        )
        .await;
    assert_error(&missing, 409, "version_conflict");
    assert_eq!(missing.1["current_version"], json!(null));
}

async fn twenty_racing_writers_with_one_expected_version_have_one_winner(gw: TestGateway) {
    ok(gw
        .tool(
            "file_write",
            json!({"task_id": "t", "path": "race", "content": "v1"}),
        )
        .await);
    let writes = (0..20).map(|i| {
        gw.tool("file_write", json!({"task_id": "t", "path": "race", "content": format!("w{i}"), "expected_version": 1, "agent_id": format!("a{i}")}))
    });
    let results = futures::future::join_all(writes).await;
    let winners: Vec<_> = results.iter().filter(|r| r.0 == 200).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for r in results.iter().filter(|r| r.0 != 200) {
        assert_error(r, 409, "version_conflict");
    }
    let r = ok(gw
        .tool("file_read", json!({"task_id": "t", "path": "race"}))
        .await);
    assert_eq!(r["version"], 2);
    assert_eq!(winners[0].1["version"], 2);
    assert!(r["content"].as_str().unwrap().starts_with('w'));
    // One committed change per version (each with its revision and audit record, in the same
    // transaction): the losers left nothing.
    let audited = gw
        .stores
        .durable
        .audit(&AuditFilter {
            task: Some("t"),
            action: Some("file_write"),
            limit: 100,
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(audited.len(), 2);
}

#[tokio::test]
async fn edits_match_exactly_once_and_return_a_diff() {
    let gw = TestGateway::spawn().await;
    ok(gw
        .tool(
            "file_write",
            json!({"task_id": "t", "path": "e.py", "content": "a = 1\nb = 1\nc = 2\n"}),
        )
        .await);
    let edit = |old: &str, new: &str, all: bool| json!({"task_id": "t", "path": "e.py", "old_string": old, "new_string": new, "replace_all": all});
    assert_error(
        &gw.tool("file_edit", edit("zzz", "y", false)).await,
        409,
        "edit_no_match",
    );
    let amb = gw.tool("file_edit", edit("= 1", "= 9", false)).await;
    assert_error(&amb, 409, "edit_ambiguous");
    assert_eq!(amb.1["occurrences"], 2);
    let e = ok(gw.tool("file_edit", edit("c = 2", "c = 3", false)).await);
    assert_eq!(e["version"], 2);
    assert_eq!(e["replacements"], 1);
    let diff = e["diff"].as_str().unwrap();
    assert!(
        diff.contains("-c = 2") && diff.contains("+c = 3") && diff.contains("@@"),
        "{diff}"
    );
    let all = ok(gw.tool("file_edit", edit("= 1", "= 0", true)).await);
    assert_eq!(all["replacements"], 2);
    // The agents' tool names its fields old_content / new_content.
    ok(gw
        .tool(
            "file_edit",
            json!({"task_id": "t", "path": "e.py", "old_content": "c = 3", "new_content": "c = 4"}),
        )
        .await);
    let r = ok(gw
        .tool("file_read", json!({"task_id": "t", "path": "e.py"}))
        .await);
    assert_eq!(r["content"], "a = 0\nb = 0\nc = 4\n");
    assert_eq!(r["version"], 4);
    let (diffs,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM file_revisions WHERE op = 'edit' AND diff IS NOT NULL",
    )
    .fetch_one(gw.pg.pool())
    .await
    .unwrap();
    assert_eq!(diffs, 3);
    assert_error(&gw.tool("file_edit", json!({"task_id": "t", "path": "e.py", "old_string": "a", "new_string": "b", "expected_version": 1})).await, 409, "version_conflict");
    assert_error(
        &gw.tool(
            "file_edit",
            json!({"task_id": "t", "path": "nope", "old_string": "a", "new_string": "b"}),
        )
        .await,
        404,
        "file_not_found",
    );
    assert_error(
        &gw.tool(
            "file_edit",
            json!({"task_id": "t", "path": "e.py", "old_string": "", "new_string": "b"}),
        )
        .await,
        400,
        "invalid_argument",
    );
}

async fn concurrent_edits_of_different_lines_all_land(gw: TestGateway) {
    let content: String = (0..10).map(|i| format!("line{i}\n")).collect();
    ok(gw
        .tool(
            "file_write",
            json!({"task_id": "t", "path": "c", "content": content}),
        )
        .await);
    let edits = (0..10).map(|i| {
        gw.tool("file_edit", json!({"task_id": "t", "path": "c", "old_string": format!("line{i}\n"), "new_string": format!("LINE{i}\n"), "agent_id": format!("a{i}")}))
    });
    for r in futures::future::join_all(edits).await {
        ok(r);
    }
    let r = ok(gw
        .tool("file_read", json!({"task_id": "t", "path": "c"}))
        .await);
    let expected: String = (0..10).map(|i| format!("LINE{i}\n")).collect();
    assert_eq!(r["content"], expected);
    assert_eq!(r["version"], 11);
}

async fn deletes_hide_the_file_and_versions_continue(gw: TestGateway) {
    ok(gw
        .tool(
            "file_write",
            json!({"task_id": "t", "path": "d", "content": "x"}),
        )
        .await);
    let d = ok(gw
        .tool("delete_file", json!({"task_id": "t", "path": "d"}))
        .await);
    assert_eq!(
        (d["deleted"].as_bool(), d["version"].as_i64()),
        (Some(true), Some(2))
    );
    assert_error(
        &gw.tool("file_read", json!({"task_id": "t", "path": "d"}))
            .await,
        404,
        "file_not_found",
    );
    assert_error(
        &gw.tool("delete_file", json!({"task_id": "t", "path": "d"}))
            .await,
        404,
        "file_not_found",
    );
    assert_eq!(
        ok(gw.tool("list_files", json!({"task_id": "t"})).await)["files"],
        json!([])
    );
    let w = ok(gw
        .tool(
            "file_write",
            json!({"task_id": "t", "path": "d", "content": "y", "expected_version": 0}),
        )
        .await);
    assert_eq!(w["version"], 3);
}

#[tokio::test]
async fn oversized_files_and_steps_are_refused_and_leave_nothing() {
    let gw = TestGateway::spawn_with(|c| {
        c.max_file_bytes = 1024;
        c.max_step_bytes = 256;
    })
    .await;
    let big = "x".repeat(1025);
    let r = gw
        .tool(
            "file_write",
            json!({"task_id": "t", "path": "big", "content": big}),
        )
        .await;
    assert_error(&r, 413, "too_large");
    assert_error(
        &gw.tool("file_read", json!({"task_id": "t", "path": "big"}))
            .await,
        404,
        "file_not_found",
    );
    ok(gw
        .tool(
            "file_write",
            json!({"task_id": "t", "path": "e", "content": "x".repeat(1000)}),
        )
        .await);
    let grow = gw.tool("file_edit", json!({"task_id": "t", "path": "e", "old_string": "x", "new_string": "yy", "replace_all": true})).await;
    assert_error(&grow, 413, "too_large");
    let step = gw
        .tool(
            "log_step",
            json!({"task_id": "t", "step": {"blob": "z".repeat(300)}}),
        )
        .await;
    assert_error(&step, 413, "too_large");
    let logs = gw.get("/resources/tasks/t/logs").await;
    assert_eq!(logs.1["steps"], json!([]));
    // A body over the body limit is refused before parsing.
    let huge = "x".repeat(gw.config.max_body_bytes() + 10);
    let r = gw
        .tool(
            "file_write",
            json!({"task_id": "t", "path": "huge", "content": huge}),
        )
        .await;
    assert_error(&r, 413, "too_large");
}

async fn malformed_requests_get_400(gw: TestGateway) {
    assert_error(
        &gw.tool("file_write", json!({"task_id": "t", "path": "a"}))
            .await,
        400,
        "invalid_argument",
    );
    assert_error(
        &gw.tool(
            "file_write",
            json!({"task_id": "bad id!", "path": "a", "content": ""}),
        )
        .await,
        400,
        "invalid_argument",
    );
    assert_error(
        &gw.tool(
            "file_read",
            json!({"task_id": "t", "path": "a", "agent_id": "no spaces"}),
        )
        .await,
        400,
        "invalid_argument",
    );
    let raw = gw
        .http
        .post(format!("{}/tools/file_write", gw.base))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status().as_u16(), 400);
    let body: serde_json::Value = raw.json().await.unwrap();
    assert_eq!(body["code"], "invalid_argument");
}

/// Postgres text and jsonb cannot hold U+0000: such input is refused as the caller's error
/// (never a 500), and nothing is written.
async fn nul_characters_are_refused_as_bad_input(gw: TestGateway) {
    assert_error(
        &gw.tool(
            "file_write",
            json!({"task_id": "t", "path": "n.txt", "content": "a\u{0}b"}),
        )
        .await,
        400,
        "invalid_argument",
    );
    assert_error(
        &gw.tool("file_read", json!({"task_id": "t", "path": "n.txt"}))
            .await,
        404,
        "file_not_found",
    );
    assert_error(
        &gw.tool(
            "log_step",
            json!({"task_id": "t", "step": {"observation": ["ok", {"x": "a\u{0}"}]}}),
        )
        .await,
        400,
        "invalid_argument",
    );
    // A backslash followed by "u0000" is ordinary text.
    ok(gw
        .tool(
            "log_step",
            json!({"task_id": "t", "step": {"observation": "\\u0000"}}),
        )
        .await);
}
