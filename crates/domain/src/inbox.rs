//! The inbox bell: how a long-polling `read_messages` learns, without holding a database
//! connection, that a message it may read has arrived.
//!
//! A waiter registers a [`Ticket`] (its reader and its task filter) BEFORE it reads the
//! durable store, then sleeps on the ticket. [`InboxBell::ring`] wakes the tickets a new
//! message may concern; the waiter then reads the durable store again (the truth: a ring is
//! only a hint, and waking too many waiters costs one read each, never a wrong answer).
//! A ring that comes between the registration and the sleep is not lost (`Notify` keeps a
//! permit).
//!
//! Who rings: `send_message` rings its own process's bell after the commit; the gateway
//! rings every other process's from the `message_sent` event each process's live-event hub
//! receives (`crates/gateway/src/live/inbox.rs`), and rings every ticket when that
//! subscription was lost and came back ([`InboxBell::ring_all`]).

use crate::actor::Actor;
use crate::ids::TaskId;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::Notify;

/// One waiting reader.
struct Waiter {
    /// The reader (its id and scope).
    actor: Actor,
    /// Only this task's messages, when it asked for one task.
    task: Option<TaskId>,
    notify: Arc<Notify>,
}

/// The process's waiting readers. One per [`crate::Service`] (its clones share it).
#[derive(Default)]
pub struct InboxBell {
    waiters: Mutex<HashMap<u64, Waiter>>,
    next_id: AtomicU64,
    /// Set when the process shuts down: waiting calls answer with what they have, so that a
    /// long poll does not hold the graceful shutdown for its whole wait.
    closed: AtomicBool,
}

impl InboxBell {
    /// Registers a reader; it is woken until the ticket is dropped.
    pub fn register(self: &Arc<Self>, actor: &Actor, task: Option<&TaskId>) -> Ticket {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let notify = Arc::new(Notify::new());
        self.lock().insert(
            id,
            Waiter {
                actor: actor.clone(),
                task: task.cloned(),
                notify: notify.clone(),
            },
        );
        metrics::gauge!("mcp_inbox_waiters").increment(1.0);
        if self.is_closed() {
            notify.notify_one();
        }
        Ticket {
            bell: Arc::downgrade(self),
            id,
            notify,
        }
    }

    /// A message was sent on `task` to `to` (`None`: everyone on the task): wakes the
    /// readers it may concern.
    pub fn ring(&self, task: &str, to: Option<&[String]>) {
        for w in self.lock().values() {
            if w.task.as_ref().is_some_and(|t| t.as_str() != task) {
                continue;
            }
            let concerned = match to {
                None => w.actor.may_access(task),
                Some(list) => list.iter().any(|a| a == w.actor.agent.as_str()),
            };
            if concerned {
                w.notify.notify_one();
            }
        }
    }

    /// Wakes every reader (messages may have been missed: they read again).
    pub fn ring_all(&self) {
        for w in self.lock().values() {
            w.notify.notify_one();
        }
    }

    /// The process shuts down: every reader is rung, and stops waiting ([`Self::is_closed`]).
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.ring_all();
    }

    /// Whether [`Self::close`] was called: a reader answers instead of waiting.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// How many readers wait now.
    pub fn waiting(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Waiter>> {
        self.waiters.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A registered reader. Dropping it unregisters.
pub struct Ticket {
    bell: Weak<InboxBell>,
    id: u64,
    notify: Arc<Notify>,
}

impl Ticket {
    /// Waits until the bell rings for this reader (at once if it rang since the last wait).
    pub async fn rung(&self) {
        self.notify.notified().await;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(bell) = self.bell.upgrade() {
            bell.lock().remove(&self.id);
            metrics::gauge!("mcp_inbox_waiters").decrement(1.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::AgentId;
    use std::time::Duration;

    fn actor(agent: &str, tasks: Option<&[&str]>) -> Actor {
        Actor {
            tasks: tasks.map(|t| t.iter().map(|s| s.to_string()).collect()),
            ..Actor::trusted(AgentId::parse(agent).unwrap())
        }
    }

    async fn woken(t: &Ticket) -> bool {
        tokio::time::timeout(Duration::from_millis(20), t.rung())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn rings_reach_the_readers_a_message_concerns() {
        let bell = Arc::new(InboxBell::default());
        let bob = bell.register(&actor("bob", None), None);
        let carol_t2 = bell.register(&actor("carol", None), Some(&TaskId::parse("t2").unwrap()));
        let scoped = bell.register(&actor("dan", Some(&["t2"][..])), None);
        bell.ring("t1", Some(&["bob".into(), "carol".into()]));
        assert!(woken(&bob).await);
        assert!(!woken(&carol_t2).await, "carol waits on t2 only");
        assert!(!woken(&scoped).await);
        bell.ring("t1", None);
        assert!(woken(&bob).await);
        assert!(!woken(&scoped).await, "t1 is outside dan's scope");
        bell.ring("t2", None);
        assert!(woken(&carol_t2).await && woken(&scoped).await);
        // A ring before the wait is kept.
        bell.ring_all();
        assert!(woken(&bob).await);
        assert_eq!(bell.waiting(), 3);
        drop((bob, carol_t2, scoped));
        assert_eq!(bell.waiting(), 0);
        bell.close();
        let late = bell.register(&actor("eve", None), None);
        assert!(
            bell.is_closed() && woken(&late).await,
            "after close, nobody waits"
        );
    }
}
