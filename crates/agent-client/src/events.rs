//! Live events of a task: `GET /tasks/{task_id}/events` (Server-Sent Events), with a
//! subscription that resumes by itself.
//!
//! The wire contract: each message is `id: <stream id>`, `event: <type>`,
//! `data: <event envelope JSON>` ([`mcp_api::Event`]); comment lines (`: …`) are keep-alives;
//! a reconnect sends `Last-Event-ID` to resume after the last event seen (no gap, no
//! duplicate); `?types=a,b` filters. A consumer too slow for the server is cut off with
//! `event: cutoff` and data `{"reason","resume_from"}`, and the stream ends: the
//! subscription reconnects from `resume_from`.
//!
//! [`EventSubscription::next`] hides all of that: it yields events, reconnecting after a
//! disconnect, a cut-off, or a silent connection (nothing, not even a keep-alive, within
//! [`SubscribeOptions::idle_timeout`]), with jittered backoff between failed attempts. It
//! returns an error only for a refusal that a retry cannot fix (401, 403,
//! 400 …) or after [`SubscribeOptions::max_failures`] consecutive failed reconnects.

use crate::client::{GatewayClient, transport};
use crate::error::{ClientError, Result};
use crate::retry::RetryPolicy;
use mcp_api::Event;
use serde::Deserialize;
use std::collections::VecDeque;
use std::time::Duration;

/// One parsed Server-Sent Events message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseMessage {
    /// The `id:` field, if the message had one.
    pub id: Option<String>,
    /// The `event:` field (`"message"` when absent, as the SSE spec says).
    pub event: String,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
    /// The `retry:` field: the server's suggested reconnection delay.
    pub retry: Option<Duration>,
}

/// An incremental parser of a `text/event-stream` body: feed it chunks as they arrive
/// (split anywhere, even inside a line or a UTF-8 character), take whole messages out.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    /// The previous chunk ended with `\r`: a `\n` starting the next one belongs to it.
    after_cr: bool,
    id: Option<String>,
    event: Option<String>,
    data: Option<String>,
    retry: Option<Duration>,
}

impl SseParser {
    /// An empty parser.
    pub fn new() -> SseParser {
        SseParser::default()
    }

    /// Feeds a chunk; returns the messages it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseMessage> {
        let mut out = Vec::new();
        for &b in chunk {
            if self.after_cr {
                self.after_cr = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\n' | b'\r' => {
                    self.after_cr = b == b'\r';
                    let line = std::mem::take(&mut self.buf);
                    let line = String::from_utf8_lossy(&line).into_owned();
                    if let Some(m) = self.line(&line) {
                        out.push(m);
                    }
                }
                _ => self.buf.push(b),
            }
        }
        out
    }

    fn line(&mut self, line: &str) -> Option<SseMessage> {
        if line.is_empty() {
            return self.dispatch();
        }
        if line.starts_with(':') {
            return None; // a comment: keep-alive
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "id" if !value.contains('\0') => self.id = Some(value.to_owned()),
            "event" => self.event = Some(value.to_owned()),
            "data" => match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            "retry" => {
                if let Ok(ms) = value.parse::<u64>() {
                    self.retry = Some(Duration::from_millis(ms));
                }
            }
            _ => {}
        }
        None
    }

    fn dispatch(&mut self) -> Option<SseMessage> {
        let event = self.event.take();
        let id = self.id.take();
        let retry = self.retry.take();
        let data = self.data.take();
        if data.is_none() && id.is_none() && event.is_none() && retry.is_none() {
            return None;
        }
        Some(SseMessage {
            id,
            event: event.unwrap_or_else(|| "message".to_owned()),
            data: data.unwrap_or_default(),
            retry,
        })
    }
}

/// What a subscription is doing, reported to [`SubscribeOptions::on_status`] as it happens
/// (e.g. for a command-line tool to say so on stderr).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamStatus {
    /// Opening a connection (`attempt` 1 is the first of a run of attempts).
    Connecting {
        /// 1 for the first attempt of a run.
        attempt: u32,
    },
    /// A connection is open. `reconnect` when it replaces a lost one; `resumed_after` is the
    /// event id it resumes after (`Last-Event-ID`), if any.
    Connected {
        /// Whether it replaces a lost connection.
        reconnect: bool,
        /// The event id it resumes after (`Last-Event-ID`), if any.
        resumed_after: Option<String>,
    },
    /// The open connection was lost (why, in words); a reconnect follows.
    Disconnected {
        /// Why, in words.
        reason: String,
    },
    /// A connection attempt failed transiently; the next one starts after `delay`.
    Retrying {
        /// The attempt that failed (1 is the first).
        attempt: u32,
        /// How long until the next attempt.
        delay: Duration,
        /// What went wrong, in words.
        error: String,
    },
}

