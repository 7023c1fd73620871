//! `GET /health`: pings both stores (Redis and Postgres, or the embedded ones) for real; 200 when the gateway can serve
//! (`healthy`, or `degraded` with warnings), 503 `unhealthy` otherwise — also when Redis answers
//! but is full and refuses writes (`"redis": "full"`, the reason among the warnings). And `GET /openapi.json`, the API document.

use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use mcp_api::responses::{Health, HealthBackends};
use std::time::Duration;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/openapi.json", get(openapi))
}

/// The seed's word for a store: `connected`/`disconnected` for the backend the field names
/// (`redis`, `postgres`); `embedded` for the store that stands in for it in this process
/// (the in-process hot store, the SQLite file), `disconnected` when that one fails its ping.
fn word(field: &str, backend: &str, ok: bool) -> String {
    match (ok, backend == field) {
        (false, _) => "disconnected",
        (true, true) => "connected",
        (true, false) => "embedded",
    }
    .to_owned()
}

async fn health(State(s): State<AppState>) -> (StatusCode, Json<Health>) {
    let r = s.service.health(Duration::from_secs(2)).await;
    let (durable, hot) = s.service.backends();
    let serving = r.hot_ok && r.durable_ok && !r.hot_full;
    let status = match (serving, r.warnings.is_empty()) {
        (false, _) => "unhealthy",
        (true, true) => "healthy",
        (true, false) => "degraded",
    };
    let code = if serving {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(Health {
            status: status.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            redis: if r.hot_ok && r.hot_full {
                "full".to_owned()
            } else {
                word("redis", hot, r.hot_ok)
            },
            postgres: word("postgres", durable, r.durable_ok),
            backends: Some(HealthBackends {
                durable: durable.into(),
                hot: hot.into(),
            }),
            warnings: r.warnings,
        }),
    )
}

/// `GET /openapi.json`: the OpenAPI 3.1 document of the REST API (`crate::openapi`).
async fn openapi() -> Json<&'static serde_json::Value> {
    Json(crate::openapi::document())
}
