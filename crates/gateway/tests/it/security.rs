//! Authentication and authorisation (authentication on): every route against every kind of
//! bad or insufficient credential, with the state checked unchanged after each refusal; the
//! token's agent as the actor; scoped answers; CORS.

use mcp_domain::Role;
use mcp_gateway::auth::Claims;
use mcp_testkit::{Answer, TestGateway};
use reqwest::Method;
use serde_json::{Value, json};

/// What a route needs: read access to its task, write access, or the admin role.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Need {
    Read,
    Write,
    Admin,
    /// Any authenticated caller (`/resources/agents/{id}/status`).
    AnyCaller,
}

struct Route {
    method: Method,
    path: String,
    body: Option<Value>,
    need: Need,
    /// The success status of a valid call.
    ok: u16,
}

fn tool(name: &str, body: Value, need: Need) -> Route {
    Route {
        method: Method::POST,
        path: format!("/tools/{name}"),
        body: Some(body),
        need,
        ok: 200,
    }
}

fn get(path: &str, need: Need) -> Route {
    Route {
        method: Method::GET,
        path: path.to_owned(),
        body: None,
        need,
        ok: 200,
    }
}

/// Every REST route on task `t1`, in an order in which valid calls all succeed.
fn routes() -> Vec<Route> {
    use Need::*;
    let t = |extra: Value| {
        let mut b = json!({"task_id": "t1"});
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        b
    };
    vec![
        tool("file_read", t(json!({"path": "a.txt"})), Read),
        tool("list_files", t(json!({})), Read),
        tool("subscribe_logs", t(json!({})), Read),
        tool("file_history", t(json!({"path": "a.txt"})), Read),
        tool(
            "file_revision",
            t(json!({"path": "a.txt", "version": 1})),
            Read,
        ),
        tool("list_leases", t(json!({})), Read),
        get("/resources/tasks/t1/state", Read),
        get("/resources/tasks/t1/logs", Read),
        get("/resources/tasks/t1/files", Read),
        get("/resources/workspace/t1/a.txt", Read),
        get("/resources/collaboration/t1", Read),
        get("/resources/agents/alice/status", AnyCaller),
        tool(
            "file_edit",
            t(json!({"path": "a.txt", "old_string": "hello", "new_string": "bye"})),
            Write,
        ),
        tool(
            "file_write",
            t(json!({"path": "a.txt", "content": "x"})),
            Write,
        ),
        tool("claim_file", t(json!({"path": "b.txt"})), Write),
        tool("renew_file", t(json!({"path": "b.txt"})), Write),
        tool("release_file", t(json!({"path": "b.txt"})), Write),
        tool(
            "release_file",
            t(json!({"path": "c.txt", "force": true})),
            Admin,
        ),
        tool("log_step", t(json!({"step": {"action": "x"}})), Write),
        tool("join_collaboration", t(json!({})), Write),
        tool("join_collab", t(json!({})), Write),
        tool("leave_collaboration", t(json!({})), Write),
        tool("leave_collab", t(json!({})), Write),
        tool("delete_file", t(json!({"path": "a.txt"})), Write),
        Route {
            method: Method::POST,
            path: "/admin/tasks".into(),
            body: Some(json!({"id": "t9", "title": "new"})),
            need: Admin,
            ok: 201,
        },
        Route {
            method: Method::PATCH,
            path: "/admin/tasks/t1".into(),
            body: Some(json!({"title": "renamed"})),
            need: Admin,
            ok: 200,
        },
        get("/admin/audit?task=t1", Admin),
    ]
}

async fn send(gw: &TestGateway, r: &Route, token: Option<&str>) -> Answer {
    gw.call(r.method.clone(), &r.path, token, r.body.as_ref())
        .await
}

