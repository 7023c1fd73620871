//! Process plumbing shared by the `mcp-sync` and `mcp-gateway` binaries: waiting for a
//! shutdown signal, starting logging, and the process's metrics recorder.

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

/// Buckets of the push loop's batch sizes.
const BATCH_BUCKETS: [f64; 10] = [
    1.0, 5.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0,
];

/// The process's Prometheus recorder, installed on first use: every `metrics::` macro in
/// any crate of the process records into it, and [`render_metrics`] prints it.
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
            });
        // Both calls only fail on an empty bucket list, which the constants are not.
        let recorder = builder
            .unwrap_or_else(|_| PrometheusBuilder::new())
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder is installed; /metrics stays empty");
        }
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
