//! `mcp-loadtest`: drives a running MCP Gateway over its REST tools, measures it, and audits
//! afterwards that nothing it acknowledged was lost.
//!
//! * `stats.rs` — latency histograms and outcome counters shared by the workers.
//! * `client.rs` — the HTTP client (`Gateway`): one call per tool, timed, with the `Ledger` of
//!   acknowledged writes, leases and steps.
//! * `scenarios.rs` — `waves`, `steady`, `contention`, `watchers`, `tool`.
//! * `metrics.rs` — scraping `GET /metrics` (sync lag, outbox, Redis memory).
//! * `audit.rs` — the end-of-run audit (writes readable, steps in Postgres once, fences).
//! * here — the configuration, the run (a live progress line on a terminal), the report and the
//!   verdict on the seed's rollback triggers.

pub mod audit;
pub mod client;
pub mod metrics;
pub mod scenarios;
pub mod stats;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use clap::Parser;
use serde::Serialize;

pub use client::{Gateway, Ledger};
pub use scenarios::Op;

/// The load a run generates (`--scenario`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    /// The seed's: waves of tasks, each worked by a coder and a QA agent.
    Waves,
    /// `--agents` agents over `--tasks` tasks at `--rate` calls/s each for `--duration`.
    Steady,
    /// `--agents` agents on `--files` files: claim, write, release.
    Contention,
    /// `--watchers` SSE subscribers while `--agents` agents log steps.
    Watchers,
    /// One tool (`--op`) as fast as `--connections` workers go.
    Tool,
}

/// Load generator of the MCP Gateway.
#[derive(Parser, Clone, Debug, Serialize)]
#[command(name = "mcp-loadtest", version)]
pub struct Config {
    /// Gateway base URL.
    #[arg(long, env = "MCP_GATEWAY_URL", default_value = "http://127.0.0.1:8001")]
    pub base: String,
    /// Scenario to run.
    #[arg(long, value_enum, default_value = "waves")]
    pub scenario: Scenario,
    /// Tool of the `tool` scenario.
    #[arg(long, value_enum, default_value = "file-read")]
    pub op: Op,
    /// Agents (steady, contention, watchers' writers).
    #[arg(long, default_value_t = 16)]
    pub agents: usize,
    /// Tasks (per wave for `waves`).
    #[arg(long, default_value_t = 4)]
    pub tasks: usize,
    /// Waves (`waves`).
    #[arg(long, default_value_t = 3)]
    pub waves: usize,
    /// Steps each agent logs per task (`waves`).
    #[arg(long, default_value_t = 5)]
    pub steps: u64,
    /// Calls per second per agent (steady, watchers' writers).
    #[arg(long, default_value_t = 1.0)]
    pub rate: f64,
    /// Seconds of load (steady, contention, watchers, tool).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// `steady`: every agent makes the same kind of call in the same second (all read for
    /// 5 s, then log steps for 3, then write, then claim: bursts of 1,000 writes in one
    /// second with 1,000 agents). Without it each agent's ten-call cycle starts at its own
    /// offset, so that every second carries the whole mix.
    #[arg(long)]
    pub phased: bool,
    /// File size in bytes.
    #[arg(long, default_value_t = 4096)]
    pub payload: usize,
    /// Step size in bytes (approximately).
    #[arg(long, default_value_t = 256)]
    pub step_bytes: usize,
    /// Concurrent requests at most (and closed-loop workers of `tool`).
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Shared files (`contention`).
    #[arg(long, default_value_t = 4)]
    pub files: usize,
    /// SSE subscribers (`watchers`), opened at most `--connections` at a time.
    #[arg(long, default_value_t = 100)]
    pub watchers: usize,
    /// How many of the `--watchers` watch through the WebSocket door (`GET /ws`, one
    /// socket and one subscription each) instead of SSE (`watchers`).
    #[arg(long, default_value_t = 0)]
    pub ws_watchers: usize,
    /// Seconds every watcher stays connected and idle before the gateway's memory is sampled
    /// and the writers start (`watchers`).
    #[arg(long, default_value_t = 0.0)]
    pub idle: f64,
    /// Bearer token sent with every request (then bodies carry no `agent_id`).
    #[arg(long, env = "MCP_GATEWAY_TOKEN", hide_env_values = true)]
    #[serde(skip)]
    pub token: Option<String>,
    /// Write the JSON report here.
    #[arg(long)]
    pub report: Option<std::path::PathBuf>,
    /// Count steps in this Postgres database (`step_logs`) instead of through the gateway.
    #[arg(long, env = "MCP_LOADTEST_DATABASE_URL", hide_env_values = true)]
    #[serde(skip)]
    pub database_url: Option<String>,
    /// Seconds the audit waits for the push loop to persist the steps.
    #[arg(long, default_value_t = 20.0)]
    pub audit_wait: f64,
    /// Skip the audit.
    #[arg(long)]
    pub no_audit: bool,
    /// The gateway's process id, to report its resident memory (same machine).
    #[arg(long)]
    pub gateway_pid: Option<u32>,
    /// Prefix of the task ids (default: random), so runs never share tasks.
    #[arg(long, default_value_t = uuid::Uuid::new_v4().simple().to_string()[..8].to_string())]
    pub run_id: String,
    /// No progress line (there is none anyway when stderr is not a terminal).
    #[arg(long)]
    pub quiet: bool,
}

