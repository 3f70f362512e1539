//! Corruption campaign (issue 11, §3): single-byte corruptions injected between a
//! PostgreSQL 15 primary and `walstream relay`, one after another, each inside a record
//! (covered by its CRC). Each must be detected before anything of it is flushed or served:
//! the relay stops with an error naming the corrupt record and is started again (as a
//! supervisor would), a `walstream receivewal` streaming from the relay never sees a
//! corrupt record, and at the end the relay's directory and the client's are gapless,
//! byte-identical copies of the primary's WAL.
//!
//! `CORRUPT_ROUNDS` sets the number of corruptions (default 10, what CI runs; the
//! campaign runs 1000).

use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use walstream_protocol::lsn::segment_file_name;
use walstream_tests::faults::{lsns_in, waldump_records};
use walstream_tests::proxy::CorruptingProxy;
use walstream_tests::standby::spawn_receivewal;
use walstream_tests::walcheck::assert_gapless_copy;
use walstream_tests::{
    complete_wal_files, free_port, scenario, wait_for, ChildGuard, Lsn, PgCluster, TimeLineId,
};

const WALSTREAM: &str = env!("CARGO_BIN_EXE_walstream");
const PAGE: u64 = 8192;

fn relay(dir: &Path, upstream: u16, port: u16) -> Result<ChildGuard> {
    let mut cmd = Command::new(WALSTREAM);
    cmd.arg("relay")
        .arg("-D")
        .arg(dir)
        .arg("--upstream")
        .arg(format!("host=127.0.0.1 port={upstream} user=postgres sslmode=disable"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"));
    let mut child = ChildGuard::spawn_captured(&mut cmd, "walstream relay")?;
    wait_for("the relay listening", Duration::from_secs(20), || {
        if let Some(status) = child.try_wait()? {
            // It may already have stopped at the next corruption: that is for the caller.
            let _ = status;
            return Ok(Some(()));
        }
        Ok(TcpStream::connect(("127.0.0.1", port)).is_ok().then_some(()))
    })?;
    Ok(child)
}

#[test]
fn every_corruption_between_primary_and_relay_is_caught_before_it_is_served() -> Result<()> {
    let t0 = Instant::now();
    let n: usize = std::env::var("CORRUPT_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let seg = scenario::seg_size();
    let primary = PgCluster::start(&scenario::source_config())?;
    primary.pgbench(&["-i", "-s", "1", "-q"])?;
    let first = scenario::first_segment(&primary)?;
    let start = walstream_protocol::lsn::parse_segment_file_name(&first, seg)
        .map(|(_, segno)| Lsn(segno.0 * u64::from(seg.bytes())))
        .context("first segment")?;
    // Enough records for n corruptions spread out (bounded: at most 20 pgbench runs).
    let mut end = primary.switch_wal()?;
    let mut candidates = Vec::new();
    for _ in 0..20 {
        candidates = waldump_records(&primary.wal_dir(), start + 40, end, usize::MAX)?
            .into_iter()
            .map(|r| (r.lsn, r.tot_len))
            .filter(|(lsn, tot)| *tot >= 64 && lsn.0 % PAGE + tot <= PAGE)
            .collect();
        if candidates.len() >= n * 4 {
            break;
        }
        primary.pgbench(&["-t", "1000", "-n"])?;
        end = primary.switch_wal()?;
    }
    ensure!(candidates.len() >= n, "only {} records to corrupt", candidates.len());
    // Every k-th record, the middle of its payload: in the CRC, never in a page header.
    let step = candidates.len() / n;
    let chosen: Vec<(Lsn, Lsn)> = (0..n)
        .map(|i| {
            let (lsn, tot) = candidates[i * step];
            (lsn, Lsn(lsn.0 + 24 + (tot - 24) / 2))
        })
        .collect();
    let proxy =
        CorruptingProxy::start_targets(primary.port(), chosen.iter().map(|(_, at)| *at).collect())?;

    let relay_dir = tempfile::tempdir()?;
    let client_dir = tempfile::tempdir()?;
    // Both start at the first segment (an empty .partial of it is where they resume).
    for dir in [relay_dir.path(), client_dir.path()] {
        let seed = dir.join(format!("{first}.partial"));
        std::fs::File::create(&seed)?.set_len(u64::from(seg.bytes()))?;
    }
    let port = free_port()?;
    let mut r = relay(relay_dir.path(), proxy.port(), port)?;
    let client_conninfo = format!("host=127.0.0.1 port={port} user=postgres");
    let start_client =
        || spawn_receivewal(WALSTREAM.as_ref(), &client_conninfo, client_dir.path(), &[]);
    let mut client = start_client()?;
    let mut client_logs = String::new();

    let mut caught = Vec::new();
    let mut failed_at: Option<Instant> = None;
    let deadline = Instant::now() + Duration::from_secs(120 + n as u64);
    while caught.len() < n {
        if Instant::now() > deadline {
            bail!(
                "{} of {n} corruptions caught by the deadline; relay:\n{}",
                caught.len(),
                r.stderr_text()
            );
        }
        if client.try_wait()?.is_some() {
            // A first connection refused while the relay restarts ends receivewal, as it
            // ends pg_receivewal: started again (its log is checked at the end).
            client_logs.push_str(&client.stderr_text());
            client = start_client()?;
        }
        match r.try_wait()? {
            None => {
                // A relay whose upstream failed shuts down at once: its walsenders finish
                // (`WalSndDone`) as soon as the client confirms what they sent.
                if r.stderr_text().contains("streaming from the upstream failed") {
                    let since = *failed_at.get_or_insert_with(Instant::now);
                    if since.elapsed() > Duration::from_secs(20) {
                        bail!(
                            "the relay's shutdown did not finish 20 s after its upstream \
                             failed:\n{}\nclient:\n{}",
                            r.stderr_text(),
                            client.stderr_text()
                        );
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Some(status) => {
                let (record, _) = chosen[caught.len()];
                let log = r.stderr_text();
                ensure!(!status.success(), "the relay exited successfully:\n{log}");
                let named =
                    log.lines().any(|l| l.contains("ERROR") && lsns_in(l).contains(&record));
                ensure!(
                    named,
                    "corruption {} at record {record}: the relay's error does not name it:\n{log}",
                    caught.len()
                );
                caught.push(record);
                failed_at = None;
                r = relay(relay_dir.path(), proxy.port(), port)?;
            }
        }
    }
    ensure!(proxy.targets_left() == 0, "{} targets never reached", proxy.targets_left());
    let last = segment_file_name(TimeLineId(1), Lsn(end.0 - 1).segno(seg), seg);
    wait_for(&format!("{last} from the relay"), Duration::from_secs(60), || {
        Ok(complete_wal_files(relay_dir.path())?.contains(&last).then_some(()))
    })
    .with_context(|| r.stderr_text())?;
    wait_for(&format!("{last} at the client"), Duration::from_secs(60), || {
        if client.try_wait()?.is_some() {
            // Refused while the relay restarted after the last corruption: again.
            client_logs.push_str(&client.stderr_text());
            client = start_client()?;
        }
        Ok(complete_wal_files(client_dir.path())?.contains(&last).then_some(()))
    })
    .with_context(|| client.stderr_text())?;
    assert_gapless_copy(relay_dir.path(), &primary.wal_dir(), seg)?;
    let received = assert_gapless_copy(client_dir.path(), &primary.wal_dir(), seg)?;
    ensure!(received.first() == Some(&first), "the client's copy starts at {:?}", received.first());
    // Nothing corrupt reached the client: it never stopped at a bad record.
    let client_log = client_logs + &client.stderr_text();
    ensure!(
        !client_log.lines().any(|l| chosen.iter().any(|(rec, _)| lsns_in(l).contains(rec))
            && (l.contains("checksum") || l.contains("invalid"))),
        "the client saw a corrupt record:\n{client_log}"
    );
    eprintln!(
        "{} corruptions caught, each before it was served; {} segments; {:?}",
        caught.len(),
        received.len(),
        t0.elapsed()
    );
    Ok(())
}
