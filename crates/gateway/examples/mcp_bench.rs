//! Measures the MCP door against the REST door on one gateway: the latency of sequential
//! `file_write` calls through REST, MCP 2025-11-25 (session) and MCP 2026-07-28 (stateless),
//! and the time from sending a REST write to the `notifications/resources/updated` of a
//! 2026-07-28 listener (compare with the REST write's own latency).
//!
//! ```sh
//! cargo run --release -p mcp-gateway --example mcp_bench -- --runs 3 --calls 500
//! ```
//!
//! Each run spawns a gateway over a fresh database and key prefix (`mcp-testkit`, removed
//! afterwards) using the servers at `DATABASE_URL` / `REDIS_URL`.

use mcp_testkit::TestGateway;
use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation, ProtocolVersion,
    ServerNotification, SubscriptionFilter,
};
use rmcp::service::{ClientLifecycleMode, ClientServiceExt, RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use serde_json::json;
use std::time::{Duration, Instant};

#[derive(Clone)]
struct Client(ProtocolVersion);

impl rmcp::ClientHandler for Client {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("bench", "0"),
        )
        .with_protocol_version(self.0.clone())
    }
}

async fn connect(gw: &TestGateway, stateless: bool) -> RunningService<RoleClient, Client> {
    let transport = StreamableHttpClientTransport::from_uri(format!("{}/mcp", gw.base));
    let (version, lifecycle) = if stateless {
        (
            ProtocolVersion::V_2026_07_28,
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
    } else {
        (
            ProtocolVersion::V_2025_11_25,
            ClientLifecycleMode::Initialize,
        )
    };
    Client(version)
        .serve_with_lifecycle(transport, lifecycle)
        .await
        .expect("MCP client connects")
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn summary(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    (percentile(&v, 0.5), percentile(&v, 0.99))
}

fn body(i: usize) -> serde_json::Value {
    json!({"task_id": "bench", "path": format!("f{}.txt", i % 20), "content": format!("v{i}")})
}

async fn run(calls: usize) -> [(f64, f64); 4] {
    let gw = TestGateway::spawn().await;
    // REST.
    let mut rest = Vec::with_capacity(calls);
    for i in 0..calls {
        let t = Instant::now();
        let (status, _) = gw.tool("file_write", body(i)).await;
        rest.push(t.elapsed());
        assert_eq!(status, 200);
    }
    // MCP, both generations.
    let mut mcp = Vec::new();
    for stateless in [false, true] {
        let client = connect(&gw, stateless).await;
        let mut times = Vec::with_capacity(calls);
        for i in 0..calls {
            let args = body(i).as_object().cloned().expect("object");
            let t = Instant::now();
            let r = client
                .call_tool(CallToolRequestParams::new("file_write").with_arguments(args))
                .await
                .expect("tools/call");
            times.push(t.elapsed());
            assert_ne!(r.is_error, Some(true));
        }
        mcp.push(times);
        client.cancel().await.expect("client stops");
    }
    // REST write -> 2026-07-28 listener notification.
    let client = connect(&gw, true).await;
    let uri = "workspace://bench/n.txt";
    let mut sub = client
        .listen(
            SubscriptionFilter::builder()
                .resource_subscription(uri)
                .build(),
        )
        .await
        .expect("listen");
    let mut delays = Vec::with_capacity(calls / 2);
    for i in 0..calls / 2 {
        let t = Instant::now();
        let (status, _) = gw
            .tool(
                "file_write",
                json!({"task_id": "bench", "path": "n.txt", "content": format!("{i}")}),
            )
            .await;
        assert_eq!(status, 200);
        loop {
            match tokio::time::timeout(Duration::from_secs(10), sub.next()).await {
                Ok(Ok(Some(ServerNotification::ResourceUpdatedNotification(_)))) => break,
                Ok(Ok(Some(_))) => continue,
                other => panic!("no notification: {other:?}"),
            }
        }
        delays.push(t.elapsed());
    }
    let _ = sub.cancel().await;
    let _ = client.cancel().await;
    let mut mcp = mcp.into_iter();
    [
        summary(rest),
        summary(mcp.next().expect("session run")),
        summary(mcp.next().expect("stateless run")),
        summary(delays),
    ]
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str, default: usize| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let runs = flag("--runs", 3);
    let calls = flag("--calls", 500);
    let names = [
        "REST file_write",
        "MCP 2025-11-25 file_write",
        "MCP 2026-07-28 file_write",
        "REST write sent -> 2026-07-28 listener notified",
    ];
    let mut all = Vec::new();
    for r in 0..runs {
        let res = run(calls).await;
        println!("run {}:", r + 1);
        for (name, (p50, p99)) in names.iter().zip(res) {
            println!("  {name}: p50 {p50:.2} ms, p99 {p99:.2} ms");
        }
        all.push(res);
    }
    println!("median of {runs} runs ({calls} calls each):");
    for (k, name) in names.iter().enumerate() {
        let mut p50: Vec<f64> = all.iter().map(|r| r[k].0).collect();
        let mut p99: Vec<f64> = all.iter().map(|r| r[k].1).collect();
        p50.sort_by(f64::total_cmp);
        p99.sort_by(f64::total_cmp);
        println!(
            "  {name}: p50 {:.2} ms, p99 {:.2} ms",
            p50[p50.len() / 2],
            p99[p99.len() / 2]
        );
    }
}
