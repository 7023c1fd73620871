//! Every client method against a running gateway: the typed success bodies, and refusals
//! carrying the gateway's status, code and context.

use crate::client_as;
use mcp_agent_client::{ClientConfig, ClientError, ErrorCode, GatewayClient, LogsQuery};
use mcp_api::requests::*;
use mcp_testkit::TestGateway;
use serde_json::json;

fn write(task: &str, path: &str, content: &str) -> FileWriteRequest {
    FileWriteRequest {
        task_id: task.into(),
        path: path.into(),
        content: content.into(),
        expected_version: None,
        fence: None,
        agent_id: None,
    }
}

#[track_caller]
fn assert_refused<T: std::fmt::Debug>(
    r: Result<T, ClientError>,
    status: u16,
    code: ErrorCode,
) -> ClientError {
    let e = r.expect_err("expected a refusal");
    assert_eq!(e.code(), code, "{e}");
    assert_eq!(e.status(), Some(status), "{e}");
    assert!(!e.detail().is_empty());
    e
}

#[tokio::test]
async fn health_reports_both_backends() {
    let gw = TestGateway::spawn().await;
    let h = client_as(&gw, "a").health().await.unwrap();
    assert_ne!(h.status, "unhealthy");
    assert_eq!(
        (h.redis.as_str(), h.postgres.as_str()),
        ("connected", "connected")
    );
}

#[tokio::test]
async fn file_tools_and_resources() {
    let gw = TestGateway::spawn().await;
    let c = client_as(&gw, "coder");

    let w = c
        .file_write(write("t1", "./src//app.py", "print(1)\n"))
        .await
        .unwrap();
    assert!(w.success);
    assert_eq!((w.path.as_str(), w.version, w.bytes), ("src/app.py", 1, 9));

    let r = c
        .file_read(FileReadRequest {
            task_id: "t1".into(),
            path: "src/app.py".into(),
            agent_id: None,
        })
        .await
        .unwrap();
    assert_eq!(
        (r.content.as_str(), r.version, r.sha256.as_str()),
        ("print(1)\n", 1, w.sha256.as_str())
    );

    let e = c
        .file_edit(FileEditRequest {
            task_id: "t1".into(),
            path: "src/app.py".into(),
            old_string: "1".into(),
            new_string: "2".into(),
            replace_all: false,
            expected_version: Some(1),
            fence: None,
            agent_id: None,
        })
        .await
        .unwrap();
    assert_eq!((e.version, e.replacements), (2, 1));
    assert!(
        e.diff.contains("-print(1)") && e.diff.contains("+print(2)"),
        "{}",
        e.diff
    );

    c.file_write(write("t1", "docs/readme.md", "hi"))
        .await
        .unwrap();
    let l = c
        .list_files(ListFilesRequest {
            task_id: "t1".into(),
            prefix: Some("src".into()),
            agent_id: None,
        })
        .await
        .unwrap();
    assert_eq!(l.files.len(), 1);
    assert_eq!(l.files[0].path, "src/app.py");
    assert_eq!(l.files[0].updated_by.as_deref(), Some("coder"));

    let all = c.task_files("t1").await.unwrap();
    let mut paths: Vec<_> = all.files.iter().map(|f| f.path.as_str()).collect();
    paths.sort();
    assert_eq!(paths, ["docs/readme.md", "src/app.py"]);

    let ws = c.workspace_file("t1", "src/app.py").await.unwrap();
    assert_eq!((ws.content.as_str(), ws.version), ("print(2)\n", 2));

    let d = c
        .delete_file(DeleteFileRequest {
            task_id: "t1".into(),
            path: "docs/readme.md".into(),
            expected_version: None,
            fence: None,
            agent_id: None,
        })
        .await
        .unwrap();
    assert!(d.deleted);
    assert_eq!(d.version, 2);

    // Refusals keep the gateway's status, code and context.
    assert_refused(
        c.workspace_file("t1", "docs/readme.md").await,
        404,
        ErrorCode::FileNotFound,
    );
    assert_refused(
        c.file_read(FileReadRequest {
            task_id: "t1".into(),
            path: "../etc/passwd".into(),
            agent_id: None,
        })
        .await,
        400,
        ErrorCode::InvalidPath,
    );
    let mut stale = write("t1", "src/app.py", "x");
    stale.expected_version = Some(1);
    let e = assert_refused(c.file_write(stale).await, 409, ErrorCode::VersionConflict);
    assert_eq!(e.context().unwrap()["current_version"], 2);
    let e = assert_refused(
        c.file_edit(FileEditRequest {
            task_id: "t1".into(),
            path: "src/app.py".into(),
            old_string: "nope".into(),
            new_string: "x".into(),
            replace_all: false,
            expected_version: None,
            fence: None,
            agent_id: None,
        })
        .await,
        409,
        ErrorCode::EditNoMatch,
    );
    assert!(e.to_string().contains("edit_no_match"));
}

