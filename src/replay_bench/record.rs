//! `replay-bench record`: a base backup of a running PostgreSQL 15 (or walstream node) and
//! its WAL streamed alongside from before the backup's start, into a self-contained capture.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use walstream_protocol::lsn::segment_file_name;
use walstream_protocol::wire::ReplicationMode;
use walstream_protocol::{Lsn, TimeLineId};
use walstream_receiver::apply::VerifyingApplier;
use walstream_receiver::basebackup::{take_base_backup, BaseBackupOptions, WalMethod};
use walstream_receiver::conn::ReplicationConn;
use walstream_receiver::conninfo::ConnInfo;
use walstream_receiver::segments::{SegmentWriter, WriterOptions};
use walstream_receiver::stream::{show_seg_size, Receiver, StreamOptions, WalObserver};

use super::capture::{scan_wal, Manifest, BASE_DIR, WAL_DIR};

/// How long the stream may take to reach the backup's end after the backup ended.
const CATCH_UP: Duration = Duration::from_secs(60);

/// Tells when the receiver has identified the server (its start position is fixed then).
struct Identified(watch::Sender<bool>);

impl WalObserver for Identified {
    fn identified(&self, _system_id: u64, _tli: TimeLineId) {
        self.0.send_replace(true);
    }
}

/// Records a capture of the server `info` points at into `out` (created; must be empty),
/// for `seconds` after the base backup or until `cancel`.
///
/// # Errors
/// Connection, backup and streaming errors; a stream that does not reach the backup's end.
pub async fn record(
    info: &ConnInfo,
    out: &Path,
    seconds: Option<u64>,
    cancel: &CancellationToken,
) -> Result<Manifest> {
    if std::fs::read_dir(out).is_ok_and(|mut d| d.next().is_some()) {
        bail!("directory \"{}\" exists but is not empty", out.display());
    }
    let wal = out.join(WAL_DIR);
    std::fs::create_dir_all(&wal)
        .with_context(|| format!("could not create directory \"{}\"", wal.display()))?;
    let mut conn = ReplicationConn::connect(info, ReplicationMode::Physical).await?;
    let seg_size = show_seg_size(&mut conn).await?;
    let ident = conn.simple_query("IDENTIFY_SYSTEM").await?;
    let system_id: u64 = ident
        .get_text(0, 0)
        .and_then(|s| s.parse().ok())
        .context("IDENTIFY_SYSTEM gave no system identifier")?;
    conn.terminate().await;

    let writer = SegmentWriter::open(&wal, seg_size, WriterOptions::default())?;
    let opts = StreamOptions {
        conninfo: info.clone(),
        slot: None,
        status_interval: Duration::from_secs(10),
        receiver_timeout: Duration::ZERO,
        synchronous: false,
        report_flush: true,
        endpos: None,
        no_loop: true,
        hot_standby_feedback: false,
    };
    let (ident_tx, mut ident_rx) = watch::channel(false);
    let mut receiver = Receiver::new(opts, writer, VerifyingApplier::new())
        .with_observer(std::sync::Arc::new(Identified(ident_tx)));
    let mut positions = receiver.positions();
    let stop = CancellationToken::new();
    let stop_stream = stop.clone();
    let mut stream = tokio::spawn(async move { receiver.run(&stop_stream).await });

    // The stream starts at the segment of the server's position when it identified it;
    // the backup's checkpoint comes after that.
    tokio::select! {
        r = ident_rx.wait_for(|v| *v) => { r.context("the WAL stream ended before it started")?; }
        r = &mut stream => bail!("the WAL stream ended before it started: {:?}", r?),
        _ = tokio::time::sleep(CATCH_UP) => bail!("the WAL stream did not start"),
    }
    let backup_opts = BaseBackupOptions {
        label: "walstream replay-bench".into(),
        fast_checkpoint: true,
        progress: false,
        manifest: true,
        max_rate_kb: None,
        wal: WalMethod::None,
        write_recovery_conf: None,
        slot: None,
        sync: true,
    };
    let base = out.join(BASE_DIR);
    let backup = tokio::select! {
        biased;
        _ = cancel.cancelled() => Err(anyhow::anyhow!("interrupted before the base backup ended")),
        r = take_base_backup(info, &backup_opts, &base, None) => {
            r.context("the base backup failed")
        }
    };
    let done = match backup {
        Ok(d) => d,
        Err(e) => {
            stop.cancel();
            let _ = stream.await;
            return Err(e);
        }
    };
    tracing::info!("base backup from {} to {}; streaming WAL", done.start, done.end);

    let until = seconds.map(|s| Instant::now() + Duration::from_secs(s));
    let reached = wait(&mut positions, &mut stream, done.end, until, cancel).await;
    stop.cancel();
    let ended = stream.await;
    reached?;
    match ended {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(e).context("the WAL stream failed"),
        Err(e) => bail!("the WAL stream failed: {e}"),
    }
    finish(out, &wal, system_id, done.tli, seg_size, done.start, done.end)
}

/// Waits for `until` (or ctrl-c), then until the stream has flushed `backup_end`.
async fn wait(
    positions: &mut watch::Receiver<walstream_receiver::stream::Positions>,
    stream: &mut tokio::task::JoinHandle<
        Result<walstream_receiver::stream::StreamEnd, walstream_receiver::stream::ReceiverError>,
    >,
    backup_end: Lsn,
    until: Option<Instant>,
    cancel: &CancellationToken,
) -> Result<()> {
    let timer = async {
        match until {
            Some(t) => tokio::time::sleep_until(t).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = cancel.cancelled() => {}
        _ = timer => {}
        r = &mut *stream => bail!("the WAL stream ended: {:?}", r?),
    }
    let caught_up = tokio::time::timeout(CATCH_UP, positions.wait_for(|p| p.flush >= backup_end));
    match caught_up.await {
        Ok(Ok(_)) => Ok(()),
        _ => bail!("the WAL stream did not reach the backup's end {backup_end}"),
    }
}

/// Renames the last `.partial` segment to its full name, scans the WAL and writes the
/// manifest.
#[allow(clippy::too_many_arguments)]
fn finish(
    out: &Path,
    wal: &Path,
    system_id: u64,
    tli: TimeLineId,
    seg_size: walstream_protocol::WalSegSize,
    start: Lsn,
    backup_end: Lsn,
) -> Result<Manifest> {
    for entry in std::fs::read_dir(wal)? {
        let path = entry?.path();
        if let Some(name) =
            path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".partial"))
        {
            std::fs::rename(&path, wal.join(name))?;
        }
    }
    let scan = scan_wal(wal, tli, seg_size, start, None).with_context(|| {
        format!(
            "the captured WAL does not hold the backup's start {start} (segment {})",
            segment_file_name(tli, start.segno(seg_size), seg_size)
        )
    })?;
    if scan.end < backup_end {
        bail!("the captured WAL ends at {} before the backup's end {backup_end}", scan.end);
    }
    let manifest = Manifest {
        version: 1,
        system_id,
        timeline: tli.0,
        wal_segment_size: seg_size.bytes(),
        start_lsn: start.to_string(),
        backup_end_lsn: backup_end.to_string(),
        end_lsn: scan.end.to_string(),
        records: scan.records,
        commits: scan.commits.len() as u64,
    };
    manifest.save(out)?;
    Ok(manifest)
}
