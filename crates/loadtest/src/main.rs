//! `mcp-loadtest`: parse the flags, run the scenario, print the table, write the report;
//! exit 1 when the audit fails.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cfg = mcp_loadtest::Config::parse();
    let report_path = cfg.report.clone();
    let (report, _) = mcp_loadtest::run(cfg).await?;
    println!("{}", mcp_loadtest::render(&report));
    if let Some(p) = report_path {
        std::fs::write(&p, serde_json::to_vec_pretty(&report)?)?;
    }
    if !report.audit_ok() {
        std::process::exit(1);
    }
    Ok(())
}
