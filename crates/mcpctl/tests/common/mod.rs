//! What the `mcpctl` test binaries share: running the real binary, and what a run produced.
// Each test binary includes this module and uses part of it.
#![allow(dead_code)]

use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// What a run of the binary produced.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    /// From the spawn to the exit.
    pub(crate) took: Duration,
}

/// Runs `cmd` (its standard streams piped) with `stdin` as its input, until it exits.
pub(crate) async fn run(mut cmd: tokio::process::Command, stdin: &str) -> Run {
    let start = Instant::now();
    let mut child = cmd.spawn().expect("mcpctl runs");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let out = child.wait_with_output().await.unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: start.elapsed(),
    }
}
