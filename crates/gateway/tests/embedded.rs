//! The embedded mode end to end (issue 9): the real `mcp-gateway` binary, started the way the
//! README says (`cargo run -p mcp-gateway`, so: no `DATABASE_URL`, no `REDIS_URL`), with an
//! environment that holds nothing else but a data directory and a port. It must say at start
//! that it is a single instance, serve the original contract's routes from its SQLite file and
//! in-process hot layer, stream their events live, and keep the files and the persisted steps
//! across a restart.

use mcp_testkit::{TestDir, free_port};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The gateway binary in embedded mode, on a free port over `data`; its log lines are
/// collected.
struct Embedded {
    child: Child,
    base: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Embedded {
    async fn start(data: &TestDir) -> Embedded {
        Embedded::start_with(data, &[]).await
    }

    /// Started with these extra environment variables.
    async fn start_with(data: &TestDir, env: &[(&str, &str)]) -> Embedded {
        Embedded::start_on(data, free_port(), env).await
    }

    /// Started on `port` with these extra environment variables.
    async fn start_on(data: &TestDir, port: u16, env: &[(&str, &str)]) -> Embedded {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mcp-gateway"))
            // Nothing from the test's environment (which names the test Postgres and Redis).
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("DATA_DIR", &data.path)
            .env("MCP_GATEWAY_PORT", port.to_string())
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the gateway binary starts");
        let log = Arc::new(Mutex::new(Vec::new()));
        for out in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    log.lock().unwrap().push(line);
                }
            });
        }
        let gw = Embedded {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        };
        gw.wait_healthy().await;
        gw
    }

    async fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = reqwest::get(format!("{}/health", self.base)).await
                && r.status() == 200
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the embedded gateway did not become healthy; its log:\n{}",
                self.log.lock().unwrap().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn tool(&self, tool: &str, body: Value) -> Value {
        let r = reqwest::Client::new()
            .post(format!("{}/tools/{tool}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        assert_eq!(status, 200, "{tool}: {body}");
        assert_eq!(body["success"], true, "{tool}: {body}");
        body
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let r = reqwest::get(format!("{}{path}", self.base)).await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    /// SIGTERM, and wait for the graceful exit (which flushes the outbox).
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(status.success(), "exit status {status}");
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("the gateway did not stop on SIGTERM");
    }
}

impl Embedded {
    /// SIGKILL: no graceful anything.
    fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn port(&self) -> u16 {
        self.base.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// A `POST /mcp` of the 2025-11-25 generation in `session`: its status and its body.
    async fn mcp(&self, session: &str, message: Value) -> (u16, String) {
        let r = reqwest::Client::new()
            .post(format!("{}/mcp", self.base))
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", session)
            .header("mcp-protocol-version", "2025-11-25")
            .json(&message)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// The session stream (`GET /mcp`), resuming after `last` when given.
    async fn mcp_stream(&self, session: &str, last: Option<&str>) -> reqwest::Response {
        let mut r = reqwest::Client::new()
            .get(format!("{}/mcp", self.base))
            .header("accept", "text/event-stream")
            .header("mcp-session-id", session)
            .header("mcp-protocol-version", "2025-11-25");
        if let Some(id) = last {
            r = r.header("last-event-id", id);
        }
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), 200);
        r
    }
}

/// Reads `stream` until a `notifications/resources/updated` for `uri`; the ids seen on the
/// way (the last one is that notification's, if it has one).
async fn until_updated(
    stream: &mut reqwest::Response,
    buffer: &mut String,
    uri: &str,
) -> Vec<String> {
    let mut ids = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let mut data = Value::Null;
            for line in block.lines() {
                if let Some(id) = line.strip_prefix("id:") {
                    ids.push(id.trim().to_owned());
                } else if let Some(d) = line.strip_prefix("data:") {
                    data = serde_json::from_str(d.trim()).unwrap_or(Value::Null);
                }
            }
            if data["method"] == "notifications/resources/updated" && data["params"]["uri"] == uri {
                return ids;
            }
        }
        let chunk = tokio::time::timeout_at(deadline.into(), stream.chunk())
            .await
            .unwrap_or_else(|_| panic!("no update of {uri} in time; read: {buffer}"))
            .expect("the stream reads")
            .expect("the stream stays open");
        buffer.push_str(&String::from_utf8_lossy(&chunk));
    }
}

