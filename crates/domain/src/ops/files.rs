//! `file_read`, `file_write`, `file_edit`, `delete_file`, `list_files`.
//!
//! Writes are write-through: the conditional change commits in Postgres (version, fence and
//! revision in one statement), then the hot copy is refreshed and the event emitted, then the
//! caller is answered. A path leased by another agent refuses writes (`locked`); the lease
//! holder's writes carry its fence, which the database checks. The fence rule
//! (docs/ARCHITECTURE.md): a presented fence must be the writer's own live lease's; a change
//! without a lease of a file written under one must be conditional (the durable store checks).

use super::Service;
use crate::actor::Actor;
use crate::digest::sha256_hex;
use crate::error::{DomainError, Result};
use crate::ids::TaskId;
use crate::path::FilePath;
use crate::store::durable::{Committed, FileChange, RevisionOp};
use crate::store::hot::{CacheFile, Emit, HotRead, PendingWrite};
use mcp_api::EventType;
use mcp_api::requests::{
    DeleteFileRequest, FileEditRequest, FileReadRequest, FileWriteRequest, ListFilesRequest,
};
use mcp_api::responses::{
    DeleteFileResponse, FileEditResponse, FileReadResponse, FileWriteResponse, ListFilesResponse,
};
use serde::Serialize;

/// How often an edit is retried when another writer commits between its read and its write.
/// Every lost race means another writer's change landed, so this bounds the wait of one edit
/// among that many concurrent writers of the file (with a short random pause that grows per
/// attempt, so the losers of one race do not collide again at once).
const EDIT_ATTEMPTS: usize = 32;

fn check_expected(expected: Option<i64>) -> Result<()> {
    match expected {
        Some(v) if v < 0 => Err(DomainError::InvalidArgument(
            "expected_version must be 0 (create only) or a positive version".into(),
        )),
        _ => Ok(()),
    }
}

/// A presented fence is a number `claim_file` answered: positive (the fence rule, part 1;
/// whether it is the writer's live lease's is checked against the lease).
fn check_fence(fence: Option<i64>) -> Result<()> {
    match fence {
        Some(f) if f <= 0 => Err(DomainError::InvalidArgument(
            "fence must be the positive fence claim_file answered".into(),
        )),
        _ => Ok(()),
    }
}

/// The data of a file's change event, in the order a map of it had (keys sorted): `diff`
/// for an edit (null when there is none), `fence` when the writer presented one, `size`
/// unless deleted. Written straight into the envelope: no map is built (issue #19).
#[derive(Serialize)]
struct FileEventData<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    diff: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fence: Option<i64>,
    path: &'a str,
    sha256: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<i64>,
    version: i64,
}

/// A file's current content as read.
struct Current {
    version: i64,
    content: String,
    sha256: String,
    size: i64,
}

impl Service {
    fn check_file_size(&self, len: usize) -> Result<()> {
        if len > self.limits.max_file_bytes {
            return Err(DomainError::TooLarge {
                what: "file",
                actual: len,
                limit: self.limits.max_file_bytes,
            });
        }
        Ok(())
    }

    /// The fence a write by `actor` carries (the fence rule, parts 1 and 2): its own live
    /// lease's, whether it presents it or not; none for an unleased write. A presented fence
    /// that is not its live lease's on this path (none held, or another fence) is refused
    /// (`stale_fence`), so a forged fence never reaches the database and never raises
    /// `last_fence`. A path leased by another agent refuses the write (`locked`). Unless the
    /// path is another's, `write` is marked under way ([`Leases::lease_for_write`]).
    async fn writer_fence(
        &self,
        actor: &Actor,
        task: &TaskId,
        path: &FilePath,
        presented: Option<i64>,
        write: &PendingWrite,
    ) -> Result<Option<i64>> {
        match self
            .hot
            .lease_for_write(task, path, actor.agent.as_str(), write)
            .await?
        {
            None => match presented {
                None => Ok(None),
                Some(fence) => Err(DomainError::FenceNotHeld {
                    fence,
                    lease_fence: None,
                }),
            },
            Some(lease) if lease.owner == actor.agent.as_str() => match presented {
                Some(fence) if fence != lease.fence => Err(DomainError::FenceNotHeld {
                    fence,
                    lease_fence: Some(lease.fence),
                }),
                _ => Ok(Some(lease.fence)),
            },
            Some(lease) => {
                metrics::counter!("mcp_lock_conflicts_total", "op" => "write").increment(1);
                Err(DomainError::Locked {
                    lease_path: (lease.path != path.as_str()).then_some(lease.path),
                    path: path.to_string(),
                    holder: lease.owner,
                    expires_at: Some(lease.expires_at),
                    waiters: None,
                    queue_position: None,
                })
            }
        }
    }

