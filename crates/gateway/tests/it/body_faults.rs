//! Client faults in the request body are 4xx, never 503 (issue #14, item 9): a declared
//! `Content-Length` over the body limit is refused before anything is read (413
//! `too_large`); a body that stops arriving — shorter than declared, or a chunked body cut
//! off — is 408 `request_timeout`; a malformed chunked body is 400. The requests are written
//! by hand on a raw TCP socket, since an HTTP client would not send such bytes.

use mcp_testkit::TestGateway;
use serde_json::Value;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Turns a hang into a failure.
const HANG: Duration = Duration::from_secs(20);

/// Writes `head` and `body` on a fresh connection, keeps it open, and reads one response:
/// (status, JSON body, time to the response).
async fn raw(gw: &TestGateway, head: &str, body: &[u8]) -> (u16, Value, Duration) {
    let mut s = TcpStream::connect(gw.addr).await.expect("connect");
    let started = Instant::now();
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let read = tokio::time::timeout(HANG, async {
        loop {
            if let Some(end) = find(&buf, b"\r\n\r\n") {
                let headers = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len = headers
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok());
                if let Some(len) = len
                    && buf.len() >= end + 4 + len
                {
                    return;
                }
            }
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no response within {HANG:?}");
    let elapsed = started.elapsed();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    (status, body, elapsed)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn head(extra: &str) -> String {
    format!(
        "POST /tools/file_write HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Content-Type: application/json\r\n{extra}\r\n"
    )
}

#[tokio::test]
async fn body_faults_are_client_errors_not_outages() {
    let gw = TestGateway::spawn_with(|c| c.request_timeout_secs = 2).await;

    // A declared length over the limit: refused at once, before any byte of the body.
    let (status, body, took) = raw(&gw, &head("Content-Length: 99999999999\r\n"), b"").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (413, Some("too_large")),
        "{body}"
    );
    assert!(took < Duration::from_secs(1), "413 took {took:?}");

    // A malformed chunked body: 400.
    let (status, body, _) = raw(
        &gw,
        &head("Transfer-Encoding: chunked\r\n"),
        b"zz\r\n{\"task_id\": 1}\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(status, 400, "malformed chunked body: {body}");

    // A body shorter than declared, and a chunked body cut off: the client's fault (408),
    // not a backend outage (503), both at once.
    let (short_head, chunked_head) = (
        head("Content-Length: 100\r\n"),
        head("Transfer-Encoding: chunked\r\n"),
    );
    let short = raw(&gw, &short_head, br#"{"task_id": "t1", "#);
    let cut = raw(&gw, &chunked_head, b"a\r\n{\"task_id\"\r\n");
    let (short, cut) = tokio::join!(short, cut);
    for (what, (status, body, _)) in [("short Content-Length", short), ("cut chunked", cut)] {
        assert_eq!(
            (status, body["code"].as_str()),
            (408, Some("request_timeout")),
            "{what}: {body}"
        );
        assert!(
            body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{body}"
        );
    }
}

#[tokio::test]
async fn a_stalled_body_is_408_after_the_body_read_timeout() {
    // The request timeout (10 s) is far; the body-read timeout (1 s) answers first.
    let gw = TestGateway::spawn_with(|c| c.body_read_timeout_secs = 1).await;
    let (status, body, took) = raw(
        &gw,
        &head("Content-Length: 100\r\n"),
        br#"{"task_id": "t1", "#,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (408, Some("request_timeout")),
        "{body}"
    );
    assert!(took < Duration::from_secs(8), "408 after {took:?}");
    // A complete body on the same kind of connection is served.
    let ok = br#"{"task_id": "t1", "path": "a.txt", "content": "x"}"#;
    let (status, body, _) = raw(&gw, &head(&format!("Content-Length: {}\r\n", ok.len())), ok).await;
    assert_eq!(status, 200, "{body}");
}

/// The large-body gauge on `/metrics`, in bytes.
async fn large_bytes_in_flight(gw: &TestGateway) -> Option<u64> {
    let text = reqwest::get(format!("{}/metrics", gw.base))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("mcp_large_body_bytes_in_flight "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

/// A `file_write` body of exactly `len` bytes.
fn write_body(path: &str, len: usize) -> Vec<u8> {
    let head = format!(r#"{{"task_id":"big","path":"{path}","content":""#);
    let tail = r#""}"#;
    let mut body = head.into_bytes();
    body.resize(len - tail.len(), b'x');
    body.extend_from_slice(tail.as_bytes());
    body
}

/// Large bodies share a budget (issue #14, item 10): with room for one 2 MiB body, a
/// second one, sent while the first holds its room, waits `LARGE_BODY_WAIT_MS` and gets 503
/// `unavailable` with `Retry-After`; a small request is never held; once the first is
/// answered, a large body is admitted again. The first body stalls half-way (a slow
/// client), so the room stays taken for as long as the test needs: no timing decides.
#[tokio::test]
async fn large_bodies_past_the_budget_wait_then_get_503() {
    const BIG: usize = 2 * 1024 * 1024;
    let gw = TestGateway::spawn_with(|c| {
        c.large_body_bytes = 1024 * 1024;
        c.large_body_budget_bytes = BIG;
        c.large_body_wait_ms = 200;
        c.body_read_timeout_secs = 60;
        c.request_timeout_secs = 60;
    })
    .await;
    let first_body = write_body("first.txt", BIG);
    let mut first = TcpStream::connect(gw.addr).await.unwrap();
    first
        .write_all(head(&format!("Content-Length: {BIG}\r\n")).as_bytes())
        .await
        .unwrap();
    first.write_all(&first_body[..BIG / 2]).await.unwrap();
    // The first body holds the whole budget.
    let admitted = tokio::time::timeout(HANG, async {
        while large_bytes_in_flight(&gw).await != Some(BIG as u64) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(admitted.is_ok(), "the first large body was not admitted");

    // A second large body: no room → 503 after the wait, nothing read or written. (Only its
    // start is sent: the gateway reads none of it.)
    let second = write_body("second.txt", BIG);
    let (status, body, _) = raw(
        &gw,
        &head(&format!("Content-Length: {BIG}\r\n")),
        &second[..1024],
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str(), body["retry_after"].as_u64()),
        (503, Some("unavailable"), Some(1)),
        "{body}"
    );
    // A small request does not wait.
    let (status, _) = gw
        .tool(
            "file_write",
            serde_json::json!({"task_id": "big", "path": "small.txt", "content": "s"}),
        )
        .await;
    assert_eq!(status, 200);

    // The first body completes and is answered; its room comes back.
    first.write_all(&first_body[BIG / 2..]).await.unwrap();
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    tokio::time::timeout(HANG, async {
        while find(&answer, b"\"success\":true").is_none() {
            match first.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .expect("the first write is answered");
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let (status, body, _) = raw(&gw, &head(&format!("Content-Length: {BIG}\r\n")), &second).await;
    assert_eq!(status, 200, "{body}");
    let (_, read) = gw
        .tool(
            "file_read",
            serde_json::json!({"task_id": "big", "path": "second.txt"}),
        )
        .await;
    assert_eq!(
        read["size"],
        (BIG - r#"{"task_id":"big","path":"second.txt","content":""}"#.len()) as u64
    );
}
