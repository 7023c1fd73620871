//! Measures what the agent client costs per call, against a real gateway (spawned in this
//! process over the test Postgres and Redis, like the tests): sequential `file_read`s through
//! one client (pooled keep-alive connections) versus a fresh client per call (a new TCP
//! connection each time), and concurrent reads through one client. Floor: the same request
//! sent with a bare pooled `reqwest::Client` (no typed layer, no retry loop).
//!
//! `cargo run --release -p mcp-agent-client --example client_bench -- --runs 3 --calls 500`

use mcp_agent_client::{ClientConfig, GatewayClient};
use mcp_api::requests::FileReadRequest;
use mcp_testkit::TestGateway;
use std::time::{Duration, Instant};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn req() -> FileReadRequest {
    FileReadRequest {
        task_id: "bench".into(),
        path: "src/file.txt".into(),
        agent_id: None,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Per-call latency medians (µs) of one run: (bare floor, pooled client, fresh client per
/// call), and the throughput (calls/s) of `concurrency` tasks sharing one client.
async fn run(gw: &TestGateway, calls: usize, concurrency: usize) -> (f64, f64, f64, f64) {
    let config = ClientConfig::new(gw.base.clone()).with_agent("bench");
    let pooled = GatewayClient::new(config.clone()).unwrap();
    let bare = reqwest::Client::new();
    let url = format!("{}/tools/file_read", gw.base);
    let body = serde_json::to_vec(&req()).unwrap();

    let mut floor = Vec::with_capacity(calls);
    let mut with_pool = Vec::with_capacity(calls);
    let mut fresh = Vec::with_capacity(calls);
    for i in 0..calls {
        // Rotate the order, so that no kind always follows the fresh client's connection
        // teardown.
        for k in 0..3 {
            match (i + k) % 3 {
                0 => {
                    let t = Instant::now();
                    let r = bare
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await
                        .unwrap();
                    assert!(r.status().is_success());
                    r.bytes().await.unwrap();
                    floor.push(t.elapsed().as_secs_f64() * 1e6);
                }
                1 => {
                    let t = Instant::now();
                    pooled.file_read(req()).await.unwrap();
                    with_pool.push(t.elapsed().as_secs_f64() * 1e6);
                }
                _ => {
                    let t = Instant::now();
                    GatewayClient::new(config.clone())
                        .unwrap()
                        .file_read(req())
                        .await
                        .unwrap();
                    fresh.push(t.elapsed().as_secs_f64() * 1e6);
                }
            }
        }
    }

    let started = Instant::now();
    let per_task = calls / concurrency.max(1);
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let c = pooled.clone();
            tokio::spawn(async move {
                for _ in 0..per_task {
                    c.file_read(req()).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let throughput = (per_task * concurrency) as f64 / started.elapsed().as_secs_f64();
    (median(floor), median(with_pool), median(fresh), throughput)
}

#[tokio::main]
async fn main() {
    let runs = arg("--runs", 3);
    let calls = arg("--calls", 500);
    let concurrency = arg("--concurrency", 8);
    let gw = TestGateway::spawn().await;
    let setup = GatewayClient::new(ClientConfig::new(gw.base.clone())).unwrap();
    setup
        .file_write(mcp_api::requests::FileWriteRequest {
            task_id: "bench".into(),
            path: "src/file.txt".into(),
            content: "x".repeat(1024),
            expected_version: None,
            fence: None,
            agent_id: None,
        })
        .await
        .unwrap();
    // Warm-up: connections, caches, the hot copy.
    run(&gw, 50, concurrency).await;

    let mut results = Vec::new();
    for i in 0..runs {
        let r = run(&gw, calls, concurrency).await;
        println!(
            "run {}: floor {:.0} µs, pooled client {:.0} µs, fresh client {:.0} µs, {} tasks {:.0} calls/s",
            i + 1,
            r.0,
            r.1,
            r.2,
            concurrency,
            r.3
        );
        results.push(r);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "median of {runs} runs ({calls} sequential file_read of 1 KiB each): floor {:.0} µs, pooled client {:.0} µs, fresh client per call {:.0} µs; {} concurrent tasks on one client: {:.0} calls/s",
        median(results.iter().map(|r| r.0).collect()),
        median(results.iter().map(|r| r.1).collect()),
        median(results.iter().map(|r| r.2).collect()),
        concurrency,
        median(results.iter().map(|r| r.3).collect()),
    );
}
