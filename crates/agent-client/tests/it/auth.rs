//! The client against a gateway with authentication on: the bearer token is sent on every
//! call and on the live stream, and refusals come back as the gateway's 401 and 403 (never
//! retried); task scopes and the observer role hold.

use mcp_agent_client::{
    ClientConfig, ErrorCode, EventType, GatewayClient, SubscribeOptions, Workspace,
};
use mcp_api::requests::{CreateTaskRequest, FileWriteRequest};
use mcp_testkit::{Role, TestGateway};
use std::time::Duration;

fn client(gw: &TestGateway, token: Option<String>) -> GatewayClient {
    let mut config = ClientConfig::new(gw.base.clone());
    if let Some(t) = token {
        config = config.with_token(t);
    }
    GatewayClient::new(config).expect("client")
}

fn write(task: &str) -> FileWriteRequest {
    FileWriteRequest {
        task_id: task.into(),
        path: "a.txt".into(),
        content: "x".into(),
        expected_version: None,
        fence: None,
        agent_id: None,
    }
}

#[tokio::test]
async fn the_token_is_the_callers_identity_everywhere() {
    let gw = TestGateway::spawn_secured().await;
    let admin = client(&gw, Some(gw.token("ops", &["*"], Role::Admin)));
    admin
        .create_task(&CreateTaskRequest {
            id: Some("t1".into()),
            ..Default::default()
        })
        .await
        .unwrap();

    let coder = client(&gw, Some(gw.token("coder", &["t1"], Role::Agent)));
    let mut sub = coder.subscribe("t1", SubscribeOptions::default());
    sub.connect_now()
        .await
        .expect("the stream accepts the token");
    let w = coder.file_write(write("t1")).await.unwrap();
    assert_eq!(w.version, 1);
    let event = tokio::time::timeout(Duration::from_secs(20), sub.next())
        .await
        .expect("an event within 20 s")
        .unwrap();
    assert_eq!(event.kind, EventType::FileWritten);
    assert_eq!(
        event.agent_id.as_deref(),
        Some("coder"),
        "the token's agent acts"
    );

    let e = coder.file_write(write("t2")).await.unwrap_err();
    assert_eq!((e.status(), e.code()), (Some(403), ErrorCode::Forbidden));

    let anonymous = client(&gw, None);
    assert_ne!(anonymous.health().await.unwrap().status, "unhealthy");
    let e = anonymous.file_write(write("t1")).await.unwrap_err();
    assert_eq!((e.status(), e.code()), (Some(401), ErrorCode::Unauthorized));
}

#[tokio::test]
async fn the_token_names_the_agent_and_scopes_the_tasks() {
    let gw = TestGateway::spawn_secured().await;
    let coder = client(&gw, Some(gw.token("coder", &["t1"], Role::Agent)));

    coder.workspace("t1").write("a.py", "x").await.unwrap();
    let lease = coder
        .claim_file(crate::claim_req("t1", "a.py"))
        .await
        .unwrap();
    assert_eq!(lease.owner, "coder");

    let e = coder.workspace("t2").read("a.py").await.unwrap_err();
    assert_eq!((e.code(), e.status()), (ErrorCode::Forbidden, Some(403)));

    let anonymous = client(&gw, None);
    let e = anonymous.workspace("t1").read("a.py").await.unwrap_err();
    assert_eq!((e.code(), e.status()), (ErrorCode::Unauthorized, Some(401)));
    let forged = client(&gw, Some("not.a.jwt".into()));
    let e = forged.workspace("t1").read("a.py").await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::Unauthorized);
    assert_eq!(anonymous.retry_count() + forged.retry_count(), 0);

    let observer = client(&gw, Some(gw.token("watcher", &["t1"], Role::Observer)));
    assert_eq!(
        observer.workspace("t1").read("a.py").await.unwrap().content,
        "x"
    );
    let e = observer
        .workspace("t1")
        .write("a.py", "y")
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::Forbidden);
}

#[tokio::test]
async fn the_live_stream_replays_with_the_token_and_refuses_without() {
    let gw = TestGateway::spawn_secured().await;
    let coder = client(&gw, Some(gw.token("coder", &["t1"], Role::Agent)));
    coder.workspace("t1").write("a", "1").await.unwrap();

    let mut sub = coder.subscribe(
        "t1",
        SubscribeOptions {
            since: Some("0".into()),
            ..SubscribeOptions::default()
        },
    );
    let e = tokio::time::timeout(Duration::from_secs(20), sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (e.data["path"].as_str(), e.agent_id.as_deref()),
        (Some("a"), Some("coder"))
    );

    let mut refused = client(&gw, None).subscribe("t1", SubscribeOptions::default());
    let e = tokio::time::timeout(Duration::from_secs(20), refused.next())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::Unauthorized);
}
