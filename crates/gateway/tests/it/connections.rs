//! Connection exhaustion (issue #14, item 7): sockets that never finish their headers, or sit
//! idle, are closed after the header-read and idle timeouts; at the connection cap a new
//! connection takes the place of an idle one, so `/health` still answers; when every
//! connection is busy the next is refused at once (503); live streams outlive the idle
//! timeout. Over raw TCP, against a real gateway on a port.

use mcp_testkit::TestGateway;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A bound against hanging, far above the 1 s timeouts the tests configure.
const PATIENCE: Duration = Duration::from_secs(15);

async fn gateway(cap: usize) -> TestGateway {
    TestGateway::spawn_with(|c| {
        c.max_connections = cap;
        c.header_read_timeout_secs = 1;
        c.idle_timeout_secs = 1;
        c.live_keepalive_secs = 1;
    })
    .await
}

/// Opens a connection and sends the start of a request head that never ends.
async fn half_head(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .await
        .unwrap();
    s
}

/// Reads until the peer closes; everything read. Panics if it stays open past `PATIENCE`.
async fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => panic!(
                "connection still open after {PATIENCE:?}; read so far: {:?}",
                String::from_utf8_lossy(&all)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => return all,
            Ok(Ok(n)) => all.extend_from_slice(&buf[..n]),
        }
    }
}

/// Sends a whole request and reads the response head (until the blank line).
async fn request_head(addr: SocketAddr, path: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(PATIENCE, s.read(&mut b))
            .await
            .expect("a response head")
            .unwrap();
        assert!(
            n > 0,
            "closed before the head: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(b[0]);
    }
    (s, String::from_utf8_lossy(&head).into_owned())
}

#[tokio::test]
async fn half_sent_heads_are_closed_and_health_answers_while_the_cap_is_full() {
    let gw = gateway(20).await;
    // Twice the cap of connections that never finish their head (a slowloris crowd), and
    // one that sends nothing at all.
    let mut silent = TcpStream::connect(gw.addr).await.unwrap();
    let mut slow = Vec::new();
    for _ in 0..40 {
        slow.push(half_head(gw.addr).await);
    }
    // The cap is full of them: a new client still gets its answer (it takes the place of
    // the oldest connection that has no request in flight).
    for _ in 0..5 {
        let (status, body) = gw.get("/health").await;
        assert_eq!((status, body["status"].as_str()), (200, Some("healthy")));
    }
    // Every one of them is closed: the older by the newer ones, the rest by the header-read
    // timeout. None got an answer.
    let started = Instant::now();
    for s in slow.iter_mut() {
        let read = read_to_close(s).await;
        assert!(read.is_empty(), "{:?}", String::from_utf8_lossy(&read));
    }
    assert!(read_to_close(&mut silent).await.is_empty());
    println!(
        "40 half heads and a silent socket closed within {:?}",
        started.elapsed()
    );
    // The gateway serves as before.
    assert_eq!(gw.get("/health").await.0, 200);
    let text = crate::scrape(&gw).await;
    for reason in ["header_timeout", "evicted"] {
        assert!(
            text.contains(&format!(
                "mcp_http_connections_closed_total{{reason=\"{reason}\"}}"
            )),
            "no {reason} closes counted:\n{text}"
        );
    }
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_after_the_idle_timeout() {
    let gw = gateway(20).await;
    let (mut s, head) = request_head(gw.addr, "/health").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // The body, then nothing: the connection is idle until the gateway closes it.
    let rest = read_to_close(&mut s).await;
    assert!(
        String::from_utf8_lossy(&rest).contains("healthy"),
        "{:?}",
        String::from_utf8_lossy(&rest)
    );
}

#[tokio::test]
async fn with_every_connection_busy_a_new_one_is_refused_at_once_and_streams_live_on() {
    let gw = gateway(5).await;
    // Five live streams: busy connections, whatever the idle timeout.
    let mut streams = Vec::new();
    for n in 0..5 {
        let (s, head) = request_head(gw.addr, &format!("/tasks/t{n}/events")).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        streams.push(s);
    }
    // The sixth is refused at once with a 503, and closed.
    let mut extra = TcpStream::connect(gw.addr).await.unwrap();
    let refused = String::from_utf8_lossy(&read_to_close(&mut extra).await).into_owned();
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.contains("Retry-After: 1"), "{refused}");
    assert!(refused.contains("\"code\":\"unavailable\""), "{refused}");
    // Three idle timeouts later the streams are still open, and still get keep-alives.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for s in streams.iter_mut() {
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(PATIENCE, s.read(&mut buf))
            .await
            .expect("a keep-alive")
            .unwrap();
        assert!(n > 0, "a live stream was closed");
    }
    // One stream ends: its place is free again.
    drop(streams.pop());
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Ok(r) = gw.http.get(format!("{}/health", gw.base)).send().await
            && r.status() == 200
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no place freed by the closed stream"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The real binary, started by `sh` after `ulimit` sets its open-file limit (`limits`), over
/// this test's database and key prefix; its log goes to `log`.
struct Binary {
    child: std::process::Child,
    base: String,
    _db: mcp_testkit::TestDb,
    _redis: mcp_testkit::TestRedis,
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn binary(limits: &str, log: &std::path::Path) -> Binary {
    let db = mcp_testkit::TestDb::create().await;
    let redis = mcp_testkit::TestRedis::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let child = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{limits} && exec \"$0\""))
        .arg(env!("CARGO_BIN_EXE_mcp-gateway"))
        .env("DATABASE_URL", &db.url)
        .env("REDIS_URL", &redis.url)
        .env("REDIS_KEY_PREFIX", &redis.prefix)
        .env("MCP_GATEWAY_PORT", port.to_string())
        .env("RUN_SYNC", "false")
        .env("PG_MAX_CONNECTIONS", "8")
        .env("HEADER_READ_TIMEOUT_SECS", "2")
        .env("RUST_LOG", "info")
        .env("LOG_FORMAT", "text")
        .env("NO_COLOR", "1")
        .stdout(std::fs::File::create(log).unwrap())
        .stderr(std::fs::File::create(log.with_extension("err")).unwrap())
        .spawn()
        .expect("the gateway binary starts");
    let b = Binary {
        child,
        base: format!("http://127.0.0.1:{port}"),
        _db: db,
        _redis: redis,
    };
    mcp_testkit::wait_healthy(&b.base, Duration::from_secs(60)).await;
    b
}