/// Issue #15 item 6: a 2025-11-25 session opened before the embedded gateway is killed (-9)
/// and started again goes on as if nothing happened: its tool calls are served (they got 404
/// "Session not found": sessions lived in the process), and its resource subscription
/// notifies on its stream, resumed with the last event id it saw.
#[tokio::test]
async fn an_mcp_session_outlives_an_embedded_restart() {
    let data = TestDir::new();
    let gw = Embedded::start(&data).await;
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                   "clientInfo": {"name": "t", "version": "0"}}});
    let r = reqwest::Client::new()
        .post(format!("{}/mcp", gw.base))
        .header("accept", "application/json, text/event-stream")
        .json(&init)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let session = r.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let _ = r.text().await;
    let (status, _) = gw
        .mcp(
            &session,
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        )
        .await;
    assert_eq!(status, 202);
    let uri = "workspace://t1/a.py";
    let (status, body) = gw
        .mcp(
            &session,
            json!({"jsonrpc": "2.0", "id": 2, "method": "resources/subscribe",
            "params": {"uri": uri}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"result\""), "{body}");
    let write = |id: i64, content: &str| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
            "name": "file_write",
            "arguments": {"task_id": "t1", "path": "a.py", "content": content}}})
    };
    let mut stream = gw.mcp_stream(&session, None).await;
    let mut buffer = String::new();
    let (status, body) = gw.mcp(&session, write(3, "one")).await;
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains("isError\":true"), "{body}");
    let ids = until_updated(&mut stream, &mut buffer, uri).await;
    let last = ids.last().cloned().expect("the notification has an id");

    let port = gw.port();
    gw.kill9();
    drop(stream);
    let gw = Embedded::start_on(&data, port, &[]).await;

    // The same session calls a tool: served, not 404.
    let (status, body) = gw.mcp(&session, write(4, "two")).await;
    assert_eq!(
        status, 200,
        "a tool call of the session after the restart: {body}"
    );
    assert!(!body.contains("isError\":true"), "{body}");
    // Its stream, resumed from the last id it saw: the change made since is told (a hint to
    // re-read, the events before the restart being gone with the process), then live ones.
    let mut stream = gw.mcp_stream(&session, Some(&last)).await;
    let mut buffer = String::new();
    until_updated(&mut stream, &mut buffer, uri).await;
    let (status, body) = gw.mcp(&session, write(5, "three")).await;
    assert_eq!(status, 200, "{body}");
    let ids = until_updated(&mut stream, &mut buffer, uri).await;
    assert!(
        ids.last().is_some_and(|id| id.starts_with('u')),
        "a live notification with its position: {ids:?}"
    );
    // A session that was deleted stays deleted across a restart.
    let r = reqwest::Client::new()
        .delete(format!("{}/mcp", gw.base))
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    drop(stream);
    gw.stop();
    let gw = Embedded::start_on(&data, port, &[]).await;
    let (status, body) = gw.mcp(&session, write(6, "four")).await;
    assert_eq!(status, 404, "{body}");
    gw.stop();
}

impl Drop for Embedded {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn the_binary_serves_the_original_contract_with_no_backends() {
    let data = TestDir::new();
    let gw = Embedded::start(&data).await;
    {
        let log = gw.log.lock().unwrap().join("\n");
        assert!(log.contains("SINGLE INSTANCE"), "{log}");
    }
    assert!(data.path.join("mcp-gateway.db").exists(), "the SQLite file");
    let (status, health) = gw.get("/health").await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "healthy", "{health}");
    assert_eq!(
        health["backends"],
        json!({"durable": "sqlite", "hot": "in-process"})
    );
    // Issue #21 item 9: the seed's fields stay, and say that neither Redis nor Postgres is used.
    assert_eq!(
        (health["redis"].as_str(), health["postgres"].as_str()),
        (Some("embedded"), Some("embedded")),
        "{health}"
    );

