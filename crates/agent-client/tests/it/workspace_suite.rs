//! One behaviour suite, run against both workspaces: the gateway's (over real Postgres and
//! Redis) and a local directory. Each case is written once, generic over `Workspace`; the
//! `suite!` macro instantiates it for both, so a difference between the two is a failing test.

use mcp_agent_client::{ErrorCode, FileEntry, LocalWorkspace, Workspace};
use mcp_testkit::TestGateway;
use std::path::PathBuf;

/// A gateway workspace, with the gateway it lives on.
pub(crate) struct OnGateway {
    _gw: TestGateway,
    pub ws: mcp_agent_client::GatewayWorkspace,
}

pub(crate) async fn gateway_workspace() -> OnGateway {
    let gw = TestGateway::spawn().await;
    let ws = crate::client_as(&gw, "suite").workspace("task-1");
    OnGateway { _gw: gw, ws }
}

/// A local workspace in a fresh temporary directory, removed on drop.
pub(crate) struct OnDisk {
    root: PathBuf,
    pub ws: LocalWorkspace,
}

impl Drop for OnDisk {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

pub(crate) fn local_workspace() -> OnDisk {
    let root = std::env::temp_dir().join(format!("mcp-ws-{}", uuid::Uuid::new_v4().simple()));
    let ws = LocalWorkspace::for_task(&root, "task-1").unwrap();
    OnDisk { root, ws }
}

#[track_caller]
fn assert_code<T: std::fmt::Debug>(r: mcp_agent_client::Result<T>, code: ErrorCode) {
    let e = r.expect_err("expected a refusal");
    assert_eq!(e.code(), code, "{e}");
    assert_eq!(e.status(), Some(code.http_status()), "{e}");
}

fn paths(files: &[FileEntry]) -> Vec<&str> {
    files.iter().map(|f| f.path.as_str()).collect()
}

async fn write_then_read_normalises_paths(w: &impl Workspace) {
    let c = w.write("./src//main.rs", "fn main() {}\n").await.unwrap();
    assert_eq!((c.path.as_str(), c.bytes), ("src/main.rs", 13));
    let r = w.read("src/./main.rs").await.unwrap();
    assert_eq!(
        (r.path.as_str(), r.content.as_str()),
        ("src/main.rs", "fn main() {}\n")
    );
    // Replacing keeps only the last content; sizes count UTF-8 bytes.
    let c = w.write("src/main.rs", "é").await.unwrap();
    assert_eq!(c.bytes, 2);
    assert_eq!(w.read("src/main.rs").await.unwrap().content, "é");
    // Empty files are files.
    w.write("empty", "").await.unwrap();
    assert_eq!(w.read("empty").await.unwrap().content, "");
}

async fn missing_files_are_not_found(w: &impl Workspace) {
    assert_code(w.read("nope.txt").await, ErrorCode::FileNotFound);
    assert_code(w.delete("nope.txt").await, ErrorCode::FileNotFound);
    assert_code(
        w.edit("nope.txt", "a", "b", false).await,
        ErrorCode::FileNotFound,
    );
    w.write("dir/a", "x").await.unwrap();
    // A directory is not a file.
    assert_code(w.read("dir").await, ErrorCode::FileNotFound);
}

async fn traversal_is_refused_everywhere(w: &impl Workspace) {
    let long_component = "x".repeat(256);
    let deep = vec!["d"; 33].join("/");
    let generated = [long_component.as_str(), deep.as_str()];
    for bad in mcp_api::names::REFUSED_PATHS.iter().chain(&generated) {
        assert_code(w.read(bad).await, ErrorCode::InvalidPath);
        assert_code(w.write(bad, "x").await, ErrorCode::InvalidPath);
        assert_code(w.edit(bad, "x", "y", false).await, ErrorCode::InvalidPath);
        assert_code(w.delete(bad).await, ErrorCode::InvalidPath);
    }
    assert_code(w.list(Some("../x")).await, ErrorCode::InvalidPath);
    assert!(
        w.list(None).await.unwrap().is_empty(),
        "nothing was written"
    );
}

async fn edits_match_exactly(w: &impl Workspace) {
    w.write("a.py", "x = 1\ny = 1\n").await.unwrap();
    assert_code(
        w.edit("a.py", "z", "q", false).await,
        ErrorCode::EditNoMatch,
    );
    assert_code(
        w.edit("a.py", "1", "2", false).await,
        ErrorCode::EditAmbiguous,
    );
    assert_code(
        w.edit("a.py", "", "2", false).await,
        ErrorCode::InvalidArgument,
    );
    let c = w.edit("a.py", "x = 1", "x = 5", false).await.unwrap();
    assert_eq!((c.replacements, c.bytes), (1, 12));
    let c = w.edit("a.py", "1", "22", true).await.unwrap();
    assert_eq!(c.replacements, 1);
    assert_eq!(w.read("a.py").await.unwrap().content, "x = 5\ny = 22\n");
    let c = w.edit("a.py", " = ", "=", true).await.unwrap();
    assert_eq!(c.replacements, 2);
    assert_eq!(w.read("a.py").await.unwrap().content, "x=5\ny=22\n");
}

async fn listings_are_sorted_and_prefixes_are_directories(w: &impl Workspace) {
    for p in [
        "src/b.rs",
        "src/a.rs",
        "srcx/c.rs",
        "README.md",
        "src/deep/d.rs",
    ] {
        w.write(p, p).await.unwrap();
    }
    let all = w.list(None).await.unwrap();
    assert_eq!(
        paths(&all),
        [
            "README.md",
            "src/a.rs",
            "src/b.rs",
            "src/deep/d.rs",
            "srcx/c.rs"
        ]
    );
    assert_eq!(all[0].size, "README.md".len() as u64);
    for everything in ["", ".", "/"] {
        assert_eq!(w.list(Some(everything)).await.unwrap(), all);
    }
    assert_eq!(
        paths(&w.list(Some("src")).await.unwrap()),
        ["src/a.rs", "src/b.rs", "src/deep/d.rs"]
    );
    assert_eq!(paths(&w.list(Some("./src/")).await.unwrap()).len(), 3);
    assert_eq!(
        paths(&w.list(Some("src/deep")).await.unwrap()),
        ["src/deep/d.rs"]
    );
    assert_eq!(
        paths(&w.list(Some("README.md")).await.unwrap()),
        ["README.md"]
    );
    assert!(w.list(Some("nothing")).await.unwrap().is_empty());
}

async fn deletes_remove_and_files_come_back(w: &impl Workspace) {
    w.write("dir/a.txt", "one").await.unwrap();
    w.write("b.txt", "two").await.unwrap();
    let d = w.delete("./dir/a.txt").await.unwrap();
    assert_eq!(d.path, "dir/a.txt");
    assert_code(w.read("dir/a.txt").await, ErrorCode::FileNotFound);
    assert_code(w.delete("dir/a.txt").await, ErrorCode::FileNotFound);
    assert_eq!(paths(&w.list(None).await.unwrap()), ["b.txt"]);
    w.write("dir/a.txt", "again").await.unwrap();
    assert_eq!(w.read("dir/a.txt").await.unwrap().content, "again");
}

/// Look-alike spellings name one file (NFC); invisible and bidi characters are refused
/// (issue #14, item 13).
async fn lookalike_paths_name_one_file_and_invisible_ones_are_refused(w: &impl Workspace) {
    let precomposed = "caf\u{e9}/r\u{e9}sum\u{e9}.txt";
    let decomposed = "cafe\u{301}/re\u{301}sume\u{301}.txt";
    let c = w.write(precomposed, "one").await.unwrap();
    assert_eq!(c.path, precomposed);
    let c = w.write(decomposed, "two").await.unwrap();
    assert_eq!(
        c.path, precomposed,
        "the decomposed spelling is the same file"
    );
    assert_eq!(w.read(precomposed).await.unwrap().content, "two");
    assert_eq!(w.read(decomposed).await.unwrap().content, "two");
    assert_eq!(paths(&w.list(None).await.unwrap()), [precomposed]);
    for bad in [
        "invoice\u{202e}txt.exe",
        "\u{202a}a.txt",
        "a\u{2066}b",
        "a\u{2069}",
        "zero\u{200b}width.txt",
        "\u{200d}a",
        "a\u{200e}",
        "a\u{200f}",
        "\u{feff}bom.txt",
        "soft\u{ad}hyphen",
        "a\u{2028}b",
    ] {
        assert_code(w.write(bad, "x").await, ErrorCode::InvalidPath);
        assert_code(w.read(bad).await, ErrorCode::InvalidPath);
    }
    assert_eq!(paths(&w.list(None).await.unwrap()), [precomposed]);
}

macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        mod gateway {
            $(
                #[tokio::test]
                async fn $case() {
                    let on = super::gateway_workspace().await;
                    super::$case(&on.ws).await;
                }
            )*
        }
        mod local {
            $(
                #[tokio::test]
                async fn $case() {
                    let on = super::local_workspace();
                    super::$case(&on.ws).await;
                }
            )*
        }
    };
}

