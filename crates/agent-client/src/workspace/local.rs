//! [`LocalWorkspace`]: a task's files in a plain directory, answering like the gateway.
//!
//! Paths are normalised by the gateway's rules ([`super::path`]), so nothing outside the
//! directory is reachable by name; a path that passes through a symbolic link is refused
//! too (`invalid_path`), so a link planted in the directory cannot lead outside it. Writes go
//! to a temporary file that is renamed over the target, so a reader never sees half a file.
//! There are no versions, leases or other agents here. Unlike the gateway, a directory
//! cannot hold a file and a subdirectory of the same name (`a` and `a/b`).

use super::path::{check_task_id, normalise, normalise_prefix, under_prefix};
use super::{Change, FileContent, FileEntry, Workspace};
use crate::error::{ClientError, Result};
use mcp_api::ErrorCode;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// Prefix of the temporary files of in-flight writes (never listed).
const TMP_PREFIX: &str = ".mcp-tmp-";

/// A task's files in a local directory. See the module documentation.
#[derive(Debug, Clone)]
pub struct LocalWorkspace {
    dir: PathBuf,
}

impl LocalWorkspace {
    /// The workspace whose files live directly in `dir` (created on the first write).
    pub fn new(dir: impl Into<PathBuf>) -> LocalWorkspace {
        LocalWorkspace { dir: dir.into() }
    }

    /// The workspace of `task_id` under `root`: `<root>/<task_id>/`.
    pub fn for_task(root: impl AsRef<Path>, task_id: &str) -> Result<LocalWorkspace> {
        check_task_id(task_id)?;
        Ok(LocalWorkspace::new(root.as_ref().join(task_id)))
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The normalised path and where it lives on disk; refuses links on the way.
    async fn resolve(&self, raw: &str) -> Result<(String, PathBuf)> {
        let path = normalise(raw)?;
        let mut on_disk = self.dir.clone();
        for component in path.split('/') {
            on_disk.push(component);
            match tokio::fs::symlink_metadata(&on_disk).await {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(ClientError::refused(
                        ErrorCode::InvalidPath,
                        "path passes through a symbolic link",
                    ));
                }
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => break,
                Err(e) if e.kind() == ErrorKind::NotADirectory => break,
                Err(e) => return Err(e.into()),
            }
        }
        Ok((path.clone(), self.dir.join(&path)))
    }

    async fn read_text(&self, path: &str, on_disk: &Path) -> Result<String> {
        let not_found =
            || ClientError::refused(ErrorCode::FileNotFound, format!("file not found: {path}"));
        match tokio::fs::metadata(on_disk).await {
            Ok(m) if m.is_file() => {}
            Ok(_) => return Err(not_found()),
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
                return Err(not_found());
            }
            Err(e) => return Err(e.into()),
        }
        let bytes = tokio::fs::read(on_disk).await?;
        String::from_utf8(bytes).map_err(|_| {
            ClientError::refused(
                ErrorCode::InvalidArgument,
                format!("{path} is not UTF-8 text"),
            )
        })
    }

    async fn write_text(&self, path: &str, on_disk: &Path, content: &str) -> Result<()> {
        if tokio::fs::metadata(on_disk).await.is_ok_and(|m| m.is_dir()) {
            return Err(ClientError::refused(
                ErrorCode::InvalidPath,
                format!("{path} is a directory here"),
            ));
        }
        let parent = on_disk.parent().unwrap_or(&self.dir);
        if let Err(e) = tokio::fs::create_dir_all(parent).await {
            return Err(match e.kind() {
                ErrorKind::AlreadyExists | ErrorKind::NotADirectory => ClientError::refused(
                    ErrorCode::InvalidPath,
                    format!("a parent of {path} is a file here"),
                ),
                _ => e.into(),
            });
        }
        let name = on_disk
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = parent.join(format!("{TMP_PREFIX}{}-{name}", rand::random::<u64>()));
        tokio::fs::write(&tmp, content.as_bytes()).await?;
        if let Err(e) = tokio::fs::rename(&tmp, on_disk).await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e.into());
        }
        Ok(())
    }

    /// Every regular file under the directory, as normalised relative paths.
    fn walk(dir: &Path) -> std::io::Result<Vec<FileEntry>> {
        let mut out = Vec::new();
        let mut stack = vec![(dir.to_path_buf(), String::new())];
        while let Some((d, rel)) = stack.pop() {
            let entries = match std::fs::read_dir(&d) {
                Ok(e) => e,
                Err(e) if e.kind() == ErrorKind::NotFound && rel.is_empty() => continue,
                Err(e) => return Err(e),
            };
            for entry in entries {
                let entry = entry?;
                let Ok(name) = entry.file_name().into_string() else {
                    continue; // not UTF-8: not nameable through the gateway either
                };
                if name.starts_with(TMP_PREFIX) {
                    continue;
                }
                let child = if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                let ft = entry.file_type()?;
                if ft.is_dir() {
                    stack.push((entry.path(), child));
                } else if ft.is_file() && normalise(&child).is_ok_and(|n| n == child) {
                    out.push(FileEntry {
                        path: child,
                        size: entry.metadata()?.len(),
                        version: None,
                    });
                }
            }
        }
        Ok(out)
    }
}

