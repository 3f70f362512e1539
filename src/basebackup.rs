//! `walstream basebackup`: pg_basebackup's plain format on walstream's receiver.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Args;
use tokio::sync::watch;
use walstream_receiver::basebackup::{
    take_base_backup, BackupProgress, BaseBackupOptions, WalMethod,
};

use walstream_receiver::conninfo::ConnInfo;

use crate::connargs::ConnArgs;

/// The program's name, its connections' default `application_name`.
const PROGRAM: &str = "walstream basebackup";

/// Arguments of `walstream basebackup` (pg_basebackup's names; `-h` is the host, so help
/// is `-?`/`--help` as there).
#[derive(Args, Debug)]
#[command(disable_help_flag = true)]
pub struct BasebackupArgs {
    /// Show this help, then exit.
    #[arg(short = '?', long = "help", action = clap::ArgAction::Help)]
    help: Option<bool>,
    /// Receive base backup into directory.
    #[arg(short = 'D', long = "pgdata", value_name = "DIRECTORY")]
    pgdata: PathBuf,
    /// Output format (only p, plain).
    #[arg(short = 'F', long = "format", default_value = "p")]
    format: String,
    /// Include required WAL files with specified method (none, fetch, stream).
    #[arg(short = 'X', long = "wal-method", default_value = "stream")]
    wal_method: String,
    /// Write configuration for replication.
    #[arg(short = 'R', long = "write-recovery-conf")]
    write_recovery_conf: bool,
    /// Set fast or spread checkpointing.
    #[arg(short = 'c', long = "checkpoint", default_value = "spread")]
    checkpoint: String,
    /// Set backup label.
    #[arg(short = 'l', long = "label", default_value = "pg_basebackup base backup")]
    label: String,
    /// Show progress information.
    #[arg(short = 'P', long = "progress")]
    progress: bool,
    /// Maximum transfer rate to transfer data directory (in kB/s, or use suffix "k" or "M").
    #[arg(short = 'r', long = "max-rate", value_name = "RATE")]
    max_rate: Option<String>,
    /// Replication slot to use.
    #[arg(short = 'S', long = "slot", value_name = "SLOTNAME")]
    slot: Option<String>,
    /// Do not wait for changes to be written safely to disk.
    #[arg(short = 'N', long = "no-sync")]
    no_sync: bool,
    /// Suppress generation of backup manifest.
    #[arg(long = "no-manifest")]
    no_manifest: bool,
    /// Output verbose messages.
    #[arg(short = 'v', long = "verbose")]
    verbose: bool,
    #[command(flatten)]
    conn: ConnArgs,
}

/// `-r`: kB/s, or with a `k` or `M` suffix (`pg_basebackup.c: parse_max_rate`).
fn parse_max_rate(text: &str) -> Result<u32> {
    let t = text.trim();
    let (num, mult) = match t.strip_suffix('M') {
        Some(n) => (n, 1024),
        None => (t.strip_suffix('k').unwrap_or(t), 1),
    };
    let Ok(v) = num.trim().parse::<f64>() else {
        bail!("invalid transfer rate \"{text}\"");
    };
    let kb = v * f64::from(mult);
    if kb <= 0.0 {
        bail!("transfer rate must be greater than zero");
    }
    if !(32.0..=1_048_576.0).contains(&kb) {
        bail!("transfer rate \"{text}\" is out of range");
    }
    Ok(kb as u32)
}

fn options(args: &BasebackupArgs, info: &ConnInfo) -> Result<BaseBackupOptions> {
    if args.format != "p" && args.format != "plain" {
        bail!("invalid output format \"{}\", must be \"plain\" (walstream basebackup writes plain format only)", args.format);
    }
    let wal = match args.wal_method.as_str() {
        "n" | "none" => WalMethod::None,
        "f" | "fetch" => WalMethod::Fetch,
        "s" | "stream" => WalMethod::Stream,
        other => bail!(
            "invalid wal-method option \"{other}\", must be \"fetch\", \"stream\", or \"none\""
        ),
    };
    let fast_checkpoint = match args.checkpoint.as_str() {
        "fast" => true,
        "spread" => false,
        other => bail!("invalid checkpoint argument \"{other}\", must be \"fast\" or \"spread\""),
    };
    Ok(BaseBackupOptions {
        label: args.label.clone(),
        fast_checkpoint,
        progress: args.progress,
        manifest: !args.no_manifest,
        max_rate_kb: args.max_rate.as_deref().map(parse_max_rate).transpose()?,
        wal,
        write_recovery_conf: args.write_recovery_conf.then(|| {
            let mut primary = info.clone();
            if primary.application_name.as_deref() == Some(PROGRAM) {
                primary.application_name = None;
            }
            primary
        }),
        slot: args.slot.clone(),
        sync: !args.no_sync,
    })
}

/// Runs `walstream basebackup`.
pub fn main(args: BasebackupArgs) -> ExitCode {
    crate::cli::init_logging(if args.verbose { "info" } else { "warn" });
    crate::cli::run("walstream basebackup: error: ", crate::cli::Flavor::MultiThread, run(args))
}

async fn run(args: BasebackupArgs) -> Result<()> {
    let info = args.conn.conninfo(PROGRAM)?;
    let opts = options(&args, &info)?;
    let (tx, mut rx) = watch::channel(BackupProgress::default());
    let shown = args.progress.then(|| {
        tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let p = *rx.borrow_and_update();
                match p.total {
                    Some(total) if total > 0 => eprint!(
                        "\r{}/{} kB ({}%)",
                        p.done / 1024,
                        total / 1024,
                        (p.done * 100 / total).min(100)
                    ),
                    _ => eprint!("\r{} kB", p.done / 1024),
                }
            }
        })
    });
    let result = take_base_backup(&info, &opts, &args.pgdata, Some(&tx)).await;
    drop(tx);
    if let Some(t) = shown {
        let _ = t.await;
        eprintln!();
    }
    let done = result?;
    if args.verbose {
        eprintln!(
            "walstream basebackup: backup from {} to {} on timeline {}: {} bytes",
            done.start, done.end, done.tli.0, done.bytes
        );
    }
    Ok(())
}
