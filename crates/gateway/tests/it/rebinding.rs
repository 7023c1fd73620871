//! DNS rebinding and foreign pages (issue #14 item 5): while authentication is off, every
//! route — REST tools, resources, admin, SSE, WebSocket, `/mcp`, and unknown paths — refuses a
//! `Host` outside `ALLOWED_HOSTS` and an `Origin` that is not allowed, with 403 and the JSON
//! error body, and changes nothing; allowed hosts and origins pass; CORS preflights of
//! `CORS_ORIGINS` still work; `/health` and `/metrics` answer probes under any `Host`. With
//! authentication on only the `Origin` is checked.

use crate::assert_error;
use mcp_domain::Role;
use mcp_testkit::TestGateway;
use reqwest::Method;
use serde_json::{Value, json};

const EVIL_HOST: &str = "attacker.example:8001";
const EVIL_ORIGIN: &str = "http://attacker.example:8001";

/// One route of each kind: (method, path, JSON body).
fn routes() -> Vec<(Method, &'static str, Option<Value>)> {
    vec![
        (
            Method::POST,
            "/tools/file_write",
            Some(json!({"task_id": "t1", "path": "a.txt", "content": "pwned"})),
        ),
        (
            Method::POST,
            "/tools/file_read",
            Some(json!({"task_id": "t1", "path": "a.txt"})),
        ),
        (
            Method::POST,
            "/tools/claim_file",
            Some(json!({"task_id": "t1", "path": "a.txt"})),
        ),
        (Method::GET, "/resources/tasks/t1/files", None),
        (
            Method::POST,
            "/admin/tasks",
            Some(json!({"id": "evil", "title": "rebound"})),
        ),
        (Method::GET, "/admin/audit", None),
        (Method::GET, "/tasks/t1/events", None),
        (Method::GET, "/ws", None),
        (
            Method::POST,
            "/mcp",
            Some(
                json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-11-25", "capabilities": {},
                "clientInfo": {"name": "page", "version": "0"}}}),
            ),
        ),
        (Method::GET, "/no/such/route", None),
    ]
}

/// Sends one request with optional `Host` and `Origin` overrides and a bearer token; for `/ws`
/// a real upgrade request. Returns (status, JSON body or `Null`).
async fn send(
    gw: &TestGateway,
    (method, path, body): &(Method, &str, Option<Value>),
    host: Option<&str>,
    origin: Option<&str>,
    token: Option<&str>,
) -> (u16, Value) {
    let mut r = gw
        .http
        .request(method.clone(), format!("{}{path}", gw.base))
        .header("accept", "application/json, text/event-stream");
    if let Some(h) = host {
        r = r.header("host", h);
    }
    if let Some(o) = origin {
        r = r.header("origin", o);
    }
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if *path == "/ws" {
        r = r
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
    }
    if let Some(b) = body {
        r = r.json(b);
    }
    let resp = r.send().await.expect("request");
    let status = resp.status().as_u16();
    // Streams (SSE, MCP, the upgraded socket) are not read to their end.
    let body = if status == 200 || status == 101 {
        Value::Null
    } else {
        resp.json().await.unwrap_or(Value::Null)
    };
    (status, body)
}

crate::in_both_modes!(
    every_route_refuses_a_foreign_host_or_origin_while_authentication_is_off,
    allowed_hosts_and_origins_pass,
);

async fn every_route_refuses_a_foreign_host_or_origin_while_authentication_is_off(gw: TestGateway) {
    for route in routes() {
        let bad_host = send(&gw, &route, Some(EVIL_HOST), None, None).await;
        assert_error(&bad_host, 403, "forbidden");
        let bad_origin = send(&gw, &route, None, Some(EVIL_ORIGIN), None).await;
        assert_error(&bad_origin, 403, "forbidden");
        // The rebinding page: its own name as Host and as Origin (same-origin to the browser).
        let rebound = send(&gw, &route, Some(EVIL_HOST), Some(EVIL_ORIGIN), None).await;
        assert_error(&rebound, 403, "forbidden");
        let null = send(&gw, &route, None, Some("null"), None).await;
        assert_error(&null, 403, "forbidden");
    }
    // Nothing refused changed anything.
    let read = gw
        .tool("file_read", json!({"task_id": "t1", "path": "a.txt"}))
        .await;
    assert_error(&read, 404, "file_not_found");
    assert_error(
        &gw.get("/resources/tasks/evil/state").await,
        404,
        "task_not_found",
    );
    // Probes and scrapers reach the gateway under any name.
    for path in ["/health", "/metrics"] {
        let r = gw
            .http
            .get(format!("{}{path}", gw.base))
            .header("host", "10.1.2.3:8001")
            .send()
            .await
            .expect("request");
        assert_eq!(r.status().as_u16(), 200, "{path} under a bare IP host");
    }
}

