//! Timeline 1 -> 2 through `walstream serve`: over a copy of a promoted standby's
//! pg_wal, (a) pg_receivewal started on timeline 1 follows the end-of-timeline
//! handshake onto timeline 2 and writes the same files (history file included), and
//! (b) a real standby made from a base backup of the old primary, taken before the
//! promotion, streams across the switch and answers queries as the new primary does.

use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context};

use walstream_tests::scenario::{self, snapshot, Promoted, REPLAY_TIMEOUT};
use walstream_tests::{
    assert_same_wal_files, Lsn, PgCluster, ReceiveWal, ServeProcess, TimeLineId,
};

const WALSTREAM: &str = env!("CARGO_BIN_EXE_walstream");
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(60);

/// pg_receivewal from `first` (a timeline-1 segment) to `end` (on timeline 2) against
/// 127.0.0.1:`port`; checks its complete files against `source` and returns them.
fn receive_across(port: u16, source: &Path, first: &str, end: Lsn) -> anyhow::Result<Vec<String>> {
    let recv = ReceiveWal::new()?;
    recv.seed_partial(first, scenario::seg_size())?;
    let log = recv.run_until(port, Lsn(end.0 - 1), &["--no-sync"], RECEIVE_TIMEOUT)?;
    let names = assert_same_wal_files(recv.dir(), source)?;
    ensure!(names.contains(&"00000002.history".to_string()), "no history file: {names:?}\n{log}");
    let last = scenario::segments_on(TimeLineId(2), first, end).pop().context("no segment")?;
    ensure!(names.contains(&last), "last timeline-2 segment {last} missing: {names:?}\n{log}");
    ensure!(log.contains("switched to timeline 2"), "{log}");
    Ok(names)
}

#[test]
fn receivewal_follows_the_switch_to_timeline_2() {
    let mut scen = Promoted::new(0).unwrap();
    let first = scenario::first_segment(&scen.promoted).unwrap();
    assert!(first.starts_with("00000001"), "{first}");
    let real =
        receive_across(scen.promoted.port(), &scen.promoted.wal_dir(), &first, scen.end).unwrap();

    let waldir = scen.stop_and_copy().unwrap();
    let serve = ServeProcess::start(Path::new(WALSTREAM), waldir.path(), &[]).unwrap();
    let ours = receive_across(serve.port(), waldir.path(), &first, scen.end)
        .unwrap_or_else(|e| panic!("{e:#}\nwalstream log:\n{}", serve.log()));
    assert_eq!(ours, real, "files received from walstream and from PostgreSQL");
}

#[test]
fn standby_from_old_primary_backup_follows_to_timeline_2() {
    let mut scen = Promoted::new(2).unwrap();
    let expected = snapshot(&scen.promoted).unwrap();
    let cfg = scenario::source_config().set("recovery_target_timeline", "latest");

    // Control: the same kind of standby streaming from the promoted PostgreSQL node.
    let backup = scen.old_backups.pop().unwrap();
    let control = PgCluster::standby(backup, &cfg, &scen.promoted.conninfo("postgres")).unwrap();
    check_standby(&control, scen.end, &expected, scen.promoted.port(), "");
    drop(control);

    let backup = scen.old_backups.pop().unwrap();
    let waldir = scen.stop_and_copy().unwrap();
    let serve = ServeProcess::start(Path::new(WALSTREAM), waldir.path(), &[]).unwrap();
    let standby = PgCluster::standby(backup, &cfg, &serve.conninfo()).unwrap();
    check_standby(&standby, scen.end, &expected, serve.port(), &serve.log());
}

/// `standby` replays to `end` streaming on timeline 2 from `port`, and answers
/// `expected`.
fn check_standby(standby: &PgCluster, end: Lsn, expected: &str, port: u16, server_log: &str) {
    standby
        .wait_replayed(end, REPLAY_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e:#}\nserver log:\n{server_log}"));
    let receiver =
        standby.psql("SELECT status, received_tli, sender_port FROM pg_stat_wal_receiver").unwrap();
    assert_eq!(receiver, format!("streaming|2|{port}"), "the standby's walreceiver");
    assert_eq!(snapshot(standby).unwrap(), expected, "query results on the standby");
}
