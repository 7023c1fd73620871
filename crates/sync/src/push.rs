//! The push loop: Redis outbox → Postgres, losing nothing and writing nothing twice. Only a
//! hot store with an outbox ([`mcp_domain::store::hot::HotBackend::outbox`]) has one to push: the
//! embedded mode's in-process store has none (its steps and audit records are written to
//! SQLite by the call that acknowledges them), and there the loop does nothing.
//!
//! One iteration reads a batch through the consumer group — first this consumer's own
//! unacknowledged entries (a commit that failed), then entries another consumer left pending
//! past `claim_idle` (a crashed pusher's), then new ones — checks every entry on its own,
//! writes the batch in one transaction, and only after the commit acknowledges and deletes the
//! entries. Inserts are idempotent, so an entry delivered twice (claimed while its first
//! consumer was only slow) is written once. A consumer that restarted pushers left behind,
//! with nothing pending and idle past `claim_idle`, is removed from the group. A malformed entry goes to `dead_letters`; if the
//! transaction still fails for a reason other than an outage, each entry is written on its
//! own and those Postgres refuses become dead letters, so one poison entry never blocks its
//! batch.

use crate::Result;
use crate::decode::{Decoded, dead_letter, decode, entry_millis};
use mcp_domain::DomainError;
use mcp_domain::store::durable::OutboxBatch;
use mcp_domain::store::hot::{Outbox, OutboxDepth, OutboxEntry};
use mcp_domain::store::{Durable, Hot};
use std::collections::HashSet;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How the push loop reads and how often.
#[derive(Debug, Clone)]
pub struct PushSettings {
    /// Consumer group on the outbox, shared by every sync process.
    pub group: String,
    /// This process's name in the group (unique per process).
    pub consumer: String,
    /// Most entries one transaction writes; a backlog past it triggers an early run.
    pub batch_size: usize,
    /// Time between runs when the backlog is small.
    pub interval: Duration,
    /// Entries pending in another consumer for this long are taken over.
    pub claim_idle: Duration,
}

/// What one iteration did.
#[derive(Debug, Clone, Default)]
pub struct PushOutcome {
    /// Entries read (own pending + claimed + new).
    pub read: usize,
    /// Of those, taken over from another consumer.
    pub claimed: usize,
    /// Steps and audit records written (or already present).
    pub persisted: usize,
    /// Entries sent to `dead_letters`.
    pub dead: usize,
    /// Dead consumers removed from the group (nothing pending, idle past `claim_idle`).
    pub consumers_removed: usize,
    /// The outbox after the iteration.
    pub depth: OutboxDepth,
}

/// The push loop. Step it with [`PushLoop::try_run_once`] or run it with [`PushLoop::run`].
pub struct PushLoop {
    durable: Durable,
    hot: Hot,
    settings: PushSettings,
    group_ready: bool,
    /// When dead consumers were last looked for (at most once per `claim_idle`).
    last_reap: Option<std::time::Instant>,
}

fn is_outage(e: &DomainError) -> bool {
    matches!(e, DomainError::Unavailable { .. })
}

impl PushLoop {
    /// A push loop from `hot`'s outbox to `durable`; it creates its consumer group on its
    /// first iteration.
    pub fn new(durable: Durable, hot: Hot, settings: PushSettings) -> PushLoop {
        PushLoop {
            durable,
            hot,
            settings,
            group_ready: false,
            last_reap: None,
        }
    }

    /// The settings it was built with.
    pub fn settings(&self) -> &PushSettings {
        &self.settings
    }

    /// The hot store's outbox; an error for a store without one (nothing to push).
    fn outbox(&self) -> Result<&dyn Outbox> {
        self.hot.outbox().ok_or_else(|| {
            DomainError::Internal(
                "the hot store has no outbox: its records are written to the durable store directly"
                    .into(),
            )
            .into()
        })
    }

