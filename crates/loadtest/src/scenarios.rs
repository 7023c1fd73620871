//! The scenarios. Each drives the gateway through [`Gateway`] (which times every call and
//! records every acknowledgement) until its work or its duration is done.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::Serialize;
use serde_json::json;
use tokio::sync::Semaphore;

use crate::Config;
use crate::client::Gateway;

/// A file body of `bytes` bytes with a marker that `file_edit` replaces exactly once.
pub fn payload(bytes: usize, tag: &str) -> String {
    let head = format!("# {tag}\nMARKER\n");
    let mut s = head;
    while s.len() < bytes {
        s.push_str("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n");
    }
    s.truncate(bytes.max(20));
    s
}

fn step(bytes: usize, agent: &str, n: u64) -> serde_json::Value {
    json!({"action": "work", "agent": agent, "n": n, "pad": "x".repeat(bytes.saturating_sub(60))})
}

/// The id of the run's `i`th task.
fn task_id(cfg: &Config, i: usize) -> String {
    format!("lt-{}-t{i}", cfg.run_id)
}

/// The seed's scenario: waves of tasks, each worked by a coder and a QA agent.
pub async fn waves(gw: &Gateway, cfg: &Config) -> anyhow::Result<()> {
    for wave in 0..cfg.waves {
        let mut flows = Vec::new();
        for t in 0..cfg.tasks {
            let task = format!("lt-{}-w{wave}-t{t}", cfg.run_id);
            gw.create_task(&task).await?;
            for (role, path) in [("coder", "src/main.py"), ("qa", "tests/test_main.py")] {
                let gw = gw.clone();
                let task = task.clone();
                let agent = format!("{role}-w{wave}-t{t}");
                let (bytes, steps, step_bytes) = (cfg.payload, cfg.steps, cfg.step_bytes);
                flows.push(tokio::spawn(async move {
                    work_a_task(&gw, &agent, &task, path, bytes, steps, step_bytes).await
                }));
            }
        }
        for f in flows {
            f.await?;
        }
    }
    Ok(())
}

/// join, claim, write, read, edit, log steps, release, leave.
async fn work_a_task(
    gw: &Gateway,
    agent: &str,
    task: &str,
    path: &str,
    bytes: usize,
    steps: u64,
    step_bytes: usize,
) {
    let _ = gw
        .tool("join_collaboration", json!({"task_id": task}), agent)
        .await;
    let lease = gw.claim(agent, task, path, 60).await.ok().flatten();
    let fence = lease.map(|(f, _)| f);
    let _ = gw
        .file_write(agent, task, path, &payload(bytes, agent), fence, None)
        .await;
    let _ = gw.file_read(agent, task, path, None).await;
    let _ = gw
        .file_edit(agent, task, path, "MARKER", "EDITED", fence)
        .await;
    for n in 0..steps {
        let _ = gw
            .log_step(agent, task, step(step_bytes, agent, n), None)
            .await;
    }
    if let Some((_, i)) = lease {
        let _ = gw.release(agent, task, path, i).await;
    }
    let _ = gw
        .tool("leave_collaboration", json!({"task_id": task}), agent)
        .await;
}

/// Untimed set-up of `steady` and `tool`: the tasks, and one file per agent.
async fn setup_files(gw: &Gateway, cfg: &Config, files: usize) -> anyhow::Result<()> {
    for t in 0..cfg.tasks {
        gw.create_task(&task_id(cfg, t)).await?;
    }
    let sem = Arc::new(Semaphore::new(cfg.connections.max(1)));
    let mut jobs = Vec::new();
    for a in 0..files {
        let gw = gw.clone();
        let task = task_id(cfg, a % cfg.tasks);
        let body = payload(cfg.payload, &format!("agent-{a}"));
        let permit = sem.clone().acquire_owned().await?;
        jobs.push(tokio::spawn(async move {
            let _p = permit;
            let r = gw
                .file_write(
                    &format!("agent-{a}"),
                    &task,
                    &format!("agents/agent-{a}.txt"),
                    &body,
                    None,
                    None,
                )
                .await;
            match r {
                Ok(a) if a.ok() => Ok(()),
                Ok(a) => Err(anyhow::anyhow!("set-up write: {} {}", a.status, a.body)),
                Err(e) => Err(anyhow::anyhow!("set-up write: {e}")),
            }
        }));
    }
    for j in jobs {
        j.await??;
    }
    Ok(())
}

