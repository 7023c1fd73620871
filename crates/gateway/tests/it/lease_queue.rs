//! Issue #17 item 2: waiting for a lease (`claim_file` with `wait_sec`: a FIFO queue per path,
//! across gateway instances) and directory leases (`recursive`).

use crate::{assert_error, ok};
use mcp_api::{EventType, StreamId};
use mcp_testkit::TestGateway;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

crate::in_both_modes!(
    wait_sec_is_validated,
    a_waiter_that_disconnects_never_gets_the_lease,
    a_wait_that_runs_out_is_locked_with_the_holder_and_its_place,
    a_waiter_is_granted_when_the_holder_expires,
    a_claim_that_does_not_wait_is_refused_while_others_wait,
    directory_leases_conflict_both_ways_and_guard_writes,
);

fn claim(agent: &str, path: &str, extra: Value) -> Value {
    let mut b = json!({"task_id": "t", "path": path, "agent_id": agent});
    b.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    b
}

/// `claim_file` on `base` in a task of its own (the request outlives the test's borrow).
fn spawn_claim(gw: &TestGateway, body: Value) -> tokio::task::JoinHandle<(u16, Value, Instant)> {
    let (http, url) = (
        gw.http.clone(),
        format!("{}/tools/claim_file", gw.base.clone()),
    );
    tokio::spawn(async move {
        let r = http.post(url).json(&body).send().await.expect("request");
        let status = r.status().as_u16();
        (
            status,
            r.json().await.unwrap_or(Value::Null),
            Instant::now(),
        )
    })
}

/// The agents waiting for `path`, as `list_leases` shows them (empty when not leased).
async fn waiters(gw: &TestGateway, path: &str) -> Vec<String> {
    let listed = ok(gw.tool("list_leases", json!({"task_id": "t"})).await);
    listed["leases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["path"] == path)
        .map(|l| serde_json::from_value(l["waiters"].clone()).unwrap())
        .unwrap_or_default()
}

/// Polls until `path`'s waiters are `want` (a few seconds at most).
async fn until_waiting(gw: &TestGateway, path: &str, want: &[String]) {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let now = waiters(gw, path).await;
        if now == want {
            return;
        }
        assert!(Instant::now() < until, "waiters {now:?}, wanted {want:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The agents of the task's `lock_acquired` events, in order.
async fn acquired_by(gw: &TestGateway) -> Vec<String> {
    let task = mcp_domain::TaskId::parse("t").unwrap();
    let events = gw
        .stores
        .hot
        .events_after(&task, StreamId::ZERO, 10_000)
        .await
        .unwrap();
    events
        .into_iter()
        .filter_map(|e| {
            let e: Value = serde_json::from_str(&e.envelope).unwrap();
            (e["type"] == EventType::LockAcquired.as_str())
                .then(|| e["agentId"].as_str().unwrap().to_owned())
        })
        .collect()
}

/// The acceptance test: 20 agents wait on one path, alternately through two gateway
/// instances; each is granted exactly once, in arrival order, with strictly increasing
/// fences, and releases at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_waiters_on_two_instances_are_served_in_arrival_order_once_each() {
    let a = TestGateway::spawn().await;
    let b = a.another_instance().await;
    let held = ok(a
        .tool("claim_file", claim("holder", "hot.py", json!({})))
        .await);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut expected = Vec::new();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let agent = format!("w{i:02}");
        let gw = if i % 2 == 0 { &a } else { &b };
        let (http, base) = (gw.http.clone(), gw.base.clone());
        let tx = tx.clone();
        let body = claim(&agent, "hot.py", json!({"wait_sec": 60}));
        let who = agent.clone();
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(format!("{base}/tools/claim_file"))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{who}");
            let lease: Value = r.json().await.unwrap();
            // Reported before the release: the next grant can only follow the release.
            tx.send((who.clone(), lease["fence"].as_i64().unwrap()))
                .unwrap();
            let r = http
                .post(format!("{base}/tools/release_file"))
                .json(&json!({"task_id": "t", "path": "hot.py", "agent_id": who}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }));
        expected.push(agent);
        // Arrival order is made certain: the next waiter starts once this one is queued.
        until_waiting(&a, "hot.py", &expected).await;
    }
    assert_eq!(
        waiters(&b, "hot.py").await,
        expected,
        "both instances see one queue"
    );
    let started = Instant::now();
    ok(a.tool("release_file", claim("holder", "hot.py", json!({})))
        .await);
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("every waiter is served")
            .unwrap();
    }
    let elapsed = started.elapsed();
    drop(tx);
    let mut grants = Vec::new();
    while let Some(g) = rx.recv().await {
        grants.push(g);
    }
    let order: Vec<&str> = grants.iter().map(|(w, _)| w.as_str()).collect();
    assert_eq!(order, expected, "granted in arrival order");
    let mut last = held["fence"].as_i64().unwrap();
    for (w, fence) in &grants {
        assert!(*fence > last, "{w}'s fence {fence} after {last}");
        last = *fence;
    }
    let mut acquired = acquired_by(&a).await;
    assert_eq!(acquired.remove(0), "holder");
    assert_eq!(acquired, expected, "one lock_acquired each, in order");
    eprintln!(
        "20 hand-overs across two instances in {elapsed:?} ({:?} each)",
        elapsed / 20
    );
}

