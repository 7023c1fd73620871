//! The pull loop: Postgres → the Redis hot cache, missing no change.
//!
//! **The change feed.** Tasks (and agents) are read in the order of a mark the durable store
//! assigns to every committed change — never by `updated_at`, which is a writer's clock
//! (skewed, backdated, restored) — page by page until a short page (keyset paging: a burst
//! larger than a page is still read in full). Postgres marks a row `(change_xid,
//! change_seq)`: its writing transaction and a number from a sequence, both set by a
//! trigger. A transaction may draw its number early and commit late, so the cursor follows
//! one rule:
//!
//! > The cursor moves over the longest run of rows, in feed order from the cursor, whose
//! > transaction was older than the oldest transaction still running when the row was read
//! > (`change_xid < pg_snapshot_xmin(pg_current_snapshot())`: the row is *settled*).
//!
//! Every transaction that can still commit has an id at or above that horizon (running ones
//! by the definition of the horizon, later ones because ids only grow), so its rows sort after
//! the cursor whatever numbers they drew: no commit can slip under it. Rows read past the
//! first unsettled one are applied at once all the same (they are committed, and waiting for
//! an unrelated long transaction would stall the feed), and read again by the next pull until
//! they are settled; rows read again with the same change number are skipped without a round
//! trip. SQLite has a single writer, so its numbers follow commit order and every row it
//! reads is settled.
//!
//! A row is cached, and its `task_updated` event emitted, only when its change number is
//! higher than that of the row the cache holds (decided inside the hot store), so several
//! sync processes publish each change once and a re-read never goes backwards. Deletions come
//! from the `task_deletions` tombstones (read by the time the trigger took, `overlap` back). The first pull, and any pull after Redis lost its data (the warm marker is
//! gone), rebuilds the whole cache without emitting events. Besides its interval, the loop
//! pulls as soon as Postgres notifies a change (LISTEN/NOTIFY on a statement trigger); the
//! interval still runs, so a lost notification only delays a change to the next tick.

use crate::Result;
use chrono::{DateTime, Utc};
use mcp_api::EventType;
use mcp_api::responses::TaskState;
use mcp_domain::TaskId;
use mcp_domain::store::durable::{ChangeListener, FeedMark, FeedRow};
use mcp_domain::store::hot::{AgentSeen, Refreshed, TaskRefresh};
use mcp_domain::store::{Durable, Hot};
use serde_json::json;
use std::collections::HashMap;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How the pull loop reads and how often.
#[derive(Debug, Clone)]
pub struct PullSettings {
    /// Time between pulls.
    pub interval: Duration,
    /// Rows per query.
    pub page_size: usize,
    /// How far before the last deletion seen each pull reads deletion tombstones again (a
    /// deleting transaction that commits late). Tasks and agents need no overlap: they follow
    /// the change feed.
    pub overlap: Duration,
    /// Lifetime of a cached task row, in seconds.
    pub task_ttl_secs: u64,
    /// Cap of a task's event stream.
    pub events_cap: usize,
    /// The agent id events carry.
    pub agent: String,
    /// Also pull as soon as Postgres notifies a change (LISTEN/NOTIFY), not only every
    /// `interval`.
    pub listen: bool,
}

/// How often deletion tombstones past their use are dropped.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// After the change listener failed, how long before connecting it again.
const LISTEN_RETRY: Duration = Duration::from_secs(5);

/// What one pull did.
#[derive(Debug, Clone, Default)]
pub struct PullOutcome {
    /// The whole cache was rebuilt (first pull, or Redis lost its data).
    pub warmed: bool,
    /// Task rows read from Postgres.
    pub read: usize,
    /// Task rows written to the cache (events emitted for them unless warming).
    pub changed: usize,
    /// Cached rows of deleted tasks dropped.
    pub deleted: usize,
    /// Agent rows read.
    pub agents: usize,
    /// Task and agent rows read past the cursor because an older transaction was still
    /// running (applied; read again until settled).
    pub unsettled: usize,
    /// Longest time between a changed row's `updated_at` and its caching.
    pub lag: Option<Duration>,
}