fn logged(log: &std::path::Path) -> String {
    let mut all = std::fs::read_to_string(log).unwrap_or_default();
    all.push_str(&std::fs::read_to_string(log.with_extension("err")).unwrap_or_default());
    all
}

/// The reproduction of the issue: 1,100 connections that never finish their head, against
/// the binary under a 1,024 open-file limit. Before, `/health` stopped answering; now the
/// cap keeps the gateway under its limit and `/health` answers throughout.
#[tokio::test]
async fn the_binary_under_a_1024_file_limit_answers_health_past_1100_half_sent_heads() {
    let dir = mcp_testkit::TestDir::new();
    let log = dir.path.join("gateway.log");
    let gw = binary("ulimit -n 1024", &log).await;
    let addr: SocketAddr = gw.base.trim_start_matches("http://").parse().unwrap();
    let mut slow = Vec::new();
    for _ in 0..1100 {
        slow.push(half_head(addr).await);
    }
    let http = reqwest::Client::builder()
        .timeout(PATIENCE)
        .build()
        .unwrap();
    for n in 0..5 {
        let r = match http.get(format!("{}/health", gw.base)).send().await {
            Ok(r) => r,
            Err(e) => panic!(
                "/health (call {n}) does not answer with 1,100 half-sent heads open: {e:?}\n{}",
                logged(&log)
            ),
        };
        assert_eq!(r.status(), 200);
    }
    let text = logged(&log);
    // 1024 less the reserve (64 + PG_MAX_CONNECTIONS 8).
    assert!(
        text.lines()
            .any(|l| l.contains("connection limits") && l.contains("952")),
        "the cap was not fitted to the file limit:\n{text}"
    );
    drop(slow);
}

#[tokio::test]
async fn the_binary_raises_its_soft_file_limit_to_the_hard_one() {
    let dir = mcp_testkit::TestDir::new();
    let log = dir.path.join("gateway.log");
    // A hard limit the test process can set without privileges, and a lower soft one.
    let _gw = binary("ulimit -Sn 300 && ulimit -Hn 4000", &log).await;
    let text = logged(&log);
    assert!(
        text.contains("raised the open-file limit") && text.contains("4000"),
        "{text}"
    );
}
