//! Process plumbing shared by the `mcp-sync` and `mcp-gateway` binaries: waiting for a
//! shutdown signal, starting logging, and the process's metrics recorder (every metric family
//! of the workspace is declared here, in [`METRICS`]).

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Starts logging to stdout (text or JSON lines; `RUST_LOG` filters, default `info`).
/// Text is coloured only when stdout is a terminal and `NO_COLOR` is unset, so files and
/// pipes get plain lines.
pub fn init_tracing(format: &str) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let colour = std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Latency buckets (seconds) of every `*_seconds` histogram: 0.5 ms to 10 s.
const LATENCY_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 7.5, 10.0, 30.0,
];

/// Buckets of batch sizes (the push loop's, group commit's).
const BATCH_BUCKETS: [f64; 10] = [
    1.0, 5.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0,
];

/// The kind of a metric family (its Prometheus `TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// A monotonically increasing count.
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// A distribution in buckets.
    Histogram,
}

/// Every metric family any crate of the workspace records, with its kind and its `HELP`
/// text. [`metrics_handle`] describes them all; a test checks that every `metrics::` macro
/// in the sources names one of them and that `/metrics` passes a promtool-style lint.
pub const METRICS: &[(&str, MetricKind, &str)] = {
    use MetricKind::*;
    &[
        (
            "mcp_http_requests_total",
            Counter,
            "HTTP requests answered, by method, route template and status.",
        ),
        (
            "mcp_http_request_duration_seconds",
            Histogram,
            "Time to answer an HTTP request (streams: until their headers), by method, route template and status.",
        ),
        (
            "mcp_tool_calls_total",
            Counter,
            "MCP tool calls at /mcp, by tool and outcome.",
        ),
        (
            "mcp_auth_refused_total",
            Counter,
            "Requests refused by authentication or authorisation, by reason.",
        ),
        (
            "mcp_oauth_jwks_fetches_total",
            Counter,
            "Fetches of the OAuth issuer's keys (JWKS): the first use, then unknown key ids.",
        ),
        (
            "mcp_rate_limited_total",
            Counter,
            "Requests refused by the per-agent rate limit (429).",
        ),
        (
            "mcp_rebinding_refused_total",
            Counter,
            "Requests refused by the Host/Origin check (DNS rebinding, foreign pages).",
        ),
        (
            "mcp_lock_conflicts_total",
            Counter,
            "Claims and writes refused because another owner holds the lease, by operation.",
        ),
        (
            "mcp_inbox_waiters",
            Gauge,
            "read_messages calls waiting (long polls) in this process.",
        ),
        (
            "mcp_live_watchers",
            Gauge,
            "Registered live watchers (SSE streams, WebSocket subscriptions, MCP resource subscriptions).",
        ),
        (
            "mcp_large_body_bytes_in_flight",
            Gauge,
            "Bytes of the large-body budget (LARGE_BODY_BUDGET_BYTES) held by requests being served.",
        ),
        (
            "mcp_large_bodies_refused_total",
            Counter,
            "Large request bodies answered 503 because the budget had no room within LARGE_BODY_WAIT_MS.",
        ),
        (
            "mcp_live_cutoffs_total",
            Counter,
            "Live streams ended by the gateway (slow consumer, expired token, ...), by reason.",
        ),
        (
            "mcp_hot_rebuilds_total",
            Counter,
            "Times the hot layer was found to have gone back in time (Redis restart or rollback) and was rebuilt.",
        ),
        (
            "mcp_backend_up",
            Gauge,
            "Whether a backend answered the last scrape's probe (1) or not (0), by backend.",
        ),
        (
            "mcp_redis_used_memory_bytes",
            Gauge,
            "Memory used by the hot store (Redis used_memory), bytes.",
        ),
        (
            "mcp_redis_memory_ratio",
            Gauge,
            "Memory used by the hot store over its limit (Redis maxmemory), 0-1.",
        ),
        (
            "mcp_outbox_length",
            Gauge,
            "Entries in the sync outbox (delivered to a pusher or not). Absent in the embedded mode, which has no outbox.",
        ),
        (
            "mcp_outbox_pending",
            Gauge,
            "Outbox entries delivered to a pusher and not yet acknowledged. Absent in the embedded mode, which has no outbox.",
        ),
        (
            "mcp_sync_lag_seconds",
            Gauge,
            "Age of the newest change the sync loop handled when it last ran, by loop (push, pull).",
        ),
        (
            "mcp_sync_last_run_timestamp_seconds",
            Gauge,
            "When the sync loop last completed a run (Unix time), by loop.",
        ),
        (
            "mcp_group_commit_batches_total",
            Counter,
            "Batches of durable changes committed in one transaction (group commit), by backend.",
        ),
        (
            "mcp_group_commit_batch_size",
            Histogram,
            "Changes per group-commit batch, by backend.",
        ),
        (
            "mcp_sync_errors_total",
            Counter,
            "Failed runs of a sync loop, by loop.",
        ),
        (
            "mcp_sync_consumers_removed_total",
            Counter,
            "Dead consumers removed from the outbox group (nothing pending, idle past the claim time).",
        ),
        (
            "mcp_backend_full",
            Gauge,
            "1 while the backend answers but refuses writes for lack of memory (a full Redis), by backend.",
        ),
        (
            "mcp_redis_unconfirmed_writes_total",
            Counter,
            "Outbox writes answered 503 because fewer replicas than REDIS_MIN_REPLICAS confirmed them (WAIT) in time.",
        ),
        (
            "mcp_backend_full_refusals_total",
            Counter,
            "Calls a full backend refused for lack of memory (Redis OOM), by backend.",
        ),
        (
            "mcp_http_connections",
            Gauge,
            "Open client connections (WebSockets included).",
        ),
        (
            "mcp_http_connections_closed_total",
            Counter,
            "Client connections the gateway closed, by reason (header_timeout, idle_timeout, evicted, refused).",
        ),
        (
            "mcp_sync_batch_size",
            Histogram,
            "Outbox entries per push batch.",
        ),
        (
            "mcp_sync_persisted_total",
            Counter,
            "Outbox entries the push loop committed to the durable store.",
        ),
        (
            "mcp_sync_claimed_total",
            Counter,
            "Outbox entries the push loop took over from a pusher that stopped.",
        ),
        (
            "mcp_sync_dead_letters_total",
            Counter,
            "Outbox entries the push loop could not persist, moved to the dead-letter table.",
        ),
        (
            "mcp_sync_pulled_rows_total",
            Counter,
            "Task and agent rows the pull loop read from the durable store.",
        ),
        (
            "mcp_sync_cache_changes_total",
            Counter,
            "Cached task rows the pull loop changed (each with a task_updated event).",
        ),
        (
            "mcp_sync_deletions_total",
            Counter,
            "Task deletions the pull loop propagated to the hot layer.",
        ),
        (
            "mcp_sync_unsettled_rows",
            Gauge,
            "Task and agent rows the last pull read past its cursor because an older transaction was still running (applied, read again until settled).",
        ),
        (
            "mcp_sync_rebuilds_total",
            Counter,
            "Times the pull loop warmed the whole hot cache (start, or after the hot layer lost its data).",
        ),
        (
            "mcp_client_retries_total",
            Counter,
            "Retries of the agent client (in processes that use it), by error code.",
        ),
        (
            "mcp_client_event_cutoffs_total",
            Counter,
            "Event streams of the agent client cut off by the gateway and resumed.",
        ),
    ]
};

