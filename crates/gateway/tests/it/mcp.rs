//! `/mcp` with a real MCP client (rmcp's, over Streamable HTTP) against running gateways, for
//! both protocol generations: 2025-11-25 (`initialize`, sessions, `resources/subscribe`) and
//! 2026-07-28 (`server/discover`, stateless, `subscriptions/listen`).
//!
//! The golden tool list is `tests/golden/mcp_tools.json`; regenerate it with
//! `UPDATE_GOLDEN=1 cargo nextest run -p mcp-gateway --test it mcp::` and review the diff.

use mcp_testkit::TestGateway;
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, Implementation,
    ProtocolVersion, ReadResourceRequestParams, ResourceContents, ResourceUpdatedNotificationParam,
    ServerNotification, SubscribeRequestParams, SubscriptionFilter,
};
use rmcp::service::{
    ClientLifecycleMode, ClientServiceExt, NotificationContext, RoleClient, RunningService,
};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientHandler, ServiceError};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::sync::mpsc;

/// The two protocol generations `/mcp` serves.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Generation {
    /// 2025-11-25: `initialize`, `Mcp-Session-Id`, `resources/subscribe`.
    Sessions,
    /// 2026-07-28: `server/discover`, stateless requests, `subscriptions/listen`.
    Stateless,
}

/// A client that forwards `notifications/resources/updated` (2025-11-25) to a channel.
#[derive(Clone)]
struct Client {
    updates: mpsc::UnboundedSender<String>,
    version: ProtocolVersion,
}

impl ClientHandler for Client {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("mcp-gateway-tests", "0"),
        )
        .with_protocol_version(self.version.clone())
    }

    async fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let _ = self.updates.send(params.uri);
    }
}

type Connected = (
    RunningService<RoleClient, Client>,
    mpsc::UnboundedReceiver<String>,
);

/// Connects an MCP client to `url`; `fresh_connections` makes every HTTP request open a new
/// TCP connection (so a round-robin proxy alternates them between instances).
async fn connect_to(url: &str, generation: Generation, fresh_connections: bool) -> Connected {
    let (tx, rx) = mpsc::unbounded_channel();
    let (version, lifecycle) = match generation {
        Generation::Sessions => (
            ProtocolVersion::V_2025_11_25,
            ClientLifecycleMode::Initialize,
        ),
        Generation::Stateless => (
            ProtocolVersion::V_2026_07_28,
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        ),
    };
    let mut http = reqwest013::Client::builder();
    if fresh_connections {
        http = http.pool_max_idle_per_host(0);
    }
    let transport = StreamableHttpClientTransport::with_client(
        http.build().expect("http client"),
        StreamableHttpClientTransportConfig::with_uri(url.to_owned()),
    );
    let client = Client {
        updates: tx,
        version,
    };
    let running = client
        .serve_with_lifecycle(transport, lifecycle)
        .await
        .expect("the MCP client connects");
    (running, rx)
}

/// A filter listening to one resource.
pub(crate) fn watching(uri: &str) -> SubscriptionFilter {
    SubscriptionFilter::builder()
        .resource_subscription(uri)
        .build()
}

/// Writes `content` to `a.py` in task `t1` over REST (the change listeners hear of).
pub(crate) async fn write_a_py(gw: &TestGateway, content: &str) {
    let body = json!({"task_id": "t1", "path": "a.py", "content": content});
    assert_eq!(gw.tool("file_write", body).await.0, 200);
}

/// A 2026-07-28 client (stateless, `server/discover`) that handles nothing: for tests that
/// only call tools, read resources and listen.
#[derive(Clone)]
pub(crate) struct Stateless;

impl ClientHandler for Stateless {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("mcp-gateway-tests", "0"),
        )
        .with_protocol_version(ProtocolVersion::V_2026_07_28)
    }
}

