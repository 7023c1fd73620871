//! Golden tests of the wire contract: the original gateway's success bodies (field names and
//! JSON types) and the error body. An agent written for the original keeps working as long as
//! these pass; a change here is a change of the contract.

use crate::ok;
use mcp_testkit::TestGateway;
use serde_json::{Value, json};
use std::collections::BTreeMap;

crate::in_both_modes!(
    success_bodies_of_the_additions,
    error_bodies_carry_detail_and_code_only_plus_context,
    every_registered_tool_has_a_route,
);

/// The shape of a JSON object: field name -> JSON type.
fn shape(v: &Value) -> BTreeMap<String, &'static str> {
    v.as_object()
        .expect("an object")
        .iter()
        .map(|(k, v)| {
            let t = match v {
                Value::Null => "null",
                Value::Bool(_) => "bool",
                Value::Number(n) if n.is_i64() || n.is_u64() => "int",
                Value::Number(_) => "float",
                Value::String(_) => "string",
                Value::Array(_) => "array",
                Value::Object(_) => "object",
            };
            (k.clone(), t)
        })
        .collect()
}

/// Asserts that `body` has exactly the golden fields with the golden types.
#[track_caller]
fn golden(body: &Value, expected: &[(&str, &'static str)]) {
    let want: BTreeMap<String, &'static str> =
        expected.iter().map(|(k, t)| (k.to_string(), *t)).collect();
    assert_eq!(shape(body), want, "body: {body}");
}

#[tokio::test]
async fn success_bodies_of_the_original_routes() {
    let gw = TestGateway::spawn().await;
    let t = |extra: Value| {
        let mut b = json!({"task_id": "t1", "path": "a.py"});
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        b
    };
    let w = ok(gw.tool("file_write", t(json!({"content": "x"}))).await);
    golden(
        &w,
        &[
            ("success", "bool"),
            ("task_id", "string"),
            ("path", "string"),
            ("bytes", "int"),
            ("version", "int"),
            ("sha256", "string"),
        ],
    );
    let r = ok(gw.tool("file_read", t(json!({}))).await);
    golden(
        &r,
        &[
            ("success", "bool"),
            ("task_id", "string"),
            ("path", "string"),
            ("content", "string"),
            ("version", "int"),
            ("sha256", "string"),
            ("size", "int"),
        ],
    );
    let c = ok(gw.tool("claim_file", t(json!({"timeout_sec": 60}))).await);
    golden(
        &c,
        &[
            ("success", "bool"),
            ("task_id", "string"),
            ("path", "string"),
            ("locked", "bool"),
            ("owner", "string"),
            ("fence", "int"),
            ("lock_token", "string"),
            ("expires_at", "string"),
            ("timeout_sec", "int"),
        ],
    );
    assert_eq!(c["locked"], true);
    let rel = ok(gw.tool("release_file", t(json!({}))).await);
    golden(
        &rel,
        &[
            ("success", "bool"),
            ("task_id", "string"),
            ("path", "string"),
            ("locked", "bool"),
        ],
    );
    assert_eq!(rel["locked"], false);
    let l = ok(gw
        .tool(
            "log_step",
            json!({"task_id": "t1", "step": {"action": "a"}}),
        )
        .await);
    golden(
        &l,
        &[
            ("success", "bool"),
            ("task_id", "string"),
            ("step", "object"),
            ("id", "string"),
        ],
    );
    golden(
        &l["step"],
        &[
            ("action", "string"),
            ("timestamp", "string"),
            ("task_id", "string"),
            ("agent_id", "string"),
        ],
    );
    let s = ok(gw.tool("subscribe_logs", json!({"task_id": "t1"})).await);
    golden(
        &s,
        &[
            ("success", "bool"),
            ("task_id", "string"),
            ("channel", "string"),
            ("message", "string"),
            ("stream_url", "string"),
        ],
    );
    for tool in [
        "join_collaboration",
        "leave_collaboration",
        "join_collab",
        "leave_collab",
    ] {
        let j = ok(gw
            .tool(tool, json!({"task_id": "t1", "agent_id": "coder"}))
            .await);
        golden(
            &j,
            &[
                ("success", "bool"),
                ("task_id", "string"),
                ("agent_id", "string"),
            ],
        );
    }
    ok(gw
        .tool(
            "join_collaboration",
            json!({"task_id": "t1", "agent_id": "coder"}),
        )
        .await);
    let (_, collab) = gw.get("/resources/collaboration/t1").await;
    golden(
        &collab,
        &[
            ("success", "bool"),
            ("task_id", "string"),
            ("agents", "array"),
            ("members", "array"),
        ],
    );
    assert_eq!(
        collab["agents"],
        json!(["coder"]),
        "the original's agents list holds agent ids"
    );
    sqlx::query("INSERT INTO tasks (id, title, description, status, assigned_agent_id, complexity) VALUES ('t1', 'T', 'd', 'pending', 'coder', 2.5)")
        .execute(gw.pg.pool())
        .await
        .unwrap();
    let (status, state) = gw.get("/resources/tasks/t1/state").await;
    assert_eq!(status, 200);
    golden(
        &state,
        &[
            ("id", "string"),
            ("title", "string"),
            ("description", "string"),
            ("status", "string"),
            ("assigned_agent_id", "string"),
            ("complexity", "float"),
            ("created_at", "string"),
            ("updated_at", "string"),
        ],
    );
    let (status, health) = gw.get("/health").await;
    assert_eq!(status, 200);
    assert!(health["status"].is_string() && health["version"].is_string());
}

async fn success_bodies_of_the_additions(gw: TestGateway) {
    ok(gw
        .tool(
            "file_write",
            json!({"task_id": "t", "path": "a", "content": "x\n"}),
        )
        .await);
    let e = ok(gw
        .tool(
            "file_edit",
            json!({"task_id": "t", "path": "a", "old_string": "x", "new_string": "y"}),
        )
        .await);
    golden(
        &e,
        &[
            ("success", "bool"),
            ("task_id", "string"),
            ("path", "string"),
            ("version", "int"),
            ("sha256", "string"),
            ("bytes", "int"),
            ("replacements", "int"),
            ("diff", "string"),
        ],
    );
    let l = ok(gw.tool("list_files", json!({"task_id": "t"})).await);
    golden(
        &l,
        &[
            ("success", "bool"),
            ("task_id", "string"),
            ("files", "array"),
        ],
    );
    golden(
        &l["files"][0],
        &[
            ("path", "string"),
            ("version", "int"),
            ("size", "int"),
            ("sha256", "string"),
            ("updated_by", "string"),
            ("updated_at", "string"),
        ],
    );
    let d = ok(gw
        .tool("delete_file", json!({"task_id": "t", "path": "a"}))
        .await);
    golden(
        &d,
        &[
            ("success", "bool"),
            ("task_id", "string"),
            ("path", "string"),
            ("deleted", "bool"),
            ("version", "int"),
        ],
    );
}

async fn error_bodies_carry_detail_and_code_only_plus_context(gw: TestGateway) {
    let (status, body) = gw
        .tool("file_read", json!({"task_id": "t", "path": "missing"}))
        .await;
    assert_eq!(status, 404);
    golden(&body, &[("detail", "string"), ("code", "string")]);
    let (_, conflict) = gw
        .tool(
            "file_write",
            json!({"task_id": "t", "path": "missing", "content": "", "expected_version": 2}),
        )
        .await;
    golden(
        &conflict,
        &[
            ("detail", "string"),
            ("code", "string"),
            ("expected_version", "int"),
            ("current_version", "null"),
        ],
    );
}

async fn every_registered_tool_has_a_route(gw: TestGateway) {
    for tool in mcp_api::TOOLS {
        for name in std::iter::once(&tool.name).chain(tool.aliases) {
            let (status, body) = gw.tool(name, json!({})).await;
            if *name == "read_messages" {
                // No required argument: an empty inbox of an anonymous caller.
                assert_eq!(status, 200, "{name}: {body}");
                continue;
            }
            assert_eq!(status, 400, "{name}: {body}");
            assert_eq!(body["code"], "invalid_argument", "{name}");
        }
    }
}
