//! `GET /metrics`: the Prometheus text carries request counts and latency by route template
//! and status, lock conflicts, and the backend gauges refreshed on each scrape.

use crate::{ok, sample, scrape};
use mcp_testkit::TestGateway;
use serde_json::json;

#[tokio::test]
async fn requests_conflicts_and_backends_are_exported() {
    let gw = TestGateway::spawn().await;
    let write = json!({"task_id": "m", "path": "a.txt", "content": "x"});
    for _ in 0..3 {
        ok(gw.tool("file_write", write.clone()).await);
    }
    let claim = |agent: &str| json!({"task_id": "m", "path": "a.txt", "agent_id": agent});
    ok(gw.tool("claim_file", claim("coder")).await);
    assert_eq!(gw.tool("claim_file", claim("qa")).await.0, 409);
    assert_eq!(gw.get("/resources/tasks/nope/state").await.0, 404);
    for n in 0..2 {
        ok(gw
            .tool("log_step", json!({"task_id": "m", "step": {"n": n}}))
            .await);
    }

    let text = scrape(&gw).await;
    let requests = |route: &str, status: u16| {
        sample(
            &text,
            &format!(
                "mcp_http_requests_total{{method=\"POST\",route=\"{route}\",status=\"{status}\"}}"
            ),
        )
    };
    assert_eq!(requests("/tools/file_write", 200), Some(3.0), "{text}");
    assert_eq!(requests("/tools/claim_file", 200), Some(1.0));
    assert_eq!(requests("/tools/claim_file", 409), Some(1.0));
    // Route templates, never raw paths: one series for every task id.
    assert!(text.contains("route=\"/resources/tasks/{task_id}/state\",status=\"404\""));
    assert!(!text.contains("/resources/tasks/nope"));
    assert!(text.contains(
        "mcp_http_request_duration_seconds_bucket{method=\"POST\",route=\"/tools/file_write\",status=\"200\",le=\"0.005\"}"
    ));
    assert_eq!(
        sample(&text, "mcp_lock_conflicts_total{op=\"claim\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "mcp_backend_up{backend=\"redis\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "mcp_backend_up{backend=\"postgres\"}"),
        Some(1.0)
    );
    let ratio = sample(&text, "mcp_redis_memory_ratio").expect("memory ratio");
    assert!(ratio > 0.0 && ratio <= 1.0, "ratio {ratio}");
    // Each step waits in the outbox: no sync loop runs in a test gateway.
    assert!(sample(&text, "mcp_outbox_length").is_some_and(|n| n >= 2.0));
}

/// Issue #21 item 8: the checks of `promtool check metrics` (Prometheus' `promlint`) over a
/// text exposition, as a list of problems (empty when it passes). Every family has one
/// non-empty `HELP` and one `TYPE` before its samples, in one block; names and label names
/// are valid snake_case, with base units; counters end in `_total` and nothing else does;
/// `_count`/`_sum`/`_bucket` only as a histogram's (or summary's) series; histograms have
/// `le` buckets up to `+Inf` whose count is `_count`; every value is a number.
pub(crate) fn lint(text: &str) -> Vec<String> {
    use std::collections::{BTreeMap, BTreeSet};
    fn valid_name(n: &str) -> bool {
        let mut c = n.chars();
        c.next()
            .is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':')
            && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == ':')
    }
    fn valid_label(n: &str) -> bool {
        valid_name(n) && !n.contains(':') && !n.starts_with("__")
    }
    #[derive(Default)]
    struct Family {
        help: Vec<String>,
        kind: Vec<String>,
        samples: usize,
        /// Histogram: +Inf bucket and _count value, per label set (without `le`).
        inf: BTreeMap<String, f64>,
        count: BTreeMap<String, f64>,
    }
    let mut problems = Vec::new();
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut enter = |name: &str, order: &mut Vec<String>, problems: &mut Vec<String>| {
        if order.last().map(String::as_str) != Some(name) {
            if let Some(prev) = order.last() {
                done.insert(prev.clone());
            }
            if done.contains(name) {
                problems.push(format!("{name}: its lines are not in one block"));
            }
            order.push(name.to_owned());
        }
    };
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            enter(name, &mut order, &mut problems);
            families
                .entry(name.to_owned())
                .or_default()
                .help
                .push(help.trim().to_owned());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            enter(name, &mut order, &mut problems);
            let f = families.entry(name.to_owned()).or_default();
            if f.samples > 0 {
                problems.push(format!("line {n}: TYPE of {name} after its samples"));
            }
            f.kind.push(kind.trim().to_owned());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        // A sample: name{labels} value [timestamp].
        let (series, value) = match line.rfind('}') {
            Some(end) => (&line[..=end], line[end + 1..].trim()),
            None => line.split_once(' ').unwrap_or((line, "")),
        };
        let value = value.split_whitespace().next().unwrap_or("");
        let parsed = match value {
            "+Inf" => Some(f64::INFINITY),
            "-Inf" => Some(f64::NEG_INFINITY),
            "NaN" => Some(f64::NAN),
            v => v.parse::<f64>().ok(),
        };
        if parsed.is_none() {
            problems.push(format!("line {n}: value {value:?} is not a number"));
        }
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if !valid_name(name) {
            problems.push(format!("line {n}: invalid metric name {name:?}"));
        }
        let mut le = None;
        let mut others = Vec::new();
        for pair in labels.split("\",").filter(|p| !p.is_empty()) {
            let Some((k, v)) = pair.split_once("=\"") else {
                problems.push(format!("line {n}: malformed label {pair:?}"));
                continue;
            };
            let v = v.trim_end_matches('"');
            if !valid_label(k) {
                problems.push(format!("line {n}: invalid label name {k:?}"));
            }
            if k.chars().any(|c| c.is_ascii_uppercase()) {
                problems.push(format!("line {n}: label {k} is not snake_case"));
            }
            if k == "le" {
                le = Some(v.to_owned());
            } else {
                others.push(format!("{k}={v}"));
            }
        }
        let key = others.join(",");
        // The family: the name itself, or a histogram's/summary's series.
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                let base = name.strip_suffix(s)?;
                let f = families.get(base)?;
                f.kind
                    .iter()
                    .any(|k| k == "histogram" || k == "summary")
                    .then(|| base.to_owned())
            })
            .unwrap_or_else(|| name.to_owned());
        enter(&family, &mut order, &mut problems);
        let Some(f) = families.get_mut(&family) else {
            problems.push(format!(
                "line {n}: sample of {family} before its HELP and TYPE"
            ));
            families.entry(family).or_default().samples += 1;
            continue;
        };
        f.samples += 1;
        if f.help.is_empty() || f.kind.is_empty() {
            problems.push(format!(
                "line {n}: sample of {family} before its HELP and TYPE"
            ));
        }
        if f.kind.iter().any(|k| k == "histogram") {
            if name.ends_with("_bucket") {
                match le.as_deref() {
                    None => problems.push(format!("line {n}: bucket of {family} without le")),
                    Some("+Inf") => {
                        f.inf.insert(key, parsed.unwrap_or(0.0));
                    }
                    Some(b) if b.parse::<f64>().is_err() => {
                        problems.push(format!("line {n}: le={b:?} is not a number"));
                    }
                    Some(_) => {}
                }
            } else if name.ends_with("_count") {
                f.count.insert(key, parsed.unwrap_or(0.0));
            } else if !name.ends_with("_sum") {
                problems.push(format!("line {n}: {name} is not a histogram series"));
            }
        }
    }
    const NON_BASE_UNITS: [&str; 12] = [
        "_milliseconds",
        "_ms",
        "_microseconds",
        "_nanoseconds",
        "_minutes",
        "_hours",
        "_days",
        "_kilobytes",
        "_megabytes",
        "_gigabytes",
        "_percent",
        "_celsius",
    ];
    for (name, f) in &families {
        if !valid_name(name) {
            problems.push(format!("{name}: invalid metric name"));
        }
        if name.chars().any(|c| c.is_ascii_uppercase()) {
            problems.push(format!("{name}: not snake_case"));
        }
        match f.help.as_slice() {
            [] => problems.push(format!("{name}: no HELP")),
            [h] if h.is_empty() => problems.push(format!("{name}: empty HELP")),
            [_] => {}
            _ => problems.push(format!("{name}: HELP given {} times", f.help.len())),
        }
        let kind = match f.kind.as_slice() {
            [] => {
                problems.push(format!("{name}: no TYPE"));
                ""
            }
            [k] => k.as_str(),
            _ => {
                problems.push(format!("{name}: TYPE given {} times", f.kind.len()));
                f.kind[0].as_str()
            }
        };
        if !["", "counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
            problems.push(format!("{name}: unknown TYPE {kind:?}"));
        }
        match (kind, name.ends_with("_total")) {
            ("counter", false) => problems.push(format!("{name}: counter names end in _total")),
            (k, true) if k != "counter" => {
                problems.push(format!("{name}: only counters end in _total"))
            }
            _ => {}
        }
        if ["_count", "_sum", "_bucket"]
            .iter()
            .any(|s| name.ends_with(s))
        {
            problems.push(format!("{name}: _count/_sum/_bucket are reserved suffixes"));
        }
        if let Some(u) = NON_BASE_UNITS.iter().find(|u| name.contains(*u)) {
            problems.push(format!("{name}: {u} is not a base unit"));
        }
        if kind == "histogram" {
            if f.inf.is_empty() {
                problems.push(format!("{name}: histogram without a +Inf bucket"));
            }
            for (labels, inf) in &f.inf {
                if f.count.get(labels) != Some(inf) {
                    problems.push(format!("{name}{{{labels}}}: +Inf bucket is not _count"));
                }
            }
        }
    }
    problems
}