/// Connects a [`Stateless`] client to `gw`'s `/mcp`, sending `token` (when given) as the
/// bearer token of every request.
pub(crate) async fn connect_stateless(
    gw: &TestGateway,
    token: Option<&str>,
) -> RunningService<RoleClient, Stateless> {
    let mut headers = reqwest013::header::HeaderMap::new();
    if let Some(token) = token {
        headers.insert(
            reqwest013::header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
    }
    let http = reqwest013::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap();
    let transport = StreamableHttpClientTransport::with_client(
        http,
        StreamableHttpClientTransportConfig::with_uri(format!("{}/mcp", gw.base)),
    );
    Stateless
        .serve_with_lifecycle(
            transport,
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
        .await
        .expect("the MCP client connects")
}

async fn connect(gw: &TestGateway, generation: Generation) -> Connected {
    connect_to(&format!("{}/mcp", gw.base), generation, false).await
}

fn args(v: Value) -> rmcp::model::JsonObject {
    v.as_object().expect("an object").clone()
}

async fn call(
    client: &RunningService<RoleClient, Client>,
    tool: &str,
    arguments: Value,
) -> CallToolResult {
    client
        .call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(args(arguments)))
        .await
        .unwrap_or_else(|e| panic!("{tool}: {e}"))
}

/// A successful call's structured content.
#[track_caller]
fn ok(result: CallToolResult) -> Value {
    assert_ne!(result.is_error, Some(true), "tool error: {result:?}");
    let value = result.structured_content.expect("structured content");
    assert_eq!(value["success"], true, "{value}");
    value
}

/// A tool error's body: the REST error body as the text content, and no structured content
/// (which clients check against the tool's output schema, the success body).
#[track_caller]
fn error_body(result: &CallToolResult) -> Value {
    assert_eq!(
        result.is_error,
        Some(true),
        "expected a tool error: {result:?}"
    );
    assert!(
        result.structured_content.is_none(),
        "a refusal must not carry structured content: {result:?}"
    );
    let text = result
        .content
        .first()
        .and_then(|c| c.as_text())
        .map(|t| t.text.clone())
        .expect("the error body as text");
    let body: Value = serde_json::from_str(&text).expect("the text is the JSON error body");
    assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()));
    body
}

/// A tool error's code.
#[track_caller]
fn error_code(result: &CallToolResult) -> String {
    error_body(result)["code"]
        .as_str()
        .expect("a code")
        .to_owned()
}

async fn read(client: &RunningService<RoleClient, Client>, uri: &str) -> (String, Option<String>) {
    let result = client
        .read_resource(ReadResourceRequestParams::new(uri))
        .await
        .unwrap_or_else(|e| panic!("read {uri}: {e}"));
    match result.contents.into_iter().next().expect("contents") {
        ResourceContents::TextResourceContents {
            text, mime_type, ..
        } => (text, mime_type),
        other => panic!("unexpected contents {other:?}"),
    }
}

