//! The credential matrix for the other doors: the live streams (SSE `GET /tasks/{id}/events`,
//! WebSocket `GET /ws`) and `/mcp`. Refused credentials are refused at the HTTP level (401)
//! before any stream or MCP session exists; a valid token outside its scope or role is
//! refused per request (403, a WebSocket `error` message, an MCP tool error `forbidden`);
//! nothing refused changes state.

use crate::mcp::{Stateless, connect_stateless};
use futures::{SinkExt, StreamExt};
use mcp_domain::Role;
use mcp_gateway::auth::{Authenticator, Claims, TaskScope};
use mcp_testkit::TestGateway;
use rmcp::model::{CallToolRequestParams, CallToolResult, ReadResourceRequestParams};
use rmcp::service::{RoleClient, RunningService};
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// An MCP client (2026-07-28, stateless) sending `token` with every request.
async fn mcp_client(gw: &TestGateway, token: &str) -> RunningService<RoleClient, Stateless> {
    connect_stateless(gw, Some(token)).await
}

async fn mcp_call(
    client: &RunningService<RoleClient, Stateless>,
    tool: &str,
    a: Value,
) -> CallToolResult {
    client
        .call_tool(
            CallToolRequestParams::new(tool.to_owned())
                .with_arguments(a.as_object().unwrap().clone()),
        )
        .await
        .unwrap_or_else(|e| panic!("{tool}: {e}"))
}

#[track_caller]
fn tool_code(r: &CallToolResult) -> String {
    if r.is_error != Some(true) {
        return "ok".into();
    }
    let text = &r
        .content
        .first()
        .and_then(|c| c.as_text())
        .expect("error body")
        .text;
    assert!(!text.contains("TOP-SECRET"), "{text}");
    let body: serde_json::Value = serde_json::from_str(text).expect("a JSON error body");
    body["code"].as_str().unwrap().to_owned()
}