    async fn read_batch(&mut self) -> Result<(Vec<OutboxEntry>, usize)> {
        let s = &self.settings;
        let outbox = self.outbox()?;
        let mut entries = outbox
            .outbox_read_pending(&s.group, &s.consumer, s.batch_size)
            .await?;
        let mut claimed = 0;
        if entries.len() < s.batch_size {
            let c = outbox
                .outbox_claim_idle(
                    &s.group,
                    &s.consumer,
                    s.claim_idle,
                    s.batch_size - entries.len(),
                )
                .await?;
            claimed = c.len();
            entries.extend(c);
        }
        if entries.len() < s.batch_size {
            let fresh = outbox
                .outbox_read_new(&s.group, &s.consumer, s.batch_size - entries.len())
                .await?;
            entries.extend(fresh);
        }
        let mut seen = HashSet::new();
        entries.retain(|e| seen.insert(e.id.clone()));
        Ok((entries, claimed))
    }

    /// One iteration: read, persist, acknowledge. On an outage nothing is acknowledged and
    /// the entries are read again next time.
    pub async fn try_run_once(&mut self) -> Result<PushOutcome> {
        if !self.group_ready {
            self.outbox()?
                .outbox_create_group(&self.settings.group)
                .await?;
            self.group_ready = true;
        }
        let (entries, claimed) = self.read_batch().await?;
        let mut outcome = PushOutcome {
            read: entries.len(),
            claimed,
            consumers_removed: self.remove_dead_consumers().await?,
            ..PushOutcome::default()
        };
        let oldest_ms = entries.iter().filter_map(|e| entry_millis(&e.id)).min();
        if !entries.is_empty() {
            let decoded: Vec<Decoded> = entries.iter().map(decode).collect();
            let mut batch = OutboxBatch::default();
            for d in &decoded {
                match d {
                    Decoded::Step(s) => batch.steps.push(s.clone()),
                    Decoded::Audit(a) => batch.audits.push(a.clone()),
                    Decoded::Dead(x) => batch.dead.push(x.clone()),
                }
            }
            match self.durable.persist_outbox_batch(&batch).await {
                Ok(()) => {
                    outcome.persisted = batch.steps.len() + batch.audits.len();
                    outcome.dead = batch.dead.len();
                }
                Err(e) if is_outage(&e) => return Err(e.into()),
                Err(e) => {
                    tracing::warn!(error = %e, entries = entries.len(),
                        "outbox batch refused; writing its entries one by one");
                    let (persisted, dead) = self.persist_one_by_one(&entries, &decoded).await?;
                    outcome.persisted = persisted;
                    outcome.dead = dead;
                }
            }
            let ids: Vec<String> = entries.iter().map(|e| e.id.clone()).collect();
            self.outbox()?
                .outbox_ack(&self.settings.group, &ids)
                .await?;
        }
        outcome.depth = self.outbox()?.outbox_depth(&self.settings.group).await?;
        record_push_metrics(&outcome, oldest_ms);
        // Routine batches are in the metrics;
        // the log tells of takeovers and dead letters.
        if outcome.claimed > 0 || outcome.dead > 0 {
            tracing::info!(
                batch = outcome.read,
                claimed = outcome.claimed,
                persisted = outcome.persisted,
                dead_letters = outcome.dead,
                outbox_length = outcome.depth.length,
                outbox_pending = outcome.depth.pending,
                "sync push"
            );
        } else if outcome.read > 0 {
            tracing::debug!(
                batch = outcome.read,
                persisted = outcome.persisted,
                "sync push"
            );
        }
        Ok(outcome)
    }

    /// Removes the group's dead consumers (every restart of a pusher leaves its consumer
    /// behind): those with nothing pending, idle past `claim_idle` — by then anything they
    /// held has been claimed. Looked for at most once per `claim_idle`.
    async fn remove_dead_consumers(&mut self) -> Result<usize> {
        let s = &self.settings;
        if self.last_reap.is_some_and(|at| at.elapsed() < s.claim_idle) {
            return Ok(0);
        }
        let removed = self
            .outbox()?
            .outbox_remove_dead_consumers(&s.group, &s.consumer, s.claim_idle)
            .await?;
        self.last_reap = Some(std::time::Instant::now());
        if !removed.is_empty() {
            tracing::info!(count = removed.len(), consumers = ?removed,
                "removed dead outbox consumers");
            metrics::counter!("mcp_sync_consumers_removed_total").increment(removed.len() as u64);
        }
        Ok(removed.len())
    }