async fn every_tool_and_resource(gw: TestGateway, generation: Generation) {
    let (status, _) = gw
        .http
        .post(format!("{}/admin/tasks", gw.base))
        .json(&json!({"id": "t1", "title": "MCP"}))
        .send()
        .await
        .map(|r| (r.status().as_u16(), ()))
        .expect("create task");
    assert_eq!(status, 201);
    let (client, _) = connect(&gw, generation).await;

    let tools = client.list_all_tools().await.expect("tools/list");
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    let expected: Vec<&str> = mcp_api::TOOLS.iter().map(|t| t.name).collect();
    assert_eq!(names, expected);
    assert!(tools.iter().all(|t| t.output_schema.is_some()));

    let t = |extra: Value| {
        let mut b = json!({"task_id": "t1", "agent_id": "coder"});
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        b
    };
    let w = ok(call(
        &client,
        "file_write",
        t(json!({"path": "./src/a.py", "content": "x = 1\n"})),
    )
    .await);
    assert_eq!(
        (w["path"].as_str(), w["version"].as_i64()),
        (Some("src/a.py"), Some(1))
    );
    let r = ok(call(&client, "file_read", t(json!({"path": "src/a.py"}))).await);
    assert_eq!(r["content"], "x = 1\n");
    let e = ok(call(
        &client,
        "file_edit",
        t(json!({"path": "src/a.py", "old_string": "1", "new_string": "2"})),
    )
    .await);
    assert_eq!(e["version"], 2);
    assert!(e["diff"].as_str().unwrap().contains("+x = 2"));
    let h = ok(call(&client, "file_history", t(json!({"path": "./src/a.py"}))).await);
    assert_eq!(
        (
            h["revisions"][0]["version"].as_i64(),
            h["revisions"][0]["op"].as_str()
        ),
        (Some(2), Some("edit"))
    );
    let v = ok(call(
        &client,
        "file_revision",
        t(json!({"path": "src/a.py", "version": 1, "diff_from": 2})),
    )
    .await);
    assert_eq!(v["content"], "x = 1\n");
    assert!(v["diff"].as_str().unwrap().contains("-x = 2"));
    let l = ok(call(&client, "list_files", t(json!({}))).await);
    assert_eq!(l["files"][0]["path"], "src/a.py");
    let c = ok(call(
        &client,
        "claim_file",
        t(json!({"path": "src/a.py", "timeout_sec": 30})),
    )
    .await);
    assert_eq!(
        (c["locked"].as_bool(), c["owner"].as_str()),
        (Some(true), Some("coder"))
    );
    let leases = ok(call(&client, "list_leases", t(json!({}))).await);
    assert_eq!(
        (
            leases["leases"][0]["path"].as_str(),
            leases["leases"][0]["holder"].as_str()
        ),
        (Some("src/a.py"), Some("coder"))
    );
    let n = ok(call(&client, "renew_file", t(json!({"path": "src/a.py"}))).await);
    assert_eq!(n["fence"], c["fence"]);
    let rl = ok(call(&client, "release_file", t(json!({"path": "src/a.py"}))).await);
    assert_eq!(rl["locked"], false);
    let s = ok(call(
        &client,
        "log_step",
        t(json!({"step": {"action": "edit", "task_id": "x"}})),
    )
    .await);
    assert_eq!(s["step"]["task_id"], "t1");
    let sub = ok(call(&client, "subscribe_logs", t(json!({}))).await);
    assert!(
        sub["channel"]
            .as_str()
            .unwrap()
            .ends_with("task:t1:updates")
    );
    let j = ok(call(&client, "join_collaboration", t(json!({}))).await);
    assert_eq!(j["agent_id"], "coder");
    ok(call(&client, "join_collab", t(json!({"agent_id": "qa"}))).await);
    ok(call(&client, "leave_collab", t(json!({"agent_id": "qa"}))).await);
    ok(call(
        &client,
        "file_write",
        t(json!({"path": "gone.txt", "content": "bye"})),
    )
    .await);
    let d = ok(call(&client, "delete_file", t(json!({"path": "gone.txt"}))).await);
    assert_eq!(d["deleted"], true);
    let sent = ok(call(
        &client,
        "send_message",
        t(json!({"to": ["qa"], "subject": "review", "body": "src/a.py is ready"})),
    )
    .await);
    let id = sent["message_id"].as_i64().expect("a message id");
    let inbox = ok(call(
        &client,
        "read_messages",
        json!({"task_id": "t1", "agent_id": "qa", "wait_sec": 5}),
    )
    .await);
    assert_eq!(inbox["messages"][0]["body"], "src/a.py is ready");
    assert_eq!(inbox["cursor"], id);
    let inbox_resource = json_of_text(&read(&client, "inbox://qa").await.0);
    assert_eq!(inbox_resource["messages"][0]["id"], id);
    let acked = ok(call(
        &client,
        "ack_message",
        json!({"message_id": id, "agent_id": "qa"}),
    )
    .await);
    assert_eq!(acked["task_id"], "t1");

    // Resources: listed, as templates, and each one readable.
    let listed = client.list_all_resources().await.expect("resources/list");
    let uris: Vec<&str> = listed.iter().map(|r| r.uri.as_str()).collect();
    for uri in [
        "tasks://t1/state",
        "tasks://t1/logs",
        "tasks://t1/files",
        "collaboration://t1",
    ] {
        assert!(uris.contains(&uri), "{uri} not listed in {uris:?}");
    }
    assert_eq!(
        uris[..2],
        ["tasks://list", "agents://list"],
        "the lists first"
    );
    let templates = client
        .list_all_resource_templates()
        .await
        .expect("resources/templates/list");
    let templates: Vec<&str> = templates.iter().map(|t| t.uri_template.as_str()).collect();
    assert_eq!(
        templates,
        [
            "tasks://{task_id}/state",
            "tasks://{task_id}/logs",
            "tasks://{task_id}/files",
            "workspace://{task_id}/{+path}",
            "agents://{agent_id}/status",
            "collaboration://{task_id}",
            "inbox://{agent_id}",
        ]
    );
    let json_of = |(text, mime): (String, Option<String>)| {
        assert_eq!(mime.as_deref(), Some("application/json"));
        serde_json::from_str::<Value>(&text).expect("JSON resource")
    };
    assert_eq!(
        json_of(read(&client, "tasks://t1/state").await)["title"],
        "MCP"
    );
    let logs = json_of(read(&client, "tasks://t1/logs").await);
    assert_eq!(logs["steps"][0]["step"]["action"], "edit");
    let files = json_of(read(&client, "tasks://t1/files").await);
    assert_eq!(files["files"].as_array().map(Vec::len), Some(1));
    let (content, mime) = read(&client, "workspace://t1/src/a.py").await;
    assert_eq!(
        (content.as_str(), mime.as_deref()),
        ("x = 2\n", Some("text/x-python"))
    );
    let collab = json_of(read(&client, "collaboration://t1").await);
    assert_eq!(collab["agents"], json!(["coder"]));
    let agent = json_of(read(&client, "agents://coder/status").await);
    assert_eq!(agent["status"], "active");
    let tasks = json_of(read(&client, "tasks://list").await);
    assert_eq!(tasks["tasks"][0]["task_id"], "t1");
    let agents = json_of(read(&client, "agents://list").await);
    assert!(
        agents["agents"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["agent_id"] == "coder"),
        "{agents}"
    );

    // A missing resource is a protocol error carrying the REST code.
    let missing = client
        .read_resource(ReadResourceRequestParams::new("workspace://t1/nope.txt"))
        .await
        .expect_err("missing file");
    let ServiceError::McpError(err) = missing else {
        panic!("unexpected error {missing:?}")
    };
    assert_eq!(
        err.data.as_ref().map(|d| d["code"].clone()),
        Some(json!("file_not_found"))
    );
    assert_eq!(
        err.data.as_ref().map(|d| d["uri"].clone()),
        Some(json!("workspace://t1/nope.txt")),
        "a failed read names its URI (SEP-2164)"
    );

    // Refusals are tool errors with the REST codes, never transport failures.
    ok(call(
        &client,
        "claim_file",
        json!({"task_id": "t1", "path": "src/a.py", "agent_id": "qa"}),
    )
    .await);
    let locked = call(
        &client,
        "file_write",
        t(json!({"path": "src/a.py", "content": "y"})),
    )
    .await;
    assert_eq!(error_code(&locked), "locked");
    assert_eq!(error_body(&locked)["holder"], "qa");
    let bad = call(&client, "file_read", t(json!({"path": "../etc/passwd"}))).await;
    assert_eq!(error_code(&bad), "invalid_path");
    let missing_field = call(&client, "file_write", t(json!({"path": "a"}))).await;
    assert_eq!(error_code(&missing_field), "invalid_argument");
    let conflict = call(
        &client,
        "file_write",
        t(json!({"path": "new.txt", "content": "", "expected_version": 3})),
    )
    .await;
    assert_eq!(error_code(&conflict), "version_conflict");

    // The REST door sees what the MCP door wrote: one implementation behind both.
    let (status, body) = gw
        .tool("file_read", json!({"task_id": "t1", "path": "src/a.py"}))
        .await;
    assert_eq!((status, body["version"].as_i64()), (200, Some(2)));
    let metrics = crate::scrape(&gw).await;
    for series in [
        r#"mcp_tool_calls_total{tool="file_write",outcome="ok"}"#,
        r#"mcp_tool_calls_total{tool="file_write",outcome="locked"}"#,
    ] {
        assert!(metrics.contains(series), "{series} missing from /metrics");
    }
    client.cancel().await.expect("client stops");
}