/// A WebSocket upgrade with `token`: the HTTP status of a refusal, or the open socket.
async fn ws_connect(
    gw: &TestGateway,
    token: Option<&str>,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    u16,
> {
    let mut req = format!("{}/ws", gw.base.replacen("http://", "ws://", 1))
        .into_client_request()
        .unwrap();
    if let Some(t) = token {
        req.headers_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((socket, _)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("ws: {e}"),
    }
}

/// Subscribes to `task` and answers the first reply's `op` (and `code` of an error).
async fn ws_subscribe(
    socket: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    task: &str,
) -> (String, String) {
    socket
        .send(WsMessage::Text(
            json!({"op": "subscribe", "task_id": task})
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(Ok(WsMessage::Text(t))) = socket.next().await {
                return serde_json::from_str::<Value>(&t).unwrap();
            }
        }
    })
    .await
    .expect("a reply to subscribe");
    assert!(!reply.to_string().contains("TOP-SECRET"));
    (
        reply["op"].as_str().unwrap_or_default().to_owned(),
        reply["code"].as_str().unwrap_or_default().to_owned(),
    )
}

/// The HTTP status of `GET /tasks/{task}/events` (the stream is dropped unread).
async fn sse_status(gw: &TestGateway, task: &str, token: Option<&str>) -> u16 {
    let mut req = gw.http.get(format!("{}/tasks/{task}/events", gw.base));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    r.status().as_u16()
}

async fn durable_state(gw: &TestGateway) -> Vec<String> {
    let pool = gw.pg.pool();
    let mut out = Vec::new();
    for sql in [
        "SELECT task_id || '|' || path || '|' || version || '|' || deleted FROM files",
        "SELECT actor || '|' || action FROM audit_log",
        "SELECT task_id || '|' || agent_id FROM collaborators",
    ] {
        let mut rows: Vec<String> = sqlx::query_scalar(sql).fetch_all(pool).await.unwrap();
        rows.sort();
        out.extend(rows);
    }
    let mut c = gw.redis.connection().await;
    let keys = mcp_domain::store::redis::keys::Keys::new(gw.redis.prefix.clone());
    let (t1, b) = (
        mcp_domain::TaskId::parse("t1").unwrap(),
        mcp_domain::FilePath::parse("b.txt").unwrap(),
    );
    for key in [
        keys.events(&t1),
        keys.logs(&t1),
        keys.lock(&t1, &b),
        keys.outbox(),
    ] {
        let exists: i64 = redis::cmd("EXISTS")
            .arg(&key)
            .query_async(&mut c)
            .await
            .unwrap();
        let len: i64 = if key.contains("lock") {
            0
        } else {
            redis::cmd("XLEN")
                .arg(&key)
                .query_async(&mut c)
                .await
                .unwrap()
        };
        let key = key.strip_prefix(gw.redis.prefix.as_str()).unwrap_or(&key);
        out.push(format!("{key}: {exists} {len}"));
    }
    out
}

#[tokio::test]
async fn streams_and_mcp_refuse_bad_or_insufficient_credentials_and_change_nothing() {
    let gw = TestGateway::spawn_secured().await;
    let alice = gw.token("alice", &["t1"], Role::Agent);
    let bob = gw.token("bob", &["t2"], Role::Agent);
    let w = gw
        .tool_as(
            &alice,
            "file_write",
            json!({"task_id": "t1", "path": "a.txt", "content": "hi"}),
        )
        .await;
    assert_eq!(w.0, 200, "{}", w.1);
    let w = gw
        .tool_as(
            &bob,
            "file_write",
            json!({"task_id": "t2", "path": "s", "content": "TOP-SECRET"}),
        )
        .await;
    assert_eq!(w.0, 200, "{}", w.1);
    let before = durable_state(&gw).await;

    let now = chrono::Utc::now().timestamp();
    let expired = gw.mint(&Claims {
        agent_id: Some("alice".into()),
        exp: Some(json!(now - 3600)),
        tasks: Some(TaskScope::One("*".into())),
        ..Claims::default()
    });
    let forged =
        Authenticator::new("not-the-gateway-secret-0123456789".parse().unwrap(), true).mint(
            &Authenticator::claims_for("alice", None, Role::Admin, Duration::from_secs(3600)),
        );
    for (what, token) in [
        ("no token", None),
        ("expired", Some(expired.as_str())),
        ("wrong signature", Some(forged.as_str())),
    ] {
        assert_eq!(sse_status(&gw, "t1", token).await, 401, "SSE, {what}");
        assert_eq!(ws_connect(&gw, token).await.err(), Some(401), "WS, {what}");
        let mut req = gw
            .http
            .post(format!("{}/mcp", gw.base))
            .header("accept", "application/json, text/event-stream")
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                          "params": {"name": "file_write", "arguments":
                              {"task_id": "t1", "path": "a.txt", "content": "evil"}}}));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status().as_u16(), 401, "MCP, {what}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["code"], "unauthorized");
    }

    // A valid token for another task.
    let other = gw.token("mallory", &["t2"], Role::Agent);
    assert_eq!(sse_status(&gw, "t1", Some(&other)).await, 403);
    let mut ws = ws_connect(&gw, Some(&other))
        .await
        .expect("a valid token connects");
    assert_eq!(
        ws_subscribe(&mut ws, "t1").await,
        ("error".to_owned(), "forbidden".to_owned())
    );
    let mcp = mcp_client(&gw, &other).await;
    for (tool, args) in [
        ("file_read", json!({"task_id": "t1", "path": "a.txt"})),
        (
            "file_write",
            json!({"task_id": "t1", "path": "a.txt", "content": "evil"}),
        ),
        ("claim_file", json!({"task_id": "t1", "path": "b.txt"})),
        ("log_step", json!({"task_id": "t1", "step": {}})),
        ("join_collab", json!({"task_id": "t1"})),
    ] {
        assert_eq!(
            tool_code(&mcp_call(&mcp, tool, args).await),
            "forbidden",
            "MCP {tool}"
        );
    }
    assert!(
        mcp.read_resource(ReadResourceRequestParams::new("tasks://t1/files"))
            .await
            .is_err(),
        "MCP resource of another task"
    );
    mcp.cancel().await.ok();

    // An observer reads but does not write; an agent cannot force a release.
    let observer = gw.token("olga", &["t1"], Role::Observer);
    assert_eq!(sse_status(&gw, "t1", Some(&observer)).await, 200);
    let mut ws = ws_connect(&gw, Some(&observer)).await.unwrap();
    assert_eq!(ws_subscribe(&mut ws, "t1").await.0, "subscribed");
    let mcp = mcp_client(&gw, &observer).await;
    assert_eq!(
        tool_code(&mcp_call(&mcp, "file_read", json!({"task_id": "t1", "path": "a.txt"})).await),
        "ok"
    );
    for (tool, args) in [
        (
            "file_write",
            json!({"task_id": "t1", "path": "a.txt", "content": "evil"}),
        ),
        ("delete_file", json!({"task_id": "t1", "path": "a.txt"})),
        ("claim_file", json!({"task_id": "t1", "path": "b.txt"})),
        ("log_step", json!({"task_id": "t1", "step": {}})),
    ] {
        assert_eq!(
            tool_code(&mcp_call(&mcp, tool, args).await),
            "forbidden",
            "observer {tool}"
        );
    }
    mcp.cancel().await.ok();
    let mcp = mcp_client(&gw, &alice).await;
    assert_eq!(
        tool_code(
            &mcp_call(
                &mcp,
                "release_file",
                json!({"task_id": "t1", "path": "b.txt", "force": true})
            )
            .await
        ),
        "forbidden"
    );
    // Another agent_id than the token's.
    assert_eq!(
        tool_code(
            &mcp_call(
                &mcp,
                "file_write",
                json!({"task_id": "t1", "path": "a.txt", "content": "x", "agent_id": "bob"})
            )
            .await
        ),
        "forbidden"
    );
    assert_eq!(
        durable_state(&gw).await,
        before,
        "a refused request changed state"
    );

    // Valid: the token's agent acts through every door.
    let r = mcp_call(
        &mcp,
        "file_write",
        json!({"task_id": "t1", "path": "a.txt", "content": "v2"}),
    )
    .await;
    assert_eq!(tool_code(&r), "ok");
    mcp.cancel().await.ok();
    assert_eq!(sse_status(&gw, "t1", Some(&alice)).await, 200);
    let mut ws = ws_connect(&gw, Some(&alice)).await.unwrap();
    assert_eq!(ws_subscribe(&mut ws, "t1").await.0, "subscribed");
    let by: String =
        sqlx::query_scalar("SELECT updated_by FROM files WHERE task_id = 't1' AND path = 'a.txt'")
            .fetch_one(gw.pg.pool())
            .await
            .unwrap();
    assert_eq!(by, "alice");
}
