//! The fan-out hub: ONE Redis subscription per gateway process (`PSUBSCRIBE` on every task's
//! `task:{id}:updates` channel), fanned out in memory to every watcher of the task.
//!
//! Each watcher owns a bounded queue. The hub never waits for a watcher: it `try_send`s, and
//! a watcher whose queue is full is cut off on the spot (its sender dropped, a flag set); the
//! watcher drains what it had, then reports [`CutoffReason::SlowConsumer`] with the position
//! it reached, from which the client resumes. Memory per watcher is therefore bounded by the
//! queue capacity (events are shared `Arc`s, parsed and serialised once for all watchers).
//!
//! The subscription reconnects by itself after a Redis outage (exponential back-off, and a
//! `PING` every few seconds to notice a silent connection). Once it is subscribed again, every
//! watcher gets [`Delivery::Resync`] and catches up from the task's event stream, so the
//! events written during the outage are not lost (only foreign events, which were merely
//! published, are).
//!
//! Public API (used by SSE, WebSocket and the MCP resource subscriptions):
//! [`Hub::subscribe`] gives a raw [`Subscription`] (live deliveries only);
//! [`Hub::tap`] gives a [`Tap`]: the live deliveries of every task (MCP notifications, whose
//! subscribers are not known per task in advance);
//! [`Hub::watch`](crate::live::Hub::watch) gives a [`Watch`](crate::live::Watch) (replay
//! from a resume point, then live, no gap, no duplicate).

use super::queue::{self, RecvError, SendError};
use mcp_api::live::CutoffReason;
use mcp_api::{Event, EventType, StreamId};
use mcp_domain::store::hot::{Interest, TaskEvent};
use mcp_domain::{Service, TaskId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the subscription's connection is probed with `PING`.
const PING_INTERVAL: Duration = Duration::from_secs(5);
/// First wait before reconnecting after an outage (doubles up to `max_reconnect_delay`).
const FIRST_RECONNECT_DELAY: Duration = Duration::from_millis(100);

/// The hub's knobs.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Deliveries queued per watcher; one more and the watcher is cut off.
    pub queue_capacity: usize,
    /// Longest wait between two attempts to resubscribe after an outage.
    pub max_reconnect_delay: Duration,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            queue_capacity: 1024,
            max_reconnect_delay: Duration::from_secs(2),
        }
    }
}

/// One event as it reached the hub, shared by every watcher of its task.
#[derive(Debug)]
pub struct LiveEvent {
    /// Its stream id; `None` for a foreign event that was only published.
    pub id: Option<StreamId>,
    /// The envelope.
    pub event: Event,
    /// The envelope as JSON, serialised once.
    pub json: String,
}

impl LiveEvent {
    /// An event and its id in the task's stream (`None`: a foreign, published-only event).
    pub fn of(id: Option<StreamId>, event: Event) -> LiveEvent {
        let json = serde_json::to_string(&event).expect("an event always serialises");
        LiveEvent { id, event, json }
    }
}

/// What a watcher's queue carries.
#[derive(Debug, Clone)]
pub enum Delivery {
    /// An event of the watched task.
    Event(Arc<LiveEvent>),
    /// The hub was resubscribed after an outage: live events may have been missed, read
    /// the stream from your position.
    Resync,
}

/// Counters for tests and diagnostics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubStats {
    /// Watchers registered now.
    pub watchers: usize,
    /// Watchers cut off for being slow, since start.
    pub slow_cutoffs: u64,
    /// Deliveries waiting in all queues now.
    pub queued: usize,
    /// The largest number waiting in one queue now (never above `queue_capacity`).
    pub max_queued: usize,
    /// Deliveries one queue holds ([`HubConfig::queue_capacity`]).
    pub queue_capacity: usize,
    /// Whether the Redis subscription is up.
    pub connected: bool,
}

/// A watcher's entry in the hub.
struct Slot {
    /// Its queue; a full one cuts the watcher off for being slow (the receiver sees it:
    /// `queue::Receiver::overflowed`).
    tx: queue::Sender<Delivery>,
    /// A tap's filter: the one kind of event it is offered (`None`: all). An event no
    /// watcher of its task and no tap wants is skipped before it is even parsed (issue #19:
    /// the inbox's tap, always there, made every step pay for a parse, a serialisation and a
    /// wake-up it ignored).
    wants: Option<EventType>,
}

impl Slot {
    fn wants(&self, kind: &str) -> bool {
        self.wants.as_ref().is_none_or(|k| k.as_str() == kind)
    }
}