/// The latencies of one tool (or of all), in the report.
#[derive(Debug, Serialize)]
pub struct ToolStats {
    /// Calls answered.
    pub count: u64,
    /// Calls answered per second of the run.
    pub rps: f64,
    /// Median latency, ms (the upper edge of its histogram bucket, as the others).
    pub p50_ms: f64,
    /// 95th percentile latency, ms.
    pub p95_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// Largest latency, ms.
    pub max_ms: f64,
}

/// One of the seed's rollback triggers, checked against the run.
#[derive(Debug, Serialize)]
pub struct Trigger {
    /// What it checks, e.g. `p95 > 500 ms`.
    pub name: &'static str,
    /// The limit, in the unit of `value`.
    pub threshold: f64,
    /// What the run measured; `None` when it could not be measured (then it does not trip).
    pub value: Option<f64>,
    /// `value` is past `threshold`.
    pub tripped: bool,
}

/// The outcome of a run: the JSON report (`--report`) and what [`render`] prints.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The run's flags (without the token and the database URL).
    pub config: Config,
    /// Seconds of load (the configured duration for `steady` and `tool`, whose set-up is not
    /// counted).
    pub elapsed_s: f64,
    /// Calls answered, all outcomes.
    pub requests: u64,
    /// `requests` per second of `elapsed_s`.
    pub throughput_rps: f64,
    /// Latencies by tool.
    pub tools: BTreeMap<&'static str, ToolStats>,
    /// Latencies of every tool together.
    pub all: ToolStats,
    /// Failed calls by error code (`http_<status>` without one, `transport` without an answer).
    pub errors: BTreeMap<String, u64>,
    /// Failed calls over answered calls, 0-1.
    pub error_rate: f64,
    /// Expected 409 `locked` answers (contention), not counted as errors.
    pub lock_conflicts: u64,
    /// The gateway's metrics before the load.
    pub metrics_before: metrics::Snapshot,
    /// The gateway's metrics after the load.
    pub metrics_after: metrics::Snapshot,
    /// Highest `mcp_sync_lag_seconds` seen in the per-second scrapes during the run.
    pub sync_lag_max_seconds: Option<f64>,
    /// Highest `mcp_redis_memory_ratio` seen in the scrapes during and after the run.
    pub redis_memory_ratio_max: Option<f64>,
    /// The gateway's resident memory at the end of the load, MiB (with `--gateway-pid`).
    pub gateway_rss_mb: Option<f64>,
    /// CPU seconds used during the load (set-up included) by this generator and, with
    /// `--gateway-pid`, by the gateway: which side the two shared cores went to.
    pub cpu_seconds_generator: Option<f64>,
    /// The gateway's CPU seconds over the same time (with `--gateway-pid`).
    pub cpu_seconds_gateway: Option<f64>,
    /// What the watchers received (`watchers` scenario).
    pub watchers: Option<scenarios::WatchReport>,
    /// The seed's rollback triggers.
    pub triggers: Vec<Trigger>,
    /// `ok`, or `rollback` when a trigger tripped.
    pub verdict: &'static str,
    /// The audit's verdict; `None` with `--no-audit`.
    pub audit: Option<audit::AuditResult>,
}

