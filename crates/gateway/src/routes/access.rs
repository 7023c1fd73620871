//! The access log: one INFO line per request (target `access`) with its method, matched route
//! template, status, latency in milliseconds, request id and acting agent — written when the
//! response (for a stream: its headers) leaves. `ACCESS_LOG=false` turns it off.
//!
//! The route comes from the route layer ([`RouteTemplate`], set in the response by
//! `metrics::track`; `unmatched` for the JSON 404); the agent from an [`AgentSlot`] that this
//! layer puts in the request and that `extract::Caller` fills once it knows who acts (`-`
//! when nobody was named, e.g. `/health`).

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use std::sync::{Arc, OnceLock};
use std::time::Instant;
use tracing::Instrument;

/// The matched route template of a request, carried out in the response's extensions.
#[derive(Debug, Clone)]
pub(crate) struct RouteTemplate(pub axum::extract::MatchedPath);

/// Where the request's acting agent is written once known (shared with `Caller`).
#[derive(Debug, Clone, Default)]
pub(crate) struct AgentSlot(Arc<OnceLock<String>>);

impl AgentSlot {
    pub(crate) fn set(&self, agent: &str) {
        let _ = self.0.set(agent.to_owned());
    }

    fn get(&self) -> &str {
        self.0.get().map_or("-", String::as_str)
    }
}

/// The middleware; `enabled` is `ACCESS_LOG`. A line the log filter drops (`RUST_LOG`
/// below `info` for `access`) is not prepared either.
///
/// It is also the request's trace: a DEBUG span `request` (method, URI, version) around
/// everything inside it, and an ERROR line `response failed` (status, latency) for every 5xx,
/// whatever `ACCESS_LOG` says — what `tower_http`'s trace layer gave, without wrapping and
/// boxing every response body (issue #19).
pub(crate) async fn log(State(enabled): State<bool>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let span = tracing::debug_span!(
        "request",
        method = %req.method(),
        uri = %req.uri(),
        version = ?req.version(),
    );
    // What the access line needs: the agent's slot, the method, the request id.
    let line = (enabled && tracing::enabled!(target: "access", tracing::Level::INFO)).then(|| {
        let slot = AgentSlot::default();
        req.extensions_mut().insert(slot.clone());
        let request_id = req
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned();
        (slot, req.method().clone(), request_id)
    });
    let response = next.run(req).instrument(span.clone()).await;
    let latency_ms = || started.elapsed().as_secs_f64() * 1000.0;
    if response.status().is_server_error() {
        let _in = span.enter();
        tracing::error!(
            status = response.status().as_u16(),
            latency_ms = format_args!("{:.1}", latency_ms()),
            "response failed"
        );
    }
    if let Some((slot, method, request_id)) = line {
        let route = response
            .extensions()
            .get::<RouteTemplate>()
            .map_or("unmatched", |r| r.0.as_str());
        tracing::info!(
            target: "access",
            method = %method,
            route = %route,
            status = response.status().as_u16(),
            latency_ms = format_args!("{:.1}", latency_ms()),
            request_id = %request_id,
            agent = %slot.get(),
            "request"
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::http::StatusCode;
    use axum::routing::get;
    use std::sync::Mutex;
    use tower::ServiceExt;

    /// What the log filter lets through, as text.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Answers GET `uri` through the middleware (`ACCESS_LOG` = `access`) under the log
    /// filter `filter`; what was logged.
    async fn logged(filter: &str, access: bool, uri: &str) -> String {
        let out = Captured::default();
        let sink = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .finish();
        let _default = tracing::subscriber::set_default(subscriber);
        let app = Router::new()
            .route("/ok", get(|| async { "fine" }))
            .route(
                "/broken",
                get(|| async {
                    tracing::warn!("the cause");
                    StatusCode::SERVICE_UNAVAILABLE
                }),
            )
            .layer(axum::middleware::from_fn_with_state(access, log));
        let request = axum::http::Request::get(uri)
            .body(axum::body::Body::empty())
            .unwrap();
        app.oneshot(request).await.unwrap();
        String::from_utf8(out.0.lock().unwrap().clone()).unwrap()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_5xx_is_logged_at_error_with_the_access_log_on_or_off() {
        for access in [true, false] {
            let log = logged("warn", access, "/broken").await;
            let failed: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("response failed"))
                .collect();
            assert_eq!(failed.len(), 1, "one line (ACCESS_LOG={access}): {log}");
            assert!(
                failed[0].contains("ERROR") && failed[0].contains("status=503"),
                "{log}"
            );
            let log = logged("warn", access, "/ok").await;
            assert!(!log.contains("response failed"), "{log}");
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn what_a_request_logs_is_inside_its_span_at_debug() {
        let log = logged("debug", false, "/broken").await;
        let cause = log.lines().find(|l| l.contains("the cause")).unwrap_or("");
        assert!(
            cause.contains("request{method=GET uri=/broken version=HTTP/1.1}"),
            "{log}"
        );
        // Below DEBUG the span is not there.
        let log = logged("warn", false, "/broken").await;
        assert!(!log.contains("request{"), "{log}");
    }
}