async fn allowed_hosts_and_origins_pass(gw: TestGateway) {
    let port = gw.addr.port();
    let hosts = [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
    ];
    let origins = [
        None,
        Some("http://localhost:6274".to_owned()),
        Some(format!("http://127.0.0.1:{port}")),
    ];
    for route in routes() {
        for host in &hosts {
            for origin in &origins {
                let got = send(&gw, &route, Some(host), origin.as_deref(), None).await;
                assert_ne!(
                    got.0, 403,
                    "{} {} refused for Host {host}, Origin {origin:?}: {}",
                    route.0, route.1, got.1
                );
            }
        }
    }
    let write = send(&gw, &routes()[0], None, Some("http://localhost:5173"), None).await;
    assert_eq!(write.0, 200, "{}", write.1);
}

#[tokio::test]
async fn configured_hosts_and_cors_origins_pass_and_preflights_still_work() {
    let gw = TestGateway::spawn_with(|c| {
        c.allowed_hosts = Some(vec!["gw.internal".into(), "gw.example:8443".into()]);
        c.cors_origins = vec!["https://ui.example".into()];
    })
    .await;
    let write = &routes()[0];
    assert_eq!(
        send(&gw, write, Some("gw.internal:8001"), None, None)
            .await
            .0,
        200
    );
    assert_eq!(
        send(&gw, write, Some("gw.example:8443"), None, None)
            .await
            .0,
        200
    );
    // Only the listed names: the loopback defaults are replaced, not extended.
    assert_error(
        &send(&gw, write, Some("gw.example:8001"), None, None).await,
        403,
        "forbidden",
    );
    assert_error(
        &send(&gw, write, Some("localhost"), None, None).await,
        403,
        "forbidden",
    );
    // A CORS origin may call; its preflight is answered with the CORS headers.
    let ui = Some("https://ui.example");
    assert_eq!(send(&gw, write, Some("gw.internal"), ui, None).await.0, 200);
    let pre = gw
        .http
        .request(Method::OPTIONS, format!("{}/tools/file_write", gw.base))
        .header("host", "gw.internal")
        .header("origin", "https://ui.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .expect("preflight");
    assert!(pre.status().is_success(), "preflight: {}", pre.status());
    assert_eq!(
        pre.headers()["access-control-allow-origin"],
        "https://ui.example"
    );
    assert_error(
        &send(
            &gw,
            write,
            Some("gw.internal"),
            Some("https://other.example"),
            None,
        )
        .await,
        403,
        "forbidden",
    );
}

#[tokio::test]
async fn with_authentication_on_any_host_passes_but_a_foreign_origin_is_refused() {
    let gw = TestGateway::spawn_secured().await;
    let admin = gw.token("ops", &["*"], Role::Admin);
    for route in routes() {
        let got = send(&gw, &route, Some(EVIL_HOST), None, Some(&admin)).await;
        assert_ne!(got.0, 403, "{} {}: {}", route.0, route.1, got.1);
        let foreign = send(&gw, &route, None, Some(EVIL_ORIGIN), Some(&admin)).await;
        assert_error(&foreign, 403, "forbidden");
    }
    // Without a token the Host alone earns nothing: 401, not a trusted caller.
    let anon = send(&gw, &routes()[0], Some(EVIL_HOST), None, None).await;
    assert_error(&anon, 401, "unauthorized");
}
