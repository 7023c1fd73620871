//! Hostile input: a property test of path normalisation (thousands of cases, no panic, no
//! way out of the task's namespace), random paths and random JSON bodies against the live
//! gateway (never a 5xx, never another task's data), and a traversal corpus, including
//! encoded forms, refused by every route that takes a path.

use mcp_domain::{FilePath, Role};
use mcp_testkit::TestGateway;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Paths made of the characters that matter (dots, separators, escapes, controls) and
/// anything at all.
fn hostile_path() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::string::string_regex("[a./\\\\%25eEfF0\u{0}\n\u{202e}é~:]{0,40}").unwrap(),
        proptest::collection::vec(
            prop_oneof![
                Just("..".to_owned()),
                Just(".".to_owned()),
                Just("".to_owned()),
                Just("%2e%2e".to_owned()),
                Just("%252e%252e".to_owned()),
                Just("%2f".to_owned()),
                Just("a".to_owned()),
                Just("b.txt".to_owned()),
                Just("\\".to_owned()),
            ],
            0..8,
        )
        .prop_map(|parts| parts.join("/")),
        any::<String>(),
    ]
}

/// The namespace invariant of a normalised path.
fn check_normalised(raw: &str, p: &FilePath) -> Result<(), TestCaseError> {
    let s = p.as_str();
    prop_assert!(!s.is_empty());
    prop_assert!(!s.starts_with('/'), "{raw:?} -> {s:?}");
    prop_assert!(
        !s.contains('\\') && !s.chars().any(char::is_control),
        "{raw:?} -> {s:?}"
    );
    prop_assert!(s.len() <= 1024 && s.split('/').count() <= 32);
    for c in s.split('/') {
        prop_assert!(!c.is_empty() && c != "." && c != "..", "{raw:?} -> {s:?}");
    }
    // Resolving it under a root never climbs out of the root.
    let mut depth = 0i32;
    for c in s.split('/') {
        depth += if c == ".." { -1 } else { 1 };
        prop_assert!(depth > 0);
    }
    // Normalisation is idempotent: the key names itself.
    let again = FilePath::parse(s).ok();
    prop_assert_eq!(again.as_ref(), Some(p));
    Ok(())
}

#[test]
fn path_normalisation_never_panics_and_never_leaves_the_namespace() {
    let mut runner = proptest_runner(20_000);
    runner
        .run(&hostile_path(), |raw| {
            if let Ok(p) = FilePath::parse(&raw) {
                check_normalised(&raw, &p)?;
                // Spelling variants name the same file.
                let dotted = format!("./{raw}");
                prop_assert_eq!(FilePath::parse(&dotted).ok(), Some(p.clone()));
            }
            Ok(())
        })
        .unwrap();
}

/// Arbitrary JSON, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        hostile_path().prop_map(Value::from),
        Just(json!("t1")),
        Just(json!("t2")),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("task_id".to_owned()),
                    Just("path".to_owned()),
                    Just("content".to_owned()),
                    Just("step".to_owned()),
                    Just("agent_id".to_owned()),
                    Just("old_string".to_owned()),
                    Just("new_string".to_owned()),
                    Just("expected_version".to_owned()),
                    Just("fence".to_owned()),
                    Just("timeout_sec".to_owned()),
                    Just("force".to_owned()),
                    Just("prefix".to_owned()),
                    Just("version".to_owned()),
                    Just("diff_from".to_owned()),
                    Just("before_version".to_owned()),
                    Just("limit".to_owned()),
                    "[a-z_]{1,8}",
                ],
                inner,
                0..6,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const TOOLS: &[&str] = &[
    "file_read",
    "file_write",
    "file_edit",
    "list_files",
    "delete_file",
    "file_history",
    "file_revision",
    "claim_file",
    "renew_file",
    "release_file",
    "list_leases",
    "log_step",
    "subscribe_logs",
    "join_collaboration",
    "leave_collaboration",
];

#[test]
fn random_paths_and_bodies_never_break_the_gateway_or_reach_another_task() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let gw = rt.block_on(TestGateway::spawn_secured_with(|c| {
        c.rate_limit_requests = 0
    }));
    let alice = gw.token("alice", &["t1"], Role::Agent);
    let bob = gw.token("bob", &["t2"], Role::Agent);
    let secret = rt.block_on(gw.tool_as(
        &bob,
        "file_write",
        json!({"task_id": "t2", "path": "secret.txt", "content": "TOP-SECRET"}),
    ));
    assert_eq!(secret.0, 200);

    // Random paths through every path-taking tool.
    let mut runner = proptest_runner(400);
    runner
        .run(
            &(hostile_path(), proptest::sample::select(TOOLS)),
            |(raw, tool)| {
                let body = json!({"task_id": "t1", "path": raw, "content": "c",
                                  "old_string": "c", "new_string": "d", "prefix": raw});
                let (status, answer) = rt.block_on(gw.tool_as(&alice, tool, body));
                prop_assert!(status < 500, "{tool} {raw:?}: {status} {answer}");
                prop_assert!(!answer.to_string().contains("TOP-SECRET"));
                if status == 200 {
                    if let Some(p) = answer.get("path").and_then(Value::as_str) {
                        let expected = FilePath::parse(&raw).map_err(|e| {
                            TestCaseError::fail(format!("{raw:?} accepted but invalid: {e}"))
                        })?;
                        prop_assert_eq!(p, expected.as_str());
                    }
                } else if FilePath::parse(&raw).is_err() && tool != "list_files" {
                    prop_assert_eq!(status, 400, "{} {:?}: {}", tool, raw, answer);
                }
                Ok(())
            },
        )
        .unwrap();

    // Random JSON bodies to every tool.
    let mut runner = proptest_runner(600);
    runner
        .run(
            &(any_json(), proptest::sample::select(TOOLS)),
            |(body, tool)| {
                let (status, answer) = rt.block_on(gw.tool_as(&alice, tool, body.clone()));
                prop_assert!(status < 500, "{tool} {body}: {status} {answer}");
                prop_assert!(status != 401, "{tool} {body}: {answer}");
                prop_assert!(!answer.to_string().contains("TOP-SECRET"));
                prop_assert!(
                    answer["code"].is_string() || status == 200,
                    "{tool} {body}: {status} {answer}"
                );
                Ok(())
            },
        )
        .unwrap();

    // Nothing reached t2, and every key t1 holds is its own normal form.
    rt.block_on(async {
        let pool = gw.pg.pool();
        let rows: Vec<(String, String)> = sqlx::query_as("SELECT task_id, path FROM files")
            .fetch_all(pool)
            .await
            .unwrap();
        for (task, path) in rows {
            if task == "t2" {
                assert_eq!(path, "secret.txt");
            } else {
                assert_eq!(task, "t1");
                assert_eq!(FilePath::parse(&path).unwrap().as_str(), path);
            }
        }
        let content: String = sqlx::query_scalar(
            "SELECT content FROM files WHERE task_id = 't2' AND path = 'secret.txt'",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        assert_eq!(content, "TOP-SECRET");
    });
}

