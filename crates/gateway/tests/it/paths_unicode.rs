//! Paths are compared in Unicode NFC, and invisible format characters are refused (issue
//! #14, item 13): `é` as one code point and `e` + U+0301 are one file, its lock and its
//! events; a right-to-left override (U+202E) or a zero-width space is 400 `invalid_path` —
//! in both modes, since the rule lives in `mcp_api::names`.

use crate::{assert_error, in_both_modes, ok};
use serde_json::json;

async fn nfc_spellings_are_one_file_and_bidi_is_refused(gw: mcp_testkit::TestGateway) {
    let pre = "caf\u{e9}.txt";
    let de = "cafe\u{301}.txt";
    let w1 = ok(gw
        .tool(
            "file_write",
            json!({"task_id": "t", "path": pre, "content": "1"}),
        )
        .await);
    assert_eq!(w1["path"], pre);
    let w2 = ok(gw
        .tool(
            "file_write",
            json!({"task_id": "t", "path": de, "content": "2"}),
        )
        .await);
    assert_eq!(w2["path"], pre, "{w2}");
    assert_eq!(
        w2["version"], 2,
        "the second spelling wrote the same file: {w2}"
    );
    let r = ok(gw
        .tool("file_read", json!({"task_id": "t", "path": de}))
        .await);
    assert_eq!(r["content"], "2");
    // One lease for both spellings.
    ok(gw
        .tool(
            "claim_file",
            json!({"task_id": "t", "path": pre, "agent_id": "a1"}),
        )
        .await);
    let other = gw
        .tool(
            "claim_file",
            json!({"task_id": "t", "path": de, "agent_id": "a2"}),
        )
        .await;
    assert_error(&other, 409, "locked");
    let list = ok(gw.tool("list_files", json!({"task_id": "t"})).await);
    assert_eq!(list["files"].as_array().unwrap().len(), 1, "{list}");

    for bad in [
        "invoice\u{202e}txt.exe",
        "a\u{2067}b.txt",
        "zero\u{200b}width.txt",
        "\u{feff}bom.txt",
    ] {
        let got = gw
            .tool(
                "file_write",
                json!({"task_id": "t", "path": bad, "content": "x"}),
            )
            .await;
        assert_error(&got, 400, "invalid_path");
    }
}

in_both_modes!(nfc_spellings_are_one_file_and_bidi_is_refused);
