//! The event subscription against the gateway's real SSE endpoint: typed events in order,
//! resuming after a given id, type filters, and resuming by itself — after a broken
//! connection (a TCP relay the test cuts) and after a slow-consumer cut-off — with no gap and
//! no duplicate.

use crate::client_as;
use mcp_agent_client::{
    ClientConfig, ErrorCode, EventType, GatewayClient, GatewayWorkspace, SubscribeOptions,
    Workspace,
};
use mcp_testkit::TestGateway;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

/// Creates task `id`: the event stream of a task nobody knows is refused (404).
async fn create_task(c: &GatewayClient, id: &str) {
    c.create_task(&mcp_api::requests::CreateTaskRequest {
        id: Some(id.into()),
        ..Default::default()
    })
    .await
    .unwrap();
}

/// Waits for the next event, failing the test instead of hanging.
async fn next(sub: &mut mcp_agent_client::EventSubscription) -> mcp_agent_client::Event {
    tokio::time::timeout(Duration::from_secs(20), sub.next())
        .await
        .expect("an event within 20 s")
        .expect("no subscription error")
}

#[tokio::test]
async fn events_arrive_typed_and_in_order() {
    let gw = TestGateway::spawn().await;
    let c = client_as(&gw, "coder");
    create_task(&c, "t1").await;
    let mut sub = c.subscribe("t1", SubscribeOptions::default());
    sub.connect_now().await.unwrap();

    let ws = c.workspace("t1");
    ws.write("a.py", "1").await.unwrap();
    let mut log = c.execution_logger("t1").await.unwrap();
    log.log("think", json!({}), "ok").await.unwrap();
    ws.delete("a.py").await.unwrap();

    let kinds: Vec<EventType> = [
        next(&mut sub).await,
        next(&mut sub).await,
        next(&mut sub).await,
        next(&mut sub).await,
    ]
    .into_iter()
    .map(|e| {
        assert_eq!(e.task_id, "t1");
        assert_eq!(e.agent_id.as_deref(), Some("coder"));
        assert!(e.id.is_some());
        e.kind
    })
    .collect();
    assert_eq!(
        kinds,
        [
            EventType::FileWritten,
            EventType::AgentJoined,
            EventType::StepLogged,
            EventType::FileDeleted
        ]
    );
    assert_eq!(sub.reconnects(), 0);
}

#[tokio::test]
async fn a_new_subscription_resumes_after_an_id_and_filters_types() {
    let gw = TestGateway::spawn().await;
    let c = client_as(&gw, "coder");
    create_task(&c, "t1").await;
    let ws = c.workspace("t1");
    let mut sub = c.subscribe("t1", SubscribeOptions::default());
    sub.connect_now().await.unwrap();
    ws.write("a", "1").await.unwrap();
    let first = next(&mut sub).await;
    drop(sub);

    ws.write("b", "2").await.unwrap();
    c.lock("t1", "c", Some(Duration::from_secs(30)))
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
    ws.write("c", "3").await.unwrap();

    let mut resumed = c.subscribe(
        "t1",
        SubscribeOptions {
            since: first.id.clone(),
            types: vec!["file_written".into()],
            ..SubscribeOptions::default()
        },
    );
    let b = next(&mut resumed).await;
    let cc = next(&mut resumed).await;
    assert_eq!(
        (b.kind.clone(), b.data["path"].as_str()),
        (EventType::FileWritten, Some("b"))
    );
    assert_eq!(
        cc.data["path"], "c",
        "lock events filtered out, nothing repeated"
    );
    assert_eq!(resumed.last_event_id(), cc.id.as_deref());

    // A refusal a retry cannot fix ends the subscription with its code. (A task nobody
    // wrote to yet is no refusal: its stream opens and waits for the first event.)
    let mut bad = c.subscribe("bad task!", SubscribeOptions::default());
    let e = tokio::time::timeout(Duration::from_secs(20), bad.next())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArgument);
}