pub(crate) struct Inner {
    pub(crate) service: Service,
    config: HubConfig,
    slots: Mutex<HashMap<TaskId, HashMap<u64, Slot>>>,
    /// Taps: receivers of every task's deliveries.
    taps: Mutex<HashMap<u64, Slot>>,
    next_id: AtomicU64,
    watchers: AtomicUsize,
    slow_cutoffs: AtomicU64,
    connected: AtomicBool,
    /// Cancelled by [`Hub::close`]: the subscription stops and every watcher ends.
    closing: CancellationToken,
}

/// The per-process fan-out of live events. Cheap to clone.
#[derive(Clone)]
pub struct Hub {
    pub(crate) inner: Arc<Inner>,
}

impl Hub {
    /// Creates the hub and starts its Redis subscription (in the background: watchers may
    /// register before it is up; they get a [`Delivery::Resync`] once it is).
    pub fn start(service: Service, config: HubConfig) -> Hub {
        let inner = Arc::new(Inner {
            service: service.clone(),
            config,
            slots: Mutex::new(HashMap::new()),
            taps: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            watchers: AtomicUsize::new(0),
            slow_cutoffs: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            closing: CancellationToken::new(),
        });
        tokio::spawn(run_subscription(
            Arc::downgrade(&inner),
            service,
            inner.closing.clone(),
            inner.config.max_reconnect_delay,
        ));
        Hub { inner }
    }

    /// Registers a watcher of `task`: live deliveries from now on, through a queue of
    /// `queue_capacity`. Subscribe BEFORE reading the stream for a replay, so that nothing
    /// falls between the two (a [`Watch`](crate::live::Watch) does this for you).
    pub fn subscribe(&self, task: &TaskId) -> Subscription {
        let (tx, rx) = queue::bounded(self.inner.config.queue_capacity);
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut slots = self.inner.slots.lock().expect("hub lock");
            if !self.inner.closing.is_cancelled() {
                slots
                    .entry(task.clone())
                    .or_default()
                    .insert(id, Slot { tx, wants: None });
            }
            // When closing, `tx` is dropped here: the subscription ends at once.
        }
        self.inner.watchers.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!("mcp_live_watchers").increment(1.0);
        Subscription {
            task: task.clone(),
            id,
            rx,
            hub: self.inner.clone(),
        }
    }

    /// Ends every watcher (they report [`CutoffReason::Shutdown`]) and stops the
    /// subscription. Called when the server shuts down.
    pub fn close(&self) {
        self.inner.closing.cancel();
        self.inner.slots.lock().expect("hub lock").clear();
        self.inner.taps.lock().expect("hub lock").clear();
    }

    /// Registers a tap: the live deliveries of every task, through a queue of
    /// `queue_capacity` (cut off like a watcher when full). Taps are not watchers: they do not
    /// count in [`HubStats::watchers`] and shutdown does not wait for them.
    pub fn tap(&self) -> Tap {
        self.tap_where(None)
    }

    /// A tap offered only the events of one kind ([`Delivery::Resync`] is always sent).
    pub fn tap_of(&self, kind: EventType) -> Tap {
        self.tap_where(Some(kind))
    }

    fn tap_where(&self, wants: Option<EventType>) -> Tap {
        let (tx, rx) = queue::bounded(self.inner.config.queue_capacity);
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        if !self.inner.closing.is_cancelled() {
            self.inner
                .taps
                .lock()
                .expect("hub lock")
                .insert(id, Slot { tx, wants });
        }
        Tap {
            id,
            rx,
            hub: Arc::downgrade(&self.inner),
        }
    }

    /// Whether the Redis subscription is up (deliveries flow).
    pub fn is_connected(&self) -> bool {
        self.inner.connected.load(Ordering::Relaxed)
    }

    /// Cancelled once [`Hub::close`] was called.
    pub fn closing(&self) -> CancellationToken {
        self.inner.closing.clone()
    }

    /// Waits until no watcher is registered, at most `timeout` (shutdown lets streams send
    /// their last message).
    pub async fn wait_idle(&self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.inner.watchers.load(Ordering::Relaxed) > 0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The counters, now.
    pub fn stats(&self) -> HubStats {
        let slots = self.inner.slots.lock().expect("hub lock");
        let queued: Vec<usize> = slots
            .values()
            .flat_map(|m| m.values())
            .map(|s| s.tx.len())
            .collect();
        HubStats {
            watchers: self.inner.watchers.load(Ordering::Relaxed),
            slow_cutoffs: self.inner.slow_cutoffs.load(Ordering::Relaxed),
            queued: queued.iter().sum(),
            max_queued: queued.iter().copied().max().unwrap_or(0),
            queue_capacity: self.inner.config.queue_capacity,
            connected: self.inner.connected.load(Ordering::Relaxed),
        }
    }

    /// Hands a message as published on the task's channel to its watchers (public so that
    /// tests can drive the hub without Redis timing): read as the store's subscription reads
    /// it ([`mcp_domain::events::parse_published`]), then dispatched like its events.
    pub fn dispatch(&self, task: &TaskId, payload: &str) {
        if let Some(event) = TaskEvent::published(task.clone(), payload) {
            self.inner.dispatch(event);
        }
    }
}

