//! Connections (issue #14, item 7): the accept loop and what bounds each connection, so that a
//! crowd of sockets that never finish their headers, or sit idle, can neither exhaust the
//! file descriptors nor keep `/health` from answering.
//!
//! * **Header-read timeout** (`HEADER_READ_TIMEOUT_SECS`): a connection must deliver a whole
//!   request head within it, counted from the accept (a first request) or from the first byte
//!   of the next request (a kept-alive connection); past it the connection is closed.
//! * **Idle timeout** (`IDLE_TIMEOUT_SECS`): a kept-alive connection with no request in flight
//!   and no byte of a next one is closed after it.
//! * **Connection cap** (`MAX_CONNECTIONS`): at the cap, a new connection takes the place of
//!   the oldest one that has no request in flight (idle, or still sending its head: those
//!   are the ones a flood is made of); when every connection is busy, the new one gets a
//!   canned 503 and is closed at once. The accept loop never waits for room.
//!
//! A connection is *busy* while a request is in flight: from its head until its response
//! body is sent, so a live stream (SSE, the MCP stream) is never idle, whatever its
//! keep-alive interval; an upgraded WebSocket keeps its connection's slot (a [`ConnHold`]
//! taken by the handler) until it ends. Neither timeout ever cuts a request in flight
//! (the body and request timeouts in `edge::body` and `routes` bound those).
//!
//! [`raise_fd_limit`] raises the soft `RLIMIT_NOFILE` to the hard limit at start, and the cap
//! is kept below it with room for the backends' connections.

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::ConnectInfo;
use axum::extract::Request;
use http_body::{Frame, SizeHint};
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// The bounds of connections (see the module's documentation).
#[derive(Debug, Clone, Copy)]
pub struct ConnSettings {
    /// Most open connections (WebSockets included).
    pub max_connections: usize,
    /// Longest time to receive a whole request head.
    pub header_read_timeout: Duration,
    /// Longest time a connection stays open with nothing in flight.
    pub idle_timeout: Duration,
}

impl Default for ConnSettings {
    fn default() -> Self {
        ConnSettings {
            max_connections: 4096,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// File descriptors kept free of connections for everything else the process opens (the
/// backends' pools, the listener, files), on top of the Postgres pool's size.
pub const FD_RESERVE: u64 = 64;

/// Raises the soft limit of open files to the hard limit (logged); returns the limit now in
/// force, `None` where it cannot be read (not a Unix system).
pub fn raise_fd_limit() -> Option<u64> {
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).ok()?;
    match rlimit::increase_nofile_limit(hard) {
        Ok(now) if now > soft => {
            tracing::info!(
                from = soft,
                to = now,
                hard,
                "raised the open-file limit (RLIMIT_NOFILE)"
            );
            Some(now)
        }
        Ok(now) => {
            tracing::info!(
                limit = now,
                hard,
                "open-file limit (RLIMIT_NOFILE) already at its hard limit"
            );
            Some(now)
        }
        Err(e) => {
            tracing::warn!(soft, hard, error = %e, "could not raise the open-file limit");
            Some(soft)
        }
    }
}

/// The connection cap in force: `MAX_CONNECTIONS`, lowered (with a warning) to what the
/// open-file limit leaves after `reserve` descriptors for everything else.
pub fn effective_cap(max_connections: usize, fd_limit: Option<u64>, reserve: u64) -> usize {
    let Some(limit) = fd_limit else {
        return max_connections.max(1);
    };
    let room = limit.saturating_sub(reserve).max(1);
    if (max_connections as u64) > room {
        tracing::warn!(
            max_connections,
            open_file_limit = limit,
            cap = room,
            "MAX_CONNECTIONS is over what the open-file limit allows; capping connections lower"
        );
        room as usize
    } else {
        max_connections.max(1)
    }
}

/// Why the gateway closed a connection (the `reason` label of
/// `mcp_http_connections_closed_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closed {
    HeaderTimeout,
    IdleTimeout,
    /// Made room for a new connection at the cap.
    Evicted,
    /// Refused at the cap (every connection busy).
    Refused,
}

impl Closed {
    fn label(self) -> &'static str {
        match self {
            Closed::HeaderTimeout => "header_timeout",
            Closed::IdleTimeout => "idle_timeout",
            Closed::Evicted => "evicted",
            Closed::Refused => "refused",
        }
    }