    /// Commits a change and then refreshes the hot copy and emits the event.
    #[allow(clippy::too_many_arguments)]
    async fn commit_change(
        &self,
        actor: &Actor,
        task: &TaskId,
        path: &FilePath,
        op: RevisionOp,
        content: &str,
        expected_version: Option<i64>,
        presented_fence: Option<i64>,
        diff: Option<&str>,
    ) -> Result<(Committed, String)> {
        let write = PendingWrite::new(self.limits.pending_write_ttl_secs);
        let fence = match self
            .writer_fence(actor, task, path, presented_fence, &write)
            .await
        {
            Err(e @ DomainError::FenceNotHeld { .. }) => {
                return Err(self.abandoned(task, path, &write, e).await);
            }
            r => r?,
        };
        let sha256 = sha256_hex(content);
        let size = content.len() as i64;
        let committed = match self
            .durable
            .change_file(&FileChange {
                task,
                path,
                op,
                content,
                sha256: &sha256,
                size,
                agent: actor.agent.as_str(),
                fence,
                expected_version,
                diff,
                request_id: actor.request_id.as_deref(),
                max_task_files: self.limits.max_task_files,
                max_task_bytes: self.limits.max_task_bytes,
            })
            .await
        {
            Ok(c) => c,
            // The change may have committed before the store failed: its mark stays until it
            // lapses, and until then the file is read from the durable store.
            Err(e @ (DomainError::Unavailable { .. } | DomainError::Internal(_))) => return Err(e),
            Err(e) => return Err(self.abandoned(task, path, &write, e).await),
        };
        let kind = match op {
            RevisionOp::Write => EventType::FileWritten,
            RevisionOp::Edit => EventType::FileEdited,
            RevisionOp::Delete => EventType::FileDeleted,
        };
        let data = FileEventData {
            diff: (op == RevisionOp::Edit).then_some(diff),
            fence,
            path: path.as_str(),
            sha256: &sha256,
            size: (op != RevisionOp::Delete).then_some(size),
            version: committed.version,
        };
        let refreshed = self
            .hot
            .file_changed(
                path,
                &CacheFile {
                    version: committed.version,
                    deleted: op == RevisionOp::Delete,
                    content,
                    sha256: &sha256,
                    size,
                    updated_by: actor.agent.as_str(),
                    updated_at: committed.updated_at,
                    ttl_secs: self.limits.file_cache_ttl_secs,
                },
                &write,
                &Emit {
                    task,
                    agent: actor.agent.as_str(),
                    envelope: crate::events::envelope(kind, task, actor.agent.as_str(), data),
                    audit: None,
                    events_cap: self.limits.events_stream_cap,
                },
            )
            .await;
        if let Err(e) = refreshed {
            // The change is durable, and its mark keeps the file uncached until it lapses
            // (the hot copy was dropped before the commit; no refill is taken meanwhile), so
            // reads stay correct; only this change's event is lost. Answer success.
            tracing::warn!(task = %task, path = %path, error = %e, "hot refresh after commit failed");
        }
        Ok((committed, sha256))
    }

    /// Settles `write`, refused before it committed, so that the file may be cached again;
    /// answers the refusal. (Should that fail too, the mark lapses by itself.)
    async fn abandoned(
        &self,
        task: &TaskId,
        path: &FilePath,
        write: &PendingWrite,
        refusal: DomainError,
    ) -> DomainError {
        if let Err(e) = self.hot.write_abandoned(task, path, write).await {
            tracing::warn!(task = %task, path = %path, error = %e, "a refused change's mark stays until it lapses");
        }
        refusal
    }

