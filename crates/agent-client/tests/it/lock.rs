//! The lock guard against a running gateway: it keeps a lease past its TTL, releases it
//! (explicitly or on drop), notices a lost lease, and its writes carry the fence.
//! The sleeps below let real lease TTLs (kept by Redis) pass; nothing asserts on timing.

use crate::client_as;
use mcp_agent_client::{ErrorCode, LeaseState};
use mcp_api::requests::{ClaimFileRequest, FileReadRequest, ReleaseFileRequest};
use mcp_testkit::TestGateway;
use std::time::{Duration, Instant};

fn claim(path: &str) -> ClaimFileRequest {
    ClaimFileRequest {
        task_id: "t1".into(),
        path: path.into(),
        timeout_sec: Some(30),
        wait_sec: None,
        recursive: false,
        agent_id: None,
    }
}

#[tokio::test]
async fn the_guard_keeps_the_lease_past_its_ttl_and_releases_it() {
    let gw = TestGateway::spawn().await;
    let a = client_as(&gw, "agent-a");
    let b = client_as(&gw, "agent-b");

    let guard = a
        .lock("t1", "./src/a.py", Some(Duration::from_secs(1)))
        .await
        .unwrap();
    assert_eq!(guard.path(), "src/a.py");
    // Three TTLs later the lease still stands: the guard renewed it.
    tokio::time::sleep(Duration::from_millis(3200)).await;
    assert!(guard.is_held(), "{:?}", guard.state());
    let e = b.claim_file(claim("src/a.py")).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::Locked);
    assert_eq!(e.context().unwrap()["holder"], "agent-a");
    match guard.state() {
        LeaseState::Held(l) => assert_eq!(l.fence, guard.fence()),
        other => panic!("{other:?}"),
    }

    let w = guard.write("v1").await.unwrap();
    assert_eq!(w.version, 1);

    let r = guard.release().await.unwrap();
    assert!(!r.locked);
    let lease = b.claim_file(claim("src/a.py")).await.unwrap();
    assert_eq!(lease.owner, "agent-b");
}

#[tokio::test]
async fn a_dropped_guard_releases_its_lease() {
    let gw = TestGateway::spawn().await;
    let a = client_as(&gw, "agent-a");
    let b = client_as(&gw, "agent-b");
    {
        let _guard = a
            .lock("t1", "a.py", Some(Duration::from_secs(60)))
            .await
            .unwrap();
        assert_eq!(
            b.claim_file(claim("a.py")).await.unwrap_err().code(),
            ErrorCode::Locked
        );
    }
    // The release runs in the background; long before the 60 s TTL, b gets the path.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match b.claim_file(claim("a.py")).await {
            Ok(l) => {
                assert_eq!(l.owner, "agent-b");
                break;
            }
            Err(e) => {
                assert_eq!(e.code(), ErrorCode::Locked);
                assert!(
                    Instant::now() < deadline,
                    "the dropped guard never released"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[tokio::test]
async fn a_lost_lease_is_reported_and_its_writes_are_refused() {
    let gw = TestGateway::spawn().await;
    let a = client_as(&gw, "agent-a");
    let admin = client_as(&gw, "admin");
    let b = client_as(&gw, "agent-b");

    let mut guard = a
        .lock("t1", "a.py", Some(Duration::from_secs(1)))
        .await
        .unwrap();
    guard.write("from a").await.unwrap();
    // An admin takes the lease away and b writes under its own, newer lease.
    admin
        .release_file(ReleaseFileRequest {
            task_id: "t1".into(),
            path: "a.py".into(),
            force: true,
            recursive: false,
            agent_id: None,
        })
        .await
        .unwrap();
    let b_lease = b.claim_file(claim("a.py")).await.unwrap();
    assert!(b_lease.fence > guard.fence());

    let state = tokio::time::timeout(Duration::from_secs(10), guard.lost())
        .await
        .expect("the renewer notices the loss");
    assert!(matches!(state, LeaseState::Lost(_)), "{state:?}");
    assert!(!guard.is_held());

    let e = guard.write("late from a").await.unwrap_err();
    assert!(
        matches!(e.code(), ErrorCode::Locked | ErrorCode::StaleFence),
        "{e}"
    );
    let content = b
        .file_read(FileReadRequest {
            task_id: "t1".into(),
            path: "a.py".into(),
            agent_id: None,
        })
        .await
        .unwrap()
        .content;
    assert_eq!(content, "from a");
    assert_eq!(
        guard.release().await.unwrap_err().code(),
        ErrorCode::LockNotHeld
    );
}

#[tokio::test]
async fn a_held_path_is_refused_to_a_second_guard() {
    let gw = TestGateway::spawn().await;
    let _a = client_as(&gw, "agent-a")
        .lock("t1", "a.py", None)
        .await
        .unwrap();
    let e = client_as(&gw, "agent-b")
        .lock("t1", "a.py", None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::Locked);
}