suite!(
    write_then_read_normalises_paths,
    missing_files_are_not_found,
    traversal_is_refused_everywhere,
    edits_match_exactly,
    listings_are_sorted_and_prefixes_are_directories,
    deletes_remove_and_files_come_back,
    lookalike_paths_name_one_file_and_invisible_ones_are_refused,
);

#[tokio::test]
async fn gateway_versions_and_local_none() {
    let on = gateway_workspace().await;
    assert_eq!(on.ws.write("a", "1").await.unwrap().version, Some(1));
    assert_eq!(
        on.ws.edit("a", "1", "2", false).await.unwrap().version,
        Some(2)
    );
    assert_eq!(on.ws.read("a").await.unwrap().version, Some(2));
    let local = local_workspace();
    assert_eq!(local.ws.write("a", "1").await.unwrap().version, None);
}

#[cfg(unix)]
#[tokio::test]
async fn local_links_cannot_lead_outside() {
    let on = local_workspace();
    let outside = on.root.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret"), "s").unwrap();
    std::fs::create_dir_all(on.ws.dir()).unwrap();
    std::os::unix::fs::symlink(&outside, on.ws.dir().join("link")).unwrap();
    assert_code(on.ws.read("link/secret").await, ErrorCode::InvalidPath);
    assert_code(on.ws.write("link/new", "x").await, ErrorCode::InvalidPath);
    assert!(!outside.join("new").exists());
    assert!(on.ws.list(None).await.unwrap().is_empty());
}