    /// The file's current content: the hot copy, else Postgres (refilling the hot copy).
    async fn current(&self, task: &TaskId, path: &FilePath) -> Result<Current> {
        let refill = match self.hot.file(task, path).await? {
            HotRead::Hit(hot) if hot.deleted => {
                return Err(DomainError::FileNotFound(path.to_string()));
            }
            HotRead::Hit(hot) => {
                return Ok(Current {
                    version: hot.version,
                    content: hot.content,
                    sha256: hot.sha256,
                    size: hot.size,
                });
            }
            HotRead::Miss(refill) => refill,
        };
        let Some(stored) = self.durable.file(task, path).await? else {
            return Err(DomainError::FileNotFound(path.to_string()));
        };
        self.hot
            .cache_file(
                task,
                path,
                &CacheFile {
                    version: stored.version,
                    deleted: stored.deleted,
                    content: &stored.content,
                    sha256: &stored.sha256,
                    size: stored.size,
                    updated_by: stored.updated_by.as_deref().unwrap_or(""),
                    updated_at: stored.updated_at,
                    ttl_secs: self.limits.file_cache_ttl_secs,
                },
                &refill,
            )
            .await?;
        if stored.deleted {
            return Err(DomainError::FileNotFound(path.to_string()));
        }
        Ok(Current {
            version: stored.version,
            content: stored.content,
            sha256: stored.sha256,
            size: stored.size,
        })
    }

    /// Reads a file's current content and version (the hot copy, else the durable store).
    pub async fn file_read(&self, actor: &Actor, req: FileReadRequest) -> Result<FileReadResponse> {
        let task = actor.task(&req.task_id)?;
        let path = FilePath::parse(&req.path)?;
        let cur = self.current(&task, &path).await?;
        Ok(FileReadResponse {
            success: true,
            task_id: task.to_string(),
            path: path.to_string(),
            content: cur.content,
            version: cur.version,
            sha256: cur.sha256,
            size: cur.size,
        })
    }

    /// Writes a whole file, conditionally on `expected_version` and the fence (module docs).
    pub async fn file_write(
        &self,
        actor: &Actor,
        req: FileWriteRequest,
    ) -> Result<FileWriteResponse> {
        let task = actor.write_task(&req.task_id)?;
        let path = FilePath::parse(&req.path)?;
        let raw_path = req.path.clone();
        let result = self.write(actor, &task, &path, req).await;
        self.witness(actor, &task, &raw_path, "file_write", result)
            .await
    }

    async fn write(
        &self,
        actor: &Actor,
        task: &TaskId,
        path: &FilePath,
        req: FileWriteRequest,
    ) -> Result<FileWriteResponse> {
        self.check_file_size(req.content.len())?;
        check_expected(req.expected_version)?;
        check_fence(req.fence)?;
        let (committed, sha256) = self
            .commit_change(
                actor,
                task,
                path,
                RevisionOp::Write,
                &req.content,
                req.expected_version,
                req.fence,
                None,
            )
            .await?;
        Ok(FileWriteResponse {
            success: true,
            task_id: task.to_string(),
            path: path.to_string(),
            bytes: req.content.len() as i64,
            version: committed.version,
            sha256,
        })
    }

    /// Replaces `old_string` by `new_string`. Atomic: the write is conditional on the version
    /// the edit was computed from; if another writer got there first, the edit is recomputed
    /// on the new content (unless the caller pinned `expected_version`).
    pub async fn file_edit(&self, actor: &Actor, req: FileEditRequest) -> Result<FileEditResponse> {
        let task = actor.write_task(&req.task_id)?;
        let path = FilePath::parse(&req.path)?;
        let raw_path = req.path.clone();
        let result = self.edit(actor, &task, &path, req).await;
        self.witness(actor, &task, &raw_path, "file_edit", result)
            .await
    }