/// Traversal attempts, raw and encoded.
const CORPUS: &[&str] = &[
    "..",
    "../t2/secret.txt",
    "a/../../t2/secret.txt",
    "a/..",
    "/etc/passwd",
    "//t2/secret.txt",
    "a\\..\\b",
    "..\\t2",
    "a\u{0}b",
    "a\r\nb",
    "%2e%2e/t2/secret.txt",
    "%2E%2E/secret.txt",
    ".%2e/secret.txt",
    "%2e./x",
    "a/%2e%2e/%2e%2e/t2",
    "%252e%252e/t2",
    "%25252e%25252e/t2",
    "a%2fb",
    "a%2F..%2Fb",
    "a%5c..%5cb",
    "%00",
    "",
    ".",
    "./",
    "///",
];

/// A raw HTTP/1.1 GET (no client-side URL normalisation): (status, body).
async fn raw_get(gw: &TestGateway, target: &str, token: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let req = format!(
        "GET {target} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// Percent-encodes what cannot go raw into a request target (controls, spaces, `\`).
fn encode_for_target(p: &str) -> String {
    p.bytes()
        .map(|b| {
            if b.is_ascii_graphic() && b != b'\\' && b != b'?' && b != b'#' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn the_traversal_corpus_is_refused_everywhere_a_path_is_accepted() {
    let gw = TestGateway::spawn_secured_with(|c| c.rate_limit_requests = 0).await;
    let alice = gw.token("alice", &["t1"], Role::Agent);
    let bob = gw.token("bob", &["t2"], Role::Agent);
    assert_eq!(
        gw.tool_as(
            &bob,
            "file_write",
            json!({"task_id": "t2", "path": "secret.txt", "content": "TOP-SECRET"}),
        )
        .await
        .0,
        200
    );
    for raw in CORPUS {
        for tool in [
            "file_read",
            "file_write",
            "file_edit",
            "delete_file",
            "file_history",
            "file_revision",
            "claim_file",
            "renew_file",
            "release_file",
        ] {
            let body = json!({"task_id": "t1", "path": raw, "content": "x",
                              "old_string": "x", "new_string": "y", "version": 1});
            let (status, answer) = gw.tool_as(&alice, tool, body).await;
            assert_eq!(status, 400, "{tool} {raw:?}: {answer}");
            assert_eq!(answer["code"], "invalid_path", "{tool} {raw:?}: {answer}");
        }
        // list_files treats "", "." and "/" as "everything"; any other corpus entry is refused.
        let (status, answer) = gw
            .tool_as(
                &alice,
                "list_files",
                json!({"task_id": "t1", "prefix": raw}),
            )
            .await;
        if matches!(*raw, "" | "." | "./" | "///") {
            assert!(status == 200 || status == 400, "{raw:?}: {answer}");
        } else {
            assert_eq!(status, 400, "list_files prefix {raw:?}: {answer}");
        }
        assert!(!answer.to_string().contains("TOP-SECRET"));

        // The workspace resource, sent raw so that no client normalises the URL first.
        let target = format!("/resources/workspace/t1/{}", encode_for_target(raw));
        let (status, text) = raw_get(&gw, &target, &alice).await;
        assert!(
            status == 400 || status == 404,
            "GET {target}: {status}\n{text}"
        );
        assert!(!text.contains("TOP-SECRET"), "GET {target} leaks:\n{text}");
    }
    // Task ids are not paths: no traversal through them either.
    for task in ["../t2", "t1/../t2", "t2%2f..", "*", ""] {
        let (status, answer) = gw
            .tool_as(
                &alice,
                "file_read",
                json!({"task_id": task, "path": "secret.txt"}),
            )
            .await;
        assert!(status == 400 || status == 403, "{task:?}: {answer}");
        assert!(!answer.to_string().contains("TOP-SECRET"));
    }
    let (status, text) = raw_get(&gw, "/resources/workspace/t2/secret.txt", &alice).await;
    assert_eq!(status, 403, "{text}");
    assert!(!text.contains("TOP-SECRET"));
    let files: Vec<String> = sqlx::query_scalar("SELECT path FROM files WHERE task_id = 't1'")
        .fetch_all(gw.pg.pool())
        .await
        .unwrap();
    assert!(files.is_empty(), "{files:?}");
}

/// A proptest runner of `cases` cases that writes no file of failing cases.
fn proptest_runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}
