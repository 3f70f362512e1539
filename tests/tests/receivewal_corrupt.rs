//! `walstream receivewal` fed WAL with one flipped byte inside a record (through a proxy
//! between it and a real PostgreSQL 15 primary): it stops with an error naming the
//! corrupt record's LSN, exits non-zero with `-n`, and never reports write-verified
//! flush or replay positions past the start of that record (pg_stat_replication sampled
//! while it runs, and the slot's restart_lsn at the end). A clean run in the same
//! directory afterwards repairs the file and completes a byte-identical copy.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use walstream_tests::faults::{lsns_in, waldump_records, Record};
use walstream_tests::proxy::{CorruptingProxy, Corruption};
use walstream_tests::walcheck::{assert_gapless_copy, end_equal_to_primary};
use walstream_tests::{scenario, ChildGuard, Lsn, PgCluster};

const WALSTREAM: &str = env!("CARGO_BIN_EXE_walstream");

/// How far into the stream the corrupted record lies.
const DEPTH: u64 = 3 << 20;

/// Starts `walstream receivewal` into `dir` through 127.0.0.1:`port` as `name`.
fn receivewal(port: u16, dir: &Path, name: &str, extra: &[&str]) -> anyhow::Result<ChildGuard> {
    let conninfo =
        format!("host=127.0.0.1 port={port} user=postgres sslmode=disable application_name={name}");
    walstream_tests::standby::spawn_receivewal(WALSTREAM.as_ref(), &conninfo, dir, extra)
}

/// pg_waldump's records of the primary's pg_wal from `from` (at most 5000).
fn waldump(primary: &PgCluster, from: Lsn, to: Lsn) -> anyhow::Result<Vec<Record>> {
    waldump_records(&primary.wal_dir(), from, to, 5000)
}

/// Where in a record the flipped byte lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// A record inside one page: the middle of its payload.
    InPage,
    /// A record crossing into the next page (not a segment's first): the middle of its
    /// continuation, after that page's header.
    Continuation,
}

/// The record to corrupt, the first at least `DEPTH` into the stream that suits `place`,
/// and the byte to flip: covered by the record's CRC, never in a page header.
fn choose_target(
    primary: &PgCluster,
    stream_start: Lsn,
    end: Lsn,
    place: Place,
) -> anyhow::Result<(Lsn, Lsn)> {
    const PAGE: u64 = 8192;
    let from = Lsn(stream_start.0 + DEPTH.min((end.0 - stream_start.0) / 2));
    for r in waldump(primary, from, end)? {
        let page_off = r.lsn.0 % PAGE;
        let next_page = r.lsn.0 - page_off + PAGE;
        match place {
            Place::InPage if r.tot_len >= 64 && page_off + r.tot_len <= PAGE => {
                return Ok((r.lsn, Lsn(r.lsn.0 + 24 + (r.tot_len - 24) / 2)));
            }
            Place::Continuation if page_off + 24 <= PAGE => {
                // The bytes after the page boundary, behind a short page header.
                let rest = (page_off + r.tot_len).saturating_sub(PAGE);
                let first_of_segment = next_page % (1 << 20) == 0;
                if (16..=PAGE - 24).contains(&rest) && !first_of_segment {
                    return Ok((r.lsn, Lsn(next_page + 24 + rest / 2)));
                }
            }
            _ => {}
        }
    }
    bail!("no record to corrupt after {from} ({place:?})")
}

/// The highest write, flush and replay positions, and the slot's restart_lsn, seen.
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    samples: u32,
    write: Lsn,
    flush: Lsn,
    replay: Lsn,
}

