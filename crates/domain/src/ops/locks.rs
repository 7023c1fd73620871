//! `claim_file`, `renew_file`, `release_file`: leases with fencing tokens; `list_leases`.
//!
//! The lease lives in Redis (one script decides: free -> granted, same owner -> re-entrant,
//! other owner or a conflicting directory lease -> `locked`; a caller without an identity
//! never re-enters). A new grant takes a fencing token from the Postgres sequence, so tokens
//! stay monotonic across Redis restarts and gateway instances. A claim with `wait_sec` waits
//! in the path's FIFO queue (`lease_wait.rs`).

use super::LEASE_VALUE;
use super::Service;
use super::lease_wait::{MAX_WAIT_SECS, QueueGuard, WAIT_RECHECK, WAITER_LIVENESS};
use crate::actor::Actor;
use crate::error::{DomainError, Result};
use crate::ids::TaskId;
use crate::path::LeasePath;
use crate::store::hot::{
    Claim, ClaimOutcome, Lease, LeasePage, NewFence, Released, Renewed, Waiter,
};
use mcp_api::EventType;
use mcp_api::requests::{
    ClaimFileRequest, ListLeasesRequest, ReleaseFileRequest, RenewFileRequest,
};
use mcp_api::responses::{LeaseInfo, ListLeasesResponse, LockResponse, ReleaseResponse};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Most leases one `list_leases` answer lists (those expiring soonest; `truncated` says so).
pub(super) const MAX_LISTED_LEASES: usize = 1_000;

/// What one claim attempt came to: granted (the lease, its event, and whether the hot store
/// already emitted that event with the grant), or refused.
type Attempt = std::result::Result<(Lease, EventType, bool), ClaimOutcome>;

/// What a claim's event says besides the lease: who claims, and the length asked for.
#[derive(Clone, Copy)]
struct Announce<'a> {
    actor: &'a Actor,
    timeout_sec: i64,
}

impl Service {
    /// The lease length asked for (or the default), validated.
    fn lease_ttl(&self, timeout_sec: Option<i64>) -> Result<(Duration, i64)> {
        let timeout_sec = timeout_sec.unwrap_or(self.limits.default_lock_timeout_secs);
        let max = self.limits.max_lock_timeout_secs;
        if !(1..=max).contains(&timeout_sec) {
            return Err(DomainError::InvalidArgument(format!(
                "timeout_sec must be between 1 and {max}"
            )));
        }
        Ok((Duration::from_secs(timeout_sec as u64), timeout_sec))
    }

    fn lock_response(
        task: &TaskId,
        path: &LeasePath,
        lease: Lease,
        timeout_sec: i64,
        waited: Option<Duration>,
    ) -> LockResponse {
        LockResponse {
            success: true,
            task_id: task.to_string(),
            path: path.to_string(),
            locked: true,
            owner: lease.owner,
            fence: lease.fence,
            lock_token: lease.token,
            expires_at: lease.expires_at,
            timeout_sec,
            recursive: path.is_dir(),
            waited_ms: waited.map(|w| w.as_millis() as u64),
        }
    }

    /// Grants a lease with a new fencing token, re-enters the actor's own, or waits (`wait_sec`) in the path's queue.
    pub async fn claim_file(&self, actor: &Actor, req: ClaimFileRequest) -> Result<LockResponse> {
        let task = actor.write_task(&req.task_id)?;
        let path = LeasePath::parse(&req.path, req.recursive)?;
        let raw_path = req.path.clone();
        let result = self.claim(actor, &task, &path, req).await;
        self.witness(actor, &task, &raw_path, "claim_file", result)
            .await
    }

