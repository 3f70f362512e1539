//! The `walstream` command line.

use clap::Parser;

/// PostgreSQL streaming replication in Rust.
#[derive(Parser)]
#[command(name = "walstream", version, about)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let Cli {} = Cli::parse();
    Ok(())
}
