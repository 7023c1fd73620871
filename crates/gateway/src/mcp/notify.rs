//! Resource-update notifications: which MCP subscribers of this process hear of a change.
//!
//! One pattern subscription per process to the task channels (`task:*:updates`, started when
//! the first subscriber arrives) feeds [`Hub::dispatch`]. Each event names the resources it
//! changes ([`super::resources::changed_by`]); two kinds of local subscriber are told:
//!
//! * **listeners** (protocol 2026-07-28): an open `subscriptions/listen` request served by this
//!   process, with its set of resource URIs, kept here in memory;
//! * **session streams** (protocol 2025-11-25): a session's standalone SSE stream (`GET /mcp`)
//!   held by this process. The session's `resources/subscribe` may have reached any instance,
//!   so its subscriptions are read from Redis (one set per task or agent), not from memory.
//!
//! Notifications are hints to re-read: one lost while Redis reconnects is not replayed, and a
//! listener may hear of a change made just before it subscribed (its catch-up reads the task's
//! recent events). A slow subscriber is skipped rather than waited for.

use super::resources::{ResourceUri, changed_by};
use futures::StreamExt;
use mcp_api::Event;
use mcp_domain::AgentId;
use mcp_domain::TaskId;
use mcp_domain::store::mcp::{McpStore, SubScope};
use rmcp::model::{
    ResourceUpdatedNotification, ResourceUpdatedNotificationParam, ServerJsonRpcMessage,
    ServerNotification,
};
use rmcp::service::SubscriptionSink;
use rmcp::transport::streamable_http_server::session::ServerSseMessage;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// How long a new subscriber waits for the process's event subscription to be confirmed.
const READY_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause before re-subscribing after the pub/sub connection is lost.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);
/// Notifications buffered per session stream before new ones are dropped.
const STREAM_BUFFER: usize = 64;

/// An open `subscriptions/listen` request: canonical key -> URI as the client wrote it.
struct Listener {
    uris: HashMap<String, String>,
    sink: SubscriptionSink,
}

/// The process's MCP subscribers and its event subscription.
pub struct Hub {
    store: McpStore,
    listeners: Mutex<HashMap<u64, Listener>>,
    /// Session id -> the sender into that session's standalone stream on this process.
    streams: Mutex<HashMap<String, mpsc::Sender<ServerSseMessage>>>,
    next_id: AtomicU64,
    /// True while the event subscription is confirmed by Redis.
    ready: watch::Sender<bool>,
    started: Mutex<bool>,
    /// Stops the event subscription (when the gateway shuts down).
    cancel: CancellationToken,
}

impl Hub {
    pub fn new(store: McpStore, cancel: CancellationToken) -> Arc<Hub> {
        Arc::new(Hub {
            store,
            listeners: Mutex::default(),
            streams: Mutex::default(),
            next_id: AtomicU64::new(1),
            ready: watch::channel(false).0,
            started: Mutex::new(false),
            cancel,
        })
    }

    pub fn store(&self) -> &McpStore {
        &self.store
    }

    /// Starts the event subscription if needed and waits (bounded) until Redis confirms it,
    /// so that a change made after this returns is seen.
    async fn ensure_events(self: &Arc<Self>) {
        {
            let mut started = self.started.lock().unwrap_or_else(|p| p.into_inner());
            if !*started {
                *started = true;
                tokio::spawn(pump(Arc::downgrade(self), self.cancel.clone()));
            }
        }
        let mut ready = self.ready.subscribe();
        let _ = tokio::time::timeout(READY_TIMEOUT, ready.wait_for(|r| *r)).await;
    }