    async fn claim(
        &self,
        actor: &Actor,
        task: &TaskId,
        path: &LeasePath,
        req: ClaimFileRequest,
    ) -> Result<LockResponse> {
        let (ttl, timeout_sec) = self.lease_ttl(req.timeout_sec)?;
        let wait = match req.wait_sec.unwrap_or(0) {
            0 => None,
            s if (1..=MAX_WAIT_SECS).contains(&s) => Some(Duration::from_secs(s as u64)),
            _ => {
                return Err(DomainError::InvalidArgument(format!(
                    "wait_sec must be between 0 and {MAX_WAIT_SECS}"
                )));
            }
        };
        let owner = actor.agent.as_str();
        // A caller without an identity (the task id acts) never re-enters: two anonymous
        // agents of one task must exclude each other, as the original's SETNX made them.
        let reentrant = !actor.anonymous;
        let started = Instant::now();
        let mut guard = None;
        let announce = Announce { actor, timeout_sec };
        let (lease, kind, emitted) = match wait {
            None => self
                .try_claim(task, path, owner, ttl, reentrant, None, announce)
                .await?
                .map_err(|refused| Self::refusal(path, refused))?,
            Some(wait) => {
                let g = guard.insert(QueueGuard {
                    service: self.clone(),
                    actor: actor.clone(),
                    task: task.clone(),
                    path: path.clone(),
                    ticket: Some(uuid::Uuid::new_v4().to_string()),
                });
                self.claim_waiting(g, owner, ttl, reentrant, started + wait, announce)
                    .await?
            }
        };
        if !emitted {
            let data = claim_data(
                path,
                owner,
                lease.fence,
                json!(lease.expires_at),
                timeout_sec,
            );
            let audit = claim_audit(path, lease.fence);
            self.emit(actor, task, kind, data, Some(audit)).await?;
        }
        // Answered: from here a dropped request keeps its lease (as any claim does).
        if let Some(g) = guard.as_mut() {
            g.disarm();
        }
        let waited = wait.map(|_| started.elapsed());
        Ok(Self::lock_response(task, path, lease, timeout_sec, waited))
    }

    /// One attempt: the claim, and again with a fence when the path is free for the caller
    /// (a refused or re-entrant claim never pays for a fence: under contention most claims
    /// are refused). The fenced claim emits the grant's event in the same step where the hot
    /// store can ([`crate::store::hot::Leases::claim_announcing`]).
    #[allow(clippy::too_many_arguments)]
    async fn try_claim(
        &self,
        task: &TaskId,
        path: &LeasePath,
        owner: &str,
        ttl: Duration,
        reentrant: bool,
        waiter: Option<&Waiter<'_>>,
        announce: Announce<'_>,
    ) -> Result<Attempt> {
        let mut claim = Claim {
            task,
            path,
            owner,
            ttl,
            fence: None,
            reentrant,
            waiter,
        };
        let mut outcome = self.hot.claim(&claim).await?;
        let mut emitted = false;
        if let ClaimOutcome::NeedFence = outcome {
            let fence = self.durable.next_fence().await?;
            let token = uuid::Uuid::new_v4().to_string();
            claim.fence = Some(NewFence {
                fence,
                token: &token,
            });
            (outcome, emitted) = match self.claim_event(task, path, owner, fence, announce) {
                Some(event) => self.hot.claim_announcing(&claim, &event).await?,
                None => (self.hot.claim(&claim).await?, false),
            };
        }
        Ok(match outcome {
            ClaimOutcome::Granted(lease) => Ok((lease, EventType::LockAcquired, emitted)),
            ClaimOutcome::Reentrant(lease) => Ok((lease, EventType::LockRenewed, false)),
            ClaimOutcome::NeedFence => {
                return Err(DomainError::internal("claim asked for a fence twice"));
            }
            refused => Err(refused),
        })
    }

