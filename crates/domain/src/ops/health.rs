//! Health: really pings both stores (concurrently, bounded) and checks that Redis will not
//! evict leases.

use super::Service;
use std::time::Duration;

/// What `/health` reports.
#[derive(Debug, Clone)]
pub struct HealthReport {
    pub hot_ok: bool,
    pub durable_ok: bool,
    pub warnings: Vec<String>,
}

impl Service {
    pub async fn health(&self, timeout: Duration) -> HealthReport {
        let hot = tokio::time::timeout(timeout, self.hot.ping());
        let durable = tokio::time::timeout(timeout, self.durable.ping());
        let policy = tokio::time::timeout(timeout, self.hot.maxmemory_policy());
        let (hot, durable, policy) = tokio::join!(hot, durable, policy);
        let mut warnings = Vec::new();
        if let Ok(Ok(Some(p))) = policy
            && p != "noeviction"
        {
            warnings.push(format!(
                "redis maxmemory-policy is '{p}': leases may be evicted; set it to 'noeviction'"
            ));
        }
        HealthReport {
            hot_ok: matches!(hot, Ok(Ok(()))),
            durable_ok: matches!(durable, Ok(Ok(()))),
            warnings,
        }
    }
}

impl Service {
    /// Sets the gauges that describe the backends (Redis memory and its ratio to the limit,
    /// outbox length, backend reachability) for a metrics scrape; a probe that fails or
    /// times out reports its backend down and leaves the other gauges as they were.
    pub async fn export_backend_gauges(&self, timeout: Duration) {
        let memory = tokio::time::timeout(timeout, self.hot.memory_usage());
        let outbox = tokio::time::timeout(timeout, self.hot.outbox_length());
        let durable = tokio::time::timeout(timeout, self.durable.ping());
        let (memory, outbox, durable) = tokio::join!(memory, outbox, durable);
        let hot_up = match memory {
            Ok(Ok((used, limit))) => {
                metrics::gauge!("mcp_redis_used_memory_bytes").set(used as f64);
                if limit > 0 {
                    metrics::gauge!("mcp_redis_memory_ratio").set(used as f64 / limit as f64);
                }
                true
            }
            _ => false,
        };
        if let Ok(Ok(len)) = outbox {
            metrics::gauge!("mcp_outbox_length").set(len as f64);
        }
        let up = |ok: bool| if ok { 1.0 } else { 0.0 };
        metrics::gauge!("mcp_backend_up", "backend" => self.hot.backend()).set(up(hot_up));
        metrics::gauge!("mcp_backend_up", "backend" => self.durable.backend())
            .set(up(matches!(durable, Ok(Ok(())))));
    }
}