    async fn persist_one_by_one(
        &self,
        entries: &[OutboxEntry],
        decoded: &[Decoded],
    ) -> Result<(usize, usize)> {
        let (mut persisted, mut dead) = (0, 0);
        for (entry, d) in entries.iter().zip(decoded) {
            let r = match d {
                Decoded::Step(s) => self.durable.insert_step(s).await.map(|_| ()),
                Decoded::Audit(a) => self.durable.insert_audit(a).await.map(|_| ()),
                Decoded::Dead(x) => {
                    self.durable.insert_dead_letter(x).await?;
                    dead += 1;
                    continue;
                }
            };
            match r {
                Ok(()) => persisted += 1,
                Err(e) if is_outage(&e) => return Err(e.into()),
                Err(e) => {
                    tracing::warn!(entry = %entry.id, error = %e, "outbox entry dead-lettered");
                    self.durable
                        .insert_dead_letter(&dead_letter(entry, e.to_string()))
                        .await?;
                    dead += 1;
                }
            }
        }
        Ok((persisted, dead))
    }

    /// Runs until `cancel`, every `interval` and at once while the backlog is over a batch;
    /// then flushes what the outbox holds. Returns at once for a hot store without an outbox.
    pub async fn run(mut self, cancel: CancellationToken) {
        if self.hot.outbox().is_none() {
            return;
        }
        let poll = self.settings.interval.min(Duration::from_millis(250));
        while !cancel.is_cancelled() {
            let full = match self.try_run_once().await {
                Ok(o) => o.read >= self.settings.batch_size,
                Err(e) => {
                    metrics::counter!("mcp_sync_errors_total", "loop" => "push").increment(1);
                    tracing::warn!(error = %e, "sync push failed; retrying");
                    false
                }
            };
            if full {
                continue;
            }
            let deadline = tokio::time::Instant::now() + self.settings.interval;
            while tokio::time::Instant::now() < deadline {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(poll) => {}
                }
                let backlog = match self.outbox() {
                    Ok(o) => o
                        .outbox_depth(&self.settings.group)
                        .await
                        .map(|d| d.length.saturating_sub(d.pending))
                        .unwrap_or(0),
                    Err(_) => 0,
                };
                if backlog >= self.settings.batch_size as u64 {
                    break;
                }
            }
        }
        self.flush().await;
    }

    /// Writes what the outbox holds before shutting down (bounded: a few batches).
    pub async fn flush(&mut self) {
        if self.hot.outbox().is_none() {
            return;
        }
        for _ in 0..20 {
            match self.try_run_once().await {
                Ok(o) if o.read > 0 => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "sync push flush failed");
                    break;
                }
            }
        }
    }
}

/// Exports one iteration: batch size, entries persisted and dead-lettered, the outbox depth,
/// and the lag (age of the oldest entry just committed; 0 when the outbox had nothing new).
fn record_push_metrics(outcome: &PushOutcome, oldest_ms: Option<u64>) {
    let now_ms = chrono::Utc::now().timestamp_millis().max(0) as u64;
    let lag = oldest_ms.map_or(0.0, |t| now_ms.saturating_sub(t) as f64 / 1000.0);
    metrics::gauge!("mcp_sync_lag_seconds", "loop" => "push").set(lag);
    metrics::gauge!("mcp_sync_last_run_timestamp_seconds", "loop" => "push")
        .set(now_ms as f64 / 1000.0);
    metrics::gauge!("mcp_outbox_length").set(outcome.depth.length as f64);
    metrics::gauge!("mcp_outbox_pending").set(outcome.depth.pending as f64);
    if outcome.read > 0 {
        metrics::histogram!("mcp_sync_batch_size").record(outcome.read as f64);
        metrics::counter!("mcp_sync_persisted_total").increment(outcome.persisted as u64);
        metrics::counter!("mcp_sync_claimed_total").increment(outcome.claimed as u64);
        metrics::counter!("mcp_sync_dead_letters_total").increment(outcome.dead as u64);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn entry_millis_reads_the_time_part() {
        assert_eq!(
            crate::decode::entry_millis("1700000000123-4"),
            Some(1_700_000_000_123)
        );
        // A Redis Cluster's outbox ids carry their slot.
        assert_eq!(
            crate::decode::entry_millis("1700000000123-4@5"),
            Some(1_700_000_000_123)
        );
        assert_eq!(crate::decode::entry_millis("garbage"), None);
    }
}
