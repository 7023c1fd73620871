//! Retries against real failures: a gateway whose private Redis is stopped answers 503
//! `unavailable`; the client rides out the outage once Redis returns, and gives up with a
//! clear error after its bound. An unreachable gateway is a transport failure, retried too.

use crate::client_with_retry;
use mcp_agent_client::{
    ClientConfig, ClientError, ErrorCode, GatewayClient, RetryPolicy, TransportKind,
};
use mcp_api::requests::{FileReadRequest, FileWriteRequest};
use mcp_testkit::{PrivateRedis, TestDb, TestGateway, TestRedis};
use std::time::Duration;

fn patient(attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts: attempts,
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(400),
        max_retry_after: Duration::from_secs(1),
    }
}

async fn gateway_on(redis: &PrivateRedis) -> TestGateway {
    TestGateway::spawn_on(TestDb::create().await, TestRedis::on(redis.url()), |c| {
        c.redis_timeout_ms = 300;
        c.request_timeout_secs = 2;
    })
    .await
}

fn write(content: &str) -> FileWriteRequest {
    FileWriteRequest {
        task_id: "t1".into(),
        path: "a.txt".into(),
        content: content.into(),
        expected_version: None,
        fence: None,
        agent_id: None,
    }
}

#[tokio::test]
async fn retries_turn_an_outage_into_success_once_the_backend_returns() {
    let mut redis = PrivateRedis::start().expect("redis-server on the PATH");
    let gw = gateway_on(&redis).await;
    let c = client_with_retry(&gw, "agent-a", patient(200));
    c.file_write(write("before")).await.unwrap();

    redis.stop();
    // The gateway really refuses now.
    let (status, body) = gw
        .tool(
            "file_read",
            serde_json::json!({"task_id": "t1", "path": "a.txt"}),
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (503, Some("unavailable")));

    let call = tokio::spawn({
        let c = c.clone();
        async move { c.file_write(write("during")).await }
    });
    // Let the outage last through a few attempts of the call.
    while c.retry_count() < 2 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!call.is_finished(), "the call ended during the outage");
    }
    assert!(redis.restart(), "redis restarts");

    let w = call
        .await
        .unwrap()
        .expect("the call succeeds once Redis is back");
    assert!(w.success);
    let r = c
        .file_read(FileReadRequest {
            task_id: "t1".into(),
            path: "a.txt".into(),
            agent_id: None,
        })
        .await
        .unwrap();
    assert_eq!(r.content, "during");
    assert!(c.retry_count() >= 2);
}

#[tokio::test]
async fn retries_give_up_after_their_bound_with_the_last_error() {
    let mut redis = PrivateRedis::start().expect("redis-server on the PATH");
    let gw = gateway_on(&redis).await;
    let c = client_with_retry(&gw, "agent-a", patient(3));
    redis.stop();

    let e = c.file_write(write("x")).await.unwrap_err();
    match &e {
        ClientError::GaveUp { attempts, last } => {
            assert_eq!(*attempts, 3);
            assert_eq!(last.code(), ErrorCode::Unavailable);
            assert_eq!(last.status(), Some(503));
        }
        other => panic!("expected GaveUp, got {other:?}"),
    }
    assert_eq!(e.code(), ErrorCode::Unavailable);
    assert!(e.to_string().contains("gave up after 3 attempts"), "{e}");
    assert_eq!(e.to_json()["attempts"], 3);
    assert_eq!(c.retry_count(), 2);
}

#[tokio::test]
async fn an_unreachable_gateway_is_retried_then_reported_as_unavailable() {
    // A port nothing listens on: bind, note it, close.
    let port = mcp_testkit::free_port();
    let c = GatewayClient::new(
        ClientConfig::new(format!("http://127.0.0.1:{port}")).with_retry(patient(2)),
    )
    .unwrap();
    let e = c.file_write(write("x")).await.unwrap_err();
    match &e {
        ClientError::GaveUp { attempts: 2, last } => assert!(
            matches!(
                **last,
                ClientError::Transport {
                    kind: TransportKind::Connect,
                    ..
                }
            ),
            "{last:?}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(e.code(), ErrorCode::Unavailable);
    assert_eq!(e.status(), None);
}

#[tokio::test]
async fn refusals_are_not_retried() {
    let gw = TestGateway::spawn().await;
    let c = client_with_retry(&gw, "a", patient(5));
    let e = c
        .file_read(FileReadRequest {
            task_id: "t1".into(),
            path: "missing".into(),
            agent_id: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::FileNotFound);
    assert_eq!(c.retry_count(), 0);
}

#[tokio::test]
async fn rate_limits_are_waited_out_with_retry_after() {
    // The limit counts per authenticated agent (without authentication, loopback is exempt).
    let gw = TestGateway::spawn_secured_with(|c| {
        c.rate_limit_requests = 2;
        c.rate_limit_window_secs = 1;
    })
    .await;
    let token = gw.token("a", &["t1"], mcp_testkit::Role::Agent);
    let client = |retry: RetryPolicy| {
        GatewayClient::new(
            ClientConfig::new(gw.base.clone())
                .with_token(token.clone())
                .with_retry(retry),
        )
        .expect("client")
    };
    let impatient = client(RetryPolicy::none());
    let patient = client(patient(10));
    let read = || FileReadRequest {
        task_id: "t1".into(),
        path: "missing".into(),
        agent_id: None,
    };
    // Exhaust the window, then see the refusal as it is.
    let mut limited = None;
    for _ in 0..5 {
        if let Err(e) = impatient.file_read(read()).await
            && e.code() == ErrorCode::RateLimited
        {
            limited = Some(e);
            break;
        }
    }
    match limited.expect("the limit is reached") {
        ClientError::Refused {
            status,
            retry_after,
            ..
        } => {
            assert_eq!(status, 429);
            assert!(retry_after.is_some_and(|r| r >= Duration::from_secs(1)));
        }
        other => panic!("{other:?}"),
    }
    // The patient client gets through every time (file_not_found is the real answer).
    for _ in 0..5 {
        let e = patient.file_read(read()).await.unwrap_err();
        assert_eq!(e.code(), ErrorCode::FileNotFound);
    }
    assert!(patient.retry_count() >= 1);
}
