//! Live streams (SSE `GET /tasks/{id}/events`, WebSocket `GET /ws`): across two gateway
//! instances sharing one Redis prefix, resumption without gap or duplicate, foreign
//! publishes, slow consumers cut off with a bounded queue, Redis outages, shutdown.
//!
//! No assertion is about time: waits are for conditions, and the timeouts below only turn a
//! hang into a failure.

use crate::{assert_error, ok};
use futures::{SinkExt, StreamExt};
use mcp_api::StreamId;
use mcp_gateway::{AppState, GatewayConfig};
use mcp_testkit::{PrivateRedis, TestDb, TestGateway, TestRedis};
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_util::sync::CancellationToken;

/// Turns a hang into a failure (never a measurement).
const HANG: Duration = Duration::from_secs(30);

/// Another gateway process over the same database and key prefix (its own hub, its own
/// Redis subscription), with its state at hand.
struct Peer {
    base: String,
    state: AppState,
    shutdown: CancellationToken,
    served: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Peer {
    async fn spawn(config: &GatewayConfig, tweak: impl FnOnce(&mut GatewayConfig)) -> Peer {
        let mut config = config.clone();
        tweak(&mut config);
        let stores = mcp_gateway::connect(&config).await.expect("peer connects");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = AppState::new(stores.service(&config), &config);
        let shutdown = CancellationToken::new();
        let served = tokio::spawn(mcp_gateway::serve_on(
            listener,
            state.clone(),
            shutdown.clone(),
        ));
        Peer {
            base,
            state,
            shutdown,
            served: Some(served),
        }
    }

    /// Waits until the hub's Redis subscription is up (needed only where an event that is
    /// merely published, not appended, must arrive).
    async fn subscribed(&self) {
        tokio::time::timeout(HANG, async {
            while !self.state.live.hub.stats().connected {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("hub subscribed to Redis");
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// One SSE message.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sse {
    pub(crate) id: Option<String>,
    pub(crate) event: String,
    pub(crate) data: Value,
}

/// A minimal SSE reader over a streaming response (comments and `retry:` are skipped).
pub(crate) struct SseReader {
    body: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<axum::body::Bytes>> + Send>>,
    buf: String,
}

impl SseReader {
    pub(crate) async fn open(url: &str, last_event_id: Option<&str>) -> SseReader {
        let mut req = reqwest::Client::new().get(url);
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        let resp = req.send().await.expect("sse request");
        assert_eq!(resp.status(), 200, "{url}");
        assert_eq!(
            resp.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        SseReader {
            body: Box::pin(resp.bytes_stream()),
            buf: String::new(),
        }
    }

    /// The next message; `None` when the server ended the stream.
    pub(crate) async fn next(&mut self) -> Option<Sse> {
        tokio::time::timeout(HANG, async {
            loop {
                while let Some(end) = self.buf.find("\n\n") {
                    let frame: String = self.buf.drain(..end + 2).collect();
                    let (mut id, mut event, mut data) = (None, None, String::new());
                    for line in frame.lines() {
                        if let Some(v) = line.strip_prefix("id:") {
                            id = Some(v.trim_start().to_owned());
                        } else if let Some(v) = line.strip_prefix("event:") {
                            event = Some(v.trim_start().to_owned());
                        } else if let Some(v) = line.strip_prefix("data:") {
                            data.push_str(v.trim_start());
                        }
                    }
                    if let Some(event) = event {
                        let data = serde_json::from_str(&data).expect("data is JSON");
                        return Some(Sse { id, event, data });
                    }
                }
                match self.body.next().await {
                    Some(Ok(chunk)) => self.buf.push_str(std::str::from_utf8(&chunk).unwrap()),
                    Some(Err(_)) | None => return None,
                }
            }
        })
        .await
        .expect("an SSE message or the end of the stream")
    }
}

async fn log_step(base: &str, task: &str, n: usize) -> String {
    let r: Value = crate::json_body(
        reqwest::Client::new()
            .post(format!("{base}/tools/log_step"))
            .json(&json!({"task_id": task, "step": {"n": n}})),
    )
    .await;
    assert_eq!(r["success"], true, "{r}");
    r["id"].as_str().unwrap().to_owned()
}

async fn create_task(gw: &TestGateway, task: &str) {
    let r = gw
        .http
        .post(format!("{}/admin/tasks", gw.base))
        .json(&json!({"id": task, "title": task}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

/// The ids of the task's event stream, oldest first.
async fn stream_ids(gw: &TestGateway, task: &str) -> Vec<String> {
    let task = mcp_domain::TaskId::parse(task).unwrap();
    gw.stores
        .hot
        .events_after(&task, StreamId::ZERO, 100_000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id.to_string())
        .collect()
}

#[tokio::test]
async fn a_watcher_on_b_sees_every_write_made_through_a_in_order() {
    let a = TestGateway::spawn().await;
    let b = Peer::spawn(&a.config, |_| {}).await;
    create_task(&a, "t").await;
    let mut sse = SseReader::open(&format!("{}/tasks/t/events", b.base), None).await;
    let mut steps_only = SseReader::open(
        &format!("{}/tasks/t/events?types=step_logged", b.base),
        None,
    )
    .await;
    let metrics = crate::scrape_at(&b.base).await;
    assert!(metrics.contains("mcp_live_watchers"), "{metrics}");
    let before = stream_ids(&a, "t").await.len();
    let mut step_ids = vec![];
    for i in 0..30 {
        if i % 3 == 0 {
            ok(a.tool(
                "file_write",
                json!({"task_id": "t", "path": format!("f{i}"), "content": "x"}),
            )
            .await);
        } else {
            step_ids.push(log_step(&a.base, "t", i).await);
        }
    }
    let written = stream_ids(&a, "t").await[before..].to_vec();
    assert_eq!(written.len(), 30);
    let mut got = vec![];
    for _ in 0..30 {
        let m = sse.next().await.expect("event");
        assert_eq!(
            m.data["id"].as_str(),
            m.id.as_deref(),
            "envelope id = SSE id"
        );
        assert_eq!(m.data["taskId"], "t");
        assert_eq!(m.data["type"].as_str(), Some(m.event.as_str()));
        got.push(m.id.unwrap());
    }
    assert_eq!(got, written, "every write, in order, once");
    for (i, want) in step_ids.iter().enumerate() {
        let m = steps_only.next().await.expect("step event");
        assert_eq!(
            m.event, "step_logged",
            "the filter lets only steps through ({i})"
        );
        assert_eq!(m.data["data"]["id"].as_str(), Some(want.as_str()));
    }
}

#[tokio::test]
async fn bad_task_ids_and_resume_points_are_400() {
    let gw = TestGateway::spawn().await;
    for (path, status, code) in [
        ("/tasks/bad%20id/events", 400, "invalid_argument"),
        ("/tasks/t/events?since=yesterday", 400, "invalid_argument"),
        ("/tasks/t/events?types=a%20b", 400, "invalid_argument"),
    ] {
        assert_error(&gw.get(path).await, status, code);
    }
    let r = gw
        .http
        .get(format!("{}/tasks/t/events", gw.base))
        .header("last-event-id", "x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let s = ok(gw.tool("subscribe_logs", json!({"task_id": "t"})).await);
    assert_eq!(s["stream_url"], "/tasks/t/events");
    let (status, _) = gw.get("/ws").await;
    assert_eq!(status, 400, "GET /ws without an upgrade");
}

#[tokio::test]
async fn a_watcher_that_resumes_gets_exactly_the_missed_events() {
    let a = TestGateway::spawn().await;
    let b = Peer::spawn(&a.config, |_| {}).await;
    resume_gets_exactly_the_missed_events(&a, &b.base).await;
}

#[tokio::test]
async fn a_watcher_that_resumes_gets_exactly_the_missed_events_in_embedded_mode() {
    // One process: the watcher's "other instance" is the same one.
    let a = TestGateway::spawn_embedded().await;
    resume_gets_exactly_the_missed_events(&a, &a.base).await;
}

/// Writes through `a`, watches through `b_base` (another instance, or `a` itself).
async fn resume_gets_exactly_the_missed_events(a: &TestGateway, b_base: &str) {
    let mut ids = vec![];
    for i in 0..6 {
        ids.push(log_step(&a.base, "t", i).await);
    }
    // Replay from the start, read three, and hang up mid-stream.
    let mut sse = SseReader::open(&format!("{b_base}/tasks/t/events?since=0"), None).await;
    let mut seen = vec![];
    for _ in 0..3 {
        seen.push(sse.next().await.unwrap().id.unwrap());
    }
    drop(sse);
    for i in 6..10 {
        ids.push(log_step(&a.base, "t", i).await);
    }
    // Resume on the other instance with Last-Event-ID (it wins over ?since=).
    let mut sse = SseReader::open(
        &format!("{}/tasks/t/events?since=0", a.base),
        Some(seen.last().unwrap()),
    )
    .await;
    for _ in 3..10 {
        seen.push(sse.next().await.unwrap().id.unwrap());
    }
    let sentinel = log_step(&a.base, "t", 99).await;
    let next = sse.next().await.unwrap();
    // The event names the step it reports (event ids and step ids are different streams).
    assert_eq!(
        next.data["data"]["id"].as_str(),
        Some(sentinel.as_str()),
        "nothing extra"
    );
    let step_event_ids: Vec<String> = stream_ids(a, "t").await;
    assert_eq!(seen, step_event_ids[..10], "no gap, no duplicate");
    // ?since= alone works the same.
    let mut sse = SseReader::open(
        &format!("{b_base}/tasks/t/events?since={}", step_event_ids[8]),
        None,
    )
    .await;
    assert_eq!(
        sse.next().await.unwrap().id,
        Some(step_event_ids[9].clone())
    );
    let after = sse.next().await.unwrap();
    assert_eq!(after.data["data"]["id"].as_str(), Some(sentinel.as_str()));
    assert_eq!(ids.len(), 10);
}

/// A WebSocket client on `base`.
struct Ws {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl Ws {
    async fn connect(base: &str) -> Ws {
        let url = format!("{}/ws", base.replacen("http://", "ws://", 1));
        let (socket, _) = tokio_tungstenite::connect_async(url).await.expect("ws");
        Ws { socket }
    }

    async fn send(&mut self, v: Value) {
        self.socket
            .send(WsMessage::Text(v.to_string().into()))
            .await
            .unwrap();
    }

    /// The next JSON message (pings skipped); `None` on close, with the close code.
    async fn recv(&mut self) -> Result<Value, Option<u16>> {
        tokio::time::timeout(HANG, async {
            loop {
                match self.socket.next().await {
                    Some(Ok(WsMessage::Text(t))) => return Ok(serde_json::from_str(&t).unwrap()),
                    Some(Ok(WsMessage::Close(frame))) => {
                        return Err(frame.map(|f| u16::from(f.code)));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return Err(None),
                }
            }
        })
        .await
        .expect("a websocket message")
    }
}

#[tokio::test]
async fn one_websocket_receives_three_tasks_tagged_by_task() {
    let a = TestGateway::spawn().await;
    let b = Peer::spawn(&a.config, |_| {}).await;
    for t in ["t1", "t2", "t3"] {
        create_task(&a, t).await;
    }
    let t3_first = log_step(&a.base, "t3", 0).await;
    let t3_created = stream_ids(&a, "t3").await[0].clone();
    let mut ws = Ws::connect(&b.base).await;
    ws.send(json!({"op": "ping"})).await;
    assert_eq!(ws.recv().await.unwrap(), json!({"op": "pong"}));
    ws.send(json!({"op": "subscribe", "task_id": "t1"})).await;
    ws.send(json!({"op": "subscribe", "task_id": "t2", "types": ["step_logged"]}))
        .await;
    ws.send(json!({"op": "subscribe", "task_id": "t3", "since": t3_created}))
        .await;
    ws.send(json!({"op": "subscribe", "task_id": "bad id"}))
        .await;
    ws.send(json!({"op": "dance"})).await;
    let mut subscribed = vec![];
    let mut errors = vec![];
    let mut early = vec![]; // t3's replay may come before the other answers
    while subscribed.len() < 3 || errors.len() < 2 {
        let m = ws.recv().await.unwrap();
        match m["op"].as_str().unwrap() {
            "subscribed" => subscribed.push(m["task_id"].as_str().unwrap().to_owned()),
            "error" => errors.push((m["code"].clone(), m["task_id"].clone())),
            "event" => early.push(m),
            other => panic!("unexpected {other}: {m}"),
        }
    }
    subscribed.sort();
    assert_eq!(subscribed, ["t1", "t2", "t3"]);
    assert!(errors.contains(&(json!("invalid_argument"), json!("bad id"))));
    assert!(errors.contains(&(json!("invalid_argument"), Value::Null)));

    // t3 replays its first step (after task_created), then goes live.
    let mut want: Vec<(String, String)> = vec![("t3".into(), t3_first)];
    for i in 0..5 {
        for t in ["t1", "t2", "t3"] {
            want.push((t.into(), log_step(&a.base, t, i).await));
        }
    }
    ok(a.tool(
        "file_write",
        json!({"task_id": "t2", "path": "skipped-by-filter", "content": "x"}),
    )
    .await);
    ok(a.tool(
        "file_write",
        json!({"task_id": "t1", "path": "f", "content": "x"}),
    )
    .await);
    let mut got: Vec<(String, String)> = vec![];
    let mut file_events = 0;
    let mut early = early.into_iter();
    while got.len() < want.len() || file_events < 1 {
        let m = match early.next() {
            Some(m) => m,
            None => ws.recv().await.unwrap(),
        };
        assert_eq!(m["op"], "event", "{m}");
        let task = m["task_id"].as_str().unwrap().to_owned();
        assert_eq!(m["event"]["taskId"], task.as_str(), "tagged by its task");
        if m["event"]["type"] == "file_written" {
            assert_eq!(task, "t1", "t2 filters file events out");
            file_events += 1;
            continue;
        }
        got.push((task, m["event"]["data"]["id"].as_str().unwrap().to_owned()));
    }
    for t in ["t1", "t2", "t3"] {
        let of = |v: &[(String, String)]| -> Vec<String> {
            v.iter()
                .filter(|(k, _)| k == t)
                .map(|(_, id)| id.clone())
                .collect()
        };
        assert_eq!(of(&got), of(&want), "{t}: every event in order");
    }

    ws.send(json!({"op": "unsubscribe", "task_id": "t2"})).await;
    assert_eq!(
        ws.recv().await.unwrap(),
        json!({"op": "unsubscribed", "task_id": "t2"})
    );
    log_step(&a.base, "t2", 100).await;
    let last = log_step(&a.base, "t1", 100).await;
    let m = ws.recv().await.unwrap();
    assert_eq!(
        (m["task_id"].as_str(), m["event"]["data"]["id"].as_str()),
        (Some("t1"), Some(last.as_str()))
    );
    ws.send(json!({"op": "ping"})).await;
    assert_eq!(
        ws.recv().await.unwrap(),
        json!({"op": "pong"}),
        "nothing from t2"
    );
}

/// The socket reads 4 KiB at a time (issue #19: tungstenite's 128 KiB buffer was resident per
/// socket): a client message several times larger is still read whole and answered.
#[tokio::test]
async fn a_client_message_larger_than_the_read_buffer_is_read_whole() {
    let a = TestGateway::spawn().await;
    create_task(&a, "t1").await;
    let mut ws = Ws::connect(&a.base).await;
    // 64 types (the most allowed) of 60 characters, and a field the server ignores.
    let mut types: Vec<String> = (0..63).map(|i| format!("{i:0>60}")).collect();
    types.push("step_logged".to_owned());
    let msg =
        json!({"op": "subscribe", "task_id": "t1", "types": types, "note": "x".repeat(12 * 1024)});
    assert!(msg.to_string().len() > 3 * 4096);
    ws.send(msg).await;
    let m = ws.recv().await.unwrap();
    assert_eq!(m["op"], "subscribed", "{m}");
    let id = log_step(&a.base, "t1", 0).await;
    let m = ws.recv().await.unwrap();
    assert_eq!(m["event"]["data"]["id"], id.as_str(), "{m}");
}

#[tokio::test]
async fn a_foreign_publish_in_the_seed_shape_is_forwarded() {
    let a = TestGateway::spawn().await;
    let b = Peer::spawn(&a.config, |_| {}).await;
    b.subscribed().await;
    create_task(&a, "t").await;
    let mut sse = SseReader::open(&format!("{}/tasks/t/events", b.base), None).await;
    let mut ws = Ws::connect(&b.base).await;
    ws.send(json!({"op": "subscribe", "task_id": "t"})).await;
    assert_eq!(ws.recv().await.unwrap()["op"], "subscribed");
    let mut redis = a.redis.connection().await;
    let foreign = json!({
        "type": "task_assigned",
        "taskId": "t",
        "timestamp": "2026-01-01T10:00:00.000Z",
        "data": {"agent": "qa"},
    });
    let _: i64 = redis::cmd("PUBLISH")
        .arg(format!("{}task:t:updates", a.redis.prefix))
        .arg(foreign.to_string())
        .query_async(&mut redis)
        .await
        .unwrap();
    let same_event = |e: &Value| {
        assert_eq!(e["type"], "task_assigned");
        assert_eq!(e["taskId"], "t");
        assert_eq!(e["data"], foreign["data"]);
        assert_eq!(e.get("id"), None, "a published-only event has no stream id");
        let at = |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
        assert_eq!(at(&e["timestamp"]), at(&foreign["timestamp"]));
    };
    let m = sse.next().await.unwrap();
    assert_eq!(m.event, "task_assigned");
    assert_eq!(m.id, None);
    same_event(&m.data);
    let m = ws.recv().await.unwrap();
    assert_eq!(
        (m["op"].as_str(), m["task_id"].as_str()),
        (Some("event"), Some("t"))
    );
    same_event(&m["event"]);
    // Stream events still flow after it.
    let id = log_step(&a.base, "t", 1).await;
    assert_eq!(sse.next().await.unwrap().data["data"]["id"], id.as_str());
}

#[tokio::test]
async fn a_slow_consumer_is_cut_off_resumably_with_a_bounded_queue() {
    const CAPACITY: usize = 8;
    let a = TestGateway::spawn().await;
    let b = Peer::spawn(&a.config, |c| c.live_queue_capacity = CAPACITY).await;
    create_task(&a, "t").await;
    // Opened, then not read: the socket buffers fill, the stream stops being polled, the
    // watcher's queue fills, and the hub cuts it off.
    let mut sse = SseReader::open(&format!("{}/tasks/t/events", b.base), None).await;
    let big = "x".repeat(60 * 1024);
    let client = reqwest::Client::new();
    let mut written = 0;
    while b.state.live.hub.stats().slow_cutoffs == 0 {
        assert!(written < 5_000, "no cutoff after {written} events");
        let r = client
            .post(format!("{}/tools/log_step", a.base))
            .json(&json!({"task_id": "t", "step": {"n": written, "pad": big}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        written += 1;
        let stats = b.state.live.hub.stats();
        assert!(stats.max_queued <= CAPACITY, "queue bounded: {stats:?}");
    }
    // Reading now: the events it had, in order, then the cutoff naming the last one.
    let ids = stream_ids(&a, "t").await;
    let mut got = vec![];
    let cutoff = loop {
        let m = sse.next().await.expect("events then a cutoff");
        if m.event == "cutoff" {
            break m.data;
        }
        got.push(m.id.unwrap());
    };
    assert!(
        sse.next().await.is_none(),
        "the stream ends after the cutoff"
    );
    assert_eq!(cutoff["reason"], "slow_consumer");
    let metrics = crate::scrape_at(&b.base).await;
    assert!(
        metrics.contains(r#"mcp_live_cutoffs_total{reason="slow_consumer"}"#),
        "{metrics}"
    );
    assert!(
        !got.is_empty() && got.len() < written,
        "{} of {written}",
        got.len()
    );
    assert_eq!(got, ids[1..=got.len()], "a gapless prefix");
    assert_eq!(
        cutoff["resume_from"].as_str(),
        got.last().map(String::as_str)
    );
    // Resuming from there delivers exactly the rest.
    let mut sse = SseReader::open(
        &format!("{}/tasks/t/events", b.base),
        cutoff["resume_from"].as_str(),
    )
    .await;
    for want in &ids[got.len() + 1..] {
        assert_eq!(sse.next().await.unwrap().id.as_ref(), Some(want));
    }
}

#[tokio::test]
async fn watchers_catch_up_after_a_redis_outage() {
    let Some(mut redis) = PrivateRedis::start() else {
        panic!("redis-server is needed on the PATH for the outage test");
    };
    let gw = TestGateway::spawn_on(TestDb::create().await, TestRedis::on(redis.url()), |c| {
        c.redis_timeout_ms = 500;
    })
    .await;
    let peer = Peer::spawn(&gw.config, |_| {}).await;
    let first = log_step(&gw.base, "t", 0).await;
    let mut sse = SseReader::open(&format!("{}/tasks/t/events?since=0", peer.base), None).await;
    assert_eq!(sse.next().await.unwrap().data["data"]["id"], first.as_str());

    redis.stop();
    tokio::time::timeout(HANG, async {
        while peer.state.live.hub.stats().connected {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the hub notices the outage");
    assert!(redis.restart());
    // Written as soon as Redis answers (maybe before the hub resubscribed): the watcher
    // must catch up from the stream.
    let client = reqwest::Client::new();
    let mut ids = vec![];
    for i in 1..=5 {
        let id = tokio::time::timeout(HANG, async {
            loop {
                let r = client
                    .post(format!("{}/tools/log_step", gw.base))
                    .json(&json!({"task_id": "t", "step": {"n": i}}))
                    .send()
                    .await
                    .unwrap();
                if r.status() == 200 {
                    let v: Value = r.json().await.unwrap();
                    return v["id"].as_str().unwrap().to_owned();
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("redis is back");
        ids.push(id);
    }
    for id in &ids {
        let m = sse.next().await.expect("the stream survived the outage");
        assert_eq!(m.data["data"]["id"].as_str(), Some(id.as_str()));
    }
}

#[tokio::test]
async fn shutdown_closes_streams_with_a_reconnect_hint() {
    let a = TestGateway::spawn().await;
    let mut b = Peer::spawn(&a.config, |_| {}).await;
    let id = log_step(&a.base, "t", 0).await;
    let mut sse = SseReader::open(&format!("{}/tasks/t/events?since=0", b.base), None).await;
    let mut ws = Ws::connect(&b.base).await;
    ws.send(json!({"op": "subscribe", "task_id": "t", "since": "0"}))
        .await;
    assert_eq!(ws.recv().await.unwrap()["op"], "subscribed");
    assert_eq!(ws.recv().await.unwrap()["event"]["data"]["id"], id.as_str());
    let event_id = sse.next().await.unwrap().id.unwrap();

    b.shutdown.cancel();
    let m = sse.next().await.expect("a cutoff before the end");
    assert_eq!(m.event, "cutoff");
    assert_eq!(m.data["reason"], "shutdown");
    assert_eq!(m.data["resume_from"].as_str(), Some(event_id.as_str()));
    assert!(sse.next().await.is_none());
    let m = ws.recv().await.unwrap();
    assert_eq!(
        (
            m["op"].as_str(),
            m["task_id"].as_str(),
            m["reason"].as_str()
        ),
        (Some("cutoff"), Some("t"), Some("shutdown"))
    );
    assert_eq!(m["resume_from"].as_str(), Some(event_id.as_str()));
    assert_eq!(
        ws.recv().await,
        Err(Some(1012)),
        "closed with 'service restart'"
    );
    tokio::time::timeout(HANG, b.served.take().unwrap())
        .await
        .expect("the server drains")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_watcher_that_hangs_up_is_let_go_at_once_not_at_the_next_keep_alive() {
    // The keep-alive comes once an hour: only the connection's read, which hyper keeps open
    // while the stream is sent (vendor/hyper/PATCH.md), can notice the client going away.
    let a = TestGateway::spawn().await;
    let b = Peer::spawn(&a.config, |c| c.live_keepalive_secs = 3600).await;
    create_task(&a, "t").await;
    let watchers = || b.state.live.hub.stats().watchers;
    for _ in 0..2 {
        let addr = b.base.trim_start_matches("http://").to_owned();
        let mut socket = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let request = format!("GET /tasks/t/events HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        tokio::io::AsyncWriteExt::write_all(&mut socket, request.as_bytes())
            .await
            .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            let n =
                tokio::time::timeout(HANG, tokio::io::AsyncReadExt::read(&mut socket, &mut byte))
                    .await
                    .expect("a response head")
                    .unwrap();
            assert_eq!(n, 1, "closed before the head");
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.contains("text/event-stream"), "{head}");
        assert_eq!(watchers(), 1);
        drop(socket);
        tokio::time::timeout(HANG, async {
            while watchers() > 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the watcher let go after its client hung up");
    }
    // The stream still works for whoever stays.
    let mut sse = SseReader::open(&format!("{}/tasks/t/events", b.base), None).await;
    let id = log_step(&a.base, "t", 1).await;
    assert_eq!(sse.next().await.unwrap().data["data"]["id"], id.as_str());
}

#[tokio::test]
async fn the_hub_cuts_off_a_full_queue_and_never_holds_more_than_its_capacity() {
    use mcp_api::live::CutoffReason;
    use mcp_gateway::live::{Delivery, Hub, HubConfig};
    let gw = TestGateway::spawn().await;
    let hub = Hub::start(
        gw.service.clone(),
        HubConfig {
            queue_capacity: 4,
            ..HubConfig::default()
        },
    );
    let task = mcp_domain::TaskId::parse("t").unwrap();
    let mut slow = hub.subscribe(&task);
    let mut fast = hub.subscribe(&task);
    let id = |i: usize| StreamId::parse(&format!("1-{i}")).unwrap();
    for i in 0..10 {
        let payload = json!({"id": id(i).to_string(), "type": "step_logged", "taskId": "t",
            "timestamp": "2026-01-01T00:00:00Z", "data": {}});
        hub.dispatch(&task, &payload.to_string());
        match fast.recv().await {
            Some(Delivery::Event(e)) => assert_eq!(e.id, Some(id(i)), "the fast one keeps up"),
            other => panic!("{other:?}"),
        }
        let stats = hub.stats();
        assert!(stats.max_queued <= 4, "bounded: {stats:?}");
    }
    assert_eq!(slow.queued(), 4, "the slow one holds its capacity, no more");
    assert_eq!(hub.stats().slow_cutoffs, 1);
    for i in 0..4 {
        match slow.recv().await {
            Some(Delivery::Event(e)) => assert_eq!(e.id, Some(id(i)), "what it had, in order"),
            other => panic!("{other:?}"),
        }
    }
    assert!(slow.recv().await.is_none(), "then the end");
    assert_eq!(slow.end_reason(), CutoffReason::SlowConsumer);
    drop(slow);
    assert_eq!(hub.stats().watchers, 1);
    hub.close();
    assert!(fast.recv().await.is_none());
    assert_eq!(fast.end_reason(), CutoffReason::Shutdown);
}