/// Everything a request could change: the durable rows and every Redis key of the test's
/// prefix (but the rate counters, which count refused requests too).
async fn snapshot(gw: &TestGateway) -> Vec<String> {
    let pool = gw.pg.pool();
    let mut out = Vec::new();
    for sql in [
        "SELECT task_id || '|' || path || '|' || version || '|' || deleted || '|' || content FROM files",
        "SELECT task_id || '|' || path || '|' || version FROM file_revisions",
        "SELECT actor || '|' || action || '|' || coalesce(task_id, '') FROM audit_log",
        "SELECT task_id || '|' || agent_id || '|' || coalesce(left_at::text, '') FROM collaborators",
        "SELECT id || '|' || title || '|' || updated_at::text FROM tasks",
        "SELECT id FROM agents",
    ] {
        let mut rows: Vec<String> = sqlx::query_scalar(sql).fetch_all(pool).await.unwrap();
        rows.sort();
        out.push(format!("{sql}: {rows:?}"));
    }
    let mut c = gw.redis.connection().await;
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}*", gw.redis.prefix))
        .query_async(&mut c)
        .await
        .unwrap();
    keys.retain(|k| !k.starts_with(&format!("{}rate:", gw.redis.prefix)));
    keys.sort();
    for k in keys {
        let kind: String = redis::cmd("TYPE")
            .arg(&k)
            .query_async(&mut c)
            .await
            .unwrap();
        let value = match kind.as_str() {
            "string" => redis::cmd("GET")
                .arg(&k)
                .query_async::<String>(&mut c)
                .await
                .unwrap(),
            "hash" => {
                let mut v: Vec<(String, String)> = redis::cmd("HGETALL")
                    .arg(&k)
                    .query_async(&mut c)
                    .await
                    .unwrap();
                v.sort();
                format!("{v:?}")
            }
            "set" => {
                let mut v: Vec<String> = redis::cmd("SMEMBERS")
                    .arg(&k)
                    .query_async(&mut c)
                    .await
                    .unwrap();
                v.sort();
                format!("{v:?}")
            }
            "stream" => {
                let v = crate::xrange(&mut c, &k).await;
                format!("{:?}", v.ids.iter().map(|e| &e.id).collect::<Vec<_>>())
            }
            other => other.to_owned(),
        };
        out.push(format!("{k} = {value}"));
    }
    out
}

/// Task t1 with a.txt ("hello", written by alice), c.txt leased by bob; task t2 with a file.
async fn setup(gw: &TestGateway) {
    let admin = gw.token("root", &["*"], Role::Admin);
    let alice = gw.token("alice", &["t1"], Role::Agent);
    let bob = gw.token("bob", &["t1", "t2"], Role::Agent);
    for id in ["t1", "t2"] {
        let a = gw
            .call(
                Method::POST,
                "/admin/tasks",
                Some(&admin),
                Some(&json!({"id": id})),
            )
            .await;
        assert_eq!(a.status, 201, "{}", a.body);
    }
    ok_as(
        gw,
        &alice,
        "file_write",
        json!({"task_id": "t1", "path": "a.txt", "content": "hello"}),
    )
    .await;
    ok_as(
        gw,
        &bob,
        "claim_file",
        json!({"task_id": "t1", "path": "c.txt"}),
    )
    .await;
    ok_as(
        gw,
        &bob,
        "file_write",
        json!({"task_id": "t2", "path": "secret.txt", "content": "TOP-SECRET"}),
    )
    .await;
}

/// `tool` called with `token`, which must succeed: the answer's body.
async fn ok_as(gw: &TestGateway, token: &str, tool: &str, body: Value) -> Value {
    let (status, body) = gw.tool_as(token, tool, body).await;
    assert_eq!(status, 200, "{body}");
    body
}

#[track_caller]
fn expect(a: &Answer, status: u16, code: &str, what: &str) {
    assert_eq!(a.status, status, "{what}: {}", a.body);
    assert_eq!(a.body["code"], code, "{what}: {}", a.body);
    let text = a.body.to_string();
    assert!(!text.contains("TOP-SECRET"), "{what} leaks: {text}");
    if status == 401 {
        assert!(
            a.headers.contains_key("www-authenticate"),
            "{what}: 401 without WWW-Authenticate"
        );
    }
}