impl Inner {
    fn dispatch(&self, published: TaskEvent) {
        let TaskEvent { task, id, event } = published;
        let task = &task;
        let has_watchers = self.has_watchers(task);
        let has_taps = self.taps_want(event.kind.as_str());
        if !has_watchers && !has_taps {
            return;
        }
        let live = Arc::new(LiveEvent::of(id, event));
        let event = &live.event;
        let delivery = Delivery::Event(live.clone());
        if has_taps {
            let mut taps = self.taps.lock().expect("hub lock");
            taps.retain(|_, slot| !slot.wants(event.kind.as_str()) || self.offer(slot, &delivery));
        }
        let mut slots = self.slots.lock().expect("hub lock");
        let Some(watchers) = slots.get_mut(task) else {
            return;
        };
        watchers.retain(|_, slot| self.offer(slot, &delivery));
        if watchers.is_empty() {
            slots.remove(task);
        }
    }

    /// Queues a delivery for one receiver; `false` when it must be dropped (gone, or cut off
    /// for being slow).
    fn offer(&self, slot: &Slot, delivery: &Delivery) -> bool {
        match slot.tx.try_send(delivery.clone()) {
            Ok(()) => true,
            Err(SendError::Full) => {
                self.slow_cutoffs.fetch_add(1, Ordering::Relaxed);
                false
            }
            Err(SendError::Closed) => false,
        }
    }

    /// The interest of the subscription: the tasks with watchers, and what taps want.
    fn wants_task(&self, task: &TaskId) -> bool {
        self.has_watchers(task)
            || self
                .taps
                .lock()
                .expect("hub lock")
                .values()
                .any(|slot| slot.wants.is_none())
    }

    /// Whether `task` has watchers now.
    fn has_watchers(&self, task: &TaskId) -> bool {
        self.slots
            .lock()
            .expect("hub lock")
            .get(task)
            .is_some_and(|m| !m.is_empty())
    }

    /// Whether a tap takes events of `kind`.
    fn taps_want(&self, kind: &str) -> bool {
        self.taps
            .lock()
            .expect("hub lock")
            .values()
            .any(|slot| slot.wants(kind))
    }

    /// Tells every watcher to catch up from the stream (after a resubscription).
    fn resync_all(&self) {
        let mut slots = self.slots.lock().expect("hub lock");
        for watchers in slots.values_mut() {
            watchers.retain(|_, slot| self.offer(slot, &Delivery::Resync));
        }
        slots.retain(|_, w| !w.is_empty());
        drop(slots);
        let mut taps = self.taps.lock().expect("hub lock");
        taps.retain(|_, slot| self.offer(slot, &Delivery::Resync));
    }
}

/// A tap's registration: the live deliveries of every task. Dropping it unregisters. It
/// does not keep the hub alive (a tap held for the process's life would keep its Redis
/// subscription open after the hub's owner dropped it): when the hub goes, the tap ends.
pub struct Tap {
    id: u64,
    rx: queue::Receiver<Delivery>,
    hub: Weak<Inner>,
}

impl Tap {
    /// The next delivery, in publication order; `None` once the hub ended this tap (closing,
    /// or cut off for being slow: see [`Tap::end_reason`]) and its queue is drained.
    pub async fn recv(&mut self) -> Option<Delivery> {
        self.rx.recv().await
    }

    /// Why the hub ended this tap.
    pub fn end_reason(&self) -> CutoffReason {
        if self.rx.overflowed() {
            CutoffReason::SlowConsumer
        } else {
            CutoffReason::Shutdown
        }
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        if let Some(hub) = self.hub.upgrade() {
            hub.taps.lock().expect("hub lock").remove(&self.id);
        }
    }
}

