//! Unified diffs of file contents: the one way the gateway makes them (`file_edit`'s diff,
//! which its revision stores and its event carries; `file_revision`'s diff between two
//! versions), and the inverse, applying one to the text it was made from. The inverse is what
//! reads an edit committed before revisions kept every version's content: such an edit's
//! revision holds its diff only, so its content is the previous version's with the diff
//! applied (see `ops/history.rs`).
//!
//! A diff is `similar`'s line diff: `--- a/{path}`, `+++ b/{path}`, then hunks
//! `@@ -start,len +start,len @@` whose lines are a tag (` `, `-`, `+`) followed by one line of
//! the text *with its own terminator* (`\n`, `\r\n` or a lone `\r`, as `similar` splits
//! lines); a last line without a terminator is followed by `\ No newline at end of file`.
//! [`apply`] reads exactly that format and checks every context and removed line against the
//! text it patches, so it never produces a content the diff does not describe. (`similar`
//! can head a hunk with lengths that do not match its lines; `apply` goes by the hunk's start
//! and its lines.)

use similar::{DiffableStr, TextDiff};
use std::time::Instant;

/// The unified diff from `old` to `new`, with 3 lines of context, headed `a/{path}` and
/// `b/{path}`. With a `deadline`, a diff that takes longer is finished with a coarser (still
/// correct, less minimal) alignment.
pub fn unified_diff(path: &str, old: &str, new: &str, deadline: Option<Instant>) -> String {
    let mut config = TextDiff::configure();
    if let Some(d) = deadline {
        config.deadline(d);
    }
    config
        .diff_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(&format!("a/{path}"), &format!("b/{path}"))
        .to_string()
}

/// Why a diff could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The text is not a unified diff this module can read.
    #[error("malformed diff: {0}")]
    Malformed(String),
    #[error("the diff does not fit the text at line {line}")]
    /// A context or removed line of the diff differs from the text it is applied to.
    Mismatch {
        /// The line of the text (1-based) where they differ.
        line: usize,
    },
}

/// One hunk: where it starts in the old text (0-based line index) and its lines.
struct Hunk<'d> {
    old_start: usize,
    lines: Vec<(u8, std::borrow::Cow<'d, str>)>,
}

/// `-12,3` / `+4` (a length of 1 is omitted; an empty range names the line before it).
fn parse_range(s: &str) -> Option<(usize, usize)> {
    let (start, len) = match s.split_once(',') {
        Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
        None => (s.parse().ok()?, 1),
    };
    // Empty ranges begin at the line just before the range, so their 1-based start is the
    // 0-based index of the first line after it.
    Some((
        if len == 0 {
            start
        } else {
            start.checked_sub(1)?
        },
        len,
    ))
}

fn parse_header(line: &str) -> Option<usize> {
    let rest = line.strip_prefix("@@ -")?.trim_end_matches(['\r', '\n']);
    let rest = rest.strip_suffix(" @@")?;
    let (old, new) = rest.split_once(" +")?;
    let (old_start, _) = parse_range(old)?;
    parse_range(new)?;
    Some(old_start)
}

fn parse(diff: &str) -> Result<Vec<Hunk<'_>>, PatchError> {
    let malformed = |what: &str| PatchError::Malformed(what.to_owned());
    let mut hunks: Vec<Hunk<'_>> = Vec::new();
    for line in diff.tokenize_lines() {
        if line.starts_with("@@") {
            let old_start = parse_header(line).ok_or_else(|| malformed("bad hunk header"))?;
            hunks.push(Hunk {
                old_start,
                lines: Vec::new(),
            });
            continue;
        }
        let Some(hunk) = hunks.last_mut() else {
            // The file headers (`--- a/…`, `+++ b/…`) before the first hunk.
            continue;
        };
        match line.as_bytes().first() {
            Some(tag @ (b' ' | b'-' | b'+')) => hunk
                .lines
                .push((*tag, std::borrow::Cow::Borrowed(&line[1..]))),
            Some(b'\\') => {
                // The previous line had no terminator: the marker's line break was added.
                let (_, prev) = hunk
                    .lines
                    .last_mut()
                    .ok_or_else(|| malformed("no-newline marker without a line"))?;
                let trimmed = prev
                    .strip_suffix('\n')
                    .ok_or_else(|| malformed("no-newline marker after a terminated line"))?
                    .to_owned();
                *prev = trimmed.into();
            }
            _ => return Err(malformed("a line without a tag")),
        }
    }
    Ok(hunks)
}

