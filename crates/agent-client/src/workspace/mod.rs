//! A task's files behind one trait, with two implementations: through the gateway
//! ([`GatewayWorkspace`]) and in a plain local directory ([`LocalWorkspace`]). This is the
//! dual mode of the seed's rollback plan: with `USE_MCP=false` agents keep working on local
//! files ([`Workspace::from_env`] picks the mode).
//!
//! Both implementations answer the same way: the same path normalisation (traversal and
//! absolute paths refused with `invalid_path`), the same error codes (`file_not_found`,
//! `edit_no_match`, `edit_ambiguous`, …), and the same listing semantics. One behaviour suite
//! (`tests/workspace_suite.rs`) runs against both. What only the gateway has: versions
//! (`None` locally), leases, and other agents.

mod gateway;
mod local;
pub mod path;

pub use gateway::GatewayWorkspace;
pub use local::LocalWorkspace;

use crate::client::GatewayClient;
use crate::config::WorkspaceMode;
use crate::error::Result;
use std::future::Future;

/// A file's content as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileContent {
    /// The normalised path.
    pub path: String,
    /// The file's text.
    pub content: String,
    /// The gateway's version; `None` in a local workspace.
    pub version: Option<i64>,
}

/// The outcome of a write, edit or delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The normalised path.
    pub path: String,
    /// The new version (for a delete: the version of the deletion); `None` locally.
    pub version: Option<i64>,
    /// Size in bytes after the change (0 after a delete).
    pub bytes: u64,
    /// Occurrences replaced (edits only; 0 otherwise).
    pub replacements: u64,
}

/// One entry of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// The normalised path.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// The gateway's version; `None` locally.
    pub version: Option<i64>,
}

/// The files of one task. Paths are relative to the task and normalised the gateway's
/// way; see the module documentation.
pub trait Workspace: Send + Sync {
    /// Reads a file (`file_not_found` when missing).
    fn read(&self, path: &str) -> impl Future<Output = Result<FileContent>> + Send;

    /// Creates or replaces a file.
    fn write(&self, path: &str, content: &str) -> impl Future<Output = Result<Change>> + Send;

    /// Replaces `old` by `new`: exactly one occurrence unless `replace_all`
    /// (`edit_no_match` for none, `edit_ambiguous` for several).
    fn edit(
        &self,
        path: &str,
        old: &str,
        new: &str,
        replace_all: bool,
    ) -> impl Future<Output = Result<Change>> + Send;

    /// Lists files, sorted by path; with a prefix, only the file named so or those under
    /// the directory named so.
    fn list(&self, prefix: Option<&str>) -> impl Future<Output = Result<Vec<FileEntry>>> + Send;

    /// Deletes a file (`file_not_found` when missing).
    fn delete(&self, path: &str) -> impl Future<Output = Result<Change>> + Send;

    /// Where the files are, for messages (`gateway http://…/t1` or a directory).
    fn location(&self) -> String;
}

/// Either workspace, chosen at run time.
#[derive(Debug, Clone)]
pub enum DualWorkspace {
    /// Through the gateway.
    Gateway(GatewayWorkspace),
    /// In a local directory.
    Local(LocalWorkspace),
}

impl DualWorkspace {
    /// The workspace of `task_id` in the mode `USE_MCP` selects ([`WorkspaceMode`]).
    pub fn from_env(task_id: &str) -> Result<DualWorkspace> {
        DualWorkspace::for_mode(WorkspaceMode::from_env()?, task_id)
    }

    /// The workspace of `task_id` in `mode`.
    pub fn for_mode(mode: WorkspaceMode, task_id: &str) -> Result<DualWorkspace> {
        Ok(match mode {
            WorkspaceMode::Gateway(config) => {
                DualWorkspace::Gateway(GatewayWorkspace::new(GatewayClient::new(config)?, task_id))
            }
            WorkspaceMode::Local { root } => {
                DualWorkspace::Local(LocalWorkspace::for_task(root, task_id)?)
            }
        })
    }

    /// Whether files go through the gateway.
    pub fn is_gateway(&self) -> bool {
        matches!(self, DualWorkspace::Gateway(_))
    }
}

macro_rules! both {
    ($self:ident, $w:ident => $e:expr) => {
        match $self {
            DualWorkspace::Gateway($w) => $e,
            DualWorkspace::Local($w) => $e,
        }
    };
}

impl Workspace for DualWorkspace {
    async fn read(&self, path: &str) -> Result<FileContent> {
        both!(self, w => w.read(path).await)
    }

    async fn write(&self, path: &str, content: &str) -> Result<Change> {
        both!(self, w => w.write(path, content).await)
    }

    async fn edit(&self, path: &str, old: &str, new: &str, replace_all: bool) -> Result<Change> {
        both!(self, w => w.edit(path, old, new, replace_all).await)
    }

    async fn list(&self, prefix: Option<&str>) -> Result<Vec<FileEntry>> {
        both!(self, w => w.list(prefix).await)
    }

    async fn delete(&self, path: &str) -> Result<Change> {
        both!(self, w => w.delete(path).await)
    }

    fn location(&self) -> String {
        both!(self, w => w.location())
    }
}
