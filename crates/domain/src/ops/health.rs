//! Health: really pings both stores (concurrently, bounded), checks that Redis will not
//! evict leases, and that it still takes writes (a full Redis answers `PING` but refuses
//! every write: an outage).

use super::Service;
use crate::store::hot::MemoryUsage;
use std::time::Duration;

/// What `/health` reports.
#[derive(Debug, Clone)]
pub struct HealthReport {
    /// The hot store (Redis, or the in-process one) answered its ping in time.
    pub hot_ok: bool,
    /// The durable store (Postgres or SQLite) answered in time.
    pub durable_ok: bool,
    /// The hot store answers but refuses writes for lack of memory (a full Redis under
    /// `noeviction`); the reason is among the warnings.
    pub hot_full: bool,
    /// What an operator should fix though the stores answer (an eviction policy that can drop leases, a full Redis).
    pub warnings: Vec<String>,
}

impl Service {
    /// Pings both stores concurrently, each within `timeout`, and checks that Redis takes writes and will not evict leases.
    pub async fn health(&self, timeout: Duration) -> HealthReport {
        let hot = tokio::time::timeout(timeout, self.hot.ping());
        let durable = tokio::time::timeout(timeout, self.durable.ping());
        let policy = tokio::time::timeout(timeout, self.hot.maxmemory_policy());
        let full = tokio::time::timeout(timeout, self.hot.refuses_writes());
        let (hot, durable, policy, full) = tokio::join!(hot, durable, policy, full);
        let mut warnings = Vec::new();
        let full = match full {
            Ok(Ok(Some(why))) => {
                warnings.push(why);
                true
            }
            _ => false,
        };
        metrics::gauge!("mcp_backend_full", "backend" => self.hot.backend()).set(if full {
            1.0
        } else {
            0.0
        });
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
            hot_full: full,
            warnings,
        }
    }
}

impl Service {
    /// Sets the gauges that describe the backends (Redis memory and its ratio to the limit,
    /// whether it is full and refuses writes, outbox length, backend reachability) for a
    /// metrics scrape; a probe that fails or
    /// times out reports its backend down and leaves the other gauges as they were.
    pub async fn export_backend_gauges(&self, timeout: Duration) {
        let memory = tokio::time::timeout(timeout, self.hot.memory_usage());
        // A hot store without an outbox (embedded mode) has no `mcp_outbox_length` at all.
        let outbox = tokio::time::timeout(timeout, async {
            match self.hot.outbox() {
                Some(o) => o.outbox_length().await.map(Some),
                None => Ok(None),
            }
        });
        let durable = tokio::time::timeout(timeout, self.durable.ping());
        let full = tokio::time::timeout(timeout, self.hot.refuses_writes());
        let (memory, outbox, durable, full) = tokio::join!(memory, outbox, durable, full);
        if let Ok(Ok(full)) = full {
            metrics::gauge!("mcp_backend_full", "backend" => self.hot.backend())
                .set(if full.is_some() { 1.0 } else { 0.0 });
        }
        let hot_up = match memory {
            Ok(Ok(MemoryUsage { used, limit })) => {
                metrics::gauge!("mcp_redis_used_memory_bytes").set(used as f64);
                if limit > 0 {
                    metrics::gauge!("mcp_redis_memory_ratio").set(used as f64 / limit as f64);
                }
                true
            }
            _ => false,
        };
        if let Ok(Ok(Some(len))) = outbox {
            metrics::gauge!("mcp_outbox_length").set(len as f64);
        }
        let up = |ok: bool| if ok { 1.0 } else { 0.0 };
        metrics::gauge!("mcp_backend_up", "backend" => self.hot.backend()).set(up(hot_up));
        metrics::gauge!("mcp_backend_up", "backend" => self.durable.backend())
            .set(up(matches!(durable, Ok(Ok(())))));
    }
}
