//! `checkout`: a task's files into a local directory, so agents that must run code have real
//! files on disk; with `--follow`, the directory keeps following the gateway.
//!
//! Writes go through [`LocalWorkspace`] (the gateway's path rules, atomic replacement, no
//! way out of the directory). With `--follow` the event subscription is opened before the
//! listing, so no change falls between the snapshot and the live events; each
//! `file_written`/`file_edited` event re-reads the file (skipped when the version on disk is
//! already as new), each `file_deleted` removes it. The direction is one way: local edits are
//! not sent to the gateway (use `mcpctl file write`).
//!
//! Local edits are never lost silently. What checkout wrote is recorded in [`MANIFEST`] in
//! the directory (path → version and SHA-256). A file whose content on disk is neither what
//! checkout last wrote there nor the gateway's content is *modified locally*: a checkout
//! refuses before writing anything (exit 4, naming the files), and `--follow` skips that
//! file's changes with a warning; `--force` overwrites (and removes) such files.

use crate::{Activity, EXIT_CONFLICT, EXIT_OK, Out, no_such_task, stream_observer, task_exists};
use mcp_agent_client::path::{normalise_prefix, under_prefix};
use mcp_agent_client::{
    ClientError, ErrorCode, EventType, GatewayClient, LocalWorkspace, SubscribeOptions, Workspace,
};
use mcp_api::requests::{FileReadRequest, ListFilesRequest};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The record of what checkout wrote, in the checked-out directory.
pub const MANIFEST: &str = ".mcpctl-checkout.json";

/// What the command was asked for, besides the task and the directory.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Only files under this directory of the task.
    pub prefix: Option<String>,
    /// Keep applying the gateway's changes until interrupted (or `count`).
    pub follow: bool,
    /// With `follow`: stop after this many applied or skipped changes.
    pub count: Option<u64>,
    /// Overwrite (and remove) files edited locally.
    pub force: bool,
}

/// One file as checkout last wrote it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Written {
    version: i64,
    sha256: String,
}

/// [`MANIFEST`]: path → what checkout last wrote there.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Manifest {
    #[serde(default)]
    task_id: String,
    #[serde(default)]
    files: BTreeMap<String, Written>,
}

impl Manifest {
    async fn load(dir: &Path) -> Manifest {
        match tokio::fs::read(dir.join(MANIFEST)).await {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
            Err(_) => Manifest::default(),
        }
    }

    async fn save(&self, dir: &Path) -> Result<(), ClientError> {
        let tmp = dir.join(format!("{MANIFEST}.tmp"));
        let text = serde_json::to_vec_pretty(self).unwrap_or_default();
        tokio::fs::write(&tmp, text).await?;
        tokio::fs::rename(&tmp, dir.join(MANIFEST)).await?;
        Ok(())
    }
}

fn sha256_hex(content: &[u8]) -> String {
    Sha256::digest(content)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A local file compared with what checkout wrote and with the gateway's content.
#[derive(Debug, PartialEq, Eq)]
enum Local {
    /// Not on disk.
    Absent,
    /// On disk with the gateway's content (nothing to lose).
    Current,
    /// On disk as checkout last wrote it (safe to replace).
    AsWritten,
    /// Anything else: edited here, or there before checkout with other content.
    Modified,
}

async fn local_state(
    local: &LocalWorkspace,
    manifest: &Manifest,
    path: &str,
    gateway_sha: Option<&str>,
) -> Result<Local, ClientError> {
    let on_disk: PathBuf = local.dir().join(path);
    let bytes = match tokio::fs::read(&on_disk).await {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Local::Absent),
        // A directory or something else in the way: the write will say so.
        Err(_) if on_disk.is_dir() => return Ok(Local::Modified),
        Err(e) => return Err(e.into()),
    };
    let sha = sha256_hex(&bytes);
    Ok(if gateway_sha == Some(sha.as_str()) {
        Local::Current
    } else if manifest.files.get(path).is_some_and(|w| w.sha256 == sha) {
        Local::AsWritten
    } else {
        Local::Modified
    })
}

