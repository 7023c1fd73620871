//! `GET /openapi.json`: the OpenAPI 3.1 document of the REST API. The golden copy is
//! `tests/golden/openapi.json`; regenerate it with
//! `UPDATE_GOLDEN=1 cargo nextest run -p mcp-gateway --test it openapi::` and review the diff.
//! The document is also checked against a running gateway by schemathesis
//! (`scripts/schemathesis.sh`, run by `scripts/test.sh`).

use crate::in_both_modes;
use mcp_testkit::TestGateway;
use serde_json::Value;

async fn document(gw: &TestGateway) -> Value {
    let r = gw
        .http
        .get(format!("{}/openapi.json", gw.base))
        .send()
        .await
        .expect("GET /openapi.json");
    assert_eq!(r.status().as_u16(), 200);
    r.json().await.expect("JSON")
}

#[tokio::test]
async fn the_document_matches_the_golden_file() {
    let gw = TestGateway::spawn().await;
    let got = serde_json::to_string_pretty(&document(&gw).await).expect("JSON") + "\n";
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/openapi.json");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &got).expect("write golden");
    }
    let want = std::fs::read_to_string(&path)
        .expect("tests/golden/openapi.json (create it with UPDATE_GOLDEN=1)");
    assert_eq!(
        got, want,
        "the OpenAPI document changed; if intended, regenerate with UPDATE_GOLDEN=1"
    );
}

/// Every tool of the registry (and alias) is an operation, every operation names its error
/// statuses with the error body, and every documented route is routed (none answers the
/// fallback's `no such route`).
async fn every_operation_is_served(gw: TestGateway) {
    let doc = document(&gw).await;
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().expect("paths");
    for t in mcp_api::TOOLS {
        for name in std::iter::once(t.name).chain(t.aliases.iter().copied()) {
            let op = &paths[&format!("/tools/{name}")]["post"];
            assert!(op["requestBody"].is_object(), "{name}");
            assert!(op["responses"]["200"].is_object(), "{name}");
            assert_eq!(op["responses"]["409"].is_object(), t.mutates, "{name}");
        }
    }
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            assert!(
                responses.keys().any(|s| s.starts_with('2') || s == "101"),
                "{method} {path}"
            );
            if path == "/ws" || path.ends_with("/events") {
                continue; // streams: answered by tests of their own
            }
            let url = format!("{}{}", gw.base, path.replace(['{', '}'], ""));
            let req = match method.as_str() {
                "get" => gw.http.get(&url),
                "post" => gw.http.post(&url).json(&serde_json::json!({})),
                "patch" => gw.http.patch(&url).json(&serde_json::json!({})),
                other => panic!("undocumented method {other}"),
            };
            let r = req.send().await.expect("request");
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            assert_ne!(body["detail"], "no such route", "{method} {path}");
            assert!(
                responses.contains_key(&status.to_string()),
                "{method} {path} answered an undocumented {status}: {body}"
            );
        }
    }
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    assert!(schemas.contains_key("ErrorBody") && schemas.contains_key("ErrorCode"));
}

in_both_modes!(every_operation_is_served);

/// A query or path parameter that does not parse is a client's fault answered like every
/// other: 400 `invalid_argument` with the JSON error body (found by schemathesis: axum's
/// rejections answered `text/plain`, which the document does not allow).
async fn unparsable_parameters_answer_the_error_body(gw: TestGateway) {
    for path in [
        "/resources/tasks/t1/logs?limit=false",
        "/resources/tasks/t1/logs?limit=-1",
        "/admin/audit?limit=213530829408987250688",
        "/admin/audit?since=yesterday",
        "/admin/audit?before_id=x",
        "/resources/tasks/%FF/state",
    ] {
        let r = gw
            .http
            .get(format!("{}{path}", gw.base))
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        let content_type = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let body = r.text().await.unwrap_or_default();
        assert_eq!(
            (status, content_type.as_str()),
            (400, "application/json"),
            "{path}: {body}"
        );
        let body: Value = serde_json::from_str(&body).expect("JSON body");
        assert_eq!(body["code"], "invalid_argument", "{path}: {body}");
    }
}

in_both_modes!(unparsable_parameters_answer_the_error_body);
