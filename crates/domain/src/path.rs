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

    /// The normalised path.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FilePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a lease covers: one file (its [`FilePath`]) or a directory and everything beneath
/// it. A directory is spelled as its normalised path with a trailing `/` (`src/api/`), so its
/// lease key never collides with a file's (a normalised file path never ends in `/`). The
/// root of a task's namespace cannot be leased as a directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeasePath(String);

impl LeasePath {
    /// `raw` normalised as a file path (`recursive` false), or as the directory of that name
    /// (`recursive` true: `src/api`, `src/api/` and `./src//api/` all name `src/api/`).
    pub fn parse(raw: &str, recursive: bool) -> Result<LeasePath, DomainError> {
        let file = FilePath::parse(raw)?;
        Ok(if recursive {
            LeasePath(format!("{file}/"))
        } else {
            LeasePath(file.0)
        })
    }

    /// The lease of one file.
    pub fn file(path: &FilePath) -> LeasePath {
        LeasePath(path.0.clone())
    }

    /// Whether it covers a directory (and everything beneath it).
    pub fn is_dir(&self) -> bool {
        self.0.ends_with('/')
    }

    /// The path; a directory lease's ends with `/`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The directories above it, outermost first, each with its trailing `/` (`a/`, `a/b/`
    /// for `a/b/c.py` and for `a/b/c/`): the directory leases that cover it.
    pub fn ancestors(&self) -> impl DoubleEndedIterator<Item = &str> {
        let inner = self.0.strip_suffix('/').unwrap_or(&self.0);
        inner.match_indices('/').map(move |(i, _)| &inner[..=i])
    }
}

impl From<&FilePath> for LeasePath {
    fn from(p: &FilePath) -> LeasePath {
        LeasePath::file(p)
    }
}

impl fmt::Display for LeasePath {
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
    fn a_directory_is_spelled_with_a_trailing_slash() {
        let dir = LeasePath::parse("./src//api/", true).unwrap();
        assert_eq!(dir.as_str(), "src/api/");
        assert!(dir.is_dir());
        assert_eq!(LeasePath::parse("src/api", true).unwrap(), dir);
        let file = LeasePath::parse("src/api/", false).unwrap();
        assert_eq!((file.as_str(), file.is_dir()), ("src/api", false));
        assert!(LeasePath::parse("/", true).is_err());
        assert!(LeasePath::parse("../x", true).is_err());
        assert_eq!(
            LeasePath::parse("a/b/c.py", false)
                .unwrap()
                .ancestors()
                .collect::<Vec<_>>(),
            ["a/", "a/b/"]
        );
        assert_eq!(dir.ancestors().collect::<Vec<_>>(), ["src/"]);
        assert_eq!(LeasePath::parse("a", true).unwrap().ancestors().count(), 0);
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
        for bad in mcp_api::names::REFUSED_PATHS {
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
