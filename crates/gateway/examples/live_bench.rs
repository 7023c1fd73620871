//! Live-stream measurement: opens N SSE watchers on one task of a RUNNING gateway, writes
//! events through it (`log_step`), and reports the delivery latency from each write's
//! acknowledgement (and from its sending) to its receipt by every watcher, plus the
//! gateway's resident memory (when given its pid). Stops by itself.
//!
//! ```sh
//! cargo run --release -p mcp-gateway --example live_bench -- \
//!     --base http://127.0.0.1:18401 --watchers 1000 --events 200 --rate 50 --pid <gateway pid>
//! ```
//!
//! See `docs/BENCHMARKS.md` for the set-up and the numbers.

use clap::Parser;
use futures::StreamExt;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
#[command(about = "Measure live SSE delivery latency and gateway memory")]
struct Args {
    /// The gateway's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8001")]
    base: String,
    /// Concurrent SSE watchers.
    #[arg(long, default_value_t = 1000)]
    watchers: usize,
    /// Events written (each is delivered to every watcher).
    #[arg(long, default_value_t = 200)]
    events: usize,
    /// Writes per second.
    #[arg(long, default_value_t = 50)]
    rate: u64,
    /// The gateway's process id, to read its resident memory from /proc.
    #[arg(long)]
    pid: Option<u32>,
    /// A bearer token, when the gateway has authentication on.
    #[arg(long, env = "MCP_TOKEN")]
    token: Option<String>,
    /// Give up waiting after this many seconds (connecting, or receiving).
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
}

/// (VmRSS, VmHWM) of a process, in KiB.
fn memory(pid: Option<u32>) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

fn show_memory(when: &str, pid: Option<u32>) {
    if let Some((rss, hwm)) = memory(pid) {
        println!(
            "gateway memory {when}: rss {:.1} MiB (peak {:.1} MiB)",
            rss as f64 / 1024.0,
            hwm as f64 / 1024.0
        );
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn summary(name: &str, mut v: Vec<f64>) {
    v.sort_by(|a, b| a.total_cmp(b));
    println!(
        "{name}: n={} p50={:.2} ms p90={:.2} ms p99={:.2} ms max={:.2} ms",
        v.len(),
        percentile(&v, 0.50),
        percentile(&v, 0.90),
        percentile(&v, 0.99),
        v.last().copied().unwrap_or(f64::NAN)
    );
}

/// One watcher: opens the stream, says so, then records when each step `n` arrives.
async fn watch(
    http: reqwest::Client,
    url: String,
    token: Option<String>,
    events: usize,
    connected: Arc<AtomicUsize>,
) -> Vec<(usize, Instant)> {
    let mut req = http.get(&url);
    if let Some(t) = &token {
        req = req.bearer_auth(t);
    }
    let resp = match req.send().await {
        Ok(r) if r.status().is_success() => r,
        Ok(r) => {
            eprintln!("watcher refused: {}", r.status());
            return vec![];
        }
        Err(e) => {
            eprintln!("watcher failed: {e}");
            return vec![];
        }
    };
    connected.fetch_add(1, Ordering::SeqCst);
    let mut body = resp.bytes_stream();
    let mut buf = String::new();
    let mut got = Vec::with_capacity(events);
    while got.len() < events {
        let Some(Ok(chunk)) = body.next().await else {
            break;
        };
        let now = Instant::now();
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data: ")) else {
                continue;
            };
            let Ok(v) = serde_json::from_str::<Value>(data) else {
                continue;
            };
            if let Some(n) = v["data"]["step"]["n"].as_u64() {
                got.push((n as usize, now));
            }
        }
    }
    got
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()?;
    let task = format!("bench-live-{}", uuid::Uuid::new_v4().simple());
    let auth = |r: reqwest::RequestBuilder| match &args.token {
        Some(t) => r.bearer_auth(t),
        None => r,
    };
    let created = auth(http.post(format!("{}/admin/tasks", args.base)))
        .json(&json!({"id": task, "title": "live benchmark"}))
        .send()
        .await?;
    anyhow::ensure!(
        created.status().is_success(),
        "creating the task: {}",
        created.status()
    );
    println!(
        "task {task}: {} watchers, {} events at {}/s",
        args.watchers, args.events, args.rate
    );
    show_memory("before", args.pid);

    let connected = Arc::new(AtomicUsize::new(0));
    let url = format!("{}/tasks/{task}/events", args.base);
    let watchers: Vec<_> = (0..args.watchers)
        .map(|_| {
            tokio::spawn(watch(
                http.clone(),
                url.clone(),
                args.token.clone(),
                args.events,
                connected.clone(),
            ))
        })
        .collect();
    let limit = Duration::from_secs(args.timeout_secs);
    let started = Instant::now();
    while connected.load(Ordering::SeqCst) < args.watchers && started.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "{} watchers connected in {:.2} s",
        connected.load(Ordering::SeqCst),
        started.elapsed().as_secs_f64()
    );
    show_memory("with watchers connected", args.pid);

    let mut sent = Vec::with_capacity(args.events);
    let mut acked = Vec::with_capacity(args.events);
    let mut write_ms = Vec::with_capacity(args.events);
    let period = Duration::from_secs_f64(1.0 / args.rate.max(1) as f64);
    let mut tick = tokio::time::interval(period);
    for n in 0..args.events {
        tick.tick().await;
        let t0 = Instant::now();
        let r = auth(http.post(format!("{}/tools/log_step", args.base)))
            .json(&json!({"task_id": task, "step": {"n": n}}))
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "log_step: {}", r.status());
        let t1 = Instant::now();
        sent.push(t0);
        acked.push(t1);
        write_ms.push((t1 - t0).as_secs_f64() * 1e3);
    }

    let mut from_ack = vec![];
    let mut from_send = vec![];
    let mut complete = 0;
    for w in watchers {
        let got = tokio::time::timeout(limit, w)
            .await
            .ok()
            .and_then(Result::ok);
        let got = got.unwrap_or_default();
        if got.len() == args.events {
            complete += 1;
        }
        for (n, at) in got {
            let ms = |from: Instant| {
                if at >= from {
                    (at - from).as_secs_f64() * 1e3
                } else {
                    -((from - at).as_secs_f64() * 1e3)
                }
            };
            from_ack.push(ms(acked[n]));
            from_send.push(ms(sent[n]));
        }
    }
    println!(
        "{complete} of {} watchers received all {} events",
        args.watchers, args.events
    );
    summary("write round trip (send -> ack)", write_ms);
    summary("delivery (ack -> receipt)", from_ack);
    summary("delivery (send -> receipt)", from_send);
    show_memory("after", args.pid);
    Ok(())
}
