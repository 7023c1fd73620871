//! The end-of-run audit: nothing acknowledged was lost and no two lease holders overlapped.
//!
//! * **Writes**: for every path, the highest acknowledged version must be readable (`file_read`)
//!   at that version or a later one; at exactly that version the content's sha256 must be the
//!   acknowledged one.
//! * **Steps**: every acknowledged step id is in Postgres exactly once — counted in `step_logs`
//!   by stream id when a database URL is given, else read back through the gateway's
//!   `GET /resources/tasks/{id}/logs` (paging from Redis into Postgres) once the outbox has
//!   drained (`mcp_outbox_length` 0).
//! * **Leases**: by fences. On each path, holders ordered by fence must have been granted in
//!   that order and must not overlap: the next holder's grant may not be answered before the
//!   previous holder sent its release (the client's own monotonic clock, so a violation is
//!   proof, never a timing guess). Writes on a path, ordered by the versions they produced,
//!   must present non-decreasing fences: no write was acknowledged with a stale fence.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::client::{Gateway, Ledger};
use crate::metrics;

/// How the steps are checked.
pub struct AuditOptions {
    /// Count steps in Postgres directly (`step_logs`).
    pub database_url: Option<String>,
    /// How long to wait for the push loop to persist every step.
    pub wait: Duration,
}

/// The audit's verdict, with what it checked (part of the report).
#[derive(Debug, Default, Serialize)]
pub struct AuditResult {
    /// No failure found.
    pub ok: bool,
    /// Paths whose last acknowledged write was read back.
    pub paths_checked: usize,
    /// Acknowledged writes checked.
    pub writes_checked: usize,
    /// Acknowledged steps looked for.
    pub steps_checked: usize,
    /// Lease records checked for order and overlap.
    pub leases_checked: usize,
    /// How the steps were counted: `postgres` or `gateway`.
    pub steps_via: String,
    /// The first problems found (at most 50), each a sentence.
    pub failures: Vec<String>,
    /// Every problem found, also past the first 50.
    pub failure_count: usize,
}

impl AuditResult {
    fn fail(&mut self, msg: String) {
        self.failure_count += 1;
        if self.failures.len() < 50 {
            self.failures.push(msg);
        }
    }
}

/// Checks what `ledger` holds against the gateway (and Postgres when `opts` names it).
pub async fn audit(gw: &Gateway, ledger: &Ledger, opts: &AuditOptions) -> AuditResult {
    let mut r = AuditResult::default();
    check_leases(ledger, &mut r);
    check_writes(gw, ledger, &mut r).await;
    check_steps(gw, ledger, opts, &mut r).await;
    r.ok = r.failure_count == 0;
    r
}

/// Lease order and the fences of writes (no I/O).
pub fn check_leases(ledger: &Ledger, r: &mut AuditResult) {
    let mut by_path: HashMap<(&str, &str), Vec<&crate::client::LeaseRecord>> = HashMap::new();
    for l in &ledger.leases {
        by_path.entry((&l.task, &l.path)).or_default().push(l);
    }
    for ((task, path), mut leases) in by_path {
        leases.sort_by_key(|l| (l.fence, l.claim_sent_us));
        r.leases_checked += leases.len();
        for pair in leases.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            if a.fence == b.fence {
                // The same lease claimed again by its holder (re-entrant), or two holders
                // given one fence.
                if a.owner != b.owner {
                    r.fail(format!(
                        "{task}/{path}: fence {} granted to both {} and {}",
                        a.fence, a.owner, b.owner
                    ));
                }
                continue;
            }
            if b.claim_ack_us < a.claim_sent_us {
                r.fail(format!(
                    "{task}/{path}: fence {} ({}) was granted before fence {} ({}) was requested",
                    b.fence, b.owner, a.fence, a.owner
                ));
            }
            match a.release_sent_us {
                Some(rel) if b.claim_ack_us < rel => r.fail(format!(
                    "{task}/{path}: {} held fence {} until {} µs but {} was granted fence {} at {} µs",
                    a.owner, a.fence, rel, b.owner, b.fence, b.claim_ack_us
                )),
                _ => {}
            }
        }
    }
    let mut writes: HashMap<(&str, &str), Vec<(i64, i64)>> = HashMap::new();
    for w in &ledger.writes {
        if let Some(f) = w.fence {
            writes
                .entry((&w.task, &w.path))
                .or_default()
                .push((w.version, f));
        }
    }
    for ((task, path), mut ws) in writes {
        ws.sort();
        for pair in ws.windows(2) {
            let ((v1, f1), (v2, f2)) = (pair[0], pair[1]);
            if v1 == v2 {
                r.fail(format!("{task}/{path}: version {v1} acknowledged twice"));
            } else if f2 < f1 {
                r.fail(format!(
                    "{task}/{path}: version {v2} was written with fence {f2} after version {v1} with fence {f1} (stale fence acknowledged)"
                ));
            }
        }
    }
}

