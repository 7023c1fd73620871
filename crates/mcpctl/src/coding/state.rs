//! Which leases a Claude Code session took, so that `Stop`/`SessionEnd` release those and no
//! others, and `PostToolUse` can publish with the lease's fence.
//!
//! One small JSON file per lease under
//! `<common git dir>/mcp-gateway/sessions/<session id>/`: hooks of one session may run at
//! the same time (parallel tool calls), and a file per lease needs no lock — each hook
//! writes (atomically: temporary file, then rename) or removes only its own. The common git
//! directory is shared by the repository's worktrees and never committed.

use super::repo::Checkout;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::PathBuf;

/// One lease a session holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// The task the lease is on.
    pub task_id: String,
    /// The leased file's path in the task (relative to the repository's root).
    pub path: String,
    /// The holder the lease was claimed for (releases name it).
    pub agent: String,
    /// The lease's fencing token (publishing presents it).
    pub fence: i64,
    /// When the lease ends unless renewed (RFC 3339), as the gateway last said.
    pub expires_at: String,
}

/// The lease records of one session.
#[derive(Debug, Clone)]
pub struct SessionLeases {
    dir: PathBuf,
}

impl SessionLeases {
    /// The records of `session_id` in `checkout`'s repository.
    pub fn open(checkout: &Checkout, session_id: &str) -> SessionLeases {
        SessionLeases {
            dir: checkout
                .common_dir
                .join("mcp-gateway")
                .join("sessions")
                .join(file_name(session_id)),
        }
    }

    fn file(&self, task_id: &str, path: &str) -> PathBuf {
        let key = Sha256::digest(format!("{task_id}\0{path}").as_bytes());
        let hex: String = key[..16].iter().map(|b| format!("{b:02x}")).collect();
        self.dir.join(format!("{hex}.json"))
    }

    /// Records (or updates) a lease.
    pub fn record(&self, lease: &LeaseRecord) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let file = self.file(&lease.task_id, &lease.path);
        let tmp = file.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, serde_json::to_vec(lease).unwrap_or_default())?;
        std::fs::rename(&tmp, &file)
    }

    /// The record of `path` in `task_id`, if the session holds it.
    pub fn get(&self, task_id: &str, path: &str) -> Option<LeaseRecord> {
        let bytes = std::fs::read(self.file(task_id, path)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Every lease the session recorded.
    pub fn all(&self) -> Vec<LeaseRecord> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out: Vec<LeaseRecord> = entries
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
            .collect();
        out.sort_by(|a, b| (&a.task_id, &a.path).cmp(&(&b.task_id, &b.path)));
        out
    }

    /// Forgets one lease.
    pub fn forget(&self, task_id: &str, path: &str) {
        let _ = std::fs::remove_file(self.file(task_id, path));
    }

    /// Forgets the whole session.
    pub fn forget_all(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A session id as a file name: kept when it is plain (Claude Code's are UUIDs), hashed
/// otherwise.
fn file_name(session_id: &str) -> String {
    let plain = !session_id.is_empty()
        && session_id.len() <= 128
        && session_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if plain {
        session_id.to_owned()
    } else {
        let h = Sha256::digest(session_id.as_bytes());
        h[..16].iter().map(|b| format!("{b:02x}")).collect()
    }
}