    // The task, and a live watcher of it before anything else happens.
    let created = reqwest::Client::new()
        .post(format!("{}/admin/tasks", gw.base))
        .json(&json!({"id": "t1", "title": "Ship it", "assigned_agent_id": "coder"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);

    let events = reqwest::Client::new()
        .get(format!("{}/tasks/t1/events", gw.base))
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);

    // The original contract's routes.
    let file = |extra: Value| {
        let mut b = json!({"task_id": "t1", "path": "src/app.py", "agent_id": "coder"});
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        b
    };
    let w = gw
        .tool("file_write", file(json!({"content": "print(1)\n"})))
        .await;
    assert_eq!(
        (w["bytes"].as_i64(), w["version"].as_i64()),
        (Some(9), Some(1))
    );
    let r = gw.tool("file_read", file(json!({}))).await;
    assert_eq!(r["content"], "print(1)\n");
    let c = gw
        .tool("claim_file", file(json!({"timeout_sec": 60})))
        .await;
    assert_eq!(c["locked"], true);
    // Another agent is refused while the lease lives: same codes as the deployed mode.
    let refused = reqwest::Client::new()
        .post(format!("{}/tools/file_write", gw.base))
        .json(&json!({"task_id": "t1", "path": "src/app.py", "content": "x", "agent_id": "qa"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 409);
    let refused: Value = refused.json().await.unwrap();
    assert_eq!(refused["code"], "locked", "{refused}");
    let rel = gw.tool("release_file", file(json!({}))).await;
    assert_eq!(rel["locked"], false);
    let edit = gw
        .tool(
            "file_edit",
            file(json!({"old_string": "1", "new_string": "2"})),
        )
        .await;
    assert_eq!(edit["version"], 2);
    for i in 0..3 {
        let l = gw
            .tool(
                "log_step",
                json!({"task_id": "t1", "agent_id": "coder", "step": {"action": "run", "i": i}}),
            )
            .await;
        assert_eq!(l["step"]["task_id"], "t1");
        assert!(l["step"]["timestamp"].is_string());
    }
    let s = gw.tool("subscribe_logs", json!({"task_id": "t1"})).await;
    assert_eq!(s["stream_url"], "/tasks/t1/events");
    for tool in ["join_collaboration", "join_collab"] {
        let j = gw
            .tool(tool, json!({"task_id": "t1", "agent_id": tool}))
            .await;
        assert_eq!(j["agent_id"], tool);
    }
    gw.tool(
        "leave_collaboration",
        json!({"task_id": "t1", "agent_id": "join_collab"}),
    )
    .await;
    let (status, collab) = gw.get("/resources/collaboration/t1").await;
    assert_eq!(status, 200);
    assert_eq!(collab["agents"], json!(["join_collaboration"]));
    let (status, state) = gw.get("/resources/tasks/t1/state").await;
    assert_eq!(status, 200);
    assert_eq!(
        (state["id"].as_str(), state["title"].as_str()),
        (Some("t1"), Some("Ship it"))
    );
    let (status, missing) = gw.get("/resources/tasks/nope/state").await;
    assert_eq!(
        (status, missing["code"].as_str()),
        (404, Some("task_not_found"))
    );

    // The watcher saw the changes live, in order.
    let mut events = events;
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen.contains("agent_left") {
        let chunk = tokio::time::timeout_at(deadline.into(), events.chunk())
            .await
            .expect("live events arrive")
            .unwrap()
            .expect("the stream stays open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    let order: Vec<usize> = [
        "file_written",
        "lock_acquired",
        "lock_released",
        "file_edited",
        "step_logged",
        "agent_joined",
        "agent_left",
    ]
    .iter()
    .map(|kind| {
        seen.find(kind)
            .unwrap_or_else(|| panic!("no {kind} in {seen}"))
    })
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{seen}");

    // A restart keeps the files, the task and (flushed at shutdown) the steps.
    gw.stop();
    let gw = Embedded::start(&data).await;
    let r = gw.tool("file_read", file(json!({}))).await;
    assert_eq!(
        (r["content"].as_str(), r["version"].as_i64()),
        (Some("print(2)\n"), Some(2))
    );
    let (_, state) = gw.get("/resources/tasks/t1/state").await;
    assert_eq!(state["title"], "Ship it");
    let (status, logs) = gw.get("/resources/tasks/t1/logs").await;
    assert_eq!(status, 200, "{logs}");
    let steps = logs["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 3, "{logs}");
    assert_eq!(steps[2]["step"]["i"], 2);
    gw.stop();
}

/// Issue #18 item 2: the embedded hot layer dies with the process, so a step is acknowledged
/// only once it is in the SQLite file. Writers log steps as fast as they can, the gateway is
/// killed with SIGKILL in the middle (twice), and after the restarts every acknowledged step
/// is there exactly once.
#[tokio::test]
async fn every_acknowledged_step_survives_a_kill_9() {
    const WRITERS: usize = 8;
    let data = TestDir::new();
    let mut gw = Embedded::start(&data).await;
    let created = reqwest::Client::new()
        .post(format!("{}/admin/tasks", gw.base))
        .json(&json!({"id": "t1", "title": "steps", "assigned_agent_id": "coder"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let acked: Arc<Mutex<Vec<(usize, usize)>>> = Arc::default();
    let mut next = [0usize; WRITERS];
    for round in 0..2 {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (base, acked, stop) = (gw.base.clone(), acked.clone(), stop.clone());
                let mut n = next[w];
                tokio::spawn(async move {
                    let http = reqwest::Client::new();
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let sent = http
                            .post(format!("{base}/tools/log_step"))
                            .json(&json!({"task_id": "t1", "agent_id": "coder",
                                "step": {"w": w, "n": n}}))
                            .send()
                            .await;
                        // Only a 200 is an acknowledgement; anything else may or may not be kept.
                        if let Ok(r) = sent
                            && r.status() == 200
                        {
                            acked.lock().unwrap().push((w, n));
                        }
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        let before = acked.lock().unwrap().len();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        // SIGKILL: nothing is flushed.
        gw.child.kill().unwrap();
        gw.child.wait().unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for (w, writer) in writers.into_iter().enumerate() {
            next[w] = writer.await.unwrap();
        }
        let during = acked.lock().unwrap().len() - before;
        assert!(
            during > 50,
            "round {round}: only {during} steps acknowledged"
        );
        gw = Embedded::start(&data).await;
    }

    // Every step in the file, paged from the newest back.
    let mut stored: Vec<(usize, usize)> = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let query = before
            .as_deref()
            .map_or(String::new(), |b| format!("&before={b}"));
        let (status, page) = gw
            .get(&format!("/resources/tasks/t1/logs?limit=1000{query}"))
            .await;
        assert_eq!(status, 200, "{page}");
        let steps = page["steps"].as_array().unwrap();
        if steps.is_empty() {
            break;
        }
        for s in steps {
            let key = |k: &str| s["step"][k].as_u64().unwrap() as usize;
            stored.push((key("w"), key("n")));
        }
        before = Some(steps[0]["id"].as_str().unwrap().to_owned());
    }
    let acked = acked.lock().unwrap().clone();
    let mut counts = std::collections::HashMap::new();
    for s in &stored {
        *counts.entry(*s).or_insert(0usize) += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, c)| **c > 1).collect();
    assert!(twice.is_empty(), "steps stored more than once: {twice:?}");
    let lost: Vec<_> = acked.iter().filter(|a| !counts.contains_key(a)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged steps lost over two kill -9, e.g. {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(5)]
    );
    gw.stop();
}

/// Issue #14 item 15: a second embedded gateway on the same data directory would grant the
/// same leases as the first (each process has its own in-process hot layer). It exits at once,
/// non-zero, naming the holder's pid; the first keeps serving.
#[tokio::test]
async fn a_second_gateway_on_the_same_data_directory_exits_naming_the_first() {
    let data = TestDir::new();
    let first = Embedded::start(&data).await;
    first
        .tool(
            "claim_file",
            json!({"task_id": "t", "path": "a", "agent_id": "coder"}),
        )
        .await;
    let started = Instant::now();
    let mut second = Command::new(env!("CARGO_BIN_EXE_mcp-gateway"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATA_DIR", &data.path)
        .env("MCP_GATEWAY_PORT", free_port().to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the gateway binary starts");
    let status = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(10) {
            let _ = second.kill();
            panic!("the second gateway on the same data directory kept running");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let out = second.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!status.success(), "exit status {status}; output:\n{said}");
    let pid = format!("pid {}", first.child.id());
    assert!(
        said.contains(&pid) && said.contains(&data.path.display().to_string()),
        "the message names the data directory and the holder's {pid}:\n{said}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "exited after {:?}",
        started.elapsed()
    );
    // The first keeps serving, and its lease is still its own.
    let (status, health) = first.get("/health").await;
    assert_eq!(status, 200, "{health}");
    let r = reqwest::Client::new()
        .post(format!("{}/tools/claim_file", first.base))
        .json(&json!({"task_id": "t", "path": "a", "agent_id": "qa"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        409,
        "the first gateway still holds coder's lease"
    );
    first.stop();
    // Once the first is gone, the directory is free again.
    let again = Embedded::start(&data).await;
    again.stop();
}

/// Issue #21 item 7: the log of the binary written to a pipe. One access line per request at
/// INFO, with the request id the client sent (there was no access log); no ANSI colour
/// codes (they went into files and pipes); quiet at idle (the pull loop wrote an INFO line
/// every second once a task existed); `ACCESS_LOG=false` turns the access lines off.
#[tokio::test]
async fn the_log_has_access_lines_no_colour_and_is_quiet_at_idle() {
    let data = TestDir::new();
    let gw = Embedded::start(&data).await;
    let lines = || gw.log.lock().unwrap().clone();
    let r = reqwest::Client::new()
        .post(format!("{}/tools/file_write", gw.base))
        .header("x-request-id", "req-21-7-abc")
        .json(&json!({"task_id": "t1", "path": "a.txt", "content": "x", "agent_id": "coder"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-request-id"], "req-21-7-abc");
    let created = reqwest::Client::new()
        .post(format!("{}/admin/tasks", gw.base))
        .json(&json!({"id": "t1", "title": "Ship it"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    assert_eq!(gw.get("/nowhere").await.0, 404);
    let deadline = Instant::now() + Duration::from_secs(10);
    let access = loop {
        let found: Vec<String> = lines()
            .into_iter()
            .filter(|l| l.contains("access") && l.contains("req-21-7-abc"))
            .collect();
        if !found.is_empty() || Instant::now() > deadline {
            break found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        access.len(),
        1,
        "one access line per request: {:#?}",
        lines()
    );
    let line = &access[0];
    for part in [
        " INFO ",
        "method=POST",
        "route=/tools/file_write",
        "status=200",
        "latency_ms=",
        "agent=coder",
    ] {
        assert!(line.contains(part), "{part:?} in {line:?}");
    }
    // The 404 has its line too, with the route it did not match.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        lines()
            .iter()
            .any(|l| l.contains("route=unmatched") && l.contains("status=404")),
        "{:#?}",
        lines()
    );
    assert!(
        lines().iter().all(|l| !l.contains('\x1b')),
        "no ANSI escapes in a pipe: {:#?}",
        lines()
    );
    // Idle: the task's creation is pulled once; then the pull loop says nothing (it runs
    // every second).
    let settle = Instant::now() + Duration::from_secs(10);
    while !lines()
        .iter()
        .any(|l| l.contains("sync pull") && l.contains("changed=1"))
        && Instant::now() < settle
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = lines().len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle: Vec<String> = lines()[before..]
        .iter()
        .filter(|l| l.contains("sync pull"))
        .cloned()
        .collect();
    assert!(idle.is_empty(), "quiet at idle: {idle:#?}");
    gw.stop();

    let data = TestDir::new();
    let gw = Embedded::start_with(&data, &[("ACCESS_LOG", "false")]).await;
    assert_eq!(gw.get("/health").await.0, 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = gw.log.lock().unwrap().clone();
    assert!(
        log.iter().all(|l| !l.contains("route=")),
        "ACCESS_LOG=false: {log:#?}"
    );
    gw.stop();
}

/// Issue #21 item 12: `mcp-gateway completions SHELL` and `mcp-gateway man`.
#[test]
fn completions_and_man_page() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_mcp-gateway"))
            .args(args)
            .env_clear()
            .output()
            .expect("the binary runs");
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let bash = run(&["completions", "bash"]);
    assert!(
        bash.contains("complete -F") && bash.contains("migrate"),
        "{bash}"
    );
    assert!(run(&["completions", "fish"]).contains("complete -c mcp-gateway"));
    let man = run(&["man"]);
    assert!(man.contains(".TH") && man.contains("migrate"), "{man}");
}
