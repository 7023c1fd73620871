//! The one-call commands: health, tasks, files (and their history), locks. Each makes one client call and prints
//! the gateway's answer (`--json`: the body as it is).

use crate::cli::{FileCommand, LockCommand, TaskCommand};
use crate::{EXIT_OK, EXIT_UNAVAILABLE, Out};
use mcp_agent_client::{ClientError, GatewayClient};
use mcp_api::requests::*;
use serde::Serialize;
use serde_json::Value;
use tokio::io::AsyncReadExt;

fn to_json<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// `health`: exit 0 when the gateway can serve, 6 when it is unhealthy.
pub async fn health(c: &GatewayClient, out: Out) -> Result<u8, ClientError> {
    let h = c.health().await?;
    out.emit(&to_json(&h), || {
        // In the embedded mode the seed's two fields say `embedded`: name what stands in.
        let (hot, durable) = match &h.backends {
            Some(b) if b.hot != "redis" || b.durable != "postgres" => {
                (format!(" ({})", b.hot), format!(" ({})", b.durable))
            }
            _ => Default::default(),
        };
        let mut s = format!(
            "{} (version {}): redis {}{hot}, postgres {}{durable}",
            h.status, h.version, h.redis, h.postgres
        );
        for w in &h.warnings {
            s.push_str(&format!("\nwarning: {w}"));
        }
        s
    });
    Ok(if h.status == "unhealthy" {
        EXIT_UNAVAILABLE
    } else {
        EXIT_OK
    })
}

/// `task create`, `task show` and `task list`.
pub async fn task(c: &GatewayClient, cmd: TaskCommand, out: Out) -> Result<u8, ClientError> {
    let t = match cmd {
        TaskCommand::Create {
            id,
            title,
            description,
            status,
            assign,
            complexity,
        } => {
            let t = c
                .create_task(&CreateTaskRequest {
                    id,
                    title,
                    description,
                    status,
                    assigned_agent_id: assign,
                    complexity,
                })
                .await?;
            out.progress(format!("created task {}", t.id));
            t
        }
        TaskCommand::Show { task } => c.task_state(&task).await?,
        TaskCommand::List {
            q,
            status,
            with_agent,
            limit,
            cursor,
        } => {
            let query = TaskListQuery {
                q,
                status,
                agent: with_agent,
                limit,
                cursor,
            };
            return crate::lists::tasks(c, query, out).await;
        }
    };
    out.emit(&to_json(&t), || {
        let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        format!(
            "id:          {}\ntitle:       {}\nstatus:      {}\nassigned to: {}\ncomplexity:  {}\ncreated:     {}\nupdated:     {}\ndescription: {}",
            t.id,
            t.title,
            t.status,
            opt(&t.assigned_agent_id),
            t.complexity.map_or_else(|| "-".into(), |c| c.to_string()),
            t.created_at.to_rfc3339(),
            t.updated_at.to_rfc3339(),
            opt(&t.description),
        )
    });
    Ok(EXIT_OK)
}