async fn check_writes(gw: &Gateway, ledger: &Ledger, r: &mut AuditResult) {
    // The highest acknowledged version of each path, with its sha256.
    let mut top: BTreeMap<(&str, &str), (i64, &str)> = BTreeMap::new();
    for w in &ledger.writes {
        r.writes_checked += 1;
        let e = top
            .entry((&w.task, &w.path))
            .or_insert((w.version, &w.sha256));
        if w.version > e.0 {
            *e = (w.version, &w.sha256);
        }
    }
    r.paths_checked = top.len();
    let checks = futures::future::join_all(top.into_iter().map(|((task, path), (v, sha))| {
        let gw = gw.clone();
        async move {
            let body = serde_json::json!({"task_id": task, "path": path});
            let resp = gw.post_builder("/tools/file_read").json(&body).send().await;
            let got = match resp {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let b: serde_json::Value = resp.json().await.unwrap_or_default();
                    (status, b)
                }
                Err(e) => return Some(format!("{task}/{path}: read failed: {e}")),
            };
            match got {
                (200, b) => {
                    let version = b["version"].as_i64().unwrap_or(-1);
                    if version < v {
                        Some(format!(
                            "{task}/{path}: acknowledged version {v}, readable version {version}"
                        ))
                    } else if version == v && b["sha256"].as_str() != Some(sha) {
                        Some(format!(
                            "{task}/{path}: version {v} reads back with another sha256"
                        ))
                    } else {
                        None
                    }
                }
                (s, b) => Some(format!(
                    "{task}/{path}: acknowledged version {v}, read answers {s} {b}"
                )),
            }
        }
    }))
    .await;
    for c in checks.into_iter().flatten() {
        r.fail(c);
    }
}

async fn check_steps(gw: &Gateway, ledger: &Ledger, opts: &AuditOptions, r: &mut AuditResult) {
    let total: usize = ledger.steps.values().map(Vec::len).sum();
    r.steps_checked = total;
    if total == 0 {
        r.steps_via = "none".into();
        return;
    }
    match &opts.database_url {
        Some(url) => {
            r.steps_via = "postgres".into();
            if let Err(e) = steps_in_postgres(url, ledger, opts.wait, r).await {
                r.fail(format!("steps: {e}"));
            }
        }
        None => {
            r.steps_via = "gateway".into();
            steps_through_gateway(gw, ledger, opts.wait, r).await;
        }
    }
}

/// Counts each acknowledged stream id in `step_logs`, waiting up to `wait` for the push loop.
async fn steps_in_postgres(
    url: &str,
    ledger: &Ledger,
    wait: Duration,
    r: &mut AuditResult,
) -> anyhow::Result<()> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(url)
        .await?;
    let tasks: Vec<String> = ledger.steps.keys().cloned().collect();
    let deadline = Instant::now() + wait;
    loop {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT task_id, stream_id, count(*) FROM step_logs WHERE task_id = ANY($1) \
             GROUP BY task_id, stream_id",
        )
        .bind(&tasks)
        .fetch_all(&pool)
        .await?;
        let counts: HashMap<(String, String), i64> =
            rows.into_iter().map(|(t, s, n)| ((t, s), n)).collect();
        let mut problems = Vec::new();
        for (task, ids) in &ledger.steps {
            let mut seen = HashSet::new();
            for id in ids {
                if !seen.insert(id) {
                    problems.push(format!("{task}: step {id} acknowledged twice"));
                    continue;
                }
                match counts
                    .get(&(task.clone(), id.clone()))
                    .copied()
                    .unwrap_or(0)
                {
                    1 => {}
                    n => problems.push(format!("{task}: step {id} is in Postgres {n} times")),
                }
            }
        }
        if problems.is_empty() || Instant::now() >= deadline {
            for p in problems {
                r.fail(p);
            }
            pool.close().await;
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits for the outbox to drain (where there is one), then pages each task's logs through the
/// gateway.
async fn steps_through_gateway(gw: &Gateway, ledger: &Ledger, wait: Duration, r: &mut AuditResult) {
    let deadline = Instant::now() + wait;
    loop {
        let m = metrics::scrape(gw).await;
        match m.get("mcp_outbox_length") {
            // Absent: a gateway without an outbox (the embedded mode writes each step to its
            // SQLite file before acknowledging it), so there is nothing to wait for.
            Some(0.0) | None => break,
            _ if Instant::now() >= deadline => {
                r.fail(format!(
                    "steps: the outbox did not drain within {wait:?} (mcp_outbox_length {:?})",
                    m.get("mcp_outbox_length")
                ));
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
    for (task, ids) in &ledger.steps {
        let mut seen: HashMap<String, u32> = HashMap::new();
        let mut before: Option<String> = None;
        loop {
            let mut path = format!("/resources/tasks/{task}/logs?limit=1000");
            if let Some(b) = &before {
                path.push_str(&format!("&before={b}"));
            }
            let page = match gw.get(&path).await {
                Ok(a) if a.ok() => a.body,
                Ok(a) => {
                    r.fail(format!("{task}: logs answered {} {}", a.status, a.body));
                    break;
                }
                Err(e) => {
                    r.fail(format!("{task}: logs: {e}"));
                    break;
                }
            };
            let steps = page["steps"].as_array().cloned().unwrap_or_default();
            for s in &steps {
                if let Some(id) = s["id"].as_str() {
                    *seen.entry(id.to_string()).or_default() += 1;
                }
            }
            match steps.first().and_then(|s| s["id"].as_str()) {
                Some(oldest) if steps.len() == 1000 => before = Some(oldest.to_string()),
                _ => break,
            }
        }
        for id in ids {
            match seen.get(id).copied().unwrap_or(0) {
                1 => {}
                n => r.fail(format!("{task}: step {id} is read back {n} times")),
            }
        }
    }
}
