//! MCP sessions belong to the agent that created them (issue #14 item 4): with
//! authentication on, another agent's token that presents the session id gets 404 — as for
//! an unknown session — on `POST`, `GET` and `DELETE`, on every instance, and the owner's
//! session is untouched by the attempts.

use mcp_domain::Role;
use mcp_testkit::TestGateway;
use reqwest::Method;
use serde_json::{Value, json};

/// A 2025-11-25 request to `gw`'s `/mcp` as `token`, in `session` when given. The status,
/// the session id it answers with, and (unless it is the `GET` stream) the body as text.
async fn mcp(
    gw: &TestGateway,
    method: Method,
    token: &str,
    session: Option<&str>,
    body: Option<Value>,
) -> (u16, Option<String>, String) {
    let mut r = gw
        .http
        .request(method.clone(), format!("{}/mcp", gw.base))
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25");
    if let Some(s) = session {
        r = r.header("mcp-session-id", s);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.expect("request");
    let status = resp.status().as_u16();
    let id = resp
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_owned());
    // The standalone stream stays open: only its status matters here.
    let text = if method == Method::GET && status == 200 {
        String::new()
    } else {
        resp.text().await.unwrap_or_default()
    };
    (status, id, text)
}

fn request(id: u64, method: &str, params: Value) -> Option<Value> {
    Some(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
}

#[tokio::test]
async fn a_session_exists_only_for_the_agent_that_created_it_on_every_instance() {
    let a = TestGateway::spawn_secured().await;
    let b = a.another_instance().await;
    let victim = a.token("victim", &["t1"], Role::Agent);
    let intruder = a.token("intruder", &["t1"], Role::Agent);

    let init = request(
        1,
        "initialize",
        json!({"protocolVersion": "2025-11-25", "capabilities": {},
               "clientInfo": {"name": "victim", "version": "0"}}),
    );
    let (status, session, _) = mcp(&a, Method::POST, &victim, None, init).await;
    assert_eq!(status, 200);
    let session = session.expect("a session id");
    let s = Some(session.as_str());
    let initialized = Some(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    assert_eq!(mcp(&a, Method::POST, &victim, s, initialized).await.0, 202);
    let subscribe = request(
        2,
        "resources/subscribe",
        json!({"uri": "workspace://t1/a.py"}),
    );
    let (status, _, body) = mcp(&a, Method::POST, &victim, s, subscribe).await;
    assert_eq!(status, 200, "{body}");

    // Another agent, on either instance, with every method: no such session.
    for gw in [&a, &b] {
        let (status, _, body) = mcp(gw, Method::GET, &intruder, s, None).await;
        assert_eq!(status, 404, "GET /mcp of another agent's session: {body}");
        let ping = request(3, "ping", json!({}));
        let (status, _, body) = mcp(gw, Method::POST, &intruder, s, ping).await;
        assert_eq!(status, 404, "POST /mcp in another agent's session: {body}");
        let list = request(4, "resources/list", json!({}));
        assert_eq!(mcp(gw, Method::POST, &intruder, s, list).await.0, 404);
        let (status, _, body) = mcp(gw, Method::DELETE, &intruder, s, None).await;
        assert_eq!(status, 404, "DELETE of another agent's session: {body}");
    }

    // The owner's session survived all of it, on both instances.
    for gw in [&b, &a] {
        let ping = request(5, "ping", json!({}));
        let (status, _, body) = mcp(gw, Method::POST, &victim, s, ping).await;
        assert_eq!(status, 200, "the owner's session: {body}");
        assert!(body.contains("\"result\""), "{body}");
    }
    let (status, _, _) = mcp(&b, Method::GET, &victim, s, None).await;
    assert_eq!(status, 200, "the owner's notification stream");
    // A new token of the same agent (a refreshed one) still owns it.
    let renewed = a.token("victim", &["t1"], Role::Agent);
    let ping = request(6, "ping", json!({}));
    assert_eq!(mcp(&b, Method::POST, &renewed, s, ping).await.0, 200);
    // The owner may end it; then it is gone for the owner too.
    assert_eq!(mcp(&b, Method::DELETE, &victim, s, None).await.0, 204);
    let ping = request(7, "ping", json!({}));
    assert_eq!(mcp(&a, Method::POST, &victim, s, ping).await.0, 404);
}
