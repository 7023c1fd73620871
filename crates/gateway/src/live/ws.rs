//! `GET /ws`: one WebSocket, many task subscriptions, each with its own resume point.
//!
//! Messages are JSON text frames tagged by `op` ([`ClientMessage`], [`ServerMessage`]).
//! Each subscription is a task of its own that turns a [`Watch`](super::Watch) into
//! `event` messages (and a final `cutoff`); all of them write through one bounded queue to
//! the socket's writer. A socket that does not keep up stalls its subscriptions, whose hub
//! queues then fill: they are cut off (`cutoff`, `slow_consumer`) like a slow SSE watcher,
//! so memory stays bounded. The server pings every keep-alive interval; `{"op":"ping"}` is
//! answered with `{"op":"pong"}`. On shutdown every subscription gets `cutoff` (`shutdown`)
//! and the socket is closed with code 1012 (service restart). When the token the socket was
//! opened with expires, every subscription gets `cutoff` (`token_expired`) and the socket is
//! closed with code 1008 (policy violation) and the reason `token expired`.

use super::{parse_since, parse_types};
use crate::AppState;
use crate::edge::conn::ConnHold;
use crate::error::ApiError;
use crate::extract::Caller;
use crate::extract::Query;
use axum::Extension;
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use mcp_api::ErrorCode;
use mcp_api::live::{ClientMessage, ServerMessage};
use serde::Deserialize;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Messages waiting for the socket, for all subscriptions of one socket together.
const OUT_QUEUE: usize = 64;
/// Largest client message (they are small JSON objects).
const MAX_CLIENT_MESSAGE: usize = 64 * 1024;
/// Bytes read from the socket at a time (a larger message is read in several). Tungstenite's
/// default, 128 KiB, is zero-filled on the first read, so every socket held 128 KiB resident:
/// 1.4 GiB for 10,000 idle sockets (issue #19, BENCHMARKS.md "Idle watchers at 10,000").
const READ_BUFFER: usize = 4 * 1024;
/// Close code "service restart": reconnect and resubscribe.
const CLOSE_SERVICE_RESTART: u16 = 1012;
/// Close code "policy violation": the socket's token expired; reconnect with a new one.
const CLOSE_POLICY: u16 = 1008;
/// How long shutdown waits for the socket's last messages.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, Deserialize)]
pub(super) struct WsQuery {
    /// The default acting agent of the socket's subscriptions (with authentication off).
    agent_id: Option<String>,
}

/// What the socket writer sends.
enum Outgoing {
    /// A JSON text frame.
    Text(String),
    Ping,
    Close(u16, &'static str),
}

fn text(msg: &ServerMessage) -> Outgoing {
    Outgoing::Text(serde_json::to_string(msg).expect("a server message serialises"))
}

pub(super) async fn upgrade(
    State(s): State<AppState>,
    caller: Caller,
    Query(q): Query<WsQuery>,
    hold: Option<Extension<ConnHold>>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let ws = ws.map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidArgument,
            "GET /ws expects a WebSocket upgrade request",
        )
    })?;
    // The socket keeps its connection's place under the cap, and is never taken for idle.
    let busy = hold.map(|Extension(h)| h.busy());
    Ok(ws
        .max_message_size(MAX_CLIENT_MESSAGE)
        .read_buffer_size(READ_BUFFER)
        .on_upgrade(move |socket| async move {
            let _busy = busy;
            session(s, caller, q.agent_id, socket).await
        })
        .into_response())
}