#[tokio::test]
async fn every_tool_and_resource_2025_11_25() {
    every_tool_and_resource(TestGateway::spawn().await, Generation::Sessions).await;
}

#[tokio::test]
async fn every_tool_and_resource_in_embedded_mode() {
    every_tool_and_resource(TestGateway::spawn_embedded().await, Generation::Sessions).await;
    every_tool_and_resource(TestGateway::spawn_embedded().await, Generation::Stateless).await;
}

#[tokio::test]
async fn every_tool_and_resource_2026_07_28() {
    every_tool_and_resource(TestGateway::spawn().await, Generation::Stateless).await;
}

fn json_of_text(text: &str) -> Value {
    serde_json::from_str(text).expect("a JSON resource")
}

/// Waits for an update naming `uri`, writing through REST until one arrives: a 2025-11-25
/// client opens its notification stream in the background after `initialize`, so the first
/// writes may precede it.
async fn write_until_notified(
    gw: &TestGateway,
    updates: &mut mpsc::UnboundedReceiver<String>,
    uri: &str,
) {
    for attempt in 0..40 {
        let (status, _) = gw
            .tool(
                "file_write",
                json!({"task_id": "t1", "path": "a.py", "content": format!("v{attempt}")}),
            )
            .await;
        assert_eq!(status, 200);
        if let Ok(Some(got)) =
            tokio::time::timeout(Duration::from_millis(500), updates.recv()).await
        {
            assert_eq!(got, uri);
            return;
        }
    }
    panic!("no notifications/resources/updated for {uri}");
}

/// `inbox://{agent}` subscribers hear of a message to the agent, and of a message to
/// everyone on a task the agent is on (issue #17).
#[tokio::test]
async fn an_inbox_subscriber_hears_of_its_messages() {
    for gw in crate::both_modes().await {
        let (client, mut updates) = connect(&gw, Generation::Sessions).await;
        #[allow(deprecated)]
        client
            .subscribe(SubscribeRequestParams::new("inbox://qa"))
            .await
            .expect("resources/subscribe");
        let send =
            |to: Value| json!({"task_id": "t1", "agent_id": "coder", "to": to, "subject": "hi"});
        let mut heard = false;
        // The notification stream opens in the background after `initialize`.
        for _ in 0..40 {
            assert_eq!(gw.tool("send_message", send(json!(["qa"]))).await.0, 200);
            if let Ok(Some(got)) =
                tokio::time::timeout(Duration::from_millis(500), updates.recv()).await
            {
                assert_eq!(got, "inbox://qa");
                heard = true;
                break;
            }
        }
        assert!(heard, "no notification for inbox://qa");
        tokio::time::sleep(Duration::from_millis(200)).await;
        while updates.try_recv().is_ok() {}
        // A message for someone else is not qa's news.
        assert_eq!(gw.tool("send_message", send(json!(["dev"]))).await.0, 200);
        // One for everyone on the task reaches qa once qa is on it.
        let join = json!({"task_id": "t1", "agent_id": "qa"});
        assert_eq!(gw.tool("join_collaboration", join).await.0, 200);
        assert_eq!(gw.tool("send_message", send(json!("*"))).await.0, 200);
        let got = tokio::time::timeout(Duration::from_secs(5), updates.recv())
            .await
            .expect("a notification for the broadcast");
        assert_eq!(got.as_deref(), Some("inbox://qa"));
        client.cancel().await.expect("client stops");
    }
}

