//! `claim_file`, `renew_file`, `release_file`: leases with fencing tokens; `list_leases`.
//!
//! The lease lives in Redis (one script decides: free -> granted, same owner -> re-entrant,
//! other owner -> `locked`; a caller without an identity never re-enters). A new grant takes a fencing token from the Postgres sequence,
//! so tokens stay monotonic across Redis restarts and gateway instances.

use super::Service;
use crate::actor::Actor;
use crate::error::{DomainError, Result};
use crate::ids::TaskId;
use crate::path::FilePath;
use crate::store::hot::{ClaimOutcome, Lease};
use mcp_api::EventType;
use mcp_api::requests::{
    ClaimFileRequest, ListLeasesRequest, ReleaseFileRequest, RenewFileRequest,
};
use mcp_api::responses::{LeaseInfo, ListLeasesResponse, LockResponse, ReleaseResponse};
use serde_json::json;
use std::time::Duration;

/// Most leases one `list_leases` answer lists (those expiring soonest; `truncated` says so).
pub(super) const MAX_LISTED_LEASES: usize = 1_000;

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
        path: &FilePath,
        lease: Lease,
        timeout_sec: i64,
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
        }
    }

    pub async fn claim_file(&self, actor: &Actor, req: ClaimFileRequest) -> Result<LockResponse> {
        let (task_id, path) = (req.task_id.clone(), req.path.clone());
        let result = self.claim(actor, req).await;
        self.witness(actor, &task_id, &path, "claim_file", result)
            .await
    }

    async fn claim(&self, actor: &Actor, req: ClaimFileRequest) -> Result<LockResponse> {
        let task = TaskId::parse(&req.task_id)?;
        actor.ensure_write(&task)?;
        let path = FilePath::parse(&req.path)?;
        let (ttl, timeout_sec) = self.lease_ttl(req.timeout_sec)?;
        let owner = actor.agent.as_str();
        // A caller without an identity (the task id acts) never re-enters: two anonymous
        // agents of one task must exclude each other, as the original's SETNX made them.
        let reentrant = !actor.anonymous;
        let mut outcome = self
            .hot
            .claim(&task, &path, owner, ttl, None, reentrant)
            .await?;
        if let ClaimOutcome::NeedFence = outcome {
            let fence = self.durable.next_fence().await?;
            let token = uuid::Uuid::new_v4().to_string();
            outcome = self
                .hot
                .claim(&task, &path, owner, ttl, Some((fence, &token)), reentrant)
                .await?;
        }
        let (lease, kind) = match outcome {
            ClaimOutcome::Granted(lease) => (lease, EventType::LockAcquired),
            ClaimOutcome::Reentrant(lease) => (lease, EventType::LockRenewed),
            ClaimOutcome::HeldByOther { owner, expires_at } => {
                metrics::counter!("mcp_lock_conflicts_total", "op" => "claim").increment(1);
                return Err(DomainError::Locked {
                    path: path.to_string(),
                    holder: owner,
                    expires_at,
                });
            }
            ClaimOutcome::NeedFence => {
                return Err(DomainError::internal("claim asked for a fence twice"));
            }
        };
        let data = json!({
            "path": path.as_str(), "owner": owner, "fence": lease.fence,
            "expires_at": lease.expires_at, "timeout_sec": timeout_sec,
        });
        let audit = json!({"action": "claim_file", "path": path.as_str(), "fence": lease.fence});
        self.emit(actor, &task, kind, data, Some(audit)).await?;
        Ok(Self::lock_response(&task, &path, lease, timeout_sec))
    }

    pub async fn renew_file(&self, actor: &Actor, req: RenewFileRequest) -> Result<LockResponse> {
        let task = TaskId::parse(&req.task_id)?;
        actor.ensure_write(&task)?;
        let path = FilePath::parse(&req.path)?;
        // Without a length the lease keeps its own (the default only for a lease that has
        // none recorded, granted before lengths were kept).
        let ttl = match req.timeout_sec {
            Some(secs) => Some(self.lease_ttl(Some(secs))?.0),
            None => None,
        };
        let (fallback, _) = self.lease_ttl(None)?;
        let (lease, length) = self
            .hot
            .renew(&task, &path, actor.agent.as_str(), ttl, fallback)
            .await?
            .map_err(|holder| DomainError::LockNotHeld {
                path: path.to_string(),
                agent: actor.agent.to_string(),
                holder,
            })?;
        let timeout_sec = length.as_millis().div_ceil(1000) as i64;
        let data = json!({
            "path": path.as_str(), "owner": actor.agent.as_str(), "fence": lease.fence,
            "expires_at": lease.expires_at, "timeout_sec": timeout_sec,
        });
        let audit = json!({"action": "renew_file", "path": path.as_str(), "fence": lease.fence});
        self.emit(actor, &task, EventType::LockRenewed, data, Some(audit))
            .await?;
        Ok(Self::lock_response(&task, &path, lease, timeout_sec))
    }

    pub async fn release_file(
        &self,
        actor: &Actor,
        req: ReleaseFileRequest,
    ) -> Result<ReleaseResponse> {
        let task = TaskId::parse(&req.task_id)?;
        actor.ensure_write(&task)?;
        let path = FilePath::parse(&req.path)?;
        if req.force {
            actor.ensure_admin()?;
        }
        let (holder, fence) = self
            .hot
            .release(&task, &path, actor.agent.as_str(), req.force)
            .await?
            .map_err(|holder| DomainError::LockNotHeld {
                path: path.to_string(),
                agent: actor.agent.to_string(),
                holder,
            })?;
        let forced = holder != actor.agent.as_str();
        let data =
            json!({"path": path.as_str(), "owner": holder, "fence": fence, "forced": forced});
        let action = if forced {
            "force_release_file"
        } else {
            "release_file"
        };
        let audit =
            json!({"action": action, "path": path.as_str(), "fence": fence, "holder": holder});
        self.emit(actor, &task, EventType::LockReleased, data, Some(audit))
            .await?;
        Ok(ReleaseResponse {
            success: true,
            task_id: task.to_string(),
            path: path.to_string(),
            locked: false,
        })
    }

    /// The task's live leases, by path: holder, fence, grant and expiry times, time left (by
    /// the hot store's clock). A read: observers may list their task's leases.
    pub async fn list_leases(
        &self,
        actor: &Actor,
        req: ListLeasesRequest,
    ) -> Result<ListLeasesResponse> {
        let task = TaskId::parse(&req.task_id)?;
        actor.ensure_task(&task)?;
        let (mut leases, truncated) = self.hot.leases(&task, MAX_LISTED_LEASES).await?;
        leases.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(ListLeasesResponse {
            success: true,
            task_id: task.to_string(),
            leases: leases
                .into_iter()
                .map(|l| LeaseInfo {
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
}
