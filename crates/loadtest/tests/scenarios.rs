//! Each scenario, short, against a real gateway (in-process, over its own database and key
//! prefix, with the sync loops running), with its audit passing; and corrupted audit inputs
//! that the audit must refuse, so a clean audit means something.

use std::time::Duration;

use clap::Parser;
use mcp_loadtest::audit::{AuditOptions, audit};
use mcp_loadtest::client::LeaseRecord;
use mcp_loadtest::{Config, Gateway, Ledger, Report, run};
use mcp_testkit::TestGateway;
use tokio_util_cancel::Cancel;

mod tokio_util_cancel {
    /// Stops the sync loops when the test ends.
    pub(crate) struct Cancel(pub(crate) tokio::task::JoinHandle<()>);
    impl Drop for Cancel {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
}

/// A gateway with the sync loops running (push every 100 ms, so the audit need not wait 5 s)
/// and no per-agent rate limit (with authentication off every request here is one agent, the
/// client address).
async fn gateway() -> (TestGateway, Cancel) {
    with_loops(TestGateway::spawn_with(|c| c.rate_limit_requests = 0).await)
}

fn with_loops(gw: TestGateway) -> (TestGateway, Cancel) {
    let mut settings = mcp_sync::SyncSettings::default();
    settings.push.interval = Duration::from_millis(100);
    let loops = mcp_sync::spawn(
        gw.stores.durable.clone(),
        gw.stores.hot.clone(),
        settings,
        Default::default(),
    );
    (gw, Cancel(loops))
}

/// A quiet, audited run with `flags` (a command line, split at spaces) and `more` flags (values
/// that are not literals); it must pass its audit without errors.
async fn run_ok(gw: &TestGateway, flags: &str, more: &[&str]) -> (Report, Ledger) {
    let mut argv = vec![
        "mcp-loadtest",
        "--quiet",
        "--base",
        &gw.base,
        "--audit-wait",
        "15",
    ];
    argv.extend(flags.split(' '));
    argv.extend_from_slice(more);
    let cfg = Config::try_parse_from(argv).expect("flags");
    let (report, ledger) = run(cfg).await.expect("run");
    let text = mcp_loadtest::render(&report);
    // Issue #21 item 10: human values (it printed `Some(0.0)` and `None MiB`).
    assert!(
        !text.contains("Some(") && !text.contains("None"),
        "Rust debug output in the summary:\n{text}"
    );
    assert!(text.contains("gateway RSS n/a"), "{text}");
    let audit = report.audit.as_ref().expect("audited");
    assert!(audit.ok, "audit failed:\n{text}");
    assert!(report.requests > 0, "{text}");
    assert!(report.errors.is_empty(), "errors:\n{text}");
    (report, ledger)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waves_audit_clean_counting_steps_in_postgres() {
    let (gw, _loops) = gateway().await;
    let db = gw.db.url.clone();
    let (report, ledger) = run_ok(
        &gw,
        "--scenario waves --waves 2 --tasks 2 --steps 3",
        &["--database-url", &db],
    )
    .await;
    let audit = report.audit.unwrap();
    assert_eq!(audit.steps_via, "postgres");
    // 2 waves x 2 tasks x 2 agents x 3 steps; each agent writes then edits its file.
    assert_eq!(audit.steps_checked, 24);
    assert_eq!(ledger.writes.len(), 16);
    assert_eq!(ledger.leases.len(), 8);
    for tool in [
        "join_collaboration",
        "claim_file",
        "file_write",
        "file_read",
        "file_edit",
        "log_step",
        "release_file",
        "leave_collaboration",
    ] {
        assert!(report.tools.contains_key(tool), "{tool} missing");
    }
}

/// With authentication on, every call carries the bearer token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waves_with_a_bearer_token() {
    let (gw, _loops) =
        with_loops(TestGateway::spawn_secured_with(|c| c.rate_limit_requests = 0).await);
    let token = gw.token("loadtest", &["*"], mcp_domain::Role::Admin);
    let db = gw.db.url.clone();
    let (report, _) = run_ok(
        &gw,
        "--scenario waves --waves 1 --tasks 2 --steps 2",
        &["--token", &token, "--database-url", &db],
    )
    .await;
    assert_eq!(report.audit.unwrap().steps_checked, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_audit_clean_reading_steps_through_the_gateway() {
    let (gw, _loops) = gateway().await;
    let (report, ledger) = run_ok(&gw, "--scenario steady --agents 20 --tasks 3 --rate 5 --duration 2 --connections 8 --payload 512", &[])
    .await;
    assert_eq!(report.audit.as_ref().unwrap().steps_via, "gateway");
    assert!(!ledger.steps.is_empty());
    assert!(report.metrics_after.outbox_length.is_some());
}

/// Issue #20: the gateway over a Redis Cluster of three primaries (`redis+cluster://`): a
/// short steady run, steps counted in Postgres after the push loop drained every slot's
/// outbox, ends with a clean audit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_over_a_redis_cluster_audits_clean() {
    let cluster = mcp_testkit::PrivateCluster::start()
        .await
        .expect("redis-server and redis-cli on the PATH");
    let redis = mcp_testkit::TestRedis {
        url: cluster.url(),
        prefix: format!("lt{}:", uuid::Uuid::new_v4().simple()),
    };
    let (gw, _loops) = with_loops(
        TestGateway::spawn_on(mcp_testkit::TestDb::create().await, redis, |c| {
            c.rate_limit_requests = 0
        })
        .await,
    );
    let db = gw.db.url.clone();
    let (report, ledger) = run_ok(&gw, "--scenario steady --agents 20 --tasks 6 --rate 5 --duration 2 --connections 8 --payload 512", &["--database-url", &db])
    .await;
    assert_eq!(report.audit.as_ref().unwrap().steps_via, "postgres");
    assert!(!ledger.steps.is_empty());
    // The metrics scrape reads every primary's memory (a cluster answers `INFO` per node).
    assert!(report.redis_memory_ratio_max.is_some());
    drop(gw);
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contention_counts_conflicts_apart_and_fences_check_out() {
    let (gw, _loops) = gateway().await;
    let (report, ledger) = run_ok(
        &gw,
        "--scenario contention --agents 8 --files 2 --duration 1.5 --payload 256",
        &[],
    )
    .await;
    assert!(ledger.leases.len() > 1);
    assert!(ledger.writes.iter().all(|w| w.fence.is_some()));
    assert!(report.audit.unwrap().leases_checked > 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_receive_every_step_once() {
    let (gw, _loops) = gateway().await;
    // 6 of the 20 watchers over WebSockets (`GET /ws`), the rest over SSE.
    let (report, _) = run_ok(&gw, "--scenario watchers --watchers 20 --ws-watchers 6 --idle 0.2 --connections 4 --tasks 2 --agents 4 --rate 10 --duration 1 --step-bytes 100", &[])
    .await;
    let w = report.watchers.unwrap();
    assert_eq!(w.connected, 20);
    assert!(w.steps_written > 0);
    assert_eq!(w.deliveries_missing, 0);
    assert_eq!(w.deliveries_received, w.deliveries_expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_scenario_runs_each_op() {
    let (gw, _loops) = gateway().await;
    for (op, tool) in [
        ("file-read", "file_read"),
        ("log-step", "log_step"),
        ("claim-release", "release_file"),
        ("file-write", "file_write"),
    ] {
        let (report, _) = run_ok(
            &gw,
            "--scenario tool --connections 4 --tasks 2 --duration 0.5",
            &["--op", op],
        )
        .await;
        assert!(report.tools[tool].count > 0, "{op}");
    }
}

/// The audit fails on: a version acknowledged above what is stored, a step never logged, two
/// holders whose leases overlap, and a write acknowledged with a stale fence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_audit_inputs_fail_the_audit() {
    let (gw, _loops) = gateway().await;
    let db = gw.db.url.clone();
    let (_, ledger) = run_ok(
        &gw,
        "--scenario waves --waves 1 --tasks 2 --steps 2",
        &["--database-url", &db],
    )
    .await;
    let client = Gateway::new(&gw.base, None, 4).unwrap();
    let opts = AuditOptions {
        database_url: Some(db.clone()),
        wait: Duration::from_millis(500),
    };
    assert!(
        audit(&client, &ledger, &opts).await.ok,
        "the honest ledger passes"
    );

    // The audit must refuse `bad`, with a failure for which `says` holds.
    let refuses = async |bad: &Ledger, says: &dyn Fn(&String) -> bool| {
        let r = audit(&client, bad, &opts).await;
        assert!(!r.ok);
        assert!(r.failures.iter().any(says), "{:?}", r.failures);
    };

    // A fabricated acknowledged version, higher than the stored one.
    let mut bad = ledger.clone();
    bad.writes[0].version += 5;
    refuses(&bad, &|f| f.contains("readable version")).await;

    // A step id nobody logged.
    let mut bad = ledger.clone();
    let (task, ids) = bad.steps.iter_mut().next().unwrap();
    ids.push("1-0".into());
    let task = task.clone();
    refuses(&bad, &|f| f.starts_with(&task) && f.contains("1-0")).await;

    // A second holder granted before the first one released.
    let mut bad = ledger.clone();
    let first = bad.leases[0].clone();
    bad.leases.push(LeaseRecord {
        owner: "intruder".into(),
        fence: first.fence + 1_000,
        claim_sent_us: first.claim_ack_us,
        claim_ack_us: first.claim_ack_us + 1,
        release_sent_us: None,
        ..first
    });
    refuses(&bad, &|f| f.contains("was granted fence")).await;

    // A later version acknowledged with a lower fence.
    let mut bad = ledger.clone();
    let mut w = bad
        .writes
        .iter()
        .find(|w| w.fence.is_some())
        .unwrap()
        .clone();
    w.version += 1;
    w.fence = Some(w.fence.unwrap() - 1);
    bad.writes.push(w);
    refuses(&bad, &|f| f.contains("stale fence")).await;
}
