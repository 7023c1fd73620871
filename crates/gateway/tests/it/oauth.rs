//! Issue #15 item 2: tokens from the operator's authorization server (a real one on loopback,
//! `mcp_testkit::oauth::TestIssuer`): discovery of its metadata and keys, RS256 and ES256,
//! `iss`/`aud`/`exp`/`nbf`, claims → agent, scope and role, key rotation, the issuer being
//! down; the Protected Resource Metadata (RFC 9728) and the `WWW-Authenticate` that names it;
//! static tokens beside them; and without an issuer, a 401 that says a static token is needed.

use mcp_domain::Role;
use mcp_testkit::oauth::{CLIENT_SECRET, TestIssuer};
use mcp_testkit::{Answer, TestGateway};
use reqwest::Method;
use serde_json::{Value, json};

const PUBLIC: &str = "http://gateway.test";
const RESOURCE: &str = "http://gateway.test/mcp";

async fn gateway_with(issuer: &TestIssuer, also_static: bool) -> TestGateway {
    let url = issuer.url().to_owned();
    let tweak = move |c: &mut mcp_gateway::GatewayConfig| {
        c.oauth_issuer = Some(url);
        c.public_url = Some(PUBLIC.into());
        c.oauth_scopes_supported = vec!["mcp:tools".into()];
        c.oauth_role_map = vec!["auditors=observer".into(), "leads=admin".into()];
        c.oauth_jwks_min_refresh_secs = 0;
    };
    if also_static {
        TestGateway::spawn_secured_with(tweak).await
    } else {
        TestGateway::spawn_with(tweak).await
    }
}

async fn write(gw: &TestGateway, token: &str, task: &str) -> (u16, Value) {
    gw.tool_as(
        token,
        "file_write",
        json!({"task_id": task, "path": "a.py", "content": "x"}),
    )
    .await
}

/// `file_read` of `a` in `t1` with `token`: the whole answer (the challenge is in a header).
async fn read(gw: &TestGateway, token: &str) -> Answer {
    let body = json!({"task_id": "t1", "path": "a"});
    gw.call(Method::POST, "/tools/file_read", Some(token), Some(&body))
        .await
}

#[tokio::test]
async fn tokens_of_the_issuer_name_the_agent_its_tasks_and_role() {
    let issuer = TestIssuer::start(RESOURCE).await;
    let gw = gateway_with(&issuer, false).await;

    // RS256, scoped to t1.
    let rs = issuer.sign(
        "rsa-1",
        &issuer.claims(RESOURCE, "coder", json!({"tasks": ["t1"]})),
    );
    let (status, body) = write(&gw, &rs, "t1").await;
    assert_eq!(status, 200, "{body}");
    let (status, history) = gw
        .tool_as(
            &rs,
            "file_history",
            json!({"task_id": "t1", "path": "a.py"}),
        )
        .await;
    assert_eq!(status, 200, "{history}");
    assert_eq!(history["revisions"][0]["agent_id"], "coder", "{history}");
    let (status, body) = write(&gw, &rs, "t2").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );

    // ES256, every task (no claim), a mapped role: an observer may read, not write.
    let es = issuer.sign(
        "ec-1",
        &issuer.claims(RESOURCE, "qa", json!({"role": ["auditors"]})),
    );
    let (status, _) = gw.get_as(&es, "/resources/workspace/t1/a.py").await;
    assert_eq!(status, 200);
    let (status, body) = write(&gw, &es, "t1").await;
    assert_eq!(status, 403, "{body}");
    // The strongest of several roles; `admin` by the map.
    let lead = issuer.sign(
        "ec-1",
        &issuer.claims(RESOURCE, "lead", json!({"role": "auditors leads"})),
    );
    let (status, body) = gw.get_as(&lead, "/admin/audit?task_id=t1").await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = gw.get_as(&rs, "/admin/audit?task_id=t1").await;
    assert_eq!(status, 403);

    // The keys were fetched once for all of these.
    assert_eq!(issuer.jwks_fetches(), 1);
}