/// The pull loop. Step it with [`PullLoop::try_run_once`] or run it with [`PullLoop::run`].
pub struct PullLoop {
    durable: Durable,
    hot: Hot,
    settings: PullSettings,
    /// The tasks' cursor in the change feed (everything at or before it is settled and
    /// applied); `None` until the cache is warm.
    tasks_mark: Option<FeedMark>,
    /// The agents' cursor.
    agents_mark: FeedMark,
    deletions_mark: Option<DateTime<Utc>>,
    /// Tasks the last pull applied past the cursor (not settled yet), with their change
    /// number: read again by the next pull, and skipped then while the number is the same.
    unsettled: HashMap<String, i64>,
    /// When tombstones were last pruned.
    pruned_at: Option<tokio::time::Instant>,
}

fn lag_of(t: DateTime<Utc>) -> Duration {
    (Utc::now() - t).to_std().unwrap_or_default()
}

impl PullLoop {
    /// A pull loop from `durable` into `hot`; its first pull warms the whole cache.
    pub fn new(durable: Durable, hot: Hot, settings: PullSettings) -> PullLoop {
        PullLoop {
            durable,
            hot,
            settings,
            tasks_mark: None,
            agents_mark: FeedMark::default(),
            deletions_mark: None,
            unsettled: HashMap::new(),
            pruned_at: None,
        }
    }

