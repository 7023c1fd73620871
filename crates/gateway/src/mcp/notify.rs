//! Resource-update notifications: which MCP subscribers of this process hear of a change.
//!
//! The process's live-event hub ([`crate::live::Hub`], the one Redis subscription that also
//! feeds SSE and WebSocket) gives this module a [`Tap`] on every task's events, taken when the
//! first subscriber arrives; each event goes through [`Hub::dispatch`]. Each event names the
//! resources it changes ([`super::resources::changed_by`]); two kinds of local subscriber are
//! told:
//!
//! * **listeners** (protocol 2026-07-28): an open `subscriptions/listen` request served by this
//!   process, with its set of resource URIs, kept here in memory;
//! * **session streams** (protocol 2025-11-25): a session's standalone SSE stream (`GET /mcp`)
//!   held by this process. The session's `resources/subscribe` may have reached any instance,
//!   so its subscriptions are read from Redis (one set per task or agent), not from memory.
//!
//! Notifications are hints to re-read: one lost while Redis reconnects (or while this module
//! lags so far behind that the live hub cuts its tap off) is not replayed, and a listener may
//! hear of a change made just before it subscribed (its catch-up reads the task's recent
//! events). A slow subscriber is skipped rather than waited for.
//!
//! **Resuming a session stream.** Each notification on a session stream carries an SSE id,
//! `u<ms>-<seq>`: the position of the event that caused it in its task's event stream
//! ([`position_id`]). A new stream starts with an empty event whose id is its start (less
//! [`super::handler::CATCH_UP`], for clock skew and publishing delay). A client that
//! reconnects with one of these ids as `Last-Event-ID`, to any instance, first hears of every
//! change to its subscribed task resources after that position ([`Hub::catch_up`], read from
//! the tasks' event streams), then of live changes. A change may be told twice (around the
//! resume point); none made while the client was away is missed, as long as the task's event
//! stream still holds it (`EVENTS_MAXLEN`). Agent resources have no stream of their own: each
//! subscribed one gets one notification on resume.

use super::resources::{ResourceUri, changed_by, message_recipients};
use crate::live::{self, Delivery, Tap};
use mcp_api::{Event, StreamId};
use mcp_domain::AgentId;
use mcp_domain::Service;
use mcp_domain::TaskId;
use mcp_domain::store::hot::McpSessions;
use mcp_domain::store::hot::SubScope;
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
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How long a new subscriber waits for the live hub's Redis subscription to be up.
const READY_TIMEOUT: Duration = Duration::from_secs(5);
/// Notifications buffered per session stream before new ones are dropped.
const STREAM_BUFFER: usize = 64;

/// An open `subscriptions/listen` request: canonical key -> URI as the client wrote it.
struct Listener {
    uris: HashMap<String, String>,
    sink: SubscriptionSink,
    /// Who listens and under which request id: what a `notifications/cancelled` names.
    name: ListenName,
    /// Fired by a `notifications/cancelled` naming this listen, on any instance.
    cancel: CancellationToken,
}

/// What names an open listen for a cancellation: the caller's agent (`None`: authentication
/// is off, every caller is trusted and anonymous) and the JSON text of the request id.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ListenName {
    /// The caller's agent; `None` with authentication off.
    pub agent: Option<String>,
    /// The request id, as JSON text.
    pub request_id: String,
}