#[tokio::test]
async fn a_2025_11_25_subscriber_hears_of_a_rest_write() {
    for gw in crate::both_modes().await {
        subscriber_hears_of_a_rest_write(gw).await;
    }
}

async fn subscriber_hears_of_a_rest_write(gw: TestGateway) {
    let (client, mut updates) = connect(&gw, Generation::Sessions).await;
    let uri = "workspace://t1/./a.py";
    #[allow(deprecated)]
    client
        .subscribe(SubscribeRequestParams::new(uri))
        .await
        .expect("resources/subscribe");
    write_until_notified(&gw, &mut updates, uri).await;
    client.cancel().await.expect("client stops");
}

#[tokio::test]
async fn a_2026_07_28_listener_hears_of_a_rest_write() {
    // Listening before anything happened in the task (issue #14 item 12), in both modes.
    for gw in crate::both_modes().await {
        listener_hears_of_a_rest_write(gw).await;
    }
}

async fn listener_hears_of_a_rest_write(gw: TestGateway) {
    let (client, _) = connect(&gw, Generation::Stateless).await;
    let uri = "workspace://t1/a.py";
    let mut subscription = client
        .listen(watching(uri))
        .await
        .expect("subscriptions/listen");
    assert_eq!(
        subscription.acknowledged().resource_subscriptions,
        Some(vec![uri.to_owned()])
    );
    write_a_py(&gw, "x").await;
    expect_update(&mut subscription, uri).await;
    subscription.cancel().await.expect("unsubscribe");
    client.cancel().await.expect("client stops");
}

/// A TCP proxy that sends each new connection to the next backend in turn: a load balancer
/// without session affinity.
async fn round_robin(backends: Vec<std::net::SocketAddr>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut next = 0usize;
        while let Ok((mut inbound, _)) = listener.accept().await {
            let backend = backends[next % backends.len()];
            next += 1;
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(backend).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    format!("http://{addr}/mcp")
}

async fn alternating_instances(generation: Generation) {
    let a = TestGateway::spawn().await;
    let b = TestGateway::spawn_on(
        // The same database and key prefix as `a` (their guards drop nothing that exists
        // apart from `a`'s keys, which `a` removes anyway).
        mcp_testkit::TestDb {
            name: "mcpgw_t_shared_not_owned".into(),
            url: a.db.url.clone(),
        },
        mcp_testkit::TestRedis {
            url: a.redis.url.clone(),
            prefix: a.redis.prefix.clone(),
        },
        |_| {},
    )
    .await;
    let url = round_robin(vec![a.addr, b.addr]).await;
    let (client, mut updates) = connect_to(&url, generation, true).await;
    for i in 0..6 {
        let w = ok(call(
            &client,
            "file_write",
            json!({"task_id": "t1", "path": "n.txt", "content": format!("{i}")}),
        )
        .await);
        assert_eq!(w["version"], i + 1);
        let r = ok(call(
            &client,
            "file_read",
            json!({"task_id": "t1", "path": "n.txt"}),
        )
        .await);
        assert_eq!(r["content"], format!("{i}"));
    }
    let uri = "workspace://t1/a.py";
    match generation {
        Generation::Sessions => {
            #[allow(deprecated)]
            client
                .subscribe(SubscribeRequestParams::new(uri))
                .await
                .expect("resources/subscribe");
            // Writes through either instance reach the instance holding the stream.
            write_until_notified(&b, &mut updates, uri).await;
            write_until_notified(&a, &mut updates, uri).await;
        }
        Generation::Stateless => {
            let mut subscription = client
                .listen(watching(uri))
                .await
                .expect("subscriptions/listen");
            for gw in [&a, &b] {
                write_a_py(gw, "x").await;
                let next = tokio::time::timeout(Duration::from_secs(10), subscription.next())
                    .await
                    .expect("a notification in time")
                    .expect("open")
                    .expect("a notification");
                assert!(matches!(
                    next,
                    ServerNotification::ResourceUpdatedNotification(_)
                ));
            }
        }
    }
    client.cancel().await.expect("client stops");
}

#[tokio::test]
async fn requests_alternate_between_two_instances_2025_11_25() {
    alternating_instances(Generation::Sessions).await;
}

#[tokio::test]
async fn requests_alternate_between_two_instances_2026_07_28() {
    alternating_instances(Generation::Stateless).await;
}

#[tokio::test]
async fn a_foreign_origin_is_refused() {
    let gw = TestGateway::spawn().await;
    let initialize = json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                   "clientInfo": {"name": "t", "version": "0"}}
    });
    let post = |origin: Option<&str>| {
        let mut r = gw
            .http
            .post(format!("{}/mcp", gw.base))
            .header("accept", "application/json, text/event-stream")
            .json(&initialize);
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        r.send()
    };
    let foreign = post(Some("https://evil.example")).await.expect("request");
    assert_eq!(foreign.status().as_u16(), 403);
    let local = post(Some("http://localhost:6274")).await.expect("request");
    assert_eq!(local.status().as_u16(), 200);
    let none = post(None).await.expect("request");
    assert_eq!(none.status().as_u16(), 200);
}