/// A callback receiving a subscription's [`StreamStatus`] changes.
#[derive(Clone)]
pub struct StatusObserver(std::sync::Arc<dyn Fn(&StreamStatus) + Send + Sync>);

impl StatusObserver {
    /// Wraps a callback.
    pub fn new(f: impl Fn(&StreamStatus) + Send + Sync + 'static) -> StatusObserver {
        StatusObserver(std::sync::Arc::new(f))
    }
}

impl std::fmt::Debug for StatusObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StatusObserver")
    }
}

/// What a subscription asks for and how it behaves.
#[derive(Debug, Clone)]
pub struct SubscribeOptions {
    /// Resume after this event id (`Last-Event-ID`); `None` = only new events.
    pub since: Option<String>,
    /// Only these event types (`file_written`, `step_logged`, …); empty = all.
    pub types: Vec<String>,
    /// Reconnect when nothing (not even a keep-alive) arrives for this long.
    pub idle_timeout: Duration,
    /// Give up after this many consecutive failed connection attempts (`None` = never).
    pub max_failures: Option<u32>,
    /// Backoff between reconnection attempts.
    pub backoff: RetryPolicy,
    /// Told of every connection attempt, connection, loss and retry (`None` = nobody).
    pub on_status: Option<StatusObserver>,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        SubscribeOptions {
            since: None,
            types: Vec::new(),
            idle_timeout: Duration::from_secs(60),
            max_failures: None,
            backoff: RetryPolicy {
                max_attempts: u32::MAX,
                base_delay: Duration::from_millis(250),
                max_delay: Duration::from_secs(10),
                max_retry_after: Duration::from_secs(30),
            },
            on_status: None,
        }
    }
}

/// The `data` of an `event: cutoff` message.
#[derive(Debug, Deserialize)]
struct Cutoff {
    #[serde(default)]
    reason: Option<String>,
    resume_from: Option<String>,
}

/// A task's live events; see the module documentation.
pub struct EventSubscription {
    client: GatewayClient,
    task_id: String,
    opts: SubscribeOptions,
    last_id: Option<String>,
    /// Where to resume when no event was seen yet (see [`start_position`]).
    start_hint: Option<String>,
    response: Option<reqwest::Response>,
    parser: SseParser,
    pending: VecDeque<Event>,
    /// Consecutive failed connection attempts.
    failures: u32,
    /// Whether a connection was ever opened (later ones are reconnects).
    connected_once: bool,
    reconnects: u64,
    /// The server's `retry:` suggestion, the pause before reconnecting after a clean end.
    server_retry: Option<Duration>,
    /// The pause before the next attempt after a failed one (announced in `Retrying`).
    retry_delay: Duration,
}

impl std::fmt::Debug for EventSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSubscription")
            .field("task_id", &self.task_id)
            .field("last_id", &self.last_id)
            .field("start_hint", &self.start_hint)
            .field("connected", &self.response.is_some())
            .finish()
    }
}

impl GatewayClient {
    /// Subscribes to `task_id`'s live events. Nothing is sent until the first
    /// [`EventSubscription::next`].
    pub fn subscribe(&self, task_id: &str, opts: SubscribeOptions) -> EventSubscription {
        EventSubscription {
            client: self.clone(),
            task_id: task_id.to_owned(),
            last_id: opts.since.clone(),
            start_hint: None,
            opts,
            response: None,
            parser: SseParser::new(),
            pending: VecDeque::new(),
            failures: 0,
            connected_once: false,
            reconnects: 0,
            server_retry: None,
            retry_delay: Duration::ZERO,
        }
    }
}

impl EventSubscription {
    /// The id of the last event delivered (where a new subscription would resume).
    pub fn last_event_id(&self) -> Option<&str> {
        self.last_id.as_deref()
    }

    /// How many times the subscription reconnected after its first connection.
    pub fn reconnects(&self) -> u64 {
        self.reconnects
    }

    /// Whether a connection is open right now.
    pub fn is_connected(&self) -> bool {
        self.response.is_some()
    }

