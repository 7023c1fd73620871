//! Measures the sync loops against the real Postgres and Redis, each number beside a floor
//! measured in the same run (this machine is shared and noisy: compare ratios, not seconds).
//!
//! * push throughput: `--steps` logged steps drained from the outbox by one push loop,
//!   against the floor of inserting the same rows into a scratch table with one multi-row
//!   `INSERT … SELECT unnest(…)` per batch (what a perfect pusher would cost);
//! * pull lag: `--changes` task updates committed one at a time, each timed from its commit
//!   to the receipt of its `task_updated` event, with the loop woken by NOTIFY and with the
//!   interval alone, against the floor of a bare Postgres NOTIFY → LISTEN round trip.
//!
//! Every run uses a fresh database and a fresh Redis key prefix and removes both at the end.
//!
//! ```text
//! cargo run --release -p mcp-sync --example sync_bench -- --runs 3
//! ```

use futures::StreamExt;
use mcp_domain::{Actor, AgentId};
use mcp_sync::{PullLoop, PushLoop, SyncSettings};
use mcp_testkit::TestStores;
use serde_json::json;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

struct Args {
    runs: usize,
    steps: usize,
    batch: usize,
    changes: usize,
    gap_ms: u64,
}

fn args() -> Args {
    let mut a = Args {
        runs: 3,
        steps: 50_000,
        batch: 500,
        changes: 200,
        gap_ms: 20,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    for pair in argv.chunks(2) {
        let v = || pair.get(1).and_then(|v| v.parse().ok());
        match pair[0].as_str() {
            "--runs" => a.runs = v().unwrap_or(a.runs),
            "--steps" => a.steps = v().unwrap_or(a.steps),
            "--batch" => a.batch = v().unwrap_or(a.batch),
            "--changes" => a.changes = v().unwrap_or(a.changes),
            "--gap-ms" => a.gap_ms = v().map(|n: usize| n as u64).unwrap_or(a.gap_ms),
            other => {
                panic!("unknown flag {other}; flags: --runs --steps --batch --changes --gap-ms")
            }
        }
    }
    a
}

async fn env() -> TestStores {
    TestStores::with_pool(16).await
}

/// Rows per second of the push loop, and of the raw multi-row insert floor.
async fn push_throughput(a: &Args) -> (f64, f64) {
    let e = env().await;
    let service = e.service();
    let actor = Actor::trusted(AgentId::parse("bench").expect("agent id"));
    // Fill the outbox (not measured), 32 writers at a time.
    futures::stream::iter(0..a.steps)
        .for_each_concurrent(32, |i| {
            let (service, actor) = (&service, &actor);
            async move {
                service
                    .log_step(
                        actor,
                        mcp_api::requests::LogStepRequest {
                            task_id: format!("task-{}", i % 50),
                            step: json!({"action": "edit", "n": i, "observation": "x".repeat(200)}),
                            agent_id: None,
                        },
                    )
                    .await
                    .expect("log_step");
            }
        })
        .await;
    let mut settings = SyncSettings::default().push;
    settings.batch_size = a.batch;
    let (durable, hot) = e.handles();
    let mut push = PushLoop::new(durable, hot, settings);
    let started = Instant::now();
    let mut persisted = 0;
    loop {
        let o = push.try_run_once().await.expect("push");
        persisted += o.persisted;
        if o.read == 0 {
            break;
        }
    }
    let push_rate = persisted as f64 / started.elapsed().as_secs_f64();
    assert_eq!(persisted, a.steps, "every step persisted");

    // Floor: the same number of rows of the same size, one multi-row insert per batch.
    sqlx::query(
        "CREATE TABLE floor_steps (task_id TEXT, stream_id TEXT, step JSONB,
                                   PRIMARY KEY (task_id, stream_id))",
    )
    .execute(e.pg.pool())
    .await
    .expect("scratch table");
    let started = Instant::now();
    for chunk in (0..a.steps).collect::<Vec<_>>().chunks(a.batch) {
        let tasks: Vec<String> = chunk.iter().map(|i| format!("task-{}", i % 50)).collect();
        let ids: Vec<String> = chunk.iter().map(|i| format!("{i}-0")).collect();
        let steps: Vec<serde_json::Value> = chunk
            .iter()
            .map(|i| json!({"action": "edit", "n": i, "observation": "x".repeat(200)}))
            .collect();
        sqlx::query(
            "INSERT INTO floor_steps SELECT * FROM unnest($1::text[], $2::text[], $3::jsonb[])
             ON CONFLICT DO NOTHING",
        )
        .bind(&tasks)
        .bind(&ids)
        .bind(&steps)
        .execute(e.pg.pool())
        .await
        .expect("floor insert");
    }
    let floor_rate = a.steps as f64 / started.elapsed().as_secs_f64();
    (push_rate, floor_rate)
}

