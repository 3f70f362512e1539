//! Run-time parameters in the startup packet (`PGOPTIONS`, libpq's `options`), side by
//! side with PostgreSQL 15 (issue 11 §2, "startup packet"): they set the session's values,
//! and an unknown one ends the connection with FATAL 42704 after authentication.

use walstream_tests::cluster::{PgCluster, PgConfig};
use walstream_tests::node::NodeDir;
use walstream_tests::{pg_bin, pg_command};

fn bin() -> &'static std::path::Path {
    env!("CARGO_BIN_EXE_walstream").as_ref()
}

/// psql's stdout and stderr, with the port made neutral.
fn psql(port: u16, options: &str, sql: &str) -> (String, String) {
    let out = pg_command(pg_bin("psql"))
        .env("PGOPTIONS", options)
        .args(["-X", "-At", "-d"])
        .arg(format!("host=127.0.0.1 port={port} user=postgres dbname=postgres"))
        .args(["-c", sql])
        .output()
        .unwrap();
    let neutral = |b: &[u8]| String::from_utf8_lossy(b).trim().replace(&port.to_string(), "PORT");
    (neutral(&out.stdout), neutral(&out.stderr))
}

#[test]
fn startup_options_set_the_session_or_end_it_as_postgresql() {
    let pg = PgCluster::start(&PgConfig::small_segments()).unwrap();
    let dir = NodeDir::init(bin(), 1).unwrap();
    let node = dir.start(&[]).unwrap();
    let cases = [
        ("-c synchronous_commit=remote_apply", "SHOW synchronous_commit"),
        ("--application-name=x\\ y", "SHOW application_name"),
        ("-c statement_timeout=5s -c lock_timeout=2s", "SHOW statement_timeout"),
        ("-c nosuch=1", "SELECT 1"),
        ("-c NoSuch=1", "SELECT 1"),
        ("-c my.custom=1", "SELECT 1"),
        ("-c my.=1", "SELECT 1"),
        ("-c wal_level=minimal", "SELECT 1"),
        ("-c wal_receiver_status_interval=1", "SELECT 1"),
        ("-c server_version=1", "SELECT 1"),
    ];
    for (options, sql) in cases {
        let want = psql(pg.port(), options, sql);
        assert_eq!(psql(node.port(), options, sql), want, "{options}");
    }
    assert!(psql(pg.port(), "-c nosuch=1", "SELECT 1")
        .1
        .ends_with("FATAL:  unrecognized configuration parameter \"nosuch\""));
}
