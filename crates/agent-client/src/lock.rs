//! [`LockGuard`]: a file lease that renews itself in the background for as long as the guard
//! lives, and is released when the guard is released (or dropped).
//!
//! The renewer renews every third of the lease's length. A renewal that fails transiently
//! (gateway unreachable, 503) is retried until the lease would have expired; a renewal the
//! gateway refuses (`lock_not_held`: the lease expired and someone else may hold it) marks
//! the guard lost and stops. Check [`LockGuard::is_held`] (or write through the guard, which
//! presents the lease's fence so that a write after the loss is refused by the gateway)
//! before acting on the assumption that you still hold it.

use crate::client::GatewayClient;
use crate::error::{ClientError, Result};
use mcp_api::ErrorCode;
use mcp_api::requests::{ClaimFileRequest, FileWriteRequest, ReleaseFileRequest, RenewFileRequest};
use mcp_api::responses::{FileWriteResponse, LockResponse, ReleaseResponse};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What the guard knows about its lease.
#[derive(Debug, Clone)]
pub enum LeaseState {
    /// Held; the last grant or renewal the gateway answered.
    Held(LockResponse),
    /// No longer held: the gateway refused a renewal, or renewals failed until the lease
    /// ran out. The detail says which.
    Lost(String),
    /// Released by this guard.
    Released,
}

/// A held lease on one path of one task. See the module documentation.
pub struct LockGuard {
    client: GatewayClient,
    task_id: String,
    path: String,
    fence: i64,
    state: watch::Receiver<LeaseState>,
    cancel: CancellationToken,
    renewer: Option<JoinHandle<()>>,
    done: bool,
}

impl std::fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockGuard")
            .field("task_id", &self.task_id)
            .field("path", &self.path)
            .field("fence", &self.fence)
            .field("state", &*self.state.borrow())
            .finish()
    }
}

impl GatewayClient {
    /// Claims `path` of `task_id` for `lease` (whole seconds, at least 1; the gateway's
    /// default when `None`) and keeps the lease alive until the guard is released or dropped.
    /// Fails with `locked` when another agent holds it.
    pub async fn lock(
        &self,
        task_id: &str,
        path: &str,
        lease: Option<Duration>,
    ) -> Result<LockGuard> {
        let timeout_sec = lease.map(|d| d.as_secs_f64().ceil().max(1.0) as i64);
        let lease = self
            .claim_file(ClaimFileRequest {
                task_id: task_id.to_owned(),
                path: path.to_owned(),
                timeout_sec,
                ..Default::default()
            })
            .await?;
        Ok(LockGuard::start(self.clone(), lease))
    }
}

impl LockGuard {
    fn start(client: GatewayClient, lease: LockResponse) -> LockGuard {
        let (tx, rx) = watch::channel(LeaseState::Held(lease.clone()));
        let cancel = CancellationToken::new();
        let renewer = tokio::spawn(renew_loop(
            client.clone(),
            lease.clone(),
            tx,
            cancel.clone(),
        ));
        LockGuard {
            client,
            task_id: lease.task_id,
            path: lease.path,
            fence: lease.fence,
            state: rx,
            cancel,
            renewer: Some(renewer),
            done: false,
        }
    }

    /// The task of the lease.
    pub fn task_id(&self) -> &str {
        &self.task_id
    }

    /// The normalised path of the lease.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The lease's fencing token (stable across renewals).
    pub fn fence(&self) -> i64 {
        self.fence
    }

    /// The lease as last seen.
    pub fn state(&self) -> LeaseState {
        self.state.borrow().clone()
    }

    /// Whether the lease is still held, as far as the renewer knows.
    pub fn is_held(&self) -> bool {
        matches!(*self.state.borrow(), LeaseState::Held(_))
    }

    /// Waits until the lease is lost (or released); returns the final state. Useful to
    /// abort work when the lease goes.
    pub async fn lost(&mut self) -> LeaseState {
        let _ = self
            .state
            .wait_for(|s| !matches!(s, LeaseState::Held(_)))
            .await;
        self.state()
    }