impl Report {
    /// The run passed: audit clean (or skipped) and, for watchers, nothing lost.
    pub fn audit_ok(&self) -> bool {
        self.audit.as_ref().is_none_or(|a| a.ok)
    }
}

fn tool_stats(h: &stats::Histogram, secs: f64) -> ToolStats {
    ToolStats {
        count: h.count(),
        rps: h.count() as f64 / secs,
        p50_ms: h.quantile_ms(0.50),
        p95_ms: h.quantile_ms(0.95),
        p99_ms: h.quantile_ms(0.99),
        max_ms: h.max_ms(),
    }
}

/// Runs the scenario, the audit, and builds the report (also returned: the ledger).
pub async fn run(cfg: Config) -> anyhow::Result<(Report, Ledger)> {
    let gw = Gateway::new(&cfg.base, cfg.token.as_deref(), cfg.connections)?;
    match gw.get("/health").await {
        Ok(a) if a.ok() => {}
        Ok(a) => anyhow::bail!("{}/health answered {} {}", cfg.base, a.status, a.body),
        Err(e) => anyhow::bail!("{}/health: {e}", cfg.base),
    }
    let before = metrics::scrape(&gw).await;
    let metrics_before = metrics::Snapshot::of(&before);

    // Progress: a live line (indicatif) on a terminal, refreshed every second, nothing in a
    // file or a pipe; and a scrape a second for the lag and memory seen during the run.
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let progress = {
        let gw = gw.clone();
        let bar = {
            use std::io::IsTerminal;
            (!cfg.quiet && std::io::stderr().is_terminal()).then(|| {
                let bar = indicatif::ProgressBar::new_spinner();
                bar.set_style(
                    indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
                );
                bar.enable_steady_tick(Duration::from_millis(200));
                bar
            })
        };
        tokio::spawn(async move {
            let mut lag_max: Option<f64> = None;
            let mut mem_max: Option<f64> = None;
            let mut last = 0u64;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop_rx.changed() => break,
                }
                let snap = metrics::Snapshot::of(&metrics::scrape(&gw).await);
                lag_max = max_opt(lag_max, snap.max_lag());
                mem_max = max_opt(mem_max, snap.redis_memory_ratio);
                let (calls, errors, p99) = gw.stats.progress();
                if let Some(bar) = &bar {
                    bar.set_message(format!(
                        "{:>8} req/s  total {:>9}  errors {:>5}  p99 {:>7.2} ms  sync lag {}  outbox {}",
                        calls.saturating_sub(last),
                        calls,
                        errors,
                        p99,
                        snap.max_lag().map_or("-".into(), |v| format!("{v:.2} s")),
                        snap.outbox_length.map_or("-".into(), |v| format!("{v}")),
                    ));
                }
                last = calls;
            }
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            (lag_max, mem_max)
        })
    };

    let t0 = Instant::now();
    let cpu0 = (
        scenarios::cpu_seconds(None),
        cfg.gateway_pid
            .and_then(|p| scenarios::cpu_seconds(Some(p))),
    );
    let mut watch = None;
    match cfg.scenario {
        Scenario::Waves => scenarios::waves(&gw, &cfg).await?,
        Scenario::Steady => scenarios::steady(&gw, &cfg).await?,
        Scenario::Contention => scenarios::contention(&gw, &cfg).await?,
        Scenario::Watchers => watch = Some(scenarios::watchers(&gw, &cfg).await?),
        Scenario::Tool => scenarios::tool(&gw, &cfg).await?,
    }
    // Set-up time of steady/tool is excluded: their stats were reset when the load began, so
    // use the configured duration for them.
    let elapsed = match cfg.scenario {
        Scenario::Steady | Scenario::Tool => cfg.duration.min(t0.elapsed().as_secs_f64()),
        _ => t0.elapsed().as_secs_f64(),
    };
    let gateway_rss_mb = cfg.gateway_pid.and_then(scenarios::rss_mb);
    let cpu_seconds_generator = scenarios::cpu_seconds(None).zip(cpu0.0).map(|(b, a)| b - a);
    let cpu_seconds_gateway = cfg
        .gateway_pid
        .and_then(|p| scenarios::cpu_seconds(Some(p)))
        .zip(cpu0.1)
        .map(|(b, a)| b - a);
    let _ = stop_tx.send(true);
    let (lag_max, mem_max) = progress.await.unwrap_or((None, None));
    let tally = gw.stats.take();
    let after = metrics::scrape(&gw).await;
    let metrics_after = metrics::Snapshot::of(&after);
    let ledger = gw.ledger.lock().expect("ledger").clone();

    let audit = if cfg.no_audit {
        None
    } else {
        let opts = audit::AuditOptions {
            database_url: cfg.database_url.clone(),
            wait: Duration::from_secs_f64(cfg.audit_wait),
        };
        let mut a = audit::audit(&gw, &ledger, &opts).await;
        if let Some(w) = &watch {
            if w.connected < w.watchers {
                a.failures.push(format!(
                    "watchers: {} of {} connected",
                    w.connected, w.watchers
                ));
                a.failure_count += 1;
            }
            if w.deliveries_missing > 0 || w.deliveries_duplicated > 0 {
                a.failures.push(format!(
                    "watchers: {} deliveries missing, {} duplicated",
                    w.deliveries_missing, w.deliveries_duplicated
                ));
                a.failure_count += 1;
            }
            a.ok = a.failure_count == 0;
        }
        Some(a)
    };

    let all = tally.all();
    let errors = tally.error_count();
    let error_rate = if tally.calls == 0 {
        0.0
    } else {
        errors as f64 / tally.calls as f64
    };
    let lag_max = max_opt(
        lag_max,
        max_opt(metrics_before.max_lag(), metrics_after.max_lag()),
    );
    let mem_max = max_opt(mem_max, metrics_after.redis_memory_ratio);
    let p95 = all.quantile_ms(0.95);
    let triggers = vec![
        Trigger {
            name: "error rate > 5 %",
            threshold: 0.05,
            value: Some(error_rate),
            tripped: error_rate > 0.05,
        },
        Trigger {
            name: "p95 > 500 ms",
            threshold: 500.0,
            value: Some(p95),
            tripped: p95 > 500.0,
        },
        Trigger {
            name: "Redis memory > 80 %",
            threshold: 0.8,
            value: mem_max,
            tripped: mem_max.is_some_and(|m| m > 0.8),
        },
        Trigger {
            name: "sync lag > 10 s",
            threshold: 10.0,
            value: lag_max,
            tripped: lag_max.is_some_and(|l| l > 10.0),
        },
    ];
    let verdict = if triggers.iter().any(|t| t.tripped) {
        "rollback"
    } else {
        "ok"
    };
    let report = Report {
        elapsed_s: elapsed,
        requests: tally.calls,
        throughput_rps: tally.calls as f64 / elapsed.max(1e-9),
        tools: tally
            .tools
            .iter()
            .map(|(k, h)| (*k, tool_stats(h, elapsed.max(1e-9))))
            .collect(),
        all: tool_stats(&all, elapsed.max(1e-9)),
        errors: tally.errors.clone(),
        error_rate,
        lock_conflicts: tally.lock_conflicts,
        metrics_before,
        metrics_after,
        sync_lag_max_seconds: lag_max,
        redis_memory_ratio_max: mem_max,
        gateway_rss_mb,
        cpu_seconds_generator,
        cpu_seconds_gateway,
        watchers: watch,
        triggers,
        verdict,
        audit,
        config: cfg,
    };
    Ok((report, ledger))
}

