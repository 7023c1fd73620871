//! The gateway as the load generator sees it: one pooled HTTP/1 client, a call per tool that
//! times itself into [`Stats`], and the [`Ledger`] of what the gateway acknowledged (the input
//! of the audit).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::stats::{Outcome, Stats};

/// A write (write or edit) the gateway acknowledged.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WriteAck {
    /// The task written to.
    pub task: String,
    /// The file written.
    pub path: String,
    /// The version the gateway answered (-1 if the answer had none).
    pub version: i64,
    /// The content hash the gateway answered, which the audit reads back.
    pub sha256: String,
    /// The fence the write presented (writes made under a lease).
    pub fence: Option<i64>,
}

/// One lease granted to one holder, with the client's monotonic times around its calls.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// The task of the leased file.
    pub task: String,
    /// The leased file.
    pub path: String,
    /// The agent holding the lease.
    pub owner: String,
    /// The fence the grant carried.
    pub fence: i64,
    /// When the claim was sent, µs since the run's start.
    pub claim_sent_us: u64,
    /// When the grant came back, µs since the run's start.
    pub claim_ack_us: u64,
    /// When the release was sent; `None` if the holder never released (the lease expires).
    pub release_sent_us: Option<u64>,
}

/// Everything acknowledged during a run: what the audit checks.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Ledger {
    /// Acknowledged writes and edits, in the order their answers came.
    pub writes: Vec<WriteAck>,
    /// Granted leases, in the order of their grants.
    pub leases: Vec<LeaseRecord>,
    /// Acknowledged steps: task → stream ids.
    pub steps: HashMap<String, Vec<String>>,
}

/// The answer of one call.
pub struct Answer {
    /// The HTTP status code.
    pub status: u16,
    /// The body as JSON, `Null` when it is not JSON.
    pub body: Value,
}

impl Answer {
    /// Whether the status is a 2xx.
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The error body's `code`, if any.
    pub fn code(&self) -> Option<&str> {
        self.body.get("code").and_then(Value::as_str)
    }
}

/// The shared client of a run.
#[derive(Clone)]
pub struct Gateway {
    http: reqwest::Client,
    /// The gateway's base URL, without a trailing `/`.
    pub base: String,
    auth: Option<HeaderValue>,
    /// The latencies and outcomes of the timed calls.
    pub stats: Arc<Stats>,
    /// What the gateway acknowledged, for the audit.
    pub ledger: Arc<Mutex<Ledger>>,
    start: Instant,
    /// Whether 409 `locked` is an expected outcome here (contention) rather than an error.
    pub expect_locked: bool,
    /// Whether bodies name the agent (authentication off); with a token the token names it.
    pub send_agent: bool,
}

