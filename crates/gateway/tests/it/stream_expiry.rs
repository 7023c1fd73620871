//! Open streams end when their token expires (issue #14 item 8): an SSE stream ends with a
//! `cutoff` of reason `token_expired` (naming where to resume), a WebSocket gets that cutoff
//! for each subscription and then a close frame 1008 `token expired`, and the MCP streams (the
//! 2025-11-25 `GET /mcp` stream and a 2026-07-28 `subscriptions/listen`) end — all when the
//! same token starts getting 401 on REST, not later.

use crate::mcp::{connect_stateless, watching};
use futures::{SinkExt, StreamExt};
use mcp_domain::Role;
use mcp_gateway::auth::{Authenticator, LEEWAY_SECS};
use mcp_testkit::TestGateway;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Longer than any stream may outlive its token here (it expires 2–3 s after minting).
const WAIT: Duration = Duration::from_secs(8);

/// A token on `t1` that the gateway accepts for 2–3 more seconds: its `exp` is already past
/// by less than the clock-skew leeway, which ends 2 s from now.
fn short_token(gw: &TestGateway, agent: &str) -> String {
    let mut claims =
        Authenticator::claims_for(agent, Some(vec!["t1".into()]), Role::Agent, Duration::ZERO);
    let now = chrono::Utc::now().timestamp();
    claims.exp = Some(json!(now - LEEWAY_SECS + 2));
    gw.mint(&claims)
}

/// Reads a streamed body to its end; panics if it is still open after [`WAIT`].
async fn read_to_end(resp: reqwest::Response) -> String {
    let mut body = resp.bytes_stream();
    let mut text = String::new();
    tokio::time::timeout(WAIT, async {
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(c) => text.push_str(&String::from_utf8_lossy(&c)),
                Err(_) => break,
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the stream is still open {WAIT:?} after its token expired"));
    text
}

async fn write(gw: &TestGateway, path: &str) {
    let writer = gw.token("writer", &["t1"], Role::Agent);
    let (status, body) = gw
        .tool_as(
            &writer,
            "file_write",
            json!({"task_id": "t1", "path": path, "content": "x"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn an_sse_stream_ends_with_a_token_expired_cutoff() {
    let gw = TestGateway::spawn_secured().await;
    let token = short_token(&gw, "watcher");
    let started = Instant::now();
    let resp = gw
        .http
        .get(format!("{}/tasks/t1/events", gw.base))
        .bearer_auth(&token)
        .send()
        .await
        .expect("sse");
    assert_eq!(resp.status().as_u16(), 200);
    write(&gw, "a.txt").await;
    let text = read_to_end(resp).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let event_id = text
        .split("\n\n")
        .find(|m| m.contains("event: file_written"))
        .and_then(|m| m.lines().find_map(|l| l.strip_prefix("id: ")))
        .unwrap_or_else(|| panic!("the event before the expiry: {text}"))
        .to_owned();
    let cutoff = text
        .split("\n\n")
        .find(|m| m.contains("event: cutoff"))
        .unwrap_or_else(|| panic!("a final cutoff: {text}"));
    let data: Value = serde_json::from_str(
        cutoff
            .lines()
            .find_map(|l| l.strip_prefix("data: "))
            .expect("cutoff data"),
    )
    .unwrap();
    assert_eq!(data["reason"], "token_expired", "{data}");
    assert_eq!(data["resume_from"], event_id.as_str(), "{data}");
    // The same token is refused on REST now.
    let (status, _) = gw.get_as(&token, "/resources/tasks/t1/files").await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn a_websocket_gets_a_cutoff_then_a_close_frame() {
    let gw = TestGateway::spawn_secured().await;
    let token = short_token(&gw, "watcher");
    let started = Instant::now();
    let mut req = format!("ws://{}/ws", gw.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.expect("ws");
    ws.send(WsMessage::Text(
        json!({"op": "subscribe", "task_id": "t1"})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let mut messages = Vec::new();
    let close = tokio::time::timeout(WAIT, async {
        loop {
            match ws.next().await {
                Some(Ok(WsMessage::Text(t))) => {
                    messages.push(serde_json::from_str::<Value>(&t).unwrap())
                }
                Some(Ok(WsMessage::Close(frame))) => return frame,
                Some(Ok(_)) => {}
                Some(Err(e)) => panic!("socket error {e}"),
                None => return None,
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the socket is still open {WAIT:?} after its token expired"));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(messages[0]["op"], "subscribed", "{messages:?}");
    let cutoff = messages
        .iter()
        .find(|m| m["op"] == "cutoff")
        .unwrap_or_else(|| panic!("a cutoff: {messages:?}"));
    assert_eq!(
        (cutoff["task_id"].as_str(), cutoff["reason"].as_str()),
        (Some("t1"), Some("token_expired"))
    );
    let close = close.expect("a close frame");
    assert_eq!(u16::from(close.code), 1008);
    assert_eq!(close.reason.as_str(), "token expired");
}

#[tokio::test]
async fn the_2025_11_25_notification_stream_ends() {
    let gw = TestGateway::spawn_secured().await;
    let token = short_token(&gw, "agent-1");
    let post = |session: Option<String>, body: Value| {
        let mut r = gw
            .http
            .post(format!("{}/mcp", gw.base))
            .bearer_auth(&token)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25")
            .json(&body);
        if let Some(s) = session {
            r = r.header("mcp-session-id", s);
        }
        r.send()
    };
    let started = Instant::now();
    let init = post(
        None,
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "t", "version": "0"}}}),
    )
    .await
    .unwrap();
    assert_eq!(init.status().as_u16(), 200);
    let session = init.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let done = post(
        Some(session.clone()),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await
    .unwrap();
    assert_eq!(done.status().as_u16(), 202);
    let stream = gw
        .http
        .get(format!("{}/mcp", gw.base))
        .bearer_auth(&token)
        .header("accept", "text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status().as_u16(), 200);
    let text = read_to_end(stream).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(text.contains(": token expired"), "{text}");
}

#[tokio::test]
async fn a_2026_07_28_listen_ends() {
    let gw = TestGateway::spawn_secured().await;
    let token = short_token(&gw, "agent-1");
    let started = Instant::now();
    let client = connect_stateless(&gw, Some(&token)).await;
    let mut listen = client
        .listen(watching("workspace://t1/a.py"))
        .await
        .expect("subscriptions/listen");
    // Nothing is written: whatever comes next is the end of the listen.
    let next = tokio::time::timeout(WAIT, listen.next())
        .await
        .unwrap_or_else(|_| panic!("the listen is still open {WAIT:?} after its token expired"));
    assert!(
        !matches!(next, Ok(Some(_))),
        "no notification, only the end: {next:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(6));
}
