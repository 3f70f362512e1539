//! `walstream receivewal -S s` killed with SIGKILL at random moments while pgbench writes
//! on a real PostgreSQL 15 primary: after every kill the slot's `restart_lsn` (the flush
//! position walstream reported) is not ahead of the WAL on disk that equals the
//! primary's; each restart resumes from what is on disk; at the end the directory is a
//! gapless, byte-identical copy of the primary's WAL.
//!
//! `RFAULT_SEED` chooses the kill moments (printed on every run); `RFAULT_ROUNDS` the
//! number of kills (default 25).

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use walstream_tests::faults::Rng;
use walstream_tests::standby::spawn_receivewal;
use walstream_tests::walcheck::{assert_gapless_copy, end_equal_to_primary};
use walstream_tests::{pg_bin, pg_command, scenario, wait_for, ChildGuard, Lsn, PgCluster};

const WALSTREAM: &str = env!("CARGO_BIN_EXE_walstream");

/// Starts `walstream receivewal -S s` into `dir` from the primary on `port`.
fn receivewal(port: u16, dir: &Path) -> anyhow::Result<ChildGuard> {
    let conninfo = format!("host=127.0.0.1 port={port} user=postgres");
    spawn_receivewal(WALSTREAM.as_ref(), &conninfo, dir, &["-S", "s"])
}

/// The slot's restart_lsn and whether it is active.
fn slot(primary: &PgCluster) -> anyhow::Result<(Option<Lsn>, bool)> {
    let row = primary.psql(
        "SELECT coalesce(restart_lsn::text, ''), active FROM pg_replication_slots \
         WHERE slot_name = 's'",
    )?;
    let (lsn, active) = row.split_once('|').with_context(|| format!("slot row {row:?}"))?;
    let lsn = if lsn.is_empty() { None } else { Some(lsn.parse()?) };
    Ok((lsn, active == "t"))
}

/// pgbench at a steady rate in the background, stopped on drop.
fn background_pgbench(primary: &PgCluster, secs: u32) -> anyhow::Result<ChildGuard> {
    let mut cmd = pg_command(pg_bin("pgbench"));
    cmd.args(["-h", "127.0.0.1", "-U", "postgres", "-p"])
        .arg(primary.port().to_string())
        .args(["-c", "2", "-j", "2", "-R", "300", "-n", "-T"])
        .arg(secs.to_string())
        .arg("postgres");
    ChildGuard::spawn_captured(&mut cmd, "pgbench")
}

/// What a round checks after a kill: restart_lsn ≤ the end of what on disk equals the
/// primary's, and that end never goes back. Returns that end and the restart_lsn.
fn check_after_kill(
    primary: &PgCluster,
    dir: &Path,
    known_good: &mut BTreeSet<String>,
    previous_end: Lsn,
    round: usize,
) -> anyhow::Result<(Lsn, Option<Lsn>)> {
    let seg = scenario::seg_size();
    // Wait for the walsender of the killed process to notice and let the slot go:
    // the restart_lsn it confirmed is final then.
    let restart = wait_for("the slot released", Duration::from_secs(10), || {
        Ok(match slot(primary)? {
            (lsn, false) => Some(lsn),
            _ => None,
        })
    })?;
    let on_disk = end_equal_to_primary(dir, &primary.wal_dir(), seg, known_good)?
        .context("nothing on disk")?;
    if let Some(restart) = restart {
        ensure!(
            restart <= on_disk,
            "round {round}: the slot's restart_lsn {restart} (walstream's reported flush) is \
             ahead of the WAL on disk equal to the primary's, which ends at {on_disk}"
        );
    }
    ensure!(
        on_disk >= previous_end,
        "round {round}: WAL on disk equal to the primary's went back from {previous_end} to \
         {on_disk}"
    );
    Ok((on_disk, restart))
}