impl ListenName {
    /// As published to the other instances (JSON).
    fn payload(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The process's MCP subscribers and its event subscription.
pub struct Hub {
    /// The MCP session state of the hot store (sessions, subscriptions, cancellations).
    store: Arc<dyn McpSessions>,
    /// The domain, for a task's members.
    service: Service,
    /// The process's live-event hub, source of the events.
    live: live::Hub,
    listeners: Mutex<HashMap<u64, Listener>>,
    /// Session id -> the sender into that session's standalone stream on this process.
    streams: Mutex<HashMap<String, mpsc::Sender<ServerSseMessage>>>,
    next_id: AtomicU64,
    /// Whether the tap's reader runs.
    started: Mutex<bool>,
    /// Whether the reader of cancellations runs, and whether it is subscribed.
    cancels_started: Mutex<bool>,
    cancels_ready: std::sync::atomic::AtomicBool,
    /// Stops the tap's reader (when the gateway shuts down).
    cancel: CancellationToken,
}

impl Hub {
    /// A hub over `service`'s session state and the process's live hub; `cancel` stops its
    /// readers.
    pub fn new(service: &Service, live: live::Hub, cancel: CancellationToken) -> Arc<Hub> {
        Arc::new(Hub {
            store: service.mcp_sessions(),
            service: service.clone(),
            live,
            listeners: Mutex::default(),
            streams: Mutex::default(),
            next_id: AtomicU64::new(1),
            started: Mutex::new(false),
            cancels_started: Mutex::new(false),
            cancels_ready: std::sync::atomic::AtomicBool::new(false),
            cancel,
        })
    }

    /// The hot store's MCP session state.
    pub fn store(&self) -> &Arc<dyn McpSessions> {
        &self.store
    }

    /// Taps the live hub if not done yet, and waits (bounded) until its Redis subscription is
    /// up, so that a change made after this returns is seen.
    async fn ensure_events(self: &Arc<Self>) {
        {
            let mut started = self.started.lock().unwrap_or_else(|p| p.into_inner());
            if !*started {
                *started = true;
                // Tapped here, synchronously: deliveries from now on are queued for the reader.
                let tap = self.live.tap();
                tokio::spawn(read_tap(Arc::downgrade(self), tap, self.cancel.clone()));
            }
        }
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        while !self.live.is_connected() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Registers a listener; it is dropped when the returned guard is.
    pub async fn listen(
        self: &Arc<Self>,
        uris: HashMap<String, String>,
        sink: SubscriptionSink,
        name: ListenName,
        accepted_ms: i64,
    ) -> ListenerGuard {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let cancel = CancellationToken::new();
        let payload = name.payload();
        self.listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                id,
                Listener {
                    uris,
                    sink,
                    name,
                    cancel: cancel.clone(),
                },
            );
        self.ensure_events().await;
        self.ensure_cancels().await;
        // A cancellation published before this process heard it (the client may cancel as
        // soon as it has the acknowledgment, which rmcp sends before this registration).
        match self.store.listen_cancelled_at(&payload).await {
            Ok(Some(at)) if at >= accepted_ms => cancel.cancel(),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "reading a listen's cancellation failed"),
        }
        ListenerGuard {
            hub: Arc::downgrade(self),
            id,
            cancel,
        }
    }

    /// Starts the reader of cancellations if not done yet, and waits (bounded) until it is
    /// subscribed, so that a cancellation published after this returns is heard.
    async fn ensure_cancels(self: &Arc<Self>) {
        {
            let mut started = self
                .cancels_started
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if !*started {
                *started = true;
                tokio::spawn(read_cancels(Arc::downgrade(self), self.cancel.clone()));
            }
        }
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        while !self.cancels_ready.load(Ordering::Relaxed) && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A `notifications/cancelled` naming a listen arrived (on this instance): ends it here
    /// and tells every other instance, one of which may hold it.
    pub async fn cancel_listen(&self, name: &ListenName) {
        self.end_listens(name);
        let now = chrono::Utc::now().timestamp_millis();
        if let Err(e) = self.store.publish_listen_cancel(&name.payload(), now).await {
            tracing::warn!(error = %e, "publishing a listen's cancellation failed");
        }
    }

    /// Ends this process's listens that `name` names.
    fn end_listens(&self, name: &ListenName) {
        let listeners = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        for l in listeners.values().filter(|l| l.name == *name) {
            l.cancel.cancel();
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
        let mut keys = changed_by(event);
        if message_recipients(event).is_none() {
            // A message for everyone on the task: the inboxes of its members.
            keys.extend(
                self.members_but_sender(event)
                    .await
                    .iter()
                    .map(|a| format!("inbox://{a}")),
            );
        }
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

    /// The members of the event's task, without the event's agent (a message's sender).
    async fn members_but_sender(&self, event: &Event) -> Vec<String> {
        let Ok(task) = TaskId::parse(&event.task_id) else {
            return Vec::new();
        };
        match self.service.members(&task).await {
            Ok(members) => members
                .into_iter()
                .flatten()
                .map(|m| m.agent_id)
                .filter(|a| Some(a.as_str()) != event.agent_id.as_deref())
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "reading the task's members failed");
                Vec::new()
            }
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
        // Agent-scoped resources: the actor's status, and the inboxes the event names.
        let mut agents: Vec<&str> = event.agent_id.as_deref().into_iter().collect();
        agents.extend(keys.iter().filter_map(|k| k.strip_prefix("inbox://")));
        agents.sort_unstable();
        agents.dedup();
        for agent in agents.into_iter().filter_map(|a| AgentId::parse(a).ok()) {
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
            match tx.try_send(updated_message(&sub.uri, event.id.as_deref())) {
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
    cancel: CancellationToken,
}

impl ListenerGuard {
    /// Resolves when a `notifications/cancelled` names this listen (on any instance).
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await;
    }
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

/// `notifications/resources/updated` for `uri`, as an SSE message whose id is the position of
/// the event that caused it (`event_id`, a task event stream id), when known.
fn updated_message(uri: &str, event_id: Option<&str>) -> ServerSseMessage {
    let mut message = ServerSseMessage::from_message(ServerJsonRpcMessage::notification(
        ServerNotification::ResourceUpdatedNotification(ResourceUpdatedNotification::new(
            ResourceUpdatedNotificationParam::new(uri),
        )),
    ));
    message.event_id = event_id.map(|id| format!("{POSITION_PREFIX}{id}"));
    message
}

/// The prefix of the SSE ids this module gives (rmcp's own are bare numbers, or `n/m`).
const POSITION_PREFIX: char = 'u';

/// The SSE id of a position in the task event streams: `u<ms>-<seq>`.
pub fn position_id(position: StreamId) -> String {
    format!("{POSITION_PREFIX}{position}")
}

/// The position a `Last-Event-ID` this module gave names; `None` for any other id.
pub fn parse_position(id: &str) -> Option<StreamId> {
    StreamId::parse(id.strip_prefix(POSITION_PREFIX)?)
}

/// The empty event that opens a session stream at `position`: the client's resume point
/// until the first notification.
pub fn start_message(position: StreamId) -> ServerSseMessage {
    let mut message = ServerSseMessage::retry(Duration::ZERO);
    message.retry = None;
    message.event_id = Some(position_id(position));
    message
}

/// Most events one task's catch-up reads.
const CATCH_UP_EVENTS: usize = 1_000;

impl Hub {
    /// What a session stream resuming after `after` missed: a notification for each change
    /// to one of the session's subscribed resources after that position, oldest first, with
    /// their ids; and one for each subscribed agent resource.
    pub async fn catch_up(&self, session: &str, after: StreamId) -> Vec<ServerSseMessage> {
        let subscriptions = match self.store.session_subscriptions(session).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "reading a session's MCP subscriptions failed");
                return Vec::new();
            }
        };
        let mut by_task: HashMap<TaskId, Vec<(String, String)>> = HashMap::new();
        let mut missed: Vec<(StreamId, ServerSseMessage)> = Vec::new();
        // A position from before the store's event streams begin (the embedded gateway
        // restarted since): what changed then is not known, so each subscribed resource gets
        // one hint to re-read, then the events since the streams began.
        let before_streams = self
            .store
            .events_complete_since_ms()
            .is_some_and(|since| i128::from(after.ms) < i128::from(since));
        if before_streams {
            for sub in &subscriptions {
                missed.push((after, updated_message(&sub.uri, None)));
            }
        }
        for sub in subscriptions {
            match ResourceUri::parse(&sub.uri)
                .ok()
                .and_then(|r| r.task().cloned())
            {
                Some(task) => by_task.entry(task).or_default().push((sub.key, sub.uri)),
                // An agent resource: no stream of its own to read; one hint to re-read.
                None if !before_streams => {
                    missed.push((after, updated_message(&sub.uri, None)));
                }
                None => {}
            }
        }
        for (task, subs) in by_task {
            let events = match self
                .store
                .events_since(
                    &task,
                    i64::try_from(after.ms).unwrap_or(i64::MAX),
                    CATCH_UP_EVENTS,
                )
                .await
            {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(error = %e, task = %task, "catching a session stream up failed");
                    continue;
                }
            };
            for event in events {
                let Some(position) = event.id.as_deref().and_then(StreamId::parse) else {
                    continue;
                };
                if position <= after {
                    continue;
                }
                let keys = changed_by(&event);
                for (key, uri) in &subs {
                    if keys.contains(key) {
                        missed.push((position, updated_message(uri, event.id.as_deref())));
                    }
                }
            }
        }
        missed.sort_by_key(|(position, _)| *position);
        missed.into_iter().map(|(_, m)| m).collect()
    }
}

/// Reads the tap until the gateway shuts down: each event to [`Hub::dispatch`]. A tap the
/// live hub cut off (this reader lagged) is replaced; the events it dropped are not replayed.
async fn read_tap(hub: Weak<Hub>, mut tap: Tap, cancel: CancellationToken) {
    loop {
        let delivery = tokio::select! {
            d = tap.recv() => d,
            () = cancel.cancelled() => return,
        };
        let Some(h) = hub.upgrade() else { return };
        match delivery {
            Some(Delivery::Event(live)) => h.dispatch(&live.event).await,
            // Redis came back after an outage; what was published meanwhile is gone.
            Some(Delivery::Resync) => {}
            None if h.live.closing().is_cancelled() => return,
            None => {
                tracing::warn!(reason = ?tap.end_reason(), "MCP notifications lagged; re-tapping");
                tap = h.live.tap();
            }
        }
    }
}

/// How often the cancellation subscription is probed (a half-open connection is silent).
const CANCELS_PING: Duration = Duration::from_secs(15);

/// Reads the cancellations of listens published by every instance until the gateway shuts
/// down, subscribing again (after a second) whenever the subscription is lost.
async fn read_cancels(hub: Weak<Hub>, shutdown: CancellationToken) {
    loop {
        let Some(store) = hub.upgrade().map(|h| h.store.clone()) else {
            return;
        };
        match store.subscribe_listen_cancels().await {
            Ok(mut source) => {
                if let Some(h) = hub.upgrade() {
                    h.cancels_ready.store(true, Ordering::Relaxed);
                }
                let mut pinger = source.pinger();
                let mut probe = tokio::time::interval(CANCELS_PING);
                probe.tick().await;
                loop {
                    tokio::select! {
                        m = source.next() => {
                            let Some(payload) = m else { break };
                            let Some(h) = hub.upgrade() else { return };
                            match serde_json::from_str::<ListenName>(&payload) {
                                Ok(name) => h.end_listens(&name),
                                Err(e) => tracing::debug!(error = %e, "not a listen's cancellation"),
                            }
                        }
                        _ = probe.tick() => {
                            if pinger.ping().await.is_err() {
                                break;
                            }
                        }
                        () = shutdown.cancelled() => return,
                    }
                }
                if let Some(h) = hub.upgrade() {
                    h.cancels_ready.store(false, Ordering::Relaxed);
                }
                tracing::warn!(
                    "the subscription to listen cancellations was lost; subscribing again"
                );
            }
            Err(e) => tracing::warn!(error = %e, "subscribing to listen cancellations failed"),
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = shutdown.cancelled() => return,
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