impl Workspace for LocalWorkspace {
    async fn read(&self, path: &str) -> Result<FileContent> {
        let (path, on_disk) = self.resolve(path).await?;
        let content = self.read_text(&path, &on_disk).await?;
        Ok(FileContent {
            path,
            content,
            version: None,
        })
    }

    async fn write(&self, path: &str, content: &str) -> Result<Change> {
        let (path, on_disk) = self.resolve(path).await?;
        self.write_text(&path, &on_disk, content).await?;
        Ok(Change {
            path,
            version: None,
            bytes: content.len() as u64,
            replacements: 0,
        })
    }

    async fn edit(&self, path: &str, old: &str, new: &str, replace_all: bool) -> Result<Change> {
        let (path, on_disk) = self.resolve(path).await?;
        if old.is_empty() {
            return Err(ClientError::refused(
                ErrorCode::InvalidArgument,
                "old_string must not be empty",
            ));
        }
        let current = self.read_text(&path, &on_disk).await?;
        let count = current.matches(old).count();
        match count {
            0 => {
                return Err(ClientError::refused(
                    ErrorCode::EditNoMatch,
                    format!("old_string does not occur in {path}"),
                ));
            }
            n if n > 1 && !replace_all => {
                let mut e = ClientError::refused(
                    ErrorCode::EditAmbiguous,
                    format!("old_string occurs {n} times in {path}; set replace_all"),
                );
                if let ClientError::Refused { context, .. } = &mut e {
                    context.insert("occurrences".into(), n.into());
                }
                return Err(e);
            }
            _ => {}
        }
        let updated = if replace_all {
            current.replace(old, new)
        } else {
            current.replacen(old, new, 1)
        };
        self.write_text(&path, &on_disk, &updated).await?;
        Ok(Change {
            path,
            version: None,
            bytes: updated.len() as u64,
            replacements: count as u64,
        })
    }

    async fn list(&self, prefix: Option<&str>) -> Result<Vec<FileEntry>> {
        let prefix = normalise_prefix(prefix)?;
        let dir = self.dir.clone();
        let mut files = tokio::task::spawn_blocking(move || LocalWorkspace::walk(&dir))
            .await
            .map_err(|e| ClientError::Io(std::io::Error::other(e.to_string())))??;
        if let Some(p) = prefix {
            files.retain(|f| under_prefix(&f.path, &p));
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(files)
    }

    async fn delete(&self, path: &str) -> Result<Change> {
        let (path, on_disk) = self.resolve(path).await?;
        match tokio::fs::metadata(&on_disk).await {
            Ok(m) if m.is_file() => {}
            Ok(_) => {
                return Err(ClientError::refused(
                    ErrorCode::FileNotFound,
                    format!("file not found: {path}"),
                ));
            }
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
                return Err(ClientError::refused(
                    ErrorCode::FileNotFound,
                    format!("file not found: {path}"),
                ));
            }
            Err(e) => return Err(e.into()),
        }
        tokio::fs::remove_file(&on_disk).await?;
        // Directories exist only to hold files: remove the ones this delete emptied.
        let mut parent = on_disk.parent();
        while let Some(p) = parent {
            if p == self.dir || tokio::fs::remove_dir(p).await.is_err() {
                break;
            }
            parent = p.parent();
        }
        Ok(Change {
            path,
            version: None,
            bytes: 0,
            replacements: 0,
        })
    }

    fn location(&self) -> String {
        self.dir.display().to_string()
    }
}