/// An open-loop schedule: requests go out at a fixed rate whatever the answers take (a slow
/// gateway meets the load it would meet in production); the `i`-th is due at
/// `start + i / rate`, until `duration` seconds have passed.
struct OpenLoop {
    start: tokio::time::Instant,
    interval: Duration,
    end: tokio::time::Instant,
}

impl OpenLoop {
    fn new(rate: f64, duration: f64) -> Self {
        let start = tokio::time::Instant::now();
        OpenLoop {
            start,
            interval: Duration::from_secs_f64(1.0 / rate),
            end: start + Duration::from_secs_f64(duration),
        }
    }

    /// Sleeps until the `i`-th request is due and says when that was; `None` once the run is
    /// over.
    async fn due(&self, i: u64) -> Option<tokio::time::Instant> {
        let due = self.start + self.interval.mul_f64(i as f64);
        if due >= self.end {
            return None;
        }
        tokio::time::sleep_until(due).await;
        Some(due)
    }
}

/// `agents` agents over `tasks` tasks, each calling `rate` times a second for `duration`,
/// open loop (latency counted from the intended start, so a stalled gateway shows).
/// Mix per agent, by its call number: 5/10 `file_read` of its file, 3/10 `log_step`,
/// 1/10 `file_write`, 1/10 `claim_file` + fenced `file_write` + `release_file` (of a second
/// file: a file written under a lease takes no blind unleased write, `lease_required`).
/// Agent `a`'s cycle is shifted by `a`, so every second carries the whole mix; `--phased`
/// runs every agent's cycle in step (each second one kind of call).
pub async fn steady(gw: &Gateway, cfg: &Config) -> anyhow::Result<()> {
    setup_files(gw, cfg, cfg.agents).await?;
    gw.stats.reset();
    let sem = Arc::new(Semaphore::new(cfg.connections.max(1)));
    let schedule = OpenLoop::new(cfg.agents as f64 * cfg.rate, cfg.duration);
    let mut i: u64 = 0;
    let mut jobs = tokio::task::JoinSet::new();
    while let Some(due) = schedule.due(i).await {
        let permit = sem.clone().acquire_owned().await?;
        let a = (i % cfg.agents as u64) as usize;
        let k = i / cfg.agents as u64;
        let shift = if cfg.phased { 0 } else { a as u64 };
        let kind = (k + shift) % 10;
        let gw = gw.clone();
        let task = task_id(cfg, a % cfg.tasks);
        let (bytes, step_bytes) = (cfg.payload, cfg.step_bytes);
        let since = Some(due.into_std());
        jobs.spawn(async move {
            let _p = permit;
            let agent = format!("agent-{a}");
            let path = format!("agents/agent-{a}.txt");
            match kind {
                0..=4 => {
                    let _ = gw.file_read(&agent, &task, &path, since).await;
                }
                5..=7 => {
                    let _ = gw
                        .log_step(&agent, &task, step(step_bytes, &agent, k), since)
                        .await;
                }
                8 => {
                    let _ = gw
                        .file_write(&agent, &task, &path, &payload(bytes, &agent), None, since)
                        .await;
                }
                _ => {
                    let path = format!("agents/agent-{a}.leased.txt");
                    if let Ok(Some((fence, lease))) = gw.claim(&agent, &task, &path, 30).await {
                        let _ = gw
                            .file_write(
                                &agent,
                                &task,
                                &path,
                                &payload(bytes, &agent),
                                Some(fence),
                                None,
                            )
                            .await;
                        let _ = gw.release(&agent, &task, &path, lease).await;
                    }
                }
            }
        });
        while jobs.try_join_next().is_some() {}
        i += 1;
    }
    while jobs.join_next().await.is_some() {}
    Ok(())
}