/// The `file` commands: one client call each, printed.
pub async fn file(c: &GatewayClient, cmd: FileCommand, out: Out) -> Result<u8, ClientError> {
    match cmd {
        FileCommand::Read { task, path } => {
            let r = c
                .file_read(FileReadRequest {
                    task_id: task,
                    path,
                    agent_id: None,
                })
                .await?;
            if out.json {
                out.emit(&to_json(&r), String::new);
            } else {
                // The content exactly as stored, for pipes.
                print!("{}", r.content);
            }
        }
        FileCommand::Write {
            task,
            path,
            content,
            expected_version,
            fence,
        } => {
            let content = match content {
                Some(c) => c,
                None => {
                    let mut s = String::new();
                    tokio::io::stdin().read_to_string(&mut s).await?;
                    s
                }
            };
            let r = c
                .file_write(FileWriteRequest {
                    task_id: task,
                    path,
                    content,
                    expected_version,
                    fence,
                    agent_id: None,
                })
                .await?;
            out.emit(&to_json(&r), || {
                format!("wrote {}: version {}, {} bytes", r.path, r.version, r.bytes)
            });
        }
        FileCommand::Edit {
            task,
            path,
            old,
            new,
            replace_all,
            expected_version,
            fence,
        } => {
            let r = c
                .file_edit(FileEditRequest {
                    task_id: task,
                    path,
                    old_string: old,
                    new_string: new,
                    replace_all,
                    expected_version,
                    fence,
                    agent_id: None,
                })
                .await?;
            out.emit(&to_json(&r), || {
                format!(
                    "{}edited {}: {} replacement(s), version {}",
                    r.diff, r.path, r.replacements, r.version
                )
            });
        }
        FileCommand::Ls { task, prefix } => {
            let r = c
                .list_files(ListFilesRequest {
                    task_id: task,
                    prefix,
                    agent_id: None,
                })
                .await?;
            out.emit(&to_json(&r), || {
                let mut s = format!(
                    "{:>7} {:>10}  {:<16} {:<20}  PATH",
                    "VERSION", "SIZE", "UPDATED BY", "UPDATED AT"
                );
                for f in &r.files {
                    s.push_str(&format!(
                        "\n{:>7} {:>10}  {:<16} {:<20}  {}",
                        f.version,
                        f.size,
                        f.updated_by.as_deref().unwrap_or("-"),
                        f.updated_at.format("%Y-%m-%d %H:%M:%S"),
                        f.path
                    ));
                }
                s
            });
        }
        FileCommand::History {
            task,
            path,
            before,
            limit,
        } => {
            let r = c
                .file_history(FileHistoryRequest {
                    task_id: task,
                    path,
                    before_version: before,
                    limit: Some(limit),
                    agent_id: None,
                })
                .await?;
            out.emit(&to_json(&r), || {
                let mut s = format!(
                    "{:>7} {:<6} {:<16} {:>6} {:>10}  TIME",
                    "VERSION", "OP", "AGENT", "FENCE", "SIZE"
                );
                for v in &r.revisions {
                    let opt = |n: Option<i64>| n.map_or_else(|| "-".to_owned(), |n| n.to_string());
                    s.push_str(&format!(
                        "\n{:>7} {:<6} {:<16} {:>6} {:>10}  {}",
                        v.version,
                        v.op,
                        v.agent_id.as_deref().unwrap_or("-"),
                        opt(v.fence),
                        opt(v.size),
                        v.created_at.format("%Y-%m-%d %H:%M:%S%.3f"),
                    ));
                }
                if let Some(before) = r.next_before {
                    s.push_str(&format!("\n(older: --before {before})"));
                }
                s
            });
        }
        FileCommand::Show {
            task,
            path,
            version,
        } => {
            let r = c
                .file_revision(FileRevisionRequest::new(task, path, version))
                .await?;
            if out.json {
                out.emit(&to_json(&r), String::new);
            } else {
                match &r.content {
                    // The content exactly as stored, for pipes.
                    Some(content) => print!("{content}"),
                    None => out.progress(format!(
                        "version {} of {} is a delete: no content",
                        r.version, r.path
                    )),
                }
            }
        }
        FileCommand::Diff {
            task,
            path,
            from,
            to,
        } => {
            let r = c
                .file_revision(FileRevisionRequest {
                    diff_from: Some(from),
                    ..FileRevisionRequest::new(task, path, to)
                })
                .await?;
            if out.json {
                out.emit(&to_json(&r), String::new);
            } else {
                print!("{}", r.diff.as_deref().unwrap_or(""));
            }
        }
        FileCommand::Rm {
            task,
            path,
            expected_version,
            fence,
        } => {
            let r = c
                .delete_file(DeleteFileRequest {
                    task_id: task,
                    path,
                    expected_version,
                    fence,
                    agent_id: None,
                })
                .await?;
            out.emit(&to_json(&r), || {
                format!("deleted {} (version {})", r.path, r.version)
            });
        }
    }
    Ok(EXIT_OK)
}

/// The `lock` commands: one client call each, printed.
pub async fn lock(c: &GatewayClient, cmd: LockCommand, out: Out) -> Result<u8, ClientError> {
    let lease = match cmd {
        LockCommand::Claim {
            task,
            path,
            ttl,
            wait,
            recursive,
        } => {
            c.claim_file(ClaimFileRequest {
                task_id: task,
                path,
                timeout_sec: ttl,
                wait_sec: wait,
                recursive,
                agent_id: None,
            })
            .await?
        }
        LockCommand::Renew {
            task,
            path,
            ttl,
            recursive,
        } => {
            c.renew_file(RenewFileRequest {
                task_id: task,
                path,
                timeout_sec: ttl,
                recursive,
                agent_id: None,
            })
            .await?
        }
        LockCommand::Release {
            task,
            path,
            force,
            recursive,
        } => {
            let r = c
                .release_file(ReleaseFileRequest {
                    task_id: task,
                    path,
                    force,
                    recursive,
                    agent_id: None,
                })
                .await?;
            out.emit(&to_json(&r), || format!("released {}", r.path));
            return Ok(EXIT_OK);
        }
        LockCommand::List { task } => {
            let r = c.list_leases(ListLeasesRequest::new(task)).await?;
            out.emit(&to_json(&r), || {
                let mut s = format!(
                    "{:<16} {:>6} {:<24} {:>9}  PATH",
                    "HOLDER", "FENCE", "EXPIRES", "LEFT"
                );
                for l in &r.leases {
                    s.push_str(&format!(
                        "\n{:<16} {:>6} {:<24} {:>8.1}s  {}",
                        l.holder,
                        l.fence,
                        l.expires_at.format("%Y-%m-%d %H:%M:%S%.3f"),
                        l.ttl_ms_left as f64 / 1000.0,
                        l.path
                    ));
                    if !l.waiters.is_empty() {
                        s.push_str(&format!("  (waiting: {})", l.waiters.join(", ")));
                    }
                }
                if r.truncated {
                    s.push_str("\n(more leases than one answer lists: those expiring soonest)");
                }
                s
            });
            return Ok(EXIT_OK);
        }
    };
    out.emit(&to_json(&lease), || {
        let waited = lease
            .waited_ms
            .filter(|ms| *ms > 0)
            .map(|ms| format!(" (after waiting {:.1} s)", ms as f64 / 1000.0))
            .unwrap_or_default();
        format!(
            "locked {} for {}: {} s, fence {}, expires {}{waited}",
            lease.path,
            lease.owner,
            lease.timeout_sec,
            lease.fence,
            lease.expires_at.to_rfc3339()
        )
    });
    Ok(EXIT_OK)
}
