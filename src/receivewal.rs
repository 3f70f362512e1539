//! `walstream receivewal`: pg_receivewal's flags and behaviour, on walstream's receiver.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use tokio_util::sync::CancellationToken;
use walstream_protocol::replication::quote_ident;
use walstream_protocol::wire::ReplicationMode;
use walstream_protocol::Lsn;
use walstream_receiver::apply::VerifyingApplier;
use walstream_receiver::conn::{ConnError, ReplicationConn};
use walstream_receiver::conninfo::ConnInfo;
use walstream_receiver::segments::{SegmentWriter, WriterOptions};
use walstream_receiver::stream::{show_seg_size, Receiver, StreamEnd, StreamOptions};

use crate::cli::{self, Flavor};

/// Arguments of `walstream receivewal` (pg_receivewal's; `-h` is the host, so help is
/// `-?`/`--help` as there).
#[derive(Args, Debug)]
#[command(disable_help_flag = true)]
pub struct ReceivewalArgs {
    /// Show this help, then exit.
    #[arg(short = '?', long = "help", action = clap::ArgAction::Help)]
    help: Option<bool>,
    /// Receive write-ahead log files into this directory.
    #[arg(short = 'D', long = "directory")]
    directory: PathBuf,
    /// Exit after receiving the specified LSN.
    #[arg(short = 'E', long = "endpos", value_name = "LSN")]
    endpos: Option<Lsn>,
    /// Do not error out when --create-slot is used and the slot already exists.
    #[arg(long = "if-not-exists")]
    if_not_exists: bool,
    /// Do not loop on connection lost.
    #[arg(short = 'n', long = "no-loop")]
    no_loop: bool,
    /// Do not wait for changes to be written safely to disk.
    #[arg(long = "no-sync")]
    no_sync: bool,
    /// Time between status packets sent to server, in seconds (default: 10).
    #[arg(short = 's', long = "status-interval", value_name = "SECS", default_value_t = 10)]
    status_interval: u64,
    /// Replication slot to use.
    #[arg(short = 'S', long = "slot", value_name = "SLOTNAME")]
    slot: Option<String>,
    /// Flush write-ahead log immediately after writing.
    #[arg(long = "synchronous")]
    synchronous: bool,
    #[command(flatten)]
    metrics: crate::metrics::MetricsArgs,
    /// Output verbose messages.
    #[arg(short = 'v', long = "verbose")]
    verbose: bool,
    /// Connection string.
    #[arg(short = 'd', long = "dbname", value_name = "CONNSTR")]
    dbname: Option<String>,
    /// Database server host.
    #[arg(short = 'h', long = "host")]
    host: Option<String>,
    /// Database server port number.
    #[arg(short = 'p', long = "port")]
    port: Option<u16>,
    /// Connect as specified database user.
    #[arg(short = 'U', long = "username")]
    username: Option<String>,
    /// Never prompt for password.
    #[arg(short = 'w', long = "no-password")]
    no_password: bool,
    /// Force password prompt (should happen automatically).
    #[arg(short = 'W', long = "password")]
    password: bool,
    /// Create a new replication slot (for the slot's name see --slot).
    #[arg(long = "create-slot")]
    create_slot: bool,
    /// Drop the replication slot (for the slot's name see --slot).
    #[arg(long = "drop-slot")]
    drop_slot: bool,
}

/// Runs `walstream receivewal`.
pub fn main(args: ReceivewalArgs) -> ExitCode {
    cli::init_logging(if args.verbose { "info" } else { "warn" });
    // One thread: the receiver is one task, and a synchronous standby's latency is best
    // without handing each reply across threads.
    cli::run("walstream receivewal: error: ", Flavor::CurrentThread, run(args))
}

fn conninfo(args: &ReceivewalArgs) -> Result<ConnInfo> {
    let mut info = ConnInfo::parse(args.dbname.as_deref().unwrap_or(""))?;
    if let Some(h) = &args.host {
        info.host.clone_from(h);
    }
    if let Some(p) = args.port {
        info.port = p;
    }
    if let Some(u) = &args.username {
        info.user.clone_from(u);
    }
    if info.application_name.is_none() {
        info.application_name = Some("walstream receivewal".to_string());
    }
    if args.password && !args.no_password {
        // -W: ask before connecting, as pg_receivewal does.
        let pw = rpassword::prompt_password("Password: ").context("reading the password")?;
        info.password = Some(pw);
    }
    Ok(info)
}

