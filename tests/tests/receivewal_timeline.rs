//! `walstream receivewal` streaming from a real PostgreSQL 15 standby (as a cascading
//! client) follows the standby's promotion onto timeline 2 over the same connection,
//! through the end-of-timeline handshake (CONFORMANCE §4, §5, scenario 6): it writes
//! `00000002.history` and the timeline-2 segments byte-identical to the promoted node's.

use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context};
use walstream_protocol::lsn::segment_file_name;
use walstream_tests::scenario::{self, Promoted};
use walstream_tests::standby::{
    contiguous_segments, replication_row, spawn_receivewal, streaming_starts,
};
use walstream_tests::{assert_same_wal_files, complete_wal_files, wait_for, Lsn, TimeLineId};

const WALSTREAM: &str = env!("CARGO_BIN_EXE_walstream");
const NAME: &str = "walstream receivewal";

#[test]
fn follows_the_promotion_of_the_standby_it_streams_from() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (sc, (mut child, before)) = Promoted::with_standby_client(|standby| {
        let conninfo = format!("host=127.0.0.1 port={} user=postgres", standby.port());
        let child = spawn_receivewal(Path::new(WALSTREAM), &conninfo, dir.path(), &[])?;
        let row = wait_for("walstream streaming from the standby", Duration::from_secs(15), || {
            Ok(replication_row(standby, NAME)?.filter(|r| r.state == "streaming"))
        })
        .with_context(|| child.stderr_text())?;
        Ok((child, row))
    })?;
    let seg = scenario::seg_size();
    let last = segment_file_name(TimeLineId(2), Lsn(sc.end.0 - 1).segno(seg), seg);
    wait_for("walstream finished the last timeline-2 segment", Duration::from_secs(20), || {
        Ok(complete_wal_files(dir.path())?.contains(&last).then_some(()))
    })
    .with_context(|| child.stderr_text())?;
    // Flushed and applied (decoded) up to the end, on the same walsender: no reconnection.
    let after =
        wait_for("walstream's flush and replay at the end", Duration::from_secs(10), || {
            Ok(replication_row(&sc.promoted, NAME)?.filter(|r| {
                r.replay.is_some_and(|a| a >= sc.end) && r.flush.is_some_and(|f| f >= sc.end)
            }))
        })
        .with_context(|| child.stderr_text())?;
    let stderr = child.stderr_text();
    ensure!(after.pid == before.pid, "walstream reconnected ({before:?} → {after:?}):\n{stderr}");
    ensure!(stderr.contains("switched to timeline 2"), "no timeline switch logged:\n{stderr}");
    let starts = streaming_starts(&stderr);
    ensure!(
        starts.first().map(|s| s.1) == Some(1) && starts.last().map(|s| s.1) == Some(2),
        "START_REPLICATION positions {starts:?}"
    );
    child.interrupt();
    let status = child.wait_timeout(Duration::from_secs(10))?;
    ensure!(status.is_some_and(|s| s.success()), "{status:?}\n{}", child.stderr_text());

    let names = assert_same_wal_files(dir.path(), &sc.promoted.wal_dir())?;
    ensure!(names.contains(&"00000002.history".to_string()), "no history file: {names:?}");
    ensure!(names.last() == Some(&last), "last complete segment {:?}, want {last}", names.last());
    // Timeline 1 up to the segment before the switch (that one stays a .partial), then
    // timeline 2 from the switch segment on.
    let runs = contiguous_segments(&names, seg)?;
    eprintln!("START_REPLICATION at {starts:?}; complete files {names:?}");
    ensure!(runs.len() == 2, "segments {names:?}");
    let ((t1, first1, n1), (t2, first2, _)) = (runs[0], runs[1]);
    ensure!(t1 == TimeLineId(1) && t2 == TimeLineId(2), "{runs:?}");
    ensure!(first2 == first1 + n1, "timeline 2 does not continue timeline 1: {names:?}");
    Ok(())
}
