//! Issue #15 item 4, the rest: JSON-RPC batches are served in a session that negotiated
//! 2025-03-26 (the one revision that has them) and refused with a JSON-RPC error naming the
//! revision in later ones; a `notifications/cancelled` naming an open 2026-07-28
//! `subscriptions/listen` ends that listen, also when the cancellation reaches another
//! instance than the one holding the stream.

use crate::mcp::{connect_stateless, watching, write_a_py};
use mcp_testkit::TestGateway;
use rmcp::service::SubscriptionEnd;
use serde_json::{Value, json};
use std::time::Duration;

/// `POST /mcp` with `body`, in `session` (without a protocol header: 2025-03-26 had none) or
/// with the protocol header `version`: (status, JSON body or `Null`).
async fn post(
    gw: &TestGateway,
    body: &Value,
    session: Option<&str>,
    version: Option<&str>,
) -> (u16, Value, Option<String>) {
    crate::mcp::post_mcp(gw, &body.to_string(), session, version).await
}

/// A session that asked for protocol `version` at `initialize`.
async fn session(gw: &TestGateway, version: &str) -> String {
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": version, "capabilities": {},
                   "clientInfo": {"name": "t", "version": "0"}}});
    let (status, body, session) = post(gw, &init, None, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["protocolVersion"], version, "{body}");
    let session = session.expect("a session id");
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let header = (version != "2025-03-26").then_some(version);
    let (status, _, _) = post(gw, &initialized, Some(&session), header).await;
    assert_eq!(status, 202);
    session
}

async fn batches(gw: TestGateway) {
    let s = session(&gw, "2025-03-26").await;
    let batch = json!([
        {"jsonrpc": "2.0", "id": 1, "method": "ping"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "file_write",
            "arguments": {"task_id": "t1", "path": "a.txt", "content": "x"}}},
        {"jsonrpc": "2.0", "method": "notifications/progress",
            "params": {"progressToken": "p", "progress": 1}},
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"arguments": {}}},
        {"jsonrpc": "2.0", "id": "four", "method": "tools/list"},
    ]);
    let (status, body, _) = post(&gw, &batch, Some(&s), None).await;
    assert_eq!(status, 200, "{body}");
    let answers = body
        .as_array()
        .unwrap_or_else(|| panic!("an array: {body}"));
    let by_id = |id: Value| {
        answers
            .iter()
            .find(|a| a["id"] == id)
            .unwrap_or_else(|| panic!("an answer for {id}: {body}"))
    };
    assert_eq!(answers.len(), 4, "one answer per request: {body}");
    assert_eq!(by_id(json!(1))["result"], json!({}), "{body}");
    let written = &by_id(json!(2))["result"]["structuredContent"];
    assert_eq!(
        (written["success"].as_bool(), written["version"].as_i64()),
        (Some(true), Some(1)),
        "{body}"
    );
    assert_eq!(by_id(json!(3))["error"]["code"], -32602, "{body}");
    assert!(
        by_id(json!("four"))["result"]["tools"]
            .as_array()
            .is_some_and(|t| !t.is_empty()),
        "{body}"
    );
    // The write happened once.
    let (status, read) = gw
        .tool("file_read", json!({"task_id": "t1", "path": "a.txt"}))
        .await;
    assert_eq!((status, read["version"].as_i64()), (200, Some(1)), "{read}");
    // Notifications only: accepted, nothing to answer.
    let only = json!([{"jsonrpc": "2.0", "method": "notifications/progress",
        "params": {"progressToken": "p", "progress": 2}}]);
    let (status, _, _) = post(&gw, &only, Some(&s), None).await;
    assert_eq!(status, 202);
    // An empty batch is one Invalid Request.
    let (status, body, _) = post(&gw, &json!([]), Some(&s), None).await;
    assert_eq!(
        (status, body["error"]["code"].as_i64()),
        (400, Some(-32600)),
        "{body}"
    );

    // Later revisions have no batches: refused, naming the revision.
    let later = session(&gw, "2025-11-25").await;
    let two_pings = json!([{"jsonrpc": "2.0", "id": 1, "method": "ping"},
                           {"jsonrpc": "2.0", "id": 2, "method": "ping"}]);
    let (status, body, _) = post(&gw, &two_pings, Some(&later), Some("2025-11-25")).await;
    assert_eq!(
        (status, body["error"]["code"].as_i64()),
        (400, Some(-32600)),
        "{body}"
    );
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("2025-11-25") && message.contains("2025-03-26"),
        "{body}"
    );
    let (status, body, _) = post(&gw, &two_pings, None, Some("2026-07-28")).await;
    assert_eq!(
        (status, body["error"]["code"].as_i64()),
        (400, Some(-32600)),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("2026-07-28"),
        "{body}"
    );
}

#[tokio::test]
async fn batches_are_served_in_2025_03_26_and_refused_in_later_revisions() {
    batches(TestGateway::spawn().await).await;
    batches(TestGateway::spawn_embedded().await).await;
}

/// `notifications/cancelled` for `id`, sent by hand to `gw` (as a client would after
/// reconnecting through a load balancer to another instance).
async fn cancel(gw: &TestGateway, id: &rmcp::model::RequestId) {
    let cancelled = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": id, "reason": "done"}});
    let r = gw
        .http
        .post(format!("{}/mcp", gw.base))
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "notifications/cancelled")
        .json(&cancelled)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    let body = r.text().await.unwrap_or_default();
    assert_eq!(status, 202, "{body}");
}

/// Waits for the subscription to end: it must, within 10 s, and without an error.
async fn ends(subscription: &mut rmcp::service::Subscription) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let next = tokio::time::timeout_at(deadline, subscription.next())
            .await
            .expect("the cancelled listen ends within 10 s");
        match next.expect("no error") {
            None => break,
            // An update made before the cancellation may still arrive.
            Some(_) => continue,
        }
    }
    assert!(
        matches!(subscription.end(), Some(SubscriptionEnd::Graceful(_))),
        "{:?}",
        subscription.end()
    );
}

#[tokio::test]
async fn a_cancelled_listen_ends_on_the_instance_that_holds_it() {
    let a = TestGateway::spawn().await;
    let b = a.another_instance().await;
    let client = connect_stateless(&a, None).await;
    let uri = "workspace://t1/a.py";
    let filter = || watching(uri);
    let mut first = client.listen(filter()).await.expect("subscriptions/listen");
    let mut second = client.listen(filter()).await.expect("subscriptions/listen");
    assert_ne!(first.id(), second.id());
    // Cancelled through the other instance: the stream on `a` ends.
    cancel(&b, first.id()).await;
    ends(&mut first).await;
    // The other listen goes on.
    write_a_py(&a, "x").await;
    let next = tokio::time::timeout(Duration::from_secs(10), second.next())
        .await
        .expect("the other listen still hears")
        .expect("no error");
    assert!(next.is_some(), "{:?}", second.end());
    // Cancelled through the instance holding it.
    cancel(&a, second.id()).await;
    ends(&mut second).await;
    client.cancel().await.expect("client stops");

    // Embedded: one instance.
    let gw = TestGateway::spawn_embedded().await;
    let client = connect_stateless(&gw, None).await;
    let mut listen = client.listen(filter()).await.expect("subscriptions/listen");
    cancel(&gw, listen.id()).await;
    ends(&mut listen).await;
    client.cancel().await.expect("client stops");
}