async fn wait_sec_is_validated(gw: TestGateway) {
    for bad in [json!(-1), json!(61), json!(3600)] {
        assert_error(
            &gw.tool("claim_file", claim("a", "x.py", json!({"wait_sec": bad})))
                .await,
            400,
            "invalid_argument",
        );
    }
    // 0 is "do not wait"; a free path is granted at once with or without a wait.
    ok(gw
        .tool("claim_file", claim("a", "x.py", json!({"wait_sec": 0})))
        .await);
    let waited = ok(gw
        .tool("claim_file", claim("a", "y.py", json!({"wait_sec": 5})))
        .await);
    assert!(waited["waited_ms"].as_u64().unwrap() < 1000, "{waited}");
}

/// A waiter whose request is dropped (the client went away) leaves the queue at once, never
/// gets the lease, and the next waiter does.
async fn a_waiter_that_disconnects_never_gets_the_lease(gw: TestGateway) {
    ok(gw
        .tool("claim_file", claim("holder", "a.py", json!({})))
        .await);
    let gone = spawn_claim(&gw, claim("gone", "a.py", json!({"wait_sec": 30})));
    until_waiting(&gw, "a.py", &["gone".into()]).await;
    let next = spawn_claim(&gw, claim("next", "a.py", json!({"wait_sec": 30})));
    until_waiting(&gw, "a.py", &["gone".into(), "next".into()]).await;
    gone.abort();
    let left = Instant::now();
    until_waiting(&gw, "a.py", &["next".into()]).await;
    assert!(
        left.elapsed() < Duration::from_secs(3),
        "left with the request, not with its liveness: {:?}",
        left.elapsed()
    );
    ok(gw
        .tool("release_file", claim("holder", "a.py", json!({})))
        .await);
    let (status, lease, _) = next.await.unwrap();
    assert_eq!((status, lease["owner"].as_str()), (200, Some("next")));
    assert_eq!(acquired_by(&gw).await, ["holder", "next"]);
}

