//! Where a file sits in a git repository, read from the `.git` entries on disk (no `git`
//! process: a hook runs before every edit, and starting `git` costs more than the rest of
//! the answer).
//!
//! A checkout is a directory holding `.git`: a directory (a clone's main worktree), or a
//! file `gitdir: <path>` (a linked worktree made by `git worktree add`, or a submodule). Its
//! *common* directory (the `.git` of the main worktree, named by `commondir` in a linked
//! worktree's git directory) is what the worktrees of one repository share: the hooks
//! directory, and this tool's per-session records. A file's path relative to its checkout's
//! root is the same in every worktree and clone of the repository, so it is the lease key.

use std::path::{Component, Path, PathBuf};

/// One checkout (worktree) of a git repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkout {
    /// The worktree's top directory (canonical): the one holding `.git`.
    pub root: PathBuf,
    /// This worktree's git directory (`<root>/.git`, or `<common>/worktrees/<name>`).
    pub git_dir: PathBuf,
    /// The git directory the worktrees share (`<main>/.git`, or a bare repository).
    pub common_dir: PathBuf,
}

impl Checkout {
    /// The checkout holding `start` (a file or directory, which need not exist yet: its
    /// nearest existing ancestor is searched), or `None` outside any git repository.
    pub fn find(start: &Path) -> Option<Checkout> {
        let start = canonical(start);
        let mut dir = Some(start.as_path());
        while let Some(d) = dir {
            let dot_git = d.join(".git");
            if let Some(c) = Checkout::at(d, &dot_git) {
                return Some(c);
            }
            dir = d.parent();
        }
        None
    }

    /// The checkout whose `.git` entry is `dot_git`, if it is one.
    fn at(root: &Path, dot_git: &Path) -> Option<Checkout> {
        let meta = std::fs::metadata(dot_git).ok()?;
        let git_dir = if meta.is_dir() {
            dot_git.to_path_buf()
        } else {
            let text = std::fs::read_to_string(dot_git).ok()?;
            let target = text.lines().next()?.strip_prefix("gitdir:")?.trim();
            let target = Path::new(target);
            let target = if target.is_absolute() {
                target.to_path_buf()
            } else {
                root.join(target)
            };
            canonical(&target)
        };
        if !git_dir.join("HEAD").is_file() {
            return None;
        }
        let common_dir = match std::fs::read_to_string(git_dir.join("commondir")) {
            Ok(text) => {
                let p = Path::new(text.trim());
                canonical(&if p.is_absolute() {
                    p.to_path_buf()
                } else {
                    git_dir.join(p)
                })
            }
            Err(_) => git_dir.clone(),
        };
        Some(Checkout {
            root: root.to_path_buf(),
            git_dir,
            common_dir,
        })
    }

    /// `file`'s path relative to the checkout's root, with `/` separators; `None` when it is
    /// outside the checkout, is the root itself, or is inside a `.git` directory (not the
    /// project's files).
    pub fn relative(&self, file: &Path) -> Option<String> {
        let file = canonical(file);
        let rel = file.strip_prefix(&self.root).ok()?;
        let parts: Vec<&str> = rel
            .components()
            .map(|c| match c {
                Component::Normal(s) => s.to_str(),
                _ => None,
            })
            .collect::<Option<_>>()?;
        if parts.is_empty() || parts.contains(&".git") {
            return None;
        }
        Some(parts.join("/"))
    }

    /// The branch checked out here (`HEAD` naming `refs/heads/<branch>`); `None` when the
    /// HEAD is detached.
    pub fn branch(&self) -> Option<String> {
        let head = std::fs::read_to_string(self.git_dir.join("HEAD")).ok()?;
        head.trim()
            .strip_prefix("ref: refs/heads/")
            .map(str::to_owned)
    }

    /// The repository's name: the directory of its main worktree (`~/src/app/.git` → `app`),
    /// or a bare repository's name without `.git` (`app.git` → `app`).
    pub fn repo_name(&self) -> String {
        let name = |p: &Path| {
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        let common = name(&self.common_dir);
        if common == ".git" {
            self.common_dir.parent().map(name).unwrap_or_default()
        } else {
            common.strip_suffix(".git").unwrap_or(&common).to_owned()
        }
    }

    /// The worktree directory's name (`~/src/app-feature` → `app-feature`).
    pub fn worktree_name(&self) -> String {
        self.root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// `path` made absolute and canonical as far as it exists: `.` and `..` are resolved
/// lexically, the longest existing prefix is canonicalised (symbolic links, `/tmp` vs
/// `/private/tmp`) and the rest is appended as written.
pub fn canonical(path: &Path) -> PathBuf {
    let mut clean = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                clean.pop();
            }
            other => clean.push(other),
        }
    }
    let mut existing = clean.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(c) = existing.canonicalize() {
            let mut out = c;
            out.extend(rest.iter().rev());
            return out;
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                existing = parent;
            }
            _ => return clean,
        }
    }
}

/// `raw` as an id the gateway accepts (1–128 characters of `[A-Za-z0-9._:@-]`): other
/// characters become `-`; an empty result is `fallback`.
pub fn sanitize_id(raw: &str, fallback: &str) -> String {
    let s: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '@' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(mcp_api::names::MAX_ID_LEN)
        .collect();
    if s.is_empty() { fallback.to_owned() } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_sanitised() {
        assert_eq!(sanitize_id("my app/feature x", "x"), "my-app-feature-x");
        assert_eq!(sanitize_id("", "repo"), "repo");
        assert!(mcp_api::names::is_valid_id(&sanitize_id(
            &"é".repeat(300),
            "x"
        )));
    }

    #[test]
    fn canonical_resolves_what_exists_and_keeps_the_rest() {
        let tmp = std::env::temp_dir().canonicalize().unwrap();
        let p = canonical(&tmp.join("no-such-dir-xyz/./a/../b.txt"));
        assert_eq!(p, tmp.join("no-such-dir-xyz/b.txt"));
    }
}