impl Gateway {
    /// A client of the gateway at `base`, sending `token` as a bearer token if given, keeping
    /// up to `connections` idle connections; the run's clock starts now.
    pub fn new(base: &str, token: Option<&str>, connections: usize) -> anyhow::Result<Gateway> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(connections.max(1))
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(30))
            .build()?;
        let auth = match token {
            Some(t) => Some(HeaderValue::from_str(&format!("Bearer {t}"))?),
            None => None,
        };
        Ok(Gateway {
            http,
            base: base.trim_end_matches('/').to_string(),
            send_agent: auth.is_none(),
            auth,
            stats: Arc::new(Stats::default()),
            ledger: Arc::new(Mutex::new(Ledger::default())),
            start: Instant::now(),
            expect_locked: false,
        })
    }

    /// µs since the run's start (the clock of the lease records).
    pub fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    /// `GET {path}` with the token (for streams and scrapes, not timed).
    pub fn get_builder(&self, path: &str) -> reqwest::RequestBuilder {
        self.authed(self.http.get(format!("{}{path}", self.base)))
    }

    /// The handshake request of a WebSocket on `GET /ws`, with the token.
    pub fn ws_request(
        &self,
    ) -> Result<tokio_tungstenite::tungstenite::handshake::client::Request, String> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let url = format!("{}/ws", self.base.replacen("http", "ws", 1));
        let mut req = url.into_client_request().map_err(|e| e.to_string())?;
        if let Some(a) = &self.auth {
            req.headers_mut().insert(AUTHORIZATION, a.clone());
        }
        Ok(req)
    }

    /// `POST {path}` with the token (for the audit's reads, not timed).
    pub fn post_builder(&self, path: &str) -> reqwest::RequestBuilder {
        self.authed(self.http.post(format!("{}{path}", self.base)))
    }

    fn authed(&self, b: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.auth {
            Some(a) => b.header(AUTHORIZATION, a.clone()),
            None => b,
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Answer, String> {
        let resp = req.send().await.map_err(|_| "transport".to_string())?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|_| "transport".to_string())?;
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Answer { status, body })
    }

    fn classify(&self, r: &Result<Answer, String>) -> Outcome {
        match r {
            Err(e) => Outcome::Error(e.clone()),
            Ok(a) if a.ok() => Outcome::Ok,
            Ok(a) if a.status == 409 && self.expect_locked && a.code() == Some("locked") => {
                Outcome::Conflict
            }
            Ok(a) => Outcome::Error(
                a.code()
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("http_{}", a.status)),
            ),
        }
    }

    /// `POST /tools/{tool}`, timed from `since` (the intended start, for open-loop scenarios)
    /// or from now.
    pub async fn tool_since(
        &self,
        tool: &'static str,
        mut body: Value,
        agent: &str,
        since: Option<Instant>,
    ) -> Result<Answer, String> {
        if self.send_agent {
            body["agent_id"] = Value::String(agent.to_string());
        }
        let started = since.unwrap_or_else(Instant::now);
        let req = self
            .post_builder(&format!("/tools/{tool}"))
            .header(CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(&body).expect("json"));
        let r = self.send(req).await;
        self.stats
            .record(tool, started.elapsed(), &self.classify(&r));
        r
    }

    /// `POST /tools/{tool}`, timed from now.
    pub async fn tool(
        &self,
        tool: &'static str,
        body: Value,
        agent: &str,
    ) -> Result<Answer, String> {
        self.tool_since(tool, body, agent, None).await
    }

    /// `GET {path}` (not timed).
    pub async fn get(&self, path: &str) -> Result<Answer, String> {
        self.send(self.get_builder(path)).await
    }

    /// `POST /admin/tasks` (set-up, not timed); an existing task is fine.
    pub async fn create_task(&self, id: &str) -> anyhow::Result<()> {
        let req = self
            .post_builder("/admin/tasks")
            .json(&serde_json::json!({"id": id, "title": format!("load test {id}")}));
        match self.send(req).await {
            Ok(a) if a.ok() || a.code() == Some("already_exists") => Ok(()),
            Ok(a) => anyhow::bail!("creating task {id}: {} {}", a.status, a.body),
            Err(e) => anyhow::bail!("creating task {id}: {e}"),
        }
    }

    // ---- The tools, recording their acknowledgements in the ledger. ----

    /// `file_write` (under `fence` if given), timed from `since` or now; an acknowledged write
    /// goes into the ledger.
    pub async fn file_write(
        &self,
        agent: &str,
        task: &str,
        path: &str,
        content: &str,
        fence: Option<i64>,
        since: Option<Instant>,
    ) -> Result<Answer, String> {
        let mut body = serde_json::json!({"task_id": task, "path": path, "content": content});
        if let Some(f) = fence {
            body["fence"] = f.into();
        }
        let r = self.tool_since("file_write", body, agent, since).await;
        self.note_write(&r, task, path, fence);
        r
    }

    /// `file_edit` replacing `old` with `new` (under `fence` if given), timed from now; an
    /// acknowledged edit goes into the ledger.
    pub async fn file_edit(
        &self,
        agent: &str,
        task: &str,
        path: &str,
        old: &str,
        new: &str,
        fence: Option<i64>,
    ) -> Result<Answer, String> {
        let mut body = serde_json::json!({"task_id": task, "path": path,
            "old_string": old, "new_string": new});
        if let Some(f) = fence {
            body["fence"] = f.into();
        }
        let r = self.tool("file_edit", body, agent).await;
        self.note_write(&r, task, path, fence);
        r
    }

    fn note_write(&self, r: &Result<Answer, String>, task: &str, path: &str, fence: Option<i64>) {
        if let Ok(a) = r
            && a.ok()
        {
            let ack = WriteAck {
                task: task.to_string(),
                path: path.to_string(),
                version: a.body["version"].as_i64().unwrap_or(-1),
                sha256: a.body["sha256"].as_str().unwrap_or_default().to_string(),
                fence,
            };
            self.ledger.lock().expect("ledger").writes.push(ack);
        }
    }

    /// `file_read`, timed from `since` or now.
    pub async fn file_read(
        &self,
        agent: &str,
        task: &str,
        path: &str,
        since: Option<Instant>,
    ) -> Result<Answer, String> {
        let body = serde_json::json!({"task_id": task, "path": path});
        self.tool_since("file_read", body, agent, since).await
    }

    /// `log_step`, timed from `since` or now; an acknowledged step's stream id goes into the
    /// ledger.
    pub async fn log_step(
        &self,
        agent: &str,
        task: &str,
        step: Value,
        since: Option<Instant>,
    ) -> Result<Answer, String> {
        let body = serde_json::json!({"task_id": task, "step": step});
        let r = self.tool_since("log_step", body, agent, since).await;
        if let Ok(a) = &r
            && a.ok()
            && let Some(id) = a.body["id"].as_str()
        {
            self.ledger
                .lock()
                .expect("ledger")
                .steps
                .entry(task.to_string())
                .or_default()
                .push(id.to_string());
        }
        r
    }

    /// `claim_file`; on a grant, the fence and the index of its lease record.
    pub async fn claim(
        &self,
        agent: &str,
        task: &str,
        path: &str,
        timeout_sec: i64,
    ) -> Result<Option<(i64, usize)>, String> {
        let sent = self.now_us();
        let body = serde_json::json!({"task_id": task, "path": path, "timeout_sec": timeout_sec});
        let a = self.tool("claim_file", body, agent).await?;
        let ack = self.now_us();
        if !a.ok() {
            return Ok(None);
        }
        let Some(fence) = a.body["fence"].as_i64() else {
            return Err("claim without fence".into());
        };
        let mut l = self.ledger.lock().expect("ledger");
        l.leases.push(LeaseRecord {
            task: task.to_string(),
            path: path.to_string(),
            owner: agent.to_string(),
            fence,
            claim_sent_us: sent,
            claim_ack_us: ack,
            release_sent_us: None,
        });
        Ok(Some((fence, l.leases.len() - 1)))
    }

    /// `release_file` of the lease recorded at index `lease`, noting when it was sent.
    pub async fn release(
        &self,
        agent: &str,
        task: &str,
        path: &str,
        lease: usize,
    ) -> Result<Answer, String> {
        let sent = self.now_us();
        self.ledger.lock().expect("ledger").leases[lease].release_sent_us = Some(sent);
        let body = serde_json::json!({"task_id": task, "path": path});
        self.tool("release_file", body, agent).await
    }
}
