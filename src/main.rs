//! The `walstream` command line.

/// mimalloc rather than glibc's malloc: the node's commit path allocates per statement
/// on two worker threads, and glibc's arenas made malloc/free about 12% of the node's
/// CPU under pgbench (BENCHMARKS.md, "The node").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod basebackup;
mod cli;
mod connargs;
mod demo;
mod failover;
mod initdb;
mod logfmt;
mod metrics;
mod node;
mod promote;
mod receivewal;
mod relay;
mod replay_bench;
mod serve;
mod waldump;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// PostgreSQL streaming replication in Rust.
#[derive(Parser)]
#[command(name = "walstream", version, about)]
struct Cli {
    /// How log lines are written to stderr (levels: `RUST_LOG` or `WALSTREAM_LOG`).
    #[arg(long, global = true, value_enum, default_value_t = cli::LogFormat::Text)]
    log_format: cli::LogFormat,
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
    /// Take a base backup of a running server, as pg_basebackup does (plain format).
    Basebackup(basebackup::BasebackupArgs),
    /// Create a new node data directory, as initdb does.
    Initdb(initdb::InitdbArgs),
    /// Run a node: a small database whose WAL is PostgreSQL 15 WAL, primary or standby.
    Node(node::NodeArgs),
    /// Promote a running standby node to primary, as pg_ctl promote does.
    Promote(promote::PromoteArgs),
    /// Measure how fast standbys replay a captured workload's WAL.
    ReplayBench(replay_bench::ReplayBenchArgs),
    /// Run a primary and a standby node with clients writing, and check they agree.
    Demo(demo::DemoArgs),
    Failover(failover::FailoverArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::set_log_format(cli.log_format);
    match cli.command {
        Command::Waldump(args) => waldump::main(args),
        Command::Serve(args) => serve::main(args),
        Command::Receivewal(args) => receivewal::main(args),
        Command::Relay(args) => relay::main(args),
        Command::Basebackup(args) => basebackup::main(args),
        Command::Initdb(args) => initdb::main(args),
        Command::Node(args) => node::main(args),
        Command::Promote(args) => promote::main(args),
        Command::ReplayBench(args) => replay_bench::main(args),
        Command::Demo(args) => demo::main(args),
        Command::Failover(args) => failover::main(args),
    }
}