    /// Writes the whole file, presenting this lease's fence: once a newer lease has written
    /// the path, the gateway refuses the write (`stale_fence` or `locked`).
    pub async fn write(&self, content: impl Into<String>) -> Result<FileWriteResponse> {
        self.client
            .file_write(FileWriteRequest {
                task_id: self.task_id.clone(),
                path: self.path.clone(),
                content: content.into(),
                expected_version: None,
                fence: Some(self.fence),
                agent_id: None,
            })
            .await
    }

    /// Stops renewing and releases the lease. A lease that was already lost answers
    /// `lock_not_held`.
    pub async fn release(mut self) -> Result<ReleaseResponse> {
        self.done = true;
        self.stop_renewing().await;
        self.client
            .release_file(ReleaseFileRequest {
                task_id: self.task_id.clone(),
                path: self.path.clone(),
                force: false,
                // A directory lease's path ends in `/` (as the claim answered it).
                recursive: self.path.ends_with('/'),
                agent_id: None,
            })
            .await
    }

    async fn stop_renewing(&mut self) {
        self.cancel.cancel();
        if let Some(h) = self.renewer.take() {
            let _ = h.await;
        }
    }
}

impl Drop for LockGuard {
    /// Stops renewing and releases the lease in the background (best effort: a lease not
    /// released expires by itself after its TTL). Prefer [`LockGuard::release`], which
    /// reports the outcome.
    fn drop(&mut self) {
        self.cancel.cancel();
        if self.done {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let client = self.client.clone();
            let req = ReleaseFileRequest {
                task_id: self.task_id.clone(),
                path: self.path.clone(),
                force: false,
                recursive: self.path.ends_with('/'),
                agent_id: None,
            };
            let renewer = self.renewer.take();
            rt.spawn(async move {
                if let Some(h) = renewer {
                    let _ = h.await;
                }
                if let Err(e) = client.release_file(req).await {
                    tracing::debug!(error = %e, "release of a dropped lock guard failed");
                }
            });
        }
    }
}

/// Renews every third of the lease until cancelled; marks the lease lost when the gateway
/// refuses, or when transient failures last until the lease's expiry.
async fn renew_loop(
    client: GatewayClient,
    mut lease: LockResponse,
    tx: watch::Sender<LeaseState>,
    cancel: CancellationToken,
) {
    let period = Duration::from_secs_f64(lease.timeout_sec.max(1) as f64 / 3.0);
    let mut wait = period;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => {
                let _ = tx.send(LeaseState::Released);
                return;
            }
            _ = tokio::time::sleep(wait) => {}
        }
        let renewal = tokio::select! {
            _ = cancel.cancelled() => {
                let _ = tx.send(LeaseState::Released);
                return;
            }
            r = client.renew_file(RenewFileRequest {
                task_id: lease.task_id.clone(),
                path: lease.path.clone(),
                timeout_sec: Some(lease.timeout_sec),
                recursive: lease.recursive,
                agent_id: None,
            }) => r,
        };
        match renewal {
            Ok(renewed) => {
                lease = renewed;
                wait = period;
                let _ = tx.send(LeaseState::Held(lease.clone()));
            }
            Err(e) if is_refusal(&e) => {
                tracing::warn!(task = %lease.task_id, path = %lease.path, error = %e, "lease lost");
                let _ = tx.send(LeaseState::Lost(e.to_string()));
                return;
            }
            Err(e) => {
                if chrono::Utc::now() >= lease.expires_at {
                    let _ = tx.send(LeaseState::Lost(format!(
                        "renewals failed until the lease expired: {e}"
                    )));
                    return;
                }
                // Try again soon, well before the lease runs out.
                wait = (period / 4).max(Duration::from_millis(100));
                tracing::debug!(error = %e, "lease renewal failed; retrying");
            }
        }
    }
}

/// Whether a renewal failure means the lease is gone (`lock_not_held`, …), not merely that
/// the gateway is unreachable or failing for now.
fn is_refusal(e: &ClientError) -> bool {
    !e.code().is_retryable() && e.code() != ErrorCode::Internal
}