    fn overlap(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.settings.overlap).unwrap_or_default()
    }

    /// One pull: a full rebuild when the cache is cold, otherwise the changes since the
    /// watermark (minus the overlap), the deletions, and the agents.
    pub async fn try_run_once(&mut self) -> Result<PullOutcome> {
        let mut outcome = PullOutcome::default();
        let warm = self.tasks_mark.is_some() && self.hot.sync_is_warm().await?;
        if !warm {
            self.warm(&mut outcome).await?;
        } else {
            self.pull_tasks(true, &mut outcome).await?;
        }
        self.pull_deletions(&mut outcome).await?;
        self.pull_agents(&mut outcome).await?;
        self.prune_tombstones().await?;
        record_pull_metrics(&outcome);
        // The overlap window re-reads recent rows on every run: only a change is news.
        if outcome.changed > 0 || outcome.deleted > 0 || outcome.warmed {
            tracing::info!(
                warmed = outcome.warmed,
                read = outcome.read,
                changed = outcome.changed,
                deleted = outcome.deleted,
                agents = outcome.agents,
                unsettled = outcome.unsettled,
                lag_ms = outcome.lag.map(|l| l.as_millis() as u64),
                "sync pull"
            );
        } else if outcome.read > 0 {
            tracing::debug!(
                warmed = outcome.warmed,
                read = outcome.read,
                changed = outcome.changed,
                deleted = outcome.deleted,
                agents = outcome.agents,
                lag_ms = outcome.lag.map(|l| l.as_millis() as u64),
                "sync pull"
            );
        }
        Ok(outcome)
    }

    async fn warm(&mut self, outcome: &mut PullOutcome) -> Result<()> {
        self.unsettled.clear();
        self.tasks_mark = None;
        self.agents_mark = FeedMark::default();
        let now = self.durable.db_now().await?;
        // Entries of tasks deleted longer ago than a TTL have expired from the cache.
        self.deletions_mark = Some(now - chrono::Duration::seconds(self.ttl_secs_i64()));
        self.pull_tasks(false, outcome).await?;
        self.hot.set_sync_warm().await?;
        outcome.warmed = true;
        Ok(())
    }

    fn ttl_secs_i64(&self) -> i64 {
        i64::try_from(self.settings.task_ttl_secs).unwrap_or(i64::MAX / 2_000_000)
    }

    /// Reads the task feed from the cursor to its end, caches what changed (emitting events
    /// when `emit`), and moves the cursor over the settled run (see the module's rule).
    async fn pull_tasks(&mut self, emit: bool, outcome: &mut PullOutcome) -> Result<()> {
        let mut mark = self.tasks_mark.unwrap_or_default();
        let mut after = mark;
        let mut settled_run = true;
        let seen_before = std::mem::take(&mut self.unsettled);
        loop {
            let rows = self
                .durable
                .tasks_after(after, self.settings.page_size)
                .await?;
            let short = rows.len() < self.settings.page_size;
            outcome.read += rows.len();
            let mut page = Vec::with_capacity(rows.len());
            for r in &rows {
                after = r.mark;
                settled_run &= r.settled;
                if settled_run {
                    mark = r.mark;
                } else {
                    outcome.unsettled += 1;
                    self.unsettled.insert(r.row.id.clone(), r.mark.seq);
                }
                if seen_before.get(&r.row.id) == Some(&r.mark.seq) {
                    continue;
                }
                page.push(r);
            }
            self.cache_page(&page, emit, outcome).await?;
            self.tasks_mark = Some(mark);
            if short {
                break;
            }
        }
        Ok(())
    }

    async fn cache_page(
        &mut self,
        rows: &[&FeedRow<TaskState>],
        emit: bool,
        outcome: &mut PullOutcome,
    ) -> Result<()> {
        let mut batch = Vec::with_capacity(rows.len());
        for r in rows {
            let row = &r.row;
            let Ok(id) = TaskId::parse(&row.id) else {
                tracing::warn!(task = %row.id, "task id is not valid; not cached");
                continue;
            };
            let envelope = emit.then(|| {
                mcp_domain::events::envelope(
                    EventType::TaskUpdated,
                    &id,
                    &self.settings.agent,
                    json!({"task": row, "source": "sync"}),
                )
            });
            batch.push(TaskRefresh {
                id,
                task: row,
                seq: r.mark.seq,
                envelope,
            });
        }
        let answers = self
            .hot
            .refresh_tasks(
                &batch,
                &self.settings.agent,
                self.settings.task_ttl_secs,
                self.settings.events_cap,
            )
            .await?;
        for (r, a) in batch.iter().zip(answers) {
            if a == Refreshed::Changed {
                outcome.changed += 1;
                if emit {
                    let lag = lag_of(r.task.updated_at);
                    outcome.lag = Some(outcome.lag.map_or(lag, |l| l.max(lag)));
                }
            }
        }
        Ok(())
    }

    async fn pull_deletions(&mut self, outcome: &mut PullOutcome) -> Result<()> {
        let since = self.deletions_mark.unwrap_or_default() - self.overlap();
        let gone = self.durable.task_deletions_since(since).await?;
        let Some((_, last)) = gone.last() else {
            return Ok(());
        };
        let last = *last;
        let ids: Vec<TaskId> = gone
            .iter()
            .filter_map(|(id, _)| TaskId::parse(id).ok())
            .collect();
        self.hot.delete_cached_tasks(&ids).await?;
        for (id, _) in &gone {
            self.unsettled.remove(id);
        }
        outcome.deleted = ids.len();
        if self.deletions_mark.is_none_or(|m| last > m) {
            self.deletions_mark = Some(last);
        }
        Ok(())
    }

    /// Drops deletion tombstones no pull can need any more: older than a cache lifetime (a
    /// deleted task's cached row is refreshed by nobody, so it has expired by then) plus the
    /// overlap. At most once a minute.
    async fn prune_tombstones(&mut self) -> Result<()> {
        if self.pruned_at.is_some_and(|t| t.elapsed() < PRUNE_EVERY) {
            return Ok(());
        }
        let now = self.durable.db_now().await?;
        let before = now - chrono::Duration::seconds(self.ttl_secs_i64()) - self.overlap();
        let pruned = self.durable.prune_task_deletions(before).await?;
        if pruned > 0 {
            tracing::info!(pruned, "sync: old deletion tombstones dropped");
        }
        self.pruned_at = Some(tokio::time::Instant::now());
        Ok(())
    }

    /// Reads the agent feed from its cursor (the same rule as tasks); presence only moves
    /// forward, so rows read again are harmless.
    async fn pull_agents(&mut self, outcome: &mut PullOutcome) -> Result<()> {
        let mut after = self.agents_mark;
        let mut settled_run = true;
        loop {
            let rows = self
                .durable
                .agents_after(after, self.settings.page_size)
                .await?;
            let short = rows.len() < self.settings.page_size;
            outcome.agents += rows.len();
            let presence: Vec<AgentSeen> = rows
                .iter()
                .filter_map(|r| {
                    let a = &r.row;
                    a.last_seen.map(|s| AgentSeen {
                        agent: a.id.clone(),
                        last_seen_ms: s.timestamp_millis(),
                        task: a.current_task_id.clone(),
                    })
                })
                .collect();
            self.hot.refresh_agents(&presence).await?;
            for r in &rows {
                after = r.mark;
                settled_run &= r.settled;
                if settled_run {
                    self.agents_mark = r.mark;
                } else {
                    outcome.unsettled += 1;
                }
            }
            if short {
                break;
            }
        }
        Ok(())
    }

    /// Pulls every `interval`, and at once when Postgres notifies a change, until `cancel`.
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut listener: Option<Box<dyn ChangeListener>> = None;
        let mut listen_at = tokio::time::Instant::now();
        while !cancel.is_cancelled() {
            if self.settings.listen
                && listener.is_none()
                && tokio::time::Instant::now() >= listen_at
            {
                // Listening first: a change committed during the pull below still wakes us.
                match self.durable.listen_changes().await {
                    Ok(l) => listener = Some(l),
                    Err(e) => {
                        tracing::warn!(error = %e, "sync: cannot listen for changes; polling");
                        listen_at = tokio::time::Instant::now() + LISTEN_RETRY;
                    }
                }
            }
            if let Err(e) = self.try_run_once().await {
                metrics::counter!("mcp_sync_errors_total", "loop" => "pull").increment(1);
                tracing::warn!(error = %e, "sync pull failed; retrying");
            }
            let notified = async {
                match listener.as_mut() {
                    Some(l) => l.changed().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(self.settings.interval) => {}
                woke = notified => {
                    if let Err(e) = woke {
                        tracing::warn!(error = %e, "sync: change listener lost; polling");
                        listener = None;
                        listen_at = tokio::time::Instant::now() + LISTEN_RETRY;
                    }
                }
            }
        }
    }
}

/// Exports one pull: the lag (longest time from a row's `updated_at` to its caching; 0 when
/// nothing changed), rows read and cached, deletions, rebuilds.
fn record_pull_metrics(outcome: &PullOutcome) {
    let lag = outcome.lag.map_or(0.0, |l| l.as_secs_f64());
    metrics::gauge!("mcp_sync_lag_seconds", "loop" => "pull").set(lag);
    metrics::gauge!("mcp_sync_last_run_timestamp_seconds", "loop" => "pull")
        .set(Utc::now().timestamp_millis() as f64 / 1000.0);
    metrics::counter!("mcp_sync_pulled_rows_total").increment(outcome.read as u64);
    metrics::counter!("mcp_sync_cache_changes_total").increment(outcome.changed as u64);
    metrics::counter!("mcp_sync_deletions_total").increment(outcome.deleted as u64);
    metrics::gauge!("mcp_sync_unsettled_rows").set(outcome.unsettled as f64);
    if outcome.warmed {
        metrics::counter!("mcp_sync_rebuilds_total").increment(1);
    }
}
