//! Health: really pings both backends (concurrently, bounded) and checks that Redis will not
//! evict leases.

use super::Service;
use std::time::Duration;

/// What `/health` reports.
#[derive(Debug, Clone)]
pub struct HealthReport {
    pub redis_ok: bool,
    pub postgres_ok: bool,
    pub warnings: Vec<String>,
}

impl Service {
    pub async fn health(&self, timeout: Duration) -> HealthReport {
        let redis = tokio::time::timeout(timeout, self.hot.ping());
        let pg = tokio::time::timeout(timeout, self.pg.ping());
        let policy = tokio::time::timeout(timeout, self.hot.maxmemory_policy());
        let (redis, pg, policy) = tokio::join!(redis, pg, policy);
        let mut warnings = Vec::new();
        if let Ok(Ok(Some(p))) = policy
            && p != "noeviction"
        {
            warnings.push(format!(
                "redis maxmemory-policy is '{p}': leases may be evicted; set it to 'noeviction'"
            ));
        }
        HealthReport {
            redis_ok: matches!(redis, Ok(Ok(()))),
            postgres_ok: matches!(pg, Ok(Ok(()))),
            warnings,
        }
    }
}
