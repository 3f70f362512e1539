//! The `walstream` command line.

mod cli;
mod receivewal;
mod relay;
mod serve;
mod waldump;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// PostgreSQL streaming replication in Rust.
#[derive(Parser)]
#[command(name = "walstream", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Subcommand)]
enum Command {
    /// Decode and display PostgreSQL 15 WAL, as pg_waldump does.
    Waldump(waldump::WaldumpArgs),
    /// Serve a directory of WAL segments to standbys and pg_receivewal, as a walsender.
    Serve(serve::ServeArgs),
    /// Stream WAL from a server into a directory, as pg_receivewal does.
    Receivewal(receivewal::ReceivewalArgs),
    /// Stream from an upstream into a directory and serve it to many standbys.
    Relay(relay::RelayArgs),
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Waldump(args) => waldump::main(args),
        Command::Serve(args) => serve::main(args),
        Command::Receivewal(args) => receivewal::main(args),
        Command::Relay(args) => relay::main(args),
    }
}