#[tokio::test]
async fn use_mcp_picks_the_workspace() {
    use mcp_agent_client::{DualWorkspace, WorkspaceMode};
    let gw = TestGateway::spawn().await;
    let base = gw.base.clone();
    let mode = WorkspaceMode::from_lookup(|k| match k {
        "USE_MCP" => Some("true".into()),
        "MCP_GATEWAY_URL" => Some(base.clone()),
        _ => None,
    })
    .unwrap();
    let remote = DualWorkspace::for_mode(mode, "t1").unwrap();
    assert!(remote.is_gateway());
    remote.write("a.txt", "via gateway").await.unwrap();
    let (status, body) = gw
        .tool(
            "file_read",
            serde_json::json!({"task_id": "t1", "path": "a.txt"}),
        )
        .await;
    assert_eq!(
        (status, body["content"].as_str()),
        (200, Some("via gateway"))
    );

    let disk = local_workspace();
    let root = disk.root.clone();
    let mode = WorkspaceMode::from_lookup(|k| match k {
        "USE_MCP" => Some("false".into()),
        "MCP_LOCAL_WORKSPACE" => Some(root.display().to_string()),
        _ => None,
    })
    .unwrap();
    let local = DualWorkspace::for_mode(mode, "t1").unwrap();
    assert!(!local.is_gateway());
    local.write("a.txt", "on disk").await.unwrap();
    assert_eq!(
        std::fs::read_to_string(root.join("t1").join("a.txt")).unwrap(),
        "on disk"
    );
}
