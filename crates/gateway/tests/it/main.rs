//! Integration tests of the gateway over real Postgres and Redis (see `mcp-testkit`): every
//! route and every error code. One test binary, one module per area. Tests that speak only
//! HTTP also run on an embedded gateway (SQLite + in-process), through `in_both_modes!`.

mod audit;
mod body_faults;
mod connections;
mod console;
mod contract;
mod fence_scenario;
mod files;
mod fuzz;
mod history;
mod lease_queue;
mod limits;
mod lists;
mod live;
mod locks;
mod mcp;
mod mcp_jsonrpc;
mod mcp_resume;
mod mcp_sessions;
mod messages;
mod metrics;
mod oauth;
mod openapi;
mod outage;
mod paths_unicode;
mod rebinding;
mod redis_full;
mod rollback;
mod security;
mod security_doors;
mod sentinel;
mod state;
mod stream_expiry;
mod stream_ids;
mod watch_first;

use serde_json::Value;

/// Runs a test that speaks only HTTP once per mode: `deployed` (Postgres + Redis) and
/// `embedded` (SQLite + in-process): `in_both_modes!(test, …)` makes `test::deployed` and
/// `test::embedded`, each calling `test(gateway)`. The same API, semantics and error codes.
#[macro_export]
macro_rules! in_both_modes {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn deployed() {
                    super::$name(mcp_testkit::TestGateway::spawn().await).await;
                }

                #[tokio::test]
                async fn embedded() {
                    super::$name(mcp_testkit::TestGateway::spawn_embedded().await).await;
                }
            }
        )+
    };
}

/// Asserts an error answer: status, `code`, and a non-empty `detail`.
#[track_caller]
pub fn assert_error(got: &(u16, Value), status: u16, code: &str) {
    assert_eq!(got.0, status, "unexpected status; body: {}", got.1);
    assert_eq!(got.1["code"], code, "unexpected code; body: {}", got.1);
    assert!(
        got.1["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "error without detail: {}",
        got.1
    );
}

/// Asserts a 200 answer and returns its body.
#[track_caller]
pub fn ok(got: (u16, Value)) -> Value {
    assert_eq!(got.0, 200, "expected success, got {}", got.1);
    assert_eq!(got.1["success"], true, "{}", got.1);
    got.1
}

/// Every entry of the Redis stream `key`, oldest first.
pub async fn xrange(
    conn: &mut redis::aio::MultiplexedConnection,
    key: &str,
) -> redis::streams::StreamRangeReply {
    redis::cmd("XRANGE")
        .arg(key)
        .arg("-")
        .arg("+")
        .query_async(conn)
        .await
        .unwrap()
}

/// The JSON held in field `field` of every entry of the Redis stream `key` (the event stream
/// keeps envelopes in `e`, the outbox records in `payload`), oldest first.
pub async fn stream_json(
    conn: &mut redis::aio::MultiplexedConnection,
    key: &str,
    field: &str,
) -> Vec<Value> {
    let reply = xrange(conn, key).await;
    let raw = reply.ids.iter().map(|e| e.get::<String>(field).unwrap());
    raw.map(|r| serde_json::from_str(&r).unwrap()).collect()
}

/// `GET /metrics`: the Prometheus text (asserting a 200 in the text format).
pub async fn scrape(gw: &mcp_testkit::TestGateway) -> String {
    scrape_at(&gw.base).await
}

/// [`scrape`] of the gateway at `base`.
pub async fn scrape_at(base: &str) -> String {
    let r = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    r.text().await.unwrap()
}

/// The value of the sample whose name-and-labels part is exactly `series`.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Sends `request` and returns its JSON body (whatever the status).
pub async fn json_body(request: reqwest::RequestBuilder) -> Value {
    request.send().await.unwrap().json().await.unwrap()
}

/// A deployed and an embedded gateway, for a test that runs the same steps on both in turn.
pub async fn both_modes() -> [mcp_testkit::TestGateway; 2] {
    [
        mcp_testkit::TestGateway::spawn().await,
        mcp_testkit::TestGateway::spawn_embedded().await,
    ]
}
