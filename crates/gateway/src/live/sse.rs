//! `GET /tasks/{task_id}/events`: a task's events as Server-Sent Events.
//!
//! Each message is `id: <stream id>` (absent on foreign events), `event: <type>`,
//! `data: <envelope JSON>`. Replays after `Last-Event-ID` (or `?since=`, the header wins, as
//! a browser's `EventSource` resends it on reconnect), then live events; comment lines keep
//! the connection alive; `?types=a,b` filters. A stream the server ends on purpose (slow
//! consumer, shutdown, Redis unreadable, the caller's token expired) ends with `event: cutoff`,
//! a `retry:` hint and a [`Cutoff`](mcp_api::live::Cutoff) body naming `resume_from`.

use super::{WatchItem, parse_since, parse_types};
use crate::AppState;
use crate::error::ApiError;
use crate::extract::Caller;
use crate::extract::{Path, Query};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use serde::Deserialize;
use std::convert::Infallible;
use std::time::Duration;

#[derive(Debug, Deserialize)]
pub(super) struct EventsQuery {
    /// Resume after this stream id (`Last-Event-ID` wins when both are given).
    since: Option<String>,
    /// Comma-separated event types to receive; absent: all.
    types: Option<String>,
    /// The acting agent (with authentication off), as on every resource.
    agent_id: Option<String>,
}

pub(super) async fn task_events(
    State(s): State<AppState>,
    caller: Caller,
    Path(task_id): Path<String>,
    Query(q): Query<EventsQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let actor = caller.actor(Some(&task_id), q.agent_id.as_deref())?;
    let last_event_id = headers
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or("\u{0}").to_owned());
    let start = parse_since(last_event_id.as_deref().or(q.since.as_deref()))?;
    let types = parse_types(q.types.iter().flat_map(|t| t.split(',')))?;
    let task = s.service.open_events(&actor, &task_id).await?;
    let mut watch = s.live.hub.watch(actor, task, start, types).await?;
    watch.end_at(caller.token_deadline());
    let stream = futures::stream::unfold(watch, |mut watch| async move {
        let item = watch.next().await?;
        Some((Ok::<_, Infallible>(to_sse(item)), watch))
    });
    Ok(sse_response(stream, s.live.keepalive))
}

fn sse_response<S>(stream: S, keepalive: Duration) -> Response
where
    S: Stream<Item = Result<SseEvent, Infallible>> + Send + 'static,
{
    let mut resp = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(keepalive).text("keep-alive"))
        .into_response();
    // Proxies (nginx) must not buffer the stream.
    resp.headers_mut().insert(
        "x-accel-buffering",
        axum::http::HeaderValue::from_static("no"),
    );
    resp
}

fn to_sse(item: WatchItem) -> SseEvent {
    match item {
        WatchItem::Event(ev) => {
            // A foreign type could hold a line break, which would end the SSE field.
            let kind = ev.event.kind.as_str().replace(['\n', '\r'], " ");
            let msg = SseEvent::default().event(kind).data(ev.json.as_str());
            match ev.id {
                Some(id) => msg.id(id.to_string()),
                None => msg,
            }
        }
        WatchItem::End(cutoff) => SseEvent::default()
            .event("cutoff")
            .retry(Duration::from_millis(cutoff.retry_after_ms))
            .data(serde_json::to_string(&cutoff).expect("a cutoff serialises")),
    }
}