    async fn edit(
        &self,
        actor: &Actor,
        task: &TaskId,
        path: &FilePath,
        req: FileEditRequest,
    ) -> Result<FileEditResponse> {
        check_expected(req.expected_version)?;
        check_fence(req.fence)?;
        if req.old_string.is_empty() {
            return Err(DomainError::InvalidArgument(
                "old_string must not be empty".into(),
            ));
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let cur = self.current(task, path).await?;
            if let Some(expected) = req.expected_version.filter(|v| *v != cur.version) {
                return Err(DomainError::VersionConflict {
                    expected: Some(expected),
                    current: Some(cur.version),
                });
            }
            let count = cur.content.matches(req.old_string.as_str()).count();
            match count {
                0 => return Err(DomainError::EditNoMatch),
                n if n > 1 && !req.replace_all => {
                    return Err(DomainError::EditAmbiguous { count: n });
                }
                _ => {}
            }
            let new_content = if req.replace_all {
                cur.content.replace(&req.old_string, &req.new_string)
            } else {
                cur.content.replacen(&req.old_string, &req.new_string, 1)
            };
            self.check_file_size(new_content.len())?;
            let diff = crate::patch::unified_diff(path.as_str(), &cur.content, &new_content, None);
            let result = self
                .commit_change(
                    actor,
                    task,
                    path,
                    RevisionOp::Edit,
                    &new_content,
                    Some(cur.version),
                    req.fence,
                    Some(&diff),
                )
                .await;
            match result {
                Ok((committed, sha256)) => {
                    return Ok(FileEditResponse {
                        success: true,
                        task_id: task.to_string(),
                        path: path.to_string(),
                        version: committed.version,
                        sha256,
                        bytes: new_content.len() as i64,
                        replacements: count as i64,
                        diff,
                    });
                }
                Err(DomainError::VersionConflict { .. })
                    if req.expected_version.is_none() && attempt < EDIT_ATTEMPTS =>
                {
                    // Our read was stale (another writer committed, or the hot copy lagged):
                    // drop it and recompute from the database.
                    let pause_us = rand::random_range(0..=attempt as u64 * 500);
                    tokio::time::sleep(std::time::Duration::from_micros(pause_us)).await;
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Deletes a file: a change like a write, which leaves a revision without content.
    pub async fn delete_file(
        &self,
        actor: &Actor,
        req: DeleteFileRequest,
    ) -> Result<DeleteFileResponse> {
        let task = actor.write_task(&req.task_id)?;
        let path = FilePath::parse(&req.path)?;
        let raw_path = req.path.clone();
        let result = self.delete(actor, &task, &path, req).await;
        self.witness(actor, &task, &raw_path, "delete_file", result)
            .await
    }

    async fn delete(
        &self,
        actor: &Actor,
        task: &TaskId,
        path: &FilePath,
        req: DeleteFileRequest,
    ) -> Result<DeleteFileResponse> {
        check_expected(req.expected_version)?;
        check_fence(req.fence)?;
        let (committed, _) = self
            .commit_change(
                actor,
                task,
                path,
                RevisionOp::Delete,
                "",
                req.expected_version,
                req.fence,
                None,
            )
            .await?;
        Ok(DeleteFileResponse {
            success: true,
            task_id: task.to_string(),
            path: path.to_string(),
            deleted: true,
            version: committed.version,
        })
    }

    /// Lists the task's files, optionally under one directory prefix.
    pub async fn list_files(
        &self,
        actor: &Actor,
        req: ListFilesRequest,
    ) -> Result<ListFilesResponse> {
        let task = actor.task(&req.task_id)?;
        let prefix = match req.prefix.as_deref() {
            None | Some("") | Some(".") | Some("/") => None,
            Some(p) => Some(FilePath::parse(p)?),
        };
        let files = self.durable.list_files(&task, prefix.as_ref()).await?;
        Ok(ListFilesResponse {
            success: true,
            task_id: task.to_string(),
            files,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_change_events_data_is_the_json_its_map_was() {
        let cases = [
            (RevisionOp::Write, None, None),
            (RevisionOp::Write, None, Some(7)),
            (RevisionOp::Edit, Some("@@ -1 +1 @@\n-a\n+\"b\"\n"), Some(3)),
            (RevisionOp::Edit, None, None),
            (RevisionOp::Delete, None, Some(9)),
        ];
        for (op, diff, fence) in cases {
            let (path, sha256, size, version) = ("dir/é.txt", "ab12", 42_i64, 5_i64);
            // How the data was built before issue #19: a map.
            let mut map = match op {
                RevisionOp::Write => json!({"path": path, "size": size}),
                RevisionOp::Edit => json!({"path": path, "size": size, "diff": diff}),
                RevisionOp::Delete => json!({"path": path}),
            };
            map["version"] = json!(version);
            map["sha256"] = json!(sha256);
            if let Some(f) = fence {
                map["fence"] = json!(f);
            }
            let data = FileEventData {
                diff: (op == RevisionOp::Edit).then_some(diff),
                fence,
                path,
                sha256,
                size: (op != RevisionOp::Delete).then_some(size),
                version,
            };
            assert_eq!(
                serde_json::to_string(&data).expect("json"),
                map.to_string(),
                "{op:?}"
            );
        }
    }
}
