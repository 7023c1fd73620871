//! The LLM tool dispatcher against a running gateway: successes carry the gateway's body,
//! and every refusal — above all a write refused by another agent's lock — is a failure.

use crate::client_as;
use mcp_agent_client::AgentTools;
use mcp_testkit::TestGateway;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn a_write_refused_by_another_agents_lock_is_a_failure() {
    let gw = TestGateway::spawn().await;
    let other = client_as(&gw, "agent-b");
    let _lease = other
        .lock("t1", "src/app.py", Some(Duration::from_secs(60)))
        .await
        .unwrap();

    let tools = AgentTools::for_task(client_as(&gw, "agent-a"), "t1");
    let outcome = tools
        .call(
            "file_write",
            json!({"path": "src/app.py", "content": "mine"}),
        )
        .await;
    assert!(outcome.is_error());
    assert!(!outcome.is_success());
    let j = outcome.to_json();
    assert_eq!(j["success"], false);
    assert_eq!(j["error"]["code"], "locked");
    assert_eq!(j["error"]["status"], 409);
    assert_eq!(j["error"]["holder"], "agent-b");
    let block = outcome.anthropic_result("toolu_1");
    assert_eq!(
        (block["is_error"].as_bool(), block["tool_use_id"].as_str()),
        (Some(true), Some("toolu_1"))
    );
    assert!(block["content"].as_str().unwrap().contains("locked"));

    // The edit and delete doors are refused too, and nothing was written.
    for (tool, args) in [
        (
            "file_edit",
            json!({"path": "src/app.py", "old_string": "a", "new_string": "b"}),
        ),
        ("delete_file", json!({"path": "src/app.py"})),
    ] {
        let o = tools.call(tool, args).await;
        assert!(o.is_error(), "{tool}: {}", o.to_text());
    }
    let read = tools.call("file_read", json!({"path": "src/app.py"})).await;
    assert!(read.is_error());
    assert_eq!(read.to_json()["error"]["code"], "file_not_found");
}

#[tokio::test]
async fn calls_run_through_the_client() {
    let gw = TestGateway::spawn().await;
    let tools = AgentTools::for_task(client_as(&gw, "agent-a"), "t1");

    let w = tools
        .call_json(
            "file_write",
            r#"{"path": "a.py", "content": "x = 1\n", "task_id": "elsewhere"}"#,
        )
        .await;
    assert!(w.is_success(), "{}", w.to_text());
    assert_eq!(w.to_json()["task_id"], "t1", "the bound task wins");
    let e = tools
        .call(
            "file_edit",
            json!({"path": "a.py", "old_content": "1", "new_content": "2"}),
        )
        .await;
    assert!(e.is_success(), "{}", e.to_text());
    assert!(e.to_json()["diff"].as_str().unwrap().contains("+x = 2"));
    let r = tools.call("file_read", json!({"path": "a.py"})).await;
    assert_eq!(r.to_json()["content"], "x = 2\n");
    assert_eq!(r.openai_message("call_1")["role"], "tool");

    let c = tools
        .call("claim_file", json!({"path": "a.py", "timeout_sec": 30}))
        .await;
    assert_eq!(c.to_json()["owner"], "agent-a", "the agent is the client's");
    let rel = tools
        .call("release_file", json!({"path": "a.py", "force": true}))
        .await;
    assert!(rel.is_success());
    let again = tools.call("release_file", json!({"path": "a.py"})).await;
    assert_eq!(again.to_json()["error"]["code"], "lock_not_held");

    assert!(tools.call("join_collab", json!({})).await.is_success());
    let s = tools
        .call(
            "log_step",
            json!({"step": {"action": "file_read", "observation": "ok"}}),
        )
        .await;
    assert_eq!(s.to_json()["step"]["agent_id"], "agent-a");
    assert!(tools.call("list_files", json!({})).await.to_json()["files"][0]["path"] == "a.py");
    assert!(tools.call("subscribe_logs", json!(null)).await.is_success());
    assert!(
        tools
            .call("leave_collaboration", json!({}))
            .await
            .is_success()
    );

    let bad = tools
        .call("claim_file", json!({"path": "a.py", "timeout_sec": 0}))
        .await;
    assert_eq!(bad.to_json()["error"]["code"], "invalid_argument");
}

#[tokio::test]
async fn unbound_tools_take_the_task_as_an_argument() {
    let gw = TestGateway::spawn().await;
    let tools = AgentTools::new(client_as(&gw, "agent-a"));
    let w = tools
        .call(
            "file_write",
            json!({"task_id": "t2", "path": "a", "content": "x"}),
        )
        .await;
    assert!(w.is_success());
    let missing = tools
        .call("file_write", json!({"path": "a", "content": "x"}))
        .await;
    assert_eq!(missing.to_json()["error"]["code"], "invalid_argument");
}