/// A watcher's registration: its queue of live deliveries. Dropping it unregisters.
pub struct Subscription {
    task: TaskId,
    id: u64,
    rx: queue::Receiver<Delivery>,
    hub: Arc<Inner>,
}

impl Subscription {
    /// The watched task.
    pub fn task(&self) -> &TaskId {
        &self.task
    }

    /// The next delivery, in publication order; `None` once the hub ended this subscription
    /// and its queue is drained (see [`Subscription::end_reason`]).
    pub async fn recv(&mut self) -> Option<Delivery> {
        self.rx.recv().await
    }

    /// A delivery if one is queued, without waiting. `Err(true)` when ended and drained.
    pub fn try_recv(&mut self) -> Result<Delivery, bool> {
        match self.rx.try_recv() {
            Ok(d) => Ok(d),
            Err(RecvError::Empty) => Err(false),
            Err(RecvError::Ended) => Err(true),
        }
    }

    /// Why the hub ended this subscription.
    pub fn end_reason(&self) -> CutoffReason {
        if self.rx.overflowed() {
            CutoffReason::SlowConsumer
        } else {
            CutoffReason::Shutdown
        }
    }

    /// Deliveries waiting in this subscription's queue.
    pub fn queued(&self) -> usize {
        self.rx.len()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut slots = self.hub.slots.lock().expect("hub lock");
        if let Some(watchers) = slots.get_mut(&self.task) {
            watchers.remove(&self.id);
            if watchers.is_empty() {
                slots.remove(&self.task);
            }
        }
        drop(slots);
        self.hub.watchers.fetch_sub(1, Ordering::Relaxed);
        metrics::gauge!("mcp_live_watchers").decrement(1.0);
    }
}

/// What the subscription reads: what the hub's watchers and taps want, while the hub lives.
struct HubInterest(Weak<Inner>);

impl Interest for HubInterest {
    fn task(&self, task: &TaskId) -> bool {
        self.0.upgrade().is_some_and(|hub| hub.wants_task(task))
    }

    fn kind(&self, kind: &str) -> bool {
        self.0.upgrade().is_some_and(|hub| hub.taps_want(kind))
    }
}

/// The subscription loop: subscribe, dispatch, probe; on loss, reconnect with back-off and
/// resync every watcher. Ends when the hub closes or is dropped.
async fn run_subscription(
    hub: Weak<Inner>,
    service: Service,
    closing: CancellationToken,
    max_delay: Duration,
) {
    let mut delay = FIRST_RECONNECT_DELAY;
    let mut reported_outage = false;
    loop {
        let subscribed = tokio::select! {
            _ = closing.cancelled() => return,
            s = service.subscribe_updates() => s,
        };
        let mut sub = match subscribed {
            Ok(sub) => sub,
            Err(e) => {
                if !reported_outage {
                    tracing::warn!(error = %e, "live events: cannot subscribe to Redis; retrying");
                    reported_outage = true;
                }
                tokio::select! {
                    _ = closing.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(max_delay);
                if hub.strong_count() == 0 {
                    return;
                }
                continue;
            }
        };
        delay = FIRST_RECONNECT_DELAY;
        if reported_outage {
            tracing::info!("live events: resubscribed to Redis; watchers catch up");
        }
        {
            let Some(inner) = hub.upgrade() else { return };
            inner.connected.store(true, Ordering::Relaxed);
            inner.resync_all();
        }
        let interest = HubInterest(hub.clone());
        let mut pinger = sub.pinger();
        let mut probe = tokio::time::interval(PING_INTERVAL);
        probe.reset();
        loop {
            tokio::select! {
                _ = closing.cancelled() => return,
                msg = sub.next_wanted(&interest) => match msg {
                    Some(published) => {
                        let Some(inner) = hub.upgrade() else { return };
                        inner.dispatch(published);
                    }
                    None => {
                        tracing::warn!("live events: Redis subscription lost; reconnecting");
                        break;
                    }
                },
                _ = probe.tick() => {
                    if hub.strong_count() == 0 {
                        return;
                    }
                    if let Err(e) = pinger.ping().await {
                        tracing::warn!(error = %e, "live events: Redis subscription silent; reconnecting");
                        break;
                    }
                }
            }
        }
        // The loss was just reported; the next successful subscribe says so.
        reported_outage = true;
        if let Some(inner) = hub.upgrade() {
            inner.connected.store(false, Ordering::Relaxed);
        }
    }
}
