//! File path normalisation: the one place that decides what a path means.
//!
//! A path is relative to its task's namespace. It is split on `/`, empty and `.` components
//! are dropped, and the rest joined with `/`: that normalised string is THE key of the file,
//! of its lock and of its events. Everything that could leave the namespace or confuse a
//! reader is refused: `..`, absolute paths, `\`, NUL and control characters, components that
//! percent-decode to `.`/`..` or to a separator, over-long components and paths.

use crate::error::DomainError;
use std::fmt;

/// Longest normalised path, in bytes.
pub const MAX_PATH_BYTES: usize = 1024;
/// Longest component, in bytes.
pub const MAX_COMPONENT_BYTES: usize = 255;
/// Most components in a path.
pub const MAX_COMPONENTS: usize = 32;

/// A normalised, validated path inside a task's namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FilePath(String);

fn invalid(why: &str) -> DomainError {
    DomainError::InvalidPath(why.to_owned())
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

/// Whether a component, once percent-decoded (repeatedly, as a careless reader might), would
/// name the current or parent directory or smuggle a separator.
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

impl FilePath {
    /// Normalises and validates `raw`; see the module documentation for the rules.
    pub fn parse(raw: &str) -> Result<FilePath, DomainError> {
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
        Ok(FilePath(joined))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FilePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        FilePath::parse(s).unwrap().0
    }

    #[test]
    fn equivalent_spellings_name_one_file() {
        assert_eq!(norm("a.py"), "a.py");
        assert_eq!(norm("./a.py"), "a.py");
        assert_eq!(norm("x//a.py"), "x/a.py");
        assert_eq!(norm("x/./a.py/"), "x/a.py");
        assert_ne!(norm("x//a.py"), norm("a.py"));
    }

    #[test]
    fn traversal_corpus_is_refused() {
        let corpus = [
            "..",
            "../x",
            "a/../../b",
            "a/..",
            "/etc/passwd",
            "//x",
            "a\\b",
            "..\\x",
            "a\0b",
            "a\nb",
            "a\u{7f}",
            "%2e%2e/x",
            "%2E%2E/x",
            "a/%2e%2e/b",
            "%252e%252e/x",
            "a%2fb",
            "a%5cb",
            "%2e",
            "",
            ".",
            "./",
            "///",
        ];
        for bad in corpus {
            assert!(
                matches!(FilePath::parse(bad), Err(DomainError::InvalidPath(_))),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn length_limits() {
        assert!(FilePath::parse(&"a".repeat(255)).is_ok());
        assert!(FilePath::parse(&"a".repeat(256)).is_err());
        let deep = vec!["d"; 32].join("/");
        assert!(FilePath::parse(&deep).is_ok());
        let deeper = vec!["d"; 33].join("/");
        assert!(FilePath::parse(&deeper).is_err());
        let long = vec!["a".repeat(200); 6].join("/");
        assert!(long.len() > 1024);
        assert!(FilePath::parse(&long).is_err());
    }

    #[test]
    fn ordinary_names_with_percent_and_dots_are_fine() {
        assert_eq!(norm("100%.txt"), "100%.txt");
        assert_eq!(norm("...hidden"), "...hidden");
        assert_eq!(norm("src/.env"), "src/.env");
    }
}