    fn count(self) {
        metrics::counter!("mcp_http_connections_closed_total", "reason" => self.label())
            .increment(1);
    }
}

/// The open connections, oldest first. (The map holds the slots' state only; a slot leaves
/// it when its [`Place`] is dropped, or when it is evicted. Nothing dropped under the lock
/// takes the lock again.)
struct Registry {
    epoch: Instant,
    cap: usize,
    open: Mutex<BTreeMap<u64, Arc<Slot>>>,
    next_id: AtomicU64,
}

impl Registry {
    fn millis(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Closes the oldest connection with nothing in flight; false when every one is busy.
    fn evict_one(&self) -> bool {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        Registry::evict_locked(&mut open)
    }

    fn evict_locked(open: &mut BTreeMap<u64, Arc<Slot>>) -> bool {
        let victim = open.iter().find(|(_, s)| s.busy() == 0).map(|(id, _)| *id);
        let Some(victim) = victim else {
            return false;
        };
        if let Some(s) = open.remove(&victim) {
            s.close(Closed::Evicted);
        }
        true
    }

    /// Admits a new connection: under the cap, or in place of the oldest connection with
    /// nothing in flight (closed at once); `None` when every connection is busy.
    fn admit(self: &Arc<Self>) -> Option<Arc<Place>> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.len() >= self.cap && !Registry::evict_locked(&mut open) {
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let now = self.millis();
        let slot = Arc::new(Slot {
            id,
            registry: Arc::downgrade(self),
            busy: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            idle_since: AtomicU64::new(now),
            head_started: AtomicU64::new(NONE),
            changed: Notify::new(),
            closed_for: Mutex::new(None),
        });
        open.insert(id, slot.clone());
        metrics::gauge!("mcp_http_connections").set(open.len() as f64);
        Some(Arc::new(Place(slot)))
    }
}

/// A connection's place under the cap, given back when the last holder (the connection's
/// task, a request in flight, an upgraded WebSocket) drops it.
struct Place(Arc<Slot>);

impl Drop for Place {
    fn drop(&mut self) {
        if let Some(r) = self.0.registry.upgrade() {
            let mut open = r.open.lock().unwrap_or_else(|e| e.into_inner());
            open.remove(&self.0.id);
            metrics::gauge!("mcp_http_connections").set(open.len() as f64);
        }
    }
}

/// `head_started` when no byte of a next request has arrived.
const NONE: u64 = u64::MAX;

/// One connection's activity, and the handle that closes it.
struct Slot {
    id: u64,
    registry: Weak<Registry>,
    /// Requests in flight, open response bodies and upgraded sockets.
    busy: AtomicUsize,
    /// Whether a request has been received on this connection.
    served: AtomicBool,
    /// When `busy` last fell to 0 (or the accept), in ms since the registry's epoch.
    idle_since: AtomicU64,
    /// When the first byte read since then arrived ([`NONE`]: none yet).
    head_started: AtomicU64,
    /// Wakes the watchdog on every change of the above, and on a close.
    changed: Notify,
    /// Set to close the connection (eviction): the watchdog, woken, ends it. (A flag and the
    /// watchdog's wake-up, not a `CancellationToken` of its own: issue #19, each idle
    /// connection paid for the token's node and a future waiting on it.)
    closed_for: Mutex<Option<Closed>>,
}

impl Slot {
    fn busy(&self) -> usize {
        self.busy.load(Ordering::Acquire)
    }

    fn now(&self) -> u64 {
        self.registry.upgrade().map_or(0, |r| r.millis())
    }

