//! `walstream initdb`: a new node data directory, as initdb makes one.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use clap::Args;
use walstream_node::initdb::{initdb, InitdbOptions};

/// Arguments of `walstream initdb` (initdb's names).
#[derive(Args, Debug)]
pub struct InitdbArgs {
    /// Location for this database cluster.
    #[arg(short = 'D', long = "pgdata", value_name = "DATADIR")]
    pgdata: PathBuf,
    /// Size of WAL segments, in megabytes.
    #[arg(long = "wal-segsize", value_name = "SIZE", default_value_t = 16)]
    wal_segsize: u32,
    /// Database superuser name.
    #[arg(short = 'U', long = "username", value_name = "NAME", default_value = "postgres")]
    username: String,
}

/// Runs `walstream initdb`.
pub fn main(args: InitdbArgs) -> ExitCode {
    let opts = InitdbOptions {
        dir: args.pgdata.clone(),
        wal_segsize_mb: args.wal_segsize,
        superuser: args.username,
    };
    match initdb(&opts, SystemTime::now()) {
        Ok(control) => {
            println!(
                "The files belonging to this database system will be owned by this user.\n\
                 The database system identifier is {}.\n\
                 WAL segments are {} MB.\n\n\
                 Success. You can now start the database server using:\n\n    \
                 walstream node -D {}\n",
                control.system_identifier,
                args.wal_segsize,
                args.pgdata.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("initdb: error: {e}");
            if let Some(hint) = e.hint() {
                eprintln!("initdb: hint: {hint}");
            }
            ExitCode::FAILURE
        }
    }
}