#[tokio::test]
async fn every_route_refuses_bad_or_insufficient_credentials_and_changes_nothing() {
    let gw = TestGateway::spawn_secured().await;
    setup(&gw).await;
    let before = snapshot(&gw).await;

    let now = chrono::Utc::now().timestamp();
    let expired = gw.mint(&Claims {
        agent_id: Some("alice".into()),
        exp: Some(json!(now - 3600)),
        tasks: Some(mcp_gateway::auth::TaskScope::One("*".into())),
        role: Some("admin".into()),
        ..Claims::default()
    });
    let forged = {
        // Signed with another secret: a valid-looking admin token.
        let other = mcp_gateway::auth::Authenticator::new(
            "not-the-gateway-secret-0123456789".parse().unwrap(),
            true,
        );
        other.mint(&mcp_gateway::auth::Authenticator::claims_for(
            "alice",
            None,
            Role::Admin,
            std::time::Duration::from_secs(3600),
        ))
    };
    let bad_tokens: [(&str, Option<&str>); 4] = [
        ("no token", None),
        ("expired", Some(&expired)),
        ("wrong signature", Some(&forged)),
        ("garbage", Some("not.a.token")),
    ];
    for (what, token) in bad_tokens {
        for r in routes() {
            let a = send(&gw, &r, token).await;
            expect(
                &a,
                401,
                "unauthorized",
                &format!("{what} {} {}", r.method, r.path),
            );
        }
    }
    assert_eq!(snapshot(&gw).await, before, "a 401 changed state");

    let other_task = gw.token("alice", &["t2"], Role::Agent);
    for r in routes() {
        let a = send(&gw, &r, Some(&other_task)).await;
        let what = format!("token for t2: {} {}", r.method, r.path);
        match r.need {
            Need::AnyCaller => {
                assert_eq!(a.status, 200, "{what}: {}", a.body);
                // Alice's tasks outside the caller's scope are not shown.
                assert!(!a.body.to_string().contains("t1"), "{what}: {}", a.body);
            }
            _ => expect(&a, 403, "forbidden", &what),
        }
    }
    assert_eq!(
        snapshot(&gw).await,
        before,
        "a token for another task changed state"
    );

    let observer = gw.token("olga", &["t1"], Role::Observer);
    for r in routes() {
        let a = send(&gw, &r, Some(&observer)).await;
        let what = format!("observer: {} {}", r.method, r.path);
        match r.need {
            Need::Read | Need::AnyCaller => assert_eq!(a.status, 200, "{what}: {}", a.body),
            Need::Write | Need::Admin => expect(&a, 403, "forbidden", &what),
        }
    }
    assert_eq!(snapshot(&gw).await, before, "an observer changed state");

    let agent = gw.token("alice", &["t1"], Role::Agent);
    let everywhere = gw.token("alice", &["*"], Role::Agent);
    for r in routes().into_iter().filter(|r| r.need == Need::Admin) {
        for token in [&agent, &everywhere] {
            let a = send(&gw, &r, Some(token)).await;
            expect(
                &a,
                403,
                "forbidden",
                &format!("agent on {} {}", r.method, r.path),
            );
        }
    }
    assert_eq!(
        snapshot(&gw).await,
        before,
        "an agent changed state on an admin route"
    );

    let admin = gw.token("root", &["*"], Role::Admin);
    for r in routes() {
        let token = if r.need == Need::Admin {
            &admin
        } else {
            &agent
        };
        let a = send(&gw, &r, Some(token)).await;
        assert_eq!(a.status, r.ok, "valid {} {}: {}", r.method, r.path, a.body);
    }
    assert_ne!(snapshot(&gw).await, before);
}