    fn close(&self, why: Closed) {
        *self.closed_for.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
        self.changed.notify_one();
    }

    /// A read returned bytes: the start of a next request's head, if nothing is in flight.
    fn on_read(&self) {
        if self.busy() == 0
            && self
                .head_started
                .compare_exchange(NONE, self.now(), Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.changed.notify_one();
        }
    }

    /// When the watchdog must act, and why; `None` while something is in flight.
    fn deadline(&self, s: &ConnSettings) -> Option<(u64, Closed)> {
        if self.busy() > 0 {
            return None;
        }
        let ms = |d: Duration| d.as_millis() as u64;
        let head = self.head_started.load(Ordering::Acquire);
        if head != NONE {
            return Some((head + ms(s.header_read_timeout), Closed::HeaderTimeout));
        }
        let since = self.idle_since.load(Ordering::Acquire);
        if !self.served.load(Ordering::Acquire) {
            // A new connection owes its first request head from the accept on.
            return Some((since + ms(s.header_read_timeout), Closed::HeaderTimeout));
        }
        Some((since + ms(s.idle_timeout), Closed::IdleTimeout))
    }
}

/// Marks its connection busy while it lives: taken for each request and kept by its response
/// body; a WebSocket handler takes one from the request's [`ConnHold`] for its socket's life.
pub struct Busy(Arc<Place>);

impl Busy {
    fn new(place: Arc<Place>) -> Busy {
        let slot = &place.0;
        slot.busy.fetch_add(1, Ordering::AcqRel);
        slot.served.store(true, Ordering::Release);
        slot.head_started.store(NONE, Ordering::Release);
        slot.changed.notify_one();
        Busy(place)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let s = &self.0.0;
        s.idle_since.store(s.now(), Ordering::Release);
        s.head_started.store(NONE, Ordering::Release);
        s.busy.fetch_sub(1, Ordering::AcqRel);
        s.changed.notify_one();
    }
}

/// In each request's extensions: the connection the request came on. A handler whose work
/// outlives the response (a WebSocket) keeps [`ConnHold::busy`] for as long, so that its
/// socket stays counted under the cap and is never taken for idle.
#[derive(Clone)]
pub struct ConnHold(Arc<Place>);

impl ConnHold {
    /// Marks the connection busy until the returned guard drops.
    pub fn busy(&self) -> Busy {
        Busy::new(self.0.clone())
    }
}

/// A response body that keeps its connection busy until it is sent (or dropped).
struct BusyBody {
    inner: Body,
    _busy: Busy,
}

impl HttpBody for BusyBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The socket, telling its slot when bytes arrive.
struct WatchedIo {
    inner: TcpStream,
    slot: Arc<Slot>,
}

impl AsyncRead for WatchedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.slot.on_read();
        }
        r
    }
}

impl AsyncWrite for WatchedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// What a refused connection reads before it is closed.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n\
Content-Type: application/json\r\nConnection: close\r\nContent-Length: 79\r\n\r\n\
{\"detail\":\"too many connections; retry later\",\"code\":\"unavailable\",\"retry_after\":1}";

/// Serves `app` on `listener` (HTTP/1.1, with upgrades) until `shutdown`; then stops
/// accepting, lets every connection finish its request in flight, and returns when all have
/// closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    settings: ConnSettings,
    shutdown: CancellationToken,
) {
    let registry = Arc::new(Registry {
        epoch: Instant::now(),
        cap: settings.max_connections.max(1),
        open: Mutex::new(BTreeMap::new()),
        next_id: AtomicU64::new(0),
    });
    let tracker = TaskTracker::new();
    loop {
        let (stream, remote) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    accept_error(e, &registry).await;
                    continue;
                }
            },
        };
        let Some(place) = registry.admit() else {
            Closed::Refused.count();
            // Best effort, never waiting: the socket's send buffer takes this at once.
            let _ = stream.try_write(REFUSAL);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        tracker.spawn(connection(
            stream,
            remote,
            place,
            app.clone(),
            settings,
            shutdown.clone(),
        ));
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
}