#[tokio::test]
async fn a_foreign_host_is_refused_and_configured_hosts_pass() {
    let gw = TestGateway::spawn_with(|c| {
        c.allowed_hosts = Some(vec!["gateway.internal".into()]);
    })
    .await;
    let get = |host: &str| {
        gw.http
            .post(format!("{}/mcp", gw.base))
            .header("host", host)
            .header("accept", "application/json, text/event-stream")
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
            .send()
    };
    assert_eq!(
        get("evil.example")
            .await
            .expect("request")
            .status()
            .as_u16(),
        403
    );
    assert_ne!(
        get("gateway.internal:8001")
            .await
            .expect("request")
            .status()
            .as_u16(),
        403
    );
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused() {
    let gw = TestGateway::spawn_with(|c| c.max_body_bytes = Some(1024)).await;
    let big = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                     "params": {"name": "file_write", "arguments": {"content": "x".repeat(4096)}}});
    let r = gw
        .http
        .post(format!("{}/mcp", gw.base))
        .header("accept", "application/json, text/event-stream")
        .json(&big)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 413);
}

#[tokio::test]
async fn the_tool_list_matches_the_golden_file() {
    let gw = TestGateway::spawn().await;
    let (client, _) = connect(&gw, Generation::Stateless).await;
    let tools = client.list_all_tools().await.expect("tools/list");
    let got = serde_json::to_string_pretty(&tools).expect("JSON") + "\n";
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/mcp_tools.json");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).expect("golden dir");
        std::fs::write(&path, &got).expect("write golden");
    }
    let want = std::fs::read_to_string(&path)
        .expect("tests/golden/mcp_tools.json (create it with UPDATE_GOLDEN=1)");
    assert_eq!(
        got, want,
        "the MCP tool list changed; if intended, regenerate with UPDATE_GOLDEN=1"
    );
    client.cancel().await.expect("client stops");
}

/// Tool input schemas every model host accepts: no `"null"` types and no type arrays (Gemini's
/// function declarations refuse both), every property typed, optional = not `required`.
#[tokio::test]
async fn tool_input_schemas_suit_every_model_host() {
    fn check(tool: &str, at: &str, schema: &Value) {
        match schema {
            Value::Object(map) => {
                if let Some(t) = map.get("type") {
                    assert!(t.is_string(), "{tool}: a type array at {at}: {t}");
                    assert_ne!(t, "null", "{tool}: a null type at {at}");
                }
                for (k, v) in map {
                    check(tool, &format!("{at}/{k}"), v);
                }
            }
            Value::Array(items) => items.iter().for_each(|v| check(tool, at, v)),
            _ => {}
        }
    }
    let gw = TestGateway::spawn().await;
    let (client, _) = connect(&gw, Generation::Stateless).await;
    for tool in client.list_all_tools().await.expect("tools/list") {
        let schema = Value::Object((*tool.input_schema).clone());
        check(&tool.name, "", &schema);
        let props = schema["properties"].as_object().expect("properties");
        for (name, p) in props {
            assert!(p.get("type").is_some(), "{}: {name} has no type", tool.name);
        }
        // Every tool names its task, but those that may span the caller's tasks.
        let spans_tasks = matches!(tool.name.as_ref(), "read_messages" | "ack_message");
        assert!(
            spans_tasks
                || schema["required"]
                    .as_array()
                    .is_some_and(|r| r.contains(&json!("task_id"))),
            "{}: task_id is required",
            tool.name
        );
    }
    client.cancel().await.expect("client stops");
}