    /// Registers a listener; it is dropped when the returned guard is.
    pub async fn listen(
        self: &Arc<Self>,
        uris: HashMap<String, String>,
        sink: SubscriptionSink,
    ) -> ListenerGuard {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, Listener { uris, sink });
        self.ensure_events().await;
        ListenerGuard {
            hub: Arc::downgrade(self),
            id,
        }
    }

    /// Tells one listener of the changes among `events` (its catch-up after registering).
    pub fn replay(&self, guard: &ListenerGuard, events: &[Event]) {
        let listeners = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = listeners.get(&guard.id) {
            for event in events {
                notify_listener(l, &changed_by(event));
            }
        }
    }

    /// Attaches a session's standalone stream on this process: the notifications for the
    /// session's subscriptions come out of the returned receiver.
    pub async fn attach_stream(
        self: &Arc<Self>,
        session: &str,
    ) -> mpsc::Receiver<ServerSseMessage> {
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        {
            let mut streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
            // Streams whose client went away without closing its session.
            streams.retain(|_, tx| !tx.is_closed());
            streams.insert(session.to_owned(), tx);
        }
        self.ensure_events().await;
        rx
    }

    /// Forgets a session's stream (the session was closed).
    pub fn detach_stream(&self, session: &str) {
        self.streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(session);
    }

    /// Notifies this process's subscribers of the resources `event` changed.
    pub async fn dispatch(&self, event: &Event) {
        let keys = changed_by(event);
        if keys.is_empty() {
            return;
        }
        {
            let listeners = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
            for l in listeners.values() {
                notify_listener(l, &keys);
            }
        }
        let has_streams = !self
            .streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty();
        if has_streams {
            self.notify_sessions(event, &keys).await;
        }
    }

    async fn notify_sessions(&self, event: &Event, keys: &[String]) {
        let mut subscribers = Vec::new();
        if let Ok(task) = TaskId::parse(&event.task_id) {
            match self.store.subscribers(SubScope::Task(&task)).await {
                Ok(s) => subscribers.extend(s),
                Err(e) => tracing::warn!(error = %e, "reading MCP subscriptions failed"),
            }
        }
        if let Some(agent) = event
            .agent_id
            .as_deref()
            .and_then(|a| AgentId::parse(a).ok())
        {
            match self.store.subscribers(SubScope::Agent(&agent)).await {
                Ok(s) => subscribers.extend(s),
                Err(e) => tracing::warn!(error = %e, "reading MCP subscriptions failed"),
            }
        }
        let mut streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        for sub in subscribers.iter().filter(|s| keys.contains(&s.key)) {
            let Some(tx) = streams.get(&sub.session) else {
                continue;
            };
            match tx.try_send(updated_message(&sub.uri)) {
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    streams.remove(&sub.session);
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::debug!(session = %sub.session, "MCP stream full; notification dropped");
                }
                Ok(()) => {}
            }
        }
    }
}

/// Unregisters a listener when dropped.
pub struct ListenerGuard {
    hub: Weak<Hub>,
    id: u64,
}

impl Drop for ListenerGuard {
    fn drop(&mut self) {
        if let Some(hub) = self.hub.upgrade() {
            hub.listeners
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&self.id);
        }
    }
}

fn notify_listener(l: &Listener, keys: &[String]) {
    for key in keys {
        if let Some(uri) = l.uris.get(key) {
            let sink = l.sink.clone();
            let uri = uri.clone();
            tokio::spawn(async move {
                if let Err(e) = sink.notify_resource_updated(uri).await {
                    tracing::debug!(error = %e, "MCP listener notification not sent");
                }
            });
        }
    }
}

/// `notifications/resources/updated` for `uri`, as an SSE message.
fn updated_message(uri: &str) -> ServerSseMessage {
    ServerSseMessage::from_message(ServerJsonRpcMessage::notification(
        ServerNotification::ResourceUpdatedNotification(ResourceUpdatedNotification::new(
            ResourceUpdatedNotificationParam::new(uri),
        )),
    ))
}

/// The process's event subscription: (re)subscribes, dispatches, until cancelled or the hub
/// is gone.
async fn pump(hub: Weak<Hub>, cancel: CancellationToken) {
    loop {
        let Some(store) = hub.upgrade().map(|h| h.store.clone()) else {
            return;
        };
        let events = tokio::select! {
            events = store.events(READY_TIMEOUT) => events,
            () = cancel.cancelled() => return,
        };
        match events {
            Ok(events) => {
                if let Some(h) = hub.upgrade() {
                    h.ready.send_replace(true);
                }
                let mut events = std::pin::pin!(events);
                loop {
                    let next = tokio::select! {
                        next = events.next() => next,
                        () = cancel.cancelled() => return,
                    };
                    let Some(event) = next else { break };
                    let Some(h) = hub.upgrade() else { return };
                    h.dispatch(&event).await;
                }
                if let Some(h) = hub.upgrade() {
                    h.ready.send_replace(false);
                }
                tracing::warn!("MCP event subscription lost; re-subscribing");
            }
            Err(e) => tracing::warn!(error = %e, "MCP event subscription failed; retrying"),
        }
        tokio::select! {
            () = tokio::time::sleep(RECONNECT_DELAY) => {}
            () = cancel.cancelled() => return,
        }
    }
}

/// The URI keys of the resources a client named, keyed canonically; URIs that name no
/// resource of this server are left out.
pub fn keyed(uris: &[String]) -> HashMap<String, String> {
    uris.iter()
        .filter_map(|u| ResourceUri::parse(u).ok().map(|r| (r.key(), u.clone())))
        .collect()
}
