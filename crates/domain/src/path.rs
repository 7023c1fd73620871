//! File paths: [`FilePath`] is a path that `mcp_api::names::normalise_path` accepted, in
//! its normalised form (the rules are documented there). It is the key of the file, of its
//! lock and of its events.

use crate::error::DomainError;
use std::fmt;

/// A normalised, validated path inside a task's namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FilePath(String);

impl FilePath {
    /// Normalises and validates `raw` (`invalid_path` when refused).
    pub fn parse(raw: &str) -> Result<FilePath, DomainError> {
        mcp_api::names::normalise_path(raw)
            .map(FilePath)
            .map_err(|why| DomainError::InvalidPath(why.to_owned()))
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