/// Many agents on few files: claim (409 `locked` is an expected outcome), two fenced writes,
/// release, again, for `duration`.
pub async fn contention(gw: &Gateway, cfg: &Config) -> anyhow::Result<()> {
    let mut gw = gw.clone();
    gw.expect_locked = true;
    let task = task_id(cfg, 0);
    gw.create_task(&task).await?;
    let end = Instant::now() + Duration::from_secs_f64(cfg.duration);
    let mut jobs = Vec::new();
    for a in 0..cfg.agents {
        let gw = gw.clone();
        let task = task.clone();
        let (files, bytes) = (cfg.files.max(1), cfg.payload);
        jobs.push(tokio::spawn(async move {
            let agent = format!("agent-{a}");
            let mut n = a;
            while Instant::now() < end {
                let path = format!("shared/file-{}.txt", n % files);
                n += 1;
                match gw.claim(&agent, &task, &path, 30).await {
                    Ok(Some((fence, lease))) => {
                        let body = payload(bytes, &agent);
                        let _ = gw
                            .file_write(&agent, &task, &path, &body, Some(fence), None)
                            .await;
                        let _ = gw
                            .file_write(&agent, &task, &path, &body, Some(fence), None)
                            .await;
                        let _ = gw.release(&agent, &task, &path, lease).await;
                    }
                    Ok(None) => tokio::time::sleep(Duration::from_millis(1)).await,
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
        }));
    }
    for j in jobs {
        j.await?;
    }
    Ok(())
}

/// One tool as fast as `connections` closed-loop workers can call it, for `duration`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// `file_read` of a hot file (one file per worker, written in the set-up).
    FileRead,
    /// `log_step` of a `--step-bytes` step.
    LogStep,
    /// `claim_file` then `release_file` of the worker's own path (no contention).
    ClaimRelease,
    /// `file_write` (write-through) of `--payload` bytes to the worker's own path.
    FileWrite,
}

/// One tool (`--op`) in a closed loop by `--connections` workers for `--duration`, each on
/// its own path (the set-up is not timed).
pub async fn tool(gw: &Gateway, cfg: &Config) -> anyhow::Result<()> {
    let workers = cfg.connections.max(1);
    setup_files(gw, cfg, workers).await?;
    gw.stats.reset();
    let end = Instant::now() + Duration::from_secs_f64(cfg.duration);
    let mut jobs = Vec::new();
    for w in 0..workers {
        let gw = gw.clone();
        let (op, bytes, step_bytes) = (cfg.op, cfg.payload, cfg.step_bytes);
        let task = task_id(cfg, w % cfg.tasks);
        jobs.push(tokio::spawn(async move {
            let agent = format!("agent-{w}");
            let path = format!("agents/agent-{w}.txt");
            let body = payload(bytes, &agent);
            let mut n = 0u64;
            while Instant::now() < end {
                match op {
                    Op::FileRead => {
                        let _ = gw.file_read(&agent, &task, &path, None).await;
                    }
                    Op::LogStep => {
                        let _ = gw
                            .log_step(&agent, &task, step(step_bytes, &agent, n), None)
                            .await;
                    }
                    Op::ClaimRelease => {
                        let lock_path = format!("locks/agent-{w}.txt");
                        if let Ok(Some((_, lease))) = gw.claim(&agent, &task, &lock_path, 30).await
                        {
                            let _ = gw.release(&agent, &task, &lock_path, lease).await;
                        }
                    }
                    Op::FileWrite => {
                        let _ = gw.file_write(&agent, &task, &path, &body, None, None).await;
                    }
                }
                n += 1;
            }
        }));
    }
    for j in jobs {
        j.await?;
    }
    Ok(())
}

/// What the watchers saw.
#[derive(Debug, Default, Serialize)]
pub struct WatchReport {
    /// Watchers opened (`--watchers`).
    pub watchers: usize,
    /// Of those, connected before the writers started.
    pub connected: usize,
    /// Seconds until every watcher had its response headers (or the wait gave up).
    pub connect_seconds: f64,
    /// Steps acknowledged on the watched tasks.
    pub steps_written: u64,
    /// step_logged events expected in total (each watcher, every step of its task).
    pub deliveries_expected: u64,
    /// step_logged events received in total.
    pub deliveries_received: u64,
    /// Expected deliveries that never arrived.
    pub deliveries_missing: u64,
    /// Deliveries of an id the watcher had already received.
    pub deliveries_duplicated: u64,
    /// The gateway's resident memory before any watcher connected, MiB (with `--gateway-pid`).
    pub gateway_rss_mb_before: Option<f64>,
    /// Every watcher connected and idle for `--idle` seconds, before any event.
    pub gateway_rss_mb_idle: Option<f64>,
    /// The larger of the idle sample and one taken after the writers finished.
    pub gateway_rss_mb_with_watchers: Option<f64>,
    /// The gateway's peak resident memory (`VmHWM`) at the end of the run.
    pub gateway_hwm_mb: Option<f64>,
    /// The generator's open-file limit (raised to its hard limit at start).
    pub open_file_limit: Option<u64>,
}

/// Raises this process's soft open-file limit to its hard limit (each watcher holds a
/// socket); returns the limit now in force.
pub fn raise_fd_limit() -> Option<u64> {
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).ok()?;
    rlimit::increase_nofile_limit(hard).ok()
}