async fn run(args: ReceivewalArgs) -> Result<()> {
    if (args.create_slot || args.drop_slot) && args.slot.is_none() {
        bail!("--create-slot and --drop-slot need a slot to be specified using --slot");
    }
    let info = conninfo(&args)?;
    if args.drop_slot || args.create_slot {
        return slot_command(&args, &info).await;
    }
    // pg_receivewal.c: get_destination_dir — the directory must exist; it is not made.
    std::fs::read_dir(&args.directory)
        .with_context(|| format!("could not open directory \"{}\"", args.directory.display()))?;
    // The segment size: from the server (pg_receivewal: RetrieveWalSegSize).
    let mut conn = ReplicationConn::connect(&info, ReplicationMode::Physical).await?;
    let seg_size = show_seg_size(&mut conn).await?;
    conn.terminate().await;
    let writer = SegmentWriter::open(
        &args.directory,
        seg_size,
        WriterOptions { sync: !args.no_sync, ..WriterOptions::default() },
    )?;
    let opts = StreamOptions {
        conninfo: info,
        slot: args.slot.clone(),
        status_interval: Duration::from_secs(args.status_interval),
        receiver_timeout: Duration::ZERO,
        synchronous: args.synchronous,
        report_flush: true,
        endpos: args.endpos,
        no_loop: args.no_loop,
        hot_standby_feedback: false,
    };
    let mut receiver = Receiver::new(opts, writer, VerifyingApplier::new());
    let cancel = CancellationToken::new();
    cli::cancel_on_interrupt(cancel.clone());
    let (positions, counters) = (receiver.positions(), receiver.counters());
    let rmgrs = receiver.applier().rmgr_counts();
    crate::metrics::start(&args.metrics, cancel.clone(), |m| {
        m.add_receiver(positions);
        m.add_receiver_events(counters, rmgrs);
    })
    .await?;
    let progress = std::io::stderr()
        .is_terminal()
        .then(|| spawn_progress(receiver.positions(), cancel.clone()));
    let result = stream_log(&mut receiver, &cancel, args.no_loop).await;
    cancel.cancel();
    if let Some(p) = progress {
        let _ = p.await;
    }
    let end = result?;
    if args.verbose {
        let at = match end {
            StreamEnd::EndPos(at) => at,
            StreamEnd::Stopped => receiver.positions().borrow().write,
        };
        eprintln!("walstream receivewal: stopped log streaming at {at}");
    }
    Ok(())
}

/// pg_receivewal.c: RECONNECT_SLEEP_TIME, the wait after a local file error.
const RECONNECT_SLEEP_TIME: Duration = Duration::from_secs(5);

/// Streams until done (pg_receivewal.c: main's loop around `StreamLog`). A local file
/// error (read-only directory, a `.partial` removed, disk full) is logged as
/// pg_receivewal logs it and, unless `no_loop`, retried after
/// [`RECONNECT_SLEEP_TIME`] from what is on disk; with `no_loop` it ends the run with
/// pg_receivewal's "disconnected". The receiver itself retries connection failures.
async fn stream_log(
    receiver: &mut Receiver<VerifyingApplier>,
    cancel: &CancellationToken,
    no_loop: bool,
) -> Result<StreamEnd> {
    loop {
        match receiver.run(cancel).await {
            Err(e) if e.is_retried_file_error() => {
                eprintln!("walstream receivewal: error: {}", cli::error_text(&e.into()));
                if no_loop {
                    bail!("disconnected");
                }
                eprintln!(
                    "walstream receivewal: disconnected; waiting {} seconds to try again",
                    RECONNECT_SLEEP_TIME.as_secs()
                );
                tokio::select! {
                    _ = cancel.cancelled() => return Ok(StreamEnd::Stopped),
                    _ = tokio::time::sleep(RECONNECT_SLEEP_TIME) => {}
                }
                receiver.restart_from_disk()?;
            }
            other => return Ok(other?),
        }
    }
}

/// `--create-slot` / `--drop-slot`, then exit (pg_receivewal.c).
async fn slot_command(args: &ReceivewalArgs, info: &ConnInfo) -> Result<()> {
    let slot = quote_ident(args.slot.as_deref().unwrap_or_default());
    let mut conn = ReplicationConn::connect(info, ReplicationMode::Physical).await?;
    if args.drop_slot {
        conn.simple_query(&format!("DROP_REPLICATION_SLOT {slot}")).await?;
    }
    if args.create_slot {
        match conn.simple_query(&format!("CREATE_REPLICATION_SLOT {slot} PHYSICAL")).await {
            Ok(_) => {}
            Err(ConnError::Server(e)) if args.if_not_exists && e.code == "42710" => {}
            Err(e) => return Err(e.into()),
        }
    }
    conn.terminate().await;
    Ok(())
}

/// A progress line on a terminal: position, MB/s, lag behind the server.
fn spawn_progress(
    mut positions: tokio::sync::watch::Receiver<walstream_receiver::stream::Positions>,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last = (std::time::Instant::now(), positions.borrow().write);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = cancel.cancelled() => { eprintln!(); return; }
                _ = tick.tick() => {}
            }
            let p = *positions.borrow_and_update();
            let secs = last.0.elapsed().as_secs_f64().max(1e-3);
            let mbs = p.write.0.saturating_sub(last.1 .0) as f64 / secs / 1048576.0;
            let lag = p.server_end.0.saturating_sub(p.write.0) as f64 / 1048576.0;
            eprint!("\r{} (timeline {}) {mbs:8.1} MB/s, {lag:.1} MB behind   ", p.write, p.tli.0);
            last = (std::time::Instant::now(), p.write);
        }
    })
}
