//! Issue #15 item 3: resource notifications on a 2025-11-25 session stream (`GET /mcp`) carry
//! SSE ids, and a client that reconnects with `Last-Event-ID` — to the same instance or to
//! another one — first hears of every change made while it was away.

use mcp_testkit::TestGateway;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

fn request(gw: &TestGateway, method: Method, session: Option<&str>) -> reqwest::RequestBuilder {
    let mut r = gw
        .http
        .request(method, format!("{}/mcp", gw.base))
        .header("accept", "application/json, text/event-stream");
    if let Some(s) = session {
        r = r
            .header("mcp-session-id", s)
            .header("mcp-protocol-version", "2025-11-25");
    }
    r
}

/// A session on `gw` subscribed to `uri`.
async fn session_subscribed_to(gw: &TestGateway, uri: &str) -> String {
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                   "clientInfo": {"name": "t", "version": "0"}}});
    let r = request(gw, Method::POST, None)
        .json(&init)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let session = r.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let _ = r.text().await;
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let r = request(gw, Method::POST, Some(&session))
        .json(&initialized)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let subscribe = json!({"jsonrpc": "2.0", "id": 2, "method": "resources/subscribe",
        "params": {"uri": uri}});
    let r = request(gw, Method::POST, Some(&session))
        .json(&subscribe)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let text = r.text().await.unwrap();
    assert!(text.contains("\"result\""), "{text}");
    session
}

/// One SSE event: its id and its data (JSON, or `Null` for an empty event).
#[derive(Debug)]
struct SseEvent {
    id: Option<String>,
    data: Value,
}

/// The session stream (`GET /mcp`), resuming after `last` when given.
struct Stream {
    response: reqwest::Response,
    buffer: String,
}

impl Stream {
    async fn open(gw: &TestGateway, session: &str, last: Option<&str>) -> Stream {
        let mut r = request(gw, Method::GET, Some(session));
        if let Some(id) = last {
            r = r.header("last-event-id", id);
        }
        let response = r.send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200);
        Stream {
            response,
            buffer: String::new(),
        }
    }

    /// The next event (keep-alive comments skipped), within 10 s.
    async fn next(&mut self) -> SseEvent {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = SseEvent {
                    id: None,
                    data: Value::Null,
                };
                let mut seen = false;
                for line in block.lines() {
                    if let Some(id) = line.strip_prefix("id:") {
                        event.id = Some(id.trim().to_owned());
                        seen = true;
                    } else if let Some(d) = line.strip_prefix("data:") {
                        event.data = serde_json::from_str(d.trim()).unwrap_or(Value::Null);
                        seen = true;
                    }
                }
                if seen {
                    return event;
                }
                continue;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.response.chunk())
                .await
                .expect("an event in time")
                .expect("the stream reads")
                .expect("the stream is open");
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Events until one names `uri` in a resource update; the ids of all, in order.
    async fn until_updated(&mut self, uri: &str) -> (SseEvent, Vec<Option<String>>) {
        let mut ids = Vec::new();
        loop {
            let e = self.next().await;
            ids.push(e.id.clone());
            if e.data["method"] == "notifications/resources/updated"
                && e.data["params"]["uri"] == uri
            {
                return (e, ids);
            }
        }
    }
}

/// The position an id names (`u<ms>-<seq>`), to compare.
fn pos(id: &str) -> (i64, i64) {
    let (ms, seq) = id
        .strip_prefix('u')
        .expect("a position id")
        .split_once('-')
        .unwrap();
    (ms.parse().unwrap(), seq.parse().unwrap())
}

async fn write(gw: &TestGateway, path: &str, content: &str) {
    let (status, body) = gw
        .tool(
            "file_write",
            json!({"task_id": "t1", "path": path, "content": content}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

/// The stream opens with a position; a live notification has one; after a reconnect with the
/// last one, the changes made while away come first, then live ones.
async fn resume_hears_what_was_missed(a: &TestGateway, b: &TestGateway) {
    let uri = "workspace://t1/a.py";
    let session = session_subscribed_to(a, uri).await;

    let mut stream = Stream::open(a, &session, None).await;
    let first = stream.next().await;
    let start = first
        .id
        .clone()
        .expect("the stream opens with a resume point");
    // rmcp's own priming event may come first; the position follows it.
    let start = if start.starts_with('u') {
        start
    } else {
        stream.next().await.id.expect("a position")
    };
    assert!(start.starts_with('u'), "{start}");
    write(a, "a.py", "one").await;
    let (live, _) = stream.until_updated(uri).await;
    let last = live.id.expect("a live notification carries its position");
    assert!(pos(&last) > pos(&start), "{start} then {last}");
    drop(stream);

    // Away: two changes to the subscribed file, one to another file.
    write(b, "a.py", "two").await;
    write(b, "other.py", "x").await;
    write(b, "a.py", "three").await;

    // Back, on the other instance, with the last id seen.
    let mut resumed = Stream::open(b, &session, Some(&last)).await;
    let (missed, _) = resumed.until_updated(uri).await;
    let missed_id = missed.id.expect("a replayed notification has its position");
    assert!(pos(&missed_id) > pos(&last), "{last} then {missed_id}");
    let (again, _) = resumed.until_updated(uri).await;
    let again_id = again.id.expect("position");
    assert!(
        pos(&again_id) > pos(&missed_id),
        "both missed changes, in order"
    );
    // Then live again.
    write(b, "a.py", "four").await;
    resumed.until_updated(uri).await;

    // Resuming from the stream's opening position hears of the first change too.
    let mut from_start = Stream::open(a, &session, Some(&start)).await;
    let (e, _) = from_start.until_updated(uri).await;
    assert_eq!(e.id.as_deref(), Some(last.as_str()));
}

#[tokio::test]
async fn a_session_stream_resumed_on_another_instance_hears_what_it_missed() {
    let a = TestGateway::spawn().await;
    let b = a.another_instance().await;
    resume_hears_what_was_missed(&a, &b).await;
}

#[tokio::test]
async fn an_embedded_session_stream_resumed_hears_what_it_missed() {
    let gw = TestGateway::spawn_embedded().await;
    resume_hears_what_was_missed(&gw, &gw).await;
}
