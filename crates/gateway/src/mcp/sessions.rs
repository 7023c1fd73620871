//! Sessions of the 2025-11-25 protocol generation (the `initialize` handshake and the
//! `Mcp-Session-Id` header), made instance-independent:
//!
//! * [`HotSessionStore`] keeps each session's `initialize` parameters in Redis, so when a
//!   request of a session reaches an instance that has not seen it, rmcp restores the session
//!   there transparently (no session affinity needed at the load balancer). With the state it
//!   keeps the session's creator ([`CREATOR`]): with authentication on a session belongs to
//!   the agent that created it, and `super::authenticate` answers any other caller 404, as for
//!   an unknown session, on every instance.
//! * [`GatewaySessions`] is rmcp's in-memory session manager plus one thing: the session's
//!   standalone SSE stream (`GET /mcp`) also carries the `notifications/resources/updated` that
//!   [`super::notify::Hub`] routes to it, wherever the `resources/subscribe` was received.
//!
//! The 2026-07-28 generation has no sessions; its requests never come here.

use super::handler::CATCH_UP;
use super::notify::{Hub, parse_position, start_message};
use futures::{Stream, StreamExt};
use mcp_api::StreamId;
use mcp_domain::store::hot::{McpSession, McpSessions};
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::transport::streamable_http_server::session::local::{
    LocalSessionManager, LocalSessionManagerError,
};
use rmcp::transport::streamable_http_server::session::{
    EventStore, RestoreOutcome, ServerSseMessage, SessionId, SessionManager, SessionState,
    SessionStore, SessionStoreError,
};
use std::sync::Arc;
use std::time::Duration;
use tokio_stream::wrappers::ReceiverStream;

/// How long an idle session's state is kept in Redis (each use extends it).
pub const SESSION_TTL: Duration = Duration::from_secs(24 * 3600);

tokio::task_local! {
    /// The authenticated agent of the `/mcp` request being served (`None`: authentication is
    /// off). rmcp saves a new session's state from inside the `initialize` request without
    /// handing the store the request, so `super::authenticate` runs the request in this scope
    /// and [`HotSessionStore::store`] records it as the session's owner.
    pub static CREATOR: Option<String>;
}

/// Session state in Redis (`mcp_session:{id}`), shared by every gateway instance.
pub struct HotSessionStore {
    store: Arc<dyn McpSessions>,
}

impl HotSessionStore {
    /// Over the hot store's MCP sessions.
    pub fn new(store: Arc<dyn McpSessions>) -> HotSessionStore {
        HotSessionStore { store }
    }
}

#[async_trait::async_trait]
impl SessionStore for HotSessionStore {
    async fn load(&self, session_id: &str) -> Result<Option<SessionState>, SessionStoreError> {
        match self.store.load_session(session_id, SESSION_TTL).await? {
            Some(record) => Ok(Some(serde_json::from_str(&record.state)?)),
            None => Ok(None),
        }
    }

    async fn store(&self, session_id: &str, state: &SessionState) -> Result<(), SessionStoreError> {
        let record = McpSession {
            owner: CREATOR.try_with(Clone::clone).ok().flatten(),
            state: serde_json::to_string(state)?,
        };
        Ok(self
            .store
            .save_session(session_id, &record, SESSION_TTL)
            .await?)
    }

    async fn delete(&self, session_id: &str) -> Result<(), SessionStoreError> {
        Ok(self.store.drop_session(session_id).await?)
    }
}

/// rmcp's local session manager, whose standalone streams also carry resource updates.
pub struct GatewaySessions {
    inner: LocalSessionManager,
    hub: Arc<Hub>,
}

impl GatewaySessions {
    /// A manager whose sessions' standalone streams carry `hub`'s resource updates.
    pub fn new(hub: Arc<Hub>) -> GatewaySessions {
        GatewaySessions {
            inner: LocalSessionManager::default(),
            hub,
        }
    }

    /// `stream`, with the session's resource updates merged in; ends when `stream` ends. It
    /// opens with its start position (the client's resume point) and, when resuming after a
    /// position, what the session missed since (`notify` module: "Resuming a session stream").
    async fn with_updates(
        &self,
        id: &SessionId,
        stream: impl Stream<Item = ServerSseMessage> + Send + Sync + 'static,
        resume_after: Option<StreamId>,
    ) -> impl Stream<Item = ServerSseMessage> + Send + Sync + 'static {
        // Never before the hot store's event streams begin (the in-process store's begin
        // with its process), so a position from before them says "from an earlier process".
        let start = (chrono::Utc::now().timestamp_millis() - CATCH_UP.as_millis() as i64).max(
            self.hub
                .store()
                .events_complete_since_ms()
                .unwrap_or(i64::MIN),
        );
        // Attached before the catch-up is read: a change in between is told twice, not never.
        let updates = ReceiverStream::new(self.hub.attach_stream(id).await);
        let mut first = vec![start_message(StreamId {
            ms: u64::try_from(start).unwrap_or(0),
            seq: 0,
        })];
        if let Some(after) = resume_after {
            first.extend(self.hub.catch_up(id, after).await);
        }
        let main = stream
            .map(Some)
            .chain(futures::stream::once(futures::future::ready(None)));
        futures::stream::iter(first).chain(
            futures::stream::select(main, updates.map(Some))
                .take_while(|m| futures::future::ready(m.is_some()))
                .filter_map(futures::future::ready),
        )
    }
}

impl SessionManager for GatewaySessions {
    type Error = LocalSessionManagerError;
    type Transport = <LocalSessionManager as SessionManager>::Transport;

    async fn create_session(&self) -> Result<(SessionId, Self::Transport), Self::Error> {
        self.inner.create_session().await
    }

    async fn initialize_session(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<ServerJsonRpcMessage, Self::Error> {
        self.inner.initialize_session(id, message).await
    }

    async fn has_session(&self, id: &SessionId) -> Result<bool, Self::Error> {
        self.inner.has_session(id).await
    }

    async fn close_session(&self, id: &SessionId) -> Result<(), Self::Error> {
        self.hub.detach_stream(id);
        self.inner.close_session(id).await
    }

    async fn create_stream(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.inner.create_stream(id, message).await
    }

    async fn accept_message(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<(), Self::Error> {
        self.inner.accept_message(id, message).await
    }

    async fn create_standalone_stream(
        &self,
        id: &SessionId,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        let stream = self.inner.create_standalone_stream(id).await?;
        Ok(self.with_updates(id, stream, None).await)
    }

    async fn resume(
        &self,
        id: &SessionId,
        last_event_id: String,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        // A position this gateway gave (any instance): the standalone stream, caught up.
        if let Some(after) = parse_position(&last_event_id) {
            let stream = self.inner.create_standalone_stream(id).await?;
            return Ok(self
                .with_updates(id, stream.left_stream(), Some(after))
                .await
                .left_stream());
        }
        // rmcp's own ids: a standalone stream's carry no request part (`12`, not `12/3`).
        let standalone = !last_event_id.contains('/');
        let stream = self.inner.resume(id, last_event_id).await?;
        Ok(if standalone {
            self.with_updates(id, stream.right_stream(), None)
                .await
                .left_stream()
        } else {
            stream.right_stream()
        })
    }

    async fn restore_session(
        &self,
        id: SessionId,
    ) -> Result<RestoreOutcome<Self::Transport>, Self::Error> {
        self.inner.restore_session(id).await
    }

    fn event_store(&self) -> Option<Arc<dyn EventStore>> {
        self.inner.event_store()
    }
}