#[test]
fn the_lint_finds_what_promtool_finds() {
    let good = "# HELP a_total Things.\n# TYPE a_total counter\na_total{x=\"1\"} 3\n\
                # HELP h_seconds Time.\n# TYPE h_seconds histogram\n\
                h_seconds_bucket{le=\"0.5\"} 1\nh_seconds_bucket{le=\"+Inf\"} 2\n\
                h_seconds_sum 0.7\nh_seconds_count 2\n";
    assert_eq!(lint(good), Vec::<String>::new());
    for (bad, why) in [
        ("# TYPE a_total counter\na_total 1\n", "no HELP"),
        ("# HELP a_total x\na_total 1\n", "no TYPE"),
        ("# HELP a x\n# TYPE a counter\na 1\n", "end in _total"),
        (
            "# HELP g_total x\n# TYPE g_total gauge\ng_total 1\n",
            "only counters",
        ),
        ("# HELP t_ms x\n# TYPE t_ms gauge\nt_ms 1\n", "base unit"),
        (
            "# HELP a_total x\n# TYPE a_total counter\na_total{Bad=\"1\"} 1\n",
            "snake_case",
        ),
        (
            "# HELP a_total x\n# TYPE a_total counter\na_total one\n",
            "not a number",
        ),
        (
            "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",
            "+Inf",
        ),
    ] {
        let problems = lint(bad);
        assert!(
            problems.iter().any(|p| p.contains(why)),
            "{bad:?} should fail with {why:?}: {problems:?}"
        );
    }
}