fn max_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// A measured value for people: `n/a` when it was not measured, else the number with `decimals`
/// decimals and its unit.
fn shown(v: Option<f64>, decimals: usize, unit: &str) -> String {
    match v {
        None => "n/a".to_owned(),
        Some(v) => format!("{v:.decimals$}{unit}"),
    }
}

/// The end-of-run table.
pub fn render(r: &Report) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\nscenario {:?}: {} requests in {:.1} s = {:.0} req/s; errors {} ({:.3} %); lock conflicts {}",
        r.config.scenario,
        r.requests,
        r.elapsed_s,
        r.throughput_rps,
        r.errors.values().sum::<u64>(),
        r.error_rate * 100.0,
        r.lock_conflicts
    );
    let _ = writeln!(
        s,
        "{:<20} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8}",
        "tool", "count", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms"
    );
    for (name, t) in r
        .tools
        .iter()
        .map(|(k, v)| (*k, v))
        .chain([("ALL", &r.all)])
    {
        let _ = writeln!(
            s,
            "{:<20} {:>9} {:>9.0} {:>8.2} {:>8.2} {:>8.2} {:>8.1}",
            name, t.count, t.rps, t.p50_ms, t.p95_ms, t.p99_ms, t.max_ms
        );
    }
    for (code, n) in &r.errors {
        let _ = writeln!(s, "error {code}: {n}");
    }
    let _ = writeln!(
        s,
        "sync lag max {}; outbox before/after {}/{}; Redis memory ratio max {}; gateway RSS {}",
        shown(r.sync_lag_max_seconds, 2, " s"),
        shown(r.metrics_before.outbox_length, 0, ""),
        shown(r.metrics_after.outbox_length, 0, ""),
        shown(r.redis_memory_ratio_max.map(|v| v * 100.0), 1, " %"),
        shown(r.gateway_rss_mb, 1, " MiB")
    );
    let _ = writeln!(
        s,
        "CPU during the load: generator {}, gateway {}",
        shown(r.cpu_seconds_generator, 2, " s"),
        shown(r.cpu_seconds_gateway, 2, " s")
    );
    if let Some(w) = &r.watchers {
        let _ = writeln!(
            s,
            "watchers {}/{} connected in {:.1} s; deliveries {}/{} (missing {}, duplicated {}); gateway RSS before {}, idle watchers {}, with watchers {}, peak {}",
            w.connected,
            w.watchers,
            w.connect_seconds,
            w.deliveries_received,
            w.deliveries_expected,
            w.deliveries_missing,
            w.deliveries_duplicated,
            shown(w.gateway_rss_mb_before, 1, " MiB"),
            shown(w.gateway_rss_mb_idle, 1, " MiB"),
            shown(w.gateway_rss_mb_with_watchers, 1, " MiB"),
            shown(w.gateway_hwm_mb, 1, " MiB")
        );
    }
    for t in &r.triggers {
        let _ = writeln!(
            s,
            "trigger {:<22} value {:>12} -> {}",
            t.name,
            t.value.map_or("n/a".into(), |v| format!("{v:.4}")),
            if t.tripped { "TRIPPED" } else { "ok" }
        );
    }
    let _ = writeln!(s, "verdict: {}", r.verdict);
    match &r.audit {
        None => {
            let _ = writeln!(s, "audit: skipped");
        }
        Some(a) => {
            let _ = writeln!(
                s,
                "audit: {} ({} writes on {} paths, {} steps via {}, {} leases)",
                if a.ok { "clean" } else { "FAILED" },
                a.writes_checked,
                a.paths_checked,
                a.steps_checked,
                a.steps_via,
                a.leases_checked
            );
            for f in &a.failures {
                let _ = writeln!(s, "  {f}");
            }
        }
    }
    s
}