/// A wait that runs out answers `locked` with the holder, its expiry and the caller's place
/// in the queue, and leaves the queue.
async fn a_wait_that_runs_out_is_locked_with_the_holder_and_its_place(gw: TestGateway) {
    let held = ok(gw
        .tool("claim_file", claim("holder", "a.py", json!({})))
        .await);
    let first = spawn_claim(&gw, claim("first", "a.py", json!({"wait_sec": 30})));
    until_waiting(&gw, "a.py", &["first".into()]).await;
    let started = Instant::now();
    let late = gw
        .tool("claim_file", claim("late", "a.py", json!({"wait_sec": 1})))
        .await;
    let waited = started.elapsed();
    assert_error(&late, 409, "locked");
    assert!(
        waited >= Duration::from_millis(950) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    assert_eq!(late.1["holder"], "holder");
    assert_eq!(late.1["expires_at"], held["expires_at"]);
    assert_eq!(
        (
            late.1["queue_position"].as_u64(),
            late.1["waiters"].as_u64()
        ),
        (Some(2), Some(2))
    );
    assert!(
        late.1["detail"].as_str().unwrap().contains("place 2 of 2"),
        "{}",
        late.1
    );
    assert_eq!(waiters(&gw, "a.py").await, ["first"]);
    ok(gw
        .tool("release_file", claim("holder", "a.py", json!({})))
        .await);
    let (status, lease, _) = first.await.unwrap();
    assert_eq!((status, lease["owner"].as_str()), (200, Some("first")));
}

/// An expiry publishes nothing: the waiter's timer at the holder's expiry serves it.
async fn a_waiter_is_granted_when_the_holder_expires(gw: TestGateway) {
    let held = ok(gw
        .tool(
            "claim_file",
            claim("holder", "a.py", json!({"timeout_sec": 1})),
        )
        .await);
    let got = ok(gw
        .tool("claim_file", claim("w", "a.py", json!({"wait_sec": 10})))
        .await);
    assert_eq!(got["owner"], "w");
    assert!(got["fence"].as_i64() > held["fence"].as_i64());
    let waited = got["waited_ms"].as_u64().unwrap();
    assert!((500..3000).contains(&waited), "waited {waited} ms");
}

/// Fairness: while agents wait for a path, a claim that does not wait is refused, even at the
/// moment the path is free (it is being handed to the first waiter).
async fn a_claim_that_does_not_wait_is_refused_while_others_wait(gw: TestGateway) {
    ok(gw
        .tool("claim_file", claim("holder", "a.py", json!({})))
        .await);
    let w = spawn_claim(&gw, claim("w", "a.py", json!({"wait_sec": 30})));
    until_waiting(&gw, "a.py", &["w".into()]).await;
    let bare = gw.tool("claim_file", claim("x", "a.py", json!({}))).await;
    assert_error(&bare, 409, "locked");
    assert_eq!(
        (bare.1["holder"].as_str(), bare.1["waiters"].as_u64()),
        (Some("holder"), Some(1))
    );
    assert!(bare.1.get("queue_position").is_none(), "{}", bare.1);
    ok(gw
        .tool("release_file", claim("holder", "a.py", json!({})))
        .await);
    let (status, lease, _) = w.await.unwrap();
    assert_eq!((status, lease["owner"].as_str()), (200, Some("w")));
    let after = gw.tool("claim_file", claim("x", "a.py", json!({}))).await;
    assert_error(&after, 409, "locked");
    assert_eq!(after.1["holder"], "w");
}

/// Directory leases: `src/` (`recursive`) conflicts with leases beneath it and above it, in
/// both directions, refuses other agents' writes beneath it, is listed and released like a
/// file lease, and a waiter for a path beneath it is served when it is released.
async fn directory_leases_conflict_both_ways_and_guard_writes(gw: TestGateway) {
    let d = ok(gw
        .tool(
            "claim_file",
            claim("a1", "./src//", json!({"recursive": true})),
        )
        .await);
    assert_eq!(
        (d["path"].as_str(), d["recursive"].as_bool()),
        (Some("src/"), Some(true))
    );
    let refused = gw
        .tool("claim_file", claim("a2", "src/api/x.py", json!({})))
        .await;
    assert_error(&refused, 409, "locked");
    assert_eq!(
        (
            refused.1["holder"].as_str(),
            refused.1["lease_path"].as_str()
        ),
        (Some("a1"), Some("src/"))
    );
    let write = gw
        .tool(
            "file_write",
            claim("a2", "src/b.py", json!({"content": "x"})),
        )
        .await;
    assert_error(&write, 409, "locked");
    assert_eq!(write.1["lease_path"], "src/");
    // The holder writes beneath it under the directory lease's fence.
    ok(gw
        .tool(
            "file_write",
            claim("a1", "src/b.py", json!({"content": "mine"})),
        )
        .await);
    // The other way: a file lease beneath blocks a directory lease above it.
    ok(gw
        .tool("claim_file", claim("a2", "lib/x/y.py", json!({})))
        .await);
    let up = gw
        .tool("claim_file", claim("a1", "lib", json!({"recursive": true})))
        .await;
    assert_error(&up, 409, "locked");
    assert_eq!(
        (up.1["holder"].as_str(), up.1["lease_path"].as_str()),
        (Some("a2"), Some("lib/x/y.py"))
    );
    let listed = ok(gw.tool("list_leases", json!({"task_id": "t"})).await);
    let src = listed["leases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["path"] == "src/")
        .unwrap()
        .clone();
    assert_eq!(
        (src["holder"].as_str(), src["recursive"].as_bool()),
        (Some("a1"), Some(true))
    );
    // A waiter beneath the directory is served when it is released.
    let w = spawn_claim(&gw, claim("a2", "src/api/x.py", json!({"wait_sec": 30})));
    until_waiting(&gw, "src/", &[]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    ok(gw
        .tool("renew_file", claim("a1", "src", json!({"recursive": true})))
        .await);
    ok(gw
        .tool(
            "release_file",
            claim("a1", "src/", json!({"recursive": true})),
        )
        .await);
    let (status, lease, _) = w.await.unwrap();
    assert_eq!(
        (status, lease["path"].as_str()),
        (200, Some("src/api/x.py"))
    );
    assert!(lease["waited_ms"].as_u64().unwrap() >= 150);
    assert_error(
        &gw.tool(
            "release_file",
            claim("a1", "src", json!({"recursive": true})),
        )
        .await,
        409,
        "lock_not_held",
    );
}