#[tokio::test]
async fn tokens_that_fail_a_check_are_refused_with_the_reason() {
    let issuer = TestIssuer::start(RESOURCE).await;
    let gw = gateway_with(&issuer, false).await;
    let now = chrono::Utc::now().timestamp();
    let mut cases = vec![
        (
            "another audience",
            issuer.sign(
                "rsa-1",
                &issuer.claims("http://elsewhere/mcp", "a", json!({})),
            ),
        ),
        (
            "another issuer",
            issuer.sign(
                "rsa-1",
                &issuer.claims(RESOURCE, "a", json!({"iss": "http://evil"})),
            ),
        ),
        (
            "expired",
            issuer.sign(
                "ec-1",
                &issuer.claims(RESOURCE, "a", json!({"exp": now - 3600})),
            ),
        ),
        (
            "not yet valid",
            issuer.sign(
                "ec-1",
                &issuer.claims(RESOURCE, "a", json!({"nbf": now + 3600})),
            ),
        ),
        (
            "a bad agent id",
            issuer.sign("ec-1", &issuer.claims(RESOURCE, "not an id!", json!({}))),
        ),
        (
            "a key the issuer does not publish",
            issuer.sign("ec-2", &issuer.claims(RESOURCE, "a", json!({}))),
        ),
    ];
    // A valid token's payload with a forged signature (the last part of another token).
    let good = issuer.sign("rsa-1", &issuer.claims(RESOURCE, "a", json!({})));
    let other = issuer.sign("rsa-1", &issuer.claims(RESOURCE, "b", json!({})));
    let forged = format!(
        "{}.{}",
        good.rsplit_once('.').unwrap().0,
        other.rsplit_once('.').unwrap().1
    );
    cases.push(("a forged signature", forged));
    // `alg: none`.
    let none = format!(
        "{}.{}.",
        base64_url(br#"{"alg":"none","typ":"JWT"}"#),
        good.split('.').nth(1).unwrap()
    );
    cases.push(("alg none", none));
    for (what, token) in cases {
        let a = read(&gw, &token).await;
        assert_eq!(a.status, 401, "{what}: {}", a.body);
        let challenge = a.headers["www-authenticate"].to_str().unwrap();
        assert!(
            challenge.contains("error=\"invalid_token\""),
            "{what}: {challenge}"
        );
    }
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test]
async fn a_key_rotation_at_the_issuer_needs_no_restart() {
    let issuer = TestIssuer::start(RESOURCE).await;
    let gw = gateway_with(&issuer, false).await;
    let old = issuer.sign("ec-1", &issuer.claims(RESOURCE, "a", json!({})));
    assert_eq!(write(&gw, &old, "t1").await.0, 200);
    issuer.rotate();
    let new = issuer.sign("ec-2", &issuer.claims(RESOURCE, "a", json!({})));
    let (status, body) = write(&gw, &new, "t1").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(issuer.jwks_fetches(), 2, "one fetch for the unknown key id");
    assert_eq!(write(&gw, &new, "t1").await.0, 200);
    assert_eq!(issuer.jwks_fetches(), 2, "then cached");
}

#[tokio::test]
async fn the_issuer_being_down_is_a_503_not_a_401() {
    // The issuer's address: a port held bound but not listening, so connections to it are
    // refused for the whole test (a stopped issuer's port could be taken by another test's
    // server meanwhile, and a stopping one may still accept for a moment).
    let down = tokio::net::TcpSocket::new_v4().unwrap();
    down.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let url = format!("http://{}", down.local_addr().unwrap());
    let issuer = TestIssuer::start(RESOURCE).await;
    let token = issuer.sign("rsa-1", &issuer.claims(RESOURCE, "a", json!({"iss": url})));
    let gw = TestGateway::spawn_with(|c| {
        c.oauth_issuer = Some(url);
        c.public_url = Some(PUBLIC.into());
    })
    .await;
    let a = read(&gw, &token).await;
    assert_eq!(
        (a.status, a.body["code"].as_str()),
        (503, Some("unavailable")),
        "{}",
        a.body
    );
    assert_eq!(a.headers["retry-after"], "1");
}

#[tokio::test]
async fn the_resource_metadata_and_the_challenge_lead_a_client_to_the_issuer() {
    let issuer = TestIssuer::start(RESOURCE).await;
    let gw = gateway_with(&issuer, false).await;
    for path in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
    ] {
        let (status, doc) = gw.get(path).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(doc["resource"], RESOURCE);
        assert_eq!(doc["authorization_servers"], json!([issuer.url()]));
        assert_eq!(doc["scopes_supported"], json!(["mcp:tools"]));
        assert_eq!(doc["bearer_methods_supported"], json!(["header"]));
    }
    // No token, on REST and on MCP: the challenge names the metadata and the scope.
    for path in ["/tools/file_read", "/mcp"] {
        let r = gw
            .http
            .post(format!("{}{path}", gw.base))
            .header("accept", "application/json, text/event-stream")
            .json(&json!({"task_id": "t1", "path": "a"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401, "{path}");
        let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert_eq!(
            challenge,
            format!(
                "Bearer realm=\"mcp-gateway\", resource_metadata=\"{PUBLIC}/.well-known/oauth-protected-resource/mcp\", scope=\"mcp:tools\""
            ),
            "{path}"
        );
    }

    // A client that follows them: metadata → issuer metadata → client_credentials → a call.
    let (_, doc) = gw.get("/.well-known/oauth-protected-resource/mcp").await;
    let as_url = doc["authorization_servers"][0].as_str().unwrap();
    let meta: Value = crate::json_body(
        gw.http
            .get(format!("{as_url}/.well-known/openid-configuration")),
    )
    .await;
    issuer.set_client_claims("ci-bot", json!({"tasks": ["t1"]}));
    let grant: Value = crate::json_body(
        gw.http
            .post(meta["token_endpoint"].as_str().unwrap())
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", "ci-bot"),
                ("client_secret", CLIENT_SECRET),
                ("resource", RESOURCE),
            ]),
    )
    .await;
    let token = grant["access_token"].as_str().expect("a token");
    let (status, body) = write(&gw, token, "t1").await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn static_tokens_work_beside_the_issuers() {
    let issuer = TestIssuer::start(RESOURCE).await;
    let gw = gateway_with(&issuer, true).await;
    let static_token = gw.token("coder", &["t1"], Role::Agent);
    assert_eq!(write(&gw, &static_token, "t1").await.0, 200);
    let oauth = issuer.sign("rsa-1", &issuer.claims(RESOURCE, "qa", json!({})));
    assert_eq!(write(&gw, &oauth, "t1").await.0, 200);
    // A static token signed with another secret is still refused.
    let forged = mcp_gateway::auth::Authenticator::new(
        "another-secret-0123456789abcdef".parse().unwrap(),
        true,
    )
    .mint(&mcp_gateway::auth::Authenticator::claims_for(
        "coder",
        None,
        Role::Admin,
        std::time::Duration::from_secs(60),
    ));
    assert_eq!(write(&gw, &forged, "t1").await.0, 401);
}

#[tokio::test]
async fn without_an_issuer_the_401_says_a_static_token_is_needed() {
    let gw = TestGateway::spawn_secured().await;
    let a = gw
        .call(
            Method::POST,
            "/tools/file_read",
            None,
            Some(&json!({"task_id": "t1", "path": "a"})),
        )
        .await;
    assert_eq!(a.status, 401);
    let detail = a.body["detail"].as_str().unwrap();
    assert!(
        detail.contains("static bearer token") && detail.contains("Authorization: Bearer"),
        "{detail}"
    );
    assert_eq!(
        a.headers["www-authenticate"],
        "Bearer realm=\"mcp-gateway\""
    );
    let (status, body) = gw.get("/.well-known/oauth-protected-resource/mcp").await;
    assert_eq!(status, 404, "{body}");
}
