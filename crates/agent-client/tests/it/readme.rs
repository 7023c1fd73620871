//! The crate README's example is `examples/quickstart.rs`, verbatim; here it runs against a
//! real gateway in both modes, so the README cannot drift from a program that works.

#[allow(dead_code)] // its `main` is the example's entry point, not this test's
#[path = "../../examples/quickstart.rs"]
// The example is its own crate, where `pub` is what a reader writes; only here is it a module.
#[allow(unreachable_pub)]
mod quickstart;

use crate::client_as;
use mcp_testkit::TestGateway;

#[test]
fn the_readme_shows_the_example_verbatim() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).expect("README.md");
    let example =
        std::fs::read_to_string(format!("{root}/examples/quickstart.rs")).expect("example");
    assert!(
        readme.contains(&format!("```rust\n{example}```")),
        "README.md must show examples/quickstart.rs verbatim in a ```rust block"
    );
}

#[tokio::test]
async fn the_readme_example_runs_deployed() {
    let gw = TestGateway::spawn().await;
    quickstart::run(&client_as(&gw, "quickstart"), "t1")
        .await
        .expect("the README example runs");
}

#[tokio::test]
async fn the_readme_example_runs_embedded() {
    let gw = TestGateway::spawn_embedded().await;
    quickstart::run(&client_as(&gw, "quickstart"), "t1")
        .await
        .expect("the README example runs");
}
