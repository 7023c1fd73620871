//! Issue #20, the Postgres part: a gateway whose `DATABASE_URL` lists a primary and its
//! streaming standby (`postgres://…@h1:p1,h2:p2/db?target_session_attrs=read-write`) survives,
//! without a restart of its own, a restart of Postgres under concurrent writes and a
//! switchover (primary stopped, standby promoted): every acknowledged write is there
//! afterwards, the gap answers 503 with `Retry-After` (never 500, never a hang), service is
//! back within seconds, and the sync loop's `LISTEN` connection is on the new primary.
//!
//! The Postgres servers are private to each test (`initdb`, `pg_basebackup -R`, `pg_ctl` from
//! the local PostgreSQL binaries, as `scripts/test.sh` finds them, on free ports in a temporary
//! directory; as the `postgres` user when the test runs as root, which `initdb` refuses). The
//! shared server is not touched. Without the binaries the tests say so and pass.

use mcp_testkit::{TestDb, TestGateway, TestRedis, free_port};
use serde_json::{Value, json};
use sqlx::Connection;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The directory of `initdb` and `pg_ctl`: `PG_BIN`, else the newest
/// `/usr/lib/postgresql/*/bin`, else the directory of `initdb` on the `PATH`.
fn bin() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").exists())
        .collect();
    versions.sort();
    if let Some(newest) = versions.pop() {
        return Some(newest);
    }
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).find(|d| d.join("initdb").exists()))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Runs one PostgreSQL program (as `postgres` when we are root); panics with its output on
/// failure.
/// A command running `path` as the `postgres` user (PostgreSQL refuses to run as root).
fn as_postgres(path: &str) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", path]);
        c
    } else {
        Command::new(path)
    }
}

fn pg(program: &str, args: &[&str]) {
    let path = bin()
        .expect("PostgreSQL binaries")
        .join(program)
        .display()
        .to_string();
    let out = as_postgres(&path)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A primary and its streaming standby, each in its own data directory under one temporary
/// directory, on free loopback ports. Both are stopped and removed on drop.
struct PgPair {
    dir: PathBuf,
    primary: Node,
    standby: Node,
}

struct Node {
    data: PathBuf,
    port: u16,
}

impl Node {
    fn path(&self) -> &str {
        self.data.to_str().unwrap()
    }

    fn log(&self) -> String {
        format!("{}.log", self.path())
    }

    fn start(&self) {
        pg(
            "pg_ctl",
            &["-D", self.path(), "-l", &self.log(), "-w", "start"],
        );
    }

    fn stop(&self, mode: &str) {
        pg("pg_ctl", &["-D", self.path(), "-m", mode, "-w", "stop"]);
    }

    fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }
}