/// `watchers` SSE subscribers (`GET /tasks/{id}/events?types=step_logged`) spread over the
/// tasks (watcher `w` on task `w % tasks`), opened at most `connections` at a time. Once every
/// one has its response headers they stay idle for `idle` seconds and the gateway's memory is
/// sampled (`gateway_rss_mb_idle`); then `agents` agents log steps at `rate` each for
/// `duration`, and every watcher must receive every step of its task, once. A watcher's task
/// sleeps on its socket (no timer) until the run ends.
pub async fn watchers(gw: &Gateway, cfg: &Config) -> anyhow::Result<WatchReport> {
    let mut rep = WatchReport {
        watchers: cfg.watchers,
        gateway_rss_mb_before: cfg.gateway_pid.and_then(rss_mb),
        open_file_limit: raise_fd_limit(),
        ..Default::default()
    };
    if let Some(limit) = rep.open_file_limit
        && cfg.watchers as u64 + cfg.connections as u64 + 64 > limit
    {
        anyhow::bail!(
            "{} watchers need more open files than this process may have ({limit}): raise `ulimit -Hn`",
            cfg.watchers
        );
    }
    for t in 0..cfg.tasks {
        gw.create_task(&task_id(cfg, t)).await?;
    }
    let connected = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let opening = Arc::new(Semaphore::new(cfg.connections.max(1)));
    let t_connect = Instant::now();
    let mut watchers = Vec::new();
    for w in 0..cfg.watchers {
        let task = task_id(cfg, w % cfg.tasks);
        let connected = connected.clone();
        let stop = stop_rx.clone();
        let opening = opening.clone();
        if w < cfg.ws_watchers {
            let req = gw.ws_request().map_err(|e| anyhow::anyhow!("{e}"))?;
            let agent = gw.send_agent.then(|| format!("watcher-{w}"));
            watchers.push(tokio::spawn(async move {
                let ids = ws_watcher(req, agent, task.clone(), opening, connected, stop).await;
                (task, ids)
            }));
        } else {
            let req = gw.get_builder(&format!("/tasks/{task}/events?types=step_logged"));
            watchers.push(tokio::spawn(async move {
                let ids = sse_watcher(req, opening, connected, stop).await;
                (task, ids)
            }));
        }
    }
    // Wait until every watcher has its response headers (or 30 s + 10 ms a watcher).
    let deadline = Instant::now()
        + Duration::from_secs(30)
        + Duration::from_millis(10).saturating_mul(cfg.watchers as u32);
    while (connected.load(Ordering::Relaxed) as usize) < cfg.watchers && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    rep.connect_seconds = t_connect.elapsed().as_secs_f64();
    rep.connected = connected.load(Ordering::Relaxed) as usize;
    tokio::time::sleep(Duration::from_secs_f64(cfg.idle.max(0.0))).await;
    rep.gateway_rss_mb_idle = cfg.gateway_pid.and_then(rss_mb);
    rep.gateway_rss_mb_with_watchers = rep.gateway_rss_mb_idle;
    // Writers: `agents` agents at `rate` each (open loop), until `duration`.
    let schedule = OpenLoop::new((cfg.agents as f64 * cfg.rate).max(0.1), cfg.duration);
    let mut i = 0u64;
    let mut jobs = tokio::task::JoinSet::new();
    while let Some(due) = schedule.due(i).await {
        let gw = gw.clone();
        let a = (i % cfg.agents as u64) as usize;
        let task = task_id(cfg, a % cfg.tasks);
        let step_bytes = cfg.step_bytes;
        jobs.spawn(async move {
            let agent = format!("agent-{a}");
            let _ = gw
                .log_step(
                    &agent,
                    &task,
                    step(step_bytes, &agent, i),
                    Some(due.into_std()),
                )
                .await;
        });
        while jobs.try_join_next().is_some() {}
        i += 1;
    }
    while jobs.join_next().await.is_some() {}
    if let Some(rss) = cfg.gateway_pid.and_then(rss_mb) {
        rep.gateway_rss_mb_with_watchers =
            Some(rep.gateway_rss_mb_with_watchers.unwrap_or(0.0).max(rss));
    }
    // Let the last events arrive: stop once no watcher has received anything for 200 ms.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = stop_tx.send(true);
    rep.gateway_hwm_mb = cfg.gateway_pid.and_then(hwm_mb);
    let written = gw.ledger.lock().expect("ledger").steps.clone();
    rep.steps_written = written.values().map(|v| v.len() as u64).sum();
    for w in watchers {
        let (task, ids) = w.await?;
        let expected = written.get(&task).cloned().unwrap_or_default();
        rep.deliveries_expected += expected.len() as u64;
        let Some(ids) = ids else {
            rep.deliveries_missing += expected.len() as u64;
            continue;
        };
        rep.deliveries_received += ids.len() as u64;
        let mut seen = std::collections::HashSet::new();
        for id in &ids {
            if !seen.insert(id.as_str()) {
                rep.deliveries_duplicated += 1;
            }
        }
        rep.deliveries_missing += expected
            .iter()
            .filter(|id| !seen.contains(id.as_str()))
            .count() as u64;
    }
    Ok(rep)
}

