//! `GET /metrics`: the Prometheus text carries request counts and latency by route template
//! and status, lock conflicts, and the backend gauges refreshed on each scrape.

use crate::ok;
use mcp_testkit::TestGateway;
use serde_json::json;

/// The value of the sample whose name-and-labels part is exactly `series`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn scrape(gw: &TestGateway) -> String {
    let r = gw
        .http
        .get(format!("{}/metrics", gw.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    r.text().await.unwrap()
}

#[tokio::test]
async fn requests_conflicts_and_backends_are_exported() {
    let gw = TestGateway::spawn().await;
    let write = json!({"task_id": "m", "path": "a.txt", "content": "x"});
    for _ in 0..3 {
        ok(gw.tool("file_write", write.clone()).await);
    }
    let claim = |agent: &str| json!({"task_id": "m", "path": "a.txt", "agent_id": agent});
    ok(gw.tool("claim_file", claim("coder")).await);
    assert_eq!(gw.tool("claim_file", claim("qa")).await.0, 409);
    assert_eq!(gw.get("/resources/tasks/nope/state").await.0, 404);
    for n in 0..2 {
        ok(gw
            .tool("log_step", json!({"task_id": "m", "step": {"n": n}}))
            .await);
    }

    let text = scrape(&gw).await;
    let requests = |route: &str, status: u16| {
        sample(
            &text,
            &format!(
                "mcp_http_requests_total{{method=\"POST\",route=\"{route}\",status=\"{status}\"}}"
            ),
        )
    };
    assert_eq!(requests("/tools/file_write", 200), Some(3.0), "{text}");
    assert_eq!(requests("/tools/claim_file", 200), Some(1.0));
    assert_eq!(requests("/tools/claim_file", 409), Some(1.0));
    // Route templates, never raw paths: one series for every task id.
    assert!(text.contains("route=\"/resources/tasks/{task_id}/state\",status=\"404\""));
    assert!(!text.contains("/resources/tasks/nope"));
    assert!(text.contains(
        "mcp_http_request_duration_seconds_bucket{method=\"POST\",route=\"/tools/file_write\",status=\"200\",le=\"0.005\"}"
    ));
    assert_eq!(
        sample(&text, "mcp_lock_conflicts_total{op=\"claim\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "mcp_backend_up{backend=\"redis\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "mcp_backend_up{backend=\"postgres\"}"),
        Some(1.0)
    );
    let ratio = sample(&text, "mcp_redis_memory_ratio").expect("memory ratio");
    assert!(ratio > 0.0 && ratio <= 1.0, "ratio {ratio}");
    // Each step waits in the outbox: no sync loop runs in a test gateway.
    assert!(sample(&text, "mcp_outbox_length").is_some_and(|n| n >= 2.0));
}
