//! [`JsonAnswer`]: how a tool's success body leaves the gateway (issue #19: the request
//! path's cost). The same bytes `axum::Json` would send, made with less work:
//!
//! * the body is serialised into the worker thread's scratch buffer and copied out once, in
//!   one allocation of its exact size (`axum::Json` grows a buffer from 128 bytes: for a
//!   4 KiB file read, six reallocations and copies);
//! * a `file_read` answer's content — the bulk of the request path's bytes — is escaped by
//!   [`escape_json_str`], which skips runs of 8 plain bytes at a time where serde_json looks
//!   at every byte (a sixth of a hot read's instructions went there).

use crate::error::ApiError;
use axum::body::Bytes;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use mcp_api::responses::FileReadResponse;
use serde::Serialize;
use std::any::Any;

/// A tool's success body as JSON (`200`, `application/json`).
pub(crate) struct JsonAnswer<T>(pub T);

/// A scratch buffer larger than this after an answer is given back, so that one large
/// answer (an 8 MiB file) is not kept by every worker thread.
const SCRATCH_KEPT: usize = 64 * 1024;

impl<T: Serialize + 'static> IntoResponse for JsonAnswer<T> {
    fn into_response(self) -> Response {
        thread_local! {
            static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let written = SCRATCH.with_borrow_mut(|buf| {
            buf.clear();
            let r = write_answer(buf, &self.0).map(|()| Bytes::copy_from_slice(buf));
            if buf.capacity() > SCRATCH_KEPT {
                *buf = Vec::new();
            }
            r
        });
        match written {
            Ok(body) => (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                body,
            )
                .into_response(),
            Err(e) => {
                tracing::error!(error = %e, "an answer did not serialise");
                ApiError::new(mcp_api::ErrorCode::Internal, "internal error").into_response()
            }
        }
    }
}

/// Writes `answer` as serde_json would, with the `file_read` answer's content escaped by
/// [`escape_json_str`].
fn write_answer<T: Serialize + 'static>(buf: &mut Vec<u8>, answer: &T) -> serde_json::Result<()> {
    let Some(read) = (answer as &dyn Any).downcast_ref::<FileReadResponse>() else {
        return serde_json::to_writer(buf, answer);
    };
    // The fields in declaration order, as the derived `Serialize` writes them.
    let FileReadResponse {
        success,
        task_id,
        path,
        content,
        version,
        sha256,
        size,
    } = read;
    buf.reserve(content.len() + content.len() / 16 + 256);
    buf.extend_from_slice(b"{\"success\":");
    serde_json::to_writer(&mut *buf, success)?;
    buf.extend_from_slice(b",\"task_id\":");
    serde_json::to_writer(&mut *buf, task_id)?;
    buf.extend_from_slice(b",\"path\":");
    serde_json::to_writer(&mut *buf, path)?;
    buf.extend_from_slice(b",\"content\":");
    escape_json_str(buf, content);
    buf.extend_from_slice(b",\"version\":");
    serde_json::to_writer(&mut *buf, version)?;
    buf.extend_from_slice(b",\"sha256\":");
    serde_json::to_writer(&mut *buf, sha256)?;
    buf.extend_from_slice(b",\"size\":");
    serde_json::to_writer(&mut *buf, size)?;
    buf.push(b'}');
    Ok(())
}

/// Bytes tested at once for one that must be escaped: a fixed-size block whose test
/// ([`needs_escape`]) the compiler turns into a few vector instructions (issue #19: the
/// content of a `file_read` answer is most of what its answer writes).
const BLOCK: usize = 32;

/// Whether a byte must be escaped in a JSON string: a control character (below 0x20), `"`
/// or `\`.
fn needs_escape(b: u8) -> bool {
    (b < 0x20) | (b == b'"') | (b == b'\\')
}

/// Appends `s` as a JSON string, quotes included: byte for byte what serde_json writes
/// (`\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, other control characters as `\u00XX`,
/// everything else, DEL and non-ASCII included, as it is).
pub(crate) fn escape_json_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.push(b'"');
    let mut start = 0; // the first byte not yet copied
    let mut i = 0;
    while i < bytes.len() {
        if let Some(block) = bytes.get(i..i + BLOCK) {
            // Every byte tested, none skipped early: this is what vectorises.
            let any = block.iter().fold(false, |any, &b| any | needs_escape(b));
            if !any {
                i += BLOCK;
                continue;
            }
        }
        // A block with a byte to escape (or the tail): byte by byte.
        let end = bytes.len().min(i + BLOCK);
        while i < end {
            let b = bytes[i];
            i += 1;
            if !needs_escape(b) {
                continue;
            }
            out.extend_from_slice(&bytes[start..i - 1]);
            start = i;
            let short: &[u8] = match b {
                b'"' => b"\\\"",
                b'\\' => b"\\\\",
                b'\n' => b"\\n",
                b'\r' => b"\\r",
                b'\t' => b"\\t",
                0x08 => b"\\b",
                0x0c => b"\\f",
                _ => {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    out.extend_from_slice(&[
                        b'\\',
                        b'u',
                        b'0',
                        b'0',
                        HEX[(b >> 4) as usize],
                        HEX[(b & 0xf) as usize],
                    ]);
                    continue;
                }
            };
            out.extend_from_slice(short);
        }
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(s: &str) -> String {
        let mut out = Vec::new();
        escape_json_str(&mut out, s);
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let mut cases: Vec<String> = vec![
            String::new(),
            "plain".into(),
            "exactly8".into(),
            "a \"quoted\" \\ path\\to\n".into(),
            "tab\there\r\nform\u{c}feed\u{8}back\u{7f}del".into(),
            "héllo wörld — ünïcödé 🦀 and more text after it".into(),
            "0123456789abcdef".repeat(300),
        ];
        // Every byte value from 0 to 127 at every offset of a block, and of the tail after
        // one, and two in one block.
        for c in 0u8..128 {
            for at in 0..BLOCK + 9 {
                let mut s = "x".repeat(at);
                s.push(c as char);
                s.push_str(&"y".repeat(BLOCK + 12 - at));
                cases.push(s.clone());
                s.insert(at / 2, '"');
                cases.push(s);
            }
        }
        for s in &cases {
            assert_eq!(escaped(s), serde_json::to_string(s).expect("json"), "{s:?}");
        }
    }

    #[test]
    fn a_file_read_answer_is_the_bytes_serde_json_writes() {
        let answer = FileReadResponse {
            success: true,
            task_id: "t-1".into(),
            path: "src/\"odd\".py".into(),
            content: "print(\"hi\")\n\tx = 'é'\u{1}\n".repeat(100),
            version: 42,
            sha256: "ab".repeat(32),
            size: 2500,
        };
        let mut ours = Vec::new();
        write_answer(&mut ours, &answer).expect("written");
        assert_eq!(ours, serde_json::to_vec(&answer).expect("json"));
        let mut other = Vec::new();
        write_answer(&mut other, &serde_json::json!({"a": [1, "b\n"]})).expect("written");
        assert_eq!(other, br#"{"a":[1,"b\n"]}"#);
    }
}
