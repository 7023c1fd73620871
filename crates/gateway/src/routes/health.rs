//! `GET /health`: pings both stores (Redis and Postgres, or the embedded ones) for real; 200 when the gateway can serve
//! (`healthy`, or `degraded` with warnings), 503 `unhealthy` otherwise. And `GET /openapi.json`, the API document.

use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use mcp_api::responses::{Health, HealthBackends};
use std::time::Duration;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/openapi.json", get(openapi))
}

async fn health(State(s): State<AppState>) -> (StatusCode, Json<Health>) {
    let r = s.service.health(Duration::from_secs(2)).await;
    let word = |ok: bool| if ok { "connected" } else { "disconnected" }.to_owned();
    let serving = r.hot_ok && r.durable_ok;
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
            redis: word(r.hot_ok),
            postgres: word(r.durable_ok),
            backends: Some(HealthBackends {
                durable: s.service.durable.backend().into(),
                hot: s.service.hot.backend().into(),
            }),
            warnings: r.warnings,
        }),
    )
}

/// `GET /openapi.json`: the OpenAPI 3.1 document of the REST API (`crate::openapi`).
async fn openapi() -> Json<&'static serde_json::Value> {
    Json(crate::openapi::document())
}