#[tokio::test]
async fn closing_a_session_drops_its_subscriptions() {
    use mcp_domain::TaskId;
    use mcp_domain::store::hot::SubScope;
    let gw = TestGateway::spawn().await;
    let store = gw.stores.hot.clone();
    let t1 = TaskId::parse("t1").unwrap();
    let ttl = Duration::from_secs(60);
    store
        .subscribe(
            "s1",
            SubScope::Task(&t1),
            "tasks://t1/logs",
            "tasks://t1/logs",
            ttl,
        )
        .await
        .unwrap();
    store
        .subscribe(
            "s2",
            SubScope::Task(&t1),
            "tasks://t1/logs",
            "tasks://t1/logs",
            ttl,
        )
        .await
        .unwrap();
    store.save_session("s1", &unbound("{}"), ttl).await.unwrap();
    store.drop_session("s1").await.unwrap();
    let left = store.subscribers(SubScope::Task(&t1)).await.unwrap();
    assert_eq!(
        left.iter().map(|s| s.session.as_str()).collect::<Vec<_>>(),
        ["s2"]
    );
    assert_eq!(store.load_session("s1", ttl).await.unwrap(), None);
    store
        .unsubscribe(
            "s2",
            SubScope::Task(&t1),
            "tasks://t1/logs",
            "tasks://t1/logs",
        )
        .await
        .unwrap();
    assert!(
        store
            .subscribers(SubScope::Task(&t1))
            .await
            .unwrap()
            .is_empty()
    );
}

/// A session record without an owner (authentication off).
fn unbound(state: &str) -> mcp_domain::store::hot::McpSession {
    mcp_domain::store::hot::McpSession {
        owner: None,
        state: state.into(),
    }
}

/// `POST /mcp` with a raw body, in `session` with protocol 2025-11-25: (status, JSON body or
/// `Null`, the session header).
async fn post_raw(
    gw: &TestGateway,
    body: &str,
    session: Option<&str>,
) -> (u16, Value, Option<String>) {
    post_mcp(gw, body, session, session.map(|_| "2025-11-25")).await
}

/// `POST /mcp` with a raw body, in `session`, with the protocol header `version` when given:
/// (status, JSON body or `Null`, the session header).
pub(crate) async fn post_mcp(
    gw: &TestGateway,
    body: &str,
    session: Option<&str>,
    version: Option<&str>,
) -> (u16, Value, Option<String>) {
    let mut r = gw
        .http
        .post(format!("{}/mcp", gw.base))
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(s) = session {
        r = r.header("mcp-session-id", s);
    }
    if let Some(v) = version {
        r = r.header("mcp-protocol-version", v);
    }
    let r = r.send().await.expect("request");
    let status = r.status().as_u16();
    let session = r
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = r.text().await.unwrap_or_default();
    // A JSON answer, or the first `data:` line of an SSE answer.
    let body = serde_json::from_str(&text).unwrap_or_else(|_| {
        text.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .find_map(|d| serde_json::from_str(d.trim()).ok())
            .unwrap_or(Value::Null)
    });
    (status, body, session)
}

/// The conformance suite's `server-stateless` (SEP-2575): a method that 2026-07-28 removed
/// (`resources/subscribe`, `resources/unsubscribe`) is "method not found" there — HTTP 404,
/// -32601, the request's id — whatever its parameters, while a 2025-11-25 session that sends
/// it without a `uri` still gets -32602 (invalid params).
#[tokio::test]
async fn methods_removed_in_2026_07_28_are_not_found_there_whatever_their_params() {
    let gw = TestGateway::spawn().await;
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                      "io.modelcontextprotocol/clientCapabilities": {}});
    for method in ["resources/subscribe", "resources/unsubscribe"] {
        for (id, params) in [
            (1, json!({"_meta": meta})),
            (2, json!({"uri": "tasks://t1/state", "_meta": meta})),
        ] {
            let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
            let mut r = gw
                .http
                .post(format!("{}/mcp", gw.base))
                .header("accept", "application/json, text/event-stream")
                .header("mcp-protocol-version", "2026-07-28")
                .header("mcp-method", method)
                .json(&body);
            if id == 2 {
                r = r.header("mcp-name", "tasks://t1/state");
            }
            let r = r.send().await.expect("request");
            let status = r.status().as_u16();
            let answer: Value = r.json().await.expect("a JSON answer");
            assert_eq!(
                (
                    status,
                    answer["error"]["code"].as_i64(),
                    answer["id"].as_i64()
                ),
                (404, Some(-32601), Some(id)),
                "{method} {params}: {answer}"
            );
        }
    }
    // A 2025-11-25 session keeps the method: a missing `uri` is invalid params.
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                   "clientInfo": {"name": "t", "version": "0"}}});
    let (_, _, session) = post_raw(&gw, &init.to_string(), None).await;
    let session = session.expect("a session id");
    let initialized = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    assert_eq!(post_raw(&gw, initialized, Some(&session)).await.0, 202);
    let subscribe = r#"{"jsonrpc":"2.0","id":3,"method":"resources/subscribe","params":{}}"#;
    let (status, body, _) = post_raw(&gw, subscribe, Some(&session)).await;
    assert_eq!(
        (status, body["error"]["code"].as_i64()),
        (200, Some(-32602)),
        "{body}"
    );
}