    /// Waits in the path's queue (the guard's ticket) until granted or `deadline`: checks
    /// again at every wake-up of the task's leases, at the expiry of the lease it waits for,
    /// and every [`WAIT_RECHECK`] (see `lease_wait.rs`). Past the deadline the ticket leaves
    /// the queue and the answer is `locked` with the caller's last place in it.
    async fn claim_waiting(
        &self,
        guard: &mut QueueGuard,
        owner: &str,
        ttl: Duration,
        reentrant: bool,
        deadline: Instant,
        announce: Announce<'_>,
    ) -> Result<(Lease, EventType, bool)> {
        let ticket = guard.ticket.clone().unwrap_or_default();
        let bell = self.wakes.register(&guard.task);
        let mut arrival = None;
        loop {
            let notified = bell.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let waiter = Waiter {
                ticket: &ticket,
                arrival,
                liveness: WAITER_LIVENESS,
            };
            let attempt = self
                .try_claim(
                    &guard.task,
                    &guard.path,
                    owner,
                    ttl,
                    reentrant,
                    Some(&waiter),
                    announce,
                )
                .await;
            let refused = match attempt {
                Ok(Ok(granted)) => return Ok(granted),
                Ok(Err(refused)) => refused,
                Err(e) => {
                    guard.leave().await;
                    return Err(e);
                }
            };
            let (place, expires_at) = match &refused {
                ClaimOutcome::HeldByOther {
                    queue, expires_at, ..
                } => (*queue, Some(*expires_at)),
                ClaimOutcome::Queued { queue, .. } => (*queue, None),
                _ => (Default::default(), None),
            };
            arrival = place.arrival.or(arrival);
            let now = Instant::now();
            if now >= deadline {
                guard.leave().await;
                return Err(Self::refusal(&guard.path, refused));
            }
            let mut next = (now + WAIT_RECHECK).min(deadline);
            if let Some(left) = expires_at.and_then(|at| (at - chrono::Utc::now()).to_std().ok()) {
                next = next.min(now + left + Duration::from_millis(2));
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(next.into()) => {}
            }
        }
    }

    /// The `lock_not_held` error of a renewal or release by `actor`, who does not hold `path`
    /// (`holder` does, if anyone).
    fn not_held(path: &LeasePath, actor: &Actor, holder: Option<String>) -> DomainError {
        DomainError::LockNotHeld {
            path: path.to_string(),
            agent: actor.agent.to_string(),
            holder,
        }
    }

    /// The `locked` error of a refused claim.
    fn refusal(path: &LeasePath, refused: ClaimOutcome) -> DomainError {
        metrics::counter!("mcp_lock_conflicts_total", "op" => "claim").increment(1);
        match refused {
            ClaimOutcome::HeldByOther {
                owner,
                expires_at,
                path: held,
                queue,
            } => DomainError::Locked {
                lease_path: (held != path.as_str()).then_some(held),
                path: path.to_string(),
                holder: owner,
                expires_at: Some(expires_at),
                waiters: Some(queue.waiters),
                queue_position: queue.position,
            },
            ClaimOutcome::Queued { next, queue } => DomainError::Locked {
                path: path.to_string(),
                holder: next,
                expires_at: None,
                lease_path: None,
                waiters: Some(queue.waiters),
                queue_position: queue.position,
            },
            other => DomainError::internal(format!("a claim was refused as {other:?}")),
        }
    }

    /// Extends a lease the actor holds, by its own length or a new `timeout_sec`.
    pub async fn renew_file(&self, actor: &Actor, req: RenewFileRequest) -> Result<LockResponse> {
        let task = actor.write_task(&req.task_id)?;
        let path = LeasePath::parse(&req.path, req.recursive)?;
        // Without a length the lease keeps its own (the default only for a lease that has
        // none recorded, granted before lengths were kept).
        let ttl = match req.timeout_sec {
            Some(secs) => Some(self.lease_ttl(Some(secs))?.0),
            None => None,
        };
        let (fallback, _) = self.lease_ttl(None)?;
        let Renewed { lease, length } = self
            .hot
            .renew(&task, &path, actor.agent.as_str(), ttl, fallback)
            .await?
            .map_err(|holder| Self::not_held(&path, actor, holder))?;
        let timeout_sec = length.as_millis().div_ceil(1000) as i64;
        let data = json!({
            "path": path.as_str(), "owner": actor.agent.as_str(), "fence": lease.fence,
            "expires_at": lease.expires_at, "timeout_sec": timeout_sec,
        });
        let audit = json!({"action": "renew_file", "path": path.as_str(), "fence": lease.fence});
        self.emit(actor, &task, EventType::LockRenewed, data, Some(audit))
            .await?;
        Ok(Self::lock_response(&task, &path, lease, timeout_sec, None))
    }