/// Issue #21 item 8: every family of a real scrape passes the lint (every family lacked
/// HELP: promtool exited 3), after traffic of every kind, including a refused claim and a
/// 404; and every family of `METRICS`, recorded once, renders with its HELP.
#[tokio::test]
async fn the_exposition_passes_the_promtool_lint() {
    let gw = TestGateway::spawn().await;
    let write = json!({"task_id": "m", "path": "a.txt", "content": "x"});
    ok(gw.tool("file_write", write).await);
    let claim = |agent: &str| json!({"task_id": "m", "path": "a.txt", "agent_id": agent});
    ok(gw.tool("claim_file", claim("coder")).await);
    assert_eq!(gw.tool("claim_file", claim("qa")).await.0, 409);
    assert_eq!(gw.get("/resources/tasks/nope/state").await.0, 404);
    let text = scrape(&gw).await;
    assert!(text.contains("# HELP mcp_http_requests_total "), "{text}");
    assert_eq!(lint(&text), Vec::<String>::new(), "{text}");

    // Every family the workspace declares, recorded once (this process runs no sync loop).
    use mcp_process::{METRICS, MetricKind};
    for &(name, kind, _) in METRICS {
        match kind {
            MetricKind::Counter => metrics::counter!(name).increment(1),
            MetricKind::Gauge => metrics::gauge!(name).set(1.0),
            MetricKind::Histogram => metrics::histogram!(name).record(1.0),
        }
    }
    let text = scrape(&gw).await;
    assert_eq!(lint(&text), Vec::<String>::new(), "{text}");
    for &(name, _, _) in METRICS {
        assert!(text.contains(&format!("# HELP {name} ")), "{name}: {text}");
    }
}

/// Every metric the sources record is declared in `METRICS` (so it has HELP text).
#[test]
fn every_recorded_metric_is_declared() {
    use mcp_process::METRICS;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut stack = vec![root.join("crates")];
    let mut used = std::collections::BTreeSet::new();
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if !path.ends_with("target") {
                    stack.push(path);
                }
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for macro_name in ["counter!(", "gauge!(", "histogram!("] {
                for (at, _) in text.match_indices(&format!("metrics::{macro_name}")) {
                    let rest = text[at..].split_once('(').unwrap().1.trim_start();
                    if let Some(lit) = rest.strip_prefix('"') {
                        let name = lit.split('"').next().unwrap();
                        used.insert((name.to_owned(), path.display().to_string()));
                    }
                }
            }
        }
    }
    assert!(used.len() > 20, "the scan finds the metrics: {used:?}");
    for (name, file) in used {
        assert!(
            METRICS.iter().any(|(n, _, _)| *n == name),
            "{name} (recorded in {file}) is not declared in mcp_process::METRICS"
        );
    }
}
