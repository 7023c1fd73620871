//! Group commit: concurrent file changes share one transaction and one log flush, each with
//! its own verdict (issue #19).
//!
//! A [`Batcher`] queues jobs and runs them in batches, one batch at a time: a job that
//! arrives while a batch commits waits for the next one, so the batches grow with the load;
//! a job that arrives while nothing runs starts a batch at once (no added latency when idle).
//! The batch runs on a task of its own, so a caller that goes away (a dropped request) never
//! cancels a transaction that carries other callers' changes. What a batch does is the
//! backend's ([`super::postgres`], [`super::sqlite`]): it answers every job on its own, and
//! a refusal of one (a stale version, a quota) never fails another.

use super::durable::{FileChange, RevisionOp};
use crate::error::DomainError;
use crate::ids::TaskId;
use crate::path::FilePath;
use futures::future::BoxFuture;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// How many batches and changes a store has committed through its batcher: what the
/// behaviour suite reads to see that changes really share transactions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupCommitStats {
    /// Batches run (each one transaction, one commit).
    pub batches: u64,
    /// Jobs answered by those batches.
    pub jobs: u64,
    /// Jobs waiting for a batch now.
    pub queued: u64,
    /// Jobs in the batch running now.
    pub running: u64,
}

/// Runs one batch: one answer per job, in the jobs' order.
type RunBatch<J, R> = Box<dyn Fn(Vec<J>) -> BoxFuture<'static, Vec<R>> + Send + Sync>;

/// The queue and whether a batch task is running (under one lock, so a job is never left
/// queued with no task to take it).
struct Queue<J, R> {
    jobs: Vec<(J, oneshot::Sender<R>)>,
    running: bool,
}

/// A group-commit queue (module docs).
pub(crate) struct Batcher<J, R> {
    queue: Mutex<Queue<J, R>>,
    /// At most this many jobs per batch.
    max_batch: usize,
    run: RunBatch<J, R>,
    /// The metric label: which store's batcher this is.
    backend: &'static str,
    batches: AtomicU64,
    jobs: AtomicU64,
    running: AtomicU64,
}

impl<J: Send + 'static, R: Send + 'static> Batcher<J, R> {
    /// A batcher whose batches are `run(ctx, jobs)` (`ctx`: what a batch needs, e.g. a pool).
    pub(crate) fn new<C, F, Fut>(
        backend: &'static str,
        max_batch: usize,
        ctx: C,
        run: F,
    ) -> Arc<Self>
    where
        C: Clone + Send + Sync + 'static,
        F: Fn(C, Vec<J>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<R>> + Send + 'static,
    {
        let run: RunBatch<J, R> = Box::new(move |jobs| Box::pin(run(ctx.clone(), jobs)));
        Arc::new(Batcher {
            queue: Mutex::new(Queue {
                jobs: Vec::new(),
                running: false,
            }),
            max_batch: max_batch.max(1),
            run,
            backend,
            batches: AtomicU64::new(0),
            jobs: AtomicU64::new(0),
            running: AtomicU64::new(0),
        })
    }

    /// Queues `job` and waits for its answer; `None` only if the batch task died (a panic)
    /// before answering it.
    pub(crate) async fn submit(self: &Arc<Self>, job: J) -> Option<R> {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            q.jobs.push((job, tx));
            !std::mem::replace(&mut q.running, true)
        };
        if start {
            tokio::spawn(Arc::clone(self).drain());
        }
        rx.await.ok()
    }

    /// Runs batches until the queue is empty.
    async fn drain(self: Arc<Self>) {
        // Should a batch panic, the next job starts a new task (its own jobs' callers see
        // their answer channel closed).
        let _guard = Running(&self.queue);
        loop {
            let batch: Vec<_> = {
                let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                if q.jobs.is_empty() {
                    q.running = false;
                    return;
                }
                let n = q.jobs.len().min(self.max_batch);
                self.running.store(n as u64, Ordering::Relaxed);
                q.jobs.drain(..n).collect()
            };
            let n = batch.len();
            let (jobs, answers): (Vec<J>, Vec<oneshot::Sender<R>>) = batch.into_iter().unzip();
            let results = (self.run)(jobs).await;
            self.batches.fetch_add(1, Ordering::Relaxed);
            self.jobs.fetch_add(n as u64, Ordering::Relaxed);
            self.running.store(0, Ordering::Relaxed);
            metrics::counter!("mcp_group_commit_batches_total", "backend" => self.backend)
                .increment(1);
            metrics::histogram!("mcp_group_commit_batch_size", "backend" => self.backend)
                .record(n as f64);
            for (tx, r) in answers.into_iter().zip(results) {
                let _ = tx.send(r);
            }
        }
    }

    pub(crate) fn stats(&self) -> GroupCommitStats {
        let queued = self
            .queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .jobs
            .len();
        GroupCommitStats {
            batches: self.batches.load(Ordering::Relaxed),
            jobs: self.jobs.load(Ordering::Relaxed),
            queued: queued as u64,
            running: self.running.load(Ordering::Relaxed),
        }
    }
}

/// Marks the batch task gone when it ends, also by a panic.
struct Running<'a, J, R>(&'a Mutex<Queue<J, R>>);

impl<J, R> Drop for Running<'_, J, R> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut q = self.0.lock().unwrap_or_else(|p| p.into_inner());
            q.running = false;
        }
    }
}

/// A [`FileChange`] that owns its text, to wait in a batcher's queue.
pub(crate) struct OwnedChange {
    task: TaskId,
    path: FilePath,
    op: RevisionOp,
    content: String,
    sha256: String,
    size: i64,
    agent: String,
    fence: Option<i64>,
    expected_version: Option<i64>,
    diff: Option<String>,
    request_id: Option<String>,
    max_task_files: Option<i64>,
    max_task_bytes: Option<i64>,
}

impl OwnedChange {
    pub(crate) fn of(c: &FileChange<'_>) -> OwnedChange {
        OwnedChange {
            task: c.task.clone(),
            path: c.path.clone(),
            op: c.op,
            content: c.content.to_owned(),
            sha256: c.sha256.to_owned(),
            size: c.size,
            agent: c.agent.to_owned(),
            fence: c.fence,
            expected_version: c.expected_version,
            diff: c.diff.map(str::to_owned),
            request_id: c.request_id.map(str::to_owned),
            max_task_files: c.max_task_files,
            max_task_bytes: c.max_task_bytes,
        }
    }

    pub(crate) fn change(&self) -> FileChange<'_> {
        FileChange {
            task: &self.task,
            path: &self.path,
            op: self.op,
            content: &self.content,
            sha256: &self.sha256,
            size: self.size,
            agent: &self.agent,
            fence: self.fence,
            expected_version: self.expected_version,
            diff: self.diff.as_deref(),
            request_id: self.request_id.as_deref(),
            max_task_files: self.max_task_files,
            max_task_bytes: self.max_task_bytes,
        }
    }
}

/// The same failure for every job of a batch that failed as a whole (a [`DomainError`] is not
/// `Clone`): an outage stays an outage, anything else is internal.
pub(crate) fn for_each_job(e: &DomainError) -> DomainError {
    match e {
        DomainError::Unavailable { backend, cause } => DomainError::Unavailable {
            backend,
            cause: cause.clone(),
        },
        other => DomainError::Internal(other.to_string()),
    }
}
