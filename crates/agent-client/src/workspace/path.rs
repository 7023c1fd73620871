//! The gateway's path and id rules, for the local workspace, which must refuse what the
//! gateway refuses with the same codes (the shared workspace suite checks that they agree).
//!
//! A path is split on `/`, empty and `.` components are dropped, the rest joined with `/`.
//! Refused (`invalid_path`): `..`, a leading `/`, `\`, NUL or control characters, a
//! component that percent-decodes to `.`, `..` or a separator, a component over 255 bytes,
//! more than 32 components, over 1024 bytes, or nothing left.

use crate::error::{ClientError, Result};
use mcp_api::ErrorCode;

/// Longest normalised path, in bytes.
pub const MAX_PATH_BYTES: usize = 1024;
/// Longest component, in bytes.
pub const MAX_COMPONENT_BYTES: usize = 255;
/// Most components in a path.
pub const MAX_COMPONENTS: usize = 32;

fn invalid(why: &str) -> ClientError {
    ClientError::refused(ErrorCode::InvalidPath, why)
}

/// Normalises `raw` the gateway's way, or refuses it with `invalid_path`.
pub fn normalise(raw: &str) -> Result<String> {
    if raw.len() > 4 * MAX_PATH_BYTES {
        return Err(invalid("path is too long"));
    }
    if raw.starts_with('/') {
        return Err(invalid("path must be relative to the task's namespace"));
    }
    if raw.contains('\\') {
        return Err(invalid("path must not contain a backslash"));
    }
    if raw.chars().any(char::is_control) {
        return Err(invalid("path must not contain NUL or control characters"));
    }
    let mut parts: Vec<&str> = Vec::new();
    for component in raw.split('/') {
        match component {
            "" | "." => continue,
            ".." => return Err(invalid("path must not contain '..'")),
            c if c.len() > MAX_COMPONENT_BYTES => {
                return Err(invalid("a path component is over 255 bytes"));
            }
            c if decodes_to_something_dangerous(c) => {
                return Err(invalid(
                    "path must not contain encoded '.', '..' or separators",
                ));
            }
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        return Err(invalid("path is empty"));
    }
    if parts.len() > MAX_COMPONENTS {
        return Err(invalid("path has more than 32 components"));
    }
    let joined = parts.join("/");
    if joined.len() > MAX_PATH_BYTES {
        return Err(invalid("path is over 1024 bytes"));
    }
    Ok(joined)
}

/// A listing prefix: `None`, `""`, `.` and `/` mean everything; anything else is a path.
pub fn normalise_prefix(prefix: Option<&str>) -> Result<Option<String>> {
    match prefix {
        None | Some("") | Some(".") | Some("/") => Ok(None),
        Some(p) => normalise(p).map(Some),
    }
}

/// Whether `path` is `prefix` itself or lies under the directory `prefix`.
pub fn under_prefix(path: &str, prefix: &str) -> bool {
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Checks a task id: 1–128 characters of `[A-Za-z0-9._:@-]` (`invalid_argument`
/// otherwise). Locally a task id names a directory, so `.` and `..` are refused too.
pub fn check_task_id(raw: &str) -> Result<()> {
    let ok = !raw.is_empty()
        && raw.len() <= 128
        && raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._:@-".contains(c))
        && raw != "."
        && raw != "..";
    if ok {
        Ok(())
    } else {
        Err(ClientError::refused(
            ErrorCode::InvalidArgument,
            "task_id must be 1-128 characters of [A-Za-z0-9._:@-]",
        ))
    }
}

/// Decodes `%XX` escapes once; invalid escapes are kept as they are.
fn percent_decode_once(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether a component, percent-decoded (repeatedly), names `.`/`..` or holds a separator.
fn decodes_to_something_dangerous(component: &str) -> bool {
    let mut current = component.to_owned();
    for _ in 0..4 {
        if !current.contains('%') {
            return false;
        }
        let next = percent_decode_once(&current);
        if next == "." || next == ".." || next.contains(['/', '\\', '\0']) {
            return true;
        }
        if next == current {
            return false;
        }
        current = next;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_like_the_gateway() {
        assert_eq!(normalise("./a.py").unwrap(), "a.py");
        assert_eq!(normalise("x//a.py").unwrap(), "x/a.py");
        assert_eq!(normalise("x/./a.py/").unwrap(), "x/a.py");
        for bad in [
            "..",
            "../x",
            "a/../b",
            "/etc/passwd",
            "a\\b",
            "a\0b",
            "%2e%2e/x",
            "",
            ".",
        ] {
            assert_eq!(
                normalise(bad).unwrap_err().code(),
                ErrorCode::InvalidPath,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn prefixes_are_directories() {
        assert!(under_prefix("src/a.py", "src"));
        assert!(under_prefix("src", "src"));
        assert!(!under_prefix("srcx/a.py", "src"));
    }

    #[test]
    fn task_ids() {
        assert!(check_task_id("t-1.a:b@c").is_ok());
        for bad in ["", "..", ".", "a/b", "a b"] {
            assert!(check_task_id(bad).is_err(), "{bad:?}");
        }
    }
}