#[test]
fn receivewal_killed_at_random_moments_never_reports_past_its_disk_and_resumes(
) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let rounds: usize =
        std::env::var("RFAULT_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(25);
    let mut rng = Rng::from_env("RFAULT_SEED");
    let seg = scenario::seg_size();
    let primary = PgCluster::start(&scenario::source_config())?;
    primary.pgbench(&["-i", "-s", "1", "-q"])?;
    primary.psql("SELECT pg_create_physical_replication_slot('s', true)")?;
    let reserved = slot(&primary)?.0.context("the slot reserved no WAL")?;
    let mut pgbench = background_pgbench(&primary, 45)?;
    let dir = tempfile::tempdir()?;
    let mut known_good = BTreeSet::new();
    let mut child = receivewal(primary.port(), dir.path())?;
    // The first start: from the slot's restart_lsn; once walstream confirmed a flush the
    // slot reflects walstream's reports only.
    wait_for("walstream's first flush report", Duration::from_secs(30), || {
        Ok(slot(&primary)?.0.filter(|l| *l > reserved))
    })
    .with_context(|| child.stderr_text())?;
    let mut on_disk = Lsn(0);
    let mut kills = Vec::new();
    let mut immediate = Vec::new();
    for round in 0..rounds {
        let ms = rng.between(50, 400);
        std::thread::sleep(Duration::from_millis(ms));
        if let Some(status) = child.try_wait()? {
            bail!("round {round}: walstream exited by itself ({status}):\n{}", child.stderr_text());
        }
        child.signal(libc::SIGKILL);
        child.wait_timeout(Duration::from_secs(10))?.context("SIGKILL did not stop it")?;
        if round % 4 == 3 {
            // Restarted at once, as a supervisor would: the killed connection's walsender
            // may still hold the slot, and walstream must wait for it, not give up.
            immediate.push(round);
            child = receivewal(primary.port(), dir.path())?;
            continue;
        }
        let previous_stderr = child.stderr_text();
        let restart;
        (on_disk, restart) =
            check_after_kill(&primary, dir.path(), &mut known_good, on_disk, round).with_context(
                || format!("walstream's stderr before the kill:\n{previous_stderr}"),
            )?;
        kills.push((ms, restart.unwrap_or_default().to_string(), on_disk.to_string()));
        child = receivewal(primary.port(), dir.path())?;
    }
    eprintln!("restarted at once after the kill in rounds {immediate:?}");
    eprintln!(
        "kills (ms after start, restart_lsn, end of WAL on disk equal to the primary's): {kills:?}"
    );
    // The end: no more writes, the last segment finished, walstream caught up.
    pgbench.stop(Duration::from_secs(10));
    let end = primary.switch_wal()?;
    let last = walstream_protocol::lsn::segment_file_name(
        walstream_tests::TimeLineId(1),
        Lsn(end.0 - 1).segno(seg),
        seg,
    );
    wait_for("walstream received the last segment", Duration::from_secs(30), || {
        Ok(walstream_tests::complete_wal_files(dir.path())?.contains(&last).then_some(()))
    })
    .with_context(|| child.stderr_text())?;
    wait_for("the slot confirmed the end", Duration::from_secs(15), || {
        Ok(slot(&primary)?.0.filter(|l| *l >= end))
    })
    .with_context(|| child.stderr_text())?;
    child.interrupt();
    let status = child.wait_timeout(Duration::from_secs(15))?;
    ensure!(status.is_some_and(|s| s.success()), "SIGINT: {status:?}\n{}", child.stderr_text());
    let restart = slot(&primary)?.0.context("no restart_lsn")?;
    let final_end = end_equal_to_primary(dir.path(), &primary.wal_dir(), seg, &mut known_good)?
        .context("nothing on disk")?;
    ensure!(restart <= final_end, "restart_lsn {restart} > on disk {final_end}");
    let names = assert_gapless_copy(dir.path(), &primary.wal_dir(), seg)?;
    ensure!(names.contains(&last), "{last} missing from {names:?}");
    let first = scenario::segments_between(&names[0], end);
    ensure!(first == names, "complete segments {names:?}, expected {first:?}");
    eprintln!("{} segments, {} kills, {:?}", names.len(), kills.len(), t0.elapsed());
    Ok(())
}

/// A restart while the killed process's walsender still holds the slot (what the crash
/// rounds that restart at once can hit): walstream without `-n` retries, as pg_receivewal
/// does after any failure of its stream, and streams once the slot is free.
#[test]
fn receivewal_retries_while_its_slot_is_still_active() -> anyhow::Result<()> {
    let primary = PgCluster::start(&scenario::source_config())?;
    primary.psql("SELECT pg_create_physical_replication_slot('s', true)")?;
    // Another client holds the slot.
    let holder_dir = walstream_tests::ReceiveWal::new()?;
    let mut holder = holder_dir.spawn(primary.port(), &["-S", "s", "-n"])?;
    wait_for("the slot held", Duration::from_secs(15), || Ok(slot(&primary)?.1.then_some(())))
        .with_context(|| holder.stderr_text())?;
    let dir = tempfile::tempdir()?;
    let mut child = receivewal(primary.port(), dir.path())?;
    std::thread::sleep(Duration::from_millis(1500));
    holder.stop(Duration::from_secs(5));
    // Some(true): streaming; Some(false): exited.
    let streaming = wait_for("walstream streaming from the slot", Duration::from_secs(15), || {
        if child.try_wait()?.is_some() {
            return Ok(Some(false));
        }
        let row = primary.psql(
            "SELECT 1 FROM pg_stat_replication WHERE application_name = 'walstream receivewal'",
        )?;
        Ok((!row.is_empty()).then_some(true))
    });
    let stderr = child.stderr_text();
    let streaming = streaming.with_context(|| format!("walstream's stderr:\n{stderr}"))?;
    ensure!(
        streaming,
        "walstream exited ({:?}) instead of retrying while the slot was held:\n{stderr}",
        child.try_wait()?
    );
    child.interrupt();
    Ok(())
}