impl PgPair {
    /// `None` when the PostgreSQL binaries are missing.
    fn start() -> Option<PgPair> {
        if bin().is_none() {
            eprintln!("no PostgreSQL binaries (initdb, pg_ctl; set PG_BIN): skipped");
            return None;
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!("mcp-pgpair-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        if is_root() {
            let ok = Command::new("chown")
                .args(["postgres", dir.to_str().unwrap()])
                .status()
                .unwrap();
            assert!(ok.success());
        }
        let primary = Node {
            data: dir.join("primary"),
            port: free_port(),
        };
        let standby = Node {
            data: dir.join("standby"),
            port: free_port(),
        };
        pg(
            "initdb",
            &[
                "-D",
                primary.path(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        let conf = format!(
            "port = {}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             wal_level = replica\nmax_wal_senders = 4\nmax_connections = 60\n",
            primary.port,
            dir.display()
        );
        append(&primary.data.join("postgresql.conf"), &conf);
        append(
            &primary.data.join("pg_hba.conf"),
            "host replication all 127.0.0.1/32 trust\n",
        );
        let pair = PgPair {
            dir,
            primary,
            standby,
        };
        pair.primary.start();
        pg(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &pair.primary.port.to_string(),
                "-U",
                "postgres",
                "-D",
                pair.standby.path(),
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
            ],
        );
        append(
            &pair.standby.data.join("postgresql.conf"),
            &format!("port = {}\n", pair.standby.port),
        );
        pair.standby.start();
        Some(pair)
    }

    /// The multi-host URL of database `db`: primary first, then standby.
    fn url(&self, db: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/{db}?target_session_attrs=read-write",
            self.primary.port, self.standby.port
        )
    }
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

impl Drop for PgPair {
    fn drop(&mut self) {
        for node in [&self.standby, &self.primary] {
            let Some(dir) = bin() else { return };
            let path = dir.join("pg_ctl").display().to_string();
            let args = ["-D", node.path(), "-m", "immediate", "-w", "stop"];
            let _ = as_postgres(&path).args(args).output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A gateway on `url` (the test's own Redis prefix), with the sync loops (`mcp-sync`'s,
/// which the gateway runs inside by default) on the same stores.
async fn gateway(url: String) -> (TestGateway, tokio_util::sync::CancellationToken) {
    let gw = TestGateway::spawn_on(
        // Its guard would drop a database of this name on the shared server: there is none.
        TestDb {
            name: "mcpgw_t_private_server".into(),
            url,
        },
        TestRedis::new(),
        |c| {
            c.pg_acquire_timeout_ms = 2_000;
            c.request_timeout_secs = 10;
        },
    )
    .await;
    let cancel = tokio_util::sync::CancellationToken::new();
    mcp_sync::spawn(
        gw.stores.durable.clone(),
        gw.stores.hot.clone(),
        mcp_sync::SyncSettings::default(),
        cancel.clone(),
    );
    (gw, cancel)
}

/// What the writers saw.
#[derive(Default)]
struct Tally {
    /// Path -> content, of every acknowledged write.
    acked: BTreeMap<String, String>,
    /// Answers other than 200, by status (each 503 checked for `Retry-After`).
    refused: BTreeMap<u16, usize>,
    /// When each acknowledged write was answered.
    acked_at: Vec<Instant>,
}

/// Concurrent writers, each writing new files until stopped, and what they were answered.
struct Writers {
    stop: Arc<std::sync::atomic::AtomicBool>,
    tally: Arc<Mutex<Tally>>,
    handles: Vec<tokio::task::JoinHandle<()>>,
}

impl Writers {
    /// Stops the writers, waits for them and hands over their tally.
    async fn finish(self) -> Tally {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for w in self.handles {
            w.await.expect("a writer panicked");
        }
        std::mem::take(&mut *self.tally.lock().unwrap())
    }
}

/// `writers` concurrent writers, each writing new files until stopped.
fn start_writers(gw: &TestGateway, writers: usize) -> Writers {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let handles = (0..writers)
        .map(|w| {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap();
            let url = format!("{}/tools/file_write", gw.base);
            let tally = tally.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut k = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    k += 1;
                    let path = format!("w{w}/f{k}.txt");
                    let content = format!("writer {w} write {k}");
                    let r = http
                        .post(&url)
                        .json(&json!({"task_id": "ha", "path": path, "content": content,
                                      "agent_id": format!("writer{w}")}))
                        .send()
                        .await
                        .unwrap_or_else(|e| panic!("no answer (a hang?): {e}"));
                    let status = r.status().as_u16();
                    let retry_after = r.headers().contains_key("retry-after");
                    let body: Value = r.json().await.unwrap_or(Value::Null);
                    if status == 200 {
                        let mut t = tally.lock().unwrap();
                        t.acked.insert(path, content);
                        t.acked_at.push(Instant::now());
                    } else {
                        assert_eq!(status, 503, "only 503 in the gap: {body}");
                        assert!(retry_after, "503 with Retry-After: {body}");
                        *tally.lock().unwrap().refused.entry(status).or_default() += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            })
        })
        .collect();
    Writers {
        stop,
        tally,
        handles,
    }
}

/// Every acknowledged write, read back from `url` (a single host): none may be missing.
async fn check_acked(url: &str, tally: &Tally) -> usize {
    let mut c = sqlx::PgConnection::connect(url).await.expect("connect");
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT path, content FROM files WHERE task_id = 'ha'")
            .fetch_all(&mut c)
            .await
            .unwrap();
    let stored: BTreeMap<String, String> = rows.into_iter().collect();
    let lost: Vec<&String> = tally
        .acked
        .iter()
        .filter(|(path, content)| stored.get(*path) != Some(content))
        .map(|(path, _)| path)
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost: {lost:?}",
        lost.len(),
        tally.acked.len()
    );
    tally.acked.len()
}

/// Waits until an acknowledged write answered after `since`; how long that took.
async fn back_after(tally: &Arc<Mutex<Tally>>, since: Instant, limit: Duration) -> Duration {
    loop {
        if let Some(at) = tally
            .lock()
            .unwrap()
            .acked_at
            .iter()
            .find(|at| **at > since)
        {
            return at.duration_since(since);
        }
        assert!(
            since.elapsed() < limit,
            "no write acknowledged within {limit:?} after the database came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn listens_on(url: &str) -> bool {
    let Ok(mut c) = sqlx::PgConnection::connect(url).await else {
        return false;
    };
    sqlx::query_scalar::<_, i64>(
        "SELECT count(*) FROM pg_stat_activity WHERE query ILIKE 'LISTEN%'",
    )
    .fetch_one(&mut c)
    .await
    .is_ok_and(|n| n > 0)
}

async fn wait_listening(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !listens_on(url).await {
        assert!(
            Instant::now() < deadline,
            "the sync loop's LISTEN connection is not on {url}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_postgres_restart_under_writes_loses_no_acknowledged_write() {
    let Some(pair) = PgPair::start() else { return };
    let (gw, sync) = gateway(pair.url("gw")).await;
    let _sync = sync.drop_guard();
    let writers = start_writers(&gw, 8);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = writers.tally.lock().unwrap().acked.len();
    assert!(before > 0, "writes go through before the restart");
    wait_listening(&pair.primary.url("gw")).await;

    // A crash (immediate: no shutdown checkpoint, like kill -9) and a start.
    let crashed = Instant::now();
    pair.primary.stop("immediate");
    tokio::time::sleep(Duration::from_millis(500)).await;
    pair.primary.start();
    let up = Instant::now();
    let back = back_after(&writers.tally, up, Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let tally = writers.finish().await;
    let acked = check_acked(&pair.primary.url("gw"), &tally).await;
    eprintln!(
        "restart: {acked} acknowledged writes, all present; refused {:?}; down for {:?}; \
         service back {back:?} after Postgres was up",
        tally.refused,
        up.duration_since(crashed)
    );
    assert!(back < Duration::from_secs(10), "back after {back:?}");
    // The sync loop listens again.
    wait_listening(&pair.primary.url("gw")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_switchover_to_the_standby_is_followed_without_a_gateway_restart() {
    let Some(pair) = PgPair::start() else { return };
    let (gw, sync) = gateway(pair.url("gw")).await;
    let _sync = sync.drop_guard();
    let writers = start_writers(&gw, 8);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!writers.tally.lock().unwrap().acked.is_empty());
    wait_listening(&pair.primary.url("gw")).await;

    // Switchover: the primary stops cleanly (its last WAL reaches the standby), the standby
    // is promoted.
    let started = Instant::now();
    pair.primary.stop("fast");
    pg("pg_ctl", &["-D", pair.standby.path(), "-w", "promote"]);
    let promoted = Instant::now();
    let back = back_after(&writers.tally, promoted, Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let tally = writers.finish().await;
    let acked = check_acked(&pair.standby.url("gw"), &tally).await;
    eprintln!(
        "switchover: {acked} acknowledged writes, all on the new primary; refused {:?}; \
         switchover took {:?}; service back {back:?} after the promotion",
        tally.refused,
        promoted.duration_since(started)
    );
    assert!(back < Duration::from_secs(10), "back after {back:?}");
    wait_listening(&pair.standby.url("gw")).await;
    // Reads and new writes go to the new primary.
    let (status, body) = gw
        .tool(
            "file_write",
            json!({"task_id": "ha", "path": "after.txt", "content": "on the new primary"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = gw
        .tool("file_read", json!({"task_id": "ha", "path": "after.txt"}))
        .await;
    assert_eq!(
        (status, body["content"].as_str()),
        (200, Some("on the new primary"))
    );
}

/// Issue #19 hands out a connection used within the last second without pinging it first
/// (`PING_AFTER_IDLE`), and keeps the batches' writing connection between batches: one that
/// lay idle across a restart must still be pinged, found broken and replaced, not used — every
/// read and write after the restart is answered as if nothing had happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_broken_while_idle_are_replaced_not_used() {
    let Some(pair) = PgPair::start() else { return };
    let (gw, _) = gateway(pair.primary.url("gw")).await;
    let gw = &gw;
    // A read of a file that does not exist asks Postgres (the hot layer has nothing).
    let missing = |k: usize| {
        gw.tool(
            "file_read",
            json!({"task_id": "idle", "path": format!("missing/{k}.txt")}),
        )
    };
    let writes = |round: usize| {
        futures::future::join_all((0..8).map(move |k| {
            gw.tool(
                "file_write",
                json!({"task_id": "idle", "path": format!("r{round}/f{k}.txt"),
                       "content": format!("round {round} write {k}")}),
            )
        }))
    };
    // The pool full (8 connections: the test gateway's `PG_MAX_CONNECTIONS`), all used, and
    // the batches' connection kept.
    for (status, body) in futures::future::join_all((0..16).map(missing)).await {
        assert_eq!(status, 404, "{body}");
    }
    for (status, body) in writes(0).await {
        assert_eq!(status, 200, "{body}");
    }
    pair.primary.stop("fast");
    pair.primary.start();
    // Longer than `PING_AFTER_IDLE`: every connection is due a ping.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    // One at a time: each takes the connection idle the longest, so all of them come round.
    for k in 16..32 {
        let (status, body) = missing(k).await;
        assert_eq!(
            status, 404,
            "a connection broken while idle was used: {body}"
        );
    }
    for (status, body) in writes(1).await {
        assert_eq!(
            status, 200,
            "a connection broken while idle was used: {body}"
        );
    }
}
