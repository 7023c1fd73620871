//! [`Watch`]: one watcher of one task — replay from a resume point, then live events, with no
//! gap and no duplicate. SSE, WebSocket and the MCP resource subscriptions all consume a
//! `Watch`; none of them touches the stream or the hub directly.
//!
//! How there is no gap: the watch subscribes to the hub FIRST, then reads the task's stream
//! (`XRANGE` after its position, in pages) until a short page says it reached the end; from
//! then on it takes live events from its queue and drops those whose id is not after its
//! position (they were replayed). Before each page it empties its queue of stream events,
//! which that page (read later) covers, so a long replay does not fill the queue. After a
//! Redis outage the hub sends `Resync` and the watch replays again from its position.
//!
//! The position only ever moves forward, over every stream event seen (delivered, or skipped
//! by the type filter); it is the `resume_from` of the final [`WatchItem::End`].
//!
//! A watch opened with a bearer token ends when the token expires ([`Watch::end_at`]):
//! nothing more is delivered, and the last item is a `token_expired` cutoff.

use super::EventTypes;
use super::hub::{Delivery, Hub, LiveEvent, Subscription};
use mcp_api::StreamId;
use mcp_api::live::{Cutoff, CutoffReason};
use mcp_domain::{Actor, DomainError, TaskId};
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// Events read from the stream per `XRANGE`.
const PAGE: usize = 256;
/// Longest wait between two attempts to read a replay page (100 ms, doubling, up to this).
const REPLAY_RETRY_MAX: Duration = Duration::from_millis(1600);
/// What a client should wait before reconnecting after an end.
const RETRY_AFTER_MS: u64 = 1000;

/// Where a watch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// Replay every event after this id first.
    After(StreamId),
    /// Only events written from now on.
    Now,
}

/// What a watch yields.
#[derive(Debug, Clone)]
pub enum WatchItem {
    /// An event that passed the watch's filter.
    Event(Arc<LiveEvent>),
    /// The last item: the watch ended; resume with `cutoff.resume_from`.
    End(Cutoff),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Replay,
    Live,
    Ended,
}

/// One watcher of one task. See the module documentation.
pub struct Watch {
    hub: Hub,
    actor: Actor,
    task: TaskId,
    sub: Subscription,
    /// Only these event types are yielded; `None`: all.
    types: Option<EventTypes>,
    position: StreamId,
    mode: Mode,
    /// Read but not yet yielded (a replay page, foreign events met while replaying).
    pending: VecDeque<Arc<LiveEvent>>,
    /// Set when the hub ended the subscription: yield what is pending, then end.
    ended: Option<CutoffReason>,
    /// When the watcher's token expires: the watch ends then (`token_expired`). The timer
    /// is boxed and made once: a watch without a token (and every idle SSE watcher's body,
    /// which holds the watch and its pending `next`) does not carry a timer's room (issue #19).
    deadline: Option<Pin<Box<Sleep>>>,
}

impl Hub {
    /// Starts watching `task` as `actor` (who must already be allowed to: see
    /// `Service::open_events`). Subscribes first, then fixes the start position; fails only
    /// when Redis cannot be read.
    pub async fn watch(
        &self,
        actor: Actor,
        task: TaskId,
        start: StartAt,
        types: Option<EventTypes>,
    ) -> Result<Watch, DomainError> {
        let sub = self.subscribe(&task);
        let (position, mode) = match start {
            StartAt::After(id) => (id, Mode::Replay),
            StartAt::Now => (
                self.inner.service.events_tail(&actor, &task).await?,
                Mode::Live,
            ),
        };
        Ok(Watch {
            hub: self.clone(),
            actor,
            task,
            sub,
            types,
            position,
            mode,
            pending: VecDeque::new(),
            ended: None,
            deadline: None,
        })
    }
}

impl Watch {
    /// The watched task.
    pub fn task(&self) -> &TaskId {
        &self.task
    }

    /// Ends the watch at `deadline` (the expiry of the watcher's token; `None`: never).
    pub fn end_at(&mut self, deadline: Option<Instant>) {
        self.deadline = deadline.map(|d| Box::pin(tokio::time::sleep_until(d)));
    }

    /// The position reached: every stream event up to it was yielded or filtered out.
    pub fn position(&self) -> StreamId {
        self.position
    }