/// `accept` failed: a reset before the accept is nothing. Out of file descriptors (`EMFILE`,
/// `ENFILE`: the process's limit is lower than the cap allows for, or other files took
/// them), the oldest connection with nothing in flight is closed to make room and the accept
/// retried at once; with none to close, and for any other error, the error is logged and
/// waited out for a second, as hyper's server did.
async fn accept_error(e: std::io::Error, registry: &Arc<Registry>) {
    use std::io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    // EMFILE 24, ENFILE 23 (the same numbers on Linux and the BSDs).
    if matches!(e.raw_os_error(), Some(23 | 24)) && registry.evict_one() {
        tracing::warn!(error = %e, "accept failed; closed an idle connection to make room");
        tokio::task::yield_now().await;
        return;
    }
    tracing::error!(error = %e, "accept failed; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// What the per-connection service answers a request with.
/// The body is axum's, wrapped (not boxed again) to mark the connection busy until it ends.
type ServiceFuture = Pin<
    Box<dyn std::future::Future<Output = Result<hyper::Response<BusyBody>, Infallible>> + Send>,
>;

/// One connection: hyper's HTTP/1 server over the watched socket, and its watchdog.
async fn connection(
    stream: TcpStream,
    remote: SocketAddr,
    place: Arc<Place>,
    app: Router,
    settings: ConnSettings,
    shutdown: CancellationToken,
) {
    let slot = place.0.clone();
    let io = TokioIo::new(WatchedIo {
        inner: stream,
        slot: slot.clone(),
    });
    let hold = ConnHold(place);
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let mut req: Request = req.map(Body::new);
        req.extensions_mut().insert(ConnectInfo(remote));
        req.extensions_mut().insert(hold.clone());
        let busy = hold.busy();
        let app = app.clone();
        // Boxed, so that it is freed when the response is ready: hyper keeps the place of
        // its service's future for the connection's whole life (issue #19: every idle
        // watcher paid for the router's future).
        let answer: ServiceFuture = Box::pin(async move {
            let resp = app.oneshot(req).await.unwrap_or_else(|e| match e {});
            Ok::<_, Infallible>(resp.map(|inner| BusyBody { inner, _busy: busy }))
        });
        answer
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .serve_connection(io, service)
        .with_upgrades();
    tokio::pin!(conn);
    let reason = tokio::select! {
        _ = conn.as_mut() => return,
        why = watchdog(&slot, &settings) => Some(why),
        _ = shutdown.cancelled() => None,
    };
    match reason {
        // Nothing is in flight (that is why it was chosen): the socket is closed at once, so
        // its descriptor is free for the next accept.
        Some(why) => {
            why.count();
            tracing::debug!(%remote, reason = why.label(), "closing connection");
        }
        // At shutdown a request in flight is finished (live streams are ended by the hub).
        None => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Waits until the connection has been idle, or sending a head, for too long, or is closed
/// ([`Slot::close`]).
async fn watchdog(slot: &Slot, settings: &ConnSettings) -> Closed {
    loop {
        let changed = slot.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        if let Some(why) = *slot.closed_for.lock().unwrap_or_else(|e| e.into_inner()) {
            return why;
        }
        match slot.deadline(settings) {
            None => changed.await,
            Some((at, why)) => {
                let now = slot.now();
                if now >= at {
                    return why;
                }
                tokio::select! {
                    _ = changed => {}
                    _ = tokio::time::sleep(Duration::from_millis(at - now)) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::effective_cap;

    #[test]
    fn the_cap_stays_under_the_open_file_limit() {
        assert_eq!(effective_cap(4096, Some(1_048_576), 96), 4096);
        assert_eq!(effective_cap(4096, Some(1024), 96), 928);
        assert_eq!(effective_cap(4096, None, 96), 4096);
        assert_eq!(effective_cap(0, Some(1024), 96), 1);
    }
}