/// Reads `path` from the gateway and writes it into the directory (recorded in the
/// manifest); returns its version, or `None` when it no longer exists on the gateway (then
/// it is removed locally too, unless modified there and not `force`d).
async fn fetch(
    c: &GatewayClient,
    local: &LocalWorkspace,
    manifest: &mut Manifest,
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
            manifest.files.insert(
                r.path.clone(),
                Written {
                    version: r.version,
                    sha256: sha256_hex(r.content.as_bytes()),
                },
            );
            Ok(Some(r.version))
        }
        Err(e) if e.code() == ErrorCode::FileNotFound => {
            remove(local, manifest, path).await?;
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

async fn remove(
    local: &LocalWorkspace,
    manifest: &mut Manifest,
    path: &str,
) -> Result<(), ClientError> {
    manifest.files.remove(path);
    match local.delete(path).await {
        Err(e) if e.code() == ErrorCode::FileNotFound => Ok(()),
        other => other.map(|_| ()),
    }
}

/// `checkout`: writes `task`'s files into `dir` (refusing to overwrite local edits without
/// `force`), then, with `follow`, applies its changes as they happen.
pub async fn checkout(
    c: &GatewayClient,
    task: &str,
    dir: &Path,
    opts: Options,
    out: Out,
    activity: &Activity,
) -> Result<u8, ClientError> {
    let prefix = normalise_prefix(opts.prefix.as_deref())?;
    let local = LocalWorkspace::new(dir);
    let mut sub = if opts.follow {
        let url = c.base_url().to_string();
        let mut s = c.subscribe(
            task,
            SubscribeOptions {
                types: vec![
                    "file_written".into(),
                    "file_edited".into(),
                    "file_deleted".into(),
                ],
                on_status: Some(stream_observer(task, &url, out, activity)),
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
    if listing.files.is_empty() && !task_exists(c, task).await? {
        if !opts.follow {
            return Err(no_such_task(task));
        }
        out.progress(format!(
            "mcpctl: {task} has no task row, files or log steps yet; waiting for its first file"
        ));
    }
    tokio::fs::create_dir_all(dir).await?;
    let mut manifest = Manifest::load(dir).await;
    if !manifest.task_id.is_empty() && manifest.task_id != task && !opts.force {
        return Err(ClientError::refused(
            ErrorCode::AlreadyExists,
            format!(
                "{} holds a checkout of task {}, not {task} (--force to mix them)",
                dir.display(),
                manifest.task_id
            ),
        ));
    }
    manifest.task_id = task.to_owned();

    // Nothing is written while a local edit would be lost.
    let mut modified = Vec::new();
    for f in &listing.files {
        if local_state(&local, &manifest, &f.path, Some(&f.sha256)).await? == Local::Modified {
            modified.push(f.path.clone());
        }
    }
    if !modified.is_empty() && !opts.force {
        return refuse(task, dir, &modified, out);
    }

    let total = listing.files.len();
    let bar = out.bar(total as u64, "checkout");
    let mut files = Vec::new();
    for (i, f) in listing.files.iter().enumerate() {
        match &bar {
            Some(bar) => bar.set_message(f.path.clone()),
            None => out.progress(format!("checkout: [{}/{total}] {}", i + 1, f.path)),
        }
        if let Some(v) = fetch(c, &local, &mut manifest, task, &f.path).await? {
            files.push(json!({"path": f.path, "version": v, "size": f.size}));
        }
        if let Some(bar) = &bar {
            bar.inc(1);
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    manifest.save(dir).await?;
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
    while opts.count.is_none_or(|n| applied < n) {
        let e = sub.next().await?;
        let Some(path) = e.data.get("path").and_then(Value::as_str) else {
            continue;
        };
        if prefix.as_deref().is_some_and(|p| !under_prefix(path, p)) {
            continue;
        }
        let version = e.data.get("version").and_then(Value::as_i64);
        let have = manifest.files.get(path).map(|w| w.version);
        if e.kind != EventType::FileDeleted
            && have.is_some()
            && version.is_some()
            && have >= version
        {
            continue; // already as new (the snapshot saw it)
        }
        let change = if !opts.force
            && local_state(&local, &manifest, path, None).await? == Local::Modified
        {
            out.progress(format!(
                "mcpctl: warning: kept the local edits of {path}; the gateway's change (version {}) is not applied (--force overwrites)",
                version.map_or("-".to_owned(), |v| v.to_string())
            ));
            json!({"op": "kept", "path": path, "version": version})
        } else if e.kind == EventType::FileDeleted {
            remove(&local, &mut manifest, path).await?;
            json!({"op": "delete", "path": path, "version": version})
        } else {
            match fetch(c, &local, &mut manifest, task, path).await? {
                Some(v) => json!({"op": "write", "path": path, "version": v}),
                None => json!({"op": "delete", "path": path, "version": version}),
            }
        };
        manifest.save(dir).await?;
        applied += 1;
        out.emit(&change, || {
            let what = match change["op"].as_str() {
                Some("delete") => "removed",
                Some("kept") => "kept local edits of",
                _ => "updated",
            };
            format!("{what} {path} (version {})", change["version"])
        });
    }
    Ok(EXIT_OK)
}

/// The refusal of a checkout that would overwrite local edits: exit 4, the files named on
/// stderr (and with `--json` in the error object).
fn refuse(task: &str, dir: &Path, modified: &[String], out: Out) -> Result<u8, ClientError> {
    let detail = format!(
        "{} file(s) in {} were changed locally since checkout wrote them: {}; nothing was written (--force overwrites them)",
        modified.len(),
        dir.display(),
        modified.join(", ")
    );
    if out.json {
        println!(
            "{}",
            json!({"success": false, "task_id": task, "error": {
                "code": "local_changes", "detail": detail, "files": modified}})
        );
    }
    eprintln!("mcpctl: {detail}");
    Ok(EXIT_CONFLICT)
}