    /// Releases a lease the actor holds; `force` (admin only) releases another agent's.
    pub async fn release_file(
        &self,
        actor: &Actor,
        req: ReleaseFileRequest,
    ) -> Result<ReleaseResponse> {
        let task = actor.write_task(&req.task_id)?;
        let path = LeasePath::parse(&req.path, req.recursive)?;
        if req.force {
            actor.ensure_admin()?;
        }
        let agent = actor.agent.as_str();
        // The owner's own release: its event (all of it known but the fence) goes with it.
        let event = (!req.force)
            .then(|| {
                let fence = json!(LEASE_VALUE);
                self.lease_event(
                    actor,
                    &task,
                    EventType::LockReleased,
                    release_data(&path, agent, &fence, false),
                    release_audit("release_file", &path, &fence, agent),
                )
            })
            .flatten();
        let (released, emitted) = match &event {
            Some(event) => {
                self.hot
                    .release_announcing(&task, &path, agent, event)
                    .await?
            }
            None => (
                self.hot.release(&task, &path, agent, req.force).await?,
                false,
            ),
        };
        let Released {
            owner: holder,
            fence,
        } = released.map_err(|holder| Self::not_held(&path, actor, holder))?;
        let ok = ReleaseResponse {
            success: true,
            task_id: task.to_string(),
            path: path.to_string(),
            locked: false,
        };
        if emitted {
            return Ok(ok);
        }
        let forced = holder != agent;
        let action = if forced {
            "force_release_file"
        } else {
            "release_file"
        };
        let fence = json!(fence);
        let data = release_data(&path, &holder, &fence, forced);
        let audit = release_audit(action, &path, &fence, &holder);
        self.emit(actor, &task, EventType::LockReleased, data, Some(audit))
            .await?;
        Ok(ok)
    }

    /// The task's live leases, by path: holder, fence, grant and expiry times, time left (by
    /// the hot store's clock). A read: observers may list their task's leases.
    pub async fn list_leases(
        &self,
        actor: &Actor,
        req: ListLeasesRequest,
    ) -> Result<ListLeasesResponse> {
        let task = actor.task(&req.task_id)?;
        let LeasePage {
            mut leases,
            more: truncated,
        } = self.hot.leases(&task, MAX_LISTED_LEASES).await?;
        leases.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(ListLeasesResponse {
            success: true,
            task_id: task.to_string(),
            leases: leases
                .into_iter()
                .map(|l| LeaseInfo {
                    recursive: l.path.ends_with('/'),
                    waiters: l.waiters,
                    path: l.path,
                    holder: l.owner,
                    fence: l.fence,
                    acquired_at: l.acquired_at,
                    expires_at: l.expires_at,
                    ttl_ms_left: l.ttl_ms,
                })
                .collect(),
            truncated,
        })
    }

    /// A fenced claim's event, for the hot store to emit with the grant (its expiry is the
    /// value the claim's script fills in): see [`Service::lease_event`].
    fn claim_event<'a>(
        &self,
        task: &'a TaskId,
        path: &LeasePath,
        owner: &str,
        fence: i64,
        announce: Announce<'a>,
    ) -> Option<crate::store::hot::LeaseEvent<'a>> {
        let expires_at = json!(LEASE_VALUE);
        self.lease_event(
            announce.actor,
            task,
            EventType::LockAcquired,
            claim_data(path, owner, fence, expires_at, announce.timeout_sec),
            claim_audit(path, fence),
        )
    }
}

/// A claim's event data (`lock_acquired`, `lock_renewed`).
fn claim_data(
    path: &LeasePath,
    owner: &str,
    fence: i64,
    expires_at: Value,
    timeout_sec: i64,
) -> Value {
    json!({
        "path": path.as_str(), "owner": owner, "fence": fence,
        "expires_at": expires_at, "timeout_sec": timeout_sec,
        "recursive": path.is_dir(),
    })
}

/// A claim's audit record fields.
fn claim_audit(path: &LeasePath, fence: i64) -> Value {
    json!({"action": "claim_file", "path": path.as_str(), "fence": fence})
}

/// A release's event data (`lock_released`).
fn release_data(path: &LeasePath, holder: &str, fence: &Value, forced: bool) -> Value {
    json!({"path": path.as_str(), "owner": holder, "fence": fence, "forced": forced})
}

/// A release's audit record fields.
fn release_audit(action: &str, path: &LeasePath, fence: &Value, holder: &str) -> Value {
    json!({"action": action, "path": path.as_str(), "fence": fence, "holder": holder})
}
