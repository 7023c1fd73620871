//! The floor of the request path (issue #19): what an HTTP + JSON service over Redis costs
//! at the least. An axum server whose `POST /tools/file_read` and `POST /tools/log_step`
//! each parse the JSON body, make one Redis `GET` of a `--payload`-byte value, and answer it
//! as JSON — the gateway's read without its layers, checks and hot-layer guard. So that
//! `mcp-loadtest --scenario tool --no-audit` (and `wrk`) can drive it exactly as they drive
//! the gateway, it also answers the set-up calls (`GET /health`, `POST /admin/tasks`,
//! `POST /tools/file_write`) with a plain success and nothing else.
//!
//! ```sh
//! cargo build --release -p mcp-loadtest --example floor_server
//! target/release/examples/floor_server --port 18500 --redis-url redis://127.0.0.1:6379 \
//!     --key floor-test:content --payload 4096
//! ```
//! `scripts/load-test.sh --floors` starts it (key under the run's prefix, removed after).

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Parser;
use serde_json::{Value, json};

/// Flags of the floor server.
#[derive(Parser, Debug)]
struct Args {
    /// Port to listen on (127.0.0.1).
    #[arg(long)]
    port: u16,
    /// The Redis to read from.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    /// The key read by every request (set at start to `--payload` bytes).
    #[arg(long)]
    key: String,
    /// Size of the value, in bytes.
    #[arg(long, default_value_t = 4096)]
    payload: usize,
}

#[derive(Clone)]
struct Floor {
    redis: redis::aio::MultiplexedConnection,
    key: std::sync::Arc<str>,
}

/// The floor of a read: parse the body, one `GET`, answer it as JSON.
async fn read(State(f): State<Floor>, Json(body): Json<Value>) -> Json<Value> {
    let mut c = f.redis.clone();
    let content: Option<String> = redis::cmd("GET")
        .arg(&*f.key)
        .query_async(&mut c)
        .await
        .unwrap_or_default();
    Json(json!({
        "success": true,
        "task_id": body.get("task_id"),
        "content": content,
    }))
}

async fn ok() -> Json<Value> {
    Json(json!({"success": true, "version": 1}))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = redis::Client::open(args.redis_url.as_str())?;
    let mut redis = client.get_multiplexed_async_connection().await?;
    let value: String = "0123456789abcdef"
        .chars()
        .cycle()
        .take(args.payload)
        .collect();
    let () = redis::cmd("SET")
        .arg(&args.key)
        .arg(value)
        .query_async(&mut redis)
        .await?;
    let app = Router::new()
        .route(
            "/health",
            get(|| async { Json(json!({"status": "healthy"})) }),
        )
        .route("/admin/tasks", post(ok))
        .route("/tools/file_write", post(ok))
        .route("/tools/file_read", post(read))
        .route("/tools/log_step", post(read))
        .with_state(Floor {
            redis,
            key: args.key.into(),
        });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
