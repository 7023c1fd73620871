//! What a fault test keeps of a run under load: the newest acknowledged write per path, and
//! the reads that went back in time. Shared by the tests that kill a backend under writes
//! (`rollback_fault.rs`, `it/sentinel.rs`).

use serde_json::Value;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// One tool call over plain HTTP: (status, JSON body); a connection that fails, hangs up or
/// takes over 15 s is status 0 (a fault test counts it rather than stopping).
pub async fn call_tool(
    http: &reqwest::Client,
    base: &str,
    name: &str,
    body: &Value,
) -> (u16, Value) {
    match http
        .post(format!("{base}/tools/{name}"))
        .json(body)
        .timeout(Duration::from_secs(15))
        .send()
        .await
    {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.json().await.unwrap_or(Value::Null))
        }
        Err(_) => (0, Value::Null),
    }
}

/// The acknowledged writes of a run and the stale reads seen.
#[derive(Default)]
pub struct WriteLedger {
    /// Newest acknowledged (version, content) per path.
    acked: Mutex<HashMap<String, (i64, String)>>,
    acked_writes: AtomicU64,
    reads: AtomicU64,
    stale_reads: Mutex<Vec<String>>,
}

impl WriteLedger {
    /// The newest version acknowledged for `path` (0 for none).
    pub fn acked_version(&self, path: &str) -> i64 {
        self.acked.lock().unwrap().get(path).map_or(0, |a| a.0)
    }

    /// A write of `content` to `path` was acknowledged at `version`.
    pub fn ack(&self, path: &str, version: i64, content: &str) {
        self.acked_writes.fetch_add(1, Ordering::Relaxed);
        let mut m = self.acked.lock().unwrap();
        let e = m.entry(path.to_owned()).or_insert((0, String::new()));
        if version > e.0 {
            *e = (version, content.to_owned());
        }
    }

    /// A read of `path` answered `got`; `floor` is the newest version acknowledged before
    /// the read was sent, so an answer older than it is stale.
    pub fn check_read(&self, path: &str, floor: i64, got: &(u16, Value), via: &str) {
        if got.0 != 200 {
            return;
        }
        self.reads.fetch_add(1, Ordering::Relaxed);
        let v = got.1["version"].as_i64().unwrap_or(0);
        if v < floor {
            self.stale_reads.lock().unwrap().push(format!(
                "{path} via {via}: read v{v}, v{floor} acknowledged"
            ));
        }
    }

    /// How many writes were acknowledged so far.
    pub fn acked_writes(&self) -> u64 {
        self.acked_writes.load(Ordering::Relaxed)
    }

    /// How many reads answered 200.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// The stale reads seen, described.
    pub fn stale_reads(&self) -> Vec<String> {
        self.stale_reads.lock().unwrap().clone()
    }

    /// Newest acknowledged (version, content) per path.
    pub fn acked(&self) -> HashMap<String, (i64, String)> {
        self.acked.lock().unwrap().clone()
    }

    /// The end of a run: for each of `paths` of task `task`, Postgres holds the newest
    /// acknowledged version or a newer one (no lost write), a read through each of `gateways`
    /// answers the durable version, and the revisions carry non-decreasing fences.
    pub async fn assert_durable(
        &self,
        pool: &sqlx::PgPool,
        task: &str,
        paths: &[String],
        gateways: &[&str],
    ) {
        let http = reqwest::Client::new();
        let acked = self.acked();
        for path in paths {
            let (durable, content): (i64, String) = sqlx::query_as(
                "SELECT version, content FROM files WHERE task_id = $1 AND path = $2",
            )
            .bind(task)
            .bind(path)
            .fetch_one(pool)
            .await
            .unwrap();
            let (acked_version, acked_content) = acked.get(path).cloned().unwrap_or_default();
            assert!(
                durable >= acked_version,
                "{path}: v{acked_version} acknowledged, Postgres holds v{durable} (a lost write)"
            );
            if durable == acked_version {
                assert_eq!(content, acked_content, "{path}");
            }
            for gw in gateways {
                let got = call_tool(
                    &http,
                    gw,
                    "file_read",
                    &serde_json::json!({"task_id": task, "path": path}),
                )
                .await;
                assert_eq!(got.0, 200, "{path} via {gw}: {}", got.1);
                assert_eq!(
                    (got.1["version"].as_i64(), got.1["content"].as_str()),
                    (Some(durable), Some(content.as_str())),
                    "{path} via {gw}: the final read is not the durable version"
                );
            }
            let fences: Vec<Option<i64>> = sqlx::query_scalar(
                "SELECT fence FROM file_revisions WHERE task_id = $1 AND path = $2 ORDER BY version",
            )
            .bind(task)
            .bind(path)
            .fetch_all(pool)
            .await
            .unwrap();
            let fences: Vec<i64> = fences.into_iter().flatten().collect();
            assert!(
                fences.windows(2).all(|w| w[0] <= w[1]),
                "{path}: writes accepted out of fence order: {fences:?}"
            );
        }
    }
}
