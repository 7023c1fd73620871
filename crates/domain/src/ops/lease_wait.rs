//! Waiting for a lease (`claim_file` with `wait_sec`): the wake-ups of this process's
//! waiters, and the guard that takes a waiter out of its queue however its wait ends.
//!
//! The queue itself lives in the hot store (one per lease path, see `Leases::claim`); a
//! waiter checks it again when something may have changed:
//! * a wake-up on its task's lease channel — a release, or a waiter leaving its queue — from
//!   any gateway instance. One subscription per process ([`LeaseWakes`]), opened with the
//!   first waiter and closed when none is left; each task's waiters share a
//!   [`tokio::sync::Notify`];
//! * a timer at the expiry of the lease it waits for (an expiry publishes nothing);
//! * every [`WAIT_RECHECK`] in any case: the safety net for a wake-up lost with a
//!   connection, a clock difference, a waiter ahead whose gateway died. Each check also
//!   refreshes the waiter's liveness in the store ([`WAITER_LIVENESS`]).

use crate::actor::Actor;
use crate::ids::TaskId;
use crate::path::LeasePath;
use crate::store::Hot;
use crate::store::hot::Released;
use mcp_api::EventType;
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::Notify;

/// A waiter checks its queue at least this often, wake-up or not.
pub(super) const WAIT_RECHECK: Duration = Duration::from_secs(1);

/// How long a waiter's ticket stays queued without a check: a gateway that dies leaves its
/// waiters' tickets behind, and the queue drops them after this.
pub(super) const WAITER_LIVENESS: Duration = Duration::from_secs(5);

/// Longest `wait_sec`.
pub const MAX_WAIT_SECS: i64 = 60;

/// Wake-ups of this process's lease waiters, by task.
pub(crate) struct LeaseWakes {
    hot: Hot,
    state: Mutex<WakeState>,
}

#[derive(Default)]
struct WakeState {
    /// Per task: its waiters' bell, and how many hold it.
    tasks: HashMap<TaskId, (Arc<Notify>, usize)>,
    /// Whether the subscription task runs.
    listening: bool,
}

/// One waiter's registration: rung by its task's wake-ups; deregisters when dropped.
pub(super) struct Bell {
    wakes: Arc<LeaseWakes>,
    task: TaskId,
    pub(super) notify: Arc<Notify>,
}

impl Drop for Bell {
    fn drop(&mut self) {
        let mut st = self.wakes.lock();
        if let Some(entry) = st.tasks.get_mut(&self.task) {
            entry.1 -= 1;
            if entry.1 == 0 {
                st.tasks.remove(&self.task);
            }
        }
    }
}

impl LeaseWakes {
    pub(crate) fn new(hot: Hot) -> LeaseWakes {
        LeaseWakes {
            hot,
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WakeState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a waiter of `task` (and starts listening, if nobody was).
    pub(super) fn register(self: &Arc<Self>, task: &TaskId) -> Bell {
        let mut st = self.lock();
        let entry = st
            .tasks
            .entry(task.clone())
            .or_insert_with(|| (Arc::new(Notify::new()), 0));
        entry.1 += 1;
        let notify = entry.0.clone();
        if !st.listening {
            st.listening = true;
            tokio::spawn(self.clone().listen());
        }
        Bell {
            wakes: self.clone(),
            task: task.clone(),
            notify,
        }
    }

    fn ring(&self, task: &TaskId) {
        if let Some((n, _)) = self.lock().tasks.get(task) {
            n.notify_waiters();
        }
    }

    fn ring_all(&self) {
        for (n, _) in self.lock().tasks.values() {
            n.notify_waiters();
        }
    }

    /// True (and no longer listening) when nobody waits.
    fn idle(&self) -> bool {
        let mut st = self.lock();
        if st.tasks.is_empty() {
            st.listening = false;
        }
        !st.listening
    }

    /// The subscription: wake-ups ring their task's bell. Every waiter is rung once
    /// subscribed (a wake-up may have been published before) and when the subscription is
    /// lost; it is probed every 5 s. Ends when nobody waits.
    async fn listen(self: Arc<Self>) {
        let mut backoff = Duration::from_millis(100);
        loop {
            if self.idle() {
                return;
            }
            let mut sub = match self.hot.subscribe_lease_wakes().await {
                Ok(sub) => sub,
                Err(e) => {
                    tracing::warn!(error = %e, "lease waiters: no wake-up subscription, retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue;
                }
            };
            backoff = Duration::from_millis(100);
            self.ring_all();
            let mut pinger = sub.pinger();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut ticks = 0u32;
            loop {
                tokio::select! {
                    m = sub.next() => match m {
                        Some(task) => self.ring(&task),
                        None => break,
                    },
                    _ = tick.tick() => {
                        if self.idle() {
                            return;
                        }
                        ticks += 1;
                        if ticks.is_multiple_of(5) && pinger.ping().await.is_err() {
                            break;
                        }
                    }
                }
            }
            self.ring_all();
        }
    }
}

/// Takes a waiter's ticket out of its queue unless disarmed (the grant was answered): when
/// the request is dropped (the client went away) the removal runs in a task of its own. A
/// lease granted to the ticket whose answer never left is released then, with its event.
pub(super) struct QueueGuard {
    pub(super) service: super::Service,
    pub(super) actor: Actor,
    pub(super) task: TaskId,
    pub(super) path: LeasePath,
    /// `None` once disarmed or left.
    pub(super) ticket: Option<String>,
}

impl QueueGuard {
    pub(super) fn disarm(&mut self) {
        self.ticket = None;
    }

    /// Leaves the queue now (the wait ran out, or failed).
    pub(super) async fn leave(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            abandon(&self.service, &self.actor, &self.task, &self.path, &ticket).await;
        }
    }
}

impl Drop for QueueGuard {
    fn drop(&mut self) {
        let Some(ticket) = self.ticket.take() else {
            return;
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (service, actor, task, path) = (
            self.service.clone(),
            self.actor.clone(),
            self.task.clone(),
            self.path.clone(),
        );
        rt.spawn(async move { abandon(&service, &actor, &task, &path, &ticket).await });
    }
}

/// A ticket leaves its queue; a lease granted to it is released (its waiter never got the
/// answer), with a `lock_released` event marked `abandoned`.
async fn abandon(
    service: &super::Service,
    actor: &Actor,
    task: &TaskId,
    path: &LeasePath,
    ticket: &str,
) {
    match service.hot.leave_queue(task, path, ticket).await {
        Ok(None) => {}
        Ok(Some(Released {
            owner: holder,
            fence,
        })) => {
            let data = json!({"path": path.as_str(), "owner": holder, "fence": fence,
                "forced": false, "abandoned": true});
            let audit = json!({"action": "release_file", "path": path.as_str(), "fence": fence,
                "holder": holder, "abandoned": true});
            if let Err(e) = service
                .emit(actor, task, EventType::LockReleased, data, Some(audit))
                .await
            {
                tracing::warn!(task = %task, error = %e, "abandoned lease released, event lost");
            }
        }
        // The ticket's liveness lapses by itself; the lease (if any) expires.
        Err(e) => {
            tracing::warn!(task = %task, error = %e, "a lease waiter could not leave its queue")
        }
    }
}