/// A watcher's next item: until the run ends (`stop`) it waits on its connection alone (no
/// timer); from then on (`stopping`) it drains, and `None` after 200 ms of silence.
async fn next_until_quiet<S: futures::Stream + Unpin>(
    s: &mut S,
    stop: &mut tokio::sync::watch::Receiver<bool>,
    stopping: &mut bool,
) -> Option<S::Item> {
    if !*stopping {
        tokio::select! {
            next = s.next() => return next,
            _ = stop.wait_for(|s| *s) => *stopping = true,
        }
    }
    tokio::time::timeout(Duration::from_millis(200), s.next())
        .await
        .ok()
        .flatten()
}

/// One SSE watcher: the ids of the `step_logged` events it received, `None` when it could
/// not connect. Until the run ends it waits on its socket alone (no timer); then it drains
/// until 200 ms of silence.
async fn sse_watcher(
    req: reqwest::RequestBuilder,
    opening: Arc<Semaphore>,
    connected: Arc<AtomicU64>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Option<Vec<String>> {
    let resp = {
        let _permit = opening.acquire().await;
        match req.timeout(Duration::from_secs(3600)).send().await {
            Ok(resp) if resp.status().is_success() => resp,
            _ => return None,
        }
    };
    connected.fetch_add(1, Ordering::Relaxed);
    let mut ids: Vec<String> = Vec::new();
    let mut stream = resp.bytes_stream();
    let mut buf = Vec::new();
    let mut stopping = false;
    loop {
        let Some(Ok(chunk)) = next_until_quiet(&mut stream, &mut stop, &mut stopping).await else {
            break;
        };
        buf.extend_from_slice(&chunk);
        while let Some(pos) = buf.windows(2).position(|w| w == b"\n\n") {
            let msg: Vec<u8> = buf.drain(..pos + 2).collect();
            for line in String::from_utf8_lossy(&msg).lines() {
                if let Some(data) = line.strip_prefix("data: ")
                    && let Ok(v) = serde_json::from_str::<serde_json::Value>(data)
                    && let Some(id) = v["data"]["id"].as_str()
                {
                    ids.push(id.to_string());
                }
            }
        }
    }
    Some(ids)
}

/// One WebSocket watcher (`GET /ws`, one socket with one subscription, as a console tab
/// holds): connected once the server answered `subscribed`; otherwise as [`sse_watcher`].
async fn ws_watcher(
    req: tokio_tungstenite::tungstenite::handshake::client::Request,
    agent: Option<String>,
    task: String,
    opening: Arc<Semaphore>,
    connected: Arc<AtomicU64>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Option<Vec<String>> {
    use futures::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let mut subscribe = json!({"op": "subscribe", "task_id": task, "types": ["step_logged"]});
    if let Some(agent) = agent {
        subscribe["agent_id"] = json!(agent);
    }
    let mut socket = {
        let _permit = opening.acquire().await;
        let (mut socket, _) = tokio_tungstenite::connect_async(req).await.ok()?;
        socket
            .send(Message::text(subscribe.to_string()))
            .await
            .ok()?;
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(60), socket.next())
                .await
                .ok()??
                .ok()?;
            if let Message::Text(t) = msg {
                let v: serde_json::Value = serde_json::from_str(t.as_str()).ok()?;
                match v["op"].as_str() {
                    Some("subscribed") => break,
                    Some("error") => return None,
                    _ => {}
                }
            }
        }
        socket
    };
    connected.fetch_add(1, Ordering::Relaxed);
    let mut ids: Vec<String> = Vec::new();
    let mut stopping = false;
    loop {
        // Reading also answers the server's pings.
        let Some(Ok(msg)) = next_until_quiet(&mut socket, &mut stop, &mut stopping).await else {
            break;
        };
        if let Message::Text(t) = msg
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(t.as_str())
            && v["op"] == "event"
            && let Some(id) = v["event"]["data"]["id"].as_str()
        {
            ids.push(id.to_string());
        }
    }
    let _ = socket.close(None).await;
    Some(ids)
}

/// Resident memory of a process, MiB (Linux `/proc`).
pub fn rss_mb(pid: u32) -> Option<f64> {
    proc_status_mb(pid, "VmRSS:")
}

/// Peak resident memory of a process (`VmHWM`), MiB (Linux `/proc`).
pub fn hwm_mb(pid: u32) -> Option<f64> {
    proc_status_mb(pid, "VmHWM:")
}

fn proc_status_mb(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// CPU time (user + system) a process has used, seconds (Linux `/proc`, 100 ticks a second).
pub fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}