/// Issue #15 item 4: what rmcp refused with a bare 415 (not JSON, a batch) or took for an
/// unknown method (a known method with misfit parameters: -32601) gets the JSON-RPC error
/// the specification names; a session's DELETE answers 204.
#[tokio::test]
async fn malformed_messages_get_json_rpc_errors() {
    let gw = TestGateway::spawn().await;
    let (status, body, _) = post_raw(&gw, "{this is not json", None).await;
    assert_eq!(
        (status, body["error"]["code"].as_i64()),
        (400, Some(-32700)),
        "{body}"
    );
    assert_eq!(body["id"], Value::Null);

    let batch =
        r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"ping"}]"#;
    let (status, body, _) = post_raw(&gw, batch, None).await;
    assert_eq!(
        (status, body["error"]["code"].as_i64()),
        (400, Some(-32600)),
        "{body}"
    );
    assert!(
        body["error"]["message"].as_str().unwrap().contains("batch"),
        "{body}"
    );

    let (status, body, _) = post_raw(&gw, r#"{"id":1,"hello":"there"}"#, None).await;
    assert_eq!(
        (status, body["error"]["code"].as_i64()),
        (400, Some(-32600)),
        "{body}"
    );

    // A 2025-11-25 session.
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                   "clientInfo": {"name": "t", "version": "0"}}});
    let (status, _, session) = post_raw(&gw, &init.to_string(), None).await;
    assert_eq!(status, 200);
    let session = session.expect("a session id");
    let initialized = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    assert_eq!(post_raw(&gw, initialized, Some(&session)).await.0, 202);

    for (params, wrong) in [
        (json!({"arguments": {"task_id": "t1"}}), "name"),
        (
            json!({"name": "file_read", "arguments": "t1"}),
            "invalid type",
        ),
    ] {
        let call = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": params});
        let (status, body, _) = post_raw(&gw, &call.to_string(), Some(&session)).await;
        assert_eq!(
            (status, body["error"]["code"].as_i64()),
            (200, Some(-32602)),
            "{body}"
        );
        assert_eq!(body["id"], 7);
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("tools/call") && message.contains(wrong),
            "{message}"
        );
    }
    // A well-formed call still reaches the tool.
    let call = json!({"jsonrpc": "2.0", "id": 8, "method": "tools/call",
        "params": {"name": "list_files", "arguments": {"task_id": "t1"}}});
    let (status, body, _) = post_raw(&gw, &call.to_string(), Some(&session)).await;
    assert_eq!(status, 200);
    assert_eq!(body["id"], 8, "{body}");
    assert!(body["result"].is_object(), "{body}");

    let deleted = gw
        .http
        .delete(format!("{}/mcp", gw.base))
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .expect("request");
    assert_eq!(deleted.status().as_u16(), 204);
    let (status, _, _) = post_raw(&gw, &call.to_string(), Some(&session)).await;
    assert_eq!(status, 404, "the session is gone");
}

/// Issue #15 item 3 (2026-07-28): listening again is a new `subscriptions/listen`; it hears of
/// a change made in the two seconds before it (its catch-up), here one made while the client
/// was not listening, and then of live ones.
#[tokio::test]
async fn a_2026_07_28_client_that_listens_again_hears_the_latest_change() {
    let gw = TestGateway::spawn().await;
    let (client, _) = connect(&gw, Generation::Stateless).await;
    let uri = "workspace://t1/a.py";
    let filter = || watching(uri);
    let mut first = client.listen(filter()).await.expect("subscriptions/listen");
    first.cancel().await.expect("stop listening");
    write_a_py(&gw, "away").await;
    let mut again = client.listen(filter()).await.expect("listen again");
    for content in ["", "live"] {
        if !content.is_empty() {
            let (status, _) = gw
                .tool(
                    "file_write",
                    json!({"task_id": "t1", "path": "a.py", "content": content}),
                )
                .await;
            assert_eq!(status, 200);
        }
        expect_update(&mut again, uri).await;
    }
    again.cancel().await.expect("unsubscribe");
    client.cancel().await.expect("client stops");
}

/// The next notification of a 2026-07-28 listener, within 10 s: an update of `uri`.
async fn expect_update(subscription: &mut rmcp::service::Subscription, uri: &str) {
    let next = tokio::time::timeout(Duration::from_secs(10), subscription.next())
        .await
        .expect("a notification in time")
        .expect("the subscription is open")
        .expect("a notification");
    match next {
        ServerNotification::ResourceUpdatedNotification(n) => assert_eq!(n.params.uri, uri),
        other => panic!("unexpected notification {other:?}"),
    }
}
