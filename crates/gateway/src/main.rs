//! `mcp-gateway`: parse the configuration, start logging, run the chosen command.

use clap::Parser;
use mcp_gateway::config::{Cli, Command};
use tokio_util::sync::CancellationToken;

/// mimalloc instead of the system allocator: see the dependency's note in Cargo.toml.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    mcp_gateway::init_tracing(&cli.config.log_format);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Migrate => {
            let _data_lock = mcp_gateway::data_lock::lock_data_dir(&cli.config)?;
            mcp_gateway::connect_durable(&cli.config).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Token(args) => {
            println!("{}", mcp_gateway::mint_token(&cli.config, &args)?);
            Ok(())
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "mcp-gateway", &mut std::io::stdout());
            Ok(())
        }
        Command::Man => {
            use clap::CommandFactory;
            clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?;
            Ok(())
        }
        Command::Serve => {
            let shutdown = CancellationToken::new();
            mcp_gateway::cancel_on_signal(shutdown.clone());
            mcp_gateway::serve(cli.config, shutdown).await
        }
    }
}
