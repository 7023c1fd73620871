//! Stream ids from clients are checked at the edge (issue #14, item 6): the logs page bound
//! `before`, SSE `since` / `Last-Event-ID` and a WebSocket subscription's `since` are parsed
//! by one rule (`mcp_api::StreamId`), and an id that is malformed or out of range is a
//! 400 `invalid_argument` in both modes — never a 500 from the backend, never a stream that
//! ends at once with a `cutoff` pointing back at the same id.

use crate::{assert_error, in_both_modes, ok};
use futures::{SinkExt, StreamExt};
use mcp_testkit::TestGateway;
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// The largest id a Redis stream can name (both parts `u64::MAX`): nothing comes after it.
const LAST_REDIS_ID: &str = "18446744073709551615-18446744073709551615";

/// A GET with an optional `Last-Event-ID`; only the status and a JSON body (when there is
/// one) are read, so an SSE stream that opens (200) is not waited on.
async fn get_status(gw: &TestGateway, path: &str, last_event_id: Option<&str>) -> (u16, Value) {
    let mut req = gw.http.get(format!("{}{path}", gw.base));
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    if status == 200 {
        return (status, Value::Null);
    }
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The first answer of a WebSocket subscription (`subscribed` or `error`).
async fn ws_subscribe(gw: &TestGateway, since: &str) -> Value {
    let url = format!("{}/ws", gw.base.replacen("http", "ws", 1));
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.expect("ws");
    let msg = json!({"op": "subscribe", "task_id": "t1", "since": since}).to_string();
    socket.send(WsMessage::Text(msg.into())).await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match socket.next().await {
                Some(Ok(WsMessage::Text(t))) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if v["op"] == "subscribed" || v["op"] == "error" {
                        return v;
                    }
                }
                Some(Ok(_)) => {}
                other => panic!("websocket ended: {other:?}"),
            }
        }
    })
    .await
    .expect("an answer to subscribe")
}

async fn bad_stream_ids_are_400_at_every_door(gw: TestGateway) {
    let first = ok(gw
        .tool("log_step", json!({"task_id": "t1", "step": {"n": 1}}))
        .await);
    let id = first["id"].as_str().unwrap().to_owned();
    ok(gw
        .tool("log_step", json!({"task_id": "t1", "step": {"n": 2}}))
        .await);

    // The logs page bound: nothing is older than 0-0; ids the step log cannot hold.
    for before in [
        "0-0",
        "0",
        "abc",
        "1-",
        "-1",
        "%2B1-0",
        "9223372036854775808-0",
        "1-9223372036854775808",
        LAST_REDIS_ID,
        "18446744073709551616-0",
    ] {
        let got = get_status(
            &gw,
            &format!("/resources/tasks/t1/logs?before={before}"),
            None,
        )
        .await;
        assert_error(&got, 400, "invalid_argument");
    }
    // A real bound still pages.
    let (status, page) = gw
        .get("/resources/tasks/t1/logs?before=99999999999999-0")
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["steps"].as_array().unwrap().len(), 2, "{page}");
    let newer = gw.get("/resources/tasks/t1/logs?limit=1").await.1["steps"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, page) = gw
        .get(&format!("/resources/tasks/t1/logs?before={newer}"))
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["steps"][0]["id"], id.as_str(), "{page}");

    // Resume points: nothing follows the last id; ids from far in the future were never
    // issued (a watcher there would never see an event); malformed ones.
    for since in [
        LAST_REDIS_ID,
        "9223372036854775807-9223372036854775807",
        "99999999999999-0",
        "1-99999999999999999999",
        "x",
    ] {
        let got = get_status(&gw, &format!("/tasks/t1/events?since={since}"), None).await;
        assert_error(&got, 400, "invalid_argument");
        let got = get_status(&gw, "/tasks/t1/events", Some(since)).await;
        assert_error(&got, 400, "invalid_argument");
        let answer = ws_subscribe(&gw, since).await;
        assert_eq!(answer["op"], "error", "{since}: {answer}");
        assert_eq!(answer["code"], "invalid_argument", "{since}: {answer}");
    }
    // Valid resume points still open.
    for since in ["0", "0-0", id.as_str()] {
        let got = get_status(&gw, &format!("/tasks/t1/events?since={since}"), None).await;
        assert_eq!(got.0, 200, "{since}: {}", got.1);
        assert_eq!(
            ws_subscribe(&gw, since).await["op"],
            "subscribed",
            "{since}"
        );
    }
}

in_both_modes!(bad_stream_ids_are_400_at_every_door);