/// Gives every family of [`METRICS`] its `HELP` text.
fn describe_metrics() {
    for &(name, kind, help) in METRICS {
        match kind {
            MetricKind::Counter => metrics::describe_counter!(name, help),
            MetricKind::Gauge => metrics::describe_gauge!(name, help),
            MetricKind::Histogram => metrics::describe_histogram!(name, help),
        }
    }
}

/// The process's Prometheus recorder, installed on first use: every `metrics::` macro in
/// any crate of the process records into it, and [`render_metrics`] prints it. Every
/// family is described ([`METRICS`]).
pub fn metrics_handle() -> &'static metrics_exporter_prometheus::PrometheusHandle {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("mcp_sync_batch_size".into()),
                    &BATCH_BUCKETS,
                )
            })
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("mcp_group_commit_batch_size".into()),
                    &BATCH_BUCKETS,
                )
            });
        // Both calls only fail on an empty bucket list, which the constants are not.
        let recorder = builder
            .unwrap_or_else(|_| PrometheusBuilder::new())
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder is installed; /metrics stays empty");
        }
        describe_metrics();
        // Histogram samples wait in the recorder until an upkeep folds them into their
        // buckets; without a scraper they would pile up for ever (8 bytes a request).
        let upkeep = handle.clone();
        std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(std::time::Duration::from_secs(5));
                    upkeep.run_upkeep();
                }
            })
            .ok();
        handle
    })
}

/// The Prometheus text exposition of every metric recorded so far.
pub fn render_metrics() -> String {
    let handle = metrics_handle();
    handle.run_upkeep();
    handle.render()
}

/// Serves `GET /metrics` (and nothing else) on `listener` until `cancel`: the `mcp-sync`
/// binary's own endpoint (the gateway serves the same text on its router).
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    cancel: tokio_util::sync::CancellationToken,
) {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(|| async {
            (
                [("content-type", "text/plain; version=0.0.4")],
                render_metrics(),
            )
        }),
    );
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(cancel.cancelled_owned())
        .await
    {
        tracing::warn!(error = %e, "metrics endpoint stopped");
    }
}