#[tokio::test]
async fn lock_tools_name_the_holder() {
    let gw = TestGateway::spawn().await;
    let a = client_as(&gw, "agent-a");
    let b = client_as(&gw, "agent-b");
    let claim = |timeout_sec| ClaimFileRequest {
        task_id: "t1".into(),
        path: "a.py".into(),
        timeout_sec,
        wait_sec: None,
        recursive: false,
        agent_id: None,
    };
    let lease = a.claim_file(claim(Some(30))).await.unwrap();
    assert!(lease.locked);
    assert_eq!((lease.owner.as_str(), lease.timeout_sec), ("agent-a", 30));

    let e = assert_refused(b.claim_file(claim(None)).await, 409, ErrorCode::Locked);
    assert_eq!(e.context().unwrap()["holder"], "agent-a");
    let e = assert_refused(
        b.file_write(write("t1", "a.py", "x")).await,
        409,
        ErrorCode::Locked,
    );
    assert_eq!(e.context().unwrap()["holder"], "agent-a");

    let renewed = a
        .renew_file(RenewFileRequest {
            task_id: "t1".into(),
            path: "a.py".into(),
            timeout_sec: Some(40),
            recursive: false,
            agent_id: None,
        })
        .await
        .unwrap();
    assert_eq!((renewed.fence, renewed.timeout_sec), (lease.fence, 40));

    let release = |c: GatewayClient| async move {
        c.release_file(ReleaseFileRequest {
            task_id: "t1".into(),
            path: "a.py".into(),
            force: false,
            recursive: false,
            agent_id: None,
        })
        .await
    };
    assert_refused(release(b.clone()).await, 409, ErrorCode::LockNotHeld);
    let r = release(a.clone()).await.unwrap();
    assert!(!r.locked);
    assert!(b.claim_file(claim(None)).await.unwrap().fence > lease.fence);
    assert_refused(
        a.claim_file(claim(Some(0))).await,
        400,
        ErrorCode::InvalidArgument,
    );
}

