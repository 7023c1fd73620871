//! Issue #15 acceptance: the official MCP clients against a real gateway — the TypeScript SDK
//! v1 (`@modelcontextprotocol/sdk`), v2 (`@modelcontextprotocol/client`) and the Python SDK
//! (`mcp`), each driven by a small script kept beside this file (`tests/clients/`):
//!
//! * a `locked` refusal reaches each SDK as a tool result with its code and holder (no SDK
//!   throws a schema error on it), in both protocol generations where the SDK speaks both;
//! * an OAuth client configured with a real issuer on loopback ([`TestIssuer`]) follows the
//!   401 to the Protected Resource Metadata and the issuer, obtains a token (client
//!   credentials) and calls a tool as the agent the token names;
//! * a 2025-11-25 subscriber (`GET /mcp` stream, `resources/subscribe`) whose stream is cut
//!   reconnects by itself with `Last-Event-ID` and hears every change made while it was
//!   away, when it comes back to the same instance and to another one.
//!
//! `scripts/test.sh` installs the SDKs under the target directory (`scripts/lib/
//! mcp-clients.sh`) and exports where they are: `MCP_TEST_NODE`, `MCP_TEST_NODE_PATH`,
//! `MCP_TEST_PYTHON`. Without them (a bare `cargo nextest run`) each test says loudly that it
//! did not run; with `MCP_TEST_CLIENTS_REQUIRED=1` (test.sh sets it) a missing client fails.

use mcp_testkit::TestGateway;
use mcp_testkit::oauth::{CLIENT_SECRET, TestIssuer};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;

/// How long one client script may take (installs are not part of it; node starts in ~0.3 s).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a subscriber may take to hear of a change.
const EVENT_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy, PartialEq)]
enum Sdk {
    TsV1,
    TsV2,
    Python,
}

impl Sdk {
    const ALL: [Sdk; 3] = [Sdk::TsV1, Sdk::TsV2, Sdk::Python];

    fn name(self) -> &'static str {
        match self {
            Sdk::TsV1 => "TypeScript SDK v1",
            Sdk::TsV2 => "TypeScript SDK v2",
            Sdk::Python => "Python SDK",
        }
    }
}

fn scripts() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

/// The command that runs `sdk`'s client script on `case`, or why it cannot run.
fn command(
    sdk: Sdk,
    case: &str,
    url: &str,
    args: &Value,
) -> Result<tokio::process::Command, String> {
    let var = |name: &str| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("{name} is not set"))
    };
    let mut cmd = match sdk {
        Sdk::TsV1 | Sdk::TsV2 => {
            let mut cmd = tokio::process::Command::new(var("MCP_TEST_NODE")?);
            cmd.env("NODE_PATH", var("MCP_TEST_NODE_PATH")?)
                .arg(scripts().join("ts_client.cjs"))
                .arg(if sdk == Sdk::TsV1 { "v1" } else { "v2" });
            cmd
        }
        Sdk::Python => {
            let mut cmd = tokio::process::Command::new(var("MCP_TEST_PYTHON")?);
            cmd.arg(scripts().join("py_client.py"));
            cmd
        }
    };
    cmd.arg(case)
        .arg(url)
        .arg(args.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    Ok(cmd)
}

/// Whether the official clients are installed; when they are not, says so loudly and — when
/// `MCP_TEST_CLIENTS_REQUIRED=1` — fails.
fn clients_installed(test: &str) -> bool {
    let missing: Vec<&str> = ["MCP_TEST_NODE", "MCP_TEST_NODE_PATH", "MCP_TEST_PYTHON"]
        .into_iter()
        .filter(|v| std::env::var(v).map_or(true, |s| s.is_empty()))
        .collect();
    if missing.is_empty() {
        return true;
    }
    let message = format!(
        "{test}: the official MCP clients are not installed ({} unset): run `bash scripts/test.sh`, \
         which installs them under the target directory and exports where they are",
        missing.join(", ")
    );
    if std::env::var("MCP_TEST_CLIENTS_REQUIRED").as_deref() == Ok("1") {
        panic!(
            "{test}: the official MCP clients are required here but {} unset: scripts/test.sh \
             could not install them (its output says what is missing)",
            missing.join(", ")
        );
    }
    eprintln!("\n*** NOT RUN *** {message}\n");
    false
}