/// Commit → `task_updated` receipt latencies (ms) for `changes` single-row updates.
async fn pull_lag(a: &Args, listen: bool) -> Vec<f64> {
    let e = env().await;
    sqlx::query(
        "INSERT INTO tasks (id, title) SELECT 'b' || g, 'x' FROM generate_series(1, 100) g",
    )
    .execute(e.pg.pool())
    .await
    .expect("tasks");
    let mut settings = SyncSettings::default().pull;
    settings.listen = listen;
    let cancel = CancellationToken::new();
    let (durable, hot) = e.handles();
    let running = tokio::spawn(PullLoop::new(durable, hot, settings).run(cancel.clone()));
    // Receipts, by the title the update set.
    let client = redis::Client::open(e.redis.url.as_str()).expect("redis url");
    let mut pubsub = client.get_async_pubsub().await.expect("pubsub");
    pubsub
        .psubscribe(e.hot.keys().channel_pattern())
        .await
        .expect("psubscribe");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    let receiver = tokio::spawn(async move {
        let mut messages = pubsub.into_on_message();
        while let Some(m) = messages.next().await {
            let at = Instant::now();
            let Ok(payload) = m.get_payload::<String>() else {
                continue;
            };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&payload) else {
                continue;
            };
            if let Some(title) = v["data"]["task"]["title"].as_str() {
                let _ = tx.send((title.to_owned(), at));
            }
        }
    });
    // Wait for the warm-up pull.
    let mut c = e.redis.connection().await;
    while !redis::AsyncCommands::exists::<_, bool>(&mut c, e.hot.keys().sync_warm())
        .await
        .expect("exists")
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut committed = HashMap::new();
    for i in 0..a.changes {
        let title = format!("change-{i}");
        sqlx::query("UPDATE tasks SET title = $1, updated_at = clock_timestamp() WHERE id = $2")
            .bind(&title)
            .bind(format!("b{}", i % 100 + 1))
            .execute(e.pg.pool())
            .await
            .expect("update");
        committed.insert(title, Instant::now());
        tokio::time::sleep(Duration::from_millis(a.gap_ms)).await;
    }
    let mut lags = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while lags.len() < a.changes && Instant::now() < deadline {
        if let Ok(Some((title, at))) = tokio::time::timeout(Duration::from_secs(1), rx.recv()).await
            && let Some(t) = committed.get(&title)
        {
            lags.push(at.saturating_duration_since(*t).as_secs_f64() * 1000.0);
        }
    }
    cancel.cancel();
    let _ = running.await;
    receiver.abort();
    assert_eq!(lags.len(), a.changes, "every change reached the cache");
    lags
}

/// NOTIFY → LISTEN receipt latencies (ms): the floor of a notified pull.
async fn notify_floor(a: &Args) -> Vec<f64> {
    let e = env().await;
    let mut listener = sqlx::postgres::PgListener::connect_with(e.pg.pool())
        .await
        .expect("listener");
    listener.listen("bench_floor").await.expect("listen");
    let mut lags = Vec::new();
    for _ in 0..a.changes {
        let sent = Instant::now();
        sqlx::query("SELECT pg_notify('bench_floor', 'x')")
            .execute(e.pg.pool())
            .await
            .expect("notify");
        listener.recv().await.expect("recv");
        lags.push(sent.elapsed().as_secs_f64() * 1000.0);
    }
    lags
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    percentile(&v, 50.0)
}

fn p50_p99(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (percentile(&v, 50.0), percentile(&v, 99.0))
}

#[tokio::main]
async fn main() {
    let a = args();
    let mut push = Vec::new();
    let mut floor = Vec::new();
    let mut ratios = Vec::new();
    let (mut notify_p50, mut notify_p99) = (Vec::new(), Vec::new());
    let (mut poll_p50, mut poll_p99) = (Vec::new(), Vec::new());
    let (mut floor_p50, mut floor_p99) = (Vec::new(), Vec::new());
    for run in 1..=a.runs {
        let (p, f) = push_throughput(&a).await;
        let (n50, n99) = p50_p99(pull_lag(&a, true).await);
        let (i50, i99) = p50_p99(pull_lag(&a, false).await);
        let (f50, f99) = p50_p99(notify_floor(&a).await);
        println!(
            "run {run}: push {p:.0} rows/s (floor {f:.0}, ratio {:.2}); pull lag notified p50 {n50:.1} ms p99 {n99:.1} ms; interval-only p50 {i50:.1} ms p99 {i99:.1} ms; NOTIFY floor p50 {f50:.2} ms p99 {f99:.2} ms",
            p / f
        );
        push.push(p);
        floor.push(f);
        ratios.push(p / f);
        notify_p50.push(n50);
        notify_p99.push(n99);
        poll_p50.push(i50);
        poll_p99.push(i99);
        floor_p50.push(f50);
        floor_p99.push(f99);
    }
    let (p, f, ratio) = (median(push), median(floor), median(ratios));
    println!(
        "\nmedians of {} runs ({} steps, batch {}, {} changes {} ms apart):",
        a.runs, a.steps, a.batch, a.changes, a.gap_ms
    );
    println!("| measure | value | floor (same run) | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| push throughput | {p:.0} rows/s | {f:.0} rows/s (raw multi-row insert) | {ratio:.2} |"
    );
    let (fl50, fl99) = (median(floor_p50), median(floor_p99));
    println!(
        "| pull lag, NOTIFY-woken | p50 {:.1} ms, p99 {:.1} ms | p50 {fl50:.2} ms, p99 {fl99:.2} ms (bare NOTIFY→LISTEN) | — |",
        median(notify_p50),
        median(notify_p99)
    );
    println!(
        "| pull lag, 1 s interval only | p50 {:.1} ms, p99 {:.1} ms | — | — |",
        median(poll_p50),
        median(poll_p99)
    );
}
