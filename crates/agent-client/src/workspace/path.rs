//! The gateway's path and id rules, for the local workspace, which must refuse what the
//! gateway refuses with the same codes (the shared workspace suite checks that they agree).
//!
//! The rules themselves live in `mcp_api::names`, shared with the gateway.

use crate::error::{ClientError, Result};
use mcp_api::ErrorCode;

/// Normalises `raw` the gateway's way (`mcp_api::names`), or refuses it with `invalid_path`.
pub fn normalise(raw: &str) -> Result<String> {
    mcp_api::names::normalise_path(raw)
        .map_err(|why| ClientError::refused(ErrorCode::InvalidPath, why))
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
    if mcp_api::names::is_valid_id(raw) && raw != "." && raw != ".." {
        Ok(())
    } else {
        Err(ClientError::refused(
            ErrorCode::InvalidArgument,
            "task_id must be 1-128 characters of [A-Za-z0-9._:@-]",
        ))
    }
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
