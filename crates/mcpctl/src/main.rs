//! `mcpctl`: parse the command line, run it, exit with its code (see `mcpctl --help`).

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    mcpctl::run(mcpctl::cli::Cli::parse()).await
}
