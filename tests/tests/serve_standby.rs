//! A real PostgreSQL 15 standby, made with `pg_basebackup -X none` from a real
//! primary, streams the WAL it lacks from `walstream serve` (serving a copy of the
//! primary's pg_wal), replays it to the end and answers queries as the primary does.

use std::path::Path;

use walstream_tests::scenario::{self, snapshot, REPLAY_TIMEOUT};
use walstream_tests::{Lsn, PgCluster, ServeProcess};

const WALSTREAM: &str = env!("CARGO_BIN_EXE_walstream");

#[test]
fn standby_replays_from_walstream_to_the_end() {
    let primary = PgCluster::start(&scenario::source_config()).unwrap();
    primary.pgbench(&["-i", "-s", "1", "-q"]).unwrap();
    let control_backup = primary.basebackup(&["-X", "none"]).unwrap();
    let backup = primary.basebackup(&["-X", "none"]).unwrap();
    primary.pgbench(&["-t", "300", "-n"]).unwrap();
    primary
        .psql("CREATE TABLE made_later AS SELECT g AS i FROM generate_series(1, 2000) g")
        .unwrap();
    primary.checkpoint().unwrap();
    let end = primary.switch_wal().unwrap();
    let expected = snapshot(&primary).unwrap();

    // Control: the same kind of standby streaming from the real primary.
    let control = PgCluster::standby(
        control_backup,
        &scenario::source_config(),
        &primary.conninfo("postgres"),
    )
    .unwrap();
    check_standby(&control, end, &expected, primary.port(), "");
    drop(control);

    let mut primary = primary;
    primary.stop("fast").unwrap();
    let waldir = scenario::copy_pg_wal(&primary).unwrap();
    let serve = ServeProcess::start(Path::new(WALSTREAM), waldir.path(), &[]).unwrap();

    let standby =
        PgCluster::standby(backup, &scenario::source_config(), &serve.conninfo()).unwrap();
    check_standby(&standby, end, &expected, serve.port(), &serve.log());
}

/// `standby` replays to `end`, answers `expected` and streams from `port`.
fn check_standby(standby: &PgCluster, end: Lsn, expected: &str, port: u16, server_log: &str) {
    standby
        .wait_replayed(end, REPLAY_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e:#}\nserver log:\n{server_log}"));
    assert_eq!(snapshot(standby).unwrap(), expected, "query results on the standby");
    let receiver = standby.psql("SELECT status, sender_port FROM pg_stat_wal_receiver").unwrap();
    assert_eq!(receiver, format!("streaming|{port}"), "the standby's walreceiver");
}