    /// The next item; `None` after [`WatchItem::End`]. Cancel-safe only between items
    /// (dropping a pending call may lose a replay page; drop the whole watch instead).
    pub async fn next(&mut self) -> Option<WatchItem> {
        loop {
            if self.mode != Mode::Ended
                && (self.deadline.as_ref()).is_some_and(|d| Instant::now() >= d.deadline())
            {
                return self.end(CutoffReason::TokenExpired);
            }
            if let Some(ev) = self.pending.pop_front() {
                if self.wanted(&ev) {
                    return Some(WatchItem::Event(ev));
                }
                continue;
            }
            if let Some(reason) = self.ended {
                return self.end(reason);
            }
            match self.mode {
                Mode::Ended => return None,
                Mode::Replay => {
                    self.drain_for_replay();
                    if self.ended.is_some() {
                        continue;
                    }
                    // Boxed: a replay is rare and its Redis call's future is large; unboxed,
                    // every idle watcher's pending `next` would keep its room (issue #19).
                    let page = match Box::pin(self.read_page()).await {
                        Ok(page) => page,
                        Err(e) => {
                            tracing::warn!(task = %self.task, error = %e, "live events: replay failed");
                            return self.end(CutoffReason::Unavailable);
                        }
                    };
                    if page.len() < PAGE {
                        self.mode = Mode::Live;
                    }
                    for (id, event) in page {
                        self.position = self.position.max(id);
                        self.pending
                            .push_back(Arc::new(LiveEvent::of(Some(id), event)));
                    }
                }
                Mode::Live => match self.recv_until_deadline().await {
                    // The deadline passed: the check above ends the watch.
                    Err(()) => {}
                    Ok(Some(Delivery::Event(ev))) => match ev.id {
                        Some(id) if id <= self.position => {}
                        Some(id) => {
                            self.position = id;
                            self.pending.push_back(ev);
                        }
                        None => self.pending.push_back(ev),
                    },
                    Ok(Some(Delivery::Resync)) => self.mode = Mode::Replay,
                    Ok(None) => self.ended = Some(self.sub.end_reason()),
                },
            }
        }
    }

    /// The next delivery, or `Err` when the deadline passes first.
    async fn recv_until_deadline(&mut self) -> Result<Option<Delivery>, ()> {
        match self.deadline.as_mut() {
            None => Ok(self.sub.recv().await),
            Some(sleep) => tokio::select! {
                delivery = self.sub.recv() => Ok(delivery),
                _ = sleep.as_mut() => Err(()),
            },
        }
    }

    /// The next replay page. Retried briefly: right after an outage the hub may be
    /// resubscribed before the shared connection has reconnected.
    async fn read_page(&self) -> Result<Vec<(StreamId, mcp_api::Event)>, DomainError> {
        let service = &self.hub.inner.service;
        let mut delay = Duration::from_millis(100);
        loop {
            let page = service
                .events_after(&self.actor, &self.task, self.position, PAGE)
                .await;
            match page {
                Err(DomainError::Unavailable { .. }) if delay <= REPLAY_RETRY_MAX => {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                other => return other,
            }
        }
    }

    /// Before reading a replay page: empty the queue. Stream events in it were appended
    /// before the page is read, so the page covers them; foreign events are kept; a
    /// `Resync` needs nothing more than the replay under way.
    fn drain_for_replay(&mut self) {
        loop {
            match self.sub.try_recv() {
                Ok(Delivery::Event(ev)) if ev.id.is_none() => self.pending.push_back(ev),
                Ok(_) => {}
                Err(false) => return,
                Err(true) => {
                    self.ended = Some(self.sub.end_reason());
                    return;
                }
            }
        }
    }

    fn wanted(&self, ev: &LiveEvent) -> bool {
        self.types
            .as_ref()
            .is_none_or(|t| t.iter().any(|n| &**n == ev.event.kind.as_str()))
    }

    fn end(&mut self, reason: CutoffReason) -> Option<WatchItem> {
        self.mode = Mode::Ended;
        self.ended = None;
        self.pending.clear();
        let label = match reason {
            CutoffReason::SlowConsumer => "slow_consumer",
            CutoffReason::Shutdown => "shutdown",
            CutoffReason::Unavailable => "unavailable",
            CutoffReason::TokenExpired => "token_expired",
        };
        metrics::counter!("mcp_live_cutoffs_total", "reason" => label).increment(1);
        let detail = match reason {
            CutoffReason::SlowConsumer => {
                "the watcher did not keep up with the events; reconnect and resume"
            }
            CutoffReason::Shutdown => "the gateway is shutting down; reconnect and resume",
            CutoffReason::Unavailable => "the event stream could not be read; reconnect later",
            CutoffReason::TokenExpired => {
                "the token this stream was opened with has expired; reconnect with a new token"
            }
        };
        Some(WatchItem::End(Cutoff {
            reason,
            detail: detail.to_owned(),
            resume_from: self.position.to_string(),
            retry_after_ms: RETRY_AFTER_MS,
        }))
    }
}