/// Runs a script to its end: the JSON lines it printed.
async fn run(sdk: Sdk, case: &str, url: &str, args: Value) -> Vec<Value> {
    let child = command(sdk, case, url, &args)
        .unwrap_or_else(|e| panic!("{}: {e}", sdk.name()))
        .spawn()
        .unwrap_or_else(|e| panic!("{}: cannot start the client: {e}", sdk.name()));
    let output = tokio::time::timeout(SCRIPT_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{} {case}: the client did not finish in time", sdk.name()))
        .expect("client output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        output.status.success(),
        "{} {case} failed ({}):\nstdout: {stdout}\nstderr: {}",
        sdk.name(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    lines
}

/// The `result` a `call`/`oauth` script printed; fails with what it printed otherwise (an SDK
/// that threw, e.g. on a schema check, prints `error`).
fn result_of(sdk: Sdk, what: &str, lines: &[Value]) -> Value {
    lines
        .iter()
        .find_map(|l| l.get("result").cloned())
        .unwrap_or_else(|| {
            panic!(
                "{} {what}: no tool result; the client printed {lines:?}",
                sdk.name()
            )
        })
}

/// The JSON error body of an `isError` tool result (its text content).
fn refusal(sdk: Sdk, result: &Value) -> Value {
    assert_eq!(result["isError"], true, "{}: {result}", sdk.name());
    assert!(
        result.get("structuredContent").is_none(),
        "{}: a refusal carries no structured content: {result}",
        sdk.name()
    );
    let text = result["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("{}: no text content: {result}", sdk.name()));
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{}: not JSON ({e}): {text}", sdk.name()))
}

async fn create_task(gw: &TestGateway, token: Option<&str>, id: &str) {
    let a = gw
        .call(
            reqwest::Method::POST,
            "/admin/tasks",
            token,
            Some(&json!({"id": id, "title": "official clients"})),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
}

#[tokio::test]
async fn a_locked_refusal_reaches_every_official_client_with_its_code_and_holder() {
    if !clients_installed("locked refusal") {
        return;
    }
    let gw = TestGateway::spawn().await;
    create_task(&gw, None, "t1").await;
    let (status, body) = gw
        .tool(
            "claim_file",
            json!({"task_id": "t1", "path": "src/a.py", "agent_id": "qa"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let url = format!("{}/mcp", gw.base);
    let cases = [
        (Sdk::TsV1, "2025-11-25"),
        (Sdk::TsV2, "2025-11-25"),
        (Sdk::TsV2, "2026-07-28"),
        (Sdk::Python, "2025-11-25"),
        (Sdk::Python, "2026-07-28"),
    ];
    let runs = cases.iter().map(|(sdk, protocol)| {
        run(
            *sdk,
            "call",
            &url,
            json!({"protocol": protocol, "tool": "file_write", "arguments":
                {"task_id": "t1", "path": "src/a.py", "content": "y", "agent_id": "coder"}}),
        )
    });
    let outputs = futures::future::join_all(runs).await;
    for ((sdk, protocol), lines) in cases.iter().zip(outputs) {
        let connected = lines.iter().find(|l| l["event"] == "connected");
        assert_eq!(
            connected.map(|l| l["protocol"].clone()),
            Some(json!(protocol)),
            "{} negotiates {protocol}: {lines:?}",
            sdk.name()
        );
        let result = result_of(*sdk, &format!("locked refusal ({protocol})"), &lines);
        let body = refusal(*sdk, &result);
        assert_eq!(body["code"], "locked", "{} {protocol}: {body}", sdk.name());
        assert_eq!(body["holder"], "qa", "{} {protocol}: {body}", sdk.name());
        assert!(
            body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{} {protocol}: {body}",
            sdk.name()
        );
    }
}

#[tokio::test]
async fn an_oauth_client_finds_the_issuer_obtains_a_token_and_calls_a_tool() {
    if !clients_installed("OAuth") {
        return;
    }
    let issuer = TestIssuer::start("unset").await;
    let issuer_url = issuer.url().to_owned();
    let gw = TestGateway::spawn_with(move |c| {
        c.oauth_issuer = Some(issuer_url);
        c.oauth_scopes_supported = vec!["mcp:tools".into()];
    })
    .await;
    // The gateway's public URL is its own address (testkit), so the resource is its `/mcp`.
    let resource = format!("{}/mcp", gw.base);
    issuer.set_audience(&resource);
    let admin = issuer.sign(
        "rsa-1",
        &issuer.claims(&resource, "lead", json!({"role": "admin"})),
    );
    create_task(&gw, Some(&admin), "t1").await;

    let cases = [
        (Sdk::TsV1, "ts-v1-bot"),
        (Sdk::TsV2, "ts-v2-bot"),
        (Sdk::Python, "py-bot"),
    ];
    let runs = cases.iter().map(|(sdk, client)| {
        run(
            *sdk,
            "oauth",
            &resource,
            json!({"client_id": client, "client_secret": CLIENT_SECRET,
                   "issuer": issuer.url(), "tool": "file_write",
                   "arguments": {"task_id": "t1", "path": format!("{client}.txt"), "content": "x"}}),
        )
    });
    let outputs = futures::future::join_all(runs).await;
    for ((sdk, client), lines) in cases.iter().zip(outputs) {
        let result = result_of(*sdk, "OAuth call", &lines);
        assert_ne!(result["isError"], true, "{}: {result}", sdk.name());
        assert_eq!(
            result["structuredContent"]["version"],
            1,
            "{}: {result}",
            sdk.name()
        );
        // The write is the agent the issuer's token named: the client id.
        let (status, history) = gw
            .tool_as(
                &admin,
                "file_history",
                json!({"task_id": "t1", "path": format!("{client}.txt")}),
            )
            .await;
        assert_eq!(status, 200, "{history}");
        assert_eq!(
            history["revisions"][0]["agent_id"],
            *client,
            "{}: {history}",
            sdk.name()
        );
    }
    // The keys were fetched for the tokens, once (then cached).
    assert_eq!(issuer.jwks_fetches(), 1);
}

/// A TCP proxy in front of the gateway instances (a load balancer): [`Proxy::cut`] drops every
/// connection and holds new ones (a network failure), [`Proxy::hold`] only holds new ones
/// (while an instance shuts down), [`Proxy::release`] lets them through to the backend then
/// named. It keeps the request head of each held connection.
struct Proxy {
    url: String,
    inner: Arc<ProxyInner>,
}

struct ProxyInner {
    backend: Mutex<SocketAddr>,
    open: tokio::sync::watch::Sender<bool>,
    /// Cancelled by a cut: ends every connection made before it.
    generation: Mutex<CancellationToken>,
    held: AtomicUsize,
    held_heads: Mutex<Vec<String>>,
}

impl Proxy {
    async fn start(backend: SocketAddr) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/mcp", listener.local_addr().expect("addr"));
        let inner = Arc::new(ProxyInner {
            backend: Mutex::new(backend),
            open: tokio::sync::watch::channel(true).0,
            generation: Mutex::new(CancellationToken::new()),
            held: AtomicUsize::new(0),
            held_heads: Mutex::default(),
        });
        let proxy = inner.clone();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                tokio::spawn(forward(proxy.clone(), inbound));
            }
        });
        Proxy { url, inner }
    }

    /// Holds new connections (those open go on).
    fn hold(&self) {
        self.inner.open.send_replace(false);
    }

    /// Drops every connection (a network failure) and holds new ones.
    fn cut(&self) {
        self.hold();
        let old = std::mem::take(&mut *self.inner.generation.lock().unwrap());
        old.cancel();
    }

    /// Waits until every subscriber's reconnection is held.
    async fn until_held(&self, subscribers: &[Subscriber]) {
        let n = subscribers.len();
        let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
        while self.inner.held.load(Ordering::SeqCst) < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {} of {n} clients reconnected:\n{}",
                self.inner.held.load(Ordering::SeqCst),
                subscribers
                    .iter()
                    .map(Subscriber::transcript)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Lets held and new connections through, to `backend`; the request heads of those held.
    async fn release(&self, backend: SocketAddr) -> Vec<String> {
        *self.inner.backend.lock().unwrap() = backend;
        let held = self.inner.held.swap(0, Ordering::SeqCst);
        self.inner.open.send_replace(true);
        // Each held connection records its request head once it has read it.
        let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
        loop {
            let heads = self.inner.held_heads.lock().unwrap().clone();
            if heads.len() >= held {
                self.inner.held_heads.lock().unwrap().clear();
                return heads;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "held requests did not arrive"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn forward(proxy: Arc<ProxyInner>, mut inbound: tokio::net::TcpStream) {
    let mut open = proxy.open.subscribe();
    let held = !*open.borrow();
    if held {
        proxy.held.fetch_add(1, Ordering::SeqCst);
        if open.wait_for(|o| *o).await.is_err() {
            return;
        }
    }
    let generation = proxy.generation.lock().unwrap().clone();
    let backend = *proxy.backend.lock().unwrap();
    let Ok(mut outbound) = tokio::net::TcpStream::connect(backend).await else {
        return;
    };
    let mut head = vec![0u8; 16 * 1024];
    let n = match inbound.read(&mut head).await {
        Ok(0) | Err(_) => return,
        Ok(n) => n,
    };
    if held {
        let text = String::from_utf8_lossy(&head[..n]);
        let end = text.find("\r\n\r\n").unwrap_or(text.len());
        proxy
            .held_heads
            .lock()
            .unwrap()
            .push(text[..end].to_owned());
    }
    if outbound.write_all(&head[..n]).await.is_err() {
        return;
    }
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
        _ = generation.cancelled() => {}
    }
}

/// A running subscriber script; its stdout and stderr are read in the background.
struct Subscriber {
    sdk: Sdk,
    child: tokio::process::Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<Value>,
    /// Everything it printed, for failure messages.
    log: Arc<Mutex<Vec<String>>>,
}

impl Subscriber {
    async fn start(sdk: Sdk, url: &str, uri: &str) -> Subscriber {
        let mut child = command(sdk, "subscribe", url, &json!({"uri": uri}))
            .unwrap_or_else(|e| panic!("{}: {e}", sdk.name()))
            .spawn()
            .unwrap_or_else(|e| panic!("{}: cannot start the client: {e}", sdk.name()));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        let stdout = child.stdout.take().expect("stdout");
        let out_log = log.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                out_log.lock().unwrap().push(line.clone());
                if let Ok(value) = serde_json::from_str::<Value>(&line) {
                    let _ = tx.send(value);
                }
            }
        });
        let stderr = child.stderr.take().expect("stderr");
        let err_log = log.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                err_log.lock().unwrap().push(format!("stderr: {line}"));
            }
        });
        let mut s = Subscriber {
            sdk,
            child,
            lines,
            log,
        };
        s.next_where(|l| l["event"] == "ready").await;
        s
    }

    /// What it printed so far.
    fn transcript(&self) -> String {
        format!(
            "{}:\n  {}",
            self.sdk.name(),
            self.log.lock().unwrap().join("\n  ")
        )
    }

    /// The next line that `pred` accepts (within [`EVENT_TIMEOUT`]).
    async fn next_where(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(value)) if value.get("fatal").is_some() => {
                    panic!("{}", self.transcript())
                }
                Ok(Some(value)) if pred(&value) => return value,
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => {
                    panic!("the expected line did not come; {}", self.transcript())
                }
            }
        }
    }

    async fn updated(&mut self, uri: &str) {
        self.next_where(|l| l["event"] == "updated" && l["uri"] == uri)
            .await;
    }

    async fn stop(mut self) {
        drop(self.child.stdin.take());
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

async fn write(gw: &TestGateway, content: &str) {
    let (status, body) = gw
        .tool(
            "file_write",
            json!({"task_id": "t1", "path": "watched.py", "content": content}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_subscriber_that_reconnects_hears_every_change_made_while_it_was_away() {
    if !clients_installed("resumed subscription") {
        return;
    }
    let mut a = TestGateway::spawn().await;
    let b = a.another_instance().await;
    create_task(&a, None, "t1").await;
    let uri = "workspace://t1/watched.py";
    let proxy = Proxy::start(a.addr).await;
    let mut subscribers = Vec::new();
    for sdk in Sdk::ALL {
        subscribers.push(Subscriber::start(sdk, &proxy.url, uri).await);
    }
    // Live: each hears of a change (and so holds the id of a recent event).
    write(&a, "live").await;
    for s in &mut subscribers {
        s.updated(uri).await;
    }

    // Away, twice. First the network fails and the clients come back to the same instance;
    // then the instance shuts down (ending their streams) and they come back to the other one.
    for round in ["network failure", "instance restart"] {
        let back_to = if round == "network failure" {
            proxy.cut();
            &a
        } else {
            proxy.hold();
            a.stop().await;
            &b
        };
        proxy.until_held(&subscribers).await;
        write(&b, &format!("{round}: away 1")).await;
        write(&b, &format!("{round}: away 2")).await;
        let heads = proxy.release(back_to.addr).await;
        let resumed = heads
            .iter()
            .filter(|h| {
                let h = h.to_ascii_lowercase();
                h.starts_with("get /mcp") && h.contains("\r\nlast-event-id:")
            })
            .count();
        assert!(
            resumed >= subscribers.len(),
            "{round}: every client resumes its stream with Last-Event-ID; requests: {heads:#?}"
        );
        for s in &mut subscribers {
            s.updated(uri).await;
            s.updated(uri).await;
        }
        // And live again.
        write(back_to, &format!("{round}: live")).await;
        for s in &mut subscribers {
            s.updated(uri).await;
        }
    }
    for s in subscribers {
        s.stop().await;
    }
}