/// A TCP relay to the gateway whose open connections the test can cut.
struct Relay {
    addr: SocketAddr,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Relay {
    async fn to(upstream: SocketAddr) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = tokio::spawn({
            let conns = conns.clone();
            async move {
                while let Ok((mut down, _)) = listener.accept().await {
                    let h = tokio::spawn(async move {
                        if let Ok(mut up) = tokio::net::TcpStream::connect(upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                        }
                    });
                    conns.lock().unwrap().push(h);
                }
            }
        });
        Relay {
            addr,
            conns,
            accept,
        }
    }

    /// Breaks every open connection (both sockets are dropped).
    fn cut(&self) {
        for h in self.conns.lock().unwrap().drain(..) {
            h.abort();
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// Task `t1`, a relay to `gw` (it can cut the connections through it), a `watcher` client
/// connected through the relay, and `coder`'s workspace of `t1`, connected directly.
async fn watched_through_a_relay(gw: &TestGateway) -> (Relay, GatewayClient, GatewayWorkspace) {
    let relay = Relay::to(gw.addr).await;
    let via_relay = GatewayClient::new(
        ClientConfig::new(format!("http://{}", relay.addr)).with_agent("watcher"),
    )
    .unwrap();
    create_task(&via_relay, "t1").await;
    let writer = client_as(gw, "coder").workspace("t1");
    (relay, via_relay, writer)
}

#[tokio::test]
async fn the_subscription_resumes_by_itself_after_a_broken_connection() {
    let gw = TestGateway::spawn().await;
    let (relay, via_relay, writer) = watched_through_a_relay(&gw).await;

    let mut sub = via_relay.subscribe("t1", SubscribeOptions::default());
    sub.connect_now().await.unwrap();
    writer.write("a", "1").await.unwrap();
    assert_eq!(next(&mut sub).await.data["path"], "a");

    relay.cut();
    // Written while the watcher is disconnected.
    writer.write("b", "2").await.unwrap();
    writer.write("c", "3").await.unwrap();
    let paths: Vec<String> = [next(&mut sub).await, next(&mut sub).await]
        .iter()
        .map(|e| e.data["path"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(paths, ["b", "c"], "no gap, no duplicate");
    assert_eq!(sub.reconnects(), 1);
}

#[tokio::test]
async fn a_cut_off_slow_consumer_resumes_without_gap() {
    let gw = TestGateway::spawn_with(|c| c.live_queue_capacity = 4).await;
    let c = client_as(&gw, "coder");
    create_task(&c, "t1").await;
    let mut sub = c.subscribe(
        "t1",
        SubscribeOptions {
            types: vec!["step_logged".into()],
            ..SubscribeOptions::default()
        },
    );
    sub.connect_now().await.unwrap();
    // Big steps, not read meanwhile: the socket's buffers fill, then the watcher's queue,
    // and the gateway cuts the watcher off.
    let filler = "x".repeat(60_000);
    let mut log = c.execution_logger("t1").await.unwrap();
    const STEPS: u64 = 120;
    for i in 0..STEPS {
        log.log("fill", json!({"i": i}), filler.clone())
            .await
            .unwrap();
    }
    for i in 0..STEPS {
        let e = next(&mut sub).await;
        assert_eq!(
            e.data["step"]["action_input"]["i"], i,
            "in order, no gap, no duplicate"
        );
    }
    assert!(
        sub.reconnects() >= 1,
        "the gateway should have cut the slow watcher off at least once"
    );
}

#[tokio::test]
async fn a_connection_lost_before_the_first_event_resumes_without_gap() {
    let gw = TestGateway::spawn().await;
    let (relay, via_relay, writer) = watched_through_a_relay(&gw).await;

    let mut sub = via_relay.subscribe(
        "t1",
        SubscribeOptions {
            types: vec!["file_written".into()],
            ..SubscribeOptions::default()
        },
    );
    sub.connect_now().await.unwrap();
    relay.cut();
    // Written after the subscription opened, while it is disconnected, before any event.
    writer.write("a", "1").await.unwrap();
    let e = next(&mut sub).await;
    assert_eq!(e.data["path"], "a");
    assert_eq!(sub.reconnects(), 1);
}