/// Applies a unified diff made by [`unified_diff`] to the text it was made from. Every
/// context and removed line must match the text where the hunk says (no fuzz).
pub fn apply(old: &str, diff: &str) -> Result<String, PatchError> {
    let old_lines = old.tokenize_lines();
    let mut out = String::with_capacity(old.len() + diff.len());
    let mut at = 0usize;
    for hunk in parse(diff)? {
        if hunk.old_start < at || hunk.old_start > old_lines.len() {
            return Err(PatchError::Malformed("hunks out of order or range".into()));
        }
        for l in &old_lines[at..hunk.old_start] {
            out.push_str(l);
        }
        at = hunk.old_start;
        for (tag, text) in &hunk.lines {
            if *tag != b'+' {
                if old_lines.get(at).copied() != Some(&**text) {
                    return Err(PatchError::Mismatch { line: at + 1 });
                }
                at += 1;
            }
            if *tag != b'-' {
                out.push_str(text);
            }
        }
        // The hunk's lengths are not checked: `similar` can head a hunk with ranges that do
        // not match its lines (`@@ -1 +2 @@` over a removed and a kept line), while its start
        // and its lines are right; every line it keeps or removes is checked above.
    }
    for l in &old_lines[at.min(old_lines.len())..] {
        out.push_str(l);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[track_caller]
    fn round_trip(old: &str, new: &str) {
        let d = unified_diff("p", old, new, None);
        assert_eq!(apply(old, &d).as_deref(), Ok(new), "diff:\n{d}");
    }

    #[test]
    fn edits_of_every_shape_round_trip() {
        round_trip("a\nb\nc\n", "a\nB\nc\n");
        round_trip("x = 1\n", "x = 2\n");
        round_trip("no newline", "no newline either");
        round_trip("a\nb", "a\nb\n");
        round_trip("a\nb\n", "a\nb");
        round_trip("a\n", "");
        round_trip("", "a\n");
        round_trip("crlf\r\nline\r\n", "crlf\r\nLINE\r\n");
        round_trip("lone\rcr\r", "lone\rCR\r");
        // Hunks whose headers' lengths are not their lines' (found by the property below).
        round_trip("@\r\n\r\n", "\r\n\r\n");
        round_trip("\n\r-", "\r\ra\n\\\n\r\r+\n\n\\");
        round_trip(
            "--- a/x\n+++ b/x\n@@ -1 +1 @@\n",
            "--- a/y\n+++ b/x\n@@ -1 +1 @@\n",
        );
        round_trip("\\ backslash\n", "\\ backslash!\n");
        let long: String = (0..100).map(|i| format!("line {i}\n")).collect();
        let changed = long
            .replace("line 5\n", "five\n")
            .replace("line 50\n", "")
            .replace("line 99\n", "last");
        round_trip(&long, &changed);
        round_trip(&long, &long);
    }

    #[test]
    fn a_diff_that_does_not_fit_is_refused() {
        let d = unified_diff("p", "a\nb\nc\n", "a\nB\nc\n", None);
        assert_eq!(
            apply("a\nX\nc\n", &d),
            Err(PatchError::Mismatch { line: 2 })
        );
        assert!(matches!(
            apply("a\n", "@@ -1 +1 @@\nnot a tagged line\n"),
            Err(PatchError::Malformed(_))
        ));
        assert!(matches!(
            apply("a\n", "@@ -5 +5 @@\n-a\n+b\n"),
            Err(PatchError::Malformed(_))
        ));
    }

    /// Chunks of text with every kind of line end (`\n`, `\r\n`, a lone `\r`).
    fn chunks() -> impl Strategy<Value = Vec<String>> {
        proptest::collection::vec(
            prop_oneof!["[ab\\r\\n\\\\+@ -]{0,6}", Just("\r\n".to_owned())],
            0..12,
        )
    }

    proptest! {
        #[test]
        fn any_change_round_trips(old in chunks(), new in chunks()) {
            let (old, new) = (old.concat(), new.concat());
            let d = unified_diff("p", &old, &new, None);
            prop_assert_eq!(apply(&old, &d), Ok(new));
        }
    }
}
