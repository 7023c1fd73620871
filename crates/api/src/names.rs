//! The naming rules of the contract: what a task or agent id may be, and what a file path
//! means. The gateway (`mcp_domain::{TaskId, AgentId, FilePath}`) and the agent client's local
//! workspace both decide with these functions, so they cannot drift apart.
//!
//! A path is relative to its task's namespace. It is put in Unicode NFC, split on `/`, empty
//! and `.` components are dropped, and the rest joined with `/`: that normalised string is
//! THE key of the file, of its lock and of its events (so `é` as one code point and `e` +
//! U+0301, which look the same, are one file). Everything that could leave the namespace or
//! confuse a reader is refused: `..`, absolute paths, `\`, NUL and control characters,
//! invisible format characters (bidi controls such as U+202E, zero-width characters, U+FEFF:
//! general category Cf) and line/paragraph separators, components that percent-decode to
//! `.`/`..` or to a separator, over-long components and paths.

use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// The longest accepted identifier, in characters.
pub const MAX_ID_LEN: usize = 128;
/// Longest normalised path, in bytes.
pub const MAX_PATH_BYTES: usize = 1024;
/// Longest path component, in bytes.
pub const MAX_COMPONENT_BYTES: usize = 255;
/// Most components in a path.
pub const MAX_COMPONENTS: usize = 32;

/// Whether `raw` is a valid task or agent id: 1–128 characters of `[A-Za-z0-9._:@-]`.
pub fn is_valid_id(raw: &str) -> bool {
    !raw.is_empty()
        && raw.len() <= MAX_ID_LEN
        && raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '@' | '-'))
}

/// Whether `c` is invisible in a rendered path and can make two paths look alike or a
/// name read backwards: format characters (Cf: bidi embeddings, overrides and isolates
/// U+202A–U+202E and U+2066–U+2069, marks U+200E/U+200F, zero-width U+200B–U+200D, U+FEFF,
/// the soft hyphen…) and the line and paragraph separators.
fn is_invisible(c: char) -> bool {
    matches!(
        c.general_category(),
        GeneralCategory::Format
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
    )
}

/// Paths every door refuses (`invalid_path`): traversal, absolute and encoded forms, control
/// characters, empty ones. The tests of the parser, of the gateway and of both client workspaces share this corpus.
pub const REFUSED_PATHS: &[&str] = &[
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

/// Normalises `raw`, or says in a sentence why it is refused (the `invalid_path` detail).
pub fn normalise_path(raw: &str) -> Result<String, &'static str> {
    if raw.len() > 4 * MAX_PATH_BYTES {
        return Err("path is too long");
    }
    if raw.chars().any(is_invisible) {
        return Err(
            "path must not contain invisible format characters (bidi controls, zero-width \
             characters, U+FEFF) or line separators",
        );
    }
    // Canonically equivalent spellings are one key. NFC only composes: it adds no '/', '.'
    // or '\\' (none of them has a decomposition or takes part in one), so the checks below
    // see what will be stored.
    // ASCII text is its own NFC: only the rest is composed (and copied).
    let nfc: std::borrow::Cow<'_, str> = if raw.is_ascii() {
        raw.into()
    } else {
        raw.nfc().collect::<String>().into()
    };
    let raw = nfc.as_ref();
    if raw.starts_with('/') {
        return Err("path must be relative to the task's namespace");
    }
    if raw.contains('\\') {
        return Err("path must not contain a backslash");
    }
    if raw.chars().any(char::is_control) {
        return Err("path must not contain NUL or control characters");
    }
    let mut parts: Vec<&str> = Vec::new();
    for component in raw.split('/') {
        match component {
            "" | "." => continue,
            ".." => return Err("path must not contain '..'"),
            c if c.len() > MAX_COMPONENT_BYTES => {
                return Err("a path component is over 255 bytes");
            }
            c if decodes_to_something_dangerous(c) => {
                return Err("path must not contain encoded '.', '..' or separators");
            }
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        return Err("path is empty");
    }
    if parts.len() > MAX_COMPONENTS {
        return Err("path has more than 32 components");
    }
    let joined = parts.join("/");
    if joined.len() > MAX_PATH_BYTES {
        return Err("path is over 1024 bytes");
    }
    Ok(joined)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The ASCII fast path skips the NFC pass: every ASCII text is its own NFC form.
    #[test]
    fn ascii_is_its_own_nfc() {
        let all: String = (0u8..128).map(char::from).collect();
        assert_eq!(all.nfc().collect::<String>(), all);
        for b in 0u8..128 {
            let s = format!("a{}b/c", char::from(b));
            assert_eq!(s.nfc().collect::<String>(), s);
        }
        assert_eq!(normalise_path("a/./b//c.txt").unwrap(), "a/b/c.txt");
    }

    #[test]
    fn canonically_equivalent_spellings_are_one_path() {
        let pre = normalise_path("caf\u{e9}/r\u{e9}sum\u{e9}.txt").unwrap();
        let de = normalise_path("cafe\u{301}/re\u{301}sume\u{301}.txt").unwrap();
        assert_eq!(pre, de);
        assert_eq!(pre, "caf\u{e9}/r\u{e9}sum\u{e9}.txt");
        // Hangul jamo compose too; compatibility forms (ﬁ) are left alone (NFC, not NFKC).
        assert_eq!(normalise_path("\u{1100}\u{1161}").unwrap(), "\u{ac00}");
        assert_eq!(normalise_path("\u{fb01}le").unwrap(), "\u{fb01}le");
    }

    #[test]
    fn invisible_and_bidi_characters_are_refused() {
        let mut bad: Vec<char> = ('\u{202a}'..='\u{202e}').collect();
        bad.extend('\u{2066}'..='\u{2069}');
        bad.extend('\u{200b}'..='\u{200f}');
        bad.extend([
            '\u{feff}', '\u{ad}', '\u{2060}', '\u{61c}', '\u{2028}', '\u{2029}',
        ]);
        for c in bad {
            for path in [format!("a{c}b"), format!("{c}a"), format!("a/{c}")] {
                assert!(
                    normalise_path(&path).is_err(),
                    "U+{:04X} accepted",
                    c as u32
                );
            }
        }
        // Visible non-ASCII names are fine.
        for good in [
            "日本語/ファイル.txt",
            "emoji-\u{1f600}.md",
            "Ελληνικά",
            "naïve.py",
        ] {
            assert!(normalise_path(good).is_ok(), "{good}");
        }
    }
}