    /// Opens the connection now (it is otherwise opened by the first
    /// [`EventSubscription::next`]). After this returns, every event the task emits will be
    /// delivered: a caller can take a snapshot (list files, read logs) without a gap between
    /// the snapshot and the live events.
    pub async fn connect_now(&mut self) -> Result<()> {
        if self.response.is_none() {
            self.connect().await?;
        }
        Ok(())
    }

    /// The next event, reconnecting as needed. Errors only as the module documentation says;
    /// after an error the subscription may be polled again (it starts a fresh attempt).
    pub async fn next(&mut self) -> Result<Event> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                if let Some(id) = &e.id {
                    self.last_id = Some(id.clone());
                }
                return Ok(e);
            }
            if self.response.is_none() {
                self.connect().await?;
            }
            let Some(resp) = self.response.as_mut() else {
                continue;
            };
            let chunk = tokio::time::timeout(self.opts.idle_timeout, resp.chunk()).await;
            match chunk {
                Ok(Ok(Some(bytes))) => {
                    for m in self.parser.push(&bytes) {
                        self.handle(m);
                    }
                }
                Ok(Ok(None)) => self.disconnected("the server ended the stream"),
                Ok(Err(e)) => {
                    let url = self.client.events_url(&self.task_id);
                    let msg = transport(&url, &e).to_string();
                    self.disconnected(&msg)
                }
                Err(_) => self.disconnected("no data or keep-alive within the idle timeout"),
            }
        }
    }

    /// Turns this subscription into a `Stream` of events (it ends after a fatal error).
    pub fn into_stream(self) -> impl futures::Stream<Item = Result<Event>> {
        futures::stream::unfold(Some(self), |state| async move {
            let mut sub = state?;
            match sub.next().await {
                Ok(e) => Some((Ok(e), Some(sub))),
                Err(e) => Some((Err(e), None)),
            }
        })
    }

    fn handle(&mut self, m: SseMessage) {
        if let Some(r) = m.retry {
            self.server_retry = Some(r);
        }
        match m.event.as_str() {
            "cutoff" => {
                let c: Option<Cutoff> = serde_json::from_str(&m.data).ok();
                let (reason, resume) = c.map(|c| (c.reason, c.resume_from)).unwrap_or((None, None));
                if let Some(r) = resume.filter(|r| !r.is_empty()) {
                    self.last_id = Some(r);
                }
                metrics::counter!("mcp_client_event_cutoffs_total").increment(1);
                tracing::info!(task = %self.task_id, ?reason, "event stream cut off; resuming");
                self.response = None;
                self.parser = SseParser::new();
                self.status(StreamStatus::Disconnected {
                    reason: format!(
                        "cut off by the gateway ({})",
                        reason.as_deref().unwrap_or("too slow")
                    ),
                });
            }
            _ if m.data.is_empty() => {}
            _ => match serde_json::from_str::<Event>(&m.data) {
                Ok(mut e) => {
                    if e.id.is_none() {
                        e.id = m.id.clone();
                    }
                    self.pending.push_back(e);
                }
                Err(err) => {
                    tracing::warn!(task = %self.task_id, error = %err, "unparsable event skipped");
                    if let Some(id) = m.id {
                        self.last_id = Some(id);
                    }
                }
            },
        }
    }

    fn disconnected(&mut self, why: &str) {
        tracing::debug!(task = %self.task_id, why, "event stream disconnected; resuming");
        self.response = None;
        self.parser = SseParser::new();
        self.status(StreamStatus::Disconnected {
            reason: why.to_owned(),
        });
    }

    fn status(&self, s: StreamStatus) {
        if let Some(f) = &self.opts.on_status {
            (f.0)(&s);
        }
    }

    /// Opens the stream, retrying transient failures with backoff.
    async fn connect(&mut self) -> Result<()> {
        let mut url = self.client.events_url(&self.task_id);
        if !self.opts.types.is_empty() {
            url.query_pairs_mut()
                .append_pair("types", &self.opts.types.join(","));
        }
        loop {
            if self.failures > 0 {
                // The delay was announced with the failure (`Retrying`).
                tokio::time::sleep(self.retry_delay).await;
            } else if self.connected_once {
                // A clean end (cut-off, server restart): come back promptly, but never spin.
                let pause = self.server_retry.unwrap_or(Duration::from_millis(100));
                tokio::time::sleep(pause).await;
            }
            self.status(StreamStatus::Connecting {
                attempt: self.failures + 1,
            });
            let resume = self.last_id.as_deref().or(self.start_hint.as_deref());
            let resumed_after = resume.map(str::to_owned);
            match self.client.open_stream(&url, resume).await {
                Ok(resp) => {
                    if self.last_id.is_none() && self.start_hint.is_none() {
                        // Nothing seen yet: should this connection drop before the first
                        // event, resume from shortly before it opened rather than from "now".
                        self.start_hint = start_position(resp.headers());
                    }
                    if self.connected_once {
                        self.reconnects += 1;
                    }
                    self.status(StreamStatus::Connected {
                        reconnect: self.connected_once,
                        resumed_after,
                    });
                    self.connected_once = true;
                    self.failures = 0;
                    self.response = Some(resp);
                    return Ok(());
                }
                Err(e) if crate::retry::should_retry(&e, crate::retry::Idempotency::Safe) => {
                    self.failures += 1;
                    if self.opts.max_failures.is_some_and(|m| self.failures >= m) {
                        let attempts = self.failures;
                        self.failures = 0;
                        return Err(ClientError::GaveUp {
                            attempts,
                            last: Box::new(e),
                        });
                    }
                    tracing::debug!(task = %self.task_id, error = %e, "event stream connect failed; retrying");
                    let backoff = self.opts.backoff.backoff(self.failures - 1);
                    self.retry_delay = backoff.max(self.server_retry.unwrap_or_default());
                    self.status(StreamStatus::Retrying {
                        attempt: self.failures,
                        delay: self.retry_delay,
                        error: e.to_string(),
                    });
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// A resume position just before a connection opened: the stream id of the server's `Date`
/// (whole seconds) minus two seconds, so clock rounding cannot skip an event. Stream ids are
/// `<ms>-<seq>` of the Redis clock, which the gateway host shares (or keeps in sync with).
/// Resuming from it may replay a few events from just before the subscription; it never skips
/// one.
fn start_position(headers: &reqwest::header::HeaderMap) -> Option<String> {
    let date = headers.get(reqwest::header::DATE)?.to_str().ok()?;
    let at = chrono::DateTime::parse_from_rfc2822(date).ok()?;
    let ms = at.timestamp_millis().checked_sub(2000)?;
    (ms > 0).then(|| format!("{ms}-0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(chunks: &[&str]) -> Vec<SseMessage> {
        let mut p = SseParser::new();
        chunks.iter().flat_map(|c| p.push(c.as_bytes())).collect()
    }

    #[test]
    fn parses_messages_comments_and_ids() {
        let msgs = all(&[
            ": keep-alive\n\nid: 1-0\nevent: file_written\ndata: {\"a\":1}\n\n",
            ":ka\n\n",
        ]);
        assert_eq!(
            msgs,
            vec![SseMessage {
                id: Some("1-0".into()),
                event: "file_written".into(),
                data: "{\"a\":1}".into(),
                retry: None
            }]
        );
    }

    #[test]
    fn chunks_may_split_anywhere_and_lines_end_any_way() {
        let text = "id: 5-1\r\nevent: step_logged\rdata: é1\ndata: two\r\n\r\n";
        let whole = all(&[text]);
        for cut in 0..=text.len() {
            if !text.is_char_boundary(cut) {
                continue;
            }
            let (a, b) = text.split_at(cut);
            assert_eq!(all(&[a, b]), whole, "cut at {cut}");
        }
        // And byte by byte, through the middle of a UTF-8 character.
        let mut p = SseParser::new();
        let bytewise: Vec<_> = text
            .as_bytes()
            .iter()
            .flat_map(|b| p.push(std::slice::from_ref(b)))
            .collect();
        assert_eq!(bytewise, whole);
        assert_eq!(whole.len(), 1);
        assert_eq!(whole[0].data, "é1\ntwo");
        assert_eq!(whole[0].event, "step_logged");
    }

    #[test]
    fn the_start_position_is_two_seconds_before_the_servers_date() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(start_position(&h), None);
        h.insert(
            reqwest::header::DATE,
            "Tue, 24 Nov 2026 06:53:37 GMT".parse().unwrap(),
        );
        assert_eq!(start_position(&h).as_deref(), Some("1795503215000-0"));
    }

    #[test]
    fn fields_without_space_retry_and_defaults() {
        let msgs = all(&["retry:1500\ndata:x\n\ndata\n\n"]);
        assert_eq!(msgs[0].retry, Some(Duration::from_millis(1500)));
        assert_eq!(msgs[0].data, "x");
        assert_eq!(msgs[0].event, "message");
        assert_eq!(msgs[1].data, "");
    }
}
