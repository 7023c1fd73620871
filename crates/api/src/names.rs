//! The naming rules of the contract: what a task or agent id may be, and what a file path
//! means. The gateway (`mcp_domain::{TaskId, AgentId, FilePath}`) and the agent client's local
//! workspace both decide with these functions, so they cannot drift apart.
//!
//! A path is relative to its task's namespace. It is split on `/`, empty and `.` components
//! are dropped, and the rest joined with `/`: that normalised string is THE key of the file,
//! of its lock and of its events. Everything that could leave the namespace or confuse a
//! reader is refused: `..`, absolute paths, `\`, NUL and control characters, components that
//! percent-decode to `.`/`..` or to a separator, over-long components and paths.

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

/// Normalises `raw`, or says in a sentence why it is refused (the `invalid_path` detail).
pub fn normalise_path(raw: &str) -> Result<String, &'static str> {
    if raw.len() > 4 * MAX_PATH_BYTES {
        return Err("path is too long");
    }
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
