//! [`GatewayWorkspace`]: a task's files through the gateway's tools.

use super::{Change, FileContent, FileEntry, Workspace};
use crate::client::GatewayClient;
use crate::error::Result;
use mcp_api::requests::*;

/// A task's files on the gateway: every call is one tool call of the client (with its
/// retries), answering the gateway's versions.
#[derive(Debug, Clone)]
pub struct GatewayWorkspace {
    client: GatewayClient,
    task_id: String,
}

impl GatewayWorkspace {
    /// The files of `task_id` through `client`.
    pub fn new(client: GatewayClient, task_id: &str) -> GatewayWorkspace {
        GatewayWorkspace {
            client,
            task_id: task_id.to_owned(),
        }
    }

    /// The client, for the calls a workspace does not cover (locks, logs, …).
    pub fn client(&self) -> &GatewayClient {
        &self.client
    }

    /// The task.
    pub fn task_id(&self) -> &str {
        &self.task_id
    }
}

impl GatewayClient {
    /// The files of `task_id` as a [`Workspace`].
    pub fn workspace(&self, task_id: &str) -> GatewayWorkspace {
        GatewayWorkspace::new(self.clone(), task_id)
    }
}

impl Workspace for GatewayWorkspace {
    async fn read(&self, path: &str) -> Result<FileContent> {
        let r = self
            .client
            .file_read(FileReadRequest {
                task_id: self.task_id.clone(),
                path: path.to_owned(),
                agent_id: None,
            })
            .await?;
        Ok(FileContent {
            path: r.path,
            content: r.content,
            version: Some(r.version),
        })
    }

    async fn write(&self, path: &str, content: &str) -> Result<Change> {
        let r = self
            .client
            .file_write(FileWriteRequest::new(self.task_id.as_str(), path, content))
            .await?;
        Ok(Change {
            path: r.path,
            version: Some(r.version),
            bytes: r.bytes.max(0) as u64,
            replacements: 0,
        })
    }

    async fn edit(&self, path: &str, old: &str, new: &str, replace_all: bool) -> Result<Change> {
        let r = self
            .client
            .file_edit(FileEditRequest {
                replace_all,
                ..FileEditRequest::new(self.task_id.as_str(), path, old, new)
            })
            .await?;
        Ok(Change {
            path: r.path,
            version: Some(r.version),
            bytes: r.bytes.max(0) as u64,
            replacements: r.replacements.max(0) as u64,
        })
    }

    async fn list(&self, prefix: Option<&str>) -> Result<Vec<FileEntry>> {
        let r = self
            .client
            .list_files(ListFilesRequest {
                task_id: self.task_id.clone(),
                prefix: prefix.map(str::to_owned),
                agent_id: None,
            })
            .await?;
        let mut files: Vec<FileEntry> = r
            .files
            .into_iter()
            .map(|f| FileEntry {
                path: f.path,
                size: f.size.max(0) as u64,
                version: Some(f.version),
            })
            .collect();
        // Postgres sorts by its collation; the trait promises byte order.
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(files)
    }

    async fn delete(&self, path: &str) -> Result<Change> {
        let r = self
            .client
            .delete_file(DeleteFileRequest {
                task_id: self.task_id.clone(),
                path: path.to_owned(),
                expected_version: None,
                fence: None,
                agent_id: None,
            })
            .await?;
        Ok(Change {
            path: r.path,
            version: Some(r.version),
            bytes: 0,
            replacements: 0,
        })
    }

    fn location(&self) -> String {
        format!("{} task {}", self.client.base_url(), self.task_id)
    }
}