#[tokio::test]
async fn logs_collaboration_tasks_and_agents() {
    let gw = TestGateway::spawn().await;
    let c = client_as(&gw, "coder");

    let task = c
        .create_task(&CreateTaskRequest {
            id: Some("t1".into()),
            title: "Fix the bug".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!((task.id.as_str(), task.status.as_str()), ("t1", "pending"));
    assert_refused(
        c.create_task(&CreateTaskRequest {
            id: Some("t1".into()),
            ..Default::default()
        })
        .await,
        409,
        ErrorCode::AlreadyExists,
    );
    let updated = c
        .update_task(
            "t1",
            &UpdateTaskRequest {
                status: Some("in_progress".into()),
                assigned_agent_id: Some(Some("coder".into())),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.status, "in_progress");
    let state = c.task_state("t1").await.unwrap();
    assert_eq!(state.assigned_agent_id.as_deref(), Some("coder"));
    assert_refused(c.task_state("nope").await, 404, ErrorCode::TaskNotFound);

    let joined = c
        .join_collaboration(CollaborationRequest {
            task_id: "t1".into(),
            agent_id: None,
        })
        .await
        .unwrap();
    assert_eq!(joined.agent_id, "coder");
    let collab = c.collaboration("t1").await.unwrap();
    assert_eq!(collab.agents, ["coder"]);

    let mut ids = Vec::new();
    for i in 0..3 {
        let s = c
            .log_step(LogStepRequest {
                task_id: "t1".into(),
                step: json!({"action": "think", "n": i, "task_id": "forged"}),
                agent_id: None,
            })
            .await
            .unwrap();
        assert_eq!(s.step["task_id"], "t1");
        assert_eq!(s.step["agent_id"], "coder");
        ids.push(s.id);
    }
    let logs = c.task_logs("t1", &LogsQuery::default()).await.unwrap();
    assert_eq!(
        logs.steps.iter().map(|s| &s.id).collect::<Vec<_>>(),
        ids.iter().collect::<Vec<_>>()
    );
    let page = c
        .task_logs(
            "t1",
            &LogsQuery {
                before: Some(ids[2].clone()),
                limit: Some(1),
            },
        )
        .await
        .unwrap();
    assert_eq!(page.steps.len(), 1);
    assert_eq!(page.steps[0].id, ids[1]);
    assert_refused(
        c.task_logs(
            "t1",
            &LogsQuery {
                before: None,
                limit: Some(0),
            },
        )
        .await,
        400,
        ErrorCode::InvalidArgument,
    );

    let sub = c
        .subscribe_logs(SubscribeLogsRequest {
            task_id: "t1".into(),
            agent_id: None,
        })
        .await
        .unwrap();
    assert!(sub.channel.ends_with("task:t1:updates"), "{}", sub.channel);
    assert_eq!(sub.stream_url, "/tasks/t1/events");

    let status = c.agent_status("coder").await.unwrap();
    assert_eq!(status.status, "active");
    assert_eq!(status.tasks, ["t1"]);
    assert_refused(c.agent_status("ghost").await, 404, ErrorCode::AgentNotFound);

    let left = c
        .leave_collaboration(CollaborationRequest {
            task_id: "t1".into(),
            agent_id: None,
        })
        .await
        .unwrap();
    assert_eq!(left.agent_id, "coder");
    assert!(c.collaboration("t1").await.unwrap().agents.is_empty());
}

#[tokio::test]
async fn the_bearer_token_is_sent_and_unknown_routes_are_refused() {
    let gw = TestGateway::spawn().await;
    // Authentication is not enforced yet; the token must at least not disturb a call.
    let c = GatewayClient::new(ClientConfig::new(gw.base.clone()).with_token("t0k3n")).unwrap();
    c.file_write(write("t1", "a", "x")).await.unwrap();
    // A base URL with a path the gateway does not serve: 404 `not_found`, not a decode error.
    let c = GatewayClient::new(ClientConfig::new(format!("{}/nope/", gw.base))).unwrap();
    assert_refused(
        c.file_write(write("t1", "a", "x")).await,
        404,
        ErrorCode::NotFound,
    );
}

#[tokio::test]
async fn requests_without_an_agent_act_as_the_task() {
    let gw = TestGateway::spawn().await;
    let c = GatewayClient::new(ClientConfig::new(gw.base.clone())).unwrap();
    let lease = c.claim_file(crate::claim_req("t9", "a")).await.unwrap();
    assert_eq!(lease.owner, "t9");
}

#[tokio::test]
async fn the_execution_logger_joins_logs_and_leaves() {
    let gw = TestGateway::spawn().await;
    let c = client_as(&gw, "coder");
    let mut log = c.execution_logger("t1").await.unwrap();
    assert_eq!(log.agent_id(), "coder");
    assert_eq!(c.collaboration("t1").await.unwrap().agents, ["coder"]);

    let first = log
        .log("file_read", json!({"path": "a.py"}), "print(1)")
        .await
        .unwrap();
    let mut extra = serde_json::Map::new();
    extra.insert("thought".into(), json!("run the tests next"));
    log.log_with("run_tests", json!("pytest -q"), json!({"passed": 3}), extra)
        .await
        .unwrap();
    assert_eq!(log.steps(), 2);
    assert_eq!(first.step["step"], 1);
    let steps = c
        .task_logs("t1", &LogsQuery::default())
        .await
        .unwrap()
        .steps;
    assert_eq!(steps.len(), 2);
    let s = &steps[1].step;
    assert_eq!(
        (
            s["step"].as_i64(),
            s["action"].as_str(),
            s["action_input"].as_str(),
            s["observation"]["passed"].as_i64(),
            s["thought"].as_str(),
            s["agent_id"].as_str(),
        ),
        (
            Some(2),
            Some("run_tests"),
            Some("pytest -q"),
            Some(3),
            Some("run the tests next"),
            Some("coder")
        )
    );
    let e = log
        .log_raw(json!(["not", "an", "object"]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArgument);

    let left = log.finish().await.unwrap();
    assert_eq!(left.agent_id, "coder");
    assert!(c.collaboration("t1").await.unwrap().agents.is_empty());

    // Dropped without finish(): it still leaves (in the background).
    drop(c.execution_logger("t1").await.unwrap());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !c.collaboration("t1").await.unwrap().agents.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the dropped logger never left"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The generic call serves every tool of the registry by its types: the same bodies as the
/// named shorthands, aliases resolved to the canonical route, refusals with their code.
#[tokio::test]
async fn the_generic_call_serves_registry_tools() {
    use mcp_api::tools::{FileRead, FileWrite, JoinCollaboration, ReleaseFile};
    let gw = TestGateway::spawn().await;
    let c = client_as(&gw, "coder");
    let w = c
        .call::<FileWrite>(write("t1", "a.py", "x\n"))
        .await
        .unwrap();
    assert_eq!((w.path.as_str(), w.version), ("a.py", 1));
    let r = c
        .call::<FileRead>(FileReadRequest {
            task_id: "t1".into(),
            path: "a.py".into(),
            agent_id: None,
        })
        .await
        .unwrap();
    assert_eq!(r.content, "x\n");
    let j = c
        .call::<JoinCollaboration>(CollaborationRequest {
            task_id: "t1".into(),
            agent_id: None,
        })
        .await
        .unwrap();
    assert_eq!(j.agent_id, "coder");
    let e = c
        .call::<ReleaseFile>(ReleaseFileRequest {
            task_id: "t1".into(),
            path: "a.py".into(),
            force: false,
            recursive: false,
            agent_id: None,
        })
        .await;
    assert_refused(e, 409, ErrorCode::LockNotHeld);
}

/// The read tools of a file's past and a task's leases, through the generic call and the
/// shorthands: history newest first, any version's content and a diff, live leases.
#[tokio::test]
async fn history_revisions_and_leases() {
    use mcp_api::tools::{FileHistory, FileRevision, ListLeases};
    let gw = TestGateway::spawn().await;
    let c = client_as(&gw, "coder");
    c.file_write(write("t1", "a.py", "x = 1\n")).await.unwrap();
    c.file_edit(FileEditRequest::new("t1", "a.py", "1", "2"))
        .await
        .unwrap();
    let h = c
        .call::<FileHistory>(FileHistoryRequest::new("t1", "./a.py"))
        .await
        .unwrap();
    let listed: Vec<(i64, &str)> = h
        .revisions
        .iter()
        .map(|r| (r.version, r.op.as_str()))
        .collect();
    assert_eq!(listed, [(2, "edit"), (1, "write")]);
    assert_eq!(h.revisions[0].agent_id.as_deref(), Some("coder"));
    let v1 = c
        .call::<FileRevision>(FileRevisionRequest::new("t1", "a.py", 1))
        .await
        .unwrap();
    assert_eq!((v1.content.as_deref(), v1.diff), (Some("x = 1\n"), None));
    let v2 = c
        .file_revision(FileRevisionRequest {
            diff_from: Some(1),
            ..FileRevisionRequest::new("t1", "a.py", 2)
        })
        .await
        .unwrap();
    assert_eq!(v2.content.as_deref(), Some("x = 2\n"));
    assert!(v2.diff.unwrap().contains("-x = 1\n+x = 2\n"));
    let e = assert_refused(
        c.file_revision(FileRevisionRequest::new("t1", "a.py", 3))
            .await,
        404,
        ErrorCode::RevisionNotFound,
    );
    assert_eq!(e.context().unwrap()["latest_version"], 2);
    assert_refused(
        c.file_history(FileHistoryRequest::new("t1", "nope.py"))
            .await,
        404,
        ErrorCode::FileNotFound,
    );

    assert!(
        c.call::<ListLeases>(ListLeasesRequest::new("t1"))
            .await
            .unwrap()
            .leases
            .is_empty()
    );
    let lease = c
        .claim_file(ClaimFileRequest::new("t1", "a.py"))
        .await
        .unwrap();
    let leases = c.list_leases(ListLeasesRequest::new("t1")).await.unwrap();
    assert_eq!(leases.leases.len(), 1);
    let l = &leases.leases[0];
    assert_eq!(
        (l.path.as_str(), l.holder.as_str(), l.fence, l.expires_at),
        ("a.py", "coder", lease.fence, lease.expires_at)
    );
    assert!(l.ttl_ms_left > 0);
}

/// Messages (issue #17): send, a long poll that outlives the client's own timeout (the call
/// adds its `wait_sec`), acknowledge; the generic call reaches the same tools.
#[tokio::test]
async fn messages_round_trip_with_a_long_poll() {
    let gw = TestGateway::spawn().await;
    let alice = client_as(&gw, "alice");
    let bob = GatewayClient::new(
        ClientConfig::new(gw.base.clone())
            .with_agent("bob")
            .with_timeout(std::time::Duration::from_secs(1)),
    )
    .unwrap();
    let poll = {
        let bob = bob.clone();
        tokio::spawn(async move {
            bob.read_messages(ReadMessagesRequest {
                task_id: Some("t1".into()),
                wait_sec: Some(20.0),
                ..ReadMessagesRequest::default()
            })
            .await
        })
    };
    // Longer than bob's 1 s timeout: the wait is added to it.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let sent = alice
        .call::<mcp_api::tools::SendMessage>(SendMessageRequest {
            task_id: "t1".into(),
            to: Recipients::Agents(vec!["bob".into()]),
            subject: "hello".into(),
            body: "from alice".into(),
            ..SendMessageRequest::default()
        })
        .await
        .unwrap();
    let got = poll.await.unwrap().unwrap();
    assert_eq!(got.messages[0].id, sent.message_id);
    assert_eq!(got.messages[0].body, "from alice");
    let acked = bob
        .ack_message(AckMessageRequest {
            message_id: sent.message_id,
            ..AckMessageRequest::default()
        })
        .await
        .unwrap();
    assert_eq!(acked.task_id, "t1");
    let unread = bob
        .read_messages(ReadMessagesRequest {
            unread_only: true,
            ..ReadMessagesRequest::default()
        })
        .await
        .unwrap();
    assert!(unread.messages.is_empty());
    assert_refused(
        alice
            .ack_message(AckMessageRequest {
                message_id: sent.message_id,
                ..AckMessageRequest::default()
            })
            .await,
        404,
        ErrorCode::MessageNotFound,
    );
}

/// Issue #18 item 4: an `https://` gateway can be reached (the default feature `rustls`); the
/// client refused such URLs before. The listener here is not a TLS server: it checks that what
/// arrives is a TLS ClientHello (record type 22, handshake type 1), then hangs up, and the
/// client reports a transport error, not a configuration one.
#[tokio::test]
async fn an_https_gateway_is_reached_over_tls() {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut head = [0u8; 6];
        socket.read_exact(&mut head).await.unwrap();
        head
    });
    let client = GatewayClient::new(ClientConfig::new(format!("https://127.0.0.1:{port}")))
        .expect("https:// is accepted");
    let err = client.health().await.expect_err("no TLS server answers");
    assert!(!matches!(err, ClientError::Config(_)), "{err}");
    let head = server.await.unwrap();
    assert_eq!(
        (head[0], head[5]),
        (22, 1),
        "not a TLS ClientHello: {head:?}"
    );
}
