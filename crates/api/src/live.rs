//! The live-stream wire contract: the WebSocket messages of `GET /ws` and the bodies of the
//! SSE control messages of `GET /tasks/{task_id}/events`.
//!
//! SSE: each event is `id: <stream id>`, `event: <type>`, `data: <envelope JSON>` (events
//! that foreign systems only published have no `id:` line); comment lines keep the
//! connection alive; a stream the server ends on purpose ends with `event: cutoff` whose data
//! is a [`Cutoff`]. WebSocket: one JSON object per text frame, tagged by `op`.

use crate::event::Event;
use serde::{Deserialize, Serialize};

/// Why the server ended a stream (or one WebSocket subscription). Every reason means the
/// same to a client: reconnect (after `retry_after_ms`) and resume from `resume_from` — for
/// `token_expired`, with a new token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CutoffReason {
    /// The watcher did not keep up: its bounded queue filled.
    SlowConsumer,
    /// The gateway is shutting down.
    Shutdown,
    /// Redis could not be read to replay or catch up.
    Unavailable,
    /// The bearer token the stream was opened with expired (it would now get 401).
    TokenExpired,
}

/// The data of a final `event: cutoff` SSE message (and the fields of the WebSocket
/// `cutoff` message).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cutoff {
    /// Why the stream was cut off.
    pub reason: CutoffReason,
    /// A sentence for humans.
    pub detail: String,
    /// Resume from here (`Last-Event-ID` / `since`): the position the stream had reached.
    pub resume_from: String,
    /// How long to wait before reconnecting.
    pub retry_after_ms: u64,
}

/// A message from a WebSocket client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ClientMessage {
    /// Start receiving a task's events, replaying those after `since` first.
    Subscribe {
        /// The task whose events to receive.
        task_id: String,
        /// A stream id; absent: only events from now on.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<String>,
        /// Only these event types; absent: all.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        types: Option<Vec<String>>,
        /// The acting agent, when authentication is off (as `?agent_id=` on REST).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agent_id: Option<String>,
    },
    /// Stop receiving a task's events.
    Unsubscribe {
        /// The task to stop.
        task_id: String,
    },
    /// Asks for a `pong` (keep-alive).
    Ping,
}

/// A message from the server on a WebSocket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ServerMessage {
    /// The subscription is live; events after `since` follow.
    Subscribed {
        /// The task subscribed to.
        task_id: String,
        /// The stream position the subscription starts after.
        since: String,
    },
    /// The subscription ended at the client's request.
    Unsubscribed {
        /// The task unsubscribed from.
        task_id: String,
    },
    /// One of the task's events.
    Event {
        /// The task it belongs to.
        task_id: String,
        /// The event, as on the SSE stream.
        event: Event,
    },
    /// The answer to a `ping`.
    Pong,
    /// A request was refused (`code` from the error table); `task_id` when it names one.
    Error {
        /// The error code (the gateway's error table).
        code: String,
        /// A sentence for humans.
        detail: String,
        /// The task the refused request named, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        task_id: Option<String>,
    },
    /// The server ended one subscription; subscribe again with `since: resume_from`.
    Cutoff {
        /// The task whose subscription ended.
        task_id: String,
        /// Why, and where to resume.
        #[serde(flatten)]
        cutoff: Cutoff,
    },
}
