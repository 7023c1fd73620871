//! Watching a task before anything happened in it (issue #14 item 12): an SSE stream and a
//! WebSocket subscription opened on a task that has no row and no event yet are accepted
//! (200, `subscribed`) and deliver the first write and everything after; the scope check
//! stays (a token without the task gets 403).

use futures::{SinkExt, StreamExt};
use mcp_domain::Role;
use mcp_testkit::TestGateway;
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// Longest wait for one expected message.
const WAIT: Duration = Duration::from_secs(10);

crate::in_both_modes!(a_watcher_that_opens_first_gets_every_event);

async fn a_watcher_that_opens_first_gets_every_event(gw: TestGateway) {
    let sse = gw
        .http
        .get(format!("{}/tasks/fresh/events", gw.base))
        .send()
        .await
        .expect("sse request");
    assert_eq!(sse.status().as_u16(), 200, "SSE on a task without events");
    let mut sse = Box::pin(sse.bytes_stream());

    let url = format!("{}/ws", gw.base.replacen("http://", "ws://", 1));
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("ws");
    ws.send(WsMessage::Text(
        json!({"op": "subscribe", "task_id": "fresh"})
            .to_string()
            .into(),
    ))
    .await
    .expect("send");
    let first = ws_next(&mut ws).await;
    assert_eq!(first["op"], "subscribed", "{first}");

    for (i, path) in ["a.txt", "b.txt"].iter().enumerate() {
        let (status, body) = gw
            .tool(
                "file_write",
                json!({"task_id": "fresh", "path": path, "content": format!("{i}")}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }

    // SSE: both writes, in order.
    let mut text = String::new();
    tokio::time::timeout(WAIT, async {
        while !text.contains("b.txt") {
            let chunk = sse.next().await.expect("the stream stays open").unwrap();
            text.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    })
    .await
    .expect("both events on the SSE stream");
    let a = text.find("a.txt").expect("the first write");
    assert!(a < text.find("b.txt").unwrap());
    assert!(text.contains("event: file_written"), "{text}");

    // WebSocket: the same two events.
    for path in ["a.txt", "b.txt"] {
        let m = ws_next(&mut ws).await;
        assert_eq!(m["op"], "event", "{m}");
        assert_eq!(m["task_id"], "fresh");
        assert_eq!(m["event"]["type"], "file_written");
        assert_eq!(m["event"]["data"]["path"], path, "{m}");
    }
}

async fn ws_next(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> Value {
    tokio::time::timeout(WAIT, async {
        loop {
            match ws.next().await.expect("open").expect("a frame") {
                WsMessage::Text(t) => return serde_json::from_str(&t).unwrap(),
                WsMessage::Close(f) => panic!("closed: {f:?}"),
                _ => {}
            }
        }
    })
    .await
    .expect("a websocket message")
}

#[tokio::test]
async fn the_scope_check_still_refuses_a_task_outside_the_token() {
    let gw = TestGateway::spawn_secured().await;
    let other = gw.token("a1", &["other"], Role::Agent);
    let (status, body) = gw.get_as(&other, "/tasks/fresh/events").await;
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")));
    let mine = gw.token("a1", &["fresh"], Role::Agent);
    let r = gw
        .http
        .get(format!("{}/tasks/fresh/events", gw.base))
        .bearer_auth(&mine)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}