/// One subscription of the socket: cancelled by `unsubscribe` or the socket's end.
struct Sub {
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

async fn session(s: AppState, caller: Caller, agent: Option<String>, socket: WebSocket) {
    let (mut sink, mut incoming) = socket.split();
    let (out, mut out_rx) = mpsc::channel::<Outgoing>(OUT_QUEUE);
    let writer = tokio::spawn(async move {
        while let Some(o) = out_rx.recv().await {
            let sent = match o {
                Outgoing::Text(t) => sink.send(Message::Text(t.into())).await,
                Outgoing::Ping => sink.send(Message::Ping(Default::default())).await,
                Outgoing::Close(code, reason) => {
                    let frame = CloseFrame {
                        code,
                        reason: reason.into(),
                    };
                    let _ = sink.send(Message::Close(Some(frame))).await;
                    break;
                }
            };
            if sent.is_err() {
                break;
            }
        }
    });
    let mut subs: HashMap<String, Sub> = HashMap::new();
    let closing = s.live.hub.closing();
    let mut keepalive = tokio::time::interval(s.live.keepalive);
    keepalive.reset();
    let expired = until(caller.token_deadline());
    tokio::pin!(expired);
    loop {
        tokio::select! {
            _ = &mut expired => {
                // Each watch ends with a `token_expired` cutoff at the same instant.
                for (_, sub) in subs.drain() {
                    let _ = tokio::time::timeout(CLOSE_GRACE, sub.task).await;
                }
                let _ = out
                    .send(Outgoing::Close(CLOSE_POLICY, "token expired"))
                    .await;
                break;
            }
            _ = closing.cancelled() => {
                // Each watch ends with a `shutdown` cutoff by itself; let them say so.
                for (_, sub) in subs.drain() {
                    let _ = tokio::time::timeout(CLOSE_GRACE, sub.task).await;
                }
                let _ = out
                    .send(Outgoing::Close(CLOSE_SERVICE_RESTART, "server restarting; reconnect and resume"))
                    .await;
                break;
            }
            _ = keepalive.tick() => {
                let _ = out.try_send(Outgoing::Ping);
            }
            msg = incoming.next() => match msg {
                Some(Ok(Message::Text(t))) => {
                    let reply = handle(&s, &caller, agent.as_deref(), &out, &mut subs, t.as_str()).await;
                    if let Some(reply) = reply
                        && out.send(text(&reply)).await.is_err()
                    {
                        break;
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    let e = error(ErrorCode::InvalidArgument, "messages are JSON text frames", None);
                    if out.send(text(&e)).await.is_err() {
                        break;
                    }
                }
                Some(Ok(_)) => {} // ping/pong frames: answered by the library
                None | Some(Err(_)) => break,
            }
        }
    }
    for (_, sub) in subs {
        sub.cancel.cancel();
    }
    drop(out);
    if tokio::time::timeout(CLOSE_GRACE, writer).await.is_err() {
        tracing::debug!("websocket writer did not finish in time");
    }
}

/// Waits until `deadline`; forever when there is none.
async fn until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn error(code: ErrorCode, detail: impl Into<String>, task_id: Option<String>) -> ServerMessage {
    ServerMessage::Error {
        code: code.as_str().to_owned(),
        detail: detail.into(),
        task_id,
    }
}

/// Handles one client message; returns the direct reply, if any (subscriptions answer
/// `subscribed` or `error` from their own task, before their events).
async fn handle(
    s: &AppState,
    caller: &Caller,
    agent: Option<&str>,
    out: &mpsc::Sender<Outgoing>,
    subs: &mut HashMap<String, Sub>,
    text: &str,
) -> Option<ServerMessage> {
    let msg: ClientMessage = match serde_json::from_str(text) {
        Ok(m) => m,
        Err(e) => {
            return Some(error(
                ErrorCode::InvalidArgument,
                format!("invalid message: {e}"),
                None,
            ));
        }
    };
    match msg {
        ClientMessage::Ping => Some(ServerMessage::Pong),
        ClientMessage::Unsubscribe { task_id } => {
            if let Some(sub) = subs.remove(&task_id) {
                sub.cancel.cancel();
                let _ = sub.task.await;
            }
            Some(ServerMessage::Unsubscribed { task_id })
        }
        ClientMessage::Subscribe {
            task_id,
            since,
            types,
            agent_id,
        } => {
            subs.retain(|_, sub| !sub.task.is_finished());
            if subs.contains_key(&task_id) {
                return Some(error(
                    ErrorCode::InvalidArgument,
                    "already subscribed to this task; unsubscribe first",
                    Some(task_id),
                ));
            }
            if subs.len() >= s.live.ws_max_subscriptions {
                return Some(error(
                    ErrorCode::InvalidArgument,
                    format!(
                        "at most {} subscriptions per socket",
                        s.live.ws_max_subscriptions
                    ),
                    Some(task_id),
                ));
            }
            let cancel = CancellationToken::new();
            let request = Subscribe {
                task_id: task_id.clone(),
                since,
                types,
                agent_id: agent_id.or(agent.map(str::to_owned)),
            };
            let task = tokio::spawn(forward(
                s.clone(),
                caller.clone(),
                request,
                out.clone(),
                cancel.clone(),
            ));
            subs.insert(task_id, Sub { cancel, task });
            None
        }
    }
}

struct Subscribe {
    task_id: String,
    since: Option<String>,
    types: Option<Vec<String>>,
    agent_id: Option<String>,
}

/// One subscription: open the watch, answer `subscribed` (or `error`), then forward its
/// items until it ends or is cancelled.
async fn forward(
    s: AppState,
    caller: Caller,
    req: Subscribe,
    out: mpsc::Sender<Outgoing>,
    cancel: CancellationToken,
) {
    let task_id = req.task_id.clone();
    let opened = async {
        let actor = caller.actor(Some(&req.task_id), req.agent_id.as_deref())?;
        let start = parse_since(req.since.as_deref())?;
        let types = parse_types(req.types.iter().flatten().map(String::as_str))?;
        let task = s.service.open_events(&actor, &req.task_id).await?;
        let mut watch = s.live.hub.watch(actor, task, start, types).await?;
        watch.end_at(caller.token_deadline());
        Ok::<_, ApiError>(watch)
    };
    let opened = tokio::select! {
        _ = cancel.cancelled() => return,
        r = opened => r,
    };
    let first = match &opened {
        Ok(watch) => ServerMessage::Subscribed {
            task_id: task_id.clone(),
            since: watch.position().to_string(),
        },
        Err(e) => error(e.code, e.detail.clone(), Some(task_id.clone())),
    };
    if out.send(text(&first)).await.is_err() {
        return;
    }
    let Ok(mut watch) = opened else { return };
    let task_json = serde_json::to_string(&task_id).expect("a string serialises");
    loop {
        let item = tokio::select! {
            _ = cancel.cancelled() => return,
            item = watch.next() => item,
        };
        let (msg, last) = match item {
            None => return,
            // The envelope is serialised once by the hub; splice it in.
            Some(super::WatchItem::Event(ev)) => (
                Outgoing::Text(format!(
                    r#"{{"op":"event","task_id":{task_json},"event":{}}}"#,
                    ev.json
                )),
                false,
            ),
            Some(super::WatchItem::End(cutoff)) => (
                text(&ServerMessage::Cutoff {
                    task_id: task_id.clone(),
                    cutoff,
                }),
                true,
            ),
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            sent = out.send(msg) => if sent.is_err() { return },
        }
        if last {
            return;
        }
    }
}
