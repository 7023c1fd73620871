//! Scraping the gateway's `GET /metrics` (Prometheus text) for the numbers the verdict needs.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::client::Gateway;

/// Samples by `name{labels}` as written in the exposition (labels verbatim), plus the summed
/// value under the bare name when a metric has several series.
pub type Samples = BTreeMap<String, f64>;

/// The samples of a Prometheus text exposition (comments and unparsable lines skipped).
pub fn parse(text: &str) -> Samples {
    let mut out = Samples::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(v) = value.trim().parse::<f64>() else {
            continue;
        };
        let name = series.split('{').next().unwrap_or(series);
        out.insert(series.to_string(), v);
        if series != name {
            *out.entry(name.to_string()).or_default() += v;
        }
    }
    out
}

/// `GET /metrics`, parsed; empty when the scrape fails.
pub async fn scrape(gw: &Gateway) -> Samples {
    match gw.get_builder("/metrics").send().await {
        Ok(r) if r.status().is_success() => parse(&r.text().await.unwrap_or_default()),
        _ => Samples::new(),
    }
}

/// The backend numbers of one scrape.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Snapshot {
    /// `mcp_sync_lag_seconds{loop="push"}`: age of the newest change the push loop handled.
    pub sync_lag_push_seconds: Option<f64>,
    /// `mcp_sync_lag_seconds{loop="pull"}`: age of the newest change the pull loop handled.
    pub sync_lag_pull_seconds: Option<f64>,
    /// `mcp_outbox_length`: entries in the sync outbox (none in the embedded mode).
    pub outbox_length: Option<f64>,
    /// `mcp_redis_memory_ratio`: memory used by Redis over its `maxmemory`, 0-1.
    pub redis_memory_ratio: Option<f64>,
    /// `mcp_lock_conflicts_total`, all operations: claims and writes refused because
    /// another owner held the lease.
    pub lock_conflicts_total: Option<f64>,
    /// `mcp_live_watchers`: registered live watchers (SSE, WebSocket, MCP subscriptions).
    pub live_watchers: Option<f64>,
}

impl Snapshot {
    /// Picks the numbers out of `s` (`None` for a metric the gateway did not export).
    pub fn of(s: &Samples) -> Snapshot {
        Snapshot {
            sync_lag_push_seconds: s.get("mcp_sync_lag_seconds{loop=\"push\"}").copied(),
            sync_lag_pull_seconds: s.get("mcp_sync_lag_seconds{loop=\"pull\"}").copied(),
            outbox_length: s.get("mcp_outbox_length").copied(),
            redis_memory_ratio: s.get("mcp_redis_memory_ratio").copied(),
            lock_conflicts_total: s.get("mcp_lock_conflicts_total").copied(),
            live_watchers: s.get("mcp_live_watchers").copied(),
        }
    }

    /// The larger of the two loops' lags.
    pub fn max_lag(&self) -> Option<f64> {
        match (self.sync_lag_push_seconds, self.sync_lag_pull_seconds) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_series_and_sums_by_name() {
        let s = parse(
            "# TYPE mcp_sync_lag_seconds gauge\nmcp_sync_lag_seconds{loop=\"push\"} 0.5\nmcp_sync_lag_seconds{loop=\"pull\"} 0.25\nmcp_outbox_length 3\n",
        );
        let snap = Snapshot::of(&s);
        assert_eq!(snap.sync_lag_push_seconds, Some(0.5));
        assert_eq!(snap.max_lag(), Some(0.5));
        assert_eq!(snap.outbox_length, Some(3.0));
        assert_eq!(s["mcp_sync_lag_seconds"], 0.75);
    }
}
