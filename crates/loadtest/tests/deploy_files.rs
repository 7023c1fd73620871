//! The alert rules (`deploy/prometheus/alerts.yml`) and the Grafana dashboard
//! (`deploy/grafana/mcp-gateway.json`) name only metrics the code emits, and cover the seed's
//! rollback triggers. The emitted names are read from the sources: every `"mcp_…"` literal on a
//! line that calls `counter!`, `gauge!` or `histogram!` (histograms also as `_bucket`, `_sum`,
//! `_count`). When `promtool` is installed the rules are also checked by it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `mcp_[a-z0-9_]+` tokens of a text.
fn names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(off) = text[i..].find("mcp_") {
        let start = i + off;
        let word_start =
            start == 0 || !(b[start - 1].is_ascii_alphanumeric() || b[start - 1] == b'_');
        let mut end = start;
        while end < b.len()
            && (b[end].is_ascii_lowercase() || b[end].is_ascii_digit() || b[end] == b'_')
        {
            end += 1;
        }
        if word_start {
            out.insert(text[start..end].to_string());
        }
        i = end.max(start + 1);
    }
    out
}

/// Every series name the gateway and the sync service can expose.
fn emitted() -> BTreeSet<String> {
    let mut files = Vec::new();
    for krate in std::fs::read_dir(root().join("crates")).unwrap().flatten() {
        if krate.file_name() == "loadtest" {
            continue;
        }
        let src = krate.path().join("src");
        if src.is_dir() {
            rust_files(&src, &mut files);
        }
    }
    let mut out = BTreeSet::new();
    for f in files {
        for line in std::fs::read_to_string(f).unwrap().lines() {
            let kind = ["counter!(", "gauge!(", "histogram!("]
                .into_iter()
                .find(|m| line.contains(m));
            let Some(kind) = kind else { continue };
            for n in names(line) {
                if kind == "histogram!(" {
                    for s in ["_bucket", "_sum", "_count"] {
                        out.insert(format!("{n}{s}"));
                    }
                }
                out.insert(n);
            }
        }
    }
    out
}

#[test]
fn alert_rules_and_dashboard_use_emitted_metrics_only() {
    let emitted = emitted();
    for must in [
        "mcp_http_requests_total",
        "mcp_sync_lag_seconds",
        "mcp_redis_memory_ratio",
    ] {
        assert!(
            emitted.contains(must),
            "source scan found no {must}: {emitted:?}"
        );
    }

    let alerts = std::fs::read_to_string(root().join("deploy/prometheus/alerts.yml")).unwrap();
    let dashboard_text =
        std::fs::read_to_string(root().join("deploy/grafana/mcp-gateway.json")).unwrap();
    let dashboard: serde_json::Value =
        serde_json::from_str(&dashboard_text).expect("dashboard is JSON");

    // Every query of the dashboard, and the names in them.
    let mut exprs = Vec::new();
    for p in dashboard["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().expect("targets") {
            exprs.push(t["expr"].as_str().expect("expr").to_string());
        }
    }
    assert!(exprs.len() >= 10, "{} queries", exprs.len());
    let mut used = names(&alerts);
    for e in &exprs {
        used.extend(names(e));
    }
    let unknown: Vec<_> = used.difference(&emitted).collect();
    assert!(unknown.is_empty(), "not emitted by the code: {unknown:?}");

    // The rollback triggers and the stall rule are all there.
    for (alert, metric) in [
        ("McpGatewayErrorRateHigh", "mcp_http_requests_total"),
        (
            "McpGatewayLatencyP95High",
            "mcp_http_request_duration_seconds_bucket",
        ),
        ("McpRedisMemoryHigh", "mcp_redis_memory_ratio"),
        ("McpSyncLagHigh", "mcp_sync_lag_seconds"),
        ("McpSyncLoopStalled", "mcp_sync_last_run_timestamp_seconds"),
    ] {
        let at = alerts
            .find(&format!("alert: {alert}"))
            .unwrap_or_else(|| panic!("{alert} missing"));
        let rule = &alerts[at..];
        let rule = &rule[..rule[1..].find("- alert:").map_or(rule.len(), |i| i + 1)];
        assert!(rule.contains(metric), "{alert} does not use {metric}");
    }
    for threshold in ["> 0.05", "> 0.5", "> 0.8", "> 10"] {
        assert!(alerts.contains(threshold), "no threshold {threshold}");
    }

    if let Ok(out) = std::process::Command::new("promtool")
        .args(["check", "rules"])
        .arg(root().join("deploy/prometheus/alerts.yml"))
        .output()
    {
        assert!(
            out.status.success(),
            "promtool: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
