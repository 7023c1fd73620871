//! `checkout`: a task's files into a local directory, so agents that must run code have real
//! files on disk; with `--follow`, the directory keeps following the gateway.
//!
//! Writes go through [`LocalWorkspace`] (the gateway's path rules, atomic replacement, no
//! way out of the directory). With `--follow` the event subscription is opened before the
//! listing, so no change falls between the snapshot and the live events; each
//! `file_written`/`file_edited` event re-reads the file (skipped when the version on disk is
//! already as new), each `file_deleted` removes it. The direction is one way: local edits are
//! not sent to the gateway (use `mcpctl file write`), and are overwritten by the next change
//! of the same file on the gateway.

use crate::{EXIT_OK, Out};
use mcp_agent_client::path::{normalise_prefix, under_prefix};
use mcp_agent_client::{
    ClientError, ErrorCode, EventType, GatewayClient, LocalWorkspace, SubscribeOptions, Workspace,
};
use mcp_api::requests::{FileReadRequest, ListFilesRequest};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::Path;

/// What a checkout has put on disk: path → gateway version.
type OnDisk = HashMap<String, i64>;

/// Reads `path` from the gateway and writes it into the directory; returns its version, or
/// `None` when it no longer exists on the gateway (then it is removed locally too).
async fn fetch(
    c: &GatewayClient,
    local: &LocalWorkspace,
    task: &str,
    path: &str,
) -> Result<Option<i64>, ClientError> {
    let read = c
        .file_read(FileReadRequest {
            task_id: task.to_owned(),
            path: path.to_owned(),
            agent_id: None,
        })
        .await;
    match read {
        Ok(r) => {
            local.write(&r.path, &r.content).await?;
            Ok(Some(r.version))
        }
        Err(e) if e.code() == ErrorCode::FileNotFound => {
            remove(local, path).await?;
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

async fn remove(local: &LocalWorkspace, path: &str) -> Result<(), ClientError> {
    match local.delete(path).await {
        Err(e) if e.code() == ErrorCode::FileNotFound => Ok(()),
        other => other.map(|_| ()),
    }
}

pub async fn checkout(
    c: &GatewayClient,
    task: &str,
    dir: &Path,
    prefix: Option<&str>,
    follow: bool,
    count: Option<u64>,
    out: Out,
) -> Result<u8, ClientError> {
    let prefix = normalise_prefix(prefix)?;
    tokio::fs::create_dir_all(dir).await?;
    let local = LocalWorkspace::new(dir);
    let mut sub = if follow {
        let mut s = c.subscribe(
            task,
            SubscribeOptions {
                types: vec![
                    "file_written".into(),
                    "file_edited".into(),
                    "file_deleted".into(),
                ],
                ..SubscribeOptions::default()
            },
        );
        s.connect_now().await?;
        Some(s)
    } else {
        None
    };

    let listing = c
        .list_files(ListFilesRequest {
            task_id: task.to_owned(),
            prefix: prefix.clone(),
            agent_id: None,
        })
        .await?;
    let total = listing.files.len();
    let mut on_disk = OnDisk::new();
    let mut files = Vec::new();
    for (i, f) in listing.files.iter().enumerate() {
        out.progress(format!("checkout: [{}/{total}] {}", i + 1, f.path));
        if let Some(v) = fetch(c, &local, task, &f.path).await? {
            on_disk.insert(f.path.clone(), v);
            files.push(json!({"path": f.path, "version": v, "size": f.size}));
        }
    }
    out.emit(
        &json!({"success": true, "task_id": task, "dir": dir.display().to_string(), "files": files}),
        || format!("checked out {} file(s) of {task} into {}", files.len(), dir.display()),
    );

    let Some(sub) = sub.as_mut() else {
        return Ok(EXIT_OK);
    };
    out.progress(format!(
        "following {task} into {} (Ctrl-C to stop)",
        dir.display()
    ));
    let mut applied = 0u64;
    while count.is_none_or(|n| applied < n) {
        let e = sub.next().await?;
        let Some(path) = e.data.get("path").and_then(Value::as_str) else {
            continue;
        };
        if prefix.as_deref().is_some_and(|p| !under_prefix(path, p)) {
            continue;
        }
        let version = e.data.get("version").and_then(Value::as_i64);
        let change = if e.kind == EventType::FileDeleted {
            remove(&local, path).await?;
            on_disk.remove(path);
            json!({"op": "delete", "path": path, "version": version})
        } else {
            let have = on_disk.get(path).copied();
            if have.is_some() && version.is_some() && have >= version {
                continue; // already as new (the snapshot saw it)
            }
            match fetch(c, &local, task, path).await? {
                Some(v) => {
                    on_disk.insert(path.to_owned(), v);
                    json!({"op": "write", "path": path, "version": v})
                }
                None => {
                    on_disk.remove(path);
                    json!({"op": "delete", "path": path, "version": version})
                }
            }
        };
        applied += 1;
        out.emit(&change, || {
            format!(
                "{} {} (version {})",
                if change["op"] == "delete" {
                    "removed"
                } else {
                    "updated"
                },
                path,
                change["version"]
            )
        });
    }
    Ok(EXIT_OK)
}