/// Samples `name`'s row of pg_stat_replication until `stop`.
fn sample(primary: &PgCluster, name: &str, stop: &AtomicBool, seen: &Mutex<Seen>) {
    while !stop.load(Ordering::SeqCst) {
        let row = primary.psql(&format!(
            "SELECT coalesce(write_lsn, '0/0'), coalesce(flush_lsn, '0/0'), \
             coalesce(replay_lsn, '0/0') FROM pg_stat_replication WHERE application_name = '{name}'"
        ));
        let v: Vec<Lsn> = row
            .ok()
            .map(|r| r.split('|').filter_map(|s| s.parse().ok()).collect())
            .unwrap_or_default();
        if let (Some(&w), Some(&f), Some(&r), Ok(mut s)) =
            (v.first(), v.get(1), v.get(2), seen.lock())
        {
            s.samples += 1;
            s.write = s.write.max(w);
            s.flush = s.flush.max(f);
            s.replay = s.replay.max(r);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The slot's restart_lsn.
fn restart_lsn(primary: &PgCluster, slot: &str) -> anyhow::Result<Lsn> {
    let text = primary.psql(&format!(
        "SELECT coalesce(restart_lsn, '0/0') FROM pg_replication_slots WHERE slot_name = '{slot}'"
    ))?;
    Ok(text.parse()?)
}

/// What one corrupted run did.
struct Run {
    status: Option<std::process::ExitStatus>,
    stderr: String,
    seen: Seen,
    flips: u64,
}

/// Runs walstream through a proxy flipping the byte at `target`, for at most `limit`,
/// sampling pg_stat_replication meanwhile.
fn corrupted_run(
    primary: &PgCluster,
    dir: &Path,
    name: &str,
    target: Lsn,
    extra: &[&str],
    limit: Duration,
) -> anyhow::Result<Run> {
    let delay = Duration::from_millis(25);
    let proxy = CorruptingProxy::start(
        primary.port(),
        Corruption { at: target, delay_per_xlogdata: delay },
    )?;
    let stop = AtomicBool::new(false);
    let seen = Mutex::new(Seen::default());
    let (status, stderr) = std::thread::scope(|s| {
        s.spawn(|| sample(primary, name, &stop, &seen));
        let res = (|| {
            let mut child = receivewal(proxy.port(), dir, name, extra)?;
            let status = child.wait_timeout(limit)?;
            // Let the sampler see the end state, then stop it.
            std::thread::sleep(Duration::from_millis(200));
            let stderr = child.stderr_text();
            child.stop(Duration::from_secs(5));
            anyhow::Ok((status, stderr))
        })();
        stop.store(true, Ordering::SeqCst);
        res
    })?;
    let seen = *seen.lock().map_err(|_| anyhow::anyhow!("sampler panicked"))?;
    Ok(Run { status, stderr, seen, flips: proxy.flips() })
}

/// The checks every corrupted run must pass: the corruption happened, nothing past the
/// corrupt record's start was reported flushed or replayed, and the slot agrees.
fn check_not_past(
    run: &Run,
    primary: &PgCluster,
    slot: &str,
    reserved: Lsn,
    record: Lsn,
) -> anyhow::Result<Lsn> {
    let ctx = || format!("{:?}\nwalstream's stderr:\n{}", run.seen, run.stderr);
    ensure!(run.flips >= 1, "the proxy never relayed the target byte; {}", ctx());
    ensure!(
        run.seen.flush <= record && run.seen.replay <= record,
        "reported flush {} / replay {} past the start of the corrupt record {record}; {}",
        run.seen.flush,
        run.seen.replay,
        ctx()
    );
    let restart = restart_lsn(primary, slot)?;
    ensure!(
        restart <= record,
        "slot {slot}'s restart_lsn {restart} is past the corrupt record {record}; {}",
        ctx()
    );
    ensure!(
        restart > reserved,
        "walstream never confirmed a flush before the corrupt record (restart_lsn {restart}); {}",
        ctx()
    );
    Ok(restart)
}

#[test]
fn a_flipped_byte_in_a_record_stops_receivewal_before_it() -> anyhow::Result<()> {
    corruption_case(Place::InPage)
}

#[test]
fn a_flipped_byte_in_a_record_continuation_stops_receivewal_before_it() -> anyhow::Result<()> {
    corruption_case(Place::Continuation)
}

/// Corrupts one byte at `place`: a run with `-n`, one without, then a clean run.
fn corruption_case(place: Place) -> anyhow::Result<()> {
    let seg = scenario::seg_size();
    let primary = PgCluster::start(&scenario::source_config())?;
    primary.psql("SELECT pg_create_physical_replication_slot('c1', true)")?;
    primary.psql("SELECT pg_create_physical_replication_slot('c2', true)")?;
    let reserved = restart_lsn(&primary, "c1")?;
    primary.pgbench(&["-i", "-s", "1", "-q"])?;
    primary.pgbench(&["-t", "300", "-n"])?;
    let end = primary.switch_wal()?;
    let (record, target) = choose_target(&primary, reserved.segment_start(seg), end, place)?;
    eprintln!("stream from {reserved}, corrupt record at {record}, byte flipped at {target}");

    // With -n: an error naming the record, a non-zero exit, nothing reported past it.
    let dir = tempfile::tempdir()?;
    let run = corrupted_run(
        &primary,
        dir.path(),
        "corrupt1",
        target,
        &["-S", "c1", "-n"],
        Duration::from_secs(60),
    )?;
    let status =
        run.status.with_context(|| format!("still running after 60 s:\n{}", run.stderr))?;
    ensure!(!status.success(), "exited successfully:\n{}", run.stderr);
    let error_lines: Vec<&str> =
        run.stderr.lines().filter(|l| l.to_ascii_lowercase().contains("error")).collect();
    ensure!(
        error_lines.iter().any(|l| lsns_in(l).contains(&record)),
        "no error line names the corrupt record {record} (flipped byte at {target}):\n{}",
        run.stderr
    );
    ensure!(
        error_lines.iter().flat_map(|l| lsns_in(l)).all(|l| l <= target),
        "an error line names a position past the flipped byte {target}:\n{}",
        run.stderr
    );
    let restart = check_not_past(&run, &primary, "c1", reserved, record)?;
    eprintln!("with -n: {status}, {:?}, restart_lsn {restart}, errors: {error_lines:?}", run.seen);
    let on_disk =
        end_equal_to_primary(dir.path(), &primary.wal_dir(), seg, &mut Default::default())?
            .context("nothing on disk")?;
    ensure!(on_disk <= target, "on disk equal to the primary up to {on_disk}, past {target}");

    // Without -n: it stops (or keeps failing) without ever reporting past the record.
    let dir2 = tempfile::tempdir()?;
    let run2 = corrupted_run(
        &primary,
        dir2.path(),
        "corrupt2",
        target,
        &["-S", "c2"],
        Duration::from_secs(15),
    )?;
    check_not_past(&run2, &primary, "c2", reserved, record)?;
    eprintln!("without -n: {:?}, {:?}\n{}", run2.status, run2.seen, run2.stderr);
    if let Some(s) = run2.status {
        ensure!(!s.success(), "without -n: exited successfully:\n{}", run2.stderr);
    }

    // A clean run in the first directory re-streams the segment and repairs it.
    let mut clean = receivewal(
        primary.port(),
        dir.path(),
        "clean",
        &["-S", "c1", "-n", "-E", &Lsn(end.0 - 1).to_string()],
    )?;
    let status = clean.wait_timeout(Duration::from_secs(60))?;
    ensure!(status.is_some_and(|s| s.success()), "clean run: {status:?}\n{}", clean.stderr_text());
    let names = assert_gapless_copy(dir.path(), &primary.wal_dir(), seg)
        .with_context(|| clean.stderr_text())?;
    let expected = scenario::segments_between(
        &walstream_protocol::lsn::segment_file_name(
            walstream_tests::TimeLineId(1),
            reserved.segno(seg),
            seg,
        ),
        end,
    );
    ensure!(names == expected, "after the clean run {names:?}, expected {expected:?}");
    Ok(())
}