#[tokio::test]
async fn the_token_agent_acts_and_another_agent_id_is_refused() {
    let gw = TestGateway::spawn_secured().await;
    setup(&gw).await;
    let alice = gw.token("alice", &["t1"], Role::Agent);
    let before = snapshot(&gw).await;
    for (tool, body) in [
        (
            "file_write",
            json!({"task_id": "t1", "path": "a.txt", "content": "x", "agent_id": "mallory"}),
        ),
        (
            "claim_file",
            json!({"task_id": "t1", "path": "z", "agent_id": "bob"}),
        ),
        (
            "join_collaboration",
            json!({"task_id": "t1", "agent_id": "bob"}),
        ),
    ] {
        let a = gw
            .call(
                Method::POST,
                &format!("/tools/{tool}"),
                Some(&alice),
                Some(&body),
            )
            .await;
        expect(&a, 403, "forbidden", tool);
    }
    let a = gw
        .call(
            Method::GET,
            "/resources/tasks/t1/files?agent_id=bob",
            Some(&alice),
            None,
        )
        .await;
    expect(&a, 403, "forbidden", "resource with another agent_id");
    assert_eq!(snapshot(&gw).await, before);

    // Its own agent_id is fine, and the lease and the audit name the token's agent.
    let c = ok_as(
        &gw,
        &alice,
        "claim_file",
        json!({"task_id": "t1", "path": "z", "agent_id": "alice"}),
    )
    .await;
    assert_eq!(c["owner"], "alice");
    ok_as(
        &gw,
        &alice,
        "file_write",
        json!({"task_id": "t1", "path": "z", "content": "mine"}),
    )
    .await;
    let (by,): (String,) =
        sqlx::query_as("SELECT updated_by FROM files WHERE task_id = 't1' AND path = 'z'")
            .fetch_one(gw.pg.pool())
            .await
            .unwrap();
    assert_eq!(by, "alice");
    // Bob cannot release alice's lease; only an admin can force it.
    let bob = gw.token("bob", &["t1"], Role::Agent);
    let r = gw
        .tool_as(&bob, "release_file", json!({"task_id": "t1", "path": "z"}))
        .await;
    assert_eq!(r.0, 409, "{}", r.1);
    let r = gw
        .tool_as(
            &bob,
            "release_file",
            json!({"task_id": "t1", "path": "z", "force": true}),
        )
        .await;
    assert_eq!(r.0, 403, "{}", r.1);
}

#[tokio::test]
async fn tokens_travel_in_the_header_or_a_get_query_and_legacy_tokens_work() {
    let gw = TestGateway::spawn_secured().await;
    setup(&gw).await;
    let alice = gw.token("alice", &["t1"], Role::Agent);
    let a = gw
        .call(
            Method::GET,
            &format!("/resources/tasks/t1/files?access_token={alice}"),
            None,
            None,
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    // Not for a POST: a query token there is ignored (401).
    let a = gw
        .call(
            Method::POST,
            &format!("/tools/list_files?access_token={alice}"),
            None,
            Some(&json!({"task_id": "t1"})),
        )
        .await;
    expect(&a, 401, "unauthorized", "query token on a POST");

    // The original's tokens: agent_id + exp, nothing else: every task, as an agent.
    let legacy = gw.mint(&Claims {
        agent_id: Some("old-agent".into()),
        exp: Some(json!(chrono::Utc::now().timestamp() + 600)),
        ..Claims::default()
    });
    ok_as(
        &gw,
        &legacy,
        "file_write",
        json!({"task_id": "t2", "path": "l.txt", "content": "legacy"}),
    )
    .await;
    let a = gw
        .call(Method::GET, "/admin/audit", Some(&legacy), None)
        .await;
    expect(&a, 403, "forbidden", "legacy token on an admin route");

    // /health needs no token.
    let h = gw.call(Method::GET, "/health", None, None).await;
    assert_eq!(h.status, 200);
}

#[tokio::test]
async fn cors_is_off_by_default_and_follows_the_configured_origins() {
    let gw = TestGateway::spawn_secured().await;
    let r = gw
        .http
        .get(format!("{}/health", gw.base))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(!r.headers().contains_key("access-control-allow-origin"));

    let gw = TestGateway::spawn_secured_with(|c| {
        c.cors_origins = vec!["https://ui.example".into()];
    })
    .await;
    let pre = gw
        .http
        .request(Method::OPTIONS, format!("{}/tools/file_read", gw.base))
        .header("origin", "https://ui.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        pre.headers()["access-control-allow-origin"],
        "https://ui.example"
    );
    let other = gw
        .http
        .get(format!("{}/health", gw.base))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(!other.headers().contains_key("access-control-allow-origin"));
}
