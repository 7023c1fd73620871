//! Live events: SSE (`GET /tasks/{task_id}/events`) and WebSocket (`GET /ws`) streams of a
//! task's events, resumable without gap or duplicate, across gateway instances.
//!
//! * [`hub`] — [`Hub`]: the process's one Redis subscription, fanned out in memory to
//!   bounded per-watcher queues; slow watchers are cut off; reconnects after an outage.
//! * [`watch`] — [`Watch`]: one watcher of one task (replay from a resume point, then live).
//!   The reusable piece: SSE, WebSocket and MCP resource subscriptions all consume it.
//! * `queue` — a watcher's bounded queue of deliveries (one sender, one receiver).
//! * [`inbox`] — rings the process's inbox bell for `message_sent` events (long-polling
//!   `read_messages` calls wake on messages sent through any instance).
//! * [`sse`], [`ws`] — the two HTTP doors (thin: parse, authorise through
//!   `Service::open_events`, then stream a `Watch`).

pub mod hub;
pub mod inbox;
mod queue;
mod sse;
pub mod watch;
mod ws;

pub use hub::{Delivery, Hub, HubConfig, HubStats, LiveEvent, Subscription, Tap};
pub use watch::{StartAt, Watch, WatchItem};

use crate::AppState;
use crate::error::ApiError;
use axum::Router;
use axum::routing::get;
use mcp_api::{ErrorCode, StreamId};
use std::time::Duration;

/// Most event types one filter may name.
const MAX_TYPES: usize = 64;

/// What the live routes need: the hub and their knobs.
#[derive(Clone)]
pub struct LiveState {
    /// The process's fan-out of live events to its watchers.
    pub hub: Hub,
    /// Interval of SSE keep-alive comments and WebSocket pings.
    pub keepalive: Duration,
    /// Most task subscriptions on one WebSocket.
    pub ws_max_subscriptions: usize,
}

/// The live routes: `GET /tasks/{task_id}/events` (SSE) and `GET /ws` (WebSocket).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/tasks/{task_id}/events", get(sse::task_events))
        .route("/ws", get(ws::upgrade))
}

/// A resume point from `Last-Event-ID` / `since`: a stream id, or `0` for the whole stream;
/// absent: from now on. Checked by THE client stream-id rule (`StreamId::parse_resume_point`):
/// a point past the end of every stream would otherwise end each attempt with a `cutoff`
/// naming the same point, or wait silently forever.
pub fn parse_since(since: Option<&str>) -> Result<StartAt, ApiError> {
    match since.map(str::trim) {
        None | Some("") => Ok(StartAt::Now),
        Some(s) => {
            let now_ms = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0);
            StreamId::parse_resume_point(s, now_ms)
                .map(StartAt::After)
                .map_err(|why| {
                    ApiError::new(
                        ErrorCode::InvalidArgument,
                        format!("since / Last-Event-ID: {why}"),
                    )
                })
        }
    }
}

/// An event-type filter's names, each once: a boxed slice, not a `HashSet` (held by every
/// watcher for its life; at most [`MAX_TYPES`], usually one or two, so a scan is as quick as a
/// hash; issue #19).
pub type EventTypes = Box<[Box<str>]>;

/// An event-type filter: names of `[a-z0-9_.:-]`, at most [`MAX_TYPES`]; none: no filter.
pub fn parse_types<'a>(
    names: impl IntoIterator<Item = &'a str>,
) -> Result<Option<EventTypes>, ApiError> {
    let mut set: Vec<Box<str>> = Vec::new();
    for name in names.into_iter().map(str::trim).filter(|n| !n.is_empty()) {
        let ok = name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b));
        if !ok {
            return Err(ApiError::new(
                ErrorCode::InvalidArgument,
                format!("invalid event type in types: '{name}'"),
            ));
        }
        if !set.iter().any(|n| &**n == name) {
            set.push(name.into());
        }
    }
    if set.len() > MAX_TYPES {
        return Err(ApiError::new(
            ErrorCode::InvalidArgument,
            format!("types names more than {MAX_TYPES} event types"),
        ));
    }
    Ok((!set.is_empty()).then(|| set.into_boxed_slice()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_points_and_filters_are_validated() {
        assert_eq!(parse_since(None).unwrap(), StartAt::Now);
        assert_eq!(
            parse_since(Some("0")).unwrap(),
            StartAt::After(StreamId::ZERO)
        );
        assert!(parse_since(Some("abc")).is_err());
        assert!(parse_since(Some("18446744073709551615-18446744073709551615")).is_err());
        assert_eq!(parse_types(["", " "]).unwrap(), None);
        assert_eq!(
            parse_types(["step_logged", "file_written"])
                .unwrap()
                .unwrap()
                .len(),
            2
        );
        assert!(parse_types(["a b"]).is_err());
    }
}
