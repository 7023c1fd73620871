//! `file_history`, `file_revision`: a file's past, from the durable store's revisions (every
//! version a write, edit or delete made, kept with its agent, fence and time).
//!
//! A revision carries its version's full content (deletes carry none), so a version is one
//! row — except an edit committed before revisions kept content
//! (`migrations/…_revision_content.sql`), which holds only its diff: its content is the
//! previous version's with that diff applied ([`crate::patch::apply`], which checks every
//! line it relies on), replayed from the newest older revision that holds content. The
//! replay is bounded ([`MAX_REPLAY`]); a diff between two versions is bounded in time
//! ([`DIFF_BUDGET`]); both contents are at most the file size limit, as every version was.

use super::Service;
use crate::actor::Actor;
use crate::digest::sha256_hex;
use crate::error::{DomainError, Result};
use crate::ids::TaskId;
use crate::patch;
use crate::path::FilePath;
use crate::store::durable::{RevisionOp, StoredRevision};
use mcp_api::requests::{FileHistoryRequest, FileRevisionRequest};
use mcp_api::responses::{FileHistoryResponse, FileRevisionResponse, RevisionInfo};
use std::time::{Duration, Instant};

/// `file_history`'s page size when the request names none, and its largest.
const DEFAULT_HISTORY: i64 = 50;
const MAX_HISTORY: i64 = 500;

/// Most diffs one read replays to rebuild a version stored as a diff only (older rows).
pub(crate) const MAX_REPLAY: usize = 1_000;

/// How long a diff between two versions searches for the minimal alignment; past it the
/// diff is finished with a coarser one (still correct, only less minimal).
const DIFF_BUDGET: Duration = Duration::from_millis(500);

fn check_version(name: &str, v: i64) -> Result<()> {
    if v < 1 {
        return Err(DomainError::InvalidArgument(format!(
            "{name} must be a version, 1 or more"
        )));
    }
    Ok(())
}

impl Service {
    /// Lists a file's revisions, newest first.
    pub async fn file_history(
        &self,
        actor: &Actor,
        req: FileHistoryRequest,
    ) -> Result<FileHistoryResponse> {
        let task = actor.task(&req.task_id)?;
        let path = FilePath::parse(&req.path)?;
        let limit = req.limit.unwrap_or(DEFAULT_HISTORY);
        if !(1..=MAX_HISTORY).contains(&limit) {
            return Err(DomainError::InvalidArgument(format!(
                "limit must be between 1 and {MAX_HISTORY}"
            )));
        }
        let limit = limit as usize;
        let mut revisions = self
            .durable
            .revisions(&task, &path, req.before_version, limit + 1)
            .await?;
        if revisions.is_empty()
            && (req.before_version.is_none()
                || self
                    .durable
                    .revisions(&task, &path, None, 1)
                    .await?
                    .is_empty())
        {
            return Err(DomainError::FileNotFound(path.to_string()));
        }
        let next_before = (revisions.len() > limit).then(|| {
            revisions.truncate(limit);
            revisions.last().map(|r| r.version)
        });
        Ok(FileHistoryResponse {
            success: true,
            task_id: task.to_string(),
            path: path.to_string(),
            revisions: revisions
                .into_iter()
                .map(|r| RevisionInfo {
                    version: r.version,
                    op: r.op.as_str().to_owned(),
                    agent_id: r.agent_id,
                    fence: r.fence,
                    size: r.size,
                    sha256: r.sha256,
                    created_at: r.created_at,
                })
                .collect(),
            next_before: next_before.flatten(),
        })
    }

    /// One revision of a file: its content, or its diff from an older version (`diff_from`).
    pub async fn file_revision(
        &self,
        actor: &Actor,
        req: FileRevisionRequest,
    ) -> Result<FileRevisionResponse> {
        let task = actor.task(&req.task_id)?;
        let path = FilePath::parse(&req.path)?;
        check_version("version", req.version)?;
        if let Some(from) = req.diff_from {
            check_version("diff_from", from)?;
        }
        let (rev, content) = self.revision_at(&task, &path, req.version).await?;
        let diff = match req.diff_from {
            None => None,
            Some(from) => {
                let old = if from == req.version {
                    content.clone()
                } else {
                    self.revision_at(&task, &path, from).await?.1
                };
                let deadline = Instant::now() + DIFF_BUDGET;
                Some(patch::unified_diff(
                    path.as_str(),
                    old.as_deref().unwrap_or(""),
                    content.as_deref().unwrap_or(""),
                    Some(deadline),
                ))
            }
        };
        // Older revisions have no size and hash recorded; the content gives both.
        let (sha256, size) = match &content {
            None => (None, None),
            Some(c) => (
                Some(rev.sha256.unwrap_or_else(|| sha256_hex(c))),
                Some(rev.size.unwrap_or(c.len() as i64)),
            ),
        };
        Ok(FileRevisionResponse {
            success: true,
            task_id: task.to_string(),
            path: path.to_string(),
            version: rev.version,
            op: rev.op.as_str().to_owned(),
            agent_id: rev.agent_id,
            fence: rev.fence,
            created_at: rev.created_at,
            content,
            sha256,
            size,
            diff_from: req.diff_from,
            diff,
        })
    }

    /// Revision `version` of a file and its content (`None`: the version is a delete).
    /// `file_not_found` when the file has no revision at all, `revision_not_found` when it
    /// has none at `version`.
    async fn revision_at(
        &self,
        task: &TaskId,
        path: &FilePath,
        version: i64,
    ) -> Result<(StoredRevision, Option<String>)> {
        let chain = self
            .durable
            .revision_chain(task, path, version, MAX_REPLAY + 1)
            .await?;
        if chain.first().is_none_or(|r| r.version != version) {
            let latest = self.durable.revisions(task, path, None, 1).await?;
            return Err(match latest.first() {
                None => DomainError::FileNotFound(path.to_string()),
                Some(r) => DomainError::RevisionNotFound {
                    path: path.to_string(),
                    version,
                    latest: r.version,
                },
            });
        }
        if chain.last().is_some_and(|base| !base.is_base()) {
            return Err(DomainError::ReplayTooLong {
                version,
                limit: MAX_REPLAY,
            });
        }
        // Oldest first: the base's content, then each newer edit's diff applied in turn.
        let mut rows = chain.into_iter().rev();
        let Some(mut rev) = rows.next() else {
            return Err(DomainError::internal("an empty revision chain"));
        };
        let mut content = match rev.op {
            RevisionOp::Delete => None,
            _ => rev.content.take(),
        };
        for r in rows {
            let (Some(old), Some(diff)) = (content.as_deref(), r.diff.as_deref()) else {
                return Err(DomainError::internal(format!(
                    "revision {} of '{path}' holds neither its content nor a diff of a live file",
                    r.version
                )));
            };
            let new = patch::apply(old, diff).map_err(|e| {
                DomainError::internal(format!("revision {} of '{path}': {e}", r.version))
            })?;
            content = Some(new);
            rev = r;
        }
        Ok((rev, content))
    }
}
